//! File sources: one reader thread per scrape job discovers files from its targets'
//! `__path__` globs (minus `__path_exclude__`), tails them by polling, and runs each line
//! through the job's pipeline.
//!
//! - Rotation by rename-and-create: when the path names a new inode, the old handle is read to
//!   its end (a final unterminated line is emitted), then the new file is read from 0.
//! - copytruncate: a file shorter than the read offset is read again from 0.
//! - A partial last line is held until its newline arrives; the position only ever covers
//!   complete lines, so a restart re-reads the partial line.
//! - Files that disappear are read to the end of their open handle and forgotten.
//! - Invalid UTF-8 is replaced by U+FFFD and counted; lines above the limit are truncated or
//!   dropped (`limits_config`), and counted.
//! - Reading blocks (pauses) while the clients' bounded queues are full.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lookout_storage::Labels;
use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::metrics::{AgentMetrics, JobLabel, PathLabel};
use crate::positions::Positions;
use crate::stages::{CustomMetrics, Entry, Pipeline, StageConfig, now_ns};

/// Longest line kept when `limits_config.max_line_size` is 0: longer lines are truncated, so
/// memory stays bounded whatever the input.
pub const HARD_LINE_LIMIT: usize = 4 << 20;
/// Items per message to a client.
const SEND_CHUNK: usize = 1024;
/// Bytes read from one file before moving to the next (fairness).
const READ_QUANTUM: u64 = 1 << 20;

/// What the readers send to each client.
#[derive(Debug, Clone)]
pub enum Item {
    Entry(Record),
    /// Everything in `path` before `pos` is dealt with (dropped lines, a reset after rotation).
    Progress {
        path: Arc<str>,
        pos: u64,
    },
}

/// A label set with its stream selector text, shared by every entry of that stream.
#[derive(Debug)]
pub struct StreamKey {
    pub labels: BTreeMap<String, String>,
    /// `{a="b", ...}` as [`crate::client::selector`] formats it.
    pub selector: String,
}

/// A processed log entry.
#[derive(Debug, Clone)]
pub struct Record {
    pub stream: Arc<StreamKey>,
    pub ts: i64,
    pub line: String,
    pub metadata: Vec<(String, String)>,
    pub path: Arc<str>,
    pub pos: u64,
}

/// A target group: labels including `__path__` (a glob) and optionally `__path_exclude__`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetSpec {
    pub labels: BTreeMap<String, String>,
}

/// A scrape job as the reader runs it.
#[derive(Clone)]
pub struct JobSpec {
    pub name: String,
    pub targets: Arc<RwLock<Vec<TargetSpec>>>,
    pub relabel: Vec<lookout_relabel::RelabelConfig>,
    pub stages: Vec<StageConfig>,
    /// Promtail adds `filename` to file targets (static_configs).
    pub add_filename: bool,
}

/// Reader settings.
#[derive(Debug, Clone)]
pub struct ReaderOptions {
    pub poll: Duration,
    pub sync_period: Duration,
    pub max_line_size: usize,
    pub truncate: bool,
    /// Start files found at the first sync from their end (the positions file was corrupt).
    pub start_at_end: bool,
    /// `limits_config.readline_rate*`: lines per second, burst, and drop (else wait).
    pub readline_rate: Option<(f64, f64, bool)>,
}

/// What the targets page shows for one file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileStatus {
    pub job: String,
    pub path: String,
    pub labels: BTreeMap<String, String>,
    pub read_offset: u64,
    pub size: u64,
    pub acked_offset: Option<u64>,
}

/// Shared view of every tailed file.
pub type StatusMap = Arc<Mutex<BTreeMap<String, FileStatus>>>;

struct Tailed {
    key: Arc<str>,
    path: PathBuf,
    file: File,
    ino: (u64, u64),
    pos: u64,
    partial: Vec<u8>,
    /// The current line exceeded the limit: `Some(truncated)` skips to its newline.
    overlong: Option<bool>,
    labels: BTreeMap<String, String>,
    pipeline: Pipeline,
    /// Offset of the end of the last complete line read.
    line_end: u64,
    /// Offset carried by the last item sent.
    sent_pos: u64,
    gone: bool,
    size: u64,
    /// Lines are Docker json-file records (a `docker_sd_configs` target): unwrap them.
    docker_json: bool,
    /// Recent label sets of this file's entries (most files have one or two streams).
    streams: Vec<Arc<StreamKey>>,
}

