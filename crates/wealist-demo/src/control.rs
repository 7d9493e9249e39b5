//! Applying faults (from the schedule or on demand) and the control endpoint:
//!
//! - `GET  /faults` — services (running or not), active faults, spike, Redis fill, the schedule
//!   and a log of applied faults; `GET /traffic` — the generator's counters.
//! - `POST /faults/errors?service=board&ratio=0.3&duration=60s`
//! - `POST /faults/slow?service=noti&delay=3s&duration=90s`
//! - `POST /faults/stop?service=video&duration=2m`
//! - `POST /faults/spike?service=board&rps=200&duration=3m`
//! - `POST /faults/redis-fill?mib=230&duration=5m30s` (only when Redis filling is enabled)
//! - `POST /faults/clear` — ends every fault now.
//!
//! Errors are `{"error": "..."}` with status 400 (bad parameters) or 409 (not possible now).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;

use crate::redis_fill::RedisFiller;
use crate::schedule::{Fault, Schedule, parse_duration};
use crate::stack::ServiceStack;
use crate::traffic::{Spike, TrafficStats};
use crate::{DemoError, ServiceKind};

/// Longest fault accepted on demand.
pub const MAX_FAULT: Duration = Duration::from_secs(3600);

#[derive(Clone, Debug, Serialize)]
struct Applied {
    seconds_since_start: f64,
    duration_seconds: f64,
    fault: Fault,
    source: &'static str,
    error: Option<String>,
}

/// Applies faults to the stack, the traffic generator and the local Redis.
pub struct FaultController {
    stack: Arc<ServiceStack>,
    spike: Arc<Spike>,
    stats: Arc<TrafficStats>,
    redis: Option<RedisFiller>,
    /// How much the last fill wrote (to delete it again).
    filled: Mutex<u64>,
    schedule: Schedule,
    started: Instant,
    log: Mutex<VecDeque<Applied>>,
}

impl std::fmt::Debug for FaultController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultController").finish_non_exhaustive()
    }
}

impl FaultController {
    pub fn new(
        stack: Arc<ServiceStack>,
        spike: Arc<Spike>,
        stats: Arc<TrafficStats>,
        redis: Option<RedisFiller>,
        schedule: Schedule,
    ) -> Arc<Self> {
        Arc::new(FaultController {
            stack,
            spike,
            stats,
            redis,
            filled: Mutex::new(0),
            schedule,
            started: Instant::now(),
            log: Mutex::new(VecDeque::new()),
        })
    }

    /// Applies `fault` for `duration`; stopped services and Redis fills are undone by a task
    /// when the duration is over.
    pub async fn apply(
        self: &Arc<Self>,
        fault: Fault,
        duration: Duration,
        source: &'static str,
    ) -> Result<(), DemoError> {
        let result = self.apply_inner(fault, duration).await;
        let mut log = self.log.lock();
        log.push_back(Applied {
            seconds_since_start: self.started.elapsed().as_secs_f64(),
            duration_seconds: duration.as_secs_f64(),
            fault,
            source,
            error: result.as_ref().err().map(|e| e.to_string()),
        });
        while log.len() > 100 {
            log.pop_front();
        }
        match &result {
            Ok(()) => tracing::info!(?fault, ?duration, source, "fault injected"),
            Err(e) => tracing::warn!(?fault, error = %e, "fault not injected"),
        }
        result
    }

