//! The store proper: heads, WAL, chunk files, index, queries and retention.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lookout_storage::logs::{
    Direction, LogEntry, LogQueryable, LogSelectParams, LogSink, TimestampNs,
};
use lookout_storage::matcher::matches_all;
use lookout_storage::{Labels, Matcher, StorageError};
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;
use tracing::{debug, info, warn};

use crate::codec::{Reader, frame, put_ivarint, put_uvarint, unframe};
use crate::filter::{Bloom, FilterBuilder, MIN_NEEDLE};
use crate::metrics::{DiscardLabel, StoreMetrics, TenantLabel};
use crate::wal::{Wal, decode_labels, encode_labels, encode_record, sync_dir};
use crate::{LogStoreError, chunk};

/// A retention period for the streams matching a selector (Loki's `retention_stream`).
#[derive(Clone, Debug)]
pub struct RetentionRule {
    pub matchers: Vec<Matcher>,
    pub period: Duration,
}

#[derive(Clone, Debug)]
pub struct LogStoreOptions {
    /// Default retention (7 days).
    pub retention: Duration,
    /// Per-selector retention; the first matching rule wins over `retention`.
    pub retention_streams: Vec<RetentionRule>,
    /// Uncompressed head size at which a chunk is cut.
    pub chunk_target_bytes: usize,
    /// A head older than this (since its first entry arrived) is cut.
    pub max_chunk_age: Duration,
    /// A head that received nothing for this long is cut.
    pub chunk_idle: Duration,
    /// Entries older than the stream's newest minus this are refused (Loki: 1h).
    pub out_of_order_window: Duration,
    /// Entries further than this in the future are refused (Loki `creation_grace_period`: 10m).
    pub creation_grace: Duration,
    /// Longest line accepted (Loki `max_line_size`: 256KB); longer ones are refused, or cut
    /// to this size when `truncate_long_lines`.
    pub max_line_bytes: usize,
    pub truncate_long_lines: bool,
    /// Most labels per stream (Loki `max_label_names_per_series`: 15).
    pub max_labels: usize,
    pub max_label_name_len: usize,
    pub max_label_value_len: usize,
    pub wal_segment_bytes: u64,
    /// Data files roll at this size.
    pub data_file_bytes: u64,
    /// zstd level for chunk columns.
    pub zstd_level: i32,
    /// Threads used to decode chunks in a query.
    pub scan_threads: usize,
}

