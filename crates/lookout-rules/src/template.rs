//! Go `text/template` subset used by Prometheus alert labels and annotations.
//!
//! Supported: text with `{{ }}` actions (`{{-`/`-}}` trimming, `{{/* comments */}}`),
//! pipelines with `|`, variables (`$x := ...`, `$x = ...`, `$labels.name`, `.Labels.name`),
//! `if`/`else if`/`else`, `range` (with `$i, $x :=`), `with`, parenthesised pipelines, and
//! the functions Prometheus registers (`humanize`, `humanize1024`, `humanizeDuration`,
//! `humanizePercentage`, `humanizeTimestamp`, `query`, `first`, `label`, `value`,
//! `strvalue`, `sortByLabel`, `reReplaceAll`, `match`, `title`, `toUpper`, `toLower`,
//! `safeHtml`, `args`, `externalURL`, `pathPrefix`, `parseDuration`) plus Go's builtins
//! (`printf`, `print`, `println`, `len`, `index`, `eq`…`ge`, `and`, `or`, `not`, `html`,
//! `js`, `urlquery`). Unknown functions are parse errors, as in Go. Missing map keys
//! expand to the empty string (Prometheus's `missingkey=zero`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::gofmt::{self, FmtArg};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("template: {name}:{line}: {message}")]
pub struct TemplateError {
    pub name: String,
    pub line: usize,
    pub message: String,
}

/// One sample returned by the `query` template function.
#[derive(Clone, Debug, PartialEq)]
pub struct QuerySample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Runs `query` for templates (at the rule's evaluation time).
pub type QueryFn<'a> = dyn Fn(&str) -> Result<Vec<QuerySample>, String> + 'a;

/// What `.`, `$labels`, `$value`, `$externalLabels` and `$externalURL` are bound to.
pub struct TemplateData<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub external_labels: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
    pub value: f64,
    pub query: Option<&'a QueryFn<'a>>,
}

#[derive(Clone, Debug)]
pub struct Template {
    name: String,
    nodes: Vec<Node>,
}

#[derive(Clone, Debug)]
enum Node {
    Text(String),
    Action {
        line: usize,
        pipe: Pipeline,
    },
    If {
        line: usize,
        branches: Vec<(Pipeline, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    Range {
        line: usize,
        key_var: Option<String>,
        elem_var: Option<String>,
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    With {
        line: usize,
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

#[derive(Clone, Debug)]
struct Pipeline {
    /// `$x :=` (declare) or `$x =` (assign).
    decl: Option<String>,
    cmds: Vec<Vec<Operand>>,
}

#[derive(Clone, Debug)]
enum Operand {
    Func(String),
    Str(String),
    Num(f64),
    Int(i64),
    Bool(bool),
    Nil,
    /// `.A.B` (empty path: `.`).
    Field(Vec<String>),
    /// `$x.A.B`.
    Var(String, Vec<String>),
    Sub(Box<Pipeline>),
}

/// A value during execution.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Nil,
    Str(String),
    Float(f64),
    Int(i64),
    Bool(bool),
    Map(BTreeMap<String, String>),
    Struct(BTreeMap<String, Value>),
    List(Vec<Value>),
}

impl Value {
    fn truth(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Str(s) => !s.is_empty(),
            Value::Float(f) => *f != 0.0,
            Value::Int(i) => *i != 0,
            Value::Bool(b) => *b,
            Value::Map(m) => !m.is_empty(),
            Value::Struct(_) => true,
            Value::List(l) => !l.is_empty(),
        }
    }

    fn print(&self, out: &mut String) {
        match self {
            Value::Nil => out.push_str("<no value>"),
            Value::Str(s) => out.push_str(s),
            Value::Float(f) => out.push_str(&gofmt::fmt_v(*f)),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Bool(b) => {
                let _ = write!(out, "{b}");
            }
            Value::Map(m) => {
                out.push_str("map[");
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    let _ = write!(out, "{k}:{v}");
                }
                out.push(']');
            }
            Value::Struct(m) => {
                out.push('{');
                for (i, v) in m.values().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.print(out);
                }
                out.push('}');
            }
            Value::List(l) => {
                out.push('[');
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.print(out);
                }
                out.push(']');
            }
        }
    }

    fn to_fmt_arg(&self) -> FmtArg {
        match self {
            Value::Str(s) => FmtArg::Str(s.clone()),
            Value::Float(f) => FmtArg::Float(*f),
            Value::Int(i) => FmtArg::Int(*i),
            Value::Bool(b) => FmtArg::Bool(*b),
            other => {
                let mut s = String::new();
                other.print(&mut s);
                FmtArg::Str(s)
            }
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Str(_) => "string",
            Value::Float(_) => "float64",
            Value::Int(_) => "int",
            Value::Bool(_) => "bool",
            Value::Map(_) => "map[string]string",
            Value::Struct(_) => "struct",
            Value::List(_) => "slice",
        }
    }
}

fn sample_value(s: &QuerySample) -> Value {
    Value::Struct(BTreeMap::from([
        ("Labels".to_string(), Value::Map(s.labels.clone())),
        ("Value".to_string(), Value::Float(s.value)),
    ]))
}

const FUNCS: &[&str] = &[
    "and",
    "or",
    "not",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "html",
    "js",
    "urlquery",
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "sortByLabel",
    "reReplaceAll",
    "match",
    "title",
    "toUpper",
    "toLower",
    "safeHtml",
    "args",
    "externalURL",
    "pathPrefix",
    "parseDuration",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
];

// ---------------------------------------------------------------- lexing

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Field(Vec<String>),
    Var(String, Vec<String>),
    Str(String),
    Num(String),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

struct Segment {
    line: usize,
    kind: SegKind,
}

enum SegKind {
    Text(String),
    Action(Vec<Tok>),
}

