//! One Loki client: batches entries by size (`batchsize` bytes of lines) and age
//! (`batchwait`), pushes them as snappy-compressed `PushRequest` protobuf, retries 429, 5xx and
//! connection errors with exponential backoff (`backoff_config`), and drops (counting and
//! logging the reason) batches answered with another 4xx. Positions are advanced only after a
//! batch is acknowledged or deliberately dropped.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lookout_loki_proto as proto;
use tokio::sync::mpsc;
use tracing::{error, warn};

use crate::config::ClientConfig;
use crate::metrics::{AgentMetrics, DropLabels, HostLabel, RequestLabels};
use crate::positions::Positions;
use crate::tail::{Item, Record, StreamKey};

/// Queue capacity between readers and one client, in chunks of up to 1024 entries. Memory
/// while the server is down is bounded by this, one batch in flight, and the line length
/// limit.
pub const QUEUE_CAPACITY: usize = 8;

#[derive(Default)]
struct Batch {
    streams: HashMap<Arc<str>, Vec<proto::Entry>>,
    bytes: usize,
    entries: usize,
    acks: BTreeMap<Arc<str>, u64>,
    started: Option<Instant>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

/// Formats a label set as a LogQL stream selector: `{a="b", c="d"}`.
pub fn selector(labels: &BTreeMap<String, String>) -> String {
    let mut s = String::with_capacity(labels.len() * 24 + 2);
    s.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(k);
        s.push_str("=\"");
        for c in v.chars() {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push('}');
    s
}

pub(crate) struct Client {
    pub idx: usize,
    pub cfg: ClientConfig,
    pub http: reqwest::Client,
    pub rx: mpsc::Receiver<Vec<Item>>,
    pub positions: Arc<Positions>,
    pub metrics: AgentMetrics,
    pub host: String,
    pub auth: Option<String>,
    /// Set when the agent stops: a batch that cannot be delivered is left for the next run.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// A batch was left undelivered at shutdown: nothing later may be acknowledged.
    pub abandoned: bool,
    /// `limits_config.max_streams` (0 = unlimited) and the streams seen so far.
    pub max_streams: usize,
    pub streams: std::collections::HashSet<String>,
    /// Stream selectors by reader stream (the `Arc` is held so the address stays unique).
    pub keys: HashMap<usize, (Arc<StreamKey>, Arc<str>)>,
    /// The batch being pushed while the next one fills.
    pub inflight: Option<tokio::task::JoinHandle<Done>>,
}

/// The `Authorization` header value for a client, reading token/password files.
pub fn auth_header(cfg: &ClientConfig) -> Result<Option<String>, String> {
    if let Some(b) = &cfg.basic_auth {
        let pw = match (&b.password, &b.password_file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| format!("reading password_file {f}: {e}"))?
                .trim()
                .to_string(),
            (None, None) => String::new(),
        };
        return Ok(Some(format!(
            "Basic {}",
            base64(format!("{}:{}", b.username, pw).as_bytes())
        )));
    }
    if let Some(t) = &cfg.bearer_token {
        return Ok(Some(format!("Bearer {t}")));
    }
    if let Some(f) = &cfg.bearer_token_file {
        let t = std::fs::read_to_string(f)
            .map_err(|e| format!("reading bearer_token_file {f}: {e}"))?;
        return Ok(Some(format!("Bearer {}", t.trim())));
    }
    Ok(None)
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

enum Outcome {
    Sent,
    Dropped(&'static str),
    /// Shutdown interrupted the retries: nothing is acknowledged.
    Abandoned,
}

impl Client {
    pub(crate) async fn run(mut self) {
        let mut batch = Batch::default();
        let wait = self.cfg.batchwait.0.max(Duration::from_millis(1));
        loop {
            let deadline = batch
                .started
                .map(|s| tokio::time::Instant::from_std(s + wait));
            let ev = {
                let rx = &mut self.rx;
                let inflight = &mut self.inflight;
                tokio::select! {
                    item = rx.recv() => Ev::Items(item),
                    _ = async {
                        match deadline {
                            Some(d) => tokio::time::sleep_until(d).await,
                            None => std::future::pending().await,
                        }
                    } => Ev::Deadline,
                    res = async {
                        match inflight.as_mut() {
                            Some(h) => h.await,
                            None => std::future::pending().await,
                        }
                    } => Ev::Pushed(res),
                }
            };
            let item = match ev {
                Ev::Items(item) => item,
                Ev::Deadline => {
                    self.flush(&mut batch).await;
                    continue;
                }
                Ev::Pushed(res) => {
                    self.inflight = None;
                    self.finish(res);
                    continue;
                }
            };
            let Some(items) = item else {
                self.flush(&mut batch).await;
                self.settle().await;
                return;
            };
            for item in items {
                match item {
                    Item::Progress { path, pos } => {
                        if self.abandoned {
                        } else if self.inflight.is_none()
                            && batch.is_empty()
                            && batch.acks.is_empty()
                        {
                            self.positions.ack(self.idx, &path, pos);
                        } else {
                            batch.acks.insert(path, pos);
                            batch.started.get_or_insert_with(Instant::now);
                        }
                    }
                    Item::Entry(rec) => {
                        self.add(&mut batch, rec);
                        if batch.bytes >= self.cfg.batchsize {
                            self.flush(&mut batch).await;
                        }
                    }
                }
            }
        }
    }

    fn add(&mut self, batch: &mut Batch, rec: Record) {
        let Record {
            stream,
            ts,
            line,
            metadata,
            path,
            pos,
        } = rec;
        let key = self.stream_key(&stream);
        if self.max_streams > 0 && !self.streams.contains(key.as_ref()) {
            if self.streams.len() >= self.max_streams {
                self.count_drop("stream_limited", 1, line.len());
                batch.acks.insert(path, pos);
                batch.started.get_or_insert_with(Instant::now);
                return;
            }
            self.streams.insert(key.to_string());
        }
        batch.bytes += line.len();
        batch.entries += 1;
        batch.started.get_or_insert_with(Instant::now);
        batch.acks.insert(path, pos);
        batch.streams.entry(key).or_default().push(proto::Entry {
            timestamp: Some(proto::Timestamp::from_unix_nanos(ts)),
            line,
            structured_metadata: metadata
                .into_iter()
                .map(|(name, value)| proto::LabelPair { name, value })
                .collect(),
        });
        self.metrics
            .pending_entries
            .get_or_create(&HostLabel {
                host: self.host.clone(),
            })
            .set(batch.entries as i64);
    }

    /// The selector a stream is sent under: the reader's, with `external_labels` merged in
    /// (computed once per stream).
    fn stream_key(&mut self, stream: &Arc<StreamKey>) -> Arc<str> {
        let ptr = Arc::as_ptr(stream) as usize;
        if let Some((held, key)) = self.keys.get(&ptr)
            && Arc::ptr_eq(held, stream)
        {
            return key.clone();
        }
        if self.keys.len() >= 4096 {
            self.keys.clear();
        }
        let key: Arc<str> = if self.cfg.external_labels.is_empty() {
            Arc::from(stream.selector.as_str())
        } else {
            let mut labels = stream.labels.clone();
            for (k, v) in &self.cfg.external_labels {
                labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
            Arc::from(selector(&labels))
        };
        self.keys.insert(ptr, (stream.clone(), key.clone()));
        key
    }

    fn ack(&self, batch: &mut Batch) {
        if self.abandoned {
            batch.acks.clear();
            return;
        }
        for (path, pos) in std::mem::take(&mut batch.acks) {
            self.positions.ack(self.idx, &path, pos);
        }
    }

    async fn flush(&mut self, batch: &mut Batch) {
        let b = std::mem::take(batch);
        if b.is_empty() {
            self.settle().await;
            let mut b = b;
            self.ack(&mut b);
            return;
        }
        let entries = b.entries;
        let bytes = b.bytes;
        let req = proto::PushRequest {
            streams: b
                .streams
                .into_iter()
                .map(|(labels, entries)| proto::Stream {
                    labels: labels.to_string(),
                    entries,
                    hash: 0,
                })
                .collect(),
        };
        let host = HostLabel {
            host: self.host.clone(),
        };
        let body = match proto::encode_push_request(&req) {
            Ok(b) => b,
            Err(e) => {
                error!(error = %e, "cannot encode a batch; dropping it");
                self.count_drop("encode_error", entries, bytes);
                let mut acks = Batch {
                    acks: b.acks,
                    ..Batch::default()
                };
                self.ack(&mut acks);
                return;
            }
        };
        drop(req);
        self.metrics
            .encoded_bytes
            .get_or_create(&host)
            .inc_by(body.len() as u64);
        self.metrics.pending_entries.get_or_create(&host).set(0);
        // One batch in flight while the next one fills; results are settled in order.
        self.settle().await;
        let pusher = Pusher {
            http: self.http.clone(),
            cfg: self.cfg.clone(),
            metrics: self.metrics.clone(),
            host: self.host.clone(),
            auth: self.auth.clone(),
            shutdown: self.shutdown.clone(),
        };
        let acks = b.acks;
        self.inflight = Some(tokio::spawn(async move {
            let outcome = pusher.push(body, entries).await;
            Done {
                outcome,
                acks,
                entries,
                bytes,
            }
        }));
    }

    /// Waits for the batch in flight, then counts it and records its positions.
    async fn settle(&mut self) {
        let Some(task) = self.inflight.take() else {
            return;
        };
        let res = task.await;
        self.finish(res);
    }

    /// Counts a finished push and records its positions (nothing after an abandoned one).
    fn finish(&mut self, res: Result<Done, tokio::task::JoinError>) {
        let Done {
            outcome,
            acks,
            entries,
            bytes,
        } = match res {
            Ok(d) => d,
            Err(e) => {
                error!(error = %e, "push task failed; nothing after it is acknowledged");
                self.abandoned = true;
                return;
            }
        };
        let host = HostLabel {
            host: self.host.clone(),
        };
        match outcome {
            Outcome::Sent => {
                self.metrics
                    .sent_bytes
                    .get_or_create(&host)
                    .inc_by(bytes as u64);
                self.metrics
                    .sent_entries
                    .get_or_create(&host)
                    .inc_by(entries as u64);
            }
            Outcome::Dropped(reason) => self.count_drop(reason, entries, bytes),
            Outcome::Abandoned => {
                self.abandoned = true;
                return;
            }
        }
        let mut acks = Batch {
            acks,
            ..Batch::default()
        };
        self.ack(&mut acks);
        // Record the new positions now, so a crash duplicates at most the batch in flight.
        if let Err(e) = self.positions.save_fast() {
            warn!(error = %e, "saving positions failed");
        }
    }

    fn count_drop(&self, reason: &str, entries: usize, bytes: usize) {
        let l = DropLabels {
            host: self.host.clone(),
            reason: reason.to_string(),
        };
        self.metrics
            .dropped_entries
            .get_or_create(&l)
            .inc_by(entries as u64);
        self.metrics
            .dropped_bytes
            .get_or_create(&l)
            .inc_by(bytes as u64);
    }
}

/// What a push needs, cloned into the task that sends one batch while the next one fills.
#[derive(Clone)]
struct Pusher {
    http: reqwest::Client,
    cfg: ClientConfig,
    metrics: AgentMetrics,
    host: String,
    auth: Option<String>,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

enum Ev {
    Items(Option<Vec<Item>>),
    Deadline,
    Pushed(Result<Done, tokio::task::JoinError>),
}

/// A finished push.
pub(crate) struct Done {
    outcome: Outcome,
    acks: BTreeMap<Arc<str>, u64>,
    entries: usize,
    bytes: usize,
}

impl Pusher {
    async fn push(&self, body: Vec<u8>, entries: usize) -> Outcome {
        let backoff = &self.cfg.backoff_config;
        let mut delay = backoff.min_period.0.max(Duration::from_millis(1));
        let max_delay = backoff.max_period.0.max(delay);
        let mut attempt: u32 = 0;
        loop {
            let started = Instant::now();
            let mut req = self
                .http
                .post(&self.cfg.url)
                .header("Content-Type", "application/x-protobuf")
                .header(
                    "User-Agent",
                    concat!("lookout-agent/", env!("CARGO_PKG_VERSION")),
                )
                .timeout(self.cfg.timeout.0)
                .body(body.clone());
            if !self.cfg.tenant_id.is_empty() {
                req = req.header("X-Scope-OrgID", &self.cfg.tenant_id);
            }
            if let Some(a) = &self.auth {
                req = req.header("Authorization", a);
            }
            for (k, v) in &self.cfg.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let res = req.send().await;
            let (status, retry, reason) = match res {
                Ok(r) => {
                    let st = r.status();
                    let code = st.as_u16();
                    if st.is_success() {
                        self.observe(code.to_string(), started);
                        return Outcome::Sent;
                    }
                    let text = r.text().await.unwrap_or_default();
                    let text: String = text.chars().take(512).collect();
                    self.observe(code.to_string(), started);
                    if code == 429 {
                        if self.cfg.drop_rate_limited_batches {
                            warn!(host = %self.host, entries, "server rate-limited the batch (429); dropping it as configured: {text}");
                            return Outcome::Dropped("rate_limited");
                        }
                        (code.to_string(), true, text)
                    } else if st.is_server_error() {
                        (code.to_string(), true, text)
                    } else {
                        error!(host = %self.host, status = code, entries, "server rejected the batch; dropping it: {text}");
                        return Outcome::Dropped(if code == 400 {
                            "rejected_400"
                        } else {
                            "rejected_4xx"
                        });
                    }
                }
                Err(e) => {
                    self.observe("error".into(), started);
                    ("error".to_string(), true, e.to_string())
                }
            };
            let _ = retry;
            attempt += 1;
            if backoff.max_retries > 0 && attempt > backoff.max_retries {
                error!(host = %self.host, entries, attempts = attempt, last_status = %status, "giving up on a batch after retries: {reason}");
                return Outcome::Dropped("retries_exhausted");
            }
            let stopping = *self.shutdown.borrow();
            if stopping {
                warn!(host = %self.host, entries, "stopping with an undelivered batch; it is read again on the next start");
                return Outcome::Abandoned;
            }
            self.metrics
                .batch_retries
                .get_or_create(&HostLabel {
                    host: self.host.clone(),
                })
                .inc();
            warn!(host = %self.host, status = %status, attempt, retry_in = ?delay, "push failed, retrying: {reason}");
            let mut sd = self.shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = sd.wait_for(|s| *s) => {
                    warn!(host = %self.host, entries, "stopping with an undelivered batch; it is read again on the next start");
                    return Outcome::Abandoned;
                }
            }
            delay = (delay * 2).min(max_delay);
        }
    }

    fn observe(&self, status: String, started: Instant) {
        self.metrics
            .request_duration
            .get_or_create(&RequestLabels {
                host: self.host.clone(),
                status_code: status,
            })
            .observe(started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_escapes() {
        let l = BTreeMap::from([
            ("a".to_string(), "x\"y".to_string()),
            ("b".to_string(), "1\\2\n".to_string()),
        ]);
        assert_eq!(selector(&l), r#"{a="x\"y", b="1\\2\n"}"#);
        assert_eq!(selector(&BTreeMap::new()), "{}");
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }
}
