//! Time-scaled copies of rule files, for running a fault schedule faster than real time
//! (`lookout demo --schedule fast`): every `for`, `keep_firing_for`, group `interval` and
//! `query_offset`, and every range or subquery duration inside an expression (`[5m]`,
//! `[1h:5m]`) is multiplied by a factor; thresholds, labels and annotations stay as written.
//! The original files are never touched; copies go to a directory of the caller's choosing.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::LazyLock;

use lookout_config::Duration;
use regex::Regex;
use serde_yaml_ng::{Mapping, Value};

use crate::file::expand_globs;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScaleError {
    #[error("scale factor {0} is not a positive finite number")]
    Factor(f64),
    #[error("{file}: {message}")]
    File { file: PathBuf, message: String },
    #[error("{0}")]
    Config(String),
}

/// A range or subquery selector: `[5m]`, `[1h30m]`, `[30m:1m]`, `[30m:]`.
static RANGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\[\s*([0-9]+(?:ms|[smhdwy])(?:[0-9]+(?:ms|[smhdwy]))*)\s*(?::\s*((?:[0-9]+(?:ms|[smhdwy]))*)\s*)?\]")
        .unwrap_or_else(|e| panic!("range regex: {e}"))
});

/// `d` times `factor`, at least 1 ms (a zero duration stays zero).
fn scale_duration(d: Duration, factor: f64) -> Duration {
    if d.is_zero() {
        return d;
    }
    let ms = (d.as_millis() as f64 * factor).round().max(1.0);
    Duration::from_millis(ms as u64)
}

fn scale_duration_str(s: &str, factor: f64) -> Option<String> {
    Duration::from_str(s.trim())
        .ok()
        .map(|d| scale_duration(d, factor).to_string())
}

/// `expr` with every range/subquery duration multiplied by `factor`. Works for PromQL and
/// LogQL alike (both write ranges as `[<duration>]`); text inside string literals that looks
/// like a range is scaled too, which rule expressions do not contain in practice.
pub fn scale_expr(expr: &str, factor: f64) -> String {
    RANGE
        .replace_all(expr, |c: &regex::Captures<'_>| {
            let range = scale_duration_str(&c[1], factor).unwrap_or_else(|| c[1].to_string());
            match c.get(2) {
                None => format!("[{range}]"),
                Some(step) if step.as_str().is_empty() => format!("[{range}:]"),
                Some(step) => {
                    let s = scale_duration_str(step.as_str(), factor)
                        .unwrap_or_else(|| step.as_str().to_string());
                    format!("[{range}:{s}]")
                }
            }
        })
        .into_owned()
}

fn check_factor(factor: f64) -> Result<(), ScaleError> {
    if factor.is_finite() && factor > 0.0 {
        Ok(())
    } else {
        Err(ScaleError::Factor(factor))
    }
}

fn scale_key(m: &mut Mapping, key: &str, factor: f64) -> Result<(), String> {
    if let Some(v) = m.get_mut(key) {
        let Some(s) = v.as_str() else {
            return Err(format!("{key} is not a duration string"));
        };
        let scaled = scale_duration_str(s, factor)
            .ok_or_else(|| format!("{key}: invalid duration {s:?}"))?;
        *v = Value::String(scaled);
    }
    Ok(())
}

/// The text of a rule file with its time parameters multiplied by `factor` (see the module
/// docs). Comments are not kept.
pub fn scale_rule_text(text: &str, factor: f64) -> Result<String, String> {
    check_factor(factor).map_err(|e| e.to_string())?;
    let mut doc: Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    if let Some(Value::Sequence(groups)) = doc.get_mut("groups") {
        for g in groups.iter_mut() {
            let Some(g) = g.as_mapping_mut() else {
                return Err("a group is not a mapping".into());
            };
            scale_key(g, "interval", factor)?;
            scale_key(g, "query_offset", factor)?;
            if let Some(Value::Sequence(rules)) = g.get_mut("rules") {
                for r in rules.iter_mut() {
                    let Some(r) = r.as_mapping_mut() else {
                        return Err("a rule is not a mapping".into());
                    };
                    scale_key(r, "for", factor)?;
                    scale_key(r, "keep_firing_for", factor)?;
                    if let Some(Value::String(e)) = r.get_mut("expr") {
                        *e = scale_expr(e, factor);
                    }
                }
            }
        }
    }
    serde_yaml_ng::to_string(&doc).map_err(|e| e.to_string())
}

/// Writes a scaled copy of every file `patterns` expand to into `out_dir` (named
/// `<n>-<file name>` so equal names from different directories do not collide) and returns
/// the copies' paths in order.
pub fn write_scaled_copies(
    patterns: &[String],
    factor: f64,
    out_dir: &Path,
) -> Result<Vec<PathBuf>, ScaleError> {
    check_factor(factor)?;
    let files = expand_globs(patterns).map_err(|e| ScaleError::File {
        file: e.file().to_path_buf(),
        message: e.to_string(),
    })?;
    std::fs::create_dir_all(out_dir).map_err(|e| ScaleError::File {
        file: out_dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut out = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        let err = |message: String| ScaleError::File {
            file: f.clone(),
            message,
        };
        let text = std::fs::read_to_string(f).map_err(|e| err(e.to_string()))?;
        let scaled = scale_rule_text(&text, factor).map_err(err)?;
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "rules.yml".into());
        let dest = out_dir.join(format!("{i}-{name}"));
        let body = format!(
            "# Generated from {} with every duration multiplied by {factor}. Edit the original.\n{scaled}",
            f.display()
        );
        std::fs::write(&dest, body).map_err(|e| ScaleError::File {
            file: dest.clone(),
            message: e.to_string(),
        })?;
        out.push(dest);
    }
    Ok(out)
}

