//! Lookout's log store (Loki's job): streams keyed by label set, each a head of recent entries
//! in memory (backed by a WAL) and a list of immutable chunks on disk.
//!
//! * Write: [`LogStore::push`] validates entries (line size, timestamps too old / too new /
//!   behind the stream's out-of-order window), appends the accepted ones to the WAL and the
//!   heads, and cuts a head into a chunk when it reaches [`LogStoreOptions::chunk_target_bytes`]
//!   (or, from [`LogStore::tick`], when it gets old or idle).
//! * Chunks ([`chunk`]) are column-encoded and zstd-compressed, appended to rolling data files
//!   and described in an append-only index log together with a substring filter ([`filter`]).
//! * Read: [`LogQueryable`]; chunks are skipped by time and by the filters for the query's
//!   required substrings, decoded in parallel and streamed to the sink in order.
//! * Retention ([`LogStore::enforce_retention`]) drops expired chunks (per-stream-selector
//!   periods supported) and deletes data files once all their chunks are gone.
//! * [`Tenants`] keeps one store per `X-Scope-OrgID` tenant in its own directory.

pub mod chunk;
mod codec;
pub mod filter;
mod metrics;
mod store;
mod wal;

pub use metrics::StoreMetrics;
pub use store::{
    DEFAULT_TENANT, DiskUsage, LogStore, LogStoreOptions, PushOutcome, PushStream, QueryStats,
    QueryStatsSnapshot, RejectReason, Rejection, RetentionOutcome, RetentionRule, StoreStats,
    Tenants, labels_text,
};

/// Errors of the log store.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error("log store I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("log store data is corrupt: {0}")]
    Corrupt(String),
    #[error("invalid tenant id {0:?}")]
    InvalidTenant(String),
}

impl From<LogStoreError> for lookout_storage::StorageError {
    fn from(e: LogStoreError) -> Self {
        match e {
            LogStoreError::Io(io) => lookout_storage::StorageError::Io(io),
            other => lookout_storage::StorageError::Other(other.to_string()),
        }
    }
}
