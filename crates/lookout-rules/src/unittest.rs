//! promtool's rule unit tests (`promtool test rules`): input series in expanding notation,
//! `alert_rule_test` (firing alerts at a time) and `promql_expr_test` (query results),
//! evaluated on an in-memory store from time 0 with the file's `evaluation_interval`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use lookout_config::Duration;
use lookout_storage::memory::MemStorage;
use lookout_storage::{Appendable, Labels, METRIC_NAME, STALE_NAN, Timestamp};
use serde::Deserialize;

use crate::file::{Language, load_file};
use crate::group::{EvalEnv, Group};
use crate::query::{InstantQuerier, PromqlQuerier, Queriers};
use crate::rule::AlertState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    evaluation_interval: Option<Duration>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    fuzzy_compare: bool,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    interval: Option<Duration>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<ExprTest>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    external_url: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    #[serde(default)]
    values: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    eval_time: Duration,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExprTest {
    expr: String,
    eval_time: Duration,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    #[serde(default)]
    value: f64,
}

/// One sample of an input series (`None`: missing).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SeriesValue {
    Missing,
    Stale,
    Value(f64),
}

/// Expands promtool's notation: `1+2x3` → 1 3 5 7, `5x2` → 5 5 5, `_x2` → two missing,
/// `_`, `stale`, plain numbers (`Inf`, `NaN`, `1e3`).
pub fn expand_values(s: &str) -> Result<Vec<SeriesValue>, String> {
    let mut out = Vec::new();
    for tok in s.split_whitespace() {
        if tok == "_" {
            out.push(SeriesValue::Missing);
            continue;
        }
        if tok == "stale" {
            out.push(SeriesValue::Stale);
            continue;
        }
        if let Some(n) = tok.strip_prefix("_x") {
            let n: usize = n
                .parse()
                .map_err(|_| format!("invalid repetition in {tok:?}"))?;
            out.extend(std::iter::repeat_n(SeriesValue::Missing, n));
            continue;
        }
        if let Some((lhs, n)) = tok.rsplit_once('x')
            && !lhs.is_empty()
            && n.chars().all(|c| c.is_ascii_digit())
            && !n.is_empty()
        {
            let n: usize = n
                .parse()
                .map_err(|_| format!("invalid repetition in {tok:?}"))?;
            if n > 1_000_000 {
                return Err(format!("too many samples in {tok:?}"));
            }
            // a, a+b or a-b: the operator is a sign not at the start and not after `e`.
            let bytes = lhs.as_bytes();
            let op = (1..bytes.len()).rev().find(|&i| {
                (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E')
            });
            let (a, b) = match op {
                Some(i) => {
                    let a = parse_num(&lhs[..i])?;
                    let b = parse_num(&lhs[i + 1..])?;
                    (a, if bytes[i] == b'-' { -b } else { b })
                }
                None => (parse_num(lhs)?, 0.0),
            };
            for k in 0..=n {
                out.push(SeriesValue::Value(a + b * k as f64));
            }
            continue;
        }
        out.push(SeriesValue::Value(parse_num(tok)?));
    }
    Ok(out)
}

fn parse_num(s: &str) -> Result<f64, String> {
    match s {
        "Inf" | "+Inf" | "inf" => Ok(f64::INFINITY),
        "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
        "NaN" | "nan" => Ok(f64::NAN),
        _ => s
            .parse::<f64>()
            .map_err(|_| format!("invalid number {s:?}")),
    }
}

/// Labels of a series selector written as `name{a="b"}` (only `=` matchers).
pub fn parse_series(s: &str) -> Result<Labels, String> {
    use promql_parser::label::MatchOp;
    use promql_parser::parser::Expr;
    let e = promql_parser::parser::parse(s).map_err(|e| format!("invalid series {s:?}: {e}"))?;
    let Expr::VectorSelector(vs) = e else {
        return Err(format!("invalid series {s:?}: not a series selector"));
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(n) = &vs.name {
        pairs.push((METRIC_NAME.to_string(), n.clone()));
    }
    for m in &vs.matchers.matchers {
        if !matches!(m.op, MatchOp::Equal) {
            return Err(format!(
                "invalid series {s:?}: only `=` matchers describe a series"
            ));
        }
        pairs.push((m.name.clone(), m.value.clone()));
    }
    Ok(Labels::from_pairs(pairs))
}

/// Result of running one test file.
#[derive(Clone, Debug, PartialEq)]
pub struct TestReport {
    pub output: String,
    pub ok: bool,
}

fn fmt_labels(l: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", parts.join(", "))
}

/// (labels, annotations) of one alert.
type AlertPair = (BTreeMap<String, String>, BTreeMap<String, String>);

fn fmt_alerts(v: &[AlertPair]) -> String {
    let mut s = String::from("[\n");
    for (i, (l, a)) in v.iter().enumerate() {
        let _ = writeln!(
            s,
            "            {i}:\n              Labels:{}\n              Annotations:{}",
            fmt_labels(l),
            fmt_labels(a)
        );
    }
    s.push_str("            ]");
    s
}

fn floats_equal(a: f64, b: f64, fuzzy: bool) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    fuzzy && (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Runs every test of the file at `path`; the output is promtool's shape.
pub fn run_test_file(path: &Path) -> TestReport {
    let mut out = format!("Unit Testing:  {}\n", path.display());
    match run_inner(path) {
        Ok(errors) if errors.is_empty() => {
            out.push_str("  SUCCESS\n");
            TestReport {
                output: out,
                ok: true,
            }
        }
        Ok(errors) => {
            out.push_str("  FAILED:\n");
            for e in errors {
                let _ = writeln!(out, "{e}");
            }
            TestReport {
                output: out,
                ok: false,
            }
        }
        Err(e) => {
            let _ = writeln!(out, "  FAILED:\n    {e}");
            TestReport {
                output: out,
                ok: false,
            }
        }
    }
}

fn run_inner(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let tf: TestFile =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut patterns = Vec::new();
    for f in &tf.rule_files {
        let p = if Path::new(f).is_absolute() {
            PathBuf::from(f)
        } else {
            base.join(f)
        };
        patterns.push(p.display().to_string());
    }
    let files = crate::file::expand_globs(&patterns).map_err(|e| e.to_string())?;
    let mut specs = Vec::new();
    for f in &files {
        let rf = load_file(f, Language::Promql).map_err(|e| e.to_string())?;
        specs.extend(rf.groups);
    }
    if !tf.group_eval_order.is_empty() {
        let mut ordered = Vec::new();
        for name in &tf.group_eval_order {
            let i = specs
                .iter()
                .position(|g| &g.name == name)
                .ok_or_else(|| format!("group {name:?} in group_eval_order not found"))?;
            ordered.push(specs.remove(i));
        }
        ordered.extend(specs);
        specs = ordered;
    }
    let eval_interval = tf
        .evaluation_interval
        .map(|d| d.as_millis() as i64)
        .filter(|&d| d > 0)
        .unwrap_or(60_000);
    let mut errors = Vec::new();
    for (ti, t) in tf.tests.iter().enumerate() {
        let name = if t.name.is_empty() {
            String::new()
        } else {
            format!("{}: ", t.name)
        };
        match run_group(t, &specs, eval_interval, tf.fuzzy_compare) {
            Ok(errs) => errors.extend(errs.into_iter().map(|e| format!("{name}{e}"))),
            Err(e) => errors.push(format!("    {name}test {ti}: {e}")),
        }
    }
    Ok(errors)
}

fn run_group(
    t: &TestGroup,
    specs: &[crate::file::GroupSpec],
    eval_interval: i64,
    fuzzy: bool,
) -> Result<Vec<String>, String> {
    let interval = t
        .interval
        .map(|d| d.as_millis() as i64)
        .filter(|&d| d > 0)
        .unwrap_or(eval_interval);
    let storage = std::sync::Arc::new(MemStorage::new());
    {
        let mut app = storage.appender();
        for s in &t.input_series {
            let labels = parse_series(&s.series)?;
            let values =
                expand_values(&s.values).map_err(|e| format!("series {}: {e}", s.series))?;
            for (i, v) in values.into_iter().enumerate() {
                let ts = i as i64 * interval;
                let v = match v {
                    SeriesValue::Missing => continue,
                    SeriesValue::Stale => STALE_NAN,
                    SeriesValue::Value(v) => v,
                };
                app.append(None, &labels, ts, v)
                    .map_err(|e| format!("series {}: {e}", s.series))?;
            }
        }
        app.commit().map_err(|e| e.to_string())?;
    }
    let querier = PromqlQuerier {
        engine: lookout_promql::Engine::default(),
        storage: storage.clone(),
    };
    let queriers = Queriers {
        promql: Some(std::sync::Arc::new(PromqlQuerier {
            engine: lookout_promql::Engine::default(),
            storage: storage.clone(),
        })),
        logql: None,
    };
    let mut groups: Vec<Group> = specs
        .iter()
        .map(|g| Group::new(g, eval_interval, 0))
        .collect();
    let env = EvalEnv {
        queriers: &queriers,
        appendable: storage.as_ref(),
        restore_from: None,
        outage_tolerance_ms: 3_600_000,
        for_grace_period_ms: 600_000,
        sink: None,
        external_labels: &t.external_labels,
        external_url: &t.external_url,
        resend_delay_ms: 60_000,
    };
    let mut alert_tests: Vec<&AlertTest> = t.alert_rule_test.iter().collect();
    alert_tests.sort_by_key(|a| a.eval_time);
    let max_t = alert_tests
        .iter()
        .map(|a| a.eval_time.as_millis() as i64)
        .chain(
            t.promql_expr_test
                .iter()
                .map(|e| e.eval_time.as_millis() as i64),
        )
        .max()
        .unwrap_or(0);
    let mut errors = Vec::new();
    let mut next_alert = 0;
    let mut ts: Timestamp = 0;
    while ts <= max_t {
        for g in groups.iter_mut() {
            if ts % g.interval_ms == 0 {
                g.eval(ts, &env);
            }
        }
        while let Some(at) = alert_tests.get(next_alert) {
            let et = at.eval_time.as_millis() as i64;
            if !(ts <= et && et < ts + eval_interval) {
                break;
            }
            next_alert += 1;
            let mut got: Vec<AlertPair> = Vec::new();
            for g in &groups {
                for r in &g.rules {
                    if r.name() != at.alertname || !r.is_alerting() {
                        continue;
                    }
                    for a in r.alerts.values() {
                        if a.state == AlertState::Firing {
                            got.push((
                                a.labels
                                    .iter()
                                    .map(|l| (l.name.clone(), l.value.clone()))
                                    .collect(),
                                a.annotations.clone(),
                            ));
                        }
                    }
                }
            }
            let mut exp: Vec<AlertPair> = at
                .exp_alerts
                .iter()
                .map(|e| {
                    let mut l = e.exp_labels.clone();
                    l.insert("alertname".into(), at.alertname.clone());
                    (l, e.exp_annotations.clone())
                })
                .collect();
            got.sort();
            exp.sort();
            if got != exp {
                errors.push(format!(
                    "    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                    at.alertname,
                    at.eval_time,
                    fmt_alerts(&exp),
                    fmt_alerts(&got)
                ));
            }
        }
        ts += eval_interval;
    }
    for et in &t.promql_expr_test {
        let at = et.eval_time.as_millis() as i64;
        let got = match querier.instant(&et.expr, at) {
            Ok(g) => g,
            Err(e) => {
                errors.push(format!(
                    "    expr: {:?}, time: {}, err: {e}",
                    et.expr, et.eval_time
                ));
                continue;
            }
        };
        let mut exp = Vec::new();
        for s in &et.exp_samples {
            let l = if s.labels.trim().is_empty() {
                Labels::EMPTY
            } else {
                parse_series(&s.labels)?
            };
            exp.push((l, s.value));
        }
        let mut got: Vec<(Labels, f64)> = got.into_iter().map(|s| (s.labels, s.v)).collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        exp.sort_by(|a, b| a.0.cmp(&b.0));
        let same = got.len() == exp.len()
            && got
                .iter()
                .zip(&exp)
                .all(|(g, e)| g.0 == e.0 && floats_equal(g.1, e.1, fuzzy));
        if !same {
            let show = |v: &[(Labels, f64)]| {
                let parts: Vec<String> = v
                    .iter()
                    .map(|(l, x)| format!("{{Labels:{l} Value:{}}}", crate::gofmt::fmt_v(*x)))
                    .collect();
                format!("[{}]", parts.join(" "))
            };
            errors.push(format!(
                "    expr: {:?}, time: {},\n        exp: {}\n        got: {}",
                et.expr,
                et.eval_time,
                show(&exp),
                show(&got)
            ));
        }
    }
    Ok(errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use SeriesValue::*;

    #[test]
    fn expanding_notation() {
        assert_eq!(
            expand_values("-2+4x3").unwrap(),
            vec![Value(-2.0), Value(2.0), Value(6.0), Value(10.0)]
        );
        assert_eq!(
            expand_values("1-2x4").unwrap(),
            vec![
                Value(1.0),
                Value(-1.0),
                Value(-3.0),
                Value(-5.0),
                Value(-7.0)
            ]
        );
        assert_eq!(expand_values("1x4").unwrap().len(), 5);
        assert_eq!(
            expand_values("1 _x3 stale").unwrap(),
            vec![Value(1.0), Missing, Missing, Missing, Stale]
        );
        assert_eq!(
            expand_values("1e3 _ 2.5").unwrap(),
            vec![Value(1000.0), Missing, Value(2.5)]
        );
        assert_eq!(
            expand_values("1e2+1e1x1").unwrap(),
            vec![Value(100.0), Value(110.0)]
        );
        assert!(expand_values("abc").is_err());
        assert!(expand_values("1+x").is_err());
    }

    #[test]
    fn series_labels() {
        let l = parse_series("up{job=\"a\", instance=\"b:1\"}").unwrap();
        assert_eq!(l.get("__name__"), Some("up"));
        assert_eq!(l.get("job"), Some("a"));
        assert!(parse_series("up{job=~\"a\"}").is_err());
    }
}
