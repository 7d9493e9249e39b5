//! Property tests: label values survive both exposition formats, odd requests never break the
//! layer or the cardinality bound, and HyperLogLog merging equals inserting the union.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::routing::get;
use lookout_exposition::{Format, parse_samples};
use lookout_instrument::hll::HyperLogLog;
use lookout_instrument::{HttpMetricsConfig, Metrics, label_set};
use proptest::prelude::*;
use tower::ServiceExt;

label_set! {
    struct Odd { first: String, second: String }
}

fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    x = (x ^ (x >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn label_values_round_trip(first in any::<String>(), second in "[\"\\\\\n a-zé{}=,]{0,20}") {
        let mut metrics = Metrics::without_process_metrics();
        let fam = metrics.gauge_family::<Odd>("odd_values", "Odd label values.").expect("family");
        let counts = metrics.counter_family::<Odd>("odd_events_total", "Odd events.").expect("family");
        let exporter = metrics.exporter();
        let labels = Odd { first: first.clone(), second: second.clone() };
        fam.get_or_create(&labels).set(7);
        counts.get_or_create(&labels).inc();
        for format in [Format::PrometheusText, Format::OpenMetrics] {
            let body = exporter.render(format).expect("renders");
            let samples = parse_samples(&body, format).expect("parses");
            let got: Vec<_> = samples.iter().map(|s| (s.name.as_str(), s.labels.clone(), s.value)).collect();
            let want = vec![("first".to_owned(), first.clone()), ("second".to_owned(), second.clone())];
            prop_assert!(got.contains(&("odd_values", want.clone(), 7.0)), "{format:?}: {got:?}");
            prop_assert!(got.contains(&("odd_events_total", want, 1.0)), "{format:?}: {got:?}");
        }
    }

    #[test]
    fn odd_requests_are_bounded(
        method in "[A-Z]{1,12}",
        path in "(/[a-zA-Z0-9._~-]{0,40}){1,8}",
        status in 100u16..=999,
    ) {
        let mut metrics = Metrics::without_process_metrics();
        let layer = metrics.http_layer(HttpMetricsConfig::default()).expect("layer");
        let exporter = metrics.exporter();
        let router = Router::new()
            .route("/status", get(move || async move {
                StatusCode::from_u16(status).expect("100..=999 is valid")
            }))
            .layer(layer);
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let method = Method::from_bytes(method.as_bytes()).expect("token");
        let statuses = rt.block_on(async {
            let mut out = Vec::new();
            for uri in [path.as_str(), "/status"] {
                let req = Request::builder().method(method.clone()).uri(uri).body(Body::empty()).expect("request");
                out.push(router.clone().oneshot(req).await.expect("infallible").status().as_u16());
            }
            out
        });
        let body = exporter.render(Format::PrometheusText).expect("renders");
        let samples = parse_samples(&body, Format::PrometheusText).expect("parses");
        let mut seen_paths: Vec<String> = samples
            .iter()
            .filter(|s| s.name == "http_requests_total")
            .filter_map(|s| s.labels.iter().find(|(k, _)| k == "path").map(|(_, v)| v.clone()))
            .collect();
        seen_paths.sort();
        seen_paths.dedup();
        for p in &seen_paths {
            prop_assert!(p == "unmatched" || p == "/status", "raw path leaked: {p}");
        }
        let total: f64 = samples.iter().filter(|s| s.name == "http_requests_total").map(|s| s.value).sum();
        prop_assert_eq!(total, 2.0);
        let method_label = samples
            .iter()
            .find(|s| s.name == "http_requests_total")
            .and_then(|s| s.labels.iter().find(|(k, _)| k == "method").map(|(_, v)| v.clone()))
            .unwrap_or_default();
        prop_assert_eq!(method_label.as_str(), lookout_instrument::method_label(&method));
        if method == Method::GET {
            prop_assert_eq!(statuses[1], status);
        }
    }

    #[test]
    fn merge_equals_union(a in proptest::collection::vec(any::<u64>(), 0..3000),
                          b in proptest::collection::vec(any::<u64>(), 0..3000),
                          precision in 4u8..=16) {
        let mut ha = HyperLogLog::new(precision);
        let mut hb = HyperLogLog::new(precision);
        let mut all = HyperLogLog::new(precision);
        for &x in &a { ha.insert_hash(mix(x)); all.insert_hash(mix(x)); }
        for &x in &b { hb.insert_hash(mix(x)); all.insert_hash(mix(x)); }
        prop_assert!(ha.merge(&hb));
        prop_assert_eq!(ha.estimate(), all.estimate());
        prop_assert!(ha.heap_bytes() <= HyperLogLog::max_heap_bytes(precision));
    }

    #[test]
    fn small_sets_are_close(values in proptest::collection::hash_set(any::<u64>(), 0..500)) {
        let mut h = HyperLogLog::new(14);
        for &x in &values { h.insert_hash(mix(x)); }
        let n = values.len() as f64;
        prop_assert!((h.estimate() - n).abs() <= (n * 0.02).max(1.0), "n={} est={}", n, h.estimate());
    }
}
