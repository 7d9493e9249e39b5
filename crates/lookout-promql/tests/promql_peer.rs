//! Runs Prometheus's own PromQL test corpus (`promqltest` scripts, v3.5.0) against the
//! engine over `MemStorage`, and prints eval cases passed/total per file, split into
//! "core", "native histograms" and "experimental" rows.
//!
//! Env: `LOOKOUT_PROMQL_PEER_VERBOSE=1` prints every failing case;
//! `LOOKOUT_ALLOW_MISSING_PEER_TESTS=1` tolerates a missing corpus.

use std::collections::{BTreeMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::Duration;

use lookout_promql::{Engine, EngineOptions, QueryError, QueryResult, Value};
use lookout_storage::memory::MemStorage;
use lookout_storage::{Appendable, Label, Labels, STALE_NAN};

/// Core pass rate this engine has reached; the test fails if it drops below.
const CORE_PASS_FLOOR: f64 = 1.0;

const EXPERIMENTAL_FILES: &[&str] = &[
    "limit.test",
    "duration_expression.test",
    "type_and_unit.test",
    "name_label_dropping.test",
];
const NATIVE_FILES: &[&str] = &["native_histograms.test"];
const NATIVE_FUNCS: &[&str] = &[
    "histogram_count",
    "histogram_sum",
    "histogram_avg",
    "histogram_fraction",
    "histogram_stddev",
    "histogram_stdvar",
];
const EXPERIMENTAL_FUNCS: &[&str] = &[
    "double_exponential_smoothing",
    "info",
    "mad_over_time",
    "ts_of_first_over_time",
    "ts_of_last_over_time",
    "ts_of_max_over_time",
    "ts_of_min_over_time",
    "sort_by_label",
    "sort_by_label_desc",
    "limitk",
    "limit_ratio",
    "first_over_time",
    "histogram_quantiles",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Category {
    Core,
    Native,
    Experimental,
}

#[derive(Clone, Debug)]
enum SeqValue {
    Omitted,
    Float(f64),
    Histogram,
}

#[derive(Default, Clone, Copy)]
struct Tally {
    passed: usize,
    total: usize,
    skipped: usize,
}

struct EvalCmd {
    line: usize,
    expr: String,
    instant_at: Option<i64>,
    range: Option<(i64, i64, i64)>,
    fail: bool,
    warn: bool,
    info: bool,
    ordered: bool,
    expected_fail_message: Option<String>,
    expected_fail_regexp: Option<String>,
    expect_warn: Vec<(bool, String)>,
    expect_info: Vec<(bool, String)>,
    expect_no_warn: bool,
    expect_no_info: bool,
    expect_scalar: Option<f64>,
    expected: Vec<(Labels, Vec<SeqValue>)>,
    raw_expect: Vec<String>,
    has_histogram_expect: bool,
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/peer-tests/promql")
}

/// Prometheus `model.ParseDuration` (units y w d h m s ms, concatenated), in ms.
fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    if s == "0" {
        return Some(0);
    }
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    if b.is_empty() {
        return None;
    }
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return None;
        }
        let n: i64 = s[start..i].parse().ok()?;
        let ustart = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let mult = match &s[ustart..i] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return None,
        };
        total += n * mult;
    }
    Some(total)
}

fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    match t.to_ascii_lowercase().as_str() {
        "inf" | "+inf" => return Some(f64::INFINITY),
        "-inf" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if t.chars()
        .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
    {
        return None;
    }
    t.parse::<f64>().ok()
}

