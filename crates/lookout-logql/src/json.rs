//! A small JSON reader for the `json` and `unpack` stages: keeps object keys in document order
//! (so "first duplicate wins" is possible), numbers as their source text, and strings without
//! escapes borrowed from the line.

use std::borrow::Cow;

#[derive(Clone, Debug, PartialEq)]
pub enum JVal<'a> {
    Null,
    Bool(bool),
    /// The number's source text.
    Num(&'a str),
    Str(Cow<'a, str>),
    Arr(Vec<JVal<'a>>),
    Obj(Vec<(Cow<'a, str>, JVal<'a>)>),
}

pub struct JsonError {
    pub msg: String,
}

const MAX_DEPTH: usize = 128;

/// Parses a whole JSON document; the top level must be an object.
pub fn parse_object(src: &str) -> Result<Vec<(Cow<'_, str>, JVal<'_>)>, JsonError> {
    let mut p = Reader {
        s: src,
        b: src.as_bytes(),
        i: 0,
    };
    p.ws();
    if p.peek() != Some(b'{') {
        return Err(p.err("expecting a json object"));
    }
    let v = p.value(0)?;
    p.ws();
    if p.i != p.b.len() {
        return Err(p.err("unexpected content after the json object"));
    }
    match v {
        JVal::Obj(o) => Ok(o),
        _ => Err(p.err("expecting a json object")),
    }
}

struct Reader<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, what: &str) -> JsonError {
        JsonError {
            msg: format!("{what} at byte {}", self.i + 1),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(c) = self.peek() {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<JVal<'a>, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("json nested too deeply"));
        }
        self.ws();
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                let mut out = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(JVal::Obj(out));
                }
                loop {
                    self.ws();
                    if self.peek() != Some(b'"') {
                        return Err(self.err("expecting a quoted object key"));
                    }
                    let k = self.string()?;
                    self.ws();
                    if self.peek() != Some(b':') {
                        return Err(self.err("expecting ':' after object key"));
                    }
                    self.i += 1;
                    let v = self.value(depth + 1)?;
                    out.push((k, v));
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(JVal::Obj(out));
                        }
                        _ => return Err(self.err("expecting ',' or '}' in object")),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut out = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(JVal::Arr(out));
                }
                loop {
                    out.push(self.value(depth + 1)?);
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(JVal::Arr(out));
                        }
                        _ => return Err(self.err("expecting ',' or ']' in array")),
                    }
                }
            }
            Some(b'"') => Ok(JVal::Str(self.string()?)),
            Some(b't') => self.lit("true", JVal::Bool(true)),
            Some(b'f') => self.lit("false", JVal::Bool(false)),
            Some(b'n') => self.lit("null", JVal::Null),
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let st = self.i;
                self.i += 1;
                while let Some(c) = self.peek() {
                    if c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-') {
                        self.i += 1;
                    } else {
                        break;
                    }
                }
                let t = &self.s[st..self.i];
                if t.parse::<f64>().is_err() {
                    return Err(self.err("invalid number"));
                }
                Ok(JVal::Num(t))
            }
            _ => Err(self.err("unexpected character")),
        }
    }

    fn lit(&mut self, word: &str, v: JVal<'a>) -> Result<JVal<'a>, JsonError> {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("invalid literal"))
        }
    }

    fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        self.i += 1; // opening quote
        let start = self.i;
        while let Some(c) = self.peek() {
            if c == b'"' {
                self.i += 1;
                return Ok(Cow::Borrowed(&self.s[start..self.i - 1]));
            }
            if c == b'\\' || c < 0x20 {
                break;
            }
            self.i += 1;
        }
        let mut out = String::from(&self.s[start..self.i]);
        loop {
            let st = self.i;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            out.push_str(&self.s[st..self.i]);
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.i += 1;
                    let Some(e) = self.peek() else {
                        return Err(self.err("unterminated string"));
                    };
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\x08'),
                        b'f' => out.push('\x0c'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi)
                                && self.s[self.i..].starts_with("\\u")
                            {
                                self.i += 2;
                                let lo = self.hex4()?;
                                0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3ff)
                            } else {
                                hi
                            };
                            out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                        }
                        _ => return Err(self.err("invalid escape")),
                    }
                }
                _ => return Err(self.err("unterminated string")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.err("invalid unicode escape"))?;
        let v = u32::from_str_radix(h, 16).map_err(|_| self.err("invalid unicode escape"))?;
        self.i += 4;
        Ok(v)
    }
}

/// The JSON text of a value (for json expressions selecting an object or array).
pub fn to_json(v: &JVal<'_>, out: &mut String) {
    match v {
        JVal::Null => out.push_str("null"),
        JVal::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        JVal::Num(n) => out.push_str(n),
        JVal::Str(s) => quote_json(s, out),
        JVal::Arr(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                to_json(x, out);
            }
            out.push(']');
        }
        JVal::Obj(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                quote_json(k, out);
                out.push(':');
                to_json(x, out);
            }
            out.push('}');
        }
    }
}

fn quote_json(s: &str, out: &mut String) {
    out.push('"');
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_in_order_with_raw_numbers() {
        let o = parse_object(r#"{"a":1.50,"b":{"c":[1,"x"]},"a":"second","s":"q\"\u00e9"}"#)
            .ok()
            .unwrap();
        assert_eq!(o[0], (Cow::Borrowed("a"), JVal::Num("1.50")));
        assert_eq!(o[2].0, "a");
        assert_eq!(o[3].1, JVal::Str("q\"é".into()));
        let mut s = String::new();
        to_json(&o[1].1, &mut s);
        assert_eq!(s, r#"{"c":[1,"x"]}"#);
        assert!(parse_object("broken").is_err());
        assert!(parse_object("[1]").is_err());
        assert!(parse_object(r#"{"a":1"#).is_err());
    }
}
