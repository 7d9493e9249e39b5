//! The Prometheus HTTP API v1 as an axum [`Router`]: instant and range queries (run on the
//! blocking pool with a timeout and a concurrency limit), series/labels/label values,
//! metadata, targets, rules and alerts, status pages, exemplars (always empty), the remote-write receiver,
//! `/-/healthy`, `/-/ready`, `/-/reload` and `/metrics`.
//!
//! Envelopes, error types, HTTP codes, parameter parsing and JSON number formatting follow
//! Prometheus 3 so Grafana, promtool and Prometheus client libraries work unchanged.
//!
//! The binary supplies everything outside this crate through [`ApiState`]: storage
//! ([`Queryable`]/[`Appendable`]), the PromQL [`Engine`], and small provider traits for
//! targets ([`TargetsProvider`]), rules and alerts ([`RulesProvider`]), config reloads ([`ReloadHook`]), runtime information
//! ([`RuntimeInfoProvider`]) and storage statistics ([`TsdbStatusProvider`]).

mod error;
mod handlers;
mod json;
mod metrics;
mod params;
mod tsdb_status;

pub use error::{ApiError, ErrorType};
pub use json::{format_sample_value, query_data};
pub use metrics::ApiMetrics;
pub use params::{format_prom_duration, parse_duration_ns, parse_rfc3339_ms, parse_time};
pub use tsdb_status::{HeadStats, TsdbStatus, TsdbStatusProvider};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use axum::Router;
use lookout_promql::Engine;
use lookout_storage::{Appendable, Labels, Queryable};
use parking_lot::RwLock;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::Semaphore;

/// Limits the API enforces.
#[derive(Clone, Debug)]
pub struct ApiLimits {
    /// Longest a query may run; a `timeout` parameter can only shorten it (Prometheus: 2m).
    pub query_timeout: Duration,
    /// Queries evaluated at once; more wait in a queue (Prometheus `--query.max-concurrency`: 20).
    pub max_concurrent_queries: usize,
    /// Largest accepted remote-write body, compressed (413 above).
    pub remote_write_max_body_bytes: usize,
    /// Largest accepted remote-write body after snappy decompression (413 above).
    pub remote_write_max_decoded_bytes: usize,
    /// Largest urlencoded POST body for query/series/labels requests (413 above).
    pub max_form_body_bytes: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            query_timeout: Duration::from_secs(120),
            max_concurrent_queries: 20,
            remote_write_max_body_bytes: 32 << 20,
            remote_write_max_decoded_bytes: lookout_remote_write::DEFAULT_MAX_DECODED_BYTES,
            max_form_body_bytes: 8 << 20,
        }
    }
}

/// `/api/v1/status/buildinfo` (field names as Prometheus's JSON).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct BuildInfo {
    pub version: String,
    pub revision: String,
    pub branch: String,
    #[serde(rename = "buildUser")]
    pub build_user: String,
    #[serde(rename = "buildDate")]
    pub build_date: String,
    #[serde(rename = "goVersion")]
    pub go_version: String,
}

impl Default for BuildInfo {
    /// This crate's version; the binary should fill in revision/branch/date when it knows them.
    fn default() -> Self {
        BuildInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: String::new(),
            branch: String::new(),
            build_user: String::new(),
            build_date: String::new(),
            go_version: String::new(),
        }
    }
}

/// What `/api/v1/status/runtimeinfo` reports (the Go-runtime fields of Prometheus's answer
/// are filled from the process where they have a meaning).
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeInfo {
    pub start_time: SystemTime,
    pub cwd: String,
    pub hostname: String,
    pub reload_config_success: bool,
    pub last_config_time: Option<SystemTime>,
    pub corruption_count: i64,
    /// As Prometheus shows it, e.g. `7d` or `7d or 10GiB`.
    pub storage_retention: String,
}

/// Supplies [`RuntimeInfo`]; the binary implements it over its config/storage state.
pub trait RuntimeInfoProvider: Send + Sync {
    fn runtime_info(&self) -> RuntimeInfo;
}

/// A provider for processes without more to tell: start time fixed at construction, the
/// current directory, config loaded successfully at start.
#[derive(Clone, Debug)]
pub struct StaticRuntimeInfo(pub RuntimeInfo);

