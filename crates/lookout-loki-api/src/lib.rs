//! Loki's HTTP API over [`lookout_logstore::Tenants`]: `POST /loki/api/v1/push` (snappy
//! protobuf or JSON, gzip/deflate), `query`, `query_range`, `labels`, `label/{name}/values`,
//! `series`, `index/stats`, `tail` (WebSocket), `/ready`. Responses use Loki's JSON shapes;
//! errors are plain text with Loki's status codes (400 bad request or limit, 429 rate limit,
//! 504 timeout). The tenant is `X-Scope-OrgID` (`fake` when absent, as Loki without auth).

// Handlers' helpers return the error response itself; it is built once per failed request.
#![allow(clippy::result_large_err)]

mod params;

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lookout_logql::{LogqlEngine, LogqlError, QueryValue};
use lookout_logstore::{LogStore, PushStream, QueryStats, QueryStatsSnapshot, Tenants};
use lookout_storage::logs::{Direction, LogEntry, LogQueryable, LogSelectParams, LogSink};
use lookout_storage::{Labels, Matcher, StorageError};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use tracing::{debug, warn};

use params::{Params, parse_urlencoded};
pub use params::{format_value, parse_duration, parse_labels, parse_time};

/// Ingestion and query limits (defaults are Loki's).
#[derive(Clone, Debug)]
pub struct LokiLimits {
    /// Per-tenant sustained ingestion rate in bytes per second (Loki: 4 MB).
    pub ingestion_rate_bytes: f64,
    /// Burst allowance in bytes (Loki: 6 MB).
    pub ingestion_burst_bytes: f64,
    /// Largest request body, compressed and decompressed.
    pub max_body_bytes: usize,
    /// Queries evaluated at once per process; more wait.
    pub max_concurrent_queries: usize,
    /// Default `limit` of log queries.
    pub default_limit: usize,
    /// Polling period of `/tail`.
    pub tail_period: Duration,
}

