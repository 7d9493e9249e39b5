//! Whole-exposition conversion between OpenMetrics and the text format, including the output of
//! the `prometheus-client` crate (which writes OpenMetrics) served to text-only scrapers.

use lookout_exposition::{Format, MetricType, convert, parse_samples};

fn om_to_text(input: &str) -> String {
    let mut out = Vec::new();
    convert(
        input.as_bytes(),
        Format::OpenMetrics,
        Format::PrometheusText,
        &mut out,
    )
    .expect("valid OpenMetrics");
    String::from_utf8(out).expect("utf-8")
}

fn text_to_om(input: &str) -> String {
    let mut out = Vec::new();
    convert(
        input.as_bytes(),
        Format::PrometheusText,
        Format::OpenMetrics,
        &mut out,
    )
    .expect("valid text");
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn openmetrics_to_text_maps_every_type() {
    let om = r#"# HELP req_seconds Time spent.
# TYPE req_seconds counter
# UNIT req_seconds seconds
req_seconds_total{path="/a"} 12.5 # {trace_id="abc"} 0.3 1.5
req_seconds_created{path="/a"} 1700000000.123
# TYPE lat histogram
lat_bucket{le="0.1"} 1
lat_bucket{le="+Inf"} 3
lat_count 3
lat_sum 0.7
lat_created 1700000000
# TYPE build info
# HELP build Build information.
build_info{version="1.2.3"} 1
# TYPE state stateset
state{state="up"} 1
state{state="down"} 0
# TYPE gh gaugehistogram
gh_bucket{le="+Inf"} 4
gh_gcount 4
gh_gsum 2
# TYPE mystery unknown
mystery 7 1.5
# TYPE q summary
q{quantile="0.5"} 0.2
q_sum 1
q_count 5
# EOF
"#;
    let want = r#"# HELP req_seconds_total Time spent.
# TYPE req_seconds_total counter
req_seconds_total{path="/a"} 12.5
# TYPE lat histogram
lat_bucket{le="0.1"} 1
lat_bucket{le="+Inf"} 3
lat_count 3
lat_sum 0.7
# HELP build_info Build information.
# TYPE build_info gauge
build_info{version="1.2.3"} 1
# TYPE state gauge
state{state="up"} 1
state{state="down"} 0
gh_bucket{le="+Inf"} 4
gh_gcount 4
gh_gsum 2
# TYPE mystery untyped
mystery 7 1500
# TYPE q summary
q{quantile="0.5"} 0.2
q_sum 1
q_count 5
"#;
    let text = om_to_text(om);
    assert_eq!(text, want);
    // And Prometheus's text parser semantics accept it, with the types it says.
    let samples = parse_samples(text.as_bytes(), Format::PrometheusText).expect("text parses");
    assert_eq!(samples[0].metric_type, MetricType::Counter);
    assert_eq!(
        samples
            .iter()
            .find(|s| s.name == "build_info")
            .map(|s| s.metric_type),
        Some(MetricType::Gauge)
    );
}

#[test]
fn text_to_openmetrics_is_strictly_valid() {
    let text = "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\n\
                http_requests_total{method=\"GET\"} 3 1700000000123\n\
                # TYPE legacy counter\nlegacy 5\n\
                # TYPE up untyped\nup 1\n\
                # HELP temp Temperature.\n# TYPE temp gauge\ntemp -3.5\n\
                no_metadata 1\n";
    let om = text_to_om(text);
    assert_eq!(
        om,
        "# HELP http_requests Requests.\n# TYPE http_requests counter\n\
         http_requests_total{method=\"GET\"} 3.0 1700000000.123\n\
         # TYPE legacy counter\nlegacy_total 5.0\n\
         # TYPE up unknown\nup 1.0\n\
         # HELP temp Temperature.\n# TYPE temp gauge\ntemp -3.5\n\
         no_metadata 1.0\n# EOF\n"
    );
    let samples =
        parse_samples(om.as_bytes(), Format::OpenMetrics).expect("strict OpenMetrics parses");
    assert_eq!(samples.len(), 5);
    assert_eq!(samples[0].timestamp_ms, Some(1_700_000_000_123));
}

#[test]
fn errors_leave_the_output_untouched() {
    let mut out = b"keep".to_vec();
    let err = convert(
        b"a 1\n",
        Format::OpenMetrics,
        Format::PrometheusText,
        &mut out,
    )
    .unwrap_err();
    assert!(err.message.contains("# EOF"), "{err}");
    assert_eq!(out, b"keep");
}

/// `prometheus-client` writes OpenMetrics: it must pass the strict parser, and its text
/// conversion must read back with the same samples (minus `_created`).
#[test]
fn prometheus_client_output() {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
    use prometheus_client::metrics::info::Info;
    use prometheus_client::registry::{Registry, Unit};

    let mut registry = Registry::default();
    let requests = Family::<Vec<(String, String)>, Counter>::default();
    registry.register("http_requests", "Total HTTP requests", requests.clone());
    requests
        .get_or_create(&vec![
            ("method".into(), "GET".into()),
            ("path".into(), "/a \"b\"\\c".into()),
        ])
        .inc_by(7);
    requests
        .get_or_create(&vec![
            ("method".into(), "POST".into()),
            ("path".into(), "/".into()),
        ])
        .inc();
    let in_flight = Gauge::<i64>::default();
    registry.register("http_requests_in_flight", "In flight", in_flight.clone());
    in_flight.set(-2);
    let latency = Histogram::new(exponential_buckets(0.005, 2.0, 8));
    registry.register_with_unit(
        "http_request_duration",
        "Latency",
        Unit::Seconds,
        latency.clone(),
    );
    for v in [0.001, 0.02, 0.3, 7.0] {
        latency.observe(v);
    }
    registry.register(
        "build",
        "Build info",
        Info::new(vec![("version".to_string(), "0.1.0".to_string())]),
    );

    let mut om = String::new();
    encode(&mut om, &registry).expect("encode");
    let om_samples =
        parse_samples(om.as_bytes(), Format::OpenMetrics).unwrap_or_else(|e| panic!("{e}\n{om}"));
    assert!(om_samples.len() >= 14, "{om}");

    let text = om_to_text(&om);
    let text_samples = parse_samples(text.as_bytes(), Format::PrometheusText)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    let om_kept: Vec<_> = om_samples
        .iter()
        .filter(|s| !s.name.ends_with("_created"))
        .collect();
    assert_eq!(text_samples.len(), om_kept.len(), "{text}");
    for (t, o) in text_samples.iter().zip(om_kept) {
        assert_eq!(
            (&t.name, &t.labels, t.value.to_bits()),
            (&o.name, &o.labels, o.value.to_bits())
        );
    }
    assert!(
        text.contains("# TYPE http_requests_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE http_request_duration_seconds histogram\n"),
        "{text}"
    );
    assert!(text.contains("# TYPE build_info gauge\n"), "{text}");
    assert!(text.contains("path=\"/a \\\"b\\\"\\\\c\""), "{text}");
    assert!(!text.contains("# EOF"), "{text}");
}
