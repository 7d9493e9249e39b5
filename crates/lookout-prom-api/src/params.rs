//! Request parameters parsed as Prometheus's API does: form values from the body (POST
//! `application/x-www-form-urlencoded`) take precedence over the URL query; times are RFC 3339
//! or float Unix seconds; durations are float seconds or Prometheus durations (`1m30s`).

use std::time::Duration;

use lookout_storage::{METRIC_NAME, MatchOp, Matcher};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::Expr;

use crate::error::ApiError;

/// Milliseconds of Prometheus's `MinTime` / `MaxTime` (the defaults of `start`/`end`).
pub const MIN_TIME_MS: i64 = i64::MIN / 2;
pub const MAX_TIME_MS: i64 = i64::MAX / 2;

/// Go's formatting of Prometheus's `MinTime`/`MaxTime`, which clients send back verbatim.
const MIN_TIME_FORMATTED: &str = "-292273086-05-16T16:47:06Z";
const MAX_TIME_FORMATTED: &str = "292277025-08-18T07:12:54.999999999Z";

/// All form values of one request, body values first.
#[derive(Debug, Default, Clone)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Parses the URL query and, when given, a urlencoded body. As in Go's `r.FormValue`,
    /// body values come first.
    pub fn parse(query: Option<&str>, body: Option<&[u8]>) -> Form {
        let mut pairs = Vec::new();
        if let Some(body) = body {
            pairs.extend(
                form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())),
            );
        }
        if let Some(q) = query {
            pairs.extend(
                form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())),
            );
        }
        Form { pairs }
    }

    /// The first value of `name`, or `""` (Go's `FormValue`).
    pub fn value(&self, name: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// All values of `name`, in order.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// `invalid parameter "<name>": <err>` as a bad_data error.
pub fn invalid_param(name: &str, err: impl std::fmt::Display) -> ApiError {
    ApiError::bad_data(format!("invalid parameter {name:?}: {err}"))
}

/// Prometheus's `parseTime`, returning milliseconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Some(secs) = parse_go_float(s) {
        if secs.is_finite() && secs.abs() < 9.2e15 {
            let whole = secs.trunc();
            let frac = ((secs - whole) * 1000.0).round();
            return Ok(whole as i64 * 1000 + frac as i64);
        }
        return Err(format!("cannot parse {s:?} to a valid timestamp"));
    }
    if let Some(ms) = parse_rfc3339_ms(s) {
        return Ok(ms);
    }
    match s {
        MIN_TIME_FORMATTED => Ok(MIN_TIME_MS),
        MAX_TIME_FORMATTED => Ok(MAX_TIME_MS),
        _ => Err(format!("cannot parse {s:?} to a valid timestamp")),
    }
}

/// Prometheus's `parseTimeParam`: `default` when the parameter is empty.
pub fn parse_time_param(form: &Form, name: &str, default: i64) -> Result<i64, ApiError> {
    let v = form.value(name);
    if v.is_empty() {
        return Ok(default);
    }
    parse_time(v).map_err(|e| invalid_param(name, format!("invalid time value for '{name}': {e}")))
}

/// Prometheus's `parseDuration`: float seconds or a Prometheus duration string. Returns
/// nanoseconds, which may be negative for float input.
pub fn parse_duration_ns(s: &str) -> Result<i128, String> {
    if let Some(d) = parse_go_float(s) {
        let ns = d * 1e9;
        if !ns.is_finite() || ns > i64::MAX as f64 || ns < i64::MIN as f64 {
            return Err(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok(ns as i128);
    }
    match parse_prom_duration(s) {
        Some(d) => Ok(d.as_nanos() as i128),
        None => Err(format!("cannot parse {s:?} to a valid duration")),
    }
}

/// Go's `strconv.ParseFloat` subset: decimal/exponent notation, `Inf`/`NaN` spellings.
/// Rejects what Rust accepts but Go does not (none relevant) and returns `None` on failure.
fn parse_go_float(s: &str) -> Option<f64> {
    if s.is_empty() || s.contains('_') {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    let body = lower.trim_start_matches(['+', '-']);
    if body.starts_with("0x") {
        return None;
    }
    s.parse::<f64>().ok()
}

/// Prometheus duration syntax `[0-9]+(ms|s|m|h|d|w|y)` repeated in descending unit order
/// (e.g. `1h30m`), or `0`.
pub fn parse_prom_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 24 * 3600 * 1000),
        ("w", 7 * 24 * 3600 * 1000),
        ("d", 24 * 3600 * 1000),
        ("h", 3600 * 1000),
        ("m", 60 * 1000),
        ("s", 1000),
        ("ms", 1),
    ];
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total_ms: u64 = 0;
    let mut last_unit = None::<usize>;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let n: u64 = s[start..i].parse().ok()?;
        let rest = &s[i..];
        // "ms" must be tried before "m".
        let unit_idx = if rest.starts_with("ms") {
            6
        } else {
            UNITS
                .iter()
                .position(|(u, _)| u.len() == 1 && rest.starts_with(u))?
        };
        if last_unit.is_some_and(|l| unit_idx <= l) {
            return None;
        }
        last_unit = Some(unit_idx);
        i += UNITS[unit_idx].0.len();
        total_ms = total_ms.checked_add(n.checked_mul(UNITS[unit_idx].1)?)?;
    }
    if total_ms > i64::MAX as u64 / 1_000_000 {
        return None;
    }
    Some(Duration::from_millis(total_ms))
}

