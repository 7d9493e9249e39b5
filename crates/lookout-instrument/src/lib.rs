//! Prometheus instrumentation for axum/tower services, built on `prometheus-client`.
//!
//! - [`Metrics`] registers everything a service exposes: the HTTP layer
//!   ([`Metrics::http_layer`]: `http_requests_total{method,path,status}`,
//!   `http_request_duration_seconds{method,path}`, `http_requests_in_flight`; or
//!   [`Metrics::micrometer_http_layer`]: Spring Boot's `http_server_requests_seconds` and
//!   `http_server_requests_seconds_max`), the
//!   `process_*` metrics, business counters/gauges/histograms (label sets are structs declared
//!   with [`label_set!`], so label names are checked at compile time) and [`UniqueCounter`]s
//!   (HyperLogLog distinct counts over sliding windows, exported as gauges).
//! - [`MetricsExporter`] serves the registry: Prometheus text 0.0.4, or OpenMetrics 1.0 when the
//!   scraper's `Accept` header prefers it.
//!
//! ```
//! use axum::{Router, routing::get};
//! use lookout_instrument::{HttpMetricsConfig, Metrics, UniqueCounterConfig, label_set};
//!
//! label_set! {
//!     pub struct WorkspaceLabels { workspace_id: String }
//! }
//!
//! # fn main() -> Result<(), lookout_instrument::InstrumentError> {
//! let mut metrics = Metrics::new();
//! let http = metrics.http_layer(HttpMetricsConfig::default())?;
//! let logins = metrics.counter("user_logins_total", "Logins.")?;
//! let members = metrics.gauge_family::<WorkspaceLabels>("workspace_members_total", "Members per workspace.")?;
//! let active = metrics.unique_counter(
//!     UniqueCounterConfig::new()
//!         .daily("users_daily_active", "Distinct users in the last 24 hours.")
//!         .monthly("users_monthly_active", "Distinct users in the last 30 days."),
//! )?;
//! let exporter = metrics.exporter();
//!
//! let app: Router = Router::new()
//!     .route("/api/login/{user}", get(move || async move {
//!         logins.inc();
//!         active.observe("user-42");
//!         "ok"
//!     }))
//!     .merge(exporter.route("/metrics"))
//!     .layer(http); // `Router::layer`, so the matched route template is known
//! members.get_or_create(&WorkspaceLabels { workspace_id: "7".into() }).set(3);
//! # let _ = app;
//! # Ok(()) }
//! ```

mod exporter;
pub mod hll;
mod http;
mod process;
mod unique;

use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::{
    EncodeLabelKey, EncodeLabelSet, EncodeLabelValue, LabelSetEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

pub use exporter::MetricsExporter;
pub use http::{
    DEFAULT_BUCKETS, ExceptionName, HttpMetricsConfig, HttpMetricsLayer, HttpMetricsService,
    ResponseFuture, method_label, micrometer_outcome,
};
pub use lookout_exposition::Format;
pub use process::ProcessStats;
pub use prometheus_client;
pub use unique::{UniqueCounter, UniqueCounterConfig, WindowConfig};

/// Re-exported metric handle types.
pub mod metrics {
    pub use prometheus_client::metrics::counter::Counter;
    pub use prometheus_client::metrics::family::Family;
    pub use prometheus_client::metrics::gauge::Gauge;
    pub use prometheus_client::metrics::histogram::{
        Histogram, exponential_buckets, linear_buckets,
    };

    /// A counter of `f64` values (e.g. seconds).
    pub type CounterF64 = Counter<f64, std::sync::atomic::AtomicU64>;
    /// A gauge of `f64` values.
    pub type GaugeF64 = Gauge<f64, std::sync::atomic::AtomicU64>;
}

/// A family of histograms sharing one bucket layout.
pub type HistogramFamily<L> = Family<L, Histogram, Buckets>;

/// Errors from registering metrics or rendering the exposition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstrumentError {
    #[error("invalid metric name {0:?}")]
    InvalidName(String),
    #[error("counter name {0:?} must end in _total")]
    CounterSuffix(String),
    #[error("metric name {0:?} is already registered")]
    Duplicate(String),
    #[error("help text of {0} must not contain a newline or backslash")]
    InvalidHelp(String),
    #[error("invalid histogram buckets: {0}")]
    InvalidBuckets(String),
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("encoding the exposition failed")]
    Encode,
}