pub(crate) struct Reader {
    job: JobSpec,
    opts: ReaderOptions,
    senders: Vec<mpsc::Sender<Vec<Item>>>,
    positions: Arc<Positions>,
    metrics: AgentMetrics,
    custom: CustomMetrics,
    stop: Arc<AtomicBool>,
    status: StatusMap,
    files: HashMap<PathBuf, Tailed>,
    first_sync: bool,
    buf: Vec<u8>,
    out: Vec<Entry>,
    closed: bool,
    /// Token bucket for `readline_rate`: tokens and when they were last topped up.
    bucket: (f64, Instant),
    pending: Vec<Item>,
}

fn ino(m: &std::fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

impl Reader {
    pub(crate) fn new(
        job: JobSpec,
        opts: ReaderOptions,
        senders: Vec<mpsc::Sender<Vec<Item>>>,
        positions: Arc<Positions>,
        metrics: AgentMetrics,
        stop: Arc<AtomicBool>,
        status: StatusMap,
    ) -> Reader {
        let custom = metrics.custom.clone();
        Reader {
            job,
            opts,
            senders,
            positions,
            metrics,
            custom,
            stop,
            status,
            files: HashMap::new(),
            first_sync: true,
            buf: vec![0u8; 256 * 1024],
            out: Vec::new(),
            closed: false,
            bucket: (f64::MAX, Instant::now()),
            pending: Vec::new(),
        }
    }

    /// Runs until `stop` is set or every client has gone away.
    pub(crate) fn run(mut self) {
        let mut next_sync = Instant::now();
        while !self.stop.load(Ordering::Relaxed) && !self.closed {
            if Instant::now() >= next_sync {
                self.sync();
                next_sync = Instant::now() + self.opts.sync_period;
            }
            let mut busy = false;
            let keys: Vec<PathBuf> = self.files.keys().cloned().collect();
            for k in keys {
                if self.closed {
                    break;
                }
                busy |= self.poll_file(&k);
            }
            self.flush_pipelines(false);
            self.flush_pending();
            self.files.retain(|_, t| !t.gone);
            self.metrics.files_active.set(self.files.len() as i64);
            if !busy {
                std::thread::sleep(self.opts.poll);
            }
        }
        self.flush_pipelines(true);
        self.flush_pending();
        debug!(job = %self.job.name, "reader stopped");
    }

    /// Queues an item; items go to the clients in chunks (one wake-up per chunk, not per line).
    fn send(&mut self, item: Item) {
        self.pending.push(item);
        if self.pending.len() >= SEND_CHUNK {
            self.flush_pending();
        }
    }

    fn flush_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let items = std::mem::take(&mut self.pending);
        if self.closed {
            return;
        }
        let Some((last, rest)) = self.senders.split_last() else {
            return;
        };
        let mut blocked = Duration::ZERO;
        for s in rest {
            self.closed |= send_blocking(s, items.clone(), &mut blocked);
        }
        self.closed |= send_blocking(last, items, &mut blocked);
        if !blocked.is_zero() {
            self.metrics
                .reader_blocked_seconds
                .get_or_create(&JobLabel {
                    job: self.job.name.clone(),
                })
                .inc_by(blocked.as_secs_f64());
        }
    }

    fn sync(&mut self) {
        let specs = self.job.targets.read().clone();
        let mut seen = HashSet::new();
        for spec in &specs {
            let Some(pattern) = spec.labels.get("__path__") else {
                continue;
            };
            let exclude = spec
                .labels
                .get("__path_exclude__")
                .and_then(|p| glob::Pattern::new(p).ok());
            let paths = match glob::glob(pattern) {
                Ok(p) => p,
                Err(e) => {
                    warn!(job = %self.job.name, pattern, error = %e, "invalid __path__ glob");
                    continue;
                }
            };
            for path in paths.flatten() {
                if exclude.as_ref().is_some_and(|x| x.matches_path(&path)) || !path.is_file() {
                    continue;
                }
                seen.insert(path.clone());
                if self.files.get(&path).is_some_and(|t| !t.gone) {
                    continue;
                }
                if let Some(t) = self.open(&path, spec) {
                    self.files.insert(path, t);
                }
            }
        }
        for (p, t) in self.files.iter_mut() {
            if !seen.contains(p) && !t.gone && !p.exists() {
                t.gone = true;
            }
        }
        self.first_sync = false;
    }

    fn open(&mut self, path: &Path, spec: &TargetSpec) -> Option<Tailed> {
        let key: Arc<str> = Arc::from(path.to_string_lossy().as_ref());
        let mut discovered = spec.labels.clone();
        discovered.insert("__path__".into(), key.to_string());
        if let Some(meta) = crate::docker::container_meta(path) {
            for (k, v) in meta {
                discovered.entry(k).or_insert(v);
            }
        }
        let docker_json = discovered.contains_key(crate::docker_sd::DOCKER_JSON_LABEL);
        let labels = Labels::from_pairs(discovered.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let relabeled = lookout_relabel::relabel(&labels, &self.job.relabel)?;
        let mut final_labels: BTreeMap<String, String> = relabeled
            .iter()
            .filter(|l| !l.name.starts_with("__") && !l.value.is_empty())
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        if self.job.add_filename {
            final_labels.insert("filename".into(), key.to_string());
        }
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot open file");
                return None;
            }
        };
        let meta = file.metadata().ok()?;
        let size = meta.len();
        let start = if self.first_sync && self.opts.start_at_end {
            size
        } else {
            match self.positions.get(&key) {
                Some(p) if p <= size => p,
                Some(p) => {
                    info!(path = %path.display(), position = p, size, "file is shorter than its position (truncated while stopped): reading from the start");
                    0
                }
                None => 0,
            }
        };
        if file.seek(SeekFrom::Start(start)).is_err() {
            return None;
        }
        let mut custom = self.custom.clone();
        let pipeline = match Pipeline::new(&self.job.stages, &mut custom) {
            Ok(p) => p,
            Err(e) => {
                warn!(job = %self.job.name, error = %e, "pipeline failed to build");
                return None;
            }
        };
        self.positions.set(&key, start);
        info!(job = %self.job.name, path = %path.display(), offset = start, "tailing");
        Some(Tailed {
            key,
            path: path.to_path_buf(),
            file,
            ino: ino(&meta),
            pos: start,
            partial: Vec::new(),
            overlong: None,
            labels: final_labels,
            pipeline,
            line_end: start,
            sent_pos: start,
            gone: false,
            size,
            docker_json,
            streams: Vec::new(),
        })
    }

    /// Reads what is new in one file; true when bytes were read.
    fn poll_file(&mut self, path: &Path) -> bool {
        let Some(mut t) = self.files.remove(path) else {
            return false;
        };
        let mut read_any = self.drain(&mut t, READ_QUANTUM);
        if !read_any {
            // At EOF: look for rotation, truncation or deletion.
            match std::fs::metadata(&t.path) {
                Ok(m) if ino(&m) != t.ino => {
                    read_any |= self.drain(&mut t, u64::MAX);
                    self.finish_partial(&mut t);
                    match File::open(&t.path) {
                        Ok(f) => {
                            info!(path = %t.path.display(), "file rotated: reading the new file from the start");
                            let new_ino = f.metadata().map(|m| ino(&m)).unwrap_or((0, 0));
                            t.file = f;
                            t.ino = new_ino;
                            t.pos = 0;
                            t.line_end = 0;
                            t.sent_pos = 0;
                            t.partial.clear();
                            t.overlong = None;
                            let key = t.key.clone();
                            self.send(Item::Progress { path: key, pos: 0 });
                            read_any = true;
                        }
                        Err(_) => t.gone = true,
                    }
                }
                Ok(m) if m.len() < t.pos => {
                    info!(path = %t.path.display(), size = m.len(), offset = t.pos, "file truncated: reading from the start");
                    if t.file.seek(SeekFrom::Start(0)).is_ok() {
                        t.pos = 0;
                        t.line_end = 0;
                        t.sent_pos = 0;
                        t.partial.clear();
                        t.overlong = None;
                        let key = t.key.clone();
                        self.send(Item::Progress { path: key, pos: 0 });
                        read_any = true;
                    }
                }
                Ok(m) => t.size = m.len(),
                Err(_) => {
                    self.finish_partial(&mut t);
                    t.gone = true;
                }
            }
        }
        let lbl = PathLabel {
            path: t.key.to_string(),
        };
        t.size = t.size.max(t.pos);
        self.metrics
            .file_bytes
            .get_or_create(&lbl)
            .set(t.size as i64);
        self.metrics
            .read_lag_bytes
            .get_or_create(&lbl)
            .set(t.size.saturating_sub(t.line_end) as i64);
        self.update_status(&t);
        if t.gone {
            self.flush_one(&mut t, true);
            self.positions.remove(&t.key);
            self.status.lock().remove(t.key.as_ref());
            self.metrics.file_bytes.remove(&lbl);
            self.metrics.read_lag_bytes.remove(&lbl);
            info!(path = %t.path.display(), "file gone: stopped tailing");
        } else {
            self.files.insert(path.to_path_buf(), t);
        }
        read_any
    }

    /// Reads up to `quantum` bytes, handling every complete line.
    fn drain(&mut self, t: &mut Tailed, quantum: u64) -> bool {
        let mut total = 0u64;
        let mut buf = std::mem::take(&mut self.buf);
        while total < quantum && !self.closed {
            let n = match t.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!(path = %t.path.display(), error = %e, "read failed");
                    break;
                }
            };
            let base = t.pos;
            t.pos += n as u64;
            total += n as u64;
            self.metrics
                .read_bytes
                .get_or_create(&PathLabel {
                    path: t.key.to_string(),
                })
                .inc_by(n as u64);
            let chunk = &buf[..n];
            let mut start = 0;
            let mut lines = 0u64;
            for nl in memchr::memchr_iter(b'\n', chunk) {
                let end_off = base + nl as u64 + 1;
                if t.partial.is_empty() && t.overlong.is_none() {
                    self.line(t, &chunk[start..nl], end_off, false);
                } else {
                    self.append_partial(t, &chunk[start..nl]);
                    let p = std::mem::take(&mut t.partial);
                    let truncated = t.overlong == Some(true);
                    let dropped = t.overlong == Some(false);
                    t.overlong = None;
                    if dropped {
                        self.metrics.drop_local("line_too_long", p.len());
                        t.line_end = end_off;
                    } else {
                        self.line(t, &p, end_off, truncated);
                    }
                }
                lines += 1;
                start = nl + 1;
            }
            if start < n {
                self.append_partial(t, &chunk[start..]);
            }
            self.metrics
                .read_lines
                .get_or_create(&PathLabel {
                    path: t.key.to_string(),
                })
                .inc_by(lines);
            self.emit(t);
        }
        self.buf = buf;
        total > 0
    }

    fn append_partial(&mut self, t: &mut Tailed, bytes: &[u8]) {
        if t.overlong.is_some() {
            return;
        }
        let room = self.opts.max_line_size.saturating_sub(t.partial.len());
        if bytes.len() <= room {
            t.partial.extend_from_slice(bytes);
        } else {
            t.partial.extend_from_slice(&bytes[..room]);
            t.overlong = Some(self.opts.truncate || self.opts.max_line_size == HARD_LINE_LIMIT);
        }
    }

    /// One token from the `readline_rate` bucket; false when the line is to be dropped.
    fn take_token(&mut self, rate: f64, burst: f64, drop: bool) -> bool {
        let now = Instant::now();
        let (tokens, last) = &mut self.bucket;
        *tokens = (tokens.min(burst) + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return true;
        }
        if drop {
            return false;
        }
        std::thread::sleep(Duration::from_secs_f64(((1.0 - *tokens) / rate).min(10.0)));
        self.bucket = (0.0, Instant::now());
        true
    }

    /// A final unterminated line of a file that was rotated away or deleted.
    fn finish_partial(&mut self, t: &mut Tailed) {
        if t.partial.is_empty() {
            return;
        }
        let p = std::mem::take(&mut t.partial);
        let truncated = t.overlong == Some(true);
        t.overlong = None;
        let end = t.pos;
        self.line(t, &p, end, truncated);
        self.emit(t);
    }

    fn line(&mut self, t: &mut Tailed, bytes: &[u8], end_off: u64, truncated: bool) {
        t.line_end = end_off;
        if let Some((rate, burst, drop)) = self.opts.readline_rate
            && !self.take_token(rate, burst, drop)
        {
            self.metrics
                .drop_local("readline_rate_limited", bytes.len());
            return;
        }
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let mut bytes = bytes;
        let mut truncated = truncated;
        if bytes.len() > self.opts.max_line_size {
            if self.opts.truncate || self.opts.max_line_size == HARD_LINE_LIMIT {
                bytes = &bytes[..self.opts.max_line_size];
                truncated = true;
            } else {
                self.metrics.drop_local("line_too_long", bytes.len());
                return;
            }
        }
        if truncated {
            self.metrics
                .truncated_lines
                .get_or_create(&PathLabel {
                    path: t.key.to_string(),
                })
                .inc();
        }
        let line = match std::str::from_utf8(bytes) {
            Ok(s) => s.to_string(),
            Err(_) => {
                self.metrics
                    .invalid_utf8_lines
                    .get_or_create(&PathLabel {
                        path: t.key.to_string(),
                    })
                    .inc();
                String::from_utf8_lossy(bytes).into_owned()
            }
        };
        let mut e = Entry {
            labels: t.labels.clone(),
            extracted: HashMap::new(),
            line,
            ts: now_ns(),
            metadata: Vec::new(),
            pos: end_off,
        };
        if t.docker_json {
            unwrap_docker_json(&mut e);
        }
        let metrics = &self.metrics;
        t.pipeline
            .process(e, &self.custom, &mut self.out, &mut |reason, e| {
                metrics.drop_local(reason, e.line.len());
            });
    }

    fn update_status(&self, t: &Tailed) {
        self.status.lock().insert(
            t.key.to_string(),
            FileStatus {
                job: self.job.name.clone(),
                path: t.key.to_string(),
                labels: t.labels.clone(),
                read_offset: t.line_end,
                size: t.size.max(t.pos),
                acked_offset: self.positions.get(&t.key),
            },
        );
    }

    /// Sends processed entries, then a progress marker if lines were consumed without one.
    fn emit(&mut self, t: &mut Tailed) {
        self.update_status(t);
        let out = std::mem::take(&mut self.out);
        for e in out {
            t.sent_pos = t.sent_pos.max(e.pos);
            let stream = match t.streams.iter().find(|k| k.labels == e.labels) {
                Some(k) => k.clone(),
                None => {
                    if t.streams.len() >= 64 {
                        t.streams.clear();
                    }
                    let selector = crate::client::selector(&e.labels);
                    let k = Arc::new(StreamKey {
                        labels: e.labels,
                        selector,
                    });
                    t.streams.push(k.clone());
                    k
                }
            };
            let rec = Record {
                stream,
                ts: e.ts,
                line: e.line,
                metadata: e.metadata,
                path: t.key.clone(),
                pos: e.pos,
            };
            self.send(Item::Entry(rec));
        }
        if t.line_end > t.sent_pos && !t.pipeline.has_pending() {
            t.sent_pos = t.line_end;
            let key = t.key.clone();
            self.send(Item::Progress {
                path: key,
                pos: t.line_end,
            });
        }
        self.flush_pending();
    }

    fn flush_one(&mut self, t: &mut Tailed, all: bool) {
        let metrics = &self.metrics;
        t.pipeline.flush(
            Instant::now(),
            all,
            &self.custom,
            &mut self.out,
            &mut |reason, e| {
                metrics.drop_local(reason, e.line.len());
            },
        );
        if !self.out.is_empty() || all {
            self.emit(t);
        }
    }

    fn flush_pipelines(&mut self, all: bool) {
        let keys: Vec<PathBuf> = self.files.keys().cloned().collect();
        for k in keys {
            if let Some(mut t) = self.files.remove(&k) {
                self.flush_one(&mut t, all);
                self.files.insert(k, t);
            }
        }
    }
}

