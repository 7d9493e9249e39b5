//! The agent's self-monitoring, with Promtail's metric names where Promtail has one.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::stages::{CustomFamily, CustomMetrics};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabel {
    pub path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostLabel {
    pub host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub host: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub host: String,
    pub status_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabel {
    pub job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProcessLabels {
    pub process: String,
    pub stream: String,
}

fn make_latency() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// All agent metrics; cheap to clone (families are shared).
#[derive(Clone)]
pub struct AgentMetrics {
    pub read_lines: Family<PathLabel, Counter>,
    pub read_bytes: Family<PathLabel, Counter>,
    pub file_bytes: Family<PathLabel, Gauge>,
    pub read_lag_bytes: Family<PathLabel, Gauge>,
    pub files_active: Gauge,
    pub invalid_utf8_lines: Family<PathLabel, Counter>,
    pub truncated_lines: Family<PathLabel, Counter>,
    pub encoded_bytes: Family<HostLabel, Counter>,
    pub sent_bytes: Family<HostLabel, Counter>,
    pub sent_entries: Family<HostLabel, Counter>,
    pub dropped_entries: Family<DropLabels, Counter>,
    pub dropped_bytes: Family<DropLabels, Counter>,
    pub batch_retries: Family<HostLabel, Counter>,
    pub request_duration: Family<RequestLabels, Histogram, fn() -> Histogram>,
    pub pending_entries: Family<HostLabel, Gauge<i64, std::sync::atomic::AtomicI64>>,
    pub process_read_lines: Family<ProcessLabels, Counter>,
    pub process_read_bytes: Family<ProcessLabels, Counter>,
    pub process_invalid_utf8_lines: Family<ProcessLabels, Counter>,
    pub process_truncated_lines: Family<ProcessLabels, Counter>,
    pub process_blocked_seconds: Family<ProcessLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    pub process_pipes_open: Gauge,
    pub reader_blocked_seconds: Family<JobLabel, Counter<f64, std::sync::atomic::AtomicU64>>,
    pub custom: CustomMetrics,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        AgentMetrics {
            read_lines: Family::default(),
            read_bytes: Family::default(),
            file_bytes: Family::default(),
            read_lag_bytes: Family::default(),
            files_active: Gauge::default(),
            invalid_utf8_lines: Family::default(),
            truncated_lines: Family::default(),
            encoded_bytes: Family::default(),
            sent_bytes: Family::default(),
            sent_entries: Family::default(),
            dropped_entries: Family::default(),
            dropped_bytes: Family::default(),
            batch_retries: Family::default(),
            request_duration: Family::new_with_constructor(make_latency),
            pending_entries: Family::default(),
            process_read_lines: Family::default(),
            process_read_bytes: Family::default(),
            process_invalid_utf8_lines: Family::default(),
            process_truncated_lines: Family::default(),
            process_blocked_seconds: Family::default(),
            process_pipes_open: Gauge::default(),
            reader_blocked_seconds: Family::default(),
            custom: CustomMetrics::default(),
        }
    }
}

impl std::fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentMetrics").finish_non_exhaustive()
    }
}

impl AgentMetrics {
    /// Counts entries dropped by the reader or a pipeline stage (not by a client).
    pub fn drop_local(&self, reason: &str, bytes: usize) {
        let l = DropLabels {
            host: String::new(),
            reason: reason.to_string(),
        };
        self.dropped_entries.get_or_create(&l).inc();
        self.dropped_bytes.get_or_create(&l).inc_by(bytes as u64);
    }

    /// Registers everything, the `metrics` stages' families included.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "promtail_read_lines",
            "Lines read per file.",
            self.read_lines.clone(),
        );
        r.register(
            "promtail_read_bytes",
            "Bytes read per file.",
            self.read_bytes.clone(),
        );
        r.register(
            "promtail_file_bytes",
            "Size of each tailed file.",
            self.file_bytes.clone(),
        );
        r.register(
            "lookout_agent_read_lag_bytes",
            "Bytes of each tailed file not read yet.",
            self.read_lag_bytes.clone(),
        );
        r.register(
            "promtail_files_active",
            "Files being tailed.",
            self.files_active.clone(),
        );
        r.register(
            "lookout_agent_invalid_utf8_lines",
            "Lines whose invalid UTF-8 was replaced by U+FFFD.",
            self.invalid_utf8_lines.clone(),
        );
        r.register(
            "lookout_agent_truncated_lines",
            "Lines cut to limits_config.max_line_size.",
            self.truncated_lines.clone(),
        );
        r.register(
            "promtail_encoded_bytes",
            "Bytes encoded and ready to send.",
            self.encoded_bytes.clone(),
        );
        r.register(
            "promtail_sent_bytes",
            "Bytes sent and acknowledged.",
            self.sent_bytes.clone(),
        );
        r.register(
            "promtail_sent_entries",
            "Entries sent and acknowledged.",
            self.sent_entries.clone(),
        );
        r.register(
            "promtail_dropped_entries",
            "Entries dropped, by reason (host is empty for drops before a client).",
            self.dropped_entries.clone(),
        );
        r.register(
            "promtail_dropped_bytes",
            "Bytes dropped, by reason.",
            self.dropped_bytes.clone(),
        );
        r.register(
            "promtail_batch_retries",
            "Push attempts retried.",
            self.batch_retries.clone(),
        );
        r.register(
            "promtail_request_duration_seconds",
            "Push request latency by status code.",
            self.request_duration.clone(),
        );
        r.register(
            "lookout_agent_pending_entries",
            "Entries batched but not acknowledged yet.",
            self.pending_entries.clone(),
        );
        r.register(
            "lookout_agent_process_read_lines",
            "Lines read from process pipes.",
            self.process_read_lines.clone(),
        );
        r.register(
            "lookout_agent_process_read_bytes",
            "Bytes read from process pipes.",
            self.process_read_bytes.clone(),
        );
        r.register(
            "lookout_agent_process_invalid_utf8_lines",
            "Process lines whose invalid UTF-8 was replaced by U+FFFD.",
            self.process_invalid_utf8_lines.clone(),
        );
        r.register(
            "lookout_agent_process_truncated_lines",
            "Process lines cut to limits_config.max_line_size.",
            self.process_truncated_lines.clone(),
        );
        r.register(
            "lookout_agent_process_blocked_seconds",
            "Time a process pipe was not read because the clients' queues were full.",
            self.process_blocked_seconds.clone(),
        );
        r.register(
            "lookout_agent_process_pipes_open",
            "Process stdout/stderr pipes being read.",
            self.process_pipes_open.clone(),
        );
        r.register(
            "lookout_agent_reader_blocked_seconds",
            "Time a job's file reader waited because the clients' queues were full (delivery-bound).",
            self.reader_blocked_seconds.clone(),
        );
        for (name, (help, fam)) in self.custom.families.lock().iter() {
            let help = if help.is_empty() {
                "Metric from a pipeline metrics stage."
            } else {
                help.as_str()
            };
            match fam {
                CustomFamily::Counter(f) => {
                    let n = name.strip_suffix("_total").unwrap_or(name);
                    r.register(n, help, f.clone());
                }
                CustomFamily::Gauge(f) => r.register(name, help, f.clone()),
                CustomFamily::Histogram(f) => r.register(name, help, f.clone()),
            }
        }
    }
}
