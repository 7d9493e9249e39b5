//! LogQL tokenizer. Keywords are plain identifiers; the parser gives them meaning by context.

use crate::units::{parse_bytes_literal, parse_go_duration};

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Ident(String),
    Str(String),
    /// Number literal text (converted by the parser, so a bad literal reports Loki's error).
    Number(String),
    /// Duration in nanoseconds, with its text.
    Duration(i64, String),
    Bytes(u64, String),
    /// `--strict`, `--keep-empty` (the name without dashes).
    Flag(String),
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Pipe,
    PipeExact,   // |=
    PipeMatch,   // |~
    PipePattern, // |>
    Neq,         // !=
    Nre,         // !~
    NPattern,    // !>
    Eq,          // =
    Eql,         // ==
    Re,          // =~
    Lt,
    Lte,
    Gt,
    Gte,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eof,
}

impl Tok {
    /// How a syntax error names the token, as Loki's yacc parser does.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => match s.as_str() {
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right" | "bool"
                | "and" | "or" | "unless" | "offset" | "ip" | "json" | "logfmt" | "regexp"
                | "pattern" | "unpack" | "unwrap" | "line_format" | "label_format" | "drop"
                | "keep" | "decolorize" => s.clone(),
                _ => "IDENTIFIER".into(),
            },
            Tok::Str(_) => "STRING".into(),
            Tok::Number(_) => "NUMBER".into(),
            Tok::Duration(..) => "DURATION".into(),
            Tok::Bytes(..) => "BYTES".into(),
            Tok::Flag(f) => format!("--{f}"),
            Tok::LBrace => "{".into(),
            Tok::RBrace => "}".into(),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::LBracket => "[".into(),
            Tok::RBracket => "]".into(),
            Tok::Comma => ",".into(),
            Tok::Pipe => "|".into(),
            Tok::PipeExact => "|=".into(),
            Tok::PipeMatch => "|~".into(),
            Tok::PipePattern => "|>".into(),
            Tok::Neq => "!=".into(),
            Tok::Nre => "!~".into(),
            Tok::NPattern => "!>".into(),
            Tok::Eq => "=".into(),
            Tok::Eql => "==".into(),
            Tok::Re => "=~".into(),
            Tok::Lt => "<".into(),
            Tok::Lte => "<=".into(),
            Tok::Gt => ">".into(),
            Tok::Gte => ">=".into(),
            Tok::Add => "+".into(),
            Tok::Sub => "-".into(),
            Tok::Mul => "*".into(),
            Tok::Div => "/".into(),
            Tok::Mod => "%".into(),
            Tok::Pow => "^".into(),
            Tok::Eof => "end of input".into(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    /// Byte offset in the query.
    pub pos: usize,
}

#[derive(Debug)]
pub struct LexError {
    pub pos: usize,
    pub msg: String,
}

