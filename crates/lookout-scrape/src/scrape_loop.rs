//! One target's scrape loop: scheduling with a per-target offset, fetch, parse, cache,
//! limits, staleness, synthetic series and metadata.
//!
//! Every scrape goes into one appender that is committed only when the whole body parsed
//! and passed the limits; otherwise it is rolled back and the scrape counts as failed (`up`
//! 0, stale markers for the series of the last good scrape). The cache maps the parser's
//! raw series bytes to the storage reference, so a steady-state scrape neither builds label
//! sets nor allocates per sample; label sets are rebuilt from the cached text only when the
//! storage no longer knows a reference.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lookout_exposition::{Entry, Format, KnownSeries, MetricType, ParseMode, Parser, Sample};
use lookout_relabel::RelabelConfig;
use lookout_storage::{
    AppendError, Appendable, Appender, Label, Labels, METRIC_NAME, STALE_NAN, SeriesRef,
};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use tokio::sync::watch;

use crate::client::{FetchError, Fetched, ScrapeClient};
use crate::metrics::Metrics;
use crate::series_cache::{Key, SeriesCache};
use crate::target::Target;

/// How a loop ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopMode {
    /// The target went away: write stale markers for all its series.
    Stale,
    /// Shutdown or hand-over: leave the series as they are.
    NoStale,
}

/// Target health as the targets API shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Up,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct HealthState {
    pub health: Health,
    pub last_error: String,
    pub last_scrape: Option<SystemTime>,
    pub last_duration: Duration,
}

/// Metadata of one metric family as a target exposed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricMetadata {
    pub metric_type: MetricType,
    pub help: String,
    pub unit: String,
}

pub(crate) struct MetaEntry {
    pub meta: MetricMetadata,
    last_iter: u32,
}

/// State a loop shares with the manager (targets and metadata APIs).
pub(crate) struct Shared {
    pub target: Target,
    pub health: Mutex<HealthState>,
    pub metadata: Mutex<FxHashMap<String, MetaEntry>>,
    /// When set, scrapes fail with this error without contacting the target (target_limit).
    pub forced_error: Mutex<Option<String>>,
    /// Series of the last committed scrape (references, and labels where the storage has
    /// none), left here when the loop stops without stale markers so that a replacement
    /// loop can mark the ones it no longer sees.
    pub final_series: Mutex<Option<Vec<FinalSeries>>>,
}

impl Shared {
    pub fn new(target: Target) -> Self {
        Shared {
            target,
            health: Mutex::new(HealthState {
                health: Health::Unknown,
                last_error: String::new(),
                last_scrape: None,
                last_duration: Duration::ZERO,
            }),
            metadata: Mutex::new(FxHashMap::default()),
            forced_error: Mutex::new(None),
            final_series: Mutex::new(None),
        }
    }
}

/// Everything a loop needs from its pool's configuration.
#[derive(Clone)]
pub(crate) struct LoopConfig {
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub track_timestamps_staleness: bool,
    pub sample_limit: usize,
    pub label_limit: usize,
    pub label_name_length_limit: usize,
    pub label_value_length_limit: usize,
    pub body_size_limit: u64,
    pub metric_relabel: Arc<[RelabelConfig]>,
    pub fallback_format: Option<Format>,
    pub client: Arc<ScrapeClient>,
    pub offset_seed: u64,
}

/// A series of a loop's last scrape, handed to the loop that replaces it.
#[derive(Clone, Debug)]
pub(crate) struct FinalSeries {
    sref: Option<SeriesRef>,
    /// Set when the storage has not taken the series by reference.
    labels: Option<Labels>,
}

/// The series cache plus the scrape bookkeeping around it.
#[derive(Default)]
struct Cache {
    series: SeriesCache,
    /// Scrape number, wrapping (entries compare it with wrapping arithmetic).
    iter: u32,
    /// Entries appended by the last committed scrape (candidates for stale markers).
    prev_seen: Vec<u32>,
    cur_seen: Vec<u32>,
    /// Slots in the order the last parsed scrape produced them, and this scrape's so far:
    /// targets print their series in the same order every time, so the k-th sample is
    /// expected to be the k-th of the last scrape (its text's length and key are checked
    /// before anything else).
    prev_order: Vec<u32>,
    cur_order: Vec<u32>,
}

