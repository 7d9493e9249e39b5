//! TLS pieces shared by the scraper (`tls_config.insecure_skip_verify`) and the PostgreSQL
//! exporter (`sslmode=prefer`/`require` without `sslrootcert`, as libpq): a rustls server
//! verifier that accepts any certificate chain and host name but still checks the
//! handshake signatures, so the connection is encrypted to whoever holds the key of the
//! certificate it was shown.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Accepts any server certificate; verifies handshake signatures with `algorithms` (a
/// crypto provider's `signature_verification_algorithms`).
#[derive(Debug)]
pub struct AcceptAnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AcceptAnyServerCert {
    pub fn new(algorithms: WebPkiSupportedAlgorithms) -> Self {
        AcceptAnyServerCert { algorithms }
    }
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> AcceptAnyServerCert {
        AcceptAnyServerCert::new(
            rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    #[test]
    fn any_certificate_and_name_pass() {
        let v = verifier();
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        let name = ServerName::try_from("example.invalid").unwrap();
        assert!(
            v.verify_server_cert(&garbage, &[], &name, &[], UnixTime::now())
                .is_ok()
        );
        assert!(!v.supported_verify_schemes().is_empty());
    }
}