fn tokenize(src: &str, line: usize, name: &str) -> Result<Vec<Tok>, TemplateError> {
    let err = |m: String| TemplateError {
        name: name.to_string(),
        line,
        message: m,
    };
    let b: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let ident_char = |c: char| c.is_alphanumeric() || c == '_';
    let read_path = |i: &mut usize| -> Vec<String> {
        let mut path = Vec::new();
        while *i < b.len() && b[*i] == '.' {
            *i += 1;
            let start = *i;
            while *i < b.len() && ident_char(b[*i]) {
                *i += 1;
            }
            if start == *i {
                break;
            }
            path.push(b[start..*i].iter().collect());
        }
        path
    };
    while i < b.len() {
        let c = b[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '|' => {
                out.push(Tok::Pipe);
                i += 1;
            }
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            ':' if b.get(i + 1) == Some(&'=') => {
                out.push(Tok::Declare);
                i += 2;
            }
            '=' => {
                out.push(Tok::Assign);
                i += 1;
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    let Some(&c) = b.get(i) else {
                        return Err(err("unterminated quoted string".into()));
                    };
                    i += 1;
                    match c {
                        '"' => break,
                        '\\' => {
                            let Some(&e) = b.get(i) else {
                                return Err(err("unterminated quoted string".into()));
                            };
                            i += 1;
                            match e {
                                'n' => s.push('\n'),
                                't' => s.push('\t'),
                                'r' => s.push('\r'),
                                '\\' => s.push('\\'),
                                '"' => s.push('"'),
                                '\'' => s.push('\''),
                                other => {
                                    return Err(err(format!(
                                        "invalid syntax: unknown escape \\{other}"
                                    )));
                                }
                            }
                        }
                        c => s.push(c),
                    }
                }
                out.push(Tok::Str(s));
            }
            '`' => {
                let start = i + 1;
                let Some(end) = b[start..].iter().position(|&c| c == '`') else {
                    return Err(err("unterminated raw quoted string".into()));
                };
                out.push(Tok::Str(b[start..start + end].iter().collect()));
                i = start + end + 1;
            }
            '.' => {
                if b.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
                    let start = i;
                    i += 1;
                    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '.') {
                        i += 1;
                    }
                    out.push(Tok::Num(b[start..i].iter().collect()));
                } else {
                    let path = read_path(&mut i);
                    if path.is_empty() {
                        i = i.max(1);
                        // A lone dot: read_path consumed it.
                    }
                    out.push(Tok::Field(path));
                }
            }
            '$' => {
                let start = i;
                i += 1;
                while i < b.len() && ident_char(b[i]) {
                    i += 1;
                }
                let name: String = b[start..i].iter().collect();
                let path = read_path(&mut i);
                out.push(Tok::Var(name, path));
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' => {
                let start = i;
                i += 1;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == '.'
                        || ((b[i] == '-' || b[i] == '+') && matches!(b[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
                out.push(Tok::Num(b[start..i].iter().collect()));
            }
            c if ident_char(c) => {
                let start = i;
                while i < b.len() && ident_char(b[i]) {
                    i += 1;
                }
                out.push(Tok::Ident(b[start..i].iter().collect()));
            }
            other => return Err(err(format!("unexpected {other:?} in command"))),
        }
    }
    Ok(out)
}

fn segments(src: &str, name: &str) -> Result<Vec<Segment>, TemplateError> {
    let mut segs = Vec::new();
    let mut rest = src;
    let mut line = 1;
    let mut trim_next_text = false;
    while !rest.is_empty() {
        let Some(open) = rest.find("{{") else {
            let mut text = rest.to_string();
            if trim_next_text {
                text = text.trim_start().to_string();
            }
            segs.push(Segment {
                line,
                kind: SegKind::Text(text),
            });
            break;
        };
        let mut text = rest[..open].to_string();
        let after = &rest[open + 2..];
        let trim_left = after.starts_with("- ")
            || after.starts_with("-\t")
            || after.starts_with("-\n")
            || after.starts_with("-\r");
        if trim_next_text {
            text = text.trim_start().to_string();
        }
        if trim_left {
            text = text.trim_end().to_string();
        }
        line += rest[..open].matches('\n').count();
        if !text.is_empty() {
            segs.push(Segment {
                line,
                kind: SegKind::Text(text),
            });
        }
        let body_start = if trim_left { 1 } else { 0 };
        let inner = &after[body_start..];
        // Find the closing delimiter (outside quotes).
        let close = find_close(inner).ok_or_else(|| TemplateError {
            name: name.to_string(),
            line,
            message: "unclosed action".into(),
        })?;
        let mut body = &inner[..close];
        let mut end = close + 2;
        trim_next_text = false;
        if body.ends_with(" -") || body.ends_with("\t-") || body.ends_with("\n-") {
            body = &body[..body.len() - 1];
            trim_next_text = true;
        }
        let trimmed = body.trim();
        if trimmed.starts_with("/*") {
            if !trimmed.ends_with("*/") {
                return Err(TemplateError {
                    name: name.to_string(),
                    line,
                    message: "unclosed comment".into(),
                });
            }
        } else {
            let toks = tokenize(body, line, name)?;
            if toks.is_empty() {
                return Err(TemplateError {
                    name: name.to_string(),
                    line,
                    message: "missing value for command".into(),
                });
            }
            segs.push(Segment {
                line,
                kind: SegKind::Action(toks),
            });
        }
        line += inner[..close].matches('\n').count();
        end += body_start;
        rest = &after[end..];
    }
    Ok(segs)
}

fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        match quote {
            Some(q) => {
                if b[i] == b'\\' && q == b'"' {
                    i += 1;
                } else if b[i] == q {
                    quote = None;
                }
            }
            None => {
                if b[i] == b'"' || b[i] == b'`' {
                    quote = Some(b[i]);
                } else if b[i] == b'}' && b.get(i + 1) == Some(&b'}') {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

// ---------------------------------------------------------------- parsing

struct Parser<'a> {
    name: &'a str,
    segs: Vec<Segment>,
    pos: usize,
    vars: Vec<String>,
}

enum Stop {
    End,
    Else(Option<(usize, Vec<Tok>)>),
    Eof,
}

impl<'a> Parser<'a> {
    fn err(&self, line: usize, m: impl Into<String>) -> TemplateError {
        TemplateError {
            name: self.name.to_string(),
            line,
            message: m.into(),
        }
    }

    /// Parses nodes until `{{end}}`, `{{else}}` or the end of input.
    fn list(&mut self) -> Result<(Vec<Node>, Stop), TemplateError> {
        let mut nodes = Vec::new();
        while self.pos < self.segs.len() {
            let seg = &self.segs[self.pos];
            let line = seg.line;
            self.pos += 1;
            match &seg.kind {
                SegKind::Text(t) => nodes.push(Node::Text(t.clone())),
                SegKind::Action(toks) => {
                    let toks = toks.clone();
                    match toks.first() {
                        Some(Tok::Ident(k)) if k == "end" => {
                            if toks.len() > 1 {
                                return Err(self.err(line, "unexpected token in end"));
                            }
                            return Ok((nodes, Stop::End));
                        }
                        Some(Tok::Ident(k)) if k == "else" => {
                            let rest = toks[1..].to_vec();
                            return Ok((
                                nodes,
                                Stop::Else(if rest.is_empty() {
                                    None
                                } else {
                                    Some((line, rest))
                                }),
                            ));
                        }
                        Some(Tok::Ident(k)) if k == "if" => {
                            nodes.push(self.parse_if(line, &toks[1..])?);
                        }
                        Some(Tok::Ident(k)) if k == "with" => {
                            let scope = self.vars.len();
                            let pipe = self.pipeline(line, &toks[1..])?;
                            let (body, otherwise) = self.body_else(line, "with")?;
                            self.vars.truncate(scope);
                            nodes.push(Node::With {
                                line,
                                pipe,
                                body,
                                otherwise,
                            });
                        }
                        Some(Tok::Ident(k)) if k == "range" => {
                            nodes.push(self.parse_range(line, &toks[1..])?);
                        }
                        Some(Tok::Ident(k))
                            if matches!(
                                k.as_str(),
                                "define" | "template" | "block" | "break" | "continue"
                            ) =>
                        {
                            return Err(self.err(line, format!("{k:?} is not supported here")));
                        }
                        _ => {
                            let pipe = self.pipeline(line, &toks)?;
                            nodes.push(Node::Action { line, pipe });
                        }
                    }
                }
            }
        }
        Ok((nodes, Stop::Eof))
    }

    fn body_else(
        &mut self,
        line: usize,
        what: &str,
    ) -> Result<(Vec<Node>, Vec<Node>), TemplateError> {
        let (body, stop) = self.list()?;
        match stop {
            Stop::End => Ok((body, Vec::new())),
            Stop::Else(None) => {
                let (otherwise, stop) = self.list()?;
                match stop {
                    Stop::End => Ok((body, otherwise)),
                    _ => Err(self.err(line, format!("unexpected EOF in {what}"))),
                }
            }
            Stop::Else(Some(_)) => Err(self.err(line, format!("unexpected else if in {what}"))),
            Stop::Eof => Err(self.err(line, "unexpected EOF")),
        }
    }

    fn parse_if(&mut self, line: usize, toks: &[Tok]) -> Result<Node, TemplateError> {
        let scope = self.vars.len();
        let mut branches = vec![(self.pipeline(line, toks)?, Vec::new())];
        let mut otherwise = Vec::new();
        loop {
            let (body, stop) = self.list()?;
            if let Some(last) = branches.last_mut() {
                last.1 = body;
            }
            match stop {
                Stop::End => break,
                Stop::Eof => return Err(self.err(line, "unexpected EOF")),
                Stop::Else(None) => {
                    let (body, stop) = self.list()?;
                    if !matches!(stop, Stop::End) {
                        return Err(self.err(line, "expected end; found else or EOF"));
                    }
                    otherwise = body;
                    break;
                }
                Stop::Else(Some((l, rest))) => {
                    let Some(Tok::Ident(k)) = rest.first() else {
                        return Err(self.err(l, "unexpected tokens after else"));
                    };
                    if k != "if" {
                        return Err(self.err(l, "unexpected tokens after else"));
                    }
                    branches.push((self.pipeline(l, &rest[1..])?, Vec::new()));
                }
            }
        }
        self.vars.truncate(scope);
        Ok(Node::If {
            line,
            branches,
            otherwise,
        })
    }

    fn parse_range(&mut self, line: usize, toks: &[Tok]) -> Result<Node, TemplateError> {
        let scope = self.vars.len();
        let mut key_var = None;
        let mut elem_var = None;
        let mut rest = toks;
        // `$i, $x :=` or `$x :=`
        match toks {
            [
                Tok::Var(a, pa),
                Tok::Comma,
                Tok::Var(b, pb),
                Tok::Declare,
                tail @ ..,
            ] if pa.is_empty() && pb.is_empty() => {
                key_var = Some(a.clone());
                elem_var = Some(b.clone());
                rest = tail;
            }
            [Tok::Var(a, pa), Tok::Declare, tail @ ..] if pa.is_empty() => {
                elem_var = Some(a.clone());
                rest = tail;
            }
            _ => {}
        }
        let pipe = self.pipeline(line, rest)?;
        self.vars.extend(key_var.iter().cloned());
        self.vars.extend(elem_var.iter().cloned());
        let (body, otherwise) = self.body_else(line, "range")?;
        self.vars.truncate(scope);
        Ok(Node::Range {
            line,
            key_var,
            elem_var,
            pipe,
            body,
            otherwise,
        })
    }

    fn pipeline(&mut self, line: usize, toks: &[Tok]) -> Result<Pipeline, TemplateError> {
        let mut decl = None;
        let mut toks = toks;
        if let [
            Tok::Var(name, path),
            op @ (Tok::Declare | Tok::Assign),
            rest @ ..,
        ] = toks
            && path.is_empty()
        {
            if *op == Tok::Declare {
                self.vars.push(name.clone());
            } else if !self.vars.contains(name) {
                return Err(self.err(line, format!("undefined variable: {name}")));
            }
            decl = Some(name.clone());
            toks = rest;
        }
        if toks.is_empty() {
            return Err(self.err(line, "missing value for command"));
        }
        let mut cmds = Vec::new();
        let mut cur = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            match &toks[i] {
                Tok::Pipe => {
                    if cur.is_empty() {
                        return Err(self.err(line, "missing command"));
                    }
                    cmds.push(std::mem::take(&mut cur));
                }
                Tok::LParen => {
                    let mut depth = 1;
                    let start = i + 1;
                    let mut j = start;
                    while j < toks.len() {
                        match toks[j] {
                            Tok::LParen => depth += 1,
                            Tok::RParen => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                    if depth != 0 {
                        return Err(self.err(line, "unclosed left paren"));
                    }
                    let sub = self.pipeline(line, &toks[start..j])?;
                    cur.push(Operand::Sub(Box::new(sub)));
                    i = j;
                }
                Tok::RParen => return Err(self.err(line, "unexpected right paren")),
                Tok::Ident(name) => {
                    let op = match name.as_str() {
                        "true" => Operand::Bool(true),
                        "false" => Operand::Bool(false),
                        "nil" => Operand::Nil,
                        f if FUNCS.contains(&f) => Operand::Func(f.to_string()),
                        f => {
                            return Err(self.err(line, format!("function {f:?} not defined")));
                        }
                    };
                    cur.push(op);
                }
                Tok::Str(s) => cur.push(Operand::Str(s.clone())),
                Tok::Num(n) => cur.push(
                    parse_number(n)
                        .ok_or_else(|| self.err(line, format!("bad number syntax: {n:?}")))?,
                ),
                Tok::Field(p) => cur.push(Operand::Field(p.clone())),
                Tok::Var(name, p) => {
                    if !self.vars.contains(name) {
                        return Err(self.err(line, format!("undefined variable {name:?}")));
                    }
                    cur.push(Operand::Var(name.clone(), p.clone()));
                }
                Tok::Declare | Tok::Assign | Tok::Comma => {
                    return Err(self.err(line, "unexpected token in operand"));
                }
            }
            i += 1;
        }
        if cur.is_empty() {
            return Err(self.err(line, "missing command"));
        }
        cmds.push(cur);
        Ok(Pipeline { decl, cmds })
    }
}

fn parse_number(n: &str) -> Option<Operand> {
    if let Ok(i) = n.parse::<i64>() {
        return Some(Operand::Int(i));
    }
    if let Some(h) = n.strip_prefix("0x").or_else(|| n.strip_prefix("0X")) {
        return i64::from_str_radix(h, 16).ok().map(Operand::Int);
    }
    n.parse::<f64>().ok().map(Operand::Num)
}

impl Template {
    /// Parses `text`; `name` appears in errors (Prometheus uses `__alert_<name>`).
    pub fn parse(name: &str, text: &str) -> Result<Template, TemplateError> {
        let segs = segments(text, name)?;
        let mut p = Parser {
            name,
            segs,
            pos: 0,
            vars: ["$", "$labels", "$externalLabels", "$externalURL", "$value"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let (nodes, stop) = p.list()?;
        match stop {
            Stop::Eof => Ok(Template {
                name: name.to_string(),
                nodes,
            }),
            Stop::End => Err(p.err(p.segs[p.pos - 1].line, "unexpected {{end}}")),
            Stop::Else(_) => Err(p.err(p.segs[p.pos - 1].line, "unexpected {{else}}")),
        }
    }

    /// A template that expands to `text` verbatim.
    pub fn literal(name: &str, text: &str) -> Template {
        Template {
            name: name.to_string(),
            nodes: vec![Node::Text(text.to_string())],
        }
    }

    /// Expands the template.
    pub fn expand(&self, data: &TemplateData<'_>) -> Result<String, TemplateError> {
        let dot = Value::Struct(BTreeMap::from([
            ("Labels".to_string(), Value::Map(data.labels.clone())),
            (
                "ExternalLabels".to_string(),
                Value::Map(data.external_labels.clone()),
            ),
            (
                "ExternalURL".to_string(),
                Value::Str(data.external_url.to_string()),
            ),
            ("Value".to_string(), Value::Float(data.value)),
        ]));
        let mut ex = Exec {
            name: &self.name,
            data,
            vars: vec![
                ("$".to_string(), dot.clone()),
                ("$labels".to_string(), Value::Map(data.labels.clone())),
                (
                    "$externalLabels".to_string(),
                    Value::Map(data.external_labels.clone()),
                ),
                (
                    "$externalURL".to_string(),
                    Value::Str(data.external_url.to_string()),
                ),
                ("$value".to_string(), Value::Float(data.value)),
            ],
            out: String::new(),
            steps: 0,
        };
        ex.nodes(&self.nodes, &dot)?;
        Ok(ex.out)
    }
}

/// Parses and expands in one go (for checks and tests).
pub fn expand(name: &str, text: &str, data: &TemplateData<'_>) -> Result<String, TemplateError> {
    Template::parse(name, text)?.expand(data)
}

// ---------------------------------------------------------------- execution

/// Bounds the work one expansion may do (a `range` over a huge query result).
const MAX_STEPS: usize = 1_000_000;

struct Exec<'a, 'd> {
    name: &'a str,
    data: &'a TemplateData<'d>,
    vars: Vec<(String, Value)>,
    out: String,
    steps: usize,
}

impl Exec<'_, '_> {
    fn err(&self, line: usize, m: impl Into<String>) -> TemplateError {
        TemplateError {
            name: self.name.to_string(),
            line,
            message: m.into(),
        }
    }

    fn step(&mut self, line: usize) -> Result<(), TemplateError> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(self.err(line, "template expansion too long"));
        }
        Ok(())
    }

    fn nodes(&mut self, nodes: &[Node], dot: &Value) -> Result<(), TemplateError> {
        for n in nodes {
            self.node(n, dot)?;
        }
        Ok(())
    }

    fn node(&mut self, n: &Node, dot: &Value) -> Result<(), TemplateError> {
        match n {
            Node::Text(t) => self.out.push_str(t),
            Node::Action { line, pipe } => {
                self.step(*line)?;
                let v = self.pipeline(*line, pipe, dot)?;
                if pipe.decl.is_none() {
                    v.print(&mut self.out);
                }
            }
            Node::If {
                line,
                branches,
                otherwise,
            } => {
                let scope = self.vars.len();
                let mut done = false;
                for (cond, body) in branches {
                    self.step(*line)?;
                    if self.pipeline(*line, cond, dot)?.truth() {
                        self.nodes(body, dot)?;
                        done = true;
                        break;
                    }
                }
                if !done {
                    self.nodes(otherwise, dot)?;
                }
                self.vars.truncate(scope);
            }
            Node::With {
                line,
                pipe,
                body,
                otherwise,
            } => {
                let scope = self.vars.len();
                let v = self.pipeline(*line, pipe, dot)?;
                if v.truth() {
                    self.nodes(body, &v)?;
                } else {
                    self.nodes(otherwise, dot)?;
                }
                self.vars.truncate(scope);
            }
            Node::Range {
                line,
                key_var,
                elem_var,
                pipe,
                body,
                otherwise,
            } => {
                let scope = self.vars.len();
                let v = self.pipeline(*line, pipe, dot)?;
                let items: Vec<(Value, Value)> = match v {
                    Value::List(l) => l
                        .into_iter()
                        .enumerate()
                        .map(|(i, x)| (Value::Int(i as i64), x))
                        .collect(),
                    Value::Map(m) => m
                        .into_iter()
                        .map(|(k, v)| (Value::Str(k), Value::Str(v)))
                        .collect(),
                    Value::Int(n) => (0..n.max(0))
                        .map(|i| (Value::Int(i), Value::Int(i)))
                        .collect(),
                    Value::Nil => Vec::new(),
                    other => {
                        return Err(self.err(
                            *line,
                            format!("range can't iterate over {}", other.type_name()),
                        ));
                    }
                };
                if items.is_empty() {
                    self.nodes(otherwise, dot)?;
                }
                for (k, x) in items {
                    self.step(*line)?;
                    let inner = self.vars.len();
                    if let Some(kv) = key_var {
                        self.vars.push((kv.clone(), k));
                    }
                    if let Some(ev) = elem_var {
                        self.vars.push((ev.clone(), x.clone()));
                    }
                    self.nodes(body, &x)?;
                    self.vars.truncate(inner);
                }
                self.vars.truncate(scope);
            }
        }
        Ok(())
    }

    fn pipeline(&mut self, line: usize, p: &Pipeline, dot: &Value) -> Result<Value, TemplateError> {
        let mut prev: Option<Value> = None;
        for cmd in &p.cmds {
            prev = Some(self.command(line, cmd, dot, prev)?);
        }
        let v = prev.unwrap_or(Value::Nil);
        if let Some(name) = &p.decl {
            // `:=` shadows within scope; `=` assigns the innermost binding.
            if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                slot.1 = v.clone();
            }
            if !self.vars.iter().any(|(n, _)| n == name) {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn operand(&mut self, line: usize, op: &Operand, dot: &Value) -> Result<Value, TemplateError> {
        Ok(match op {
            Operand::Str(s) => Value::Str(s.clone()),
            Operand::Num(f) => Value::Float(*f),
            Operand::Int(i) => Value::Int(*i),
            Operand::Bool(b) => Value::Bool(*b),
            Operand::Nil => Value::Nil,
            Operand::Field(path) => self.walk(line, dot.clone(), path)?,
            Operand::Var(name, path) => {
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| self.err(line, format!("undefined variable {name:?}")))?;
                self.walk(line, v, path)?
            }
            Operand::Sub(p) => self.pipeline(line, p, dot)?,
            Operand::Func(f) => self.call(line, f, Vec::new())?,
        })
    }

    fn walk(&self, line: usize, mut v: Value, path: &[String]) -> Result<Value, TemplateError> {
        for field in path {
            v = match v {
                Value::Map(m) => Value::Str(m.get(field).cloned().unwrap_or_default()),
                Value::Struct(m) => m
                    .get(field)
                    .cloned()
                    .ok_or_else(|| self.err(line, format!("can't evaluate field {field}")))?,
                Value::Nil => Value::Nil,
                other => {
                    return Err(self.err(
                        line,
                        format!("can't evaluate field {field} in type {}", other.type_name()),
                    ));
                }
            };
        }
        Ok(v)
    }

    fn command(
        &mut self,
        line: usize,
        cmd: &[Operand],
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, TemplateError> {
        match &cmd[0] {
            Operand::Func(f) => {
                let mut args = Vec::with_capacity(cmd.len());
                for op in &cmd[1..] {
                    args.push(self.operand(line, op, dot)?);
                }
                if let Some(p) = piped {
                    args.push(p);
                }
                self.call(line, f, args)
            }
            op => {
                if cmd.len() > 1 || piped.is_some() {
                    return Err(self.err(line, "can't give argument to non-function"));
                }
                self.operand(line, op, dot)
            }
        }
    }

    fn call(&mut self, line: usize, f: &str, args: Vec<Value>) -> Result<Value, TemplateError> {
        let want = |n: usize| -> Result<(), TemplateError> {
            if args.len() != n {
                Err(self.err(
                    line,
                    format!(
                        "error calling {f}: wrong number of args for {f}: want {n} got {}",
                        args.len()
                    ),
                ))
            } else {
                Ok(())
            }
        };
        let float = |v: &Value| -> Result<f64, TemplateError> {
            match v {
                Value::Float(f) => Ok(*f),
                Value::Int(i) => Ok(*i as f64),
                Value::Str(s) => s.trim().parse::<f64>().map_err(|_| {
                    self.err(
                        line,
                        format!("error calling {f}: can't convert {s:?} to float"),
                    )
                }),
                other => Err(self.err(
                    line,
                    format!(
                        "error calling {f}: can't convert {} to float",
                        other.type_name()
                    ),
                )),
            }
        };
        let string = |v: &Value| -> String {
            match v {
                Value::Str(s) => s.clone(),
                other => {
                    let mut s = String::new();
                    other.print(&mut s);
                    s
                }
            }
        };
        Ok(match f {
            "and" => {
                let mut last = Value::Nil;
                for a in args {
                    if !a.truth() {
                        return Ok(a);
                    }
                    last = a;
                }
                last
            }
            "or" => {
                let mut last = Value::Nil;
                for a in args {
                    if a.truth() {
                        return Ok(a);
                    }
                    last = a;
                }
                last
            }
            "not" => {
                want(1)?;
                Value::Bool(!args[0].truth())
            }
            "len" => {
                want(1)?;
                Value::Int(match &args[0] {
                    Value::Str(s) => s.len(),
                    Value::List(l) => l.len(),
                    Value::Map(m) => m.len(),
                    other => {
                        return Err(self.err(
                            line,
                            format!("error calling len: len of type {}", other.type_name()),
                        ));
                    }
                } as i64)
            }
            "index" => {
                if args.is_empty() {
                    return Err(self.err(line, "error calling index: missing arguments"));
                }
                let mut v = args[0].clone();
                for k in &args[1..] {
                    v = match (&v, k) {
                        (Value::Map(m), k) => {
                            Value::Str(m.get(&string(k)).cloned().unwrap_or_default())
                        }
                        (Value::List(l), Value::Int(i)) => {
                            l.get(*i as usize).cloned().ok_or_else(|| {
                                self.err(
                                    line,
                                    format!("error calling index: index out of range: {i}"),
                                )
                            })?
                        }
                        _ => {
                            return Err(self.err(
                                line,
                                format!(
                                    "error calling index: can't index item of type {}",
                                    v.type_name()
                                ),
                            ));
                        }
                    };
                }
                v
            }
            "print" | "println" => {
                let mut s = String::new();
                for (i, a) in args.iter().enumerate() {
                    let both_non_str = i > 0
                        && !matches!(a, Value::Str(_))
                        && !matches!(args[i - 1], Value::Str(_));
                    if (f == "println" && i > 0) || both_non_str {
                        s.push(' ');
                    }
                    a.print(&mut s);
                }
                if f == "println" {
                    s.push('\n');
                }
                Value::Str(s)
            }
            "printf" => {
                let Some(fmt) = args.first() else {
                    return Err(self.err(line, "error calling printf: missing format"));
                };
                let fa: Vec<FmtArg> = args[1..].iter().map(Value::to_fmt_arg).collect();
                Value::Str(gofmt::sprintf(&string(fmt), &fa))
            }
            "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
                if args.len() < 2 {
                    return Err(self.err(line, format!("error calling {f}: missing argument")));
                }
                let cmp = |a: &Value, b: &Value| -> Result<std::cmp::Ordering, TemplateError> {
                    match (a, b) {
                        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
                        (Value::Bool(x), Value::Bool(y)) if matches!(f, "eq" | "ne") => {
                            Ok(x.cmp(y))
                        }
                        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
                        (Value::Float(_) | Value::Int(_), Value::Float(_) | Value::Int(_)) => {
                            let (x, y) = (float(a)?, float(b)?);
                            x.partial_cmp(&y).ok_or_else(|| {
                                self.err(line, format!("error calling {f}: NaN comparison"))
                            })
                        }
                        _ => Err(self.err(
                            line,
                            format!(
                                "error calling {f}: incompatible types for comparison: {} and {}",
                                a.type_name(),
                                b.type_name()
                            ),
                        )),
                    }
                };
                use std::cmp::Ordering::*;
                if f == "eq" {
                    let mut any = false;
                    for b in &args[1..] {
                        if cmp(&args[0], b)? == Equal {
                            any = true;
                        }
                    }
                    Value::Bool(any)
                } else {
                    want(2)?;
                    let o = cmp(&args[0], &args[1])?;
                    Value::Bool(match f {
                        "ne" => o != Equal,
                        "lt" => o == Less,
                        "le" => o != Greater,
                        "gt" => o == Greater,
                        _ => o != Less,
                    })
                }
            }
            "html" | "safeHtml" => {
                let s: String = args.iter().map(&string).collect();
                if f == "safeHtml" {
                    Value::Str(s)
                } else {
                    Value::Str(
                        s.replace('&', "&amp;")
                            .replace('<', "&lt;")
                            .replace('>', "&gt;")
                            .replace('"', "&#34;")
                            .replace('\'', "&#39;"),
                    )
                }
            }
            "js" => {
                let s: String = args.iter().map(&string).collect();
                let mut o = String::new();
                for c in s.chars() {
                    match c {
                        '\\' => o.push_str("\\\\"),
                        '\'' => o.push_str("\\'"),
                        '"' => o.push_str("\\\""),
                        '<' => o.push_str("\\u003C"),
                        '>' => o.push_str("\\u003E"),
                        '&' => o.push_str("\\u0026"),
                        '=' => o.push_str("\\u003D"),
                        '\n' => o.push_str("\\n"),
                        c => o.push(c),
                    }
                }
                Value::Str(o)
            }
            "urlquery" => {
                let s: String = args.iter().map(&string).collect();
                Value::Str(query_escape(&s))
            }
            "query" => {
                want(1)?;
                let q = string(&args[0]);
                let Some(run) = self.data.query else {
                    return Err(
                        self.err(line, "error calling query: queries are not available here")
                    );
                };
                let samples =
                    run(&q).map_err(|e| self.err(line, format!("error calling query: {e}")))?;
                Value::List(samples.iter().map(sample_value).collect())
            }
            "first" => {
                want(1)?;
                match &args[0] {
                    Value::List(l) => l.first().cloned().ok_or_else(|| {
                        self.err(
                            line,
                            "error calling first: first() called on vector with no elements",
                        )
                    })?,
                    other => {
                        return Err(self.err(
                            line,
                            format!("error calling first: wrong type for value; expected queryResult; got {}", other.type_name()),
                        ));
                    }
                }
            }
            "label" => {
                want(2)?;
                let name = string(&args[0]);
                match &args[1] {
                    Value::Struct(m) => match m.get("Labels") {
                        Some(Value::Map(l)) => {
                            Value::Str(l.get(&name).cloned().unwrap_or_default())
                        }
                        _ => Value::Str(String::new()),
                    },
                    other => {
                        return Err(self.err(
                            line,
                            format!("error calling label: wrong type for value; expected *sample; got {}", other.type_name()),
                        ));
                    }
                }
            }
            "value" => {
                want(1)?;
                match &args[0] {
                    Value::Struct(m) => m.get("Value").cloned().unwrap_or(Value::Nil),
                    other => {
                        return Err(self.err(
                            line,
                            format!("error calling value: wrong type for value; expected *sample; got {}", other.type_name()),
                        ));
                    }
                }
            }
            "strvalue" => {
                want(1)?;
                match &args[0] {
                    Value::Struct(m) => match m.get("Labels") {
                        Some(Value::Map(l)) => {
                            Value::Str(l.get("__value__").cloned().unwrap_or_default())
                        }
                        _ => Value::Str(String::new()),
                    },
                    _ => Value::Str(String::new()),
                }
            }
            "sortByLabel" => {
                want(2)?;
                let name = string(&args[0]);
                let Value::List(mut l) = args[1].clone() else {
                    return Err(
                        self.err(line, "error calling sortByLabel: expected a query result")
                    );
                };
                let key = |v: &Value| match v {
                    Value::Struct(m) => match m.get("Labels") {
                        Some(Value::Map(l)) => l.get(&name).cloned().unwrap_or_default(),
                        _ => String::new(),
                    },
                    _ => String::new(),
                };
                l.sort_by_key(key);
                Value::List(l)
            }
            "reReplaceAll" => {
                want(3)?;
                let re = regex::Regex::new(&string(&args[0]))
                    .map_err(|e| self.err(line, format!("error calling reReplaceAll: {e}")))?;
                // Go's and Rust's replacement syntax agree (`$1`, `${name}`).
                let repl = string(&args[1]);
                Value::Str(
                    re.replace_all(&string(&args[2]), repl.as_str())
                        .into_owned(),
                )
            }
            "match" => {
                want(2)?;
                let re = regex::Regex::new(&string(&args[0]))
                    .map_err(|e| self.err(line, format!("error calling match: {e}")))?;
                Value::Bool(re.is_match(&string(&args[1])))
            }
            "title" => {
                want(1)?;
                let s = string(&args[0]);
                let mut o = String::with_capacity(s.len());
                let mut prev_letter = false;
                for c in s.chars() {
                    if !prev_letter && c.is_alphabetic() {
                        o.extend(c.to_uppercase());
                    } else {
                        o.push(c);
                    }
                    prev_letter = c.is_alphanumeric() || c == '_' || c == '\'';
                }
                Value::Str(o)
            }
            "toUpper" => {
                want(1)?;
                Value::Str(string(&args[0]).to_uppercase())
            }
            "toLower" => {
                want(1)?;
                Value::Str(string(&args[0]).to_lowercase())
            }
            "args" => {
                let mut m = BTreeMap::new();
                for (i, a) in args.into_iter().enumerate() {
                    m.insert(format!("arg{i}"), a);
                }
                Value::Struct(m)
            }
            "externalURL" => Value::Str(self.data.external_url.to_string()),
            "pathPrefix" => {
                let u = self.data.external_url;
                let after_scheme = u.split_once("://").map(|x| x.1).unwrap_or(u);
                Value::Str(
                    after_scheme
                        .find('/')
                        .map(|i| after_scheme[i..].to_string())
                        .unwrap_or_default(),
                )
            }
            "parseDuration" => {
                want(1)?;
                let s = string(&args[0]);
                let d: lookout_config::Duration = s
                    .parse()
                    .map_err(|e| self.err(line, format!("error calling parseDuration: {e}")))?;
                Value::Float(d.as_secs_f64())
            }
            "humanize" => {
                want(1)?;
                Value::Str(humanize(float(&args[0])?))
            }
            "humanize1024" => {
                want(1)?;
                Value::Str(humanize1024(float(&args[0])?))
            }
            "humanizeDuration" => {
                want(1)?;
                Value::Str(humanize_duration(float(&args[0])?))
            }
            "humanizePercentage" => {
                want(1)?;
                Value::Str(format!("{}%", gofmt::fmt_g(float(&args[0])? * 100.0, 4)))
            }
            "humanizeTimestamp" => {
                want(1)?;
                Value::Str(humanize_timestamp(float(&args[0])?))
            }
            other => return Err(self.err(line, format!("function {other:?} not defined"))),
        })
    }
}

fn query_escape(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                o.push(b as char)
            }
            b' ' => o.push('+'),
            b => {
                let _ = write!(o, "%{b:02X}");
            }
        }
    }
    o
}

/// Prometheus's `humanize`: SI prefixes, 4 significant digits (`1.235k`, `250m`).
pub fn humanize(v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return gofmt::fmt_g(v, 4);
    }
    let mut v = v;
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", gofmt::fmt_g(v, 4))
}

