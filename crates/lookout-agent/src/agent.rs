//! Wiring: reader threads (one per scrape job), one task per client, Docker discovery
//! tasks, the positions syncer, and the agent's HTTP endpoints (`/metrics`, `/targets`,
//! `/api/v1/targets`, `/ready`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use parking_lot::{Mutex, RwLock};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::client::{Client, QUEUE_CAPACITY, auth_header};
use crate::config::{AgentConfig, ClientConfig};
use crate::metrics::AgentMetrics;
use crate::positions::{Positions, PositionsError};
use crate::process::{LineLimits, ProcessSources, ProcessStatus};
use crate::stages::Pipeline;
use crate::tail::{
    FileStatus, HARD_LINE_LIMIT, Item, JobSpec, Reader, ReaderOptions, StatusMap, TargetSpec,
};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("scrape config {job:?}: {source}")]
    Pipeline {
        job: String,
        source: crate::stages::StageError,
    },
    #[error(transparent)]
    Positions(#[from] PositionsError),
    #[error("client {url}: {message}")]
    Client { url: String, message: String },
    #[error("no clients configured: add one under `clients:`")]
    NoClients,
    #[error("starting a reader thread: {0}")]
    Thread(std::io::Error),
}

/// A configured agent, ready to run.
pub struct Agent {
    config: AgentConfig,
    clients: Vec<ClientConfig>,
    metrics: AgentMetrics,
    positions: Arc<Positions>,
    status: StatusMap,
    jobs: Vec<JobSpec>,
    /// The clients' queues, made up front so processes can be attached before `run`.
    senders: Vec<mpsc::Sender<Vec<Item>>>,
    receivers: Vec<mpsc::Receiver<Vec<Item>>>,
    processes: ProcessSources,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("jobs", &self.jobs.len())
            .field("clients", &self.clients.len())
            .finish_non_exhaustive()
    }
}

/// A cheap handle for the HTTP endpoints.
#[derive(Clone)]
pub struct AgentView {
    status: StatusMap,
    positions: Arc<Positions>,
    registry: Arc<RwLock<Registry>>,
    processes: ProcessSources,
}

/// One entry of the targets API: a tailed file or a process stream.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Target {
    File(FileStatus),
    Process(ProcessStatus),
}

/// `limits_config.max_line_size` and `max_line_size_truncate` as the readers apply them.
fn line_limits(config: &AgentConfig) -> LineLimits {
    let limits = &config.limits_config;
    LineLimits {
        max_line_size: match limits.max_line_size.0 {
            0 => HARD_LINE_LIMIT,
            n => (n as usize).min(HARD_LINE_LIMIT),
        },
        truncate: limits.max_line_size_truncate,
    }
}

impl Agent {
    /// Checks pipelines and loads the positions file. `clients` replaces the configured
    /// clients when given (`lookout serve` pushes to its own Loki API).
    pub fn new(
        config: AgentConfig,
        clients: Option<Vec<ClientConfig>>,
    ) -> Result<Agent, AgentError> {
        let clients = clients.unwrap_or_else(|| config.clients.clone());
        if clients.is_empty() {
            return Err(AgentError::NoClients);
        }
        for c in &clients {
            auth_header(c).map_err(|message| AgentError::Client {
                url: c.url.clone(),
                message,
            })?;
        }
        let metrics = AgentMetrics::default();
        let mut jobs = Vec::new();
        for sc in &config.scrape_configs {
            // Compile once now: configuration errors surface at start, and the `metrics`
            // stages' families exist before registration.
            let mut custom = metrics.custom.clone();
            Pipeline::new(&sc.pipeline_stages, &mut custom).map_err(|source| {
                AgentError::Pipeline {
                    job: sc.job_name.clone(),
                    source,
                }
            })?;
            let mut targets = Vec::new();
            for st in &sc.static_configs {
                let mut labels = st.labels.clone();
                if !st.targets.is_empty() {
                    labels
                        .entry("__address__".into())
                        .or_insert_with(|| st.targets[0].clone());
                }
                targets.push(TargetSpec { labels });
            }
            jobs.push(JobSpec {
                name: sc.job_name.clone(),
                targets: Arc::new(RwLock::new(targets)),
                relabel: sc.relabel_configs.clone(),
                stages: sc.pipeline_stages.clone(),
                add_filename: !sc.static_configs.is_empty(),
            });
        }
        let positions = Arc::new(Positions::load(
            std::path::Path::new(&config.positions.filename),
            clients.len(),
            false,
        )?);
        let (senders, receivers): (Vec<_>, Vec<_>) = clients
            .iter()
            .map(|_| mpsc::channel(QUEUE_CAPACITY))
            .unzip();
        let processes = ProcessSources::new(
            &jobs,
            senders.clone(),
            metrics.clone(),
            line_limits(&config),
        );
        Ok(Agent {
            config,
            clients,
            metrics,
            positions,
            status: Arc::new(Mutex::new(BTreeMap::new())),
            jobs,
            senders,
            receivers,
            processes,
        })
    }

