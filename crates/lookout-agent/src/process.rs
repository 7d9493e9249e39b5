//! Process sources: the stdout and stderr of a process (any [`AsyncRead`], typically a
//! `tokio::process::ChildStdout`/`ChildStderr`) read as log lines.
//!
//! A process is attached to a scrape job by name: its discovered labels go through that job's
//! `relabel_configs`, then `stream="stdout"|"stderr"` is added (as the Docker target does),
//! and every line runs through the job's `pipeline_stages` before the clients batch and push
//! it, like file lines. Lines are timestamped when read. A partial last line is held until
//! its newline or the end of the pipe; lines above `limits_config.max_line_size` are truncated
//! or dropped (counted), invalid UTF-8 is replaced by U+FFFD (counted).
//!
//! Back-pressure: a pipe is read only while the clients' bounded queues take entries. While
//! the server is down the reader stops reading, the pipe fills and the writing process
//! blocks, as under Docker's json-file driver; memory stays bounded and nothing is dropped.
//! A pipe cannot be re-read, so there are no positions: entries still undelivered when the
//! agent stops are lost (the client logs the abandoned batch).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lookout_storage::Labels;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::metrics::{AgentMetrics, ProcessLabels};
use crate::stages::{CustomMetrics, Entry, Pipeline, now_ns};
use crate::tail::{HARD_LINE_LIMIT, Item, JobSpec, Record, StreamKey};

/// Bytes read from a pipe at a time.
const READ_BUF: usize = 64 * 1024;
/// Entries per message to a client.
const SEND_CHUNK: usize = 1024;
/// How often held multiline blocks are checked for `max_wait_time`.
const FLUSH_TICK: Duration = Duration::from_millis(100);

/// Why a process could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("process {process:?}: no scrape job named {job:?} in the configuration")]
    UnknownJob { process: String, job: String },
    #[error("process {process:?}: pipeline of job {job:?}: {source}")]
    Pipeline {
        process: String,
        job: String,
        source: crate::stages::StageError,
    },
    #[error("process {0:?}: the agent has stopped")]
    Stopped(String),
}

/// A process to read: its name (unique per agent; the targets API lists it), the scrape job
/// whose relabeling and pipeline apply, and its discovered labels (`__meta_*` and others,
/// before relabeling).
#[derive(Debug, Clone, Default)]
pub struct ProcessSpec {
    pub name: String,
    pub job: String,
    pub labels: BTreeMap<String, String>,
}

/// What the targets API shows for one stream of one process.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProcessStatus {
    pub job: String,
    pub process: String,
    pub stream: String,
    pub pid: Option<u32>,
    /// Labels after relabeling (empty when relabeling dropped the process).
    pub labels: BTreeMap<String, String>,
    /// `reading`, `blocked` (waiting for the clients: the process blocks on its next write
    /// once the pipe is full), `closed` (end of the pipe) or `dropped` (by relabeling: the
    /// pipe is drained and its lines discarded, counted).
    pub state: &'static str,
    pub read_lines: u64,
    pub read_bytes: u64,
    /// Unix seconds when this stream was attached.
    pub attached_at: u64,
}

/// Line reading limits shared with the file source.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LineLimits {
    pub max_line_size: usize,
    pub truncate: bool,
}

impl LineLimits {
    /// Over-long lines are cut (rather than dropped) when configured, and always at the hard
    /// limit.
    fn truncates(&self) -> bool {
        self.truncate || self.max_line_size >= HARD_LINE_LIMIT
    }
}

/// A line out of [`LineSplitter`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// A line (without its newline or a trailing `\r`); `true` when it was cut to the limit.
    Keep(&'a [u8], bool),
    /// A line over the limit, dropped; its length as far as it was seen.
    TooLong(usize),
}

