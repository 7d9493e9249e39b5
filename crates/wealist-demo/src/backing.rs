//! Optional PostgreSQL and Redis behind the user and board services, as in the real weAlist.
//!
//! [`Backing::connect`] creates database `wealist` (if absent) and its tables, keeps a small
//! fixed pool of PostgreSQL connections (re-connected after errors, with a back-off) and one
//! multiplexed Redis connection. The services keep answering from their in-memory state; the
//! database calls run beside it with a short timeout, and a failure only counts in
//! `wealist_backing_errors_total{service,backend}` (see [`BackingMetrics`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use lookout_instrument::metrics::{Counter, Family};
use lookout_instrument::{InstrumentError, Metrics, label_set};
use redis::aio::MultiplexedConnection;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row};

/// Name of the database the services use.
pub const DATABASE: &str = "wealist";
/// Redis key prefix of login sessions (`wealist:session:<email>`).
pub const SESSION_PREFIX: &str = "wealist:session:";
/// Redis key prefix of cached lists.
pub const CACHE_PREFIX: &str = "wealist:cache:";
/// Connections in the PostgreSQL pool.
pub const POOL_SIZE: usize = 3;
/// Deadline of one database call.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// Pause before re-connecting after a failed connect.
const RETRY_AFTER: Duration = Duration::from_secs(2);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id bigserial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_login timestamptz
);
CREATE TABLE IF NOT EXISTS workspaces (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    owner_email text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS workspaces_owner_idx ON workspaces (owner_email);
CREATE TABLE IF NOT EXISTS projects (
    id bigserial PRIMARY KEY,
    instance bigint NOT NULL,
    ext_id bigint NOT NULL,
    name text NOT NULL,
    owner text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS projects_ext_idx ON projects (instance, ext_id);
CREATE TABLE IF NOT EXISTS boards (
    id bigserial PRIMARY KEY,
    instance bigint NOT NULL,
    ext_id bigint NOT NULL,
    project_ext bigint NOT NULL,
    title text NOT NULL,
    status text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS boards_ext_idx ON boards (instance, ext_id);
CREATE INDEX IF NOT EXISTS boards_project_idx ON boards (instance, project_ext);
CREATE TABLE IF NOT EXISTS board_items (
    id bigserial PRIMARY KEY,
    board_id bigint NOT NULL,
    status text NOT NULL,
    note text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS board_items_board_idx ON board_items (board_id, id);
";

/// Most rows kept in `users`, `projects` and `boards` (older ones are deleted).
pub const MAX_ROWS: i64 = 20_000;
/// Most `board_items` rows kept per board.
pub const MAX_ITEMS_PER_BOARD: i64 = 20;

/// Which database a call went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Redis,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Redis => "redis",
        }
    }
}

/// A failed database call.
#[derive(Debug, thiserror::Error)]
pub enum BackingError {
    #[error("{0} is not in use")]
    Absent(&'static str),
    #[error("{0} call timed out")]
    Timeout(&'static str),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("postgres reconnect pending")]
    Backoff,
}

label_set! {
    pub struct BackendLabels { service: &'static str, backend: &'static str }
}

/// Per-service counters of database calls (registered on the service's own registry).
#[derive(Clone)]
pub struct BackingMetrics {
    service: &'static str,
    calls: Family<BackendLabels, Counter>,
    errors: Family<BackendLabels, Counter>,
}

impl BackingMetrics {
    pub fn register(metrics: &mut Metrics, service: &'static str) -> Result<Self, InstrumentError> {
        Ok(BackingMetrics {
            service,
            calls: metrics.counter_family::<BackendLabels>(
                "wealist_backing_calls_total",
                "Calls to the service's PostgreSQL/Redis.",
            )?,
            errors: metrics.counter_family::<BackendLabels>(
                "wealist_backing_errors_total",
                "Failed or timed-out calls to the service's PostgreSQL/Redis.",
            )?,
        })
    }

    /// Counts one call; returns the value when it succeeded.
    pub fn record<T>(&self, backend: Backend, r: Result<T, BackingError>) -> Option<T> {
        let labels = BackendLabels {
            service: self.service,
            backend: backend.name(),
        };
        match r {
            Ok(v) => {
                self.calls.get_or_create(&labels).inc();
                Some(v)
            }
            Err(BackingError::Absent(_)) => None,
            Err(e) => {
                self.calls.get_or_create(&labels).inc();
                self.errors.get_or_create(&labels).inc();
                tracing::debug!(service = self.service, backend = backend.name(), error = %e, "backing call failed");
                None
            }
        }
    }
}

async fn timed<T, E: Into<BackingError>>(
    what: &'static str,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, BackingError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => r.map_err(Into::into),
        Err(_) => Err(BackingError::Timeout(what)),
    }
}

/// Connect attempts with a pause of [`RETRY_AFTER`] after a failure, so a missing database
/// costs one failed connect per pause rather than one per request.
#[derive(Default)]
struct ConnectBackoff {
    failed_at: parking_lot::Mutex<Option<Instant>>,
}

impl ConnectBackoff {
    async fn connect<T>(
        &self,
        connect: impl Future<Output = Result<T, BackingError>>,
    ) -> Result<T, BackingError> {
        if self
            .failed_at
            .lock()
            .is_some_and(|t| t.elapsed() < RETRY_AFTER)
        {
            return Err(BackingError::Backoff);
        }
        let r = connect.await;
        *self.failed_at.lock() = r.is_err().then(Instant::now);
        r
    }
}

struct Slot {
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
    backoff: ConnectBackoff,
}

/// A fixed pool of connections to database `wealist`, filled lazily.
struct PgPool {
    config: tokio_postgres::Config,
    slots: Vec<Slot>,
    next: AtomicUsize,
}

async fn connect_pg(config: &tokio_postgres::Config) -> Result<Client, BackingError> {
    let (client, conn) = timed("postgres connect", config.connect(NoTls)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "backing postgres connection closed");
        }
    });
    Ok(client)
}