impl Default for LogStoreOptions {
    fn default() -> Self {
        LogStoreOptions {
            retention: Duration::from_secs(7 * 86_400),
            retention_streams: Vec::new(),
            chunk_target_bytes: 4 << 20,
            max_chunk_age: Duration::from_secs(3600),
            chunk_idle: Duration::from_secs(30 * 60),
            out_of_order_window: Duration::from_secs(3600),
            creation_grace: Duration::from_secs(600),
            max_line_bytes: 256 * 1024,
            truncate_long_lines: false,
            max_labels: 15,
            max_label_name_len: 1024,
            max_label_value_len: 2048,
            wal_segment_bytes: 128 << 20,
            data_file_bytes: 256 << 20,
            zstd_level: 3,
            scan_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// Entries of one stream in a push.
#[derive(Clone, Debug)]
pub struct PushStream {
    pub labels: Labels,
    pub entries: Vec<LogEntry>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RejectReason {
    LineTooLong { size: usize, limit: usize },
    TooOld { oldest_ns: i64 },
    TooNew,
    TooFarBehind { oldest_ns: i64 },
}

impl RejectReason {
    /// Loki's `reason` label of `loki_discarded_samples_total`.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            RejectReason::LineTooLong { .. } => "line_too_long",
            RejectReason::TooOld { .. } => "greater_than_max_sample_age",
            RejectReason::TooNew => "too_far_in_future",
            RejectReason::TooFarBehind { .. } => "too_far_behind",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    pub labels: Labels,
    pub ts_ns: i64,
    pub reason: RejectReason,
}

impl std::fmt::Display for Rejection {
    /// Loki's wording of per-entry push errors.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stream = labels_text(&self.labels);
        let ts = format_ns(self.ts_ns);
        match &self.reason {
            RejectReason::LineTooLong { size, limit } => write!(
                f,
                "Max entry size '{limit}' bytes exceeded for stream '{stream}' while adding an entry with length '{size}' bytes"
            ),
            RejectReason::TooOld { oldest_ns } => write!(
                f,
                "entry for stream '{stream}' has timestamp too old: {ts}, oldest acceptable timestamp is: {}",
                format_ns(*oldest_ns)
            ),
            RejectReason::TooNew => {
                write!(f, "entry for stream '{stream}' has timestamp too new: {ts}")
            }
            RejectReason::TooFarBehind { oldest_ns } => write!(
                f,
                "entry too far behind, entry timestamp is: {ts}, oldest acceptable timestamp is: {}",
                format_ns(*oldest_ns)
            ),
        }
    }
}

/// RFC 3339 with nanoseconds, UTC.
pub(crate) fn format_ns(ns: i64) -> String {
    chunk::format_rfc3339_nanos(ns)
}

/// `{a="1", b="2"}`.
pub fn labels_text(l: &Labels) -> String {
    let mut s = String::from("{");
    for (i, lb) in l.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&lb.name);
        s.push('=');
        let _ = lookout_storage::labels::write_quoted(&mut s, &lb.value);
    }
    s.push('}');
    s
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PushOutcome {
    pub accepted: usize,
    pub accepted_bytes: usize,
    pub rejected: Vec<Rejection>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RetentionOutcome {
    pub chunks_deleted: usize,
    pub files_deleted: usize,
    pub head_entries_dropped: usize,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DiskUsage {
    pub chunk_bytes: u64,
    pub index_bytes: u64,
    pub wal_bytes: u64,
}

/// What `/index/stats` reports for a selector and range.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoreStats {
    pub streams: u64,
    pub chunks: u64,
    pub entries: u64,
    pub bytes: u64,
}

/// What one query read from the store (Loki's `querier.store` statistics). Counters are
/// atomics so parallel chunk decoders can add to them; read them with [`QueryStats::snapshot`].
#[derive(Debug, Default)]
pub struct QueryStats {
    /// Chunks of the matching streams overlapping the query's time range.
    pub chunks_ref: AtomicU64,
    /// Chunks read from disk and decoded.
    pub chunks_downloaded: AtomicU64,
    /// Chunks skipped because their substring filter rules out a required `|=` needle.
    pub chunks_skipped_by_filter: AtomicU64,
    /// Bytes read from chunk files (compressed).
    pub compressed_bytes: AtomicU64,
    /// Bytes (lines + structured metadata) and lines of the decoded chunks.
    pub decompressed_bytes: AtomicU64,
    pub decompressed_lines: AtomicU64,
    /// Bytes and lines read from the in-memory heads.
    pub head_bytes: AtomicU64,
    pub head_lines: AtomicU64,
    /// Lines handed to the reader after the store's time and substring filtering.
    pub post_filter_lines: AtomicU64,
}

/// Plain copy of [`QueryStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryStatsSnapshot {
    pub chunks_ref: u64,
    pub chunks_downloaded: u64,
    pub chunks_skipped_by_filter: u64,
    pub compressed_bytes: u64,
    pub decompressed_bytes: u64,
    pub decompressed_lines: u64,
    pub head_bytes: u64,
    pub head_lines: u64,
    pub post_filter_lines: u64,
}

impl QueryStats {
    pub fn snapshot(&self) -> QueryStatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        QueryStatsSnapshot {
            chunks_ref: g(&self.chunks_ref),
            chunks_downloaded: g(&self.chunks_downloaded),
            chunks_skipped_by_filter: g(&self.chunks_skipped_by_filter),
            compressed_bytes: g(&self.compressed_bytes),
            decompressed_bytes: g(&self.decompressed_bytes),
            decompressed_lines: g(&self.decompressed_lines),
            head_bytes: g(&self.head_bytes),
            head_lines: g(&self.head_lines),
            post_filter_lines: g(&self.post_filter_lines),
        }
    }
}

fn add(a: &AtomicU64, v: u64) {
    a.fetch_add(v, Ordering::Relaxed);
}

/// An immutable chunk on disk.
#[derive(Debug)]
struct ChunkMeta {
    file: u32,
    offset: u64,
    len: u32,
    crc: u32,
    min_ts: i64,
    max_ts: i64,
    entries: u32,
    raw_bytes: u64,
    wal_upto: u64,
    filter: Bloom,
}

struct Frozen {
    entries: Arc<Vec<LogEntry>>,
    min_seq: u64,
}

struct StreamState {
    head: Vec<LogEntry>,
    head_bytes: usize,
    head_sorted: bool,
    head_min_seq: u64,
    head_max_seq: u64,
    head_started: Instant,
    head_last: Instant,
    newest_ts: i64,
    frozen: Vec<Frozen>,
    /// Sorted by `min_ts`.
    chunks: Vec<Arc<ChunkMeta>>,
    flushed_upto: u64,
}

impl StreamState {
    fn new() -> Self {
        let now = Instant::now();
        StreamState {
            head: Vec::new(),
            head_bytes: 0,
            head_sorted: true,
            head_min_seq: 0,
            head_max_seq: 0,
            head_started: now,
            head_last: now,
            newest_ts: i64::MIN,
            frozen: Vec::new(),
            chunks: Vec::new(),
            flushed_upto: 0,
        }
    }

    fn append(&mut self, e: LogEntry, seq: u64) {
        if self.head.is_empty() {
            self.head_started = Instant::now();
            self.head_min_seq = seq;
        }
        if self.head.last().is_some_and(|l| l.ts_ns > e.ts_ns) {
            self.head_sorted = false;
        }
        self.newest_ts = self.newest_ts.max(e.ts_ns);
        self.head_bytes += e.byte_size() + 16;
        self.head_max_seq = seq;
        self.head_last = Instant::now();
        self.head.push(e);
    }

    fn sort_head(&mut self) {
        if !self.head_sorted {
            self.head.sort_by_key(|e| e.ts_ns);
            self.head_sorted = true;
        }
    }

    fn min_seq(&self) -> Option<u64> {
        let h = (!self.head.is_empty()).then_some(self.head_min_seq);
        h.into_iter()
            .chain(self.frozen.iter().map(|f| f.min_seq))
            .min()
    }

    fn has_data_in(&self, start: i64, end: i64) -> bool {
        self.chunks
            .iter()
            .any(|c| c.min_ts < end && c.max_ts >= start)
            || self.head.iter().any(|e| e.ts_ns >= start && e.ts_ns < end)
            || self
                .frozen
                .iter()
                .any(|f| f.entries.iter().any(|e| e.ts_ns >= start && e.ts_ns < end))
    }