impl Default for LokiLimits {
    fn default() -> Self {
        LokiLimits {
            ingestion_rate_bytes: 4.0 * 1024.0 * 1024.0,
            ingestion_burst_bytes: 6.0 * 1024.0 * 1024.0,
            max_body_bytes: 64 << 20,
            max_concurrent_queries: 16,
            default_limit: 100,
            tail_period: Duration::from_secs(1),
        }
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

pub struct LokiApi {
    pub tenants: Arc<Tenants>,
    pub engine: Arc<LogqlEngine>,
    pub limits: LokiLimits,
    buckets: Mutex<HashMap<String, Bucket>>,
    queries: Arc<tokio::sync::Semaphore>,
}

impl LokiApi {
    pub fn new(tenants: Arc<Tenants>, engine: LogqlEngine, limits: LokiLimits) -> Arc<LokiApi> {
        Arc::new(LokiApi {
            tenants,
            engine: Arc::new(engine),
            queries: Arc::new(tokio::sync::Semaphore::new(
                limits.max_concurrent_queries.max(1),
            )),
            limits,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes `bytes` from the tenant's token bucket; false when over the rate.
    fn admit(&self, tenant: &str, bytes: usize) -> bool {
        let mut b = self.buckets.lock();
        let now = Instant::now();
        let bucket = b.entry(tenant.to_string()).or_insert(Bucket {
            tokens: self.limits.ingestion_burst_bytes,
            last: now,
        });
        let refill =
            now.duration_since(bucket.last).as_secs_f64() * self.limits.ingestion_rate_bytes;
        bucket.tokens = (bucket.tokens + refill).min(self.limits.ingestion_burst_bytes);
        bucket.last = now;
        if bucket.tokens >= bytes as f64 {
            bucket.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }
}

/// The router; mount it at the root (paths include `/loki/api/v1`).
pub fn router(api: Arc<LokiApi>) -> Router {
    let body_limit = api.limits.max_body_bytes;
    Router::new()
        .route("/loki/api/v1/push", post(push))
        .route("/api/prom/push", post(push))
        .route("/loki/api/v1/query", get(query).post(query))
        .route(
            "/loki/api/v1/query_range",
            get(query_range).post(query_range),
        )
        .route("/loki/api/v1/labels", get(labels).post(labels))
        .route("/loki/api/v1/label", get(labels))
        .route(
            "/loki/api/v1/label/{name}/values",
            get(label_values).post(label_values),
        )
        .route("/loki/api/v1/series", get(series).post(series))
        .route(
            "/loki/api/v1/index/stats",
            get(index_stats).post(index_stats),
        )
        .route("/loki/api/v1/tail", get(tail))
        .route("/loki/api/v1/status/buildinfo", get(buildinfo))
        .route("/ready", get(ready))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(api)
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut m = msg.into();
    m.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        m,
    )
        .into_response()
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn tenant_of(headers: &HeaderMap) -> Result<String, Response> {
    match headers.get("x-scope-orgid") {
        None => Ok(lookout_logstore::DEFAULT_TENANT.to_string()),
        Some(v) => {
            let t = v.to_str().unwrap_or("").trim();
            if t.contains('|') {
                return Err(text(
                    StatusCode::BAD_REQUEST,
                    "multiple tenants are not supported",
                ));
            }
            if Tenants::valid_tenant(t) {
                Ok(t.to_string())
            } else {
                Err(text(
                    StatusCode::BAD_REQUEST,
                    format!("invalid tenant ID {t:?}"),
                ))
            }
        }
    }
}

fn store_for(api: &LokiApi, headers: &HeaderMap) -> Result<Arc<LogStore>, Response> {
    let t = tenant_of(headers)?;
    api.tenants
        .get(&t)
        .map_err(|e| text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

// ---------------------------------------------------------------- push

fn decompress(headers: &HeaderMap, body: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let enc = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let mut out = Vec::new();
    let res = match enc.as_str() {
        "" | "identity" => return Ok(body.to_vec()),
        "gzip" => flate2::read::GzDecoder::new(body)
            .take(limit as u64 + 1)
            .read_to_end(&mut out),
        "deflate" => flate2::read::ZlibDecoder::new(body)
            .take(limit as u64 + 1)
            .read_to_end(&mut out),
        other => return Err(format!("unsupported Content-Encoding {other:?}")),
    };
    res.map_err(|e| format!("cannot decompress the {enc} body: {e}"))?;
    if out.len() > limit {
        return Err(format!(
            "decompressed body exceeds the limit of {limit} bytes"
        ));
    }
    Ok(out)
}

/// Decodes a JSON push body into `(labels text, entries)`.
fn decode_json_push(body: &[u8]) -> Result<Vec<(Labels, Vec<LogEntry>)>, String> {
    let mut v: Value =
        serde_json::from_slice(body).map_err(|e| format!("error parsing the JSON body: {e}"))?;
    let streams = v
        .get_mut("streams")
        .and_then(Value::as_array_mut)
        .ok_or("error parsing the JSON body: missing \"streams\" array")?;
    let mut out = Vec::with_capacity(streams.len());
    for s in streams.iter_mut() {
        let labels_obj = s
            .get("stream")
            .or_else(|| s.get("labels"))
            .ok_or("error parsing the JSON body: a stream has no \"stream\" object")?;
        let labels = match labels_obj {
            Value::Object(m) => {
                let mut pairs = Vec::with_capacity(m.len());
                for (k, v) in m {
                    let v = v
                        .as_str()
                        .ok_or_else(|| format!("label {k:?} value is not a string"))?;
                    pairs.push((k.clone(), v.to_string()));
                }
                Labels::from_pairs(pairs)
            }
            Value::String(s) => parse_labels(s)?,
            _ => return Err("error parsing the JSON body: \"stream\" must be an object".into()),
        };
        let key = if s.get("values").is_some() {
            "values"
        } else {
            "entries"
        };
        let values = s
            .get_mut(key)
            .and_then(Value::as_array_mut)
            .ok_or("error parsing the JSON body: a stream has no \"values\" array")?;
        let mut entries = Vec::with_capacity(values.len());
        for v in values.iter_mut() {
            let arr = v
                .as_array_mut()
                .filter(|a| a.len() == 2 || a.len() == 3)
                .ok_or("error parsing the JSON body: each value must be [\"<ns>\", \"<line>\"] or [\"<ns>\", \"<line>\", {metadata}]")?;
            let ts = match &arr[0] {
                Value::String(s) => s
                    .parse::<i64>()
                    .map_err(|_| format!("error parsing the JSON body: invalid timestamp {s:?}"))?,
                Value::Number(n) => n
                    .as_i64()
                    .ok_or_else(|| format!("error parsing the JSON body: invalid timestamp {n}"))?,
                _ => return Err("error parsing the JSON body: timestamp must be a string".into()),
            };
            let line = match arr[1].take() {
                Value::String(l) => l,
                _ => {
                    return Err("error parsing the JSON body: the log line must be a string".into());
                }
            };
            let mut md = Vec::new();
            if let Some(m) = arr.get(2) {
                let m = m
                    .as_object()
                    .ok_or("error parsing the JSON body: structured metadata must be an object")?;
                for (k, v) in m {
                    let v = v.as_str().ok_or_else(|| {
                        format!("structured metadata {k:?} value is not a string")
                    })?;
                    md.push((k.clone(), v.to_string()));
                }
            }
            entries.push(LogEntry {
                ts_ns: ts,
                line,
                structured_metadata: md,
            });
        }
        out.push((labels, entries));
    }
    Ok(out)
}

fn decode_proto_push(body: &[u8], limit: usize) -> Result<Vec<(Labels, Vec<LogEntry>)>, String> {
    let req = lookout_loki_proto::decode_push_request(body, limit)
        .map_err(|e| format!("error decoding the push request: {e}"))?;
    let mut out = Vec::with_capacity(req.streams.len());
    for s in req.streams {
        let labels = parse_labels(&s.labels)?;
        let entries = s
            .entries
            .into_iter()
            .map(|e| LogEntry {
                ts_ns: e.timestamp.map_or(0, |t| t.to_unix_nanos()),
                line: e.line,
                structured_metadata: e
                    .structured_metadata
                    .into_iter()
                    .map(|p| (p.name, p.value))
                    .collect(),
            })
            .collect();
        out.push((labels, entries));
    }
    Ok(out)
}

async fn push(State(api): State<Arc<LokiApi>>, headers: HeaderMap, body: Bytes) -> Response {
    let tenant = match tenant_of(&headers) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let limit = api.limits.max_body_bytes;
    let raw = match decompress(&headers, &body, limit) {
        Ok(b) => b,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let decoded = if ctype.starts_with("application/json") {
        decode_json_push(&raw)
    } else {
        decode_proto_push(&raw, limit)
    };
    let streams = match decoded {
        Ok(s) => s,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let bytes: usize = streams
        .iter()
        .flat_map(|(_, es)| es.iter().map(|e| e.line.len()))
        .sum();
    let lines: usize = streams.iter().map(|(_, es)| es.len()).sum();
    if !api.admit(&tenant, bytes) {
        return text(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Ingestion rate limit exceeded for user {tenant} (limit: {} bytes/sec) while attempting to ingest '{lines}' lines totaling '{bytes}' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased",
                api.limits.ingestion_rate_bytes as u64
            ),
        );
    }
    let store = match api.tenants.get(&tenant) {
        Ok(s) => s,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut errors: Vec<String> = Vec::new();
    let mut valid = Vec::with_capacity(streams.len());
    for (labels, entries) in streams {
        match store.validate_labels(&labels) {
            Ok(()) => valid.push(PushStream { labels, entries }),
            Err(e) => errors.push(e),
        }
    }
    let res = tokio::task::spawn_blocking(move || store.push(valid)).await;
    match res {
        Ok(Ok(outcome)) => {
            errors.extend(outcome.rejected.iter().map(ToString::to_string));
        }
        Ok(Err(e)) => {
            warn!(error = %e, "log push failed");
            return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
    if errors.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    // Loki reports the refused entries (the others are stored) with 400.
    let n = errors.len();
    errors.truncate(10);
    let mut msg = errors.join("\n");
    if n > 10 {
        msg.push_str(&format!(
            "\nuser '{tenant}', total ignored: {n} out of {lines}"
        ));
    }
    text(StatusCode::BAD_REQUEST, msg)
}

// ---------------------------------------------------------------- queries

/// Query string plus (for POST) the urlencoded form body.
struct Req {
    params: Params,
    headers: HeaderMap,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Req {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let RawQuery(q) = RawQuery::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let mut params = parse_urlencoded(q.as_deref().unwrap_or(""));
        let form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        if form {
            let b = axum::body::to_bytes(body, 1 << 20)
                .await
                .map_err(|e| text(StatusCode::BAD_REQUEST, e.to_string()))?;
            params.extend(parse_urlencoded(&String::from_utf8_lossy(&b)));
        }
        Ok(Req {
            params: Params(params),
            headers: parts.headers,
        })
    }
}

fn bad(msg: impl Into<String>) -> Response {
    text(StatusCode::BAD_REQUEST, msg)
}

fn time_param(p: &Params, name: &str, default: i64) -> Result<i64, Response> {
    match p.get(name) {
        None => Ok(default),
        Some(v) => parse_time(v).map_err(|e| bad(format!("invalid {name}: {e}"))),
    }
}

/// `[start, end]` of a range request: `start`/`end`, or `since` before `end`; default the last
/// hour.
fn range_params(p: &Params) -> Result<(i64, i64), Response> {
    let end = time_param(p, "end", now_ns())?;
    let since = match p.get("since") {
        Some(s) => parse_duration(s).map_err(bad)?,
        None => Duration::from_secs(3600),
    };
    let start = time_param(p, "start", end - since.as_nanos() as i64)?;
    if end < start {
        return Err(bad(
            "end timestamp must not be before or equal to start time",
        ));
    }
    Ok((start, end))
}

fn engine_error(e: LogqlError) -> Response {
    use lookout_logql::ErrorKind;
    let status = match e.kind() {
        ErrorKind::BadData | ErrorKind::Limits | ErrorKind::Execution => StatusCode::BAD_REQUEST,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    text(status, e.to_string())
}

/// Collects what the store reads for the engine, for the `stats` block.
struct Counting<'a> {
    inner: &'a LogStore,
    stats: QueryStats,
}

impl LogQueryable for Counting<'_> {
    fn select_logs(
        &self,
        params: &LogSelectParams<'_>,
        sink: &mut LogSink<'_>,
    ) -> Result<(), StorageError> {
        self.inner.select_logs_with_stats(params, sink, &self.stats)
    }
    fn log_series(&self, m: &[Matcher], s: i64, e: i64) -> Result<Vec<Labels>, StorageError> {
        self.inner.log_series(m, s, e)
    }
    fn log_label_names(&self, m: &[Matcher], s: i64, e: i64) -> Result<Vec<String>, StorageError> {
        self.inner.log_label_names(m, s, e)
    }
    fn log_label_values(
        &self,
        n: &str,
        m: &[Matcher],
        s: i64,
        e: i64,
    ) -> Result<Vec<String>, StorageError> {
        self.inner.log_label_values(n, m, s, e)
    }
}

/// Loki's `stats` object. Everything is read by this process, so the store figures appear
/// under `querier`; `ingester` stays zero. `totalChunksSkippedByFilter` is Lookout's own (chunks
/// whose substring filter ruled out a `|=` needle).
fn stats_json(st: &QueryStatsSnapshot, exec: Duration, returned: usize) -> Value {
    let secs = exec.as_secs_f64().max(1e-9);
    let bytes = st.decompressed_bytes + st.head_bytes;
    let lines = st.decompressed_lines + st.head_lines;
    let zero_chunk = json!({"headChunkBytes": 0, "headChunkLines": 0, "decompressedBytes": 0,
        "decompressedLines": 0, "compressedBytes": 0, "totalDuplicates": 0,
        "postFilterLines": 0, "headChunkStructuredMetadataBytes": 0,
        "decompressedStructuredMetadataBytes": 0});
    json!({
        "summary": {
            "bytesProcessedPerSecond": (bytes as f64 / secs) as u64,
            "linesProcessedPerSecond": (lines as f64 / secs) as u64,
            "totalBytesProcessed": bytes,
            "totalLinesProcessed": lines,
            "execTime": exec.as_secs_f64(),
            "queueTime": 0,
            "subqueries": 0,
            "totalEntriesReturned": returned,
            "splits": 0,
            "shards": 0,
            "totalPostFilterLines": st.post_filter_lines,
            "totalStructuredMetadataBytesProcessed": 0
        },
        "querier": {"store": {
            "totalChunksRef": st.chunks_ref,
            "totalChunksDownloaded": st.chunks_downloaded,
            "totalChunksSkippedByFilter": st.chunks_skipped_by_filter,
            "chunksDownloadTime": 0,
            "queryReferencedStructuredMetadata": false,
            "chunk": {"headChunkBytes": st.head_bytes, "headChunkLines": st.head_lines,
                      "decompressedBytes": st.decompressed_bytes,
                      "decompressedLines": st.decompressed_lines,
                      "compressedBytes": st.compressed_bytes, "totalDuplicates": 0,
                      "postFilterLines": st.post_filter_lines,
                      "headChunkStructuredMetadataBytes": 0,
                      "decompressedStructuredMetadataBytes": 0}
        }},
        "ingester": {"totalReached": 0, "totalChunksMatched": 0, "totalBatches": 0, "totalLinesSent": 0,
            "store": {"totalChunksRef": 0, "totalChunksDownloaded": 0, "chunksDownloadTime": 0,
                "queryReferencedStructuredMetadata": false, "chunk": zero_chunk}},
        "cache": {}
    })
}

fn labels_obj<'a>(it: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    let mut m = Map::new();
    for (k, v) in it {
        m.insert(k.to_string(), Value::String(v.to_string()));
    }
    Value::Object(m)
}

fn ts_secs(ns: i64) -> Value {
    // Loki prints sample times as float seconds (millisecond precision).
    let ms = ns.div_euclid(1_000_000);
    serde_json::Number::from_f64(ms as f64 / 1000.0).map_or(Value::Null, Value::Number)
}

/// Loki's `data` object for a query result.
pub fn result_json(v: &QueryValue) -> (Value, usize) {
    match v {
        QueryValue::Streams(ss) => {
            let n = ss.iter().map(|s| s.entries.len()).sum();
            let result: Vec<Value> = ss
                .iter()
                .map(|s| {
                    json!({
                        "stream": labels_obj(s.labels.iter()),
                        "values": s.entries.iter().map(|e| json!([e.ts_ns.to_string(), e.line])).collect::<Vec<_>>()
                    })
                })
                .collect();
            (json!({"resultType": "streams", "result": result}), n)
        }
        QueryValue::Vector(vs) => {
            let result: Vec<Value> = vs
                .iter()
                .map(|s| json!({"metric": labels_obj(s.labels.iter()), "value": [ts_secs(s.t_ns), format_value(s.v)]}))
                .collect();
            (json!({"resultType": "vector", "result": result}), vs.len())
        }
        QueryValue::Matrix(ms) => {
            let result: Vec<Value> = ms
                .iter()
                .map(|s| {
                    json!({
                        "metric": labels_obj(s.labels.iter()),
                        "values": s.points.iter().map(|(t, v)| json!([ts_secs(*t), format_value(*v)])).collect::<Vec<_>>()
                    })
                })
                .collect();
            (json!({"resultType": "matrix", "result": result}), ms.len())
        }
        QueryValue::Scalar { t_ns, v } => (
            json!({"resultType": "scalar", "result": [ts_secs(*t_ns), format_value(*v)]}),
            1,
        ),
    }
}

fn direction_param(p: &Params) -> Result<Direction, Response> {
    match p.get("direction").map(str::to_ascii_lowercase).as_deref() {
        None | Some("backward") => Ok(Direction::Backward),
        Some("forward") => Ok(Direction::Forward),
        Some(o) => Err(bad(format!(
            "invalid direction {o:?}: expected forward or backward"
        ))),
    }
}

fn limit_param(api: &LokiApi, p: &Params) -> Result<usize, Response> {
    match p.get("limit") {
        None => Ok(api.limits.default_limit),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|&l| l > 0)
            .ok_or_else(|| bad("limit must be a positive value")),
    }
}

enum Kind {
    Instant(i64),
    Range {
        start: i64,
        end: i64,
        step: Duration,
        interval: Option<Duration>,
    },
}

async fn run_query(api: Arc<LokiApi>, req: Req, kind: Kind) -> Response {
    let store = match store_for(&api, &req.headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(q) = req.params.get("query").map(str::to_string) else {
        return bad("query parameter is required");
    };
    let direction = match direction_param(&req.params) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let limit = match limit_param(&api, &req.params) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let Ok(_permit) = api.queries.clone().acquire_owned().await else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    let engine = api.engine.clone();
    let started = Instant::now();
    let res = tokio::task::spawn_blocking(move || {
        let counting = Counting {
            inner: store.as_ref(),
            stats: QueryStats::default(),
        };
        let r = match kind {
            Kind::Instant(t) => {
                // Loki answers an instant log query over the `limit` entries before `time`.
                match lookout_logql::parse(&q) {
                    Ok(lookout_logql::Expr::Log(_)) => engine.query_range(
                        &counting,
                        &q,
                        t - 3_600_000_000_000,
                        t,
                        Duration::from_secs(1),
                        None,
                        direction,
                        limit,
                    ),
                    _ => engine.query_instant(&counting, &q, t),
                }
            }
            Kind::Range {
                start,
                end,
                step,
                interval,
            } => engine.query_range(&counting, &q, start, end, step, interval, direction, limit),
        };
        (r, counting.stats.snapshot())
    })
    .await;
    let (r, stats) = match res {
        Ok(x) => x,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    match r {
        Ok(v) => {
            let (mut data, returned) = result_json(&v);
            data["stats"] = stats_json(&stats, started.elapsed(), returned);
            debug!(?stats, "loki query done");
            axum::Json(json!({"status": "success", "data": data})).into_response()
        }
        Err(e) => engine_error(e),
    }
}

async fn query(State(api): State<Arc<LokiApi>>, req: Req) -> Response {
    let t = match time_param(&req.params, "time", now_ns()) {
        Ok(t) => t,
        Err(r) => return r,
    };
    run_query(api, req, Kind::Instant(t)).await
}

async fn query_range(State(api): State<Arc<LokiApi>>, req: Req) -> Response {
    let (start, end) = match range_params(&req.params) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let step = match req.params.get("step") {
        Some(s) => match parse_duration(s) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                return bad(
                    "zero or negative query resolution step widths are not accepted. Try a positive integer",
                );
            }
            Err(e) => return bad(format!("invalid step: {e}")),
        },
        // Loki's default: range / 250, at least a second.
        None => Duration::from_secs(((end - start) / 250 / 1_000_000_000).max(1) as u64),
    };
    let interval = match req.params.get("interval").map(parse_duration) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => return bad(format!("invalid interval: {e}")),
    };
    run_query(
        api,
        req,
        Kind::Range {
            start,
            end,
            step,
            interval,
        },
    )
    .await
}

/// Stream matchers of the `query` (or `match[]`) selector parameters.
fn selector_matchers(sel: &str) -> Result<Vec<Matcher>, Response> {
    match lookout_logql::parse(sel) {
        Ok(lookout_logql::Expr::Log(l)) => Ok(l.matchers),
        Ok(_) => Err(bad(format!("{sel:?} is not a stream selector"))),
        Err(e) => Err(bad(e.to_string())),
    }
}

async fn meta<T: Send + 'static>(
    store: Arc<LogStore>,
    f: impl FnOnce(&LogStore) -> Result<T, StorageError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(e) => Err(text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

fn success(data: Value) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

async fn labels(State(api): State<Arc<LokiApi>>, req: Req) -> Response {
    let go = async {
        let store = store_for(&api, &req.headers)?;
        let (s, e) = range_params(&req.params)?;
        let m = match req.params.get("query") {
            Some(q) => selector_matchers(q)?,
            None => Vec::new(),
        };
        let names = meta(store, move |st| st.log_label_names(&m, s, e + 1)).await?;
        Ok::<_, Response>(success(json!(names)))
    };
    go.await.unwrap_or_else(|r| r)
}

async fn label_values(
    State(api): State<Arc<LokiApi>>,
    Path(name): Path<String>,
    req: Req,
) -> Response {
    let go = async {
        let store = store_for(&api, &req.headers)?;
        let (s, e) = range_params(&req.params)?;
        let m = match req.params.get("query") {
            Some(q) => selector_matchers(q)?,
            None => Vec::new(),
        };
        let vals = meta(store, move |st| st.log_label_values(&name, &m, s, e + 1)).await?;
        Ok::<_, Response>(success(json!(vals)))
    };
    go.await.unwrap_or_else(|r| r)
}

async fn series(State(api): State<Arc<LokiApi>>, req: Req) -> Response {
    let go = async {
        let store = store_for(&api, &req.headers)?;
        let (s, e) = range_params(&req.params)?;
        let sels = req.params.all("match[]");
        let sels = if sels.is_empty() {
            req.params.all("match")
        } else {
            sels
        };
        let mut sets = Vec::new();
        for sel in &sels {
            sets.push(selector_matchers(sel)?);
        }
        if sets.is_empty() {
            sets.push(Vec::new());
        }
        let found = meta(store, move |st| {
            let mut all = std::collections::BTreeSet::new();
            for m in &sets {
                all.extend(st.log_series(m, s, e + 1)?);
            }
            Ok(all)
        })
        .await?;
        let data: Vec<Value> = found
            .iter()
            .map(|l| labels_obj(l.iter().map(|x| (x.name.as_str(), x.value.as_str()))))
            .collect();
        Ok::<_, Response>(success(json!(data)))
    };
    go.await.unwrap_or_else(|r| r)
}

async fn index_stats(State(api): State<Arc<LokiApi>>, req: Req) -> Response {
    let go = async {
        let store = store_for(&api, &req.headers)?;
        let (s, e) = range_params(&req.params)?;
        let q = req
            .params
            .get("query")
            .ok_or_else(|| bad("query parameter is required"))?;
        let m = selector_matchers(q)?;
        let st = meta(store, move |st| Ok(st.stats(&m, s, e + 1))).await?;
        Ok::<_, Response>(
            axum::Json(json!({
                "streams": st.streams, "chunks": st.chunks, "bytes": st.bytes, "entries": st.entries
            }))
            .into_response(),
        )
    };
    go.await.unwrap_or_else(|r| r)
}

async fn ready() -> Response {
    text(StatusCode::OK, "ready")
}

async fn buildinfo() -> Response {
    axum::Json(json!({
        "version": "3.5.0",
        "revision": "lookout",
        "branch": "main",
        "buildUser": "lookout",
        "buildDate": "unknown",
        "goVersion": format!("rust (lookout {})", env!("CARGO_PKG_VERSION"))
    }))
    .into_response()
}

// ---------------------------------------------------------------- tail

async fn tail(State(api): State<Arc<LokiApi>>, ws: WebSocketUpgrade, req: Req) -> Response {
    let store = match store_for(&api, &req.headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(q) = req.params.get("query").map(str::to_string) else {
        return bad("query parameter is required");
    };
    match lookout_logql::parse(&q) {
        Ok(lookout_logql::Expr::Log(_)) => {}
        Ok(_) => return bad("tail requires a log query"),
        Err(e) => return bad(e.to_string()),
    }
    let limit = match limit_param(&api, &req.params) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let delay = match req.params.get("delay_for").map(|d| d.parse::<u64>()) {
        None => 0,
        Some(Ok(d)) if d <= 5 => d,
        Some(_) => return bad("delay_for can't be greater than 5"),
    };
    let start = match time_param(&req.params, "start", now_ns() - 3_600_000_000_000) {
        Ok(s) => s,
        Err(r) => return r,
    };
    ws.on_upgrade(move |socket| tail_loop(api, store, socket, q, start, limit, delay))
}

/// Polls the store every `tail_period` and sends entries newer than the last ones sent, as
/// Loki's tail messages (`{"streams":[...],"dropped_entries":null}`).
async fn tail_loop(
    api: Arc<LokiApi>,
    store: Arc<LogStore>,
    mut socket: WebSocket,
    query: String,
    start: i64,
    limit: usize,
    delay_s: u64,
) {
    let mut from = start;
    // Entries already sent at exactly `from` (timestamp ties).
    let mut sent_at_from: std::collections::HashSet<(String, String)> = Default::default();
    let mut first = true;
    loop {
        let end = now_ns() - (delay_s as i64) * 1_000_000_000;
        if end > from {
            let engine = api.engine.clone();
            let st = store.clone();
            let q = query.clone();
            let lim = if first {
                limit
            } else {
                limit.max(5000).min(engine.options().max_entries_limit)
            };
            let r = tokio::task::spawn_blocking(move || {
                engine.query_range(
                    st.as_ref(),
                    &q,
                    from,
                    end,
                    Duration::from_secs(1),
                    None,
                    Direction::Forward,
                    lim,
                )
            })
            .await;
            let streams = match r {
                Ok(Ok(QueryValue::Streams(s))) => s,
                Ok(Err(e)) => {
                    let _ = socket.send(Message::Close(None)).await;
                    warn!(error = %e, "tail query failed");
                    return;
                }
                _ => return,
            };
            let mut out = Vec::new();
            let mut newest = from;
            let mut at_newest = std::collections::HashSet::new();
            for s in streams {
                let key = s.labels.to_string();
                let vals: Vec<Value> = s
                    .entries
                    .iter()
                    .filter(|e| {
                        !(e.ts_ns == from && sent_at_from.contains(&(key.clone(), e.line.clone())))
                    })
                    .map(|e| {
                        if e.ts_ns > newest {
                            newest = e.ts_ns;
                            at_newest.clear();
                        }
                        if e.ts_ns == newest {
                            at_newest.insert((key.clone(), e.line.clone()));
                        }
                        json!([e.ts_ns.to_string(), e.line])
                    })
                    .collect();
                if !vals.is_empty() {
                    out.push(json!({"stream": labels_obj(s.labels.iter()), "values": vals}));
                }
            }
            if !out.is_empty() {
                let msg = json!({"streams": out, "dropped_entries": null}).to_string();
                if socket.send(Message::Text(msg.into())).await.is_err() {
                    return;
                }
                if newest > from {
                    sent_at_from = at_newest;
                } else {
                    sent_at_from.extend(at_newest);
                }
                from = newest;
            }
            first = false;
        }
        tokio::select! {
            _ = tokio::time::sleep(api.limits.tail_period) => {}
            m = socket.recv() => match m {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                _ => {}
            }
        }
    }
}
