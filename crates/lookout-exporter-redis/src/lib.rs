//! A Redis collector that prints what redis_exporter 1.45 prints (same names, labels, HELP
//! texts), so dashboards and alerts written for the real exporter work unchanged.
//!
//! - [`RedisCollector`] scrapes one server (`INFO ALL`, `CONFIG GET`, `SLOWLOG`, `LATENCY
//!   LATEST`) over a cached multiplexed connection from the `redis` crate, re-connecting after
//!   any error. Every scrape has a deadline; an unreachable, slow or refusing server yields
//!   `redis_up 0` and `redis_exporter_last_scrape_error{err=...} 1`, never an HTTP error.
//! - [`RedisExporter`] adds the exporter's own metrics and multi-target scraping
//!   (`/scrape?target=host:port`, as redis_exporter offers); [`router`] serves it with axum.
//! - Output is [`Families`] from `lookout-exposition`, always in the text format 0.0.4 whatever
//!   the `Accept` header asks, as the real redis_exporter serves it (its metrics, e.g. counters
//!   without `_total`, are not valid OpenMetrics).

mod info;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lookout_exposition::{Format, MetricType};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, IntoConnectionInfo, Value};

pub use info::{Limits, config_to_families, info_to_families, parse_value};
pub use lookout_exposition::families::{Families, Family, Sample};

/// Default listen address of redis_exporter.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9121";
/// Default Redis address.
pub const DEFAULT_REDIS_ADDR: &str = "redis://127.0.0.1:6379";

/// Errors building a collector.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid Redis address {addr:?}: {reason}")]
    Addr { addr: String, reason: String },
}

/// What and how to scrape.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// `redis://[user:pass@]host:port[/db]`, `rediss://...` (TLS; crate feature `tls`, on by
    /// default),
    /// `unix:///path/to/socket`, or a bare `host:port`.
    pub addr: String,
    /// ACL user (overrides one in the URL).
    pub user: Option<String>,
    /// Password (overrides one in the URL).
    pub password: Option<String>,
    /// Deadline of one scrape, connecting included.
    pub timeout: Duration,
    /// Name the connection `CLIENT SETNAME lookout_exporter`.
    pub set_client_name: bool,
    /// Label-cardinality bounds.
    pub limits: Limits,
    /// Most distinct `/scrape?target=` servers kept connected at once.
    pub max_targets: usize,
    /// `rediss://`: the CA (PEM) that signed the server's certificate, instead of the system
    /// and webpki roots.
    pub tls_ca_cert: Option<PathBuf>,
    /// `rediss://`: client certificate and key (PEM) for servers that ask for one.
    pub tls_client_cert: Option<PathBuf>,
    pub tls_client_key: Option<PathBuf>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            addr: DEFAULT_REDIS_ADDR.to_string(),
            user: None,
            password: None,
            timeout: Duration::from_secs(5),
            set_client_name: true,
            limits: Limits::default(),
            max_targets: 256,
            tls_ca_cert: None,
            tls_client_cert: None,
            tls_client_key: None,
        }
    }
}

/// `host:port` becomes `redis://host:port`; URLs are kept.
pub fn normalize_addr(addr: &str) -> String {
    let addr = addr.trim();
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("redis://{addr}")
    }
}

#[derive(Default)]
struct ScrapeStats {
    scrapes: u64,
    duration_sum: f64,
}

/// Scrapes one Redis server.
pub struct RedisCollector {
    opts: RedisOptions,
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    stats: parking_lot::Mutex<ScrapeStats>,
}

/// The outcome of one scrape of the server (without the exporter's own metrics).
pub struct ScrapeResult {
    /// Metrics read from the server (empty when the scrape failed).
    pub families: Families,
    /// `None` on success, the error text otherwise.
    pub error: Option<String>,
    /// Seconds spent connecting (0 when a cached connection was used).
    pub connect_seconds: f64,
    /// Seconds the whole scrape took.
    pub duration_seconds: f64,
}

