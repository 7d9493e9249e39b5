//! Go-compatible formatting and literal parsing, so that messages read exactly as Prometheus
//! (a Go program) prints them: `%q` quoting, `%#U`, `strconv` number parsing,
//! `model.ParseDuration` and the `regexp/syntax` error texts for the common mistakes.

use std::fmt::Write;

/// Whether Go's `strconv.IsPrint` would call `c` printable (close approximation: Unicode
/// controls, non-space separators and unassigned-looking private ranges are not).
fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    // Format characters (Cf) and surrogates/private use are not printable in Go.
    !matches!(u, 0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
        | 0xFEFF | 0xFFF9..=0xFFFB | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF)
}

fn escape_into(out: &mut String, c: char, quote: char) {
    match c {
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        '\\' => out.push_str("\\\\"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c if is_print(c) => out.push(c),
        c => {
            let u = c as u32;
            // Writing to a String cannot fail.
            let _ = if u < 0x80 {
                write!(out, "\\x{u:02x}")
            } else if u <= 0xFFFF {
                write!(out, "\\u{u:04x}")
            } else {
                write!(out, "\\U{u:08x}")
            };
        }
    }
}

/// Go's `%q` for a string (`strconv.Quote`).
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        escape_into(&mut out, c, '"');
    }
    out.push('"');
    out
}

/// Go's `%.Nq`: the first `n` runes of `s`, quoted.
pub(crate) fn quote_prefix(s: &str, n: usize) -> String {
    let end = s.char_indices().nth(n).map_or(s.len(), |(i, _)| i);
    quote(&s[..end])
}

/// Go's `%q` for a rune (`strconv.QuoteRune`); `None` is Go's `eof` (-1), printed as U+FFFD.
pub(crate) fn quote_rune(c: Option<char>) -> String {
    let c = c.unwrap_or('\u{FFFD}');
    let mut out = String::from("'");
    escape_into(&mut out, c, '\'');
    out.push('\'');
    out
}

/// Go's `%#U`: `U+0063 'c'` (the character only when printable).
pub(crate) fn sharp_u(c: char) -> String {
    if is_print(c) {
        format!("U+{:04X} '{c}'", c as u32)
    } else {
        format!("U+{:04X}", c as u32)
    }
}

/// Go's `%f` (`strconv.FormatFloat(f, 'f', 6, 64)` with `+Inf`/`-Inf`/`NaN`).
pub(crate) fn format_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v:.6}")
    }
}

/// Go's `strconv` `underscoreOK`: underscores only between digits (or after a base prefix).
fn underscore_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let mut saw = b'^';
    let b = if !b.is_empty() && (b[0] == b'+' || b[0] == b'-') {
        &b[1..]
    } else {
        b
    };
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1].eq_ignore_ascii_case(&b'x');
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || (hex && c.to_ascii_lowercase().is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

/// `strconv.ParseInt(s, 0, 64)`; `None` on any syntax or range error.
fn parse_int_base0(s: &str) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let (base, digits) = {
        let b = s.as_bytes();
        if b.len() >= 2 && b[0] == b'0' {
            match b[1].to_ascii_lowercase() {
                b'x' => (16, &s[2..]),
                b'o' => (8, &s[2..]),
                b'b' => (2, &s[2..]),
                _ => (8, &s[1..]),
            }
        } else {
            (10, s)
        }
    };
    if s.contains('_') && !underscore_ok(s) {
        return None;
    }
    let cleaned: String = digits.chars().filter(|&c| c != '_').collect();
    if cleaned.is_empty() {
        // "0" alone is octal with no digits after the prefix: value 0.
        return if base == 8 && s.len() == 1 {
            Some(0)
        } else {
            None
        };
    }
    u64::from_str_radix(&cleaned, base)
        .ok()
        .and_then(|v| i64::try_from(v).ok())
}

/// Why `strconv.ParseFloat` rejected its input.
enum FloatErr {
    Syntax,
    Range,
}

