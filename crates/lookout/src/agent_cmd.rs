//! `lookout agent --config promtail-config.yml` (Promtail's job, standalone), and the agent
//! `lookout serve` runs when `<config-dir>/promtail/promtail-config.yml` exists (or
//! `--promtail-config` names a file), pushing to the embedded Loki API.
//!
//! `${VAR}` / `${VAR:-default}` in the configuration are expanded; `lookout serve` provides
//! `LOOKOUT_DATA_DIR` (its `--data-dir`), so the example configuration finds the demo's
//! `<data-dir>/containers/*/*-json.log`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use lookout_agent::config::ClientConfig;
use lookout_agent::{Agent, AgentConfig};

use crate::cli::Listen;

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// Promtail configuration file (promtail-config.yml).
    #[arg(long, short = 'c', visible_alias = "config.file")]
    pub config: PathBuf,
    /// Listener for the agent's /metrics, /targets and /api/v1/targets (overrides
    /// `server.http_listen_address`/`http_listen_port`). `off` disables it.
    #[arg(long)]
    pub http_addr: Option<Listen>,
    /// Only check the configuration, then exit.
    #[arg(long, visible_alias = "check-syntax")]
    pub check: bool,
}

fn vars(data_dir: Option<&Path>) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    if let Some(d) = data_dir {
        v.insert("LOOKOUT_DATA_DIR".into(), d.display().to_string());
    }
    v
}

fn load(path: &Path, data_dir: Option<&Path>) -> anyhow::Result<AgentConfig> {
    AgentConfig::load(path, &vars(data_dir)).with_context(|| format!("loading {}", path.display()))
}

/// `lookout agent`.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let cfg = load(&args.config, None)?;
    if args.check {
        println!(
            "{}: valid ({} scrape configs, {} clients)",
            args.config.display(),
            cfg.scrape_configs.len(),
            cfg.clients.len()
        );
        return Ok(());
    }
    let listen = match args.http_addr {
        Some(l) => l,
        None if cfg.server.disable => Listen::Off,
        None => {
            let host = if cfg.server.http_listen_address.is_empty() {
                "127.0.0.1"
            } else {
                cfg.server.http_listen_address.as_str()
            };
            format!("{host}:{}", cfg.server.http_listen_port)
                .parse()
                .map_err(|e: String| anyhow::anyhow!("server.http_listen_address: {e}"))?
        }
    };
    let listener = match listen {
        Listen::Addr(a) => {
            let l = TcpListener::bind(a)
                .await
                .with_context(|| format!("listening on {a} (agent HTTP)"))?;
            info!(addr = %l.local_addr()?, "agent HTTP listening (/metrics, /targets)");
            Some(l)
        }
        Listen::Off => None,
    };
    let agent = Agent::new(cfg, None)?;
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(agent.run(listener, rx));
    wait_for_stop().await;
    let _ = tx.send(true);
    task.await.context("agent task")??;
    Ok(())
}

async fn wait_for_stop() {
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

/// The agent configuration `serve` uses: `--promtail-config`, else
/// `<config-dir>/promtail/promtail-config.yml` when it exists.
pub fn serve_config_path(config_dir: Option<&Path>, flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(f) = flag {
        return Some(f.to_path_buf());
    }
    let p = config_dir?.join("promtail/promtail-config.yml");
    p.is_file().then_some(p)
}

/// Starts the agent inside `serve`: clients are replaced by the embedded Loki API at `loki`
/// (batching and backoff settings of the first configured client are kept), positions live in
/// `<data-dir>/agent/positions.yaml`, and metrics go on serve's registry.
pub fn start_embedded(
    path: &Path,
    data_dir: &Path,
    loki: Listen,
    registry: &mut Registry,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut cfg = load(path, Some(data_dir))?;
    cfg.positions.filename = data_dir.join("agent/positions.yaml").display().to_string();
    let clients = match loki {
        Listen::Addr(addr) => {
            let url = format!("http://{addr}/loki/api/v1/push");
            let mut c: ClientConfig = match cfg.clients.first() {
                Some(c) => c.clone(),
                None => {
                    AgentConfig::parse(&format!("clients:\n  - url: {url}\n"), &BTreeMap::new())?
                        .clients
                        .remove(0)
                }
            };
            c.url = url;
            c.basic_auth = None;
            c.bearer_token = None;
            c.bearer_token_file = None;
            // The embedded store is local: never give up on a batch while it restarts.
            c.backoff_config.max_retries = 0;
            Some(vec![c])
        }
        Listen::Off => None,
    };
    let agent = Agent::new(cfg, clients)
        .with_context(|| format!("starting the log agent from {}", path.display()))?;
    agent.register_metrics(registry);
    info!(config = %path.display(), "log agent configured");
    Ok(tokio::spawn(async move {
        if let Err(e) = agent.run(None, shutdown).await {
            tracing::error!(error = %e, "log agent failed");
        }
    }))
}
