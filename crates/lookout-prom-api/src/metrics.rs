//! The API's self-monitoring metrics, registered once per [`crate::ApiState`].

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type LabelPairs = Vec<(String, String)>;

/// Handles to the API's metrics (shared by clones).
#[derive(Clone, Debug)]
pub struct ApiMetrics {
    /// `lookout_http_requests_total{handler,code}`.
    pub http_requests: Family<LabelPairs, Counter>,
    /// `lookout_query_duration_seconds{type}` (`instant` or `range`).
    pub query_duration: Family<LabelPairs, Histogram, fn() -> Histogram>,
    /// `lookout_remote_write_samples_received_total`.
    pub remote_write_samples: Counter,
    /// `lookout_remote_write_requests_total{code}`.
    pub remote_write_requests: Family<LabelPairs, Counter>,
}

fn query_histogram() -> Histogram {
    // 1ms .. ~65s
    Histogram::new(exponential_buckets(0.001, 4.0, 9))
}

impl ApiMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = ApiMetrics {
            http_requests: Family::default(),
            query_duration: Family::new_with_constructor(query_histogram as fn() -> Histogram),
            remote_write_samples: Counter::default(),
            remote_write_requests: Family::default(),
        };
        registry.register(
            "lookout_http_requests",
            "HTTP requests to the Prometheus API by handler and status code",
            m.http_requests.clone(),
        );
        registry.register(
            "lookout_query_duration_seconds",
            "Wall time of PromQL queries served by the API, by query type",
            m.query_duration.clone(),
        );
        registry.register(
            "lookout_remote_write_samples_received",
            "Samples accepted by the remote-write receiver",
            m.remote_write_samples.clone(),
        );
        registry.register(
            "lookout_remote_write_requests",
            "Remote-write requests by response status code",
            m.remote_write_requests.clone(),
        );
        m
    }

    pub(crate) fn observe_request(&self, handler: &str, code: u16) {
        self.http_requests
            .get_or_create(&vec![
                ("handler".to_string(), handler.to_string()),
                ("code".to_string(), code.to_string()),
            ])
            .inc();
    }

    pub(crate) fn observe_query(&self, kind: &str, seconds: f64) {
        self.query_duration
            .get_or_create(&vec![("type".to_string(), kind.to_string())])
            .observe(seconds);
    }

    pub(crate) fn observe_remote_write(&self, code: u16, samples: u64) {
        self.remote_write_requests
            .get_or_create(&vec![("code".to_string(), code.to_string())])
            .inc();
        if samples > 0 {
            self.remote_write_samples.inc_by(samples);
        }
    }
}
