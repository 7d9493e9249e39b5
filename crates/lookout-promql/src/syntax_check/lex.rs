//! A PromQL lexer that behaves like Prometheus's (`promql/parser/lex.go`): the same token
//! boundaries, the same states (statements, inside braces, inside a range bracket) and the
//! same error texts at the same positions.

use super::golang::{quote, quote_prefix, quote_rune, sharp_u};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Eof,
    Error,
    Comment,
    Identifier,
    MetricIdentifier,
    Number,
    Duration,
    String,
    LeftParen,
    RightParen,
    LeftBrace,
    RightBrace,
    LeftBracket,
    RightBracket,
    Comma,
    Eql,
    Colon,
    // Operators.
    Add,
    Div,
    Eqlc,
    EqlRegex,
    Gte,
    Gtr,
    Land,
    Lor,
    Lss,
    Lte,
    Lunless,
    Mod,
    Mul,
    Neq,
    NeqRegex,
    Pow,
    Sub,
    At,
    Atan2,
    // Aggregators.
    Avg,
    Bottomk,
    Count,
    CountValues,
    Group,
    Max,
    Min,
    Quantile,
    Stddev,
    Stdvar,
    Sum,
    Topk,
    Limitk,
    LimitRatio,
    // Keywords.
    Bool,
    By,
    GroupLeft,
    GroupRight,
    Ignoring,
    Offset,
    On,
    Without,
    // Preprocessors.
    Start,
    End,
}

impl Kind {
    pub(crate) fn is_operator(self) -> bool {
        use Kind::*;
        matches!(
            self,
            Add | Div
                | Eqlc
                | EqlRegex
                | Gte
                | Gtr
                | Land
                | Lor
                | Lss
                | Lte
                | Lunless
                | Mod
                | Mul
                | Neq
                | NeqRegex
                | Pow
                | Sub
                | At
                | Atan2
        )
    }

    pub(crate) fn is_aggregator(self) -> bool {
        use Kind::*;
        matches!(
            self,
            Avg | Bottomk
                | Count
                | CountValues
                | Group
                | Max
                | Min
                | Quantile
                | Stddev
                | Stdvar
                | Sum
                | Topk
                | Limitk
                | LimitRatio
        )
    }

    fn is_keyword(self) -> bool {
        use Kind::*;
        matches!(
            self,
            Bool | By | GroupLeft | GroupRight | Ignoring | Offset | On | Without
        )
    }

    /// The canonical spelling (Go's `ItemType.String()`), for item types that have one.
    pub(crate) fn text(self) -> Option<&'static str> {
        use Kind::*;
        Some(match self {
            LeftParen => "(",
            RightParen => ")",
            LeftBrace => "{",
            RightBrace => "}",
            LeftBracket => "[",
            RightBracket => "]",
            Comma => ",",
            Eql => "=",
            Colon => ":",
            Sub => "-",
            Add => "+",
            Mul => "*",
            Mod => "%",
            Div => "/",
            Eqlc => "==",
            Neq => "!=",
            Lte => "<=",
            Lss => "<",
            Gte => ">=",
            Gtr => ">",
            EqlRegex => "=~",
            NeqRegex => "!~",
            Pow => "^",
            At => "@",
            Land => "and",
            Lor => "or",
            Lunless => "unless",
            Atan2 => "atan2",
            Sum => "sum",
            Avg => "avg",
            Count => "count",
            Min => "min",
            Max => "max",
            Group => "group",
            Stddev => "stddev",
            Stdvar => "stdvar",
            Topk => "topk",
            Bottomk => "bottomk",
            CountValues => "count_values",
            Quantile => "quantile",
            Limitk => "limitk",
            LimitRatio => "limit_ratio",
            Offset => "offset",
            By => "by",
            Without => "without",
            On => "on",
            Ignoring => "ignoring",
            GroupLeft => "group_left",
            GroupRight => "group_right",
            Bool => "bool",
            Start => "start",
            End => "end",
            Eof | Error | Comment | Identifier | MetricIdentifier | Number | Duration | String => {
                return None;
            }
        })
    }
}

