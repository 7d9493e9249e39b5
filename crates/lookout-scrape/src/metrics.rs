//! Self-monitoring metrics of the scrape manager (`prometheus-client`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type JobLabel = Vec<(&'static str, String)>;

fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Cheap to clone: every metric is reference-counted inside.
#[derive(Clone)]
pub(crate) struct Metrics {
    pub pool_targets: Family<JobLabel, Gauge>,
    pub scrape_duration: Family<JobLabel, Histogram, fn() -> Histogram>,
    pub scrapes_failed: Family<JobLabel, Counter>,
    pub out_of_order: Counter,
    pub duplicate: Counter,
    pub out_of_bounds: Counter,
    pub sample_limit_exceeded: Counter,
    pub label_limit_exceeded: Counter,
    pub body_size_exceeded: Counter,
    pub target_limit_exceeded: Counter,
    pub sd_file_read_errors: Counter,
    pub reloads: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            pool_targets: Family::default(),
            scrape_duration: Family::new_with_constructor(histogram as fn() -> Histogram),
            scrapes_failed: Family::default(),
            out_of_order: Counter::default(),
            duplicate: Counter::default(),
            out_of_bounds: Counter::default(),
            sample_limit_exceeded: Counter::default(),
            label_limit_exceeded: Counter::default(),
            body_size_exceeded: Counter::default(),
            target_limit_exceeded: Counter::default(),
            sd_file_read_errors: Counter::default(),
            reloads: Counter::default(),
        }
    }
}

fn job(j: &str) -> JobLabel {
    vec![("scrape_job", j.to_string())]
}

impl Metrics {
    pub fn observe_scrape(&self, j: &str, secs: f64, failed: bool) {
        let l = job(j);
        self.scrape_duration.get_or_create(&l).observe(secs);
        if failed {
            self.scrapes_failed.get_or_create(&l).inc();
        }
    }

    pub fn set_pool_targets(&self, j: &str, n: usize) {
        self.pool_targets.get_or_create(&job(j)).set(n as i64);
    }

    pub fn remove_pool(&self, j: &str) {
        let l = job(j);
        self.pool_targets.remove(&l);
        self.scrape_duration.remove(&l);
        self.scrapes_failed.remove(&l);
    }

    pub fn register(&self, r: &mut Registry) {
        r.register(
            "lookout_scrape_pool_targets",
            "Current number of active targets per scrape pool.",
            self.pool_targets.clone(),
        );
        r.register(
            "lookout_scrape_duration_seconds",
            "Scrape duration per scrape pool.",
            self.scrape_duration.clone(),
        );
        r.register(
            "lookout_scrape_failures",
            "Failed scrapes per scrape pool.",
            self.scrapes_failed.clone(),
        );
        r.register(
            "lookout_scrape_samples_out_of_order",
            "Samples rejected as out of order.",
            self.out_of_order.clone(),
        );
        r.register(
            "lookout_scrape_samples_duplicate_timestamp",
            "Samples rejected for a duplicate timestamp with a different value (or repeated in one scrape).",
            self.duplicate.clone(),
        );
        r.register(
            "lookout_scrape_samples_out_of_bounds",
            "Samples rejected as too old or too new.",
            self.out_of_bounds.clone(),
        );
        r.register(
            "lookout_scrape_sample_limit_exceeded",
            "Scrapes that hit sample_limit.",
            self.sample_limit_exceeded.clone(),
        );
        r.register(
            "lookout_scrape_label_limit_exceeded",
            "Scrapes that hit a label limit.",
            self.label_limit_exceeded.clone(),
        );
        r.register(
            "lookout_scrape_body_size_limit_exceeded",
            "Scrapes that hit body_size_limit.",
            self.body_size_exceeded.clone(),
        );
        r.register(
            "lookout_scrape_target_limit_exceeded",
            "Pool syncs that hit target_limit.",
            self.target_limit_exceeded.clone(),
        );
        r.register(
            "lookout_sd_file_read_errors",
            "File service discovery read or parse errors.",
            self.sd_file_read_errors.clone(),
        );
        r.register(
            "lookout_scrape_config_reloads",
            "Configurations applied to the scrape manager.",
            self.reloads.clone(),
        );
    }
}
