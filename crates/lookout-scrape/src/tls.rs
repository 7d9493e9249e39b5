//! The HTTP(S) connector: plain HTTP, or rustls (ring provider) with the job's `tls_config`
//! (CA file or the system roots, client certificate, server name, insecure_skip_verify).

use std::sync::{Arc, OnceLock};

use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use lookout_config::TlsConfig;
use lookout_tls::AcceptAnyServerCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

pub type Connector = HttpsConnector<HttpConnector>;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system's trusted roots, loaded once per process.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut store = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::debug!(error = %e, "loading system CA certificates");
            }
            let (added, ignored) = store.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "system CA certificates loaded");
            Arc::new(store)
        })
        .clone()
}

/// Builds a connector for one scrape pool.
pub fn connector(tls: &TlsConfig) -> Result<Connector, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls_config: {e}"))?;
    let builder = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert::new(
                provider.signature_verification_algorithms,
            )))
    } else if let Some(ca) = &tls.ca_file {
        let mut store = RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("unable to load specified CA cert {}: {e}", ca.display()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("unable to load specified CA cert {}: {e}", ca.display()))?;
        let (added, _) = store.add_parsable_certificates(certs);
        if added == 0 {
            return Err(format!(
                "unable to use specified CA cert {}: no certificates found",
                ca.display()
            ));
        }
        builder.with_root_certificates(store)
    } else {
        builder.with_root_certificates(system_roots())
    };
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("unable to load client cert {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("unable to load client key {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("tls_config client certificate: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http();
    let builder = match &tls.server_name {
        Some(name) if !name.is_empty() => {
            let sn = ServerName::try_from(name.clone())
                .map_err(|e| format!("tls_config server_name {name:?}: {e}"))?;
            builder.with_server_name_resolver(FixedServerNameResolver::new(sn))
        }
        _ => builder,
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    Ok(builder.enable_http1().wrap_connector(http))
}
