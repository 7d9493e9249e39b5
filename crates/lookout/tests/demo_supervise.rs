//! `lookout demo` supervising Redis and PostgreSQL: on free loopback ports where nothing
//! answers, the demo starts both, the exporters report `redis_up 1` / `pg_up 1`, their start-up
//! lines reach the Loki API under `compose_service="redis"|"postgres"`, a killed redis-server
//! is restarted, and SIGTERM to the demo stops both children. Prints a SKIP line when
//! redis-server or PostgreSQL is not installed (fails instead under CI=true).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ChildGuard, PromApi, free_port, free_port_block, now_ms, repo_root, which};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_lookout");

fn postgres_installed() -> bool {
    if which("postgres").is_some() && which("initdb").is_some() {
        return true;
    }
    std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .any(|d| d.path().join("bin/postgres").is_file() && d.path().join("bin/initdb").is_file())
}

/// Running and not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

async fn get_json(url: &str) -> Option<Value> {
    let r = reqwest::get(url).await.ok()?;
    serde_json::from_str(&r.text().await.ok()?).ok()
}

/// Lines Loki returns for `query` over the last hour.
async fn loki_lines(loki: &str, query: &str) -> Vec<String> {
    let url = format!(
        "http://{loki}/loki/api/v1/query_range?limit=1000&query={}",
        common::url_encode(query)
    );
    let Some(v) = get_json(&url).await else {
        return Vec::new();
    };
    v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["values"].as_array().into_iter().flatten())
        .filter_map(|p| p[1].as_str().map(str::to_string))
        .collect()
}