/// `prometheus.yml` text whose `rule_files` are replaced by scaled copies written into
/// `out_dir` (relative patterns resolve against `base_dir`).
pub fn scale_config_rule_files(
    config_yaml: &str,
    factor: f64,
    base_dir: &Path,
    out_dir: &Path,
) -> Result<String, ScaleError> {
    check_factor(factor)?;
    let mut doc: Value = serde_yaml_ng::from_str(config_yaml)
        .map_err(|e| ScaleError::Config(format!("parsing the configuration: {e}")))?;
    let Some(Value::Sequence(files)) = doc.get_mut("rule_files") else {
        return Ok(config_yaml.to_string());
    };
    let mut patterns = Vec::with_capacity(files.len());
    for f in files.iter() {
        let Some(s) = f.as_str() else {
            return Err(ScaleError::Config("rule_files: not a string".into()));
        };
        let p = Path::new(s);
        patterns.push(if p.is_relative() {
            base_dir.join(p).display().to_string()
        } else {
            s.to_string()
        });
    }
    let copies = write_scaled_copies(&patterns, factor, out_dir)?;
    *files = copies
        .iter()
        .map(|p| Value::String(p.display().to_string()))
        .collect();
    let body = serde_yaml_ng::to_string(&doc)
        .map_err(|e| ScaleError::Config(format!("writing the configuration: {e}")))?;
    Ok(format!(
        "# rule_files: copies with durations scaled by {factor} (see {}).\n{body}",
        out_dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::{Language, parse_file};

    #[test]
    fn ranges_and_subqueries_scale() {
        assert_eq!(
            scale_expr("rate(x[5m]) > 1 and rate(y[1m] offset 5m)", 0.1),
            "rate(x[30s]) > 1 and rate(y[6s] offset 5m)"
        );
        assert_eq!(
            scale_expr("max_over_time(x[1h:5m])", 0.1),
            "max_over_time(x[6m:30s])"
        );
        assert_eq!(
            scale_expr("max_over_time(x[30m:])", 0.5),
            "max_over_time(x[15m:])"
        );
        assert_eq!(scale_expr("x[1m30s]", 0.1), "x[9s]");
        assert_eq!(scale_expr("x[15s]", 0.1), "x[1s500ms]");
        // Label matchers and vectors are left alone.
        assert_eq!(scale_expr("up{job=\"a\"} == 0", 0.1), "up{job=\"a\"} == 0");
        assert_eq!(
            scale_expr("count_over_time({app=\"x\"} |= `err` [1m])", 0.1),
            "count_over_time({app=\"x\"} |= `err` [6s])"
        );
    }

    #[test]
    fn rule_files_scale_and_stay_valid() {
        let text = r#"
groups:
  - name: g
    interval: 30s
    rules:
      - alert: A
        expr: rate(x[5m]) > 2
        for: 5m
        keep_firing_for: 1m
        annotations:
          summary: "for 5m: {{ $value }}"
      - record: r
        expr: sum(rate(x[1m]))
"#;
        let out = scale_rule_text(text, 0.1).unwrap();
        let f = parse_file(Path::new("scaled.yml"), &out, Language::Promql).unwrap();
        let g = &f.groups[0];
        assert_eq!(g.interval_ms, Some(3_000));
        assert_eq!(g.rules[0].for_ms, 30_000);
        assert_eq!(g.rules[0].keep_firing_for_ms, 6_000);
        assert_eq!(g.rules[0].expr, "rate(x[30s]) > 2");
        assert_eq!(g.rules[0].annotations["summary"], "for 5m: {{ $value }}");
        assert_eq!(g.rules[1].expr, "sum(rate(x[6s]))");
        assert!(scale_rule_text(text, 0.0).is_err());
        assert!(
            scale_rule_text(
                "groups: [{name: g, rules: [{alert: A, expr: x, for: soon}]}]",
                0.1
            )
            .is_err()
        );
    }

    #[test]
    fn config_rule_files_point_at_copies() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("rules")).unwrap();
        std::fs::write(
            dir.path().join("rules/a.yml"),
            "groups: [{name: g, rules: [{alert: A, expr: 'up == 0', for: 1m}]}]",
        )
        .unwrap();
        let cfg = "global: {evaluation_interval: 15s}\nrule_files: [rules/*.yml]\n";
        let out_dir = dir.path().join("scaled");
        let out = scale_config_rule_files(cfg, 0.1, dir.path(), &out_dir).unwrap();
        let copy = out_dir.join("0-a.yml");
        assert!(out.contains(&copy.display().to_string()), "{out}");
        let f = crate::file::load_file(&copy, Language::Promql).unwrap();
        assert_eq!(f.groups[0].rules[0].for_ms, 6_000);
        // No rule_files: unchanged.
        assert_eq!(
            scale_config_rule_files("global: {}\n", 0.1, dir.path(), &out_dir).unwrap(),
            "global: {}\n"
        );
    }
}
