//! Query results and errors.

use lookout_storage::{Labels, Series, StorageError, Timestamp};

/// One element of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct InstantSample {
    pub labels: Labels,
    pub t: Timestamp,
    pub v: f64,
}

/// A PromQL value, as the HTTP API reports it (`resultType`).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar { t: Timestamp, v: f64 },
    String { t: Timestamp, s: String },
    Vector(Vec<InstantSample>),
    Matrix(Vec<Series>),
}

impl Value {
    /// `scalar`, `string`, `vector` or `matrix`.
    pub fn result_type(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    pub value: Value,
    /// Annotations of level "warning" (Prometheus's `warnings` array).
    pub warnings: Vec<String>,
    /// Annotations of level "info" (Prometheus's `infos` array).
    pub infos: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Syntax error. `message` is Prometheus's full text (`1:14: parse error: ...`) when the
    /// syntax checker located the error, `position` then being its byte offset; otherwise
    /// the parser's own message.
    #[error("{message}")]
    Parse {
        message: String,
        position: Option<usize>,
    },
    /// A well-formed query that cannot be evaluated (wrong types, many-to-many matching, ...).
    #[error("{0}")]
    Execution(String),
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(&'static str),
    #[error("{0}")]
    Storage(#[from] StorageError),
}

impl QueryError {
    /// The Prometheus HTTP API `errorType` for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            QueryError::Parse { .. } => "bad_data",
            QueryError::Execution(_) => "execution",
            QueryError::Timeout(_) => "timeout",
            QueryError::TooManySamples(_) => "execution",
            QueryError::Storage(_) => "internal",
        }
    }
}