impl Cache {
    /// The last scrape's series at this scrape's position.
    #[inline]
    fn expected(&self) -> Option<u32> {
        self.prev_order.get(self.cur_order.len()).copied()
    }

    /// The cached slot of the series with key `key`: the last scrape's series at this
    /// position when it is the same, else from the index.
    fn lookup(&self, key: &Key) -> Option<u32> {
        self.expected()
            .filter(|&i| self.series.holds(i, key))
            .or_else(|| self.series.get(key))
    }
}

/// The scrape loop's answers to the parser's questions about the next sample's series
/// text: the last scrape's series at this position is expected (its text's length, then the
/// key of exactly that many bytes against its key: no scan for the series' end, no index
/// probe), any other text is looked up by key. Same safety as every lookup here: a 128-bit
/// key of the exact bytes.
struct Lookup<'c> {
    cache: &'c Cache,
    om: bool,
    /// The slot of the text the parser asked about, when known (from the same format).
    hit: Option<u32>,
    /// The text asked about last (address, length) and its key.
    probe: Option<(*const u8, usize, Key)>,
}

impl Lookup<'_> {
    fn key(&mut self, text: &[u8]) -> Key {
        let key = self
            .probed(text)
            .unwrap_or_else(|| self.cache.series.key(text));
        self.probe = Some((text.as_ptr(), text.len(), key));
        key
    }

    /// The key computed for the last question, if it was about this very text.
    fn probed(&self, text: &[u8]) -> Option<Key> {
        self.probe
            .filter(|&(p, n, _)| p == text.as_ptr() && n == text.len())
            .map(|(_, _, k)| k)
    }
}

impl KnownSeries for Lookup<'_> {
    #[inline]
    fn expected_len(&mut self) -> usize {
        self.cache
            .expected()
            .map_or(0, |i| self.cache.series.text_len(i))
    }

    fn is_expected(&mut self, text: &[u8]) -> bool {
        let key = self.key(text);
        let series = &self.cache.series;
        self.hit = self
            .cache
            .expected()
            .filter(|&i| series.holds(i, &key) && series.openmetrics(i) == self.om);
        self.hit.is_some()
    }

    fn is_known(&mut self, text: &[u8]) -> bool {
        // Not the last scrape's series at this position (of another length, or refused by
        // `is_expected`): straight to the index.
        let key = self.key(text);
        let series = &self.cache.series;
        self.hit = series
            .get(&key)
            .filter(|&i| series.openmetrics(i) == self.om);
        self.hit.is_some()
    }
}

/// How many samples ahead the scrape loop prefetches storage objects.
const PREFETCH_AHEAD: usize = 16;

const SYNTH_NAMES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// Counts of one scrape.
#[derive(Default, Clone, Copy, Debug)]
struct Stats {
    total: usize,
    added: usize,
    series_added: usize,
}

