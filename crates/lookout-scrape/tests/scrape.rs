//! End-to-end scrape tests against local axum servers on 127.0.0.1 with `MemStorage`.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use lookout_config::PrometheusConfig;
use lookout_scrape::{Health, ScrapeManager, ScrapeOptions};
use lookout_storage::memory::MemStorage;
use lookout_storage::{Labels, Matcher, Queryable, Sample, SelectHints, is_stale_nan};
use parking_lot::Mutex;

#[derive(Clone)]
struct Reply {
    body: Vec<u8>,
    content_type: String,
    gzip: bool,
    delay: Duration,
    /// When set, requests without exactly this Authorization header get 401.
    require_auth: Option<String>,
}

impl Reply {
    fn text(body: &str) -> Reply {
        Reply {
            body: body.as_bytes().to_vec(),
            content_type: "text/plain; version=0.0.4; charset=utf-8".into(),
            gzip: false,
            delay: Duration::ZERO,
            require_auth: None,
        }
    }
}

struct SrvState {
    reply: Mutex<Reply>,
    requests: AtomicUsize,
    last_headers: Mutex<HeaderMap>,
}

struct Srv {
    addr: SocketAddr,
    state: Arc<SrvState>,
}

impl Srv {
    async fn start(reply: Reply) -> Srv {
        let state = Arc::new(SrvState {
            reply: Mutex::new(reply),
            requests: AtomicUsize::new(0),
            last_headers: Mutex::new(HeaderMap::new()),
        });
        let app = Router::new().fallback(handler).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Srv { addr, state }
    }

    fn set(&self, f: impl FnOnce(&mut Reply)) {
        f(&mut self.state.reply.lock());
    }

    fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    fn header(&self, name: &str) -> Option<String> {
        self.state
            .last_headers
            .lock()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

async fn handler(State(s): State<Arc<SrvState>>, headers: HeaderMap) -> Response {
    let reply = s.reply.lock().clone();
    *s.last_headers.lock() = headers.clone();
    s.requests.fetch_add(1, Ordering::SeqCst);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    if let Some(want) = &reply.require_auth
        && headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(want.as_str())
    {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .body(Body::empty())
            .unwrap();
    }
    let mut b = Response::builder().header("content-type", reply.content_type.as_str());
    let body = if reply.gzip {
        b = b.header("content-encoding", "gzip");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&reply.body).unwrap();
        enc.finish().unwrap()
    } else {
        reply.body
    };
    b.body(Body::from(body)).unwrap()
}

fn config(yaml: &str) -> PrometheusConfig {
    PrometheusConfig::parse(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn job(name: &str, addr: SocketAddr, extra: &str) -> String {
    format!(
        "  - job_name: {name}\n    scrape_interval: 100ms\n    scrape_timeout: 100ms\n    static_configs:\n      - targets: ['{addr}']\n{extra}"
    )
}

fn manager(storage: &Arc<MemStorage>) -> ScrapeManager {
    let opts = ScrapeOptions {
        file_sd_poll_interval: Duration::from_millis(50),
        ..Default::default()
    };
    ScrapeManager::new(storage.clone(), opts)
}

fn select(s: &MemStorage, matchers: &[(&str, &str)]) -> Vec<(Labels, Vec<Sample>)> {
    let m: Vec<Matcher> = matchers
        .iter()
        .map(|(k, v)| Matcher::equal(*k, *v))
        .collect();
    s.select(&m, &SelectHints::range(i64::MIN, i64::MAX))
        .unwrap()
        .into_iter()
        .map(|s| (s.labels, s.samples))
        .collect()
}

fn values(s: &MemStorage, matchers: &[(&str, &str)]) -> Vec<f64> {
    select(s, matchers)
        .into_iter()
        .flat_map(|(_, v)| v.into_iter().map(|s| s.v))
        .collect()
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Number of `up` samples for `job` that have the given value.
fn up_count(s: &MemStorage, job: &str, v: f64) -> usize {
    values(s, &[("__name__", "up"), ("job", job)])
        .into_iter()
        .filter(|x| *x == v)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthetic_series_metadata_headers_and_targets() {
    let srv = Srv::start(Reply::text(
        "# HELP foo_total Foo things.\n# TYPE foo_total counter\nfoo_total{a=\"1\"} 5\nbar 2\n",
    ))
    .await;
    let st = Arc::new(MemStorage::new());
    let m = manager(&st);
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}",
        job("test", srv.addr, "")
    )))
    .await
    .unwrap();
    wait_for("two scrapes", || up_count(&st, "test", 1.0) >= 2).await;

    let inst = srv.addr.to_string();
    let foo = select(&st, &[("__name__", "foo_total")]);
    assert_eq!(foo.len(), 1);
    assert_eq!(
        foo[0].0,
        Labels::from_pairs([
            ("__name__", "foo_total"),
            ("a", "1"),
            ("instance", inst.as_str()),
            ("job", "test")
        ])
    );
    assert!(foo[0].1.iter().all(|s| s.v == 5.0));
    assert_eq!(
        values(&st, &[("__name__", "scrape_samples_scraped")])[0],
        2.0
    );
    assert_eq!(
        values(
            &st,
            &[("__name__", "scrape_samples_post_metric_relabeling")]
        )[0],
        2.0
    );
    let added = values(&st, &[("__name__", "scrape_series_added")]);
    assert_eq!(added[0], 2.0);
    assert_eq!(added[1], 0.0, "second scrape hits the cache");
    let dur = values(&st, &[("__name__", "scrape_duration_seconds")]);
    assert!(dur[0] > 0.0 && dur[0] < 1.0);

    assert_eq!(
        srv.header("accept").as_deref(),
        Some(lookout_exposition::SCRAPE_ACCEPT_HEADER)
    );
    assert_eq!(srv.header("accept-encoding").as_deref(), Some("gzip"));
    assert!(srv.header("user-agent").unwrap().starts_with("Lookout/"));
    assert_eq!(
        srv.header("x-prometheus-scrape-timeout-seconds").as_deref(),
        Some("0.1")
    );

    let md = m.metadata(Some("foo_total"), None);
    assert_eq!(md["foo_total"][0].metric_type.as_str(), "counter");
    assert_eq!(md["foo_total"][0].help, "Foo things.");
    assert_eq!(m.metadata(None, Some(1)).len(), 1);
    let tm = m.targets_metadata(|l| l.get("job") == Some("test"), None, None);
    assert!(tm.iter().any(|t| t.metric == "foo_total"));

    let t = m.targets();
    assert_eq!(t.len(), 1);
    assert!(t[0].active);
    assert_eq!(t[0].health, Health::Up);
    assert_eq!(t[0].scrape_pool, "test");
    assert_eq!(t[0].scrape_url, format!("http://{inst}/metrics"));
    assert_eq!(t[0].scrape_interval, "100ms");
    assert_eq!(t[0].last_error, "");
    assert!(t[0].last_scrape.is_some());
    assert_eq!(
        t[0].discovered_labels.get("__address__"),
        Some(inst.as_str())
    );

    let mut reg = prometheus_client::registry::Registry::default();
    m.register_metrics(&mut reg);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    assert!(
        text.contains("lookout_scrape_pool_targets{scrape_job=\"test\"} 1"),
        "{text}"
    );
    assert!(text.contains("lookout_scrape_samples_out_of_order_total"));
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disappearing_series_get_stale_markers() {
    let srv = Srv::start(Reply::text("a 1\nb 1\n")).await;
    let st = Arc::new(MemStorage::new());
    let m = manager(&st);
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}",
        job("j", srv.addr, "")
    )))
    .await
    .unwrap();
    wait_for("first scrape", || up_count(&st, "j", 1.0) >= 1).await;
    srv.set(|r| r.body = b"a 2\n".to_vec());
    wait_for("b goes stale", || {
        values(&st, &[("__name__", "b")])
            .iter()
            .any(|v| is_stale_nan(*v))
    })
    .await;
    let b = values(&st, &[("__name__", "b")]);
    assert_eq!(
        b.iter().filter(|v| is_stale_nan(**v)).count(),
        1,
        "one marker only: {b:?}"
    );
    assert!(
        values(&st, &[("__name__", "a")])
            .iter()
            .all(|v| !is_stale_nan(*v))
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_target_goes_stale_and_shutdown_does_not() {
    let srv1 = Srv::start(Reply::text("x 1\n")).await;
    let srv2 = Srv::start(Reply::text("y 1\n")).await;
    let st = Arc::new(MemStorage::new());
    let m = manager(&st);
    let both = format!(
        "scrape_configs:\n{}{}",
        job("one", srv1.addr, ""),
        job("two", srv2.addr, "")
    );
    m.apply_config(&config(&both)).await.unwrap();
    wait_for("both up", || {
        up_count(&st, "one", 1.0) >= 1 && up_count(&st, "two", 1.0) >= 1
    })
    .await;
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}",
        job("two", srv2.addr, "")
    )))
    .await
    .unwrap();
    wait_for("x stale", || {
        values(&st, &[("__name__", "x")])
            .last()
            .is_some_and(|v| is_stale_nan(*v))
    })
    .await;
    wait_for("up of one stale", || {
        values(&st, &[("__name__", "up"), ("job", "one")])
            .last()
            .is_some_and(|v| is_stale_nan(*v))
    })
    .await;
    let n = srv1.requests();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(srv1.requests(), n, "removed target is no longer scraped");
    assert_eq!(m.targets().len(), 1);
    m.stop().await;
    let y = values(&st, &[("__name__", "y")]);
    assert!(
        y.iter().all(|v| !is_stale_nan(*v)),
        "no stale markers on shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parse_error_stores_nothing_and_reports_down() {
    let srv = Srv::start(Reply::text("good 1\n")).await;
    let st = Arc::new(MemStorage::new());
    let m = manager(&st);
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}",
        job("p", srv.addr, "")
    )))
    .await
    .unwrap();
    wait_for("good scrape", || up_count(&st, "p", 1.0) >= 1).await;
    srv.set(|r| r.body = b"partial 1\nbroken{ 2\nafter 3\n".to_vec());
    wait_for("failed scrape", || up_count(&st, "p", 0.0) >= 1).await;
    assert!(
        select(&st, &[("__name__", "partial")]).is_empty(),
        "nothing of a broken scrape is stored"
    );
    assert!(select(&st, &[("__name__", "after")]).is_empty());
    assert!(
        values(&st, &[("__name__", "good")])
            .iter()
            .any(|v| is_stale_nan(*v)),
        "failed scrape marks series stale"
    );
    let t = &m.targets()[0];
    assert_eq!(t.health, Health::Down);
    assert!(t.last_error.contains("line 2"), "{}", t.last_error);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_limit_fails_the_whole_scrape() {
    let mut body = String::new();
    for i in 0..5000 {
        body.push_str(&format!("big_series{{i=\"{i}\"}} {i}\n"));
    }
    let srv = Srv::start(Reply::text(&body)).await;
    let st = Arc::new(MemStorage::new());
    let m = manager(&st);
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}",
        job("lim", srv.addr, "    sample_limit: 1000\n")
    )))
    .await
    .unwrap();
    wait_for("limited scrape", || up_count(&st, "lim", 0.0) >= 1).await;
    assert!(select(&st, &[("__name__", "big_series")]).is_empty());
    let e = m.targets()[0].last_error.clone();
    assert!(
        e.starts_with("sample limit exceeded (sample_limit: 1000"),
        "{e}"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_limit_fails_the_scrape() {
    let srv = Srv::start(Reply::text("m{a=\"1\",b=\"2\",c=\"3\"} 1\n")).await;
    let st = Arc::new(MemStorage::new());
    let m = manager(&st);
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}",
        job("ll", srv.addr, "    label_limit: 4\n")
    )))
    .await
    .unwrap();
    wait_for("limited scrape", || up_count(&st, "ll", 0.0) >= 1).await;
    let e = m.targets()[0].last_error.clone();
    assert!(
        e.starts_with("label_limit exceeded (metric: m, number of labels: 6, limit: 4)"),
        "{e}"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_on_a_server_that_never_answers() {
    let srv = Srv::start(Reply {
        delay: Duration::from_secs(30),
        ..Reply::text("x 1\n")
    })
    .await;
    let st = Arc::new(MemStorage::new());
    let m = manager(&st);
    let started = Instant::now();
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}",
        job("slow", srv.addr, "")
    )))
    .await
    .unwrap();
    wait_for("timed-out scrape", || up_count(&st, "slow", 0.0) >= 1).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    let t = &m.targets()[0];
    assert!(
        t.last_error.ends_with("context deadline exceeded"),
        "{}",
        t.last_error
    );
    let d = values(&st, &[("__name__", "scrape_duration_seconds")]);
    assert!(d[0] >= 0.09 && d[0] < 1.0, "{d:?}");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_and_bearer_tokens() {
    let basic = Srv::start(Reply {
        require_auth: Some("Basic dXNlcjpwYXNz".into()),
        ..Reply::text("ok 1\n")
    })
    .await;
    let bearer = Srv::start(Reply {
        require_auth: Some("Bearer t0k3n".into()),
        ..Reply::text("ok 1\n")
    })
    .await;
    let wrong = Srv::start(Reply {
        require_auth: Some("Bearer other".into()),
        ..Reply::text("ok 1\n")
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "t0k3n\n").unwrap();
    let yaml = format!(
        "scrape_configs:\n{}{}{}",
        job(
            "basic",
            basic.addr,
            "    basic_auth:\n      username: user\n      password: pass\n"
        ),
        job("bearer", bearer.addr, "    bearer_token_file: token\n"),
        job(
            "wrong",
            wrong.addr,
            "    authorization:\n      credentials: nope\n"
        ),
    );
    let st = Arc::new(MemStorage::new());
    let m = manager(&st);
    m.apply_config(&PrometheusConfig::parse_with_base(&yaml, dir.path()).unwrap())
        .await
        .unwrap();
    wait_for("authenticated scrapes", || {
        up_count(&st, "basic", 1.0) >= 1 && up_count(&st, "bearer", 1.0) >= 1
    })
    .await;
    wait_for("rejected scrape", || up_count(&st, "wrong", 0.0) >= 1).await;
    let w = m
        .targets()
        .into_iter()
        .find(|t| t.scrape_pool == "wrong")
        .unwrap();
    assert_eq!(w.last_error, "server returned HTTP status 401 Unauthorized");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_openmetrics_bodies() {
    let srv = Srv::start(Reply {
        gzip: true,
        ..Reply::text("zipped 42\n")
    })
    .await;
    let om = Srv::start(Reply {
        content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8".into(),
        ..Reply::text("# TYPE om_things_bytes counter\n# UNIT om_things_bytes bytes\nom_things_bytes_total 7 1.5\n# EOF\n")
    })
    .await;
    let st = Arc::new(MemStorage::new());
    let m = manager(&st);
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}{}",
        job("gz", srv.addr, ""),
        job("om", om.addr, "")
    )))
    .await
    .unwrap();
    wait_for("gzip scrape", || {
        !values(&st, &[("__name__", "zipped")]).is_empty()
    })
    .await;
    assert_eq!(values(&st, &[("__name__", "zipped")])[0], 42.0);
    wait_for("om scrape", || {
        !values(&st, &[("__name__", "om_things_bytes_total")]).is_empty()
    })
    .await;
    let s = select(&st, &[("__name__", "om_things_bytes_total")]);
    assert_eq!(
        s[0].1[0],
        Sample { t: 1500, v: 7.0 },
        "OpenMetrics timestamps are seconds"
    );
    let md = m.metadata(Some("om_things_bytes"), None);
    assert_eq!(md["om_things_bytes"][0].unit, "bytes");
    assert_eq!(md["om_things_bytes"][0].metric_type.as_str(), "counter");
    m.stop().await;
}

