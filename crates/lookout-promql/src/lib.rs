//! PromQL evaluation with Prometheus 3 semantics over [`lookout_storage::Queryable`].
//!
//! Public surface (used by the HTTP API, the rules engine and the CLI):
//! [`Engine::instant_query`], [`Engine::range_query`], [`Value`], [`QueryError`].

mod value;
pub use value::{InstantSample, QueryError, QueryResult, Value};

use std::time::Duration;

use lookout_storage::{Queryable, Timestamp};

/// Engine settings; defaults are Prometheus's.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// How far back an instant selector looks for the latest sample (Prometheus: 5m).
    pub lookback_delta: Duration,
    /// Most samples one query may hold in memory at once (Prometheus: 50,000,000).
    pub max_samples: usize,
    /// Wall-clock limit per query (Prometheus: 2m).
    pub timeout: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta: Duration::from_secs(300),
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Engine {
    opts: EngineOptions,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Engine { opts }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `query` at `time` (ms).
    pub fn instant_query(&self, storage: &dyn Queryable, query: &str, time: Timestamp) -> Result<QueryResult, QueryError> {
        let _ = (storage, query, time);
        Err(QueryError::Execution("engine under construction".into()))
    }

    /// Evaluates `query` at every step from `start` to `end` inclusive (ms); the result is a
    /// matrix (or an error).
    pub fn range_query(
        &self,
        storage: &dyn Queryable,
        query: &str,
        start: Timestamp,
        end: Timestamp,
        step: Duration,
    ) -> Result<QueryResult, QueryError> {
        let _ = (storage, query, start, end, step);
        Err(QueryError::Execution("engine under construction".into()))
    }
}
