//! Promtail's configuration file: `server`, `positions`, `clients`, `scrape_configs`
//! (`static_configs`, `docker_sd_configs`, `relabel_configs`, `pipeline_stages`),
//! `limits_config`, `target_config`. Unknown keys are errors that name their line.
//! `${VAR}` and `${VAR:-default}` are expanded before parsing (Promtail's
//! `-config.expand-env`), from the environment and from caller-supplied variables.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::stages::StageConfig;

/// A configuration error.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("{0}")]
    Invalid(String),
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub positions: PositionsConfig,
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    #[serde(default)]
    pub scrape_configs: Vec<ScrapeConfig>,
    #[serde(default)]
    pub limits_config: LimitsConfig,
    #[serde(default)]
    pub target_config: TargetConfig,
    #[serde(default)]
    pub file_watch_config: FileWatchConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub http_listen_address: String,
    pub http_listen_port: u16,
    pub grpc_listen_address: String,
    pub grpc_listen_port: u16,
    pub log_level: String,
    pub disable: bool,
    pub register_instrumentation: bool,
    pub http_server_read_timeout: Option<GoDuration>,
    pub http_server_write_timeout: Option<GoDuration>,
    pub http_server_idle_timeout: Option<GoDuration>,
    pub graceful_shutdown_timeout: Option<GoDuration>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http_listen_address: String::new(),
            http_listen_port: 9080,
            grpc_listen_address: String::new(),
            grpc_listen_port: 9095,
            log_level: "info".into(),
            disable: false,
            register_instrumentation: true,
            http_server_read_timeout: None,
            http_server_write_timeout: None,
            http_server_idle_timeout: None,
            graceful_shutdown_timeout: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PositionsConfig {
    pub filename: String,
    pub sync_period: GoDuration,
    pub ignore_invalid_yaml: bool,
}