    fn is_empty(&self) -> bool {
        self.head.is_empty() && self.frozen.is_empty() && self.chunks.is_empty()
    }
}

struct Stream {
    labels: Labels,
    state: Mutex<StreamState>,
}

/// The chunk data file being appended to, and the index log.
struct ChunkWriter {
    file_id: u32,
    file: File,
    size: u64,
    index: File,
    index_size: u64,
}

pub struct LogStore {
    dir: PathBuf,
    tenant: String,
    opts: LogStoreOptions,
    wal: Mutex<Wal>,
    streams: RwLock<FxHashMap<Labels, Arc<Stream>>>,
    writer: Mutex<ChunkWriter>,
    /// Open data files for reading, by id.
    files: RwLock<FxHashMap<u32, Arc<File>>>,
    metrics: Arc<StoreMetrics>,
    chunks_flushed: AtomicU64,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn data_path(dir: &Path, id: u32) -> PathBuf {
    dir.join("chunks").join(format!("{id:08}.dat"))
}

fn encode_index_record(labels: &Labels, m: &ChunkMeta) -> Vec<u8> {
    let mut p = Vec::with_capacity(64 + m.filter.byte_len());
    p.push(2u8);
    encode_labels(&mut p, labels);
    p.extend_from_slice(&m.file.to_le_bytes());
    p.extend_from_slice(&m.offset.to_le_bytes());
    p.extend_from_slice(&m.len.to_le_bytes());
    p.extend_from_slice(&m.crc.to_le_bytes());
    put_ivarint(&mut p, m.min_ts);
    put_ivarint(&mut p, m.max_ts);
    put_uvarint(&mut p, u64::from(m.entries));
    put_uvarint(&mut p, m.raw_bytes);
    put_uvarint(&mut p, m.wal_upto);
    m.filter.encode(&mut p);
    frame(&p)
}

fn decode_index_record(p: &[u8]) -> Result<(Labels, ChunkMeta), LogStoreError> {
    let mut r = Reader::new(p);
    // Type 1: filters without their probe count; type 2: with it.
    let version = r.u8()?;
    if version != 1 && version != 2 {
        return Err(LogStoreError::Corrupt("unknown index record type".into()));
    }
    let labels = decode_labels(&mut r)?;
    let file = r.u32_le()?;
    let offset = r.u64_le()?;
    let len = r.u32_le()?;
    let crc = r.u32_le()?;
    let min_ts = r.ivarint()?;
    let max_ts = r.ivarint()?;
    let entries = r.uvarint()? as u32;
    let raw_bytes = r.uvarint()?;
    let wal_upto = r.uvarint()?;
    let filter = if version == 1 {
        Bloom::decode_bits(&mut r, crate::filter::HASHES_V1)?
    } else {
        Bloom::decode(&mut r)?
    };
    Ok((
        labels,
        ChunkMeta {
            file,
            offset,
            len,
            crc,
            min_ts,
            max_ts,
            entries,
            raw_bytes,
            wal_upto,
            filter,
        },
    ))
}

/// One unit of query work: a run of a stream's data whose parts overlap in time.
enum Part {
    Chunk(Arc<ChunkMeta>),
    Mem(Vec<LogEntry>),
}

struct Group {
    stream: usize,
    parts: Vec<Part>,
}

impl LogStore {
    /// Opens (or creates) a store in `dir`, replaying its WAL.
    pub fn open(
        dir: &Path,
        opts: LogStoreOptions,
        tenant: &str,
        metrics: Arc<StoreMetrics>,
    ) -> Result<LogStore, LogStoreError> {
        fs::create_dir_all(dir.join("chunks"))?;
        let index_path = dir.join("index.log");
        let mut streams: FxHashMap<Labels, Arc<Stream>> = FxHashMap::default();
        let mut max_file = 0u32;
        let mut max_wal = 0u64;
        let mut index_valid = 0u64;
        if index_path.exists() {
            let buf = fs::read(&index_path)?;
            let (recs, valid) = unframe(&buf);
            index_valid = valid as u64;
            if valid < buf.len() {
                warn!(
                    dropped = buf.len() - valid,
                    "chunk index has a torn tail; truncating"
                );
            }
            let mut present: FxHashMap<u32, bool> = FxHashMap::default();
            for rec in recs {
                let (labels, meta) = decode_index_record(rec)?;
                let exists = *present
                    .entry(meta.file)
                    .or_insert_with(|| data_path(dir, meta.file).exists());
                if !exists {
                    continue;
                }
                max_file = max_file.max(meta.file);
                max_wal = max_wal.max(meta.wal_upto);
                let s = streams.entry(labels.clone()).or_insert_with(|| {
                    Arc::new(Stream {
                        labels,
                        state: Mutex::new(StreamState::new()),
                    })
                });
                let mut st = s.state.lock();
                st.flushed_upto = st.flushed_upto.max(meta.wal_upto);
                st.chunks.push(Arc::new(meta));
            }
        }
        for s in streams.values() {
            s.state.lock().chunks.sort_by_key(|c| c.min_ts);
        }
        // Data files: reopen existing ones for reading; append to a fresh one.
        let mut files = FxHashMap::default();
        for e in fs::read_dir(dir.join("chunks"))? {
            let p = e?.path();
            if let Some(id) = p
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u32>().ok())
            {
                max_file = max_file.max(id);
                files.insert(id, Arc::new(File::open(&p)?));
            }
        }
        let file_id = max_file + 1;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_path(dir, file_id))?;
        files.insert(file_id, Arc::new(File::open(data_path(dir, file_id))?));
        let index = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&index_path)?;
        index.set_len(index_valid)?;
        let mut index = OpenOptions::new().append(true).open(&index_path)?;
        index.flush()?;

