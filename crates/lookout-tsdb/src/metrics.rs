//! Self-monitoring metrics. The metric objects double as the storage's own counters, so
//! [`crate::Tsdb::stats`] and a scrape of the registry always agree.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone)]
pub struct Metrics {
    pub head_series: Gauge,
    pub head_chunks: Gauge,
    pub head_chunk_heap_bytes: Gauge,
    pub mmapped_chunks: Gauge,
    pub mmapped_chunk_bytes: Gauge,
    pub wal_size_bytes: Gauge,
    pub min_time: Gauge,
    pub max_time: Gauge,
    pub samples_appended: Counter,
    pub ooo_samples_appended: Counter,
    pub out_of_order_samples: Counter,
    pub too_old_samples: Counter,
    pub too_new_samples: Counter,
    pub duplicate_samples: Counter,
    pub series_limit_rejections: Counter,
    pub series_created: Counter,
    pub series_removed: Counter,
    pub wal_corruptions: Counter,
    pub wal_write_failures: Counter,
    pub wal_fsync_duration: Histogram,
    pub chunk_corruptions: Counter,
    pub chunk_write_failures: Counter,
    pub checkpoints: Counter,
    pub checkpoint_failures: Counter,
    pub retention_chunks_removed: Counter,
    pub blocks_loaded: Gauge,
    pub blocks_bytes: Gauge,
    pub head_cuts: Counter,
    pub compactions: Counter,
    pub compaction_failures: Counter,
    pub blocks_quarantined: Counter,
    pub cut_duration: Histogram,
    pub retention_blocks: Family<Vec<(String, String)>, Counter>,
    pub retention_bytes: Family<Vec<(String, String)>, Counter>,
    pub active_series_rejections: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            head_series: Gauge::default(),
            head_chunks: Gauge::default(),
            head_chunk_heap_bytes: Gauge::default(),
            mmapped_chunks: Gauge::default(),
            mmapped_chunk_bytes: Gauge::default(),
            wal_size_bytes: Gauge::default(),
            min_time: Gauge::default(),
            max_time: Gauge::default(),
            samples_appended: Counter::default(),
            ooo_samples_appended: Counter::default(),
            out_of_order_samples: Counter::default(),
            too_old_samples: Counter::default(),
            too_new_samples: Counter::default(),
            duplicate_samples: Counter::default(),
            series_limit_rejections: Counter::default(),
            series_created: Counter::default(),
            series_removed: Counter::default(),
            wal_corruptions: Counter::default(),
            wal_write_failures: Counter::default(),
            wal_fsync_duration: Histogram::new(exponential_buckets(0.0001, 4.0, 9)),
            chunk_corruptions: Counter::default(),
            chunk_write_failures: Counter::default(),
            checkpoints: Counter::default(),
            checkpoint_failures: Counter::default(),
            retention_chunks_removed: Counter::default(),
            blocks_loaded: Default::default(),
            blocks_bytes: Default::default(),
            head_cuts: Default::default(),
            compactions: Default::default(),
            compaction_failures: Default::default(),
            blocks_quarantined: Default::default(),
            cut_duration: Histogram::new(exponential_buckets(0.01, 4.0, 9)),
            retention_blocks: Default::default(),
            retention_bytes: Default::default(),
            active_series_rejections: Default::default(),
        }
    }
}