impl Default for PositionsConfig {
    fn default() -> Self {
        PositionsConfig {
            filename: "/var/log/positions.yaml".into(),
            sync_period: GoDuration(Duration::from_secs(10)),
            ignore_invalid_yaml: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub url: String,
    #[serde(default = "default_batchwait")]
    pub batchwait: GoDuration,
    #[serde(default = "default_batchsize")]
    pub batchsize: usize,
    #[serde(default)]
    pub backoff_config: BackoffConfig,
    #[serde(default)]
    pub tenant_id: String,
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub bearer_token_file: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout: GoDuration,
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub drop_rate_limited_batches: bool,
}

fn default_batchwait() -> GoDuration {
    GoDuration(Duration::from_secs(1))
}
fn default_batchsize() -> usize {
    1024 * 1024
}
fn default_timeout() -> GoDuration {
    GoDuration(Duration::from_secs(10))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffConfig {
    pub min_period: GoDuration,
    pub max_period: GoDuration,
    /// Attempts after the first; 0 retries forever.
    pub max_retries: u32,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            min_period: GoDuration(Duration::from_millis(500)),
            max_period: GoDuration(Duration::from_secs(300)),
            max_retries: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    pub job_name: String,
    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
    #[serde(default)]
    pub docker_sd_configs: Vec<DockerSdConfig>,
    #[serde(default)]
    pub relabel_configs: Vec<lookout_relabel::RelabelConfig>,
    #[serde(default, deserialize_with = "crate::stages::deserialize_stages")]
    pub pipeline_stages: Vec<StageConfig>,
    /// Promtail's `encoding` (only UTF-8 is supported; other values are rejected).
    #[serde(default)]
    pub encoding: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticConfig {
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSdConfig {
    pub host: String,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub host_networking_host: Option<String>,
    #[serde(default = "default_docker_refresh")]
    pub refresh_interval: GoDuration,
    #[serde(default)]
    pub filters: Vec<DockerFilter>,
}

fn default_docker_refresh() -> GoDuration {
    GoDuration(Duration::from_secs(60))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerFilter {
    pub name: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub readline_rate_enabled: bool,
    pub readline_rate: f64,
    pub readline_burst: u64,
    pub readline_rate_drop: bool,
    pub max_streams: usize,
    /// Longest line accepted, in bytes (0 = the agent's hard cap of 4 MiB).
    pub max_line_size: ByteSize,
    /// Truncate longer lines instead of dropping them.
    pub max_line_size_truncate: bool,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            readline_rate_enabled: false,
            readline_rate: 10000.0,
            readline_burst: 10000,
            readline_rate_drop: true,
            max_streams: 0,
            max_line_size: ByteSize(0),
            max_line_size_truncate: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetConfig {
    /// How often globs are re-evaluated.
    pub sync_period: GoDuration,
}

impl Default for TargetConfig {
    fn default() -> Self {
        TargetConfig {
            sync_period: GoDuration(Duration::from_secs(10)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileWatchConfig {
    pub min_poll_frequency: GoDuration,
    pub max_poll_frequency: GoDuration,
}

impl Default for FileWatchConfig {
    fn default() -> Self {
        FileWatchConfig {
            min_poll_frequency: GoDuration(Duration::from_millis(250)),
            max_poll_frequency: GoDuration(Duration::from_millis(250)),
        }
    }
}

impl AgentConfig {
    /// Reads and parses a file, expanding `${VAR}` from the environment and `vars`.
    pub fn load(path: &Path, vars: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, vars)
    }

    /// Parses YAML text, expanding `${VAR}` from the environment and `vars`.
    pub fn parse(text: &str, vars: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let expanded = expand_env(text, |name| {
            vars.get(name).cloned().or_else(|| std::env::var(name).ok())
        });
        let cfg: AgentConfig = serde_yaml_ng::from_str(&expanded)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for sc in &self.scrape_configs {
            if !names.insert(sc.job_name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "found multiple scrape configs with job name {:?}",
                    sc.job_name
                )));
            }
            if let Err((i, e)) = lookout_relabel::validate_all(&sc.relabel_configs) {
                return Err(ConfigError::Invalid(format!(
                    "scrape config {:?}: relabel_configs[{i}]: {e}",
                    sc.job_name
                )));
            }
            if let Some(enc) = &sc.encoding
                && !enc.eq_ignore_ascii_case("utf-8")
                && !enc.eq_ignore_ascii_case("utf8")
            {
                return Err(ConfigError::Invalid(format!(
                    "scrape config {:?}: encoding {enc:?} is not supported (only UTF-8)",
                    sc.job_name
                )));
            }
            for d in &sc.docker_sd_configs {
                if !d.host.starts_with("unix://") {
                    return Err(ConfigError::Invalid(format!(
                        "scrape config {:?}: docker_sd_configs host {:?}: only unix:// sockets are supported",
                        sc.job_name, d.host
                    )));
                }
            }
        }
        for c in &self.clients {
            if !(c.url.starts_with("http://") || c.url.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "client url {:?} must start with http:// or https://",
                    c.url
                )));
            }
            if c.basic_auth.is_some() && (c.bearer_token.is_some() || c.bearer_token_file.is_some())
            {
                return Err(ConfigError::Invalid(format!(
                    "client {:?}: at most one of basic_auth, bearer_token and bearer_token_file may be set",
                    c.url
                )));
            }
        }
        Ok(())
    }
}

/// Expands `${NAME}` and `${NAME:-default}`; `$$` is a literal `$`. Unknown names expand to "".
pub fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{')
            && let Some(end) = body.find('}')
        {
            let inner = &body[..end];
            let (name, default) = match inner.find(":-") {
                Some(d) => (&inner[..d], Some(&inner[d + 2..])),
                None => (inner, None),
            };
            match lookup(name) {
                Some(v) if !v.is_empty() || default.is_none() => out.push_str(&v),
                _ => out.push_str(default.unwrap_or("")),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A Go `time.Duration` string (`1.5s`, `500ms`, `1m30s`, `2h`), or a plain number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    pub fn parse(s: &str) -> Result<Duration, String> {
        let s = s.trim();
        if s == "0" {
            return Ok(Duration::ZERO);
        }
        if s.is_empty() {
            return Err("empty duration".into());
        }
        let mut total = 0f64;
        let mut rest = s;
        while !rest.is_empty() {
            let num_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| format!("missing unit in duration {s:?}"))?;
            if num_end == 0 {
                return Err(format!("invalid duration {s:?}"));
            }
            let n: f64 = rest[..num_end]
                .parse()
                .map_err(|_| format!("invalid duration {s:?}"))?;
            let unit_str = &rest[num_end..];
            let unit_end = unit_str
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(unit_str.len());
            let mult = match &unit_str[..unit_end] {
                "ns" => 1e-9,
                "us" | "µs" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                "d" => 86400.0,
                u => return Err(format!("unknown unit {u:?} in duration {s:?}")),
            };
            total += n * mult;
            rest = &unit_str[unit_end..];
        }
        if !total.is_finite() || total > 1e12 {
            return Err(format!("duration {s:?} out of range"));
        }
        Ok(Duration::from_secs_f64(total))
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_yaml_ng::Value::deserialize(d)?;
        match v {
            serde_yaml_ng::Value::String(s) => GoDuration::parse(&s)
                .map(GoDuration)
                .map_err(de::Error::custom),
            serde_yaml_ng::Value::Number(n) => n
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e12)
                .map(|f| GoDuration(Duration::from_secs_f64(f)))
                .ok_or_else(|| de::Error::custom(format!("invalid duration {n}"))),
            other => Err(de::Error::custom(format!(
                "expected a duration, got {other:?}"
            ))),
        }
    }
}

/// A byte size: a number, or a string like `256KB`, `1MiB`, `2mb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<u64, String> {
        let s = s.trim();
        let end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let n: f64 = s[..end]
            .parse()
            .map_err(|_| format!("invalid size {s:?}"))?;
        let mult: f64 = match s[end..].trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "k" | "kb" => 1e3,
            "kib" | "ki" => 1024.0,
            "m" | "mb" => 1e6,
            "mib" | "mi" => 1024.0 * 1024.0,
            "g" | "gb" => 1e9,
            "gib" | "gi" => 1024.0 * 1024.0 * 1024.0,
            u => return Err(format!("unknown unit {u:?} in size {s:?}")),
        };
        Ok((n * mult) as u64)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_yaml_ng::Value::deserialize(d)?;
        match v {
            serde_yaml_ng::Value::String(s) => {
                ByteSize::parse(&s).map(ByteSize).map_err(de::Error::custom)
            }
            serde_yaml_ng::Value::Number(n) => n
                .as_u64()
                .map(ByteSize)
                .ok_or_else(|| de::Error::custom(format!("invalid size {n}"))),
            other => Err(de::Error::custom(format!("expected a size, got {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"
server:
  http_listen_port: 9080
  grpc_listen_port: 0
positions:
  filename: /tmp/positions.yaml
clients:
  - url: http://loki:3100/loki/api/v1/push
scrape_configs:
  - job_name: docker
    docker_sd_configs:
      - host: unix:///var/run/docker.sock
        refresh_interval: 5s
    relabel_configs:
      - source_labels: ['__meta_docker_container_name']
        regex: '/(.*)'
        target_label: 'container'
      - source_labels: ['__meta_docker_container_label_com_docker_compose_service']
        target_label: 'compose_service'
    pipeline_stages:
      - docker: {}
"#;

    #[test]
    fn parses_seed_style_config() {
        let c = AgentConfig::parse(SEED, &BTreeMap::new()).unwrap();
        assert_eq!(c.server.http_listen_port, 9080);
        assert_eq!(c.clients[0].batchwait.0, Duration::from_secs(1));
        assert_eq!(c.clients[0].backoff_config.max_retries, 10);
        let sc = &c.scrape_configs[0];
        assert_eq!(
            sc.docker_sd_configs[0].refresh_interval.0,
            Duration::from_secs(5)
        );
        assert_eq!(sc.relabel_configs.len(), 2);
        assert_eq!(sc.pipeline_stages.len(), 1);
    }

    #[test]
    fn unknown_key_names_its_line() {
        let text = "server:\n  http_listen_port: 9080\npositions:\n  filenme: x\n";
        let e = AgentConfig::parse(text, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("filenme"), "{e}");
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn unknown_stage_is_an_error() {
        let text = "scrape_configs:\n  - job_name: a\n    pipeline_stages:\n      - dockr: {}\n";
        let e = AgentConfig::parse(text, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("dockr"), "{e}");
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn env_expansion() {
        let vars = BTreeMap::from([("A".to_string(), "x".to_string())]);
        let f = |n: &str| vars.get(n).cloned();
        assert_eq!(expand_env("p/${A}/q", f), "p/x/q");
        assert_eq!(expand_env("${NOPE:-d}/$$/${A:-z}", f), "d/$/x");
        assert_eq!(expand_env("cost $5", f), "cost $5");
        assert_eq!(expand_env("${unterminated", f), "${unterminated");
    }

    #[test]
    fn go_durations() {
        assert_eq!(
            GoDuration::parse("1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(GoDuration::parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            GoDuration::parse("250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert!(GoDuration::parse("5").is_err());
        assert!(GoDuration::parse("5x").is_err());
        assert!(GoDuration::parse("").is_err());
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(ByteSize::parse("256KB").unwrap(), 256_000);
        assert_eq!(ByteSize::parse("1MiB").unwrap(), 1 << 20);
        assert_eq!(ByteSize::parse("42").unwrap(), 42);
        assert!(ByteSize::parse("1 parsec").is_err());
    }

    #[test]
    fn rejects_tcp_docker_host_and_double_auth() {
        let t = "scrape_configs:\n  - job_name: a\n    docker_sd_configs:\n      - host: tcp://x:2375\n";
        assert!(AgentConfig::parse(t, &BTreeMap::new()).is_err());
        let t = "clients:\n  - url: http://x/\n    bearer_token: a\n    basic_auth: {username: u, password: p}\n";
        assert!(AgentConfig::parse(t, &BTreeMap::new()).is_err());
    }
}
