//! `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/<name>/values` with match[], time range
//! and limit.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn series_requires_match() {
    let f = fixture();
    let r = get(&f.app, "/api/v1/series").await;
    assert_eq!(
        r.assert_error(400, "bad_data"),
        "no match[] parameter provided"
    );
}

#[tokio::test]
async fn series_by_name_and_union_of_matchers() {
    let f = fixture();
    let r = get(&f.app, "/api/v1/series?match[]=up").await;
    assert_eq!(
        r.data(),
        json!([
            {"__name__": "up", "instance": "a:1", "job": "api"},
            {"__name__": "up", "instance": "b:1", "job": "db"},
        ])
    );
    // Two selectors: union, deduplicated, sorted.
    let uri = format!(
        "/api/v1/series?match[]={}&match[]={}",
        enc(r#"{job="db"}"#),
        enc(r#"up{job=~"api|db"}"#)
    );
    let d = get(&f.app, &uri).await.data();
    assert_eq!(d.as_array().map(Vec::len), Some(2));
    // POST form, regex and negative matchers.
    let form = format!(
        "match%5B%5D={}",
        enc(r#"http_requests_total{status!~"2.."}"#)
    );
    let d = post_form(&f.app, "/api/v1/series", &form).await.data();
    assert_eq!(
        d,
        json!([{"__name__": "http_requests_total", "instance": "a:1", "job": "api", "method": "POST", "status": "500"}])
    );
}

#[tokio::test]
async fn series_limit_truncates_with_warning() {
    let f = fixture();
    let r = get(
        &f.app,
        &format!("/api/v1/series?match[]={}&limit=1", enc(r#"{job=~".+"}"#)),
    )
    .await;
    let j = r.json();
    assert_eq!(j["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(j["warnings"], json!(["results truncated due to limit"]));
    // A limit that is not exceeded adds no warning.
    let j = get(&f.app, "/api/v1/series?match[]=up&limit=2")
        .await
        .json();
    assert!(j.get("warnings").is_none(), "{j}");
    let r = get(&f.app, "/api/v1/series?match[]=up&limit=-1").await;
    assert_eq!(
        r.assert_error(400, "bad_data"),
        r#"invalid parameter "limit": limit must be non-negative"#
    );
    let r = get(&f.app, "/api/v1/series?match[]=up&limit=x").await;
    r.assert_error(400, "bad_data");
}

#[tokio::test]
async fn series_time_range() {
    let f = fixture();
    // Entirely before the data.
    let d = get(
        &f.app,
        &format!("/api/v1/series?match[]=up&start=0&end={}", T0 - 1),
    )
    .await
    .data();
    assert_eq!(d, json!([]));
    let d = get(
        &f.app,
        &format!("/api/v1/series?match[]=up&start={T0}&end={T0}"),
    )
    .await
    .data();
    assert_eq!(d.as_array().map(Vec::len), Some(2));
    let r = get(&f.app, "/api/v1/series?match[]=up&start=yesterday").await;
    assert_eq!(
        r.assert_error(400, "bad_data"),
        r#"invalid parameter "start": invalid time value for 'start': cannot parse "yesterday" to a valid timestamp"#
    );
}

#[tokio::test]
async fn bad_selectors() {
    let f = fixture();
    let r = get(&f.app, &format!("/api/v1/series?match[]={}", enc("up{"))).await;
    let msg = r.assert_error(400, "bad_data");
    assert!(msg.starts_with(r#"invalid parameter "match[]": "#), "{msg}");
    let r = get(
        &f.app,
        &format!("/api/v1/series?match[]={}", enc(r#"{job=~".*"}"#)),
    )
    .await;
    let msg = r.assert_error(400, "bad_data");
    assert!(msg.contains("at least one non-empty matcher"), "{msg}");
    let r = get(
        &f.app,
        &format!("/api/v1/labels?match[]={}", enc("rate(up[5m])")),
    )
    .await;
    r.assert_error(400, "bad_data");
}

#[tokio::test]
async fn label_names() {
    let f = fixture();
    let d = get(&f.app, "/api/v1/labels").await.data();
    assert_eq!(
        d,
        json!(["__name__", "instance", "job", "method", "status"])
    );
    let d = get(&f.app, "/api/v1/labels?match[]=up").await.data();
    assert_eq!(d, json!(["__name__", "instance", "job"]));
    let d = post_form(&f.app, "/api/v1/labels", "match[]=up")
        .await
        .data();
    assert_eq!(d, json!(["__name__", "instance", "job"]));
    let j = get(&f.app, "/api/v1/labels?limit=2").await.json();
    assert_eq!(j["data"], json!(["__name__", "instance"]));
    assert_eq!(j["warnings"], json!(["results truncated due to limit"]));
    let d = get(&f.app, &format!("/api/v1/labels?start=0&end={}", T0 - 1))
        .await
        .data();
    assert_eq!(d, json!([]));
}

#[tokio::test]
async fn label_values() {
    let f = fixture();
    assert_eq!(
        get(&f.app, "/api/v1/label/job/values").await.data(),
        json!(["api", "db"])
    );
    assert_eq!(
        get(&f.app, "/api/v1/label/__name__/values").await.data(),
        json!(["http_requests_total", "up"])
    );
    let uri = format!(
        "/api/v1/label/instance/values?match[]={}",
        enc(r#"up{job="db"}"#)
    );
    assert_eq!(get(&f.app, &uri).await.data(), json!(["b:1"]));
    let j = get(&f.app, "/api/v1/label/job/values?limit=1").await.json();
    assert_eq!(j["data"], json!(["api"]));
    assert_eq!(j["warnings"], json!(["results truncated due to limit"]));
    assert_eq!(
        get(&f.app, "/api/v1/label/nope/values").await.data(),
        json!([])
    );
}

#[tokio::test]
async fn label_values_of_escaped_utf8_name() {
    let f = fixture();
    let labels = lookout_storage::Labels::from_pairs([
        ("__name__", "otel_metric"),
        ("service.name", "cart"),
    ]);
    let mut app = lookout_storage::Appendable::appender(&*f.store);
    app.append(None, &labels, T0 * 1000, 1.0).unwrap();
    app.commit().unwrap();
    // Prometheus's `U__` escaping: `.` is `_2e_`.
    let d = get(&f.app, "/api/v1/label/U__service_2e_name/values")
        .await
        .data();
    assert_eq!(d, json!(["cart"]));
}
