//! The Redis exporter against servers that misbehave: a password it does not have, a restart
//! in the middle of a run, a server that never answers, and a replica pair (whose families are
//! compared with the real redis_exporter's when Debian's `prometheus-redis-exporter` is
//! installed). Throw-away `redis-server`s on free loopback ports; without `redis-server` the
//! tests print `SKIP` (and fail under `CI=true`).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lookout_exporter_redis::{Families, RedisCollector, RedisExporter, RedisOptions, router};

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn skip(test: &str, reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: required peer missing under CI: {reason}");
    }
    println!("SKIP {test}: {reason}");
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(bin))
            .find(|f| f.is_file())
    })
}

use lookout_test_ports::free_port;

fn redis_server(port: u16, dir: &std::path::Path, extra: &[&str]) -> Proc {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "redis on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Proc(child)
}

fn value(f: &Families, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    f.get(name)?
        .samples
        .iter()
        .find(|s| {
            labels
                .iter()
                .all(|(n, v)| s.labels.iter().any(|(a, b)| a == n && b == v))
        })
        .map(|s| s.value)
}

fn last_error(f: &Families) -> String {
    f.get("redis_exporter_last_scrape_error")
        .and_then(|fam| fam.samples.first())
        .and_then(|s| s.labels.iter().find(|(k, _)| k == "err"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// Log lines written while a guard is alive (current-thread runtime: spawned tasks log here
/// too).
#[derive(Clone, Default)]
struct LogBuf(Arc<parking_lot::Mutex<Vec<u8>>>);
impl Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> LogBuf {
        self.clone()
    }
}
impl LogBuf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }
}

