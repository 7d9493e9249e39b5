//! A PostgreSQL collector that prints what postgres_exporter 0.11 prints (with the example
//! `queries.yaml` for `pg_stat_user_tables`, `pg_replication_lag` and
//! `pg_postmaster_start_time_seconds`): same names, labels, types and HELP texts.
//!
//! - [`PgCollector`] keeps `connections` (default 2) `tokio-postgres` connections (re-opened
//!   after a failed scrape or a server restart) with its statements prepared once, sends them
//!   pipelined and spread over the connections, and bounds
//!   the whole scrape with a deadline (plus a server-side `statement_timeout`). An
//!   unreachable or refusing server yields `pg_up 0`, never an HTTP error.
//! - TLS as libpq's `sslmode` / `sslrootcert` / `sslcert` / `sslkey` say ([`tls`], rustls).
//! - Per-database and per-table families are capped (`max_databases`, `max_tables`);
//!   `pg_exporter_limit_truncated{what}` says when a scrape was cut.
//! - PostgreSQL 17 moved checkpoint counters to `pg_stat_checkpointer`; they are still
//!   exposed under the `pg_stat_bgwriter_*` names, as later postgres_exporter releases do.
//! - [`PgExporter`] adds `/probe?target=DSN` for fleets; [`router`] serves it with axum.
//! - Output is [`Families`] from `lookout-exposition`, always in the text format 0.0.4 whatever
//!   the `Accept` header asks, as the real postgres_exporter serves it (its metrics, e.g. counters
//!   without `_total`, are not valid OpenMetrics).

mod convert;
pub mod tls;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lookout_exposition::{Format, MetricType};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, NoTls, Row, Statement};

pub use convert::{parse_scalar, parse_timestamp, pg_value, setting_metric, short_version};
pub use lookout_exposition::families::{Families, Family, Sample};

/// Default listen address of postgres_exporter.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9187";
/// Default DSN.
pub const DEFAULT_DSN: &str = "postgresql://postgres@127.0.0.1:5432/postgres?sslmode=disable";

/// Errors building a collector.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid PostgreSQL DSN: {0}")]
    Dsn(String),
    #[error("PostgreSQL TLS settings: {0}")]
    Tls(String),
}

/// What and how to scrape.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// URL (`postgresql://user:pass@host:port/db?sslmode=disable`) or key=value DSN.
    pub dsn: String,
    /// Deadline of one scrape, connecting included.
    pub timeout: Duration,
    /// Most databases in per-database families.
    pub max_databases: usize,
    /// Most tables in `pg_stat_user_tables_*`.
    pub max_tables: usize,
    /// Leave out `pg_settings_*`.
    pub disable_settings: bool,
    /// Most distinct `/probe?target=` servers kept connected.
    pub max_targets: usize,
    /// Connections per server; the scrape's queries are spread over them so the server
    /// answers them in parallel.
    pub connections: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            dsn: DEFAULT_DSN.to_string(),
            timeout: Duration::from_secs(10),
            max_databases: 1000,
            max_tables: 1000,
            disable_settings: false,
            max_targets: 64,
            connections: 2,
        }
    }
}

/// Scrapes one PostgreSQL server.
pub struct PgCollector {
    opts: PgOptions,
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    server: String,
    session: tokio::sync::Mutex<Option<Session>>,
    scrapes: parking_lot::Mutex<u64>,
    /// Whether the last scrape cut databases / tables at their limits (logged on change).
    truncated: parking_lot::Mutex<(bool, bool)>,
}

/// The connections with the server's version and the scrape's statements, prepared once (the
/// server plans them once per connection, not once per scrape). Statement `i` belongs to
/// connection `i % clients.len()`, so the server works on them in parallel.
struct Session {
    clients: Vec<Client>,
    version_full: String,
    version_short: String,
    stmts: Vec<Result<Statement, String>>,
}

impl Session {
    fn broken(&self) -> bool {
        self.clients.iter().any(|c| c.is_closed())
    }
}

/// Indexes into `Session::stmts`.
#[derive(Clone, Copy)]
enum Q {
    Settings,
    StatDatabase,
    Conflicts,
    Locks,
    Activity,
    Archiver,
    Replication,
    Slots,
    Lag,
    Postmaster,
    Tables,
    Bgwriter,
    Sizes,
}

fn text(r: &Row, i: usize) -> Option<&str> {
    r.try_get::<_, Option<&str>>(i).ok().flatten()
}

type QueryResult = Result<Vec<Row>, String>;

/// An error with its cause (the server's message for database errors).
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            // The driver's text ("error performing TLS handshake") plus its causes.
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                let c_text = c.to_string();
                if !text.contains(&c_text) {
                    text.push_str(": ");
                    text.push_str(&c_text);
                }
                cause = c.source();
            }
            text
        }
    }
}

