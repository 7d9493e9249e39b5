//! `lookout check rules` and `lookout test rules`: output and exit status as promtool's.

use std::path::PathBuf;
use std::process::Command;

fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/wealist/docker/monitoring/prometheus/rules")
}

fn lookout(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(args)
        .output()
        .expect("run lookout");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn check_rules_accepts_the_seed_alerts_and_rejects_bad_files() {
    let good = rules_dir().join("alerts.yml");
    let (ok, out) = lookout(&["check", "rules", good.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("SUCCESS: 5 rules found"), "{out}");

    // The Loki ruler file passes as LogQL (promtool would reject its expressions).
    let logs = rules_dir().join("loki/log-alerts.yml");
    let (ok, out) = lookout(&["check", "rules", logs.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("SUCCESS: 1 rules found (LogQL)"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    annotations: { s: '{{ nosuch }}' }\n",
    )
    .unwrap();
    let (ok, out) = lookout(&["check", "rules", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        out.contains("FAILED:") && out.contains("function \"nosuch\" not defined"),
        "{out}"
    );
}

#[test]
fn test_rules_runs_the_seed_unit_tests() {
    let t = rules_dir().join("tests/alerts_test.yml");
    let (ok, out) = lookout(&["test", "rules", t.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}
