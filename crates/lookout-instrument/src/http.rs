//! The tower layer recording HTTP server metrics, in Prometheus (`http_requests_total`, …) or
//! Spring Boot/Micrometer (`http_server_requests_seconds`) naming.
//!
//! The route label is axum's [`MatchedPath`] (the route template, e.g. `/api/boards/{id}`), so
//! the layer must sit where the router has matched: add it with `Router::layer`. Requests that
//! matched no route (the fallback, a 404 or 405) get one fixed path value, and methods outside the
//! standard nine are recorded as `OTHER`, so no client can grow the label space. The duration is
//! the time until the response head is ready; a request whose future is dropped before that
//! (client gone) is taken out of the in-flight gauge and records nothing else.

use std::borrow::Cow;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::MatchedPath;
use axum::http::{Method, Request, Response, StatusCode};
use parking_lot::Mutex;
use pin_project_lite::pin_project;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, LabelSetEncoder, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use tower::{Layer, Service};

use crate::{Buckets, HistogramFamily, InstrumentError, Metrics, NameKind, encode_label};

/// Prometheus client default buckets (seconds).
pub const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Options of the HTTP metrics layer.
#[derive(Clone, Debug)]
pub struct HttpMetricsConfig {
    pub(crate) buckets: Vec<f64>,
    pub(crate) unmatched_path: String,
    pub(crate) catch_panics: bool,
    pub(crate) max_window: Duration,
}

impl Default for HttpMetricsConfig {
    fn default() -> Self {
        HttpMetricsConfig {
            buckets: DEFAULT_BUCKETS.to_vec(),
            unmatched_path: "unmatched".to_owned(),
            catch_panics: true,
            max_window: Duration::from_secs(120),
        }
    }
}

impl HttpMetricsConfig {
    pub fn new() -> Self {
        Self::default()
    }

    /// Histogram bucket upper bounds in seconds (strictly increasing, finite; `+Inf` is implied).
    pub fn buckets(mut self, buckets: impl IntoIterator<Item = f64>) -> Self {
        self.buckets = buckets.into_iter().collect();
        self
    }

    /// The `path` value for requests no route matched (default `unmatched`; the Micrometer
    /// style uses Spring's `NOT_FOUND` / `REDIRECTION` / `UNKNOWN` instead).
    pub fn unmatched_path(mut self, path: impl Into<String>) -> Self {
        self.unmatched_path = path.into();
        self
    }

    /// Whether a panicking handler is turned into an empty `500` response (default) instead of
    /// unwinding further. It is recorded as a 500 either way.
    pub fn catch_panics(mut self, catch: bool) -> Self {
        self.catch_panics = catch;
        self
    }

    /// How long a request's latency stays in the Micrometer-style
    /// `http_server_requests_seconds_max` gauge (Micrometer's default: 2 minutes).
    pub fn max_window(mut self, window: Duration) -> Self {
        self.max_window = window;
        self
    }
}

/// Put this in a response's extensions to name the error behind it; the Micrometer-style layer
/// reports it as the `exception` label (Spring uses the exception's simple class name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExceptionName(pub Cow<'static, str>);

impl ExceptionName {
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        ExceptionName(name.into())
    }
}