/// Splits a byte stream into lines, holding a partial last line; memory per stream is bounded
/// by the line limit.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    limits: LineLimits,
    partial: Vec<u8>,
    /// The current line went over the limit: bytes seen so far (its tail is skipped).
    overlong: Option<usize>,
    /// The last byte skipped of an over-long line (a final `\r` is not part of the line).
    last: u8,
}

impl LineSplitter {
    pub(crate) fn new(limits: LineLimits) -> LineSplitter {
        LineSplitter {
            limits,
            partial: Vec::new(),
            overlong: None,
            last: 0,
        }
    }

    /// Feeds bytes; `f` gets every line completed by them.
    pub(crate) fn feed(&mut self, chunk: &[u8], f: &mut dyn FnMut(Line<'_>)) {
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', chunk) {
            let piece = &chunk[start..nl];
            if self.partial.is_empty() && self.overlong.is_none() {
                self.emit(piece, f);
            } else {
                self.append(piece);
                self.finish_line(f);
            }
            start = nl + 1;
        }
        if start < chunk.len() {
            self.append(&chunk[start..]);
        }
    }

    /// The end of the stream: a held partial line is emitted.
    pub(crate) fn finish(&mut self, f: &mut dyn FnMut(Line<'_>)) {
        if !self.partial.is_empty() || self.overlong.is_some() {
            self.finish_line(f);
        }
    }

    /// Holds up to one byte more than the limit, so a line that fits once its `\r` is
    /// stripped is told apart from one that does not, however the reads cut it.
    fn append(&mut self, bytes: &[u8]) {
        let Some(&last) = bytes.last() else {
            return;
        };
        if let Some(seen) = &mut self.overlong {
            *seen += bytes.len();
            self.last = last;
            return;
        }
        let room = (self.limits.max_line_size + 1).saturating_sub(self.partial.len());
        if bytes.len() <= room {
            self.partial.extend_from_slice(bytes);
        } else {
            self.partial.extend_from_slice(&bytes[..room]);
            self.overlong = Some(self.partial.len() + bytes.len() - room);
            self.last = last;
        }
    }

    fn finish_line(&mut self, f: &mut dyn FnMut(Line<'_>)) {
        let p = std::mem::take(&mut self.partial);
        match self.overlong.take() {
            None => self.emit(&p, f),
            Some(_) if self.limits.truncates() => f(Line::Keep(
                &p[..self.limits.max_line_size.min(p.len())],
                true,
            )),
            Some(seen) => f(Line::TooLong(seen - usize::from(self.last == b'\r'))),
        }
        // Keep the allocation for the next partial line unless it was a big one.
        if p.capacity() <= READ_BUF {
            self.partial = p;
            self.partial.clear();
        }
    }

    fn emit(&self, line: &[u8], f: &mut dyn FnMut(Line<'_>)) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() <= self.limits.max_line_size {
            f(Line::Keep(line, false));
        } else if self.limits.truncates() {
            f(Line::Keep(&line[..self.limits.max_line_size], true));
        } else {
            f(Line::TooLong(line.len()));
        }
    }
}

struct Shared {
    jobs: HashMap<String, JobSpec>,
    /// The clients' queues; taken away when the agent stops.
    senders: Mutex<Option<Vec<mpsc::Sender<Vec<Item>>>>>,
    metrics: AgentMetrics,
    limits: LineLimits,
    status: Mutex<BTreeMap<(String, String), ProcessStatus>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    stop: watch::Sender<bool>,
}

/// Attaches processes' output to a running (or about to run) agent. Cheap to clone.
#[derive(Clone)]
pub struct ProcessSources {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ProcessSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessSources")
            .field("streams", &self.shared.status.lock().len())
            .finish_non_exhaustive()
    }
}

impl ProcessSources {
    pub(crate) fn new(
        jobs: &[JobSpec],
        senders: Vec<mpsc::Sender<Vec<Item>>>,
        metrics: AgentMetrics,
        limits: LineLimits,
    ) -> ProcessSources {
        let (stop, _) = watch::channel(false);
        ProcessSources {
            shared: Arc::new(Shared {
                jobs: jobs.iter().map(|j| (j.name.clone(), j.clone())).collect(),
                senders: Mutex::new(Some(senders)),
                metrics,
                limits,
                status: Mutex::new(BTreeMap::new()),
                tasks: Mutex::new(Vec::new()),
                stop,
            }),
        }
    }

