//! The command-line contract (ARCHITECTURE §2). Scripts and tests rely on these flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "lookout",
    version,
    about = "The weAlist monitoring stack in one program: metrics, logs, alerts and dashboards."
)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info`, `lookout=debug`.
    #[arg(long, global = true, env = "LOOKOUT_LOG", default_value = "info")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the stack: scraping, metrics and log storage, rules and alerts, the Prometheus and
    /// Loki APIs, the log agent and the UI.
    Serve(Box<ServeArgs>),
    /// Run the stack on the example weAlist configuration (examples/wealist/docker/monitoring)
    /// with the seven weAlist demo services, simulated users and a fault schedule.
    Demo(DemoArgs),
    /// The log agent (Promtail's job): tail files and Docker json-file logs as a Promtail
    /// configuration says, and push them to Loki (or Lookout).
    Agent(crate::agent_cmd::AgentArgs),
    /// Run the Redis (:9121) or PostgreSQL (:9187) exporter, compatible with redis_exporter
    /// and postgres_exporter.
    Exporter(crate::exporter::ExporterArgs),
    /// Run an instant PromQL query (or a range query with --start/--end) against a server.
    Query(QueryArgs),
    /// Run a LogQL query against a Loki-compatible server (`--tail` follows new lines).
    Logs(crate::logs_cmd::LogsArgs),
    /// Validate configuration files (`check config FILE...`) or rule files (`check rules
    /// FILE...`), as promtool does.
    Check(CheckArgs),
    /// Unit-test rule files in promtool's format (`test rules FILE...`).
    Test(crate::rules_cmd::TestArgs),
    /// Offline tools for a metrics data directory: `import openmetrics`, `stats`.
    Tsdb(crate::tsdb_cmd::TsdbArgs),
}

/// Where each listener binds; the value `off` disables it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listen {
    Off,
    Addr(SocketAddr),
}

impl FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Listen::Off);
        }
        s.parse::<SocketAddr>()
            .map(Listen::Addr)
            .map_err(|e| format!("expected HOST:PORT or `off`, got {s:?}: {e}"))
    }
}

#[derive(Args, Debug, Clone)]
pub struct ListenArgs {
    /// UI and main HTTP port (Grafana's job). `off` disables it.
    #[arg(long, default_value = "127.0.0.1:3001")]
    pub ui_addr: Listen,
    /// Prometheus HTTP API v1 and remote-write receiver. `off` disables it.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub prom_addr: Listen,
    /// Loki push and query API. `off` disables it.
    #[arg(long, default_value = "127.0.0.1:3100")]
    pub loki_addr: Listen,
}

#[derive(Args, Debug, Clone)]
pub struct StorageArgs {
    /// Where metrics (and later logs, users, dashboards) are stored.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// How long samples are kept (Prometheus duration: 7d, 12h, 2w).
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    pub retention: Duration,
    /// Accept samples up to this much older than a series' newest sample (0 = off).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub out_of_order_window: Duration,
    /// Refuse new series beyond this many active series (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    pub max_series: usize,
    /// Delete the oldest blocks while metrics storage (blocks, WAL, head files) exceeds this
    /// many bytes (0 = no size limit).
    #[arg(long, default_value_t = 0)]
    pub retention_size: u64,
}

#[derive(Args, Debug, Clone)]
pub struct QueryLimitArgs {
    /// Longest a single query may run.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub query_timeout: Duration,
    /// Most samples a single query may hold in memory.
    #[arg(long, default_value_t = 50_000_000)]
    pub query_max_samples: usize,
    /// Queries evaluated at once; more wait.
    #[arg(long, default_value_t = 20)]
    pub query_max_concurrency: usize,
    /// Lookback for instant selectors.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub query_lookback_delta: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// A directory laid out like the seed's docker/monitoring (reads prometheus/prometheus.yml).
    #[arg(long)]
    pub config_dir: Option<PathBuf>,
    /// A prometheus.yml (overrides the one found in --config-dir).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub listen: ListenArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub limits: QueryLimitArgs,
    #[command(flatten)]
    pub rules: crate::rules_cmd::RulesArgs,
    #[command(flatten)]
    pub logs: crate::logs_cmd::LogStoreArgs,
    /// A Promtail configuration for the built-in log agent (default:
    /// `<config-dir>/promtail/promtail-config.yml` when it exists); it pushes to the Loki API.
    #[arg(long)]
    pub promtail_config: Option<PathBuf>,
    #[command(flatten)]
    pub exporters: crate::embedded_exporters::EmbeddedExporterArgs,
}

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Where the demo keeps its data; starting twice on the same directory keeps it.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Seed for the traffic generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The weAlist example configuration.
    #[arg(long, default_value = "examples/wealist/docker/monitoring")]
    pub config_dir: PathBuf,
    #[command(flatten)]
    pub listen: ListenArgs,
    #[command(flatten)]
    pub demo: crate::demo::DemoOptions,
}

#[derive(Args, Debug, Clone)]
pub struct QueryArgs {
    /// The PromQL expression.
    pub query: String,
    /// Base URL of a Prometheus-compatible API.
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    pub server: String,
    /// Evaluation time for an instant query (RFC3339 or Unix seconds; default now).
    #[arg(long)]
    pub time: Option<String>,
    /// Range query start (RFC3339 or Unix seconds); needs --end.
    #[arg(long, requires = "end")]
    pub start: Option<String>,
    /// Range query end.
    #[arg(long, requires = "start")]
    pub end: Option<String>,
    /// Range query step (duration or seconds).
    #[arg(long, default_value = "1m")]
    pub step: String,
    /// Print the raw JSON response instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// What to check: `config` (prometheus.yml) or `rules`.
    pub what: String,
    /// Files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct UnavailableArgs {
    /// Arguments for the future command (ignored).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

/// Prometheus duration syntax (`7d`, `1h30m`, `250ms`), as in `prometheus.yml`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    s.parse::<lookout_config::Duration>()
        .map(|d| d.as_std())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(parse_duration("1x").is_err());
    }

    #[test]
    fn listen_off() {
        assert_eq!("off".parse::<Listen>().unwrap(), Listen::Off);
        assert!("nonsense".parse::<Listen>().is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