/// Parses `name{a="b"}` (either part optional) and returns the labels and the rest.
fn parse_metric(s: &str) -> Option<(Labels, &str)> {
    let s = s.trim_start();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
        i += 1;
    }
    let name = &s[..i];
    let mut labels: Vec<Label> = Vec::new();
    if !name.is_empty() {
        labels.push(Label::new("__name__", name));
    }
    let mut rest = &s[i..];
    if rest.starts_with('{') {
        let mut chars = rest.char_indices().skip(1).peekable();
        let end;
        loop {
            // skip whitespace/commas
            while let Some(&(_, c)) = chars.peek() {
                if c == ' ' || c == ',' || c == '\t' {
                    chars.next();
                } else {
                    break;
                }
            }
            let &(pos, c) = chars.peek()?;
            if c == '}' {
                end = Some(pos + 1);
                break;
            }
            // label name (possibly quoted)
            let mut lname = String::new();
            if c == '"' {
                chars.next();
                loop {
                    let (_, c) = chars.next()?;
                    if c == '"' {
                        break;
                    }
                    lname.push(c);
                }
            } else {
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_alphanumeric() || c == '_' || c == ':' {
                        lname.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
            }
            while let Some(&(_, c)) = chars.peek() {
                if c == ' ' {
                    chars.next();
                } else {
                    break;
                }
            }
            match chars.peek() {
                Some(&(_, '=')) => {
                    chars.next();
                }
                Some(&(_, ',')) | Some(&(_, '}')) => {
                    // bare quoted metric name inside braces
                    labels.push(Label::new("__name__", lname));
                    continue;
                }
                _ => return None,
            }
            while let Some(&(_, c)) = chars.peek() {
                if c == ' ' {
                    chars.next();
                } else {
                    break;
                }
            }
            let (_, q) = chars.next()?;
            if q != '"' && q != '\'' && q != '`' {
                return None;
            }
            let mut val = String::new();
            loop {
                let (_, c) = chars.next()?;
                if c == q {
                    break;
                }
                if c == '\\' && q != '`' {
                    let (_, e) = chars.next()?;
                    match e {
                        'n' => val.push('\n'),
                        't' => val.push('\t'),
                        '\\' => val.push('\\'),
                        '"' => val.push('"'),
                        '\'' => val.push('\''),
                        'x' => {
                            let h: String = [chars.next()?.1, chars.next()?.1].iter().collect();
                            let byte = u8::from_str_radix(&h, 16).ok()?;
                            val.push(byte as char);
                        }
                        other => {
                            val.push('\\');
                            val.push(other);
                        }
                    }
                } else {
                    val.push(c);
                }
            }
            labels.push(Label::new(lname, val));
        }
        let end = end?;
        rest = &rest[end..];
    }
    if name.is_empty() && labels.is_empty() && !s.starts_with('{') {
        return None;
    }
    Some((Labels::new(labels), rest))
}

/// Expands a promqltest value sequence (`1+2x3 _ stale 5x2 {{...}}`).
fn parse_values(s: &str) -> Option<Vec<SeqValue>> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        if rest.starts_with("{{") {
            let end = rest.find("}}")?;
            let mut after = &rest[end + 2..];
            // `{{a}}+{{b}}xN` / `{{a}}-{{b}}xN`
            if after.starts_with("+{{") || after.starts_with("-{{") {
                let e2 = after.find("}}")?;
                after = &after[e2 + 2..];
            }
            let tok_end = after.find(char::is_whitespace).unwrap_or(after.len());
            let suffix = &after[..tok_end];
            let mut count = 1usize;
            if let Some(x) = suffix.rfind('x') {
                count = suffix[x + 1..].parse::<usize>().ok()? + 1;
            }
            for _ in 0..count {
                out.push(SeqValue::Histogram);
            }
            rest = after[tok_end..].trim_start();
            continue;
        }
        let tok_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let tok = &rest[..tok_end];
        rest = rest[tok_end..].trim_start();
        if tok == "_" {
            out.push(SeqValue::Omitted);
            continue;
        }
        if let Some(n) = tok.strip_prefix("_x") {
            let n: usize = n.parse().ok()?;
            for _ in 0..n {
                out.push(SeqValue::Omitted);
            }
            continue;
        }
        if tok == "stale" {
            out.push(SeqValue::Float(STALE_NAN));
            continue;
        }
        if let Some(v) = parse_number(tok) {
            out.push(SeqValue::Float(v));
            continue;
        }
        // a+bxN, a-bxN, axN
        let x = tok.rfind('x')?;
        let n: usize = tok[x + 1..].parse().ok()?;
        let head = &tok[..x];
        if head == "stale" {
            for _ in 0..=n {
                out.push(SeqValue::Float(STALE_NAN));
            }
            continue;
        }
        let hb = head.as_bytes();
        let mut split = None;
        for i in 1..hb.len() {
            if (hb[i] == b'+' || hb[i] == b'-') && hb[i - 1] != b'e' && hb[i - 1] != b'E' {
                split = Some(i);
                break;
            }
        }
        let (start, delta) = match split {
            Some(i) => {
                let a = parse_number(&head[..i])?;
                let d = parse_number(&head[i + 1..])?;
                (a, if hb[i] == b'-' { -d } else { d })
            }
            None => (parse_number(head)?, 0.0),
        };
        let mut v = start;
        for _ in 0..=n {
            out.push(SeqValue::Float(v));
            v += delta;
        }
    }
    Some(out)
}

fn almost_equal(a: f64, b: f64) -> bool {
    const EPS: f64 = 1e-6;
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < EPS * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < EPS
}