/// Bound of label-set types usable in a [`Family`]; implemented by every [`label_set!`] struct.
pub trait LabelSet:
    EncodeLabelSet + Clone + Hash + Eq + fmt::Debug + Send + Sync + 'static
{
}

impl<T: EncodeLabelSet + Clone + Hash + Eq + fmt::Debug + Send + Sync + 'static> LabelSet for T {}

/// Histogram bucket upper bounds (validated: finite, strictly increasing, non-empty).
#[derive(Clone, Debug)]
pub struct Buckets(Arc<[f64]>);

impl Buckets {
    pub fn new(bounds: &[f64]) -> Result<Self, InstrumentError> {
        if bounds.is_empty() {
            return Err(InstrumentError::InvalidBuckets("no buckets".into()));
        }
        if bounds.iter().any(|b| !b.is_finite()) {
            return Err(InstrumentError::InvalidBuckets(
                "bounds must be finite (+Inf is implied)".into(),
            ));
        }
        if bounds.windows(2).any(|w| w[0] >= w[1]) {
            return Err(InstrumentError::InvalidBuckets(
                "bounds must be strictly increasing".into(),
            ));
        }
        Ok(Buckets(bounds.into()))
    }

    pub fn bounds(&self) -> &[f64] {
        &self.0
    }
}

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// Where "now" comes from for time-windowed metrics.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to (tests, simulations).
#[derive(Debug)]
pub struct ManualClock {
    now: parking_lot::Mutex<SystemTime>,
}

impl ManualClock {
    pub fn new(now: SystemTime) -> Self {
        ManualClock {
            now: parking_lot::Mutex::new(now),
        }
    }

    pub fn set(&self, now: SystemTime) {
        *self.now.lock() = now;
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock();
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock()
    }
}