impl PgPool {
    async fn client(&self) -> Result<Arc<Client>, BackingError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let slot = &self.slots[i];
        let mut guard = slot.client.lock().await;
        if let Some(c) = guard.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        *guard = None;
        let c = Arc::new(slot.backoff.connect(connect_pg(&self.config)).await?);
        *guard = Some(c.clone());
        Ok(c)
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, BackingError> {
        let c = self.client().await?;
        timed("postgres query", c.query(sql, params)).await
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, BackingError> {
        let c = self.client().await?;
        timed("postgres query", c.execute(sql, params)).await
    }

    /// Runs `insert` (an `INSERT ... RETURNING id`) and returns the id; every 64th id runs
    /// each of `trims` (`DELETE ... WHERE <id column> <= $1`) with `id - MAX_ROWS`, so the
    /// demo's tables stay bounded however long it runs.
    async fn insert_trimmed(
        &self,
        insert: &str,
        params: &[&(dyn ToSql + Sync)],
        trims: &[&str],
    ) -> Result<i64, BackingError> {
        let rows = self.query(insert, params).await?;
        let id: i64 = rows.first().map(|r| r.get(0)).unwrap_or(0);
        if id % 64 == 0 {
            for trim in trims {
                self.execute(trim, &[&(id - MAX_ROWS)]).await?;
            }
        }
        Ok(id)
    }
}

/// One multiplexed Redis connection, re-opened after an error.
struct RedisConn {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    backoff: ConnectBackoff,
}

impl RedisConn {
    async fn conn(&self) -> Result<MultiplexedConnection, BackingError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT));
        let c = self
            .backoff
            .connect(timed(
                "redis connect",
                self.client
                    .get_multiplexed_async_connection_with_config(&cfg),
            ))
            .await?;
        *guard = Some(c.clone());
        Ok(c)
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, BackingError> {
        let mut c = self.conn().await?;
        let r: Result<T, BackingError> = timed("redis", cmd.query_async(&mut c)).await;
        if let Err(e) = &r {
            // A broken or stuck connection is opened afresh on the next call.
            let broken = match e {
                BackingError::Redis(re) => {
                    re.is_io_error() || re.is_connection_dropped() || re.is_unrecoverable_error()
                }
                _ => true,
            };
            if broken {
                *self.conn.lock().await = None;
            }
        }
        r
    }
}

