//! Storage faults through `lookout serve`, as a remote-write sender sees them:
//! - disk full (the data directory on an 8 MiB tmpfs that the test fills): pushes get a 5xx
//!   (so senders retry), the failure is counted and logged, pushes succeed again by
//!   themselves once space is freed, and after a restart every acknowledged sample is there
//!   exactly once and nothing of the refused pushes;
//! - the global series limit (`--max-series`): a 400 naming the limit and its value;
//! - samples far in the future: a 400 "out of bounds", and the sender's other pushes go on.
//!
//! The disk-full test needs root (tmpfs mount); it prints a SKIP line otherwise and fails
//! when `CI=true`.

mod common;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ChildGuard, PromApi, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_lookout");

struct Server {
    _guard: ChildGuard,
    api: PromApi,
    addr: String,
}

async fn start(data: &Path, logs: &Path, tag: &str, extra: &[&str]) -> Server {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(data)
        .args([
            "--prom-addr",
            &addr,
            "--ui-addr",
            "off",
            "--loki-addr",
            "off",
        ])
        .args(extra);
    let mut guard = ChildGuard::spawn(
        "lookout",
        &mut cmd,
        &logs.join(format!("lookout-{tag}.log")),
    )
    .unwrap();
    let api = PromApi::new("lookout", &addr);
    let deadline = Instant::now() + Duration::from_secs(60);
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
    Server {
        _guard: guard,
        api,
        addr,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One remote-write body: `series` series of `name`, each with `samples`.
fn write_request(name: &str, series: usize, samples: &[(i64, f64)]) -> Vec<u8> {
    use lookout_remote_write::{Label, Sample, TimeSeries, WriteRequest, encode_write_request};
    let req = WriteRequest {
        timeseries: (0..series)
            .map(|i| TimeSeries {
                labels: vec![
                    Label::new("__name__", name),
                    Label::new("job", "rw"),
                    Label::new("i", i.to_string()),
                ],
                samples: samples
                    .iter()
                    .map(|&(t, v)| Sample {
                        value: v,
                        timestamp: t,
                    })
                    .collect(),
                exemplars: vec![],
                histograms: vec![],
            })
            .collect(),
        metadata: vec![],
    };
    encode_write_request(&req).unwrap()
}

async fn push(addr: &str, body: Vec<u8>) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// Samples `k*10 .. k*10+10` of a 1-second series starting at `base`.
fn batch(base: i64, k: i64) -> Vec<(i64, f64)> {
    (0..10)
        .map(|i| (base + (k * 10 + i) * 1000, (k * 10 + i) as f64))
        .collect()
}

async fn metric(srv: &Server, name: &str) -> f64 {
    let (_, text) = srv.api.get_raw("/metrics", &[]).await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// An 8 MiB tmpfs; unmounted (lazily) on drop.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_small_disk(path: &Path) -> Option<Tmpfs> {
    fs::create_dir_all(path).unwrap();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let ok = root
        && Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        let why = if root { "mount failed" } else { "not root" };
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "cannot mount a tmpfs ({why}) and CI=true"
        );
        println!("SKIP remote_write_on_a_full_disk: cannot mount a tmpfs ({why})");
        return None;
    }
    Some(Tmpfs(path.to_path_buf()))
}

fn fill(path: &Path) {
    let mut f = File::create(path).unwrap();
    let block = vec![0u8; 16 << 10];
    while f.write(&block).is_ok_and(|n| n > 0) {}
    while f.write(&[0u8]).is_ok_and(|n| n == 1) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_on_a_full_disk_answers_5xx_and_resumes() {
    let base_dir = tempfile::tempdir().unwrap();
    let Some(disk) = mount_small_disk(&base_dir.path().join("disk")) else {
        return;
    };
    let data = disk.0.join("data");
    let srv = start(&data, base_dir.path(), "a", &[]).await;
    let base = now_ms() - 600_000;
    // 20 pushes of 50 series × 10 samples, each acknowledged.
    for k in 0..20 {
        let (code, body) = push(&srv.addr, write_request("ok_total", 50, &batch(base, k))).await;
        assert_eq!(code, 204, "{body}");
    }

    fill(&disk.0.join("filler"));
    // Full: refused with a 5xx (a sender retries those), and counted.
    for k in 20..25 {
        let (code, body) = push(&srv.addr, write_request("ok_total", 50, &batch(base, k))).await;
        assert!((500..600).contains(&code), "{code} {body}");
        assert!(body.contains("No space left on device"), "{body}");
        let (code, _) = push(&srv.addr, write_request("refused", 50, &batch(base, k))).await;
        assert!((500..600).contains(&code));
    }
    assert!(metric(&srv, "lookout_tsdb_wal_write_failures_total").await >= 10.0);

    // Space returns: the same pushes (as a sender retries them) now succeed.
    fs::remove_file(disk.0.join("filler")).unwrap();
    for k in 20..40 {
        let (code, body) = push(&srv.addr, write_request("ok_total", 50, &batch(base, k))).await;
        assert_eq!(code, 204, "{body}");
    }
    drop(srv);

    // Restart: all 400 acknowledged samples of every series, once; nothing refused.
    let srv = start(&data, base_dir.path(), "b", &[]).await;
    let got = srv
        .api
        .get_data(
            "/api/v1/query_range",
            &[
                ("query", "ok_total".into()),
                ("start", common::api_time(base)),
                ("end", common::api_time(base + 399_000)),
                ("step", "1".into()),
            ],
        )
        .await
        .unwrap();
    let result = got["result"].as_array().unwrap();
    assert_eq!(result.len(), 50);
    for s in result {
        let values = s["values"].as_array().unwrap();
        assert_eq!(values.len(), 400, "{}", s["metric"]);
        for (i, v) in values.iter().enumerate() {
            assert_eq!(v[1].as_str().unwrap(), i.to_string());
        }
    }
    let refused = srv.api.instant("refused", base + 250_000).await.unwrap();
    assert!(refused["result"].as_array().unwrap().is_empty());
    drop(srv);
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_limit_and_future_samples_are_named_in_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(
        &dir.path().join("data"),
        dir.path(),
        "lim",
        &["--max-series", "2000"],
    )
    .await;
    let base = now_ms() - 60_000;
    let (code, body) = push(&srv.addr, write_request("small", 10, &batch(base, 0))).await;
    assert_eq!(code, 204, "{body}");
    // More new series than the limit: refused whole, with the limit named.
    let (code, body) = push(&srv.addr, write_request("wide", 2500, &batch(base, 0))).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("global active series limit of 2000 reached (--max-series)"),
        "{body}"
    );
    assert!(metric(&srv, "lookout_tsdb_series_limit_rejections_total").await >= 1.0);
    // A sender whose clock is a day ahead: out of bounds, as Prometheus answers.
    let future = now_ms() + 24 * 3600 * 1000;
    let (code, body) = push(&srv.addr, write_request("small", 10, &[(future, 1.0)])).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.starts_with("out of bounds"), "{body}");
    // Pushes within bounds go on.
    let (code, body) = push(&srv.addr, write_request("small", 10, &batch(base, 1))).await;
    assert_eq!(code, 204, "{body}");
    let wide = srv.api.instant("count(wide)", now_ms()).await.unwrap();
    assert!(wide["result"].as_array().unwrap().is_empty());
}
