//! The narrow query interface rules are evaluated through: PromQL over a
//! [`lookout_storage::Queryable`], LogQL over a [`lookout_storage::logs::LogQueryable`], or
//! anything else (a remote API) that answers instant queries.

use std::sync::Arc;

use lookout_storage::logs::LogQueryable;
use lookout_storage::{Label, Labels, Queryable, Timestamp};

use crate::file::Language;

/// One element of an instant vector result.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSample {
    pub labels: Labels,
    pub v: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryFailure {
    #[error("{0}")]
    Failed(String),
    #[error("query timed out: {0}")]
    Timeout(String),
    #[error("no {0} query engine is configured")]
    NoEngine(&'static str),
}

/// Runs instant queries for rules.
pub trait InstantQuerier: Send + Sync {
    /// Evaluates `expr` at `t` (ms). A scalar result is one sample without labels.
    fn instant(&self, expr: &str, t: Timestamp) -> Result<Vec<RuleSample>, QueryFailure>;
}

/// PromQL through [`lookout_promql::Engine`].
pub struct PromqlQuerier {
    pub engine: lookout_promql::Engine,
    pub storage: Arc<dyn Queryable>,
}

impl InstantQuerier for PromqlQuerier {
    fn instant(&self, expr: &str, t: Timestamp) -> Result<Vec<RuleSample>, QueryFailure> {
        use lookout_promql::{QueryError, Value};
        let r = self
            .engine
            .instant_query(self.storage.as_ref(), expr, t)
            .map_err(|e| match e {
                QueryError::Timeout(_) => QueryFailure::Timeout(e.to_string()),
                other => QueryFailure::Failed(other.to_string()),
            })?;
        match r.value {
            Value::Vector(v) => Ok(v
                .into_iter()
                .map(|s| RuleSample {
                    labels: s.labels,
                    v: s.v,
                })
                .collect()),
            Value::Scalar { v, .. } => Ok(vec![RuleSample {
                labels: Labels::EMPTY,
                v,
            }]),
            other => Err(QueryFailure::Failed(format!(
                "rule result is not a vector or scalar: {}",
                other.result_type()
            ))),
        }
    }
}

/// LogQL metric queries through [`lookout_logql::LogqlEngine`].
pub struct LogqlQuerier {
    pub engine: lookout_logql::LogqlEngine,
    pub store: Arc<dyn LogQueryable>,
}

impl InstantQuerier for LogqlQuerier {
    fn instant(&self, expr: &str, t: Timestamp) -> Result<Vec<RuleSample>, QueryFailure> {
        use lookout_logql::{LogqlError, QueryValue};
        let v = self
            .engine
            .query_instant(self.store.as_ref(), expr, t.saturating_mul(1_000_000))
            .map_err(|e| match e {
                LogqlError::Timeout(_) => QueryFailure::Timeout(e.to_string()),
                other => QueryFailure::Failed(other.to_string()),
            })?;
        match v {
            QueryValue::Vector(v) => Ok(v
                .into_iter()
                .map(|s| RuleSample {
                    labels: Labels::new(s.labels.iter().map(|(n, v)| Label::new(n, v)).collect()),
                    v: s.v,
                })
                .collect()),
            QueryValue::Scalar { v, .. } => Ok(vec![RuleSample {
                labels: Labels::EMPTY,
                v,
            }]),
            other => Err(QueryFailure::Failed(format!(
                "rule result is not a vector or scalar: {}",
                other.result_type()
            ))),
        }
    }
}

/// The queriers a rule manager evaluates with, per language.
#[derive(Clone, Default)]
pub struct Queriers {
    pub promql: Option<Arc<dyn InstantQuerier>>,
    pub logql: Option<Arc<dyn InstantQuerier>>,
}

impl Queriers {
    pub fn for_language(&self, l: Language) -> Result<&dyn InstantQuerier, QueryFailure> {
        match l {
            Language::Promql => self
                .promql
                .as_deref()
                .ok_or(QueryFailure::NoEngine("PromQL")),
            Language::Logql => self.logql.as_deref().ok_or(QueryFailure::NoEngine("LogQL")),
        }
    }
}