/// How a family name occupies the exposition (for duplicate detection).
pub(crate) enum NameKind<'a> {
    /// Exposed as `<base>_total`; the name given ends in `_total`.
    Counter(&'a str),
    /// Exposed as `<name>_bucket`, `<name>_sum`, `<name>_count`.
    Histogram(&'a str),
    /// Exposed as the name itself.
    Plain(&'a str),
}

/// The set of metrics a service exposes. Register everything at start-up, keep the returned
/// handles, then turn it into a [`MetricsExporter`].
pub struct Metrics {
    registry: Registry,
    names: HashSet<String>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with the `process_*` metrics.
    pub fn new() -> Self {
        let mut m = Self::without_process_metrics();
        for name in process::PROCESS_METRIC_NAMES {
            m.names.insert(name.to_owned());
        }
        m.names.insert("process_cpu_seconds".to_owned());
        m.registry
            .register_collector(Box::new(process::ProcessCollector));
        m
    }

    /// An empty registry.
    pub fn without_process_metrics() -> Self {
        Metrics {
            registry: Registry::default(),
            names: HashSet::new(),
        }
    }

    pub(crate) fn check_names(&mut self, names: &[NameKind<'_>]) -> Result<(), InstrumentError> {
        let mut reserve: Vec<String> = Vec::new();
        for kind in names {
            match *kind {
                NameKind::Counter(name) => {
                    check_metric_name(name)?;
                    let Some(base) = name.strip_suffix("_total") else {
                        return Err(InstrumentError::CounterSuffix(name.to_owned()));
                    };
                    if base.is_empty() {
                        return Err(InstrumentError::InvalidName(name.to_owned()));
                    }
                    reserve.push(name.to_owned());
                    reserve.push(base.to_owned());
                }
                NameKind::Histogram(name) => {
                    check_metric_name(name)?;
                    reserve.push(name.to_owned());
                    for suffix in ["_bucket", "_sum", "_count"] {
                        reserve.push(format!("{name}{suffix}"));
                    }
                }
                NameKind::Plain(name) => {
                    check_metric_name(name)?;
                    reserve.push(name.to_owned());
                }
            }
        }
        let mut seen = HashSet::new();
        for n in &reserve {
            if self.names.contains(n) || !seen.insert(n.as_str()) {
                return Err(InstrumentError::Duplicate(n.clone()));
            }
        }
        self.names.extend(reserve);
        Ok(())
    }

    /// Registers under `name` (counters without `_total`: prometheus-client appends it).
    pub(crate) fn register_checked(&mut self, name: &str, help: &str, metric: impl Metric) {
        // prometheus-client appends a full stop to every help text.
        let help = help.strip_suffix('.').unwrap_or(help);
        self.registry.register(name, help, metric);
    }

    fn counter_like<M: Metric>(
        &mut self,
        name: &str,
        help: &str,
        metric: M,
    ) -> Result<(), InstrumentError> {
        check_help(name, help)?;
        self.check_names(&[NameKind::Counter(name)])?;
        let base = name.strip_suffix("_total").unwrap_or(name);
        self.register_checked(base, help, metric);
        Ok(())
    }

    fn plain<M: Metric>(
        &mut self,
        name: &str,
        help: &str,
        metric: M,
    ) -> Result<(), InstrumentError> {
        check_help(name, help)?;
        self.check_names(&[NameKind::Plain(name)])?;
        self.register_checked(name, help, metric);
        Ok(())
    }

    fn histogram_like<M: Metric>(
        &mut self,
        name: &str,
        help: &str,
        metric: M,
    ) -> Result<(), InstrumentError> {
        check_help(name, help)?;
        self.check_names(&[NameKind::Histogram(name)])?;
        self.register_checked(name, help, metric);
        Ok(())
    }

    /// A counter exposed as `name`, which must end in `_total`.
    pub fn counter(&mut self, name: &str, help: &str) -> Result<Counter, InstrumentError> {
        let c = Counter::default();
        self.counter_like(name, help, c.clone())?;
        Ok(c)
    }

    /// A floating-point counter exposed as `name` (ending in `_total`).
    pub fn counter_f64(
        &mut self,
        name: &str,
        help: &str,
    ) -> Result<metrics::CounterF64, InstrumentError> {
        let c = Counter::<f64, AtomicU64>::default();
        self.counter_like(name, help, c.clone())?;
        Ok(c)
    }

    /// A family of counters keyed by the label-set type `L`; `name` must end in `_total`.
    pub fn counter_family<L: LabelSet>(
        &mut self,
        name: &str,
        help: &str,
    ) -> Result<Family<L, Counter>, InstrumentError> {
        let f = Family::<L, Counter>::default();
        self.counter_like(name, help, f.clone())?;
        Ok(f)
    }

    /// An integer gauge.
    pub fn gauge(&mut self, name: &str, help: &str) -> Result<Gauge, InstrumentError> {
        let g = Gauge::default();
        self.plain(name, help, g.clone())?;
        Ok(g)
    }

    /// A floating-point gauge.
    pub fn gauge_f64(
        &mut self,
        name: &str,
        help: &str,
    ) -> Result<metrics::GaugeF64, InstrumentError> {
        let g = Gauge::<f64, AtomicU64>::default();
        self.plain(name, help, g.clone())?;
        Ok(g)
    }

    /// A family of integer gauges keyed by the label-set type `L`.
    pub fn gauge_family<L: LabelSet>(
        &mut self,
        name: &str,
        help: &str,
    ) -> Result<Family<L, Gauge>, InstrumentError> {
        let f = Family::<L, Gauge>::default();
        self.plain(name, help, f.clone())?;
        Ok(f)
    }

    /// A histogram with the given bucket upper bounds.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Result<Histogram, InstrumentError> {
        let b = Buckets::new(buckets)?;
        let h = b.new_metric();
        self.histogram_like(name, help, h.clone())?;
        Ok(h)
    }

    /// A family of histograms keyed by the label-set type `L`, all with the same buckets.
    pub fn histogram_family<L: LabelSet>(
        &mut self,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Result<HistogramFamily<L>, InstrumentError> {
        let f = Family::new_with_constructor(Buckets::new(buckets)?);
        self.histogram_like(name, help, f.clone())?;
        Ok(f)
    }

    /// A distinct-value counter whose windows are exported as gauges.
    pub fn unique_counter(
        &mut self,
        config: UniqueCounterConfig,
    ) -> Result<UniqueCounter, InstrumentError> {
        for w in &config.windows {
            check_help(&w.name, &w.help)?;
        }
        let counter = UniqueCounter::new(config)?;
        let names: Vec<&str> = counter.window_names().collect();
        let kinds: Vec<NameKind<'_>> = names.iter().map(|n| NameKind::Plain(n)).collect();
        self.check_names(&kinds)?;
        self.registry
            .register_collector(Box::new(unique::UniqueCollector(counter.clone())));
        Ok(counter)
    }

    /// The HTTP layer with Prometheus naming: `http_requests_total{method,path,status}`,
    /// `http_request_duration_seconds{method,path}`, `http_requests_in_flight`.
    pub fn http_layer(
        &mut self,
        config: HttpMetricsConfig,
    ) -> Result<HttpMetricsLayer, InstrumentError> {
        HttpMetricsLayer::register_prometheus(self, &config)
    }

    /// The HTTP layer with Spring Boot/Micrometer naming:
    /// `http_server_requests_seconds{exception,method,outcome,status,uri}` (histogram) and
    /// `http_server_requests_seconds_max` (gauge: slowest request in the last `max_window`).
    pub fn micrometer_http_layer(
        &mut self,
        config: HttpMetricsConfig,
    ) -> Result<HttpMetricsLayer, InstrumentError> {
        HttpMetricsLayer::register_micrometer(self, &config)
    }

    /// The underlying registry, for metric kinds this crate does not wrap. Names registered
    /// here bypass the duplicate and naming checks.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Freezes the registry into an exporter (the handles returned earlier keep working).
    pub fn exporter(self) -> MetricsExporter {
        MetricsExporter::new(self.registry)
    }
}

fn check_metric_name(name: &str) -> Result<(), InstrumentError> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if ok {
        Ok(())
    } else {
        Err(InstrumentError::InvalidName(name.to_owned()))
    }
}

fn check_help(name: &str, help: &str) -> Result<(), InstrumentError> {
    if help.contains(['\n', '\\']) {
        Err(InstrumentError::InvalidHelp(name.to_owned()))
    } else {
        Ok(())
    }
}

/// Writes one `key="value"` label (used by [`label_set!`] and the HTTP label sets).
#[doc(hidden)]
pub fn encode_label<V: EncodeLabelValue>(
    encoder: &mut LabelSetEncoder<'_>,
    key: &str,
    value: &V,
) -> Result<(), fmt::Error> {
    let mut label = encoder.encode_label();
    let mut key_encoder = label.encode_label_key()?;
    EncodeLabelKey::encode(&key, &mut key_encoder)?;
    let mut value_encoder = key_encoder.encode_label_value()?;
    value.encode(&mut value_encoder)?;
    value_encoder.finish()
}

#[doc(hidden)]
pub mod __private {
    pub use crate::encode_label;
    pub use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
}

/// Declares a label-set struct for metric families: each field is a label named after it
/// (values: `String`, `&'static str`, integers, `bool`, …). The struct derives `Clone`, `Debug`,
/// `PartialEq`, `Eq` and `Hash`.
///
/// ```
/// lookout_instrument::label_set! {
///     /// Labels of `cache_gets_total`.
///     pub struct CacheGet { pub cache: &'static str, pub result: &'static str }
/// }
/// let l = CacheGet { cache: "users", result: "hit" };
/// assert_eq!(l.clone(), l);
/// ```
#[macro_export]
macro_rules! label_set {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($fvis:vis $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        $vis struct $name { $($fvis $field: $ty),* }

        impl $crate::__private::EncodeLabelSet for $name {
            fn encode(
                &self,
                encoder: &mut $crate::__private::LabelSetEncoder<'_>,
            ) -> ::core::result::Result<(), ::core::fmt::Error> {
                $( $crate::__private::encode_label(encoder, ::core::stringify!($field), &self.$field)?; )*
                ::core::result::Result::Ok(())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    label_set! {
        struct Ws { workspace_id: String, kind: &'static str }
    }

    fn render(m: Metrics, format: Format) -> String {
        String::from_utf8(m.exporter().render(format).expect("renders")).expect("utf-8")
    }

    #[test]
    fn names_are_checked() {
        let mut m = Metrics::without_process_metrics();
        assert_eq!(
            m.counter("logins", "x").err(),
            Some(InstrumentError::CounterSuffix("logins".into()))
        );
        assert!(matches!(
            m.counter("_total", "x"),
            Err(InstrumentError::InvalidName(_))
        ));
        assert!(matches!(
            m.gauge("1abc", "x"),
            Err(InstrumentError::InvalidName(_))
        ));
        assert!(matches!(
            m.gauge("a-b", "x"),
            Err(InstrumentError::InvalidName(_))
        ));
        assert!(matches!(
            m.gauge("", "x"),
            Err(InstrumentError::InvalidName(_))
        ));
        assert!(matches!(
            m.gauge("ok", "two\nlines"),
            Err(InstrumentError::InvalidHelp(_))
        ));
        m.counter("logins_total", "x").expect("first");
        assert_eq!(
            m.counter("logins_total", "x").err(),
            Some(InstrumentError::Duplicate("logins_total".into()))
        );
        assert!(matches!(
            m.gauge("logins", "x"),
            Err(InstrumentError::Duplicate(_))
        ));
        m.histogram("lat_seconds", "x", &[1.0]).expect("histogram");
        assert!(matches!(
            m.gauge("lat_seconds_count", "x"),
            Err(InstrumentError::Duplicate(_))
        ));
        assert!(matches!(
            m.histogram("h", "x", &[2.0, 1.0]),
            Err(InstrumentError::InvalidBuckets(_))
        ));
        assert!(matches!(
            m.histogram("h", "x", &[f64::NAN]),
            Err(InstrumentError::InvalidBuckets(_))
        ));
        assert!(matches!(
            m.histogram("h", "x", &[]),
            Err(InstrumentError::InvalidBuckets(_))
        ));
        // Process metrics are reserved in a registry that has them.
        let mut m = Metrics::new();
        assert!(matches!(
            m.gauge("process_open_fds", "x"),
            Err(InstrumentError::Duplicate(_))
        ));
        m.http_layer(HttpMetricsConfig::default()).expect("http");
        assert!(matches!(
            m.http_layer(HttpMetricsConfig::default()),
            Err(InstrumentError::Duplicate(_))
        ));
    }

    #[test]
    fn business_metrics_render_with_their_names() {
        let mut m = Metrics::without_process_metrics();
        let logins = m.counter("user_logins_total", "Logins.").expect("counter");
        let bytes = m
            .counter_f64("storage_upload_bytes_total", "Bytes")
            .expect("counter");
        let rooms = m.gauge("chat_rooms_active", "Rooms").expect("gauge");
        let members = m
            .gauge_family::<Ws>("workspace_members_total", "Members")
            .expect("family");
        let dur = m
            .histogram("video_call_duration_seconds", "Calls", &[60.0, 600.0])
            .expect("histogram");
        logins.inc_by(3);
        bytes.inc_by(1.5);
        rooms.set(4);
        members
            .get_or_create(&Ws {
                workspace_id: "w\"1".into(),
                kind: "team",
            })
            .set(5);
        dur.observe(90.0);
        let text = render(m, Format::PrometheusText);
        for line in [
            "# HELP user_logins_total Logins.\n",
            "# TYPE user_logins_total counter\n",
            "user_logins_total 3\n",
            "storage_upload_bytes_total 1.5\n",
            "# TYPE chat_rooms_active gauge\n",
            "chat_rooms_active 4\n",
            "workspace_members_total{workspace_id=\"w\\\"1\",kind=\"team\"} 5\n",
            "video_call_duration_seconds_bucket{le=\"60\"} 0\n",
            "video_call_duration_seconds_bucket{le=\"600\"} 1\n",
            "video_call_duration_seconds_bucket{le=\"+Inf\"} 1\n",
            "video_call_duration_seconds_count 1\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn seed_total_gauges_survive_strict_openmetrics() {
        let mut m = Metrics::new();
        m.gauge("users_active_total", "Concurrent users")
            .expect("gauge")
            .set(3);
        m.counter("user_logins_total", "Logins")
            .expect("counter")
            .inc();
        let exporter = m.exporter();
        let om = exporter.render(Format::OpenMetrics).expect("renders");
        let samples = lookout_exposition::parse_samples(&om, Format::OpenMetrics)
            .expect("strict OpenMetrics parse");
        let find = |name: &str| samples.iter().find(|s| s.name == name).map(|s| s.value);
        assert_eq!(find("users_active_total"), Some(3.0));
        assert_eq!(find("user_logins_total"), Some(1.0));
        assert!(find("process_cpu_seconds_total").is_some());
        assert!(find("process_start_time_seconds").is_some());
    }
}