/// Sends one message, blocking while the queue is full (time added to `blocked`); true when
/// the client has gone away.
fn send_blocking(s: &mpsc::Sender<Vec<Item>>, items: Vec<Item>, blocked: &mut Duration) -> bool {
    match s.try_send(items) {
        Ok(()) => false,
        Err(mpsc::error::TrySendError::Closed(_)) => true,
        Err(mpsc::error::TrySendError::Full(items)) => {
            let started = Instant::now();
            let gone = s.blocking_send(items).is_err();
            *blocked += started.elapsed();
            gone
        }
    }
}

/// Replaces a json-file record by its log line and time, as reading through the Docker API
/// would deliver it.
fn unwrap_docker_json(e: &mut Entry) {
    #[derive(serde::Deserialize)]
    struct Rec<'a> {
        #[serde(borrow)]
        log: std::borrow::Cow<'a, str>,
        #[serde(borrow, default)]
        time: Option<std::borrow::Cow<'a, str>>,
    }
    let Ok(r) = serde_json::from_str::<Rec>(&e.line) else {
        return;
    };
    if let Some(t) = r.time
        && let Ok(dt) = chrono::DateTime::parse_from_rfc3339(&t)
        && let Some(ns) = dt.timestamp_nanos_opt()
    {
        e.ts = ns;
    }
    let log = r.log.strip_suffix('\n').unwrap_or(&r.log);
    e.line = log.to_string();
}