    /// Starts reading a process's stdout and/or stderr (each on its own task, until the end
    /// of the pipe or the agent stops). Attaching a name again (a restarted process) replaces
    /// its entries in the targets API.
    pub fn attach<O, E>(
        &self,
        spec: &ProcessSpec,
        pid: Option<u32>,
        stdout: Option<O>,
        stderr: Option<E>,
    ) -> Result<(), ProcessError>
    where
        O: AsyncRead + Unpin + Send + 'static,
        E: AsyncRead + Unpin + Send + 'static,
    {
        let sh = &self.shared;
        let job = sh
            .jobs
            .get(&spec.job)
            .ok_or_else(|| ProcessError::UnknownJob {
                process: spec.name.clone(),
                job: spec.job.clone(),
            })?;
        let senders = sh
            .senders
            .lock()
            .clone()
            .ok_or_else(|| ProcessError::Stopped(spec.name.clone()))?;
        let labels = Labels::from_pairs(spec.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let relabeled: Option<BTreeMap<String, String>> =
            lookout_relabel::relabel(&labels, &job.relabel).map(|l| {
                l.iter()
                    .filter(|l| !l.name.starts_with("__") && !l.value.is_empty())
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect()
            });
        if relabeled.is_none() {
            info!(process = %spec.name, job = %spec.job, "relabeling dropped the process: its output is drained and discarded");
        }
        let mut tasks = Vec::new();
        let mut start = |stream: &'static str, reader: Box<dyn AsyncRead + Unpin + Send>| {
            let mut custom = sh.metrics.custom.clone();
            let pipeline = Pipeline::new(&job.stages, &mut custom).map_err(|source| {
                ProcessError::Pipeline {
                    process: spec.name.clone(),
                    job: spec.job.clone(),
                    source,
                }
            })?;
            let labels = relabeled.clone().map(|mut l| {
                l.insert("stream".into(), stream.into());
                l
            });
            let attached_at = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            sh.status.lock().insert(
                (spec.name.clone(), stream.to_string()),
                ProcessStatus {
                    job: spec.job.clone(),
                    process: spec.name.clone(),
                    stream: stream.to_string(),
                    pid,
                    labels: labels.clone().unwrap_or_default(),
                    state: if labels.is_some() {
                        "reading"
                    } else {
                        "dropped"
                    },
                    read_lines: 0,
                    read_bytes: 0,
                    attached_at,
                },
            );
            let task = StreamTask {
                shared: self.shared.clone(),
                process: spec.name.clone(),
                stream,
                key: Arc::from(format!("process:{}/{stream}", spec.name)),
                labels,
                pipeline,
                custom,
                senders: senders.clone(),
                splitter: LineSplitter::new(sh.limits),
                out: Vec::new(),
                pending: Vec::new(),
                streams: Vec::new(),
                offset: 0,
                lbl: ProcessLabels {
                    process: spec.name.clone(),
                    stream: stream.to_string(),
                },
                closed: false,
            };
            tasks.push(tokio::spawn(task.run(reader, sh.stop.subscribe())));
            Ok::<(), ProcessError>(())
        };
        if let Some(r) = stdout {
            start("stdout", Box::new(r))?;
        }
        if let Some(r) = stderr {
            start("stderr", Box::new(r))?;
        }
        info!(process = %spec.name, job = %spec.job, pid, "reading process output");
        let mut all = sh.tasks.lock();
        all.retain(|t| !t.is_finished());
        all.extend(tasks);
        Ok(())
    }

