//! Promtail pipeline stages. A [`Pipeline`] is built from `pipeline_stages` and runs each
//! entry through the stages in order; a stage may change the line, labels, timestamp,
//! extracted map and structured metadata, drop the entry (with a reason that is counted), or
//! hold it (`multiline`) until its block is complete.
//!
//! Supported: docker, cri, json, logfmt, regex, labels, structured_metadata, timestamp,
//! output, drop, match (with nested stages), multiline, static_labels, labeldrop,
//! labelallow, template, replace, limit, decolorize, pack, metrics.
//! The `json` stage accepts the JMESPath subset that Promtail configurations use in practice:
//! dotted fields, quoted fields (`"a.b"`) and array indexes (`a[0]`).
//! Templates (`template`, `replace`) support `{{ .Name }}`, `{{ .Value }}`, `{{ .Entry }}` and
//! the functions `ToUpper`, `ToLower`, `TrimSpace`, `Trim`, `TrimPrefix`, `TrimSuffix`,
//! `Replace` and `default`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use lookout_storage::{MatchOp, Matcher};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use serde::Deserialize;
use serde::de::Deserializer;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::config::GoDuration;
use crate::timefmt::{Location, TimeFormat};

/// One log entry as it moves through the pipeline.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub labels: BTreeMap<String, String>,
    pub extracted: HashMap<String, String>,
    pub line: String,
    /// Unix nanoseconds.
    pub ts: i64,
    pub metadata: Vec<(String, String)>,
    /// End offset of the last source line in this entry (for positions).
    pub pos: u64,
}

/// A stage configuration as written in YAML (`- docker: {}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageConfig {
    Docker(Option<Empty>),
    Cri(Option<CriConfig>),
    Json(JsonConfig),
    Logfmt(LogfmtConfig),
    Regex(RegexConfig),
    Labels(BTreeMap<String, Option<String>>),
    StructuredMetadata(BTreeMap<String, Option<String>>),
    Timestamp(TimestampConfig),
    Output(OutputConfig),
    Drop(DropConfig),
    Match(MatchConfig),
    Multiline(MultilineConfig),
    StaticLabels(BTreeMap<String, Option<String>>),
    Labeldrop(Vec<String>),
    Labelallow(Vec<String>),
    Template(TemplateConfig),
    Replace(ReplaceConfig),
    Limit(LimitConfig),
    Decolorize(Option<Empty>),
    Pack(PackConfig),
    Metrics(BTreeMap<String, MetricConfig>),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// Deserializes `pipeline_stages` written as Promtail writes them: a list of single-key maps
/// (`- docker: {}`), keeping line numbers in errors.
pub fn deserialize_stages<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<StageConfig>, D::Error> {
    serde_yaml_ng::with::singleton_map_recursive::deserialize(d)
}

