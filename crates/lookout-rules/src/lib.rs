//! Recording and alerting rules with Prometheus's semantics, over PromQL or LogQL.
//!
//! - `file`: rule files (`groups:`), validation as `promtool check rules`, glob expansion.
//! - `template`: the Go-template subset of alert labels/annotations (`humanize`, `query`, …).
//! - `query`: the instant-query interface rules evaluate through ([`query::PromqlQuerier`],
//!   [`query::LogqlQuerier`]).
//! - `rule`: one rule's state machine (inactive → pending → firing → resolved, `for`,
//!   `keep_firing_for`), recording results, which alerts to (re)send.
//! - `group`: a group's evaluation: results and `ALERTS`/`ALERTS_FOR_STATE` written in one
//!   batch with staleness markers, state restored from storage after a restart.
//! - `manager`: scheduling, reload, metrics and API snapshots.
//! - `scale`: time-scaled copies of rule files (the demo's fast schedule).
//! - `unittest`: promtool's rule unit-test format; `check`: `check rules` reports.
//! - `gofmt`, `time`: Go number formatting and RFC 3339.

pub mod check;
pub mod file;
pub mod gofmt;
pub mod group;
pub mod manager;
pub mod query;
pub mod rule;
pub mod scale;
pub mod template;
pub mod time;
pub mod unittest;

pub use file::{GroupSpec, Language, RuleFile, RuleFileError, RuleKind, RuleSpec};
pub use manager::{AlertStatus, GroupStatus, ManagerOptions, RuleManager, RuleSource, RuleStatus};
pub use query::{InstantQuerier, LogqlQuerier, PromqlQuerier, Queriers, QueryFailure, RuleSample};
pub use rule::AlertState;