pub fn tokenize(src: &str) -> Result<Vec<Token>, LexError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        let two = if i + 1 < b.len() {
            &b[i..i + 2]
        } else {
            &b[i..i + 1]
        };
        let (tok, len) = match two {
            b"|=" => (Tok::PipeExact, 2),
            b"|~" => (Tok::PipeMatch, 2),
            b"|>" => (Tok::PipePattern, 2),
            b"!=" => (Tok::Neq, 2),
            b"!~" => (Tok::Nre, 2),
            b"!>" => (Tok::NPattern, 2),
            b"==" => (Tok::Eql, 2),
            b"=~" => (Tok::Re, 2),
            b"<=" => (Tok::Lte, 2),
            b">=" => (Tok::Gte, 2),
            _ => match c {
                b'{' => (Tok::LBrace, 1),
                b'}' => (Tok::RBrace, 1),
                b'(' => (Tok::LParen, 1),
                b')' => (Tok::RParen, 1),
                b'[' => (Tok::LBracket, 1),
                b']' => (Tok::RBracket, 1),
                b',' => (Tok::Comma, 1),
                b'|' => (Tok::Pipe, 1),
                b'=' => (Tok::Eq, 1),
                b'<' => (Tok::Lt, 1),
                b'>' => (Tok::Gt, 1),
                b'+' => (Tok::Add, 1),
                b'*' => (Tok::Mul, 1),
                b'/' => (Tok::Div, 1),
                b'%' => (Tok::Mod, 1),
                b'^' => (Tok::Pow, 1),
                b'-' if i + 2 < b.len() && b[i + 1] == b'-' && b[i + 2].is_ascii_alphabetic() => {
                    let mut j = i + 2;
                    while j < b.len()
                        && (b[j].is_ascii_alphanumeric() || b[j] == b'-' || b[j] == b'_')
                    {
                        j += 1;
                    }
                    (Tok::Flag(src[i + 2..j].to_string()), j - i)
                }
                b'-' => (Tok::Sub, 1),
                b'"' | b'`' => {
                    let (s, len) = lex_string(src, i)?;
                    (Tok::Str(s), len)
                }
                c if c.is_ascii_digit()
                    || (c == b'.' && i + 1 < b.len() && b[i + 1].is_ascii_digit()) =>
                {
                    lex_number(src, i)
                }
                c if c.is_ascii_alphabetic() || c == b'_' => {
                    let mut j = i;
                    while j < b.len()
                        && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b':')
                    {
                        j += 1;
                    }
                    (Tok::Ident(src[i..j].to_string()), j - i)
                }
                _ => {
                    let ch = src[i..].chars().next().unwrap_or('?');
                    return Err(LexError {
                        pos: i,
                        msg: format!("syntax error: unexpected character: '{ch}'"),
                    });
                }
            },
        };
        out.push(Token { tok, pos: start });
        i += len;
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: src.len(),
    });
    Ok(out)
}

fn lex_number(src: &str, i: usize) -> (Tok, usize) {
    let b = src.as_bytes();
    // Duration: digits, dots and lowercase unit letters.
    let mut j = i;
    while j < b.len() {
        let c = b[j];
        if c.is_ascii_digit()
            || c == b'.'
            || matches!(c, b'n' | b's' | b'u' | b'm' | b'h' | b'd' | b'w' | b'y')
        {
            j += 1;
        } else if src[j..].starts_with('µ') {
            j += 'µ'.len_utf8();
        } else {
            break;
        }
    }
    let text = &src[i..j];
    let has_unit = text.bytes().any(|c| c.is_ascii_alphabetic()) || text.contains('µ');
    let next_is_word = j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_');
    if has_unit
        && !(next_is_word && b[j].is_ascii_uppercase())
        && let Ok(ns) = parse_go_duration(text, true)
    {
        return (Tok::Duration(ns as i64, text.to_string()), j - i);
    }
    // Bytes: digits/dots then letters.
    let mut k = i;
    while k < b.len() && (b[k].is_ascii_digit() || b[k] == b'.') {
        k += 1;
    }
    let mut l = k;
    while l < b.len() && b[l].is_ascii_alphabetic() {
        l += 1;
    }
    if l > k
        && let Some(v) = parse_bytes_literal(&src[i..l])
    {
        return (Tok::Bytes(v, src[i..l].to_string()), l - i);
    }
    // Number (possibly malformed, e.g. hex integers): the parser reports it.
    let mut m = i;
    let is_hex = src[i..].len() > 1 && (src[i..].starts_with("0x") || src[i..].starts_with("0X"));
    while m < b.len() {
        let c = b[m];
        if c.is_ascii_alphanumeric() || c == b'.' || c == b'_' {
            m += 1;
        } else if (c == b'+' || c == b'-') && m > i {
            let prev = b[m - 1];
            let exp = if is_hex {
                prev == b'p' || prev == b'P'
            } else {
                prev == b'e' || prev == b'E'
            };
            if exp {
                m += 1;
            } else {
                break;
            }
        } else {
            break;
        }
    }
    (Tok::Number(src[i..m].to_string()), m - i)
}