impl RedisCollector {
    /// Checks the address; connects lazily on the first scrape.
    pub fn new(opts: RedisOptions) -> Result<Self, Error> {
        let addr = normalize_addr(&opts.addr);
        let bad = |reason: String| Error::Addr {
            addr: addr.clone(),
            reason,
        };
        let mut conn_info = addr
            .as_str()
            .into_connection_info()
            .map_err(|e| bad(e.to_string()))?;
        let mut settings = conn_info.redis_settings().clone().set_skip_set_lib_name();
        if let Some(user) = &opts.user {
            settings = settings.set_username(user);
        }
        if let Some(pw) = &opts.password {
            settings = settings.set_password(pw);
        }
        conn_info = conn_info.set_redis_settings(settings);
        let custom_tls = opts.tls_ca_cert.is_some()
            || opts.tls_client_cert.is_some()
            || opts.tls_client_key.is_some();
        let client = if custom_tls {
            tls_client(conn_info, &opts).map_err(bad)?
        } else {
            redis::Client::open(conn_info).map_err(|e| bad(e.to_string()))?
        };
        Ok(RedisCollector {
            opts: RedisOptions { addr, ..opts },
            client,
            conn: tokio::sync::Mutex::new(None),
            stats: parking_lot::Mutex::new(ScrapeStats::default()),
        })
    }

    pub fn options(&self) -> &RedisOptions {
        &self.opts
    }

    /// Scrapes the server within the deadline. A failure (refused connection, wrong
    /// password, timeout, server gone mid-scrape) drops the cached connection so the next
    /// scrape reconnects.
    pub async fn scrape(&self) -> ScrapeResult {
        let start = Instant::now();
        let mut guard = self.conn.lock().await;
        let mut connect_seconds = 0.0;
        let deadline = self.opts.timeout;
        let outcome = tokio::time::timeout(
            deadline,
            self.scrape_inner(&mut guard, &mut connect_seconds),
        )
        .await;
        let (families, error) = match outcome {
            Ok(Ok(f)) => (f, None),
            Ok(Err(e)) => (Families::new(), Some(e.to_string())),
            Err(_) => (
                Families::new(),
                Some(format!("scrape timed out after {deadline:?}")),
            ),
        };
        if let Some(e) = &error {
            tracing::warn!(addr = %self.opts.addr, error = %e, "redis scrape failed");
            *guard = None;
        }
        ScrapeResult {
            families,
            error,
            connect_seconds,
            duration_seconds: start.elapsed().as_secs_f64(),
        }
    }

