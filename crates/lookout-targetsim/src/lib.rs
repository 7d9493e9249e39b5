//! Synthetic Prometheus scrape targets for benchmarks and interop tests.
//!
//! [`Simulator`] holds the series catalogue of N targets (counters, gauges, classic
//! histograms and a few churning series) whose values are a closed-form function of
//! `(seed, target, series, tick)`; ticks follow wall-clock time, so concurrent scrapers
//! see consistent data. [`SimServer`] serves each target on its own listener in
//! Prometheus text 0.0.4 or OpenMetrics 1.0 depending on `Accept`.

mod model;
mod render;
mod server;

pub use model::{
    BUCKETS, ConfigError, MAX_SERIES_PER_TARGET, MAX_TARGETS, SERIES_PER_HISTOGRAM, SimConfig,
    Split,
};
pub use render::{
    Format, OPENMETRICS_CONTENT_TYPE, START_TICK, Simulator, TEXT_CONTENT_TYPE, negotiate,
};
pub use server::{ServeError, SimServer};
