//! `promtool check metrics` on the `/metrics` of sample services, scraped over loopback HTTP.
//!
//! Prints a visible `SKIP` line when promtool is not installed, and fails instead when `CI=true`.

use std::io::Write as _;
use std::process::{Command, Stdio};

use axum::Router;
use axum::routing::{get, post};
use lookout_instrument::{HttpMetricsConfig, Metrics, UniqueCounterConfig, label_set};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

label_set! {
    struct Workspace { workspace_id: String }
}

label_set! {
    struct CacheGet { cache: &'static str, result: &'static str }
}

label_set! {
    struct CachePut { cache: &'static str }
}

fn promtool_available() -> bool {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("promtool is required in CI (apt-get install -y prometheus)");
        }
        println!(
            "SKIP promtool check metrics: promtool not installed (apt-get install -y prometheus)"
        );
    }
    found
}

/// Runs `promtool check metrics`; returns (exit code, problem lines).
fn promtool_check(body: &[u8]) -> (i32, Vec<String>) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body)
        .expect("write");
    let out = child.wait_with_output().expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let problems = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    (out.status.code().unwrap_or(-1), problems)
}

/// Serves `router` on 127.0.0.1, drives some traffic, and returns the body of `GET path`.
async fn scrape(router: Router, traffic: &[(&str, &str)], path: &str) -> Vec<u8> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let mut body = Vec::new();
    for (i, (method, uri)) in traffic.iter().chain([("GET", path)].iter()).enumerate() {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!(
            "{method} {uri} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.expect("send");
        let mut resp = Vec::new();
        stream.read_to_end(&mut resp).await.expect("read");
        if i == traffic.len() {
            let split = resp
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("header end");
            let head = String::from_utf8_lossy(&resp[..split]).to_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            assert!(
                head.contains("content-type: text/plain; version=0.0.4"),
                "{head}"
            );
            body = resp[split + 4..].to_vec();
        }
    }
    server.abort();
    body
}