    /// Every attached stream, for the targets API.
    pub fn status(&self) -> Vec<ProcessStatus> {
        self.shared.status.lock().values().cloned().collect()
    }

    /// Stops reading (held lines are emitted), waits for the stream tasks, and releases the
    /// clients' queues. Further attaches fail.
    pub(crate) async fn stop(&self) {
        self.shared.senders.lock().take();
        let _ = self.shared.stop.send(true);
        let tasks = std::mem::take(&mut *self.shared.tasks.lock());
        for t in tasks {
            let _ = t.await;
        }
    }
}

struct StreamTask {
    shared: Arc<Shared>,
    process: String,
    stream: &'static str,
    key: Arc<str>,
    /// Final labels (with `stream`); `None` when relabeling dropped the process.
    labels: Option<BTreeMap<String, String>>,
    pipeline: Pipeline,
    custom: CustomMetrics,
    senders: Vec<mpsc::Sender<Vec<Item>>>,
    splitter: LineSplitter,
    out: Vec<Entry>,
    pending: Vec<Item>,
    streams: Vec<Arc<StreamKey>>,
    /// Bytes read so far (the position entries carry; never recorded in the positions file).
    offset: u64,
    lbl: ProcessLabels,
    /// Every client went away.
    closed: bool,
}

impl StreamTask {
    async fn run(
        mut self,
        mut reader: Box<dyn AsyncRead + Unpin + Send>,
        mut stop: watch::Receiver<bool>,
    ) {
        let m = self.shared.metrics.clone();
        m.process_pipes_open.inc();
        let mut buf = vec![0u8; READ_BUF];
        let mut tick = tokio::time::interval(FLUSH_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut end = "closed";
        loop {
            let n = tokio::select! {
                r = reader.read(&mut buf) => r,
                _ = tick.tick(), if self.pipeline.has_pending() => {
                    self.flush_pipeline(false);
                    self.send_out().await;
                    continue;
                }
                _ = stopped(&mut stop) => {
                    end = "stopped";
                    break;
                }
            };
            let n = match n {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!(process = %self.process, stream = self.stream, error = %e, "reading process output failed");
                    break;
                }
            };
            self.offset += n as u64;
            m.process_read_bytes
                .get_or_create(&self.lbl)
                .inc_by(n as u64);
            let mut lines = Vec::new();
            self.splitter.feed(&buf[..n], &mut |l| lines.push(own(l)));
            self.handle(lines);
            self.send_out().await;
            if self.closed {
                // Nobody takes entries any more: drain so the process never blocks on us.
                end = "stopped";
                break;
            }
        }
        let mut lines = Vec::new();
        self.splitter.finish(&mut |l| lines.push(own(l)));
        self.handle(lines);
        self.flush_pipeline(true);
        self.send_out().await;
        if let Some(s) = self
            .shared
            .status
            .lock()
            .get_mut(&(self.process.clone(), self.stream.to_string()))
            && s.state != "dropped"
        {
            s.state = "closed";
        }
        m.process_pipes_open.dec();
        debug!(process = %self.process, stream = self.stream, how = end, "process output finished");
    }