    async fn connection(
        &self,
        slot: &mut Option<MultiplexedConnection>,
        connect_seconds: &mut f64,
    ) -> redis::RedisResult<MultiplexedConnection> {
        if let Some(c) = slot {
            return Ok(c.clone());
        }
        let t = Instant::now();
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.opts.timeout))
            .set_response_timeout(Some(self.opts.timeout));
        let mut c = self
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await;
        *connect_seconds = t.elapsed().as_secs_f64();
        if let (Ok(conn), true) = (&mut c, self.opts.set_client_name) {
            let r: redis::RedisResult<Value> = redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg("lookout_exporter")
                .query_async(conn)
                .await;
            if let Err(e) = r {
                tracing::debug!(error = %e, "CLIENT SETNAME failed");
            }
        }
        let c = c?;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn scrape_inner(
        &self,
        slot: &mut Option<MultiplexedConnection>,
        connect_seconds: &mut f64,
    ) -> redis::RedisResult<Families> {
        let conn = self.connection(slot, connect_seconds).await?;
        let (config, info, slowlog_len, slowlog_last, latency) = tokio::join!(
            config_get(conn.clone()),
            info_all(conn.clone()),
            query::<i64>(conn.clone(), &["SLOWLOG", "LEN"]),
            query::<Value>(conn.clone(), &["SLOWLOG", "GET", "1"]),
            query::<Value>(conn.clone(), &["LATENCY", "LATEST"]),
        );
        // INFO is the one command that must work; the rest may be renamed or disabled.
        let info = info?;
        let mut f = Families::new();
        let mut db_count = match config {
            Ok(pairs) => config_to_families(&mut f, &pairs),
            Err(e) => {
                tracing::debug!(error = %e, "CONFIG GET failed");
                None
            }
        }
        .unwrap_or(16);
        if info.contains("cluster_enabled:1") {
            db_count = 1;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        f.extend(info_to_families(&info, db_count, self.opts.limits, now));
        if let Ok(len) = slowlog_len {
            f.add(
                "redis_slowlog_length",
                "Total slowlog",
                MetricType::Gauge,
                &[],
                len as f64,
            );
        }
        if let Ok(v) = slowlog_last {
            let (id, dur) = last_slowlog(&v);
            f.add(
                "redis_slowlog_last_id",
                "Last id of slowlog",
                MetricType::Gauge,
                &[],
                id,
            );
            f.add(
                "redis_last_slow_execution_duration_seconds",
                "The amount of time needed for last slow execution, in seconds",
                MetricType::Gauge,
                &[],
                dur,
            );
        }
        if let Ok(v) = latency {
            latency_latest(&mut f, &v, self.opts.limits.max_commands);
        }
        Ok(f)
    }

    /// One scrape plus the per-target exporter metrics (`redis_up`, scrape error, durations,
    /// scrape counter and summary).
    pub async fn collect(&self) -> Families {
        let r = self.scrape().await;
        let mut f = r.families;
        let (scrapes, sum) = {
            let mut s = self.stats.lock();
            s.scrapes += 1;
            s.duration_sum += r.duration_seconds;
            (s.scrapes, s.duration_sum)
        };
        let up = if r.error.is_none() { 1.0 } else { 0.0 };
        f.add(
            "redis_up",
            "Information about the Redis instance",
            MetricType::Gauge,
            &[],
            up,
        );
        f.add(
            "redis_exporter_last_scrape_error",
            "The last scrape error status.",
            MetricType::Gauge,
            &[("err", r.error.as_deref().unwrap_or(""))],
            1.0 - up,
        );
        f.add(
            "redis_exporter_last_scrape_duration_seconds",
            "exporter_last_scrape_duration_seconds metric",
            MetricType::Gauge,
            &[],
            r.duration_seconds,
        );
        f.add(
            "redis_exporter_last_scrape_connect_time_seconds",
            "exporter_last_scrape_connect_time_seconds metric",
            MetricType::Gauge,
            &[],
            r.connect_seconds,
        );
        f.add(
            "redis_exporter_scrapes_total",
            "Current total redis scrapes.",
            MetricType::Counter,
            &[],
            scrapes as f64,
        );
        f.add_summary(
            "redis_exporter_scrape_duration_seconds",
            "Durations of scrapes by the exporter",
            &[],
            &[],
            sum,
            scrapes as f64,
        );
        f
    }
}

/// A `rediss://` client trusting `tls_ca_cert` and presenting the client certificate.
#[cfg(feature = "tls")]
fn tls_client(info: redis::ConnectionInfo, o: &RedisOptions) -> Result<redis::Client, String> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let root_cert = o.tls_ca_cert.as_ref().map(read).transpose()?;
    let client_tls = match (&o.tls_client_cert, &o.tls_client_key) {
        (Some(c), Some(k)) => Some(redis::ClientTlsConfig {
            client_cert: read(c)?,
            client_key: read(k)?,
        }),
        (None, None) => None,
        _ => return Err("a TLS client certificate and key must be given together".into()),
    };
    redis::Client::build_with_tls(
        info,
        redis::TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(|e| e.to_string())
}

#[cfg(not(feature = "tls"))]
fn tls_client(_: redis::ConnectionInfo, _: &RedisOptions) -> Result<redis::Client, String> {
    Err("TLS options given, but this build has no TLS (crate feature `tls`)".into())
}

