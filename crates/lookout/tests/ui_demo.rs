//! The UI against the running demo, in headless Chromium (playwright-core, Debian chromium):
//! `lookout demo --schedule fast` on free loopback ports with a temporary data directory, a
//! throw-away `redis-server` and the PostgreSQL of `LOOKOUT_TEST_PG_DSN` (or 127.0.0.1:5432).
//! The browser script `crates/lookout-ui/web/e2e/demo.mjs` logs in (forced password change),
//! checks that every panel of the six weAlist dashboards has data, measures the render time
//! of a dashboard over 24 h, changes the time range and a variable, runs PromQL and LogQL in
//! Explore and finds a firing alert on the alerts page.
//!
//! `LOOKOUT_SCREENSHOTS=dir` also writes the dashboards' screenshots there
//! (`scripts/screenshots`). Prints a SKIP line when chromium, playwright-core, redis-server
//! or PostgreSQL is missing; fails then under CI=true.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ChildGuard, PromApi, free_port, free_port_block, repo_root, which};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_lookout");
const DEFAULT_PG_DSN: &str = "postgresql://postgres@127.0.0.1:5432/postgres?sslmode=disable";

fn skip(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the UI demo browser test cannot run under CI: {why}");
    }
    println!("SKIP ui demo browser test: {why}");
}

/// `host:port` of a `postgresql://user@host:port/db` DSN.
fn pg_host_port(dsn: &str) -> Option<String> {
    let rest = dsn.split_once("://")?.1;
    let hostpart = rest.split(['/', '?']).next()?;
    let hostport = hostpart.rsplit('@').next()?;
    Some(if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:5432")
    })
}

fn answers(hostport: &str) -> bool {
    use std::net::ToSocketAddrs;
    hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
}