    /// Runs complete lines through the pipeline.
    fn handle(&mut self, lines: Vec<(Option<Vec<u8>>, bool, usize)>) {
        if lines.is_empty() {
            return;
        }
        let m = self.shared.metrics.clone();
        let count = lines.len() as u64;
        m.process_read_lines.get_or_create(&self.lbl).inc_by(count);
        {
            let mut st = self.shared.status.lock();
            if let Some(s) = st.get_mut(&(self.process.clone(), self.stream.to_string())) {
                s.read_lines += count;
                s.read_bytes = self.offset;
            }
        }
        let ts = now_ns();
        for (bytes, truncated, len) in lines {
            let Some(bytes) = bytes else {
                m.drop_local("line_too_long", len);
                continue;
            };
            let Some(labels) = &self.labels else {
                m.drop_local("relabel_dropped", bytes.len());
                continue;
            };
            if truncated {
                m.process_truncated_lines.get_or_create(&self.lbl).inc();
            }
            let line = match String::from_utf8(bytes) {
                Ok(s) => s,
                Err(e) => {
                    m.process_invalid_utf8_lines.get_or_create(&self.lbl).inc();
                    String::from_utf8_lossy(e.as_bytes()).into_owned()
                }
            };
            let e = Entry {
                labels: labels.clone(),
                extracted: HashMap::new(),
                line,
                ts,
                metadata: Vec::new(),
                pos: self.offset,
            };
            self.pipeline
                .process(e, &self.custom, &mut self.out, &mut |reason, e| {
                    m.drop_local(reason, e.line.len());
                });
        }
    }

    fn flush_pipeline(&mut self, all: bool) {
        let m = self.shared.metrics.clone();
        self.pipeline.flush(
            Instant::now(),
            all,
            &self.custom,
            &mut self.out,
            &mut |reason, e| {
                m.drop_local(reason, e.line.len());
            },
        );
    }

    /// Hands processed entries to the clients, waiting (and so not reading the pipe) while
    /// their queues are full.
    async fn send_out(&mut self) {
        for e in std::mem::take(&mut self.out) {
            let stream = match self.streams.iter().find(|k| k.labels == e.labels) {
                Some(k) => k.clone(),
                None => {
                    if self.streams.len() >= 64 {
                        self.streams.clear();
                    }
                    let selector = crate::client::selector(&e.labels);
                    let k = Arc::new(StreamKey {
                        labels: e.labels,
                        selector,
                    });
                    self.streams.push(k.clone());
                    k
                }
            };
            self.pending.push(Item::Entry(Record {
                stream,
                ts: e.ts,
                line: e.line,
                metadata: e.metadata,
                path: self.key.clone(),
                pos: e.pos,
            }));
            if self.pending.len() >= SEND_CHUNK {
                self.deliver().await;
            }
        }
        self.deliver().await;
    }

