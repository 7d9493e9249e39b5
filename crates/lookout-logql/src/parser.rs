//! Recursive-descent LogQL parser producing [`crate::ast`] with regexes, templates and
//! patterns compiled. Syntax errors read like Loki's
//! (`parse error at line 1, col 9: syntax error: unexpected ip, expecting STRING`).

use lookout_storage::{MatchOp, Matcher};
use regex::Regex;

use crate::ast::*;
use crate::ip::IpMatcher;
use crate::lexer::{Tok, Token, tokenize};
use crate::pattern::Pattern;
use crate::template::Template;
use crate::units::parse_go_float;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub msg: String,
    /// Byte offset in the query.
    pub pos: usize,
    pub line: usize,
    pub col: usize,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "parse error at line {}, col {}: {}",
            self.line, self.col, self.msg
        )
    }
}

impl std::error::Error for ParseError {}

type PResult<T> = Result<T, ParseError>;

/// Parses a LogQL query (log or metric).
pub fn parse(src: &str) -> PResult<Expr> {
    let toks = tokenize(src).map_err(|e| mk_err(src, e.pos, e.msg))?;
    let mut p = P { src, toks, i: 0 };
    let e = if p.peek() == &Tok::LBrace {
        let log = p.log_expr()?;
        if p.peek() == &Tok::LBracket {
            return Err(p.err_here(
                "syntax error: unexpected [: a range vector must be inside a range aggregation",
            ));
        }
        Expr::Log(log)
    } else {
        Expr::Sample(p.sample_expr(0)?)
    };
    if p.peek() != &Tok::Eof {
        return Err(p.unexpected(None));
    }
    Ok(e)
}

fn mk_err(src: &str, pos: usize, msg: String) -> ParseError {
    let before = &src[..pos.min(src.len())];
    let line = 1 + before.matches('\n').count();
    let col = 1 + before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0);
    ParseError {
        msg,
        pos,
        line,
        col,
    }
}

struct P<'a> {
    src: &'a str,
    toks: Vec<Token>,
    i: usize,
}

fn is_ident(t: &Tok, s: &str) -> bool {
    matches!(t, Tok::Ident(x) if x == s)
}