pub(crate) struct ScrapeLoop {
    cfg: LoopConfig,
    shared: Arc<Shared>,
    appendable: Arc<dyn Appendable>,
    metrics: Metrics,
    job: String,
    target_labels: Vec<Label>,
    cache: Cache,
    synth: Vec<(Labels, Option<SeriesRef>)>,
    last_ts: i64,
    /// The loop this one replaces (config reload): its last series are checked against
    /// this loop's first good scrape and marked stale when gone.
    handover_from: Option<(Arc<Shared>, u8)>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How far from its scheduled time a scrape may start and still be stamped with it
/// (Prometheus's `--scrape.timestamp-tolerance` default); never more than 1 % of the
/// interval.
const TIMESTAMP_TOLERANCE_MS: i64 = 2;

/// The timestamp for a scrape started at `now`: the nearest point of its loop's schedule (the
/// first scrape's time plus whole intervals, kept in `aligned`) when `now` is within the
/// tolerance of it, else `now`. Prometheus aligns late scrapes the same way; the tolerance
/// applies both ways here because wall-clock milliseconds taken at monotonic timer ticks
/// come out one early as often as one late. Without it every timestamp delta is irregular:
/// 9 bits per sample in a chunk instead of 1, and no constant-step timestamps in blocks.
pub(crate) fn aligned_timestamp(aligned: &mut i64, now: i64, interval_ms: i64) -> i64 {
    let iv = interval_ms.max(1);
    let d = now.saturating_sub(*aligned);
    if d < -(iv / 2) {
        // The clock went back: the schedule starts again from here.
        *aligned = now;
        return now;
    }
    *aligned = aligned.saturating_add(d.saturating_add(iv / 2) / iv * iv);
    let tolerance = TIMESTAMP_TOLERANCE_MS.min(iv / 100);
    if now.abs_diff(*aligned) <= tolerance as u64 {
        *aligned
    } else {
        now
    }
}

/// Delay before the first scrape so that this target is scraped at a fixed phase of the
/// wall-clock interval derived from its hash (spreads targets, stable across restarts).
pub(crate) fn offset(interval: Duration, hash: u64, now_ms: i64) -> Duration {
    let iv = interval.as_millis().max(1) as u64;
    let now = now_ms.max(0) as u64;
    let base = iv - now % iv;
    Duration::from_millis((hash % iv + base) % iv)
}

enum Fail {
    /// Parse error, limit, or storage failure: roll back the scrape.
    Scrape(String, Stats),
}

impl ScrapeLoop {
    pub fn new(
        cfg: LoopConfig,
        shared: Arc<Shared>,
        appendable: Arc<dyn Appendable>,
        metrics: Metrics,
        job: String,
    ) -> Self {
        let public = shared.target.public_labels();
        let synth = SYNTH_NAMES
            .iter()
            .map(|n| {
                let mut v = public.as_slice().to_vec();
                v.push(Label::new(METRIC_NAME, *n));
                (Labels::new(v), None)
            })
            .collect();
        ScrapeLoop {
            cfg,
            target_labels: public.into_vec(),
            shared,
            appendable,
            metrics,
            job,
            cache: Cache::default(),
            synth,
            last_ts: i64::MIN,
            handover_from: None,
        }
    }

    pub async fn run(mut self, mut stop: watch::Receiver<Option<StopMode>>) {
        let delay = offset(
            self.cfg.interval,
            self.cfg.offset_seed ^ self.shared.target.hash(),
            now_ms(),
        );
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + delay, self.cfg.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let interval_ms = i64::try_from(self.cfg.interval.as_millis()).unwrap_or(i64::MAX);
        let mut aligned: Option<i64> = None;
        let mode = loop {
            tokio::select! {
                biased;
                m = wait_stop(&mut stop) => break m,
                _ = ticker.tick() => {}
            }
            let start = Instant::now();
            let now = now_ms();
            let ts = aligned_timestamp(aligned.get_or_insert(now), now, interval_ms);
            let forced = self.shared.forced_error.lock().clone();
            let fetched = match forced {
                Some(e) => Err(e),
                None => tokio::select! {
                    biased;
                    m = wait_stop(&mut stop) => break m,
                    f = self.cfg.client.fetch(&self.cfg.url, self.cfg.timeout, self.cfg.body_size_limit) => {
                        f.map_err(|e| {
                            if e == FetchError::BodySizeLimit {
                                self.metrics.body_size_exceeded.inc();
                            }
                            e.to_string()
                        })
                    }
                },
            };
            self.process(fetched.as_ref().map_err(String::clone), start, ts);
        };
        if mode == StopMode::Stale {
            self.end_of_run_staleness();
        } else {
            let series: Vec<FinalSeries> = self
                .cache
                .prev_seen
                .iter()
                .map(|&i| FinalSeries {
                    sref: self.cache.series.entry(i).sref(),
                    labels: self.kept_labels(i),
                })
                .collect();
            *self.shared.final_series.lock() = Some(series);
        }
    }

    /// Takes over staleness tracking from `old`, the loop this one replaces.
    pub fn handover_from(&mut self, old: Arc<Shared>) {
        self.handover_from = Some((old, 0));
    }

