//! Rule files in Prometheus's format (`groups:` of recording and alerting rules), loaded and
//! validated as `promtool check rules` does. Errors carry the file and, where known, the line.
//!
//! Lookout extension: a group may say `query_language: logql` (Loki-ruler style groups
//! whose `expr` is a LogQL metric query); a whole file can also be loaded as LogQL.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use lookout_config::Duration;
use serde::{Deserialize, Deserializer};

use crate::template::{Template, TemplateError};

/// The language of a group's expressions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    Promql,
    Logql,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Promql => "promql",
            Language::Logql => "logql",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleFileError {
    #[error("{file}: {message}")]
    Io { file: PathBuf, message: String },
    #[error("{file}: {}{message}", fmt_pos(*.line, *.column))]
    Invalid {
        file: PathBuf,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
}

fn fmt_pos(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("{l}:{c}: "),
        (Some(l), None) => format!("{l}: "),
        _ => String::new(),
    }
}

impl RuleFileError {
    pub fn file(&self) -> &Path {
        match self {
            RuleFileError::Io { file, .. } | RuleFileError::Invalid { file, .. } => file,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: Vec<RawGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    name: String,
    interval: Option<Duration>,
    query_offset: Option<Duration>,
    #[serde(default)]
    limit: u64,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    rules: Vec<RawRule>,
    query_language: Option<Language>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    record: Option<String>,
    alert: Option<String>,
    #[serde(default, deserialize_with = "scalar_string")]
    expr: String,
    #[serde(rename = "for")]
    for_: Option<Duration>,
    keep_firing_for: Option<Duration>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// `expr: 1` is as valid as `expr: "1"`.
fn scalar_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = serde_yaml_ng::Value::deserialize(d)?;
    match v {
        serde_yaml_ng::Value::String(s) => Ok(s),
        serde_yaml_ng::Value::Number(n) => Ok(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Ok(b.to_string()),
        serde_yaml_ng::Value::Null => Ok(String::new()),
        _ => Err(serde::de::Error::custom("expr must be a string")),
    }
}

/// What a rule produces.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RuleKind {
    /// A recording rule and the metric name it writes.
    Record(String),
    /// An alerting rule and its alert name.
    Alert(String),
}

/// One validated rule.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSpec {
    pub kind: RuleKind,
    pub expr: String,
    /// `for`, ms.
    pub for_ms: i64,
    /// `keep_firing_for`, ms.
    pub keep_firing_for_ms: i64,
    /// Group labels merged under the rule's own.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Line of the rule in its file (1-based), when found.
    pub line: Option<usize>,
}

impl RuleSpec {
    pub fn name(&self) -> &str {
        match &self.kind {
            RuleKind::Record(n) | RuleKind::Alert(n) => n,
        }
    }
}

/// One validated group.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupSpec {
    pub name: String,
    pub file: PathBuf,
    /// `None`: the global evaluation interval.
    pub interval_ms: Option<i64>,
    /// `None`: the global `rule_query_offset`.
    pub query_offset_ms: Option<i64>,
    /// Most alerts / series a rule may produce (0: no limit).
    pub limit: usize,
    pub language: Language,
    pub rules: Vec<RuleSpec>,
}

/// A checked rule file.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleFile {
    pub path: PathBuf,
    pub groups: Vec<GroupSpec>,
}

impl RuleFile {
    pub fn rule_count(&self) -> usize {
        self.groups.iter().map(|g| g.rules.len()).sum()
    }

    /// Recording rules that write the same metric name with the same labels (promtool warns).
    pub fn duplicate_recording_rules(&self) -> Vec<(String, BTreeMap<String, String>)> {
        let mut seen = HashSet::new();
        let mut dups = Vec::new();
        for g in &self.groups {
            for r in &g.rules {
                if let RuleKind::Record(name) = &r.kind {
                    let key = (name.clone(), r.labels.clone());
                    if !seen.insert(key.clone()) && !dups.contains(&key) {
                        dups.push(key);
                    }
                }
            }
        }
        dups
    }
}

/// Reads and validates `path`; `default_language` applies to groups without
/// `query_language`.
pub fn load_file(path: &Path, default_language: Language) -> Result<RuleFile, RuleFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| RuleFileError::Io {
        file: path.to_path_buf(),
        message: e.to_string(),
    })?;
    parse_file(path, &text, default_language)
}

/// Lines of `- record:` / `- alert:` keys and group `- name:` keys, in file order.
struct Lines {
    groups: Vec<usize>,
    rules: Vec<usize>,
}

fn scan_lines(text: &str) -> Lines {
    let mut groups = Vec::new();
    let mut rules = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start().trim_start_matches('-').trim_start();
        if t.starts_with("record:") || t.starts_with("alert:") {
            rules.push(i + 1);
        } else if t.starts_with("name:") {
            groups.push(i + 1);
        }
    }
    Lines { groups, rules }
}

fn is_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

