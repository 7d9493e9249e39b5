//! `/api/v1/query` and `/api/v1/query_range`: parameters, errors, result shapes, Grafana's
//! data source test, timeouts.

mod common;

use std::time::Duration;

use common::*;
use lookout_prom_api::ApiLimits;
use serde_json::json;

// ---- parameter errors (independent of the engine) ----

#[tokio::test]
async fn bad_time_parameter() {
    let f = fixture();
    let r = get(&f.app, "/api/v1/query?query=up&time=x").await;
    let msg = r.assert_error(400, "bad_data");
    assert_eq!(
        msg,
        r#"invalid parameter "time": invalid time value for 'time': cannot parse "x" to a valid timestamp"#
    );
    // The exact envelope, keys in Prometheus's order.
    assert_eq!(
        r.body,
        r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"time\": invalid time value for 'time': cannot parse \"x\" to a valid timestamp"}"#
    );
    assert_eq!(r.content_type, "application/json");
}

#[tokio::test]
async fn range_parameter_errors() {
    let f = fixture();
    let cases = [
        (
            "start=x&end=2&step=1",
            r#"invalid parameter "start": cannot parse "x" to a valid timestamp"#,
        ),
        (
            "start=1&end=&step=1",
            r#"invalid parameter "end": cannot parse "" to a valid timestamp"#,
        ),
        (
            "start=10&end=2&step=1",
            r#"invalid parameter "end": end timestamp must not be before start time"#,
        ),
        (
            "start=1&end=2",
            r#"invalid parameter "step": cannot parse "" to a valid duration"#,
        ),
        (
            "start=1&end=2&step=abc",
            r#"invalid parameter "step": cannot parse "abc" to a valid duration"#,
        ),
        (
            "start=1&end=2&step=0",
            r#"invalid parameter "step": zero or negative query resolution step widths are not accepted. Try a positive integer"#,
        ),
        (
            "start=1&end=2&step=-5s",
            r#"invalid parameter "step": cannot parse "-5s" to a valid duration"#,
        ),
        (
            "start=1&end=2&step=-5",
            r#"invalid parameter "step": zero or negative query resolution step widths are not accepted. Try a positive integer"#,
        ),
        (
            "start=0&end=11001&step=1",
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ),
        (
            "start=0&end=10&step=1&timeout=soon",
            r#"invalid parameter "timeout": cannot parse "soon" to a valid duration"#,
        ),
    ];
    for (q, want) in cases {
        let r = get(&f.app, &format!("/api/v1/query_range?query=up&{q}")).await;
        let msg = r.assert_error(400, "bad_data");
        assert_eq!(msg, want, "for {q}");
        // The same through a POST form.
        let r = post_form(&f.app, "/api/v1/query_range", &format!("query=up&{q}")).await;
        assert_eq!(r.assert_error(400, "bad_data"), want, "POST {q}");
    }
}

#[tokio::test]
async fn exactly_11000_points_is_allowed_past_parameter_checks() {
    let f = fixture();
    // 11,000 steps is the limit itself: not rejected by the resolution check.
    let r = get(
        &f.app,
        "/api/v1/query_range?query=up&start=0&end=11000&step=1",
    )
    .await;
    assert!(
        !r.body.contains("exceeded maximum resolution"),
        "{}",
        r.body
    );
}

// ---- results (these need the PromQL engine) ----

#[tokio::test]
async fn grafana_save_and_test() {
    let f = fixture();
    // Grafana's health check: POST form (default) or GET, instant `1+1` at time=4 ...
    let r = post_form(&f.app, "/api/v1/query", "query=1%2B1&time=4").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.content_type, "application/json");
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}"#
    );
    let r = get(&f.app, "/api/v1/query?query=1%2B1&time=4").await;
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}"#
    );
    // ... then the build info.
    let r = get(&f.app, "/api/v1/status/buildinfo").await;
    let d = r.data();
    assert!(d["version"].is_string(), "{}", r.body);
    for k in ["revision", "branch", "buildUser", "buildDate", "goVersion"] {
        assert!(d[k].is_string(), "missing {k}: {}", r.body);
    }
}

#[tokio::test]
async fn instant_vector_shape() {
    let f = fixture();
    let r = get(&f.app, &format!("/api/v1/query?query=up&time={LAST}")).await;
    let d = r.data();
    assert_eq!(d["resultType"], "vector");
    assert_eq!(
        d["result"],
        json!([
            {"metric": {"__name__": "up", "instance": "a:1", "job": "api"}, "value": [LAST, "1"]},
            {"metric": {"__name__": "up", "instance": "b:1", "job": "db"}, "value": [LAST, "0"]},
        ])
    );
}

#[tokio::test]
async fn instant_query_with_fractional_time_and_rfc3339() {
    let f = fixture();
    let r = get(
        &f.app,
        "/api/v1/query?query=up%7Bjob%3D%22api%22%7D&time=1700000600.5",
    )
    .await;
    assert!(
        r.body.contains(r#""value":[1700000600.500,"1"]"#),
        "{}",
        r.body
    );
    let r = get(
        &f.app,
        "/api/v1/query?query=up%7Bjob%3D%22api%22%7D&time=2023-11-14T22:23:20Z",
    )
    .await;
    assert!(r.body.contains(r#""value":[1700000600,"1"]"#), "{}", r.body);
}

#[tokio::test]
async fn range_matrix_shape() {
    let f = fixture();
    let uri = format!(
        "/api/v1/query_range?query=up%7Bjob%3D%22api%22%7D&start={T0}&end={}&step=15s",
        T0 + 60
    );
    let r = get(&f.app, &uri).await;
    let d = r.data();
    assert_eq!(d["resultType"], "matrix");
    let values: Vec<_> = (0..5).map(|i| json!([T0 + i * 15, "1"])).collect();
    assert_eq!(
        d["result"],
        json!([{"metric": {"__name__": "up", "instance": "a:1", "job": "api"}, "values": values}])
    );
    // POST form gives the same.
    let form = format!(
        "query={}&start={T0}&end={}&step=15",
        enc(r#"up{job="api"}"#),
        T0 + 60
    );
    let r2 = post_form(&f.app, "/api/v1/query_range", &form).await;
    assert_eq!(r2.body, r.body);
}

#[tokio::test]
async fn range_of_scalar_is_one_unlabelled_series() {
    let f = fixture();
    let r = get(&f.app, "/api/v1/query_range?query=2&start=0&end=30&step=15").await;
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[0,"2"],[15,"2"],[30,"2"]]}]}}"#
    );
}

