//! Alert delivery: Alertmanager API v2 (`POST <prefix>/api/v2/alerts`, as Prometheus's
//! notifier) and a built-in webhook notifier that posts Alertmanager's webhook payload
//! (version "4") for teams without an Alertmanager.
//!
//! The rules engine hands alerts to [`Notifier::send`] (through the [`AlertSink`] trait). They
//! get the external labels, pass `alert_relabel_configs`, and wait in one bounded queue
//! (beyond the bound the oldest are dropped and counted). A background task sends batches to
//! every endpoint, retrying a failing endpoint with backoff; failures are counted per
//! endpoint (`prometheus_notifications_errors_total`) and visible in [`Notifier::status`]; a
//! batch no endpoint accepted counts as dropped (`prometheus_notifications_dropped_total`).
//! Modules: `payload` (JSON shapes, fingerprints), `endpoint` (targets from the config).

mod endpoint;
pub mod payload;

pub use endpoint::{Endpoint, EndpointKind, WebhookConfig};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use lookout_config::PrometheusConfig;
use lookout_relabel::RelabelConfig;
use lookout_storage::{Labels, Timestamp};
use parking_lot::{Mutex, RwLock};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tracing::{debug, warn};

/// One alert as sent to Alertmanager.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    /// ms since the epoch.
    pub starts_at: Timestamp,
    /// ms since the epoch; while firing the time until which the alert is valid unless
    /// resent, once resolved the resolution time. 0: unset.
    pub ends_at: Timestamp,
    pub generator_url: String,
}

impl Alert {
    /// Resolved at `now` (its end time has passed).
    pub fn is_resolved_at(&self, now: Timestamp) -> bool {
        self.ends_at != 0 && self.ends_at <= now
    }

    /// The `alertname` label.
    pub fn name(&self) -> &str {
        self.labels.get_or_empty("alertname")
    }
}

/// Where alerts go; the rules engine sees only this.
pub trait AlertSink: Send + Sync {
    fn send(&self, alerts: Vec<Alert>);
}

/// Queue and retry settings.
#[derive(Clone, Debug)]
pub struct NotifierOptions {
    /// Alerts waiting at most (Prometheus `--alertmanager.notification-queue-capacity`: 10000).
    pub queue_capacity: usize,
    /// Alerts per request (Prometheus: 256).
    pub max_batch: usize,
    /// Attempts per batch and endpoint before the batch is given up for that endpoint.
    pub max_attempts: u32,
    /// Wait before the first retry; doubles per attempt.
    pub retry_backoff: Duration,
    /// Webhooks repeat a still-firing alert this often (Alertmanager `repeat_interval`: 4h).
    pub webhook_repeat_interval: Duration,
}

