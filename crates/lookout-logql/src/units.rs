//! Number, duration and byte-size conversions with the semantics (and error texts) of the Go
//! functions Loki uses: `strconv.ParseFloat`, `time.ParseDuration`, Prometheus's
//! `model.ParseDuration` (adds `d`, `w`, `y`) and go-humanize's `ParseBytes`.

/// `strconv.ParseFloat(s, 64)`: decimal, `inf`/`infinity`/`nan` (any case, optional sign),
/// hexadecimal floats with a mandatory `p` exponent, `_` digit separators only in literals
/// (not accepted here).
pub fn parse_go_float(s: &str) -> Result<f64, String> {
    let err = || {
        format!(
            "strconv.ParseFloat: parsing {}: invalid syntax",
            go_quote(s)
        )
    };
    if s.is_empty() {
        return Err(err());
    }
    let (neg, body) = match s.as_bytes()[0] {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let v = if lower == "inf" || lower == "infinity" {
        f64::INFINITY
    } else if lower == "nan" {
        f64::NAN
    } else if let Some(hex) = lower.strip_prefix("0x") {
        parse_hex_float(hex).ok_or_else(err)?
    } else {
        // Only digits, one dot and an exponent; Rust's parser would also accept "inf" forms.
        let ok = body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
            && body.bytes().any(|b| b.is_ascii_digit());
        if !ok {
            return Err(err());
        }
        let v: f64 = body.parse().map_err(|_| err())?;
        if v.is_infinite() {
            return Err(format!(
                "strconv.ParseFloat: parsing {}: value out of range",
                go_quote(s)
            ));
        }
        v
    };
    Ok(if neg { -v } else { v })
}

fn parse_hex_float(s: &str) -> Option<f64> {
    let p = s.find('p')?;
    let (mant, exp) = (&s[..p], &s[p + 1..]);
    let exp: i32 = exp.parse().ok()?;
    let (int_part, frac_part) = match mant.find('.') {
        Some(d) => (&mant[..d], &mant[d + 1..]),
        None => (mant, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let mut v = 0f64;
    for c in int_part.chars() {
        v = v * 16.0 + c.to_digit(16)? as f64;
    }
    let mut scale = 1.0 / 16.0;
    for c in frac_part.chars() {
        v += c.to_digit(16)? as f64 * scale;
        scale /= 16.0;
    }
    Some(v * 2f64.powi(exp))
}

/// Go's `%q` quoting of a string (enough for error messages).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn unit_ns(unit: &str, extended: bool) -> Option<f64> {
    Some(match unit {
        "ns" => 1.0,
        "us" | "µs" | "μs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        "d" if extended => 86400e9,
        "w" if extended => 7.0 * 86400e9,
        "y" if extended => 365.0 * 86400e9,
        _ => return None,
    })
}

/// `time.ParseDuration`, returning nanoseconds. With `extended`, also accepts `d`, `w` and `y`
/// (as LogQL duration literals do).
pub fn parse_go_duration(s: &str, extended: bool) -> Result<f64, String> {
    let orig = s;
    let invalid = || format!("time: invalid duration {}", go_quote(orig));
    let mut s = s;
    let mut neg = false;
    if let Some(r) = s.strip_prefix('-') {
        neg = true;
        s = r;
    } else if let Some(r) = s.strip_prefix('+') {
        s = r;
    }
    if s == "0" {
        return Ok(0.0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let mut i = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let int_digits = i;
        let mut frac_digits = 0;
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let st = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            frac_digits = i - st;
        }
        if int_digits == 0 && frac_digits == 0 {
            return Err(invalid());
        }
        let num: f64 = s[..i].parse().map_err(|_| invalid())?;
        let rest = &s[i..];
        let ulen = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        if ulen == 0 {
            return Err(format!("time: missing unit in duration {}", go_quote(orig)));
        }
        let unit = &rest[..ulen];
        let Some(mult) = unit_ns(unit, extended) else {
            return Err(format!(
                "time: unknown unit {} in duration {}",
                go_quote(unit),
                go_quote(orig)
            ));
        };
        total += num * mult;
        s = &rest[ulen..];
    }
    Ok(if neg { -total } else { total })
}

fn bytes_unit(unit: &str) -> Option<u64> {
    const K: u64 = 1000;
    const KI: u64 = 1024;
    Some(match unit {
        "" | "b" => 1,
        "k" | "kb" => K,
        "kib" | "ki" => KI,
        "m" | "mb" => K.pow(2),
        "mib" | "mi" => KI.pow(2),
        "g" | "gb" => K.pow(3),
        "gib" | "gi" => KI.pow(3),
        "t" | "tb" => K.pow(4),
        "tib" | "ti" => KI.pow(4),
        "p" | "pb" => K.pow(5),
        "pib" | "pi" => KI.pow(5),
        "e" | "eb" => K.pow(6),
        "eib" | "ei" => KI.pow(6),
        _ => return None,
    })
}

/// go-humanize `ParseBytes`: a decimal number (commas allowed) and a case-insensitive SI or IEC
/// unit; the result is truncated to whole bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let digits_end = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.' || *c == ','))
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    let num: String = s[..digits_end].chars().filter(|c| *c != ',').collect();
    let f = parse_go_float(&num)?;
    let extra = s[digits_end..].trim().to_lowercase();
    match bytes_unit(&extra) {
        Some(m) => {
            let v = f * m as f64;
            if v >= u64::MAX as f64 {
                return Err(format!("too large: {s}"));
            }
            Ok(v as u64)
        }
        None => Err(format!("unhandled size name: {extra}")),
    }
}

/// A LogQL bytes literal (`1MB`, `2KiB`, `10B`): units are case-sensitive as the lexer reads
/// them. Returns `None` when `s` is not one.
pub fn parse_bytes_literal(s: &str) -> Option<u64> {
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    if end == 0 {
        return None;
    }
    let unit = &s[end..];
    const UNITS: &[&str] = &[
        "B", "kB", "KB", "KiB", "MB", "MiB", "GB", "GiB", "TB", "TiB", "PB", "PiB", "EB", "EiB",
    ];
    if !UNITS.contains(&unit) {
        return None;
    }
    let n: f64 = s[..end].parse().ok()?;
    let m = bytes_unit(&unit.to_lowercase())?;
    Some((n * m as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_floats() {
        assert_eq!(parse_go_float("1.5e3").unwrap(), 1500.0);
        assert_eq!(parse_go_float("0x1.8p3").unwrap(), 12.0);
        assert_eq!(parse_go_float("-Inf").unwrap(), f64::NEG_INFINITY);
        assert!(parse_go_float("NaN").unwrap().is_nan());
        assert!(parse_go_float("0x1A").is_err());
        assert!(
            parse_go_float("")
                .unwrap_err()
                .contains("parsing \"\": invalid syntax")
        );
        assert!(parse_go_float("1_000").is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1h30m", false).unwrap(), 5400e9);
        assert_eq!(parse_go_duration("1.5h", false).unwrap(), 5400e9);
        assert_eq!(parse_go_duration("-5s", false).unwrap(), -5e9);
        assert_eq!(parse_go_duration("500ms", false).unwrap(), 0.5e9);
        assert!(
            parse_go_duration("1d", false)
                .unwrap_err()
                .contains("unknown unit \"d\"")
        );
        assert_eq!(parse_go_duration("1d", true).unwrap(), 86400e9);
        assert!(
            parse_go_duration("5", false)
                .unwrap_err()
                .contains("missing unit in duration")
        );
        assert!(
            parse_go_duration("oops", false)
                .unwrap_err()
                .contains("invalid duration \"oops\"")
        );
    }

    #[test]
    fn humanize_bytes() {
        assert_eq!(parse_bytes("1KiB").unwrap(), 1024);
        assert_eq!(parse_bytes("2Kb").unwrap(), 2000);
        assert_eq!(parse_bytes("2,048").unwrap(), 2048);
        assert_eq!(parse_bytes("1.5B").unwrap(), 1);
        assert!(
            parse_bytes("oops")
                .unwrap_err()
                .contains("parsing \"\": invalid syntax")
        );
        assert!(parse_bytes("1XB").is_err());
        assert_eq!(parse_bytes_literal("3MB"), Some(3_000_000));
        assert_eq!(parse_bytes_literal("1mb"), None);
    }
}