/// `(name, pid, starts)` from the control endpoint's `/databases`.
async fn databases(control: &str) -> Vec<(String, Option<u64>, u64)> {
    get_json(&format!("http://{control}/databases"))
        .await
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap_or("").to_string(),
                d["pid"].as_u64(),
                d["starts"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn pid_of(list: &[(String, Option<u64>, u64)], name: &str) -> Option<(u32, u64)> {
    list.iter()
        .find(|d| d.0 == name)
        .and_then(|d| Some((u32::try_from(d.1?).ok()?, d.2)))
}

async fn wait_until<F, Fut>(secs: u64, what: &str, demo: &mut ChildGuard, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Err(e) = demo.check_running() {
            panic!("while waiting for {what}: {e}");
        }
        if f().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; demo log tail:\n{}",
            demo.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_supervises_redis_and_postgres() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let have_redis = which("redis-server").is_some();
    let have_pg = postgres_installed();
    if !have_redis || !have_pg {
        assert!(
            !ci,
            "redis-server and PostgreSQL are required under CI=true (redis: {have_redis}, postgres: {have_pg})"
        );
        println!(
            "SKIP demo_supervises_redis_and_postgres: redis-server installed: {have_redis}, PostgreSQL installed: {have_pg}"
        );
        return;
    }

    let tmp = tempfile::tempdir().unwrap();
    // Under root PostgreSQL runs as `postgres`, which must be able to enter the data dir.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let data = tmp.path().join("data");
    let redis_port = free_port();
    let pg_port = free_port();
    for p in [redis_port, pg_port] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", p)).is_err(),
            "port {p} answers already"
        );
    }
    let base = free_port_block();
    let prom = format!("127.0.0.1:{}", free_port());
    let loki = format!("127.0.0.1:{}", free_port());
    let control = format!("127.0.0.1:{}", free_port());
    let redis_exporter = format!("127.0.0.1:{}", free_port());
    let pg_exporter = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(BIN);
    cmd.current_dir(repo_root())
        .arg("demo")
        .arg("--data-dir")
        .arg(&data)
        .arg("--config-dir")
        .arg(repo_root().join("examples/wealist/docker/monitoring"))
        .args(["--schedule", "fast", "--history", "0", "--users", "2"])
        .args(["--services-base-port", &base.to_string()])
        .args([
            "--prom-addr",
            &prom,
            "--ui-addr",
            "off",
            "--loki-addr",
            &loki,
        ])
        .args(["--control-addr", &control])
        .args(["--redis-addr", &format!("redis://127.0.0.1:{redis_port}")])
        .args([
            "--postgres-dsn",
            &format!("postgresql://postgres@127.0.0.1:{pg_port}/postgres?sslmode=disable"),
        ])
        .args(["--redis-exporter-addr", &redis_exporter])
        .args(["--postgres-exporter-addr", &pg_exporter])
        .stdout(Stdio::null());
    let mut demo =
        ChildGuard::spawn("lookout demo", &mut cmd, &tmp.path().join("demo.log")).unwrap();
    let api = PromApi::new("lookout", &prom);
    // initdb on first start takes a few seconds on a loaded machine.
    api.wait_ready("/-/ready", Duration::from_secs(120), &mut demo)
        .await
        .unwrap();

    // The exporters see the supervised servers.
    for metric in ["redis_up", "pg_up"] {
        let api = &api;
        wait_until(60, &format!("{metric} 1"), &mut demo, || async move {
            api.instant(metric, now_ms())
                .await
                .ok()
                .and_then(|r| r["result"][0]["value"][1].as_str().map(|v| v == "1"))
                .unwrap_or(false)
        })
        .await;
    }

    // Their start-up lines are in the log store, labelled like compose services.
    let loki_ref = &loki;
    wait_until(
        30,
        "redis start-up lines in Loki",
        &mut demo,
        || async move {
            loki_lines(loki_ref, r#"{compose_service="redis"}"#)
                .await
                .iter()
                .any(|l| l.contains("Ready to accept connections"))
        },
    )
    .await;
    wait_until(
        30,
        "postgres start-up lines in Loki",
        &mut demo,
        || async move {
            loki_lines(loki_ref, r#"{compose_service="postgres", stream="stderr"}"#)
                .await
                .iter()
                .any(|l| l.contains("database system is ready to accept connections"))
        },
    )
    .await;

    // The PIDs the demo reports: control endpoint and pid files agree, and they run.
    let list = databases(&control).await;
    let (redis_pid, starts) = pid_of(&list, "redis").expect("redis in /databases");
    let (pg_pid, _) = pid_of(&list, "postgres").expect("postgres in /databases");
    assert_eq!(starts, 1);
    let file_pid = |name: &str| -> u32 {
        std::fs::read_to_string(data.join(format!("demo-db/{name}.pid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(file_pid("redis"), redis_pid);
    assert_eq!(file_pid("postgres"), pg_pid);
    assert!(alive(redis_pid) && alive(pg_pid));

    // A killed redis-server is started again, and its new start-up is logged too.
    let status = Command::new("kill")
        .args(["-KILL", &redis_pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let control_ref = &control;
    wait_until(30, "redis restarted", &mut demo, || async move {
        pid_of(&databases(control_ref).await, "redis")
            .is_some_and(|(pid, starts)| pid != redis_pid && starts == 2)
    })
    .await;
    let (redis_pid2, _) = pid_of(&databases(&control).await, "redis").unwrap();
    assert!(alive(redis_pid2));
    wait_until(
        30,
        "the restart's lines in Loki",
        &mut demo,
        || async move {
            loki_lines(
                loki_ref,
                r#"{compose_service="redis"} |= "Ready to accept connections""#,
            )
            .await
            .len()
                >= 2
        },
    )
    .await;

    // SIGTERM to the demo stops both children.
    let status = Command::new("kill")
        .args(["-TERM", &demo.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while demo.check_running().is_ok() {
        assert!(
            Instant::now() < deadline,
            "demo did not stop; log tail:\n{}",
            demo.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = demo.log_tail(400);
    assert!(
        log.contains("supervised database stopped"),
        "log tail:\n{}",
        demo.log_tail(30)
    );
    for pid in [redis_pid2, pg_pid] {
        assert!(
            !alive(pid),
            "pid {pid} still running after the demo stopped"
        );
    }
    assert!(!data.join("demo-db/redis.pid").exists());
    assert!(!data.join("demo-db/postgres.pid").exists());
}
