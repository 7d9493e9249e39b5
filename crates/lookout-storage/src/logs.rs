//! The log side of storage: what the LogQL engine and the Loki query API read through.
//!
//! A log store holds streams (a canonical [`Labels`] set) of time-ordered [`LogEntry`]s. Readers
//! see it only through [`LogQueryable`]: [`LogQueryable::select_logs`] hands matching entries to a
//! callback one batch at a time (a chunk store calls it once per decoded chunk), so nothing has to
//! be materialised up front, and the callback can stop the scan early. [`MemLogStore`] is the
//! simple in-memory implementation used by tests.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use parking_lot::RwLock;

use crate::matcher::matches_all;
use crate::{Labels, Matcher, StorageError};

/// Nanoseconds since the Unix epoch, as Loki stores log timestamps.
pub type TimestampNs = i64;

/// One log line with its structured metadata (name/value pairs attached at ingest; an empty
/// value is kept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub ts_ns: TimestampNs,
    pub line: String,
    pub structured_metadata: Vec<(String, String)>,
}

impl LogEntry {
    pub fn new(ts_ns: TimestampNs, line: impl Into<String>) -> Self {
        LogEntry {
            ts_ns,
            line: line.into(),
            structured_metadata: Vec::new(),
        }
    }

    /// Bytes counted against a query's byte limit: the line plus metadata names and values.
    pub fn byte_size(&self) -> usize {
        self.line.len()
            + self
                .structured_metadata
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>()
    }
}

/// A stream with (some of) its entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogStream {
    pub labels: Labels,
    pub entries: Vec<LogEntry>,
}

/// Order in which entries are delivered within a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Direction {
    /// Oldest first.
    #[default]
    Forward,
    /// Newest first.
    Backward,
}

/// What a reader wants from [`LogQueryable::select_logs`].
#[derive(Clone, Debug)]
pub struct LogSelectParams<'a> {
    /// Stream matchers; every one must accept the stream's labels.
    pub matchers: &'a [Matcher],
    /// Inclusive lower bound (ns).
    pub start_ns: TimestampNs,
    /// Exclusive upper bound (ns).
    pub end_ns: TimestampNs,
    pub direction: Direction,
    /// Substrings every returned line must contain (the query's plain `|=` filters). Only a
    /// hint: a store may use it to skip chunks that cannot match, and may still deliver lines
    /// lacking them (the engine filters again).
    pub required_substrings: &'a [String],
    /// Refuse (with [`StorageError::TooManySamples`]) once more entries than this would be
    /// delivered.
    pub max_entries: Option<usize>,
    /// Refuse (with [`StorageError::Other`]) once more bytes ([`LogEntry::byte_size`]) than this
    /// would be delivered.
    pub max_bytes: Option<usize>,
}

impl<'a> LogSelectParams<'a> {
    pub fn new(matchers: &'a [Matcher], start_ns: TimestampNs, end_ns: TimestampNs) -> Self {
        LogSelectParams {
            matchers,
            start_ns,
            end_ns,
            direction: Direction::Forward,
            required_substrings: &[],
            max_entries: None,
            max_bytes: None,
        }
    }
}

/// Receives one batch of entries of one stream, in the requested direction. Batches of one
/// stream arrive in order; streams may interleave. Return `ControlFlow::Break(())` to stop the
/// scan early (the store then returns `Ok`).
pub type LogSink<'s> = dyn FnMut(&Labels, &[LogEntry]) -> ControlFlow<()> + 's;

/// Read side of a log store: everything the LogQL engine and the Loki query API need.
pub trait LogQueryable: Send + Sync {
    /// Streams matching all `params.matchers`, restricted to `[start_ns, end_ns)`, delivered to
    /// `sink` batch by batch. Streams with no entry in the range are not delivered.
    fn select_logs(
        &self,
        params: &LogSelectParams<'_>,
        sink: &mut LogSink<'_>,
    ) -> Result<(), StorageError>;

    /// Label sets of the streams matching all `matchers` with entries in `[start_ns, end_ns)`,
    /// sorted.
    fn log_series(
        &self,
        matchers: &[Matcher],
        start_ns: TimestampNs,
        end_ns: TimestampNs,
    ) -> Result<Vec<Labels>, StorageError>;

    /// Sorted, distinct stream label names (all streams when `matchers` is empty).
    fn log_label_names(
        &self,
        matchers: &[Matcher],
        start_ns: TimestampNs,
        end_ns: TimestampNs,
    ) -> Result<Vec<String>, StorageError>;