impl Metrics {
    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("lookout_tsdb");
        r.register(
            "head_series",
            "Series in the head.",
            self.head_series.clone(),
        );
        r.register(
            "head_chunks",
            "Open head chunks held in memory.",
            self.head_chunks.clone(),
        );
        r.register(
            "head_chunk_heap_bytes",
            "Heap bytes held by open head chunks and out-of-order buffers.",
            self.head_chunk_heap_bytes.clone(),
        );
        r.register(
            "mmapped_chunks",
            "Chunks referenced in head-chunk files.",
            self.mmapped_chunks.clone(),
        );
        r.register(
            "mmapped_chunk_bytes",
            "Bytes of head-chunk files on disk.",
            self.mmapped_chunk_bytes.clone(),
        );
        r.register(
            "wal_size_bytes",
            "Bytes of WAL segments on disk.",
            self.wal_size_bytes.clone(),
        );
        r.register(
            "head_min_time",
            "Oldest sample timestamp in the head (ms).",
            self.min_time.clone(),
        );
        r.register(
            "head_max_time",
            "Newest sample timestamp in the head (ms).",
            self.max_time.clone(),
        );
        r.register(
            "head_samples_appended",
            "Samples stored.",
            self.samples_appended.clone(),
        );
        r.register(
            "out_of_order_samples_appended",
            "Out-of-order samples stored within the out-of-order window.",
            self.ooo_samples_appended.clone(),
        );
        r.register(
            "out_of_order_samples",
            "Samples rejected as out of order.",
            self.out_of_order_samples.clone(),
        );
        r.register(
            "too_old_samples",
            "Samples rejected as older than retention or the out-of-order window.",
            self.too_old_samples.clone(),
        );
        r.register(
            "too_new_samples",
            "Samples rejected as too far in the future (max_future).",
            self.too_new_samples.clone(),
        );
        r.register(
            "duplicate_samples",
            "Samples rejected for a duplicate timestamp with a different value.",
            self.duplicate_samples.clone(),
        );
        r.register(
            "series_limit_rejections",
            "Samples rejected because the series limit was reached.",
            self.series_limit_rejections.clone(),
        );
        r.register(
            "head_series_created",
            "Series created in the head.",
            self.series_created.clone(),
        );
        r.register(
            "head_series_removed",
            "Series garbage collected from the head.",
            self.series_removed.clone(),
        );
        r.register(
            "wal_corruptions",
            "WAL corruptions repaired on open.",
            self.wal_corruptions.clone(),
        );
        r.register(
            "wal_write_failures",
            "Failed WAL writes.",
            self.wal_write_failures.clone(),
        );
        r.register(
            "wal_fsync_duration_seconds",
            "Duration of WAL fsyncs.",
            self.wal_fsync_duration.clone(),
        );
        r.register(
            "head_chunk_corruptions",
            "Head-chunk file corruptions repaired on open.",
            self.chunk_corruptions.clone(),
        );
        r.register(
            "head_chunk_write_failures",
            "Failed writes of full chunks to head-chunk files.",
            self.chunk_write_failures.clone(),
        );
        r.register(
            "checkpoints",
            "WAL checkpoints written.",
            self.checkpoints.clone(),
        );
        r.register(
            "checkpoint_failures",
            "WAL checkpoints that failed.",
            self.checkpoint_failures.clone(),
        );
        r.register(
            "retention_chunks_removed",
            "Chunks dropped by retention.",
            self.retention_chunks_removed.clone(),
        );
        r.register(
            "blocks_loaded",
            "Blocks currently loaded.",
            self.blocks_loaded.clone(),
        );
        r.register(
            "blocks_bytes",
            "Bytes of blocks on disk.",
            self.blocks_bytes.clone(),
        );
        r.register(
            "head_block_cuts",
            "Blocks cut from the head (including out-of-order flushes).",
            self.head_cuts.clone(),
        );
        r.register(
            "compactions",
            "Block compactions completed.",
            self.compactions.clone(),
        );
        r.register(
            "compaction_failures",
            "Head cuts and compactions that failed.",
            self.compaction_failures.clone(),
        );
        r.register(
            "blocks_quarantined",
            "Corrupt blocks moved aside on open.",
            self.blocks_quarantined.clone(),
        );
        r.register(
            "compaction_duration_seconds",
            "Duration of head cuts and compactions.",
            self.cut_duration.clone(),
        );
        r.register(
            "retention_deleted_blocks",
            "Blocks deleted by retention, by reason (time or size).",
            self.retention_blocks.clone(),
        );
        r.register(
            "retention_deleted_bytes",
            "Block bytes deleted by retention, by reason (time or size).",
            self.retention_bytes.clone(),
        );
        r.register(
            "series_limit_per_scope_rejections",
            "Series refused by a per-scope (per-target) series limit.",
            self.active_series_rejections.clone(),
        );
    }
}