/// A quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The `server` label postgres_exporter puts on every metric read from a server.
fn server_label(cfg: &tokio_postgres::Config) -> String {
    let host = match cfg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// HELP texts and types of the `pg_stat_database` columns postgres_exporter knows; other
/// numeric columns come out `untyped` with "Unknown metric from pg_stat_database".
fn stat_database_column(col: &str) -> Option<(MetricType, &'static str)> {
    use MetricType::{Counter, Gauge};
    Some(match col {
        "numbackends" => (
            Gauge,
            "Number of backends currently connected to this database. This is the only column in this view that returns a value reflecting current state; all other columns return the accumulated values since the last reset.",
        ),
        "xact_commit" => (
            Counter,
            "Number of transactions in this database that have been committed",
        ),
        "xact_rollback" => (
            Counter,
            "Number of transactions in this database that have been rolled back",
        ),
        "blks_read" => (Counter, "Number of disk blocks read in this database"),
        "blks_hit" => (
            Counter,
            "Number of times disk blocks were found already in the buffer cache, so that a read was not necessary (this only includes hits in the PostgreSQL buffer cache, not the operating system's file system cache)",
        ),
        "tup_returned" => (
            Counter,
            "Number of rows returned by queries in this database",
        ),
        "tup_fetched" => (
            Counter,
            "Number of rows fetched by queries in this database",
        ),
        "tup_inserted" => (
            Counter,
            "Number of rows inserted by queries in this database",
        ),
        "tup_updated" => (
            Counter,
            "Number of rows updated by queries in this database",
        ),
        "tup_deleted" => (
            Counter,
            "Number of rows deleted by queries in this database",
        ),
        "conflicts" => (
            Counter,
            "Number of queries canceled due to conflicts with recovery in this database. (Conflicts occur only on standby servers; see pg_stat_database_conflicts for details.)",
        ),
        "temp_files" => (
            Counter,
            "Number of temporary files created by queries in this database. All temporary files are counted, regardless of why the temporary file was created (e.g., sorting or hashing), and regardless of the log_temp_files setting.",
        ),
        "temp_bytes" => (
            Counter,
            "Total amount of data written to temporary files by queries in this database. All temporary files are counted, regardless of why the temporary file was created, and regardless of the log_temp_files setting.",
        ),
        "deadlocks" => (Counter, "Number of deadlocks detected in this database"),
        "blk_read_time" => (
            Counter,
            "Time spent reading data file blocks by backends in this database, in milliseconds",
        ),
        "blk_write_time" => (
            Counter,
            "Time spent writing data file blocks by backends in this database, in milliseconds",
        ),
        "stats_reset" => (Counter, "Time at which these statistics were last reset"),
        _ => return None,
    })
}

fn conflicts_help(col: &str) -> Option<&'static str> {
    Some(match col {
        "confl_tablespace" => {
            "Number of queries in this database that have been canceled due to dropped tablespaces"
        }
        "confl_lock" => {
            "Number of queries in this database that have been canceled due to lock timeouts"
        }
        "confl_snapshot" => {
            "Number of queries in this database that have been canceled due to old snapshots"
        }
        "confl_bufferpin" => {
            "Number of queries in this database that have been canceled due to pinned buffers"
        }
        "confl_deadlock" => {
            "Number of queries in this database that have been canceled due to deadlocks"
        }
        _ => return None,
    })
}

const LOCK_MODES: &str = "('accesssharelock'),('rowsharelock'),('rowexclusivelock'),\
('shareupdateexclusivelock'),('sharelock'),('sharerowexclusivelock'),('exclusivelock'),\
('accessexclusivelock'),('sireadlock')";

const ACTIVITY_STATES: &str = "('active'),('idle'),('idle in transaction'),\
('idle in transaction (aborted)'),('fastpath function call'),('disabled')";

/// `pg_stat_user_tables` columns: (column SQL, metric suffix, type, HELP).
const USER_TABLE_COLUMNS: &[(&str, &str, MetricType, &str)] = &[
    (
        "seq_scan",
        "seq_scan",
        MetricType::Counter,
        "Number of sequential scans initiated on this table",
    ),
    (
        "seq_tup_read",
        "seq_tup_read",
        MetricType::Counter,
        "Number of live rows fetched by sequential scans",
    ),
    (
        "idx_scan",
        "idx_scan",
        MetricType::Counter,
        "Number of index scans initiated on this table",
    ),
    (
        "idx_tup_fetch",
        "idx_tup_fetch",
        MetricType::Counter,
        "Number of live rows fetched by index scans",
    ),
    (
        "n_tup_ins",
        "n_tup_ins",
        MetricType::Counter,
        "Number of rows inserted",
    ),
    (
        "n_tup_upd",
        "n_tup_upd",
        MetricType::Counter,
        "Number of rows updated",
    ),
    (
        "n_tup_del",
        "n_tup_del",
        MetricType::Counter,
        "Number of rows deleted",
    ),
    (
        "n_tup_hot_upd",
        "n_tup_hot_upd",
        MetricType::Counter,
        "Number of rows HOT updated (i.e., with no separate index update required)",
    ),
    (
        "n_live_tup",
        "n_live_tup",
        MetricType::Gauge,
        "Estimated number of live rows",
    ),
    (
        "n_dead_tup",
        "n_dead_tup",
        MetricType::Gauge,
        "Estimated number of dead rows",
    ),
    (
        "n_mod_since_analyze",
        "n_mod_since_analyze",
        MetricType::Gauge,
        "Estimated number of rows changed since last analyze",
    ),
    (
        "COALESCE(floor(EXTRACT(EPOCH FROM last_vacuum)), 0)",
        "last_vacuum",
        MetricType::Gauge,
        "Last time at which this table was manually vacuumed (not counting VACUUM FULL)",
    ),
    (
        "COALESCE(floor(EXTRACT(EPOCH FROM last_autovacuum)), 0)",
        "last_autovacuum",
        MetricType::Gauge,
        "Last time at which this table was vacuumed by the autovacuum daemon",
    ),
    (
        "COALESCE(floor(EXTRACT(EPOCH FROM last_analyze)), 0)",
        "last_analyze",
        MetricType::Gauge,
        "Last time at which this table was manually analyzed",
    ),
    (
        "COALESCE(floor(EXTRACT(EPOCH FROM last_autoanalyze)), 0)",
        "last_autoanalyze",
        MetricType::Gauge,
        "Last time at which this table was analyzed by the autovacuum daemon",
    ),
    (
        "vacuum_count",
        "vacuum_count",
        MetricType::Counter,
        "Number of times this table has been manually vacuumed (not counting VACUUM FULL)",
    ),
    (
        "autovacuum_count",
        "autovacuum_count",
        MetricType::Counter,
        "Number of times this table has been vacuumed by the autovacuum daemon",
    ),
    (
        "analyze_count",
        "analyze_count",
        MetricType::Counter,
        "Number of times this table has been manually analyzed",
    ),
    (
        "autoanalyze_count",
        "autoanalyze_count",
        MetricType::Counter,
        "Number of times this table has been analyzed by the autovacuum daemon",
    ),
];