/// The keyword table (Go's `key`), matched case-insensitively; `inf`/`nan` are numbers.
fn keyword(word: &str) -> Option<Kind> {
    use Kind::*;
    Some(match word.to_ascii_lowercase().as_str() {
        "and" => Land,
        "or" => Lor,
        "unless" => Lunless,
        "atan2" => Atan2,
        "sum" => Sum,
        "avg" => Avg,
        "count" => Count,
        "min" => Min,
        "max" => Max,
        "group" => Group,
        "stddev" => Stddev,
        "stdvar" => Stdvar,
        "topk" => Topk,
        "bottomk" => Bottomk,
        "count_values" => CountValues,
        "quantile" => Quantile,
        "limitk" => Limitk,
        "limit_ratio" => LimitRatio,
        "offset" => Offset,
        "by" => By,
        "without" => Without,
        "on" => On,
        "ignoring" => Ignoring,
        "group_left" => GroupLeft,
        "group_right" => GroupRight,
        "bool" => Bool,
        "start" => Start,
        "end" => End,
        "inf" | "nan" => Number,
        _ => return None,
    })
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub kind: Kind,
    /// Byte offset of the first character.
    pub pos: usize,
    /// Byte offset after the last character.
    pub end: usize,
    /// The lexer's message, for `Kind::Error`.
    pub msg: String,
}

impl Token {
    pub(crate) fn val<'a>(&self, input: &'a str) -> &'a str {
        input.get(self.pos..self.end).unwrap_or("")
    }

    /// Go's `Item.String()`.
    fn go_string(&self, input: &str) -> String {
        let val = self.val(input);
        match self.kind {
            Kind::Eof => "EOF".into(),
            Kind::Error => self.msg.clone(),
            Kind::Identifier | Kind::MetricIdentifier => quote(val),
            k if k.is_keyword() => format!("<{val}>"),
            k if k.is_operator() => format!("<op:{val}>"),
            k if k.is_aggregator() => format!("<aggr:{val}>"),
            _ if val.len() > 10 => format!("{}...", quote_prefix(val, 10)),
            _ => quote(val),
        }
    }

    /// Go's `Item.desc()`, as used in "unexpected ..." messages.
    pub(crate) fn desc(&self, input: &str) -> String {
        if self.kind.text().is_some() {
            return self.go_string(input);
        }
        let what = match self.kind {
            Kind::Eof => return "end of input".into(),
            Kind::Error => "error",
            Kind::Comment => "comment",
            Kind::Identifier => "identifier",
            Kind::MetricIdentifier => "metric identifier",
            Kind::String => "string",
            Kind::Number => "number",
            Kind::Duration => "duration",
            _ => "",
        };
        format!("{what} {}", self.go_string(input))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Statements,
    InsideBraces,
    DurationExpr,
    Done,
}

pub(crate) struct Lexer<'a> {
    input: &'a str,
    pos: usize,
    start: usize,
    width: usize,
    state: State,
    paren_depth: i64,
    brace_open: bool,
    bracket_open: bool,
    got_colon: bool,
    got_duration: bool,
    string_open: char,
}

fn is_space(c: Option<char>) -> bool {
    matches!(c, Some(' ' | '\t' | '\n' | '\r'))
}

fn is_alpha(c: Option<char>) -> bool {
    matches!(c, Some(c) if c == '_' || c.is_ascii_alphabetic())
}

fn is_digit(c: Option<char>) -> bool {
    matches!(c, Some(c) if c.is_ascii_digit())
}

fn is_alnum(c: Option<char>) -> bool {
    is_alpha(c) || is_digit(c)
}

fn in_set(c: Option<char>, set: &str) -> bool {
    matches!(c, Some(c) if set.contains(c))
}

/// Result of one lexer step: a token, or "keep going" after consuming input silently.
type Step = Option<Token>;

impl<'a> Lexer<'a> {
    pub(crate) fn new(input: &'a str) -> Self {
        Lexer {
            input,
            pos: 0,
            start: 0,
            width: 0,
            state: State::Statements,
            paren_depth: 0,
            brace_open: false,
            bracket_open: false,
            got_colon: false,
            got_duration: false,
            string_open: '"',
        }
    }

    fn next(&mut self) -> Option<char> {
        match self.input.get(self.pos..).and_then(|s| s.chars().next()) {
            Some(c) => {
                self.width = c.len_utf8();
                self.pos += self.width;
                Some(c)
            }
            None => {
                self.width = 0;
                None
            }
        }
    }

    fn backup(&mut self) {
        self.pos -= self.width;
    }

    fn peek(&mut self) -> Option<char> {
        let c = self.next();
        self.backup();
        c
    }

