//! The seven weAlist demo services, their Docker-style logs, and a seeded traffic generator
//! with a fault schedule — what `lookout demo` runs next to the monitoring stack.
//!
//! - [`services`]: user, auth (Spring/Micrometer naming on `/actuator/prometheus`), board,
//!   chat (WebSockets), noti, storage (streamed bodies) and video, each an axum router with
//!   in-memory state, metrics from `lookout-instrument` under the seed's exact names, input
//!   validation (400 with a JSON body) and structured JSON request logs.
//! - [`logs`]: Docker json-file logs under `<data-dir>/containers/<id>/` with `config.v2.json`.
//! - [`stack::ServiceStack`]: starts the services, stops/restarts one (fault), shuts down.
//! - [`traffic`]: simulated users (reproducible from a seed) with a compressed daily rhythm.
//! - [`schedule`]: the fault schedule that makes each of the seed's five alert conditions
//!   ([`schedule::ALERT_CONDITIONS`]) hold longer than its `for` and clear again.
//! - [`control`]: the HTTP control endpoint (inject faults on demand, inspect state).
//! - [`redis_fill`]: fills (and empties) a local Redis the demo owns, for the memory alert.
//! - [`backing`]: optional PostgreSQL/Redis behind the user and board services.
//! - [`history`]: past data extrapolated from a probe scrape, for `lookout demo --history`.

pub mod backing;
pub mod config;
pub mod control;
pub mod faults;
pub mod history;
pub mod logs;
pub mod redis_fill;
pub mod rng;
pub mod schedule;
pub mod services;
pub mod stack;
pub mod timefmt;
pub mod traffic;

use std::fmt;

/// Errors starting or running the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("registering metrics: {0}")]
    Instrument(#[from] lookout_instrument::InstrumentError),
    #[error("{0}")]
    Config(String),
    #[error("redis: {0}")]
    Redis(String),
}

/// The seven weAlist services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKind {
    User,
    Auth,
    Board,
    Chat,
    Noti,
    Storage,
    Video,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 7] = [
        ServiceKind::User,
        ServiceKind::Auth,
        ServiceKind::Board,
        ServiceKind::Chat,
        ServiceKind::Noti,
        ServiceKind::Storage,
        ServiceKind::Video,
    ];

    /// Short name: `user`, `auth`, ... (the `service` target label in prometheus.yml).
    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::User => "user",
            ServiceKind::Auth => "auth",
            ServiceKind::Board => "board",
            ServiceKind::Chat => "chat",
            ServiceKind::Noti => "noti",
            ServiceKind::Storage => "storage",
            ServiceKind::Video => "video",
        }
    }

    /// Compose service and Prometheus job name: `user-service`, ...
    pub fn compose_service(self) -> &'static str {
        match self {
            ServiceKind::User => "user-service",
            ServiceKind::Auth => "auth-service",
            ServiceKind::Board => "board-service",
            ServiceKind::Chat => "chat-service",
            ServiceKind::Noti => "noti-service",
            ServiceKind::Storage => "storage-service",
            ServiceKind::Video => "video-service",
        }
    }

    /// The port the seed runs it on.
    pub fn seed_port(self) -> u16 {
        match self {
            ServiceKind::User => 8080,
            ServiceKind::Auth => 8090,
            ServiceKind::Board => 8000,
            ServiceKind::Chat => 8001,
            ServiceKind::Noti => 8002,
            ServiceKind::Storage => 8003,
            ServiceKind::Video => 8004,
        }
    }

    /// Where its metrics are served.
    pub fn metrics_path(self) -> &'static str {
        match self {
            ServiceKind::Auth => "/actuator/prometheus",
            _ => "/metrics",
        }
    }

    /// Accepts `user`, `user-service` (any case).
    pub fn parse(s: &str) -> Option<ServiceKind> {
        let s = s.trim().to_ascii_lowercase();
        let s = s.strip_suffix("-service").unwrap_or(&s);
        ServiceKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.compose_service())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in ServiceKind::ALL {
            assert_eq!(ServiceKind::parse(k.name()), Some(k));
            assert_eq!(ServiceKind::parse(k.compose_service()), Some(k));
        }
        assert_eq!(ServiceKind::parse("USER-Service"), Some(ServiceKind::User));
        assert_eq!(ServiceKind::parse("gateway"), None);
        let mut ports: Vec<u16> = ServiceKind::ALL.iter().map(|k| k.seed_port()).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 7);
    }
}