    async fn deliver(&mut self) {
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
        let mut closed = false;
        for s in rest {
            let (b, c) = send_one(s, items.clone(), &self.shared, &self.process, self.stream).await;
            blocked += b;
            closed |= c;
        }
        let (b, c) = send_one(last, items, &self.shared, &self.process, self.stream).await;
        blocked += b;
        closed |= c;
        self.closed = closed;
        if !blocked.is_zero() {
            self.shared
                .metrics
                .process_blocked_seconds
                .get_or_create(&self.lbl)
                .inc_by(blocked.as_secs_f64());
        }
    }
}

/// Sends one message, waiting while the queue is full (the stream shows as `blocked`).
/// Returns the time spent waiting and whether the client has gone.
async fn send_one(
    s: &mpsc::Sender<Vec<Item>>,
    msg: Vec<Item>,
    shared: &Shared,
    process: &str,
    stream: &str,
) -> (Duration, bool) {
    let msg = match s.try_send(msg) {
        Ok(()) => return (Duration::ZERO, false),
        Err(mpsc::error::TrySendError::Closed(_)) => return (Duration::ZERO, true),
        Err(mpsc::error::TrySendError::Full(msg)) => msg,
    };
    set_state(shared, process, stream, "blocked");
    let started = Instant::now();
    let closed = s.send(msg).await.is_err();
    set_state(shared, process, stream, "reading");
    (started.elapsed(), closed)
}

fn set_state(shared: &Shared, process: &str, stream: &str, state: &'static str) {
    if let Some(s) = shared
        .status
        .lock()
        .get_mut(&(process.to_string(), stream.to_string()))
    {
        s.state = state;
    }
}

/// A line as the pipeline gets it: bytes (None when dropped as too long), truncated, length.
fn own(l: Line<'_>) -> (Option<Vec<u8>>, bool, usize) {
    match l {
        Line::Keep(b, t) => (Some(b.to_vec()), t, b.len()),
        Line::TooLong(n) => (None, false, n),
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split(limits: LineLimits, chunks: &[&[u8]], finish: bool) -> Vec<(Vec<u8>, bool)> {
        let mut s = LineSplitter::new(limits);
        let mut out = Vec::new();
        let mut f = |l: Line<'_>| match l {
            Line::Keep(b, t) => out.push((b.to_vec(), t)),
            Line::TooLong(n) => out.push((format!("<dropped {n}>").into_bytes(), false)),
        };
        for c in chunks {
            s.feed(c, &mut f);
        }
        if finish {
            s.finish(&mut f);
        }
        out
    }

    const BIG: LineLimits = LineLimits {
        max_line_size: 1 << 20,
        truncate: false,
    };

    #[test]
    fn partial_line_is_held_until_newline_or_end() {
        let got = split(BIG, &[b"one\ntw", b"o\r\nthr"], false);
        assert_eq!(
            got,
            vec![(b"one".to_vec(), false), (b"two".to_vec(), false)]
        );
        let got = split(BIG, &[b"one\ntw", b"o\r\nthr"], true);
        assert_eq!(got.len(), 3);
        assert_eq!(got[2], (b"thr".to_vec(), false));
    }

    #[test]
    fn overlong_lines_are_truncated_or_dropped() {
        let cut = LineLimits {
            max_line_size: 4,
            truncate: true,
        };
        let got = split(cut, &[b"abcdefgh\nxy\nabc", b"defg\n"], true);
        assert_eq!(
            got,
            vec![
                (b"abcd".to_vec(), true),
                (b"xy".to_vec(), false),
                (b"abcd".to_vec(), true)
            ]
        );
        let drop = LineLimits {
            max_line_size: 4,
            truncate: false,
        };
        let got = split(drop, &[b"abcdefgh\nxy\nabc", b"defg\nlast"], true);
        assert_eq!(
            got,
            vec![
                (b"<dropped 8>".to_vec(), false),
                (b"xy".to_vec(), false),
                (b"<dropped 7>".to_vec(), false),
                (b"last".to_vec(), false)
            ]
        );
    }

    #[test]
    fn exactly_at_the_limit_is_kept_whole() {
        let lim = LineLimits {
            max_line_size: 4,
            truncate: false,
        };
        let got = split(lim, &[b"ab", b"cd\n"], true);
        assert_eq!(got, vec![(b"abcd".to_vec(), false)]);
    }

    proptest! {
        /// However the bytes are cut into reads, the lines are the same as splitting the whole.
        #[test]
        fn chunking_does_not_change_lines(
            data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'a'), Just(b'\r'), any::<u8>()], 0..400),
            cuts in proptest::collection::vec(0usize..400, 0..8),
            max in 1usize..16,
            truncate in any::<bool>(),
        ) {
            let lim = LineLimits { max_line_size: max, truncate };
            let whole = split(lim, &[&data], true);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut prev = 0;
            for c in cuts {
                chunks.push(&data[prev..c]);
                prev = c;
            }
            chunks.push(&data[prev..]);
            let pieces = split(lim, &chunks, true);
            prop_assert_eq!(&pieces, &whole);
            // And against a plain reference split.
            let mut expect = Vec::new();
            let mut parts: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
            if data.last() == Some(&b'\n') || data.is_empty() {
                parts.pop();
            }
            for p in parts {
                let p = p.strip_suffix(b"\r").unwrap_or(p);
                if p.len() <= max {
                    expect.push((p.to_vec(), false));
                } else if truncate {
                    expect.push((p[..max].to_vec(), true));
                } else {
                    expect.push((format!("<dropped {}>", p.len()).into_bytes(), false));
                }
            }
            prop_assert_eq!(&whole, &expect);
        }
    }
}