impl P<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.i.min(self.toks.len() - 1)].tok
    }

    fn peek_at(&self, n: usize) -> &Tok {
        &self.toks[(self.i + n).min(self.toks.len() - 1)].tok
    }

    fn pos(&self) -> usize {
        self.toks[self.i.min(self.toks.len() - 1)].pos
    }

    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.i < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn err_at(&self, pos: usize, msg: impl Into<String>) -> ParseError {
        mk_err(self.src, pos, msg.into())
    }

    fn err_here(&self, msg: impl Into<String>) -> ParseError {
        self.err_at(self.pos(), msg)
    }

    fn unexpected(&self, expecting: Option<&str>) -> ParseError {
        let d = self.peek().describe();
        let msg = match expecting {
            Some(e) => format!("syntax error: unexpected {d}, expecting {e}"),
            None => format!("syntax error: unexpected {d}"),
        };
        self.err_here(msg)
    }

    fn expect(&mut self, t: Tok, what: &str) -> PResult<()> {
        if self.peek() == &t {
            self.next();
            Ok(())
        } else {
            Err(self.unexpected(Some(what)))
        }
    }

    fn ident(&mut self) -> PResult<String> {
        match self.peek().clone() {
            Tok::Ident(s) => {
                self.next();
                Ok(s)
            }
            _ => Err(self.unexpected(Some("IDENTIFIER"))),
        }
    }

    fn string(&mut self) -> PResult<String> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.next();
                Ok(s)
            }
            _ => Err(self.unexpected(Some("STRING"))),
        }
    }

    fn number(&mut self) -> PResult<f64> {
        match self.peek().clone() {
            Tok::Number(n) => {
                let pos = self.pos();
                self.next();
                parse_go_float(&n).map_err(|e| {
                    self.err_at(pos, format!("unable to parse literal as a float: {e}"))
                })
            }
            _ => Err(self.unexpected(Some("NUMBER"))),
        }
    }

    fn duration(&mut self) -> PResult<i64> {
        match self.peek().clone() {
            Tok::Duration(ns, _) => {
                self.next();
                Ok(ns)
            }
            _ => Err(self.unexpected(Some("DURATION"))),
        }
    }

    // ---- log expressions ----

    fn selector(&mut self) -> PResult<Vec<Matcher>> {
        let start = self.pos();
        self.expect(Tok::LBrace, "{")?;
        let mut ms = Vec::new();
        if self.peek() != &Tok::RBrace {
            loop {
                let name = self.ident()?;
                let op = match self.next() {
                    Tok::Eq => MatchOp::Equal,
                    Tok::Neq => MatchOp::NotEqual,
                    Tok::Re => MatchOp::Regex,
                    Tok::Nre => MatchOp::NotRegex,
                    _ => {
                        self.i -= 1;
                        return Err(self.unexpected(Some("= or != or =~ or !~")));
                    }
                };
                let vpos = self.pos();
                let value = self.string()?;
                let m = Matcher::new(op, name, value).map_err(|e| {
                    self.err_at(vpos, format!("error parsing regexp: {}", e.source))
                })?;
                ms.push(m);
                if self.peek() == &Tok::Comma {
                    self.next();
                    continue;
                }
                break;
            }
        }
        self.expect(Tok::RBrace, "}")?;
        if !ms.iter().any(|m| !m.matches_empty()) {
            return Err(self.err_at(
                start,
                "queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will",
            ));
        }
        Ok(ms)
    }

    fn log_expr(&mut self) -> PResult<LogExpr> {
        let matchers = self.selector()?;
        let (stages, unwrap) = self.pipeline(false)?;
        if unwrap.is_some() {
            return Err(
                self.err_here("syntax error: unwrap is only allowed in a range aggregation")
            );
        }
        Ok(LogExpr { matchers, stages })
    }

    /// Pipeline stages up to the first token that cannot continue it.
    fn pipeline(&mut self, allow_unwrap: bool) -> PResult<(Vec<Stage>, Option<Unwrap>)> {
        let mut stages = Vec::new();
        let mut unwrap: Option<Unwrap> = None;
        loop {
            let op = match self.peek() {
                Tok::PipeExact => Some(LineOp::Contains),
                Tok::Neq => Some(LineOp::NotContains),
                Tok::PipeMatch => Some(LineOp::Regex),
                Tok::Nre => Some(LineOp::NotRegex),
                Tok::PipePattern => Some(LineOp::Pattern),
                Tok::NPattern => Some(LineOp::NotPattern),
                Tok::Pipe => None,
                _ => break,
            };
            if let Some(op) = op {
                if unwrap.is_some() {
                    return Err(self.unexpected(None));
                }
                self.next();
                stages.push(Stage::LineFilter(self.line_filter(op)?));
                continue;
            }
            self.next(); // |
            let kw = match self.peek() {
                Tok::Ident(s) => s.clone(),
                Tok::LParen => String::new(),
                _ => return Err(self.unexpected(Some("IDENTIFIER"))),
            };
            let is_stage_kw = matches!(
                kw.as_str(),
                "json"
                    | "logfmt"
                    | "regexp"
                    | "pattern"
                    | "unpack"
                    | "line_format"
                    | "label_format"
                    | "decolorize"
                    | "drop"
                    | "keep"
                    | "unwrap"
            ) && !matches!(
                self.peek_at(1),
                Tok::Eq
                    | Tok::Neq
                    | Tok::Re
                    | Tok::Nre
                    | Tok::Eql
                    | Tok::Gt
                    | Tok::Gte
                    | Tok::Lt
                    | Tok::Lte
            );
            if unwrap.is_some() {
                if is_stage_kw {
                    return Err(self.unexpected(None));
                }
                let f = self.label_filter_or()?;
                if let Some(u) = unwrap.as_mut() {
                    u.post_filters.push(f);
                }
                continue;
            }
            if !is_stage_kw {
                stages.push(Stage::LabelFilter(self.label_filter_or()?));
                continue;
            }
            self.next();
            match kw.as_str() {
                "json" => stages.push(Stage::Parser(self.json_parser()?)),
                "logfmt" => stages.push(Stage::Parser(self.logfmt_parser()?)),
                "regexp" => stages.push(Stage::Parser(self.regexp_parser()?)),
                "pattern" => {
                    let pos = self.pos();
                    let s = self.string()?;
                    let p = Pattern::parse(&s).map_err(|e| self.err_at(pos, e))?;
                    if p.names().next().is_none() {
                        return Err(self.err_at(pos, "at least one capture is required"));
                    }
                    stages.push(Stage::Parser(Parser::Pattern(p)));
                }
                "unpack" => stages.push(Stage::Parser(Parser::Unpack)),
                "line_format" => {
                    let pos = self.pos();
                    let s = self.string()?;
                    let t = Template::parse("line", &s).map_err(|e| self.err_at(pos, e))?;
                    stages.push(Stage::LineFormat(t));
                }
                "label_format" => stages.push(Stage::LabelFormat(self.label_format()?)),
                "decolorize" => stages.push(Stage::Decolorize),
                "drop" => stages.push(Stage::Drop(self.named_matchers()?)),
                "keep" => stages.push(Stage::Keep(self.named_matchers()?)),
                "unwrap" => {
                    if !allow_unwrap {
                        return Err(self.err_here(
                            "syntax error: unwrap is only allowed in a range aggregation",
                        ));
                    }
                    unwrap = Some(self.unwrap_expr()?);
                }
                _ => return Err(self.unexpected(None)),
            }
        }
        Ok((stages, unwrap))
    }

    fn line_filter(&mut self, op: LineOp) -> PResult<LineFilter> {
        let mut operands = Vec::new();
        loop {
            let pos = self.pos();
            let operand = if is_ident(self.peek(), "ip") && self.peek_at(1) == &Tok::LParen {
                self.next();
                self.next();
                let s = self.string()?;
                self.expect(Tok::RParen, ")")?;
                if !matches!(op, LineOp::Contains | LineOp::NotContains) {
                    return Err(self.err_at(
                        pos,
                        "ip: invalid operation: only |= and != are supported with ip()",
                    ));
                }
                LineOperand::Ip(IpMatcher::new(&s).map_err(|e| self.err_at(pos, e))?)
            } else {
                let s = self.string()?;
                match op {
                    LineOp::Contains | LineOp::NotContains => LineOperand::Str(s),
                    LineOp::Regex | LineOp::NotRegex => {
                        LineOperand::Regex(Regex::new(&s).map_err(|e| {
                            self.err_at(pos, format!("error parsing regexp: {}", regex_msg(&e)))
                        })?)
                    }
                    LineOp::Pattern | LineOp::NotPattern => {
                        let p = Pattern::parse(&s).map_err(|e| self.err_at(pos, e))?;
                        if p.names().next().is_some() {
                            return Err(self.err_at(
                                pos,
                                "named captures are not allowed in pattern line filters",
                            ));
                        }
                        LineOperand::Pattern(p)
                    }
                }
            };
            operands.push(operand);
            if is_ident(self.peek(), "or") {
                self.next();
                continue;
            }
            break;
        }
        Ok(LineFilter { op, operands })
    }

    fn json_parser(&mut self) -> PResult<Parser> {
        let mut exprs = Vec::new();
        for (name, path, pos) in self.extraction_exprs()? {
            let p = parse_json_path(&path).ok_or_else(|| {
                self.err_at(
                    pos,
                    format!("cannot parse expression [{path}]: syntax error"),
                )
            })?;
            exprs.push((name, p));
        }
        Ok(Parser::Json(exprs))
    }

    /// `a="path", b` — returns (label, path, position).
    fn extraction_exprs(&mut self) -> PResult<Vec<(String, String, usize)>> {
        let mut out = Vec::new();
        if !matches!(self.peek(), Tok::Ident(_))
            || matches!(self.peek(), Tok::Ident(s) if s == "or" || s == "and")
        {
            return Ok(out);
        }
        loop {
            let pos = self.pos();
            let name = self.ident()?;
            if self.peek() == &Tok::Eq {
                self.next();
                let vpos = self.pos();
                let v = self.string()?;
                out.push((name, v, vpos));
            } else {
                out.push((name.clone(), name, pos));
            }
            if self.peek() == &Tok::Comma {
                self.next();
                continue;
            }
            break;
        }
        Ok(out)
    }

    fn logfmt_parser(&mut self) -> PResult<Parser> {
        let mut strict = false;
        let mut keep_empty = false;
        while let Tok::Flag(f) = self.peek().clone() {
            match f.as_str() {
                "strict" => strict = true,
                "keep-empty" => keep_empty = true,
                _ => return Err(self.unexpected(None)),
            }
            self.next();
        }
        let exprs = self
            .extraction_exprs()?
            .into_iter()
            .map(|(n, p, _)| (n, p))
            .collect();
        Ok(Parser::Logfmt {
            strict,
            keep_empty,
            exprs,
        })
    }

    fn regexp_parser(&mut self) -> PResult<Parser> {
        let pos = self.pos();
        let s = self.string()?;
        let mut seen = std::collections::HashSet::new();
        for name in capture_names(&s) {
            if !seen.insert(name.clone()) {
                return Err(self.err_at(pos, format!("duplicate extracted label name: {name}")));
            }
        }
        let re = Regex::new(&s)
            .map_err(|e| self.err_at(pos, format!("error parsing regexp: {}", regex_msg(&e))))?;
        let names: Vec<Option<String>> =
            re.capture_names().map(|n| n.map(str::to_string)).collect();
        if names.iter().all(Option::is_none) {
            return Err(self.err_at(pos, "at least one named capture must be supplied"));
        }
        Ok(Parser::Regexp { re, names })
    }

    fn label_format(&mut self) -> PResult<Vec<LabelFmt>> {
        let mut out = Vec::new();
        loop {
            let dst = self.ident()?;
            self.expect(Tok::Eq, "=")?;
            let pos = self.pos();
            match self.next() {
                Tok::Ident(src) => out.push(LabelFmt::Rename { dst, src }),
                Tok::Str(s) => {
                    let tmpl = Template::parse("label", &s).map_err(|e| self.err_at(pos, e))?;
                    out.push(LabelFmt::Template { dst, tmpl });
                }
                _ => {
                    self.i -= 1;
                    return Err(self.unexpected(Some("IDENTIFIER or STRING")));
                }
            }
            if self.peek() == &Tok::Comma {
                self.next();
                continue;
            }
            break;
        }
        Ok(out)
    }

    fn named_matchers(&mut self) -> PResult<Vec<NamedMatcher>> {
        let mut out = Vec::new();
        loop {
            let name = self.ident()?;
            let op = match self.peek() {
                Tok::Eq => Some(MatchOp::Equal),
                Tok::Neq => Some(MatchOp::NotEqual),
                Tok::Re => Some(MatchOp::Regex),
                Tok::Nre => Some(MatchOp::NotRegex),
                _ => None,
            };
            let matcher = match op {
                Some(op) => {
                    self.next();
                    let pos = self.pos();
                    let v = self.string()?;
                    Some(Matcher::new(op, name.clone(), v).map_err(|e| {
                        self.err_at(pos, format!("error parsing regexp: {}", e.source))
                    })?)
                }
                None => None,
            };
            out.push(NamedMatcher { name, matcher });
            if self.peek() == &Tok::Comma {
                self.next();
                continue;
            }
            break;
        }
        Ok(out)
    }

    fn unwrap_expr(&mut self) -> PResult<Unwrap> {
        let name = self.ident()?;
        let conv = match name.as_str() {
            "duration" | "duration_seconds" if self.peek() == &Tok::LParen => {
                Some(Conversion::Duration)
            }
            "bytes" if self.peek() == &Tok::LParen => Some(Conversion::Bytes),
            _ => None,
        };
        match conv {
            Some(c) => {
                self.next();
                let label = self.ident()?;
                self.expect(Tok::RParen, ")")?;
                Ok(Unwrap {
                    label,
                    conversion: c,
                    post_filters: Vec::new(),
                })
            }
            None => Ok(Unwrap {
                label: name,
                conversion: Conversion::None,
                post_filters: Vec::new(),
            }),
        }
    }

    fn label_filter_or(&mut self) -> PResult<LabelFilter> {
        let mut lhs = self.label_filter_and()?;
        while is_ident(self.peek(), "or") {
            self.next();
            let rhs = self.label_filter_and()?;
            lhs = LabelFilter::Or(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn label_filter_and(&mut self) -> PResult<LabelFilter> {
        let mut lhs = self.label_filter_primary()?;
        loop {
            match self.peek() {
                Tok::Ident(s) if s == "and" => {
                    self.next();
                }
                Tok::Comma => {
                    self.next();
                }
                Tok::Ident(s) if s != "or" && s != "offset" => {}
                Tok::LParen => {}
                _ => break,
            }
            let rhs = self.label_filter_primary()?;
            lhs = LabelFilter::And(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn label_filter_primary(&mut self) -> PResult<LabelFilter> {
        if self.peek() == &Tok::LParen {
            self.next();
            let f = self.label_filter_or()?;
            self.expect(Tok::RParen, ")")?;
            return Ok(f);
        }
        let name = self.ident()?;
        let op_tok = self.next();
        let cmp = match op_tok {
            Tok::Eq => CmpOp::Eq,
            Tok::Neq => CmpOp::Ne,
            Tok::Eql => CmpOp::Eq,
            Tok::Gt => CmpOp::Gt,
            Tok::Gte => CmpOp::Ge,
            Tok::Lt => CmpOp::Lt,
            Tok::Lte => CmpOp::Le,
            Tok::Re | Tok::Nre => {
                let op = if op_tok == Tok::Re {
                    MatchOp::Regex
                } else {
                    MatchOp::NotRegex
                };
                let pos = self.pos();
                let v = self.string()?;
                let m = Matcher::new(op, name, v)
                    .map_err(|e| self.err_at(pos, format!("error parsing regexp: {}", e.source)))?;
                return Ok(LabelFilter::String(m));
            }
            _ => {
                self.i -= 1;
                return Err(
                    self.unexpected(Some("= or != or =~ or !~ or == or > or >= or < or <="))
                );
            }
        };
        let string_ok = matches!(op_tok, Tok::Eq | Tok::Neq);
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Str(v) if string_ok => {
                self.next();
                let op = if cmp == CmpOp::Eq {
                    MatchOp::Equal
                } else {
                    MatchOp::NotEqual
                };
                Ok(LabelFilter::String(
                    Matcher::new(op, name, v).map_err(|e| self.err_at(pos, e.to_string()))?,
                ))
            }
            Tok::Ident(s) if s == "ip" && string_ok && self.peek_at(1) == &Tok::LParen => {
                self.next();
                self.next();
                let v = self.string()?;
                self.expect(Tok::RParen, ")")?;
                let ip = IpMatcher::new(&v).map_err(|e| self.err_at(pos, e))?;
                Ok(LabelFilter::Ip {
                    name,
                    negate: cmp == CmpOp::Ne,
                    ip,
                })
            }
            Tok::Number(_) => {
                let value = self.number()?;
                Ok(LabelFilter::Number {
                    name,
                    op: cmp,
                    value,
                })
            }
            Tok::Duration(ns, _) => {
                self.next();
                Ok(LabelFilter::Duration {
                    name,
                    op: cmp,
                    value: ns as f64 / 1e9,
                })
            }
            Tok::Bytes(v, _) => {
                self.next();
                Ok(LabelFilter::Bytes {
                    name,
                    op: cmp,
                    value: v,
                })
            }
            _ => Err(self.unexpected(Some(if string_ok {
                "STRING or NUMBER or DURATION or BYTES or ip"
            } else {
                "NUMBER or DURATION or BYTES"
            }))),
        }
    }

    // ---- metric expressions ----

    fn sample_expr(&mut self, min_prec: u8) -> PResult<SampleExpr> {
        let mut lhs = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Add => BinOp::Add,
                Tok::Sub => BinOp::Sub,
                Tok::Mul => BinOp::Mul,
                Tok::Div => BinOp::Div,
                Tok::Mod => BinOp::Mod,
                Tok::Pow => BinOp::Pow,
                Tok::Eql => BinOp::Eq,
                Tok::Neq => BinOp::Ne,
                Tok::Gt => BinOp::Gt,
                Tok::Gte => BinOp::Ge,
                Tok::Lt => BinOp::Lt,
                Tok::Lte => BinOp::Le,
                Tok::Ident(s) if s == "and" => BinOp::And,
                Tok::Ident(s) if s == "or" => BinOp::Or,
                Tok::Ident(s) if s == "unless" => BinOp::Unless,
                _ => break,
            };
            let prec = op.precedence();
            if prec < min_prec {
                break;
            }
            let op_pos = self.pos();
            self.next();
            let mut return_bool = false;
            if is_ident(self.peek(), "bool") {
                if !op.is_comparison() {
                    return Err(
                        self.err_here("bool modifier can only be used on comparison operators")
                    );
                }
                self.next();
                return_bool = true;
            }
            let matching = self.vector_matching(op)?;
            let next_min = if op == BinOp::Pow { prec } else { prec + 1 };
            let rhs = self.sample_expr(next_min)?;
            if op.is_set() {
                if lhs.is_scalar() {
                    return Err(self.err_at(op_pos, "unexpected literal for left leg of logical/set binary operation (and, or, unless)"));
                }
                if rhs.is_scalar() {
                    return Err(self.err_at(op_pos, "unexpected literal for right leg of logical/set binary operation (and, or, unless)"));
                }
            }
            lhs = SampleExpr::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
                return_bool,
                matching,
            };
        }
        Ok(lhs)
    }

    fn label_list(&mut self) -> PResult<Vec<String>> {
        self.expect(Tok::LParen, "(")?;
        let mut out = Vec::new();
        if self.peek() != &Tok::RParen {
            loop {
                out.push(self.ident()?);
                if self.peek() == &Tok::Comma {
                    self.next();
                    continue;
                }
                break;
            }
        }
        self.expect(Tok::RParen, ")")?;
        Ok(out)
    }

    fn vector_matching(&mut self, op: BinOp) -> PResult<Option<VectorMatching>> {
        let on = if is_ident(self.peek(), "on") {
            true
        } else if is_ident(self.peek(), "ignoring") {
            false
        } else {
            if is_ident(self.peek(), "group_left") || is_ident(self.peek(), "group_right") {
                return Err(self.unexpected(None));
            }
            return Ok(None);
        };
        self.next();
        let labels = self.label_list()?;
        let mut card = Card::OneToOne;
        let mut include = Vec::new();
        if is_ident(self.peek(), "group_left") || is_ident(self.peek(), "group_right") {
            if op.is_set() {
                return Err(self.err_here(format!(
                    "no grouping allowed for \"{}\" operation",
                    set_name(op)
                )));
            }
            card = if is_ident(self.peek(), "group_left") {
                Card::ManyToOne
            } else {
                Card::OneToMany
            };
            self.next();
            if self.peek() == &Tok::LParen {
                include = self.label_list()?;
            }
        }
        Ok(Some(VectorMatching {
            card,
            on,
            labels,
            include,
        }))
    }

    fn unary(&mut self) -> PResult<SampleExpr> {
        match self.peek().clone() {
            Tok::Sub | Tok::Add => {
                let neg = self.peek() == &Tok::Sub;
                self.next();
                let v = self.number()?;
                Ok(SampleExpr::Literal(if neg { -v } else { v }))
            }
            Tok::Number(_) => Ok(SampleExpr::Literal(self.number()?)),
            Tok::LParen => {
                self.next();
                let e = self.sample_expr(0)?;
                self.expect(Tok::RParen, ")")?;
                Ok(e)
            }
            Tok::Ident(name) => {
                if self.peek_at(1) != &Tok::LParen
                    && !(VecOp::from_name(&name).is_some() && is_ident(self.peek_at(1), "by"))
                    && !(VecOp::from_name(&name).is_some() && is_ident(self.peek_at(1), "without"))
                {
                    return Err(self.unexpected(None));
                }
                if let Some(op) = RangeOp::from_name(&name) {
                    self.next();
                    return self.range_agg(op);
                }
                if let Some(op) = VecOp::from_name(&name) {
                    self.next();
                    return self.vector_agg(op);
                }
                match name.as_str() {
                    "vector" => {
                        self.next();
                        self.next();
                        let v = self.number()?;
                        self.expect(Tok::RParen, ")")?;
                        Ok(SampleExpr::Vector(v))
                    }
                    "label_replace" => {
                        self.next();
                        self.next();
                        let expr = self.sample_expr(0)?;
                        self.expect(Tok::Comma, ",")?;
                        let dst = self.string()?;
                        self.expect(Tok::Comma, ",")?;
                        let replacement = self.string()?;
                        self.expect(Tok::Comma, ",")?;
                        let src = self.string()?;
                        self.expect(Tok::Comma, ",")?;
                        let pos = self.pos();
                        let re = self.string()?;
                        self.expect(Tok::RParen, ")")?;
                        let regex = Regex::new(&format!("^(?s:{re})$")).map_err(|e| {
                            self.err_at(
                                pos,
                                format!(
                                    "invalid regular expression in label_replace(): {}",
                                    regex_msg(&e)
                                ),
                            )
                        })?;
                        Ok(SampleExpr::LabelReplace {
                            expr: Box::new(expr),
                            dst,
                            replacement,
                            src,
                            regex,
                        })
                    }
                    _ => Err(self.unexpected(None)),
                }
            }
            _ => Err(self.unexpected(None)),
        }
    }

    fn grouping(&mut self) -> PResult<Option<Grouping>> {
        let without = if is_ident(self.peek(), "by") {
            false
        } else if is_ident(self.peek(), "without") {
            true
        } else {
            return Ok(None);
        };
        self.next();
        let labels = self.label_list()?;
        Ok(Some(Grouping { without, labels }))
    }

    fn range_agg(&mut self, op: RangeOp) -> PResult<SampleExpr> {
        let start = self.pos();
        self.expect(Tok::LParen, "(")?;
        let param = if op == RangeOp::QuantileOverTime {
            let v = self.number()?;
            self.expect(Tok::Comma, ",")?;
            Some(v)
        } else {
            None
        };
        let range = self.log_range()?;
        self.expect(Tok::RParen, ")")?;
        let grouping = self.grouping()?;
        let name = op.name();
        let needs_unwrap = matches!(
            op,
            RangeOp::SumOverTime
                | RangeOp::AvgOverTime
                | RangeOp::MinOverTime
                | RangeOp::MaxOverTime
                | RangeOp::StddevOverTime
                | RangeOp::StdvarOverTime
                | RangeOp::QuantileOverTime
                | RangeOp::FirstOverTime
                | RangeOp::LastOverTime
                | RangeOp::RateCounter
        );
        let forbids_unwrap = matches!(
            op,
            RangeOp::CountOverTime | RangeOp::BytesOverTime | RangeOp::BytesRate
        );
        if needs_unwrap && range.unwrap.is_none() {
            return Err(self.err_at(start, format!("invalid aggregation {name} without unwrap")));
        }
        if forbids_unwrap && range.unwrap.is_some() {
            return Err(self.err_at(start, format!("invalid aggregation {name} with unwrap")));
        }
        let grouping_ok = matches!(
            op,
            RangeOp::AvgOverTime
                | RangeOp::MinOverTime
                | RangeOp::MaxOverTime
                | RangeOp::StddevOverTime
                | RangeOp::StdvarOverTime
                | RangeOp::QuantileOverTime
                | RangeOp::FirstOverTime
                | RangeOp::LastOverTime
        );
        if grouping.is_some() && !grouping_ok {
            return Err(self.err_at(
                start,
                format!("grouping not allowed for {name} aggregation"),
            ));
        }
        Ok(SampleExpr::RangeAgg {
            op,
            param,
            range: Box::new(range),
            grouping,
        })
    }

    fn log_range(&mut self) -> PResult<LogRange> {
        let (log, unwrap, range_ns) = if self.peek() == &Tok::LParen {
            self.next();
            let matchers = self.selector()?;
            let (stages, unwrap) = self.pipeline(true)?;
            self.expect(Tok::RParen, ")")?;
            let r = self.range()?;
            (LogExpr { matchers, stages }, unwrap, r)
        } else {
            let matchers = self.selector()?;
            if self.peek() == &Tok::LBracket {
                let r = self.range()?;
                let offset = self.offset()?;
                let (stages, unwrap) = self.pipeline(true)?;
                return Ok(LogRange {
                    log: LogExpr { matchers, stages },
                    unwrap,
                    range_ns: r,
                    offset_ns: offset,
                });
            }
            let (stages, unwrap) = self.pipeline(true)?;
            let r = self.range()?;
            (LogExpr { matchers, stages }, unwrap, r)
        };
        let offset_ns = self.offset()?;
        Ok(LogRange {
            log,
            unwrap,
            range_ns,
            offset_ns,
        })
    }

    fn range(&mut self) -> PResult<i64> {
        self.expect(Tok::LBracket, "[")?;
        let d = self.duration()?;
        self.expect(Tok::RBracket, "]")?;
        if d <= 0 {
            return Err(self.err_here("syntax error: range must be greater than 0"));
        }
        Ok(d)
    }

    fn offset(&mut self) -> PResult<i64> {
        if is_ident(self.peek(), "offset") {
            self.next();
            return self.duration();
        }
        Ok(0)
    }

    fn vector_agg(&mut self, op: VecOp) -> PResult<SampleExpr> {
        let start = self.pos();
        let mut grouping = self.grouping()?;
        self.expect(Tok::LParen, "(")?;
        let needs_param = matches!(op, VecOp::Topk | VecOp::Bottomk | VecOp::ApproxTopk);
        let param = if needs_param {
            if !matches!(self.peek(), Tok::Number(_)) {
                return Err(self.err_at(
                    start,
                    format!("parameter required for operation {}", op.name()),
                ));
            }
            let pos = self.pos();
            let v = self.number()?;
            if v.fract() != 0.0 || v < 1.0 {
                return Err(self.err_at(
                    pos,
                    format!(
                        "invalid parameter {}({v}, ...): must be an integer greater than 0",
                        op.name()
                    ),
                ));
            }
            self.expect(Tok::Comma, ",")?;
            Some(v)
        } else {
            None
        };
        let expr = self.sample_expr(0)?;
        self.expect(Tok::RParen, ")")?;
        if let Some(g) = self.grouping()? {
            if grouping.is_some() {
                return Err(self.unexpected(None));
            }
            grouping = Some(g);
        }
        if op == VecOp::ApproxTopk && grouping.is_some() {
            return Err(self.err_at(start, "grouping not allowed for approx_topk aggregation"));
        }
        if matches!(op, VecOp::Sort | VecOp::SortDesc) && grouping.is_some() {
            return Err(self.err_at(
                start,
                format!("grouping not allowed for {} aggregation", op.name()),
            ));
        }
        Ok(SampleExpr::VectorAgg {
            op,
            param,
            grouping,
            expr: Box::new(expr),
        })
    }
}

fn set_name(op: BinOp) -> &'static str {
    match op {
        BinOp::And => "and",
        BinOp::Or => "or",
        _ => "unless",
    }
}

