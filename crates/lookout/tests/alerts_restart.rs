//! Restarts keep alert state: `lookout serve` is killed with SIGKILL while alerts are firing
//! and pending, restarted on the same data directory, and from `ALERTS_FOR_STATE`:
//! - an alert that was firing is firing again at the first evaluation, with its original
//!   activeAt (no new pending phase);
//! - an alert whose `for` is shorter than `--rules-alert-for-grace-period` is not restored
//!   (Prometheus's rule) and waits its `for` again;
//! - a pending alert with more than the grace period to go does not count the downtime.

mod alerts_common;
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use alerts_common::{lookout_alerts, now_ms, parse_rfc3339_ms};
use common::{ChildGuard, PromApi, free_port};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_lookout");

const RULES: &str = r#"
groups:
  - name: restart
    rules:
      - alert: FiringLong
        expr: vector(1)
        for: 6s
        labels: { severity: critical }
        annotations: { summary: "restored" }
      - alert: FiringShort
        expr: vector(1)
        for: 2s
        labels: { severity: info }
      - alert: PendingSlow
        expr: vector(1)
        for: 5m
        labels: { severity: warning }
"#;

fn start(dir: &Path, prom: &str, log: &str) -> ChildGuard {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg("--config")
        .arg(dir.join("prometheus.yml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args([
            "--prom-addr",
            prom,
            "--ui-addr",
            "off",
            "--loki-addr",
            "off",
        ])
        .args(["--rules-alert-for-grace-period", "5s"]);
    ChildGuard::spawn("lookout serve", &mut cmd, &dir.join(log)).unwrap()
}

fn find<'a>(alerts: &'a [Value], name: &str) -> Option<&'a Value> {
    alerts.iter().find(|a| a["labels"]["alertname"] == name)
}

fn active_at(a: &Value) -> i64 {
    a["activeAt"]
        .as_str()
        .and_then(parse_rfc3339_ms)
        .unwrap_or_else(|| panic!("activeAt of {a}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_keeps_firing_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("rules.yml"), RULES).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  evaluation_interval: 1s\nrule_files:\n  - {}\n",
            dir.join("rules.yml").display()
        ),
    )
    .unwrap();
    let prom = format!("127.0.0.1:{}", free_port());
    let api = PromApi::new("lookout", &prom);

    let mut first = start(dir, &prom, "first.log");
    api.wait_ready("/-/ready", Duration::from_secs(30), &mut first)
        .await
        .unwrap();
    // Wait until both short alerts fire.
    let mut before = Vec::new();
    for _ in 0..100 {
        before = lookout_alerts(&api).await;
        let firing = |n| find(&before, n).is_some_and(|a| a["state"] == "firing");
        if firing("FiringLong") && firing("FiringShort") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let long = find(&before, "FiringLong").cloned().expect("FiringLong");
    assert_eq!(long["state"], "firing", "{before:?}");
    let slow = find(&before, "PendingSlow").cloned().expect("PendingSlow");
    assert_eq!(slow["state"], "pending");
    // One more evaluation so the firing state is in ALERTS_FOR_STATE for sure.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let kill_ms = now_ms();
    let pid = first.pid();
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..50 {
        if first.check_running().is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        first.check_running().is_err(),
        "still running after SIGKILL"
    );
    // Down for a few seconds.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut second = start(dir, &prom, "second.log");
    api.wait_ready("/-/ready", Duration::from_secs(30), &mut second)
        .await
        .unwrap();
    // The first time the alerts show up after the restart.
    let mut after = Vec::new();
    for _ in 0..200 {
        after = lookout_alerts(&api).await;
        if find(&after, "FiringLong").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen_ms = now_ms();
    let log = second.log_tail(30);
    let long2 = find(&after, "FiringLong")
        .unwrap_or_else(|| panic!("FiringLong missing after restart: {after:?}\n{log}"));
    assert_eq!(
        long2["state"], "firing",
        "a firing alert must not start a new pending phase\n{log}"
    );
    assert_eq!(
        long2["activeAt"], long["activeAt"],
        "original activeAt kept"
    );
    assert_eq!(long2["annotations"]["summary"], "restored");

    // `for: 2s` < grace period 5s: not restored, pending again from the restart.
    let short2 = find(&after, "FiringShort").expect("FiringShort");
    assert_eq!(short2["state"], "pending", "{after:?}");
    assert!(active_at(short2) > kill_ms, "{short2}");

    // Pending with 5m to go (> grace): the downtime does not count, so activeAt moved
    // forward by about the time Lookout was down (>= 3 s).
    let slow2 = find(&after, "PendingSlow").expect("PendingSlow");
    assert_eq!(slow2["state"], "pending");
    let shift = active_at(slow2) - active_at(&slow);
    assert!(
        (3_000..=(seen_ms - kill_ms) + 3_000).contains(&shift),
        "activeAt shifted by {shift} ms (down from {kill_ms} to at most {seen_ms})"
    );

    // The short alert fires again after its `for`; the long one stays firing.
    let mut fired = false;
    for _ in 0..40 {
        let now = lookout_alerts(&api).await;
        if find(&now, "FiringShort").is_some_and(|a| a["state"] == "firing") {
            assert_eq!(
                find(&now, "FiringLong").map(|a| a["activeAt"].clone()),
                Some(long["activeAt"].clone())
            );
            fired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(fired, "FiringShort did not fire again");
}