/// Route label value: the matched template (shared with axum, no copy) or a fixed string.
#[derive(Clone, Debug)]
enum Route {
    Matched(MatchedPath),
    Fixed(Arc<str>),
    Static(&'static str),
}

impl Route {
    fn as_str(&self) -> &str {
        match self {
            Route::Matched(m) => m.as_str(),
            Route::Fixed(s) => s,
            Route::Static(s) => s,
        }
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl Hash for Route {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RequestLabels {
    method: &'static str,
    path: Route,
    status: u16,
}

impl EncodeLabelSet for RequestLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        encode_label(encoder, "method", &self.method)?;
        encode_label(encoder, "path", &self.path.as_str())?;
        encode_label(encoder, "status", &self.status)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RouteLabels {
    method: &'static str,
    path: Route,
}

impl EncodeLabelSet for RouteLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        encode_label(encoder, "method", &self.method)?;
        encode_label(encoder, "path", &self.path.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct MicrometerLabels {
    exception: Cow<'static, str>,
    method: &'static str,
    outcome: &'static str,
    status: u16,
    uri: Route,
}

impl EncodeLabelSet for MicrometerLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        encode_label(encoder, "exception", &self.exception.as_ref())?;
        encode_label(encoder, "method", &self.method)?;
        encode_label(encoder, "outcome", &self.outcome)?;
        encode_label(encoder, "status", &self.status)?;
        encode_label(encoder, "uri", &self.uri.as_str())
    }
}

#[derive(Debug)]
enum Recorder {
    Prometheus {
        requests: Family<RequestLabels, Counter>,
        duration: HistogramFamily<RouteLabels>,
        in_flight: Gauge,
    },
    Micrometer {
        requests: HistogramFamily<MicrometerLabels>,
        max: Family<MicrometerLabels, WindowMax, WindowMaxConstructor>,
    },
}

/// Number of rotating slots of a [`WindowMax`].
const MAX_SLOTS: usize = 3;

/// Largest value seen over a sliding window, like Micrometer's `TimeWindowMax`: the window is
/// cut into [`MAX_SLOTS`] slots; a value raises every slot, the gauge reads the oldest slot
/// (which has seen the whole window), and every `window / MAX_SLOTS` the oldest slot is reset
/// and becomes the newest.
#[derive(Clone, Debug)]
struct WindowMax {
    state: Arc<Mutex<MaxState>>,
    rotate_every: Duration,
}

#[derive(Debug)]
struct MaxState {
    slots: [f64; MAX_SLOTS],
    /// Index of the oldest slot (the one read).
    oldest: usize,
    last_rotation: Instant,
}

impl WindowMax {
    fn new(window: Duration) -> Self {
        WindowMax {
            state: Arc::new(Mutex::new(MaxState {
                slots: [0.0; MAX_SLOTS],
                oldest: 0,
                last_rotation: Instant::now(),
            })),
            rotate_every: (window / MAX_SLOTS as u32).max(Duration::from_millis(1)),
        }
    }

    fn rotate(&self, state: &mut MaxState, now: Instant) {
        let elapsed = now.saturating_duration_since(state.last_rotation);
        if elapsed < self.rotate_every {
            return;
        }
        let steps = elapsed.as_nanos() / self.rotate_every.as_nanos().max(1);
        for _ in 0..steps.min(MAX_SLOTS as u128) {
            state.slots[state.oldest] = 0.0;
            state.oldest = (state.oldest + 1) % MAX_SLOTS;
        }
        let advanced = self.rotate_every.as_nanos().saturating_mul(steps);
        state.last_rotation += Duration::from_nanos(u64::try_from(advanced).unwrap_or(u64::MAX));
    }

    fn record(&self, v: f64) {
        let mut state = self.state.lock();
        self.rotate(&mut state, Instant::now());
        for slot in &mut state.slots {
            if *slot < v {
                *slot = v;
            }
        }
    }

    fn get(&self) -> f64 {
        let mut state = self.state.lock();
        self.rotate(&mut state, Instant::now());
        state.slots[state.oldest]
    }
}

impl TypedMetric for WindowMax {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for WindowMax {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.get())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

#[derive(Clone, Debug)]
struct WindowMaxConstructor(Duration);

impl MetricConstructor<WindowMax> for WindowMaxConstructor {
    fn new_metric(&self) -> WindowMax {
        WindowMax::new(self.0)
    }
}

#[derive(Debug)]
struct Shared {
    recorder: Recorder,
    unmatched: Arc<str>,
    catch_panics: bool,
}

impl HttpMetricsLayer {
    /// Registers `http_requests_total`, `http_request_duration_seconds` and
    /// `http_requests_in_flight` in `metrics`.
    pub(crate) fn register_prometheus(
        metrics: &mut Metrics,
        config: &HttpMetricsConfig,
    ) -> Result<Self, InstrumentError> {
        let buckets = Buckets::new(&config.buckets)?;
        let requests: Family<RequestLabels, Counter> = Family::default();
        let duration: HistogramFamily<RouteLabels> = Family::new_with_constructor(buckets);
        let in_flight = Gauge::default();
        metrics.check_names(&[
            NameKind::Counter("http_requests_total"),
            NameKind::Histogram("http_request_duration_seconds"),
            NameKind::Plain("http_requests_in_flight"),
        ])?;
        metrics.register_checked(
            "http_requests",
            "Total number of HTTP requests by method, route template and status code.",
            requests.clone(),
        );
        metrics.register_checked(
            "http_request_duration_seconds",
            "HTTP request latency in seconds until the response head, by method and route template.",
            duration.clone(),
        );
        metrics.register_checked(
            "http_requests_in_flight",
            "Number of HTTP requests being served.",
            in_flight.clone(),
        );
        Ok(Self::new(
            Recorder::Prometheus {
                requests,
                duration,
                in_flight,
            },
            config,
        ))
    }

    /// Registers Spring Boot's `http_server_requests_seconds` histogram in `metrics`.
    pub(crate) fn register_micrometer(
        metrics: &mut Metrics,
        config: &HttpMetricsConfig,
    ) -> Result<Self, InstrumentError> {
        let buckets = Buckets::new(&config.buckets)?;
        if config.max_window.is_zero() {
            return Err(InstrumentError::InvalidConfig(
                "max_window must be positive".into(),
            ));
        }
        let requests: HistogramFamily<MicrometerLabels> = Family::new_with_constructor(buckets);
        let max = Family::new_with_constructor(WindowMaxConstructor(config.max_window));
        metrics.check_names(&[
            NameKind::Histogram("http_server_requests_seconds"),
            NameKind::Plain("http_server_requests_seconds_max"),
        ])?;
        metrics.register_checked(
            "http_server_requests_seconds",
            "Duration of HTTP server request handling",
            requests.clone(),
        );
        metrics.register_checked(
            "http_server_requests_seconds_max",
            "Maximum duration of HTTP server request handling in the recent window",
            max.clone(),
        );
        Ok(Self::new(Recorder::Micrometer { requests, max }, config))
    }
}

impl Recorder {
    fn start(&self) {
        if let Recorder::Prometheus { in_flight, .. } = self {
            in_flight.inc();
        }
    }

    fn end(&self) {
        if let Recorder::Prometheus { in_flight, .. } = self {
            in_flight.dec();
        }
    }

    fn record(
        &self,
        method: &'static str,
        route: Route,
        status: u16,
        exception: Cow<'static, str>,
        seconds: f64,
    ) {
        match self {
            Recorder::Prometheus {
                requests, duration, ..
            } => {
                let labels = RequestLabels {
                    method,
                    path: route,
                    status,
                };
                requests.get_or_create(&labels).inc();
                let labels = RouteLabels {
                    method,
                    path: labels.path,
                };
                duration.get_or_create(&labels).observe(seconds);
            }
            Recorder::Micrometer { requests, max } => {
                let uri = match route {
                    Route::Matched(_) => route,
                    _ => Route::Static(micrometer_unmatched_uri(status)),
                };
                let labels = MicrometerLabels {
                    exception,
                    method,
                    outcome: micrometer_outcome(status),
                    status,
                    uri,
                };
                requests.get_or_create(&labels).observe(seconds);
                max.get_or_create(&labels).record(seconds);
            }
        }
    }
}

/// Spring's `uri` for requests without a handler pattern.
fn micrometer_unmatched_uri(status: u16) -> &'static str {
    match status {
        404 => "NOT_FOUND",
        300..=399 => "REDIRECTION",
        _ => "UNKNOWN",
    }
}

/// Spring's `outcome` from the status series.
pub fn micrometer_outcome(status: u16) -> &'static str {
    match status {
        100..=199 => "INFORMATIONAL",
        200..=299 => "SUCCESS",
        300..=399 => "REDIRECTION",
        400..=499 => "CLIENT_ERROR",
        500..=599 => "SERVER_ERROR",
        _ => "UNKNOWN",
    }
}

/// The `method` label: the standard methods by name, anything else as `OTHER`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// A tower [`Layer`] recording HTTP metrics; made by [`crate::Metrics::http_layer`] or
/// [`crate::Metrics::micrometer_http_layer`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HttpMetricsLayer {
    shared: Arc<Shared>,
}

impl HttpMetricsLayer {
    fn new(recorder: Recorder, config: &HttpMetricsConfig) -> Self {
        HttpMetricsLayer {
            shared: Arc::new(Shared {
                recorder,
                unmatched: Arc::from(config.unmatched_path.as_str()),
                catch_panics: config.catch_panics,
            }),
        }
    }
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetricsService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service made by [`HttpMetricsLayer`].
#[derive(Clone, Debug)]
pub struct HttpMetricsService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HttpMetricsService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let method = method_label(req.method());
        let route = match req.extensions().get::<MatchedPath>() {
            Some(m) => Route::Matched(m.clone()),
            None => Route::Fixed(self.shared.unmatched.clone()),
        };
        let mut guard = Guard::start(self.shared.clone(), method, route);
        let fut = if self.shared.catch_panics {
            match catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
                Ok(fut) => Some(fut),
                Err(payload) => {
                    log_panic(payload.as_ref());
                    guard.finish(500, Cow::Borrowed("Panic"));
                    None
                }
            }
        } else {
            let mut detector = PanicDetector {
                guard: Some(&mut guard),
            };
            let fut = self.inner.call(req);
            detector.guard = None;
            Some(fut)
        };
        ResponseFuture { fut, guard }
    }
}

