//! The Redis and PostgreSQL exporters embedded in `lookout serve`
//! (`--redis-exporter.listen`, `--postgres-exporter.listen`), scraped by the same process
//! through a prometheus.yml like the seed's, and the DB dashboard's queries and the Redis
//! alert (written for the real exporters) answered from what they collected.
//!
//! Redis: a throw-away `redis-server` on a free port, started only after serve (the exporter
//! must come up with the database down and recover). PostgreSQL: `LOOKOUT_TEST_PG_DSN` (from
//! `scripts/db-servers.sh`) or a throw-away cluster. Missing peers print
//! `SKIP exporters_serve: <reason>`; under `CI=true` that is a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ChildGuard, PromApi, free_port, result_len, which};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_lookout");

fn skip(reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("exporters_serve: required peer missing under CI: {reason}");
    }
    println!("SKIP exporters_serve: {reason}");
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
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

fn pg_bindir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run helper");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throw-away cluster in `dir` (trust authentication) and its DSN.
fn start_postgres(dir: &Path) -> Option<(ChildGuard, String)> {
    let bindir = pg_bindir()?;
    let as_postgres = |bin: &Path| {
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin);
            c
        } else {
            Command::new(bin)
        }
    };
    let pgdir = dir.join("pg");
    std::fs::create_dir_all(&pgdir).ok()?;
    if is_root() {
        run(Command::new("chown").arg("postgres").arg(&pgdir));
    }
    run(as_postgres(&bindir.join("initdb"))
        .arg("-D")
        .arg(pgdir.join("data"))
        .args(["-A", "trust", "-U", "postgres"])
        .stdout(Stdio::null()));
    let port = free_port();
    let guard = ChildGuard::spawn(
        "postgres",
        as_postgres(&bindir.join("postgres"))
            .arg("-D")
            .arg(pgdir.join("data"))
            .args(["-p", &port.to_string(), "-k"])
            .arg(&pgdir)
            .args(["-c", "listen_addresses=127.0.0.1"]),
        &dir.join("postgres.log"),
    )
    .ok()?;
    Some((
        guard,
        format!("postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=disable"),
    ))
}

fn psql(dsn: &str, sql: &str) -> bool {
    Command::new("psql")
        .args([dsn, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn redis_cli(port: u16, args: &[&str]) {
    let _ = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Every PromQL expression of the DB dashboard.
fn dashboard_exprs() -> Vec<(String, String)> {
    let path = repo_root()
        .join("examples/wealist/docker/monitoring/grafana/provisioning/dashboards/json/db.json");
    let text = std::fs::read_to_string(&path).expect("db dashboard");
    let dash: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut out = Vec::new();
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("").to_string();
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((title.clone(), e.to_string()));
                }
            }
            walk(&p["panels"], out);
        }
    }
    walk(&dash["panels"], &mut out);
    out
}

/// The `RedisHighMemory` expression of the seed's alert rules.
fn redis_alert_expr() -> String {
    let path = repo_root().join("examples/wealist/docker/monitoring/prometheus/rules/alerts.yml");
    let text = std::fs::read_to_string(path).expect("alerts.yml");
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.trim() == "- alert: RedisHighMemory" {
            let expr = lines.next().expect("expr line");
            return expr
                .trim()
                .strip_prefix("expr:")
                .expect("expr: after the alert name")
                .trim()
                .to_string();
        }
    }
    panic!("RedisHighMemory not found in alerts.yml");
}