impl StaticRuntimeInfo {
    pub fn now(storage_retention: impl Into<String>) -> Self {
        let now = SystemTime::now();
        StaticRuntimeInfo(RuntimeInfo {
            start_time: now,
            cwd: std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            reload_config_success: true,
            last_config_time: Some(now),
            corruption_count: 0,
            storage_retention: storage_retention.into(),
        })
    }
}

impl RuntimeInfoProvider for StaticRuntimeInfo {
    fn runtime_info(&self) -> RuntimeInfo {
        self.0.clone()
    }
}

/// Health of a scrape target, as in `/api/v1/targets` (`up`, `down`, `unknown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetHealth {
    Up,
    Down,
    Unknown,
}

/// One active target, mirroring Prometheus's `activeTargets` entries.
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveTarget {
    pub discovered_labels: Labels,
    pub labels: Labels,
    pub scrape_pool: String,
    pub scrape_url: String,
    pub global_url: String,
    pub last_error: String,
    /// `None` before the first scrape (rendered as Go's zero time).
    pub last_scrape: Option<SystemTime>,
    pub last_scrape_duration: Duration,
    pub health: TargetHealth,
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
}

/// One target dropped by relabelling, mirroring Prometheus's `droppedTargets` entries.
#[derive(Clone, Debug, PartialEq)]
pub struct DroppedTarget {
    pub discovered_labels: Labels,
    pub scrape_pool: String,
}

/// Metadata of one metric family as scraped (`type` as the API names it: `counter`, `gauge`,
/// `histogram`, `gaugehistogram`, `summary`, `info`, `stateset`, `unknown`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MetricMetadata {
    pub metric: String,
    pub metric_type: String,
    pub help: String,
    pub unit: String,
}

/// The metadata one active target exposed, with that target's labels.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetMetadata {
    pub target: Labels,
    pub metadata: Vec<MetricMetadata>,
}

/// Supplies targets and their metadata (the scrape manager, wired by the binary).
pub trait TargetsProvider: Send + Sync {
    fn active_targets(&self) -> Vec<ActiveTarget>;
    fn dropped_targets(&self) -> Vec<DroppedTarget>;
    /// Metadata per active target.
    fn target_metadata(&self) -> Vec<TargetMetadata>;
}

/// A [`TargetsProvider`] for processes that scrape nothing: no targets, no metadata.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTargets;

impl TargetsProvider for NoTargets {
    fn active_targets(&self) -> Vec<ActiveTarget> {
        Vec::new()
    }
    fn dropped_targets(&self) -> Vec<DroppedTarget> {
        Vec::new()
    }
    fn target_metadata(&self) -> Vec<TargetMetadata> {
        Vec::new()
    }
}

/// One alert of an alerting rule, as `/api/v1/alerts` and `/api/v1/rules` show it.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertInfo {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    /// `pending` or `firing`.
    pub state: String,
    pub active_at_ms: i64,
    pub value: f64,
    pub keep_firing_since_ms: Option<i64>,
}

/// What kind of rule a [`RuleInfo`] describes.
#[derive(Clone, Debug, PartialEq)]
pub enum RuleInfoKind {
    Recording,
    Alerting {
        duration_s: f64,
        keep_firing_for_s: f64,
        annotations: BTreeMap<String, String>,
        /// `inactive`, `pending` or `firing`.
        state: String,
        alerts: Vec<AlertInfo>,
    },
}

/// One rule and its health, as `/api/v1/rules` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleInfo {
    pub name: String,
    pub query: String,
    pub labels: BTreeMap<String, String>,
    /// `ok`, `err` or `unknown`.
    pub health: String,
    /// Empty when the last evaluation succeeded.
    pub last_error: String,
    pub evaluation_seconds: f64,
    pub last_evaluation_ms: Option<i64>,
    pub kind: RuleInfoKind,
}

/// One rule group, as `/api/v1/rules` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleGroupInfo {
    pub name: String,
    pub file: String,
    pub interval_s: f64,
    pub limit: u64,
    pub evaluation_seconds: f64,
    pub last_evaluation_ms: Option<i64>,
    pub rules: Vec<RuleInfo>,
}