/// Parses and validates rule file text (`path` names it in errors).
pub fn parse_file(
    path: &Path,
    text: &str,
    default_language: Language,
) -> Result<RuleFile, RuleFileError> {
    let raw: RawFile = serde_yaml_ng::from_str(text).map_err(|e| {
        let loc = e.location();
        RuleFileError::Invalid {
            file: path.to_path_buf(),
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
            message: e.to_string(),
        }
    })?;
    let lines = scan_lines(text);
    let invalid = |line: Option<usize>, message: String| RuleFileError::Invalid {
        file: path.to_path_buf(),
        line,
        column: None,
        message,
    };
    let mut names = HashSet::new();
    let mut groups = Vec::new();
    let mut rule_no = 0usize;
    for (gi, g) in raw.groups.into_iter().enumerate() {
        let gline = lines.groups.get(gi).copied();
        if g.name.is_empty() {
            return Err(invalid(gline, "Groupname must not be empty".into()));
        }
        if !names.insert(g.name.clone()) {
            return Err(invalid(
                gline,
                format!("groupname: {:?} is repeated in the same file", g.name),
            ));
        }
        for k in g.labels.keys() {
            if !is_label_name(k) || k == "__name__" {
                return Err(invalid(
                    gline,
                    format!("group {:?}: invalid label name: {k}", g.name),
                ));
            }
        }
        let language = g.query_language.unwrap_or(default_language);
        let mut rules = Vec::with_capacity(g.rules.len());
        for (ri, r) in g.rules.into_iter().enumerate() {
            let line = lines.rules.get(rule_no).copied();
            rule_no += 1;
            let display = r.record.clone().or(r.alert.clone()).unwrap_or_default();
            let fail = |msg: String| {
                invalid(
                    line,
                    format!("group {:?}, rule {}, {:?}: {msg}", g.name, ri + 1, display),
                )
            };
            let kind = match (r.record, r.alert) {
                (Some(_), Some(_)) => {
                    return Err(fail("only one of 'record' and 'alert' must be set".into()));
                }
                (None, None) => {
                    return Err(fail("one of 'record' or 'alert' must be set".into()));
                }
                (Some(rec), None) => {
                    if rec.is_empty() {
                        return Err(fail("field 'record' must be set in rule".into()));
                    }
                    if !is_metric_name(&rec) {
                        return Err(fail(format!("invalid recording rule name: {rec}")));
                    }
                    if !r.annotations.is_empty() {
                        return Err(fail("invalid field 'annotations' in recording rule".into()));
                    }
                    if r.for_.is_some() {
                        return Err(fail("invalid field 'for' in recording rule".into()));
                    }
                    if r.keep_firing_for.is_some() {
                        return Err(fail(
                            "invalid field 'keep_firing_for' in recording rule".into(),
                        ));
                    }
                    RuleKind::Record(rec)
                }
                (None, Some(alert)) => {
                    if alert.is_empty() {
                        return Err(fail("field 'alert' must be set in rule".into()));
                    }
                    RuleKind::Alert(alert)
                }
            };
            if r.expr.trim().is_empty() {
                return Err(fail("field 'expr' must be set in rule".into()));
            }
            check_expr(language, &r.expr)
                .map_err(|e| fail(format!("could not parse expression: {e}")))?;
            for k in r.labels.keys() {
                if !is_label_name(k) {
                    return Err(fail(format!("invalid label name: {k}")));
                }
                if k == "__name__" {
                    return Err(fail("invalid label name: __name__".into()));
                }
            }
            for k in r.annotations.keys() {
                if !is_label_name(k) {
                    return Err(fail(format!("invalid annotation name: {k}")));
                }
            }
            if let RuleKind::Alert(name) = &kind {
                check_templates(name, &r.labels, &r.annotations)
                    .map_err(|e| fail(e.to_string()))?;
            }
            let mut labels = g.labels.clone();
            labels.extend(r.labels);
            rules.push(RuleSpec {
                kind,
                expr: r.expr,
                for_ms: r.for_.map(|d| d.as_millis() as i64).unwrap_or(0),
                keep_firing_for_ms: r.keep_firing_for.map(|d| d.as_millis() as i64).unwrap_or(0),
                labels,
                annotations: r.annotations,
                line,
            });
        }
        groups.push(GroupSpec {
            name: g.name,
            file: path.to_path_buf(),
            interval_ms: g.interval.map(|d| d.as_millis() as i64).filter(|&d| d > 0),
            query_offset_ms: g.query_offset.map(|d| d.as_millis() as i64),
            limit: g.limit as usize,
            language,
            rules,
        });
    }
    Ok(RuleFile {
        path: path.to_path_buf(),
        groups,
    })
}

/// Checks an expression's syntax in `language`.
pub fn check_expr(language: Language, expr: &str) -> Result<(), String> {
    match language {
        Language::Promql => lookout_promql::Engine::default()
            .parse_check(expr)
            .map_err(|e| e.to_string()),
        Language::Logql => lookout_logql::validate(expr).map_err(|e| e.to_string()),
    }
}