    /// Stale markers for series of the replaced loop that this loop's scrape did not
    /// produce. Gives up after a few scrapes if the old loop never reports.
    fn finish_handover(&mut self, app: &mut dyn Appender, ts: i64) {
        let Some((old, tries)) = &mut self.handover_from else {
            return;
        };
        let Some(list) = old.final_series.lock().take() else {
            *tries += 1;
            if *tries > 5 {
                self.handover_from = None;
            }
            return;
        };
        // Both loops append to the same storage, where a reference names one series; a
        // storage without references is compared by labels (every series of this loop's
        // first scrape was new to it, so it has their labels). A marker for a series this
        // scrape did produce is refused by the storage (same timestamp, other value).
        let mut refs = std::collections::HashSet::new();
        let mut labels = std::collections::HashSet::new();
        for &i in &self.cache.prev_seen {
            refs.extend(self.cache.series.entry(i).sref());
            labels.extend(self.kept_labels(i));
        }
        for old in &list {
            let _ = match (&old.labels, old.sref) {
                (Some(l), _) if labels.contains(l) => continue,
                (None, Some(r)) if refs.contains(&r) => continue,
                (None, None) => continue,
                (None, Some(r)) => app.append_by_ref(r, ts, STALE_NAN),
                (Some(l), r) => match r.map(|r| app.append_by_ref(r, ts, STALE_NAN)) {
                    Some(Ok(r)) => Ok(r),
                    _ => app.append(None, l, ts, STALE_NAN),
                },
            };
        }
        self.handover_from = None;
    }

    /// Handles one scrape result: append, report, commit, update health.
    pub fn process(&mut self, fetched: Result<&Fetched, String>, start: Instant, ts: i64) {
        let ts = ts.max(self.last_ts.saturating_add(1));
        self.last_ts = ts;
        let appendable = self.appendable.clone();
        let mut app = appendable.appender();
        let (err, stats) = match fetched {
            Ok(f) => match self.append_body(app.as_mut(), f, ts) {
                Ok(stats) => (None, stats),
                Err(Fail::Scrape(e, stats)) => {
                    app.rollback();
                    app = appendable.appender();
                    self.stale_all(app.as_mut(), ts);
                    (Some(e), stats)
                }
            },
            Err(e) => {
                self.stale_all(app.as_mut(), ts);
                (Some(e), Stats::default())
            }
        };
        let elapsed = start.elapsed();
        let values = [
            if err.is_none() { 1.0 } else { 0.0 },
            elapsed.as_secs_f64(),
            stats.total as f64,
            if err.is_none() {
                stats.added as f64
            } else {
                0.0
            },
            if err.is_none() {
                stats.series_added as f64
            } else {
                0.0
            },
        ];
        for ((labels, sref), v) in self.synth.iter_mut().zip(values) {
            match app.append(*sref, labels, ts, v) {
                Ok(r) => *sref = Some(r),
                Err(e) => {
                    tracing::debug!(error = %e, series = %labels, "appending synthetic series")
                }
            }
        }
        let commit = app.commit();
        self.metrics
            .observe_scrape(&self.job, elapsed.as_secs_f64(), err.is_some());
        let err = match (err, commit) {
            (e, Ok(())) => e,
            (_, Err(e)) => Some(format!("committing scrape: {e}")),
        };
        if let Some(e) = &err {
            tracing::debug!(url = %self.cfg.url, error = %e, "scrape failed");
        }
        let mut h = self.shared.health.lock();
        h.health = if err.is_none() {
            Health::Up
        } else {
            Health::Down
        };
        h.last_error = err.unwrap_or_default();
        h.last_scrape = Some(SystemTime::now());
        h.last_duration = elapsed;
    }

    /// Writes stale markers for every series of the last committed scrape.
    fn stale_all(&mut self, app: &mut dyn Appender, ts: i64) {
        for idx in std::mem::take(&mut self.cache.prev_seen) {
            self.append_cached(app, idx, ts, STALE_NAN);
        }
        self.cache.cur_seen.clear();
    }

    fn end_of_run_staleness(&mut self) {
        let ts = now_ms().max(self.last_ts.saturating_add(1));
        let appendable = self.appendable.clone();
        let mut app = appendable.appender();
        self.stale_all(app.as_mut(), ts);
        if self.last_ts != i64::MIN {
            for (labels, sref) in &self.synth {
                let _ = app.append(*sref, labels, ts, STALE_NAN);
            }
        }
        if let Err(e) = app.commit() {
            tracing::warn!(url = %self.cfg.url, error = %e, "writing end-of-run stale markers");
        }
    }

    fn format_for(&self, content_type: &str) -> Format {
        let media = content_type.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("text/plain") {
            Format::PrometheusText
        } else if media.eq_ignore_ascii_case("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            self.cfg
                .fallback_format
                .unwrap_or(Format::from_content_type(content_type))
        }
    }