fn log_panic(payload: &(dyn std::any::Any + Send)) {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload");
    tracing::error!(panic = message, "request handler panicked; answering 500");
}

/// One request's bookkeeping: in-flight on creation, out on drop, recorded once.
#[derive(Debug)]
struct Guard {
    shared: Arc<Shared>,
    method: &'static str,
    route: Option<Route>,
    start: Instant,
}

impl Guard {
    fn start(shared: Arc<Shared>, method: &'static str, route: Route) -> Self {
        shared.recorder.start();
        Guard {
            shared,
            method,
            route: Some(route),
            start: Instant::now(),
        }
    }

    fn finish(&mut self, status: u16, exception: Cow<'static, str>) {
        if let Some(route) = self.route.take() {
            let seconds = self.start.elapsed().as_secs_f64();
            self.shared
                .recorder
                .record(self.method, route, status, exception, seconds);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.recorder.end();
    }
}

/// Records a 500 if a panic unwinds through the scope holding it (when panics are not caught).
struct PanicDetector<'g> {
    guard: Option<&'g mut Guard>,
}

impl Drop for PanicDetector<'_> {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take()
            && std::thread::panicking()
        {
            guard.finish(500, Cow::Borrowed("Panic"));
        }
    }
}

pin_project! {
    /// Future of [`HttpMetricsService`].
    pub struct ResponseFuture<F> {
        // `None` when the inner service panicked in `call`.
        #[pin]
        fut: Option<F>,
        guard: Guard,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let guard = this.guard;
        let result = match this.fut.as_pin_mut() {
            Some(mut fut) => {
                if guard.shared.catch_panics {
                    match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
                        Ok(Poll::Pending) => return Poll::Pending,
                        Ok(Poll::Ready(result)) => result,
                        Err(payload) => {
                            log_panic(payload.as_ref());
                            guard.finish(500, Cow::Borrowed("Panic"));
                            return Poll::Ready(Ok(internal_error()));
                        }
                    }
                } else {
                    let mut detector = PanicDetector {
                        guard: Some(&mut *guard),
                    };
                    let poll = fut.poll(cx);
                    detector.guard = None;
                    match poll {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(result) => result,
                    }
                }
            }
            None => return Poll::Ready(Ok(internal_error())),
        };
        match &result {
            Ok(resp) => {
                let exception = resp
                    .extensions()
                    .get::<ExceptionName>()
                    .map_or(Cow::Borrowed("None"), |e| e.0.clone());
                guard.finish(resp.status().as_u16(), exception);
            }
            Err(_) => guard.finish(500, Cow::Borrowed(short_type_name::<E>())),
        }
        Poll::Ready(result)
    }
}

