//! `prometheus.yml`: typed configuration with Prometheus's defaults and validation.
//!
//! [`PrometheusConfig::load`] reads a file, [`PrometheusConfig::parse`] a string. Unknown
//! fields are errors, as in Prometheus; errors name the file, the line/column and the field
//! path (`scrape_configs[0].scrape_interval`). After loading, inherited values are filled in
//! (scrape interval/timeout and limits from `global`, bearer tokens folded into
//! `authorization`), file paths are made relative to the configuration file's directory,
//! and the original text is kept in [`PrometheusConfig::original`] for
//! `/api/v1/status/config`.

mod http;
mod units;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

pub use http::{Authorization, BasicAuth, HttpClientConfig, Secret, TlsConfig};
pub use lookout_relabel::{NameValidation, RelabelConfig};
use lookout_storage::Labels;
use serde::{Deserialize, Serialize};
pub use units::{ByteSize, ByteSizeError, Duration, DurationError};

use http::join_opt;

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The YAML did not fit the schema (syntax, unknown field, bad value).
    #[error("{}", fmt_yaml_error(.file.as_deref(), .line, .column, .field, .message))]
    Yaml {
        file: Option<PathBuf>,
        line: Option<usize>,
        column: Option<usize>,
        field: String,
        message: String,
    },
    /// The YAML fitted the schema but broke a rule (duplicate job, timeout > interval, ...).
    #[error("{}{message}", .file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default())]
    Invalid {
        file: Option<PathBuf>,
        message: String,
    },
}

fn fmt_yaml_error(
    file: Option<&Path>,
    line: &Option<usize>,
    column: &Option<usize>,
    field: &str,
    message: &str,
) -> String {
    let mut s = String::new();
    if let Some(f) = file {
        s.push_str(&f.display().to_string());
        s.push(':');
    }
    if let Some(l) = line {
        s.push_str(&l.to_string());
        s.push(':');
        if let Some(c) = column {
            s.push_str(&c.to_string());
            s.push(':');
        }
    }
    if !s.is_empty() {
        s.push(' ');
    }
    if !field.is_empty() && field != "." {
        s.push_str("field ");
        s.push_str(field);
        s.push_str(": ");
    }
    s.push_str(message);
    s
}

/// A scrape protocol, as named in `scrape_protocols`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum ScrapeProtocol {
    PrometheusProto,
    #[serde(rename = "OpenMetricsText0.0.1")]
    OpenMetricsText0_0_1,
    #[serde(rename = "OpenMetricsText1.0.0")]
    OpenMetricsText1_0_0,
    #[serde(rename = "PrometheusText0.0.4")]
    PrometheusText0_0_4,
    #[serde(rename = "PrometheusText1.0.0")]
    PrometheusText1_0_0,
}

impl ScrapeProtocol {
    /// The media type (with parameters) this protocol is requested as.
    pub fn media_type(self) -> &'static str {
        match self {
            ScrapeProtocol::PrometheusProto => {
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
            }
            ScrapeProtocol::OpenMetricsText0_0_1 => "application/openmetrics-text;version=0.0.1",
            ScrapeProtocol::OpenMetricsText1_0_0 => {
                "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8"
            }
            ScrapeProtocol::PrometheusText0_0_4 => "text/plain;version=0.0.4",
            ScrapeProtocol::PrometheusText1_0_0 => "text/plain;version=1.0.0;escaping=allow-utf-8",
        }
    }

    pub fn is_openmetrics(self) -> bool {
        matches!(
            self,
            ScrapeProtocol::OpenMetricsText0_0_1 | ScrapeProtocol::OpenMetricsText1_0_0
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ScrapeProtocol::PrometheusProto => "PrometheusProto",
            ScrapeProtocol::OpenMetricsText0_0_1 => "OpenMetricsText0.0.1",
            ScrapeProtocol::OpenMetricsText1_0_0 => "OpenMetricsText1.0.0",
            ScrapeProtocol::PrometheusText0_0_4 => "PrometheusText0.0.4",
            ScrapeProtocol::PrometheusText1_0_0 => "PrometheusText1.0.0",
        }
    }
}

