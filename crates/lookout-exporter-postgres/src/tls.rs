//! libpq's TLS settings in a DSN (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`), which
//! `tokio-postgres` does not parse itself, and the rustls connector they configure.
//!
//! | `sslmode` | TLS | server certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `allow`, `prefer` (default) | when the server offers it | no (as libpq), unless `sslrootcert` is given |
//! | `require` | always | no; with `sslrootcert`, the chain (as libpq) |
//! | `verify-ca` | always | the chain against `sslrootcert` |
//! | `verify-full` | always | the chain and the host name |
//!
//! libpq's `allow` (plain first, TLS on refusal) is treated as `prefer`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lookout_tls::AcceptAnyServerCert;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::Error;

/// `sslmode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(v: &str) -> Result<Self, Error> {
        Ok(match v {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(Error::Dsn(format!("invalid sslmode {other:?}"))),
        })
    }
}

/// The TLS part of a DSN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            mode: SslMode::Prefer,
            root_cert: None,
            client_cert: None,
            client_key: None,
        }
    }
}

impl TlsSettings {
    /// What `tokio-postgres` is told (it knows only disable/prefer/require; verification is
    /// the connector's job).
    pub fn driver_mode(&self) -> tokio_postgres::config::SslMode {
        match self.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }

    /// Takes one libpq key; false for keys that are not TLS settings.
    fn take(&mut self, key: &str, value: &str) -> Result<bool, Error> {
        match key {
            "sslmode" => self.mode = SslMode::parse(value)?,
            "sslrootcert" => self.root_cert = Some(PathBuf::from(value)),
            "sslcert" => self.client_cert = Some(PathBuf::from(value)),
            "sslkey" => self.client_key = Some(PathBuf::from(value)),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Splits the TLS settings out of a URL or key=value DSN; the rest goes to `tokio-postgres`.
pub fn split_dsn(dsn: &str) -> Result<(String, TlsSettings), Error> {
    let mut tls = TlsSettings::default();
    let dsn = dsn.trim();
    if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
        let Some((base, query)) = dsn.split_once('?') else {
            return Ok((dsn.to_string(), tls));
        };
        let mut kept = Vec::new();
        for part in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            if !tls.take(&percent_decode(k), &percent_decode(v))? {
                kept.push(part);
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, tls));
    }
    let mut kept = Vec::new();
    for (k, v) in key_values(dsn)? {
        if !tls.take(&k, &v)? {
            kept.push(format!(
                "{k}='{}'",
                v.replace('\\', "\\\\").replace('\'', "\\'")
            ));
        }
    }
    Ok((kept.join(" "), tls))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(h) = b.get(i + 1..i + 3)
            && let Ok(h) = std::str::from_utf8(h)
            && let Ok(v) = u8::from_str_radix(h, 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `key = value key2 = 'quoted \' value'` as libpq reads it.
fn key_values(s: &str) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    loop {
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        if it.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = it.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        if it.next() != Some('=') {
            return Err(Error::Dsn(format!("missing `=` after {key:?}")));
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if it.next_if_eq(&'\'').is_some() {
            loop {
                match it.next() {
                    Some('\\') => match it.next() {
                        Some(c) => value.push(c),
                        None => return Err(Error::Dsn("unterminated quoted value".into())),
                    },
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(Error::Dsn("unterminated quoted value".into())),
                }
            }
        } else {
            while let Some(c) = it.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(n) = it.next() {
                        value.push(n);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

/// The rustls connector for these settings (`None` for `sslmode=disable`).
pub fn connector(
    s: &TlsSettings,
) -> Result<Option<tokio_postgres_rustls::MakeRustlsConnect>, Error> {
    if s.mode == SslMode::Disable {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let check_chain =
        matches!(s.mode, SslMode::VerifyCa | SslMode::VerifyFull) || s.root_cert.is_some();
    let verifier: Arc<dyn ServerCertVerifier> = if check_chain {
        let Some(path) = &s.root_cert else {
            return Err(Error::Tls(format!(
                "sslmode={:?} needs sslrootcert (the CA that signed the server's certificate)",
                s.mode
            )));
        };
        let mut roots = RootCertStore::empty();
        for cert in read_certs(path)? {
            roots
                .add(cert)
                .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| Error::Tls(e.to_string()))?;
        Arc::new(ChainVerifier {
            inner: webpki,
            check_name: s.mode == SslMode::VerifyFull,
        })
    } else {
        // `prefer` / `require` without `sslrootcert`: encrypted, certificate not checked
        // (as libpq); the handshake signatures still are.
        Arc::new(AcceptAnyServerCert::new(
            provider.signature_verification_algorithms,
        ))
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&s.client_cert, &s.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| Error::Tls(format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::Tls(e.to_string()))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(Error::Tls(
                "sslcert and sslkey must be given together".into(),
            ));
        }
    };
    Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(config)))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?
        .collect();
    let certs = certs.map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!("{}: no certificate", path.display())));
    }
    Ok(certs)
}

/// `verify-ca` / `verify-full`: the chain must lead to `sslrootcert`; the name is checked
/// only for `verify-full`.
#[derive(Debug)]
struct ChainVerifier {
    inner: Arc<WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for ChainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_tls_keys_are_split_out() {
        let (rest, tls) = split_dsn(
            "postgresql://u:p@h:5433/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(rest, "postgresql://u:p@h:5433/db?application_name=x");
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert, Some(PathBuf::from("/tmp/ca.pem")));
        let (rest, tls) = split_dsn("postgres://h/db?sslmode=disable").unwrap();
        assert_eq!(rest, "postgres://h/db");
        assert_eq!(tls.mode, SslMode::Disable);
        let (rest, tls) = split_dsn("postgres://h/db").unwrap();
        assert_eq!(rest, "postgres://h/db");
        assert_eq!(tls.mode, SslMode::Prefer);
        assert!(split_dsn("postgres://h/db?sslmode=sometimes").is_err());
    }

    #[test]
    fn key_value_tls_keys_are_split_out() {
        let (rest, tls) = split_dsn(
            "host=127.0.0.1 port = 5432 user=postgres password='a b\\'c' sslmode=verify-ca sslrootcert=/x/ca.crt",
        )
        .unwrap();
        assert_eq!(tls.mode, SslMode::VerifyCa);
        assert_eq!(tls.root_cert, Some(PathBuf::from("/x/ca.crt")));
        let cfg: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(cfg.get_password(), Some(&b"a b'c"[..]));
        assert_eq!(cfg.get_ports(), &[5432]);
        assert!(split_dsn("host=x password='open").is_err());
        assert!(split_dsn("host").is_err());
    }

    #[test]
    fn verification_needs_a_root_certificate() {
        let s = TlsSettings {
            mode: SslMode::VerifyFull,
            ..Default::default()
        };
        assert!(matches!(connector(&s), Err(Error::Tls(_))));
        assert!(connector(&TlsSettings::default()).unwrap().is_some());
        let off = TlsSettings {
            mode: SslMode::Disable,
            ..Default::default()
        };
        assert!(connector(&off).unwrap().is_none());
        let missing = TlsSettings {
            mode: SslMode::VerifyCa,
            root_cert: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        assert!(matches!(connector(&missing), Err(Error::Tls(_))));
    }

    proptest::proptest! {
        #[test]
        fn any_dsn_never_panics(s in "(?s).{0,80}") {
            let _ = split_dsn(&s);
        }
    }
}
