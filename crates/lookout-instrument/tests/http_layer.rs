//! The HTTP metrics layer driven in-process through an axum router.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use lookout_exposition::{Format, parse_samples};
use lookout_instrument::{ExceptionName, HttpMetricsConfig, Metrics, MetricsExporter};
use tower::ServiceExt;

/// Value of the sample `name` whose label set is exactly `labels`.
fn value(exporter: &MetricsExporter, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = exporter.render(Format::PrometheusText).expect("renders");
    let samples = parse_samples(&text, Format::PrometheusText).expect("parses");
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    want.sort();
    samples.into_iter().find_map(|s| {
        let mut have = s.labels.clone();
        have.sort();
        (s.name == name && have == want).then_some(s.value)
    })
}

fn request(method: &str, uri: &str) -> Request<Body> {
    Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(uri)
        .body(Body::empty())
        .expect("request")
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    "late"
}

async fn boom() -> &'static str {
    panic!("handler exploded")
}

fn app(config: HttpMetricsConfig) -> (Router, MetricsExporter) {
    let mut metrics = Metrics::without_process_metrics();
    let layer = metrics.http_layer(config).expect("layer");
    let exporter = metrics.exporter();
    let router = Router::new()
        .route("/api/boards/{id}", get(|| async { "board" }))
        .route("/api/boards", post(|| async { StatusCode::CREATED }))
        .route(
            "/weird",
            get(|| async { StatusCode::from_u16(999).expect("status") }),
        )
        .route("/slow", get(slow))
        .route("/boom", get(boom))
        .merge(exporter.route("/metrics"))
        .layer(layer);
    (router, exporter)
}

async fn send(router: &Router, method: &str, uri: &str) -> StatusCode {
    router
        .clone()
        .oneshot(request(method, uri))
        .await
        .expect("infallible")
        .status()
}

#[tokio::test]
async fn records_method_route_template_and_status() {
    let (router, exporter) = app(HttpMetricsConfig::default());
    assert_eq!(send(&router, "GET", "/api/boards/1").await, StatusCode::OK);
    assert_eq!(
        send(&router, "GET", "/api/boards/2?x=y").await,
        StatusCode::OK
    );
    assert_eq!(
        send(&router, "POST", "/api/boards").await,
        StatusCode::CREATED
    );

    let get = [
        ("method", "GET"),
        ("path", "/api/boards/{id}"),
        ("status", "200"),
    ];
    assert_eq!(value(&exporter, "http_requests_total", &get), Some(2.0));
    let post = [
        ("method", "POST"),
        ("path", "/api/boards"),
        ("status", "201"),
    ];
    assert_eq!(value(&exporter, "http_requests_total", &post), Some(1.0));
    let route = [("method", "GET"), ("path", "/api/boards/{id}")];
    assert_eq!(
        value(&exporter, "http_request_duration_seconds_count", &route),
        Some(2.0)
    );
    let inf = [
        ("method", "GET"),
        ("path", "/api/boards/{id}"),
        ("le", "+Inf"),
    ];
    assert_eq!(
        value(&exporter, "http_request_duration_seconds_bucket", &inf),
        Some(2.0)
    );
    // Default Prometheus buckets.
    let b = [
        ("method", "GET"),
        ("path", "/api/boards/{id}"),
        ("le", "0.005"),
    ];
    assert!(value(&exporter, "http_request_duration_seconds_bucket", &b).is_some());
    assert_eq!(value(&exporter, "http_requests_in_flight", &[]), Some(0.0));
    // The raw URI never appears.
    let text = exporter.render(Format::PrometheusText).expect("renders");
    assert!(!String::from_utf8_lossy(&text).contains("/api/boards/1"));
}

#[tokio::test]
async fn unmatched_requests_share_one_path_and_odd_input_is_fine() {
    let (router, exporter) = app(HttpMetricsConfig::default());
    let long = format!("/{}", "a/".repeat(5000));
    for uri in [
        "/wp-admin/setup.php",
        "/.env",
        "/api/boards/1/2/3",
        long.as_str(),
    ] {
        assert_eq!(send(&router, "GET", uri).await, StatusCode::NOT_FOUND);
    }
    // A custom method on an unknown path, and on a known one (405 from the method router).
    send(&router, "FOO", "/nope").await;
    let status = send(&router, "FOO", "/api/boards/1").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(send(&router, "GET", "/weird").await.as_u16(), 999);

    let unmatched = [("method", "GET"), ("path", "unmatched"), ("status", "404")];
    assert_eq!(
        value(&exporter, "http_requests_total", &unmatched),
        Some(4.0)
    );
    let other = [
        ("method", "OTHER"),
        ("path", "unmatched"),
        ("status", "404"),
    ];
    assert_eq!(value(&exporter, "http_requests_total", &other), Some(1.0));
    let not_allowed = [
        ("method", "OTHER"),
        ("path", "/api/boards/{id}"),
        ("status", "405"),
    ];
    assert_eq!(
        value(&exporter, "http_requests_total", &not_allowed),
        Some(1.0)
    );
    let weird = [("method", "GET"), ("path", "/weird"), ("status", "999")];
    assert_eq!(value(&exporter, "http_requests_total", &weird), Some(1.0));
    let text = String::from_utf8(exporter.render(Format::PrometheusText).expect("renders"))
        .expect("utf-8");
    assert!(!text.contains("wp-admin") && !text.contains("FOO") && !text.contains(".env"));
}

