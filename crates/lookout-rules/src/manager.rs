//! The rule manager: loads `rule_files`, runs each group on its interval (tokio task per
//! group, timestamps aligned per group like Prometheus), swaps groups on reload (an invalid
//! file set is refused and the running groups stay), restores alert state once after start,
//! exports Prometheus's rule-group metrics and snapshots state for the API.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use lookout_config::PrometheusConfig;
use lookout_notifier::AlertSink;
use lookout_storage::{Appendable, Queryable, Timestamp};
use parking_lot::{Mutex, RwLock};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::{error, info};

use crate::file::{Language, RuleFile, RuleFileError, RuleKind, expand_globs, load_file};
use crate::group::{EvalEnv, Group};
use crate::query::Queriers;
use crate::rule::AlertState;

/// Rule files of one language (`rule_files` are PromQL; Loki-ruler files are LogQL).
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSource {
    pub patterns: Vec<String>,
    pub language: Language,
}

#[derive(Clone, Debug)]
pub struct ManagerOptions {
    /// Base of alert `generatorURL`s and `$externalURL`.
    pub external_url: String,
    /// Prometheus `--rules.alert.for-outage-tolerance` (1h).
    pub outage_tolerance: Duration,
    /// Prometheus `--rules.alert.resend-delay` (1m).
    pub resend_delay: Duration,
    /// Prometheus `--rules.alert.for-grace-period` (10m).
    pub for_grace_period: Duration,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions {
            external_url: "http://localhost:9090".into(),
            outage_tolerance: Duration::from_secs(3600),
            resend_delay: Duration::from_secs(60),
            for_grace_period: Duration::from_secs(600),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabel {
    rule_group: String,
}

#[derive(Clone, Default)]
struct Metrics {
    last_duration: Family<GroupLabel, Gauge<f64, AtomicU64>>,
    last_eval_ts: Family<GroupLabel, Gauge<f64, AtomicU64>>,
    interval: Family<GroupLabel, Gauge<f64, AtomicU64>>,
    rules: Family<GroupLabel, Gauge>,
    evaluations: Family<GroupLabel, Counter>,
    failures: Family<GroupLabel, Counter>,
    iterations: Family<GroupLabel, Counter>,
    missed: Family<GroupLabel, Counter>,
}

struct Running {
    group: Arc<Mutex<Group>>,
    stop: watch::Sender<bool>,
}

struct Inner {
    opts: ManagerOptions,
    queriers: RwLock<Queriers>,
    appendable: Arc<dyn Appendable>,
    restore_from: Option<Arc<dyn Queryable>>,
    sink: RwLock<Option<Arc<dyn AlertSink>>>,
    external_labels: RwLock<BTreeMap<String, String>>,
    groups: Mutex<Vec<Running>>,
    metrics: Metrics,
    loaded_once: AtomicBool,
}

/// Snapshot of one alert, for the API.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertStatus {
    pub labels: lookout_storage::Labels,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    pub active_at: Timestamp,
    pub value: f64,
    pub keep_firing_since: Option<Timestamp>,
}

/// Snapshot of one rule, for the API.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleStatus {
    pub name: String,
    pub query: String,
    pub alerting: bool,
    pub for_ms: i64,
    pub keep_firing_for_ms: i64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    pub alerts: Vec<AlertStatus>,
    /// `ok`, `err` or `unknown`.
    pub health: &'static str,
    pub last_error: Option<String>,
    pub last_evaluation: Option<Timestamp>,
    pub evaluation_seconds: f64,
}

/// Snapshot of one group, for the API.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupStatus {
    pub name: String,
    pub file: String,
    pub interval_ms: i64,
    pub limit: usize,
    pub language: Language,
    pub rules: Vec<RuleStatus>,
    pub last_evaluation: Option<Timestamp>,
    pub evaluation_seconds: f64,
}

/// The rule manager. Cheap to clone.
#[derive(Clone)]
pub struct RuleManager {
    inner: Arc<Inner>,
}

