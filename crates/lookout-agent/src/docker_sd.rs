//! `docker_sd_configs`: discovers running containers through the Docker Engine API on a unix
//! socket (`GET /containers/json`, then `GET /containers/{id}/json` for the log path), and
//! turns each into a target with Promtail's `__meta_docker_*` labels. The container's
//! json-file log (`LogPath`) is then tailed like any file, unwrapped from the json-file format
//! (line, stream, time) before the pipeline, so it behaves as Promtail's API-read target does
//! while sharing positions and rotation handling with file targets.
//!
//! The HTTP/1.1 client is hyper's, over a tokio `UnixStream`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use parking_lot::RwLock;
use serde::Deserialize;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::config::DockerSdConfig;
use crate::docker::label_meta_name;
use crate::tail::TargetSpec;

/// Internal label telling the reader that lines are json-file records to unwrap.
pub const DOCKER_JSON_LABEL: &str = "__lookout_docker_json__";

/// Largest API response accepted.
const MAX_RESPONSE: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("connecting to {socket}: {source}")]
    Connect {
        socket: String,
        source: std::io::Error,
    },
    #[error("docker API: {0}")]
    Http(String),
    #[error("docker API {path}: status {status}: {body}")]
    Status {
        path: String,
        status: u16,
        body: String,
    },
    #[error("docker API {path}: invalid JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
}

#[derive(Deserialize)]
struct ContainerSummary {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Names", default)]
    names: Vec<String>,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "HostConfig", default)]
    host_config: Option<SummaryHostConfig>,
    #[serde(rename = "NetworkSettings", default)]
    network_settings: Option<NetworkSettings>,
}

#[derive(Deserialize, Default)]
struct SummaryHostConfig {
    #[serde(rename = "NetworkMode", default)]
    network_mode: String,
}

#[derive(Deserialize, Default)]
struct NetworkSettings {
    #[serde(rename = "Networks", default)]
    networks: Option<BTreeMap<String, Network>>,
}

#[derive(Deserialize, Default)]
struct Network {
    #[serde(rename = "IPAddress", default)]
    ip_address: String,
    #[serde(rename = "NetworkID", default)]
    network_id: String,
}

#[derive(Deserialize)]
struct ContainerInspect {
    #[serde(rename = "LogPath", default)]
    log_path: String,
}

/// A minimal Docker Engine API client on a unix socket.
#[derive(Debug, Clone)]
pub struct DockerClient {
    socket: String,
}

impl DockerClient {
    /// `host` is `unix:///var/run/docker.sock` or a plain socket path.
    pub fn new(host: &str) -> DockerClient {
        DockerClient {
            socket: host.strip_prefix("unix://").unwrap_or(host).to_string(),
        }
    }

    async fn get(&self, path: &str) -> Result<Bytes, DockerError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|source| DockerError::Connect {
                socket: self.socket.clone(),
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| DockerError::Http(e.to_string()))?;
        let conn_task = tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(error = %e, "docker API connection closed");
            }
        });
        let req = hyper::Request::get(path)
            .header("Host", "docker")
            .header(
                "User-Agent",
                concat!("lookout-agent/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| DockerError::Http(e.to_string()))?;
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| DockerError::Http(e.to_string()))?;
        let status = res.status().as_u16();
        let body = Limited::new(res.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| DockerError::Http(e.to_string()))?
            .to_bytes();
        conn_task.abort();
        if status != 200 {
            return Err(DockerError::Status {
                path: path.to_string(),
                status,
                body: String::from_utf8_lossy(&body).chars().take(512).collect(),
            });
        }
        Ok(body)
    }

    fn json<T: for<'a> Deserialize<'a>>(path: &str, body: &[u8]) -> Result<T, DockerError> {
        serde_json::from_slice(body).map_err(|source| DockerError::Json {
            path: path.to_string(),
            source,
        })
    }

    /// Targets for the running containers matching `filters`.
    pub async fn targets(&self, cfg: &DockerSdConfig) -> Result<Vec<TargetSpec>, DockerError> {
        let mut path = "/containers/json".to_string();
        if !cfg.filters.is_empty() {
            let f: BTreeMap<&str, &Vec<String>> = cfg
                .filters
                .iter()
                .map(|f| (f.name.as_str(), &f.values))
                .collect();
            let json = serde_json::to_string(&f).map_err(|e| DockerError::Http(e.to_string()))?;
            path.push_str("?filters=");
            path.push_str(&percent_encode(&json));
        }
        let body = self.get(&path).await?;
        let list: Vec<ContainerSummary> = Self::json(&path, &body)?;
        let mut out = Vec::new();
        for c in list {
            let ipath = format!("/containers/{}/json", c.id);
            let inspect: ContainerInspect = match self.get(&ipath).await {
                Ok(b) => Self::json(&ipath, &b)?,
                // The container went away between the two calls.
                Err(DockerError::Status { status: 404, .. }) => continue,
                Err(e) => return Err(e),
            };
            if inspect.log_path.is_empty() {
                debug!(id = %c.id, "container has no json-file log path (other log driver); skipped");
                continue;
            }
            let mut l = BTreeMap::new();
            l.insert("__meta_docker_container_id".into(), c.id.clone());
            if let Some(n) = c.names.first() {
                l.insert("__meta_docker_container_name".into(), n.clone());
            }
            if let Some(hc) = &c.host_config {
                l.insert(
                    "__meta_docker_container_network_mode".into(),
                    hc.network_mode.clone(),
                );
            }
            for (k, v) in c.labels.clone().unwrap_or_default() {
                l.insert(label_meta_name(&k), v);
            }
            if let Some(nets) = c
                .network_settings
                .as_ref()
                .and_then(|n| n.networks.as_ref())
                && let Some((name, net)) = nets.iter().next()
            {
                l.insert("__meta_docker_network_name".into(), name.clone());
                l.insert("__meta_docker_network_id".into(), net.network_id.clone());
                l.insert("__meta_docker_network_ip".into(), net.ip_address.clone());
            }
            let host = cfg
                .host_networking_host
                .clone()
                .unwrap_or_else(|| "localhost".into());
            l.insert("__address__".into(), format!("{host}:{}", cfg.port));
            l.insert("__path__".into(), glob::Pattern::escape(&inspect.log_path));
            l.insert(DOCKER_JSON_LABEL.into(), "true".into());
            out.push(TargetSpec { labels: l });
        }
        Ok(out)
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Refreshes `targets` every `refresh_interval` until `shutdown`.
pub async fn run(
    cfg: DockerSdConfig,
    targets: Arc<RwLock<Vec<TargetSpec>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let client = DockerClient::new(&cfg.host);
    let every = cfg.refresh_interval.0.max(Duration::from_millis(100));
    loop {
        match client.targets(&cfg).await {
            Ok(t) => {
                debug!(containers = t.len(), "docker discovery refreshed");
                *targets.write() = t;
            }
            Err(e) => {
                warn!(host = %cfg.host, error = %e, "docker discovery failed; keeping the previous targets")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