fn parse_eval(lines: &[String], i: &mut usize) -> Result<EvalCmd, String> {
    let head = lines[*i].clone();
    let (cmd_word, rest) = head
        .split_once(char::is_whitespace)
        .ok_or("bad eval line")?;
    let modifier = cmd_word.strip_prefix("eval").ok_or("bad eval")?;
    let modifier = modifier.strip_prefix('_').unwrap_or("");
    let rest = rest.trim_start();
    let mut cmd = EvalCmd {
        line: *i + 1,
        expr: String::new(),
        instant_at: None,
        range: None,
        fail: modifier == "fail",
        warn: modifier == "warn",
        info: modifier == "info",
        ordered: modifier == "ordered",
        expected_fail_message: None,
        expected_fail_regexp: None,
        expect_warn: Vec::new(),
        expect_info: Vec::new(),
        expect_no_warn: false,
        expect_no_info: false,
        expect_scalar: None,
        expected: Vec::new(),
        raw_expect: Vec::new(),
        has_histogram_expect: false,
    };
    if !matches!(modifier, "" | "fail" | "warn" | "info" | "ordered") {
        return Err(format!("unknown eval modifier {modifier:?}"));
    }
    if let Some(r) = rest.strip_prefix("instant") {
        let r = r.trim_start();
        let r = r
            .strip_prefix("at")
            .ok_or("instant without at")?
            .trim_start();
        let (t, expr) = r.split_once(char::is_whitespace).ok_or("missing expr")?;
        cmd.instant_at = Some(parse_duration(t).ok_or_else(|| format!("bad time {t}"))?);
        cmd.expr = expr.trim().to_string();
    } else if let Some(r) = rest.strip_prefix("range") {
        let r = r
            .trim_start()
            .strip_prefix("from")
            .ok_or("range without from")?
            .trim_start();
        let (from, r) = r.split_once(" to ").ok_or("range without to")?;
        let (to, r) = r.split_once(" step ").ok_or("range without step")?;
        let (step, expr) = r
            .trim_start()
            .split_once(char::is_whitespace)
            .ok_or("missing expr")?;
        let from = parse_duration(from).ok_or("bad from")?;
        let to = parse_duration(to).ok_or("bad to")?;
        let step = parse_duration(step).ok_or("bad step")?;
        cmd.range = Some((from, to, step));
        cmd.expr = expr.trim().to_string();
    } else {
        return Err("eval must be instant or range".into());
    }
    while *i + 1 < lines.len() {
        let l = lines[*i + 1].clone();
        if l.is_empty() {
            break;
        }
        *i += 1;
        cmd.raw_expect.push(l.clone());
        if let Some(m) = l.strip_prefix("expected_fail_message") {
            cmd.expected_fail_message = Some(m.trim().to_string());
            continue;
        }
        if let Some(m) = l.strip_prefix("expected_fail_regexp") {
            cmd.expected_fail_regexp = Some(m.trim().to_string());
            continue;
        }
        if l.split(' ').next() == Some("expect") {
            let body = l["expect".len()..].trim();
            let (kind, tail) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
            let tail = tail.trim();
            let parsed = if let Some(m) = tail.strip_prefix("msg:") {
                Some((false, m.trim().to_string()))
            } else {
                tail.strip_prefix("regex:")
                    .map(|m| (true, m.trim().to_string()))
            };
            match kind {
                "warn" => {
                    cmd.warn = true;
                    if let Some(p) = parsed {
                        cmd.expect_warn.push(p);
                    }
                }
                "info" => {
                    cmd.info = true;
                    if let Some(p) = parsed {
                        cmd.expect_info.push(p);
                    }
                }
                "no_warn" => cmd.expect_no_warn = true,
                "no_info" => cmd.expect_no_info = true,
                "ordered" => cmd.ordered = true,
                "fail" => {
                    cmd.fail = true;
                    if let Some((is_re, m)) = parsed {
                        if is_re {
                            cmd.expected_fail_regexp = Some(m);
                        } else {
                            cmd.expected_fail_message = Some(m);
                        }
                    }
                }
                other => return Err(format!("unknown expect {other:?}")),
            }
            continue;
        }
        if let Some(v) = parse_number(&l) {
            cmd.expect_scalar = Some(v);
            continue;
        }
        let (labels, rest) =
            parse_metric(&l).ok_or_else(|| format!("cannot parse expectation {l:?}"))?;
        let vals = parse_values(rest).ok_or_else(|| format!("cannot parse values {rest:?}"))?;
        if vals.iter().any(|v| matches!(v, SeqValue::Histogram)) {
            cmd.has_histogram_expect = true;
        }
        cmd.expected.push((labels, vals));
    }
    Ok(cmd)
}