#[tokio::test]
async fn custom_unmatched_value() {
    let (router, exporter) = app(HttpMetricsConfig::new().unmatched_path("<none>"));
    send(&router, "GET", "/x").await;
    let l = [("method", "GET"), ("path", "<none>"), ("status", "404")];
    assert_eq!(value(&exporter, "http_requests_total", &l), Some(1.0));
}

#[tokio::test]
async fn panics_are_counted_as_500() {
    let (router, exporter) = app(HttpMetricsConfig::default());
    assert_eq!(
        send(&router, "GET", "/boom").await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let l = [("method", "GET"), ("path", "/boom"), ("status", "500")];
    assert_eq!(value(&exporter, "http_requests_total", &l), Some(1.0));
    assert_eq!(value(&exporter, "http_requests_in_flight", &[]), Some(0.0));
    // The service keeps working afterwards.
    assert_eq!(send(&router, "GET", "/api/boards/9").await, StatusCode::OK);
}

#[tokio::test]
async fn uncaught_panics_are_still_counted() {
    let (router, exporter) = app(HttpMetricsConfig::new().catch_panics(false));
    let task = tokio::spawn(async move { send(&router, "GET", "/boom").await });
    let err = task.await.expect_err("the panic propagates");
    assert!(err.is_panic());
    let l = [("method", "GET"), ("path", "/boom"), ("status", "500")];
    assert_eq!(value(&exporter, "http_requests_total", &l), Some(1.0));
    assert_eq!(value(&exporter, "http_requests_in_flight", &[]), Some(0.0));
}

#[tokio::test]
async fn in_flight_returns_to_zero_when_a_request_is_aborted() {
    let (router, exporter) = app(HttpMetricsConfig::default());
    let mut cx = Context::from_waker(Waker::noop());
    {
        let mut a = pin!(router.clone().oneshot(request("GET", "/slow")));
        let mut b = pin!(router.clone().oneshot(request("GET", "/slow")));
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        assert_eq!(value(&exporter, "http_requests_in_flight", &[]), Some(2.0));
        // Both futures are dropped here, as when the client disconnects.
    }
    assert_eq!(value(&exporter, "http_requests_in_flight", &[]), Some(0.0));
    let l = [("method", "GET"), ("path", "/slow"), ("status", "200")];
    assert_eq!(value(&exporter, "http_requests_total", &l), None);

    // A request that completes while another is aborted.
    let mut slow = Box::pin(router.clone().oneshot(request("GET", "/slow")));
    assert!(slow.as_mut().poll(&mut cx).is_pending());
    send(&router, "GET", "/api/boards/1").await;
    assert_eq!(value(&exporter, "http_requests_in_flight", &[]), Some(1.0));
    drop(slow);
    assert_eq!(value(&exporter, "http_requests_in_flight", &[]), Some(0.0));
}

#[tokio::test]
async fn custom_buckets() {
    let (router, exporter) = app(HttpMetricsConfig::new().buckets([0.1, 1.0]));
    send(&router, "GET", "/api/boards/1").await;
    let l = [
        ("method", "GET"),
        ("path", "/api/boards/{id}"),
        ("le", "0.1"),
    ];
    assert_eq!(
        value(&exporter, "http_request_duration_seconds_bucket", &l),
        Some(1.0)
    );
    let l = [
        ("method", "GET"),
        ("path", "/api/boards/{id}"),
        ("le", "0.005"),
    ];
    assert_eq!(
        value(&exporter, "http_request_duration_seconds_bucket", &l),
        None
    );
    let mut m = Metrics::without_process_metrics();
    assert!(
        m.http_layer(HttpMetricsConfig::new().buckets([1.0, 0.5]))
            .is_err()
    );
}

#[tokio::test]
async fn micrometer_style() {
    let mut metrics = Metrics::new();
    let layer = metrics
        .micrometer_http_layer(HttpMetricsConfig::default())
        .expect("layer");
    let exporter = metrics.exporter();
    let router = Router::new()
        .route("/api/auth/token", post(|| async { "token" }))
        .route(
            "/api/auth/validate",
            get(|| async {
                let mut resp = StatusCode::BAD_REQUEST.into_response();
                resp.extensions_mut()
                    .insert(ExceptionName::new("IllegalArgumentException"));
                resp
            }),
        )
        .route(
            "/moved",
            get(|| async { axum::response::Redirect::to("/") }),
        )
        .route("/boom", get(boom))
        .merge(exporter.route("/actuator/prometheus"))
        .layer(layer);

    send(&router, "POST", "/api/auth/token").await;
    send(&router, "GET", "/api/auth/validate").await;
    send(&router, "GET", "/moved").await;
    send(&router, "GET", "/nope").await;
    send(&router, "GET", "/boom").await;

    let count = "http_server_requests_seconds_count";
    let cases: [[(&str, &str); 5]; 5] = [
        [
            ("method", "POST"),
            ("uri", "/api/auth/token"),
            ("status", "200"),
            ("outcome", "SUCCESS"),
            ("exception", "None"),
        ],
        [
            ("method", "GET"),
            ("uri", "/api/auth/validate"),
            ("status", "400"),
            ("outcome", "CLIENT_ERROR"),
            ("exception", "IllegalArgumentException"),
        ],
        [
            ("method", "GET"),
            ("uri", "/moved"),
            ("status", "303"),
            ("outcome", "REDIRECTION"),
            ("exception", "None"),
        ],
        [
            ("method", "GET"),
            ("uri", "NOT_FOUND"),
            ("status", "404"),
            ("outcome", "CLIENT_ERROR"),
            ("exception", "None"),
        ],
        [
            ("method", "GET"),
            ("uri", "/boom"),
            ("status", "500"),
            ("outcome", "SERVER_ERROR"),
            ("exception", "Panic"),
        ],
    ];
    for labels in cases {
        assert_eq!(value(&exporter, count, &labels), Some(1.0), "{labels:?}");
    }
    let text = String::from_utf8(exporter.render(Format::PrometheusText).expect("renders"))
        .expect("utf-8");
    assert!(text.contains("# TYPE http_server_requests_seconds histogram\n"));
    assert!(text.contains("# TYPE http_server_requests_seconds_max gauge\n"));
    let max = value(&exporter, "http_server_requests_seconds_max", &cases[0]).expect("max");
    assert!(max > 0.0 && max < 10.0, "{max}");
    assert!(text.contains("process_cpu_seconds_total "));
    assert!(!text.contains("http_requests_total"));
    assert!(!text.contains("jvm_"));

    // The scrape endpoint itself is recorded under its template.
    send(&router, "GET", "/actuator/prometheus").await;
    let scrape = [
        ("method", "GET"),
        ("uri", "/actuator/prometheus"),
        ("status", "200"),
        ("outcome", "SUCCESS"),
        ("exception", "None"),
    ];
    assert_eq!(value(&exporter, count, &scrape), Some(1.0));
}

#[tokio::test]
async fn metrics_endpoint_negotiates_the_format() {
    let (router, _exporter) = app(HttpMetricsConfig::default());
    send(&router, "GET", "/api/boards/1").await;

    let scrape = |accept: Option<&'static str>| {
        let router = router.clone();
        async move {
            let mut req = Request::builder().uri("/metrics");
            if let Some(a) = accept {
                req = req.header("accept", a);
            }
            let resp = router
                .oneshot(req.body(Body::empty()).expect("request"))
                .await
                .expect("infallible");
            assert_eq!(resp.status(), StatusCode::OK);
            let ct = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .expect("body")
                .to_bytes();
            (ct, body)
        }
    };

    let (ct, body) = scrape(None).await;
    assert_eq!(ct, lookout_exposition::TEXT_CONTENT_TYPE);
    let text = parse_samples(&body, Format::PrometheusText).expect("text parses");
    assert!(text.iter().any(|s| s.name == "http_requests_total"));
    assert!(!body.ends_with(b"# EOF\n"));

    let (ct, body) = scrape(Some(lookout_exposition::SCRAPE_ACCEPT_HEADER)).await;
    assert_eq!(ct, lookout_exposition::OPENMETRICS_CONTENT_TYPE);
    assert!(body.ends_with(b"# EOF\n"));
    let om = parse_samples(&body, Format::OpenMetrics).expect("strict OpenMetrics parse");
    assert!(om.iter().any(|s| s.name == "http_requests_total"));

    let (ct, _) = scrape(Some("text/plain;version=0.0.4")).await;
    assert_eq!(ct, lookout_exposition::TEXT_CONTENT_TYPE);
}