    fn append_body(&mut self, app: &mut dyn Appender, f: &Fetched, ts: i64) -> Result<Stats, Fail> {
        let format = self.format_for(&f.content_type);
        // OpenMetrics is read as leniently as Prometheus reads it (its grammar and `# EOF`, not
        // the spec's family rules), so a target Prometheus scrapes is not down here.
        let mut parser = Parser::with_mode(&f.body, format, ParseMode::PrometheusCompatible);
        let om = format == Format::OpenMetrics;
        self.cache.series.set_keep_texts(!app.keeps_references());
        self.cache.iter = self.cache.iter.wrapping_add(1);
        let iter = self.cache.iter;
        self.cache.cur_seen.clear();
        self.cache.cur_order.clear();
        let mut stats = Stats::default();
        let shared = self.shared.clone();
        let mut meta = shared.metadata.lock();
        loop {
            // A series text this loop cached from a body of the same format was parsed and
            // accepted then: the parser skips its labels, and its slot is already found.
            let mut look = Lookup {
                cache: &self.cache,
                om,
                hit: None,
                probe: None,
            };
            let entry = match parser.next_entry_with_known(&mut look) {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(e) => return Err(Fail::Scrape(e.to_string(), stats)),
            };
            match entry {
                Entry::Sample(s) => {
                    stats.total += 1;
                    let hit = look.hit.filter(|_| s.series_known());
                    let key = look.probed(s.raw_series());
                    self.append_sample(app, &s, hit, key, ts, iter, &mut stats, om)?;
                }
                Entry::Type { name, metric_type } => {
                    if let Some(m) = meta_entry(&mut meta, &name, iter) {
                        m.meta.metric_type = metric_type;
                    }
                }
                Entry::Help { name, help } => {
                    if let Some(m) = meta_entry(&mut meta, &name, iter)
                        && m.meta.help != *help
                    {
                        m.meta.help = help.into_owned();
                    }
                }
                Entry::Unit { name, unit } => {
                    if let Some(m) = meta_entry(&mut meta, &name, iter)
                        && m.meta.unit != unit
                    {
                        m.meta.unit = unit.to_string();
                    }
                }
            }
        }
        // Stale markers for series that disappeared since the last scrape.
        let prev = std::mem::take(&mut self.cache.prev_seen);
        for &idx in &prev {
            if self.cache.series.entry(idx).last_iter != iter && !self.cache.series.dropped(idx) {
                self.append_cached(app, idx, ts, STALE_NAN);
            }
        }
        self.cache.prev_seen = prev;
        std::mem::swap(&mut self.cache.prev_seen, &mut self.cache.cur_seen);
        self.cache.cur_seen.clear();
        std::mem::swap(&mut self.cache.prev_order, &mut self.cache.cur_order);
        if self.handover_from.is_some() {
            self.finish_handover(app, ts);
        }
        if iter.is_multiple_of(16) {
            self.cache.series.evict(iter, 10);
            meta.retain(|_, m| iter.wrapping_sub(m.last_iter) <= 10);
        }
        Ok(stats)
    }