/// `pg_stat_bgwriter_*` families: (name, HELP).
const BGWRITER: &[(&str, &str)] = &[
    (
        "checkpoints_timed_total",
        "Number of scheduled checkpoints that have been performed",
    ),
    (
        "checkpoints_req_total",
        "Number of requested checkpoints that have been performed",
    ),
    (
        "checkpoint_write_time_total",
        "Total amount of time that has been spent in the portion of checkpoint processing where files are written to disk, in milliseconds",
    ),
    (
        "checkpoint_sync_time_total",
        "Total amount of time that has been spent in the portion of checkpoint processing where files are synchronized to disk, in milliseconds",
    ),
    (
        "buffers_checkpoint_total",
        "Number of buffers written during checkpoints",
    ),
    (
        "buffers_clean_total",
        "Number of buffers written by the background writer",
    ),
    (
        "maxwritten_clean_total",
        "Number of times the background writer stopped a cleaning scan because it had written too many buffers",
    ),
    (
        "buffers_backend_total",
        "Number of buffers written directly by a backend",
    ),
    (
        "buffers_backend_fsync_total",
        "Number of times a backend had to execute its own fsync call (normally the background writer handles those even when the backend does its own write)",
    ),
    ("buffers_alloc_total", "Number of buffers allocated"),
    (
        "stats_reset_total",
        "Time at which these statistics were last reset",
    ),
];

/// The outcome of one scrape of the server (without the exporter's own metrics).
pub struct ScrapeResult {
    pub families: Families,
    /// Connected and the version query answered.
    pub up: bool,
    /// The first error (connection or query), if any.
    pub error: Option<String>,
    pub duration_seconds: f64,
}

impl PgCollector {
    /// Parses the DSN (with libpq's TLS keys, see [`tls`]); connects lazily on the first
    /// scrape.
    pub fn new(opts: PgOptions) -> Result<Self, Error> {
        let (rest, tls_settings) = tls::split_dsn(&opts.dsn)?;
        let mut config =
            tokio_postgres::Config::from_str(&rest).map_err(|e| Error::Dsn(e.to_string()))?;
        if config.get_hosts().is_empty() {
            config.host("localhost");
        }
        config.ssl_mode(tls_settings.driver_mode());
        config.connect_timeout(opts.timeout);
        config.application_name("lookout_exporter");
        // Timestamps come back as UTC ISO text, parsed by `parse_timestamp`.
        config.options("-c TimeZone=UTC -c DateStyle=ISO");
        let tls = tls::connector(&tls_settings)?;
        let server = server_label(&config);
        Ok(PgCollector {
            opts,
            config,
            tls,
            server,
            session: tokio::sync::Mutex::new(None),
            scrapes: parking_lot::Mutex::new(0),
            truncated: parking_lot::Mutex::new((false, false)),
        })
    }

    pub fn options(&self) -> &PgOptions {
        &self.opts
    }

    /// The `server` label value (`host:port`).
    pub fn server(&self) -> &str {
        &self.server
    }

    async fn connect(&self) -> Result<Session, tokio_postgres::Error> {
        let mut clients = Vec::new();
        for _ in 0..self.opts.connections.max(1) {
            clients.push(self.connect_one().await?);
        }
        let v = clients[0]
            .query_one(
                "SELECT version(), current_setting('server_version'), current_setting('server_version_num')",
                &[],
            )
            .await?;
        let version_full = text(&v, 0).unwrap_or("").to_string();
        let version_short = short_version(text(&v, 1).unwrap_or(""));
        let version_num = text(&v, 2).and_then(|n| n.parse().ok()).unwrap_or(0);
        let stmts = self.prepare(&clients, version_num).await;
        Ok(Session {
            clients,
            version_full,
            version_short,
            stmts,
        })
    }

