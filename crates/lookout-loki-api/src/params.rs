//! Request parameters as Loki reads them: form/query decoding, timestamps (ns, float seconds,
//! RFC 3339), durations (Prometheus syntax or float seconds) and stream label sets.

use std::time::Duration;

use lookout_storage::Labels;

/// Decodes `application/x-www-form-urlencoded` text.
pub fn parse_urlencoded(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The request's parameters (query string first, then form body).
#[derive(Default, Debug)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, v)| n == k && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Loki's timestamp forms: float seconds (`1700000000.5`), integer seconds (up to 10 digits)
/// or nanoseconds, or RFC 3339.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if s.contains('.') && !s.contains('-') && !s.contains(':') {
        let f: f64 = s
            .parse()
            .map_err(|_| format!("cannot parse {s:?} to a valid timestamp"))?;
        return Ok((f * 1e9).round() as i64);
    }
    if let Ok(n) = s.parse::<i64>() {
        return Ok(if s.trim_start_matches('-').len() <= 10 {
            n.saturating_mul(1_000_000_000)
        } else {
            n
        });
    }
    parse_rfc3339(s).ok_or_else(|| format!("cannot parse {s:?} to a valid timestamp"))
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (
        n(0..4)?,
        n(5..7)?,
        n(8..10)?,
        n(11..13)?,
        n(14..16)?,
        n(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let st = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = s.get(st..i)?;
        if digits.is_empty() {
            return None;
        }
        let mut v: i64 = digits.get(..digits.len().min(9))?.parse().ok()?;
        for _ in digits.len().min(9)..9 {
            v *= 10;
        }
        frac = v;
    }
    let offset = match s.get(i..)? {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) => {
            let oh: i64 = tz.get(1..3)?.parse().ok()?;
            let om: i64 = tz.get(4..6)?.parse().ok()?;
            let o = oh * 3600 + om * 60;
            if tz.starts_with('-') { -o } else { o }
        }
        _ => return None,
    };
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset;
    secs.checked_mul(1_000_000_000)?.checked_add(frac)
}

/// Float seconds or a Prometheus duration (`5m`, `1h30m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() || f < 0.0 {
            return Err(format!("cannot parse {s:?} to a valid duration"));
        }
        return Ok(Duration::from_secs_f64(f));
    }
    s.parse::<lookout_config::Duration>()
        .map(|d| d.as_std())
        .map_err(|_| format!("cannot parse {s:?} to a valid duration"))
}

/// Parses a stream label set as pushed (`{app="api", level="info"}`).
pub fn parse_labels(s: &str) -> Result<Labels, String> {
    let err = |why: &str| format!("error parsing labels '{s}': {why}");
    let t = s.trim();
    let inner = t
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| err("expected a label set in braces"))?;
    let b = inner.as_bytes();
    let mut i = 0;
    let mut pairs: Vec<(String, String)> = Vec::new();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let st = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        let name = &inner[st..i];
        if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
            return Err(err("invalid label name"));
        }
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b.get(i) != Some(&b'=') {
            return Err(err("expected '=' after the label name"));
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b.get(i) != Some(&b'"') {
            return Err(err("expected a quoted label value"));
        }
        i += 1;
        let mut v = String::new();
        loop {
            let c = inner[i..]
                .chars()
                .next()
                .ok_or_else(|| err("unterminated label value"))?;
            i += c.len_utf8();
            match c {
                '"' => break,
                '\\' => {
                    let e = inner[i..].chars().next().ok_or_else(|| err("bad escape"))?;
                    i += e.len_utf8();
                    v.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => other,
                    });
                }
                c => v.push(c),
            }
        }
        if pairs.iter().any(|(n, _)| n == name) {
            return Err(err(&format!("duplicate label name {name:?}")));
        }
        pairs.push((name.to_string(), v));
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        match b.get(i) {
            Some(b',') => i += 1,
            None => break,
            _ => return Err(err("expected ',' between labels")),
        }
    }
    Ok(Labels::from_pairs(pairs))
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)` as Prometheus and Loki print sample values.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000_000_000_000);
        assert_eq!(
            parse_time("1700000000.5").unwrap(),
            1_700_000_000_500_000_000
        );
        assert_eq!(
            parse_time("1700000000123456789").unwrap(),
            1_700_000_000_123_456_789
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20.5Z").unwrap(),
            1_700_000_000_500_000_000
        );
        assert_eq!(
            parse_time("2023-11-15T00:13:20+02:00").unwrap(),
            1_700_000_000_000_000_000
        );
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn labels_and_urlencoding() {
        let l = parse_labels(r#"{app="api", msg="a \"q\" b", x="é"}"#).unwrap();
        assert_eq!(l.get("msg"), Some(r#"a "q" b"#));
        assert_eq!(l.get("x"), Some("é"));
        assert!(parse_labels("{app=api}").is_err());
        assert!(parse_labels(r#"{1a="x"}"#).is_err());
        assert!(parse_labels(r#"{a="x",a="y"}"#).is_err());
        assert_eq!(
            parse_urlencoded("query=%7Bapp%3D%22a%22%7D+%7C%3D+x&limit=5"),
            vec![
                ("query".to_string(), r#"{app="a"} |= x"#.to_string()),
                ("limit".to_string(), "5".to_string())
            ]
        );
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,40}") {
            let _ = parse_labels(&s);
            let _ = parse_time(&s);
            let _ = parse_duration(&s);
            let _ = parse_urlencoded(&s);
        }
    }
}