    /// Appends one sample; `hit` is its cache slot when the parser skipped its labels, `key`
    /// its series key when already computed.
    #[allow(clippy::too_many_arguments)]
    fn append_sample(
        &mut self,
        app: &mut dyn Appender,
        s: &Sample<'_, '_>,
        hit: Option<u32>,
        key: Option<Key>,
        ts: i64,
        iter: u32,
        stats: &mut Stats,
        om: bool,
    ) -> Result<(), Fail> {
        let key = key.unwrap_or_else(|| self.cache.series.key(s.raw_series()));
        let mut built = None;
        let pos = self.cache.cur_order.len();
        // The series a few lines ahead are most likely the last scrape's at that position:
        // have their storage objects on the way to the cache when we get there.
        if let Some(&ahead) = self.cache.prev_order.get(pos + PREFETCH_AHEAD) {
            self.cache.series.entry(ahead).prefetch();
        }
        let (idx, new) = match hit.or_else(|| self.cache.lookup(&key)) {
            Some(i) => (i, false),
            None => {
                let labels = self.build_labels(s).map_err(|e| Fail::Scrape(e, *stats))?;
                let idx =
                    self.cache
                        .series
                        .insert(key, s.raw_series().len(), om, labels.is_none(), iter);
                built = labels;
                (idx, true)
            }
        };
        self.cache.cur_order.push(idx);
        let explicit = s.timestamp_ms().filter(|_| self.cfg.honor_timestamps);
        let t = explicit.unwrap_or(ts);
        let track = explicit.is_none() || self.cfg.track_timestamps_staleness;
        let dropped = self.cache.series.dropped(idx);
        let entry = self.cache.series.entry_mut(idx);
        if dropped {
            entry.last_iter = iter;
            return Ok(());
        }
        if entry.last_iter == iter {
            self.metrics.duplicate.inc();
            return Ok(());
        }
        entry.last_iter = iter;
        stats.added += 1;
        if self.cfg.sample_limit > 0 && stats.added > self.cfg.sample_limit {
            self.metrics.sample_limit_exceeded.inc();
            // Prometheus's wording, plus which limit it was: the whole scrape is dropped and
            // the target reported down (up 0), as Prometheus does.
            return Err(Fail::Scrape(
                format!(
                    "sample limit exceeded (sample_limit: {}, the target exposes more samples after metric relabelling)",
                    self.cfg.sample_limit
                ),
                *stats,
            ));
        }
        let mut r = entry.append_fast(app, t, s.value());
        if r == Err(AppendError::UnknownSeriesRef) {
            // New series, or one the storage forgot: append with its labels.
            let labels = match built.take() {
                Some(l) => l,
                // Labels not parsed (a known text): parsed from the text now, which passed
                // relabelling and the limits when it was added.
                None if s.series_known() => match self.labels_from_text(s.raw_series(), om) {
                    Some(l) => l,
                    None => return Ok(()),
                },
                None => match self.build_labels(s).map_err(|e| Fail::Scrape(e, *stats))? {
                    Some(l) => l,
                    None => return Ok(()),
                },
            };
            r = app.append(None, &labels, t, s.value());
            if r.is_ok() {
                // For a stale marker, if the storage cannot take one by reference.
                self.cache.series.keep_text(idx, s.raw_series());
            }
        }
        match r {
            Ok(r) => {
                self.cache.series.entry_mut(idx).set_sref(Some(r));
                if new {
                    stats.series_added += 1;
                }
                if track {
                    self.cache.cur_seen.push(idx);
                }
                Ok(())
            }
            Err(AppendError::OutOfOrder) => {
                self.metrics.out_of_order.inc();
                Ok(())
            }
            Err(AppendError::DuplicateSampleForTimestamp) => {
                self.metrics.duplicate.inc();
                Ok(())
            }
            Err(AppendError::TooOld) | Err(AppendError::TooNew) => {
                self.metrics.out_of_bounds.inc();
                Ok(())
            }
            Err(e) => Err(Fail::Scrape(e.to_string(), *stats)),
        }
    }

    /// Appends `v` (a stale marker) to the cached series `idx` by reference, or with its
    /// kept labels when the storage has not taken it by reference (see `SeriesCache`).
    /// Errors are ignored (stale markers are best effort, as in Prometheus).
    fn append_cached(&mut self, app: &mut dyn Appender, idx: u32, t: i64, v: f64) {
        if self.cache.series.entry_mut(idx).append_fast(app, t, v)
            != Err(AppendError::UnknownSeriesRef)
        {
            return;
        }
        if let Some(labels) = self.kept_labels(idx)
            && let Ok(r) = app.append(None, &labels, t, v)
        {
            self.cache.series.entry_mut(idx).set_sref(Some(r));
        }
    }

    /// The labels of cached series `idx` from its kept text (`None` when no text is kept,
    /// see `SeriesCache::keep_text`, or the text no longer passes).
    fn kept_labels(&self, idx: u32) -> Option<Labels> {
        let text = self.cache.series.text(idx)?;
        self.labels_from_text(text, self.cache.series.openmetrics(idx))
    }

