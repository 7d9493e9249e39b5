//! The log store through the binary: push while `kill -9` lands, restart on the same data
//! directory, and check that every acknowledged line is queryable (also with `lookout logs`),
//! on both the Loki port and the main port.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{ChildGuard, free_port, url_encode};
use parking_lot::Mutex;
use serde_json::Value;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn spawn(dir: &std::path::Path, loki: u16, main: u16, log: &str) -> ChildGuard {
    ChildGuard::spawn(
        "lookout serve",
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--prom-addr", "off"])
            .args(["--ui-addr", &format!("127.0.0.1:{main}")])
            .args(["--loki-addr", &format!("127.0.0.1:{loki}")])
            .args([
                "--log-ingestion-rate-mb",
                "1000",
                "--log-ingestion-burst-mb",
                "1000",
            ]),
        &dir.join(log),
    )
    .unwrap()
}

async fn wait_ready(client: &reqwest::Client, base: &str, guard: &mut ChildGuard) {
    for _ in 0..300 {
        if let Err(e) = guard.check_running() {
            panic!("{e}");
        }
        if let Ok(r) = client.get(format!("{base}/ready")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not ready: {}", guard.log_tail(30));
}

async fn count(client: &reqwest::Client, base: &str, q: &str) -> f64 {
    let url = format!(
        "{base}/loki/api/v1/query?query={}&time={}",
        url_encode(q),
        now_ns()
    );
    let v: Value =
        serde_json::from_str(&client.get(url).send().await.unwrap().text().await.unwrap()).unwrap();
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["result"][0]["value"][1]
        .as_str()
        .map_or(0.0, |s| s.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_lines_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (loki, main) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{loki}");
    let client = reqwest::Client::new();
    let mut guard = spawn(dir.path(), loki, main, "first.log");
    wait_ready(&client, &base, &mut guard).await;

    let acked: Arc<Mutex<Vec<usize>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = now_ns() - 600_000_000_000;
    let pusher = {
        let (acked, stop, client, base) =
            (acked.clone(), stop.clone(), client.clone(), base.clone());
        tokio::spawn(async move {
            let mut batch = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let values: Vec<Value> = (0..50)
                    .map(|i| {
                        let n = batch * 50 + i;
                        serde_json::json!([
                            (t0 + n as i64 * 1000).to_string(),
                            format!(r#"{{"level":"info","msg":"line id-{n} end"}}"#)
                        ])
                    })
                    .collect();
                let body = serde_json::json!({"streams":[{"stream":{"app":"dur","pod":format!("p{}", batch % 3)},"values":values}]});
                match client
                    .post(format!("{base}/loki/api/v1/push"))
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                {
                    Ok(r) if r.status().as_u16() == 204 => acked.lock().push(batch),
                    Ok(r) => panic!("push answered {}", r.status()),
                    Err(_) => break, // the server is gone
                }
                batch += 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = Command::new("kill")
        .args(["-9", &guard.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    stop.store(true, Ordering::SeqCst);
    let _ = pusher.await;
    let acked = acked.lock().clone();
    assert!(acked.len() > 5, "only {} pushes acknowledged", acked.len());
    drop(guard);

    let mut guard = spawn(dir.path(), loki, main, "second.log");
    wait_ready(&client, &base, &mut guard).await;
    let total = count(&client, &base, r#"sum(count_over_time({app="dur"}[1h]))"#).await;
    assert!(
        total >= (acked.len() * 50) as f64,
        "stored {total} lines, acknowledged {}",
        acked.len() * 50
    );
    // Every acknowledged batch is complete (spot-check by id, first and last line of each).
    for &b in acked
        .iter()
        .step_by((acked.len() / 20).max(1))
        .chain(acked.last())
    {
        for n in [b * 50, b * 50 + 49] {
            let q = format!(r#"sum(count_over_time({{app="dur"}} |= "id-{n} end" [1h]))"#);
            assert_eq!(
                count(&client, &base, &q).await,
                1.0,
                "line {n} of acknowledged batch {b}"
            );
        }
    }

    // The main port serves the same API; `lookout logs` prints logcli-style lines.
    let main_base = format!("http://127.0.0.1:{main}");
    let body = client
        .get(format!("{main_base}/loki/api/v1/labels"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"], serde_json::json!(["app", "pod"]));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .args(["logs", r#"{app="dur"} |= "id-7 end""#, "--since", "2h"])
            .args(["--server", &base])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(
        lines[0].contains(r#"{app="dur", pod="p0"} {"level":"info","msg":"line id-7 end"}"#),
        "{stdout}"
    );
    drop(guard);
}
