//! HTTPS scrapes against a local rustls server with a throwaway CA.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lookout_config::PrometheusConfig;
use lookout_scrape::{Health, ScrapeManager, ScrapeOptions};
use lookout_storage::memory::MemStorage;
use lookout_storage::{Matcher, Queryable, SelectHints};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

struct Pki {
    ca_pem: String,
    leaf: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "metrics.test".to_string()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    Pki {
        ca_pem: ca.pem(),
        leaf: leaf.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    }
}

async fn tls_server(p: &Pki) -> std::net::SocketAddr {
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![p.leaf.clone()], p.key.clone_key())
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from_static(b"secure_metric 1\n")))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

fn up(st: &MemStorage, job: &str) -> Vec<f64> {
    st.select(
        &[Matcher::equal("__name__", "up"), Matcher::equal("job", job)],
        &SelectHints::range(i64::MIN, i64::MAX),
    )
    .unwrap()
    .into_iter()
    .flat_map(|s| s.samples.into_iter().map(|x| x.v))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_ca_file_server_name_and_insecure_skip_verify() {
    let p = pki();
    let addr = tls_server(&p).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &p.ca_pem).unwrap();
    let job = |name: &str, tls: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    scrape_interval: 100ms\n    static_configs:\n      - targets: ['{addr}']\n    tls_config:\n{tls}"
        )
    };
    let yaml = format!(
        "scrape_configs:\n{}{}{}{}",
        job("ca", "      ca_file: ca.pem\n"),
        job(
            "sni",
            "      ca_file: ca.pem\n      server_name: metrics.test\n"
        ),
        job("insecure", "      insecure_skip_verify: true\n"),
        job("untrusted", "      server_name: metrics.test\n"),
    );
    let cfg = PrometheusConfig::parse_with_base(&yaml, dir.path()).unwrap();
    let st = Arc::new(MemStorage::new());
    let m = ScrapeManager::new(st.clone(), ScrapeOptions::default());
    m.apply_config(&cfg).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ["ca", "sni", "insecure", "untrusted"]
        .iter()
        .any(|j| up(&st, j).is_empty())
    {
        assert!(
            Instant::now() < deadline,
            "targets never scraped: {:?}",
            m.targets()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for j in ["ca", "sni", "insecure"] {
        assert_eq!(
            up(&st, j)[0],
            1.0,
            "{j}: {:?}",
            m.targets().iter().find(|t| t.scrape_pool == j)
        );
    }
    assert_eq!(up(&st, "untrusted")[0], 0.0);
    let t = m
        .targets()
        .into_iter()
        .find(|t| t.scrape_pool == "untrusted")
        .unwrap();
    assert_eq!(t.health, Health::Down);
    assert!(
        t.last_error.to_lowercase().contains("certificate"),
        "{}",
        t.last_error
    );
    assert!(t.scrape_url.starts_with("https://"));
    m.stop().await;
}

#[tokio::test]
async fn missing_ca_file_rejects_the_config() {
    let cfg = PrometheusConfig::parse(
        "scrape_configs:\n  - job_name: x\n    tls_config:\n      ca_file: /nonexistent/ca.pem\n    static_configs:\n      - targets: ['127.0.0.1:1']\n",
    )
    .unwrap();
    let m = ScrapeManager::new(Arc::new(MemStorage::new()), ScrapeOptions::default());
    let e = m.apply_config(&cfg).await.unwrap_err().to_string();
    assert!(
        e.contains("unable to load specified CA cert /nonexistent/ca.pem"),
        "{e}"
    );
    assert!(m.targets().is_empty(), "nothing applied on error");
}