/// OpenMetrics that breaks the spec's family rules but that Prometheus scrapes (redis_exporter's
/// percentile "quantiles", unordered buckets, interleaved families) keeps the target up; what
/// Prometheus's parser rejects (no `# EOF`) still takes it down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lenient_openmetrics_like_prometheus() {
    let om_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    let srv = Srv::start(Reply {
        content_type: om_type.into(),
        ..Reply::text(concat!(
            "# TYPE redis_latency_percentiles_usec summary\n",
            "redis_latency_percentiles_usec{cmd=\"get\",quantile=\"50\"} 12\n",
            "redis_latency_percentiles_usec{cmd=\"get\",quantile=\"99.9\"} 40\n",
            "# TYPE h histogram\n",
            "h_bucket{le=\"5\"} 3\n",
            "h_bucket{le=\"1\"} 1\n",
            "# TYPE g gauge\n",
            "g{x=\"1\",} 1\n",
            "other 2\n",
            "g{x=\"2\"} 3\n",
            "# EOF\n",
        ))
    })
    .await;
    let st = Arc::new(MemStorage::new());
    let m = manager(&st);
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}",
        job("lenient", srv.addr, "")
    )))
    .await
    .unwrap();
    wait_for("lenient scrape", || up_count(&st, "lenient", 1.0) >= 1).await;
    assert_eq!(
        up_count(&st, "lenient", 0.0),
        0,
        "{}",
        m.targets()[0].last_error
    );
    assert_eq!(
        values(
            &st,
            &[
                ("__name__", "redis_latency_percentiles_usec"),
                ("quantile", "50")
            ]
        ),
        vec![12.0]
    );
    assert_eq!(
        values(&st, &[("__name__", "h_bucket"), ("le", "1")]),
        vec![1.0]
    );
    assert_eq!(values(&st, &[("__name__", "g"), ("x", "2")]), vec![3.0]);
    assert_eq!(m.targets()[0].health, Health::Up);

    srv.set(|r| r.body = b"redis_up 1\n".to_vec());
    wait_for("scrape without # EOF", || {
        up_count(&st, "lenient", 0.0) >= 1
    })
    .await;
    let t = &m.targets()[0];
    assert_eq!(t.health, Health::Down);
    assert!(
        t.last_error.contains("data does not end with # EOF"),
        "{}",
        t.last_error
    );
    assert!(select(&st, &[("__name__", "redis_up")]).is_empty());
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_size_limit() {
    let srv = Srv::start(Reply::text(&"padding_metric 1\n".repeat(200))).await;
    let st = Arc::new(MemStorage::new());
    let m = manager(&st);
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}",
        job("bs", srv.addr, "    body_size_limit: 1KB\n")
    )))
    .await
    .unwrap();
    wait_for("limited scrape", || up_count(&st, "bs", 0.0) >= 1).await;
    assert_eq!(m.targets()[0].last_error, "body size limit exceeded");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honor_labels_and_timestamps() {
    let body = "m{job=\"exp\",instance=\"orig\"} 1\nts_metric 3 1000\n";
    let a = Srv::start(Reply::text(body)).await;
    let b = Srv::start(Reply::text(body)).await;
    let st = Arc::new(MemStorage::new());
    let m = manager(&st);
    let yaml = format!(
        "scrape_configs:\n{}{}",
        job("plain", a.addr, ""),
        job(
            "honor",
            b.addr,
            "    honor_labels: true\n    honor_timestamps: false\n"
        )
    );
    m.apply_config(&config(&yaml)).await.unwrap();
    wait_for("both scraped", || {
        up_count(&st, "plain", 1.0) >= 1
            && up_count(&st, "exp", 1.0) == 0
            && select(&st, &[("__name__", "m"), ("job", "exp")]).len() == 1
    })
    .await;
    let plain = select(&st, &[("__name__", "m"), ("job", "plain")]);
    assert_eq!(plain.len(), 1);
    assert_eq!(plain[0].0.get("exported_job"), Some("exp"));
    assert_eq!(plain[0].0.get("exported_instance"), Some("orig"));
    assert_eq!(
        plain[0].0.get("instance"),
        Some(a.addr.to_string().as_str())
    );
    let honored = select(&st, &[("__name__", "m"), ("job", "exp")]);
    assert_eq!(honored[0].0.get("instance"), Some("orig"));
    assert_eq!(honored[0].0.get("exported_job"), None);

    let ts_plain = select(&st, &[("__name__", "ts_metric"), ("job", "plain")]);
    assert_eq!(
        ts_plain[0].1[0].t, 1000,
        "honor_timestamps (default) keeps the exposed timestamp"
    );
    let ts_honor = select(&st, &[("__name__", "ts_metric"), ("job", "honor")]);
    assert!(
        ts_honor[0].1[0].t > 1_600_000_000_000,
        "scrape time used when honor_timestamps is false"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sd_changes_are_picked_up() {
    let a = Srv::start(Reply::text("from_a 1\n")).await;
    let b = Srv::start(Reply::text("from_b 1\n")).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("targets.json");
    std::fs::write(
        &file,
        format!(
            r#"[{{"targets":["{}"],"labels":{{"env":"test"}}}}]"#,
            a.addr
        ),
    )
    .unwrap();
    let yaml = "scrape_configs:\n  - job_name: sd\n    scrape_interval: 100ms\n    file_sd_configs:\n      - files: ['*.json']\n    relabel_configs:\n      - source_labels: [__meta_filepath]\n        regex: '.*/(.*)'\n        target_label: file\n";
    let st = Arc::new(MemStorage::new());
    let m = manager(&st);
    m.apply_config(&PrometheusConfig::parse_with_base(yaml, dir.path()).unwrap())
        .await
        .unwrap();
    wait_for("a scraped", || {
        !values(&st, &[("__name__", "from_a")]).is_empty()
    })
    .await;
    let la = select(&st, &[("__name__", "from_a")]);
    assert_eq!(la[0].0.get("env"), Some("test"));
    assert_eq!(la[0].0.get("file"), Some("targets.json"));
    // Rewrite: a replaced by b (size changes, so the poll notices even within one mtime tick).
    std::fs::write(
        &file,
        format!(
            r#"[{{"targets":["{}"], "labels": {{"env": "test2"}}}}]"#,
            b.addr
        ),
    )
    .unwrap();
    wait_for("b scraped", || {
        !values(&st, &[("__name__", "from_b")]).is_empty()
    })
    .await;
    wait_for("a stale", || {
        values(&st, &[("__name__", "from_a")])
            .last()
            .is_some_and(|v| is_stale_nan(*v))
    })
    .await;
    let t = m.targets();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].labels.get("env"), Some("test2"));
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_relabel_drop_and_dropped_targets() {
    let srv = Srv::start(Reply::text(
        "go_goroutines 10\ngo_threads 4\napp_requests_total 3\n",
    ))
    .await;
    let st = Arc::new(MemStorage::new());
    let m = manager(&st);
    let extra = "    metric_relabel_configs:\n      - source_labels: [__name__]\n        regex: 'go_.*'\n        action: drop\n    relabel_configs:\n      - source_labels: [__address__]\n        regex: 'drop-me:.*'\n        action: drop\n";
    let mut yaml = format!("scrape_configs:\n{}", job("mr", srv.addr, extra));
    yaml = yaml.replace(
        &format!("['{}']", srv.addr),
        &format!("['{}', 'drop-me:1']", srv.addr),
    );
    m.apply_config(&config(&yaml)).await.unwrap();
    wait_for("scrape", || up_count(&st, "mr", 1.0) >= 1).await;
    assert!(select(&st, &[("__name__", "go_goroutines")]).is_empty());
    assert_eq!(values(&st, &[("__name__", "app_requests_total")])[0], 3.0);
    assert_eq!(
        values(&st, &[("__name__", "scrape_samples_scraped")])[0],
        3.0
    );
    assert_eq!(
        values(
            &st,
            &[("__name__", "scrape_samples_post_metric_relabeling")]
        )[0],
        1.0
    );
    let t = m.targets();
    assert_eq!(t.len(), 2);
    let dropped: Vec<_> = t.iter().filter(|t| !t.active).collect();
    assert_eq!(dropped.len(), 1);
    assert_eq!(
        dropped[0].discovered_labels.get("__address__"),
        Some("drop-me:1")
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_unaffected_loops() {
    let a = Srv::start(Reply::text("keep_me 1\n")).await;
    let b = Srv::start(Reply::text("change_me 1\n")).await;
    let st = Arc::new(MemStorage::new());
    let m = manager(&st);
    let v1 = format!(
        "scrape_configs:\n{}{}",
        job("a", a.addr, ""),
        job("b", b.addr, "")
    );
    m.apply_config(&config(&v1)).await.unwrap();
    wait_for("both scraped twice", || {
        up_count(&st, "a", 1.0) >= 2 && up_count(&st, "b", 1.0) >= 2
    })
    .await;
    // Job b changes a loop setting; job a is untouched.
    let v2 = format!(
        "scrape_configs:\n{}{}",
        job("a", a.addr, ""),
        job("b", b.addr, "    honor_labels: true\n")
    );
    m.apply_config(&config(&v2)).await.unwrap();
    let (na, nb) = (up_count(&st, "a", 1.0), up_count(&st, "b", 1.0));
    wait_for("more scrapes", || {
        up_count(&st, "a", 1.0) >= na + 3 && up_count(&st, "b", 1.0) >= nb + 3
    })
    .await;
    let added_a = values(&st, &[("__name__", "scrape_series_added"), ("job", "a")]);
    assert_eq!(
        added_a.iter().filter(|v| **v > 0.0).count(),
        1,
        "job a kept its cache: {added_a:?}"
    );
    let added_b = values(&st, &[("__name__", "scrape_series_added"), ("job", "b")]);
    assert_eq!(
        added_b.iter().filter(|v| **v > 0.0).count(),
        2,
        "job b restarted with a fresh cache: {added_b:?}"
    );
    assert!(
        values(&st, &[("__name__", "change_me")])
            .iter()
            .all(|v| !is_stale_nan(*v)),
        "surviving target not marked stale"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_limit_fails_all_targets() {
    let a = Srv::start(Reply::text("x 1\n")).await;
    let st = Arc::new(MemStorage::new());
    let m = manager(&st);
    let mut yaml = format!(
        "scrape_configs:\n{}",
        job("tl", a.addr, "    target_limit: 1\n")
    );
    yaml = yaml.replace(
        &format!("['{}']", a.addr),
        &format!("['{}', '127.0.0.1:1']", a.addr),
    );
    m.apply_config(&config(&yaml)).await.unwrap();
    wait_for("failed scrapes", || up_count(&st, "tl", 0.0) >= 2).await;
    assert_eq!(a.requests(), 0);
    assert!(
        m.targets()[0]
            .last_error
            .starts_with("target_limit exceeded (number of targets: 2, limit: 1)")
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_with_new_metric_relabel_marks_dropped_series_stale() {
    let srv = Srv::start(Reply::text("kept 1\nsoon_dropped 1\n")).await;
    let st = Arc::new(MemStorage::new());
    let m = manager(&st);
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}",
        job("r", srv.addr, "")
    )))
    .await
    .unwrap();
    wait_for("scraped", || up_count(&st, "r", 1.0) >= 2).await;
    let extra = "    metric_relabel_configs:\n      - source_labels: [__name__]\n        regex: soon_dropped\n        action: drop\n";
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}",
        job("r", srv.addr, extra)
    )))
    .await
    .unwrap();
    wait_for("dropped series marked stale", || {
        values(&st, &[("__name__", "soon_dropped")])
            .last()
            .is_some_and(|v| is_stale_nan(*v))
    })
    .await;
    let n = up_count(&st, "r", 1.0);
    wait_for("more scrapes", || up_count(&st, "r", 1.0) >= n + 2).await;
    assert!(
        values(&st, &[("__name__", "kept")])
            .iter()
            .all(|v| !is_stale_nan(*v))
    );
    assert!(
        values(&st, &[("__name__", "up"), ("job", "r")])
            .iter()
            .all(|v| !is_stale_nan(*v))
    );
    m.stop().await;
}
