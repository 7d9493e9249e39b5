//! The vocabulary every Lookout component shares: label sets, label matchers, float samples
//! and the narrow storage interfaces (`Queryable` for reads, `Appendable` for writes).
//!
//! The query engines see storage only through [`Queryable`], so the embedded TSDB, an
//! in-memory store ([`memory::MemStorage`], used by tests) or a remote Prometheus-compatible
//! API can stand behind them. Writers (scrape, remote-write receive, rules) see only
//! [`Appendable`]: a batch of samples is committed atomically or rolled back.

pub mod labels;
pub mod logs;
pub mod matcher;
pub mod memory;
pub mod value;

pub use labels::{Label, Labels, LabelsBuilder, METRIC_NAME};
pub use matcher::{MatchOp, Matcher, MatcherError};
pub use value::{STALE_NAN, is_stale_nan};

/// Milliseconds since the Unix epoch, as Prometheus stores them.
pub type Timestamp = i64;

/// One float sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub t: Timestamp,
    pub v: f64,
}

/// A series with its samples in `[start, end]`, time-ordered, staleness markers included.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// What a reader wants from [`Queryable::select`].
#[derive(Clone, Copy, Debug)]
pub struct SelectHints {
    /// Inclusive lower bound (ms).
    pub start: Timestamp,
    /// Inclusive upper bound (ms).
    pub end: Timestamp,
    /// Refuse (with [`StorageError::TooManySamples`]) once more samples than this would be returned.
    pub max_samples: Option<usize>,
    /// Refuse (with [`StorageError::TooManySeries`]) once more series than this would be returned.
    pub max_series: Option<usize>,
}

impl SelectHints {
    pub fn range(start: Timestamp, end: Timestamp) -> Self {
        SelectHints {
            start,
            end,
            max_samples: None,
            max_series: None,
        }
    }
}

/// Opaque handle a storage hands back from an append so the caller (a scrape loop's cache)
/// can skip the label lookup next time. `SeriesRef(0)` is never a valid reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesRef(pub u64);

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("query would load more than {limit} samples")]
    TooManySamples { limit: usize },
    #[error("query would load more than {limit} series")]
    TooManySeries { limit: usize },
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage error: {0}")]
    Other(String),
}

/// Why a single sample was refused. The batch it belongs to stays usable: the caller counts
/// the error and goes on (as a Prometheus scrape does) or fails the whole batch.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AppendError {
    #[error("out of order sample")]
    OutOfOrder,
    #[error("out of bounds: sample is older than the out-of-order window or retention")]
    TooOld,
    /// Prometheus's remote-write receiver answers the same for samples more than 10 minutes
    /// ahead of its clock.
    #[error("out of bounds: sample timestamp is too far in the future")]
    TooNew,
    #[error("duplicate sample for timestamp with a different value")]
    DuplicateSampleForTimestamp,
    #[error("series has {count} labels, more than the limit of {limit}")]
    TooManyLabels { count: usize, limit: usize },
    #[error("label {name:?} is longer than the limit of {limit} bytes")]
    LabelTooLong { name: String, limit: usize },
    #[error("invalid series: {0}")]
    InvalidSeries(String),
    /// The store-wide limit on active (head) series (`--max-series`).
    #[error(
        "global active series limit of {limit} reached (--max-series): new series are refused until old ones go inactive"
    )]
    SeriesLimit { limit: usize },
    #[error("storage error: {0}")]
    Storage(String),
    /// [`Appender::append_by_ref`] could not resolve the reference (the series is gone, or
    /// the storage does not support appending by reference): append with the labels.
    #[error("unknown series reference")]
    UnknownSeriesRef,
}

/// Read side: everything the query engines and the HTTP API need.
pub trait Queryable: Send + Sync {
    /// Series matching all `matchers` that have samples in `[hints.start, hints.end]`, sorted
    /// by labels, each with its samples in that range.
    fn select(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<Vec<Series>, StorageError>;

    /// Label sets of the series matching all `matchers` with data in `[start, end]`, sorted.
    fn series(
        &self,
        matchers: &[Matcher],
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<Labels>, StorageError>;

    /// Sorted, distinct label names of the matching series (all series when `matchers` is empty).
    fn label_names(
        &self,
        matchers: &[Matcher],
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<String>, StorageError>;

    /// Sorted, distinct values of label `name` over the matching series.
    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<String>, StorageError>;
}

/// Write side. A batch is appended, then committed (made durable and visible at once) or
/// rolled back (nothing of it is kept).
pub trait Appendable: Send + Sync {
    fn appender(&self) -> Box<dyn Appender + Send + '_>;
}

pub trait Appender {
    /// Adds one sample. `series_ref` is a hint from an earlier append of the same labels; the
    /// storage falls back to `labels` when it is unknown.
    fn append(
        &mut self,
        series_ref: Option<SeriesRef>,
        labels: &Labels,
        t: Timestamp,
        v: f64,
    ) -> Result<SeriesRef, AppendError>;

    /// Adds one sample to the series `series_ref` (returned by an earlier append) without
    /// its labels: the fast path for callers that cache references, such as scrape loops.
    /// Answers [`AppendError::UnknownSeriesRef`] when the storage cannot resolve the
    /// reference (this default always does); the caller then calls
    /// [`append`](Appender::append) with the labels.
    fn append_by_ref(
        &mut self,
        series_ref: SeriesRef,
        t: Timestamp,
        v: f64,
    ) -> Result<SeriesRef, AppendError> {
        let _ = (series_ref, t, v);
        Err(AppendError::UnknownSeriesRef)
    }

    /// Makes every sample appended so far durable (written to the WAL) and visible.
    fn commit(self: Box<Self>) -> Result<(), StorageError>;

    /// Drops every sample appended so far.
    fn rollback(self: Box<Self>);
}