/// Formats a duration as Prometheus's `model.Duration` does (`1h30m`, `15s`, `100ms`, `0s`).
pub fn format_prom_duration(d: Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 24 * 3600 * 1000),
        ("w", 7 * 24 * 3600 * 1000),
        ("d", 24 * 3600 * 1000),
        ("h", 3600 * 1000),
        ("m", 60 * 1000),
        ("s", 1000),
        ("ms", 1),
    ];
    for (u, size) in UNITS {
        if ms >= size {
            out.push_str(&format!("{}{}", ms / size, u));
            ms %= size;
        }
    }
    out
}

/// RFC 3339 with optional fractional seconds (Go's `time.RFC3339Nano` layout) → Unix ms
/// (truncated, as Prometheus's `timestamp.FromTime`).
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 59
    {
        return None;
    }
    let mut i = 19;
    let mut nanos: i64 = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = num(start..i)? * 10i64.pow((9 - digits) as u32);
    }
    let offset_secs = match b.get(i)? {
        b'Z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *c == b'-' { -o } else { o }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86400 + hour * 3600 + min * 60 + sec - offset_secs;
    Some(secs * 1000 + nanos / 1_000_000)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats Unix ms as RFC 3339 with nanosecond precision the way Go marshals `time.Time`
/// in UTC (fraction without trailing zeros).
pub fn format_rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        y,
        m,
        d,
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    if milli != 0 {
        let frac = format!("{milli:03}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Prometheus's `parseLimitParam`: empty = 0 (no limit), negative is an error.
pub fn parse_limit(form: &Form) -> Result<usize, ApiError> {
    let s = form.value("limit");
    if s.is_empty() {
        return Ok(0);
    }
    let n: i64 = s.parse().map_err(|_| {
        invalid_param(
            "limit",
            format!("strconv.Atoi: parsing {s:?}: invalid syntax"),
        )
    })?;
    if n < 0 {
        return Err(invalid_param("limit", "limit must be non-negative"));
    }
    Ok(n as usize)
}

/// Parses one series selector (`up{job="x"}`, `{__name__=~"a.*"}`) into matcher sets (more
/// than one when the selector uses `or`).
pub fn parse_selector(s: &str) -> Result<Vec<Vec<Matcher>>, String> {
    let expr = promql_parser::parser::parse(s)?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(format!(
            "parse error: expected a series selector, got {s:?}"
        ));
    };
    if vs.offset.is_some() || vs.at.is_some() {
        return Err(format!(
            "parse error: unexpected offset or @ modifier in series selector {s:?}"
        ));
    }
    let groups: Vec<&Vec<promql_parser::label::Matcher>> = if vs.matchers.or_matchers.is_empty() {
        vec![&vs.matchers.matchers]
    } else {
        vs.matchers.or_matchers.iter().collect()
    };
    let mut sets = Vec::with_capacity(groups.len());
    for group in groups {
        let mut set = Vec::with_capacity(group.len() + 1);
        if let Some(name) = &vs.name {
            set.push(Matcher::equal(METRIC_NAME, name.clone()));
        }
        for m in group {
            let op = match m.op {
                PMatchOp::Equal => MatchOp::Equal,
                PMatchOp::NotEqual => MatchOp::NotEqual,
                PMatchOp::Re(_) => MatchOp::Regex,
                PMatchOp::NotRe(_) => MatchOp::NotRegex,
            };
            set.push(Matcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| e.to_string())?);
        }
        sets.push(set);
    }
    Ok(sets)
}

/// Prometheus's `parseMatchersParam`: every `match[]` parsed; each set must contain a
/// matcher that does not match the empty string.
pub fn parse_matchers_param(values: &[&str]) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let mut all = Vec::new();
    for v in values {
        let sets = parse_selector(v).map_err(|e| invalid_param("match[]", e))?;
        for set in sets {
            if !set.iter().any(|m| !m.matches_empty()) {
                return Err(ApiError::bad_data(
                    "match[] must contain at least one non-empty matcher",
                ));
            }
            all.push(set);
        }
    }
    Ok(all)
}