        let now = now_ns();
        let cutoff_for = |labels: &Labels| {
            let period = opts
                .retention_streams
                .iter()
                .find(|r| matches_all(&r.matchers, labels))
                .map_or(opts.retention, |r| r.period);
            now.saturating_sub(period.as_nanos().min(i64::MAX as u128) as i64)
        };
        let mut replayed = 0usize;
        let wal = Wal::open(
            &dir.join("wal"),
            opts.wal_segment_bytes,
            |rec| {
                for (labels, entries) in rec.streams {
                    let s = streams.entry(labels.clone()).or_insert_with(|| {
                        Arc::new(Stream {
                            labels,
                            state: Mutex::new(StreamState::new()),
                        })
                    });
                    let mut st = s.state.lock();
                    if rec.seq <= st.flushed_upto {
                        continue;
                    }
                    let retention_cutoff = cutoff_for(&s.labels);
                    for e in entries {
                        if e.ts_ns >= retention_cutoff {
                            replayed += 1;
                            st.append(e, rec.seq);
                        }
                    }
                }
            },
            max_wal + 1,
        )?;
        streams.retain(|_, s| !s.state.lock().is_empty());
        metrics.streams.inc_by(streams.len() as i64);
        info!(dir = %dir.display(), tenant, streams = streams.len(), replayed, "log store open");
        let store = LogStore {
            dir: dir.to_path_buf(),
            tenant: tenant.to_string(),
            opts,
            wal: Mutex::new(wal),
            streams: RwLock::new(streams),
            writer: Mutex::new(ChunkWriter {
                file_id,
                file,
                size: 0,
                index_size: index_valid,
                index,
            }),
            files: RwLock::new(files),
            metrics,
            chunks_flushed: AtomicU64::new(0),
        };
        // Heads replayed beyond the target size are cut now.
        let big: Vec<Arc<Stream>> = store
            .streams
            .read()
            .values()
            .filter(|s| s.state.lock().head_bytes >= store.opts.chunk_target_bytes)
            .cloned()
            .collect();
        for s in big {
            store.cut(&s)?;
        }
        Ok(store)
    }

    pub fn options(&self) -> &LogStoreOptions {
        &self.opts
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Checks a stream's label set against the limits; the message is Loki's.
    pub fn validate_labels(&self, labels: &Labels) -> Result<(), String> {
        let text = labels_text(labels);
        if labels.is_empty() {
            return Err("error at least one label pair is required per stream".into());
        }
        if labels.len() > self.opts.max_labels {
            return Err(format!(
                "stream '{text}' has {} label names; limit {}",
                labels.len(),
                self.opts.max_labels
            ));
        }
        for l in labels.iter() {
            let valid = !l.name.is_empty()
                && l.name.bytes().enumerate().all(|(i, c)| {
                    c == b'_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
                });
            if !valid {
                return Err(format!(
                    "error parsing labels '{text}': invalid label name {:?}",
                    l.name
                ));
            }
            if l.name.len() > self.opts.max_label_name_len {
                return Err(format!(
                    "stream '{text}' has label name too long: '{}'",
                    l.name
                ));
            }
            if l.value.len() > self.opts.max_label_value_len {
                return Err(format!(
                    "stream '{text}' has label value too long: '{}'",
                    l.value
                ));
            }
        }
        Ok(())
    }

    fn stream(&self, labels: &Labels) -> Arc<Stream> {
        if let Some(s) = self.streams.read().get(labels) {
            return s.clone();
        }
        let mut w = self.streams.write();
        w.entry(labels.clone())
            .or_insert_with(|| {
                self.metrics.streams.inc();
                Arc::new(Stream {
                    labels: labels.clone(),
                    state: Mutex::new(StreamState::new()),
                })
            })
            .clone()
    }

    fn cutoff_for(&self, labels: &Labels, now: i64) -> i64 {
        let period = self
            .opts
            .retention_streams
            .iter()
            .find(|r| matches_all(&r.matchers, labels))
            .map_or(self.opts.retention, |r| r.period);
        now.saturating_sub(period.as_nanos().min(i64::MAX as u128) as i64)
    }

    /// Validates and stores entries. Accepted entries are in the WAL when this returns; the
    /// refused ones are listed with their reason (the caller answers 400 with them, as Loki).
    pub fn push(&self, streams: Vec<PushStream>) -> Result<PushOutcome, LogStoreError> {
        let now = now_ns();
        let newest_ok = now.saturating_add(self.opts.creation_grace.as_nanos() as i64);
        let mut outcome = PushOutcome::default();
        let mut accepted: Vec<(Arc<Stream>, Vec<LogEntry>)> = Vec::with_capacity(streams.len());
        let window = self.opts.out_of_order_window.as_nanos() as i64;
        let tenant = TenantLabel {
            tenant: self.tenant.clone(),
        };
        let mut wal = self.wal.lock();
        let seq = wal.next_seq;
        for ps in streams {
            let stream = self.stream(&ps.labels);
            let cutoff = self.cutoff_for(&ps.labels, now);
            let mut keep = Vec::with_capacity(ps.entries.len());
            {
                let st = stream.state.lock();
                let mut newest = st.newest_ts;
                for mut e in ps.entries {
                    let reason = if e.line.len() > self.opts.max_line_bytes
                        && !self.opts.truncate_long_lines
                    {
                        Some(RejectReason::LineTooLong {
                            size: e.line.len(),
                            limit: self.opts.max_line_bytes,
                        })
                    } else if e.ts_ns < cutoff {
                        Some(RejectReason::TooOld { oldest_ns: cutoff })
                    } else if e.ts_ns > newest_ok {
                        Some(RejectReason::TooNew)
                    } else if newest != i64::MIN && e.ts_ns < newest.saturating_sub(window) {
                        Some(RejectReason::TooFarBehind {
                            oldest_ns: newest.saturating_sub(window),
                        })
                    } else {
                        None
                    };
                    match reason {
                        Some(reason) => {
                            self.metrics
                                .discarded_lines
                                .get_or_create(&DiscardLabel {
                                    tenant: self.tenant.clone(),
                                    reason: reason.metric_reason().into(),
                                })
                                .inc();
                            outcome.rejected.push(Rejection {
                                labels: ps.labels.clone(),
                                ts_ns: e.ts_ns,
                                reason,
                            });
                        }
                        None => {
                            if e.line.len() > self.opts.max_line_bytes {
                                let mut cut = self.opts.max_line_bytes;
                                while !e.line.is_char_boundary(cut) {
                                    cut -= 1;
                                }
                                e.line.truncate(cut);
                            }
                            newest = newest.max(e.ts_ns);
                            outcome.accepted += 1;
                            outcome.accepted_bytes += e.line.len();
                            keep.push(e);
                        }
                    }
                }
            }
            if !keep.is_empty() {
                accepted.push((stream, keep));
            }
        }
        if accepted.is_empty() {
            return Ok(outcome);
        }
        let refs: Vec<(&Labels, &[LogEntry])> = accepted
            .iter()
            .map(|(s, e)| (&s.labels, e.as_slice()))
            .collect();
        let rec = encode_record(seq, &refs);
        wal.append(&rec)?;
        let mut to_cut = Vec::new();
        for (stream, entries) in accepted {
            let mut st = stream.state.lock();
            for e in entries {
                st.append(e, seq);
            }
            if st.head_bytes >= self.opts.chunk_target_bytes {
                to_cut.push(stream.clone());
            }
        }
        drop(wal);
        self.metrics
            .lines_received
            .get_or_create(&tenant)
            .inc_by(outcome.accepted as u64);
        self.metrics
            .bytes_received
            .get_or_create(&tenant)
            .inc_by(outcome.accepted_bytes as u64);
        for s in to_cut {
            self.cut(&s)?;
        }
        Ok(outcome)
    }

    /// Turns a stream's head into a chunk on disk.
    fn cut(&self, stream: &Stream) -> Result<(), LogStoreError> {
        let (entries, wal_upto) = {
            let mut st = stream.state.lock();
            if st.head.is_empty() {
                return Ok(());
            }
            st.sort_head();
            let entries = Arc::new(std::mem::take(&mut st.head));
            let min_seq = st.head_min_seq;
            st.frozen.push(Frozen {
                entries: entries.clone(),
                min_seq,
            });
            st.head_bytes = 0;
            (entries, st.head_max_seq)
        };
        let data = chunk::encode(&entries, self.opts.zstd_level);
        let mut fb = FilterBuilder::default();
        for e in entries.iter() {
            fb.add_line(&e.line);
        }
        let filter = fb.build();
        let raw_bytes = entries.iter().map(|e| e.line.len() as u64).sum();
        let min_ts = entries.first().map_or(0, |e| e.ts_ns);
        let max_ts = entries.last().map_or(0, |e| e.ts_ns);
        let crc = crc32c::crc32c(&data);
        let meta = {
            let mut w = self.writer.lock();
            if w.size > 0 && w.size + data.len() as u64 > self.opts.data_file_bytes {
                w.file.sync_data()?;
                let id = w.file_id + 1;
                let path = data_path(&self.dir, id);
                w.file = OpenOptions::new().create(true).append(true).open(&path)?;
                self.files.write().insert(id, Arc::new(File::open(&path)?));
                w.file_id = id;
                w.size = 0;
                sync_dir(&self.dir.join("chunks"));
            }
            let offset = w.size;
            w.file.write_all(&data)?;
            w.file.sync_data()?;
            w.size += data.len() as u64;
            let meta = ChunkMeta {
                file: w.file_id,
                offset,
                len: data.len() as u32,
                crc,
                min_ts,
                max_ts,
                entries: entries.len() as u32,
                raw_bytes,
                wal_upto,
                filter,
            };
            let rec = encode_index_record(&stream.labels, &meta);
            w.index.write_all(&rec)?;
            w.index.sync_data()?;
            w.index_size += rec.len() as u64;
            meta
        };
        self.metrics.chunks_flushed.inc();
        self.metrics.chunk_bytes_written.inc_by(data.len() as u64);
        self.chunks_flushed.fetch_add(1, Ordering::Relaxed);
        {
            let mut st = stream.state.lock();
            let at = st.chunks.partition_point(|c| c.min_ts <= meta.min_ts);
            st.chunks.insert(at, Arc::new(meta));
            st.flushed_upto = st.flushed_upto.max(wal_upto);
            st.frozen.retain(|f| !Arc::ptr_eq(&f.entries, &entries));
        }
        debug!(entries = entries.len(), bytes = data.len(), "chunk cut");
        Ok(())
    }

    fn all_streams(&self) -> Vec<Arc<Stream>> {
        self.streams.read().values().cloned().collect()
    }

    /// Deletes WAL segments whose entries are all in chunks.
    fn truncate_wal(&self) -> Result<(), LogStoreError> {
        let mut wal = self.wal.lock();
        let keep_from = self
            .all_streams()
            .iter()
            .filter_map(|s| s.state.lock().min_seq())
            .min();
        let keep_from = match keep_from {
            Some(k) => k,
            None => {
                // Everything is in chunks: start a fresh segment so the old ones can go.
                wal.roll_if_used()?;
                wal.next_seq
            }
        };
        let removed = wal.truncate_before(keep_from)?;
        if removed > 0 {
            debug!(removed, "WAL segments deleted");
        }
        Ok(())
    }

    /// Housekeeping: cuts old or idle heads, syncs the WAL to disk and deletes WAL segments no
    /// longer needed. Call every few seconds.
    pub fn tick(&self) -> Result<(), LogStoreError> {
        self.wal.lock().sync()?;
        for s in self.all_streams() {
            let due = {
                let st = s.state.lock();
                !st.head.is_empty()
                    && (st.head_started.elapsed() >= self.opts.max_chunk_age
                        || st.head_last.elapsed() >= self.opts.chunk_idle)
            };
            if due {
                self.cut(&s)?;
            }
        }
        self.truncate_wal()
    }

    /// Cuts every head into a chunk (shutdown, benchmarks, tests) and trims the WAL.
    pub fn flush(&self) -> Result<(), LogStoreError> {
        self.wal.lock().sync()?;
        for s in self.all_streams() {
            self.cut(&s)?;
        }
        self.truncate_wal()
    }

    /// Drops data older than the retention (per stream), deletes data files without live
    /// chunks and rewrites the index when anything was dropped.
    pub fn enforce_retention(&self) -> Result<RetentionOutcome, LogStoreError> {
        self.enforce_retention_at(now_ns())
    }

    pub fn enforce_retention_at(&self, now: i64) -> Result<RetentionOutcome, LogStoreError> {
        let mut out = RetentionOutcome::default();
        for s in self.all_streams() {
            let cutoff = self.cutoff_for(&s.labels, now);
            let mut st = s.state.lock();
            let before = st.chunks.len();
            st.chunks.retain(|c| c.max_ts >= cutoff);
            out.chunks_deleted += before - st.chunks.len();
            let hb = st.head.len();
            st.head.retain(|e| e.ts_ns >= cutoff);
            out.head_entries_dropped += hb - st.head.len();
            if st.head.is_empty() {
                st.head_bytes = 0;
            }
        }
        if out.chunks_deleted == 0 {
            return Ok(out);
        }
        self.metrics
            .retention_deleted_chunks
            .inc_by(out.chunks_deleted as u64);
        let mut w = self.writer.lock();
        // Rewrite the index from the live chunks.
        let mut live_files = BTreeSet::new();
        let tmp = self.dir.join("index.log.tmp");
        let mut buf = Vec::new();
        let mut streams = self.streams.write();
        streams.retain(|_, s| {
            let st = s.state.lock();
            for c in &st.chunks {
                live_files.insert(c.file);
                buf.extend(encode_index_record(&s.labels, c));
            }
            let keep = !st.is_empty();
            if !keep {
                self.metrics.streams.dec();
            }
            keep
        });
        drop(streams);
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        let index_path = self.dir.join("index.log");
        fs::rename(&tmp, &index_path)?;
        sync_dir(&self.dir);
        w.index = OpenOptions::new().append(true).open(&index_path)?;
        w.index_size = buf.len() as u64;
        let active = w.file_id;
        let mut files = self.files.write();
        let dead: Vec<u32> = files
            .keys()
            .copied()
            .filter(|id| *id != active && !live_files.contains(id))
            .collect();
        for id in dead {
            files.remove(&id);
            match fs::remove_file(data_path(&self.dir, id)) {
                Ok(()) => out.files_deleted += 1,
                Err(e) => warn!(file = id, error = %e, "cannot delete expired chunk file"),
            }
        }
        drop(files);
        sync_dir(&self.dir.join("chunks"));
        info!(tenant = %self.tenant, ?out, "log retention enforced");
        Ok(out)
    }

    /// Bytes on disk: chunk data files, the index, the WAL.
    pub fn disk_usage(&self) -> DiskUsage {
        let mut u = DiskUsage::default();
        if let Ok(rd) = fs::read_dir(self.dir.join("chunks")) {
            for e in rd.flatten() {
                u.chunk_bytes += e.metadata().map_or(0, |m| m.len());
            }
        }
        u.index_bytes = fs::metadata(self.dir.join("index.log")).map_or(0, |m| m.len());
        u.wal_bytes = self.wal.lock().disk_bytes();
        u
    }

    /// Chunks written since open.
    pub fn chunks_flushed(&self) -> u64 {
        self.chunks_flushed.load(Ordering::Relaxed)
    }

    /// Streams, chunks, entries and bytes in `[start, end)` for `/index/stats` (chunk totals
    /// count whole chunks overlapping the range, as Loki's index does).
    pub fn stats(&self, matchers: &[Matcher], start: i64, end: i64) -> StoreStats {
        let mut s = StoreStats::default();
        for st in self.matching(matchers) {
            let g = st.state.lock();
            let mut any = false;
            for c in g
                .chunks
                .iter()
                .filter(|c| c.min_ts < end && c.max_ts >= start)
            {
                any = true;
                s.chunks += 1;
                s.entries += u64::from(c.entries);
                s.bytes += c.raw_bytes;
            }
            let mem = g
                .head
                .iter()
                .chain(g.frozen.iter().flat_map(|f| f.entries.iter()))
                .filter(|e| e.ts_ns >= start && e.ts_ns < end);
            for e in mem {
                any = true;
                s.entries += 1;
                s.bytes += e.line.len() as u64;
            }
            if any {
                s.streams += 1;
            }
        }
        s
    }

    fn matching(&self, matchers: &[Matcher]) -> Vec<Arc<Stream>> {
        let mut v: Vec<Arc<Stream>> = self
            .streams
            .read()
            .values()
            .filter(|s| matches_all(matchers, &s.labels))
            .cloned()
            .collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }

    fn read_chunk(
        &self,
        m: &ChunkMeta,
        keep: impl FnMut(i64, &str) -> bool,
        stats: &QueryStats,
    ) -> Result<Vec<LogEntry>, LogStoreError> {
        let file = self
            .files
            .read()
            .get(&m.file)
            .cloned()
            .ok_or_else(|| LogStoreError::Corrupt(format!("chunk file {} is gone", m.file)))?;
        let mut buf = vec![0u8; m.len as usize];
        file.read_exact_at(&mut buf, m.offset)?;
        if crc32c::crc32c(&buf) != m.crc {
            return Err(LogStoreError::Corrupt(format!(
                "checksum mismatch in chunk file {} at {}",
                m.file, m.offset
            )));
        }
        self.metrics.chunks_scanned.inc();
        let d = chunk::decode_filtered(&buf, keep)?;
        add(&stats.chunks_downloaded, 1);
        add(&stats.compressed_bytes, u64::from(m.len));
        add(&stats.decompressed_lines, d.lines as u64);
        add(&stats.decompressed_bytes, d.bytes);
        Ok(d.entries)
    }

    /// Decodes a group's parts, merges them by time, keeps `[start, end)` and lines holding
    /// every required substring.
    fn load_group(
        &self,
        g: &Group,
        start: i64,
        end: i64,
        required: &[String],
        stats: &QueryStats,
    ) -> Result<Vec<LogEntry>, LogStoreError> {
        let keep = |ts: i64, line: &str| {
            ts >= start && ts < end && required.iter().all(|s| line.contains(s.as_str()))
        };
        let mut all: Vec<LogEntry> = Vec::new();
        for p in &g.parts {
            match p {
                Part::Chunk(m) => all.extend(self.read_chunk(m, keep, stats)?),
                Part::Mem(v) => {
                    add(&stats.head_lines, v.len() as u64);
                    add(
                        &stats.head_bytes,
                        v.iter().map(|e| e.byte_size() as u64).sum(),
                    );
                    all.extend(v.iter().filter(|e| keep(e.ts_ns, &e.line)).cloned());
                }
            }
        }
        if g.parts.len() > 1 {
            all.sort_by_key(|e| e.ts_ns);
        }
        add(&stats.post_filter_lines, all.len() as u64);
        Ok(all)
    }

    /// Plans a query: per matching stream, its chunks (after time and filter pruning) and its
    /// in-memory entries, grouped into time-disjoint runs.
    fn plan(&self, params: &LogSelectParams<'_>, stats: &QueryStats) -> (Vec<Labels>, Vec<Group>) {
        let needles: Vec<&String> = params
            .required_substrings
            .iter()
            .filter(|s| s.len() >= MIN_NEEDLE)
            .collect();
        let (start, end) = (params.start_ns, params.end_ns);
        let mut labels = Vec::new();
        let mut groups = Vec::new();
        for s in self.matching(params.matchers) {
            let (chunks, mut mem) = {
                let mut st = s.state.lock();
                st.sort_head();
                let chunks: Vec<Arc<ChunkMeta>> = st
                    .chunks
                    .iter()
                    .filter(|c| c.min_ts < end && c.max_ts >= start)
                    .cloned()
                    .collect();
                let mut mem: Vec<LogEntry> = Vec::new();
                for f in &st.frozen {
                    mem.extend(
                        f.entries
                            .iter()
                            .filter(|e| e.ts_ns >= start && e.ts_ns < end)
                            .cloned(),
                    );
                }
                let lo = st.head.partition_point(|e| e.ts_ns < start);
                let hi = st.head.partition_point(|e| e.ts_ns < end);
                if lo < hi {
                    mem.extend_from_slice(&st.head[lo..hi]);
                }
                (chunks, mem)
            };
            let mut items: Vec<(i64, i64, Part)> = Vec::new();
            add(&stats.chunks_ref, chunks.len() as u64);
            for c in chunks {
                if needles.iter().all(|n| c.filter.may_contain(n)) {
                    items.push((c.min_ts, c.max_ts, Part::Chunk(c)));
                } else {
                    self.metrics.chunks_skipped_by_filter.inc();
                    add(&stats.chunks_skipped_by_filter, 1);
                }
            }
            if !mem.is_empty() {
                mem.sort_by_key(|e| e.ts_ns);
                let (lo, hi) = (mem[0].ts_ns, mem[mem.len() - 1].ts_ns);
                items.push((lo, hi, Part::Mem(mem)));
            }
            if items.is_empty() {
                continue;
            }
            items.sort_by_key(|i| i.0);
            let idx = labels.len();
            labels.push(s.labels.clone());
            let mut cur: Option<(i64, Group)> = None;
            let mut stream_groups = Vec::new();
            for (lo, hi, part) in items {
                match &mut cur {
                    Some((gmax, g)) if lo <= *gmax => {
                        *gmax = (*gmax).max(hi);
                        g.parts.push(part);
                    }
                    _ => {
                        if let Some((_, g)) = cur.take() {
                            stream_groups.push(g);
                        }
                        cur = Some((
                            hi,
                            Group {
                                stream: idx,
                                parts: vec![part],
                            },
                        ));
                    }
                }
            }
            if let Some((_, g)) = cur {
                stream_groups.push(g);
            }
            if params.direction == Direction::Backward {
                stream_groups.reverse();
            }
            groups.extend(stream_groups);
        }
        (labels, groups)
    }
}

