//! Scraping: the Prometheus scrape manager for Lookout.
//!
//! [`ScrapeManager`] is driven by a validated [`lookout_config::PrometheusConfig`]. Each
//! `scrape_configs` job becomes a pool whose targets come from `static_configs` and
//! `file_sd_configs` (files polled for changes), go through `relabel_configs` (see
//! [`target::populate`]) and each get a Tokio scrape loop. A loop scrapes at a fixed phase
//! of its interval derived from the target's hash, sends Prometheus's headers (`Accept`,
//! `Accept-Encoding: gzip`, `User-Agent`, `X-Prometheus-Scrape-Timeout-Seconds`, auth),
//! parses the body with `lookout-exposition`, applies `metric_relabel_configs`,
//! `honor_labels`/`honor_timestamps` and the sample/label limits, and appends everything
//! through one [`lookout_storage::Appender`] per scrape (rolled back on any parse or limit
//! error). It writes `up`, `scrape_duration_seconds`, `scrape_samples_scraped`,
//! `scrape_samples_post_metric_relabeling` and `scrape_series_added`, and staleness
//! markers when a series or target disappears or a scrape fails.
//!
//! Differences from Prometheus: a removed target's stale markers are written immediately
//! (Prometheus waits up to one interval in case the target reappears); a blank or unknown
//! `Content-Type` is parsed as the text format (or `fallback_scrape_protocol`) instead of
//! failing; the protobuf format and native histograms are not supported (`PrometheusProto`
//! is left out of the `Accept` header); scrapes use HTTP/1.1 (`enable_http2` is accepted).
//!
//! [`ScrapeManager::apply_config`] and [`ScrapeManager::stop`] are `async` (they spawn and
//! join Tokio tasks); [`ScrapeManager::targets`] and the metadata views are synchronous.
//! The loops run on the caller's runtime or, with [`ScrapeOptions::runtime`], on another
//! one such as a [`ScrapeThread`] (what `lookout serve` does).

pub mod client;
pub mod discovery;
mod manager;
mod metrics;
pub mod offline;
mod scrape_loop;
mod scrape_thread;
mod series_cache;
pub mod target;
mod tls;

pub use manager::{ScrapeError, ScrapeManager, ScrapeOptions, TargetMetadata, TargetStatus};
pub use scrape_loop::{Health, MetricMetadata};
pub use scrape_thread::ScrapeThread;