fn check_annotations(cmd: &EvalCmd, res: &QueryResult) -> Result<(), String> {
    if !cmd.warn && !res.warnings.is_empty() {
        return Err(format!("unexpected warnings: {:?}", res.warnings));
    }
    if cmd.warn && res.warnings.is_empty() {
        return Err("expected warnings but got none".into());
    }
    if cmd.info && res.infos.is_empty() {
        return Err("expected info annotations but got none".into());
    }
    if cmd.expect_no_info && !res.infos.is_empty() {
        return Err(format!("unexpected infos: {:?}", res.infos));
    }
    if cmd.expect_no_warn && !res.warnings.is_empty() {
        return Err(format!("unexpected warnings: {:?}", res.warnings));
    }
    let check =
        |expected: &[(bool, String)], actual: &[String], kind: &str| -> Result<(), String> {
            if expected.is_empty() {
                return Ok(());
            }
            let matches = |e: &(bool, String), a: &str| {
                if e.0 {
                    regex::Regex::new(&e.1)
                        .map(|r| r.is_match(a))
                        .unwrap_or(false)
                } else {
                    e.1 == a
                }
            };
            for e in expected {
                if !actual.iter().any(|a| matches(e, a)) {
                    return Err(format!("expected {kind} {:?} not found in {actual:?}", e.1));
                }
            }
            for a in actual {
                if !expected.iter().any(|e| matches(e, a)) {
                    return Err(format!("unexpected {kind} {a:?}"));
                }
            }
            Ok(())
        };
    check(&cmd.expect_warn, &res.warnings, "warning")?;
    check(&cmd.expect_info, &res.infos, "info")?;
    Ok(())
}

fn compare_vector(cmd: &EvalCmd, got: &[(Labels, f64)], ordered: bool) -> Result<(), String> {
    if cmd.expect_scalar.is_some() {
        return Err(format!("expected scalar, got vector {got:?}"));
    }
    let mut seen = HashSet::new();
    for (pos, (l, v)) in got.iter().enumerate() {
        let Some(idx) = cmd.expected.iter().position(|(el, _)| el == l) else {
            return Err(format!("unexpected metric {l} in result, has value {v}"));
        };
        if ordered && idx != pos {
            return Err(format!(
                "expected metric {l} at position {} but was at {}",
                idx + 1,
                pos + 1
            ));
        }
        let exp = match cmd.expected[idx].1.first() {
            Some(SeqValue::Float(f)) => *f,
            other => return Err(format!("unsupported expectation {other:?}")),
        };
        if !almost_equal(exp, *v) {
            return Err(format!("expected {exp} for {l} but got {v}"));
        }
        seen.insert(idx);
    }
    for (i, (l, _)) in cmd.expected.iter().enumerate() {
        if !seen.contains(&i) {
            return Err(format!("expected metric {l} not found"));
        }
    }
    Ok(())
}

fn compare_result(cmd: &EvalCmd, value: &Value) -> Result<(), String> {
    match value {
        Value::Scalar { v, .. } => match cmd.expect_scalar {
            Some(e) if almost_equal(e, *v) => Ok(()),
            Some(e) => Err(format!("expected scalar {e} but got {v}")),
            None => Err(format!(
                "expected vector or matrix result, but got scalar {v}"
            )),
        },
        Value::String { s, .. } => Err(format!("unexpected string result {s:?}")),
        Value::Vector(vs) => {
            let got: Vec<(Labels, f64)> = vs.iter().map(|s| (s.labels.clone(), s.v)).collect();
            compare_vector(cmd, &got, cmd.ordered)
        }
        Value::Matrix(m) => {
            if cmd.ordered {
                return Err("expected ordered result, but query returned a matrix".into());
            }
            if cmd.expect_scalar.is_some() {
                return Err("expected scalar result, but got matrix".into());
            }
            let (start, end, step) =
                cmd.range
                    .unwrap_or((cmd.instant_at.unwrap_or(0), cmd.instant_at.unwrap_or(0), 0));
            let mut seen = HashSet::new();
            for s in m {
                let Some(idx) = cmd.expected.iter().position(|(el, _)| el == &s.labels) else {
                    return Err(format!(
                        "unexpected metric {} in result, has {:?}",
                        s.labels, s.samples
                    ));
                };
                seen.insert(idx);
                let mut exp: Vec<(i64, f64)> = Vec::new();
                for (i, e) in cmd.expected[idx].1.iter().enumerate() {
                    let t = start + i as i64 * step;
                    if t > end {
                        return Err("expected more points than the range can return".into());
                    }
                    match e {
                        SeqValue::Float(f) => exp.push((t, *f)),
                        SeqValue::Omitted => {}
                        SeqValue::Histogram => {
                            return Err("histogram expectations are not supported".into());
                        }
                    }
                }
                if exp.len() != s.samples.len() {
                    return Err(format!(
                        "expected {} points for {}, got {:?}",
                        exp.len(),
                        s.labels,
                        s.samples.iter().map(|x| (x.t, x.v)).collect::<Vec<_>>()
                    ));
                }
                for ((et, ev), got) in exp.iter().zip(s.samples.iter()) {
                    if *et != got.t || !almost_equal(*ev, got.v) {
                        return Err(format!(
                            "for {}: expected ({et}, {ev}) got ({}, {})",
                            s.labels, got.t, got.v
                        ));
                    }
                }
            }
            for (i, (l, _)) in cmd.expected.iter().enumerate() {
                if !seen.contains(&i) {
                    return Err(format!("expected metric {l} not found"));
                }
            }
            Ok(())
        }
    }
}

