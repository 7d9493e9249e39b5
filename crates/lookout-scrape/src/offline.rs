//! Drives one scrape loop's processing with bodies supplied by the caller instead of HTTP:
//! used by the benchmarks and the allocation test, and handy for replaying captured
//! expositions. Scheduling, fetching and health reporting are bypassed. [`DiscardStorage`]
//! stands in for a storage when only the loop's own cost is wanted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use lookout_config::ScrapeConfig;
use lookout_storage::{
    AppendError, Appendable, Appender, Label, Labels, SeriesRef, StorageError, Timestamp,
};

use crate::client::{Fetched, ScrapeClient};
use crate::metrics::Metrics;
use crate::scrape_loop::{LoopConfig, ScrapeLoop, Shared};
use crate::target::{ADDRESS_LABEL, Populated, populate};

/// A scrape loop for one target of `cfg` at `address`, fed by [`OfflineScraper::scrape`].
pub struct OfflineScraper {
    inner: ScrapeLoop,
    shared: Arc<Shared>,
    metrics: Metrics,
}

impl OfflineScraper {
    pub fn new(
        cfg: &ScrapeConfig,
        address: &str,
        appendable: Arc<dyn Appendable>,
    ) -> Result<Self, String> {
        let target = match populate(&[Label::new(ADDRESS_LABEL, address)], cfg)? {
            Populated::Active(t) => t,
            Populated::Dropped(_) => return Err("target dropped by relabel_configs".into()),
        };
        let client = Arc::new(ScrapeClient::new(
            &cfg.http,
            lookout_exposition::SCRAPE_ACCEPT_HEADER,
        )?);
        let usize_of = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let lc = LoopConfig {
            url: target.url(&cfg.params),
            interval: target.interval().as_std(),
            timeout: target.timeout().as_std(),
            honor_labels: cfg.honor_labels,
            honor_timestamps: cfg.honor_timestamps,
            track_timestamps_staleness: cfg.track_timestamps_staleness,
            sample_limit: usize_of(cfg.sample_limit),
            label_limit: usize_of(cfg.label_limit),
            label_name_length_limit: usize_of(cfg.label_name_length_limit),
            label_value_length_limit: usize_of(cfg.label_value_length_limit),
            body_size_limit: cfg.body_size_limit.0,
            metric_relabel: cfg.metric_relabel_configs.clone().into(),
            fallback_format: None,
            client,
            offset_seed: 0,
        };
        let shared = Arc::new(Shared::new(target));
        let metrics = Metrics::default();
        let inner = ScrapeLoop::new(
            lc,
            shared.clone(),
            appendable,
            metrics.clone(),
            cfg.job_name.clone(),
        );
        Ok(OfflineScraper {
            inner,
            shared,
            metrics,
        })
    }

    /// Processes one scraped body taken at `ts` (ms): parse, append, report, commit.
    /// Returns the error the scrape would report (`up` 0), if any.
    pub fn scrape(&mut self, body: &Fetched, ts: i64) -> Result<(), String> {
        self.inner.process(Ok(body), Instant::now(), ts);
        let h = self.shared.health.lock();
        if h.last_error.is_empty() {
            Ok(())
        } else {
            Err(h.last_error.clone())
        }
    }

    /// Registers this scraper's counters (out-of-order, duplicates, limits, ...).
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }
}

/// A storage that accepts every sample, keeps none and allocates nothing per sample: for
/// measuring a scrape loop's own cost. New series get increasing references; appends by
/// reference are accepted. Counts the committed samples.
#[derive(Default)]
pub struct DiscardStorage {
    committed: AtomicU64,
    next_ref: AtomicU64,
}

impl DiscardStorage {
    /// Samples committed so far (rolled-back batches do not count).
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }
}

struct DiscardAppender<'a> {
    storage: &'a DiscardStorage,
    samples: u64,
}

impl Appendable for DiscardStorage {
    fn appender(&self) -> Box<dyn Appender + Send + '_> {
        Box::new(DiscardAppender {
            storage: self,
            samples: 0,
        })
    }
}

impl Appender for DiscardAppender<'_> {
    fn append(
        &mut self,
        series_ref: Option<SeriesRef>,
        _labels: &Labels,
        _t: Timestamp,
        _v: f64,
    ) -> Result<SeriesRef, AppendError> {
        self.samples += 1;
        Ok(series_ref
            .unwrap_or_else(|| SeriesRef(self.storage.next_ref.fetch_add(1, Ordering::Relaxed))))
    }

    fn append_by_ref(
        &mut self,
        series_ref: SeriesRef,
        _t: Timestamp,
        _v: f64,
    ) -> Result<SeriesRef, AppendError> {
        self.samples += 1;
        Ok(series_ref)
    }

    fn commit(self: Box<Self>) -> Result<(), StorageError> {
        self.storage
            .committed
            .fetch_add(self.samples, Ordering::Relaxed);
        Ok(())
    }

    fn rollback(self: Box<Self>) {}
}