/// Parses a YAML list of stages (as under `pipeline_stages:`).
pub fn parse_stages(yaml: &str) -> Result<Vec<StageConfig>, serde_yaml_ng::Error> {
    let d = serde_yaml_ng::Deserializer::from_str(yaml);
    deserialize_stages(d)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CriConfig {
    pub max_partial_lines: usize,
    pub max_partial_line_size: usize,
    pub max_partial_line_size_truncate: bool,
}

impl Default for CriConfig {
    fn default() -> Self {
        CriConfig {
            max_partial_lines: 100,
            max_partial_line_size: 0,
            max_partial_line_size_truncate: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonConfig {
    pub expressions: BTreeMap<String, Option<String>>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub drop_malformed: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogfmtConfig {
    pub mapping: BTreeMap<String, Option<String>>,
    #[serde(default)]
    pub source: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexConfig {
    pub expression: String,
    #[serde(default)]
    pub source: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampConfig {
    pub source: String,
    pub format: String,
    #[serde(default)]
    pub fallback_formats: Vec<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub action_on_failure: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    pub source: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DropConfig {
    #[serde(deserialize_with = "string_or_list")]
    pub source: Vec<String>,
    pub separator: Option<String>,
    pub expression: Option<String>,
    pub value: Option<String>,
    pub older_than: Option<GoDuration>,
    pub longer_than: Option<crate::config::ByteSize>,
    pub drop_counter_reason: Option<String>,
}

fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    pub selector: String,
    #[serde(default)]
    pub pipeline_name: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
    /// Nested stages (deserialized through [`deserialize_stages`] of the enclosing list).
    #[serde(default)]
    pub stages: Vec<StageConfig>,
    #[serde(default)]
    pub drop_counter_reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    pub firstline: String,
    #[serde(default)]
    pub max_wait_time: Option<GoDuration>,
    #[serde(default)]
    pub max_lines: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    pub source: String,
    pub template: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceConfig {
    pub expression: String,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub replace: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    pub rate: f64,
    pub burst: u64,
    #[serde(default)]
    pub drop: bool,
    #[serde(default)]
    pub by_label_name: Option<String>,
    #[serde(default)]
    pub max_distinct_labels: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PackConfig {
    pub labels: Vec<String>,
    pub ingest_timestamp: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricConfig {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub max_idle_duration: Option<GoDuration>,
    #[serde(default)]
    pub config: MetricAction,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricAction {
    pub value: Option<String>,
    pub action: Option<String>,
    pub match_all: Option<bool>,
    pub count_entry_bytes: Option<bool>,
    pub buckets: Option<Vec<f64>>,
}

/// A pipeline that could not be built.
#[derive(Debug, thiserror::Error)]
#[error("pipeline stage {index} ({stage}): {message}")]
pub struct StageError {
    pub index: usize,
    pub stage: &'static str,
    pub message: String,
}

/// Labels of a custom metric sample.
pub type LabelPairs = Vec<(String, String)>;
/// A custom counter family.
pub type CounterFamily = Family<LabelPairs, Counter<f64, AtomicU64>>;
/// A custom gauge family.
pub type GaugeFamily = Family<LabelPairs, Gauge<f64, AtomicU64>>;
/// A custom histogram family.
pub type HistogramFamily = Family<LabelPairs, Histogram, HistogramMaker>;

/// One family created by a `metrics` stage.
#[derive(Clone)]
pub enum CustomFamily {
    Counter(CounterFamily),
    Gauge(GaugeFamily),
    Histogram(HistogramFamily),
}

/// The `metrics` stages' families by full name, with their help text; shared by every
/// pipeline built from the same configuration and registered on the agent's /metrics.
#[derive(Clone, Default)]
pub struct CustomMetrics {
    pub families: Arc<Mutex<BTreeMap<String, (String, CustomFamily)>>>,
}

impl std::fmt::Debug for CustomMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomMetrics").finish_non_exhaustive()
    }
}

/// Builds histograms with a stage's buckets.
#[derive(Clone)]
pub struct HistogramMaker(pub Vec<f64>);

impl prometheus_client::metrics::family::MetricConstructor<Histogram> for HistogramMaker {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// What a stage did with an entry.
enum Outcome {
    Continue,
    Drop(String),
    /// The entry was absorbed; these (possibly none) continue from the next stage instead.
    Emit(Vec<Entry>),
}

enum Stage {
    Docker,
    Cri {
        cfg: CriConfig,
        partial: HashMap<String, Entry>,
    },
    Json {
        exprs: Vec<(String, Vec<PathSeg>)>,
        /// Top-level keys the expressions start with (other members are skipped unparsed).
        tops: Vec<String>,
        source: Option<String>,
        drop_malformed: bool,
    },
    Logfmt {
        mapping: Vec<(String, String)>,
        source: Option<String>,
    },
    Regex {
        re: regex::Regex,
        source: Option<String>,
    },
    Labels(Vec<(String, String)>),
    Metadata(Vec<(String, String)>),
    Timestamp {
        source: String,
        formats: Vec<TimeFormat>,
        loc: Location,
        skip_on_failure: bool,
    },
    Output(String),
    Drop {
        source: Vec<String>,
        separator: String,
        expression: Option<regex::Regex>,
        value: Option<String>,
        older_than: Option<Duration>,
        longer_than: Option<usize>,
        reason: String,
    },
    Match {
        matchers: Vec<Matcher>,
        filters: Vec<LineFilter>,
        drop: bool,
        reason: String,
        stages: Box<Pipeline>,
    },
    Multiline {
        first: regex::Regex,
        max_wait: Duration,
        max_lines: usize,
        buf: Option<(Entry, usize, Instant)>,
    },
    StaticLabels(Vec<(String, String)>),
    LabelDrop(Vec<String>),
    LabelAllow(Vec<String>),
    Template {
        source: String,
        tpl: Template,
    },
    Replace {
        re: regex::Regex,
        source: Option<String>,
        tpl: Template,
    },
    Limit {
        rate: f64,
        burst: f64,
        drop: bool,
        by_label: Option<String>,
        max_distinct: usize,
        buckets: HashMap<String, (f64, Instant)>,
    },
    Decolorize,
    Pack {
        labels: Vec<String>,
        ingest_ts: bool,
    },
    Metrics(Vec<MetricStage>),
}

struct MetricStage {
    kind: MetricKind,
    source: String,
    value: Option<String>,
    action: String,
    match_all: bool,
    count_bytes: bool,
}

enum MetricKind {
    Counter(CounterFamily),
    Gauge(GaugeFamily),
    Histogram(HistogramFamily),
}

/// A `|= "x"` style line filter in a match selector.
#[derive(Debug, Clone)]
enum LineFilter {
    Contains(String),
    NotContains(String),
    Regex(regex::Regex),
    NotRegex(regex::Regex),
}

/// A compiled pipeline.
pub struct Pipeline {
    stages: Vec<Stage>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("stages", &self.stages.len())
            .finish()
    }
}

fn err(index: usize, stage: &'static str, message: impl Into<String>) -> StageError {
    StageError {
        index,
        stage,
        message: message.into(),
    }
}

fn name_or(key: &str, v: &Option<String>) -> String {
    match v {
        Some(s) if !s.is_empty() => s.clone(),
        _ => key.to_string(),
    }
}

impl Pipeline {
    /// Compiles stage configurations; `metrics` receives the `metrics` stage's families.
    pub fn new(configs: &[StageConfig], metrics: &mut CustomMetrics) -> Result<Self, StageError> {
        let mut stages = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            stages.push(Self::compile(i, c, metrics)?);
        }
        Ok(Pipeline { stages })
    }

    fn compile(
        i: usize,
        c: &StageConfig,
        metrics: &mut CustomMetrics,
    ) -> Result<Stage, StageError> {
        let re = |stage: &'static str, s: &str| {
            regex::Regex::new(s).map_err(|e| err(i, stage, format!("invalid expression: {e}")))
        };
        Ok(match c {
            StageConfig::Docker(_) => Stage::Docker,
            StageConfig::Cri(cfg) => Stage::Cri {
                cfg: cfg.clone().unwrap_or_default(),
                partial: HashMap::new(),
            },
            StageConfig::Json(j) => {
                if j.expressions.is_empty() {
                    return Err(err(i, "json", "expressions must not be empty"));
                }
                let mut exprs = Vec::new();
                for (k, v) in &j.expressions {
                    let expr = name_or(k, v);
                    let path = parse_json_path(&expr)
                        .map_err(|m| err(i, "json", format!("expression {expr:?}: {m}")))?;
                    exprs.push((k.clone(), path));
                }
                let mut tops: Vec<String> = exprs
                    .iter()
                    .filter_map(|(_, p)| match p.first() {
                        Some(PathSeg::Field(f)) => Some(f.clone()),
                        _ => None,
                    })
                    .collect();
                tops.sort();
                tops.dedup();
                Stage::Json {
                    exprs,
                    tops,
                    source: j.source.clone(),
                    drop_malformed: j.drop_malformed,
                }
            }
            StageConfig::Logfmt(l) => {
                if l.mapping.is_empty() {
                    return Err(err(i, "logfmt", "mapping must not be empty"));
                }
                Stage::Logfmt {
                    mapping: l
                        .mapping
                        .iter()
                        .map(|(k, v)| (k.clone(), name_or(k, v)))
                        .collect(),
                    source: l.source.clone(),
                }
            }
            StageConfig::Regex(r) => {
                let compiled = re("regex", &r.expression)?;
                if compiled.capture_names().flatten().next().is_none() {
                    return Err(err(
                        i,
                        "regex",
                        "expression must contain at least one named capture group",
                    ));
                }
                Stage::Regex {
                    re: compiled,
                    source: r.source.clone(),
                }
            }
            StageConfig::Labels(m) => Stage::Labels(pairs(m, i, "labels")?),
            StageConfig::StructuredMetadata(m) => {
                Stage::Metadata(pairs(m, i, "structured_metadata")?)
            }
            StageConfig::Timestamp(t) => {
                let mut formats =
                    vec![TimeFormat::parse(&t.format).map_err(|m| err(i, "timestamp", m))?];
                for f in &t.fallback_formats {
                    formats.push(TimeFormat::parse(f).map_err(|m| err(i, "timestamp", m))?);
                }
                let loc = Location::parse(t.location.as_deref().unwrap_or("UTC"))
                    .map_err(|m| err(i, "timestamp", m))?;
                let skip_on_failure = match t.action_on_failure.as_deref() {
                    None | Some("fudge") => false,
                    Some("skip") => true,
                    Some(o) => {
                        return Err(err(
                            i,
                            "timestamp",
                            format!("invalid action_on_failure {o:?}: expected fudge or skip"),
                        ));
                    }
                };
                Stage::Timestamp {
                    source: t.source.clone(),
                    formats,
                    loc,
                    skip_on_failure,
                }
            }
            StageConfig::Output(o) => Stage::Output(o.source.clone()),
            StageConfig::Drop(d) => {
                if d.source.is_empty()
                    && d.expression.is_none()
                    && d.older_than.is_none()
                    && d.longer_than.is_none()
                {
                    return Err(err(
                        i,
                        "drop",
                        "needs at least one of source, expression, older_than, longer_than",
                    ));
                }
                if d.value.is_some() && d.expression.is_some() {
                    return Err(err(
                        i,
                        "drop",
                        "value and expression are mutually exclusive",
                    ));
                }
                if d.value.is_some() && d.source.is_empty() {
                    return Err(err(i, "drop", "value requires source"));
                }
                Stage::Drop {
                    source: d.source.clone(),
                    separator: d.separator.clone().unwrap_or_else(|| ";".into()),
                    expression: d.expression.as_deref().map(|e| re("drop", e)).transpose()?,
                    value: d.value.clone(),
                    older_than: d.older_than.map(|g| g.0),
                    longer_than: d.longer_than.map(|b| b.0 as usize),
                    reason: d
                        .drop_counter_reason
                        .clone()
                        .unwrap_or_else(|| "drop_stage".into()),
                }
            }
            StageConfig::Match(m) => {
                let (matchers, filters) =
                    parse_selector(&m.selector).map_err(|e| err(i, "match", e))?;
                let drop = match m.action.as_deref() {
                    None | Some("keep") => false,
                    Some("drop") => true,
                    Some(o) => return Err(err(i, "match", format!("invalid action {o:?}"))),
                };
                if !drop && m.stages.is_empty() {
                    return Err(err(i, "match", "action keep needs stages"));
                }
                Stage::Match {
                    matchers,
                    filters,
                    drop,
                    reason: m
                        .drop_counter_reason
                        .clone()
                        .unwrap_or_else(|| "match_stage".into()),
                    stages: Box::new(Pipeline::new(&m.stages, metrics)?),
                }
            }
            StageConfig::Multiline(m) => Stage::Multiline {
                first: re("multiline", &m.firstline)?,
                max_wait: m
                    .max_wait_time
                    .map(|g| g.0)
                    .unwrap_or(Duration::from_secs(3)),
                max_lines: m.max_lines.unwrap_or(128).max(1),
                buf: None,
            },
            StageConfig::StaticLabels(m) => Stage::StaticLabels(
                m.iter()
                    .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
                    .collect(),
            ),
            StageConfig::Labeldrop(v) => Stage::LabelDrop(v.clone()),
            StageConfig::Labelallow(v) => Stage::LabelAllow(v.clone()),
            StageConfig::Template(t) => Stage::Template {
                source: t.source.clone(),
                tpl: Template::parse(&t.template).map_err(|m| err(i, "template", m))?,
            },
            StageConfig::Replace(r) => Stage::Replace {
                re: re("replace", &r.expression)?,
                source: r.source.clone(),
                tpl: Template::parse(&r.replace).map_err(|m| err(i, "replace", m))?,
            },
            StageConfig::Limit(l) => {
                if l.rate.is_nan() || l.rate <= 0.0 {
                    return Err(err(i, "limit", "rate must be positive"));
                }
                Stage::Limit {
                    rate: l.rate,
                    burst: l.burst.max(1) as f64,
                    drop: l.drop,
                    by_label: l.by_label_name.clone(),
                    max_distinct: l.max_distinct_labels.unwrap_or(10_000),
                    buckets: HashMap::new(),
                }
            }
            StageConfig::Decolorize(_) => Stage::Decolorize,
            StageConfig::Pack(p) => Stage::Pack {
                labels: p.labels.clone(),
                ingest_ts: p.ingest_timestamp.unwrap_or(true),
            },
            StageConfig::Metrics(m) => {
                let mut out = Vec::new();
                for (name, mc) in m {
                    let full = format!(
                        "{}{}",
                        mc.prefix.as_deref().unwrap_or("promtail_custom_"),
                        name
                    );
                    let action = mc.config.action.clone().unwrap_or_default();
                    let kind_name = mc.kind.to_ascii_lowercase();
                    match kind_name.as_str() {
                        "counter" if !matches!(action.as_str(), "inc" | "add") => {
                            return Err(err(
                                i,
                                "metrics",
                                format!("counter {name}: action must be inc or add"),
                            ));
                        }
                        "gauge"
                            if !matches!(
                                action.as_str(),
                                "set" | "inc" | "dec" | "add" | "sub"
                            ) =>
                        {
                            return Err(err(
                                i,
                                "metrics",
                                format!("gauge {name}: action must be set, inc, dec, add or sub"),
                            ));
                        }
                        "counter" | "gauge" | "histogram" => {}
                        o => {
                            return Err(err(
                                i,
                                "metrics",
                                format!("{name}: unknown metric type {o:?}"),
                            ));
                        }
                    }
                    let help = mc.description.clone().unwrap_or_default();
                    let mut fams = metrics.families.lock();
                    let (_, fam) = fams.entry(full.clone()).or_insert_with(|| {
                        let f = match kind_name.as_str() {
                            "counter" => CustomFamily::Counter(Family::default()),
                            "gauge" => CustomFamily::Gauge(Family::default()),
                            _ => CustomFamily::Histogram(Family::new_with_constructor(
                                HistogramMaker(mc.config.buckets.clone().unwrap_or_else(|| {
                                    vec![
                                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                                        10.0,
                                    ]
                                })),
                            )),
                        };
                        (help, f)
                    });
                    let kind = match (kind_name.as_str(), fam) {
                        ("counter", CustomFamily::Counter(f)) => MetricKind::Counter(f.clone()),
                        ("gauge", CustomFamily::Gauge(f)) => MetricKind::Gauge(f.clone()),
                        ("histogram", CustomFamily::Histogram(f)) => {
                            MetricKind::Histogram(f.clone())
                        }
                        _ => {
                            return Err(err(
                                i,
                                "metrics",
                                format!("{full} is defined twice with different types"),
                            ));
                        }
                    };
                    drop(fams);
                    out.push(MetricStage {
                        kind,
                        source: mc.source.clone().unwrap_or_else(|| name.clone()),
                        value: mc.config.value.clone(),
                        action,
                        match_all: mc.config.match_all.unwrap_or(false),
                        count_bytes: mc.config.count_entry_bytes.unwrap_or(false),
                    });
                }
                Stage::Metrics(out)
            }
        })
    }

    /// True when a stage holds lines back (multiline block, CRI partial line).
    pub fn has_pending(&self) -> bool {
        self.stages.iter().any(|s| match s {
            Stage::Multiline { buf, .. } => buf.is_some(),
            Stage::Cri { partial, .. } => !partial.is_empty(),
            Stage::Match { stages, .. } => stages.has_pending(),
            _ => false,
        })
    }

    /// Runs one entry; kept entries go to `out`, drops are reported with their reason.
    pub fn process(
        &mut self,
        entry: Entry,
        metrics: &CustomMetrics,
        out: &mut Vec<Entry>,
        dropped: &mut dyn FnMut(&str, &Entry),
    ) {
        self.run_from(0, entry, metrics, out, dropped);
    }

    /// Emits blocks held longer than their `max_wait_time` (or all of them when `all`).
    pub fn flush(
        &mut self,
        now: Instant,
        all: bool,
        metrics: &CustomMetrics,
        out: &mut Vec<Entry>,
        dropped: &mut dyn FnMut(&str, &Entry),
    ) {
        for idx in 0..self.stages.len() {
            let take = match &mut self.stages[idx] {
                Stage::Multiline { buf, max_wait, .. } => match buf {
                    Some((_, _, since)) if all || now.duration_since(*since) >= *max_wait => {
                        buf.take().map(|(e, _, _)| vec![e])
                    }
                    _ => None,
                },
                Stage::Cri { partial, .. } if all && !partial.is_empty() => {
                    Some(partial.drain().map(|(_, e)| e).collect())
                }
                Stage::Match { stages, .. } => {
                    let mut inner = Vec::new();
                    stages.flush(now, all, metrics, &mut inner, dropped);
                    (!inner.is_empty()).then_some(inner)
                }
                _ => None,
            };
            if let Some(entries) = take {
                for e in entries {
                    self.run_from(idx + 1, e, metrics, out, dropped);
                }
            }
        }
    }

    fn run_from(
        &mut self,
        start: usize,
        mut entry: Entry,
        metrics: &CustomMetrics,
        out: &mut Vec<Entry>,
        dropped: &mut dyn FnMut(&str, &Entry),
    ) {
        for idx in start..self.stages.len() {
            match apply(&mut self.stages[idx], &mut entry, metrics, dropped) {
                Outcome::Continue => {}
                Outcome::Drop(reason) => {
                    dropped(&reason, &entry);
                    return;
                }
                Outcome::Emit(entries) => {
                    for e in entries {
                        self.run_from(idx + 1, e, metrics, out, dropped);
                    }
                    return;
                }
            }
        }
        out.push(entry);
    }
}

fn pairs(
    m: &BTreeMap<String, Option<String>>,
    i: usize,
    stage: &'static str,
) -> Result<Vec<(String, String)>, StageError> {
    let mut v = Vec::new();
    for (k, src) in m {
        if k.is_empty() {
            return Err(err(i, stage, "empty label name"));
        }
        v.push((k.clone(), name_or(k, src)));
    }
    Ok(v)
}

fn source_value<'a>(e: &'a Entry, source: &Option<String>) -> Option<&'a str> {
    match source {
        None => Some(e.line.as_str()),
        Some(s) => e.extracted.get(s).map(String::as_str),
    }
}

fn apply(
    stage: &mut Stage,
    e: &mut Entry,
    metrics: &CustomMetrics,
    dropped: &mut dyn FnMut(&str, &Entry),
) -> Outcome {
    match stage {
        Stage::Docker => {
            #[derive(Deserialize)]
            struct DockerLine<'a> {
                #[serde(borrow)]
                log: std::borrow::Cow<'a, str>,
                #[serde(borrow, default)]
                stream: Option<std::borrow::Cow<'a, str>>,
                #[serde(borrow, default)]
                time: Option<std::borrow::Cow<'a, str>>,
            }
            let Ok(d) = serde_json::from_str::<DockerLine>(&e.line) else {
                return Outcome::Continue;
            };
            let mut log = d.log.into_owned();
            if log.ends_with('\n') {
                log.pop();
            }
            if log.ends_with('\r') {
                log.pop();
            }
            if let Some(s) = &d.stream {
                e.labels.insert("stream".into(), s.to_string());
                e.extracted.insert("stream".into(), s.to_string());
            }
            if let Some(t) = &d.time {
                if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t)
                    && let Some(ns) = dt.timestamp_nanos_opt()
                {
                    e.ts = ns;
                }
                e.extracted.insert("time".into(), t.to_string());
            }
            e.extracted.insert("output".into(), log.clone());
            e.line = log;
            Outcome::Continue
        }
        Stage::Cri { cfg, partial } => {
            let mut it = e.line.splitn(4, ' ');
            let (Some(time), Some(stream), Some(flags)) = (it.next(), it.next(), it.next()) else {
                return Outcome::Continue;
            };
            let content = it.next().unwrap_or("").to_string();
            let (time, stream, flags) = (time.to_string(), stream.to_string(), flags.to_string());
            if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(&time)
                && let Some(ns) = dt.timestamp_nanos_opt()
            {
                e.ts = ns;
            }
            e.labels.insert("stream".into(), stream.clone());
            e.extracted.insert("stream".into(), stream.clone());
            e.extracted.insert("time".into(), time);
            e.extracted.insert("flags".into(), flags.clone());
            e.extracted.insert("content".into(), content.clone());
            let prior = partial.remove(&stream);
            let mut joined = match prior {
                Some(mut p) => {
                    p.line.push_str(&content);
                    p.pos = e.pos;
                    p
                }
                None => {
                    e.line = content;
                    std::mem::take(e)
                }
            };
            if cfg.max_partial_line_size > 0 && joined.line.len() > cfg.max_partial_line_size {
                let mut cut = cfg.max_partial_line_size;
                while !joined.line.is_char_boundary(cut) {
                    cut -= 1;
                }
                joined.line.truncate(cut);
            }
            if flags.starts_with('P') {
                if partial.len() >= cfg.max_partial_lines.max(1) {
                    let mut flushed: Vec<Entry> = partial.drain().map(|(_, v)| v).collect();
                    flushed.push(joined);
                    return Outcome::Emit(flushed);
                }
                partial.insert(stream, joined);
                Outcome::Emit(Vec::new())
            } else {
                Outcome::Emit(vec![joined])
            }
        }
        Stage::Json {
            exprs,
            tops,
            source,
            drop_malformed,
        } => {
            let Some(text) = source_value(e, source) else {
                return Outcome::Continue;
            };
            let v = match parse_wanted(text, tops) {
                Ok(v) => v,
                Err(_) if *drop_malformed => return Outcome::Drop("json_malformed".into()),
                Err(_) => return Outcome::Continue,
            };
            let mut found = Vec::with_capacity(exprs.len());
            for (name, path) in exprs.iter() {
                if let Some(val) = lookup_json(&v, path) {
                    let s = match val {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => continue,
                        other => other.to_string(),
                    };
                    found.push((name.clone(), s));
                }
            }
            e.extracted.extend(found);
            Outcome::Continue
        }
        Stage::Logfmt { mapping, source } => {
            let Some(text) = source_value(e, source) else {
                return Outcome::Continue;
            };
            let kv = parse_logfmt(text);
            for (name, key) in mapping.iter() {
                if let Some((_, v)) = kv.iter().find(|(k, _)| k == key) {
                    e.extracted.insert(name.clone(), v.clone());
                }
            }
            Outcome::Continue
        }
        Stage::Regex { re, source } => {
            let Some(text) = source_value(e, source) else {
                return Outcome::Continue;
            };
            let mut found = Vec::new();
            if let Some(caps) = re.captures(text) {
                for name in re.capture_names().flatten() {
                    if let Some(m) = caps.name(name) {
                        found.push((name.to_string(), m.as_str().to_string()));
                    }
                }
            }
            e.extracted.extend(found);
            Outcome::Continue
        }
        Stage::Labels(m) => {
            for (label, src) in m.iter() {
                if let Some(v) = e.extracted.get(src)
                    && !v.is_empty()
                {
                    e.labels.insert(label.clone(), v.clone());
                }
            }
            Outcome::Continue
        }
        Stage::Metadata(m) => {
            for (name, src) in m.iter() {
                if let Some(v) = e.extracted.get(src).or_else(|| e.labels.get(src)) {
                    let v = v.clone();
                    e.metadata.push((name.clone(), v));
                }
            }
            Outcome::Continue
        }
        Stage::Timestamp {
            source,
            formats,
            loc,
            skip_on_failure,
        } => {
            let Some(v) = e.extracted.get(source.as_str()) else {
                return Outcome::Continue;
            };
            match formats.iter().find_map(|f| f.parse_time(v, *loc)) {
                Some(ns) => e.ts = ns,
                None if *skip_on_failure => {}
                None => {
                    // fudge: keep the read time, nudged so entries stay ordered.
                    e.ts += 1;
                }
            }
            Outcome::Continue
        }
        Stage::Output(src) => {
            if let Some(v) = e.extracted.get(src.as_str()) {
                e.line = v.clone();
            }
            Outcome::Continue
        }
        Stage::Drop {
            source,
            separator,
            expression,
            value,
            older_than,
            longer_than,
            reason,
        } => {
            // Every configured condition must hold for the entry to be dropped.
            if let Some(max) = longer_than
                && e.line.len() <= *max
            {
                return Outcome::Continue;
            }
            if let Some(age) = older_than {
                let now = now_ns();
                if e.ts >= now - age.as_nanos() as i64 {
                    return Outcome::Continue;
                }
            }
            if !source.is_empty() {
                let mut vals = Vec::with_capacity(source.len());
                for s in source.iter() {
                    match e.extracted.get(s) {
                        Some(v) => vals.push(v.as_str()),
                        None => return Outcome::Continue,
                    }
                }
                let joined = vals.join(separator);
                if let Some(v) = value
                    && &joined != v
                {
                    return Outcome::Continue;
                }
                if let Some(re) = expression
                    && !re.is_match(&joined)
                {
                    return Outcome::Continue;
                }
            } else if let Some(re) = expression
                && !re.is_match(&e.line)
            {
                return Outcome::Continue;
            }
            Outcome::Drop(reason.clone())
        }
        Stage::Match {
            matchers,
            filters,
            drop,
            reason,
            stages,
        } => {
            let labels_ok = matchers
                .iter()
                .all(|m| m.matches(e.labels.get(&m.name).map(String::as_str).unwrap_or("")));
            let ok = labels_ok
                && filters.iter().all(|f| match f {
                    LineFilter::Contains(s) => e.line.contains(s.as_str()),
                    LineFilter::NotContains(s) => !e.line.contains(s.as_str()),
                    LineFilter::Regex(r) => r.is_match(&e.line),
                    LineFilter::NotRegex(r) => !r.is_match(&e.line),
                });
            if !ok {
                return Outcome::Continue;
            }
            if *drop {
                return Outcome::Drop(reason.clone());
            }
            let mut inner = Vec::new();
            stages.process(std::mem::take(e), metrics, &mut inner, dropped);
            Outcome::Emit(inner)
        }
        Stage::Multiline {
            first,
            max_lines,
            buf,
            ..
        } => {
            let is_first = first.is_match(&e.line);
            match buf {
                Some((b, n, _)) if !is_first && *n < *max_lines => {
                    b.line.push('\n');
                    b.line.push_str(&e.line);
                    b.pos = e.pos;
                    *n += 1;
                    Outcome::Emit(Vec::new())
                }
                _ => {
                    let prev = buf.take().map(|(b, _, _)| b);
                    *buf = Some((std::mem::take(e), 1, Instant::now()));
                    Outcome::Emit(prev.into_iter().collect())
                }
            }
        }
        Stage::StaticLabels(m) => {
            for (k, v) in m.iter() {
                e.labels.insert(k.clone(), v.clone());
            }
            Outcome::Continue
        }
        Stage::LabelDrop(names) => {
            for n in names.iter() {
                e.labels.remove(n);
            }
            Outcome::Continue
        }
        Stage::LabelAllow(names) => {
            e.labels.retain(|k, _| names.iter().any(|n| n == k));
            Outcome::Continue
        }
        Stage::Template { source, tpl } => {
            let value = e.extracted.get(source.as_str()).cloned();
            let rendered = tpl.render(value.as_deref().unwrap_or(""), e);
            e.extracted.insert(source.clone(), rendered);
            Outcome::Continue
        }
        Stage::Replace { re, source, tpl } => {
            let Some(text) = source_value(e, source).map(str::to_string) else {
                return Outcome::Continue;
            };
            let mut out = String::with_capacity(text.len());
            let mut last = 0;
            let mut changed = false;
            for caps in re.captures_iter(&text) {
                let Some(whole) = caps.get(0) else { continue };
                out.push_str(&text[last..whole.start()]);
                // Each capture group is replaced by the template rendered with its value.
                let mut g_last = whole.start();
                let mut any_group = false;
                for g in caps.iter().skip(1).flatten() {
                    any_group = true;
                    out.push_str(&text[g_last..g.start()]);
                    out.push_str(&tpl.render(g.as_str(), e));
                    g_last = g.end();
                }
                if !any_group {
                    out.push_str(&tpl.render(whole.as_str(), e));
                    g_last = whole.end();
                }
                out.push_str(&text[g_last..whole.end()]);
                last = whole.end();
                changed = true;
            }
            if changed {
                out.push_str(&text[last..]);
                match source {
                    None => e.line = out,
                    Some(s) => {
                        e.extracted.insert(s.clone(), out);
                    }
                }
            }
            Outcome::Continue
        }
        Stage::Limit {
            rate,
            burst,
            drop,
            by_label,
            max_distinct,
            buckets,
        } => {
            let key = match by_label {
                Some(l) => match e.labels.get(l) {
                    Some(v) => v.clone(),
                    None => return Outcome::Continue,
                },
                None => String::new(),
            };
            if !buckets.contains_key(&key) && buckets.len() >= *max_distinct {
                buckets.clear();
            }
            let now = Instant::now();
            let (tokens, last) = buckets.entry(key).or_insert((*burst, now));
            *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * *rate).min(*burst);
            *last = now;
            if *tokens >= 1.0 {
                *tokens -= 1.0;
                Outcome::Continue
            } else if *drop {
                Outcome::Drop("ratelimit_drop_stage".into())
            } else {
                // Wait for the next token: this slows the reader, as Promtail does.
                let wait = (1.0 - *tokens) / *rate;
                std::thread::sleep(Duration::from_secs_f64(wait.min(10.0)));
                *tokens = 0.0;
                *last = Instant::now();
                Outcome::Continue
            }
        }
        Stage::Decolorize => {
            if e.line.contains('\u{1b}') {
                e.line = strip_ansi(&e.line);
            }
            Outcome::Continue
        }
        Stage::Pack { labels, ingest_ts } => {
            let mut obj = serde_json::Map::new();
            for l in labels.iter() {
                if let Some(v) = e.labels.remove(l).or_else(|| e.extracted.get(l).cloned()) {
                    obj.insert(l.clone(), serde_json::Value::String(v));
                }
            }
            obj.insert(
                "_entry".into(),
                serde_json::Value::String(std::mem::take(&mut e.line)),
            );
            e.line = serde_json::Value::Object(obj).to_string();
            if *ingest_ts {
                e.ts = now_ns();
            }
            Outcome::Continue
        }
        Stage::Metrics(ms) => {
            let labels: Vec<(String, String)> = e
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for m in ms.iter() {
                let src = if m.match_all {
                    Some(e.line.as_str())
                } else {
                    e.extracted.get(&m.source).map(String::as_str)
                };
                let Some(src) = src else { continue };
                if let Some(want) = &m.value
                    && src != want
                {
                    continue;
                }
                let num = || src.trim().parse::<f64>().ok();
                match &m.kind {
                    MetricKind::Counter(fam) => {
                        let c = fam.get_or_create(&labels);
                        match m.action.as_str() {
                            "inc" if m.count_bytes => {
                                c.inc_by(e.line.len() as f64);
                            }
                            "inc" => {
                                c.inc();
                            }
                            _ => {
                                if let Some(v) = num().filter(|v| *v >= 0.0) {
                                    c.inc_by(v);
                                }
                            }
                        }
                    }
                    MetricKind::Gauge(fam) => {
                        let g = fam.get_or_create(&labels);
                        match m.action.as_str() {
                            "inc" => {
                                g.inc_by(1.0);
                            }
                            "dec" => {
                                g.dec_by(1.0);
                            }
                            act => {
                                if let Some(v) = num() {
                                    match act {
                                        "set" => {
                                            g.set(v);
                                        }
                                        "add" => {
                                            g.inc_by(v);
                                        }
                                        _ => {
                                            g.dec_by(v);
                                        }
                                    }
                                }
                            }
                        }
                    }
                    MetricKind::Histogram(fam) => {
                        if let Some(v) = num() {
                            fam.get_or_create(&labels).observe(v);
                        }
                    }
                }
            }
            let _ = dropped;
            Outcome::Continue
        }
    }
}

/// Current time in Unix nanoseconds.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Removes ANSI escape sequences (CSI `ESC [ ... final` and two-byte `ESC x`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                // OSC: until BEL or ESC \
                while let Some(c) = chars.next() {
                    if c == '\u{7}' {
                        break;
                    }
                    if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// logfmt `key=value key2="quoted value"` pairs; bare keys get "".
pub fn parse_logfmt(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b' ' {
            i += 1;
        }
        let key = &s[ks..i];
        if i < b.len() && b[i] == b'=' {
            i += 1;
            if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                let mut start = i;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        v.push_str(&s[start..i]);
                        let esc = b[i + 1];
                        match esc {
                            b'n' => v.push('\n'),
                            b't' => v.push('\t'),
                            b'"' => v.push('"'),
                            b'\\' => v.push('\\'),
                            _ => {
                                v.push('\\');
                                start = i + 1;
                                i += 1;
                                continue;
                            }
                        }
                        i += 2;
                        start = i;
                        continue;
                    }
                    i += 1;
                }
                v.push_str(&s[start..i.min(b.len())]);
                i += 1;
                if !key.is_empty() {
                    out.push((key.to_string(), v));
                }
            } else {
                let vs = i;
                while i < b.len() && b[i] != b' ' {
                    i += 1;
                }
                if !key.is_empty() {
                    out.push((key.to_string(), s[vs..i].to_string()));
                }
            }
        } else if !key.is_empty() {
            out.push((key.to_string(), String::new()));
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum PathSeg {
    Field(String),
    Index(i64),
}

fn parse_json_path(expr: &str) -> Result<Vec<PathSeg>, String> {
    let mut segs = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'.' if !segs.is_empty() => i += 1,
            b'"' => {
                let end = expr[i + 1..].find('"').ok_or("unterminated quoted field")?;
                segs.push(PathSeg::Field(expr[i + 1..i + 1 + end].to_string()));
                i += end + 2;
            }
            b'[' => {
                let end = expr[i..].find(']').ok_or("unterminated index")?;
                let n: i64 = expr[i + 1..i + end]
                    .trim()
                    .parse()
                    .map_err(|_| format!("unsupported index {:?}", &expr[i..i + end + 1]))?;
                segs.push(PathSeg::Index(n));
                i += end + 1;
            }
            _ => {
                let start = i;
                while i < b.len() && !matches!(b[i], b'.' | b'[' | b'"') {
                    i += 1;
                }
                let name = &expr[start..i];
                if name.is_empty()
                    || !name.chars().all(|c| {
                        c.is_alphanumeric() || c == '_' || c == '-' || c == '@' || c == '$'
                    })
                {
                    return Err(format!("unsupported JMESPath expression near {name:?}"));
                }
                segs.push(PathSeg::Field(name.to_string()));
            }
        }
    }
    if segs.is_empty() {
        return Err("empty expression".into());
    }
    Ok(segs)
}