fn check_failure(cmd: &EvalCmd, err: &QueryError) -> Result<(), String> {
    let msg = err.to_string();
    if let Some(m) = &cmd.expected_fail_message
        && *m != msg
    {
        return Err(format!("expected error {m:?}, got {msg:?}"));
    }
    if let Some(re) = &cmd.expected_fail_regexp {
        let r = regex::Regex::new(re).map_err(|e| e.to_string())?;
        if !r.is_match(&msg) {
            return Err(format!("expected error matching {re:?}, got {msg:?}"));
        }
    }
    Ok(())
}

/// Functions whose result depends on the evaluation time even with step-invariant
/// arguments; promqltest skips the `@` variants for them.
const AT_UNSAFE_FUNCS: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
];

/// promqltest's `atModifierTestCases`: the expression with `@ <eval time>` on every selector
/// and subquery lacking one (not inside a subquery that has one), evaluated at other times.
fn at_modifier_variants(expr: &str, t: i64) -> Vec<(String, i64)> {
    use promql_parser::parser::{AtModifier, Expr};
    fn walk(e: &mut Expr, at: &AtModifier, unsafe_fn: &mut bool) {
        match e {
            Expr::VectorSelector(vs) if vs.at.is_none() => vs.at = Some(at.clone()),
            Expr::MatrixSelector(ms) if ms.vs.at.is_none() => ms.vs.at = Some(at.clone()),
            Expr::Subquery(sq) => {
                // Selectors inside a subquery with `@` keep their own timing.
                if sq.at.is_none() {
                    sq.at = Some(at.clone());
                }
                check_unsafe(&sq.expr, unsafe_fn);
            }
            Expr::Aggregate(a) => {
                walk(&mut a.expr, at, unsafe_fn);
                if let Some(p) = &mut a.param {
                    walk(p, at, unsafe_fn);
                }
            }
            Expr::Unary(u) => walk(&mut u.expr, at, unsafe_fn),
            Expr::Binary(b) => {
                walk(&mut b.lhs, at, unsafe_fn);
                walk(&mut b.rhs, at, unsafe_fn);
            }
            Expr::Paren(p) => walk(&mut p.expr, at, unsafe_fn),
            Expr::Call(c) => {
                if AT_UNSAFE_FUNCS.contains(&c.func.name) {
                    *unsafe_fn = true;
                }
                for a in &mut c.args.args {
                    walk(a, at, unsafe_fn);
                }
            }
            _ => {}
        }
    }
    fn check_unsafe(e: &Expr, unsafe_fn: &mut bool) {
        match e {
            Expr::Call(c) => {
                if AT_UNSAFE_FUNCS.contains(&c.func.name) {
                    *unsafe_fn = true;
                }
                c.args.args.iter().for_each(|a| check_unsafe(a, unsafe_fn));
            }
            Expr::Aggregate(a) => {
                check_unsafe(&a.expr, unsafe_fn);
                if let Some(p) = &a.param {
                    check_unsafe(p, unsafe_fn);
                }
            }
            Expr::Unary(u) => check_unsafe(&u.expr, unsafe_fn),
            Expr::Binary(b) => {
                check_unsafe(&b.lhs, unsafe_fn);
                check_unsafe(&b.rhs, unsafe_fn);
            }
            Expr::Paren(p) => check_unsafe(&p.expr, unsafe_fn),
            Expr::Subquery(s) => check_unsafe(&s.expr, unsafe_fn),
            _ => {}
        }
    }
    let Ok(mut e) = promql_parser::parser::parse(expr) else {
        return Vec::new();
    };
    let Ok(at) = AtModifier::try_from(t as f64 / 1000.0) else {
        return Vec::new();
    };
    let mut unsafe_fn = false;
    walk(&mut e, &at, &mut unsafe_fn);
    if unsafe_fn {
        return Vec::new();
    }
    let s = e.to_string();
    let times: Vec<i64> = if t == 0 {
        vec![-1000, 0, 1000]
    } else {
        vec![-10 * t, 0, t / 5, t, 10 * t]
    };
    times.into_iter().map(|et| (s.clone(), et)).collect()
}