async fn query<T: redis::FromRedisValue>(
    mut conn: MultiplexedConnection,
    args: &[&str],
) -> redis::RedisResult<T> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut conn).await
}

async fn info_all(conn: MultiplexedConnection) -> redis::RedisResult<String> {
    match query::<String>(conn.clone(), &["INFO", "ALL"]).await {
        Ok(s) if !s.is_empty() => Ok(s),
        _ => query::<String>(conn, &["INFO"]).await,
    }
}

/// The settings redis_exporter reads, asked for by name (Redis 7 accepts several); servers
/// that refuse several names get `CONFIG GET *`.
async fn config_get(conn: MultiplexedConnection) -> redis::RedisResult<Vec<(String, String)>> {
    let v = match query::<Value>(
        conn.clone(),
        &[
            "CONFIG",
            "GET",
            "maxmemory",
            "maxclients",
            "io-threads",
            "databases",
        ],
    )
    .await
    {
        Ok(v) if !config_pairs(&v).is_empty() => v,
        _ => query::<Value>(conn, &["CONFIG", "GET", "*"]).await?,
    };
    Ok(config_pairs(&v))
}

fn value_str(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Double(d) => Some(d.to_string()),
        _ => None,
    }
}

fn value_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Double(d) => Some(*d),
        other => value_str(other)?.parse().ok(),
    }
}

/// `CONFIG GET` reply (RESP2 flat array or RESP3 map) as pairs.
pub fn config_pairs(v: &Value) -> Vec<(String, String)> {
    match v {
        Value::Array(items) => items
            .chunks_exact(2)
            .filter_map(|kv| Some((value_str(&kv[0])?, value_str(&kv[1])?)))
            .collect(),
        Value::Map(items) => items
            .iter()
            .filter_map(|(k, v)| Some((value_str(k)?, value_str(v)?)))
            .collect(),
        _ => Vec::new(),
    }
}

/// `SLOWLOG GET 1` → (last id, its duration in seconds); zeros when the log is empty.
fn last_slowlog(v: &Value) -> (f64, f64) {
    if let Value::Array(entries) = v
        && let Some(Value::Array(fields)) = entries.first()
    {
        let id = fields.first().and_then(value_f64).unwrap_or(0.0);
        let micros = fields.get(2).and_then(value_f64).unwrap_or(0.0);
        return (id, micros / 1e6);
    }
    (0.0, 0.0)
}

/// `LATENCY LATEST` → `redis_latency_spike_last` / `redis_latency_spike_duration_seconds`.
fn latency_latest(f: &mut Families, v: &Value, limit: usize) {
    let Value::Array(events) = v else { return };
    for e in events.iter().take(limit) {
        let Value::Array(fields) = e else { continue };
        let (Some(name), Some(last), Some(latest_ms)) = (
            fields.first().and_then(value_str),
            fields.get(1).and_then(value_f64),
            fields.get(2).and_then(value_f64),
        ) else {
            continue;
        };
        let l = [("event_name", name.as_str())];
        f.add(
            "redis_latency_spike_last",
            "When the latency spike last occurred",
            MetricType::Gauge,
            &l,
            last,
        );
        f.add(
            "redis_latency_spike_duration_seconds",
            "Length of the last latency spike in seconds",
            MetricType::Gauge,
            &l,
            latest_ms / 1000.0,
        );
    }
}

/// The exporter: a default target for `/metrics`, any target for `/scrape?target=`.
pub struct RedisExporter {
    base: RedisOptions,
    default: Option<Arc<RedisCollector>>,
    targets: parking_lot::Mutex<HashMap<String, Arc<RedisCollector>>>,
    request_errors: AtomicU64,
}

