//! Recording and alerting rules with Prometheus's semantics.
//!
//! Modules: `file` (rule files, validation), `template` (Go-template subset for labels and
//! annotations), `gofmt` (Go number formatting), `query` (the instant-query interface:
//! PromQL or LogQL), `time` (RFC 3339).

pub mod file;
pub mod gofmt;
pub mod query;
pub mod template;
pub mod time;