/// Supplies rule groups and their alerts (the rule manager, wired by the binary).
pub trait RulesProvider: Send + Sync {
    fn rule_groups(&self) -> Vec<RuleGroupInfo>;
}

/// A [`RulesProvider`] for processes that evaluate no rules.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoRules;

impl RulesProvider for NoRules {
    fn rule_groups(&self) -> Vec<RuleGroupInfo> {
        Vec::new()
    }
}

/// Reloads the configuration (`POST /-/reload`). Runs on the blocking pool; an error (the
/// new config is invalid, ...) is answered with 500 and its text.
pub trait ReloadHook: Send + Sync {
    fn reload(&self) -> Result<(), String>;
}

impl<F> ReloadHook for F
where
    F: Fn() -> Result<(), String> + Send + Sync,
{
    fn reload(&self) -> Result<(), String> {
        self()
    }
}

/// Everything the API needs, supplied by the binary. Cheap to clone (shared handles); build
/// it with [`ApiState::new`] and set the public fields, then call [`router`] (as often as
/// needed: clones share metrics and the query concurrency limit).
#[derive(Clone)]
pub struct ApiState {
    pub engine: Engine,
    pub queryable: Arc<dyn Queryable>,
    pub appendable: Arc<dyn Appendable>,
    pub targets: Arc<dyn TargetsProvider>,
    /// Rule groups and alerts for `/api/v1/rules` and `/api/v1/alerts`.
    pub rules: Arc<dyn RulesProvider>,
    /// `None`: `/-/reload` answers 500 "reload is not available in this process".
    pub reload: Option<Arc<dyn ReloadHook>>,
    /// Current configuration as YAML, for `/api/v1/status/config`.
    pub config_yaml: Arc<dyn Fn() -> String + Send + Sync>,
    pub flags: Arc<BTreeMap<String, String>>,
    pub build_info: BuildInfo,
    pub runtime_info: Arc<dyn RuntimeInfoProvider>,
    /// Head statistics and cardinality tables for `/api/v1/status/tsdb`; `None` derives the
    /// tables from the series with data in the last two hours (no chunk count).
    pub tsdb_status: Option<Arc<dyn TsdbStatusProvider>>,
    /// The process-wide metrics registry served on `/metrics`.
    pub registry: Arc<RwLock<Registry>>,
    /// While false, `/-/ready` and the API answer 503 (e.g. during WAL replay).
    pub ready: Arc<AtomicBool>,
    limits: ApiLimits,
    query_slots: Arc<Semaphore>,
    metrics: ApiMetrics,
}

impl ApiState {
    /// A state with default limits, no targets, no reload hook, an empty config and no
    /// flags. Registers the API's own metrics in `registry`.
    pub fn new(
        engine: Engine,
        queryable: Arc<dyn Queryable>,
        appendable: Arc<dyn Appendable>,
        registry: Arc<RwLock<Registry>>,
    ) -> Self {
        let metrics = ApiMetrics::register(&mut registry.write());
        let limits = ApiLimits::default();
        ApiState {
            engine,
            queryable,
            appendable,
            targets: Arc::new(NoTargets),
            rules: Arc::new(NoRules),
            reload: None,
            config_yaml: Arc::new(String::new),
            flags: Arc::new(BTreeMap::new()),
            build_info: BuildInfo::default(),
            runtime_info: Arc::new(StaticRuntimeInfo::now("")),
            tsdb_status: None,
            registry,
            ready: Arc::new(AtomicBool::new(true)),
            query_slots: Arc::new(Semaphore::new(limits.max_concurrent_queries.max(1))),
            limits,
            metrics,
        }
    }

    /// Replaces the limits (and the query concurrency limit with them).
    pub fn with_limits(mut self, limits: ApiLimits) -> Self {
        self.query_slots = Arc::new(Semaphore::new(limits.max_concurrent_queries.max(1)));
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> &ApiLimits {
        &self.limits
    }

    pub fn metrics(&self) -> &ApiMetrics {
        &self.metrics
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// The router serving the Prometheus API v1 under `/api/v1`, the lifecycle endpoints under
/// `/-/` and self-metrics on `/metrics`.
pub fn router(state: ApiState) -> Router {
    handlers::router(Arc::new(state))
}