impl RedisExporter {
    /// `opts.addr` empty → `/metrics` carries only the exporter's own metrics (as
    /// redis_exporter with `-redis.addr=""`), useful when only `/scrape` is used.
    pub fn new(opts: RedisOptions) -> Result<Arc<Self>, Error> {
        let default = if opts.addr.trim().is_empty() {
            None
        } else {
            Some(Arc::new(RedisCollector::new(opts.clone())?))
        };
        Ok(Arc::new(RedisExporter {
            base: opts,
            default,
            targets: parking_lot::Mutex::new(HashMap::new()),
            request_errors: AtomicU64::new(0),
        }))
    }

    fn exporter_metrics(&self, f: &mut Families, with_build_info: bool) {
        f.add(
            "redis_target_scrape_request_errors_total",
            "Errors in requests to the exporter",
            MetricType::Counter,
            &[],
            self.request_errors.load(Ordering::Relaxed) as f64,
        );
        if with_build_info {
            f.add(
                "redis_exporter_build_info",
                "redis exporter build_info",
                MetricType::Gauge,
                &[
                    ("version", env!("CARGO_PKG_VERSION")),
                    ("commit_sha", "lookout"),
                    ("build_date", ""),
                    ("golang_version", ""),
                ],
                1.0,
            );
        }
    }

    /// Families for `/metrics`.
    pub async fn collect(&self) -> Families {
        let mut f = match &self.default {
            Some(c) => c.collect().await,
            None => Families::new(),
        };
        self.exporter_metrics(&mut f, true);
        f
    }

    /// Families for `/scrape?target=`; the collector for `target` is created on first use
    /// and kept (at most `max_targets`; the oldest-inserted arbitrary one is dropped beyond).
    pub async fn collect_target(&self, target: &str) -> Result<Families, Error> {
        let addr = normalize_addr(target);
        let collector = {
            let mut map = self.targets.lock();
            match map.get(&addr) {
                Some(c) => c.clone(),
                None => {
                    let c = Arc::new(RedisCollector::new(RedisOptions {
                        addr: addr.clone(),
                        ..self.base.clone()
                    })?);
                    if map.len() >= self.base.max_targets.max(1)
                        && let Some(k) = map.keys().next().cloned()
                    {
                        map.remove(&k);
                    }
                    map.insert(addr, c.clone());
                    c
                }
            }
        };
        let mut f = collector.collect().await;
        self.exporter_metrics(&mut f, false);
        Ok(f)
    }
}

/// The text format 0.0.4, whatever the request's `Accept` header asks.
fn respond(f: &Families) -> Response {
    let format = Format::PrometheusText;
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        )],
        f.encode(format),
    )
        .into_response()
}

async fn metrics_handler(State(e): State<Arc<RedisExporter>>) -> Response {
    respond(&e.collect().await)
}

async fn scrape_handler(
    State(e): State<Arc<RedisExporter>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(target) = params.get("target").filter(|t| !t.trim().is_empty()) else {
        e.request_errors.fetch_add(1, Ordering::Relaxed);
        return (
            StatusCode::BAD_REQUEST,
            "'target' parameter must be specified\n",
        )
            .into_response();
    };
    match e.collect_target(target).await {
        Ok(f) => respond(&f),
        Err(err) => {
            e.request_errors.fetch_add(1, Ordering::Relaxed);
            (StatusCode::BAD_REQUEST, format!("{err}\n")).into_response()
        }
    }
}

async fn index() -> &'static str {
    "Lookout Redis exporter\n/metrics  metrics of the configured Redis\n/scrape?target=host:port  metrics of any Redis\n/health  liveness\n"
}