    /// Attaches process output (stdout/stderr pipes) to this agent's jobs; usable before and
    /// while the agent runs.
    pub fn processes(&self) -> ProcessSources {
        self.processes.clone()
    }

    /// Registers the agent's metrics (`promtail_*`, `lookout_agent_*`, custom stage metrics).
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.register(registry);
    }

    /// The agent's endpoints: `/metrics` (its own registry), `/targets`, `/api/v1/targets`,
    /// `/ready`.
    pub fn router(&self) -> Router {
        let mut reg = Registry::default();
        self.register_metrics(&mut reg);
        let view = AgentView {
            status: self.status.clone(),
            positions: self.positions.clone(),
            registry: Arc::new(RwLock::new(reg)),
            processes: self.processes.clone(),
        };
        Router::new()
            .route("/metrics", get(metrics_page))
            .route("/targets", get(targets_page))
            .route("/api/v1/targets", get(targets_json))
            .route("/ready", get(|| async { "Ready\n" }))
            .with_state(view)
    }

    /// Files tailed right now with their offsets, then process streams.
    pub fn all_targets(&self) -> Vec<Target> {
        all_targets(&self.status, &self.positions, &self.processes)
    }

    /// Files tailed right now, with their offsets.
    pub fn targets(&self) -> Vec<FileStatus> {
        snapshot(&self.status, &self.positions)
    }

    /// Runs until `shutdown` turns true, then stops readers, lets clients deliver what they
    /// can without retrying, and saves positions. `http` serves [`Agent::router`].
    pub async fn run(
        mut self,
        http: Option<TcpListener>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), AgentError> {
        let stop = Arc::new(AtomicBool::new(false));
        let (client_stop_tx, client_stop_rx) = watch::channel(false);
        let senders = std::mem::take(&mut self.senders);
        let mut receivers = std::mem::take(&mut self.receivers).into_iter();
        let mut client_tasks = Vec::new();
        let http_client = reqwest::Client::builder()
            .build()
            .map_err(|e| AgentError::Client {
                url: String::new(),
                message: e.to_string(),
            })?;
        for (idx, c) in self.clients.iter().enumerate() {
            let Some(rx) = receivers.next() else {
                break;
            };
            let auth = auth_header(c).map_err(|message| AgentError::Client {
                url: c.url.clone(),
                message,
            })?;
            let client = Client {
                idx,
                cfg: c.clone(),
                http: http_client.clone(),
                rx,
                positions: self.positions.clone(),
                metrics: self.metrics.clone(),
                host: host_of(&c.url),
                auth,
                shutdown: client_stop_rx.clone(),
                abandoned: false,
                max_streams: self.config.limits_config.max_streams,
                streams: Default::default(),
                keys: Default::default(),
                inflight: None,
            };
            client_tasks.push(tokio::spawn(client.run()));
        }

        if self.positions.was_corrupt() {
            warn!("the positions file was corrupt: every file found now is read from its end");
        }
        let limits = &self.config.limits_config;
        let opts = ReaderOptions {
            poll: self
                .config
                .file_watch_config
                .min_poll_frequency
                .0
                .max(Duration::from_millis(5)),
            sync_period: self
                .config
                .target_config
                .sync_period
                .0
                .max(Duration::from_millis(10)),
            max_line_size: line_limits(&self.config).max_line_size,
            truncate: limits.max_line_size_truncate,
            start_at_end: self.positions.was_corrupt(),
            readline_rate: (limits.readline_rate_enabled && limits.readline_rate > 0.0).then_some(
                (
                    limits.readline_rate,
                    limits.readline_burst.max(1) as f64,
                    limits.readline_rate_drop,
                ),
            ),
        };

        let mut discovery = Vec::new();
        for (job, sc) in self.jobs.iter().zip(&self.config.scrape_configs) {
            for d in &sc.docker_sd_configs {
                discovery.push(tokio::spawn(crate::docker_sd::run(
                    d.clone(),
                    job.targets.clone(),
                    shutdown.clone(),
                )));
            }
        }

        let mut threads = Vec::new();
        for job in &self.jobs {
            let reader = Reader::new(
                job.clone(),
                opts.clone(),
                senders.clone(),
                self.positions.clone(),
                self.metrics.clone(),
                stop.clone(),
                self.status.clone(),
            );
            let t = std::thread::Builder::new()
                .name(format!("agent-{}", job.name))
                .spawn(move || reader.run())
                .map_err(AgentError::Thread)?;
            threads.push(t);
        }
        drop(senders);
        info!(
            jobs = self.jobs.len(),
            clients = self.clients.len(),
            positions = %self.config.positions.filename,
            "log agent started"
        );

        let server = http.map(|listener| {
            let app = self.router();
            let mut rx = shutdown.clone();
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.wait_for(|s| *s).await;
                    })
                    .await
                {
                    error!(error = %e, "agent HTTP server failed");
                }
            })
        });

        let sync = self
            .config
            .positions
            .sync_period
            .0
            .max(Duration::from_millis(10));
        let mut tick = tokio::time::interval(sync);
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                _ = shutdown.wait_for(|s| *s) => true,
            };
            if stopping {
                break;
            }
            let p = self.positions.clone();
            match tokio::task::spawn_blocking(move || p.save()).await {
                Ok(Err(e)) => warn!(error = %e, "saving positions failed"),
                Err(e) => warn!(error = %e, "positions task failed"),
                Ok(Ok(())) => {}
            }
        }

        info!("log agent stopping");
        stop.store(true, Ordering::SeqCst);
        let _ = client_stop_tx.send(true);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        // Process streams emit their held lines; then nothing else feeds the clients.
        self.processes.stop().await;
        for t in client_tasks {
            let _ = t.await;
        }
        for d in discovery {
            d.abort();
        }
        if let Some(s) = server {
            let _ = s.await;
        }
        let p = self.positions.clone();
        match tokio::task::spawn_blocking(move || p.save()).await {
            Ok(r) => r?,
            Err(e) => warn!(error = %e, "saving positions failed"),
        }
        info!("log agent stopped");
        Ok(())
    }
}

fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.split('/').next().unwrap_or(rest).to_string()
}

fn snapshot(status: &StatusMap, positions: &Positions) -> Vec<FileStatus> {
    status
        .lock()
        .values()
        .map(|s| {
            let mut s = s.clone();
            s.acked_offset = positions.get(&s.path);
            s
        })
        .collect()
}

async fn metrics_page(State(v): State<AgentView>) -> impl IntoResponse {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &v.registry.read()) {
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            e.to_string(),
        );
    }
    (
        axum::http::StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
}

fn all_targets(
    status: &StatusMap,
    positions: &Positions,
    processes: &ProcessSources,
) -> Vec<Target> {
    let mut out: Vec<Target> = snapshot(status, positions)
        .into_iter()
        .map(Target::File)
        .collect();
    out.extend(processes.status().into_iter().map(Target::Process));
    out
}

async fn targets_json(State(v): State<AgentView>) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "status": "success",
        "data": all_targets(&v.status, &v.positions, &v.processes),
    }))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn targets_page(State(v): State<AgentView>) -> Html<String> {
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Lookout agent targets</title></head><body><h1>Targets</h1><table border=\"1\" cellpadding=\"4\"><tr><th>job</th><th>path</th><th>labels</th><th>read</th><th>acknowledged</th><th>size</th></tr>",
    );
    for s in snapshot(&v.status, &v.positions) {
        let labels: Vec<String> = s
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.job),
            esc(&s.path),
            esc(&labels.join(", ")),
            s.read_offset,
            s.acked_offset.map(|a| a.to_string()).unwrap_or_default(),
            s.size
        ));
    }
    h.push_str("</table><h2>Processes</h2><table border=\"1\" cellpadding=\"4\"><tr><th>job</th><th>process</th><th>stream</th><th>pid</th><th>labels</th><th>state</th><th>lines</th><th>bytes</th></tr>");
    for p in v.processes.status() {
        let labels: Vec<String> = p
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&p.job),
            esc(&p.process),
            esc(&p.stream),
            p.pid.map(|p| p.to_string()).unwrap_or_default(),
            esc(&labels.join(", ")),
            p.state,
            p.read_lines,
            p.read_bytes
        ));
    }
    h.push_str("</table></body></html>");
    Html(h)
}
