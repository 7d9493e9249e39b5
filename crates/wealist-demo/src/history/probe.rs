//! The probe behind the history: a throw-away copy of the seven services on free loopback
//! ports, driven by the real traffic generator for a moment (with [`PROBE_ERROR_RATIO`] of
//! requests failing so error series exist), scraped once after a warm-up (the fresh users
//! sign up) and once more a moment later while the load still runs: rates come from the
//! increase between the two, gauges (in-flight, connections) are caught mid-flight.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::PROBE_ERROR_RATIO;
use crate::stack::{ServiceStack, StackConfig};
use crate::traffic::{Spike, Traffic, TrafficConfig};
use crate::{DemoError, ServiceKind};

/// How the probe runs.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    pub seed: u64,
    pub users: usize,
    /// Requests per second at the simulated day's peak during the probe.
    pub peak_rps: f64,
    /// Simulated hour of day (held constant while the probe runs).
    pub hour: f64,
    /// How long the load runs before the first scrape.
    pub warmup: Duration,
    /// Time between the two scrapes.
    pub duration: Duration,
    /// Scratch directory for the services' logs and files; removed afterwards.
    pub work_dir: PathBuf,
}

impl ProbeOptions {
    pub fn new(seed: u64, work_dir: impl Into<PathBuf>) -> Self {
        ProbeOptions {
            seed,
            users: 40,
            peak_rps: 200.0,
            hour: 12.0,
            warmup: Duration::from_millis(1500),
            duration: Duration::from_millis(2000),
            work_dir: work_dir.into(),
        }
    }
}

/// One service's two scrapes.
#[derive(Clone, Debug)]
pub struct ProbeScrape {
    pub service: ServiceKind,
    pub content_type: String,
    /// The second scrape.
    pub body: Vec<u8>,
    /// The first scrape (after the warm-up).
    pub previous: Vec<u8>,
}

/// What the probe saw.
#[derive(Clone, Debug)]
pub struct ProbeResult {
    pub scrapes: Vec<ProbeScrape>,
    /// Seconds between the two scrapes.
    pub seconds: f64,
    /// Requests per second actually sent (planned minus skipped) between the scrapes.
    pub rps: f64,
}

fn free_addr() -> Result<SocketAddr, DemoError> {
    let io = |source| DemoError::Io {
        context: "finding a free loopback port for the history probe".into(),
        source,
    };
    let l = TcpListener::bind("127.0.0.1:0").map_err(io)?;
    l.local_addr().map_err(io)
}

/// Runs the probe; see the module docs.
pub async fn run(opts: &ProbeOptions) -> Result<ProbeResult, DemoError> {
    let mut cfg = StackConfig::seed_ports(&opts.work_dir);
    cfg.project = "wealist-history-probe".into();
    let mut addrs = BTreeMap::new();
    for k in ServiceKind::ALL {
        addrs.insert(k, free_addr()?);
    }
    cfg.addrs = addrs;
    let stack = ServiceStack::start(cfg).await?;
    let result = drive(&stack, opts).await;
    stack.shutdown().await;
    if let Err(e) = std::fs::remove_dir_all(&opts.work_dir) {
        tracing::debug!(error = %e, dir = %opts.work_dir.display(), "removing the probe's scratch directory");
    }
    result
}

async fn scrape_all(
    http: &reqwest::Client,
    stack: &ServiceStack,
) -> Result<Vec<(ServiceKind, String, Vec<u8>)>, DemoError> {
    let mut out = Vec::new();
    for k in ServiceKind::ALL {
        let url = format!("http://{}{}", stack.addr(k), k.metrics_path());
        let fail = |e: String| DemoError::Config(format!("history probe scrape of {url}: {e}"));
        let r = http
            .get(&url)
            .header("accept", lookout_exposition::SCRAPE_ACCEPT_HEADER)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !r.status().is_success() {
            return Err(fail(format!("HTTP {}", r.status())));
        }
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("text/plain")
            .to_owned();
        let body = r.bytes().await.map_err(|e| fail(e.to_string()))?;
        out.push((k, content_type, body.to_vec()));
    }
    Ok(out)
}

async fn drive(stack: &Arc<ServiceStack>, opts: &ProbeOptions) -> Result<ProbeResult, DemoError> {
    for k in ServiceKind::ALL {
        stack.faults(k).inject_errors(
            PROBE_ERROR_RATIO,
            opts.warmup + opts.duration + Duration::from_secs(30),
        );
    }
    let mut tcfg = TrafficConfig::new(opts.seed, stack.addrs().clone());
    tcfg.users = opts.users.max(1);
    tcfg.peak_rps = opts.peak_rps.max(1.0);
    tcfg.start_hour = opts.hour;
    // A day long enough that the hour does not move during the probe.
    tcfg.day_length = Duration::from_secs(365 * 24 * 3600);
    let traffic = Traffic::new(tcfg, Arc::new(Spike::default()))?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| DemoError::Config(format!("http client: {e}")))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(traffic.clone().run(stop_rx));
    let stats = traffic.stats().clone();
    let sent = || stats.planned.load(Ordering::Relaxed) - stats.skipped.load(Ordering::Relaxed);
    tokio::time::sleep(opts.warmup).await;
    let result = async {
        let (t1, s1) = (Instant::now(), sent());
        let first = scrape_all(&http, stack).await?;
        tokio::time::sleep(opts.duration).await;
        let (t2, s2) = (Instant::now(), sent());
        let second = scrape_all(&http, stack).await?;
        let seconds = t2.duration_since(t1).as_secs_f64().max(1e-3);
        let scrapes = second
            .into_iter()
            .zip(first)
            .map(
                |((service, content_type, body), (_, _, previous))| ProbeScrape {
                    service,
                    content_type,
                    body,
                    previous,
                },
            )
            .collect();
        Ok(ProbeResult {
            scrapes,
            seconds,
            rps: (s2 - s1) as f64 / seconds,
        })
    }
    .await;
    let _ = stop_tx.send(true);
    let _ = task.await;
    result
}