/// The last line of a regex error (the Rust crate's message spans several lines).
fn regex_msg(e: &regex::Error) -> String {
    let s = e.to_string();
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("invalid regexp")
        .trim()
        .to_string()
}

/// Names of `(?P<name>` / `(?<name>` groups in a regex source.
fn capture_names(re: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = re;
    while let Some(i) = rest.find("(?") {
        let after = &rest[i + 2..];
        let body = after.strip_prefix("P<").or_else(|| {
            after
                .strip_prefix('<')
                .filter(|a| !a.starts_with('=') && !a.starts_with('!'))
        });
        if let Some(b) = body
            && let Some(end) = b.find('>')
        {
            out.push(b[..end].to_string());
        }
        rest = &rest[i + 2..];
    }
    out
}

/// `user.id`, `tags[0]`, `headers["User-Agent"]`.
pub fn parse_json_path(s: &str) -> Option<JsonPath> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut expect_field = true;
    while i < b.len() {
        match b[i] {
            b'.' => {
                if expect_field {
                    return None;
                }
                i += 1;
                expect_field = true;
            }
            b'[' => {
                i += 1;
                if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                    let q = b[i];
                    let st = i + 1;
                    let en = st + s[st..].find(char::from(q))?;
                    out.push(JsonKey::Field(s[st..en].to_string()));
                    i = en + 1;
                } else {
                    let st = i;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    if i == st {
                        return None;
                    }
                    out.push(JsonKey::Index(s[st..i].parse().ok()?));
                }
                if i >= b.len() || b[i] != b']' {
                    return None;
                }
                i += 1;
                expect_field = false;
            }
            _ => {
                let st = i;
                while i < b.len() && b[i] != b'.' && b[i] != b'[' {
                    i += 1;
                }
                if !expect_field && !out.is_empty() {
                    return None;
                }
                out.push(JsonKey::Field(s[st..i].to_string()));
                expect_field = false;
            }
        }
    }
    if out.is_empty() || expect_field && !out.is_empty() && b.last() == Some(&b'.') {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(q: &str) -> String {
        match parse(q) {
            Ok(e) => panic!("{q} parsed: {e:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_the_main_shapes() {
        for q in [
            r#"{app="a"} |= "x" != "y" |~ "a|b" | json | level="error" or code >= 500 | line_format "{{.x}}""#,
            r#"sum by (level) (count_over_time({app="a"} |= "needle" | json [5m]))"#,
            r#"rate(({app=~"foo|bar"} |~".+bar" | unwrap bar)[1m])"#,
            r#"quantile_over_time(0.5, {app="a"} | logfmt | unwrap duration(d) | __error__="" [1m] offset 30s) by (pod)"#,
            r#"count_over_time({app="a"}[1m]) / on (app) group_left sum by (app) (count_over_time({app="a"}[1m]))"#,
            r#"label_replace(vector(1), "a", "$1", "b", "(.*)")"#,
            "1+1--1",
            "0x1p3",
            r#"topk(2, sum(rate({a="b"}[1m])) by (x))"#,
            r#"{app="a"} | logfmt --strict --keep-empty level, code="status" | drop a, b="c" | keep d"#,
        ] {
            parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        }
    }

    #[test]
    fn precedence() {
        let Ok(Expr::Sample(SampleExpr::Binary { op, .. })) = parse("1 + 2 * 3") else {
            panic!()
        };
        assert_eq!(op, BinOp::Add);
        let Ok(Expr::Sample(SampleExpr::Binary { op, rhs, .. })) = parse("2^3^2") else {
            panic!()
        };
        assert_eq!(op, BinOp::Pow);
        assert!(matches!(*rhs, SampleExpr::Binary { op: BinOp::Pow, .. }));
    }

    #[test]
    fn loki_error_texts() {
        assert!(
            err(r#"count_over_time({a="b"} | logfmt | x == ip("1.2.3.4") [1m])"#)
                .contains("syntax error: unexpected ip")
        );
        assert!(err(r#"count_over_time({a="b"} | drop [1m])"#).contains("expecting IDENTIFIER"));
        assert!(err("vector(count_over_time({a=\"b\"}[1m]))").contains("expecting NUMBER"));
        assert!(err("0x1A").contains("unable to parse literal as a float"));
        assert!(err("1 and 2").contains("unexpected literal for left leg"));
        assert!(
            err(r#"count_over_time({a="b"} | regexp "(?P<x>.)(?P<x>.)" [1m])"#)
                .contains("duplicate extracted label name")
        );
        assert!(
            err(r#"count_over_time({a="b"} | json x="user[" [1m])"#)
                .contains("cannot parse expression")
        );
        assert!(err(r#"{a=~".*"}"#).contains("empty-compatible"));
    }

    #[test]
    fn json_paths() {
        assert_eq!(
            parse_json_path("user.id"),
            Some(vec![
                JsonKey::Field("user".into()),
                JsonKey::Field("id".into())
            ])
        );
        assert_eq!(
            parse_json_path("tags[0]"),
            Some(vec![JsonKey::Field("tags".into()), JsonKey::Index(0)])
        );
        assert_eq!(
            parse_json_path(r#"h["User-Agent"]"#).map(|p| p.len()),
            Some(2)
        );
        assert_eq!(parse_json_path("user["), None);
    }
}