/// Undoes Prometheus's `U__` value-encoding escape of a label name in a URL path
/// (`U__my_2e_name` → `my.name`, `__` → `_`). Returns the input unchanged when it is not a
/// valid escape.
pub fn unescape_label_name(name: &str) -> String {
    let Some(esc) = name.strip_prefix("U__") else {
        return name.to_string();
    };
    let mut out = String::with_capacity(esc.len());
    let b = esc.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'_' {
            // Copy one whole UTF-8 character.
            let ch_len = esc[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&esc[i..i + ch_len]);
            i += ch_len;
            continue;
        }
        i += 1;
        match b.get(i) {
            None => return name.to_string(),
            Some(b'_') => {
                out.push('_');
                i += 1;
            }
            Some(_) => {
                let start = i;
                while i < b.len() && b[i] != b'_' {
                    i += 1;
                }
                if i >= b.len() || i - start > 6 || i == start {
                    return name.to_string();
                }
                let Ok(code) = u32::from_str_radix(&esc[start..i], 16) else {
                    return name.to_string();
                };
                let Some(c) = char::from_u32(code) else {
                    return name.to_string();
                };
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1700000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("1700000000.1234"), Ok(1_700_000_000_123));
        assert_eq!(parse_time("1700000000.1235"), Ok(1_700_000_000_124));
        assert_eq!(parse_time("-1.5"), Ok(-1500));
        assert_eq!(parse_time("4"), Ok(4000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(
            parse_time("2023-11-14T22:13:20.123456789Z"),
            Ok(1_700_000_000_123)
        );
        assert_eq!(
            parse_time("2023-11-15T07:13:20+09:00"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(parse_time("1969-12-31T23:59:59Z"), Ok(-1000));
        assert_eq!(parse_time("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000));
        assert_eq!(
            parse_time("x"),
            Err("cannot parse \"x\" to a valid timestamp".into())
        );
        assert!(parse_time("2023-02-29T00:00:00Z").is_err());
        assert!(parse_time("2023-11-14 22:13:20Z").is_err());
        assert!(parse_time("NaN").is_err());
        assert_eq!(parse_time(MIN_TIME_FORMATTED), Ok(MIN_TIME_MS));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ns("15"), Ok(15_000_000_000));
        assert_eq!(parse_duration_ns("0.5"), Ok(500_000_000));
        assert_eq!(parse_duration_ns("-1"), Ok(-1_000_000_000));
        assert_eq!(parse_duration_ns("15s"), Ok(15_000_000_000));
        assert_eq!(parse_duration_ns("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_duration_ns("100ms"), Ok(100_000_000));
        assert_eq!(parse_duration_ns("1m1ms"), Ok(60_001_000_000));
        assert_eq!(
            parse_duration_ns(""),
            Err("cannot parse \"\" to a valid duration".into())
        );
        assert!(parse_duration_ns("30m1h").is_err());
        assert!(parse_duration_ns("1x").is_err());
        assert!(parse_duration_ns("1e30").unwrap_err().contains("overflows"));
    }

    #[test]
    fn duration_formatting() {
        assert_eq!(format_prom_duration(Duration::from_secs(15)), "15s");
        assert_eq!(format_prom_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_prom_duration(Duration::from_millis(100)), "100ms");
        assert_eq!(format_prom_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn rfc3339_formatting() {
        assert_eq!(format_rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_rfc3339(1_700_000_000_120), "2023-11-14T22:13:20.12Z");
        assert_eq!(format_rfc3339(-1000), "1969-12-31T23:59:59Z");
        assert_eq!(
            parse_rfc3339_ms(&format_rfc3339(951_782_400_005)),
            Some(951_782_400_005)
        );
    }

    #[test]
    fn form_body_wins() {
        let f = Form::parse(
            Some("query=a&time=1&match[]=x"),
            Some(b"query=b&match%5B%5D=y"),
        );
        assert_eq!(f.value("query"), "b");
        assert_eq!(f.value("time"), "1");
        assert_eq!(f.values("match[]"), vec!["y", "x"]);
        assert_eq!(f.value("missing"), "");
    }

    #[test]
    fn selectors() {
        let sets = parse_selector(r#"up{job=~"a|b", x!="1"}"#).unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].len(), 3);
        assert_eq!(sets[0][0], Matcher::equal("__name__", "up"));
        let sets = parse_selector(r#"{a="1" or b="2"}"#).unwrap();
        assert_eq!(sets.len(), 2);
        assert!(parse_selector("rate(x[5m])").is_err());
        assert!(parse_selector("up{").is_err());
        let e = parse_matchers_param(&[r#"{a=~".*"}"#]).unwrap_err();
        assert!(e.message.contains("at least one non-empty matcher"));
    }

    #[test]
    fn label_name_unescaping() {
        assert_eq!(unescape_label_name("job"), "job");
        assert_eq!(unescape_label_name("U__my_2e_name"), "my.name");
        assert_eq!(unescape_label_name("U__a__b"), "a_b");
        assert_eq!(unescape_label_name("U__bad_zz_"), "U__bad_zz_");
        assert_eq!(unescape_label_name("U__x_1F600_"), "x😀");
    }
}
