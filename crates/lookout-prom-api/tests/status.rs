//! Targets, metadata, status pages, lifecycle endpoints and `/metrics`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::http::Request;
use common::*;
use lookout_prom_api::{
    ActiveTarget, DroppedTarget, HeadStats, MetricMetadata, TargetHealth, TargetMetadata,
    TargetsProvider, TsdbStatus,
};
use lookout_storage::Labels;
use serde_json::json;

struct FakeTargets;

fn target(pool: &str, instance: &str, health: TargetHealth) -> ActiveTarget {
    ActiveTarget {
        discovered_labels: Labels::from_pairs([("__address__", instance), ("job", pool)]),
        labels: Labels::from_pairs([("instance", instance), ("job", pool)]),
        scrape_pool: pool.into(),
        scrape_url: format!("http://{instance}/metrics"),
        global_url: format!("http://{instance}/metrics"),
        last_error: if health == TargetHealth::Down {
            "connection refused".into()
        } else {
            String::new()
        },
        last_scrape: if health == TargetHealth::Unknown {
            None
        } else {
            Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_250))
        },
        last_scrape_duration: Duration::from_millis(12),
        health,
        scrape_interval: Duration::from_secs(15),
        scrape_timeout: Duration::from_secs(10),
    }
}

fn md(metric: &str, typ: &str, help: &str) -> MetricMetadata {
    MetricMetadata {
        metric: metric.into(),
        metric_type: typ.into(),
        help: help.into(),
        unit: String::new(),
    }
}

impl TargetsProvider for FakeTargets {
    fn active_targets(&self) -> Vec<ActiveTarget> {
        vec![
            target("node", "n1:9100", TargetHealth::Up),
            target("api", "a1:8080", TargetHealth::Down),
            target("api", "a2:8080", TargetHealth::Unknown),
        ]
    }
    fn dropped_targets(&self) -> Vec<DroppedTarget> {
        vec![DroppedTarget {
            discovered_labels: Labels::from_pairs([("__address__", "x:1"), ("job", "api")]),
            scrape_pool: "api".into(),
        }]
    }
    fn target_metadata(&self) -> Vec<TargetMetadata> {
        vec![
            TargetMetadata {
                target: Labels::from_pairs([("instance", "a1:8080"), ("job", "api")]),
                metadata: vec![
                    md("http_requests_total", "counter", "Requests."),
                    md("http_request_duration_seconds", "histogram", "Latency."),
                ],
            },
            TargetMetadata {
                target: Labels::from_pairs([("instance", "a2:8080"), ("job", "api")]),
                metadata: vec![
                    md("http_requests_total", "counter", "Requests."),
                    md("http_requests_total", "counter", "Requests (v2)."),
                ],
            },
            TargetMetadata {
                target: Labels::from_pairs([("instance", "n1:9100"), ("job", "node")]),
                metadata: vec![md("node_load1", "gauge", "1m load average.")],
            },
        ]
    }
}

fn with_targets() -> Fixture {
    fixture_with(|mut s| {
        s.targets = Arc::new(FakeTargets);
        s
    })
}

#[tokio::test]
async fn targets_all_states() {
    let f = with_targets();
    let d = get(&f.app, "/api/v1/targets").await.data();
    let active = d["activeTargets"].as_array().unwrap();
    assert_eq!(active.len(), 3);
    // Sorted by scrape pool.
    assert_eq!(active[0]["scrapePool"], "api");
    assert_eq!(active[2]["scrapePool"], "node");
    assert_eq!(
        active[2],
        json!({
            "discoveredLabels": {"__address__": "n1:9100", "job": "node"},
            "labels": {"instance": "n1:9100", "job": "node"},
            "scrapePool": "node",
            "scrapeUrl": "http://n1:9100/metrics",
            "globalUrl": "http://n1:9100/metrics",
            "lastError": "",
            "lastScrape": "2023-11-14T22:13:20.25Z",
            "lastScrapeDuration": 0.012,
            "health": "up",
            "scrapeInterval": "15s",
            "scrapeTimeout": "10s",
        })
    );
    assert_eq!(active[0]["health"], "down");
    assert_eq!(active[0]["lastError"], "connection refused");
    assert_eq!(active[1]["lastScrape"], "0001-01-01T00:00:00Z");
    assert_eq!(
        d["droppedTargets"],
        json!([{"discoveredLabels": {"__address__": "x:1", "job": "api"}, "scrapePool": "api"}])
    );
    assert_eq!(d["droppedTargetCounts"], json!({"api": 1}));
}