/// Prometheus's `humanize1024`: binary prefixes (`200Mi`).
pub fn humanize1024(v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return gofmt::fmt_g(v, 4);
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", gofmt::fmt_g(v, 4))
}

/// Prometheus's `humanizeDuration`: `1d 2h 3m 4s`, `2.5s`, `250ms`.
pub fn humanize_duration(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return gofmt::fmt_g(v, 4);
    }
    if v == 0.0 {
        return "0s".into();
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        let a = v.abs();
        let total = a as i64;
        let (days, hours, minutes, seconds) = (
            total / 86400,
            total / 3600 % 24,
            total / 60 % 60,
            total % 60,
        );
        if days != 0 {
            return format!("{sign}{days}d {hours}h {minutes}m {seconds}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {minutes}m {seconds}s");
        }
        if minutes != 0 {
            return format!("{sign}{minutes}m {seconds}s");
        }
        return format!("{sign}{}s", gofmt::fmt_g(a, 4));
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", gofmt::fmt_g(v, 4))
}

/// Prometheus's `humanizeTimestamp`: Go's default time format in UTC.
pub fn humanize_timestamp(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return gofmt::fmt_g(v, 4);
    }
    let secs = v.floor() as i64;
    let nanos = ((v - v.floor()) * 1e9).round() as i64;
    let (date, time) = crate::time::civil(secs);
    let mut s = format!("{date} {time}");
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(p: &[(&str, &str)]) -> BTreeMap<String, String> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn run(text: &str, value: f64) -> Result<String, TemplateError> {
        let l = labels(&[("instance", "user:8080"), ("job", "user-service")]);
        let ext = labels(&[("project", "wealist")]);
        let q = |expr: &str| -> Result<Vec<QuerySample>, String> {
            if expr == "fail" {
                return Err("boom".into());
            }
            Ok(vec![QuerySample {
                labels: labels(&[("__name__", "up"), ("job", "x")]),
                value: 0.42,
            }])
        };
        let data = TemplateData {
            labels: &l,
            external_labels: &ext,
            external_url: "http://lookout:9090/prefix",
            value,
            query: Some(&q),
        };
        expand("__alert_Test", text, &data)
    }

    #[test]
    fn variables_and_fields() {
        assert_eq!(
            run("{{ $labels.instance }} is {{ $value }}", 3.5).unwrap(),
            "user:8080 is 3.5"
        );
        assert_eq!(
            run("{{ .Labels.job }}/{{ .Value }}", 1.0).unwrap(),
            "user-service/1"
        );
        assert_eq!(
            run("{{ $externalLabels.project }}", 0.0).unwrap(),
            "wealist"
        );
        assert_eq!(run("[{{ $labels.missing }}]", 0.0).unwrap(), "[]");
        assert_eq!(
            run("{{ $externalURL }}", 0.0).unwrap(),
            "http://lookout:9090/prefix"
        );
    }

    #[test]
    fn functions() {
        assert_eq!(run("{{ $value | humanize }}", 1234567.0).unwrap(), "1.235M");
        assert_eq!(run("{{ humanize $value }}", 0.25).unwrap(), "250m");
        assert_eq!(
            run("{{ $value | humanizePercentage }}", 0.0734).unwrap(),
            "7.34%"
        );
        assert_eq!(run("{{ $value | humanizeDuration }}", 2.5).unwrap(), "2.5s");
        assert_eq!(
            run("{{ $value | humanizeDuration }}", 3725.0).unwrap(),
            "1h 2m 5s"
        );
        assert_eq!(
            run("{{ $value | humanizeDuration }}", 0.25).unwrap(),
            "250ms"
        );
        assert_eq!(
            run("{{ $value | humanize1024 }}", 209715200.0).unwrap(),
            "200Mi"
        );
        assert_eq!(
            run("{{ printf \"%.2f\" $value }}", 1.23456).unwrap(),
            "1.23"
        );
        assert_eq!(
            run("{{ $value | printf \"%.1f%%\" }}", 12.34).unwrap(),
            "12.3%"
        );
        assert_eq!(
            run("{{ query \"up\" | first | value }}", 0.0).unwrap(),
            "0.42"
        );
        assert_eq!(
            run(
                "{{ with query \"up\" }}{{ . | first | label \"job\" }}{{ end }}",
                0.0
            )
            .unwrap(),
            "x"
        );
        assert_eq!(
            run("{{ $labels.job | toUpper }}", 0.0).unwrap(),
            "USER-SERVICE"
        );
        assert_eq!(
            run("{{ reReplaceAll \":.*\" \"\" $labels.instance }}", 0.0).unwrap(),
            "user"
        );
        assert_eq!(
            run("{{ humanizeTimestamp 1700000000 }}", 0.0).unwrap(),
            "2023-11-14 22:13:20 +0000 UTC"
        );
        assert_eq!(run("{{ pathPrefix }}", 0.0).unwrap(), "/prefix");
    }

    #[test]
    fn control_flow() {
        let t = "{{ if gt $value 100.0 }}high{{ else if gt $value 10.0 }}mid{{ else }}low{{ end }}";
        assert_eq!(run(t, 500.0).unwrap(), "high");
        assert_eq!(run(t, 50.0).unwrap(), "mid");
        assert_eq!(run(t, 5.0).unwrap(), "low");
        assert_eq!(
            run(
                "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
                0.0
            )
            .unwrap(),
            "instance=user:8080;job=user-service;"
        );
        assert_eq!(run("{{ $x := 5 }}{{ $x }}", 0.0).unwrap(), "5");
        assert_eq!(run("a  {{- 1 -}}  b", 0.0).unwrap(), "a1b");
        assert_eq!(run("{{/* note */}}x", 0.0).unwrap(), "x");
        assert_eq!(
            run(
                "{{ if and (eq $labels.job \"user-service\") (lt $value 2.0) }}y{{ end }}",
                1.0
            )
            .unwrap(),
            "y"
        );
    }

    #[test]
    fn errors() {
        let e = run("{{ nosuchfn $value }}", 0.0).unwrap_err();
        assert!(
            e.message.contains("function \"nosuchfn\" not defined"),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "template: __alert_Test:1: function \"nosuchfn\" not defined"
        );
        assert!(run("{{ if 1 }}x", 0.0).is_err());
        assert!(run("{{ end }}", 0.0).is_err());
        assert!(run("{{ $labels.x", 0.0).is_err());
        assert!(run("{{ $undefined }}", 0.0).is_err());
        assert!(
            run("{{ query \"fail\" }}", 0.0)
                .unwrap_err()
                .message
                .contains("boom")
        );
        assert!(run("{{ query \"up\" | first | value | len }}", 0.0).is_err());
        let e = run("line1\n{{ bad }}", 0.0).unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn korean_text_passes_through() {
        assert_eq!(
            run("{{ $labels.job }} 서비스 다운", 0.0).unwrap(),
            "user-service 서비스 다운"
        );
    }
}
