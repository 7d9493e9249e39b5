//! Float parsing with Go's `strconv.ParseFloat` syntax (as Prometheus restricts it) and float
//! formatting as Go's `strconv.FormatFloat(f, 'g', -1, 64)`.

use std::io::Write as _;

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Parses a float the way Prometheus's text parser does: Go `ParseFloat` syntax (optional sign,
/// decimal digits with optional fraction and exponent, `Inf`/`Infinity`/`NaN` in any case)
/// without hex floats or `_` separators. A finite literal too large for `f64` is an error, as in
/// Go. Returns `None` when `s` is not such a number.
pub fn parse_go_float(s: &[u8]) -> Option<f64> {
    let (neg, body) = match s.first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let first = *body.first()?;
    if !(first.is_ascii_digit() || first == b'.') {
        let signed = body.len() != s.len();
        if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
            return Some(if neg {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            });
        }
        if !signed && body.eq_ignore_ascii_case(b"nan") {
            return Some(f64::NAN);
        }
        return None;
    }

    // Validate the syntax and collect a fast-path mantissa/exponent on the way.
    let mut i = 0;
    let mut mantissa: u64 = 0;
    let mut sig_digits = 0u32;
    let mut exp10: i32 = 0;
    let mut saw_digits = false;
    let mut saw_dot = false;
    let mut fast = true;
    while i < body.len() {
        let c = body[i];
        if c.is_ascii_digit() {
            saw_digits = true;
            if mantissa == 0 && c == b'0' {
                // Leading zeros do not count as significant digits.
                if saw_dot {
                    exp10 -= 1;
                }
            } else if sig_digits < 19 {
                mantissa = mantissa * 10 + u64::from(c - b'0');
                sig_digits += 1;
                if saw_dot {
                    exp10 -= 1;
                }
            } else {
                fast = false;
                if !saw_dot {
                    exp10 += 1;
                }
            }
        } else if c == b'.' && !saw_dot {
            saw_dot = true;
        } else {
            break;
        }
        i += 1;
    }
    if !saw_digits {
        return None;
    }
    if i < body.len() {
        if body[i] != b'e' && body[i] != b'E' {
            return None;
        }
        i += 1;
        let mut eneg = false;
        if i < body.len() && (body[i] == b'+' || body[i] == b'-') {
            eneg = body[i] == b'-';
            i += 1;
        }
        if i >= body.len() {
            return None;
        }
        let mut e: i32 = 0;
        while i < body.len() {
            let c = body[i];
            if !c.is_ascii_digit() {
                return None;
            }
            if e < 100_000 {
                e = e * 10 + i32::from(c - b'0');
            }
            i += 1;
        }
        exp10 += if eneg { -e } else { e };
    }

    let v = if fast && mantissa < (1u64 << 53) && (-22..=22).contains(&exp10) {
        // Both operands are exact, so one IEEE operation rounds correctly.
        let m = mantissa as f64;
        if exp10 >= 0 {
            m * POW10[exp10 as usize]
        } else {
            m / POW10[(-exp10) as usize]
        }
    } else if mantissa == 0 && fast {
        0.0
    } else {
        // Syntax already checked; std's parser is correctly rounded.
        let text = std::str::from_utf8(body).ok()?;
        let v: f64 = text.parse().ok()?;
        if v.is_infinite() {
            return None;
        }
        v
    };
    Some(if neg { -v } else { v })
}

/// Appends `v` formatted as Go's `strconv.FormatFloat(v, 'g', -1, 64)`: shortest round-trip
/// digits, exponent form below 1e-4 and from 1e+06 up, and `+Inf`, `-Inf`, `NaN` spelled as
/// Prometheus writes them.
pub fn format_float(v: f64, out: &mut Vec<u8>) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
        return;
    }
    // Small integers are by far the most common value: write them directly.
    if v == v.trunc() && v.abs() < 1e6 && !(v == 0.0 && v.is_sign_negative()) {
        let _ = write!(out, "{}", v as i64);
        return;
    }
    // Shortest round-trip digits from std, then Go's layout.
    let mut buf = [0u8; 40];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{:e}", v);
    let len = cursor.position() as usize;
    let s = &buf[..len];
    let (neg, s) = if s.first() == Some(&b'-') {
        (true, &s[1..])
    } else {
        (false, s)
    };
    let epos = s.iter().position(|&c| c == b'e').unwrap_or(s.len());
    let mut digits = [0u8; 24];
    let mut nd = 0;
    for &c in &s[..epos] {
        if c.is_ascii_digit() && nd < digits.len() {
            digits[nd] = c;
            nd += 1;
        }
    }
    let exp: i32 = std::str::from_utf8(&s[(epos + 1).min(s.len())..])
        .ok()
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    let digits = &digits[..nd.max(1)];
    if neg {
        out.push(b'-');
    }
    if !(-4..6).contains(&exp) {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let a = exp.unsigned_abs();
        if a < 10 {
            out.push(b'0');
        }
        let _ = write!(out, "{a}");
    } else {
        let dp = exp + 1; // position of the decimal point within digits
        if dp <= 0 {
            out.extend_from_slice(b"0.");
            for _ in 0..(-dp) {
                out.push(b'0');
            }
            out.extend_from_slice(digits);
        } else {
            let dp = dp as usize;
            if digits.len() <= dp {
                out.extend_from_slice(digits);
                for _ in digits.len()..dp {
                    out.push(b'0');
                }
            } else {
                out.extend_from_slice(&digits[..dp]);
                out.push(b'.');
                out.extend_from_slice(&digits[dp..]);
            }
        }
    }
}

