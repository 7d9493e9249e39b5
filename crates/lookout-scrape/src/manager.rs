//! The scrape manager: one pool per `scrape_configs` job, one loop per target, config
//! reloads that keep unaffected loops, file-SD polling, and the targets/metadata views.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use lookout_config::{DEFAULT_SCRAPE_PROTOCOLS, PrometheusConfig, ScrapeConfig, ScrapeProtocol};
use lookout_exposition::Format;
use lookout_storage::{Appendable, Labels};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client::ScrapeClient;
use crate::discovery::{Discovered, FileSd, expand_group};
use crate::metrics::Metrics;
use crate::scrape_loop::{Health, LoopConfig, MetricMetadata, ScrapeLoop, Shared, StopMode};
use crate::target::{Populated, Target, populate};

/// Why a configuration could not be applied (the previous one stays in force).
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("error creating HTTP client for scrape config {job:?}: {message}")]
    Client { job: String, message: String },
}

/// Manager settings that do not come from `prometheus.yml`.
#[derive(Clone, Debug)]
pub struct ScrapeOptions {
    /// How often file-SD files are checked for changes (in addition to their
    /// `refresh_interval`, which forces a re-read).
    pub file_sd_poll_interval: Duration,
    /// Mixed into every target's hash to choose its scrape phase (Prometheus uses the
    /// hostname and external labels), so that HA pairs do not scrape in lockstep.
    pub offset_seed: u64,
    /// Host name substituted for loopback addresses in `globalUrl`.
    pub hostname: String,
    /// Runtime the scrape loops and discovery tasks run on (e.g. a
    /// [`ScrapeThread`](crate::ScrapeThread)'s); `None` runs them on the caller's runtime.
    pub runtime: Option<tokio::runtime::Handle>,
}

impl Default for ScrapeOptions {
    fn default() -> Self {
        let hostname = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        ScrapeOptions {
            file_sd_poll_interval: Duration::from_secs(5),
            offset_seed: 0,
            hostname,
            runtime: None,
        }
    }
}

/// One target as the targets API shows it.
#[derive(Clone, Debug)]
pub struct TargetStatus {
    /// False for targets dropped by `relabel_configs` (only `discovered_labels` and
    /// `scrape_pool` are meaningful then).
    pub active: bool,
    pub discovered_labels: Labels,
    /// The labels every sample gets (no `__` labels).
    pub labels: Labels,
    pub scrape_pool: String,
    pub scrape_url: String,
    pub global_url: String,
    pub last_error: String,
    pub last_scrape: Option<SystemTime>,
    pub last_scrape_duration: Duration,
    pub health: Health,
    pub scrape_interval: String,
    pub scrape_timeout: String,
}

/// Metadata of one metric family on one target.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetMetadata {
    pub target: Labels,
    pub metric: String,
    pub metadata: MetricMetadata,
}

struct LoopHandle {
    shared: Arc<Shared>,
    discovered: Labels,
    url: String,
    stop: watch::Sender<Option<StopMode>>,
    join: JoinHandle<()>,
}

impl LoopHandle {
    fn stop(&self, mode: StopMode) {
        let _ = self.stop.send(Some(mode));
    }
}

struct Pool {
    cfg: Arc<ScrapeConfig>,
    client: Arc<ScrapeClient>,
    generation: u64,
    static_targets: Vec<Discovered>,
    file_sd: Vec<Vec<Discovered>>,
    sd_tasks: Vec<JoinHandle<()>>,
    loops: HashMap<u64, LoopHandle>,
    /// Hashes of active targets in discovery order.
    order: Vec<u64>,
    dropped: Vec<Labels>,
    /// Loops being replaced (by target hash), whose series the new loops take over.
    handover: HashMap<u64, Arc<Shared>>,
}

struct Inner {
    appendable: Arc<dyn Appendable>,
    opts: ScrapeOptions,
    metrics: Metrics,
    pools: Mutex<BTreeMap<String, Pool>>,
    generation: Mutex<u64>,
}

/// Runs the scrape loops for a configuration. Cheap to clone.
#[derive(Clone)]
pub struct ScrapeManager {
    inner: Arc<Inner>,
}

