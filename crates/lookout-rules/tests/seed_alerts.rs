//! The repository's five seed alerts: the rule file checks clean and its unit tests pass
//! under Lookout's runner (`promtool test rules` runs the same file in `tests/promtool.rs`).

use std::path::PathBuf;

use lookout_rules::check::check_rule_files;
use lookout_rules::unittest::run_test_file;
use lookout_rules::{Language, RuleKind};

fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/wealist/docker/monitoring/prometheus/rules")
}

#[test]
fn alerts_file_checks_clean() {
    let r = check_rule_files(&[rules_dir().join("alerts.yml")], Language::Promql);
    assert!(r.ok, "{}", r.output);
    assert_eq!(r.rules, 5);
    let f =
        lookout_rules::file::load_file(&rules_dir().join("alerts.yml"), Language::Promql).unwrap();
    let mut names: Vec<(String, String, i64)> = f
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .map(|r| match &r.kind {
            RuleKind::Alert(n) => (n.clone(), r.labels["severity"].clone(), r.for_ms),
            RuleKind::Record(n) => panic!("unexpected recording rule {n}"),
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ("HighErrorRate".into(), "warning".into(), 120_000),
            ("RedisHighMemory".into(), "warning".into(), 300_000),
            ("ServiceDown".into(), "critical".into(), 60_000),
            ("SlowResponses".into(), "warning".into(), 300_000),
            ("TrafficSpike".into(), "info".into(), 120_000),
        ]
    );
    for g in &f.groups {
        for r in &g.rules {
            for k in [
                "summary",
                "description",
                "summary_ko",
                "description_ko",
                "runbook",
                "runbook_url",
            ] {
                assert!(r.annotations.contains_key(k), "{} lacks {k}", r.name());
            }
        }
    }
}

#[test]
fn unit_tests_pass_under_lookout() {
    let r = run_test_file(&rules_dir().join("tests/alerts_test.yml"));
    assert!(r.ok, "{}", r.output);
    assert!(r.output.contains("SUCCESS"));
}

#[test]
fn a_wrong_expectation_fails() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(rules_dir().join("tests/alerts_test.yml"))
        .unwrap()
        .replace(
            "../alerts.yml",
            &rules_dir().join("alerts.yml").display().to_string(),
        )
        .replace("9.091%", "9.1%");
    let p = dir.path().join("t.yml");
    std::fs::write(&p, text).unwrap();
    let r = run_test_file(&p);
    assert!(!r.ok);
    assert!(
        r.output.contains("alertname: HighErrorRate, time: 3m"),
        "{}",
        r.output
    );
}
