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

/// A storage's own handle on one series, for writers that append to the same series scrape
/// after scrape: appending through it skips looking the reference up. Opaque to everyone but
/// the storage that made it ([`Appender::series_handle`]); use it only with that storage.
#[derive(Clone)]
pub struct SeriesHandle(std::sync::Arc<dyn std::any::Any + Send + Sync>);

impl SeriesHandle {
    pub fn new<T: std::any::Any + Send + Sync>(inner: std::sync::Arc<T>) -> Self {
        SeriesHandle(inner)
    }

    /// The storage's object, when this handle holds a `T`.
    pub fn get<T: std::any::Any + Send + Sync>(&self) -> Option<std::sync::Arc<T>> {
        self.0.clone().downcast::<T>().ok()
    }

    /// Asks the CPU to start loading the series' object into cache: a writer that knows
    /// which series comes next calls this a few samples ahead (a hint, no effect on results).
    pub fn prefetch(&self) {
        prefetch(std::sync::Arc::as_ptr(&self.0) as *const u8, 192);
    }
}

/// Hints the CPU to load `len` bytes from `p` into cache (no-op off x86-64). `p` need not
/// be valid: a prefetch never faults.
pub fn prefetch(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for off in (0..len).step_by(64) {
        // SAFETY: prefetching has no architectural effect and cannot fault; `wrapping_add`
        // keeps the address computation free of undefined behaviour.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                p.wrapping_add(off) as *const i8,
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

impl std::fmt::Debug for SeriesHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeriesHandle")
    }
}

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

    /// Streaming form of [`select`](Queryable::select): calls `visit(index, labels, samples)`
    /// once per series that `select` would return, where `index` increases with the label
    /// order (it may skip numbers). Storages may call `visit` from several threads at once
    /// and in any order, so a series' samples need not all exist at the same time; the same
    /// limits apply as for `select`. Returns the number of samples visited.
    ///
    /// The default implementation calls `select` and visits its result in order.
    fn select_each(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
        visit: &(dyn Fn(usize, &Labels, &[Sample]) + Sync),
    ) -> Result<usize, StorageError> {
        let series = self.select(matchers, hints)?;
        let mut n = 0usize;
        for (i, s) in series.iter().enumerate() {
            n += s.samples.len();
            visit(i, &s.labels, &s.samples);
        }
        Ok(n)
    }

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

    /// Whether every reference this storage returns resolves in
    /// [`append_by_ref`](Appender::append_by_ref) from its batch's commit on, until the
    /// series holds no data any more. `false` (this default): a caller that must append to
    /// a series later without having its labels at hand keeps them itself.
    fn keeps_references(&self) -> bool {
        false
    }

    /// A handle on the committed series `series_ref`, for
    /// [`append_by_handle`](Appender::append_by_handle); `None` when the storage has no
    /// handles (this default) or does not know the reference (yet: series this batch creates
    /// exist from its commit on).
    fn series_handle(&mut self, series_ref: SeriesRef) -> Option<SeriesHandle> {
        let _ = series_ref;
        None
    }

    /// Adds one sample through a handle from [`series_handle`](Appender::series_handle).
    /// Answers [`AppendError::UnknownSeriesRef`] when the series is gone (or the handle is
    /// not this storage's): drop the handle and append with the labels.
    fn append_by_handle(
        &mut self,
        handle: &SeriesHandle,
        t: Timestamp,
        v: f64,
    ) -> Result<SeriesRef, AppendError> {
        let _ = (handle, t, v);
        Err(AppendError::UnknownSeriesRef)
    }

    /// Makes every sample appended so far durable (written to the WAL) and visible.
    fn commit(self: Box<Self>) -> Result<(), StorageError>;

    /// Drops every sample appended so far.
    fn rollback(self: Box<Self>);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn select_each_default_visits_select_in_order() {
        let s = memory::MemStorage::new();
        let mut app = s.appender();
        for (name, k) in [("b", 3), ("a", 2), ("c", 1)] {
            let l = Labels::from_pairs([(METRIC_NAME, name)]);
            for t in 0..k {
                app.append(None, &l, t * 10, t as f64).unwrap();
            }
        }
        app.commit().unwrap();
        let hints = SelectHints::range(0, 15);
        let seen = Mutex::new(Vec::new());
        let n = s
            .select_each(&[], &hints, &|i, l, samples| {
                seen.lock()
                    .unwrap()
                    .push((i, l.to_string(), samples.to_vec()));
            })
            .unwrap();
        let want: Vec<_> = s
            .select(&[], &hints)
            .unwrap()
            .into_iter()
            .enumerate()
            .map(|(i, x)| (i, x.labels.to_string(), x.samples))
            .collect();
        assert_eq!(n, 5);
        assert_eq!(seen.into_inner().unwrap(), want);
    }
}