    async fn apply_inner(
        self: &Arc<Self>,
        fault: Fault,
        duration: Duration,
    ) -> Result<(), DemoError> {
        match fault {
            Fault::Errors { service, ratio } => {
                self.stack.faults(service).inject_errors(ratio, duration);
            }
            Fault::Slow { service, delay_ms } => {
                self.stack
                    .faults(service)
                    .inject_slowness(Duration::from_millis(delay_ms), duration);
            }
            Fault::Spike { service, rps } => self.spike.start(service, rps, duration),
            Fault::Stop { service } => {
                if !self.stack.stop_service(service).await {
                    return Err(DemoError::Config(format!("{service} is not running")));
                }
                let me = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(duration).await;
                    if let Err(e) = me.stack.start_service(service).await {
                        tracing::error!(%service, error = %e, "restarting after a stop fault");
                    }
                });
            }
            Fault::RedisFill { mib } => {
                let Some(redis) = self.redis.clone() else {
                    return Err(DemoError::Config(
                        "Redis filling is off (start the demo with --redis-fill and a local Redis)"
                            .into(),
                    ));
                };
                redis.fill(mib).await?;
                {
                    let mut f = self.filled.lock();
                    *f = (*f).max(mib);
                }
                let me = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(duration).await;
                    me.unfill().await;
                });
            }
        }
        Ok(())
    }

    async fn unfill(&self) {
        let mib = std::mem::take(&mut *self.filled.lock());
        if let (Some(r), true) = (&self.redis, mib > 0)
            && let Err(e) = r.clear(mib).await
        {
            tracing::warn!(error = %e, "emptying the Redis fill");
        }
    }

    /// Ends every fault now: clears error/slow switches, the spike, restarts stopped
    /// services and empties the Redis fill.
    pub async fn clear(&self) {
        for kind in ServiceKind::ALL {
            self.stack.faults(kind).clear();
            if !self.stack.is_running(kind).await
                && let Err(e) = self.stack.start_service(kind).await
            {
                tracing::error!(service = %kind, error = %e, "restarting");
            }
        }
        self.spike.stop();
        self.unfill().await;
    }

    /// Runs the schedule from now until it ends or `shutdown` turns true.
    pub async fn run_schedule(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let start = Instant::now();
        let mut faults = self.schedule.faults.clone();
        faults.sort_by_key(|f| f.at);
        for f in faults {
            let when = start + f.at;
            tokio::select! {
                _ = tokio::time::sleep_until(when.into()) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let _ = self.apply(f.fault, f.duration, "schedule").await;
        }
    }

    async fn status(&self) -> serde_json::Value {
        let mut services = BTreeMap::new();
        for kind in ServiceKind::ALL {
            services.insert(
                kind.compose_service(),
                json!({
                    "addr": self.stack.addr(kind).to_string(),
                    "running": self.stack.is_running(kind).await,
                    "faults": self.stack.faults(kind).snapshot(),
                    "log_file": self.stack.log(kind).log_path().display().to_string(),
                }),
            );
        }
        json!({
            "seconds_since_start": self.started.elapsed().as_secs_f64(),
            "services": services,
            "spike": self.spike.current().map(|(s, rps)| json!({ "service": s.compose_service(), "rps": rps })),
            "redis_fill": { "enabled": self.redis.is_some(), "filled_mib": *self.filled.lock() },
            "schedule": self.schedule,
            "applied": self.log.lock().iter().cloned().collect::<Vec<_>>(),
        })
    }
}

/// A rejected control request: `{"error": ...}` with its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    pub status: StatusCode,
    pub message: String,
}

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

fn bad(status: StatusCode, msg: impl Into<String>) -> BadRequest {
    BadRequest {
        status,
        message: msg.into(),
    }
}

/// The control endpoint's routes.
pub fn router(ctl: Arc<FaultController>) -> Router {
    Router::new()
        .route("/faults", get(status))
        .route("/traffic", get(traffic))
        .route("/faults/clear", post(clear))
        .route("/faults/{kind}", post(inject))
        .with_state(ctl)
}

async fn status(State(ctl): State<Arc<FaultController>>) -> Response {
    Json(ctl.status().await).into_response()
}

async fn traffic(State(ctl): State<Arc<FaultController>>) -> Response {
    Json(ctl.stats.snapshot()).into_response()
}

async fn clear(State(ctl): State<Arc<FaultController>>) -> Response {
    ctl.clear().await;
    Json(json!({ "cleared": true })).into_response()
}

fn param<'a>(q: &'a BTreeMap<String, String>, name: &str) -> Result<&'a str, BadRequest> {
    q.get(name)
        .map(String::as_str)
        .ok_or_else(|| bad(StatusCode::BAD_REQUEST, format!("missing parameter {name}")))
}

