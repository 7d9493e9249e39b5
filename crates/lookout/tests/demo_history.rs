//! `lookout demo --history 2h --schedule fast` on free loopback ports with a temporary data
//! directory: the past two hours have data through the Prometheus API (request rates, every
//! planner panel, the past incidents), the history has the live series' labels, `increase()`
//! across the history/live boundary stays sane, and a second start on the same directory
//! writes no history.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ChildGuard, PromApi, free_port, free_port_block, now_ms, repo_root};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_lookout");
const MIN: i64 = 60_000;

fn start_demo(data: &Path, log: &Path, prom: &str, loki: &str) -> ChildGuard {
    let base = free_port_block();
    let mut cmd = Command::new(BIN);
    cmd.current_dir(repo_root())
        .env("RUST_LOG", "info")
        .arg("demo")
        .arg("--data-dir")
        .arg(data)
        .args(["--history", "2h", "--schedule", "fast", "--seed", "5"])
        .args(["--services-base-port", &base.to_string()])
        .args(["--prom-addr", prom, "--ui-addr", "off"])
        .args(["--loki-addr", loki])
        .args(["--control-addr", "off"])
        .args([
            "--redis-exporter-addr",
            "off",
            "--postgres-exporter-addr",
            "off",
        ])
        .arg("--no-db-supervision")
        .stdout(Stdio::null());
    ChildGuard::spawn("lookout demo", &mut cmd, log).unwrap()
}

/// (labels, values) of every series of a vector or matrix result.
fn series(data: &Value) -> Vec<(BTreeMap<String, String>, Vec<f64>)> {
    data["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let labels = s["metric"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                .collect();
            let values = if s["values"].is_array() {
                s["values"].as_array().unwrap().clone()
            } else {
                vec![s["value"].clone()]
            };
            let vals = values
                .iter()
                .filter_map(|p| p[1].as_str().and_then(|v| v.parse::<f64>().ok()))
                .collect();
            (labels, vals)
        })
        .collect()
}

fn scalar_sum(data: &Value) -> f64 {
    series(data).iter().flat_map(|s| s.1.iter()).sum()
}

/// Label sets (as `name{a="b",...}` strings) of the service jobs' series with data in
/// `[start, end]`.
async fn label_sets(api: &PromApi, start: i64, end: i64) -> BTreeSet<String> {
    let data = api
        .get_data(
            "/api/v1/series",
            &[
                (
                    "match[]",
                    r#"{job=~".+-service", __name__!~"ALERTS.*"}"#.to_string(),
                ),
                ("start", common::api_time(start)),
                ("end", common::api_time(end)),
            ],
        )
        .await
        .unwrap();
    data.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let o = m.as_object().unwrap();
            let pairs: BTreeMap<&String, &str> = o
                .iter()
                .map(|(k, v)| (k, v.as_str().unwrap_or("")))
                .collect();
            format!("{pairs:?}")
        })
        .collect()
}