/// Parses a JSON document keeping only the top-level members named in `tops` (the rest is
/// validated but not built). A document that is not an object is parsed whole.
fn parse_wanted(text: &str, tops: &[String]) -> Result<serde_json::Value, serde_json::Error> {
    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};

    struct Key<'a>(&'a [String]);
    impl<'de> DeserializeSeed<'de> for Key<'_> {
        type Value = Option<usize>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
            d.deserialize_str(self)
        }
    }
    impl<'de> Visitor<'de> for Key<'_> {
        type Value = Option<usize>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string key")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Option<usize>, E> {
            Ok(self.0.iter().position(|k| k == v))
        }
    }

    struct Doc<'a>(&'a [String]);
    impl<'de> Visitor<'de> for Doc<'_> {
        type Value = Option<serde_json::Map<String, serde_json::Value>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
            let mut out = serde_json::Map::new();
            while let Some(k) = m.next_key_seed(Key(self.0))? {
                match k {
                    Some(i) => {
                        let v: serde_json::Value = m.next_value()?;
                        out.insert(self.0[i].clone(), v);
                    }
                    None => {
                        m.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(Some(out))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut s: A,
        ) -> Result<Self::Value, A::Error> {
            while s.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    let mut de = serde_json::Deserializer::from_str(text);
    let doc = serde::Deserializer::deserialize_any(&mut de, Doc(tops))?;
    de.end()?;
    match doc {
        Some(map) => Ok(serde_json::Value::Object(map)),
        None => serde_json::from_str(text),
    }
}

fn lookup_json<'a>(v: &'a serde_json::Value, path: &[PathSeg]) -> Option<&'a serde_json::Value> {
    let mut cur = v;
    for seg in path {
        cur = match seg {
            PathSeg::Field(f) => cur.as_object()?.get(f)?,
            PathSeg::Index(n) => {
                let arr = cur.as_array()?;
                let idx = if *n < 0 { arr.len() as i64 + n } else { *n };
                arr.get(usize::try_from(idx).ok()?)?
            }
        };
    }
    Some(cur)
}