/// The databases the services use; either may be absent. PostgreSQL can also arrive later
/// ([`Backing::attach_postgres_later`]), for a server that is still starting.
pub struct Backing {
    pg: OnceLock<PgPool>,
    redis: Option<RedisConn>,
}

impl std::fmt::Debug for Backing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backing")
            .field("postgres", &self.uses_postgres())
            .field("redis", &self.redis.is_some())
            .finish()
    }
}

/// `host:port` becomes `redis://host:port`.
fn redis_url(addr: &str) -> String {
    let a = addr.trim();
    if a.contains("://") {
        a.to_owned()
    } else {
        format!("redis://{a}")
    }
}

/// `dsn` pointed at database [`DATABASE`] when it names the default `postgres` database (or
/// none); `None` when it names another one or cannot be read. URL and key=value forms.
pub fn dsn_with_database(dsn: &str) -> Option<String> {
    let config: tokio_postgres::Config = dsn.parse().ok()?;
    if !matches!(config.get_dbname(), None | Some("postgres")) {
        return None;
    }
    let dsn = dsn.trim();
    if let Some((scheme, rest)) = dsn.split_once("://") {
        let (main, query) = match rest.split_once('?') {
            Some((m, q)) => (m, Some(q)),
            None => (rest, None),
        };
        let authority = main.split_once('/').map(|(a, _)| a).unwrap_or(main);
        let mut out = format!("{scheme}://{authority}/{DATABASE}");
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        Some(out)
    } else {
        let mut parts: Vec<String> = dsn
            .split_whitespace()
            .filter(|p| !p.starts_with("dbname="))
            .map(str::to_owned)
            .collect();
        parts.push(format!("dbname={DATABASE}"));
        Some(parts.join(" "))
    }
}

async fn bootstrap_pg(dsn: &str, timeout: Duration) -> Result<PgPool, BackingError> {
    let mut config: tokio_postgres::Config = dsn.parse()?;
    config.connect_timeout(timeout);
    let admin = tokio::time::timeout(timeout, connect_pg(&config))
        .await
        .map_err(|_| BackingError::Timeout("postgres connect"))??;
    if config.get_dbname() != Some(DATABASE) {
        let r = tokio::time::timeout(timeout, admin.batch_execute("CREATE DATABASE wealist")).await;
        match r {
            Err(_) => return Err(BackingError::Timeout("CREATE DATABASE")),
            Ok(Ok(())) => tracing::info!("created PostgreSQL database wealist"),
            // 42P04 duplicate_database; 23505 when another session created it meanwhile.
            Ok(Err(e))
                if e.code()
                    .is_some_and(|c| c.code() == "42P04" || c.code() == "23505") => {}
            Ok(Err(e)) => return Err(e.into()),
        }
    }
    drop(admin);
    config.dbname(DATABASE);
    let client = tokio::time::timeout(timeout, connect_pg(&config))
        .await
        .map_err(|_| BackingError::Timeout("postgres connect"))??;
    match tokio::time::timeout(timeout, client.batch_execute(SCHEMA)).await {
        Err(_) => return Err(BackingError::Timeout("creating tables")),
        Ok(Ok(())) => {}
        // Another process creating the same tables at the same moment.
        Ok(Err(e)) if e.code().is_some_and(|c| c.code() == "23505") => {}
        Ok(Err(e)) => return Err(e.into()),
    }
    config.connect_timeout(CALL_TIMEOUT);
    let mut slots: Vec<Slot> = (0..POOL_SIZE)
        .map(|_| Slot {
            client: tokio::sync::Mutex::new(None),
            backoff: ConnectBackoff::default(),
        })
        .collect();
    if let Some(first) = slots.first_mut() {
        *first.client.get_mut() = Some(Arc::new(client));
    }
    Ok(PgPool {
        config,
        slots,
        next: AtomicUsize::new(0),
    })
}