#[tokio::test]
async fn targets_filters() {
    let f = with_targets();
    let d = get(&f.app, "/api/v1/targets?state=active").await.data();
    assert_eq!(d["activeTargets"].as_array().map(Vec::len), Some(3));
    assert_eq!(d["droppedTargets"], json!([]));
    let d = get(&f.app, "/api/v1/targets?state=Dropped").await.data();
    assert_eq!(d["activeTargets"], json!([]));
    assert_eq!(d["droppedTargets"].as_array().map(Vec::len), Some(1));
    let d = get(&f.app, "/api/v1/targets?scrapePool=node").await.data();
    assert_eq!(d["activeTargets"].as_array().map(Vec::len), Some(1));
    assert_eq!(d["droppedTargets"], json!([]));
    let d = get(&f.app, "/api/v1/targets?state=any&scrapePool=api")
        .await
        .data();
    assert_eq!(d["activeTargets"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn no_targets_by_default() {
    let f = fixture();
    let d = get(&f.app, "/api/v1/targets").await.data();
    assert_eq!(
        d,
        json!({"activeTargets": [], "droppedTargets": [], "droppedTargetCounts": {}})
    );
}

#[tokio::test]
async fn metadata_endpoint() {
    let f = with_targets();
    let d = get(&f.app, "/api/v1/metadata").await.data();
    assert_eq!(
        d,
        json!({
            "http_request_duration_seconds": [{"type": "histogram", "help": "Latency.", "unit": ""}],
            "http_requests_total": [
                {"type": "counter", "help": "Requests (v2).", "unit": ""},
                {"type": "counter", "help": "Requests.", "unit": ""},
            ],
            "node_load1": [{"type": "gauge", "help": "1m load average.", "unit": ""}],
        })
    );
    let d = get(&f.app, "/api/v1/metadata?metric=node_load1")
        .await
        .data();
    assert_eq!(
        d,
        json!({"node_load1": [{"type": "gauge", "help": "1m load average.", "unit": ""}]})
    );
    let d = get(&f.app, "/api/v1/metadata?limit=1").await.data();
    assert_eq!(d.as_object().map(|o| o.len()), Some(1));
    let d = get(&f.app, "/api/v1/metadata?limit_per_metric=1")
        .await
        .data();
    assert_eq!(d["http_requests_total"].as_array().map(Vec::len), Some(1));
    let d = get(&f.app, "/api/v1/metadata?metric=nope").await.data();
    assert_eq!(d, json!({}));
    let r = get(&f.app, "/api/v1/metadata?limit=abc").await;
    assert_eq!(r.assert_error(400, "bad_data"), "limit must be a number");
}

#[tokio::test]
async fn targets_metadata_endpoint() {
    let f = with_targets();
    let uri = format!(
        "/api/v1/targets/metadata?match_target={}",
        enc(r#"{job="node"}"#)
    );
    let d = get(&f.app, &uri).await.data();
    assert_eq!(
        d,
        json!([{
            "target": {"instance": "n1:9100", "job": "node"},
            "metric": "node_load1", "type": "gauge", "help": "1m load average.", "unit": ""
        }])
    );
    let d = get(
        &f.app,
        "/api/v1/targets/metadata?metric=http_requests_total&limit=2",
    )
    .await
    .data();
    assert_eq!(d.as_array().map(Vec::len), Some(2));
    assert!(d[0].get("metric").is_none(), "{d}");
    let r = get(&f.app, "/api/v1/targets/metadata?metric=nope").await;
    assert_eq!(
        r.assert_error(404, "not_found"),
        "specified metadata not found"
    );
}

#[tokio::test]
async fn status_pages() {
    let f = fixture_with(|mut s| {
        s.config_yaml = Arc::new(|| "global:\n  scrape_interval: 15s\n".to_string());
        let mut flags = BTreeMap::new();
        flags.insert("storage.tsdb.retention.time".to_string(), "7d".to_string());
        s.flags = Arc::new(flags);
        s.build_info.revision = "abc123".into();
        s
    });
    let d = get(&f.app, "/api/v1/status/config").await.data();
    assert_eq!(d, json!({"yaml": "global:\n  scrape_interval: 15s\n"}));
    let d = get(&f.app, "/api/v1/status/flags").await.data();
    assert_eq!(d, json!({"storage.tsdb.retention.time": "7d"}));
    let d = get(&f.app, "/api/v1/status/buildinfo").await.data();
    assert_eq!(d["revision"], "abc123");
    let d = get(&f.app, "/api/v1/status/runtimeinfo").await.data();
    for k in [
        "startTime",
        "CWD",
        "reloadConfigSuccess",
        "lastConfigTime",
        "storageRetention",
        "GOMAXPROCS",
    ] {
        assert!(d.get(k).is_some(), "missing {k}: {d}");
    }
    let d = get(&f.app, "/api/v1/status/tsdb").await.data();
    assert!(d["headStats"]["numSeries"].is_u64(), "{d}");
    assert!(d["seriesCountByMetricName"].is_array(), "{d}");
}

#[tokio::test]
async fn tsdb_status_counts_recent_series() {
    let f = fixture();
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut app = lookout_storage::Appendable::appender(&*f.store);
    for i in 0..3 {
        let l = Labels::from_pairs([("__name__", "recent"), ("i", &i.to_string())]);
        app.append(None, &l, now, 1.0).unwrap();
    }
    app.commit().unwrap();
    let d = get(&f.app, "/api/v1/status/tsdb").await.data();
    assert_eq!(d["headStats"]["numSeries"], 3, "{d}");
    assert_eq!(
        d["seriesCountByMetricName"],
        json!([{"name": "recent", "value": 3}])
    );
}

#[tokio::test]
async fn tsdb_status_from_provider_with_limit() {
    let seen = Arc::new(AtomicUsize::new(0));
    let seen2 = seen.clone();
    let f = fixture_with(move |mut s| {
        s.tsdb_status = Some(Arc::new(move |limit: usize| {
            seen2.store(limit, Ordering::SeqCst);
            let mut pairs = vec![("job=a".to_string(), 7), ("job=b".to_string(), 2)];
            pairs.truncate(limit);
            Ok(TsdbStatus {
                head_stats: HeadStats {
                    num_series: 9,
                    num_label_pairs: 4,
                    chunk_count: 12,
                    min_time: 1_000,
                    max_time: 2_000,
                },
                series_count_by_metric_name: vec![("up".to_string(), 9)],
                label_value_count_by_label_name: vec![("job".to_string(), 2)],
                memory_in_bytes_by_label_name: vec![("job".to_string(), 9)],
                series_count_by_label_value_pair: pairs,
            })
        }));
        s
    });
    let d = get(&f.app, "/api/v1/status/tsdb?limit=1").await.data();
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert_eq!(
        d,
        json!({
            "headStats": {"numSeries": 9, "numLabelPairs": 4, "chunkCount": 12,
                          "minTime": 1000, "maxTime": 2000},
            "seriesCountByMetricName": [{"name": "up", "value": 9}],
            "labelValueCountByLabelName": [{"name": "job", "value": 2}],
            "memoryInBytesByLabelName": [{"name": "job", "value": 9}],
            "seriesCountByLabelValuePair": [{"name": "job=a", "value": 7}],
        })
    );
    get(&f.app, "/api/v1/status/tsdb?limit=0")
        .await
        .assert_error(400, "bad_data");
    get(&f.app, "/api/v1/status/tsdb").await.data();
    assert_eq!(seen.load(Ordering::SeqCst), 10, "default limit");
}

#[tokio::test]
async fn health_and_readiness() {
    let f = fixture();
    let r = get(&f.app, "/-/healthy").await;
    assert_eq!(r.status, 200);
    let r = get(&f.app, "/-/ready").await;
    assert_eq!(r.status, 200);
    f.state.set_ready(false);
    assert_eq!(get(&f.app, "/-/ready").await.status, 503);
    assert_eq!(get(&f.app, "/api/v1/labels").await.status, 503);
    assert_eq!(get(&f.app, "/-/healthy").await.status, 200);
    f.state.set_ready(true);
    assert_eq!(get(&f.app, "/api/v1/labels").await.status, 200);
}

#[tokio::test]
async fn reload_hook() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let f = fixture_with(move |mut s| {
        s.reload = Some(Arc::new(move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            if n == 0 {
                Ok(())
            } else {
                Err("scrape_configs: job_name is required".to_string())
            }
        }));
        s
    });
    let r = send(
        &f.app,
        Request::post("/-/reload").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send(
        &f.app,
        Request::put("/-/reload").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("job_name is required"), "{}", r.body);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(get(&f.app, "/-/reload").await.status, 405);
    // Without a hook, reloading is an error, not a silent success.
    let f = fixture();
    let r = send(
        &f.app,
        Request::post("/-/reload").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, 500);
}

#[tokio::test]
async fn self_metrics_text_and_openmetrics() {
    let f = fixture();
    let _ = get(&f.app, "/api/v1/labels").await;
    let r = get(&f.app, "/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(
        r.body
            .contains("# TYPE lookout_http_requests_total counter"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains(r#"lookout_http_requests_total{handler="/api/v1/labels",code="200"} 1"#),
        "{}",
        r.body
    );
    assert!(!r.body.contains("# EOF"), "{}", r.body);
    let r = send(
        &f.app,
        Request::get("/metrics")
            .header(
                "accept",
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(
        r.content_type.starts_with("application/openmetrics-text"),
        "{}",
        r.content_type
    );
    assert!(r.body.ends_with("# EOF\n"), "{}", r.body);
    assert!(
        r.body.contains("# TYPE lookout_http_requests counter"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let f = fixture();
    assert_eq!(get(&f.app, "/api/v1/nope").await.status, 404);
}

#[tokio::test]
async fn cors_preflight_and_headers() {
    let f = fixture();
    let r = tower::ServiceExt::oneshot(
        f.app.clone(),
        Request::builder()
            .method("OPTIONS")
            .uri("/api/v1/query")
            .header("origin", "http://localhost:3001")
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(
        r.headers()["access-control-allow-methods"],
        "GET, POST, OPTIONS"
    );
}
