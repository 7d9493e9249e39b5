//! `/api/v1/rules` and `/api/v1/alerts` over a fixed RulesProvider.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use lookout_prom_api::{AlertInfo, RuleGroupInfo, RuleInfo, RuleInfoKind, RulesProvider};
use lookout_storage::Labels;

struct Fixed;

impl RulesProvider for Fixed {
    fn rule_groups(&self) -> Vec<RuleGroupInfo> {
        let alert = AlertInfo {
            labels: Labels::from_pairs([("alertname", "Down"), ("job", "api")]),
            annotations: BTreeMap::from([("summary".to_string(), "api down".to_string())]),
            state: "firing".into(),
            active_at_ms: 1_700_000_000_000,
            value: 0.0,
            keep_firing_since_ms: None,
        };
        vec![
            RuleGroupInfo {
                name: "avail".into(),
                file: "/rules/a.yml".into(),
                interval_s: 15.0,
                limit: 0,
                evaluation_seconds: 0.001,
                last_evaluation_ms: Some(1_700_000_060_000),
                rules: vec![
                    RuleInfo {
                        name: "Down".into(),
                        query: "up == 0".into(),
                        labels: BTreeMap::from([("severity".to_string(), "critical".to_string())]),
                        health: "ok".into(),
                        last_error: String::new(),
                        evaluation_seconds: 0.0005,
                        last_evaluation_ms: Some(1_700_000_060_000),
                        kind: RuleInfoKind::Alerting {
                            duration_s: 60.0,
                            keep_firing_for_s: 0.0,
                            annotations: BTreeMap::from([(
                                "summary".to_string(),
                                "{{ $labels.job }} down".to_string(),
                            )]),
                            state: "firing".into(),
                            alerts: vec![alert],
                        },
                    },
                    RuleInfo {
                        name: "job:up:sum".into(),
                        query: "sum by (job) (up)".into(),
                        labels: BTreeMap::new(),
                        health: "err".into(),
                        last_error: "query timed out".into(),
                        evaluation_seconds: 0.0,
                        last_evaluation_ms: None,
                        kind: RuleInfoKind::Recording,
                    },
                ],
            },
            RuleGroupInfo {
                name: "other".into(),
                file: "/rules/b.yml".into(),
                interval_s: 60.0,
                limit: 5,
                evaluation_seconds: 0.0,
                last_evaluation_ms: None,
                rules: Vec::new(),
            },
        ]
    }
}

fn app() -> axum::Router {
    fixture_with(|mut s| {
        s.rules = Arc::new(Fixed);
        s
    })
    .app
}

#[tokio::test]
async fn rules_in_prometheus_shape() {
    let r = get(&app(), "/api/v1/rules").await;
    let d = r.data();
    let g = &d["groups"][0];
    assert_eq!(g["name"], "avail");
    assert_eq!(g["file"], "/rules/a.yml");
    assert_eq!(g["interval"], 15.0);
    assert_eq!(g["lastEvaluation"], "2023-11-14T22:14:20Z");
    let a = &g["rules"][0];
    assert_eq!(a["type"], "alerting");
    assert_eq!(a["state"], "firing");
    assert_eq!(a["duration"], 60.0);
    assert_eq!(a["health"], "ok");
    assert!(a.get("lastError").is_none());
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(a["alerts"][0]["value"], "0e+00");
    assert_eq!(a["alerts"][0]["activeAt"], "2023-11-14T22:13:20Z");
    let rec = &g["rules"][1];
    assert_eq!(rec["type"], "recording");
    assert_eq!(rec["lastError"], "query timed out");
    assert_eq!(rec["lastEvaluation"], "0001-01-01T00:00:00Z");
    assert_eq!(d["groups"][1]["limit"], 5);
}

#[tokio::test]
async fn rules_filters() {
    let app = app();
    let d = get(&app, "/api/v1/rules?type=record").await.data();
    assert_eq!(d["groups"].as_array().unwrap().len(), 1);
    assert_eq!(d["groups"][0]["rules"].as_array().unwrap().len(), 1);
    assert_eq!(d["groups"][0]["rules"][0]["name"], "job:up:sum");
    let d = get(&app, "/api/v1/rules?rule_name[]=Down").await.data();
    assert_eq!(d["groups"][0]["rules"][0]["name"], "Down");
    let d = get(&app, "/api/v1/rules?rule_group[]=other").await.data();
    assert_eq!(d["groups"][0]["name"], "other");
    let d = get(&app, "/api/v1/rules?group_name[]=other").await.data();
    assert_eq!(d["groups"].as_array().unwrap().len(), 1);
    let d = get(
        &app,
        &format!("/api/v1/rules?file[]={}", enc("/rules/b.yml")),
    )
    .await
    .data();
    assert_eq!(d["groups"][0]["name"], "other");
    let d = get(&app, "/api/v1/rules?exclude_alerts=true").await.data();
    assert!(d["groups"][0]["rules"][0].get("alerts").is_none());
    get(&app, "/api/v1/rules?type=bogus")
        .await
        .assert_error(400, "bad_data");
}

#[tokio::test]
async fn alerts_list() {
    let d = get(&app(), "/api/v1/alerts").await.data();
    let a = &d["alerts"][0];
    assert_eq!(a["labels"]["alertname"], "Down");
    assert_eq!(a["annotations"]["summary"], "api down");
    assert_eq!(a["state"], "firing");
    assert_eq!(d["alerts"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn empty_without_provider() {
    let d = get(&fixture().app, "/api/v1/rules").await.data();
    assert_eq!(d["groups"].as_array().unwrap().len(), 0);
    let d = get(&fixture().app, "/api/v1/alerts").await.data();
    assert_eq!(d["alerts"].as_array().unwrap().len(), 0);
}