/// Parses a LogQL-style selector: `{a="b", c=~"d"} |= "x" != "y" |~ "re" !~ "re"`.
fn parse_selector(s: &str) -> Result<(Vec<Matcher>, Vec<LineFilter>), String> {
    let s = s.trim();
    let Some(full) = s.strip_prefix('{') else {
        return Err("selector must start with {".into());
    };
    let mut matchers = Vec::new();
    let consumed;
    let mut p = full;
    loop {
        p = p.trim_start_matches([' ', ',', '\t']);
        if let Some(r) = p.strip_prefix('}') {
            consumed = full.len() - r.len();
            break;
        }
        let name_end = p
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .ok_or("unterminated selector")?;
        let name = &p[..name_end];
        if name.is_empty() {
            return Err(format!("expected a label name at {p:?}"));
        }
        p = p[name_end..].trim_start();
        let (op, oplen) = if p.starts_with("=~") {
            (MatchOp::Regex, 2)
        } else if p.starts_with("!~") {
            (MatchOp::NotRegex, 2)
        } else if p.starts_with("!=") {
            (MatchOp::NotEqual, 2)
        } else if p.starts_with('=') {
            (MatchOp::Equal, 1)
        } else {
            return Err(format!("expected an operator after {name}"));
        };
        p = p[oplen..].trim_start();
        let (value, r) = parse_quoted(p)?;
        p = r;
        matchers.push(Matcher::new(op, name, value).map_err(|e| e.to_string())?);
    }
    let mut filters = Vec::new();
    let mut p = full[consumed..].trim();
    while !p.is_empty() {
        let (kind, r) = if let Some(r) = p.strip_prefix("|=") {
            (0, r)
        } else if let Some(r) = p.strip_prefix("!=") {
            (1, r)
        } else if let Some(r) = p.strip_prefix("|~") {
            (2, r)
        } else if let Some(r) = p.strip_prefix("!~") {
            (3, r)
        } else {
            return Err(format!("unsupported pipeline in selector: {p:?}"));
        };
        let (v, r) = parse_quoted(r.trim_start())?;
        filters.push(match kind {
            0 => LineFilter::Contains(v),
            1 => LineFilter::NotContains(v),
            2 => LineFilter::Regex(regex::Regex::new(&v).map_err(|e| e.to_string())?),
            _ => LineFilter::NotRegex(regex::Regex::new(&v).map_err(|e| e.to_string())?),
        });
        p = r.trim();
    }
    Ok((matchers, filters))
}