fn hash_str(s: &str) -> u64 {
    // FNV-1a: stable across runs, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The first evaluation time strictly after `now` for a group with this key and interval.
pub fn next_eval_time(key: &str, interval_ms: i64, now: Timestamp) -> Timestamp {
    let offset = (hash_str(key) % interval_ms.max(1) as u64) as i64;
    let adj = now - offset;
    let base = adj - adj.rem_euclid(interval_ms) + offset;
    if base > now { base } else { base + interval_ms }
}

impl RuleManager {
    /// `restore_from` is read for `ALERTS_FOR_STATE` after the first load (usually the same
    /// store as `appendable`).
    pub fn new(
        appendable: Arc<dyn Appendable>,
        restore_from: Option<Arc<dyn Queryable>>,
        queriers: Queriers,
        opts: ManagerOptions,
    ) -> Self {
        RuleManager {
            inner: Arc::new(Inner {
                opts,
                queriers: RwLock::new(queriers),
                appendable,
                restore_from,
                sink: RwLock::new(None),
                external_labels: RwLock::new(BTreeMap::new()),
                groups: Mutex::new(Vec::new()),
                metrics: Metrics::default(),
                loaded_once: AtomicBool::new(false),
            }),
        }
    }

    pub fn set_sink(&self, sink: Arc<dyn AlertSink>) {
        *self.inner.sink.write() = Some(sink);
    }

    /// Replaces the queriers (e.g. when a log store appears).
    pub fn set_queriers(&self, q: Queriers) {
        *self.inner.queriers.write() = q;
    }

    pub fn register_metrics(&self, registry: &mut Registry) {
        let m = &self.inner.metrics;
        registry.register(
            "prometheus_rule_group_last_duration_seconds",
            "The duration of the last rule group evaluation.",
            m.last_duration.clone(),
        );
        registry.register(
            "prometheus_rule_group_last_evaluation_timestamp_seconds",
            "The timestamp of the last rule group evaluation in seconds.",
            m.last_eval_ts.clone(),
        );
        registry.register(
            "prometheus_rule_group_interval_seconds",
            "The interval of a rule group.",
            m.interval.clone(),
        );
        registry.register(
            "prometheus_rule_group_rules",
            "The number of rules.",
            m.rules.clone(),
        );
        registry.register(
            "prometheus_rule_evaluations",
            "The total number of rule evaluations.",
            m.evaluations.clone(),
        );
        registry.register(
            "prometheus_rule_evaluation_failures",
            "The total number of rule evaluation failures.",
            m.failures.clone(),
        );
        registry.register(
            "prometheus_rule_group_iterations",
            "The total number of scheduled rule group evaluations, whether executed or missed.",
            m.iterations.clone(),
        );
        registry.register(
            "prometheus_rule_group_iterations_missed",
            "The total number of rule group evaluations missed due to slow rule group evaluation.",
            m.missed.clone(),
        );
    }

    /// Loads and checks every file of `sources` without applying anything.
    pub fn load_files(sources: &[RuleSource]) -> Result<Vec<RuleFile>, RuleFileError> {
        let mut files = Vec::new();
        for src in sources {
            for path in expand_globs(&src.patterns)? {
                files.push(load_file(&path, src.language)?);
            }
        }
        Ok(files)
    }

    /// Applies `cfg` (`rule_files`, evaluation interval, query offset, external labels)
    /// plus `extra` sources. On any error nothing changes and the error names the file.
    /// Must be called within a tokio runtime.
    pub fn update(
        &self,
        cfg: &PrometheusConfig,
        extra: &[RuleSource],
    ) -> Result<(), RuleFileError> {
        let mut sources = vec![RuleSource {
            patterns: cfg.rule_files.clone(),
            language: Language::Promql,
        }];
        sources.extend(extra.iter().cloned());
        let files = Self::load_files(&sources)?;
        let interval = cfg.global.evaluation_interval.as_millis() as i64;
        let interval = if interval > 0 { interval } else { 60_000 };
        let offset = cfg.global.rule_query_offset.as_millis() as i64;
        *self.inner.external_labels.write() = cfg.global.external_labels.clone();
        let mut new_groups = Vec::new();
        for f in &files {
            for g in &f.groups {
                new_groups.push(Group::new(g, interval, offset));
            }
        }
        self.apply_groups(new_groups);
        Ok(())
    }

    fn apply_groups(&self, new_groups: Vec<Group>) {
        let first = !self.inner.loaded_once.swap(true, Ordering::SeqCst);
        let mut running = self.inner.groups.lock();
        let mut old: HashMap<String, Running> = running
            .drain(..)
            .map(|r| {
                let key = r.group.lock().key();
                (key, r)
            })
            .collect();
        let mut next = Vec::new();
        for mut g in new_groups {
            let key = g.key();
            if let Some(prev) = old.remove(&key) {
                let same = prev.group.lock().same_definition(&g);
                if same {
                    next.push(prev);
                    continue;
                }
                g.copy_state_from(&prev.group.lock());
                let _ = prev.stop.send(true);
            } else if first {
                g.should_restore = true;
            }
            next.push(self.spawn(g));
        }
        // Removed groups: stop and mark their series stale.
        for (_, r) in old {
            let _ = r.stop.send(true);
            let mut g = r.group.lock();
            g.mark_stale(crate::time::now_ms(), self.inner.appendable.as_ref());
            self.forget_metrics(&g.key());
        }
        *running = next;
        info!(groups = running.len(), "rules loaded");
    }

    fn forget_metrics(&self, key: &str) {
        let l = GroupLabel {
            rule_group: key.to_string(),
        };
        let m = &self.inner.metrics;
        m.last_duration.remove(&l);
        m.last_eval_ts.remove(&l);
        m.interval.remove(&l);
        m.rules.remove(&l);
    }

    fn spawn(&self, g: Group) -> Running {
        let (tx, rx) = watch::channel(false);
        let label = GroupLabel {
            rule_group: g.key(),
        };
        self.inner
            .metrics
            .interval
            .get_or_create(&label)
            .set(g.interval_ms as f64 / 1000.0);
        self.inner
            .metrics
            .rules
            .get_or_create(&label)
            .set(g.rules.len() as i64);
        let group = Arc::new(Mutex::new(g));
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let inner = self.inner.clone();
            let gr = group.clone();
            handle.spawn(run_group(inner, gr, rx));
        } else {
            error!("no async runtime: rule groups are loaded but not evaluated");
        }
        Running { group, stop: tx }
    }

    /// Evaluates every group once at `ts`, synchronously (tests, `lookout test rules`-like
    /// tools and one-shot runs).
    pub fn eval_all_at(&self, ts: Timestamp) {
        let groups: Vec<Arc<Mutex<Group>>> = self
            .inner
            .groups
            .lock()
            .iter()
            .map(|r| r.group.clone())
            .collect();
        for g in groups {
            eval_group(&self.inner, &g, ts);
        }
    }

    /// Stops every group task.
    pub fn stop(&self) {
        for r in self.inner.groups.lock().iter() {
            let _ = r.stop.send(true);
        }
    }

    /// State of every group, in load order.
    pub fn groups(&self) -> Vec<GroupStatus> {
        self.inner
            .groups
            .lock()
            .iter()
            .map(|r| snapshot(&r.group.lock()))
            .collect()
    }

    /// Every pending or firing alert.
    pub fn active_alerts(&self) -> Vec<AlertStatus> {
        self.groups()
            .into_iter()
            .flat_map(|g| g.rules)
            .flat_map(|r| r.alerts)
            .filter(|a| a.state != AlertState::Inactive)
            .collect()
    }

    /// The files currently loaded (for `/api/v1/status`-like listings).
    pub fn files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self
            .inner
            .groups
            .lock()
            .iter()
            .map(|r| PathBuf::from(&r.group.lock().file))
            .collect();
        v.dedup();
        v
    }
}

