//! The PostgreSQL exporter against a throw-away cluster (initdb + postgres under a temp dir,
//! free loopback port, `runuser -u postgres` when root) with TLS on (a CA and server
//! certificate generated here), password authentication for one role, TLS-only for another,
//! 2,000 tables, and a restart. Without PostgreSQL's server binaries the test prints `SKIP`
//! (and fails under `CI=true`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lookout_exporter_postgres::{Families, PgCollector, PgExporter, PgOptions, router};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn skip(reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("postgres cluster test: required peer missing under CI: {reason}");
    }
    println!("SKIP postgres cluster test: {reason}");
}

fn pg_bindir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file() && p.join("postgres").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// `bin args...`, as the postgres user when we are root.
fn as_postgres(bin: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run helper");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

use lookout_test_ports::free_port;

struct Cluster {
    bindir: PathBuf,
    dir: PathBuf,
    port: u16,
    server: Option<Proc>,
}

impl Cluster {
    fn start(&mut self) {
        let data = self.dir.join("data");
        let child = as_postgres(&self.bindir.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "ssl=on"])
            .arg("-c")
            .arg(format!(
                "ssl_cert_file={}",
                self.dir.join("server.crt").display()
            ))
            .arg("-c")
            .arg(format!(
                "ssl_key_file={}",
                self.dir.join("server.key").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres");
        self.server = Some(Proc(child));
    }

    /// Fast shutdown (SIGINT to the postmaster), waiting for it to exit.
    fn stop(&mut self) {
        if let Some(mut p) = self.server.take() {
            let pid = postmaster_pid(&self.dir.join("data")).unwrap_or(p.0.id());
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
            let t = Instant::now();
            while self.dir.join("data/postmaster.pid").exists() {
                assert!(
                    t.elapsed() < Duration::from_secs(30),
                    "postgres did not stop"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = p.0.wait();
        }
    }

    fn dsn(&self, user: &str, extra: &str) -> String {
        format!(
            "postgresql://{user}@127.0.0.1:{}/postgres?{extra}",
            self.port
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn postmaster_pid(data: &Path) -> Option<u32> {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

struct Pki {
    ca_pem: String,
    other_ca_pem: String,
}

/// A CA and a server certificate for `localhost` only (so `127.0.0.1` is a name mismatch).
fn write_pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&key, &ca, &ca_key)
        .expect("leaf");
    std::fs::write(dir.join("server.crt"), leaf.pem()).expect("write cert");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write key");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod key");
    let other_key = KeyPair::generate().expect("key");
    let mut other = CertificateParams::new(Vec::<String>::new()).expect("params");
    other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let other = other.self_signed(&other_key).expect("other ca");
    Pki {
        ca_pem: ca.pem(),
        other_ca_pem: other.pem(),
    }
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

fn series(f: &Families, name: &str) -> usize {
    f.get(name).map(|fam| fam.samples.len()).unwrap_or(0)
}

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

async fn scrape(dsn: &str) -> lookout_exporter_postgres::ScrapeResult {
    collector(dsn, 1000).scrape().await
}

fn collector(dsn: &str, max_tables: usize) -> PgCollector {
    PgCollector::new(PgOptions {
        dsn: dsn.to_string(),
        timeout: Duration::from_secs(10),
        max_tables,
        ..Default::default()
    })
    .expect("valid dsn")
}

async fn admin(c: &Cluster, db: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname={db} sslmode=disable",
            c.port
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("admin connection");
    tokio::spawn(conn);
    client
}

async fn wait_ready(c: &Cluster) {
    let t = Instant::now();
    while !scrape(&c.dsn("postgres", "sslmode=disable")).await.up {
        assert!(t.elapsed() < Duration::from_secs(30), "postgres not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn tls_auth_limits_and_restart_on_a_throwaway_cluster() {
    let Some(bindir) = pg_bindir() else {
        return skip("PostgreSQL server binaries (initdb, postgres) not installed");
    };
    let logs = LogBuf::default();
    let _log_guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish(),
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let pki = write_pki(&dir);
    std::fs::write(dir.join("ca.crt"), &pki.ca_pem).expect("ca");
    std::fs::write(dir.join("other-ca.crt"), &pki.other_ca_pem).expect("other ca");
    if is_root() {
        run(Command::new("chown").args(["-R", "postgres"]).arg(&dir));
    }
    run(as_postgres(&bindir.join("initdb"))
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-A", "trust", "-U", "postgres"])
        .stdout(Stdio::null()));
    // postgres: trust; secure: password; tlsonly: refused without TLS.
    std::fs::write(
        dir.join("data/pg_hba.conf"),
        "local all all trust\n\
         hostnossl all tlsonly 127.0.0.1/32 reject\n\
         host all tlsonly 127.0.0.1/32 trust\n\
         host all secure 127.0.0.1/32 scram-sha-256\n\
         host all all 127.0.0.1/32 trust\n",
    )
    .expect("pg_hba");
    if is_root() {
        run(Command::new("chown")
            .arg("postgres")
            .arg(dir.join("data/pg_hba.conf")));
    }
    let mut cluster = Cluster {
        bindir,
        dir: dir.clone(),
        port: free_port(),
        server: None,
    };
    cluster.start();
    wait_ready(&cluster).await;
    let a = admin(&cluster, "postgres").await;
    a.batch_execute(
        "CREATE ROLE secure LOGIN PASSWORD 'pw-123'; CREATE ROLE tlsonly LOGIN; \
         GRANT pg_monitor TO secure, tlsonly;",
    )
    .await
    .expect("roles");
    a.batch_execute("CREATE DATABASE manytables")
        .await
        .expect("database");

    // --- TLS ---
    let ca = dir.join("ca.crt").display().to_string();
    let other = dir.join("other-ca.crt").display().to_string();
    let r = scrape(&cluster.dsn("tlsonly", "sslmode=disable")).await;
    assert!(!r.up, "tlsonly must be refused without TLS");
    for mode in ["require", "prefer"] {
        let r = scrape(&cluster.dsn("tlsonly", &format!("sslmode={mode}"))).await;
        assert!(r.up, "sslmode={mode}: {:?}", r.error);
    }
    let r = scrape(&cluster.dsn("tlsonly", &format!("sslmode=verify-ca&sslrootcert={ca}"))).await;
    assert!(r.up, "verify-ca: {:?}", r.error);
    // The certificate names localhost, not 127.0.0.1.
    let r = scrape(&cluster.dsn("tlsonly", &format!("sslmode=verify-full&sslrootcert={ca}"))).await;
    assert!(!r.up);
    let err = r.error.unwrap_or_default();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let r = scrape(&format!(
        "host=localhost port={} user=tlsonly dbname=postgres sslmode=verify-full sslrootcert={ca}",
        cluster.port
    ))
    .await;
    assert!(r.up, "verify-full via localhost: {:?}", r.error);
    let r =
        scrape(&cluster.dsn("tlsonly", &format!("sslmode=verify-ca&sslrootcert={other}"))).await;
    assert!(!r.up, "a certificate from another CA must be refused");
    assert!(
        PgCollector::new(PgOptions {
            dsn: cluster.dsn("tlsonly", "sslmode=verify-full"),
            ..Default::default()
        })
        .is_err(),
        "verify-full without sslrootcert is a configuration error"
    );

    // --- authentication refused: pg_up 0, HTTP 200, the server's reason logged ---
    let bad = format!(
        "postgresql://secure:wrong@127.0.0.1:{}/postgres?sslmode=disable",
        cluster.port
    );
    let e = PgExporter::new(PgOptions {
        dsn: bad,
        timeout: Duration::from_secs(5),
        ..Default::default()
    })
    .expect("exporter");
    let resp = {
        use tower::ServiceExt as _;
        router(e)
            .oneshot(
                axum::http::Request::get("/metrics")
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await
            .expect("answer")
    };
    assert_eq!(resp.status().as_u16(), 200);
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("\npg_up 0\n"), "{body}");
    let log = String::from_utf8_lossy(&logs.0.lock()).into_owned();
    assert!(
        log.contains("password authentication failed for user \"secure\""),
        "{log}"
    );
    let r = scrape(&format!(
        "postgresql://secure:pw-123@127.0.0.1:{}/postgres?sslmode=disable",
        cluster.port
    ))
    .await;
    assert!(r.up, "right password: {:?}", r.error);

    // --- 2,000 tables: bounded by max_tables, truncation reported ---
    let m = admin(&cluster, "manytables").await;
    m.batch_execute(
        "DO $$ BEGIN FOR i IN 1..2000 LOOP EXECUTE format('CREATE TABLE t_%s (id int)', i); END LOOP; END $$;",
    )
    .await
    .expect("2000 tables");
    let many = format!(
        "postgresql://postgres@127.0.0.1:{}/manytables?sslmode=disable",
        cluster.port
    );
    let f = collector(&many, 1000).collect().await;
    assert_eq!(value(&f, "pg_up", &[]), Some(1.0));
    assert_eq!(series(&f, "pg_stat_user_tables_seq_scan"), 1000);
    assert_eq!(
        value(&f, "pg_exporter_limit_truncated", &[("what", "tables")]),
        Some(1.0)
    );
    assert_eq!(
        value(&f, "pg_exporter_limit_truncated", &[("what", "databases")]),
        Some(0.0)
    );
    let log = String::from_utf8_lossy(&logs.0.lock()).into_owned();
    assert!(log.contains("pg_stat_user_tables_* is truncated"), "{log}");
    let f = collector(&many, 5000).collect().await;
    assert_eq!(series(&f, "pg_stat_user_tables_seq_scan"), 2000);
    assert_eq!(
        value(&f, "pg_exporter_limit_truncated", &[("what", "tables")]),
        Some(0.0)
    );
    let f = PgCollector::new(PgOptions {
        dsn: many.clone(),
        max_databases: 2,
        ..Default::default()
    })
    .expect("collector")
    .collect()
    .await;
    assert_eq!(series(&f, "pg_database_size_bytes"), 2);
    assert_eq!(
        value(&f, "pg_exporter_limit_truncated", &[("what", "databases")]),
        Some(1.0)
    );

    // --- restart: pg_up 0 while down, 1 again on the same collector afterwards ---
    let c = collector(&cluster.dsn("postgres", "sslmode=disable"), 1000);
    assert!(c.scrape().await.up);
    cluster.stop();
    let r = c.scrape().await;
    assert!(!r.up);
    cluster.start();
    wait_ready(&cluster).await;
    let r = c.scrape().await;
    assert!(r.up, "after restart: {:?}", r.error);
    assert_eq!(value(&c.collect().await, "pg_up", &[]), Some(1.0));
}