    /// The final label set of series text `text` (`name{labels}` of a sample just parsed
    /// without its labels), parsed again (`None` when relabelling drops it or it no longer
    /// passes the limits).
    fn labels_from_text(&self, text: &[u8], om: bool) -> Option<Labels> {
        let (format, tail): (Format, &[u8]) = if om {
            (Format::OpenMetrics, b" 0\n# EOF\n")
        } else {
            (Format::PrometheusText, b" 0\n")
        };
        let mut line = Vec::with_capacity(text.len() + tail.len());
        line.extend_from_slice(text);
        line.extend_from_slice(tail);
        let mut parser = Parser::with_mode(&line, format, ParseMode::PrometheusCompatible);
        match parser.next_entry() {
            Ok(Some(Entry::Sample(s))) => self.build_labels(&s).ok().flatten(),
            _ => None,
        }
    }

    /// Label set of a new series: sample labels, target labels (honor_labels rules),
    /// metric_relabel_configs, then the label limits. `None` = dropped by relabelling.
    fn build_labels(&self, s: &Sample<'_, '_>) -> Result<Option<Labels>, String> {
        let mut v: Vec<Label> = Vec::with_capacity(s.label_count() + 1 + self.target_labels.len());
        v.push(Label::new(METRIC_NAME, s.name()));
        for (n, val) in s.labels() {
            v.push(Label::new(n, val));
        }
        for tl in &self.target_labels {
            let pos = v
                .iter()
                .position(|l| l.name == tl.name && !l.value.is_empty());
            match pos {
                Some(_) if self.cfg.honor_labels => {}
                Some(p) => {
                    let mut name = format!("exported_{}", tl.name);
                    while v.iter().any(|l| l.name == name) {
                        name.insert_str(0, "exported_");
                    }
                    v[p].name = name;
                    v.push(tl.clone());
                }
                None => {
                    v.retain(|l| l.name != tl.name);
                    v.push(tl.clone());
                }
            }
        }
        let mut labels = Labels::new(v);
        if !self.cfg.metric_relabel.is_empty() {
            match lookout_relabel::relabel(&labels, &self.cfg.metric_relabel) {
                Some(l) => labels = l,
                None => return Ok(None),
            }
        }
        if labels.is_empty() {
            return Ok(None);
        }
        if labels.metric_name().is_none() {
            return Err(format!("invalid metric name or label names: {labels}"));
        }
        self.check_limits(&labels)?;
        Ok(Some(labels))
    }

    fn check_limits(&self, l: &Labels) -> Result<(), String> {
        let met: String = l.metric_name().unwrap_or("").chars().take(50).collect();
        if self.cfg.label_limit > 0 && l.len() > self.cfg.label_limit {
            self.metrics.label_limit_exceeded.inc();
            return Err(format!(
                "label_limit exceeded (metric: {met}, number of labels: {}, limit: {})",
                l.len(),
                self.cfg.label_limit
            ));
        }
        for lab in l.iter() {
            let name: String = lab.name.chars().take(50).collect();
            if self.cfg.label_name_length_limit > 0
                && lab.name.len() > self.cfg.label_name_length_limit
            {
                self.metrics.label_limit_exceeded.inc();
                return Err(format!(
                    "label_name_length_limit exceeded (metric: {met}, label name: {name}, length: {}, limit: {})",
                    lab.name.len(),
                    self.cfg.label_name_length_limit
                ));
            }
            if self.cfg.label_value_length_limit > 0
                && lab.value.len() > self.cfg.label_value_length_limit
            {
                self.metrics.label_limit_exceeded.inc();
                let value: String = lab.value.chars().take(50).collect();
                return Err(format!(
                    "label_value_length_limit exceeded (metric: {met}, label name: {name}, value: {value:?}, length: {}, limit: {})",
                    lab.value.len(),
                    self.cfg.label_value_length_limit
                ));
            }
        }
        Ok(())
    }
}

/// The metadata entry for family `name`, created on first sight (the only allocation).
fn meta_entry<'m>(
    meta: &'m mut FxHashMap<String, MetaEntry>,
    name: &str,
    iter: u32,
) -> Option<&'m mut MetaEntry> {
    if !meta.contains_key(name) {
        let meta_new = MetricMetadata {
            metric_type: MetricType::Unknown,
            help: String::new(),
            unit: String::new(),
        };
        meta.insert(
            name.to_string(),
            MetaEntry {
                meta: meta_new,
                last_iter: iter,
            },
        );
    }
    let m = meta.get_mut(name)?;
    m.last_iter = iter;
    Some(m)
}