    fn accept(&mut self, set: &str) -> bool {
        let c = self.next();
        if in_set(c, set) {
            return true;
        }
        self.backup();
        false
    }

    fn accept_run(&mut self, set: &str) {
        while in_set(self.next(), set) {}
        self.backup();
    }

    fn is(&mut self, set: &str) -> bool {
        let c = self.peek();
        in_set(c, set)
    }

    fn emit(&mut self, kind: Kind) -> Step {
        let t = Token {
            kind,
            pos: self.start,
            end: self.pos,
            msg: String::new(),
        };
        self.start = self.pos;
        Some(t)
    }

    fn errorf(&mut self, msg: String) -> Step {
        self.state = State::Done;
        Some(Token {
            kind: Kind::Error,
            pos: self.start,
            end: self.input.len(),
            msg,
        })
    }

    /// Like `emit` followed by `errorf` in the same step: Go overwrites the emitted item,
    /// so only the error (positioned after the emitted text) is seen.
    fn emit_then_error(&mut self, msg: String) -> Step {
        self.start = self.pos;
        self.errorf(msg)
    }

    fn ignore(&mut self) {
        self.start = self.pos;
    }

    /// The next token (comments included); after an error or the end, `Eof` forever.
    pub(crate) fn next_token(&mut self) -> Token {
        loop {
            let step = match self.state {
                State::Statements => self.lex_statements(),
                State::InsideBraces => self.lex_inside_braces(),
                State::DurationExpr => self.lex_duration_expr(),
                State::Done => {
                    let len = self.input.len();
                    return Token {
                        kind: Kind::Eof,
                        pos: len,
                        end: len,
                        msg: String::new(),
                    };
                }
            };
            if let Some(t) = step {
                return t;
            }
        }
    }

    fn lex_line_comment(&mut self) -> Step {
        self.pos += 1;
        let mut r = self.next();
        while r.is_some() && !matches!(r, Some('\r' | '\n')) {
            r = self.next();
        }
        self.backup();
        self.emit(Kind::Comment)
    }

    fn lex_space(&mut self) {
        while is_space(self.peek()) {
            self.next();
        }
        self.ignore();
    }

    fn lex_statements(&mut self) -> Step {
        if self.brace_open {
            self.state = State::InsideBraces;
            return None;
        }
        if self
            .input
            .get(self.pos..)
            .is_some_and(|s| s.starts_with('#'))
        {
            return self.lex_line_comment();
        }
        let r = self.next();
        match r {
            None => {
                if self.paren_depth != 0 {
                    return self.errorf("unclosed left parenthesis".into());
                }
                if self.bracket_open {
                    return self.errorf("unclosed left bracket".into());
                }
                self.state = State::Done;
                self.emit(Kind::Eof)
            }
            Some(',') => self.emit(Kind::Comma),
            c if is_space(c) => {
                self.lex_space();
                None
            }
            Some('*') => self.emit(Kind::Mul),
            Some('/') => self.emit(Kind::Div),
            Some('%') => self.emit(Kind::Mod),
            Some('+') => self.emit(Kind::Add),
            Some('-') => self.emit(Kind::Sub),
            Some('^') => self.emit(Kind::Pow),
            Some('=') => match self.peek() {
                Some('=') => {
                    self.next();
                    self.emit(Kind::Eqlc)
                }
                Some('~') => self.errorf(format!(
                    "unexpected character after '=': {}",
                    quote_rune(Some('~'))
                )),
                _ => self.emit(Kind::Eql),
            },
            Some('!') => {
                let t = self.next();
                if t != Some('=') {
                    return self
                        .errorf(format!("unexpected character after '!': {}", quote_rune(t)));
                }
                self.emit(Kind::Neq)
            }
            Some('<') => {
                if self.peek() == Some('=') {
                    self.next();
                    self.emit(Kind::Lte)
                } else {
                    self.emit(Kind::Lss)
                }
            }
            Some('>') => {
                if self.peek() == Some('=') {
                    self.next();
                    self.emit(Kind::Gte)
                } else {
                    self.emit(Kind::Gtr)
                }
            }
            c if is_digit(c) || (c == Some('.') && is_digit(self.peek())) => {
                self.backup();
                self.lex_number_or_duration()
            }
            Some(q @ ('"' | '\'')) => {
                self.string_open = q;
                self.lex_string()
            }
            Some('`') => {
                self.string_open = '`';
                self.lex_raw_string()
            }
            c if is_alpha(c) || c == Some(':') => {
                if !self.bracket_open {
                    self.backup();
                    return self.lex_keyword_or_identifier();
                }
                if c == Some(':') {
                    if self.got_colon {
                        return self.errorf(format!("unexpected colon {}", quote_rune(c)));
                    }
                    self.got_colon = true;
                    return self.emit(Kind::Colon);
                }
                self.errorf(format!(
                    "unexpected character: {}, expected {}",
                    quote_rune(c),
                    quote_rune(Some(':'))
                ))
            }
            Some('(') => {
                self.paren_depth += 1;
                self.emit(Kind::LeftParen)
            }
            Some(')') => {
                self.paren_depth -= 1;
                if self.paren_depth < 0 {
                    return self.emit_then_error(format!(
                        "unexpected right parenthesis {}",
                        quote_rune(r)
                    ));
                }
                self.emit(Kind::RightParen)
            }
            Some('{') => {
                self.brace_open = true;
                self.state = State::InsideBraces;
                self.emit(Kind::LeftBrace)
            }
            Some('[') => {
                if self.bracket_open {
                    return self.errorf(format!("unexpected left bracket {}", quote_rune(r)));
                }
                self.got_colon = false;
                let t = self.emit(Kind::LeftBracket);
                if is_space(self.peek()) {
                    self.lex_space();
                }
                self.bracket_open = true;
                self.state = State::DurationExpr;
                t
            }
            Some(']') => {
                if !self.bracket_open {
                    return self.errorf(format!("unexpected right bracket {}", quote_rune(r)));
                }
                self.bracket_open = false;
                self.emit(Kind::RightBracket)
            }
            Some('@') => self.emit(Kind::At),
            _ => self.errorf(format!("unexpected character: {}", quote_rune(r))),
        }
    }