#[tokio::test]
async fn lint_clean_service_passes() {
    if !promtool_available() {
        return;
    }
    let mut metrics = Metrics::new();
    let http = metrics
        .http_layer(HttpMetricsConfig::default())
        .expect("http");
    let sent = metrics
        .counter("chat_messages_sent_total", "Chat messages sent.")
        .expect("counter");
    let rooms = metrics
        .gauge("chat_rooms_active", "Active chat rooms.")
        .expect("gauge");
    let calls = metrics
        .histogram(
            "video_call_duration_seconds",
            "Video call duration.",
            &[30.0, 60.0, 300.0, 900.0, 3600.0],
        )
        .expect("histogram");
    let uploads = metrics
        .counter_f64("storage_upload_bytes_total", "Bytes uploaded.")
        .expect("counter");
    let active = metrics
        .unique_counter(
            UniqueCounterConfig::new()
                .daily("users_daily_active", "Distinct users in the last 24 hours.")
                .monthly(
                    "users_monthly_active",
                    "Distinct users in the last 30 days.",
                ),
        )
        .expect("unique");
    let exporter = metrics.exporter();
    sent.inc_by(7);
    rooms.set(2);
    calls.observe(42.0);
    uploads.inc_by(1024.0);
    active.observe("alice");
    let router = Router::new()
        .route("/api/chat/rooms/{id}", get(|| async { "room" }))
        .route("/api/chat/messages", post(|| async { "sent" }))
        .merge(exporter.route("/metrics"))
        .layer(http);
    let body = scrape(
        router,
        &[
            ("GET", "/api/chat/rooms/1"),
            ("POST", "/api/chat/messages"),
            ("GET", "/does/not/exist"),
            ("FOO", "/api/chat/rooms/2"),
        ],
        "/metrics",
    )
    .await;
    let text = String::from_utf8_lossy(&body);
    for needle in [
        "http_requests_total{method=\"GET\",path=\"/api/chat/rooms/{id}\",status=\"200\"} 1",
        "http_request_duration_seconds_bucket{",
        "http_requests_in_flight 1", // the scrape itself
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_virtual_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
        "users_daily_active 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    let (code, problems) = promtool_check(&body);
    assert_eq!((code, problems), (0, Vec::<String>::new()), "\n{text}");
}

/// The weAlist user and auth services' names. The seed names some gauges `*_total`
/// (`users_active_total`, `workspaces_total`, …); promtool's linter flags exactly those and
/// nothing else — in particular the exposition parses.
#[tokio::test]
async fn wealist_names_parse_and_only_seed_total_gauges_are_linted() {
    if !promtool_available() {
        return;
    }
    let mut metrics = Metrics::new();
    let http = metrics
        .http_layer(HttpMetricsConfig::default())
        .expect("http");
    metrics
        .counter("user_registrations_total", "New sign-ups.")
        .expect("c")
        .inc();
    metrics
        .counter("user_logins_total", "Logins.")
        .expect("c")
        .inc_by(3);
    metrics
        .counter("workspaces_created_total", "Workspaces created.")
        .expect("c")
        .inc();
    let seed_gauges = [
        "users_active_total",
        "users_registered_total",
        "workspaces_total",
    ];
    for name in seed_gauges {
        metrics.gauge(name, "Seed-named gauge.").expect("g").set(5);
    }
    metrics
        .gauge_family::<Workspace>("workspace_members_total", "Members per workspace.")
        .expect("family")
        .get_or_create(&Workspace {
            workspace_id: "42".into(),
        })
        .set(3);
    metrics
        .unique_counter(
            UniqueCounterConfig::new()
                .daily("users_daily_active", "Distinct users in the last 24 hours.")
                .monthly(
                    "users_monthly_active",
                    "Distinct users in the last 30 days.",
                ),
        )
        .expect("unique")
        .observe("u1");
    let exporter = metrics.exporter();
    let router = Router::new()
        .route("/api/users/{id}", get(|| async { "user" }))
        .merge(exporter.route("/metrics"))
        .layer(http);
    let body = scrape(router, &[("GET", "/api/users/1")], "/metrics").await;
    let (code, problems) = promtool_check(&body);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(
        code, 3,
        "lint problems only (exit 3), not a parse error: {problems:?}\n{text}"
    );
    let mut flagged: Vec<&str> = problems
        .iter()
        .map(|p| {
            p.strip_suffix(" non-counter metrics should not have \"_total\" suffix")
                .unwrap_or_else(|| panic!("unexpected promtool problem: {p}"))
        })
        .collect();
    flagged.sort_unstable();
    let mut expected: Vec<&str> = seed_gauges.to_vec();
    expected.push("workspace_members_total");
    expected.sort_unstable();
    assert_eq!(flagged, expected);

    // Auth service: Micrometer naming at /actuator/prometheus.
    let mut metrics = Metrics::new();
    let http = metrics
        .micrometer_http_layer(HttpMetricsConfig::default())
        .expect("micrometer");
    let gets = metrics
        .counter_family::<CacheGet>("cache_gets_total", "The number of times cache lookup methods have returned a cached (hit) or uncached (miss) value.")
        .expect("family");
    let puts = metrics
        .counter_family::<CachePut>(
            "cache_puts_total",
            "The number of entries added to the cache.",
        )
        .expect("family");
    gets.get_or_create(&CacheGet {
        cache: "tokens",
        result: "hit",
    })
    .inc();
    gets.get_or_create(&CacheGet {
        cache: "tokens",
        result: "miss",
    })
    .inc();
    puts.get_or_create(&CachePut { cache: "tokens" }).inc();
    let exporter = metrics.exporter();
    let router = Router::new()
        .route("/api/auth/token", post(|| async { "t" }))
        .merge(exporter.route("/actuator/prometheus"))
        .layer(http);
    let body = scrape(
        router,
        &[("POST", "/api/auth/token"), ("GET", "/nowhere")],
        "/actuator/prometheus",
    )
    .await;
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("http_server_requests_seconds_count{exception=\"None\",method=\"POST\",outcome=\"SUCCESS\",status=\"200\",uri=\"/api/auth/token\"} 1"), "{text}");
    assert!(
        text.contains("cache_gets_total{cache=\"tokens\",result=\"hit\"} 1"),
        "{text}"
    );
    let (code, problems) = promtool_check(&body);
    assert_eq!((code, problems), (0, Vec::<String>::new()), "\n{text}");
}