    /// Sorted, distinct values of stream label `name`.
    fn log_label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        start_ns: TimestampNs,
        end_ns: TimestampNs,
    ) -> Result<Vec<String>, StorageError>;
}

/// In-memory log store for tests. Entries of a stream are kept sorted by timestamp (equal
/// timestamps keep insertion order); it has no WAL, no compression and no retention.
#[derive(Default)]
pub struct MemLogStore {
    streams: RwLock<BTreeMap<Labels, Vec<LogEntry>>>,
}

/// Entries handed to the sink per call, so tests exercise the batching path.
const MEM_BATCH: usize = 1024;

impl MemLogStore {
    pub fn new() -> Self {
        MemLogStore::default()
    }

    /// Adds one entry to the stream `labels` (created on first use).
    pub fn push(&self, labels: &Labels, entry: LogEntry) {
        let mut streams = self.streams.write();
        let entries = streams.entry(labels.clone()).or_default();
        let at = entries.partition_point(|e| e.ts_ns <= entry.ts_ns);
        entries.insert(at, entry);
    }

    /// Adds many entries to one stream.
    pub fn push_all(&self, labels: &Labels, entries: impl IntoIterator<Item = LogEntry>) {
        let mut streams = self.streams.write();
        let stream = streams.entry(labels.clone()).or_default();
        stream.extend(entries);
        stream.sort_by_key(|e| e.ts_ns);
    }

    /// Drops all data.
    pub fn clear(&self) {
        self.streams.write().clear();
    }

    pub fn stream_count(&self) -> usize {
        self.streams.read().len()
    }

    fn range(entries: &[LogEntry], start: TimestampNs, end: TimestampNs) -> &[LogEntry] {
        let lo = entries.partition_point(|e| e.ts_ns < start);
        let hi = entries.partition_point(|e| e.ts_ns < end);
        if lo >= hi { &[] } else { &entries[lo..hi] }
    }

    fn matching_labels(
        &self,
        matchers: &[Matcher],
        start: TimestampNs,
        end: TimestampNs,
    ) -> Vec<Labels> {
        self.streams
            .read()
            .iter()
            .filter(|(l, e)| matches_all(matchers, l) && !Self::range(e, start, end).is_empty())
            .map(|(l, _)| l.clone())
            .collect()
    }
}

impl LogQueryable for MemLogStore {
    fn select_logs(
        &self,
        params: &LogSelectParams<'_>,
        sink: &mut LogSink<'_>,
    ) -> Result<(), StorageError> {
        let streams = self.streams.read();
        let mut entries_seen = 0usize;
        let mut bytes_seen = 0usize;
        for (labels, entries) in streams.iter() {
            if !matches_all(params.matchers, labels) {
                continue;
            }
            let slice = Self::range(entries, params.start_ns, params.end_ns);
            if slice.is_empty() {
                continue;
            }
            let mut batch: Vec<LogEntry> = Vec::with_capacity(slice.len().min(MEM_BATCH));
            let mut flush = |batch: &mut Vec<LogEntry>| -> Result<ControlFlow<()>, StorageError> {
                entries_seen += batch.len();
                if let Some(limit) = params.max_entries
                    && entries_seen > limit
                {
                    return Err(StorageError::TooManySamples { limit });
                }
                bytes_seen += batch.iter().map(LogEntry::byte_size).sum::<usize>();
                if let Some(limit) = params.max_bytes
                    && bytes_seen > limit
                {
                    return Err(StorageError::Other(format!(
                        "query would read more than {limit} bytes of log lines"
                    )));
                }
                let flow = sink(labels, batch);
                batch.clear();
                Ok(flow)
            };
            let keep = |e: &LogEntry| {
                params
                    .required_substrings
                    .iter()
                    .all(|s| e.line.contains(s.as_str()))
            };
            let mut push = |e: &LogEntry,
                            batch: &mut Vec<LogEntry>|
             -> Result<ControlFlow<()>, StorageError> {
                if keep(e) {
                    batch.push(e.clone());
                    if batch.len() >= MEM_BATCH {
                        return flush(batch);
                    }
                }
                Ok(ControlFlow::Continue(()))
            };
            let mut flow = ControlFlow::Continue(());
            match params.direction {
                Direction::Forward => {
                    for e in slice {
                        flow = push(e, &mut batch)?;
                        if flow.is_break() {
                            break;
                        }
                    }
                }
                Direction::Backward => {
                    for e in slice.iter().rev() {
                        flow = push(e, &mut batch)?;
                        if flow.is_break() {
                            break;
                        }
                    }
                }
            }
            if flow.is_break() {
                return Ok(());
            }
            if !batch.is_empty() && flush(&mut batch)?.is_break() {
                return Ok(());
            }
        }
        Ok(())
    }