/// Reads a double-quoted (Go escapes) or backtick (raw) string starting at `i`.
fn lex_string(src: &str, i: usize) -> Result<(String, usize), LexError> {
    let b = src.as_bytes();
    let q = b[i];
    if q == b'`' {
        return match src[i + 1..].find('`') {
            Some(end) => Ok((src[i + 1..i + 1 + end].to_string(), end + 2)),
            None => Err(LexError {
                pos: i,
                msg: "literal not terminated".into(),
            }),
        };
    }
    let mut out = String::new();
    let mut chars = src[i + 1..].char_indices();
    while let Some((off, c)) = chars.next() {
        match c {
            '"' => return Ok((out, off + 2)),
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\x07'),
                    'b' => out.push('\x08'),
                    'f' => out.push('\x0c'),
                    'v' => out.push('\x0b'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => out.push('\''),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut v = 0u32;
                        for _ in 0..n {
                            let Some((_, h)) = chars.next() else {
                                return Err(LexError {
                                    pos: i,
                                    msg: "invalid escape in string".into(),
                                });
                            };
                            let Some(d) = h.to_digit(16) else {
                                return Err(LexError {
                                    pos: i,
                                    msg: "invalid escape in string".into(),
                                });
                            };
                            v = v * 16 + d;
                        }
                        match char::from_u32(v) {
                            Some(ch) => out.push(ch),
                            None => {
                                return Err(LexError {
                                    pos: i,
                                    msg: "invalid escape in string".into(),
                                });
                            }
                        }
                    }
                    '0'..='7' => {
                        let mut v = e.to_digit(8).unwrap_or(0);
                        for _ in 0..2 {
                            let Some((_, h)) = chars.next() else {
                                return Err(LexError {
                                    pos: i,
                                    msg: "invalid escape in string".into(),
                                });
                            };
                            let Some(d) = h.to_digit(8) else {
                                return Err(LexError {
                                    pos: i,
                                    msg: "invalid escape in string".into(),
                                });
                            };
                            v = v * 8 + d;
                        }
                        match char::from_u32(v) {
                            Some(ch) => out.push(ch),
                            None => {
                                return Err(LexError {
                                    pos: i,
                                    msg: "invalid escape in string".into(),
                                });
                            }
                        }
                    }
                    _ => {
                        return Err(LexError {
                            pos: i,
                            msg: "invalid escape in string".into(),
                        });
                    }
                }
            }
            c => out.push(c),
        }
    }
    Err(LexError {
        pos: i,
        msg: "literal not terminated".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn durations_bytes_numbers() {
        assert_eq!(
            toks("1h30m")[0],
            Tok::Duration(5_400_000_000_000, "1h30m".into())
        );
        assert_eq!(toks("3MB")[0], Tok::Bytes(3_000_000, "3MB".into()));
        assert_eq!(
            toks("1mb")[..2],
            [
                Tok::Duration(60_000_000_000, "1m".into()),
                Tok::Ident("b".into())
            ]
        );
        assert_eq!(toks("1e3")[0], Tok::Number("1e3".into()));
        assert_eq!(toks("0x1.8p+3")[0], Tok::Number("0x1.8p+3".into()));
        assert_eq!(
            toks("2-1")[..3],
            [Tok::Number("2".into()), Tok::Sub, Tok::Number("1".into())]
        );
        assert_eq!(toks("--keep-empty")[0], Tok::Flag("keep-empty".into()));
    }

    #[test]
    fn strings() {
        assert_eq!(toks(r#""a\"b\x1b""#)[0], Tok::Str("a\"b\u{1b}".into()));
        assert_eq!(toks(r"`a\x`")[0], Tok::Str(r"a\x".into()));
        assert!(tokenize("\"abc").is_err());
    }
}
