//! Bad rule files on reload (`POST /-/reload`): YAML errors, invalid expressions, unknown
//! template functions and duplicate groups are refused with the file and line, the reload is
//! reported failed, and the rules that were running keep being evaluated. A good file then
//! reloads.

mod alerts_common;
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{ChildGuard, PromApi, free_port};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_lookout");

const GOOD: &str = "groups:
  - name: g
    rules:
      - alert: Always
        expr: vector(1)
        annotations: { summary: \"value {{ $value }}\" }
";

/// (what, file text, line the error must name)
const BAD: [(&str, &str, usize); 4] = [
    (
        "YAML error",
        "groups:\n  - name: g\n    rules:\n      - alert: Always\n        expr: vector(1)\n       labels: [\n",
        6,
    ),
    (
        "invalid expression",
        "groups:\n  - name: g\n    rules:\n      - alert: Always\n        expr: vector(1)\n      - alert: Broken\n        expr: rate(up)\n",
        6,
    ),
    (
        "unknown template function",
        "groups:\n  - name: g\n    rules:\n      - alert: Always\n        expr: vector(1)\n        annotations:\n          summary: \"{{ $value | nosuchfunc }}\"\n",
        4,
    ),
    (
        "duplicate group",
        "groups:\n  - name: g\n    rules:\n      - alert: Always\n        expr: vector(1)\n  - name: g\n    rules:\n      - alert: Other\n        expr: vector(2)\n",
        6,
    ),
];

async fn groups(api: &PromApi) -> Vec<Value> {
    api.get_data("/api/v1/rules", &[])
        .await
        .ok()
        .and_then(|d| d["groups"].as_array().cloned())
        .unwrap_or_default()
}

async fn reload(prom: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(format!("http://{prom}/-/reload"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

fn last_eval(groups: &[Value]) -> String {
    groups
        .first()
        .and_then(|g| g["lastEvaluation"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn start(dir: &Path, prom: &str) -> ChildGuard {
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
        ]);
    ChildGuard::spawn("lookout serve", &mut cmd, &dir.join("serve.log")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rule_files_are_refused_on_reload_and_old_rules_keep_running() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let rules = dir.join("rules.yml");
    std::fs::write(&rules, GOOD).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  evaluation_interval: 1s\nrule_files:\n  - {}\n",
            rules.display()
        ),
    )
    .unwrap();
    let prom = format!("127.0.0.1:{}", free_port());
    let api = PromApi::new("lookout", &prom);
    let mut serve = start(dir, &prom);
    api.wait_ready("/-/ready", Duration::from_secs(30), &mut serve)
        .await
        .unwrap();
    assert!(
        alerts_common::eventually(Duration::from_secs(10), async || {
            groups(&api)
                .await
                .first()
                .is_some_and(|g| g["rules"][0]["health"] == "ok")
        })
        .await,
        "group never evaluated"
    );

    for (what, text, line) in BAD {
        std::fs::write(&rules, text).unwrap();
        let (status, body) = reload(&prom).await;
        assert_eq!(status, 500, "{what}: reload must fail: {body}");
        let want = format!("{}: {line}", rules.display());
        assert!(
            body.contains(&want),
            "{what}: error must name {want}: {body}"
        );
        let info = api
            .get_data("/api/v1/status/runtimeinfo", &[])
            .await
            .unwrap();
        assert_eq!(info["reloadConfigSuccess"], false, "{what}");

        // The old rules are still there and still evaluated.
        let before = groups(&api).await;
        assert_eq!(before.len(), 1, "{what}: {before:?}");
        let rule_names: Vec<&str> = before[0]["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert_eq!(rule_names, ["Always"], "{what}");
        assert_eq!(before[0]["rules"][0]["health"], "ok", "{what}");
        let t0 = last_eval(&before);
        assert!(
            alerts_common::eventually(Duration::from_secs(5), async || {
                last_eval(&groups(&api).await) != t0
            })
            .await,
            "{what}: the running group stopped being evaluated"
        );
    }

    // A valid change reloads.
    std::fs::write(&rules, GOOD.replace("Always", "Renamed")).unwrap();
    let (status, body) = reload(&prom).await;
    assert_eq!(status, 200, "{body}");
    let g = groups(&api).await;
    assert_eq!(g[0]["rules"][0]["name"], "Renamed");
    let info = api
        .get_data("/api/v1/status/runtimeinfo", &[])
        .await
        .unwrap();
    assert_eq!(info["reloadConfigSuccess"], true);
}
