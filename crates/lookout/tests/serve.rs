//! End-to-end tests of `lookout serve` as a user runs it: scraping a target, querying,
//! reloading (valid and invalid configurations, SIGHUP and `/-/reload`), remote write with
//! kill -9 and restart, and the command-line contract.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ChildGuard, PromApi, free_port};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_lookout");

/// A scrape target serving whatever body is currently set.
struct Target {
    addr: String,
    body: Arc<Mutex<String>>,
}

async fn start_target(body: &str) -> Target {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let body = Arc::new(Mutex::new(body.to_string()));
    let b = body.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let b = b.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut req = Vec::new();
                // One request per connection; read until the end of the headers.
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let text = b.lock().clone();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    text.len(),
                    text
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    Target { addr, body }
}

fn write_config(path: &Path, jobs: &[(&str, &str)]) {
    let mut s = String::from(
        "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\nscrape_configs:\n",
    );
    for (job, target) in jobs {
        s +=
            &format!("  - job_name: {job}\n    static_configs:\n      - targets: [\"{target}\"]\n");
    }
    std::fs::write(path, s).unwrap();
}

struct Server {
    guard: ChildGuard,
    api: PromApi,
    addr: String,
}

async fn start_lookout(dir: &Path, config: Option<&Path>, tag: &str) -> Server {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args([
            "--prom-addr",
            &addr,
            "--ui-addr",
            "off",
            "--loki-addr",
            "off",
        ]);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let mut guard =
        ChildGuard::spawn("lookout", &mut cmd, &dir.join(format!("lookout-{tag}.log"))).unwrap();
    let api = PromApi::new("lookout", &addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Err(e) = guard.check_running() {
            panic!("{e}");
        }
        if let Ok((200, _)) = api.get_raw("/-/ready", &[]).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lookout did not become ready:\n{}",
            guard.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Server { guard, api, addr }
}

/// Polls an instant query until `check` accepts its result.
async fn eventually(
    api: &PromApi,
    query: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = now_ms();
        if let Ok(data) = api.instant(query, now).await
            && check(&data["result"])
        {
            return data;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} ({query})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn value_of(result: &Value, i: usize) -> Option<f64> {
    result.get(i)?["value"][1].as_str()?.parse().ok()
}

async fn post(addr: &str, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> (u16, String) {
    let client = reqwest::Client::new();
    let mut req = client.post(format!("http://{addr}{path}")).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_query_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let target = start_target("# TYPE demo_total counter\ndemo_total{path=\"/a\"} 5\n").await;
    let cfg = dir.path().join("prometheus.yml");
    write_config(&cfg, &[("demo", &target.addr)]);
    let mut srv = start_lookout(dir.path(), Some(&cfg), "a").await;

    eventually(&srv.api, "demo_total", "the scraped sample", |r| {
        value_of(r, 0) == Some(5.0)
    })
    .await;
    let up = eventually(&srv.api, "up{job=\"demo\"}", "up == 1", |r| {
        value_of(r, 0) == Some(1.0)
    })
    .await;
    assert_eq!(up["result"][0]["metric"]["instance"], target.addr.as_str());
    eventually(
        &srv.api,
        "scrape_samples_scraped{job=\"demo\"}",
        "scrape_samples_scraped",
        |r| value_of(r, 0) == Some(1.0),
    )
    .await;

    // `lookout query` prints the result like promtool.
    let out = Command::new(BIN)
        .args([
            "query",
            "demo_total",
            "--server",
            &format!("http://{}", srv.addr),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("demo_total{instance=") && text.contains("=> 5 @["),
        "{text}"
    );

    // An invalid configuration is refused; the running one stays.
    std::fs::write(
        &cfg,
        "scrape_configs:\n  - job_name: demo\n    bogus_field: 1\n",
    )
    .unwrap();
    let (code, body) = post(&srv.addr, "/-/reload", Vec::new(), &[]).await;
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("bogus_field"), "{body}");
    let cfg_now = srv
        .api
        .get_data("/api/v1/status/config", &[])
        .await
        .unwrap();
    assert!(
        cfg_now["yaml"].as_str().unwrap().contains(&target.addr),
        "{cfg_now}"
    );
    let (_, body) = srv
        .api
        .get_raw("/api/v1/status/runtimeinfo", &[])
        .await
        .unwrap();
    assert!(body.contains("\"reloadConfigSuccess\":false"), "{body}");

    // SIGHUP with the invalid file: still alive, still scraping.
    let before = now_ms();
    let st = Command::new("kill")
        .args(["-HUP", &srv.guard.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    eventually(
        &srv.api,
        "timestamp(up{job=\"demo\"}) * 1000",
        "scrapes after SIGHUP",
        |r| value_of(r, 0).is_some_and(|t| t as i64 > before),
    )
    .await;
    srv.guard.check_running().unwrap();

    // A valid new configuration adds a job and keeps the first.
    write_config(&cfg, &[("demo", &target.addr), ("demo2", &target.addr)]);
    let (code, body) = post(&srv.addr, "/-/reload", Vec::new(), &[]).await;
    assert_eq!(code, 200, "{body}");
    eventually(&srv.api, "up", "two jobs up", |r| {
        r.as_array().is_some_and(|a| a.len() == 2)
            && value_of(r, 0) == Some(1.0)
            && value_of(r, 1) == Some(1.0)
    })
    .await;

    // A malformed exposition marks the target down with the parse error; nothing partial stored.
    *target.body.lock() = "ok_metric 1\ndemo_total{path=\"/b\" 7\n".to_string();
    eventually(
        &srv.api,
        "up{job=\"demo\"}",
        "up == 0 after a bad scrape",
        |r| value_of(r, 0) == Some(0.0),
    )
    .await;
    let targets = srv.api.get_data("/api/v1/targets", &[]).await.unwrap();
    let t = targets["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["scrapePool"] == "demo")
        .unwrap();
    assert_eq!(t["health"], "down");
    assert!(!t["lastError"].as_str().unwrap().is_empty(), "{t}");
    let r = srv.api.instant("ok_metric", now_ms()).await.unwrap();
    assert_eq!(
        r["result"].as_array().unwrap().len(),
        0,
        "a partial scrape was stored: {r}"
    );
    // The series that vanished with the failed scrape is marked stale at once.
    eventually(
        &srv.api,
        "demo_total",
        "demo_total stale after the failed scrape",
        |r| r.as_array().is_some_and(|a| a.is_empty()),
    )
    .await;
}

fn write_request(name: &str, samples: &[(i64, f64)]) -> Vec<u8> {
    use lookout_remote_write::{Label, Sample, TimeSeries, WriteRequest, encode_write_request};
    let req = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![Label::new("__name__", name), Label::new("job", "rw")],
            samples: samples
                .iter()
                .map(|&(t, v)| Sample {
                    value: v,
                    timestamp: t,
                })
                .collect(),
            exemplars: vec![],
            histograms: vec![],
        }],
        metadata: vec![],
    };
    encode_write_request(&req).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = start_lookout(dir.path(), None, "a").await;
    let base = now_ms() - 600_000;
    let headers = [
        ("Content-Encoding", "snappy"),
        ("Content-Type", "application/x-protobuf"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
    ];
    // 50 requests of 10 samples each, every one acknowledged before the next.
    for batch in 0..50i64 {
        let samples: Vec<(i64, f64)> = (0..10)
            .map(|i| (base + (batch * 10 + i) * 1000, (batch * 10 + i) as f64))
            .collect();
        let (code, body) = post(
            &srv.addr,
            "/api/v1/write",
            write_request("rw_total", &samples),
            &headers,
        )
        .await;
        assert_eq!(code, 204, "{body}");
    }
    // Malformed bodies are refused with 400 and store nothing.
    let (code, body) = post(
        &srv.addr,
        "/api/v1/write",
        b"not snappy at all".to_vec(),
        &headers,
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let mut bad = write_request("bad_metric", &[(base, 1.0)]);
    bad.truncate(bad.len() / 2);
    let (code, _) = post(&srv.addr, "/api/v1/write", bad, &headers).await;
    assert_eq!(code, 400);

    // kill -9, then start again on the same data directory.
    let st = Command::new("kill")
        .args(["-KILL", &srv.guard.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(300));
    assert!(srv.guard.check_running().is_err());
    drop(srv);
    let srv = start_lookout(dir.path(), None, "b").await;
    let data = srv
        .api
        .get_data(
            "/api/v1/query_range",
            &[
                ("query", "rw_total".into()),
                ("start", common::api_time(base)),
                ("end", common::api_time(base + 499_000)),
                ("step", "1".into()),
            ],
        )
        .await
        .unwrap();
    let values = data["result"][0]["values"].as_array().unwrap();
    assert_eq!(
        values.len(),
        500,
        "every acknowledged sample must survive kill -9"
    );
    for (i, v) in values.iter().enumerate() {
        assert_eq!(v[1].as_str().unwrap(), i.to_string());
    }
    let bad = srv.api.instant("bad_metric", base).await.unwrap();
    assert!(bad["result"].as_array().unwrap().is_empty());
}

#[test]
fn command_line_contract() {
    for sub in [
        "serve", "demo", "agent", "exporter", "query", "logs", "check", "test",
    ] {
        let out = Command::new(BIN).args([sub, "--help"]).output().unwrap();
        assert!(out.status.success(), "`lookout {sub} --help` failed");
    }
    // Without their required arguments, subcommands fail with a usage message.
    for sub in ["agent", "exporter", "logs", "test", "check"] {
        let out = Command::new(BIN).arg(sub).output().unwrap();
        assert!(
            !out.status.success(),
            "`lookout {sub}` without arguments must fail"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("Usage") || err.contains("usage"),
            "`lookout {sub}`: {err}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    write_config(&good, &[("a", "127.0.0.1:1")]);
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "global:\n  scrape_interval: banana\n").unwrap();
    let out = Command::new(BIN)
        .arg("check")
        .arg("config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = Command::new(BIN)
        .arg("check")
        .arg("config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILED"));
    // A listener that cannot bind is a clear startup error.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path().join("d"))
        .args([
            "--prom-addr",
            &addr,
            "--ui-addr",
            "off",
            "--loki-addr",
            "off",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&addr));
}
