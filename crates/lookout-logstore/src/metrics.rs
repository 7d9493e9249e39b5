//! Self-metrics (Loki's names where Loki has one), shared by every tenant's store.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DiscardLabel {
    pub tenant: String,
    pub reason: String,
}

#[derive(Default)]
pub struct StoreMetrics {
    pub lines_received: Family<TenantLabel, Counter>,
    pub bytes_received: Family<TenantLabel, Counter>,
    pub discarded_lines: Family<DiscardLabel, Counter>,
    pub chunks_flushed: Counter,
    pub chunk_bytes_written: Counter,
    pub chunks_skipped_by_filter: Counter,
    pub chunks_scanned: Counter,
    pub streams: Gauge,
    pub retention_deleted_chunks: Counter,
}

impl StoreMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "loki_distributor_lines_received",
            "Log lines accepted, by tenant",
            self.lines_received.clone(),
        );
        r.register(
            "loki_distributor_bytes_received",
            "Bytes of log lines accepted, by tenant",
            self.bytes_received.clone(),
        );
        r.register(
            "loki_discarded_samples",
            "Log lines refused, by tenant and reason",
            self.discarded_lines.clone(),
        );
        r.register(
            "lookout_logstore_chunks_flushed",
            "Chunks written to disk",
            self.chunks_flushed.clone(),
        );
        r.register(
            "lookout_logstore_chunk_bytes_written",
            "Compressed chunk bytes written to disk",
            self.chunk_bytes_written.clone(),
        );
        r.register(
            "lookout_logstore_chunks_skipped_by_filter",
            "Chunks a query skipped because their substring filter ruled the needle out",
            self.chunks_skipped_by_filter.clone(),
        );
        r.register(
            "lookout_logstore_chunks_scanned",
            "Chunks decoded by queries",
            self.chunks_scanned.clone(),
        );
        r.register(
            "lookout_logstore_streams",
            "Streams held, over all tenants",
            self.streams.clone(),
        );
        r.register(
            "lookout_logstore_retention_deleted_chunks",
            "Chunks removed by retention",
            self.retention_deleted_chunks.clone(),
        );
    }
}
