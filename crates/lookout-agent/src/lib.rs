//! The log agent (Promtail's job): reads Promtail's configuration, tails files by glob and
//! Docker json-file logs (labels from each container's `config.v2.json`, or from the Docker
//! Engine API with `docker_sd_configs`), runs Promtail pipeline stages, and pushes batches to
//! any Loki push endpoint (snappy protobuf) with retries. Delivery is at-least-once: a file's
//! position is recorded only after the batch holding its lines was acknowledged. Processes'
//! stdout/stderr are a source too ([`process`]), and [`supervise`] runs programs (restart with
//! backoff, stop with a signal) feeding their output to it.

pub mod agent;
pub mod client;
pub mod config;
pub mod docker;
pub mod docker_sd;
pub mod metrics;
pub mod positions;
pub mod process;
pub mod stages;
pub mod supervise;
pub mod tail;
pub mod timefmt;

pub use agent::{Agent, AgentError, Target};
pub use config::{AgentConfig, ConfigError};
pub use lookout_loki_proto as proto;
pub use process::{ProcessError, ProcessSources, ProcessSpec, ProcessStatus};
pub use stages::{Entry, Pipeline, StageConfig};
pub use supervise::{ProgramSpec, Supervised};