fn parse_quoted(p: &str) -> Result<(String, &str), String> {
    let q = p.chars().next().ok_or("expected a quoted string")?;
    if q == '`' {
        let end = p[1..].find('`').ok_or("unterminated string")?;
        return Ok((p[1..1 + end].to_string(), &p[end + 2..]));
    }
    if q != '"' {
        return Err(format!("expected a quoted string at {p:?}"));
    }
    let mut out = String::new();
    let mut it = p[1..].char_indices();
    while let Some((i, c)) = it.next() {
        match c {
            '"' => return Ok((out, &p[i + 2..])),
            '\\' => match it.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, c)) => out.push(c),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("unterminated string".into())
}

/// A tiny Go-template subset: text, `{{ .Field }}`, and `{{ Func .Field "arg" ... }}`.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<TplPart>,
}

#[derive(Debug, Clone)]
enum TplPart {
    Text(String),
    Action {
        func: Option<String>,
        args: Vec<TplArg>,
    },
}

#[derive(Debug, Clone)]
enum TplArg {
    Field(String),
    Str(String),
    Int(i64),
}

impl Template {
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(i) = rest.find("{{") {
            if i > 0 {
                parts.push(TplPart::Text(rest[..i].to_string()));
            }
            let end = rest[i..].find("}}").ok_or("unterminated {{")?;
            let body = rest[i + 2..i + end].trim().trim_matches('-').trim();
            parts.push(Self::action(body)?);
            rest = &rest[i + end + 2..];
        }
        if !rest.is_empty() {
            parts.push(TplPart::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    fn action(body: &str) -> Result<TplPart, String> {
        let mut toks = Vec::new();
        let mut p = body;
        while !p.is_empty() {
            p = p.trim_start();
            if p.is_empty() {
                break;
            }
            if p.starts_with('"') || p.starts_with('`') {
                let (v, r) = parse_quoted(p)?;
                toks.push(TplArg::Str(v));
                p = r;
            } else {
                let end = p.find(char::is_whitespace).unwrap_or(p.len());
                let t = &p[..end];
                if let Some(f) = t.strip_prefix('.') {
                    toks.push(TplArg::Field(f.to_string()));
                } else if let Ok(n) = t.parse::<i64>() {
                    toks.push(TplArg::Int(n));
                } else {
                    toks.push(TplArg::Str(format!("\u{0}{t}")));
                }
                p = &p[end..];
            }
        }
        match toks.first() {
            Some(TplArg::Str(f)) if f.starts_with('\u{0}') => {
                let func = f.trim_start_matches('\u{0}').to_string();
                const FUNCS: &[&str] = &[
                    "ToUpper",
                    "ToLower",
                    "TrimSpace",
                    "Trim",
                    "TrimPrefix",
                    "TrimSuffix",
                    "Replace",
                    "default",
                ];
                if !FUNCS.contains(&func.as_str()) {
                    return Err(format!("unsupported template function {func:?}"));
                }
                Ok(TplPart::Action {
                    func: Some(func),
                    args: toks.into_iter().skip(1).collect(),
                })
            }
            Some(_) if toks.len() == 1 => Ok(TplPart::Action {
                func: None,
                args: toks,
            }),
            _ => Err(format!("unsupported template action {{{{ {body} }}}}")),
        }
    }

    fn render(&self, value: &str, e: &Entry) -> String {
        let arg = |a: &TplArg| -> String {
            match a {
                TplArg::Field(f) if f == "Value" => value.to_string(),
                TplArg::Field(f) if f == "Entry" => e.line.clone(),
                TplArg::Field(f) => e.extracted.get(f).cloned().unwrap_or_default(),
                TplArg::Str(s) => s.clone(),
                TplArg::Int(n) => n.to_string(),
            }
        };
        let mut out = String::new();
        for p in &self.parts {
            match p {
                TplPart::Text(t) => out.push_str(t),
                TplPart::Action { func: None, args } => {
                    if let Some(a) = args.first() {
                        out.push_str(&arg(a));
                    }
                }
                TplPart::Action {
                    func: Some(f),
                    args,
                } => {
                    let a: Vec<String> = args.iter().map(arg).collect();
                    let get = |i: usize| a.get(i).map(String::as_str).unwrap_or("");
                    let s = match f.as_str() {
                        "ToUpper" => get(0).to_uppercase(),
                        "ToLower" => get(0).to_lowercase(),
                        "TrimSpace" => get(0).trim().to_string(),
                        "Trim" => get(0).trim_matches(|c| get(1).contains(c)).to_string(),
                        "TrimPrefix" => get(0).strip_prefix(get(1)).unwrap_or(get(0)).to_string(),
                        "TrimSuffix" => get(0).strip_suffix(get(1)).unwrap_or(get(0)).to_string(),
                        "Replace" => {
                            let n: i64 = get(3).parse().unwrap_or(-1);
                            if n < 0 {
                                get(0).replace(get(1), get(2))
                            } else {
                                get(0).replacen(get(1), get(2), n as usize)
                            }
                        }
                        // default DEFAULT VALUE
                        _ => {
                            if get(1).is_empty() {
                                get(0).to_string()
                            } else {
                                get(1).to_string()
                            }
                        }
                    };
                    out.push_str(&s);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pipeline(yaml: &str) -> (Pipeline, CustomMetrics) {
        let stages = parse_stages(yaml).unwrap();
        let mut m = CustomMetrics::default();
        (Pipeline::new(&stages, &mut m).unwrap(), m)
    }

    fn run_many(p: &mut Pipeline, m: &CustomMetrics, lines: &[&str]) -> (Vec<Entry>, Vec<String>) {
        let mut out = Vec::new();
        let mut drops = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let e = Entry {
                line: l.to_string(),
                ts: 1_000,
                pos: i as u64 + 1,
                ..Entry::default()
            };
            p.process(e, m, &mut out, &mut |r, _| drops.push(r.to_string()));
        }
        (out, drops)
    }

    fn run(yaml: &str, line: &str) -> (Vec<Entry>, Vec<String>) {
        let (mut p, m) = pipeline(yaml);
        run_many(&mut p, &m, &[line])
    }

    #[test]
    fn docker_stage() {
        let (out, _) = run(
            "- docker: {}",
            r#"{"log":"hello\n","stream":"stderr","time":"2019-04-30T02:12:41.8443515Z"}"#,
        );
        assert_eq!(out[0].line, "hello");
        assert_eq!(out[0].labels["stream"], "stderr");
        assert_eq!(out[0].ts, 1_556_590_361_844_351_500);
        // Not docker JSON: untouched.
        let (out, _) = run("- docker: {}", "plain");
        assert_eq!(out[0].line, "plain");
    }

    #[test]
    fn cri_stage_joins_partials() {
        let (mut p, m) = pipeline("- cri: {}");
        let (out, _) = run_many(
            &mut p,
            &m,
            &[
                "2019-04-30T02:12:41.8443515Z stdout P part one ",
                "2019-04-30T02:12:41.8443516Z stdout F and two",
                "2019-04-30T02:12:42Z stderr F single",
            ],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].line, "part one and two");
        assert_eq!(out[0].pos, 2);
        assert_eq!(out[1].labels["stream"], "stderr");
        assert!(!p.has_pending());
    }

    #[test]
    fn json_labels_output_timestamp() {
        let yaml = r#"
- json:
    expressions:
      level:
      msg: message
      user: ctx.user.name
      first: tags[0]
      dotted: '"a.b"'
- labels:
    level:
- structured_metadata:
    user:
- timestamp:
    source: ts_missing
    format: RFC3339
- output:
    source: msg
"#;
        let (out, _) = run(
            yaml,
            r#"{"level":"warn","message":"hi","ctx":{"user":{"name":"kim"}},"tags":["x","y"],"a.b":3}"#,
        );
        let e = &out[0];
        assert_eq!(e.labels["level"], "warn");
        assert_eq!(e.line, "hi");
        assert_eq!(e.extracted["first"], "x");
        assert_eq!(e.extracted["dotted"], "3");
        assert_eq!(e.metadata, vec![("user".to_string(), "kim".to_string())]);
        assert_eq!(e.ts, 1_000);
        let (_, drops) = run(
            "- json:\n    expressions: {a: }\n    drop_malformed: true",
            "{oops",
        );
        assert_eq!(drops, ["json_malformed"]);
    }

    #[test]
    fn json_partial_parse_matches_full_parse() {
        let tops = vec!["a".to_string(), "c".to_string()];
        let v = parse_wanted(
            r#"{"a":{"x":[1,2]},"b":"skip \" me","c":null,"a2":1}"#,
            &tops,
        )
        .unwrap();
        assert_eq!(v, serde_json::json!({"a": {"x": [1, 2]}, "c": null}));
        assert_eq!(
            parse_wanted("[1,2]", &tops).unwrap(),
            serde_json::json!([1, 2])
        );
        assert!(parse_wanted(r#"{"a":1} trailing"#, &tops).is_err());
        assert!(parse_wanted(r#"{"a":1,"b":}"#, &tops).is_err());
    }

    #[test]
    fn timestamp_formats_fallback_and_failure() {
        let yaml = "- regex:\n    expression: '^(?P<t>\\S+)'\n- timestamp:\n    source: t\n    format: UnixMs\n    fallback_formats: [RFC3339]\n";
        let (out, _) = run(yaml, "2019-04-30T02:12:41Z rest");
        assert_eq!(out[0].ts, 1_556_590_361_000_000_000);
        let (out, _) = run(yaml, "1556590361000 rest");
        assert_eq!(out[0].ts, 1_556_590_361_000_000_000);
        let (out, _) = run(yaml, "garbage rest");
        assert_eq!(out[0].ts, 1_001, "fudged");
        let skip = yaml.to_string() + "    action_on_failure: skip\n";
        let (out, _) = run(&skip, "garbage rest");
        assert_eq!(out[0].ts, 1_000);
    }

    #[test]
    fn logfmt_and_regex() {
        let (out, _) = run(
            "- logfmt:\n    mapping:\n      lvl: level\n      msg:\n- labels:\n    lvl:\n",
            r#"level=error msg="disk \"full\"" other"#,
        );
        assert_eq!(out[0].labels["lvl"], "error");
        assert_eq!(out[0].extracted["msg"], r#"disk "full""#);
        assert!(
            parse_stages("- regex:\n    expression: '(no names)'\n")
                .map(|s| Pipeline::new(&s, &mut CustomMetrics::default()).is_err())
                .unwrap()
        );
    }

    #[test]
    fn drop_stage_conditions() {
        let (_, d) = run("- drop:\n    expression: debug\n", "a debug line");
        assert_eq!(d, ["drop_stage"]);
        let (o, d) = run("- drop:\n    expression: debug\n", "an info line");
        assert!(d.is_empty() && o.len() == 1);
        let (_, d) = run(
            "- drop:\n    longer_than: 5\n    drop_counter_reason: too_long\n",
            "123456",
        );
        assert_eq!(d, ["too_long"]);
        let (_, d) = run("- drop:\n    older_than: 1h\n", "old (ts=1000ns)");
        assert_eq!(d.len(), 1);
        let yaml =
            "- logfmt:\n    mapping: {level: }\n- drop:\n    source: level\n    value: debug\n";
        assert_eq!(run(yaml, "level=debug").1.len(), 1);
        assert_eq!(run(yaml, "level=info").1.len(), 0);
        assert_eq!(
            run(yaml, "nolevel").1.len(),
            0,
            "missing source keeps the line"
        );
    }

    #[test]
    fn match_stage() {
        let yaml = r#"
- static_labels:
    app: web
- match:
    selector: '{app="web"} |= "GET"'
    stages:
      - regex:
          expression: 'GET (?P<path>\S+)'
      - labels:
          path:
- match:
    selector: '{app=~"w.*"} |~ "health"'
    action: drop
    drop_counter_reason: healthcheck
"#;
        let (mut p, m) = pipeline(yaml);
        let (out, drops) = run_many(&mut p, &m, &["GET /users", "GET /health", "POST /x"]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].labels["path"], "/users");
        assert!(!out[1].labels.contains_key("path"));
        assert_eq!(drops, ["healthcheck"]);
        assert!(
            parse_stages("- match:\n    selector: 'nope'\n    action: drop\n")
                .map(|s| Pipeline::new(&s, &mut CustomMetrics::default()).is_err())
                .unwrap()
        );
    }

    #[test]
    fn multiline_blocks() {
        let (mut p, m) = pipeline(
            "- multiline:\n    firstline: '^\\d{4}'\n    max_lines: 3\n    max_wait_time: 10ms\n",
        );
        let (out, _) = run_many(
            &mut p,
            &m,
            &["2024 start", "  at a", "  at b", "2024 next", "x", "y", "z"],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].line, "2024 start\n  at a\n  at b");
        assert_eq!(out[0].pos, 3);
        assert_eq!(out[1].line, "2024 next\nx\ny");
        assert!(p.has_pending());
        let mut flushed = Vec::new();
        std::thread::sleep(Duration::from_millis(20));
        p.flush(Instant::now(), false, &m, &mut flushed, &mut |_, _| {});
        assert_eq!(flushed.len(), 1);
        assert_eq!(flushed[0].line, "z");
        assert!(!p.has_pending());
    }

    #[test]
    fn label_stages_template_replace_pack_decolorize() {
        let yaml = r#"
- static_labels:
    a: "1"
    b: "2"
    c: "3"
- labeldrop: [a]
- labelallow: [b, c]
- regex:
    expression: 'user=(?P<user>\w+)'
- template:
    source: user
    template: '{{ ToUpper .Value }}-x'
- replace:
    expression: 'password=(\S+)'
    replace: '****'
- decolorize: {}
- pack:
    labels: [c]
    ingest_timestamp: false
"#;
        let (out, _) = run(yaml, "\u{1b}[31muser=kim password=secret\u{1b}[0m");
        let e = &out[0];
        assert_eq!(e.extracted["user"], "KIM-x");
        assert_eq!(e.labels.keys().collect::<Vec<_>>(), ["b"]);
        let v: serde_json::Value = serde_json::from_str(&e.line).unwrap();
        assert_eq!(v["c"], "3");
        assert_eq!(v["_entry"], "user=kim password=****");
        assert!(Template::parse("{{ Nope .Value }}").is_err());
    }

    #[test]
    fn limit_drops_over_burst() {
        let (mut p, m) = pipeline("- limit:\n    rate: 1\n    burst: 3\n    drop: true\n");
        let (out, drops) = run_many(&mut p, &m, &["a", "b", "c", "d", "e"]);
        assert_eq!(out.len(), 3);
        assert_eq!(drops.len(), 2);
    }

    #[test]
    fn metrics_stage_counts() {
        let yaml = r#"
- logfmt:
    mapping: {level: , bytes: }
- metrics:
    log_lines_total:
      type: Counter
      description: lines
      source: level
      config:
        action: inc
    bytes_sum:
      type: Counter
      source: bytes
      config:
        action: add
    size:
      type: Histogram
      source: bytes
      config:
        buckets: [10, 100]
"#;
        let (mut p, m) = pipeline(yaml);
        run_many(
            &mut p,
            &m,
            &["level=info bytes=5", "level=error bytes=50", "nothing"],
        );
        let mut reg = prometheus_client::registry::Registry::default();
        let metrics = crate::metrics::AgentMetrics {
            custom: m,
            ..crate::metrics::AgentMetrics::default()
        };
        metrics.register(&mut reg);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(
            text.contains("promtail_custom_log_lines_total 2")
                || text.contains("promtail_custom_log_lines_total{} 2"),
            "{text}"
        );
        assert!(
            text.contains("promtail_custom_bytes_sum_total 55"),
            "{text}"
        );
        assert!(text.contains("promtail_custom_size_count 2"), "{text}");
    }

    #[test]
    fn unknown_fields_in_stages_are_errors() {
        assert!(parse_stages("- json:\n    expresions: {a: }\n").is_err());
        assert!(parse_stages("- docker: {nope: 1}\n").is_err());
        assert!(parse_stages("- output: {}\n").is_err());
    }

    proptest! {
        #[test]
        fn pipeline_never_panics(line in any::<String>(), raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            let yaml = r#"
- docker: {}
- cri: {}
- json:
    expressions: {a: , b: x.y, c: 'z[0]'}
- logfmt:
    mapping: {k: }
- regex:
    expression: '(?P<w>\w+)'
- labels: {a: , w: }
- timestamp: {source: a, format: '2006-01-02 15:04:05.000'}
- replace: {expression: '(\d)', replace: '{{ .Value }}!'}
- decolorize: {}
- multiline: {firstline: '^\S', max_lines: 5}
- pack: {labels: [w]}
"#;
            let (mut p, m) = pipeline(yaml);
            let lossy = String::from_utf8_lossy(&raw).into_owned();
            let (out, _) = run_many(&mut p, &m, &[line.as_str(), lossy.as_str()]);
            prop_assert!(out.len() <= 2);
            let _ = parse_logfmt(&line);
            let _ = strip_ansi(&line);
        }
    }
}
