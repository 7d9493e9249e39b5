//! Running the seven services: each on its own listener, each with its container log and
//! fault switches; one can be stopped (its port refuses connections, as a crashed container)
//! and started again with fresh state, as a restarted container.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::backing::Backing;
use crate::faults::ServiceFaults;
use crate::logs::{ContainerInfo, ContainerLog, LogOptions, Logger};
use crate::services::{self, ServiceContext};
use crate::{DemoError, ServiceKind};

/// Where and how the services run.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// Data directory: logs go to `containers/`, files of the storage service to `storage/`.
    pub data_dir: PathBuf,
    /// Compose project name in the container metadata.
    pub project: String,
    /// Listen address of every service.
    pub addrs: BTreeMap<ServiceKind, SocketAddr>,
    pub log_options: LogOptions,
    /// PostgreSQL/Redis the user and board services use, when given.
    pub backing: Option<Arc<Backing>>,
}

impl StackConfig {
    /// The seed's ports on 127.0.0.1.
    pub fn seed_ports(data_dir: impl Into<PathBuf>) -> Self {
        Self::with_ports(data_dir, |k| k.seed_port())
    }

    /// Consecutive ports from `base` in [`ServiceKind::ALL`] order (user, auth, board, chat,
    /// noti, storage, video). Fails when they would not fit below 65536.
    pub fn with_base_port(data_dir: impl Into<PathBuf>, base: u16) -> Result<Self, DemoError> {
        if base == 0 || u32::from(base) + ServiceKind::ALL.len() as u32 > 65_536 {
            return Err(DemoError::Config(format!(
                "base port {base} leaves no room for seven consecutive ports"
            )));
        }
        Ok(Self::with_ports(data_dir, |k| {
            let i = ServiceKind::ALL.iter().position(|x| *x == k).unwrap_or(0) as u16;
            base + i
        }))
    }

    fn with_ports(data_dir: impl Into<PathBuf>, port: impl Fn(ServiceKind) -> u16) -> Self {
        StackConfig {
            data_dir: data_dir.into(),
            project: "wealist".into(),
            addrs: ServiceKind::ALL
                .into_iter()
                .map(|k| (k, SocketAddr::from(([127, 0, 0, 1], port(k)))))
                .collect(),
            log_options: LogOptions::default(),
            backing: None,
        }
    }
}

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The running services.
pub struct ServiceStack {
    cfg: StackConfig,
    logs: BTreeMap<ServiceKind, Arc<ContainerLog>>,
    faults: BTreeMap<ServiceKind, Arc<ServiceFaults>>,
    running: Mutex<BTreeMap<ServiceKind, Running>>,
}

impl std::fmt::Debug for ServiceStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceStack")
            .field("addrs", &self.cfg.addrs)
            .finish_non_exhaustive()
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restarted service must get its port back while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

impl ServiceStack {
    /// Opens the container logs and starts every service; if one cannot bind, the ones
    /// already started are stopped again and the error names the port.
    pub async fn start(cfg: StackConfig) -> Result<Arc<Self>, DemoError> {
        let containers = cfg.data_dir.join("containers");
        let mut logs = BTreeMap::new();
        let mut faults = BTreeMap::new();
        for kind in ServiceKind::ALL {
            if !cfg.addrs.contains_key(&kind) {
                return Err(DemoError::Config(format!("no address for {kind}")));
            }
            let info = ContainerInfo::new(&cfg.project, kind.compose_service());
            logs.insert(
                kind,
                ContainerLog::open(&containers, info, cfg.log_options)?,
            );
            faults.insert(kind, Arc::new(ServiceFaults::default()));
        }
        let stack = Arc::new(ServiceStack {
            cfg,
            logs,
            faults,
            running: Mutex::new(BTreeMap::new()),
        });
        for kind in ServiceKind::ALL {
            if let Err(e) = stack.start_service(kind).await {
                stack.shutdown().await;
                return Err(e);
            }
        }
        Ok(stack)
    }

    pub fn addr(&self, kind: ServiceKind) -> SocketAddr {
        self.cfg.addrs[&kind]
    }

    pub fn addrs(&self) -> &BTreeMap<ServiceKind, SocketAddr> {
        &self.cfg.addrs
    }

    pub fn faults(&self, kind: ServiceKind) -> &Arc<ServiceFaults> {
        &self.faults[&kind]
    }

    pub fn log(&self, kind: ServiceKind) -> &Arc<ContainerLog> {
        &self.logs[&kind]
    }

    pub async fn is_running(&self, kind: ServiceKind) -> bool {
        self.running.lock().await.contains_key(&kind)
    }

    /// Starts `kind` with fresh state; `Ok(false)` if it was already running.
    pub async fn start_service(&self, kind: ServiceKind) -> Result<bool, DemoError> {
        let mut running = self.running.lock().await;
        if running.contains_key(&kind) {
            return Ok(false);
        }
        let addr = self.addr(kind);
        let (stop_tx, stop_rx) = watch::channel(false);
        let log = self.logs[&kind].clone();
        let logger = Logger::new(kind.compose_service(), log.clone());
        let ctx = ServiceContext {
            kind,
            logger: logger.clone(),
            faults: self.faults[&kind].clone(),
            data_dir: self.cfg.data_dir.clone(),
            shutdown: stop_rx.clone(),
            backing: self.cfg.backing.clone(),
        };
        let router = services::router(&ctx)?;
        // A just-stopped listener can take a moment to release the port.
        let mut attempt = 0;
        let listener = loop {
            match bind(addr) {
                Ok(l) => break l,
                Err(e) if attempt < 20 && e.kind() == std::io::ErrorKind::AddrInUse => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(source) => {
                    return Err(DemoError::Io {
                        context: format!("{kind} cannot listen on {addr}"),
                        source,
                    });
                }
            }
        };
        let mut rx = stop_rx;
        let task = tokio::spawn(async move {
            let res = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await;
            if let Err(e) = res {
                tracing::error!(service = %kind, error = %e, "service failed");
            }
        });
        if let Err(e) = log.write_metadata(true) {
            tracing::warn!(service = %kind, error = %e, "updating container metadata");
        }
        logger.info(&format!("{kind} started, listening on {addr}"));
        tracing::info!(service = %kind, %addr, "service started");
        running.insert(
            kind,
            Running {
                stop: stop_tx,
                task,
            },
        );
        Ok(true)
    }

    /// Stops `kind` (in-flight requests get 3 s); `false` if it was not running.
    pub async fn stop_service(&self, kind: ServiceKind) -> bool {
        let Some(r) = self.running.lock().await.remove(&kind) else {
            return false;
        };
        let logger = Logger::new(kind.compose_service(), self.logs[&kind].clone());
        logger.info(&format!("{kind} shutting down"));
        let _ = r.stop.send(true);
        let mut task = r.task;
        if tokio::time::timeout(Duration::from_secs(3), &mut task)
            .await
            .is_err()
        {
            task.abort();
            let _ = task.await;
        }
        if let Err(e) = self.logs[&kind].write_metadata(false) {
            tracing::warn!(service = %kind, error = %e, "updating container metadata");
        }
        tracing::info!(service = %kind, "service stopped");
        true
    }

    /// Stops every service and writes out their logs.
    pub async fn shutdown(&self) {
        for kind in ServiceKind::ALL {
            self.stop_service(kind).await;
        }
        let logs: Vec<Arc<ContainerLog>> = self.logs.values().cloned().collect();
        let _ = tokio::task::spawn_blocking(move || {
            for l in logs {
                l.flush();
            }
        })
        .await;
    }
}
