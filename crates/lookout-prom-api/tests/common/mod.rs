//! Shared fixtures: a router over `MemStorage` with a few series loaded, and a request helper.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use lookout_prom_api::{ApiLimits, ApiState, router};
use lookout_promql::Engine;
use lookout_storage::memory::MemStorage;
use lookout_storage::{
    Appendable, Labels, Matcher, Queryable, SelectHints, Series, StorageError, Timestamp,
};
use parking_lot::RwLock;
use prometheus_client::registry::Registry;
use serde_json::Value;
use tower::ServiceExt;

/// Start of the loaded data, in seconds.
pub const T0: i64 = 1_700_000_000;
/// Samples every 15s from T0 to T0 + 600s inclusive.
pub const STEP: i64 = 15;
pub const LAST: i64 = T0 + 600;

/// A series and the value of its i-th sample.
type Generator = (Labels, Box<dyn Fn(i64) -> f64>);

pub fn load(store: &MemStorage) {
    let series: Vec<Generator> = vec![
        (
            Labels::from_pairs([("__name__", "up"), ("job", "api"), ("instance", "a:1")]),
            Box::new(|_| 1.0),
        ),
        (
            Labels::from_pairs([("__name__", "up"), ("job", "db"), ("instance", "b:1")]),
            Box::new(|_| 0.0),
        ),
        (
            Labels::from_pairs([
                ("__name__", "http_requests_total"),
                ("job", "api"),
                ("instance", "a:1"),
                ("method", "GET"),
                ("status", "200"),
            ]),
            Box::new(|i| (i * 10) as f64),
        ),
        (
            Labels::from_pairs([
                ("__name__", "http_requests_total"),
                ("job", "api"),
                ("instance", "a:1"),
                ("method", "POST"),
                ("status", "500"),
            ]),
            Box::new(|i| i as f64),
        ),
    ];
    let mut app = store.appender();
    for (labels, f) in &series {
        for i in 0..=((LAST - T0) / STEP) {
            let t = (T0 + i * STEP) * 1000;
            app.append(None, labels, t, f(i)).unwrap();
        }
    }
    app.commit().unwrap();
}

pub struct Fixture {
    pub store: Arc<MemStorage>,
    pub state: ApiState,
    pub app: Router,
}

pub fn fixture() -> Fixture {
    fixture_with(|s| s)
}

pub fn fixture_with(customize: impl FnOnce(ApiState) -> ApiState) -> Fixture {
    let store = Arc::new(MemStorage::new());
    load(&store);
    let registry = Arc::new(RwLock::new(Registry::default()));
    let state = ApiState::new(Engine::default(), store.clone(), store.clone(), registry);
    let state = customize(state);
    let app = router(state.clone());
    Fixture { store, state, app }
}

pub struct Resp {
    pub status: StatusCode,
    pub content_type: String,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Asserts a Prometheus error envelope with the given type and status.
    pub fn assert_error(&self, status: u16, error_type: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        let j = self.json();
        assert_eq!(j["status"], "error", "{}", self.body);
        assert_eq!(j["errorType"], error_type, "{}", self.body);
        j["error"].as_str().unwrap_or_default().to_string()
    }

    /// Asserts a success envelope and returns `data`.
    pub fn data(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.body);
        let j = self.json();
        assert_eq!(j["status"], "success", "{}", self.body);
        j["data"].clone()
    }
}

pub async fn send(app: &Router, req: Request<Body>) -> Resp {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Resp {
        status,
        content_type,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub async fn get(app: &Router, uri: &str) -> Resp {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

pub async fn post_form(app: &Router, uri: &str, form: &str) -> Resp {
    send(
        app,
        Request::post(uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form.to_string()))
            .unwrap(),
    )
    .await
}

pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A `Queryable` that sleeps in every call, to provoke query timeouts.
pub struct SlowQueryable {
    pub inner: Arc<MemStorage>,
    pub delay: Duration,
}

impl Queryable for SlowQueryable {
    fn select(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<Vec<Series>, StorageError> {
        std::thread::sleep(self.delay);
        self.inner.select(matchers, hints)
    }
    fn series(
        &self,
        matchers: &[Matcher],
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<Labels>, StorageError> {
        std::thread::sleep(self.delay);
        self.inner.series(matchers, start, end)
    }
    fn label_names(
        &self,
        matchers: &[Matcher],
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<String>, StorageError> {
        std::thread::sleep(self.delay);
        self.inner.label_names(matchers, start, end)
    }
    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<String>, StorageError> {
        std::thread::sleep(self.delay);
        self.inner.label_values(name, matchers, start, end)
    }
}

pub fn slow_fixture(delay: Duration, limits: ApiLimits) -> Fixture {
    let store = Arc::new(MemStorage::new());
    load(&store);
    let slow = Arc::new(SlowQueryable {
        inner: store.clone(),
        delay,
    });
    let registry = Arc::new(RwLock::new(Registry::default()));
    let state = ApiState::new(Engine::default(), slow, store.clone(), registry).with_limits(limits);
    let app = router(state.clone());
    Fixture { store, state, app }
}

/// `/metrics` as OpenMetrics (encoded by prometheus-client directly).
pub async fn metrics_om(app: &Router) -> Resp {
    send(
        app,
        Request::get("/metrics")
            .header("accept", "application/openmetrics-text;version=1.0.0")
            .body(Body::empty())
            .unwrap(),
    )
    .await
}
