//! `lookout exporter redis|postgres`: the Redis and PostgreSQL exporters as standalone
//! processes on redis_exporter's and postgres_exporter's ports, configured from flags or the
//! real exporters' environment variables (`REDIS_ADDR`, `REDIS_PASSWORD`, `DATA_SOURCE_NAME`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::cli::parse_duration;

#[derive(Args, Debug, Clone)]
pub struct ExporterArgs {
    #[command(subcommand)]
    pub kind: ExporterKind,
}

#[derive(Subcommand, Debug, Clone)]
pub enum ExporterKind {
    /// redis_exporter-compatible metrics of a Redis server (default :9121).
    Redis(RedisArgs),
    /// postgres_exporter-compatible metrics of a PostgreSQL server (default :9187).
    Postgres(PostgresArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RedisArgs {
    /// Where to serve /metrics and /scrape?target=.
    #[arg(long, default_value = lookout_exporter_redis::DEFAULT_LISTEN)]
    pub addr: SocketAddr,
    /// The Redis to scrape on /metrics (redis://, rediss://, unix:// or host:port; empty =
    /// only /scrape?target=).
    #[arg(long, env = "REDIS_ADDR", default_value = lookout_exporter_redis::DEFAULT_REDIS_ADDR)]
    pub redis_addr: String,
    /// ACL user name.
    #[arg(long, env = "REDIS_USER")]
    pub redis_user: Option<String>,
    /// Password (also for /scrape targets).
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,
    /// File holding the password (first line).
    #[arg(long, env = "REDIS_PASSWORD_FILE")]
    pub redis_password_file: Option<PathBuf>,
    /// Deadline of one scrape, connecting included.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Most `db` label values.
    #[arg(long, default_value_t = 256)]
    pub max_databases: usize,
    /// Most `cmd` label values.
    #[arg(long, default_value_t = 1000)]
    pub max_commands: usize,
    /// Most /scrape targets kept connected.
    #[arg(long, default_value_t = 256)]
    pub max_targets: usize,
    /// rediss://: the CA certificate (PEM) that signed the server's certificate.
    #[arg(long)]
    pub tls_ca_cert_file: Option<PathBuf>,
    /// rediss://: client certificate (PEM), with --tls-client-key-file.
    #[arg(long, requires = "tls_client_key_file")]
    pub tls_client_cert_file: Option<PathBuf>,
    /// rediss://: client key (PEM), with --tls-client-cert-file.
    #[arg(long, requires = "tls_client_cert_file")]
    pub tls_client_key_file: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct PostgresArgs {
    /// Where to serve /metrics and /probe?target=.
    #[arg(long, default_value = lookout_exporter_postgres::DEFAULT_LISTEN)]
    pub addr: SocketAddr,
    /// The server to scrape on /metrics (URL or key=value DSN; empty = only /probe).
    #[arg(long, env = "DATA_SOURCE_NAME", default_value = lookout_exporter_postgres::DEFAULT_DSN, hide_env_values = true)]
    pub dsn: String,
    /// Deadline of one scrape, connecting included (also the server-side statement_timeout).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Most databases in per-database families.
    #[arg(long, default_value_t = 1000)]
    pub max_databases: usize,
    /// Most tables in pg_stat_user_tables_*.
    #[arg(long, default_value_t = 1000)]
    pub max_tables: usize,
    /// Leave out pg_settings_*.
    #[arg(long)]
    pub disable_settings_metrics: bool,
    /// Most /probe targets kept connected.
    #[arg(long, default_value_t = 64)]
    pub max_targets: usize,
    /// Connections per server; the scrape's queries are spread over them.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub connections: u16,
}

pub async fn run(args: ExporterArgs) -> anyhow::Result<()> {
    match args.kind {
        ExporterKind::Redis(a) => {
            let password = match (&a.redis_password, &a.redis_password_file) {
                (Some(p), _) => Some(p.clone()),
                (None, Some(file)) => {
                    let text = std::fs::read_to_string(file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    Some(text.lines().next().unwrap_or("").to_string())
                }
                (None, None) => None,
            };
            let opts = lookout_exporter_redis::RedisOptions {
                addr: a.redis_addr.clone(),
                user: a.redis_user.clone(),
                password,
                timeout: a.timeout,
                set_client_name: true,
                limits: lookout_exporter_redis::Limits {
                    max_databases: a.max_databases,
                    max_commands: a.max_commands,
                },
                max_targets: a.max_targets,
                tls_ca_cert: a.tls_ca_cert_file.clone(),
                tls_client_cert: a.tls_client_cert_file.clone(),
                tls_client_key: a.tls_client_key_file.clone(),
            };
            let exporter = lookout_exporter_redis::RedisExporter::new(opts)?;
            serve(
                a.addr,
                lookout_exporter_redis::router(exporter),
                "redis exporter",
            )
            .await
        }
        ExporterKind::Postgres(a) => {
            let opts = lookout_exporter_postgres::PgOptions {
                dsn: a.dsn.clone(),
                timeout: a.timeout,
                max_databases: a.max_databases,
                max_tables: a.max_tables,
                disable_settings: a.disable_settings_metrics,
                max_targets: a.max_targets,
                connections: usize::from(a.connections),
            };
            let exporter = lookout_exporter_postgres::PgExporter::new(opts)?;
            serve(
                a.addr,
                lookout_exporter_postgres::router(exporter),
                "postgres exporter",
            )
            .await
        }
    }
}

async fn serve(addr: SocketAddr, router: axum::Router, what: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {what} to {addr}"))?;
    tracing::info!(%addr, "{what} listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown())
        .await
        .with_context(|| format!("serving {what}"))?;
    tracing::info!("{what} stopped");
    Ok(())
}

async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