async fn bootstrap_redis(addr: &str, timeout: Duration) -> Result<RedisConn, BackingError> {
    let client = redis::Client::open(redis_url(addr))?;
    let rc = RedisConn {
        client,
        conn: tokio::sync::Mutex::new(None),
        backoff: ConnectBackoff::default(),
    };
    let mut c = tokio::time::timeout(timeout, rc.conn())
        .await
        .map_err(|_| BackingError::Timeout("redis connect"))??;
    let pong: String = timed("redis", redis::cmd("PING").query_async(&mut c)).await?;
    tracing::debug!(reply = pong, "backing redis answers");
    Ok(rc)
}

impl Backing {
    /// Connects to whichever of the two is given and answers within `timeout`; one that fails
    /// is left out (logged). Never fails itself.
    pub async fn connect(
        postgres_dsn: Option<&str>,
        redis_addr: Option<&str>,
        timeout: Duration,
    ) -> Backing {
        let pg = OnceLock::new();
        if let Some(dsn) = postgres_dsn {
            match bootstrap_pg(dsn, timeout).await {
                Ok(p) => {
                    let _ = pg.set(p);
                }
                Err(e) => tracing::warn!(error = %e, "the services do not use PostgreSQL"),
            }
        }
        let redis = match redis_addr {
            Some(addr) => match bootstrap_redis(addr, timeout).await {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "the services do not use Redis");
                    None
                }
            },
            None => None,
        };
        Backing { pg, redis }
    }

    pub fn uses_postgres(&self) -> bool {
        self.pg.get().is_some()
    }

    /// Keeps trying to set up PostgreSQL at `dsn` (every [`RETRY_AFTER`]) until it works, for
    /// at most `window` or until `stop` turns true; the services start using it from then on.
    /// Does nothing when PostgreSQL is already in use.
    pub fn attach_postgres_later(
        self: &Arc<Self>,
        dsn: String,
        window: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + window;
            let mut last_error = String::new();
            while !me.uses_postgres() && Instant::now() < deadline && !*stop.borrow() {
                match bootstrap_pg(&dsn, Duration::from_secs(5)).await {
                    Ok(p) => {
                        if me.pg.set(p).is_ok() {
                            tracing::info!("the weAlist services now use PostgreSQL");
                        }
                        return;
                    }
                    Err(e) => last_error = e.to_string(),
                }
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_AFTER) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            if !me.uses_postgres() && !last_error.is_empty() {
                tracing::warn!(error = %last_error, "the weAlist services do not use PostgreSQL");
            }
        })
    }

    pub fn uses_redis(&self) -> bool {
        self.redis.is_some()
    }

    fn pg(&self) -> Result<&PgPool, BackingError> {
        self.pg.get().ok_or(BackingError::Absent("postgres"))
    }

    fn redis(&self) -> Result<&RedisConn, BackingError> {
        self.redis.as_ref().ok_or(BackingError::Absent("redis"))
    }

    // ---- user-service ----

    /// Stores a signed-up user (a re-registration after a service restart updates the name);
    /// every 64th id trims the table to [`MAX_ROWS`].
    pub async fn insert_user(&self, email: &str, name: &str) -> Result<i64, BackingError> {
        self.pg()?
            .insert_trimmed(
                "INSERT INTO users (email, name) VALUES ($1, $2) \
                 ON CONFLICT (email) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                &[&email, &name],
                &["DELETE FROM users WHERE id <= $1"],
            )
            .await
    }

    /// Looks a user up by email (index) and stamps the login time; `None` when not stored.
    pub async fn login_user(&self, email: &str) -> Result<Option<i64>, BackingError> {
        let rows = self
            .pg()?
            .query(
                "UPDATE users SET last_login = now() WHERE email = $1 RETURNING id",
                &[&email],
            )
            .await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    /// The stored name of a user, by email (index).
    pub async fn user_name(&self, email: &str) -> Result<Option<String>, BackingError> {
        let rows = self
            .pg()?
            .query("SELECT name FROM users WHERE email = $1", &[&email])
            .await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    /// Records a workspace.
    pub async fn insert_workspace(
        &self,
        name: &str,
        owner_email: &str,
    ) -> Result<(), BackingError> {
        self.pg()?
            .insert_trimmed(
                "INSERT INTO workspaces (name, owner_email) VALUES ($1, $2) RETURNING id",
                &[&name, &owner_email],
                &["DELETE FROM workspaces WHERE id <= $1"],
            )
            .await
            .map(|_| ())
    }

    /// Opens a session (`wealist:session:<email>`) that expires after `ttl`.
    pub async fn set_session(&self, email: &str, ttl: Duration) -> Result<(), BackingError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(format!("{SESSION_PREFIX}{email}"))
            .arg(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            )
            .arg("EX")
            .arg(ttl.as_secs().max(1));
        self.redis()?.run::<()>(cmd).await
    }

    /// Whether a session is open (a Redis hit or miss).
    pub async fn has_session(&self, email: &str) -> Result<bool, BackingError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(format!("{SESSION_PREFIX}{email}"));
        let v: Option<String> = self.redis()?.run(cmd).await?;
        Ok(v.is_some())
    }

    pub async fn end_session(&self, email: &str) -> Result<(), BackingError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(format!("{SESSION_PREFIX}{email}"));
        self.redis()?.run::<i64>(cmd).await.map(|_| ())
    }

    // ---- board-service ----

    pub async fn insert_project(
        &self,
        instance: i64,
        ext_id: i64,
        name: &str,
        owner: &str,
    ) -> Result<(), BackingError> {
        self.pg()?
            .insert_trimmed(
                "INSERT INTO projects (instance, ext_id, name, owner) VALUES ($1, $2, $3, $4) RETURNING id",
                &[&instance, &ext_id, &name, &owner],
                &["DELETE FROM projects WHERE id <= $1"],
            )
            .await
            .map(|_| ())
    }

    /// Number of stored projects of all instances (a sequential scan).
    pub async fn count_projects(&self) -> Result<i64, BackingError> {
        let rows = self
            .pg()?
            .query("SELECT count(*) FROM projects", &[])
            .await?;
        Ok(rows.first().map(|r| r.get(0)).unwrap_or(0))
    }

    /// The service ids of a project's boards (index lookup).
    pub async fn project_boards(
        &self,
        instance: i64,
        project_ext: i64,
    ) -> Result<Vec<i64>, BackingError> {
        let rows = self
            .pg()?
            .query(
                "SELECT ext_id FROM boards WHERE instance = $1 AND project_ext = $2 ORDER BY ext_id",
                &[&instance, &project_ext],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub async fn delete_project(&self, instance: i64, ext_id: i64) -> Result<(), BackingError> {
        let pg = self.pg()?;
        pg.execute(
            "DELETE FROM boards WHERE instance = $1 AND project_ext = $2",
            &[&instance, &ext_id],
        )
        .await?;
        pg.execute(
            "DELETE FROM projects WHERE instance = $1 AND ext_id = $2",
            &[&instance, &ext_id],
        )
        .await
        .map(|_| ())
    }

    pub async fn insert_board(
        &self,
        instance: i64,
        ext_id: i64,
        project_ext: i64,
        title: &str,
        status: &str,
    ) -> Result<(), BackingError> {
        self.pg()?
            .insert_trimmed(
                "INSERT INTO boards (instance, ext_id, project_ext, title, status) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[&instance, &ext_id, &project_ext, &title, &status],
                &[
                    "DELETE FROM boards WHERE id <= $1",
                    "DELETE FROM board_items WHERE board_id <= $1",
                ],
            )
            .await
            .map(|_| ())
    }

    /// A board's title and status by its service id (index lookup).
    pub async fn get_board(
        &self,
        instance: i64,
        ext_id: i64,
    ) -> Result<Option<(String, String)>, BackingError> {
        let rows = self
            .pg()?
            .query(
                "SELECT title, status FROM boards WHERE instance = $1 AND ext_id = $2 LIMIT 1",
                &[&instance, &ext_id],
            )
            .await?;
        Ok(rows.first().map(|r| (r.get(0), r.get(1))))
    }

    /// Updates a board and appends an item to its history, keeping the newest
    /// [`MAX_ITEMS_PER_BOARD`].
    pub async fn update_board(
        &self,
        instance: i64,
        ext_id: i64,
        title: &str,
        status: &str,
    ) -> Result<(), BackingError> {
        let pg = self.pg()?;
        let rows = pg
            .query(
                "UPDATE boards SET title = $3, status = $4, updated_at = now() \
                 WHERE instance = $1 AND ext_id = $2 RETURNING id",
                &[&instance, &ext_id, &title, &status],
            )
            .await?;
        let Some(board_id) = rows.first().map(|r| r.get::<_, i64>(0)) else {
            return Ok(());
        };
        let note = format!("status {status}");
        pg.execute(
            "INSERT INTO board_items (board_id, status, note) VALUES ($1, $2, $3)",
            &[&board_id, &status, &note],
        )
        .await?;
        pg.execute(
            "DELETE FROM board_items WHERE board_id = $1 AND id < \
             (SELECT min(id) FROM (SELECT id FROM board_items WHERE board_id = $1 \
              ORDER BY id DESC LIMIT $2) newest)",
            &[&board_id, &MAX_ITEMS_PER_BOARD],
        )
        .await
        .map(|_| ())
    }

    pub async fn delete_board(&self, instance: i64, ext_id: i64) -> Result<(), BackingError> {
        self.pg()?
            .execute(
                "DELETE FROM boards WHERE instance = $1 AND ext_id = $2",
                &[&instance, &ext_id],
            )
            .await
            .map(|_| ())
    }

    /// A cached value (`wealist:cache:<key>`), `None` on a miss.
    pub async fn cache_get(&self, key: &str) -> Result<Option<String>, BackingError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(format!("{CACHE_PREFIX}{key}"));
        self.redis()?.run(cmd).await
    }

    pub async fn cache_set(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(), BackingError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(format!("{CACHE_PREFIX}{key}"))
            .arg(value)
            .arg("EX")
            .arg(ttl.as_secs().max(1));
        self.redis()?.run::<()>(cmd).await
    }

    pub async fn cache_del(&self, key: &str) -> Result<(), BackingError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(format!("{CACHE_PREFIX}{key}"));
        self.redis()?.run::<i64>(cmd).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls() {
        assert_eq!(redis_url("127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redis_url(" redis://h:1/2 "), "redis://h:1/2");
    }

    #[test]
    fn dsn_database() {
        assert_eq!(
            dsn_with_database("postgresql://postgres@127.0.0.1:5432/postgres?sslmode=disable")
                .as_deref(),
            Some("postgresql://postgres@127.0.0.1:5432/wealist?sslmode=disable")
        );
        assert_eq!(
            dsn_with_database("postgres://u:p@h").as_deref(),
            Some("postgres://u:p@h/wealist")
        );
        assert_eq!(
            dsn_with_database("host=/tmp user=postgres dbname=postgres").as_deref(),
            Some("host=/tmp user=postgres dbname=wealist")
        );
        assert_eq!(dsn_with_database("postgresql://u@h/app"), None);
        assert_eq!(dsn_with_database("host=h dbname=app"), None);
    }

    #[tokio::test]
    async fn absent_backends_are_not_errors() {
        let b = Backing::connect(None, None, Duration::from_millis(100)).await;
        assert!(!b.uses_postgres() && !b.uses_redis());
        let mut metrics = Metrics::new();
        let m = BackingMetrics::register(&mut metrics, "user").expect("register");
        let exporter = metrics.exporter();
        let render = || {
            let bytes = exporter
                .render(lookout_exposition::Format::PrometheusText)
                .expect("render");
            String::from_utf8_lossy(&bytes).into_owned()
        };
        assert!(
            m.record(Backend::Postgres, b.login_user("a@b.co").await)
                .is_none()
        );
        let text = render();
        assert!(!text.contains("wealist_backing_errors_total{"), "{text}");
        // A real failure is counted.
        m.record::<()>(Backend::Redis, Err(BackingError::Timeout("redis")));
        let text = render();
        assert!(
            text.contains(r#"wealist_backing_errors_total{service="user",backend="redis"} 1"#),
            "{text}"
        );
    }
}