impl LogStore {
    /// [`LogQueryable::select_logs`], adding what it reads to `stats`.
    pub fn select_logs_with_stats(
        &self,
        params: &LogSelectParams<'_>,
        sink: &mut LogSink<'_>,
        stats: &QueryStats,
    ) -> Result<(), StorageError> {
        let (labels, groups) = self.plan(params, stats);
        let threads = self.opts.scan_threads.max(1);
        let (start, end, req) = (params.start_ns, params.end_ns, params.required_substrings);
        let mut entries_seen = 0usize;
        let mut bytes_seen = 0usize;
        // Decode `threads` groups at a time in parallel, then deliver them in order.
        for window in groups.chunks(threads) {
            let decoded: Vec<Result<Vec<LogEntry>, LogStoreError>> = if window.len() == 1
                || window.iter().all(|g| matches!(g.parts[..], [Part::Mem(_)]))
            {
                window
                    .iter()
                    .map(|g| self.load_group(g, start, end, req, stats))
                    .collect()
            } else {
                std::thread::scope(|sc| {
                    let hs: Vec<_> = window
                        .iter()
                        .map(|g| sc.spawn(move || self.load_group(g, start, end, req, stats)))
                        .collect();
                    hs.into_iter()
                        .map(|h| {
                            h.join().unwrap_or_else(|_| {
                                Err(LogStoreError::Corrupt("chunk decoder panicked".into()))
                            })
                        })
                        .collect()
                })
            };
            for (g, res) in window.iter().zip(decoded) {
                let mut es = res?;
                if es.is_empty() {
                    continue;
                }
                if params.direction == Direction::Backward {
                    es.reverse();
                }
                entries_seen += es.len();
                if let Some(limit) = params.max_entries
                    && entries_seen > limit
                {
                    return Err(StorageError::TooManySamples { limit });
                }
                bytes_seen += es.iter().map(LogEntry::byte_size).sum::<usize>();
                if let Some(limit) = params.max_bytes
                    && bytes_seen > limit
                {
                    return Err(StorageError::Other(format!(
                        "query would read more than {limit} bytes of log lines"
                    )));
                }
                let Some(l) = labels.get(g.stream) else {
                    continue;
                };
                if sink(l, &es).is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

impl LogQueryable for LogStore {
    fn select_logs(
        &self,
        params: &LogSelectParams<'_>,
        sink: &mut LogSink<'_>,
    ) -> Result<(), StorageError> {
        self.select_logs_with_stats(params, sink, &QueryStats::default())
    }

    fn log_series(
        &self,
        matchers: &[Matcher],
        start_ns: TimestampNs,
        end_ns: TimestampNs,
    ) -> Result<Vec<Labels>, StorageError> {
        Ok(self
            .matching(matchers)
            .into_iter()
            .filter(|s| s.state.lock().has_data_in(start_ns, end_ns))
            .map(|s| s.labels.clone())
            .collect())
    }

    fn log_label_names(
        &self,
        matchers: &[Matcher],
        start_ns: TimestampNs,
        end_ns: TimestampNs,
    ) -> Result<Vec<String>, StorageError> {
        let mut names = BTreeSet::new();
        for l in self.log_series(matchers, start_ns, end_ns)? {
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
        for l in self.log_series(matchers, start_ns, end_ns)? {
            if let Some(v) = l.get(name) {
                values.insert(v.to_string());
            }
        }
        Ok(values.into_iter().collect())
    }
}

/// One [`LogStore`] per tenant, in `<dir>/<tenant>`, opened on first use (and all existing
/// ones at start, so their WALs are replayed).
pub struct Tenants {
    dir: PathBuf,
    opts: LogStoreOptions,
    metrics: Arc<StoreMetrics>,
    stores: RwLock<FxHashMap<String, Arc<LogStore>>>,
}

/// The tenant of requests without `X-Scope-OrgID` (Loki's with auth disabled).
pub const DEFAULT_TENANT: &str = "fake";

impl Tenants {
    pub fn open(dir: &Path, opts: LogStoreOptions) -> Result<Tenants, LogStoreError> {
        fs::create_dir_all(dir)?;
        let t = Tenants {
            dir: dir.to_path_buf(),
            opts,
            metrics: Arc::new(StoreMetrics::default()),
            stores: RwLock::new(FxHashMap::default()),
        };
        for e in fs::read_dir(dir)? {
            let e = e?;
            if e.file_type()?.is_dir()
                && let Some(name) = e.file_name().to_str()
                && Self::valid_tenant(name)
            {
                t.get(name)?;
            }
        }
        t.get(DEFAULT_TENANT)?;
        Ok(t)
    }

    /// Loki's tenant id rules: up to 150 characters of `[A-Za-z0-9!_.*'()-]`, not `.`/`..`.
    pub fn valid_tenant(t: &str) -> bool {
        !t.is_empty()
            && t.len() <= 150
            && t != "."
            && t != ".."
            && t.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"!-_.*'()".contains(&c))
    }

    pub fn metrics(&self) -> &Arc<StoreMetrics> {
        &self.metrics
    }

    pub fn options(&self) -> &LogStoreOptions {
        &self.opts
    }

    pub fn get(&self, tenant: &str) -> Result<Arc<LogStore>, LogStoreError> {
        if let Some(s) = self.stores.read().get(tenant) {
            return Ok(s.clone());
        }
        if !Self::valid_tenant(tenant) {
            return Err(LogStoreError::InvalidTenant(tenant.to_string()));
        }
        let mut w = self.stores.write();
        if let Some(s) = w.get(tenant) {
            return Ok(s.clone());
        }
        let s = Arc::new(LogStore::open(
            &self.dir.join(tenant),
            self.opts.clone(),
            tenant,
            self.metrics.clone(),
        )?);
        w.insert(tenant.to_string(), s.clone());
        Ok(s)
    }

    pub fn all(&self) -> Vec<Arc<LogStore>> {
        self.stores.read().values().cloned().collect()
    }

    pub fn tick(&self) -> Result<(), LogStoreError> {
        for s in self.all() {
            s.tick()?;
        }
        Ok(())
    }

    pub fn flush(&self) -> Result<(), LogStoreError> {
        for s in self.all() {
            s.flush()?;
        }
        Ok(())
    }

    pub fn enforce_retention(&self) -> Result<RetentionOutcome, LogStoreError> {
        let mut total = RetentionOutcome::default();
        for s in self.all() {
            let o = s.enforce_retention()?;
            total.chunks_deleted += o.chunks_deleted;
            total.files_deleted += o.files_deleted;
            total.head_entries_dropped += o.head_entries_dropped;
        }
        Ok(total)
    }
}