    fn log_series(
        &self,
        matchers: &[Matcher],
        start_ns: TimestampNs,
        end_ns: TimestampNs,
    ) -> Result<Vec<Labels>, StorageError> {
        Ok(self.matching_labels(matchers, start_ns, end_ns))
    }

    fn log_label_names(
        &self,
        matchers: &[Matcher],
        start_ns: TimestampNs,
        end_ns: TimestampNs,
    ) -> Result<Vec<String>, StorageError> {
        let mut names = BTreeSet::new();
        for l in self.matching_labels(matchers, start_ns, end_ns) {
            names.extend(l.iter().map(|l| l.name.clone()));
        }
        Ok(names.into_iter().collect())
    }

    fn log_label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        start_ns: TimestampNs,
        end_ns: TimestampNs,
    ) -> Result<Vec<String>, StorageError> {
        let mut values = BTreeSet::new();
        for l in self.matching_labels(matchers, start_ns, end_ns) {
            if let Some(v) = l.get(name) {
                values.insert(v.to_string());
            }
        }
        Ok(values.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> MemLogStore {
        let s = MemLogStore::new();
        let a = Labels::from_pairs([("app", "a")]);
        let b = Labels::from_pairs([("app", "b"), ("env", "prod")]);
        for i in 0..3000 {
            s.push(
                &a,
                LogEntry::new(i * 10, format!("line {i} needle={}", i % 2)),
            );
        }
        s.push(&b, LogEntry::new(5, "b0"));
        s.push(&b, LogEntry::new(1, "b-first"));
        s
    }

    fn collect(
        s: &MemLogStore,
        p: &LogSelectParams<'_>,
    ) -> Result<Vec<(Labels, LogEntry)>, StorageError> {
        let mut out = Vec::new();
        s.select_logs(p, &mut |l, es| {
            out.extend(es.iter().map(|e| (l.clone(), e.clone())));
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    #[test]
    fn range_is_start_inclusive_end_exclusive_and_sorted() {
        let s = store();
        let m = [Matcher::equal("app", "b")];
        let got = collect(&s, &LogSelectParams::new(&m, 1, 5)).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.line, "b-first");
        let mut p = LogSelectParams::new(&m, 0, 100);
        p.direction = Direction::Backward;
        let got = collect(&s, &p).unwrap();
        assert_eq!(
            got.iter().map(|(_, e)| e.line.as_str()).collect::<Vec<_>>(),
            ["b0", "b-first"]
        );
    }

    #[test]
    fn batches_hints_and_limits() {
        let s = store();
        let m = [Matcher::equal("app", "a")];
        let mut calls = 0;
        s.select_logs(&LogSelectParams::new(&m, 0, i64::MAX), &mut |_, _| {
            calls += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(calls, 3);
        let req = ["needle=1".to_string()];
        let mut p = LogSelectParams::new(&m, 0, i64::MAX);
        p.required_substrings = &req;
        assert_eq!(collect(&s, &p).unwrap().len(), 1500);
        p.max_entries = Some(100);
        assert!(matches!(
            collect(&s, &p),
            Err(StorageError::TooManySamples { limit: 100 })
        ));
        let mut stopped = 0;
        s.select_logs(&LogSelectParams::new(&m, 0, i64::MAX), &mut |_, es| {
            stopped += es.len();
            ControlFlow::Break(())
        })
        .unwrap();
        assert_eq!(stopped, MEM_BATCH);
    }

    #[test]
    fn metadata_queries() {
        let s = store();
        assert_eq!(s.log_label_names(&[], 0, 10).unwrap(), ["app", "env"]);
        assert_eq!(s.log_label_values("app", &[], 0, 10).unwrap(), ["a", "b"]);
        assert_eq!(
            s.log_series(&[Matcher::equal("env", "prod")], 0, 10)
                .unwrap()
                .len(),
            1
        );
        assert!(s.log_series(&[], 100_000, 200_000).unwrap().is_empty());
    }
}