    async fn connect_one(&self) -> Result<Client, tokio_postgres::Error> {
        let client = match &self.tls {
            Some(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "postgres connection ended");
                    }
                });
                client
            }
            None => {
                let (client, connection) = self.config.connect(NoTls).await?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "postgres connection ended");
                    }
                });
                client
            }
        };
        // A session-level SET (not a startup option) leaves `reset_val` in pg_settings at the
        // server's configured value, which is what pg_settings_statement_timeout reports.
        let statement_ms = self.opts.timeout.as_millis().max(1);
        client
            .batch_execute(&format!("SET statement_timeout = {statement_ms}"))
            .await?;
        Ok(client)
    }

    /// `SELECT *` of a view with every column cast to text (the columns differ by version).
    async fn select_all(c: &Client, view: &str, tail: &str) -> Result<String, String> {
        let probe = c
            .prepare(&format!("SELECT * FROM {view} LIMIT 0"))
            .await
            .map_err(|e| e.to_string())?;
        let cols: Vec<String> = probe
            .columns()
            .iter()
            .map(|col| {
                let q = quote_ident(col.name());
                format!("{q}::text AS {q}")
            })
            .collect();
        Ok(format!("SELECT {} FROM {view} {tail}", cols.join(", ")))
    }

    /// The scrape's statements, in [`Q`] order. One that fails to prepare (a view missing on
    /// this server, no permission) fails only its own families.
    async fn prepare(
        &self,
        clients: &[Client],
        version_num: i64,
    ) -> Vec<Result<Statement, String>> {
        let c = &clients[0];
        let maxdb = self.opts.max_databases;
        let maxtab = self.opts.max_tables;
        let columns: Vec<String> = USER_TABLE_COLUMNS
            .iter()
            .map(|c| format!("({})::text", c.0))
            .collect();
        let bgwriter = if version_num >= 170000 {
            "SELECT c.num_timed::text, c.num_requested::text, c.write_time::text, c.sync_time::text, \
             c.buffers_written::text, b.buffers_clean::text, b.maxwritten_clean::text, NULL::text, NULL::text, \
             b.buffers_alloc::text, floor(EXTRACT(EPOCH FROM b.stats_reset))::text \
             FROM pg_stat_bgwriter b, pg_stat_checkpointer c"
        } else {
            "SELECT checkpoints_timed::text, checkpoints_req::text, checkpoint_write_time::text, \
             checkpoint_sync_time::text, buffers_checkpoint::text, buffers_clean::text, \
             maxwritten_clean::text, buffers_backend::text, buffers_backend_fsync::text, \
             buffers_alloc::text, floor(EXTRACT(EPOCH FROM stats_reset))::text FROM pg_stat_bgwriter"
        };
        let sqls: Vec<Result<String, String>> = vec![
            // Q::Settings
            Ok("SELECT name, CASE WHEN name = 'statement_timeout' THEN reset_val ELSE setting END, \
                COALESCE(unit, ''), short_desc, vartype FROM pg_settings \
                WHERE vartype IN ('bool', 'integer', 'real') AND name != 'sync_commit_cancel_wait'"
                .to_string()),
            // Q::StatDatabase: the databases plus the shared-objects row (datid 0).
            Self::select_all(
                c,
                "pg_stat_database",
                &format!("ORDER BY datid LIMIT {}", maxdb + 1),
            )
            .await,
            // Q::Conflicts
            Self::select_all(
                c,
                "pg_stat_database_conflicts",
                &format!("ORDER BY datid LIMIT {maxdb}"),
            )
            .await,
            // Q::Locks
            Ok(format!(
                "SELECT d.datname::text, tmp.mode, COALESCE(l.count, 0)::text FROM \
                 (SELECT oid, datname FROM pg_database ORDER BY datname LIMIT {maxdb}) d \
                 CROSS JOIN (VALUES {LOCK_MODES}) AS tmp(mode) \
                 LEFT JOIN (SELECT database, lower(mode) AS mode, count(*) AS count FROM pg_locks \
                 WHERE database IS NOT NULL GROUP BY database, lower(mode)) l \
                 ON l.mode = tmp.mode AND l.database = d.oid"
            )),
            // Q::Activity
            Ok(format!(
                "SELECT d.datname::text, tmp.state, COALESCE(a.count, 0)::text, COALESCE(a.max_tx, 0)::text FROM \
                 (SELECT datname FROM pg_database ORDER BY datname LIMIT {maxdb}) d \
                 CROSS JOIN (VALUES {ACTIVITY_STATES}) AS tmp(state) \
                 LEFT JOIN (SELECT datname, state, count(*) AS count, \
                 MAX(EXTRACT(EPOCH FROM now() - xact_start))::float AS max_tx \
                 FROM pg_stat_activity GROUP BY datname, state) a \
                 ON a.state = tmp.state AND a.datname = d.datname"
            )),
            // Q::Archiver
            Ok("SELECT archived_count::text, failed_count::text, \
                EXTRACT(EPOCH FROM now() - last_archived_time)::text FROM pg_stat_archiver"
                .to_string()),
            // Q::Replication
            Ok("SELECT application_name::text, COALESCE(host(client_addr), ''), COALESCE(state, '')::text, \
                (CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float END)::text, \
                (CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float END)::text \
                FROM pg_stat_replication"
                .to_string()),
            // Q::Slots
            Ok("SELECT slot_name::text, COALESCE(database, '')::text, active::text, \
                (CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) END)::text \
                FROM pg_replication_slots"
                .to_string()),
            // Q::Lag
            Ok("SELECT (CASE WHEN NOT pg_is_in_recovery() THEN 0 ELSE GREATEST(0, \
                EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp()))) END)::text"
                .to_string()),
            // Q::Postmaster
            Ok("SELECT floor(EXTRACT(EPOCH FROM pg_postmaster_start_time()))::text".to_string()),
            // Q::Tables: one more than the limit, to tell that it cut.
            Ok(format!(
                "SELECT current_database()::text, schemaname::text, relname::text, {} FROM pg_stat_user_tables \
                 ORDER BY schemaname, relname LIMIT {}",
                columns.join(", "),
                maxtab + 1
            )),
            // Q::Bgwriter
            Ok(bgwriter.to_string()),
            // Q::Sizes: one more than the limit, to tell that it cut.
            Ok(format!(
                "SELECT datname::text, pg_database_size(oid)::text FROM pg_database ORDER BY datname LIMIT {}",
                maxdb + 1
            )),
        ];
        let mut out = Vec::with_capacity(sqls.len());
        for (i, sql) in sqls.into_iter().enumerate() {
            let c = &clients[i % clients.len()];
            out.push(match sql {
                Ok(sql) => c.prepare(&sql).await.map_err(|e| e.to_string()),
                Err(e) => Err(e),
            });
        }
        out
    }

    /// Scrapes the server within the deadline.
    pub async fn scrape(&self) -> ScrapeResult {
        let start = Instant::now();
        let mut slot = self.session.lock().await;
        if slot.as_ref().is_some_and(Session::broken) {
            *slot = None;
        }
        let deadline = self.opts.timeout;
        let outcome = tokio::time::timeout(deadline, async {
            if slot.is_none() {
                *slot = Some(self.connect().await.map_err(|e| describe(&e))?);
            }
            match slot.as_ref() {
                Some(s) => Ok(self.queries(s).await),
                None => Err("no connection".to_string()),
            }
        })
        .await;
        let (families, up, error) = match outcome {
            Ok(Ok((f, None, _))) => (f, true, None),
            Ok(Ok((f, Some(e), any_ok))) => (f, any_ok, Some(e)),
            Ok(Err(e)) => (Families::new(), false, Some(e)),
            Err(_) => (
                Families::new(),
                false,
                Some(format!("scrape timed out after {deadline:?}")),
            ),
        };
        if let Some(e) = &error {
            tracing::warn!(server = %self.server, error = %e, "postgres scrape error");
        }
        // Re-connect next time when the server is gone (restart) or the connection may be
        // stuck behind a timed-out query; a query that merely failed keeps the connection.
        if !up || slot.as_ref().is_some_and(Session::broken) {
            *slot = None;
        }
        ScrapeResult {
            families,
            up,
            error,
            duration_seconds: start.elapsed().as_secs_f64(),
        }
    }

    /// All queries, pipelined on the session's connection. Returns the families, the first
    /// error and whether any query answered.
    async fn queries(&self, s: &Session) -> (Families, Option<String>, bool) {
        let maxdb = self.opts.max_databases;
        let maxtab = self.opts.max_tables;
        let run = |q: Q| async move {
            match &s.stmts[q as usize] {
                Ok(st) => s.clients[q as usize % s.clients.len()]
                    .query(st, &[])
                    .await
                    .map_err(|e| describe(&e)),
                Err(e) => Err(e.clone()),
            }
        };
        let settings_fut = async {
            if self.opts.disable_settings {
                Ok(Vec::new())
            } else {
                run(Q::Settings).await
            }
        };
        let t_db = Instant::now();
        let (
            r_settings,
            r_stat_db,
            r_conflicts,
            r_locks,
            r_activity,
            r_archiver,
            r_replication,
            r_slots,
            r_lag,
            r_postmaster,
            r_tables,
            (r_bg, t_bg),
            (r_sizes, t_sizes),
        ) = tokio::join!(
            settings_fut,
            run(Q::StatDatabase),
            run(Q::Conflicts),
            run(Q::Locks),
            run(Q::Activity),
            run(Q::Archiver),
            run(Q::Replication),
            run(Q::Slots),
            run(Q::Lag),
            run(Q::Postmaster),
            run(Q::Tables),
            async {
                let r = run(Q::Bgwriter).await;
                (r, t_db.elapsed())
            },
            async {
                let r = run(Q::Sizes).await;
                (r, t_db.elapsed())
            },
        );
        let vfull = s.version_full.as_str();
        let vshort = s.version_short.as_str();
        // Settings are left out: they may be disabled.
        let any_ok = [
            &r_stat_db,
            &r_conflicts,
            &r_locks,
            &r_activity,
            &r_archiver,
            &r_replication,
            &r_slots,
            &r_lag,
            &r_postmaster,
            &r_tables,
            &r_bg,
            &r_sizes,
        ]
        .iter()
        .any(|r| r.is_ok());
        let tables_cut = matches!(&r_tables, Ok(rows) if rows.len() > maxtab);
        let dbs_cut = matches!(&r_sizes, Ok(rows) if rows.len() > maxdb);

        let mut f = Families::new();
        let mut first_error: Option<String> = None;
        let mut note = |r: &QueryResult, what: &str| {
            if let Err(e) = r {
                tracing::debug!(query = what, error = %e, "query failed");
                if first_error.is_none() {
                    first_error = Some(format!("{what}: {e}"));
                }
            }
        };
        for (r, what) in [
            (&r_settings, "pg_settings"),
            (&r_stat_db, "pg_stat_database"),
            (&r_conflicts, "pg_stat_database_conflicts"),
            (&r_locks, "pg_locks"),
            (&r_activity, "pg_stat_activity"),
            (&r_archiver, "pg_stat_archiver"),
            (&r_replication, "pg_stat_replication"),
            (&r_slots, "pg_replication_slots"),
            (&r_lag, "pg_replication"),
            (&r_postmaster, "pg_postmaster"),
            (&r_tables, "pg_stat_user_tables"),
        ] {
            note(r, what);
        }
        let server = self.server.as_str();
        let sl = ("server", server);

        f.add(
            "pg_static",
            "Version string as reported by postgres",
            MetricType::Unknown,
            &[sl, ("short_version", vshort), ("version", vfull)],
            1.0,
        );

        if let Ok(rows) = &r_settings {
            for r in rows {
                let (Some(name), Some(setting)) = (text(r, 0), text(r, 1)) else {
                    continue;
                };
                if let Some((suffix, help, v)) = setting_metric(
                    name,
                    setting,
                    text(r, 2).unwrap_or(""),
                    text(r, 3).unwrap_or(""),
                    text(r, 4).unwrap_or(""),
                ) {
                    f.add(
                        &format!("pg_settings_{suffix}"),
                        &help,
                        MetricType::Gauge,
                        &[sl],
                        v,
                    );
                }
            }
        }

        if let Ok(rows) = &r_stat_db {
            for r in rows.iter().take(maxdb + 1) {
                let cols = r.columns();
                let datid = cols
                    .iter()
                    .position(|c| c.name() == "datid")
                    .and_then(|i| text(r, i))
                    .unwrap_or("");
                let datname = cols
                    .iter()
                    .position(|c| c.name() == "datname")
                    .and_then(|i| text(r, i))
                    .unwrap_or("");
                for (i, col) in cols.iter().enumerate() {
                    let name = col.name();
                    if name == "datid" || name == "datname" {
                        continue;
                    }
                    let v = pg_value(text(r, i));
                    let (kind, help) = stat_database_column(name)
                        .unwrap_or((MetricType::Unknown, "Unknown metric from pg_stat_database"));
                    f.add(
                        &format!("pg_stat_database_{name}"),
                        help,
                        kind,
                        &[sl, ("datid", datid), ("datname", datname)],
                        v,
                    );
                }
            }
        }

        if let Ok(rows) = &r_conflicts {
            for r in rows {
                let cols = r.columns();
                let get = |n: &str| {
                    cols.iter()
                        .position(|c| c.name() == n)
                        .and_then(|i| text(r, i))
                };
                let datid = get("datid").unwrap_or("");
                let datname = get("datname").unwrap_or("");
                for (i, col) in cols.iter().enumerate() {
                    let (kind, help) = match conflicts_help(col.name()) {
                        Some(h) => (MetricType::Counter, h),
                        None if col.name() == "datid" || col.name() == "datname" => continue,
                        None => (
                            MetricType::Unknown,
                            "Unknown metric from pg_stat_database_conflicts",
                        ),
                    };
                    f.add(
                        &format!("pg_stat_database_conflicts_{}", col.name()),
                        help,
                        kind,
                        &[sl, ("datid", datid), ("datname", datname)],
                        pg_value(text(r, i)),
                    );
                }
            }
        }

        if let Ok(rows) = &r_locks {
            for r in rows {
                f.add(
                    "pg_locks_count",
                    "Number of locks",
                    MetricType::Gauge,
                    &[
                        sl,
                        ("datname", text(r, 0).unwrap_or("")),
                        ("mode", text(r, 1).unwrap_or("")),
                    ],
                    pg_value(text(r, 2)),
                );
            }
        }

        if let Ok(rows) = &r_activity {
            for r in rows {
                let l = [
                    sl,
                    ("datname", text(r, 0).unwrap_or("")),
                    ("state", text(r, 1).unwrap_or("")),
                ];
                f.add(
                    "pg_stat_activity_count",
                    "number of connections in this state",
                    MetricType::Gauge,
                    &l,
                    pg_value(text(r, 2)),
                );
                f.add(
                    "pg_stat_activity_max_tx_duration",
                    "max duration in seconds any active transaction has been running",
                    MetricType::Gauge,
                    &l,
                    pg_value(text(r, 3)),
                );
            }
        }

        if let Ok(rows) = &r_archiver
            && let Some(r) = rows.first()
        {
            f.add(
                "pg_stat_archiver_archived_count",
                "Number of WAL files that have been successfully archived",
                MetricType::Counter,
                &[sl],
                pg_value(text(r, 0)),
            );
            f.add(
                "pg_stat_archiver_failed_count",
                "Number of failed attempts for archiving WAL files",
                MetricType::Counter,
                &[sl],
                pg_value(text(r, 1)),
            );
            f.add(
                "pg_stat_archiver_last_archive_age",
                "Time in seconds since last WAL segment was successfully archived",
                MetricType::Gauge,
                &[sl],
                pg_value(text(r, 2)),
            );
        }

        if let Ok(rows) = &r_replication {
            for r in rows {
                let l = [
                    sl,
                    ("application_name", text(r, 0).unwrap_or("")),
                    ("client_addr", text(r, 1).unwrap_or("")),
                    ("state", text(r, 2).unwrap_or("")),
                ];
                f.add(
                    "pg_stat_replication_pg_current_wal_lsn_bytes",
                    "WAL position in bytes",
                    MetricType::Gauge,
                    &l,
                    pg_value(text(r, 3)),
                );
                f.add(
                    "pg_stat_replication_pg_wal_lsn_diff",
                    "Lag in bytes between master and slave",
                    MetricType::Gauge,
                    &l,
                    pg_value(text(r, 4)),
                );
            }
        }

        if let Ok(rows) = &r_slots {
            for r in rows {
                let l = [
                    sl,
                    ("slot_name", text(r, 0).unwrap_or("")),
                    ("database", text(r, 1).unwrap_or("")),
                ];
                f.add(
                    "pg_replication_slots_active",
                    "Flag indicating if the slot is active",
                    MetricType::Gauge,
                    &l,
                    pg_value(text(r, 2)),
                );
                f.add(
                    "pg_replication_slots_pg_wal_lsn_diff",
                    "Replication lag in bytes",
                    MetricType::Gauge,
                    &l,
                    pg_value(text(r, 3)),
                );
            }
        }

        if let Ok(rows) = &r_lag
            && let Some(r) = rows.first()
        {
            f.add(
                "pg_replication_lag",
                "Replication lag behind master in seconds",
                MetricType::Gauge,
                &[sl],
                pg_value(text(r, 0)),
            );
        }
        if let Ok(rows) = &r_postmaster
            && let Some(r) = rows.first()
        {
            f.add(
                "pg_postmaster_start_time_seconds",
                "Time at which postmaster started",
                MetricType::Gauge,
                &[sl],
                pg_value(text(r, 0)),
            );
        }

        if let Ok(rows) = &r_tables {
            for r in rows.iter().take(maxtab) {
                let l = [
                    sl,
                    ("datname", text(r, 0).unwrap_or("")),
                    ("schemaname", text(r, 1).unwrap_or("")),
                    ("relname", text(r, 2).unwrap_or("")),
                ];
                for (i, (_, suffix, kind, help)) in USER_TABLE_COLUMNS.iter().enumerate() {
                    f.add(
                        &format!("pg_stat_user_tables_{suffix}"),
                        help,
                        *kind,
                        &l,
                        pg_value(text(r, i + 3)),
                    );
                }
            }
        }

        // The two "collector" families, with per-collector success and duration.
        let mut collector = |name: &str, ok: bool, took: Duration| {
            f.add(
                "pg_scrape_collector_duration_seconds",
                "postgres_exporter: Duration of a collector scrape.",
                MetricType::Gauge,
                &[("collector", name)],
                took.as_secs_f64(),
            );
            f.add(
                "pg_scrape_collector_success",
                "postgres_exporter: Whether a collector succeeded.",
                MetricType::Gauge,
                &[("collector", name)],
                if ok { 1.0 } else { 0.0 },
            );
        };
        collector("bgwriter", r_bg.is_ok(), t_bg);
        collector("database", r_sizes.is_ok(), t_sizes);
        if let Ok(rows) = &r_bg
            && let Some(r) = rows.first()
        {
            for (i, (name, help)) in BGWRITER.iter().enumerate() {
                if let Some(v) = text(r, i) {
                    f.add(
                        &format!("pg_stat_bgwriter_{name}"),
                        help,
                        MetricType::Counter,
                        &[sl],
                        pg_value(Some(v)),
                    );
                }
            }
        }
        if let Ok(rows) = &r_sizes {
            for r in rows.iter().take(maxdb) {
                f.add(
                    "pg_database_size_bytes",
                    "Disk space used by the database",
                    MetricType::Gauge,
                    &[sl, ("datname", text(r, 0).unwrap_or(""))],
                    pg_value(text(r, 1)),
                );
            }
        }
        if let Err(e) = &r_bg {
            tracing::debug!(error = %e, "bgwriter collector failed");
        }
        if let Err(e) = &r_sizes {
            tracing::debug!(error = %e, "database collector failed");
        }
        for (what, cut, limit) in [
            ("databases", dbs_cut, maxdb),
            ("tables", tables_cut, maxtab),
        ] {
            f.add(
                "pg_exporter_limit_truncated",
                "Whether the last scrape left out databases or tables beyond the exporter's --max-databases / --max-tables (1 = truncated).",
                MetricType::Gauge,
                &[("what", what), ("limit", &limit.to_string())],
                if cut { 1.0 } else { 0.0 },
            );
        }
        {
            let mut last = self.truncated.lock();
            if (dbs_cut, tables_cut) != *last {
                if dbs_cut && !last.0 {
                    tracing::warn!(server = %self.server, limit = maxdb, "more databases than --max-databases: per-database families are truncated");
                }
                if tables_cut && !last.1 {
                    tracing::warn!(server = %self.server, limit = maxtab, "more tables than --max-tables: pg_stat_user_tables_* is truncated");
                }
                *last = (dbs_cut, tables_cut);
            }
        }
        (f, first_error, any_ok)
    }

    /// One scrape plus `pg_up` and the exporter's scrape metrics.
    pub async fn collect(&self) -> Families {
        let r = self.scrape().await;
        let scrapes = {
            let mut s = self.scrapes.lock();
            *s += 1;
            *s
        };
        let mut f = r.families;
        f.add(
            "pg_up",
            "Whether the last scrape of metrics from PostgreSQL was able to connect to the server (1 for yes, 0 for no).",
            MetricType::Gauge,
            &[],
            if r.up { 1.0 } else { 0.0 },
        );
        f.add(
            "pg_exporter_last_scrape_duration_seconds",
            "Duration of the last scrape of metrics from PostgreSQL.",
            MetricType::Gauge,
            &[],
            r.duration_seconds,
        );
        f.add(
            "pg_exporter_last_scrape_error",
            "Whether the last scrape of metrics from PostgreSQL resulted in an error (1 for error, 0 for success).",
            MetricType::Gauge,
            &[],
            if r.error.is_some() { 1.0 } else { 0.0 },
        );
        f.add(
            "pg_exporter_scrapes_total",
            "Total number of times PostgreSQL was scraped for metrics.",
            MetricType::Counter,
            &[],
            scrapes as f64,
        );
        f
    }
}