/// Prometheus 3's default `scrape_protocols` (without the protobuf format, which it only
/// adds for native histograms).
pub const DEFAULT_SCRAPE_PROTOCOLS: [ScrapeProtocol; 4] = [
    ScrapeProtocol::OpenMetricsText1_0_0,
    ScrapeProtocol::OpenMetricsText0_0_1,
    ScrapeProtocol::PrometheusText1_0_0,
    ScrapeProtocol::PrometheusText0_0_4,
];

/// The whole `prometheus.yml`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrometheusConfig {
    pub global: GlobalConfig,
    /// Globs, relative paths resolved against the configuration file's directory.
    pub rule_files: Vec<String>,
    pub scrape_configs: Vec<ScrapeConfig>,
    pub alerting: AlertingConfig,
    pub remote_write: Vec<RemoteWriteConfig>,
    pub remote_read: Vec<RemoteReadConfig>,
    pub storage: StorageConfig,
    /// The text this configuration was parsed from.
    #[serde(skip)]
    pub original: String,
    /// The file it was loaded from, if any.
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GlobalConfig {
    /// Default 1m.
    pub scrape_interval: Duration,
    /// Default 10s (or the interval when that is shorter).
    pub scrape_timeout: Duration,
    pub scrape_protocols: Vec<ScrapeProtocol>,
    /// Default 1m.
    pub evaluation_interval: Duration,
    pub rule_query_offset: Duration,
    pub external_labels: BTreeMap<String, String>,
    /// Accepted for compatibility; Lookout does not write a query log.
    pub query_log_file: Option<PathBuf>,
    /// Accepted for compatibility; scrape failures are logged through `tracing`.
    pub scrape_failure_log_file: Option<PathBuf>,
    pub body_size_limit: ByteSize,
    pub sample_limit: u64,
    pub target_limit: u64,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    pub keep_dropped_targets: u64,
    pub metric_name_validation_scheme: Option<NameValidation>,
}

impl GlobalConfig {
    pub const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(60);
    pub const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_EVALUATION_INTERVAL: Duration = Duration::from_secs(60);

    fn fill_defaults(&mut self) -> Result<(), String> {
        if self.scrape_interval.is_zero() {
            self.scrape_interval = Self::DEFAULT_SCRAPE_INTERVAL;
        }
        if self.scrape_timeout.is_zero() {
            self.scrape_timeout = Self::DEFAULT_SCRAPE_TIMEOUT.min(self.scrape_interval);
        }
        if self.scrape_timeout > self.scrape_interval {
            return Err("global scrape timeout greater than scrape interval".into());
        }
        if self.evaluation_interval.is_zero() {
            self.evaluation_interval = Self::DEFAULT_EVALUATION_INTERVAL;
        }
        if self.scrape_protocols.is_empty() {
            self.scrape_protocols = DEFAULT_SCRAPE_PROTOCOLS.to_vec();
        }
        check_protocols(&self.scrape_protocols)?;
        let scheme = self.metric_name_validation_scheme.unwrap_or_default();
        for name in self.external_labels.keys() {
            if !scheme.is_valid_label_name(name) {
                return Err(format!("{name:?} is not a valid label name"));
            }
        }
        Ok(())
    }