/// Parses every label and annotation template of an alerting rule.
fn check_templates(
    alert: &str,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Result<(), TemplateError> {
    let name = format!("__alert_{alert}");
    for v in labels.values().chain(annotations.values()) {
        Template::parse(&name, v)?;
    }
    Ok(())
}

/// Expands `rule_files` globs (sorted per pattern, duplicates dropped). A pattern without
/// wildcards that matches nothing is an error; a glob that matches nothing is not.
pub fn expand_globs(patterns: &[String]) -> Result<Vec<PathBuf>, RuleFileError> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for p in patterns {
        let paths = glob::glob(p).map_err(|e| RuleFileError::Invalid {
            file: PathBuf::from(p),
            line: None,
            column: None,
            message: format!("invalid rule file glob: {e}"),
        })?;
        let mut matched: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
        matched.sort();
        if matched.is_empty() && !p.contains(['*', '?', '[']) {
            return Err(RuleFileError::Io {
                file: PathBuf::from(p),
                message: "no such file".into(),
            });
        }
        for m in matched {
            if seen.insert(m.clone()) {
                out.push(m);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RuleFile, RuleFileError> {
        parse_file(Path::new("r.yml"), text, Language::Promql)
    }

    #[test]
    fn parses_both_kinds() {
        let f = parse(
            r#"
groups:
  - name: g
    interval: 30s
    query_offset: 1m
    limit: 10
    labels: { team: a }
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: Down
        expr: up == 0
        for: 1m
        keep_firing_for: 5m
        labels: { severity: critical, team: b }
        annotations: { summary: "{{ $labels.job }} down" }
"#,
        )
        .unwrap();
        let g = &f.groups[0];
        assert_eq!(g.interval_ms, Some(30_000));
        assert_eq!(g.query_offset_ms, Some(60_000));
        assert_eq!(g.limit, 10);
        assert_eq!(g.rules[0].kind, RuleKind::Record("job:up:sum".into()));
        assert_eq!(g.rules[0].labels["team"], "a");
        assert_eq!(g.rules[1].for_ms, 60_000);
        assert_eq!(g.rules[1].keep_firing_for_ms, 300_000);
        assert_eq!(g.rules[1].labels["team"], "b");
        assert_eq!(g.rules[1].line, Some(11));
        assert_eq!(f.rule_count(), 2);
    }

    #[test]
    fn numeric_expr() {
        let f = parse("groups:\n- name: g\n  rules:\n  - record: one\n    expr: 1\n").unwrap();
        assert_eq!(f.groups[0].rules[0].expr, "1");
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up ==\n").unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with("r.yml: 4: group \"g\", rule 1, \"A\": could not parse expression"),
            "{s}"
        );

        let e = parse("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    annotations:\n      x: '{{ nope }}'\n").unwrap_err();
        assert!(
            e.to_string().contains("function \"nope\" not defined"),
            "{e}"
        );

        let e = parse("groups:\n- name: g\n  rules: []\n- name: g\n  rules: []\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("r.yml: 4: groupname: \"g\" is repeated"),
            "{e}"
        );

        let e = parse("groups:\n- name: g\n  rules:\n  - record: x\n    alert: y\n    expr: up\n")
            .unwrap_err();
        assert!(
            e.to_string().contains("only one of 'record' and 'alert'"),
            "{e}"
        );

        let e = parse("groups:\n- name: g\n  rules:\n  - record: 'bad name'\n    expr: up\n")
            .unwrap_err();
        assert!(e.to_string().contains("invalid recording rule name"), "{e}");

        let e = parse("groups:\n- name: g\n  rules:\n  - record: x\n    expr: up\n    for: 1m\n")
            .unwrap_err();
        assert!(e.to_string().contains("invalid field 'for'"), "{e}");

        let e = parse(
            "groups:\n- name: g\n  rules:\n  - alert: x\n    expr: up\n    labels: { 0bad: x }\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("invalid label name"), "{e}");

        let e = parse("groups:\n- name: g\n  bogus: 1\n").unwrap_err();
        match &e {
            RuleFileError::Invalid { line, .. } => assert_eq!(*line, Some(3)),
            other => panic!("{other:?}"),
        }

        let e = parse("groups: [\n").unwrap_err();
        assert!(
            matches!(e, RuleFileError::Invalid { line: Some(_), .. }),
            "{e:?}"
        );
    }

    #[test]
    fn logql_groups() {
        let text = "groups:\n- name: logs\n  query_language: logql\n  rules:\n  - alert: Errors\n    expr: sum by (service) (count_over_time({job=\"app\"} |= \"error\" [1m])) > 10\n";
        let f = parse(text).unwrap();
        assert_eq!(f.groups[0].language, Language::Logql);
        let bad = "groups:\n- name: logs\n  query_language: logql\n  rules:\n  - alert: E\n    expr: '{job=\"app\"} |= \"error\"'\n";
        assert!(parse(bad).is_err(), "a log query is not a metric query");
    }

    #[test]
    fn duplicates() {
        let f = parse("groups:\n- name: a\n  rules:\n  - record: x\n    expr: up\n- name: b\n  rules:\n  - record: x\n    expr: up\n").unwrap();
        assert_eq!(f.duplicate_recording_rules().len(), 1);
    }
}
