//! JSON encoding of query results exactly as Prometheus writes them: sample values as strings
//! formatted like Go's `strconv.FormatFloat` (`'f'`, or `'e'` below 1e-6 / from 1e21, with
//! `NaN`, `+Inf`, `-Inf`), timestamps as seconds with up to three decimals (`1700000000.5`
//! is written `1700000000.500`, whole seconds without a fraction), and the success envelope
//! with optional `warnings`/`infos` arrays.

use std::fmt::Write;

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
    out.push_str(r#"{"status":"success","data":"#);
    out.push_str(data_json);
    for (key, list) in [("warnings", warnings), ("infos", infos)] {
        if !list.is_empty() {
            out.push_str(",\"");
            out.push_str(key);
            out.push_str("\":");
            out.push_str(&serde_json::Value::from(list.to_vec()).to_string());
        }
    }
    out.push('}');
    out
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
    let mut out = String::new();
    write_float_f(&mut out, v);
    out
}

fn write_float_f(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

/// The sample-value formatting of Prometheus's `jsonutil.MarshalFloat`: `'e'` format for
/// magnitudes below 1e-6 or from 1e21 on, `'f'` otherwise; shortest round-trip digits.
pub fn format_sample_value(v: f64) -> String {
    let mut out = String::new();
    write_sample_value(&mut out, v);
    out
}

fn write_sample_value(out: &mut String, v: f64) {
    let abs = v.abs();
    if v.is_finite() && abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        write_float_e(out, v);
    } else {
        write_float_f(out, v);
    }
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`: `1e-07`, `1.5e+21` (exponent sign and at
/// least two digits).
fn write_float_e(out: &mut String, v: f64) {
    let s = format!("{v:e}");
    match s.split_once('e') {
        Some((mant, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            out.push_str(mant);
            out.push('e');
            out.push(sign);
            if digits.len() < 2 {
                out.push('0');
            }
            out.push_str(digits);
        }
        None => out.push_str(&s),
    }
}

/// Prometheus's `jsonutil.MarshalTimestamp`: ms as seconds, `.ddd` only when non-zero.
pub fn write_timestamp(out: &mut String, t: i64) {
    let mut t = t as i128;
    if t < 0 {
        out.push('-');
        t = -t;
    }
    let _ = write!(out, "{}", t / 1000);
    let frac = t % 1000;
    if frac != 0 {
        let _ = write!(out, ".{frac:03}");
    }
}

/// Appends `s` as a JSON string.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `{"name":"value",...}` in label order.
pub fn write_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, &l.name);
        out.push(':');
        write_str(out, &l.value);
    }
    out.push('}');
}

/// `[<t>,"<v>"]`.
fn write_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    write_timestamp(out, t);
    out.push_str(",\"");
    write_sample_value(out, v);
    out.push_str("\"]");
}

/// `{"resultType":...,"result":...}` for a query result.
pub fn query_data(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(r#"{"resultType":""#);
    out.push_str(value.result_type());
    out.push_str(r#"","result":"#);
    match value {
        Value::Scalar { t, v } => write_point(&mut out, *t, *v),
        Value::String { t, s } => {
            out.push('[');
            write_timestamp(&mut out, *t);
            out.push(',');
            write_str(&mut out, s);
            out.push(']');
        }
        Value::Vector(samples) => {
            out.push('[');
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"metric":"#);
                write_labels(&mut out, &s.labels);
                out.push_str(r#","value":"#);
                write_point(&mut out, s.t, s.v);
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push('[');
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"metric":"#);
                write_labels(&mut out, &s.labels);
                out.push_str(r#","values":["#);
                for (j, p) in s.samples.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    write_point(&mut out, p.t, p.v);
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    out.push('}');
    out
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

    #[test]
    fn timestamps_like_prometheus() {
        let f = |t| {
            let mut s = String::new();
            write_timestamp(&mut s, t);
            s
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
