//! Text values from PostgreSQL (simple-query protocol) to metric values, as postgres_exporter
//! 0.11 converts them: numbers, booleans (`t`/`f`, `on`/`off`), timestamps to Unix seconds,
//! NULL to NaN; and `pg_settings` units to seconds or bytes.

/// A column value as a float: NULL and unparsable text are NaN.
pub fn pg_value(v: Option<&str>) -> f64 {
    match v {
        None => f64::NAN,
        Some(s) => parse_scalar(s).unwrap_or(f64::NAN),
    }
}

/// A non-NULL value: number, boolean, or an ISO timestamp (`DateStyle=ISO`) in whole seconds.
pub fn parse_scalar(s: &str) -> Option<f64> {
    let s = s.trim();
    match s {
        "t" | "true" | "on" => return Some(1.0),
        "f" | "false" | "off" => return Some(0.0),
        _ => {}
    }
    if let Ok(v) = s.parse::<f64>() {
        return Some(v);
    }
    // Whole seconds, as Go's `time.Time.Unix()` gives postgres_exporter.
    parse_timestamp(s).map(f64::floor)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM]|-HH[:MM]]` → Unix seconds.
pub fn parse_timestamp(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || (b[10] != b' ' && b[10] != b'T') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse::<i64>().ok() };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 24 || min > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac = 0.0;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        frac = format!("0.{}", &r[..digits]).parse::<f64>().ok()?;
        rest = &r[digits..];
    }
    let mut offset = 0i64;
    if !rest.is_empty() {
        let sign = match rest.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let tz = &rest[1..];
        let (h, m) = match tz.split_once(':') {
            Some((h, m)) => (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?),
            None if tz.len() == 4 => (tz[..2].parse::<i64>().ok()?, tz[2..].parse::<i64>().ok()?),
            None => (tz.parse::<i64>().ok()?, 0),
        };
        offset = sign * (h * 3600 + m * 60);
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86400 + hour * 3600 + min * 60 + sec - offset;
    Some(secs as f64 + frac)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// One `pg_settings` row as postgres_exporter exposes it: `(metric suffix, HELP, value)`;
/// `None` for a value or unit it cannot convert.
pub fn setting_metric(
    name: &str,
    setting: &str,
    unit: &str,
    short_desc: &str,
    vartype: &str,
) -> Option<(String, String, f64)> {
    let base = name.replace('.', "_");
    match vartype {
        "bool" => {
            let v = match setting {
                "on" | "true" => 1.0,
                "off" | "false" => 0.0,
                _ => return None,
            };
            Some((base, short_desc.to_string(), v))
        }
        "integer" | "real" => {
            let raw = setting.trim().parse::<f64>().ok()?;
            let (factor, suffix) = match unit {
                "" => (1.0, ""),
                "ms" => (1e-3, "seconds"),
                "s" => (1.0, "seconds"),
                "min" => (60.0, "seconds"),
                "h" => (3600.0, "seconds"),
                "d" => (86400.0, "seconds"),
                "B" => (1.0, "bytes"),
                "kB" => (1024.0, "bytes"),
                "MB" => (1024.0 * 1024.0, "bytes"),
                "GB" => (1024.0 * 1024.0 * 1024.0, "bytes"),
                "TB" => (1024.0f64.powi(4), "bytes"),
                "8kB" => (8192.0, "bytes"),
                "16kB" => (16384.0, "bytes"),
                "32kB" => (32768.0, "bytes"),
                "16MB" => (16.0 * 1024.0 * 1024.0, "bytes"),
                "32MB" => (32.0 * 1024.0 * 1024.0, "bytes"),
                "64MB" => (64.0 * 1024.0 * 1024.0, "bytes"),
                _ => return None,
            };
            // Negative values are sentinels (-1 = disabled) and are kept as they are.
            let v = if raw < 0.0 { raw } else { raw * factor };
            if suffix.is_empty() {
                Some((base, short_desc.to_string(), v))
            } else {
                Some((
                    format!("{base}_{suffix}"),
                    format!("{short_desc} [Units converted to {suffix}.]"),
                    v,
                ))
            }
        }
        _ => None,
    }
}

/// `15.18 (Debian 15.18-0+deb12u1)` → `15.18.0`, `9.6.24` → `9.6.24`, `17devel` → `17.0.0`.
pub fn short_version(server_version: &str) -> String {
    let head = server_version.split_whitespace().next().unwrap_or("");
    let mut parts: Vec<u64> = Vec::new();
    for p in head.split('.') {
        let digits: String = p.chars().take_while(|c| c.is_ascii_digit()).collect();
        match digits.parse::<u64>() {
            Ok(n) => parts.push(n),
            Err(_) => break,
        }
        if digits.len() != p.len() {
            break;
        }
    }
    while parts.len() < 3 {
        parts.push(0);
    }
    format!("{}.{}.{}", parts[0], parts[1], parts[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars() {
        assert_eq!(pg_value(Some("42")), 42.0);
        assert_eq!(pg_value(Some("t")), 1.0);
        assert_eq!(pg_value(Some("f")), 0.0);
        assert_eq!(pg_value(Some("0.127")), 0.127);
        assert!(pg_value(None).is_nan());
        assert!(pg_value(Some("idle")).is_nan());
        assert_eq!(pg_value(Some("1970-01-01 00:00:01.75+00")), 1.0);
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00+00"), Some(0.0));
        assert_eq!(
            parse_timestamp("2026-05-20 12:34:56.5+00"),
            Some(1_779_280_496.5)
        );
        assert_eq!(
            parse_timestamp("2026-05-20 14:34:56+02"),
            Some(1_779_280_496.0)
        );
        assert_eq!(
            parse_timestamp("2026-05-20 07:04:56-05:30"),
            Some(1_779_280_496.0)
        );
        assert_eq!(
            parse_timestamp("2000-02-29 00:00:00+00"),
            Some(951_782_400.0)
        );
        assert_eq!(parse_timestamp("not a time"), None);
        assert_eq!(parse_timestamp("2026-13-01 00:00:00+00"), None);
    }

    #[test]
    fn settings_like_postgres_exporter() {
        let s = |n, v, u, t| setting_metric(n, v, u, "Desc.", t);
        assert_eq!(
            s("shared_buffers", "16384", "8kB", "integer"),
            Some((
                "shared_buffers_bytes".into(),
                "Desc. [Units converted to bytes.]".into(),
                134_217_728.0
            ))
        );
        assert_eq!(
            s("log_min_duration_statement", "-1", "ms", "integer").map(|x| x.2),
            Some(-1.0)
        );
        assert_eq!(
            s("vacuum_cost_delay", "2", "ms", "real").map(|x| (x.0, x.2)),
            Some(("vacuum_cost_delay_seconds".into(), 0.002))
        );
        assert_eq!(
            s("max_connections", "100", "", "integer"),
            Some(("max_connections".into(), "Desc.".into(), 100.0))
        );
        assert_eq!(s("autovacuum", "on", "", "bool").map(|x| x.2), Some(1.0));
        assert_eq!(
            s("checkpoint_timeout", "5", "min", "integer").map(|x| x.2),
            Some(300.0)
        );
        assert_eq!(
            s("x.y", "1", "", "integer").map(|x| x.0),
            Some("x_y".into())
        );
        assert!(s("weird", "1", "parsecs", "integer").is_none());
        assert!(s("name", "abc", "", "string").is_none());
        assert!(s("bad", "abc", "", "integer").is_none());
    }

    #[test]
    fn versions() {
        assert_eq!(short_version("15.18 (Debian 15.18-0+deb12u1)"), "15.18.0");
        assert_eq!(short_version("9.6.24"), "9.6.24");
        assert_eq!(short_version("17devel"), "17.0.0");
        assert_eq!(short_version(""), "0.0.0");
    }

    proptest::proptest! {
        #[test]
        fn conversions_never_panic(s in "(?s).{0,40}", u in "[a-zA-Z0-9]{0,4}") {
            let _ = pg_value(Some(&s));
            let _ = parse_timestamp(&s);
            let _ = setting_metric(&s, &s, &u, &s, "integer");
            let _ = short_version(&s);
        }

        #[test]
        fn timestamps_round_trip(secs in 0i64..4_000_000_000) {
            let days = secs.div_euclid(86400);
            let rem = secs.rem_euclid(86400);
            // civil_from_days, written independently for the check
            let z = days + 719468;
            let era = z.div_euclid(146097);
            let doe = z - era * 146097;
            let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            let mp = (5 * doy + 2) / 153;
            let d = doy - (153 * mp + 2) / 5 + 1;
            let m = if mp < 10 { mp + 3 } else { mp - 9 };
            let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
            let text = format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}+00", rem / 3600, rem % 3600 / 60, rem % 60);
            proptest::prop_assert_eq!(parse_timestamp(&text), Some(secs as f64));
        }
    }
}