    fn lex_inside_braces(&mut self) -> Step {
        if self
            .input
            .get(self.pos..)
            .is_some_and(|s| s.starts_with('#'))
        {
            return self.lex_line_comment();
        }
        let r = self.next();
        match r {
            None => self.errorf("unexpected end of input inside braces".into()),
            c if is_space(c) => {
                self.lex_space();
                None
            }
            c if is_alpha(c) => {
                self.backup();
                while is_alnum(self.next()) {}
                self.backup();
                self.emit(Kind::Identifier)
            }
            Some(',') => self.emit(Kind::Comma),
            Some(q @ ('"' | '\'')) => {
                self.string_open = q;
                self.lex_string()
            }
            Some('`') => {
                self.string_open = '`';
                self.lex_raw_string()
            }
            Some('=') => {
                if self.next() == Some('~') {
                    return self.emit(Kind::EqlRegex);
                }
                self.backup();
                self.emit(Kind::Eql)
            }
            Some('!') => match self.next() {
                Some('~') => self.emit(Kind::NeqRegex),
                Some('=') => self.emit(Kind::Neq),
                nr => self.errorf(format!(
                    "unexpected character after '!' inside braces: {}",
                    quote_rune(nr)
                )),
            },
            Some('{') => self.errorf(format!("unexpected left brace {}", quote_rune(r))),
            Some('}') => {
                self.brace_open = false;
                self.state = State::Statements;
                self.emit(Kind::RightBrace)
            }
            _ => self.errorf(format!(
                "unexpected character inside braces: {}",
                quote_rune(r)
            )),
        }
    }