/// The parts of a scrape config that shape the loops (everything but discovery,
/// target relabelling and target limits).
fn loop_relevant(sc: &ScrapeConfig) -> ScrapeConfig {
    let mut c = sc.clone();
    c.static_configs.clear();
    c.file_sd_configs.clear();
    c.relabel_configs.clear();
    c.target_limit = 0;
    c.keep_dropped_targets = 0;
    c
}

fn fallback_format(p: Option<ScrapeProtocol>) -> Option<Format> {
    p.map(|p| {
        if p.is_openmetrics() {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    })
}

fn global_url(url: &str, target: &Target, hostname: &str) -> String {
    let addr = target.address();
    let host = match addr.rfind(':') {
        Some(i) if !addr.ends_with(']') => &addr[..i],
        _ => addr,
    };
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h == "localhost" || h.starts_with("127.") || h == "::1" || h.is_empty() {
        url.replacen(host, hostname, 1)
    } else {
        url.to_string()
    }
}

impl Pool {
    fn new(sc: &ScrapeConfig, generation: u64) -> Result<Pool, ScrapeError> {
        let accept = if sc.scrape_protocols == DEFAULT_SCRAPE_PROTOCOLS {
            lookout_exposition::SCRAPE_ACCEPT_HEADER.to_string()
        } else {
            sc.accept_header()
        };
        let client =
            ScrapeClient::new(&sc.http, &accept).map_err(|message| ScrapeError::Client {
                job: sc.job_name.clone(),
                message,
            })?;
        Ok(Pool {
            cfg: Arc::new(sc.clone()),
            client: Arc::new(client),
            generation,
            static_targets: sc
                .static_configs
                .iter()
                .flat_map(|g| expand_group(g, &[]))
                .collect(),
            file_sd: Vec::new(),
            sd_tasks: Vec::new(),
            loops: HashMap::new(),
            order: Vec::new(),
            dropped: Vec::new(),
            handover: HashMap::new(),
        })
    }

    /// Reads the file-SD files once (so targets exist right away) and starts their pollers.
    fn start_discovery(&mut self, inner: &Arc<Inner>) {
        let scheme = self.cfg.name_validation();
        for (i, sdc) in self.cfg.file_sd_configs.iter().enumerate() {
            let mut sd = FileSd::new(sdc, scheme);
            let r = sd.refresh(true);
            for e in &r.errors {
                tracing::warn!(job = %self.cfg.job_name, error = %e, "file service discovery");
                inner.metrics.sd_file_read_errors.inc();
            }
            self.file_sd.push(sd.targets().cloned().collect());
            let task = file_sd_task(
                Arc::downgrade(inner),
                self.cfg.job_name.clone(),
                self.generation,
                i,
                sd,
                sdc.refresh_interval.as_std(),
                inner.opts.file_sd_poll_interval,
            );
            self.sd_tasks.push(spawn(&inner.opts, task));
        }
    }

    fn stop_discovery(&mut self) {
        for t in self.sd_tasks.drain(..) {
            t.abort();
        }
        self.file_sd.clear();
    }

    fn loop_config(&self, target: &Target, inner: &Inner) -> LoopConfig {
        let c = &self.cfg;
        let usize_of = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        LoopConfig {
            url: target.url(&c.params),
            interval: target.interval().as_std(),
            timeout: target.timeout().as_std(),
            honor_labels: c.honor_labels,
            honor_timestamps: c.honor_timestamps,
            track_timestamps_staleness: c.track_timestamps_staleness,
            sample_limit: usize_of(c.sample_limit),
            label_limit: usize_of(c.label_limit),
            label_name_length_limit: usize_of(c.label_name_length_limit),
            label_value_length_limit: usize_of(c.label_value_length_limit),
            body_size_limit: c.body_size_limit.0,
            metric_relabel: c.metric_relabel_configs.clone().into(),
            fallback_format: fallback_format(c.fallback_scrape_protocol),
            client: self.client.clone(),
            offset_seed: inner.opts.offset_seed,
        }
    }

    /// Recomputes the targets from the discovered groups and starts/stops loops to match.
    fn sync(&mut self, inner: &Inner) {
        let job = self.cfg.job_name.clone();
        let mut targets: Vec<(u64, Target)> = Vec::new();
        let mut seen = HashSet::new();
        let mut dropped = Vec::new();
        let keep_dropped = usize::try_from(self.cfg.keep_dropped_targets).unwrap_or(usize::MAX);
        for d in self
            .static_targets
            .iter()
            .chain(self.file_sd.iter().flatten())
        {
            match populate(d, &self.cfg) {
                Ok(Populated::Active(t)) => {
                    let h = t.hash();
                    if seen.insert(h) {
                        targets.push((h, t));
                    }
                }
                Ok(Populated::Dropped(l)) => {
                    if keep_dropped == 0 || dropped.len() < keep_dropped {
                        dropped.push(l);
                    }
                }
                Err(e) => tracing::warn!(job = %job, error = %e, "creating target failed"),
            }
        }
        let limit_err = (self.cfg.target_limit > 0 && targets.len() as u64 > self.cfg.target_limit)
            .then(|| {
                inner.metrics.target_limit_exceeded.inc();
                format!(
                    "target_limit exceeded (number of targets: {}, limit: {})",
                    targets.len(),
                    self.cfg.target_limit
                )
            });
        let wanted: HashSet<u64> = targets.iter().map(|(h, _)| *h).collect();
        self.loops.retain(|h, l| {
            if wanted.contains(h) {
                true
            } else {
                l.stop(StopMode::Stale);
                false
            }
        });
        self.order.clear();
        for (h, t) in targets {
            self.order.push(h);
            if let Some(l) = self.loops.get_mut(&h) {
                l.discovered = t.discovered.clone();
                *l.shared.forced_error.lock() = limit_err.clone();
                continue;
            }
            let cfg = self.loop_config(&t, inner);
            let url = cfg.url.clone();
            let discovered = t.discovered.clone();
            let shared = Arc::new(Shared::new(t));
            *shared.forced_error.lock() = limit_err.clone();
            let (tx, rx) = watch::channel(None);
            let mut sl = ScrapeLoop::new(
                cfg,
                shared.clone(),
                inner.appendable.clone(),
                inner.metrics.clone(),
                job.clone(),
            );
            if let Some(old) = self.handover.remove(&h) {
                sl.handover_from(old);
            }
            let join = spawn(&inner.opts, sl.run(rx));
            self.loops.insert(
                h,
                LoopHandle {
                    shared,
                    discovered,
                    url,
                    stop: tx,
                    join,
                },
            );
        }
        self.dropped = dropped;
        self.handover.clear();
        inner.metrics.set_pool_targets(&job, self.loops.len());
    }

    fn stop_all(&mut self, mode: StopMode) -> Vec<JoinHandle<()>> {
        self.stop_discovery();
        self.order.clear();
        self.loops
            .drain()
            .map(|(_, l)| {
                l.stop(mode);
                l.join
            })
            .collect()
    }
}

async fn file_sd_task(
    inner: Weak<Inner>,
    job: String,
    generation: u64,
    idx: usize,
    mut sd: FileSd,
    refresh: Duration,
    poll: Duration,
) {
    let poll = poll.min(refresh).max(Duration::from_millis(10));
    let mut last_full = Instant::now();
    loop {
        tokio::time::sleep(poll).await;
        let Some(inner) = inner.upgrade() else { return };
        let force = last_full.elapsed() >= refresh;
        if force {
            last_full = Instant::now();
        }
        let r = sd.refresh(force);
        for e in &r.errors {
            tracing::warn!(job = %job, error = %e, "file service discovery");
            inner.metrics.sd_file_read_errors.inc();
        }
        if r.changed {
            let targets: Vec<Discovered> = sd.targets().cloned().collect();
            let mut pools = inner.pools.lock();
            match pools.get_mut(&job) {
                Some(pool) if pool.generation == generation && idx < pool.file_sd.len() => {
                    pool.file_sd[idx] = targets;
                    pool.sync(&inner);
                }
                _ => return,
            }
        }
    }
}

/// Spawns on the configured runtime, or on the current one.
fn spawn<F>(opts: &ScrapeOptions, f: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    match &opts.runtime {
        Some(h) => h.spawn(f),
        None => tokio::spawn(f),
    }
}

impl ScrapeManager {
    pub fn new(appendable: Arc<dyn Appendable>, opts: ScrapeOptions) -> Self {
        ScrapeManager {
            inner: Arc::new(Inner {
                appendable,
                opts,
                metrics: Metrics::default(),
                pools: Mutex::new(BTreeMap::new()),
                generation: Mutex::new(0),
            }),
        }
    }

    fn next_generation(&self) -> u64 {
        let mut g = self.inner.generation.lock();
        *g += 1;
        *g
    }

    /// Applies a (validated) configuration. Jobs whose settings are unchanged keep their
    /// loops and caches; jobs whose discovery changed keep the loops of targets that remain;
    /// removed targets and jobs stop with stale markers. Must be called within a Tokio
    /// runtime. On error nothing is changed.
    pub async fn apply_config(&self, cfg: &PrometheusConfig) -> Result<(), ScrapeError> {
        let inner = &self.inner;
        inner.metrics.reloads.inc();
        // Build everything that can fail first.
        let mut fresh: HashMap<String, Pool> = HashMap::new();
        {
            let pools = inner.pools.lock();
            for sc in &cfg.scrape_configs {
                let needs_client = match pools.get(&sc.job_name) {
                    Some(p) => loop_relevant(&p.cfg) != loop_relevant(sc),
                    None => true,
                };
                if needs_client {
                    fresh.insert(sc.job_name.clone(), Pool::new(sc, 0)?);
                }
            }
        }
        let mut pools = inner.pools.lock();
        let wanted: HashSet<&str> = cfg
            .scrape_configs
            .iter()
            .map(|s| s.job_name.as_str())
            .collect();
        let removed: Vec<String> = pools
            .keys()
            .filter(|k| !wanted.contains(k.as_str()))
            .cloned()
            .collect();
        for job in removed {
            if let Some(mut p) = pools.remove(&job) {
                p.stop_all(StopMode::Stale);
                inner.metrics.remove_pool(&job);
            }
        }
        for sc in &cfg.scrape_configs {
            let generation = self.next_generation();
            match (pools.remove(&sc.job_name), fresh.remove(&sc.job_name)) {
                (Some(p), None) if *p.cfg == *sc => {
                    pools.insert(sc.job_name.clone(), p);
                }
                (Some(mut p), None) => {
                    // Only discovery or target relabelling changed: keep the client and the
                    // loops of targets that are still there.
                    p.stop_discovery();
                    p.cfg = Arc::new(sc.clone());
                    p.generation = generation;
                    p.static_targets = sc
                        .static_configs
                        .iter()
                        .flat_map(|g| expand_group(g, &[]))
                        .collect();
                    p.start_discovery(inner);
                    p.sync(inner);
                    pools.insert(sc.job_name.clone(), p);
                }
                (old, Some(mut p)) => {
                    p.generation = generation;
                    p.start_discovery(inner);
                    if let Some(mut old) = old {
                        // Loop settings changed: restart every loop. Targets that remain
                        // keep their series (no stale markers); the others go stale.
                        let keep = p.target_hashes();
                        old.stop_discovery();
                        for (h, l) in old.loops.drain() {
                            if keep.contains(&h) {
                                l.stop(StopMode::NoStale);
                                p.handover.insert(h, l.shared.clone());
                            } else {
                                l.stop(StopMode::Stale);
                            }
                        }
                    }
                    p.sync(inner);
                    pools.insert(sc.job_name.clone(), p);
                }
                (None, None) => {}
            }
        }
        Ok(())
    }

    /// Stops every loop without writing stale markers (shutdown) and waits for them.
    pub async fn stop(&self) {
        let joins: Vec<JoinHandle<()>> = {
            let mut pools = self.inner.pools.lock();
            let mut joins = Vec::new();
            for (job, mut p) in std::mem::take(&mut *pools) {
                joins.extend(p.stop_all(StopMode::NoStale));
                self.inner.metrics.remove_pool(&job);
            }
            joins
        };
        for j in joins {
            let _ = j.await;
        }
    }

    /// Active targets (in discovery order per pool) followed by dropped ones.
    pub fn targets(&self) -> Vec<TargetStatus> {
        let pools = self.inner.pools.lock();
        let mut out = Vec::new();
        let mut dropped = Vec::new();
        for (job, p) in pools.iter() {
            for h in &p.order {
                let Some(l) = p.loops.get(h) else { continue };
                let t = &l.shared.target;
                let health = l.shared.health.lock().clone();
                out.push(TargetStatus {
                    active: true,
                    discovered_labels: l.discovered.clone(),
                    labels: t.public_labels(),
                    scrape_pool: job.clone(),
                    scrape_url: l.url.clone(),
                    global_url: global_url(&l.url, t, &self.inner.opts.hostname),
                    last_error: health.last_error,
                    last_scrape: health.last_scrape,
                    last_scrape_duration: health.last_duration,
                    health: health.health,
                    scrape_interval: t.interval().to_string(),
                    scrape_timeout: t.timeout().to_string(),
                });
            }
            for d in &p.dropped {
                dropped.push(TargetStatus {
                    active: false,
                    discovered_labels: d.clone(),
                    labels: Labels::EMPTY,
                    scrape_pool: job.clone(),
                    scrape_url: String::new(),
                    global_url: String::new(),
                    last_error: String::new(),
                    last_scrape: None,
                    last_scrape_duration: Duration::ZERO,
                    health: Health::Unknown,
                    scrape_interval: String::new(),
                    scrape_timeout: String::new(),
                });
            }
        }
        out.extend(dropped);
        out
    }

    /// `/api/v1/metadata`: metadata per metric family across all targets, distinct entries
    /// only, optionally for one `metric`, at most `limit` metrics.
    pub fn metadata(
        &self,
        metric: Option<&str>,
        limit: Option<usize>,
    ) -> BTreeMap<String, Vec<MetricMetadata>> {
        let pools = self.inner.pools.lock();
        let mut out: BTreeMap<String, Vec<MetricMetadata>> = BTreeMap::new();
        for p in pools.values() {
            for l in p.loops.values() {
                let meta = l.shared.metadata.lock();
                for (name, m) in meta.iter() {
                    if metric.is_some_and(|w| w != name) {
                        continue;
                    }
                    let list = out.entry(name.clone()).or_default();
                    if !list.contains(&m.meta) {
                        list.push(m.meta.clone());
                    }
                }
            }
        }
        if let Some(limit) = limit {
            while out.len() > limit {
                out.pop_last();
            }
        }
        out
    }

    /// `/api/v1/targets/metadata`: per-target metadata for targets accepted by `filter`,
    /// optionally for one `metric`, at most `limit` entries.
    pub fn targets_metadata(
        &self,
        filter: impl Fn(&Labels) -> bool,
        metric: Option<&str>,
        limit: Option<usize>,
    ) -> Vec<TargetMetadata> {
        let pools = self.inner.pools.lock();
        let mut out = Vec::new();
        for p in pools.values() {
            for h in &p.order {
                let Some(l) = p.loops.get(h) else { continue };
                let labels = l.shared.target.public_labels();
                if !filter(&labels) {
                    continue;
                }
                let meta = l.shared.metadata.lock();
                let mut names: Vec<&String> = meta
                    .keys()
                    .filter(|n| metric.is_none_or(|w| w == n.as_str()))
                    .collect();
                names.sort();
                for n in names {
                    if limit.is_some_and(|lim| out.len() >= lim) {
                        return out;
                    }
                    if let Some(m) = meta.get(n) {
                        out.push(TargetMetadata {
                            target: labels.clone(),
                            metric: n.clone(),
                            metadata: m.meta.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Registers the manager's self-monitoring metrics.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.inner.metrics.register(registry);
    }
}

impl Pool {
    /// Hashes of the targets this pool's configuration currently yields.
    fn target_hashes(&self) -> HashSet<u64> {
        self.static_targets
            .iter()
            .chain(self.file_sd.iter().flatten())
            .filter_map(|d| match populate(d, &self.cfg) {
                Ok(Populated::Active(t)) => Some(t.hash()),
                _ => None,
            })
            .collect()
    }
}