/// The exporter: the configured server on `/metrics`, any server on `/probe?target=DSN`.
pub struct PgExporter {
    base: PgOptions,
    default: Option<Arc<PgCollector>>,
    targets: parking_lot::Mutex<HashMap<String, Arc<PgCollector>>>,
}

fn build_info(f: &mut Families) {
    f.add(
        "postgres_exporter_build_info",
        "A metric with a constant '1' value labeled by version, revision, branch, goversion from which postgres_exporter was built, and the goos and goarch for the build.",
        MetricType::Gauge,
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("revision", "lookout"),
            ("branch", ""),
            ("goversion", ""),
            ("goos", std::env::consts::OS),
            ("goarch", std::env::consts::ARCH),
        ],
        1.0,
    );
}

impl PgExporter {
    /// An empty `opts.dsn` serves only `/probe`.
    pub fn new(opts: PgOptions) -> Result<Arc<Self>, Error> {
        let default = if opts.dsn.trim().is_empty() {
            None
        } else {
            Some(Arc::new(PgCollector::new(opts.clone())?))
        };
        Ok(Arc::new(PgExporter {
            base: opts,
            default,
            targets: parking_lot::Mutex::new(HashMap::new()),
        }))
    }

    /// Families for `/metrics`.
    pub async fn collect(&self) -> Families {
        let mut f = match &self.default {
            Some(c) => c.collect().await,
            None => Families::new(),
        };
        build_info(&mut f);
        f
    }