/// `strconv.ParseFloat(s, 64)` for the inputs the PromQL lexer can produce as a NUMBER.
fn parse_float(s: &str) -> Result<f64, FloatErr> {
    let lower = s.to_ascii_lowercase();
    let body = lower.trim_start_matches(['+', '-']);
    match body {
        "inf" | "infinity" => {
            return Ok(if lower.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            });
        }
        "nan" => return Ok(f64::NAN),
        _ => {}
    }
    // Hexadecimal floats need a 'p' exponent, which the lexer never produces.
    if body.starts_with("0x") {
        return Err(FloatErr::Syntax);
    }
    if s.contains('_') && !underscore_ok(s) {
        return Err(FloatErr::Syntax);
    }
    let cleaned: String = s.chars().filter(|&c| c != '_').collect();
    let valid = {
        let b = cleaned.as_bytes();
        let mut i = 0;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let mut mant = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
            mant += 1;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
                mant += 1;
            }
        }
        let mut ok = mant > 0;
        if ok && i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            i += 1;
            if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
                i += 1;
            }
            let mut exp = 0;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
                exp += 1;
            }
            ok = exp > 0;
        }
        ok && i == b.len()
    };
    if !valid {
        return Err(FloatErr::Syntax);
    }
    match cleaned.parse::<f64>() {
        Ok(v) if v.is_infinite() => Err(FloatErr::Range),
        Ok(v) => Ok(v),
        Err(_) => Err(FloatErr::Syntax),
    }
}

/// Prometheus's `parser.number`: `ParseInt(s, 0, 64)`, falling back to `ParseFloat`; the
/// error text is the one Prometheus reports.
pub(crate) fn parse_number(s: &str) -> Result<f64, String> {
    if let Some(v) = parse_int_base0(s) {
        return Ok(v as f64);
    }
    parse_float(s).map_err(|e| {
        let why = match e {
            FloatErr::Syntax => "invalid syntax",
            FloatErr::Range => "value out of range",
        };
        format!(
            "error parsing number: strconv.ParseFloat: parsing {}: {why}",
            quote(s)
        )
    })
}

/// `model.ParseDuration` from prometheus/common: units y w d h m s ms, each at most once and
/// in that order; the value in milliseconds.
pub(crate) fn parse_duration(s: &str) -> Result<i64, String> {
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err("empty duration string".into());
    }
    let invalid = || format!("not a valid duration string: {}", quote(s));
    let mut rest = s;
    let mut total: u64 = 0;
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| !b.is_ascii_digit()).count();
        if unit_len == 0 {
            return Err(invalid());
        }
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let Some(idx) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!(
                "unknown unit {} in duration {}",
                quote(unit),
                quote(s)
            ));
        };
        if last_unit.is_some_and(|l| idx <= l) {
            return Err(invalid());
        }
        last_unit = Some(idx);
        let mult = UNITS[idx].1;
        // Nanoseconds must fit an int64, as in Go.
        let ms = n.checked_mul(mult).ok_or("duration out of range")?;
        total = total.checked_add(ms).ok_or("duration out of range")?;
        if total > (i64::MAX as u64) / 1_000_000 {
            return Err("duration out of range".into());
        }
    }
    i64::try_from(total).map_err(|_| "duration out of range".into())
}