fn number(q: &BTreeMap<String, String>, name: &str, min: f64, max: f64) -> Result<f64, BadRequest> {
    let v: f64 = param(q, name)?
        .parse()
        .map_err(|_| bad(StatusCode::BAD_REQUEST, format!("{name} must be a number")))?;
    if v.is_finite() && (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(bad(
            StatusCode::BAD_REQUEST,
            format!("{name} must be between {min} and {max}"),
        ))
    }
}

/// Parses a fault request (kind from the path, the rest from the query string).
pub fn parse_fault(
    kind: &str,
    q: &BTreeMap<String, String>,
) -> Result<(Fault, Duration), BadRequest> {
    let duration =
        parse_duration(param(q, "duration")?).map_err(|e| bad(StatusCode::BAD_REQUEST, e))?;
    if duration.is_zero() || duration > MAX_FAULT {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "duration must be between 0 and 1h",
        ));
    }
    let service = || {
        let s = param(q, "service")?;
        ServiceKind::parse(s)
            .ok_or_else(|| bad(StatusCode::BAD_REQUEST, format!("unknown service {s:?}")))
    };
    let fault = match kind {
        "errors" => Fault::Errors {
            service: service()?,
            ratio: number(q, "ratio", 0.0, 1.0)?,
        },
        "slow" => {
            let delay =
                parse_duration(param(q, "delay")?).map_err(|e| bad(StatusCode::BAD_REQUEST, e))?;
            if delay > Duration::from_secs(30) {
                return Err(bad(StatusCode::BAD_REQUEST, "delay must be at most 30s"));
            }
            Fault::Slow {
                service: service()?,
                delay_ms: delay.as_millis() as u64,
            }
        }
        "stop" => Fault::Stop {
            service: service()?,
        },
        "spike" => Fault::Spike {
            service: service()?,
            rps: number(q, "rps", 1.0, 2_000.0)?,
        },
        "redis-fill" => Fault::RedisFill {
            mib: number(q, "mib", 1.0, 2_048.0)? as u64,
        },
        other => {
            return Err(bad(
                StatusCode::NOT_FOUND,
                format!("unknown fault {other:?}: errors, slow, stop, spike, redis-fill"),
            ));
        }
    };
    Ok((fault, duration))
}

async fn inject(
    State(ctl): State<Arc<FaultController>>,
    Path(kind): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let (fault, duration) = match parse_fault(&kind, &q) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    match ctl.apply(fault, duration, "control").await {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(json!({ "fault": fault, "duration_seconds": duration.as_secs_f64() })),
        )
            .into_response(),
        Err(e) => bad(StatusCode::CONFLICT, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fault_requests() {
        let (f, d) = parse_fault(
            "errors",
            &q(&[("service", "board"), ("ratio", "0.3"), ("duration", "1m")]),
        )
        .expect("valid");
        assert_eq!(
            f,
            Fault::Errors {
                service: ServiceKind::Board,
                ratio: 0.3
            }
        );
        assert_eq!(d, Duration::from_secs(60));
        let (f, _) = parse_fault(
            "slow",
            &q(&[
                ("service", "noti-service"),
                ("delay", "3s"),
                ("duration", "90s"),
            ]),
        )
        .expect("valid");
        assert_eq!(
            f,
            Fault::Slow {
                service: ServiceKind::Noti,
                delay_ms: 3000
            }
        );
        assert!(
            parse_fault(
                "errors",
                &q(&[("service", "board"), ("ratio", "2"), ("duration", "1m")])
            )
            .is_err()
        );
        assert!(
            parse_fault(
                "errors",
                &q(&[("service", "nope"), ("ratio", "0.1"), ("duration", "1m")])
            )
            .is_err()
        );
        assert!(parse_fault("stop", &q(&[("service", "video")])).is_err());
        assert!(parse_fault("stop", &q(&[("service", "video"), ("duration", "2h")])).is_err());
        assert!(
            parse_fault(
                "spike",
                &q(&[("service", "board"), ("rps", "NaN"), ("duration", "1m")])
            )
            .is_err()
        );
        assert!(parse_fault("melt", &q(&[("duration", "1m")])).is_err());
        let (f, _) =
            parse_fault("redis-fill", &q(&[("mib", "230"), ("duration", "5m30s")])).expect("valid");
        assert_eq!(f, Fault::RedisFill { mib: 230 });
    }
}