    /// Families for `/probe?target=DSN` (collector created on first use, at most
    /// `max_targets` kept).
    pub async fn collect_target(&self, dsn: &str) -> Result<Families, Error> {
        let collector = {
            let mut map = self.targets.lock();
            match map.get(dsn) {
                Some(c) => c.clone(),
                None => {
                    let c = Arc::new(PgCollector::new(PgOptions {
                        dsn: dsn.to_string(),
                        ..self.base.clone()
                    })?);
                    if map.len() >= self.base.max_targets.max(1)
                        && let Some(k) = map.keys().next().cloned()
                    {
                        map.remove(&k);
                    }
                    map.insert(dsn.to_string(), c.clone());
                    c
                }
            }
        };
        Ok(collector.collect().await)
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

async fn metrics_handler(State(e): State<Arc<PgExporter>>) -> Response {
    respond(&e.collect().await)
}

async fn probe_handler(
    State(e): State<Arc<PgExporter>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(target) = params.get("target").filter(|t| !t.trim().is_empty()) else {
        return (
            StatusCode::BAD_REQUEST,
            "'target' parameter must be specified\n",
        )
            .into_response();
    };
    match e.collect_target(target).await {
        Ok(f) => respond(&f),
        Err(err) => (StatusCode::BAD_REQUEST, format!("{err}\n")).into_response(),
    }
}

async fn index() -> &'static str {
    "Lookout PostgreSQL exporter\n/metrics  metrics of the configured server\n/probe?target=DSN  metrics of any server\n/health  liveness\n"
}

/// `/metrics`, `/probe?target=`, `/health` and `/`.
pub fn router(exporter: Arc<PgExporter>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics_handler))
        .route("/probe", get(probe_handler))
        .route("/health", get(|| async { "ok" }))
        .with_state(exporter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_labels() {
        let c = PgCollector::new(PgOptions {
            dsn: "postgresql://u@127.0.0.1:25432/postgres".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.server(), "127.0.0.1:25432");
        let c = PgCollector::new(PgOptions {
            dsn: "host=/var/run/postgresql user=postgres".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.server(), "/var/run/postgresql:5432");
        assert!(
            PgCollector::new(PgOptions {
                dsn: "postgresql://[::1".into(),
                ..Default::default()
            })
            .is_err()
        );
    }

    #[tokio::test]
    async fn unreachable_server_is_pg_up_zero() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let e = PgExporter::new(PgOptions {
            dsn: format!("postgresql://postgres@127.0.0.1:{port}/postgres"),
            timeout: Duration::from_secs(2),
            ..Default::default()
        })
        .unwrap();
        let f = e.collect().await;
        assert_eq!(f.get("pg_up").unwrap().samples[0].value, 0.0);
        assert_eq!(
            f.get("pg_exporter_last_scrape_error").unwrap().samples[0].value,
            1.0
        );
        assert!(f.get("pg_stat_database_numbackends").is_none());
        assert!(f.get("postgres_exporter_build_info").is_some());
    }

    #[tokio::test]
    async fn silent_server_times_out_cleanly() {
        // Accepts TCP but never answers the startup packet.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let mut socks = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                socks.push(s);
            }
        });
        let c = PgCollector::new(PgOptions {
            dsn: format!("postgresql://postgres@127.0.0.1:{port}/postgres"),
            timeout: Duration::from_millis(300),
            ..Default::default()
        })
        .unwrap();
        let t = Instant::now();
        let r = c.scrape().await;
        assert!(!r.up);
        assert!(r.error.is_some());
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        hold.abort();
    }

    /// Like the real exporter: text 0.0.4 even when the scraper prefers OpenMetrics.
    #[tokio::test]
    async fn serves_text_whatever_the_accept_header() {
        use tower::ServiceExt as _;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let e = PgExporter::new(PgOptions {
            dsn: format!("postgresql://postgres@127.0.0.1:{port}/postgres"),
            timeout: Duration::from_secs(2),
            ..Default::default()
        })
        .unwrap();
        let extra =
            format!("/probe?target=postgresql%3A%2F%2Fpostgres%40127.0.0.1%3A{port}%2Fpostgres");
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
                samples.iter().any(|s| s.name == "pg_up" && s.value == 0.0),
                "{uri}"
            );
        }
    }
}