/// The `regexp/syntax` error Go reports for `re` (parsed with the Perl flags, as
/// Prometheus's regex matcher does), for the common classes of mistakes; `None` when no
/// such mistake is found (the pattern may still be rejected for a rarer reason).
pub(crate) fn regexp_error(re: &str) -> Option<String> {
    let err = |code: &str, expr: &str| Some(format!("error parsing regexp: {code}: `{expr}`"));
    let chars: Vec<(usize, char)> = re.char_indices().collect();
    let mut depth: usize = 0;
    // Whether the previous item can take a repetition operator, and the text of the last
    // repetition operator if the previous item is one.
    let mut can_repeat = false;
    let mut last_rep: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        match c {
            '\\' => {
                if i + 1 >= chars.len() {
                    return err("trailing backslash at end of expression", "");
                }
                let (_, e) = chars[i + 1];
                if e.is_ascii_alphanumeric() && !"dDsSwWbBAzpPQEaftnrvx0123456789".contains(e) {
                    let end = chars.get(i + 2).map_or(re.len(), |(p, _)| *p);
                    return err("invalid escape sequence", &re[pos..end]);
                }
                i += 2;
                if matches!(e, 'p' | 'P') {
                    if chars.get(i).is_some_and(|(_, c)| *c == '{') {
                        while i < chars.len() && chars[i].1 != '}' {
                            i += 1;
                        }
                    }
                    i += 1;
                    let end = chars.get(i).map_or(re.len(), |(p, _)| *p);
                    let class = &re[pos..end.min(re.len())];
                    if regex::Regex::new(class).is_err() {
                        return err("invalid character class range", class);
                    }
                    can_repeat = true;
                    last_rep = None;
                    continue;
                }
                if e == 'Q' {
                    // Literal text up to \E (or the end).
                    match re[pos..].find("\\E") {
                        Some(off) => {
                            let target = pos + off + 2;
                            while i < chars.len() && chars[i].0 < target {
                                i += 1;
                            }
                        }
                        None => i = chars.len(),
                    }
                }
                can_repeat = true;
                last_rep = None;
                continue;
            }
            '(' => {
                depth += 1;
                can_repeat = false;
                last_rep = None;
                if re[pos..].starts_with("(?") {
                    // Flags or a named group: skip to its ':' or ')'.
                    let mut j = i + 2;
                    if chars.get(j).is_some_and(|(_, c)| *c == 'P' || *c == '<') {
                        let Some(close) = re[pos..].find('>') else {
                            return err("invalid named capture", &re[pos..]);
                        };
                        let target = pos + close + 1;
                        while j < chars.len() && chars[j].0 < target {
                            j += 1;
                        }
                        i = j;
                        continue;
                    } else {
                        while j < chars.len() && chars[j].1 != ':' && chars[j].1 != ')' {
                            j += 1;
                        }
                        if j < chars.len() && chars[j].1 == ')' {
                            depth -= 1;
                            i = j + 1;
                            continue;
                        }
                        i = j;
                    }
                }
            }
            ')' => {
                if depth == 0 {
                    return err("unexpected )", re);
                }
                depth -= 1;
                can_repeat = true;
                last_rep = None;
            }
            '[' => {
                let start = pos;
                let mut j = i + 1;
                if chars.get(j).is_some_and(|(_, c)| *c == '^') {
                    j += 1;
                }
                if chars.get(j).is_some_and(|(_, c)| *c == ']') {
                    j += 1;
                }
                let mut closed = false;
                while j < chars.len() {
                    match chars[j].1 {
                        '\\' => j += 2,
                        '[' if chars.get(j + 1).is_some_and(|(_, c)| *c == ':') => {
                            match re[chars[j].0..].find(":]") {
                                Some(off) => {
                                    let target = chars[j].0 + off + 2;
                                    while j < chars.len() && chars[j].0 < target {
                                        j += 1;
                                    }
                                }
                                None => j += 1,
                            }
                        }
                        ']' => {
                            closed = true;
                            break;
                        }
                        _ => j += 1,
                    }
                }
                if !closed {
                    return err("missing closing ]", &re[start..]);
                }
                i = j + 1;
                can_repeat = true;
                last_rep = None;
                continue;
            }
            '*' | '+' | '?' | '{' => {
                let mut j = i + 1;
                if c == '{' {
                    // Only a well-formed {n}, {n,} or {n,m} is a repetition; otherwise a literal.
                    let rest = &re[pos + 1..];
                    let Some(close) = rest.find('}') else {
                        can_repeat = true;
                        last_rep = None;
                        i += 1;
                        continue;
                    };
                    let inner = &rest[..close];
                    let (lo, hi) = match inner.split_once(',') {
                        Some((a, b)) => (a, Some(b)),
                        None => (inner, None),
                    };
                    let num = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
                    if !num(lo) || hi.is_some_and(|h| !h.is_empty() && !num(h)) {
                        can_repeat = true;
                        last_rep = None;
                        i += 1;
                        continue;
                    }
                    let lo_v: u64 = lo.parse().unwrap_or(u64::MAX);
                    let hi_v: Option<u64> = hi.and_then(|h| h.parse().ok());
                    let end = pos + 1 + close + 1;
                    while j < chars.len() && chars[j].0 < end {
                        j += 1;
                    }
                    if lo_v > 1000 || hi_v.is_some_and(|h| h > 1000 || h < lo_v) {
                        return err("invalid repeat count", &re[pos..end]);
                    }
                }
                if chars.get(j).is_some_and(|(_, c)| *c == '?') {
                    j += 1;
                }
                let end = chars.get(j).map_or(re.len(), |(p, _)| *p);
                if let Some((rs, _)) = last_rep {
                    return err("invalid nested repetition operator", &re[rs..end]);
                }
                if !can_repeat {
                    return err("missing argument to repetition operator", &re[pos..end]);
                }
                last_rep = Some((pos, end));
                i = j;
                continue;
            }
            '|' => {
                can_repeat = false;
                last_rep = None;
            }
            '^' | '$' => {
                // Anchors can be repeated in Go's parser (they are empty-width ops).
                can_repeat = true;
                last_rep = None;
            }
            _ => {
                can_repeat = true;
                last_rep = None;
            }
        }
        i += 1;
    }
    if depth > 0 {
        return err("missing closing )", re);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_like_go() {
        assert_eq!(quote("a\"b"), r#""a\"b""#);
        assert_eq!(quote("\n\u{1}é"), r#""\n\x01é""#);
        assert_eq!(quote_rune(Some('\'')), r"'\''");
        assert_eq!(quote_rune(Some('}')), "'}'");
        assert_eq!(quote_rune(None), "'\u{FFFD}'");
        assert_eq!(sharp_u('c'), "U+0063 'c'");
        assert_eq!(sharp_u('\n'), "U+000A");
        assert_eq!(quote_prefix("\"abcdefghijkl\"", 10), r#""\"abcdefghi""#);
    }

    #[test]
    fn numbers_like_strconv() {
        assert_eq!(parse_number("0755"), Ok(493.0));
        assert_eq!(parse_number("08"), Ok(8.0));
        assert_eq!(parse_number("0x1F"), Ok(31.0));
        assert_eq!(parse_number("1_000"), Ok(1000.0));
        assert_eq!(parse_number("5e-3"), Ok(0.005));
        assert!(parse_number("NaN").is_ok_and(f64::is_nan));
        assert_eq!(parse_number("Inf"), Ok(f64::INFINITY));
        assert_eq!(
            parse_number("1e400"),
            Err(
                r#"error parsing number: strconv.ParseFloat: parsing "1e400": value out of range"#
                    .into()
            )
        );
        assert_eq!(
            parse_number("0x"),
            Err(r#"error parsing number: strconv.ParseFloat: parsing "0x": invalid syntax"#.into())
        );
        assert_eq!(format_f(f64::INFINITY), "+Inf");
        assert_eq!(format_f(1.5), "1.500000");
    }

    #[test]
    fn durations_like_prometheus_common() {
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("1m30ms"), Ok(60_030));
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(
            parse_duration("5y1hs"),
            Err(r#"unknown unit "hs" in duration "5y1hs""#.into())
        );
        assert_eq!(
            parse_duration("5m1h"),
            Err(r#"not a valid duration string: "5m1h""#.into())
        );
        assert_eq!(
            parse_duration("999999999999y"),
            Err("duration out of range".into())
        );
    }

    #[test]
    fn regexp_errors_like_go() {
        assert_eq!(regexp_error("a.*b|c"), None);
        assert_eq!(regexp_error("(?i)foo"), None);
        assert_eq!(regexp_error("(?P<n>x)"), None);
        assert_eq!(regexp_error("a{"), None);
        assert_eq!(regexp_error("[]a]"), None);
        assert_eq!(regexp_error("[[:alpha:]]+"), None);
        assert_eq!(
            regexp_error("(").as_deref(),
            Some("error parsing regexp: missing closing ): `(`")
        );
        assert_eq!(
            regexp_error("a)").as_deref(),
            Some("error parsing regexp: unexpected ): `a)`")
        );
        assert_eq!(
            regexp_error("[a").as_deref(),
            Some("error parsing regexp: missing closing ]: `[a`")
        );
        assert_eq!(
            regexp_error("*").as_deref(),
            Some("error parsing regexp: missing argument to repetition operator: `*`")
        );
        assert_eq!(
            regexp_error("a**").as_deref(),
            Some("error parsing regexp: invalid nested repetition operator: `**`")
        );
        assert_eq!(
            regexp_error("x{2,1}").as_deref(),
            Some("error parsing regexp: invalid repeat count: `{2,1}`")
        );
        assert_eq!(
            regexp_error("\\p{Foo}").as_deref(),
            Some("error parsing regexp: invalid character class range: `\\p{Foo}`")
        );
        assert_eq!(regexp_error("\\p{Greek}+\\pL"), None);
        assert_eq!(
            regexp_error("\\").as_deref(),
            Some("error parsing regexp: trailing backslash at end of expression: ``")
        );
    }
}