fn run_eval(engine: &Engine, storage: &MemStorage, cmd: &EvalCmd) -> Result<(), String> {
    if cmd.range.is_none() {
        run_instant(engine, storage, cmd, &cmd.expr, cmd.instant_at.unwrap_or(0))?;
        for (expr, t) in at_modifier_variants(&cmd.expr, cmd.instant_at.unwrap_or(0)) {
            run_instant(engine, storage, cmd, &expr, t)
                .map_err(|e| format!("@ variant {expr:?} at {t}ms: {e}"))?;
        }
        return Ok(());
    }
    run_range(engine, storage, cmd)
}

fn run_range(engine: &Engine, storage: &MemStorage, cmd: &EvalCmd) -> Result<(), String> {
    if let Some((start, end, step)) = cmd.range {
        let res = engine.range_query(
            storage,
            &cmd.expr,
            start,
            end,
            Duration::from_millis(step as u64),
        );
        return match res {
            Err(e) if cmd.fail => check_failure(cmd, &e),
            Err(e) => Err(format!("error evaluating query: {e}")),
            Ok(_) if cmd.fail => Err("expected error but got none".into()),
            Ok(r) => {
                check_annotations(cmd, &r)?;
                compare_result(cmd, &r.value)
            }
        };
    }
    Err("not a range command".into())
}

fn run_instant(
    engine: &Engine,
    storage: &MemStorage,
    cmd: &EvalCmd,
    expr: &str,
    t: i64,
) -> Result<(), String> {
    let res = engine.instant_query(storage, expr, t);
    let r = match res {
        Err(e) if cmd.fail => return check_failure(cmd, &e),
        Err(e) => return Err(format!("error evaluating query: {e}")),
        Ok(_) if cmd.fail => return Err("expected error but got none".into()),
        Ok(r) => r,
    };
    check_annotations(cmd, &r)?;
    compare_result(cmd, &r.value)?;
    if cmd.ordered || matches!(r.value, Value::Matrix(_) | Value::String { .. }) {
        return Ok(());
    }
    // Same result in range mode, at the middle step.
    let rr = engine
        .range_query(
            storage,
            expr,
            t - 60_000,
            t + 60_000,
            Duration::from_secs(60),
        )
        .map_err(|e| format!("range-mode evaluation failed: {e}"))?;
    let Value::Matrix(m) = &rr.value else {
        return Err("range mode did not return a matrix".into());
    };
    let mut vec: Vec<(Labels, f64)> = Vec::new();
    for s in m {
        if let Some(p) = s.samples.iter().find(|p| p.t == t) {
            vec.push((s.labels.clone(), p.v));
        }
    }
    if matches!(r.value, Value::Scalar { .. }) {
        let v = vec.first().map(|x| x.1).unwrap_or(f64::NAN);
        return compare_result(cmd, &Value::Scalar { t, v })
            .map_err(|e| format!("range mode: {e}"));
    }
    compare_vector(cmd, &vec, false).map_err(|e| format!("range mode: {e}"))
}

