//! The Redis and PostgreSQL exporters inside `lookout serve` and `lookout demo`: the same
//! collectors as `lookout exporter redis|postgres`, each on its own listener (redis_exporter's
//! :9121, postgres_exporter's :9187) so a prometheus.yml scrapes them like any other target.
//!
//! `serve` starts them from its `--redis-exporter.*` / `--postgres-exporter.*` flags (off by
//! default) whether or not the database answers yet: a server that is down reports `*_up 0`
//! and is picked up when it comes back. `demo` starts them only when a local server answers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::cli::{Listen, parse_duration};

/// `lookout serve` flags for the embedded exporters (flattened into `ServeArgs`).
#[derive(Args, Debug, Clone)]
pub struct EmbeddedExporterArgs {
    /// Run the Redis exporter inside serve on this address (redis_exporter uses :9121).
    /// `off` (default) disables it.
    #[arg(long = "redis-exporter.listen", default_value = "off")]
    pub redis_listen: Listen,
    /// The Redis the embedded exporter scrapes on /metrics (redis://, rediss://, unix:// or
    /// host:port).
    #[arg(
        long = "redis-exporter.addr",
        env = "REDIS_ADDR",
        default_value = lookout_exporter_redis::DEFAULT_REDIS_ADDR
    )]
    pub redis_addr: String,
    /// ACL user name for that Redis.
    #[arg(long = "redis-exporter.user", env = "REDIS_USER")]
    pub redis_user: Option<String>,
    /// Password for that Redis.
    #[arg(
        long = "redis-exporter.password",
        env = "REDIS_PASSWORD",
        hide_env_values = true
    )]
    pub redis_password: Option<String>,
    /// Deadline of one Redis scrape, connecting included.
    #[arg(long = "redis-exporter.timeout", default_value = "5s", value_parser = parse_duration)]
    pub redis_timeout: Duration,
    /// rediss://: the CA certificate (PEM) that signed the server's certificate.
    #[arg(long = "redis-exporter.tls-ca-cert-file")]
    pub redis_tls_ca_cert: Option<PathBuf>,
    /// Run the PostgreSQL exporter inside serve on this address (postgres_exporter uses
    /// :9187). `off` (default) disables it.
    #[arg(long = "postgres-exporter.listen", default_value = "off")]
    pub postgres_listen: Listen,
    /// The server the embedded exporter scrapes on /metrics (URL or key=value DSN; `sslmode`
    /// and `sslrootcert` as libpq reads them).
    #[arg(
        long = "postgres-exporter.dsn",
        env = "DATA_SOURCE_NAME",
        default_value = lookout_exporter_postgres::DEFAULT_DSN,
        hide_env_values = true
    )]
    pub postgres_dsn: String,
    /// Deadline of one PostgreSQL scrape, connecting included.
    #[arg(long = "postgres-exporter.timeout", default_value = "10s", value_parser = parse_duration)]
    pub postgres_timeout: Duration,
    /// Most databases in per-database PostgreSQL families.
    #[arg(long = "postgres-exporter.max-databases", default_value_t = 1000)]
    pub postgres_max_databases: usize,
    /// Most tables in pg_stat_user_tables_*.
    #[arg(long = "postgres-exporter.max-tables", default_value_t = 1000)]
    pub postgres_max_tables: usize,
    /// Connections to the server; the scrape's queries are spread over them.
    #[arg(long = "postgres-exporter.connections", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub postgres_connections: u16,
}

impl EmbeddedExporterArgs {
    pub fn redis_options(&self) -> lookout_exporter_redis::RedisOptions {
        lookout_exporter_redis::RedisOptions {
            addr: self.redis_addr.clone(),
            user: self.redis_user.clone(),
            password: self.redis_password.clone(),
            timeout: self.redis_timeout,
            tls_ca_cert: self.redis_tls_ca_cert.clone(),
            ..Default::default()
        }
    }

    pub fn postgres_options(&self) -> lookout_exporter_postgres::PgOptions {
        lookout_exporter_postgres::PgOptions {
            dsn: self.postgres_dsn.clone(),
            timeout: self.postgres_timeout,
            max_databases: self.postgres_max_databases,
            max_tables: self.postgres_max_tables,
            connections: usize::from(self.postgres_connections),
            ..Default::default()
        }
    }
}

/// A server running in the background until its shutdown channel says stop.
pub struct Background {
    pub name: &'static str,
    pub task: tokio::task::JoinHandle<()>,
}

/// Binds `addr` and serves `router` there until `shutdown` turns true.
pub async fn spawn_server(
    name: &'static str,
    addr: SocketAddr,
    router: axum::Router,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Background> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr} ({name})"))?;
    info!(%addr, "{name} listening");
    let mut rx = shutdown;
    let task = tokio::spawn(async move {
        let res = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = res {
            tracing::error!(error = %e, "{name} failed");
        }
    });
    Ok(Background { name, task })
}