async fn wait_for(
    api: &PromApi,
    query: &str,
    what: &str,
    limit: Duration,
    server: &mut ChildGuard,
) -> Value {
    let deadline = Instant::now() + limit;
    let mut last;
    loop {
        if let Err(e) = server.check_running() {
            panic!("{e}");
        }
        match api
            .get_data("/api/v1/query", &[("query", query.to_string())])
            .await
        {
            Ok(data) if result_len(&data) > 0 => return data,
            Ok(data) => last = data.to_string(),
            Err(e) => last = e,
        }
        assert!(
            Instant::now() < deadline,
            "{what}: `{query}` returned no data within {limit:?} (last: {last:.400})\nlookout log:\n{}",
            server.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn first_value(data: &Value) -> f64 {
    data["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_scrapes_embedded_exporters_and_the_db_dashboard_has_data() {
    if which("redis-server").is_none() {
        return skip("redis-server not installed");
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let mut _pg = None;
    let dsn = match std::env::var("LOOKOUT_TEST_PG_DSN") {
        Ok(d) => d,
        Err(_) => match start_postgres(dir) {
            Some((g, dsn)) => {
                _pg = Some(g);
                dsn
            }
            None => return skip("PostgreSQL server binaries not installed"),
        },
    };
    if which("psql").is_none() {
        return skip("psql not installed");
    }
    let t = Instant::now();
    while !psql(&dsn, "SELECT 1") {
        assert!(t.elapsed() < Duration::from_secs(30), "postgres not ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(psql(
        &dsn,
        "CREATE TABLE IF NOT EXISTS serve_t(id int primary key, v text); \
         INSERT INTO serve_t SELECT g, 'x' FROM generate_series(1, 100) g ON CONFLICT DO NOTHING; \
         ANALYZE serve_t;"
    ));

    let (prom, redis_exp, pg_exp, redis_port) =
        (free_port(), free_port(), free_port(), free_port());
    let rules = repo_root().join("examples/wealist/docker/monitoring/prometheus/rules/alerts.yml");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n\
             \x20 - job_name: redis-exporter\n    static_configs:\n      - targets: [\"127.0.0.1:{redis_exp}\"]\n\
             \x20 - job_name: postgres-exporter\n    static_configs:\n      - targets: [\"127.0.0.1:{pg_exp}\"]\n",
            rules.display()
        ),
    )
    .expect("config");
    let prom_addr = format!("127.0.0.1:{prom}");
    let mut server = ChildGuard::spawn(
        "lookout",
        Command::new(BIN)
            .env("LOOKOUT_LOG", "info")
            .env_remove("REDIS_ADDR")
            .env_remove("DATA_SOURCE_NAME")
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args([
                "--prom-addr",
                &prom_addr,
                "--ui-addr",
                "off",
                "--loki-addr",
                "off",
            ])
            .args(["--redis-exporter.listen", &format!("127.0.0.1:{redis_exp}")])
            .args(["--redis-exporter.addr", &format!("127.0.0.1:{redis_port}")])
            .args(["--redis-exporter.timeout", "800ms"])
            .args(["--postgres-exporter.listen", &format!("127.0.0.1:{pg_exp}")])
            .args(["--postgres-exporter.dsn", &dsn]),
        &dir.join("lookout.log"),
    )
    .expect("spawn lookout serve");
    let api = PromApi::new("lookout", &prom_addr);
    api.wait_ready("/-/ready", Duration::from_secs(60), &mut server)
        .await
        .expect("serve ready");

    // Redis is not running yet: the embedded exporter is up and says so.
    let down = wait_for(
        &api,
        "redis_up{job=\"redis-exporter\"} == 0",
        "redis down",
        Duration::from_secs(20),
        &mut server,
    )
    .await;
    assert_eq!(first_value(&down), 0.0);
    let up = wait_for(
        &api,
        "up{job=\"redis-exporter\"} == 1",
        "exporter target up",
        Duration::from_secs(10),
        &mut server,
    )
    .await;
    assert_eq!(result_len(&up), 1);

    // Now it starts (with a maxmemory, as the dashboard's "max" line needs one).
    let _redis = ChildGuard::spawn(
        "redis-server",
        Command::new("redis-server")
            .args([
                "--port",
                &redis_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--maxmemory", "256mb"])
            .arg("--dir")
            .arg(dir),
        &dir.join("redis.log"),
    )
    .expect("redis-server");
    wait_for(
        &api,
        "redis_up{job=\"redis-exporter\"} == 1",
        "redis recovered",
        Duration::from_secs(30),
        &mut server,
    )
    .await;
    wait_for(
        &api,
        "pg_up{job=\"postgres-exporter\"} == 1",
        "postgres up",
        Duration::from_secs(30),
        &mut server,
    )
    .await;

    // Some traffic so hit ratios and rates move.
    for i in 0..20 {
        redis_cli(redis_port, &["SET", &format!("k{i}"), "v"]);
        redis_cli(redis_port, &["GET", &format!("k{i}")]);
        redis_cli(redis_port, &["GET", "missing"]);
    }
    assert!(psql(
        &dsn,
        "SELECT count(*) FROM serve_t; INSERT INTO serve_t VALUES (1000, 'y') ON CONFLICT DO NOTHING;"
    ));
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Every DB-dashboard expression, with Grafana's $__rate_interval as 4 scrape intervals.
    let exprs = dashboard_exprs();
    assert!(
        exprs.len() >= 20,
        "only {} dashboard expressions",
        exprs.len()
    );
    let mut empty = Vec::new();
    for (title, expr) in &exprs {
        let q = expr.replace("$__rate_interval", "10s");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match api.get_data("/api/v1/query", &[("query", q.clone())]).await {
                Ok(d) if result_len(&d) > 0 => break,
                other => {
                    if Instant::now() > deadline {
                        empty.push(format!("{title}: {q} -> {other:?}"));
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without data:\n{}",
        empty.join("\n")
    );

    // The Redis alert: its expression as written selects the exporter's series (the 200 MiB
    // threshold is lowered to 0 so this small Redis crosses it), and the rule evaluates.
    let alert = redis_alert_expr();
    assert!(alert.contains("redis_memory_used_bytes"), "{alert}");
    let lowered = alert.replace("200 * 1024 * 1024", "0");
    assert_ne!(lowered, alert, "threshold not found in {alert}");
    let data = wait_for(
        &api,
        &lowered,
        "RedisHighMemory expression",
        Duration::from_secs(10),
        &mut server,
    )
    .await;
    assert!(first_value(&data) > 0.0);
    let rules = api.get_data("/api/v1/rules", &[]).await.expect("rules");
    let rule = rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .find(|r| r["name"] == "RedisHighMemory")
        .cloned()
        .expect("RedisHighMemory loaded");
    assert_eq!(rule["health"], "ok", "{rule}");

    // The seed's alert dimension: `instance` is the exporter's address.
    let inst = wait_for(
        &api,
        "redis_memory_used_bytes",
        "instance label",
        Duration::from_secs(5),
        &mut server,
    )
    .await;
    assert_eq!(
        inst["result"][0]["metric"]["instance"],
        format!("127.0.0.1:{redis_exp}")
    );
    println!(
        "exporters_serve: {} dashboard expressions and the Redis alert returned data",
        exprs.len()
    );
}
