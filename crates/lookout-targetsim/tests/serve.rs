//! Serves targets on ephemeral loopback ports and scrapes them over real HTTP.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use lookout_targetsim::{SimConfig, SimServer, Simulator};

fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_each_target_with_negotiation() {
    let sim = Arc::new(
        Simulator::new(SimConfig {
            targets: 3,
            series_per_target: 200,
            ..SimConfig::default()
        })
        .unwrap(),
    );
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = SimServer::bind(Arc::clone(&sim), &[any; 3]).await.unwrap();
    let addrs = server.addrs().to_vec();
    assert_eq!(addrs.len(), 3);
    assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() != 0));

    let bodies = tokio::task::spawn_blocking(move || {
        let text = get(addrs[0], "/metrics", None);
        let om = get(
            addrs[1],
            "/metrics",
            Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
        );
        let other = get(addrs[2], "/metrics", Some("text/plain"));
        let missing = get(addrs[2], "/nope", None);
        (text, om, other, missing)
    })
    .await
    .unwrap();
    let (text, om, other, missing) = bodies;

    assert!(text.0.starts_with("HTTP/1.1 200"), "{}", text.0);
    assert!(
        text.0
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4")
    );
    assert!(text.1.contains("http_requests_total{"));
    assert!(!text.1.contains("# EOF"));

    assert!(
        om.0.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0")
    );
    assert!(om.1.ends_with("# EOF\n"));

    // Different targets have different values for the same series.
    let first = |b: &str| {
        b.lines()
            .find(|l| l.starts_with("http_requests_total"))
            .unwrap()
            .to_string()
    };
    assert_ne!(first(&text.1), first(&other.1));

    assert!(missing.0.starts_with("HTTP/1.1 404"), "{}", missing.0);
    assert!(server.scrapes() >= 3);
    server.shutdown().await;
}

#[tokio::test]
async fn rejects_wrong_address_count() {
    let sim = Arc::new(
        Simulator::new(SimConfig {
            targets: 2,
            ..SimConfig::default()
        })
        .unwrap(),
    );
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    assert!(SimServer::bind(sim, &[any]).await.is_err());
}