/// Metric-name-like identifiers in an expression (cheap tokenizer).
fn identifiers(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_str: Option<char> = None;
    for c in expr.chars() {
        if let Some(q) = in_str {
            if c == q {
                in_str = None;
            }
            continue;
        }
        if c == '"' || c == '\'' || c == '`' {
            in_str = Some(c);
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            cur.push(c);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

struct FileState {
    /// Label sets of series holding native histogram samples (loaded with `{{...}}` or
    /// converted by `load_with_nhcb`).
    histogram_series: Vec<Labels>,
}

fn categorize(file: &str, cmd: &EvalCmd, st: &FileState) -> Category {
    if EXPERIMENTAL_FILES.contains(&file) {
        return Category::Experimental;
    }
    if NATIVE_FILES.contains(&file) {
        return Category::Native;
    }
    let ids = identifiers(&cmd.expr);
    if cmd.has_histogram_expect
        || ids.iter().any(|i| NATIVE_FUNCS.contains(&i.as_str()))
        || cmd.raw_expect.iter().any(|l| l.contains("{{"))
        || touches_histograms(&cmd.expr, st)
    {
        return Category::Native;
    }
    if ids.iter().any(|i| EXPERIMENTAL_FUNCS.contains(&i.as_str())) {
        return Category::Experimental;
    }
    Category::Core
}

fn load(
    storage: &MemStorage,
    lines: &[String],
    i: &mut usize,
    st: &mut FileState,
) -> Result<(), String> {
    let head = &lines[*i];
    let (word, interval) = head.split_once(char::is_whitespace).ok_or("bad load")?;
    let with_nhcb = word == "load_with_nhcb";
    let gap = parse_duration(interval).ok_or_else(|| format!("bad load interval {interval}"))?;
    // Later definitions of the same series replace earlier ones, as in promqltest.
    let mut defs: Vec<(Labels, Vec<SeqValue>)> = Vec::new();
    let mut errors = Vec::new();
    while *i + 1 < lines.len() && !lines[*i + 1].is_empty() {
        *i += 1;
        let l = &lines[*i];
        let Some((labels, rest)) = parse_metric(l) else {
            errors.push(format!("bad series {l:?}"));
            continue;
        };
        let Some(vals) = parse_values(rest) else {
            errors.push(format!("bad values {rest:?}"));
            continue;
        };
        let name = labels.metric_name().unwrap_or("").to_string();
        if vals.iter().any(|v| matches!(v, SeqValue::Histogram)) {
            st.histogram_series.push(labels.clone());
        }
        if with_nhcb {
            for suffix in ["_bucket", "_count", "_sum"] {
                if let Some(base) = name.strip_suffix(suffix) {
                    let mut b = labels.builder();
                    b.set("__name__", base);
                    if suffix == "_bucket" {
                        b.del("le");
                    }
                    st.histogram_series.push(b.into_labels());
                }
            }
        }
        match defs.iter_mut().find(|(l, _)| *l == labels) {
            Some(d) => d.1 = vals,
            None => defs.push((labels, vals)),
        }
    }
    let mut app = storage.appender();
    for (labels, vals) in &defs {
        for (k, v) in vals.iter().enumerate() {
            if let SeqValue::Float(f) = v
                && let Err(e) = app.append(None, labels, k as i64 * gap, *f)
            {
                errors.push(format!("append {labels}: {e}"));
            }
        }
    }
    app.commit().map_err(|e| e.to_string())?;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Does the expression select any series that holds native histogram samples?
fn touches_histograms(expr: &str, st: &FileState) -> bool {
    use promql_parser::parser::{Expr, VectorSelector};
    fn walk<'a>(e: &'a Expr, out: &mut Vec<&'a VectorSelector>) {
        match e {
            Expr::VectorSelector(vs) => out.push(vs),
            Expr::MatrixSelector(ms) => out.push(&ms.vs),
            Expr::Aggregate(a) => {
                walk(&a.expr, out);
                if let Some(p) = &a.param {
                    walk(p, out);
                }
            }
            Expr::Unary(u) => walk(&u.expr, out),
            Expr::Binary(b) => {
                walk(&b.lhs, out);
                walk(&b.rhs, out);
            }
            Expr::Paren(p) => walk(&p.expr, out),
            Expr::Subquery(s) => walk(&s.expr, out),
            Expr::Call(c) => c.args.args.iter().for_each(|a| walk(a, out)),
            _ => {}
        }
    }
    if st.histogram_series.is_empty() {
        return false;
    }
    let Ok(e) = promql_parser::parser::parse(expr) else {
        return false;
    };
    let mut sels = Vec::new();
    walk(&e, &mut sels);
    sels.iter().any(|vs| {
        st.histogram_series.iter().any(|l| {
            vs.name
                .as_ref()
                .is_none_or(|n| l.metric_name() == Some(n.as_str()))
                && vs
                    .matchers
                    .matchers
                    .iter()
                    .all(|m| m.is_match(l.get_or_empty(&m.name)))
        })
    })
}

#[derive(Default)]
struct FileReport {
    rows: BTreeMap<Category, Tally>,
}

fn run_file(engine: &Engine, file: &str, content: &str, verbose: bool) -> FileReport {
    let lines: Vec<String> = content
        .lines()
        .map(|l| {
            let t = l.trim();
            if t.starts_with('#') {
                String::new()
            } else {
                t.to_string()
            }
        })
        .collect();
    let storage = MemStorage::new();
    let mut st = FileState {
        histogram_series: Vec::new(),
    };
    let mut report = FileReport::default();
    let mut ignoring = false;
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].clone();
        if l.is_empty() {
            i += 1;
            continue;
        }
        let word = l
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if word == "clear" {
            storage.clear();
            st.histogram_series.clear();
        } else if word == "ignore" {
            ignoring = true;
        } else if word == "resume" {
            ignoring = false;
        } else if word.starts_with("load") {
            if let Err(e) = load(&storage, &lines, &mut i, &mut st)
                && verbose
            {
                eprintln!("{file}:{}: load failed: {e}", i + 1);
            }
        } else if word.starts_with("eval") {
            let start_line = i + 1;
            match parse_eval(&lines, &mut i) {
                Ok(cmd) => {
                    let cat = categorize(file, &cmd, &st);
                    let tally = report.rows.entry(cat).or_default();
                    tally.total += 1;
                    if ignoring {
                        tally.skipped += 1;
                    } else {
                        let res =
                            catch_unwind(AssertUnwindSafe(|| run_eval(engine, &storage, &cmd)))
                                .unwrap_or_else(|_| Err("panic".into()));
                        match res {
                            Ok(()) => tally.passed += 1,
                            Err(e) => {
                                if verbose {
                                    eprintln!(
                                        "FAIL {file}:{} [{cat:?}] {}\n    expected: {:?}\n    got: {e}",
                                        cmd.line, cmd.expr, cmd.raw_expect
                                    );
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    // Skip the rest of the block; the case counts as failed.
                    while i + 1 < lines.len() && !lines[i + 1].is_empty() {
                        i += 1;
                    }
                    let tally = report.rows.entry(Category::Core).or_default();
                    tally.total += 1;
                    if verbose {
                        eprintln!("FAIL {file}:{start_line}: cannot parse eval command: {e}");
                    }
                }
            }
        } else if verbose {
            eprintln!("{file}:{}: unknown command {l:?}", i + 1);
        }
        i += 1;
    }
    report
}

#[test]
fn promql_peer_corpus() {
    let dir = corpus_dir();
    if !dir.is_dir() {
        if std::env::var("LOOKOUT_ALLOW_MISSING_PEER_TESTS").as_deref() == Ok("1") {
            eprintln!("peer tests missing at {}; skipped", dir.display());
            return;
        }
        panic!(
            "PromQL peer tests not found at {} (set LOOKOUT_ALLOW_MISSING_PEER_TESTS=1 to skip)",
            dir.display()
        );
    }
    let verbose = std::env::var("LOOKOUT_PROMQL_PEER_VERBOSE").as_deref() == Ok("1");
    let engine = Engine::new(EngineOptions {
        max_samples: 10_000_000,
        enable_experimental_functions: true,
        ..EngineOptions::default()
    });
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read peer test dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .test files in {}", dir.display());
    let mut totals: BTreeMap<Category, Tally> = BTreeMap::new();
    println!(
        "{:<28} {:<18} {:>8} {:>8} {:>8}",
        "file", "row", "passed", "total", "skipped"
    );
    for path in &files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        let content = std::fs::read_to_string(path).expect("read test file");
        let report = run_file(&engine, &name, &content, verbose);
        for (cat, t) in &report.rows {
            let label = match cat {
                Category::Core => "core",
                Category::Native => "native histograms",
                Category::Experimental => "experimental",
            };
            println!(
                "{:<28} {:<18} {:>8} {:>8} {:>8}",
                name, label, t.passed, t.total, t.skipped
            );
            let e = totals.entry(*cat).or_default();
            e.passed += t.passed;
            e.total += t.total;
            e.skipped += t.skipped;
        }
    }
    for (cat, t) in &totals {
        let label = match cat {
            Category::Core => "TOTAL core",
            Category::Native => "TOTAL native histograms",
            Category::Experimental => "TOTAL experimental",
        };
        let pct = if t.total > 0 {
            100.0 * t.passed as f64 / t.total as f64
        } else {
            0.0
        };
        println!(
            "{:<47} {:>8} {:>8} {:>8}  ({pct:.1}%)",
            label, t.passed, t.total, t.skipped
        );
    }
    let core = totals.get(&Category::Core).copied().unwrap_or_default();
    let rate = if core.total > 0 {
        core.passed as f64 / core.total as f64
    } else {
        0.0
    };
    assert!(
        rate >= CORE_PASS_FLOOR,
        "core pass rate {rate:.4} fell below the floor {CORE_PASS_FLOOR}"
    );
}
