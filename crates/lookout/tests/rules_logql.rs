//! LogQL rules in `serve`: the example log alert (`rules/loki/log-alerts.yml`, durations
//! scaled by 0.1 so the test takes seconds) is loaded through `--log-rule-files`, evaluated
//! over the log store, and fires from lines pushed to the Loki API — pending, firing with
//! its templated Korean and English annotations, notified to a webhook — then resolves when
//! the errors stop.

mod alerts_common;
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use alerts_common::{Hook, Timeline, lookout_alerts, now_ms};
use common::{ChildGuard, PromApi, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_lookout");

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/wealist/docker/monitoring/prometheus/rules/loki/log-alerts.yml")
}

async fn push(loki: &str, service: &str, lines: &[(i64, String)]) {
    let values: Vec<serde_json::Value> = lines
        .iter()
        .map(|(ms, l)| serde_json::json!([(ms * 1_000_000).to_string(), l]))
        .collect();
    let body = serde_json::json!({"streams": [{
        "stream": {"compose_service": service, "compose_project": "wealist", "container": format!("wealist-{service}-1")},
        "values": values,
    }]});
    let resp = reqwest::Client::new()
        .post(format!("http://{loki}/loki/api/v1/push"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "push: {}", resp.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_log_alert_fires_from_pushed_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let copies = lookout_rules::scale::write_scaled_copies(
        &[example().display().to_string()],
        0.1,
        &dir.join("rules"),
    )
    .unwrap();
    assert_eq!(copies.len(), 1);
    std::fs::write(
        dir.join("prometheus.yml"),
        "global:\n  evaluation_interval: 1s\n  external_labels: { project: wealist }\n",
    )
    .unwrap();
    let hook = Hook::start().await;
    let prom = format!("127.0.0.1:{}", free_port());
    let loki = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg("--config")
        .arg(dir.join("prometheus.yml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args([
            "--prom-addr",
            &prom,
            "--ui-addr",
            "off",
            "--loki-addr",
            &loki,
        ])
        .arg("--log-rule-files")
        .arg(&copies[0])
        .args(["--alert-webhook", &hook.url()]);
    let mut serve = ChildGuard::spawn("lookout serve", &mut cmd, &dir.join("serve.log")).unwrap();
    let api = PromApi::new("lookout", &prom);
    api.wait_ready("/-/ready", Duration::from_secs(30), &mut serve)
        .await
        .unwrap();

    // The group is loaded as LogQL.
    let rules = api.get_data("/api/v1/rules", &[]).await.unwrap();
    assert_eq!(rules["groups"][0]["name"], "wealist-logs", "{rules}");

    // 10 s of 10 error lines/s from board-service (60 per scaled 6 s window, threshold 20),
    // with info lines around them and a few errors from another service (below threshold).
    let mut tl = Timeline::default();
    let start = now_ms();
    while now_ms() - start < 30_000 {
        let now = now_ms();
        if now - start < 10_000 {
            let mut lines: Vec<(i64, String)> = (0..10)
                .map(|i| {
                    (
                        now - 100 + i,
                        format!(r#"{{"ts":"x","level":"error","service":"board","msg":"db timeout {i}"}}"#),
                    )
                })
                .collect();
            lines.push((now - 50, r#"{"level":"info","msg":"ok"}"#.to_string()));
            push(&loki, "board-service", &lines).await;
            push(
                &loki,
                "chat-service",
                &[(now - 10, r#"{"level":"error","msg":"rare"}"#.to_string())],
            )
            .await;
        }
        let alerts = lookout_alerts(&api).await;
        assert!(
            !alerts
                .iter()
                .any(|a| a["labels"]["compose_service"] == "chat-service"),
            "chat-service is below the threshold: {alerts:?}"
        );
        tl.observe(
            alerts
                .iter()
                .find(|a| a["labels"]["alertname"] == "ErrorLogBurst"),
            now,
        );
        if tl.pending_firing_resolved()
            && hook
                .fired_then_resolved(&[("alertname", "ErrorLogBurst")])
                .is_ok()
        {
            break;
        }
        serve.check_running().unwrap();
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    assert!(
        tl.pending_firing_resolved(),
        "states {:?}\n{}",
        tl.states,
        serve.log_tail(20)
    );
    assert_eq!(tl.labels["compose_service"], "board-service");
    assert_eq!(tl.labels["severity"], "warning");
    assert_eq!(
        tl.annotations["summary_ko"], "board-service 에러 로그 급증",
        "{}",
        tl.annotations
    );
    let desc = tl.annotations["description"].as_str().unwrap_or_default();
    assert!(
        desc.starts_with("board-service wrote ") && desc.contains("error lines"),
        "{desc}"
    );
    hook.fired_then_resolved(&[("alertname", "ErrorLogBurst"), ("project", "wealist")])
        .unwrap();
    // Rule health is ok and the ALERTS series is queryable like any other.
    let rules = api.get_data("/api/v1/rules", &[]).await.unwrap();
    assert_eq!(rules["groups"][0]["rules"][0]["health"], "ok", "{rules}");
    let q = api
        .get_data(
            "/api/v1/query",
            &[(
                "query",
                "count_over_time(ALERTS{alertname=\"ErrorLogBurst\",alertstate=\"firing\"}[1m])"
                    .into(),
            )],
        )
        .await
        .unwrap();
    assert!(
        !q["result"].as_array().is_none_or(|a| a.is_empty()),
        "ALERTS written: {q}"
    );
}