/// `dsn` with its database replaced by `db`.
fn with_database(dsn: &str, db: &str) -> Option<String> {
    let (scheme, rest) = dsn.split_once("://")?;
    let (authority, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let query = tail.split_once('?').map(|(_, q)| q);
    Some(match query {
        Some(q) => format!("{scheme}://{authority}/{db}?{q}"),
        None => format!("{scheme}://{authority}/{db}"),
    })
}

fn psql(dsn: &str, sql: &str) -> Result<(), String> {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A database of this run (dropped at the end) holding a small weAlist-like schema.
struct AppDatabase {
    admin_dsn: String,
    name: String,
    dsn: String,
}

impl AppDatabase {
    fn create(admin_dsn: &str) -> Result<AppDatabase, String> {
        let name = format!("lookout_ui_demo_{}", std::process::id());
        let dsn = with_database(admin_dsn, &name).ok_or("cannot parse the PostgreSQL DSN")?;
        let _ = psql(
            admin_dsn,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
        psql(admin_dsn, &format!("CREATE DATABASE {name}"))?;
        let db = AppDatabase {
            admin_dsn: admin_dsn.to_string(),
            name,
            dsn,
        };
        psql(
            &db.dsn,
            "CREATE TABLE workspaces (id serial PRIMARY KEY, name text NOT NULL);
             CREATE TABLE boards (id serial PRIMARY KEY, workspace_id int REFERENCES workspaces(id), title text);
             INSERT INTO workspaces (name) SELECT 'ws-' || g FROM generate_series(1, 40) g;
             INSERT INTO boards (workspace_id, title) SELECT 1 + g % 40, 'board-' || g FROM generate_series(1, 800) g;
             CREATE INDEX ON boards (workspace_id);
             ANALYZE;
             SELECT count(*) FROM boards b JOIN workspaces w ON w.id = b.workspace_id WHERE w.id < 5;",
        )?;
        Ok(db)
    }
}

impl Drop for AppDatabase {
    fn drop(&mut self) {
        let _ = psql(
            &self.admin_dsn,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Cache traffic on the throw-away Redis (sets, hits and misses) until the test ends.
async fn redis_traffic(port: u16) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut conn) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    let mut buf = vec![0u8; 4096];
    for i in 0u64.. {
        let cmds = format!(
            "SET session:{k} user-{i} EX 600\r\nGET session:{k}\r\nGET session:{i}:missing\r\n",
            k = i % 50
        );
        if conn.write_all(cmds.as_bytes()).await.is_err() {
            return;
        }
        // Drain the replies; the content does not matter.
        if conn.read(&mut buf).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The demo's flags for its 24 h history, when this build has them.
fn history_flag() -> Option<&'static str> {
    let out = Command::new(BIN).args(["demo", "--help"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .contains("--history")
        .then_some("24h")
}

/// Waits until `query` returns at least one series (or panics with the demo's log).
async fn wait_for(api: &PromApi, query: &str, timeout: Duration, demo: &mut ChildGuard) {
    let deadline = Instant::now() + timeout;
    loop {
        demo.check_running().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        if let Ok(r) = api.instant(query, now).await
            && r["result"].as_array().is_some_and(|a| !a.is_empty())
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no data for {query} after {timeout:?}\n{}",
            demo.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until the Loki API returns a line for `query` over the last hour.
async fn wait_for_logs(base: &str, query: &str, timeout: Duration, demo: &mut ChildGuard) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        demo.check_running().unwrap();
        let url = format!(
            "{base}/loki/api/v1/query_range?query={}&limit=1&since=1h",
            common::url_encode(query)
        );
        if let Ok(r) = http.get(&url).send().await
            && let Ok(text) = r.text().await
            && let Ok(v) = serde_json::from_str::<Value>(&text)
            && v["data"]["result"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no log lines for {query} after {timeout:?}\n{}",
            demo.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_against_the_demo() {
    let web = repo_root().join("crates/lookout-ui/web");
    if !Path::new("/usr/bin/chromium").exists() {
        return skip("/usr/bin/chromium is missing (apt-get install -y chromium)");
    }
    if which("node").is_none() || !web.join("node_modules/playwright-core").is_dir() {
        return skip("node or playwright-core (npm ci in crates/lookout-ui/web) is missing");
    }
    let Some(redis_bin) = which("redis-server") else {
        return skip("redis-server is missing (apt-get install -y redis-server)");
    };
    let pg_dsn = std::env::var("LOOKOUT_TEST_PG_DSN").unwrap_or_else(|_| DEFAULT_PG_DSN.into());
    if !pg_host_port(&pg_dsn).is_some_and(|hp| answers(&hp)) {
        return skip(&format!(
            "no PostgreSQL answers at {pg_dsn} (bash scripts/db-servers.sh, or set LOOKOUT_TEST_PG_DSN)"
        ));
    }

    if which("psql").is_none() {
        return skip("psql is missing (apt-get install -y postgresql-client)");
    }

    // The demo's services keep their state in memory and use neither PostgreSQL nor Redis;
    // the DB dashboard's table and Redis hit-ratio panels need an application database and
    // cache traffic, so this test provides both (see docs/ui.md).
    let app_db =
        AppDatabase::create(&pg_dsn).unwrap_or_else(|e| panic!("creating the test database: {e}"));
    let tmp = tempfile::tempdir().unwrap();
    let redis_port = free_port();
    let _redis = ChildGuard::spawn(
        "redis-server",
        Command::new(redis_bin)
            .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .current_dir(tmp.path()),
        &tmp.path().join("redis.log"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", redis_port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let cache = tokio::spawn(redis_traffic(redis_port));

    // Seven consecutive service ports (taken with the others from one allocator, so no
    // single port below falls inside the block).
    let base = free_port_block();
    let ui = format!("127.0.0.1:{}", free_port());
    let prom = format!("127.0.0.1:{}", free_port());
    let loki = format!("127.0.0.1:{}", free_port());
    let control = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(BIN);
    cmd.current_dir(repo_root())
        .arg("demo")
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .args(["--schedule", "fast", "--seed", "3"])
        .args(["--services-base-port", &base.to_string()])
        .args(["--ui-addr", &ui, "--prom-addr", &prom, "--loki-addr", &loki])
        .args(["--control-addr", &control])
        .args(["--redis-addr", &format!("redis://127.0.0.1:{redis_port}")])
        .args([
            "--redis-exporter-addr",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .args(["--postgres-dsn", &app_db.dsn])
        .args([
            "--postgres-exporter-addr",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .stdout(Stdio::null());
    let history = history_flag();
    if let Some(h) = history {
        cmd.args(["--history", h]);
    }
    let started = Instant::now();
    let mut demo =
        ChildGuard::spawn("lookout demo", &mut cmd, &tmp.path().join("demo.log")).unwrap();
    let api = PromApi::new("lookout", &prom);
    api.wait_ready("/-/ready", Duration::from_secs(120), &mut demo)
        .await
        .unwrap();

    // The fast schedule's own alerts (rules scaled by 0.1) fire and clear within its first
    // minute, possibly before the browser is logged in; a 90 s outage keeps ServiceDown
    // firing until the browser reaches the alerts page.
    let http = reqwest::Client::new();
    let r = http
        .post(format!(
            "http://{control}/faults/stop?service=video&duration=90s"
        ))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "stopping video-service: {r:?}");

    // Data every dashboard needs: services, both exporters, 5xx from the schedule's error
    // burst, and the services' logs shipped by the embedded agent.
    for q in [
        "up{job=\"user-service\"} == 1",
        "redis_up == 1",
        "pg_up == 1",
        "http_requests_total{status=~\"5..\"}",
        "users_daily_active",
    ] {
        wait_for(&api, q, Duration::from_secs(90), &mut demo).await;
    }
    let ui_base = format!("http://{ui}");
    wait_for_logs(
        &ui_base,
        "{compose_service=\"board-service\"} | json | status >= 500",
        Duration::from_secs(90),
        &mut demo,
    )
    .await;
    // Two minutes of rate windows behind the burst (1 s scrapes in the fast schedule).
    let warm = Duration::from_secs(45);
    if started.elapsed() < warm {
        tokio::time::sleep(warm - started.elapsed()).await;
    }
    println!(
        "demo ready after {:.0} s (history: {})",
        started.elapsed().as_secs_f64(),
        history.unwrap_or("none in this build")
    );

    let shots = std::env::var("LOOKOUT_SCREENSHOTS").unwrap_or_default();
    let timing_range = if history.is_some() { "24h" } else { "1h" };
    // The 1 s render budget holds for an optimised build; a debug build only reports it.
    let budget_ms = if cfg!(debug_assertions) { 0 } else { 1000 };
    if budget_ms == 0 {
        println!(
            "debug build: render times are reported, not checked (cargo test --release -p lookout --test ui_demo checks < 1 s)"
        );
    }
    let out = tokio::time::timeout(
        Duration::from_secs(420),
        tokio::process::Command::new("node")
            .arg(web.join("e2e/demo.mjs"))
            .arg(&ui_base)
            .arg(&shots)
            .arg(timing_range)
            .arg("180")
            .arg(budget_ms.to_string())
            .current_dir(&web)
            .output(),
    )
    .await
    .expect("the browser script finished within 7 minutes")
    .expect("running node");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        eprintln!("demo log tail:\n{}", demo.log_tail(40));
    }
    cache.abort();
    assert!(
        out.status.success(),
        "browser flows against the demo failed"
    );
    println!("ui demo test took {:.0} s", started.elapsed().as_secs_f64());
}

#[test]
fn dsn_database() {
    assert_eq!(
        with_database(
            "postgresql://postgres@127.0.0.1:5432/postgres?sslmode=disable",
            "x"
        )
        .as_deref(),
        Some("postgresql://postgres@127.0.0.1:5432/x?sslmode=disable")
    );
    assert_eq!(
        with_database("postgres://u@db", "y").as_deref(),
        Some("postgres://u@db/y")
    );
}

#[test]
fn dsn_host_port() {
    assert_eq!(
        pg_host_port("postgresql://postgres@127.0.0.1:5433/postgres?sslmode=disable").as_deref(),
        Some("127.0.0.1:5433")
    );
    assert_eq!(
        pg_host_port("postgres://u:p@db/x").as_deref(),
        Some("db:5432")
    );
    assert_eq!(pg_host_port("nonsense"), None);
}