async fn http_metrics(e: Arc<RedisExporter>) -> (u16, String) {
    use tower::ServiceExt as _;
    let resp = router(e)
        .oneshot(
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .expect("request"),
        )
        .await
        .expect("router answers");
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn refused_authentication_is_up_zero_with_a_clear_error() {
    if which("redis-server").is_none() {
        return skip("redis bad_input", "redis-server not installed");
    }
    let logs = LogBuf::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _server = redis_server(port, tmp.path(), &["--requirepass", "s3cret"]);
    let addr = format!("127.0.0.1:{port}");

    // No password: NOAUTH.
    let e = RedisExporter::new(RedisOptions {
        addr: addr.clone(),
        timeout: Duration::from_secs(3),
        ..Default::default()
    })
    .expect("exporter");
    let (status, body) = http_metrics(e.clone()).await;
    assert_eq!(status, 200);
    assert!(body.contains("\nredis_up 0\n"), "{body}");
    let f = e.collect().await;
    let err = last_error(&f);
    assert!(
        err.contains("NOAUTH") || err.contains("uthentication"),
        "{err}"
    );
    assert!(f.get("redis_memory_used_bytes").is_none());

    // Wrong password: WRONGPASS, logged with the server's address.
    let c = RedisCollector::new(RedisOptions {
        addr: addr.clone(),
        password: Some("wrong".into()),
        timeout: Duration::from_secs(3),
        ..Default::default()
    })
    .expect("collector");
    let r = c.scrape().await;
    let err = r.error.expect("an error");
    assert!(err.contains("uthentication failed"), "{err}");
    let log = logs.text();
    assert!(log.contains("redis scrape failed"), "{log}");
    assert!(log.contains(&addr), "{log}");
    assert!(log.contains("uthentication failed"), "{log}");

    // The right one works.
    let c = RedisCollector::new(RedisOptions {
        addr,
        password: Some("s3cret".into()),
        timeout: Duration::from_secs(3),
        ..Default::default()
    })
    .expect("collector");
    let f = c.collect().await;
    assert_eq!(value(&f, "redis_up", &[]), Some(1.0), "{}", last_error(&f));
}

#[tokio::test]
async fn reconnects_after_the_server_restarts() {
    if which("redis-server").is_none() {
        return skip("redis bad_input", "redis-server not installed");
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let server = redis_server(port, tmp.path(), &[]);
    let c = RedisCollector::new(RedisOptions {
        addr: format!("127.0.0.1:{port}"),
        timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .expect("collector");
    let f = c.collect().await;
    assert_eq!(value(&f, "redis_up", &[]), Some(1.0));
    let first_run_id = f.get("redis_instance_info").expect("info").samples[0]
        .labels
        .iter()
        .find(|(k, _)| k == "run_id")
        .map(|(_, v)| v.clone());

    drop(server);
    let f = c.collect().await;
    assert_eq!(value(&f, "redis_up", &[]), Some(0.0));
    assert!(!last_error(&f).is_empty());

    let _server = redis_server(port, tmp.path(), &[]);
    let f = c.collect().await;
    assert_eq!(value(&f, "redis_up", &[]), Some(1.0), "{}", last_error(&f));
    let run_id = f.get("redis_instance_info").expect("info").samples[0]
        .labels
        .iter()
        .find(|(k, _)| k == "run_id")
        .map(|(_, v)| v.clone());
    assert_ne!(run_id, first_run_id, "a new server process answered");
    assert_eq!(value(&f, "redis_exporter_scrapes_total", &[]), Some(3.0));
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_cleanly() {
    // Accepts connections, never writes a byte.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    let hold = tokio::spawn(async move {
        let mut socks = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            socks.push(s);
        }
    });
    let e = RedisExporter::new(RedisOptions {
        addr: format!("127.0.0.1:{port}"),
        timeout: Duration::from_millis(400),
        ..Default::default()
    })
    .expect("exporter");
    for _ in 0..2 {
        let t = Instant::now();
        let (status, body) = http_metrics(e.clone()).await;
        let took = t.elapsed();
        assert_eq!(status, 200);
        assert!(body.contains("\nredis_up 0\n"), "{body}");
        assert!(body.contains("timed out"), "{body}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
    hold.abort();
}

/// Replication families from a master with one replica and from the replica.
#[tokio::test]
async fn replication_families_match_redis_exporter() {
    if which("redis-server").is_none() {
        return skip("redis bad_input", "redis-server not installed");
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mport, rport) = (free_port(), free_port());
    let mdir = tmp.path().join("m");
    let rdir = tmp.path().join("r");
    std::fs::create_dir_all(&mdir).expect("dir");
    std::fs::create_dir_all(&rdir).expect("dir");
    let _master = redis_server(mport, &mdir, &[]);
    let _replica = redis_server(
        rport,
        &rdir,
        &["--replicaof", "127.0.0.1", &mport.to_string()],
    );
    let master = RedisCollector::new(RedisOptions {
        addr: format!("127.0.0.1:{mport}"),
        ..Default::default()
    })
    .expect("collector");
    let replica = RedisCollector::new(RedisOptions {
        addr: format!("127.0.0.1:{rport}"),
        ..Default::default()
    })
    .expect("collector");
    let t = Instant::now();
    let (fm, fr) = loop {
        let fm = master.collect().await;
        let fr = replica.collect().await;
        if value(&fm, "redis_connected_slaves", &[]) == Some(1.0)
            && value(&fr, "redis_master_link_up", &[]) == Some(1.0)
        {
            break (fm, fr);
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "replica never synced"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let rp = rport.to_string();
    assert!(
        value(
            &fm,
            "redis_connected_slave_offset_bytes",
            &[("slave_port", &rp)]
        )
        .is_some()
    );
    assert!(
        value(
            &fm,
            "redis_connected_slave_lag_seconds",
            &[("slave_port", &rp)]
        )
        .is_some()
    );
    let mp = mport.to_string();
    assert_eq!(
        value(&fr, "redis_slave_info", &[("master_port", &mp)]),
        Some(1.0)
    );
    assert!(value(&fr, "redis_slave_repl_offset", &[("master_port", &mp)]).is_some());
    assert_eq!(
        value(&fr, "redis_instance_info", &[("role", "slave")]),
        Some(1.0)
    );

    // Names and label names as the real redis_exporter prints them for the same pair.
    let Some(real) = which("prometheus-redis-exporter") else {
        return skip(
            "redis replication vs redis_exporter",
            "prometheus-redis-exporter not installed",
        );
    };
    let is_repl = |n: &str| {
        n.contains("slave") || n.contains("master") || n.contains("repl") || n.contains("replica")
    };
    for (port, ours) in [(mport, &fm), (rport, &fr)] {
        let lp = free_port();
        let _real = Proc(
            Command::new(&real)
                .args(["-redis.addr", &format!("redis://127.0.0.1:{port}")])
                .args(["-web.listen-address", &format!("127.0.0.1:{lp}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis_exporter"),
        );
        let text = fetch_when_up(lp).await;
        let theirs = lookout_exposition::parse_samples(
            text.as_bytes(),
            lookout_exposition::Format::PrometheusText,
        )
        .expect("redis_exporter output parses");
        let mut checked = 0;
        for s in theirs.iter().filter(|s| is_repl(&s.name)) {
            let fam = ours.get(&s.name).unwrap_or_else(|| {
                panic!("{} (from redis_exporter on {port}) missing in ours", s.name)
            });
            let mut want: Vec<&str> = s.labels.iter().map(|(k, _)| k.as_str()).collect();
            want.sort();
            assert!(
                fam.samples.iter().any(|o| {
                    let mut got: Vec<&str> = o.labels.iter().map(|(k, _)| k.as_str()).collect();
                    got.sort();
                    got == want
                }),
                "{}: label names {want:?} not among ours",
                s.name
            );
            checked += 1;
        }
        assert!(checked >= 3, "only {checked} replication samples compared");
        println!("redis replication vs redis_exporter on {port}: {checked} samples compared");
    }
}

async fn fetch_when_up(port: u16) -> String {
    let t = Instant::now();
    loop {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                .await
                .expect("send");
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.expect("read");
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some((_, body)) = text.split_once("\r\n\r\n")
                && body.contains("redis_up 1")
            {
                return body.to_string();
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "redis_exporter on {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `rediss://` to a TLS-only redis-server whose certificate a private CA signed.
#[tokio::test]
async fn tls_with_a_private_ca() {
    if which("redis-server").is_none() {
        return skip("redis bad_input", "redis-server not installed");
    }
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("params")
        .signed_by(&key, &ca, &ca_key)
        .expect("leaf");
    std::fs::write(dir.join("ca.crt"), ca.pem()).expect("write");
    std::fs::write(dir.join("server.crt"), leaf.pem()).expect("write");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write");
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args(["--save", "", "--tls-auth-clients", "no"])
        .arg("--tls-cert-file")
        .arg(dir.join("server.crt"))
        .arg("--tls-key-file")
        .arg(dir.join("server.key"))
        .arg("--tls-ca-cert-file")
        .arg(dir.join("ca.crt"))
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    let mut server = Proc(child);
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.0.try_wait() {
            return skip(
                "redis tls",
                &format!("redis-server has no TLS support here ({status})"),
            );
        }
        assert!(t.elapsed() < Duration::from_secs(20), "redis tls on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let opts = |ca: Option<PathBuf>| RedisOptions {
        addr: format!("rediss://127.0.0.1:{port}"),
        timeout: Duration::from_secs(3),
        tls_ca_cert: ca,
        ..Default::default()
    };
    let f = RedisCollector::new(opts(Some(dir.join("ca.crt"))))
        .expect("collector")
        .collect()
        .await;
    assert_eq!(value(&f, "redis_up", &[]), Some(1.0), "{}", last_error(&f));
    // Without the CA the certificate does not verify: up 0, not a panic or an HTTP error.
    let f = RedisCollector::new(opts(None))
        .expect("collector")
        .collect()
        .await;
    assert_eq!(value(&f, "redis_up", &[]), Some(0.0));
    assert!(!last_error(&f).is_empty());
    // Plain redis:// to the TLS port fails cleanly too.
    let f = RedisCollector::new(RedisOptions {
        addr: format!("redis://127.0.0.1:{port}"),
        timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .expect("collector")
    .collect()
    .await;
    assert_eq!(value(&f, "redis_up", &[]), Some(0.0));
    assert!(
        RedisCollector::new(opts(Some(dir.join("missing.crt")))).is_err(),
        "a missing CA file is a configuration error"
    );
}
