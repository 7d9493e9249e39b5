//! `POST /api/v1/write`: round trip, malformed bodies, invalid labels, storage rejections,
//! size limits and headers. A rejected request stores nothing.

mod common;

use axum::body::Body;
use axum::http::Request;
use common::*;
use lookout_prom_api::ApiLimits;
use lookout_remote_write::{Label, Sample, TimeSeries, WriteRequest, encode_write_request};
use lookout_storage::memory::MemStorage;
use serde_json::json;

fn ts(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels.iter().map(|(n, v)| Label::new(*n, *v)).collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        exemplars: vec![],
        histograms: vec![],
    }
}

fn write_req(body: Vec<u8>) -> Request<Body> {
    Request::post("/api/v1/write")
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(Body::from(body))
        .unwrap()
}

fn body(series: Vec<TimeSeries>) -> Vec<u8> {
    encode_write_request(&WriteRequest {
        timeseries: series,
        metadata: vec![],
    })
    .unwrap()
}

fn count(store: &MemStorage) -> usize {
    store.series_count()
}

#[tokio::test]
async fn round_trip_then_series_and_query() {
    let f = fixture();
    let before = count(&f.store);
    let t = LAST * 1000;
    let b = body(vec![
        ts(
            &[("__name__", "rw_metric"), ("job", "remote"), ("idx", "1")],
            &[(t - 30_000, 1.0), (t - 15_000, 2.0), (t, 3.5)],
        ),
        ts(
            &[("job", "remote"), ("__name__", "rw_metric"), ("idx", "2")],
            &[(t, -1.0)],
        ),
    ]);
    let r = send(&f.app, write_req(b)).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(count(&f.store), before + 2);
    let d = get(&f.app, "/api/v1/series?match[]=rw_metric").await.data();
    assert_eq!(
        d,
        json!([
            {"__name__": "rw_metric", "idx": "1", "job": "remote"},
            {"__name__": "rw_metric", "idx": "2", "job": "remote"},
        ])
    );
    let m = metrics_om(&f.app).await;
    assert!(
        m.body
            .contains("lookout_remote_write_samples_received_total 4"),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains(r#"lookout_remote_write_requests_total{code="204"} 1"#),
        "{}",
        m.body
    );
    // Through the engine.
    let r = get(
        &f.app,
        &format!("/api/v1/query?query=rw_metric&time={LAST}"),
    )
    .await;
    assert_eq!(
        r.data()["result"],
        json!([
            {"metric": {"__name__": "rw_metric", "idx": "1", "job": "remote"}, "value": [LAST, "3.5"]},
            {"metric": {"__name__": "rw_metric", "idx": "2", "job": "remote"}, "value": [LAST, "-1"]},
        ])
    );
}

#[tokio::test]
async fn missing_headers_are_tolerated_as_v1() {
    let f = fixture();
    let b = body(vec![ts(&[("__name__", "plain")], &[(1000, 1.0)])]);
    let r = send(
        &f.app,
        Request::post("/api/v1/write").body(Body::from(b)).unwrap(),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
}

#[tokio::test]
async fn bad_snappy_is_400_and_stores_nothing() {
    let f = fixture();
    let before = count(&f.store);
    let r = send(
        &f.app,
        write_req(b"\xff\xff\xff\xff\x0fnot snappy at all".to_vec()),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("snappy"), "{}", r.body);
    assert_eq!(count(&f.store), before);
}

#[tokio::test]
async fn bad_protobuf_is_400() {
    let f = fixture();
    let before = count(&f.store);
    let garbage = snap::raw::Encoder::new()
        .compress_vec(b"\x0a\xff\xff\xff\xff\x0f\x01")
        .unwrap();
    let r = send(&f.app, write_req(garbage)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("protobuf"), "{}", r.body);
    assert_eq!(count(&f.store), before);
}

#[tokio::test]
async fn invalid_labels_are_400_and_nothing_of_the_request_is_stored() {
    let f = fixture();
    let before = count(&f.store);
    let good = ts(&[("__name__", "good_metric")], &[(1000, 1.0)]);
    let bad_cases = [
        ts(&[("__name__", "x"), ("", "v")], &[(1000, 1.0)]),
        ts(&[("__name__", "x"), ("a", "1"), ("a", "2")], &[(1000, 1.0)]),
        ts(&[("job", "no-name")], &[(1000, 1.0)]),
    ];
    for bad in bad_cases {
        let r = send(&f.app, write_req(body(vec![good.clone(), bad]))).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(
            count(&f.store),
            before,
            "a rejected request must store nothing"
        );
    }
    let d = get(&f.app, "/api/v1/series?match[]=good_metric")
        .await
        .data();
    assert_eq!(d, json!([]));
}

#[tokio::test]
async fn out_of_order_and_duplicates_are_400_and_roll_back() {
    let f = fixture();
    let before = count(&f.store);
    // The fixture's `up{job="api"}` has samples up to LAST; an older one is out of order.
    let ooo = ts(
        &[("__name__", "up"), ("job", "api"), ("instance", "a:1")],
        &[(T0 * 1000 + 1, 1.0)],
    );
    let fresh = ts(&[("__name__", "fresh_metric")], &[(1000, 1.0)]);
    let r = send(&f.app, write_req(body(vec![fresh.clone(), ooo]))).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("out of order"), "{}", r.body);
    assert_eq!(count(&f.store), before);
    // Same timestamp, different value.
    let dup = ts(
        &[("__name__", "up"), ("job", "api"), ("instance", "a:1")],
        &[(LAST * 1000, 7.0)],
    );
    let r = send(&f.app, write_req(body(vec![fresh, dup]))).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(count(&f.store), before);
    let m = metrics_om(&f.app).await;
    assert!(
        m.body
            .contains(r#"lookout_remote_write_requests_total{code="400"} 2"#),
        "{}",
        m.body
    );
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let limits = ApiLimits {
        remote_write_max_body_bytes: 64,
        ..ApiLimits::default()
    };
    let f = fixture_with(|s| s.with_limits(limits));
    let big = body(vec![ts(
        &[("__name__", "x"), ("pad", &"p".repeat(500))],
        &[(1, 1.0)],
    )]);
    assert!(big.len() > 64);
    let r = send(&f.app, write_req(big)).await;
    assert_eq!(r.status, 413, "{}", r.body);

    let limits = ApiLimits {
        remote_write_max_decoded_bytes: 100,
        ..ApiLimits::default()
    };
    let f = fixture_with(|s| s.with_limits(limits));
    let compressible = body(vec![ts(
        &[("__name__", "x"), ("pad", &"p".repeat(5000))],
        &[(1, 1.0)],
    )]);
    let r = send(&f.app, write_req(compressible)).await;
    assert_eq!(r.status, 413, "{}", r.body);
}

#[tokio::test]
async fn unsupported_encodings_and_versions_are_415() {
    let f = fixture();
    let b = body(vec![ts(&[("__name__", "x")], &[(1, 1.0)])]);
    let r = send(
        &f.app,
        Request::post("/api/v1/write")
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "gzip")
            .body(Body::from(b.clone()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 415, "{}", r.body);
    let r = send(
        &f.app,
        Request::post("/api/v1/write")
            .header(
                "content-type",
                "application/x-protobuf;proto=io.prometheus.write.v2.Request",
            )
            .header("content-encoding", "snappy")
            .body(Body::from(b))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 415, "{}", r.body);
}

#[tokio::test]
async fn native_histograms_are_rejected_not_silently_dropped() {
    let f = fixture();
    let before = count(&f.store);
    let mut s = ts(&[("__name__", "nh")], &[]);
    s.histograms.push(lookout_remote_write::Histogram {
        timestamp: 1000,
        sum: 1.0,
        ..Default::default()
    });
    let r = send(&f.app, write_req(body(vec![s]))).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("native histogram"), "{}", r.body);
    assert_eq!(count(&f.store), before);
}

#[tokio::test]
async fn get_is_not_allowed() {
    let f = fixture();
    let r = get(&f.app, "/api/v1/write").await;
    assert_eq!(r.status, 405);
}