fn snapshot(g: &Group) -> GroupStatus {
    GroupStatus {
        name: g.name.clone(),
        file: g.file.clone(),
        interval_ms: g.interval_ms,
        limit: g.limit,
        language: g.language,
        last_evaluation: g.last_evaluation,
        evaluation_seconds: g.evaluation_seconds,
        rules: g
            .rules
            .iter()
            .map(|r| {
                let mut alerts: Vec<AlertStatus> = r
                    .alerts
                    .values()
                    .filter(|a| a.state != AlertState::Inactive)
                    .map(|a| AlertStatus {
                        labels: a.labels.clone(),
                        annotations: a.annotations.clone(),
                        state: a.state,
                        active_at: a.active_at,
                        value: a.value,
                        keep_firing_since: a.keep_firing_since,
                    })
                    .collect();
                alerts.sort_by(|a, b| a.labels.cmp(&b.labels));
                RuleStatus {
                    name: r.name().to_string(),
                    query: r.spec.expr.clone(),
                    alerting: matches!(r.spec.kind, RuleKind::Alert(_)),
                    for_ms: r.spec.for_ms,
                    keep_firing_for_ms: r.spec.keep_firing_for_ms,
                    labels: r.spec.labels.clone(),
                    annotations: r.spec.annotations.clone(),
                    state: r.state(),
                    alerts,
                    health: r.health.as_str(),
                    last_error: r.last_error.clone(),
                    last_evaluation: r.last_evaluation,
                    evaluation_seconds: r.evaluation_seconds,
                }
            })
            .collect(),
    }
}