fn metric_names(sets: &BTreeSet<String>) -> BTreeSet<String> {
    sets.iter()
        .filter_map(|s| {
            let i = s.find("\"__name__\": \"")? + 13;
            let j = s[i..].find('"')?;
            Some(s[i..i + j].to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_starts_with_two_hours_of_history() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let prom = format!("127.0.0.1:{}", free_port());
    let loki = format!("127.0.0.1:{}", free_port());
    let log = tmp.path().join("demo.log");
    let mut demo = start_demo(&data_dir, &log, &prom, &loki);
    let api = PromApi::new("lookout", &prom);
    api.wait_ready("/-/ready", Duration::from_secs(120), &mut demo)
        .await
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("demo history written"))
        .unwrap_or_else(|| panic!("no history log line:\n{}", demo.log_tail(40)));
    println!("{line}");

    // Some live scrapes (1.5 s apart on the fast schedule).
    tokio::time::sleep(Duration::from_secs(12)).await;
    let now = now_ms();

    // Request rates across the past two hours, one point per minute.
    let data = api
        .range(
            "sum(rate(http_requests_total[5m]))",
            now - 115 * MIN,
            now - MIN,
            MIN,
        )
        .await
        .unwrap();
    let s = series(&data);
    assert_eq!(s.len(), 1, "{data}");
    let points = &s[0].1;
    assert!(
        points.len() >= 112,
        "{} of 115 minutes have a rate",
        points.len()
    );
    assert!(points.iter().all(|v| *v > 0.5 && *v < 400.0), "{points:?}");

    // Every planner panel has data an hour ago.
    let planner = std::fs::read_to_string(repo_root().join(
        "examples/wealist/docker/monitoring/grafana/provisioning/dashboards/json/planner.json",
    ))
    .unwrap();
    let dash: Value = serde_json::from_str(&planner).unwrap();
    let mut exprs = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                exprs.push(e.replace("$__rate_interval", "1m"));
            }
        }
    }
    assert!(exprs.len() >= 15, "{exprs:?}");
    for e in &exprs {
        let data = api.instant(e, now - 60 * MIN).await.unwrap();
        let s = series(&data);
        assert!(!s.is_empty(), "planner query {e} has no data an hour ago");
        assert!(
            s.iter()
                .all(|x| x.1.iter().all(|v| v.is_finite() && *v >= 0.0)),
            "{e}: {data}"
        );
    }
    let dau = scalar_sum(
        &api.instant("max(users_daily_active)", now - 60 * MIN)
            .await
            .unwrap(),
    );
    assert!(dau >= 1.0, "DAU an hour ago: {dau}");

    // The past incidents: video down, board 5xx burst, noti slow.
    let down = api
        .range(
            r#"up{job="video-service"} == 0"#,
            now - 120 * MIN,
            now - 60 * MIN,
            15_000,
        )
        .await
        .unwrap();
    let n = series(&down).first().map_or(0, |s| s.1.len());
    assert!((12..=20).contains(&n), "video down for {n} scrapes");
    let errors = api
        .range(
            r#"sum by (job) (rate(http_requests_total{status=~"5.."}[5m])) / sum by (job) (rate(http_requests_total[5m])) > 0.05"#,
            now - 70 * MIN,
            now - 40 * MIN,
            15_000,
        )
        .await
        .unwrap();
    let jobs: Vec<String> = series(&errors)
        .iter()
        .filter(|s| s.1.len() >= 8)
        .map(|s| s.0["job"].clone())
        .collect();
    assert_eq!(jobs, ["board-service"], "{errors}");
    let slow = api
        .range(
            "histogram_quantile(0.95, sum by (le, job) (rate(http_request_duration_seconds_bucket[5m]))) > 2",
            now - 45 * MIN,
            now - 5 * MIN,
            15_000,
        )
        .await
        .unwrap();
    let jobs: Vec<String> = series(&slow)
        .iter()
        .filter(|s| s.1.len() >= 20)
        .map(|s| s.0["job"].clone())
        .collect();
    assert_eq!(jobs, ["noti-service"], "{slow}");
    // Quiet before the incidents.
    let quiet = api
        .instant(
            r#"sum by (job) (rate(http_requests_total{status=~"5.."}[5m])) / sum by (job) (rate(http_requests_total[5m])) > 0.05"#,
            now - 100 * MIN,
        )
        .await
        .unwrap();
    assert!(series(&quiet).is_empty(), "{quiet}");

    // The history has the live series' labels.
    let live = label_sets(&api, now - 3_000, now).await;
    let past = label_sets(&api, now - 90 * MIN, now - 80 * MIN).await;
    let (live_names, past_names) = (metric_names(&live), metric_names(&past));
    assert!(live_names.len() >= 30, "{live_names:?}");
    // The services' database-client counters are the exception: the history's probe runs
    // the services without their databases, so it never sees them.
    let missing: Vec<&String> = live_names
        .difference(&past_names)
        .filter(|n| !n.starts_with("wealist_backing_"))
        .collect();
    assert!(
        missing.is_empty(),
        "live metrics without history: {missing:?}"
    );
    let common = live.intersection(&past).count();
    println!(
        "label sets: {} live, {} in history, {common} in both",
        live.len(),
        past.len()
    );
    let example = |set: &BTreeSet<String>| {
        set.iter()
            .find(|s| s.contains("http_requests_total"))
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        common * 10 >= live.len() * 8,
        "e.g. live {} vs history {}: only {common} of {} live series have history",
        example(&live),
        example(&past),
        live.len()
    );

    // increase() across the boundary: never negative, in line with the history's rate.
    let across = api
        .instant("increase(http_requests_total[2m])", now)
        .await
        .unwrap();
    let s = series(&across);
    assert!(!s.is_empty());
    assert!(
        s.iter()
            .all(|x| x.1.iter().all(|v| v.is_finite() && *v >= 0.0)),
        "{across}"
    );
    let q = r#"sum(increase(http_requests_total{job!="board-service"}[2m]))"#;
    let at_boundary = scalar_sum(&api.instant(q, now).await.unwrap());
    let before = scalar_sum(&api.instant(q, now - 10 * MIN).await.unwrap());
    let ratio = at_boundary / before;
    println!(
        "increase over 2m: {at_boundary:.0} across the boundary, {before:.0} ten minutes before"
    );
    assert!((0.2..=5.0).contains(&ratio), "ratio {ratio}");

    // Past log lines reached the log store: an hour ago, with the 5xx burst's errors.
    let logs_api = PromApi::new("lookout loki", &loki);
    let count = |q: &'static str, at: i64| {
        let api = logs_api.clone();
        async move {
            let data = api
                .get_data(
                    "/loki/api/v1/query",
                    &[("query", q.to_string()), ("time", common::api_time(at))],
                )
                .await
                .unwrap();
            scalar_sum(&data)
        }
    };
    let mut lines = 0.0;
    for _ in 0..60 {
        lines = count(
            r#"sum(count_over_time({compose_service=~".+-service"}[10m]))"#,
            now - 60 * MIN,
        )
        .await;
        if lines > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(lines >= 5.0, "log lines an hour ago: {lines}");
    let burst_errors = count(
        r#"sum(count_over_time({compose_service="board-service"} |= "request failed" [15m]))"#,
        now - 45 * MIN,
    )
    .await;
    let quiet_errors = count(
        r#"sum(count_over_time({compose_service="board-service"} |= "request failed" [15m]))"#,
        now - 90 * MIN,
    )
    .await;
    println!(
        "log lines in 10m an hour ago: {lines}; board errors {burst_errors} in the burst's 15m, {quiet_errors} before"
    );
    assert!(
        burst_errors > quiet_errors,
        "errors in the burst: {burst_errors} vs {quiet_errors}"
    );

    // A second start on the same directory keeps the data and writes no history.
    drop(demo);
    let log2 = tmp.path().join("demo2.log");
    let mut demo = start_demo(&data_dir, &log2, &prom, &loki);
    api.wait_ready("/-/ready", Duration::from_secs(120), &mut demo)
        .await
        .unwrap();
    let text = std::fs::read_to_string(&log2).unwrap();
    assert!(!text.contains("demo history written"), "{text}");
    assert!(text.contains("no history written"), "{}", demo.log_tail(30));
    let data = api
        .instant("sum(rate(http_requests_total[5m]))", now - 60 * MIN)
        .await
        .unwrap();
    assert!(scalar_sum(&data) > 0.0, "history kept: {data}");
}
