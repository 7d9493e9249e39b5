//! One HTTP listener per target serving `/metrics` (axum).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::render::{Simulator, negotiate};

/// Failure to start the listeners.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The number of addresses differs from the simulator's target count.
    #[error("{addrs} listen addresses given for {targets} targets")]
    TargetCount {
        /// Addresses given.
        addrs: usize,
        /// Targets configured.
        targets: usize,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

struct TargetCtx {
    sim: Arc<Simulator>,
    target: usize,
    size_hint: AtomicUsize,
    scrapes: Arc<AtomicU64>,
}

/// Running listeners; dropping it (or [`SimServer::shutdown`]) stops them.
pub struct SimServer {
    addrs: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    scrapes: Arc<AtomicU64>,
}

impl SimServer {
    /// Binds one listener per target (`addrs[i]` serves target `i`; port 0 picks a free
    /// port) and starts serving on the current tokio runtime.
    pub async fn bind(sim: Arc<Simulator>, addrs: &[SocketAddr]) -> Result<SimServer, ServeError> {
        if addrs.len() != sim.targets() {
            return Err(ServeError::TargetCount {
                addrs: addrs.len(),
                targets: sim.targets(),
            });
        }
        let mut listeners = Vec::with_capacity(addrs.len());
        for &addr in addrs {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })?;
            let local = l
                .local_addr()
                .map_err(|source| ServeError::Bind { addr, source })?;
            listeners.push((l, local));
        }
        let (stop, stop_rx) = watch::channel(false);
        let scrapes = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::with_capacity(listeners.len());
        let mut bound = Vec::with_capacity(listeners.len());
        for (target, (listener, local)) in listeners.into_iter().enumerate() {
            bound.push(local);
            let ctx = Arc::new(TargetCtx {
                sim: Arc::clone(&sim),
                target,
                size_hint: AtomicUsize::new(4096),
                scrapes: Arc::clone(&scrapes),
            });
            let app = Router::new()
                .route("/metrics", get(metrics))
                .route("/", get(index))
                .with_state(ctx);
            let mut rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                let shutdown = async move {
                    while !*rx.borrow_and_update() {
                        if rx.changed().await.is_err() {
                            break;
                        }
                    }
                };
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    tracing::warn!(%local, error = %e, "target listener stopped");
                }
            }));
        }
        Ok(SimServer {
            addrs: bound,
            stop,
            tasks,
            scrapes,
        })
    }

    /// The bound addresses, in target order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Total `/metrics` responses served so far.
    pub fn scrapes(&self) -> u64 {
        self.scrapes.load(Ordering::Relaxed)
    }

    /// Stops all listeners and waits for them to finish.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn metrics(State(ctx): State<Arc<TargetCtx>>, headers: HeaderMap) -> Response {
    let format = negotiate(headers.get(ACCEPT).and_then(|v| v.to_str().ok()));
    let tick = ctx.sim.tick_now();
    let mut body = Vec::with_capacity(ctx.size_hint.load(Ordering::Relaxed) + 1024);
    if !ctx.sim.render(ctx.target, tick, format, &mut body) {
        return (StatusCode::NOT_FOUND, "unknown target\n").into_response();
    }
    ctx.size_hint.store(body.len(), Ordering::Relaxed);
    ctx.scrapes.fetch_add(1, Ordering::Relaxed);
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        )],
        body,
    )
        .into_response()
}

async fn index(State(ctx): State<Arc<TargetCtx>>) -> String {
    format!(
        "lookout-targetsim target {} of {}: metrics at /metrics\n",
        ctx.target,
        ctx.sim.targets()
    )
}