    fn lex_duration_expr(&mut self) -> Step {
        let r = self.next();
        match r {
            None => self.errorf("unexpected end of input in duration expression".into()),
            Some(']') => {
                self.bracket_open = false;
                self.got_colon = false;
                self.state = State::Statements;
                self.emit(Kind::RightBracket)
            }
            Some(':') => {
                if !self.got_duration {
                    return self.emit_then_error(
                        "unexpected colon before duration in duration expression".into(),
                    );
                }
                if self.got_colon {
                    return self.emit_then_error(
                        "unexpected repeated colon in duration expression".into(),
                    );
                }
                self.got_colon = true;
                self.emit(Kind::Colon)
            }
            Some('(') => {
                self.paren_depth += 1;
                self.emit(Kind::LeftParen)
            }
            Some(')') => {
                self.paren_depth -= 1;
                if self.paren_depth < 0 {
                    return self.emit_then_error(format!(
                        "unexpected right parenthesis {}",
                        quote_rune(r)
                    ));
                }
                self.emit(Kind::RightParen)
            }
            c if is_space(c) => {
                self.lex_space();
                None
            }
            Some('+') => self.emit(Kind::Add),
            Some('-') => self.emit(Kind::Sub),
            Some('*') => self.emit(Kind::Mul),
            Some('/') => self.emit(Kind::Div),
            Some('%') => self.emit(Kind::Mod),
            Some('^') => self.emit(Kind::Pow),
            Some(',') => self.emit(Kind::Comma),
            c if is_digit(c) || (c == Some('.') && is_digit(self.peek())) => {
                self.backup();
                self.got_duration = true;
                self.state = State::Statements;
                self.lex_number_or_duration()
            }
            _ => self.errorf(format!(
                "unexpected character in duration expression: {}",
                quote_rune(r)
            )),
        }
    }

    fn lex_escape(&mut self) -> Result<(), String> {
        let ch = self.next();
        let (mut n, base, max, mut ch) = match ch {
            Some(c) if "abfnrtv\\".contains(c) || c == self.string_open => return Ok(()),
            Some('0'..='7') => (3u32, 8u32, 255u32, ch),
            Some('x') => (2, 16, 255, self.next()),
            Some('u') => (4, 16, 0x10FFFF, self.next()),
            Some('U') => (8, 16, 0x10FFFF, self.next()),
            None => return Err("escape sequence not terminated".into()),
            Some(c) => return Err(format!("unknown escape sequence {}", sharp_u(c))),
        };
        let mut x: u64 = 0;
        while n > 0 {
            let d = ch.and_then(|c| c.to_digit(16)).unwrap_or(16);
            if d >= base {
                return Err(match ch {
                    None => "escape sequence not terminated".into(),
                    Some(c) => format!("illegal character {} in escape sequence", sharp_u(c)),
                });
            }
            x = x * u64::from(base) + u64::from(d);
            n -= 1;
            if n > 0 {
                ch = self.next();
            }
        }
        if x > u64::from(max) || (0xD800..0xE000).contains(&x) {
            return Err("escape sequence is an invalid Unicode code point".into());
        }
        Ok(())
    }

    fn lex_string(&mut self) -> Step {
        loop {
            match self.next() {
                Some('\\') => {
                    if let Err(msg) = self.lex_escape() {
                        return self.errorf(msg);
                    }
                }
                Some('\u{FFFD}') => return self.errorf("invalid UTF-8 rune".into()),
                None | Some('\n') => return self.errorf("unterminated quoted string".into()),
                Some(c) if c == self.string_open => break,
                Some(_) => {}
            }
        }
        self.emit(Kind::String)
    }

    fn lex_raw_string(&mut self) -> Step {
        loop {
            match self.next() {
                Some('\u{FFFD}') => return self.errorf("invalid UTF-8 rune".into()),
                None => return self.errorf("unterminated raw string".into()),
                Some(c) if c == self.string_open => break,
                Some(_) => {}
            }
        }
        self.emit(Kind::String)
    }

    fn lex_number_or_duration(&mut self) -> Step {
        if self.scan_number() {
            return self.emit(Kind::Number);
        }
        if self.accept_remaining_duration() {
            self.backup();
            return self.emit(Kind::Duration);
        }
        let text = self.input.get(self.start..self.pos).unwrap_or("");
        self.errorf(format!("bad number or duration syntax: {}", quote(text)))
    }

    fn accept_remaining_duration(&mut self) -> bool {
        if !self.accept("smhdwy") {
            return false;
        }
        self.accept("s");
        while self.accept("0123456789") {
            while self.accept("0123456789") {}
            if !self.accept("smhdw") {
                return false;
            }
            self.accept("s");
        }
        let c = self.next();
        !is_alnum(c)
    }