fn internal_error<B: Default>() -> Response<B> {
    let mut resp = Response::new(B::default());
    *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    resp
}

/// `my_crate::errors::BadThing<T>` → `BadThing`.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes() {
        assert_eq!(micrometer_outcome(100), "INFORMATIONAL");
        assert_eq!(micrometer_outcome(204), "SUCCESS");
        assert_eq!(micrometer_outcome(301), "REDIRECTION");
        assert_eq!(micrometer_outcome(404), "CLIENT_ERROR");
        assert_eq!(micrometer_outcome(503), "SERVER_ERROR");
        assert_eq!(micrometer_outcome(999), "UNKNOWN");
        assert_eq!(micrometer_unmatched_uri(404), "NOT_FOUND");
        assert_eq!(micrometer_unmatched_uri(302), "REDIRECTION");
        assert_eq!(micrometer_unmatched_uri(405), "UNKNOWN");
    }

    #[test]
    fn methods() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let custom = Method::from_bytes(b"FOO").expect("valid token");
        assert_eq!(method_label(&custom), "OTHER");
    }

    #[test]
    fn type_names() {
        assert_eq!(short_type_name::<std::io::Error>(), "Error");
        assert_eq!(short_type_name::<Option<u8>>(), "Option");
        assert_eq!(short_type_name::<u8>(), "u8");
    }

    #[test]
    fn window_max_slides() {
        let m = WindowMax::new(Duration::from_secs(3));
        m.record(0.5);
        m.record(0.2);
        assert_eq!(m.get(), 0.5);
        let start = Instant::now();
        {
            let mut st = m.state.lock();
            st.last_rotation = start;
            m.rotate(&mut st, start + Duration::from_millis(1500));
        }
        // One slot rotated out; the value is still in the two younger slots.
        assert_eq!(m.get(), 0.5);
        {
            let mut st = m.state.lock();
            m.rotate(&mut st, start + Duration::from_millis(3500));
            assert_eq!(st.slots[st.oldest], 0.0);
        }
        // A jump far ahead empties every slot without looping forever.
        let mut st = m.state.lock();
        st.slots = [1.0; MAX_SLOTS];
        m.rotate(&mut st, start + Duration::from_secs(1_000_000));
        assert_eq!(st.slots, [0.0; MAX_SLOTS]);
    }

    #[test]
    fn routes_compare_by_text() {
        let a = Route::Fixed(Arc::from("/x"));
        let b = Route::Static("/x");
        assert_eq!(a, b);
        let mut h1 = std::collections::hash_map::DefaultHasher::new();
        let mut h2 = std::collections::hash_map::DefaultHasher::new();
        a.hash(&mut h1);
        b.hash(&mut h2);
        assert_eq!(h1.finish(), h2.finish());
    }
}