fn eval_group(inner: &Inner, group: &Mutex<Group>, ts: Timestamp) {
    let queriers = inner.queriers.read().clone();
    let sink = inner.sink.read().clone();
    let ext = inner.external_labels.read().clone();
    let env = EvalEnv {
        queriers: &queriers,
        appendable: inner.appendable.as_ref(),
        restore_from: inner.restore_from.as_deref(),
        outage_tolerance_ms: inner.opts.outage_tolerance.as_millis() as i64,
        for_grace_period_ms: inner.opts.for_grace_period.as_millis() as i64,
        sink: sink.as_deref(),
        external_labels: &ext,
        external_url: &inner.opts.external_url,
        resend_delay_ms: inner.opts.resend_delay.as_millis() as i64,
    };
    let mut g = group.lock();
    let stats = g.eval(ts, &env);
    let label = GroupLabel {
        rule_group: g.key(),
    };
    let m = &inner.metrics;
    m.last_duration
        .get_or_create(&label)
        .set(g.evaluation_seconds);
    m.last_eval_ts.get_or_create(&label).set(ts as f64 / 1000.0);
    m.evaluations
        .get_or_create(&label)
        .inc_by(stats.rules_evaluated as u64);
    m.failures
        .get_or_create(&label)
        .inc_by(stats.rules_failed as u64);
    m.iterations.get_or_create(&label).inc();
}

async fn run_group(inner: Arc<Inner>, group: Arc<Mutex<Group>>, mut stop: watch::Receiver<bool>) {
    let (key, interval) = {
        let g = group.lock();
        (g.key(), g.interval_ms)
    };
    let label = GroupLabel {
        rule_group: key.clone(),
    };
    let mut next = next_eval_time(&key, interval, crate::time::now_ms());
    loop {
        let wait = (next - crate::time::now_ms()).max(0) as u64;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if *stop.borrow() {
            return;
        }
        let (i, g) = (inner.clone(), group.clone());
        let ts = next;
        if let Err(e) = tokio::task::spawn_blocking(move || eval_group(&i, &g, ts)).await {
            error!(group = %key, error = %e, "rule group evaluation panicked");
        }
        next += interval;
        let now = crate::time::now_ms();
        if next <= now {
            let missed = (now - next) / interval + 1;
            inner
                .metrics
                .missed
                .get_or_create(&label)
                .inc_by(missed as u64);
            inner
                .metrics
                .iterations
                .get_or_create(&label)
                .inc_by(missed as u64);
            next += missed * interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_times_are_aligned_and_in_the_future() {
        let t = next_eval_time("f;g", 15_000, 1_000_000);
        assert!(t > 1_000_000 && t <= 1_015_000);
        assert_eq!(next_eval_time("f;g", 15_000, t), t + 15_000);
        assert_eq!(
            (t - next_eval_time("f;g", 15_000, 5_000_000)).rem_euclid(15_000),
            0
        );
    }
}