/// The Redis exporter on `listen`; it connects on the first scrape.
pub async fn start_redis(
    listen: SocketAddr,
    opts: lookout_exporter_redis::RedisOptions,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Background> {
    let redis = opts.addr.clone();
    let exporter = lookout_exporter_redis::RedisExporter::new(opts)?;
    let b = spawn_server(
        "redis exporter",
        listen,
        lookout_exporter_redis::router(exporter),
        shutdown,
    )
    .await?;
    info!(%listen, redis = %redis, "embedded redis exporter started");
    Ok(b)
}

/// The PostgreSQL exporter on `listen`; it connects on the first scrape.
pub async fn start_postgres(
    listen: SocketAddr,
    opts: lookout_exporter_postgres::PgOptions,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Background> {
    let exporter = lookout_exporter_postgres::PgExporter::new(opts)?;
    let b = spawn_server(
        "postgres exporter",
        listen,
        lookout_exporter_postgres::router(exporter),
        shutdown,
    )
    .await?;
    info!(%listen, "embedded postgres exporter started");
    Ok(b)
}

/// Whether a PostgreSQL server answers the collector's queries within `opts.timeout`.
pub async fn postgres_answers(opts: &lookout_exporter_postgres::PgOptions) -> bool {
    match lookout_exporter_postgres::PgCollector::new(opts.clone()) {
        Ok(c) => c.scrape().await.up,
        Err(e) => {
            warn!(error = %e, "invalid PostgreSQL DSN");
            false
        }
    }
}

/// `serve`: every exporter whose listener is on, started regardless of whether its database
/// answers now.
pub async fn start_configured(
    args: &EmbeddedExporterArgs,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<Background>> {
    let mut out = Vec::new();
    if let Listen::Addr(listen) = args.redis_listen {
        out.push(start_redis(listen, args.redis_options(), shutdown.clone()).await?);
    }
    if let Listen::Addr(listen) = args.postgres_listen {
        out.push(start_postgres(listen, args.postgres_options(), shutdown.clone()).await?);
    }
    Ok(out)
}

/// Waits up to `limit` for each background server to stop.
pub async fn join_all(servers: Vec<Background>, limit: Duration) {
    for b in servers {
        if tokio::time::timeout(limit, b.task).await.is_err() {
            warn!("{} did not stop in time", b.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        e: EmbeddedExporterArgs,
    }

    #[test]
    fn off_by_default_and_parsed() {
        let t = T::try_parse_from(["t"]).unwrap();
        assert_eq!(t.e.redis_listen, Listen::Off);
        assert_eq!(t.e.postgres_listen, Listen::Off);
        let t = T::try_parse_from([
            "t",
            "--redis-exporter.listen",
            "127.0.0.1:9121",
            "--redis-exporter.addr",
            "10.1.1.1:6380",
            "--redis-exporter.timeout",
            "2s",
            "--postgres-exporter.listen",
            "127.0.0.1:9187",
            "--postgres-exporter.dsn",
            "postgresql://u@h/db",
            "--postgres-exporter.max-tables",
            "50",
            "--postgres-exporter.connections",
            "1",
            "--redis-exporter.tls-ca-cert-file",
            "/etc/ca.pem",
        ])
        .unwrap();
        assert!(matches!(t.e.redis_listen, Listen::Addr(a) if a.port() == 9121));
        let r = t.e.redis_options();
        assert_eq!(r.addr, "10.1.1.1:6380");
        assert_eq!(r.timeout, Duration::from_secs(2));
        let p = t.e.postgres_options();
        assert_eq!(p.dsn, "postgresql://u@h/db");
        assert_eq!(p.max_tables, 50);
        assert_eq!(p.connections, 1);
        assert_eq!(r.tls_ca_cert, Some(PathBuf::from("/etc/ca.pem")));
    }

    #[tokio::test]
    async fn starts_with_the_database_down_and_stops() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_port = dead.local_addr().unwrap().port();
        drop(dead);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listen = l.local_addr().unwrap();
        drop(l);
        let (tx, rx) = watch::channel(false);
        let args = T::try_parse_from([
            "t".to_string(),
            "--redis-exporter.listen".into(),
            listen.to_string(),
            "--redis-exporter.addr".into(),
            format!("127.0.0.1:{dead_port}"),
            "--redis-exporter.timeout".into(),
            "1s".into(),
        ])
        .unwrap();
        let servers = start_configured(&args.e, &rx).await.unwrap();
        assert_eq!(servers.len(), 1);
        let body = reqwest::get(format!("http://{listen}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.contains("\nredis_up 0\n"), "{body}");
        tx.send(true).unwrap();
        join_all(servers, Duration::from_secs(5)).await;
        assert!(tokio::net::TcpStream::connect(listen).await.is_err());
    }
}