impl Default for NotifierOptions {
    fn default() -> Self {
        NotifierOptions {
            queue_capacity: 10_000,
            max_batch: 256,
            max_attempts: 3,
            retry_backoff: Duration::from_millis(500),
            webhook_repeat_interval: Duration::from_secs(4 * 3600),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    alertmanager: String,
}

#[derive(Clone, Default)]
struct Metrics {
    queue_length: Gauge,
    queue_capacity: Gauge,
    dropped: Counter,
    sent: Family<EndpointLabel, Counter>,
    errors: Family<EndpointLabel, Counter>,
    latency: Family<EndpointLabel, Gauge<f64, AtomicU64>>,
    discovered: Gauge,
}

/// Delivery state of one endpoint, for status pages.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointStatus {
    pub url: String,
    pub kind: EndpointKind,
    pub sent: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    /// ms since the epoch of the last successful delivery.
    pub last_success: Option<Timestamp>,
}

struct Settings {
    external_labels: Labels,
    relabel: Vec<RelabelConfig>,
    endpoints: Vec<Arc<Endpoint>>,
}

struct Inner {
    opts: NotifierOptions,
    queue: Mutex<VecDeque<Alert>>,
    wake: Notify,
    settings: RwLock<Settings>,
    metrics: Metrics,
    status: Mutex<HashMap<String, EndpointStatus>>,
    /// Per webhook URL: fingerprint → last time it was announced firing (ms).
    webhook_seen: Mutex<HashMap<String, HashMap<u64, Timestamp>>>,
    client: reqwest::Client,
    stop: Notify,
    stopped: std::sync::atomic::AtomicBool,
}

/// The notification manager. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error("alerting.alertmanagers[{index}]: {message}")]
    Config { index: usize, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

impl Notifier {
    pub fn new(opts: NotifierOptions) -> Result<Self, NotifierError> {
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| NotifierError::Client(e.to_string()))?;
        let metrics = Metrics::default();
        metrics.queue_capacity.set(opts.queue_capacity as i64);
        Ok(Notifier {
            inner: Arc::new(Inner {
                opts,
                queue: Mutex::new(VecDeque::new()),
                wake: Notify::new(),
                settings: RwLock::new(Settings {
                    external_labels: Labels::EMPTY,
                    relabel: Vec::new(),
                    endpoints: Vec::new(),
                }),
                metrics,
                status: Mutex::new(HashMap::new()),
                webhook_seen: Mutex::new(HashMap::new()),
                client,
                stop: Notify::new(),
                stopped: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// Registers Prometheus's notifier metrics.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let m = &self.inner.metrics;
        registry.register(
            "prometheus_notifications_queue_length",
            "The number of alert notifications in the queue.",
            m.queue_length.clone(),
        );
        registry.register(
            "prometheus_notifications_queue_capacity",
            "The capacity of the alert notifications queue.",
            m.queue_capacity.clone(),
        );
        registry.register(
            "prometheus_notifications_dropped",
            "Total number of alerts dropped due to errors when sending to Alertmanager.",
            m.dropped.clone(),
        );
        registry.register(
            "prometheus_notifications_sent",
            "Total number of alerts sent.",
            m.sent.clone(),
        );
        registry.register(
            "prometheus_notifications_errors",
            "Total number of sent alerts affected by errors.",
            m.errors.clone(),
        );
        registry.register(
            "prometheus_notifications_latency_seconds",
            "Latency of the last request to each endpoint.",
            m.latency.clone(),
        );
        registry.register(
            "prometheus_notifications_alertmanagers_discovered",
            "The number of alertmanagers discovered and active.",
            m.discovered.clone(),
        );
    }

    /// Applies `alerting` and `global.external_labels` from `cfg`, keeping `webhooks`.
    /// An invalid section leaves the previous settings in place.
    pub fn apply_config(
        &self,
        cfg: &PrometheusConfig,
        webhooks: &[WebhookConfig],
    ) -> Result<(), NotifierError> {
        let mut endpoints = Vec::new();
        for (index, am) in cfg.alerting.alertmanagers.iter().enumerate() {
            let eps = endpoint::alertmanagers(am)
                .map_err(|message| NotifierError::Config { index, message })?;
            endpoints.extend(eps.into_iter().map(Arc::new));
        }
        for w in webhooks {
            endpoints.push(Arc::new(Endpoint::webhook(w)));
        }
        self.inner.metrics.discovered.set(
            endpoints
                .iter()
                .filter(|e| e.kind == EndpointKind::Alertmanager)
                .count() as i64,
        );
        {
            let mut status = self.inner.status.lock();
            status.retain(|url, _| endpoints.iter().any(|e| &e.url == url));
            for e in &endpoints {
                status
                    .entry(e.url.clone())
                    .or_insert_with(|| EndpointStatus {
                        url: e.url.clone(),
                        kind: e.kind,
                        sent: 0,
                        errors: 0,
                        last_error: None,
                        last_success: None,
                    });
            }
        }
        *self.inner.settings.write() = Settings {
            external_labels: cfg.global.external_labels(),
            relabel: cfg.alerting.alert_relabel_configs.clone(),
            endpoints,
        };
        Ok(())
    }

    /// Current endpoints and their delivery state.
    pub fn status(&self) -> Vec<EndpointStatus> {
        let mut v: Vec<EndpointStatus> = self.inner.status.lock().values().cloned().collect();
        v.sort_by(|a, b| a.url.cmp(&b.url));
        v
    }

    /// Alerts waiting in the queue.
    pub fn queue_len(&self) -> usize {
        self.inner.queue.lock().len()
    }

    /// Alerts dropped so far: the queue was full, or no endpoint accepted them after retries.
    pub fn dropped(&self) -> u64 {
        self.inner.metrics.dropped.get()
    }

    /// Starts the delivery task on the current tokio runtime.
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        let inner = self.inner.clone();
        tokio::spawn(async move { run(inner).await })
    }

    /// Stops the delivery task after its current batch.
    pub fn stop(&self) {
        self.inner
            .stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.stop.notify_waiters();
        self.inner.wake.notify_one();
    }

    fn enqueue(&self, alerts: Vec<Alert>) {
        let settings = self.inner.settings.read();
        let mut prepared = Vec::with_capacity(alerts.len());
        for mut a in alerts {
            if !settings.external_labels.is_empty() {
                let mut b = a.labels.builder();
                for l in settings.external_labels.iter() {
                    if b.get(&l.name).is_none() {
                        b.set(l.name.clone(), l.value.clone());
                    }
                }
                a.labels = b.into_labels();
            }
            match lookout_relabel::relabel(&a.labels, &settings.relabel) {
                Some(l) if !l.is_empty() => a.labels = l,
                _ => continue,
            }
            prepared.push(a);
        }
        drop(settings);
        if prepared.is_empty() {
            return;
        }
        let cap = self.inner.opts.queue_capacity.max(1);
        let mut q = self.inner.queue.lock();
        let mut dropped = 0u64;
        // More alerts than the whole queue holds: keep the newest.
        if prepared.len() > cap {
            dropped += (prepared.len() - cap) as u64;
            prepared.drain(..prepared.len() - cap);
        }
        let overflow = (q.len() + prepared.len()).saturating_sub(cap);
        if overflow > 0 {
            q.drain(..overflow);
            dropped += overflow as u64;
        }
        q.extend(prepared);
        self.inner.metrics.queue_length.set(q.len() as i64);
        drop(q);
        if dropped > 0 {
            self.inner.metrics.dropped.inc_by(dropped);
            warn!(
                dropped,
                "alert notification queue full, dropped the oldest alerts"
            );
        }
        self.inner.wake.notify_one();
    }
}

impl AlertSink for Notifier {
    fn send(&self, alerts: Vec<Alert>) {
        self.enqueue(alerts);
    }
}

async fn run(inner: Arc<Inner>) {
    loop {
        if inner.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let batch: Vec<Alert> = {
            let mut q = inner.queue.lock();
            let n = q.len().min(inner.opts.max_batch.max(1));
            let b = q.drain(..n).collect();
            inner.metrics.queue_length.set(q.len() as i64);
            b
        };
        if batch.is_empty() {
            tokio::select! {
                _ = inner.wake.notified() => {}
                _ = inner.stop.notified() => return,
            }
            continue;
        }
        let endpoints = inner.settings.read().endpoints.clone();
        if endpoints.is_empty() {
            debug!(
                alerts = batch.len(),
                "no alertmanager or webhook configured; alerts not sent"
            );
            continue;
        }
        let batch = Arc::new(batch);
        let mut tasks = Vec::new();
        for ep in endpoints {
            let inner = inner.clone();
            let batch = batch.clone();
            tasks.push(tokio::spawn(
                async move { deliver(&inner, &ep, &batch).await },
            ));
        }
        let mut any_ok = false;
        for t in tasks {
            any_ok |= t.await.unwrap_or(false);
        }
        // As Prometheus: a batch no endpoint took is dropped (and counted as such).
        if !any_ok {
            inner.metrics.dropped.inc_by(batch.len() as u64);
            warn!(
                alerts = batch.len(),
                "no alertmanager or webhook accepted the alerts; dropped"
            );
        }
    }
}

fn now_ms() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Sends `batch` to one endpoint with retries; records the outcome. True when the endpoint
/// took it (or, for a webhook, nothing in it was due).
async fn deliver(inner: &Inner, ep: &Endpoint, batch: &[Alert]) -> bool {
    let now = now_ms();
    let body = match ep.kind {
        EndpointKind::Alertmanager => payload::alertmanager_v2(batch),
        EndpointKind::Webhook => {
            let due = webhook_due(inner, ep, batch, now);
            if due.is_empty() {
                return true;
            }
            let bodies: Vec<String> = payload::webhook_groups(&due, &ep.url, now)
                .into_iter()
                .collect();
            let mut ok = true;
            for b in &bodies {
                ok &= post_with_retries(inner, ep, b, due.len()).await;
            }
            if ok {
                let mut seen = inner.webhook_seen.lock();
                let m = seen.entry(ep.url.clone()).or_default();
                for a in &due {
                    let fp = payload::fingerprint(&a.labels);
                    if a.is_resolved_at(now) {
                        m.remove(&fp);
                    } else {
                        m.insert(fp, now);
                    }
                }
            }
            return ok;
        }
    };
    post_with_retries(inner, ep, &body, batch.len()).await
}

/// The alerts of `batch` a webhook should hear about now: newly firing, resolved after
/// having been announced, or firing and not repeated for `webhook_repeat_interval`.
fn webhook_due(inner: &Inner, ep: &Endpoint, batch: &[Alert], now: Timestamp) -> Vec<Alert> {
    let seen = inner.webhook_seen.lock();
    let known = seen.get(&ep.url);
    let repeat = inner.opts.webhook_repeat_interval.as_millis() as i64;
    batch
        .iter()
        .filter(|a| {
            let fp = payload::fingerprint(&a.labels);
            let prev = known.and_then(|m| m.get(&fp));
            if a.is_resolved_at(now) {
                prev.is_some()
            } else {
                match prev {
                    None => true,
                    Some(last) => now - last >= repeat,
                }
            }
        })
        .cloned()
        .collect()
}

async fn post_with_retries(inner: &Inner, ep: &Endpoint, body: &str, alerts: usize) -> bool {
    let label = EndpointLabel {
        alertmanager: ep.url.clone(),
    };
    let mut backoff = inner.opts.retry_backoff;
    let attempts = inner.opts.max_attempts.max(1);
    let mut last_err = String::new();
    for attempt in 1..=attempts {
        let started = std::time::Instant::now();
        match ep.post(&inner.client, body.to_string()).await {
            Ok(()) => {
                inner
                    .metrics
                    .latency
                    .get_or_create(&label)
                    .set(started.elapsed().as_secs_f64());
                inner
                    .metrics
                    .sent
                    .get_or_create(&label)
                    .inc_by(alerts as u64);
                let mut st = inner.status.lock();
                if let Some(s) = st.get_mut(&ep.url) {
                    s.sent += alerts as u64;
                    s.last_success = Some(now_ms());
                    s.last_error = None;
                }
                return true;
            }
            Err(e) => {
                warn!(endpoint = %ep.url, attempt, error = %e, "sending alerts failed");
                last_err = e;
                if attempt < attempts && !inner.stopped.load(std::sync::atomic::Ordering::SeqCst) {
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                }
            }
        }
    }
    inner
        .metrics
        .errors
        .get_or_create(&label)
        .inc_by(alerts as u64);
    let mut st = inner.status.lock();
    if let Some(s) = st.get_mut(&ep.url) {
        s.errors += alerts as u64;
        s.last_error = Some(last_err);
    }
    false
}