    /// `external_labels` as a label set.
    pub fn external_labels(&self) -> Labels {
        Labels::from_pairs(
            self.external_labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }
}

fn check_protocols(p: &[ScrapeProtocol]) -> Result<(), String> {
    let mut seen = HashSet::new();
    for x in p {
        if !seen.insert(*x) {
            let names: Vec<&str> = p.iter().map(|x| x.as_str()).collect();
            return Err(format!(
                "duplicated protocol in scrape_protocols, got [{}]",
                names.join(" ")
            ));
        }
    }
    Ok(())
}

/// A static target group; also the shape of file-SD target files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetGroup {
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

impl TargetGroup {
    /// Checks target addresses and label names as Prometheus does for static groups.
    pub fn validate(&self, scheme: NameValidation) -> Result<(), String> {
        for t in &self.targets {
            if t.contains('/') {
                return Err(format!("{t:?} is not a valid hostname"));
            }
        }
        for name in self.labels.keys() {
            if !scheme.is_valid_label_name(name) {
                return Err(format!("{name:?} is not a valid label name"));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileSdConfig {
    /// Globs; relative ones are resolved against the configuration file's directory.
    pub files: Vec<String>,
    /// Default 5m.
    pub refresh_interval: Duration,
}

impl Default for FileSdConfig {
    fn default() -> Self {
        FileSdConfig {
            files: Vec::new(),
            refresh_interval: Duration::from_secs(300),
        }
    }
}

impl FileSdConfig {
    fn validate(&self) -> Result<(), String> {
        if self.files.is_empty() {
            return Err("file service discovery config must contain at least one path name".into());
        }
        for f in &self.files {
            if !valid_sd_pattern(f) {
                return Err(format!("path name {f:?} is not valid for file discovery"));
            }
        }
        Ok(())
    }
}

/// `^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$`: at most one `*`, only in the last
/// path element, and a JSON or YAML extension.
fn valid_sd_pattern(p: &str) -> bool {
    let ext_ok = ["json", "yml", "yaml", "JSON", "YML", "YAML"]
        .iter()
        .any(|e| {
            p.len() > e.len() + 1 && p.ends_with(e) && p.as_bytes()[p.len() - e.len() - 1] == b'.'
        });
    if !ext_ok {
        return false;
    }
    match p.find('*') {
        None => true,
        Some(i) => !p[i + 1..].contains('*') && !p[i + 1..].contains('/'),
    }
}

fn resolve_glob(base: &Path, g: &mut String) {
    if !g.is_empty() && Path::new(g.as_str()).is_relative() {
        *g = base.join(g.as_str()).to_string_lossy().into_owned();
    }
}

fn yes() -> bool {
    true
}

/// One `scrape_configs` entry. Zero intervals and limits inherit from `global` on load.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScrapeConfig {
    pub job_name: String,
    pub honor_labels: bool,
    #[serde(default = "yes")]
    pub honor_timestamps: bool,
    pub track_timestamps_staleness: bool,
    pub params: BTreeMap<String, Vec<String>>,
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub scrape_protocols: Vec<ScrapeProtocol>,
    pub fallback_scrape_protocol: Option<ScrapeProtocol>,
    pub metrics_path: String,
    pub scheme: String,
    pub body_size_limit: ByteSize,
    pub sample_limit: u64,
    pub target_limit: u64,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    pub keep_dropped_targets: u64,
    pub metric_name_validation_scheme: Option<NameValidation>,
    pub static_configs: Vec<TargetGroup>,
    pub file_sd_configs: Vec<FileSdConfig>,
    pub relabel_configs: Vec<RelabelConfig>,
    pub metric_relabel_configs: Vec<RelabelConfig>,
    // Raw HTTP client fields; use `http` after loading.
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub bearer_token: Option<Secret>,
    pub bearer_token_file: Option<PathBuf>,
    pub tls_config: TlsConfig,
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    #[serde(default = "yes")]
    pub enable_http2: bool,
    /// Resolved HTTP client settings (filled on load).
    #[serde(skip)]
    pub http: HttpClientConfig,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        ScrapeConfig {
            job_name: String::new(),
            honor_labels: false,
            honor_timestamps: true,
            track_timestamps_staleness: false,
            params: BTreeMap::new(),
            scrape_interval: Duration::ZERO,
            scrape_timeout: Duration::ZERO,
            scrape_protocols: Vec::new(),
            fallback_scrape_protocol: None,
            metrics_path: "/metrics".into(),
            scheme: "http".into(),
            body_size_limit: ByteSize(0),
            sample_limit: 0,
            target_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            keep_dropped_targets: 0,
            metric_name_validation_scheme: None,
            static_configs: Vec::new(),
            file_sd_configs: Vec::new(),
            relabel_configs: Vec::new(),
            metric_relabel_configs: Vec::new(),
            basic_auth: None,
            authorization: None,
            bearer_token: None,
            bearer_token_file: None,
            tls_config: TlsConfig::default(),
            follow_redirects: true,
            enable_http2: true,
            http: HttpClientConfig::default(),
        }
    }
}

fn inherit(v: &mut u64, g: u64) {
    if *v == 0 {
        *v = g;
    }
}

fn check_scheme(scheme: &str) -> Result<(), String> {
    match scheme {
        "http" | "https" => Ok(()),
        other => Err(format!(
            "invalid scheme {other:?}: must be \"http\" or \"https\""
        )),
    }
}

fn validate_relabel(
    list: &mut [RelabelConfig],
    scheme: NameValidation,
    what: &str,
) -> Result<(), String> {
    for (i, c) in list.iter_mut().enumerate() {
        c.name_validation = scheme;
        c.validate().map_err(|e| format!("{what}[{i}]: {e}"))?;
    }
    Ok(())
}

impl ScrapeConfig {
    fn fill_and_validate(&mut self, g: &GlobalConfig) -> Result<(), String> {
        if self.job_name.is_empty() {
            return Err("job_name is empty".into());
        }
        let ctx = |e: String| format!("scrape config {:?}: {e}", self.job_name);
        if self.scrape_interval.is_zero() {
            self.scrape_interval = g.scrape_interval;
        }
        if self.scrape_timeout > self.scrape_interval {
            return Err(format!(
                "scrape timeout greater than scrape interval for scrape config with job name {:?}",
                self.job_name
            ));
        }
        if self.scrape_timeout.is_zero() {
            self.scrape_timeout = g.scrape_timeout.min(self.scrape_interval);
        }
        if self.scrape_protocols.is_empty() {
            self.scrape_protocols = g.scrape_protocols.clone();
        }
        check_protocols(&self.scrape_protocols).map_err(ctx)?;
        check_scheme(&self.scheme).map_err(ctx)?;
        if self.body_size_limit.0 == 0 {
            self.body_size_limit = g.body_size_limit;
        }
        inherit(&mut self.sample_limit, g.sample_limit);
        inherit(&mut self.target_limit, g.target_limit);
        inherit(&mut self.label_limit, g.label_limit);
        inherit(&mut self.label_name_length_limit, g.label_name_length_limit);
        inherit(
            &mut self.label_value_length_limit,
            g.label_value_length_limit,
        );
        inherit(&mut self.keep_dropped_targets, g.keep_dropped_targets);
        if self.metric_name_validation_scheme.is_none() {
            self.metric_name_validation_scheme = g.metric_name_validation_scheme;
        }
        let scheme = self.metric_name_validation_scheme.unwrap_or_default();
        for tg in &self.static_configs {
            tg.validate(scheme).map_err(ctx)?;
        }
        for sd in &self.file_sd_configs {
            sd.validate().map_err(ctx)?;
        }
        validate_relabel(&mut self.relabel_configs, scheme, "relabel_configs").map_err(ctx)?;
        validate_relabel(
            &mut self.metric_relabel_configs,
            scheme,
            "metric_relabel_configs",
        )
        .map_err(ctx)?;
        self.http = http::resolve(
            &self.basic_auth,
            &self.authorization,
            &self.bearer_token,
            &self.bearer_token_file,
            &self.tls_config,
            self.follow_redirects,
            self.enable_http2,
        )
        .map_err(ctx)?;
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        self.http.resolve_paths(base);
        for sd in &mut self.file_sd_configs {
            for f in &mut sd.files {
                resolve_glob(base, f);
            }
        }
    }

    /// The name validation scheme in force for this job.
    pub fn name_validation(&self) -> NameValidation {
        self.metric_name_validation_scheme.unwrap_or_default()
    }

    /// The `Accept` header for this job's `scrape_protocols`: the first protocol gets the
    /// highest quality, `*/*` the lowest. The protobuf format is skipped (Lookout does not
    /// parse it).
    pub fn accept_header(&self) -> String {
        let protos: Vec<ScrapeProtocol> = self
            .scrape_protocols
            .iter()
            .copied()
            .filter(|p| *p != ScrapeProtocol::PrometheusProto)
            .collect();
        let protos = if protos.is_empty() {
            DEFAULT_SCRAPE_PROTOCOLS.to_vec()
        } else {
            protos
        };
        let mut weight = protos.len() + 2;
        let mut parts = Vec::with_capacity(protos.len() + 1);
        for p in protos {
            parts.push(format!("{};q=0.{}", p.media_type(), weight));
            weight -= 1;
        }
        parts.push(format!("*/*;q=0.{weight}"));
        parts.join(",")
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertingConfig {
    pub alert_relabel_configs: Vec<RelabelConfig>,
    pub alertmanagers: Vec<AlertmanagerConfig>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertmanagerConfig {
    pub static_configs: Vec<TargetGroup>,
    pub file_sd_configs: Vec<FileSdConfig>,
    pub scheme: String,
    pub path_prefix: String,
    /// Default 10s.
    pub timeout: Duration,
    /// Only `v2`.
    pub api_version: String,
    pub relabel_configs: Vec<RelabelConfig>,
    pub alert_relabel_configs: Vec<RelabelConfig>,
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub bearer_token: Option<Secret>,
    pub bearer_token_file: Option<PathBuf>,
    pub tls_config: TlsConfig,
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    #[serde(default = "yes")]
    pub enable_http2: bool,
    #[serde(skip)]
    pub http: HttpClientConfig,
}

impl Default for AlertmanagerConfig {
    fn default() -> Self {
        AlertmanagerConfig {
            static_configs: Vec::new(),
            file_sd_configs: Vec::new(),
            scheme: "http".into(),
            path_prefix: String::new(),
            timeout: Duration::from_secs(10),
            api_version: "v2".into(),
            relabel_configs: Vec::new(),
            alert_relabel_configs: Vec::new(),
            basic_auth: None,
            authorization: None,
            bearer_token: None,
            bearer_token_file: None,
            tls_config: TlsConfig::default(),
            follow_redirects: true,
            enable_http2: true,
            http: HttpClientConfig::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    pub capacity: u64,
    pub max_shards: u64,
    pub min_shards: u64,
    pub max_samples_per_send: u64,
    pub batch_send_deadline: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub retry_on_http_429: bool,
    pub sample_age_limit: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 10_000,
            max_shards: 50,
            min_shards: 1,
            max_samples_per_send: 2_000,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            retry_on_http_429: true,
            sample_age_limit: Duration::ZERO,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetadataConfig {
    pub send: bool,
    pub send_interval: Duration,
    pub max_samples_per_send: u64,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            send: true,
            send_interval: Duration::from_secs(60),
            max_samples_per_send: 500,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteWriteConfig {
    pub url: String,
    pub name: String,
    /// Default 30s.
    pub remote_timeout: Duration,
    pub headers: BTreeMap<String, String>,
    pub write_relabel_configs: Vec<RelabelConfig>,
    pub send_exemplars: bool,
    pub send_native_histograms: bool,
    pub queue_config: QueueConfig,
    pub metadata_config: MetadataConfig,
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub bearer_token: Option<Secret>,
    pub bearer_token_file: Option<PathBuf>,
    pub tls_config: TlsConfig,
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    #[serde(default = "yes")]
    pub enable_http2: bool,
    #[serde(skip)]
    pub http: HttpClientConfig,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        RemoteWriteConfig {
            url: String::new(),
            name: String::new(),
            remote_timeout: Duration::from_secs(30),
            headers: BTreeMap::new(),
            write_relabel_configs: Vec::new(),
            send_exemplars: false,
            send_native_histograms: false,
            queue_config: QueueConfig::default(),
            metadata_config: MetadataConfig::default(),
            basic_auth: None,
            authorization: None,
            bearer_token: None,
            bearer_token_file: None,
            tls_config: TlsConfig::default(),
            follow_redirects: true,
            enable_http2: true,
            http: HttpClientConfig::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteReadConfig {
    pub url: String,
    pub name: String,
    /// Default 1m.
    pub remote_timeout: Duration,
    pub headers: BTreeMap<String, String>,
    pub read_recent: bool,
    pub required_matchers: BTreeMap<String, String>,
    pub filter_external_labels: bool,
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub bearer_token: Option<Secret>,
    pub bearer_token_file: Option<PathBuf>,
    pub tls_config: TlsConfig,
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    #[serde(default = "yes")]
    pub enable_http2: bool,
    #[serde(skip)]
    pub http: HttpClientConfig,
}

impl Default for RemoteReadConfig {
    fn default() -> Self {
        RemoteReadConfig {
            url: String::new(),
            name: String::new(),
            remote_timeout: Duration::from_secs(60),
            headers: BTreeMap::new(),
            read_recent: false,
            required_matchers: BTreeMap::new(),
            filter_external_labels: true,
            basic_auth: None,
            authorization: None,
            bearer_token: None,
            bearer_token_file: None,
            tls_config: TlsConfig::default(),
            follow_redirects: true,
            enable_http2: true,
            http: HttpClientConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub tsdb: TsdbConfig,
    pub exemplars: ExemplarsConfig,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TsdbConfig {
    pub out_of_order_time_window: Duration,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExemplarsConfig {
    pub max_exemplars: i64,
}

fn check_url(url: &str, what: &str) -> Result<(), String> {
    if url.is_empty() {
        return Err(format!("url for {what} is empty"));
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "https://".len()
    {
        return Err(format!(
            "invalid url {url:?} for {what}: scheme must be http or https"
        ));
    }
    Ok(())
}

impl PrometheusConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut cfg = Self::parse_inner(&text, Some(path))?;
        cfg.resolve_paths(&base);
        cfg.path = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Parses and validates configuration text; relative paths stay relative.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::parse_inner(text, None)
    }

    /// Like [`parse`](Self::parse), resolving relative paths against `base_dir`.
    pub fn parse_with_base(text: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let mut cfg = Self::parse_inner(text, None)?;
        cfg.resolve_paths(base_dir);
        Ok(cfg)
    }

    fn parse_inner(text: &str, file: Option<&Path>) -> Result<Self, ConfigError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let parsed: Option<PrometheusConfig> =
            serde_path_to_error::deserialize(de).map_err(|e| {
                let field = e.path().to_string();
                let inner = e.into_inner();
                let loc = inner.location();
                let message = strip_field_prefix(&strip_location(&inner.to_string()), &field);
                ConfigError::Yaml {
                    file: file.map(Path::to_path_buf),
                    line: loc.as_ref().map(|l| l.line()),
                    column: loc.as_ref().map(|l| l.column()),
                    field,
                    message,
                }
            })?;
        let mut cfg = parsed.unwrap_or_default();
        cfg.original = text.to_string();
        cfg.validate().map_err(|message| ConfigError::Invalid {
            file: file.map(Path::to_path_buf),
            message,
        })?;
        Ok(cfg)
    }

    fn validate(&mut self) -> Result<(), String> {
        self.global.fill_defaults()?;
        let scheme = self
            .global
            .metric_name_validation_scheme
            .unwrap_or_default();
        let mut jobs = HashSet::new();
        for sc in &mut self.scrape_configs {
            sc.fill_and_validate(&self.global)?;
            if !jobs.insert(sc.job_name.clone()) {
                return Err(format!(
                    "found multiple scrape configs with job name {:?}",
                    sc.job_name
                ));
            }
        }
        validate_relabel(
            &mut self.alerting.alert_relabel_configs,
            scheme,
            "alerting.alert_relabel_configs",
        )?;
        for (i, am) in self.alerting.alertmanagers.iter_mut().enumerate() {
            let ctx = |e: String| format!("alerting.alertmanagers[{i}]: {e}");
            if am.api_version != "v2" {
                return Err(ctx(format!(
                    "expected Alertmanager api version to be one of [v2] but got {}",
                    am.api_version
                )));
            }
            check_scheme(&am.scheme).map_err(ctx)?;
            for tg in &am.static_configs {
                tg.validate(scheme).map_err(ctx)?;
            }
            for sd in &am.file_sd_configs {
                sd.validate().map_err(ctx)?;
            }
            validate_relabel(&mut am.relabel_configs, scheme, "relabel_configs").map_err(ctx)?;
            validate_relabel(
                &mut am.alert_relabel_configs,
                scheme,
                "alert_relabel_configs",
            )
            .map_err(ctx)?;
            am.http = http::resolve(
                &am.basic_auth,
                &am.authorization,
                &am.bearer_token,
                &am.bearer_token_file,
                &am.tls_config,
                am.follow_redirects,
                am.enable_http2,
            )
            .map_err(ctx)?;
        }
        let mut names = HashSet::new();
        for (i, rw) in self.remote_write.iter_mut().enumerate() {
            let ctx = |e: String| format!("remote_write[{i}]: {e}");
            check_url(&rw.url, "remote_write").map_err(ctx)?;
            if !rw.name.is_empty() && !names.insert(rw.name.clone()) {
                return Err(format!(
                    "found multiple remote write configs with job name {:?}",
                    rw.name
                ));
            }
            validate_relabel(
                &mut rw.write_relabel_configs,
                scheme,
                "write_relabel_configs",
            )
            .map_err(ctx)?;
            rw.http = http::resolve(
                &rw.basic_auth,
                &rw.authorization,
                &rw.bearer_token,
                &rw.bearer_token_file,
                &rw.tls_config,
                rw.follow_redirects,
                rw.enable_http2,
            )
            .map_err(ctx)?;
        }
        let mut names = HashSet::new();
        for (i, rr) in self.remote_read.iter_mut().enumerate() {
            let ctx = |e: String| format!("remote_read[{i}]: {e}");
            check_url(&rr.url, "remote_read").map_err(ctx)?;
            if !rr.name.is_empty() && !names.insert(rr.name.clone()) {
                return Err(format!(
                    "found multiple remote read configs with job name {:?}",
                    rr.name
                ));
            }
            rr.http = http::resolve(
                &rr.basic_auth,
                &rr.authorization,
                &rr.bearer_token,
                &rr.bearer_token_file,
                &rr.tls_config,
                rr.follow_redirects,
                rr.enable_http2,
            )
            .map_err(ctx)?;
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        for g in &mut self.rule_files {
            resolve_glob(base, g);
        }
        join_opt(base, &mut self.global.query_log_file);
        join_opt(base, &mut self.global.scrape_failure_log_file);
        for sc in &mut self.scrape_configs {
            sc.resolve_paths(base);
        }
        for am in &mut self.alerting.alertmanagers {
            am.http.resolve_paths(base);
            for sd in &mut am.file_sd_configs {
                for f in &mut sd.files {
                    resolve_glob(base, f);
                }
            }
        }
        for rw in &mut self.remote_write {
            rw.http.resolve_paths(base);
        }
        for rr in &mut self.remote_read {
            rr.http.resolve_paths(base);
        }
    }

    /// The scrape config for `job`.
    pub fn scrape_config(&self, job: &str) -> Option<&ScrapeConfig> {
        self.scrape_configs.iter().find(|s| s.job_name == job)
    }
}

impl fmt::Display for PrometheusConfig {
    /// The original YAML text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

/// serde_yaml_ng appends " at line L column C" to messages; the location is reported
/// separately, so drop it from the text.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => msg[..i].to_string(),
        _ => msg.to_string(),
    }
}

/// serde_yaml_ng also prefixes messages with the field path, which is reported separately.
fn strip_field_prefix(msg: &str, field: &str) -> String {
    msg.strip_prefix(field)
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(msg)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd_patterns() {
        assert!(valid_sd_pattern("targets/*.json"));
        assert!(valid_sd_pattern("a.yml"));
        assert!(valid_sd_pattern("dir/x*y.YAML"));
        assert!(!valid_sd_pattern("a.txt"));
        assert!(!valid_sd_pattern("*/a.json"));
        assert!(!valid_sd_pattern("a**.json"));
        assert!(!valid_sd_pattern(".json"));
    }

    #[test]
    fn strip_location_only_strips_suffix() {
        assert_eq!(
            strip_location("unknown field `x` at line 3 column 5"),
            "unknown field `x`"
        );
        assert_eq!(strip_location("plain"), "plain");
    }
}
