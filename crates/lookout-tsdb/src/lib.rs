//! Lookout's embedded metrics storage: an in-memory head of Gorilla-compressed chunks per
//! series, full chunks moved out of the heap into mmap'd head-chunk files, a postings index
//! over interned label strings, and a segmented, checksummed write-ahead log replayed on
//! open. Once the head spans 1.5 chunk ranges (2 h by default) its oldest range is cut into
//! an immutable block (denser columnar encoding, see [`dense`]; format in [`block`]); blocks
//! are compacted in a background thread and deleted whole by time or size retention.
//! Queries merge head and blocks, dropping duplicate timestamps.
//!
//! [`Tsdb`] implements [`lookout_storage::Queryable`] and [`lookout_storage::Appendable`]
//! with Prometheus's appender semantics (see [`TsdbOptions`] for the limits and windows).
//! It is `Send + Sync`; share it as `Arc<Tsdb>`.
//!
//! On-disk layout under the data directory: `lock`, `wal/` (segments and checkpoints, see
//! the `wal` module), `chunks_head/` (see the `chunk_file` module) and `blocks/<id>/`.
//! Setting `LOOKOUT_TSDB_FAILPOINT` to a failpoint name (see [`block::failpoint`]) kills the
//! process there; the crash tests use it.

mod appender;
mod bits;
pub mod block;
pub mod chunk;
mod chunk_file;
mod compact;
mod db;
pub mod dense;
mod head;
mod metrics;
mod postings;
mod symbols;
mod sysbuf;
mod wal;

use std::path::PathBuf;
use std::time::Duration;

pub use appender::TsdbAppender;
pub use compact::backfill;
pub use db::{RetentionOutcome, Tsdb};

/// Storage options. `Default` gives Prometheus-like behaviour with 7 days of retention.
#[derive(Clone, Debug)]
pub struct TsdbOptions {
    /// Data older than the newest sample minus this is dropped by
    /// [`Tsdb::enforce_retention`], and appends that old are refused as `TooOld`.
    pub retention: Duration,
    /// How far behind the newest sample (over all series) an out-of-order sample may be and
    /// still be stored. Zero turns out-of-order ingestion off (the default).
    pub out_of_order_window: Duration,
    /// Refuse samples more than this far ahead of [`clock`](Self::clock) with
    /// `AppendError::TooNew` ("out of bounds"). Default 10 minutes, the bound Prometheus's
    /// remote-write receiver applies; it matters because retention is measured from the
    /// newest sample, so one far-future sample would otherwise age out everything else.
    /// `None` accepts any future timestamp.
    pub max_future: Option<Duration>,
    /// The wall clock `max_future` is checked against (tests inject one).
    pub clock: Clock,
    /// Out-of-order samples buffered per series before they are written out as a chunk.
    pub out_of_order_cap: usize,
    /// Refuse new series beyond this many (`AppendError::SeriesLimit`).
    pub max_series: Option<usize>,
    pub max_labels_per_series: usize,
    pub max_label_name_len: usize,
    pub max_label_value_len: usize,
    /// fsync period of the WAL. Every commit is written with one `write` (surviving a
    /// process kill); zero fsyncs on every commit (surviving power loss, much slower).
    pub wal_fsync_interval: Duration,
    pub wal_segment_size: u64,
    /// A checkpoint (which truncates the WAL) runs once this many segments exist.
    pub wal_checkpoint_segments: u32,
    pub chunk_file_size: u64,
    pub samples_per_chunk: usize,
    /// Chunks never span a multiple of this; blocks are cut from the head at this size.
    pub chunk_range: Duration,
    /// Delete the oldest blocks while blocks, WAL and head-chunk files exceed this many bytes.
    pub retention_size: Option<u64>,
    /// Cut the head into blocks, compact them and apply block retention in a background
    /// thread every `maintenance_interval`.
    pub compaction: bool,
    pub maintenance_interval: Duration,
}

impl Default for TsdbOptions {
    fn default() -> Self {
        TsdbOptions {
            retention: Duration::from_secs(7 * 24 * 3600),
            out_of_order_window: Duration::ZERO,
            max_future: Some(Duration::from_secs(600)),
            clock: Clock::default(),
            out_of_order_cap: 32,
            max_series: None,
            max_labels_per_series: 128,
            max_label_name_len: 1024,
            max_label_value_len: 16 * 1024,
            wal_fsync_interval: Duration::from_secs(1),
            wal_segment_size: 128 << 20,
            wal_checkpoint_segments: 3,
            chunk_file_size: 128 << 20,
            samples_per_chunk: 120,
            chunk_range: Duration::from_secs(2 * 3600),
            retention_size: None,
            compaction: true,
            maintenance_interval: Duration::from_secs(30),
        }
    }
}

/// Source of the current time in Unix milliseconds: the system clock by default, or a
/// function (tests use it to step the clock back and forth).
#[derive(Clone, Default)]
pub struct Clock(Option<std::sync::Arc<dyn Fn() -> i64 + Send + Sync>>);

impl Clock {
    pub fn from_fn(f: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Clock(Some(std::sync::Arc::new(f)))
    }

    /// Now, in Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            Some(f) => f(),
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.0.is_some() {
            "injected"
        } else {
            "system"
        };
        write!(f, "Clock({kind})")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TsdbError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("data directory {0} is in use by another process")]
    Locked(PathBuf),
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    #[error("storage is closed")]
    Closed,
}

/// A point-in-time summary of the storage.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub series: usize,
    /// Samples stored by commits since open (WAL replay not counted).
    pub samples_appended: u64,
    /// Open (in-memory) head chunks.
    pub head_chunks: u64,
    /// Chunks in head-chunk files.
    pub mmapped_chunks: u64,
    /// Heap bytes of open chunks and out-of-order buffers.
    pub head_chunk_heap_bytes: u64,
    pub mmapped_chunk_bytes: u64,
    pub wal_bytes: u64,
    pub wal_segments: u32,
    pub symbols: usize,
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
    /// WAL and head-chunk corruptions found (and repaired) since open.
    pub corruptions: u64,
    pub blocks: usize,
    pub block_bytes: u64,
    pub block_samples: u64,
    pub block_chunks: u64,
    /// Oldest and newest sample time covered by blocks.
    pub block_min_time: Option<i64>,
    pub block_max_time: Option<i64>,
}

impl Stats {
    pub fn chunks(&self) -> u64 {
        self.head_chunks + self.mmapped_chunks
    }
}

/// Top series counts; see [`Tsdb::cardinality`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cardinality {
    pub series: u64,
    /// Metric names by series count.
    pub metrics: Vec<(String, u64)>,
    /// Label names by number of distinct values.
    pub label_value_counts: Vec<(String, u64)>,
    /// `name=value` pairs by series count.
    pub label_pairs: Vec<(String, u64)>,
    /// Label names by the bytes their values take over all series (value length times
    /// series count, summed over values; Prometheus's `memoryInBytesByLabelName`).
    pub label_value_bytes: Vec<(String, u64)>,
    /// Distinct `name=value` pairs (before the `limit`).
    pub num_label_pairs: u64,
}