async fn wait_stop(rx: &mut watch::Receiver<Option<StopMode>>) -> StopMode {
    loop {
        if let Some(m) = *rx.borrow_and_update() {
            return m;
        }
        if rx.changed().await.is_err() {
            return StopMode::NoStale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_timestamps_snap_to_the_schedule_within_tolerance() {
        let mut aligned = 1_000_000;
        let mut at = |now| aligned_timestamp(&mut aligned, now, 5000);
        assert_eq!(at(1_000_000), 1_000_000);
        assert_eq!(at(1_005_001), 1_005_000, "1 ms late");
        assert_eq!(at(1_009_999), 1_010_000, "1 ms early");
        assert_eq!(at(1_015_002), 1_015_000, "2 ms late: the tolerance");
        assert_eq!(at(1_020_003), 1_020_003, "3 ms late: its own time");
        assert_eq!(
            at(1_035_001),
            1_035_000,
            "after skipped ticks, back on schedule"
        );
        assert_eq!(at(1_037_400), 1_037_400, "off schedule");
        assert_eq!(at(1_040_000), 1_040_000);
        assert_eq!(at(500_000), 500_000, "the clock went back");
        assert_eq!(at(505_001), 505_000, "a new schedule from there");
        // Short intervals: at most 1 % of the interval.
        let mut aligned = 0;
        assert_eq!(aligned_timestamp(&mut aligned, 101, 100), 100);
        assert_eq!(aligned_timestamp(&mut aligned, 202, 100), 202);
        assert_eq!(
            aligned_timestamp(&mut aligned, 50, 10),
            50,
            "tolerance 0 below 100 ms"
        );
    }

    /// Parses `body` with the cache's answers; the slot found for each sample.
    fn lookups(cache: &mut Cache, body: &[u8], format: Format) -> Vec<Option<u32>> {
        let mut p = Parser::with_mode(body, format, ParseMode::PrometheusCompatible);
        let om = format == Format::OpenMetrics;
        cache.cur_order.clear();
        let mut found = Vec::new();
        loop {
            let mut look = Lookup {
                cache,
                om,
                hit: None,
                probe: None,
            };
            let Some(Entry::Sample(s)) = p.next_entry_with_known(&mut look).unwrap_or(None) else {
                break;
            };
            let hit = look.hit.filter(|_| s.series_known());
            if let Some((ptr, len, key)) = look.probe {
                assert_eq!((ptr, len), (s.raw_series().as_ptr(), s.raw_series().len()));
                assert_eq!(key, cache.series.key(s.raw_series()));
            }
            found.push(hit);
            cache.cur_order.push(hit.unwrap_or(u32::MAX));
        }
        found
    }

    #[test]
    fn lookups_expect_the_last_order_and_fall_back_to_the_index() {
        let mut cache = Cache::default();
        for t in ["a{x=\"1\"}", "a{x=\"2\"}", "b", "c_total"] {
            let i = cache
                .series
                .insert(cache.series.key(t.as_bytes()), t.len(), false, false, 1);
            cache.prev_order.push(i);
        }
        // In order.
        let body = b"a{x=\"1\"} 1\na{x=\"2\"} 2\nb 3\nc_total 4\n";
        assert_eq!(
            lookups(&mut cache, body, Format::PrometheusText),
            [Some(0), Some(1), Some(2), Some(3)]
        );
        // Swapped texts of one length; `b_total` where `b` is expected; an unknown text.
        let body = b"a{x=\"2\"} 1\na{x=\"1\"} 2\nb_total 3\nb 4\nd 5\n";
        assert_eq!(
            lookups(&mut cache, body, Format::PrometheusText),
            [Some(1), Some(0), None, Some(2), None]
        );
        // Texts cached from the text format are not known in an OpenMetrics body.
        let body = b"a{x=\"1\"} 1\nb 3\n# EOF\n";
        assert_eq!(lookups(&mut cache, body, Format::OpenMetrics), [None, None]);
    }

    #[test]
    fn offset_is_within_interval_and_phase_stable() {
        let iv = Duration::from_millis(1000);
        for now in [0i64, 1, 999, 1000, 123_456] {
            let o = offset(iv, 12_345, now);
            assert!(o < iv);
            assert_eq!((now as u64 + o.as_millis() as u64) % 1000, 12_345 % 1000);
        }
    }
}
