//! Test harness: an in-process Loki push receiver with scriptable answers, and helpers to run
//! the agent on a temporary directory.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::watch;

use lookout_agent::{Agent, AgentConfig};

#[derive(Debug, Clone, PartialEq)]
pub struct Got {
    pub labels: String,
    pub line: String,
    pub ts: i64,
    pub metadata: Vec<(String, String)>,
}

#[derive(Default)]
pub struct RxState {
    pub got: Vec<Got>,
    /// Status to answer with; 204 when None.
    pub status: Option<u16>,
    pub requests: usize,
    pub rejected: usize,
    pub auth: Vec<Option<String>>,
    pub tenant: Vec<Option<String>>,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<RxState>>,
    stop: Arc<watch::Sender<bool>>,
}

async fn push(
    State(st): State<Arc<Mutex<RxState>>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut s = st.lock();
    s.requests += 1;
    s.auth.push(
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    );
    s.tenant.push(
        headers
            .get("x-scope-orgid")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    );
    if let Some(code) = s.status {
        s.rejected += 1;
        return StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let req = match lookout_loki_proto::decode_push_request(&body, 64 << 20) {
        Ok(r) => r,
        Err(_) => return StatusCode::BAD_REQUEST,
    };
    for stream in req.streams {
        for e in stream.entries {
            s.got.push(Got {
                labels: stream.labels.clone(),
                line: e.line,
                ts: e.timestamp.map(|t| t.to_unix_nanos()).unwrap_or(0),
                metadata: e
                    .structured_metadata
                    .into_iter()
                    .map(|p| (p.name, p.value))
                    .collect(),
            });
        }
    }
    StatusCode::NO_CONTENT
}

impl Receiver {
    pub async fn start() -> Receiver {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(addr: SocketAddr) -> Receiver {
        let listener = TcpListener::bind(addr).await.expect("bind receiver");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(RxState::default()));
        let app = Router::new()
            .route("/loki/api/v1/push", post(push))
            .with_state(state.clone());
        let (tx, mut rx) = watch::channel(false);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
        });
        Receiver {
            addr,
            state,
            stop: Arc::new(tx),
        }
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    pub fn url(&self) -> String {
        format!("http://{}/loki/api/v1/push", self.addr)
    }

    pub fn lines(&self) -> Vec<String> {
        self.state
            .lock()
            .got
            .iter()
            .map(|g| g.line.clone())
            .collect()
    }

    pub fn got(&self) -> Vec<Got> {
        self.state.lock().got.clone()
    }

    pub fn set_status(&self, s: Option<u16>) {
        self.state.lock().status = s;
    }

    /// Waits until `pred` holds on the received lines (panics after `secs`).
    pub async fn wait_for(&self, secs: u64, what: &str, pred: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let lines = self.lines();
            if pred(&lines) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}: got {} lines, last: {:?}",
                    lines.len(),
                    lines.last()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A running agent.
pub struct Running {
    pub stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<Result<(), lookout_agent::AgentError>>,
    pub http: Option<SocketAddr>,
}

impl Running {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.task.await.expect("agent task").expect("agent run");
    }
}

/// Fast settings for tests, with `scrape` (YAML for `scrape_configs:` entries) appended.
pub fn config_text(dir: &Path, url: &str, scrape: &str, extra: &str) -> String {
    format!(
        "server:\n  http_listen_port: 0\npositions:\n  filename: {}\n  sync_period: 50ms\nclients:\n  - url: {url}\n    batchwait: 50ms\n    batchsize: 65536\n    backoff_config:\n      min_period: 50ms\n      max_period: 200ms\n      max_retries: 0\ntarget_config:\n  sync_period: 50ms\nfile_watch_config:\n  min_poll_frequency: 10ms\n  max_poll_frequency: 10ms\n{extra}scrape_configs:\n{scrape}",
        dir.join("positions.yaml").display()
    )
}

pub async fn start_agent(text: &str, http: bool) -> Running {
    let cfg = AgentConfig::parse(text, &BTreeMap::new()).expect("config");
    let agent = Agent::new(cfg, None).expect("agent");
    let (listener, addr) = if http {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        (Some(l), Some(a))
    } else {
        (None, None)
    };
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(agent.run(listener, rx));
    Running {
        stop: tx,
        task,
        http: addr,
    }
}

pub fn append(path: &Path, text: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text).unwrap();
}

pub fn numbered(prefix: &str, range: std::ops::Range<usize>) -> String {
    range.map(|i| format!("{prefix}{i}\n")).collect()
}

pub fn positions(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("positions.yaml")).unwrap_or_default()
}

pub fn file_job(glob: &Path) -> String {
    format!(
        "  - job_name: files\n    static_configs:\n      - targets: [localhost]\n        labels:\n          job: varlogs\n          __path__: {}\n",
        glob.display()
    )
}

pub async fn metrics(addr: SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