/// `/metrics`, `/scrape?target=`, `/health` and `/`.
pub fn router(exporter: Arc<RedisExporter>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics_handler))
        .route("/scrape", get(scrape_handler))
        .route("/health", get(|| async { "ok" }))
        .with_state(exporter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(normalize_addr("127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(normalize_addr("redis://h:1/2"), "redis://h:1/2");
        assert!(
            RedisCollector::new(RedisOptions {
                addr: "redis://".into(),
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn config_reply_shapes() {
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let flat = Value::Array(vec![b("maxmemory"), b("10"), b("databases"), b("16")]);
        assert_eq!(
            config_pairs(&flat),
            vec![
                ("maxmemory".to_string(), "10".to_string()),
                ("databases".to_string(), "16".to_string())
            ]
        );
        let map = Value::Map(vec![(b("maxclients"), b("5"))]);
        assert_eq!(config_pairs(&map).len(), 1);
        assert!(config_pairs(&Value::Nil).is_empty());
    }

    #[test]
    fn slowlog_and_latency_replies() {
        let entry = Value::Array(vec![Value::Array(vec![
            Value::Int(7),
            Value::Int(1700000000),
            Value::Int(25000),
        ])]);
        assert_eq!(last_slowlog(&entry), (7.0, 0.025));
        assert_eq!(last_slowlog(&Value::Array(vec![])), (0.0, 0.0));
        let mut f = Families::new();
        let ev = Value::Array(vec![
            Value::Array(vec![
                Value::BulkString(b"command".to_vec()),
                Value::Int(1700000000),
                Value::Int(250),
                Value::Int(300),
            ]),
            Value::Int(3),
        ]);
        latency_latest(&mut f, &ev, 10);
        let d = f.get("redis_latency_spike_duration_seconds").unwrap();
        assert_eq!(d.samples[0].value, 0.25);
    }

    #[tokio::test]
    async fn unreachable_server_is_up_zero_not_an_error() {
        // A port nobody listens on (bound then dropped).
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let e = RedisExporter::new(RedisOptions {
            addr: format!("127.0.0.1:{port}"),
            timeout: Duration::from_secs(2),
            ..Default::default()
        })
        .unwrap();
        let f = e.collect().await;
        let up = f.get("redis_up").unwrap();
        assert_eq!(up.samples[0].value, 0.0);
        let err = f.get("redis_exporter_last_scrape_error").unwrap();
        assert_eq!(err.samples[0].value, 1.0);
        assert!(!err.samples[0].labels[0].1.is_empty());
        assert!(f.get("redis_memory_used_bytes").is_none());
        assert_eq!(
            f.get("redis_exporter_scrapes_total").unwrap().samples[0].value,
            1.0
        );
    }

    /// Like the real exporter: text 0.0.4 even when the scraper prefers OpenMetrics.
    #[tokio::test]
    async fn serves_text_whatever_the_accept_header() {
        use tower::ServiceExt as _;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let e = RedisExporter::new(RedisOptions {
            addr: format!("127.0.0.1:{port}"),
            timeout: Duration::from_secs(2),
            ..Default::default()
        })
        .unwrap();
        let extra = format!("/scrape?target=127.0.0.1:{port}");
        for (uri, accept) in [
            ("/metrics", Some(lookout_exposition::SCRAPE_ACCEPT_HEADER)),
            (
                "/metrics",
                Some("application/openmetrics-text; version=1.0.0"),
            ),
            ("/metrics", None),
            (
                extra.as_str(),
                Some(lookout_exposition::SCRAPE_ACCEPT_HEADER),
            ),
        ] {
            let mut req = axum::http::Request::get(uri);
            if let Some(a) = accept {
                req = req.header(header::ACCEPT, a);
            }
            let resp = router(e.clone())
                .oneshot(req.body(axum::body::Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{uri}");
            assert_eq!(
                resp.headers()[header::CONTENT_TYPE],
                lookout_exposition::TEXT_CONTENT_TYPE,
                "{uri} {accept:?}"
            );
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            assert!(!body.ends_with(b"# EOF\n"));
            let samples = lookout_exposition::parse_samples(&body, Format::PrometheusText)
                .expect("valid text exposition");
            assert!(
                samples
                    .iter()
                    .any(|s| s.name == "redis_up" && s.value == 0.0),
                "{uri}"
            );
        }
    }
}
