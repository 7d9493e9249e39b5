//! JSON encoding of query results exactly as Prometheus writes them: sample values as strings
//! formatted like Go's `strconv.FormatFloat` (`'f'`, or `'e'` below 1e-6 / from 1e21, with
//! `NaN`, `+Inf`, `-Inf`), timestamps as seconds with up to three decimals (`1700000000.5`
//! is written `1700000000.500`, whole seconds without a fraction), and the success envelope
//! with optional `warnings`/`infos` arrays.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lookout_promql::Value;
use lookout_storage::Labels;

/// A response with `Content-Type: application/json`.
pub fn json_response(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `{"status":"success","data":<data_json>[,"warnings":[...]][,"infos":[...]]}`.
pub fn success_envelope(data_json: &str, warnings: &[String], infos: &[String]) -> String {
    let mut out = String::with_capacity(data_json.len() + 64);
    out.push_str(ENVELOPE_START);
    out.push_str(data_json);
    end_envelope(&mut out, warnings, infos);
    out
}

const ENVELOPE_START: &str = r#"{"status":"success","data":"#;

/// The end of [`success_envelope`] after the data.
fn end_envelope(out: &mut String, warnings: &[String], infos: &[String]) {
    for (key, list) in [("warnings", warnings), ("infos", infos)] {
        if !list.is_empty() {
            out.push_str(",\"");
            out.push_str(key);
            out.push_str("\":");
            out.push_str(&serde_json::Value::from(list.to_vec()).to_string());
        }
    }
    out.push('}');
}

/// A 200 response with a query result: [`success_envelope`] around [`query_data`], written
/// into one byte buffer (the body is sent as written, never re-validated).
pub fn query_success(value: &Value, warnings: &[String], infos: &[String]) -> Response {
    let mut out = Vec::with_capacity(ENVELOPE_START.len() + estimate_len(value) + 64);
    out.extend_from_slice(ENVELOPE_START.as_bytes());
    put_query_data(&mut out, value);
    let mut tail = String::new();
    end_envelope(&mut tail, warnings, infos);
    out.extend_from_slice(tail.as_bytes());
    let mut resp = (StatusCode::OK, out).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A 200 success response.
pub fn success(data_json: &str, warnings: &[String], infos: &[String]) -> Response {
    json_response(StatusCode::OK, success_envelope(data_json, warnings, infos))
}

/// A 200 success response for serializable data.
pub fn success_value<T: serde::Serialize>(data: &T, warnings: &[String]) -> Response {
    match serde_json::to_string(data) {
        Ok(s) => success(&s, warnings, &[]),
        Err(e) => {
            crate::error::ApiError::internal(format!("encoding response: {e}")).into_response()
        }
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)` (shortest round-trip digits, no exponent).
#[cfg(test)]
fn format_float_f(v: f64) -> String {
    let mut out = Vec::new();
    put_float(&mut out, v, false);
    ascii(out)
}

/// The sample-value formatting of Prometheus's `jsonutil.MarshalFloat`: `'e'` format for
/// magnitudes below 1e-6 or from 1e21 on, `'f'` otherwise; shortest round-trip digits.
pub fn format_sample_value(v: f64) -> String {
    let mut out = Vec::new();
    put_sample_value(&mut out, v);
    ascii(out)
}

#[inline]
fn put_sample_value(out: &mut Vec<u8>, v: f64) {
    let abs = v.abs();
    if (1e-6..1e21).contains(&abs) {
        // `ryu` writes the same shortest digits; where it writes them without an exponent
        // the text is Go's `'f'` form once a trailing ".0" (whole numbers) is dropped.
        let mut buf = ryu::Buffer::new();
        let text = buf.format_finite(v).as_bytes();
        // A plain loop: `contains` calls out to `memchr`, slow for a dozen bytes (it was
        // ~0.07 ms of a 10,080-point response).
        #[allow(clippy::manual_contains)]
        let has_exponent = text.iter().any(|&c| c == b'e');
        if !has_exponent {
            out.extend_from_slice(text.strip_suffix(b".0").unwrap_or(text));
            return;
        }
    }
    let exp_form = v.is_finite() && abs != 0.0 && !(1e-6..1e21).contains(&abs);
    put_float(out, v, exp_form);
}

/// Bytes this module wrote (ASCII, or JSON-escaped valid strings) as a `String`.
fn ascii(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Room for the digits of a shortest round-trip formatting (at most 17 significant digits,
/// up to 24 characters in fixed notation).
const MAX_DIGITS: usize = 32;

/// The shortest decimal digits that read back as `|v|` (finite, non-zero): returns the digit
/// count `n` written to `digits` (no leading or trailing zeros) and the point position `p`,
/// so that `|v| = 0.d1d2...dn × 10^p`.
fn shortest_digits(v: f64, digits: &mut [u8; MAX_DIGITS]) -> (usize, i32) {
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(v.abs()).as_bytes();
    let (mantissa, exp) = match text.iter().position(|&c| c == b'e' || c == b'E') {
        Some(e) => {
            let rest = &text[e + 1..];
            let (neg, mag) = match rest.first() {
                Some(b'-') => (true, &rest[1..]),
                Some(b'+') => (false, &rest[1..]),
                _ => (false, rest),
            };
            let mag = mag
                .iter()
                .fold(0i32, |a, &c| a * 10 + i32::from(c.wrapping_sub(b'0')));
            (&text[..e], if neg { -mag } else { mag })
        }
        None => (text, 0),
    };
    let mut point = mantissa
        .iter()
        .position(|&c| c == b'.')
        .unwrap_or(mantissa.len()) as i32;
    let mut n = 0;
    for &c in mantissa {
        if c == b'.' {
            continue;
        }
        if n == 0 && c == b'0' {
            // A leading zero (before or after the dot) only moves the point.
            point -= 1;
        } else if n < MAX_DIGITS {
            digits[n] = c;
            n += 1;
        }
    }
    while n > 1 && digits[n - 1] == b'0' {
        n -= 1;
    }
    (n, point + exp)
}

/// Two ASCII digits for each of 0..100.
const DIGIT_PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

fn push_zeros(out: &mut Vec<u8>, count: usize) {
    out.resize(out.len() + count, b'0');
}

/// Go's `strconv.FormatFloat(v, fmt, -1, 64)` with `fmt` `'e'` when `exp_form`, else `'f'`:
/// shortest round-trip digits; `'e'` writes `d[.ddd]e±XX` (at least two exponent digits).
/// `NaN`, `+Inf`, `-Inf` and `-0` as Prometheus prints them.
fn put_float(out: &mut Vec<u8>, v: f64, exp_form: bool) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
        return;
    }
    if v.is_sign_negative() {
        out.push(b'-');
    }
    if v == 0.0 {
        out.push(b'0');
        return;
    }
    let mut digits = [0u8; MAX_DIGITS];
    let (n, p) = shortest_digits(v, &mut digits);
    let d = &digits[..n];
    if exp_form {
        out.push(d[0]);
        if n > 1 {
            out.push(b'.');
            out.extend_from_slice(&d[1..]);
        }
        let e = p - 1;
        out.extend_from_slice(if e < 0 { b"e-" } else { b"e+" });
        let e = e.unsigned_abs();
        if e < 10 {
            out.push(b'0');
        }
        put_u64(out, u64::from(e));
    } else if p <= 0 {
        out.extend_from_slice(b"0.");
        push_zeros(out, p.unsigned_abs() as usize);
        out.extend_from_slice(d);
    } else if p as usize >= n {
        out.extend_from_slice(d);
        push_zeros(out, p as usize - n);
    } else {
        out.extend_from_slice(&d[..p as usize]);
        out.push(b'.');
        out.extend_from_slice(&d[p as usize..]);
    }
}

/// Appends the decimal digits of `x` (two at a time).
#[inline]
fn put_u64(out: &mut Vec<u8>, mut x: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    while x >= 100 {
        let r = (x % 100) as usize * 2;
        x /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGIT_PAIRS[r..r + 2]);
    }
    if x >= 10 {
        let r = x as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGIT_PAIRS[r..r + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + x as u8;
    }
    out.extend_from_slice(&buf[i..]);
}

/// Prometheus's `jsonutil.MarshalTimestamp`: ms as seconds, `.ddd` only when non-zero.
#[inline]
fn put_timestamp(out: &mut Vec<u8>, t: i64) {
    // |i64| / 1000 < 2^54: exact as u64.
    let a = t.unsigned_abs();
    if t < 0 {
        out.push(b'-');
    }
    put_u64(out, a / 1000);
    let frac = (a % 1000) as usize;
    if frac != 0 {
        let r = frac % 100 * 2;
        out.extend_from_slice(&[
            b'.',
            b'0' + (frac / 100) as u8,
            DIGIT_PAIRS[r],
            DIGIT_PAIRS[r + 1],
        ]);
    }
}

/// Appends `s` as a JSON string.
pub fn write_str(out: &mut String, s: &str) {
    let mut b = Vec::with_capacity(s.len() + 2);
    put_str(&mut b, s);
    out.push_str(&ascii(b));
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    let mut tmp = [0u8; 4];
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes()),
        }
    }
    out.push(b'"');
}

/// `{"name":"value",...}` in label order.
pub fn write_labels(out: &mut String, labels: &Labels) {
    let mut b = Vec::new();
    put_labels(&mut b, labels);
    out.push_str(&ascii(b));
}

fn put_labels(out: &mut Vec<u8>, labels: &Labels) {
    out.push(b'{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        put_str(out, &l.name);
        out.push(b':');
        put_str(out, &l.value);
    }
    out.push(b'}');
}

/// `[<t>,"<v>"]`.
#[inline]
fn put_point(out: &mut Vec<u8>, t: i64, v: f64) {
    out.push(b'[');
    put_timestamp(out, t);
    out.extend_from_slice(b",\"");
    put_sample_value(out, v);
    out.extend_from_slice(b"\"]");
}

/// Roughly the length of [`query_data`]'s output (to size the buffer once).
fn estimate_len(value: &Value) -> usize {
    const LABELS: usize = 128;
    // `[1700000000,"` + value + `"],`: 16 bytes around up to 17 digits, sign and point.
    const POINT: usize = 36;
    64 + match value {
        Value::Scalar { .. } => POINT,
        Value::String { s, .. } => s.len() + 32,
        Value::Vector(samples) => samples.len() * (LABELS + POINT + 24),
        Value::Matrix(series) => series
            .iter()
            .map(|s| LABELS + 24 + s.samples.len() * POINT)
            .sum(),
    }
}

/// `{"resultType":...,"result":...}` for a query result.
pub fn query_data(value: &Value) -> String {
    let mut out = Vec::with_capacity(estimate_len(value));
    put_query_data(&mut out, value);
    ascii(out)
}

fn put_query_data(out: &mut Vec<u8>, value: &Value) {
    out.extend_from_slice(br#"{"resultType":""#);
    out.extend_from_slice(value.result_type().as_bytes());
    out.extend_from_slice(br#"","result":"#);
    match value {
        Value::Scalar { t, v } => put_point(out, *t, *v),
        Value::String { t, s } => {
            out.push(b'[');
            put_timestamp(out, *t);
            out.push(b',');
            put_str(out, s);
            out.push(b']');
        }
        Value::Vector(samples) => {
            out.push(b'[');
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(br#"{"metric":"#);
                put_labels(out, &s.labels);
                out.extend_from_slice(br#","value":"#);
                put_point(out, s.t, s.v);
                out.push(b'}');
            }
            out.push(b']');
        }
        Value::Matrix(series) => {
            out.push(b'[');
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(br#"{"metric":"#);
                put_labels(out, &s.labels);
                out.extend_from_slice(br#","values":["#);
                for (j, p) in s.samples.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    put_point(out, p.t, p.v);
                }
                out.extend_from_slice(b"]}");
            }
            out.push(b']');
        }
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use lookout_promql::InstantSample;
    use lookout_storage::{Sample, Series};

    #[test]
    fn floats_like_go() {
        assert_eq!(format_sample_value(2.0), "2");
        assert_eq!(format_sample_value(0.1), "0.1");
        assert_eq!(format_sample_value(-1.5), "-1.5");
        assert_eq!(format_sample_value(f64::NAN), "NaN");
        assert_eq!(format_sample_value(f64::INFINITY), "+Inf");
        assert_eq!(format_sample_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_sample_value(-0.0), "-0");
        assert_eq!(format_sample_value(1e20), "100000000000000000000");
        assert_eq!(format_sample_value(1e21), "1e+21");
        assert_eq!(format_sample_value(1.5e300), "1.5e+300");
        assert_eq!(format_sample_value(0.000001), "0.000001");
        assert_eq!(format_sample_value(1e-7), "1e-07");
        assert_eq!(format_sample_value(-2.5e-10), "-2.5e-10");
        assert_eq!(format_sample_value(123456789.123), "123456789.123");
        assert_eq!(format_float_f(1e21), "1000000000000000000000");
    }

    /// The formatter used before `ryu`: Rust's shortest round-trip `Display`/`LowerExp`,
    /// rewritten into Go's layout. The fast path prints exactly the same, except where two
    /// shortest candidates are equally near `v` (see [`check_against_reference`]).
    fn reference_sample_value(v: f64) -> String {
        let abs = v.abs();
        if v.is_nan() {
            return "NaN".into();
        }
        if v.is_infinite() {
            return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
        }
        if abs == 0.0 || (1e-6..1e21).contains(&abs) {
            return format!("{v}");
        }
        let s = format!("{v:e}");
        let (mant, exp) = s.split_once('e').unwrap();
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        format!(
            "{mant}e{sign}{}{digits}",
            if digits.len() < 2 { "0" } else { "" }
        )
    }

    /// Shortest digits as Rust's `LowerExp` prints them: (digits, point) as in
    /// [`shortest_digits`].
    fn std_digits(v: f64) -> (String, i32) {
        let s = format!("{:e}", v.abs());
        let (mant, exp) = s.split_once('e').unwrap();
        let digits: String = mant.chars().filter(|c| *c != '.').collect();
        let digits = digits.trim_end_matches('0').to_string();
        (digits, exp.parse::<i32>().unwrap() + 1)
    }

    /// The fast formatter prints what the old one printed, with one documented exception:
    /// when `v` lies exactly halfway between two shortest candidates, Go's
    /// `strconv.FormatFloat` (and `ryu`) take the even last digit while Rust's `Display`
    /// rounds up. There the digits must differ by one in the last place, ours must be even
    /// and `v`'s exact decimal expansion must be the midpoint.
    fn check_against_reference(v: f64) -> Result<(), String> {
        let got = format_sample_value(v);
        let want = reference_sample_value(v);
        if got == want {
            return Ok(());
        }
        if !v.is_finite() || v == 0.0 {
            return Err(format!("{v:e}: {got} vs {want}"));
        }
        let mut d = [0u8; MAX_DIGITS];
        let (n, p) = shortest_digits(v, &mut d);
        let ours = std::str::from_utf8(&d[..n]).unwrap().to_string();
        let (theirs, tp) = std_digits(v);
        let tie = p == tp
            && ours.len() == theirs.len()
            && ours[..n - 1] == theirs[..n - 1]
            && (ours.as_bytes()[n - 1] - b'0').is_multiple_of(2)
            && theirs.as_bytes()[n - 1] == ours.as_bytes()[n - 1] + 1
            && {
                // Exact expansion of |v|: at most 767 significant digits.
                let exact = format!("{:.800e}", v.abs());
                let (m, _) = exact.split_once('e').unwrap();
                let digits: String = m.chars().filter(|c| *c != '.').collect();
                digits.starts_with(&ours)
                    && digits[n..].starts_with('5')
                    && digits[n + 1..].bytes().all(|b| b == b'0')
            };
        if tie && got.parse::<f64>() == Ok(v) {
            Ok(())
        } else {
            Err(format!("{v:e}: {got} vs {want}"))
        }
    }

    #[test]
    fn exact_ties_round_to_even_like_go() {
        // 2029359964586332.25 is exactly halfway between ...332.2 and ...332.3.
        let v = f64::from_bits(4835976240399517041);
        assert_eq!(format_sample_value(v), "2029359964586332.2");
        assert_eq!(reference_sample_value(v), "2029359964586332.3");
        assert!(check_against_reference(v).is_ok());
    }

    #[test]
    fn fast_formatter_matches_reference_on_edge_cases() {
        let mut cases = vec![
            0.0,
            -0.0,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            f64::EPSILON,
            5e-324,
            -5e-324,
            1e-6,
            1e21,
            1e-7,
            1e20,
            0.1 + 0.2,
            1.0 / 3.0,
            123456789.123,
            9007199254740993.0,
            1e15,
            1e16,
            1e17,
            1e-5,
            2.5e-10,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        for b in [1e-6f64, 1e21, 1e16, 1e-5, 1e15, 1.0, 0.1] {
            cases.push(f64::from_bits(b.to_bits() - 1));
            cases.push(f64::from_bits(b.to_bits() + 1));
        }
        for e in -330..310 {
            cases.push(10f64.powi(e));
            cases.push(-(10f64.powi(e)) * 1.5);
        }
        for v in cases {
            check_against_reference(v).unwrap();
            let f = format_float_f(v);
            if v.is_finite() {
                assert_eq!(f, format!("{v}"), "{v:e}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_formatter_matches_reference_on_any_bits(bits in proptest::prelude::any::<u64>()) {
            let v = f64::from_bits(bits);
            proptest::prop_assert_eq!(check_against_reference(v), Ok(()));
        }

        #[test]
        fn fast_formatter_matches_reference_on_decimals(
            m in -10_000_000_000_000i64..10_000_000_000_000,
            e in -12i32..12,
        ) {
            // Values as scrapes and rates produce them: short decimals and their quotients.
            let v = m as f64 * 10f64.powi(e);
            proptest::prop_assert_eq!(check_against_reference(v), Ok(()));
            let r = m as f64 / 60.0;
            proptest::prop_assert_eq!(check_against_reference(r), Ok(()));
        }

        #[test]
        fn timestamps_match_reference(t in proptest::prelude::any::<i64>()) {
            let mut got = Vec::new();
            put_timestamp(&mut got, t);
            let got = ascii(got);
            let a = (t as i128).abs();
            let want = format!(
                "{}{}{}",
                if t < 0 { "-" } else { "" },
                a / 1000,
                if a % 1000 != 0 { format!(".{:03}", a % 1000) } else { String::new() }
            );
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn timestamps_like_prometheus() {
        let f = |t| {
            let mut s = Vec::new();
            put_timestamp(&mut s, t);
            ascii(s)
        };
        assert_eq!(f(1_700_000_000_000), "1700000000");
        assert_eq!(f(1_700_000_000_123), "1700000000.123");
        assert_eq!(f(1_700_000_000_100), "1700000000.100");
        assert_eq!(f(1_700_000_000_005), "1700000000.005");
        assert_eq!(f(4000), "4");
        assert_eq!(f(-1500), "-1.500");
        assert_eq!(f(0), "0");
    }

    #[test]
    fn result_shapes() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a\"b")]);
        let v = Value::Vector(vec![InstantSample {
            labels: l.clone(),
            t: 1000,
            v: 1.0,
        }]);
        assert_eq!(
            query_data(&v),
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a\"b"},"value":[1,"1"]}]}"#
        );
        let m = Value::Matrix(vec![Series {
            labels: l,
            samples: vec![Sample { t: 1, v: 0.5 }, Sample { t: 2000, v: 2.0 }],
        }]);
        assert_eq!(
            query_data(&m),
            r#"{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a\"b"},"values":[[0.001,"0.5"],[2,"2"]]}]}"#
        );
        assert_eq!(
            query_data(&Value::Scalar { t: 4000, v: 2.0 }),
            r#"{"resultType":"scalar","result":[4,"2"]}"#
        );
        assert_eq!(
            query_data(&Value::String {
                t: 4000,
                s: "hi\n".into()
            }),
            r#"{"resultType":"string","result":[4,"hi\n"]}"#
        );
        assert_eq!(
            query_data(&Value::Vector(vec![])),
            r#"{"resultType":"vector","result":[]}"#
        );
    }

    #[test]
    fn query_success_is_the_envelope_around_query_data() {
        let v = Value::Matrix(vec![Series {
            labels: Labels::from_pairs([("job", "a")]),
            samples: (0..100)
                .map(|i| Sample {
                    t: i * 1500,
                    v: i as f64 / 3.0,
                })
                .collect(),
        }]);
        let (w, i) = (vec!["w".to_string()], vec!["i".to_string()]);
        let resp = query_success(&v, &w, &i);
        let body = futures_body(resp);
        assert_eq!(body, success_envelope(&query_data(&v), &w, &i));
    }

    fn futures_body(resp: Response) -> String {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt.block_on(resp.into_body().collect()).unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn envelope() {
        assert_eq!(
            success_envelope("[]", &[], &[]),
            r#"{"status":"success","data":[]}"#
        );
        assert_eq!(
            success_envelope("1", &["w".into()], &["i".into()]),
            r#"{"status":"success","data":1,"warnings":["w"],"infos":["i"]}"#
        );
    }
}
