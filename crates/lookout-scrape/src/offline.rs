//! Drives one scrape loop's processing with bodies supplied by the caller instead of HTTP:
//! used by the benchmarks and the allocation test, and handy for replaying captured
//! expositions. Scheduling, fetching and health reporting are bypassed.

use std::sync::Arc;
use std::time::Instant;

use lookout_config::ScrapeConfig;
use lookout_storage::{Appendable, Label};

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