    fn scan_number(&mut self) -> bool {
        let initial = self.pos;
        let mut digits = "0123456789";
        if self.accept("0") && self.accept("xX") {
            self.accept("_");
            digits = "0123456789abcdefABCDEF";
        }
        self.accept(".");
        self.accept(digits);
        let mut dot = false;
        let mut exp = false;
        let all: String = format!("{digits}._eE");
        while self.is(&all) {
            if self.is(".") && dot {
                self.accept(".");
                return false;
            }
            if self.is("eE") && exp {
                self.accept("eE");
                return false;
            }
            if self.accept(".") {
                dot = true;
                if self.accept("_.") {
                    return false;
                }
                if digits.len() > 10 {
                    return false;
                }
                continue;
            }
            if self.accept("eE") {
                exp = true;
                self.accept("+-");
                if self.accept("._eE") || self.peek().is_none() {
                    return false;
                }
                continue;
            }
            if self.accept("_") {
                if self.accept("._eE") || self.peek().is_none() {
                    return false;
                }
                continue;
            }
            self.accept_run(digits);
        }
        if self.pos == initial {
            return false;
        }
        !is_alnum(self.peek())
    }

    fn lex_keyword_or_identifier(&mut self) -> Step {
        loop {
            let r = self.next();
            if is_alnum(r) || r == Some(':') {
                continue;
            }
            self.backup();
            let word = self.input.get(self.start..self.pos).unwrap_or("");
            let kind = match keyword(word) {
                Some(k) => k,
                None if word.contains(':') => Kind::MetricIdentifier,
                None => Kind::Identifier,
            };
            return self.emit(kind);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<Kind> {
        let mut l = Lexer::new(s);
        let mut out = Vec::new();
        loop {
            let t = l.next_token();
            out.push(t.kind);
            if matches!(t.kind, Kind::Eof | Kind::Error) {
                return out;
            }
        }
    }

    fn first_error(s: &str) -> Option<(usize, String)> {
        let mut l = Lexer::new(s);
        loop {
            let t = l.next_token();
            match t.kind {
                Kind::Error => return Some((t.pos, t.msg)),
                Kind::Eof => return None,
                _ => {}
            }
        }
    }

    #[test]
    fn tokens() {
        use Kind::*;
        assert_eq!(
            kinds("sum by (a) (rate(x{y=~\"z\"}[5m:1m])) offset 1h"),
            vec![
                Sum,
                By,
                LeftParen,
                Identifier,
                RightParen,
                LeftParen,
                Identifier,
                LeftParen,
                Identifier,
                LeftBrace,
                Identifier,
                EqlRegex,
                String,
                RightBrace,
                LeftBracket,
                Duration,
                Colon,
                Duration,
                RightBracket,
                RightParen,
                RightParen,
                Offset,
                Duration,
                Eof
            ]
        );
        assert_eq!(
            kinds("a:b # c\n+ Inf"),
            vec![MetricIdentifier, Comment, Add, Number, Eof]
        );
        assert_eq!(
            kinds("0x1F 1e-3 .5 5. 1_000"),
            vec![Number, Number, Number, Number, Number, Eof]
        );
    }

    #[test]
    fn errors_at_prometheus_positions() {
        assert_eq!(
            first_error("(1))"),
            Some((4, "unexpected right parenthesis ')'".into()))
        );
        assert_eq!(
            first_error("2.5."),
            Some((0, "bad number or duration syntax: \"2.5.\"".into()))
        );
        assert_eq!(
            first_error("100..4"),
            Some((0, "bad number or duration syntax: \"100..\"".into()))
        );
        assert_eq!(
            first_error("0deadbeef"),
            Some((0, "bad number or duration syntax: \"0de\"".into()))
        );
        assert_eq!(
            first_error("1 =~ 1"),
            Some((2, "unexpected character after '=': '~'".into()))
        );
        assert_eq!(
            first_error("foo{a*\"b\"}"),
            Some((5, "unexpected character inside braces: '*'".into()))
        );
        assert_eq!(
            first_error("`\\``"),
            Some((3, "unterminated raw string".into()))
        );
        assert_eq!(
            first_error("\"\\c\""),
            Some((0, "unknown escape sequence U+0063 'c'".into()))
        );
        assert_eq!(
            first_error("\"\\x.\""),
            Some((0, "illegal character U+002E '.' in escape sequence".into()))
        );
        assert_eq!(
            first_error("foo[5s x 5s]"),
            Some((7, "unexpected character: 'x', expected ':'".into()))
        );
        assert_eq!(
            first_error("foo["),
            Some((4, "unexpected end of input in duration expression".into()))
        );
        assert_eq!(
            first_error("sum(foo"),
            Some((7, "unclosed left parenthesis".into()))
        );
        assert_eq!(
            first_error("x{"),
            Some((2, "unexpected end of input inside braces".into()))
        );
    }
}