/// Parses an OpenMetrics timestamp (float seconds) into milliseconds. Plain decimals are
/// converted exactly (sub-millisecond digits truncated toward zero); other forms go through
/// `f64`. `None` for NaN, infinities and malformed input.
pub(crate) fn parse_om_timestamp_ms(s: &[u8]) -> Option<i64> {
    let (neg, body) = match s.first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    // Exact path: digits[.digits]
    let mut i = 0;
    let mut int: i64 = 0;
    let mut exact = true;
    while i < body.len() && body[i].is_ascii_digit() {
        match int
            .checked_mul(10)
            .and_then(|x| x.checked_add(i64::from(body[i] - b'0')))
        {
            Some(x) => int = x,
            None => exact = false,
        }
        i += 1;
    }
    let int_digits = i;
    let mut frac: i64 = 0;
    let mut frac_digits = 0;
    if i < body.len() && body[i] == b'.' {
        i += 1;
        while i < body.len() && body[i].is_ascii_digit() {
            if frac_digits < 3 {
                frac = frac * 10 + i64::from(body[i] - b'0');
                frac_digits += 1;
            }
            i += 1;
        }
    }
    if exact && i == body.len() && (int_digits > 0 || i > int_digits + 1) {
        while frac_digits < 3 {
            frac *= 10;
            frac_digits += 1;
        }
        if let Some(ms) = int.checked_mul(1000).and_then(|x| x.checked_add(frac)) {
            return Some(if neg { -ms } else { ms });
        }
    }
    let v = parse_go_float(s)?;
    if !v.is_finite() {
        return None;
    }
    // Saturating conversion, as out-of-range timestamps are rejected later by storage anyway.
    Some((v * 1000.0) as i64)
}

/// Appends milliseconds as exact decimal seconds (`1234` → `1.234`, `5000` → `5`).
pub(crate) fn format_om_timestamp(ms: i64, out: &mut Vec<u8>) {
    if ms < 0 {
        out.push(b'-');
    }
    let a = ms.unsigned_abs();
    let _ = write!(out, "{}", a / 1000);
    let frac = a % 1000;
    if frac != 0 {
        let digits = [
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ];
        let mut n = 3;
        while digits[n - 1] == b'0' {
            n -= 1;
        }
        out.push(b'.');
        out.extend_from_slice(&digits[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(v: f64) -> String {
        let mut out = Vec::new();
        format_float(v, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn go_formatting() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (-1.0, "-1"),
            (0.1, "0.1"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (0.00001, "1e-05"),
            (1.5e300, "1.5e+300"),
            (5e-324, "5e-324"),
            (2.478268416e9, "2.478268416e+09"),
            (0.013300656000000001, "0.013300656000000001"),
            (100.5, "100.5"),
            (999999.5, "999999.5"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (v, want) in cases {
            assert_eq!(fmt(*v), *want, "formatting {v:e}");
        }
    }

    #[test]
    fn go_parsing() {
        let ok: &[(&str, f64)] = &[
            ("1", 1.0),
            ("-1", -1.0),
            ("+1.5", 1.5),
            ("1.", 1.0),
            (".5", 0.5),
            ("1e3", 1000.0),
            ("1E-3", 0.001),
            ("0000001.2e-1", 0.12),
            ("12345678901234567890", 12345678901234567890.0),
            ("0.013300656000000001", 0.013300656000000001),
            ("1e-400", 0.0),
            ("Inf", f64::INFINITY),
            ("+inf", f64::INFINITY),
            ("-Infinity", f64::NEG_INFINITY),
            ("9223372036854775808", 9223372036854775808.0),
        ];
        for (s, want) in ok {
            assert_eq!(parse_go_float(s.as_bytes()), Some(*want), "parsing {s}");
        }
        assert!(parse_go_float(b"NaN").is_some_and(f64::is_nan));
        assert!(parse_go_float(b"nan").is_some_and(f64::is_nan));
        for bad in [
            "", "+", "-", ".", "e5", "1e", "1e+", "1_2", "0x1p-3", "0x1", "0b1", "1.2.3", "+nan",
            "infin", "1e400", "a", "1a", " 1",
        ] {
            assert_eq!(parse_go_float(bad.as_bytes()), None, "parsing {bad:?}");
        }
    }

    #[test]
    fn om_timestamps() {
        let ok: &[(&str, i64)] = &[
            ("0", 0),
            ("000", 0),
            ("0.0", 0),
            ("1.1", 1100),
            ("1.005", 1005),
            ("1.0009", 1000),
            ("-1.5", -1500),
            ("1.5e3", 1_500_000),
            ("1234567890", 1_234_567_890_000),
            ("0.0000000001", 0),
        ];
        for (s, want) in ok {
            assert_eq!(
                parse_om_timestamp_ms(s.as_bytes()),
                Some(*want),
                "parsing {s}"
            );
        }
        for bad in [
            "NaN", "Inf", "-Inf", "0x1p-3", "z", "1z", "1_2", "1.1.1", ".",
        ] {
            assert_eq!(
                parse_om_timestamp_ms(bad.as_bytes()),
                None,
                "parsing {bad:?}"
            );
        }
        for (ms, want) in [
            (0, "0"),
            (1234, "1.234"),
            (5000, "5"),
            (-1, "-0.001"),
            (1010, "1.01"),
        ] {
            let mut out = Vec::new();
            format_om_timestamp(ms, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }
}