#[tokio::test]
async fn string_and_special_values() {
    let f = fixture();
    let r = get(
        &f.app,
        &format!("/api/v1/query?query={}&time=10", enc(r#""hello""#)),
    )
    .await;
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"string","result":[10,"hello"]}}"#
    );
    let r = get(
        &f.app,
        &format!("/api/v1/query?query={}&time=10", enc("1/0")),
    )
    .await;
    assert!(r.body.contains(r#"[10,"+Inf"]"#), "{}", r.body);
    let r = get(
        &f.app,
        &format!("/api/v1/query?query={}&time=10", enc("-1/0")),
    )
    .await;
    assert!(r.body.contains(r#"[10,"-Inf"]"#), "{}", r.body);
    let r = get(
        &f.app,
        &format!("/api/v1/query?query={}&time=10", enc("0/0")),
    )
    .await;
    assert!(r.body.contains(r#"[10,"NaN"]"#), "{}", r.body);
}

#[tokio::test]
async fn bad_promql_is_bad_data_with_position() {
    let f = fixture();
    let r = get(
        &f.app,
        &format!("/api/v1/query?query={}&time=10", enc("sum(up")),
    )
    .await;
    let msg = r.assert_error(400, "bad_data");
    assert!(msg.starts_with(r#"invalid parameter "query": "#), "{msg}");
    assert!(msg.contains("parse error"), "{msg}");
    let r = get(
        &f.app,
        &format!(
            "/api/v1/query_range?query={}&start=0&end=10&step=1",
            enc("up +")
        ),
    )
    .await;
    let msg = r.assert_error(400, "bad_data");
    assert!(msg.starts_with(r#"invalid parameter "query": "#), "{msg}");
}

#[tokio::test]
async fn execution_errors_are_422() {
    let f = fixture();
    // Many-to-many matching: both sides have two `up` series with the same (empty) match key.
    let q = enc("up + on() up");
    let r = get(&f.app, &format!("/api/v1/query?query={q}&time={LAST}")).await;
    r.assert_error(422, "execution");
}

#[tokio::test]
async fn query_timeout_is_503() {
    let f = slow_fixture(Duration::from_millis(1500), ApiLimits::default());
    let r = get(
        &f.app,
        &format!("/api/v1/query?query=up&time={LAST}&timeout=100ms"),
    )
    .await;
    let msg = r.assert_error(503, "timeout");
    assert!(msg.contains("query timed out"), "{msg}");
}

#[tokio::test]
async fn server_timeout_caps_the_parameter() {
    let limits = ApiLimits {
        query_timeout: Duration::from_millis(100),
        ..ApiLimits::default()
    };
    let f = slow_fixture(Duration::from_millis(1500), limits);
    let r = get(
        &f.app,
        &format!("/api/v1/query?query=up&time={LAST}&timeout=1h"),
    )
    .await;
    r.assert_error(503, "timeout");
}

#[tokio::test]
async fn queued_query_times_out_in_queue() {
    let limits = ApiLimits {
        max_concurrent_queries: 1,
        ..ApiLimits::default()
    };
    let f = slow_fixture(Duration::from_millis(1500), limits);
    let app = f.app.clone();
    let first =
        tokio::spawn(
            async move { get(&app, &format!("/api/v1/query?query=up&time={LAST}")).await },
        );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = get(&f.app, "/api/v1/query?query=1&time=1&timeout=100ms").await;
    let msg = r.assert_error(503, "timeout");
    assert_eq!(msg, "query timed out in query queue");
    let first = first.await.unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
}

#[tokio::test]
async fn query_metrics_are_recorded() {
    let f = fixture();
    let _ = get(&f.app, "/api/v1/query?query=1&time=1").await;
    let _ = get(&f.app, "/api/v1/query_range?query=1&start=0&end=1&step=1").await;
    let m = metrics_om(&f.app).await;
    assert!(
        m.body
            .contains(r#"lookout_query_duration_seconds_count{type="instant"} 1"#),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains(r#"lookout_query_duration_seconds_count{type="range"} 1"#),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains(r#"lookout_http_requests_total{handler="/api/v1/query","#),
        "{}",
        m.body
    );
}

#[tokio::test]
async fn exemplars_are_empty_and_validated() {
    let f = fixture();
    let r = get(&f.app, "/api/v1/query_exemplars?query=up&start=1&end=2").await;
    assert_eq!(r.body, r#"{"status":"success","data":[]}"#);
    let r = get(&f.app, "/api/v1/query_exemplars?query=up&start=5&end=2").await;
    assert_eq!(
        r.assert_error(400, "bad_data"),
        "end timestamp must not be before start timestamp"
    );
    let r = get(&f.app, "/api/v1/query_exemplars?query=up%7B&start=1&end=2").await;
    r.assert_error(400, "bad_data");
}
