//! The subset of Go's `text/template` that `line_format` and `label_format` use: text,
//! `{{ pipeline }}` actions with `{{-`/`-}}` trimming, field references (`.name`, a missing one
//! renders empty), literals, function calls, pipes, parentheses, `if`/`else if`/`else`/`end`
//! and comments, with Loki's function set (string, math, `printf`, `default`, `__line__`,
//! `__timestamp__`, ...). Errors read like Go's (`template: line:1: function "x" not defined`).

use std::fmt::Write as _;

use regex::Regex;

use crate::units::go_quote;

/// Data a template renders against.
pub trait TemplateData {
    fn field(&self, name: &str) -> Option<&str>;
    fn line(&self) -> &str;
    fn timestamp_ns(&self) -> i64;
}

#[derive(Clone, Debug)]
pub struct Template {
    nodes: Vec<Node>,
    src: String,
    /// True when the template reads `__line__` (so the caller knows the line matters).
    pub uses_line: bool,
}

#[derive(Clone, Debug)]
enum Node {
    Text(String),
    Action(Pipeline),
    If {
        branches: Vec<(Pipeline, Vec<Node>)>,
        else_: Vec<Node>,
    },
}

#[derive(Clone, Debug)]
struct Pipeline(Vec<Command>);

#[derive(Clone, Debug)]
struct Command(Vec<Arg>);

#[derive(Clone, Debug)]
enum Arg {
    Field(String),
    Dot,
    Str(String),
    Num(f64),
    Bool(bool),
    Nil,
    Func(String),
    Sub(Pipeline),
}

#[derive(Clone, Debug, PartialEq)]
enum V {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Time(i64),
    Nil,
}

impl V {
    fn truthy(&self) -> bool {
        match self {
            V::Str(s) => !s.is_empty(),
            V::Int(i) => *i != 0,
            V::Float(f) => *f != 0.0,
            V::Bool(b) => *b,
            V::Time(_) => true,
            V::Nil => false,
        }
    }

    fn render(&self) -> String {
        match self {
            V::Str(s) => s.clone(),
            V::Int(i) => i.to_string(),
            V::Float(f) => format_go_float(*f),
            V::Bool(b) => b.to_string(),
            V::Time(ns) => format_go_time(*ns),
            V::Nil => "<no value>".into(),
        }
    }

    fn as_f64(&self) -> f64 {
        match self {
            V::Str(s) => s.trim().parse().unwrap_or(0.0),
            V::Int(i) => *i as f64,
            V::Float(f) => *f,
            V::Bool(b) => f64::from(u8::from(*b)),
            V::Time(ns) => *ns as f64,
            V::Nil => 0.0,
        }
    }

    fn as_i64(&self) -> i64 {
        match self {
            V::Str(s) => s
                .trim()
                .parse::<i64>()
                .unwrap_or_else(|_| s.trim().parse::<f64>().unwrap_or(0.0) as i64),
            V::Int(i) => *i,
            V::Float(f) => *f as i64,
            V::Bool(b) => i64::from(*b),
            V::Time(ns) => *ns,
            V::Nil => 0,
        }
    }
}

fn format_go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == f.trunc() && f.abs() < 1e21 {
        return format!("{}", f as i128);
    }
    let s = format!("{f}");
    if f.abs() >= 1e21 || (f != 0.0 && f.abs() < 1e-4) {
        format!("{f:e}")
    } else {
        s
    }
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe as i64 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Go's default `time.Time` string, in UTC.
fn format_go_time(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let mut s = format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    if frac != 0 {
        let f = format!("{frac:09}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    s
}

const FUNCS: &[&str] = &[
    "ToLower",
    "ToUpper",
    "lower",
    "upper",
    "title",
    "Title",
    "Replace",
    "replace",
    "Trim",
    "TrimLeft",
    "TrimRight",
    "TrimPrefix",
    "TrimSuffix",
    "TrimSpace",
    "trim",
    "trimAll",
    "trimPrefix",
    "trimSuffix",
    "trunc",
    "substr",
    "contains",
    "hasPrefix",
    "hasSuffix",
    "repeat",
    "regexReplaceAll",
    "regexReplaceAllLiteral",
    "add",
    "sub",
    "mul",
    "div",
    "mod",
    "addf",
    "subf",
    "mulf",
    "divf",
    "max",
    "min",
    "maxf",
    "minf",
    "ceil",
    "floor",
    "round",
    "int",
    "float64",
    "default",
    "count",
    "alignLeft",
    "alignRight",
    "unixEpoch",
    "unixEpochMillis",
    "unixEpochNanos",
    "__line__",
    "__timestamp__",
    "printf",
    "print",
    "len",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "and",
    "or",
    "not",
    "b64enc",
    "b64dec",
    "urlencode",
    "indent",
    "nindent",
    "toString",
    "squote",
    "quote",
];

struct P<'a> {
    src: &'a str,
    pos: usize,
    name: &'a str,
}

impl Template {
    /// Parses `src`; `name` appears in errors (`line` for line_format, `label` for label_format).
    pub fn parse(name: &str, src: &str) -> Result<Template, String> {
        let mut p = P { src, pos: 0, name };
        let (nodes, end) = p.parse_list(&[])?;
        if let Some(kw) = end {
            return Err(p.err(&format!("unexpected {{{{{kw}}}}}")));
        }
        let uses_line = src.contains("__line__");
        Ok(Template {
            nodes,
            src: src.to_string(),
            uses_line,
        })
    }

    pub fn source(&self) -> &str {
        &self.src
    }

    /// True when rendering cannot depend on the data (no actions).
    pub fn is_constant(&self) -> bool {
        self.nodes.iter().all(|n| matches!(n, Node::Text(_)))
    }

    pub fn render(&self, data: &dyn TemplateData, out: &mut String) -> Result<(), String> {
        render_nodes(&self.nodes, data, out)
    }
}

fn render_nodes(nodes: &[Node], data: &dyn TemplateData, out: &mut String) -> Result<(), String> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => {
                let v = eval_pipeline(p, data)?;
                out.push_str(&v.render());
            }
            Node::If { branches, else_ } => {
                let mut done = false;
                for (cond, body) in branches {
                    if eval_pipeline(cond, data)?.truthy() {
                        render_nodes(body, data, out)?;
                        done = true;
                        break;
                    }
                }
                if !done {
                    render_nodes(else_, data, out)?;
                }
            }
        }
    }
    Ok(())
}

impl P<'_> {
    fn err(&self, msg: &str) -> String {
        let line = 1 + self.src[..self.pos.min(self.src.len())]
            .matches('\n')
            .count();
        format!("template: {}:{line}: {msg}", self.name)
    }

    /// Parses nodes until EOF or one of the `stops` keywords (`else`, `end`); returns the
    /// keyword met (with `else if` as "else if").
    fn parse_list(&mut self, stops: &[&str]) -> Result<(Vec<Node>, Option<String>), String> {
        let mut nodes = Vec::new();
        loop {
            let rest = &self.src[self.pos..];
            let Some(open) = rest.find("{{") else {
                if !rest.is_empty() {
                    nodes.push(Node::Text(rest.to_string()));
                }
                self.pos = self.src.len();
                return Ok((nodes, None));
            };
            let mut text = rest[..open].to_string();
            self.pos += open + 2;
            if self.src[self.pos..].starts_with("- ") || self.src[self.pos..].starts_with("-\t") {
                text = text.trim_end().to_string();
                self.pos += 1;
            }
            if !text.is_empty() {
                nodes.push(Node::Text(text));
            }
            let body_start = self.pos;
            let Some(close_rel) = find_close(&self.src[self.pos..]) else {
                return Err(self.err("unclosed action"));
            };
            let mut body_end = self.pos + close_rel;
            let mut trim_right = false;
            if self.src[..body_end].ends_with(" -") || self.src[..body_end].ends_with("\t-") {
                body_end -= 1;
                trim_right = true;
            }
            let body = self.src[body_start..body_end].trim();
            self.pos = self.pos + close_rel + 2;
            if trim_right {
                let skipped = self.src[self.pos..].len() - self.src[self.pos..].trim_start().len();
                self.pos += skipped;
            }
            if body.starts_with("/*") {
                if !body.ends_with("*/") {
                    return Err(self.err("unclosed comment"));
                }
                continue;
            }
            let word = body.split_whitespace().next().unwrap_or("");
            match word {
                "if" => {
                    let cond = self.parse_pipeline_str(body["if".len()..].trim())?;
                    let mut branches = Vec::new();
                    let mut else_ = Vec::new();
                    let mut cur_cond = cond;
                    loop {
                        let (body_nodes, end) = self.parse_list(&["else", "end"])?;
                        match end.as_deref() {
                            Some("end") => {
                                branches.push((cur_cond, body_nodes));
                                break;
                            }
                            Some(e) if e.starts_with("else if ") => {
                                branches.push((cur_cond, body_nodes));
                                cur_cond = self.parse_pipeline_str(e["else if ".len()..].trim())?;
                            }
                            Some("else") => {
                                branches.push((cur_cond, body_nodes));
                                let (en, end2) = self.parse_list(&["end"])?;
                                if end2.as_deref() != Some("end") {
                                    return Err(self.err("unexpected EOF"));
                                }
                                else_ = en;
                                break;
                            }
                            _ => return Err(self.err("unexpected EOF")),
                        }
                    }
                    nodes.push(Node::If { branches, else_ });
                }
                "else" | "end" => {
                    if stops.contains(&word) {
                        return Ok((nodes, Some(body.to_string())));
                    }
                    return Err(self.err(&format!("unexpected {{{{{word}}}}}")));
                }
                "range" | "with" | "define" | "template" | "block" | "break" | "continue" => {
                    return Err(self.err(&format!("{word} is not supported")));
                }
                "" => return Err(self.err("missing value for command")),
                _ => nodes.push(Node::Action(self.parse_pipeline_str(body)?)),
            }
        }
    }

    fn parse_pipeline_str(&self, s: &str) -> Result<Pipeline, String> {
        let toks = tokenize(s).map_err(|e| self.err(&e))?;
        let mut i = 0;
        let p = parse_pipeline(&toks, &mut i).map_err(|e| self.err(&e))?;
        if i != toks.len() {
            return Err(self.err(&format!("unexpected {:?} in command", toks[i])));
        }
        Ok(p)
    }
}

/// Finds the `}}` closing an action, skipping quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if i + 1 < b.len() && b[i + 1] == b'}' => return Some(i),
            b'\n' => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

#[derive(Clone, Debug, PartialEq)]
enum T {
    Field(String),
    Dot,
    Str(String),
    Num(f64),
    Ident(String),
    Pipe,
    LParen,
    RParen,
}

fn tokenize(s: &str) -> Result<Vec<T>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'|' => {
                out.push(T::Pipe);
                i += 1;
            }
            b'(' => {
                out.push(T::LParen);
                i += 1;
            }
            b')' => {
                out.push(T::RParen);
                i += 1;
            }
            b'.' => {
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                if j == i + 1 {
                    out.push(T::Dot);
                } else {
                    out.push(T::Field(s[i + 1..j].to_string()));
                }
                i = j;
            }
            b'"' => {
                let mut j = i + 1;
                let mut v = String::new();
                let mut closed = false;
                while j < b.len() {
                    match b[j] {
                        b'"' => {
                            closed = true;
                            j += 1;
                            break;
                        }
                        b'\\' if j + 1 < b.len() => {
                            let e = b[j + 1];
                            j += 2;
                            match e {
                                b'n' => v.push('\n'),
                                b't' => v.push('\t'),
                                b'r' => v.push('\r'),
                                b'\\' => v.push('\\'),
                                b'"' => v.push('"'),
                                b'x' if j + 2 <= b.len() => {
                                    let h = s
                                        .get(j..j + 2)
                                        .and_then(|x| u8::from_str_radix(x, 16).ok())
                                        .ok_or_else(|| "invalid syntax".to_string())?;
                                    v.push(char::from(h));
                                    j += 2;
                                }
                                _ => return Err("invalid syntax".into()),
                            }
                        }
                        _ => {
                            let ch = s[j..].chars().next().unwrap_or_default();
                            v.push(ch);
                            j += ch.len_utf8();
                        }
                    }
                }
                if !closed {
                    return Err("unterminated quoted string".into());
                }
                out.push(T::Str(v));
                i = j;
            }
            b'`' => match s[i + 1..].find('`') {
                Some(end) => {
                    out.push(T::Str(s[i + 1..i + 1 + end].to_string()));
                    i += end + 2;
                }
                None => return Err("unterminated raw quoted string".into()),
            },
            c if c.is_ascii_digit() || c == b'-' || c == b'+' => {
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'.') {
                    j += 1;
                }
                let n: f64 = s[i..j]
                    .parse()
                    .map_err(|_| format!("bad number syntax: {:?}", &s[i..j]))?;
                out.push(T::Num(n));
                i = j;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' => {
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                out.push(T::Ident(s[i..j].to_string()));
                i = j;
            }
            _ => return Err(format!("unexpected {:?} in command", char::from(c))),
        }
    }
    Ok(out)
}

fn parse_pipeline(toks: &[T], i: &mut usize) -> Result<Pipeline, String> {
    let mut cmds = Vec::new();
    loop {
        let mut args = Vec::new();
        while *i < toks.len() {
            let a = match &toks[*i] {
                T::Pipe | T::RParen => break,
                T::Field(f) => Arg::Field(f.clone()),
                T::Dot => Arg::Dot,
                T::Str(s) => Arg::Str(s.clone()),
                T::Num(n) => Arg::Num(*n),
                T::Ident(id) => match id.as_str() {
                    "true" => Arg::Bool(true),
                    "false" => Arg::Bool(false),
                    "nil" => Arg::Nil,
                    _ if FUNCS.contains(&id.as_str()) => Arg::Func(id.clone()),
                    _ => return Err(format!("function {} not defined", go_quote(id))),
                },
                T::LParen => {
                    *i += 1;
                    let p = parse_pipeline(toks, i)?;
                    if toks.get(*i) != Some(&T::RParen) {
                        return Err("unclosed left paren".into());
                    }
                    Arg::Sub(p)
                }
            };
            args.push(a);
            *i += 1;
        }
        if args.is_empty() {
            return Err("missing value for command".into());
        }
        cmds.push(Command(args));
        if *i < toks.len() && toks[*i] == T::Pipe {
            *i += 1;
            continue;
        }
        return Ok(Pipeline(cmds));
    }
}

fn eval_pipeline(p: &Pipeline, data: &dyn TemplateData) -> Result<V, String> {
    let mut prev: Option<V> = None;
    for cmd in &p.0 {
        prev = Some(eval_command(cmd, data, prev)?);
    }
    Ok(prev.unwrap_or(V::Nil))
}

fn eval_arg(a: &Arg, data: &dyn TemplateData) -> Result<V, String> {
    Ok(match a {
        Arg::Field(f) => V::Str(data.field(f).unwrap_or("").to_string()),
        Arg::Dot => V::Str(String::new()),
        Arg::Str(s) => V::Str(s.clone()),
        Arg::Num(n) => {
            if n.fract() == 0.0 && n.abs() < 9e15 {
                V::Int(*n as i64)
            } else {
                V::Float(*n)
            }
        }
        Arg::Bool(b) => V::Bool(*b),
        Arg::Nil => V::Nil,
        Arg::Func(f) => call(f, Vec::new(), data)?,
        Arg::Sub(p) => eval_pipeline(p, data)?,
    })
}

fn eval_command(cmd: &Command, data: &dyn TemplateData, piped: Option<V>) -> Result<V, String> {
    match &cmd.0[0] {
        Arg::Func(f) => {
            let mut args = Vec::with_capacity(cmd.0.len());
            for a in &cmd.0[1..] {
                args.push(eval_arg(a, data)?);
            }
            if let Some(p) = piped {
                args.push(p);
            }
            call(f, args, data)
        }
        other => {
            if cmd.0.len() > 1 || piped.is_some() {
                return Err("can't give argument to non-function".into());
            }
            eval_arg(other, data)
        }
    }
}

fn s(v: &V) -> String {
    v.render()
}

fn need(f: &str, args: &[V], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!(
            "wrong number of args for {f}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn num_result(x: f64) -> V {
    V::Float(x)
}

fn call(f: &str, a: Vec<V>, data: &dyn TemplateData) -> Result<V, String> {
    let r = match f {
        "__line__" => V::Str(data.line().to_string()),
        "__timestamp__" => V::Time(data.timestamp_ns()),
        "ToLower" | "lower" => {
            need(f, &a, 1)?;
            V::Str(s(&a[0]).to_lowercase())
        }
        "ToUpper" | "upper" => {
            need(f, &a, 1)?;
            V::Str(s(&a[0]).to_uppercase())
        }
        "title" | "Title" => {
            need(f, &a, 1)?;
            let mut out = String::new();
            let mut prev_letter = false;
            for c in s(&a[0]).chars() {
                if !prev_letter && c.is_alphabetic() {
                    out.extend(c.to_uppercase());
                } else {
                    out.push(c);
                }
                prev_letter = c.is_alphanumeric();
            }
            V::Str(out)
        }
        "Replace" => {
            need(f, &a, 4)?;
            let n = a[3].as_i64();
            let (src, old, new) = (s(&a[0]), s(&a[1]), s(&a[2]));
            V::Str(if n < 0 {
                src.replace(&old, &new)
            } else {
                src.replacen(&old, &new, n as usize)
            })
        }
        "replace" => {
            need(f, &a, 3)?;
            V::Str(s(&a[2]).replace(&s(&a[0]), &s(&a[1])))
        }
        "Trim" | "trimAll" => {
            need(f, &a, 2)?;
            let (x, cut) = if f == "Trim" {
                (s(&a[0]), s(&a[1]))
            } else {
                (s(&a[1]), s(&a[0]))
            };
            V::Str(x.trim_matches(|c| cut.contains(c)).to_string())
        }
        "TrimLeft" => {
            need(f, &a, 2)?;
            let cut = s(&a[1]);
            V::Str(s(&a[0]).trim_start_matches(|c| cut.contains(c)).to_string())
        }
        "TrimRight" => {
            need(f, &a, 2)?;
            let cut = s(&a[1]);
            V::Str(s(&a[0]).trim_end_matches(|c| cut.contains(c)).to_string())
        }
        "TrimPrefix" | "trimPrefix" => {
            need(f, &a, 2)?;
            let (x, p) = if f == "TrimPrefix" {
                (s(&a[0]), s(&a[1]))
            } else {
                (s(&a[1]), s(&a[0]))
            };
            V::Str(
                x.strip_prefix(p.as_str())
                    .map(str::to_string)
                    .unwrap_or(x.clone()),
            )
        }
        "TrimSuffix" | "trimSuffix" => {
            need(f, &a, 2)?;
            let (x, p) = if f == "TrimSuffix" {
                (s(&a[0]), s(&a[1]))
            } else {
                (s(&a[1]), s(&a[0]))
            };
            V::Str(
                x.strip_suffix(p.as_str())
                    .map(str::to_string)
                    .unwrap_or(x.clone()),
            )
        }
        "TrimSpace" | "trim" => {
            need(f, &a, 1)?;
            V::Str(s(&a[0]).trim().to_string())
        }
        "trunc" => {
            need(f, &a, 2)?;
            let n = a[0].as_i64();
            let x: Vec<char> = s(&a[1]).chars().collect();
            let out: String = if n >= 0 {
                x.iter().take(n as usize).collect()
            } else {
                let k = x.len().saturating_sub(n.unsigned_abs() as usize);
                x[k..].iter().collect()
            };
            V::Str(out)
        }
        "substr" => {
            need(f, &a, 3)?;
            let x: Vec<char> = s(&a[2]).chars().collect();
            let (st, en) = (a[0].as_i64(), a[1].as_i64());
            let st = if st < 0 {
                0
            } else {
                (st as usize).min(x.len())
            };
            let en = if en < 0 || en as usize > x.len() {
                x.len()
            } else {
                en as usize
            };
            V::Str(if st >= en {
                String::new()
            } else {
                x[st..en].iter().collect()
            })
        }
        "contains" => {
            need(f, &a, 2)?;
            V::Bool(s(&a[1]).contains(&s(&a[0])))
        }
        "hasPrefix" => {
            need(f, &a, 2)?;
            V::Bool(s(&a[1]).starts_with(&s(&a[0])))
        }
        "hasSuffix" => {
            need(f, &a, 2)?;
            V::Bool(s(&a[1]).ends_with(&s(&a[0])))
        }
        "repeat" => {
            need(f, &a, 2)?;
            V::Str(s(&a[1]).repeat(a[0].as_i64().clamp(0, 10_000) as usize))
        }
        "regexReplaceAll" | "regexReplaceAllLiteral" => {
            need(f, &a, 3)?;
            let re = Regex::new(&s(&a[0])).map_err(|e| format!("error parsing regexp: {e}"))?;
            let (input, repl) = (s(&a[1]), s(&a[2]));
            V::Str(if f == "regexReplaceAll" {
                re.replace_all(&input, repl.as_str()).into_owned()
            } else {
                re.replace_all(&input, regex::NoExpand(&repl)).into_owned()
            })
        }
        "add" | "sub" | "mul" | "div" | "mod" => {
            need(f, &a, 2)?;
            let (x, y) = (a[0].as_i64(), a[1].as_i64());
            V::Int(match f {
                "add" => x.wrapping_add(y),
                "sub" => x.wrapping_sub(y),
                "mul" => x.wrapping_mul(y),
                _ if y == 0 => return Err("integer divide by zero".into()),
                "div" => x / y,
                _ => x % y,
            })
        }
        "addf" | "subf" | "mulf" | "divf" => {
            need(f, &a, 2)?;
            let (x, y) = (a[0].as_f64(), a[1].as_f64());
            num_result(match f {
                "addf" => x + y,
                "subf" => x - y,
                "mulf" => x * y,
                _ => x / y,
            })
        }
        "max" | "min" => {
            if a.is_empty() {
                return Err(format!("wrong number of args for {f}"));
            }
            let it = a.iter().map(V::as_i64);
            V::Int(if f == "max" {
                it.max().unwrap_or(0)
            } else {
                it.min().unwrap_or(0)
            })
        }
        "maxf" | "minf" => {
            if a.is_empty() {
                return Err(format!("wrong number of args for {f}"));
            }
            let it = a.iter().map(V::as_f64);
            num_result(if f == "maxf" {
                it.fold(f64::MIN, f64::max)
            } else {
                it.fold(f64::MAX, f64::min)
            })
        }
        "ceil" => {
            need(f, &a, 1)?;
            num_result(a[0].as_f64().ceil())
        }
        "floor" => {
            need(f, &a, 1)?;
            num_result(a[0].as_f64().floor())
        }
        "round" => {
            if a.len() < 2 {
                return Err("wrong number of args for round".into());
            }
            let p = 10f64.powi(a[1].as_i64() as i32);
            num_result((a[0].as_f64() * p).round() / p)
        }
        "int" => {
            need(f, &a, 1)?;
            V::Int(a[0].as_i64())
        }
        "float64" => {
            need(f, &a, 1)?;
            V::Float(a[0].as_f64())
        }
        "toString" => {
            need(f, &a, 1)?;
            V::Str(s(&a[0]))
        }
        "quote" => V::Str(
            a.iter()
                .map(|v| go_quote(&s(v)))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        "squote" => V::Str(
            a.iter()
                .map(|v| format!("'{}'", s(v)))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        "default" => {
            need(f, &a, 2)?;
            if a[1].truthy() {
                a[1].clone()
            } else {
                a[0].clone()
            }
        }
        "count" => {
            need(f, &a, 2)?;
            let (sub, x) = (s(&a[0]), s(&a[1]));
            V::Int(if sub.is_empty() {
                x.chars().count() as i64 + 1
            } else {
                x.matches(&sub).count() as i64
            })
        }
        "len" => {
            need(f, &a, 1)?;
            V::Int(s(&a[0]).len() as i64)
        }
        "alignLeft" | "alignRight" => {
            need(f, &a, 2)?;
            let n = a[0].as_i64().max(0) as usize;
            let x: Vec<char> = s(&a[1]).chars().collect();
            V::Str(if x.len() >= n {
                x[..n].iter().collect()
            } else if f == "alignLeft" {
                format!(
                    "{}{}",
                    x.iter().collect::<String>(),
                    " ".repeat(n - x.len())
                )
            } else {
                format!(
                    "{}{}",
                    " ".repeat(n - x.len()),
                    x.iter().collect::<String>()
                )
            })
        }
        "unixEpoch" | "unixEpochMillis" | "unixEpochNanos" => {
            need(f, &a, 1)?;
            let ns = match &a[0] {
                V::Time(ns) => *ns,
                other => other.as_i64(),
            };
            V::Int(match f {
                "unixEpoch" => ns.div_euclid(1_000_000_000),
                "unixEpochMillis" => ns.div_euclid(1_000_000),
                _ => ns,
            })
        }
        "indent" | "nindent" => {
            need(f, &a, 2)?;
            let pad = " ".repeat(a[0].as_i64().clamp(0, 1000) as usize);
            let body = s(&a[1])
                .lines()
                .map(|l| format!("{pad}{l}"))
                .collect::<Vec<_>>()
                .join("\n");
            V::Str(if f == "nindent" {
                format!("\n{body}")
            } else {
                body
            })
        }
        "b64enc" => {
            need(f, &a, 1)?;
            V::Str(b64_encode(s(&a[0]).as_bytes()))
        }
        "b64dec" => {
            need(f, &a, 1)?;
            V::Str(b64_decode(&s(&a[0])).unwrap_or_default())
        }
        "urlencode" => {
            need(f, &a, 1)?;
            let mut out = String::new();
            for b in s(&a[0]).bytes() {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                    out.push(char::from(b));
                } else if b == b' ' {
                    out.push('+');
                } else {
                    let _ = write!(out, "%{b:02X}");
                }
            }
            V::Str(out)
        }
        "printf" => {
            if a.is_empty() {
                return Err("wrong number of args for printf: want at least 1 got 0".into());
            }
            V::Str(sprintf(&s(&a[0]), &a[1..]))
        }
        "print" => V::Str(a.iter().map(s).collect::<String>()),
        "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
            need(f, &a, 2)?;
            let ord = match (&a[0], &a[1]) {
                (V::Str(x), V::Str(y)) => x.partial_cmp(y),
                (x, y) => x.as_f64().partial_cmp(&y.as_f64()),
            };
            use std::cmp::Ordering::*;
            V::Bool(match f {
                "eq" => ord == Some(Equal),
                "ne" => ord != Some(Equal),
                "lt" => ord == Some(Less),
                "le" => matches!(ord, Some(Less | Equal)),
                "gt" => ord == Some(Greater),
                _ => matches!(ord, Some(Greater | Equal)),
            })
        }
        "and" => {
            let mut last = V::Bool(true);
            for v in a {
                if !v.truthy() {
                    return Ok(v);
                }
                last = v;
            }
            last
        }
        "or" => {
            let mut last = V::Bool(false);
            for v in a {
                if v.truthy() {
                    return Ok(v);
                }
                last = v;
            }
            last
        }
        "not" => {
            need(f, &a, 1)?;
            V::Bool(!a[0].truthy())
        }
        _ => return Err(format!("function {} not defined", go_quote(f))),
    };
    Ok(r)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(b: &[u8]) -> String {
    let mut out = String::new();
    for ch in b.chunks(3) {
        let n = (u32::from(ch[0]) << 16)
            | (u32::from(*ch.get(1).unwrap_or(&0)) << 8)
            | u32::from(*ch.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= ch.len() {
                out.push(char::from(B64[((n >> (18 - 6 * k)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(s: &str) -> Option<String> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = B64.iter().position(|x| *x == c)? as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    String::from_utf8(out).ok()
}

/// Go `fmt.Sprintf` for the common verbs (`%s %q %v %d %f %g %e %x %X %t %%`, width, precision,
/// `-`, `0`, `+` flags).
fn sprintf(fmt: &str, args: &[V]) -> String {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut ai = 0;
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut minus = false;
        let mut zero = false;
        let mut plus = false;
        while let Some(&f) = it.peek() {
            match f {
                '-' => minus = true,
                '0' => zero = true,
                '+' => plus = true,
                ' ' | '#' => {}
                _ => break,
            }
            it.next();
        }
        let mut width = String::new();
        while let Some(&d) = it.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            it.next();
        }
        let mut prec: Option<usize> = None;
        if it.peek() == Some(&'.') {
            it.next();
            let mut p = String::new();
            while let Some(&d) = it.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                it.next();
            }
            prec = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = it.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(ai) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        ai += 1;
        let body = match verb {
            's' | 'v' => {
                let mut x = s(arg);
                if let (Some(p), 's') = (prec, verb) {
                    x = x.chars().take(p).collect();
                }
                x
            }
            'q' => go_quote(&s(arg)),
            'd' => {
                let v = arg.as_i64();
                if plus && v >= 0 {
                    format!("+{v}")
                } else {
                    v.to_string()
                }
            }
            'f' | 'F' => {
                let v = arg.as_f64();
                let x = format!("{:.*}", prec.unwrap_or(6), v);
                if plus && v >= 0.0 { format!("+{x}") } else { x }
            }
            'e' => format!("{:.*e}", prec.unwrap_or(6), arg.as_f64()),
            'g' => format_go_float(arg.as_f64()),
            'x' => match arg {
                V::Str(x) => x.bytes().map(|b| format!("{b:02x}")).collect(),
                other => format!("{:x}", other.as_i64()),
            },
            'X' => match arg {
                V::Str(x) => x.bytes().map(|b| format!("{b:02X}")).collect(),
                other => format!("{:X}", other.as_i64()),
            },
            't' => arg.truthy().to_string(),
            'c' => char::from_u32(arg.as_i64() as u32)
                .map(String::from)
                .unwrap_or_default(),
            other => format!("%!{other}({})", s(arg)),
        };
        let w: usize = width.parse().unwrap_or(0);
        let len = body.chars().count();
        if len >= w {
            out.push_str(&body);
        } else if minus {
            out.push_str(&body);
            out.push_str(&" ".repeat(w - len));
        } else if zero && matches!(verb, 'd' | 'f' | 'F' | 'e' | 'g' | 'x' | 'X') {
            let (sign, digits) = if body.starts_with('-') || body.starts_with('+') {
                body.split_at(1)
            } else {
                ("", body.as_str())
            };
            out.push_str(sign);
            out.push_str(&"0".repeat(w - len));
            out.push_str(digits);
        } else {
            out.push_str(&" ".repeat(w - len));
            out.push_str(&body);
        }
    }
    if ai < args.len() {
        out.push_str("%!(EXTRA ");
        out.push_str(&args[ai..].iter().map(s).collect::<Vec<_>>().join(", "));
        out.push(')');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct D;
    impl TemplateData for D {
        fn field(&self, name: &str) -> Option<&str> {
            match name {
                "level" => Some("error"),
                "msg" => Some("hello"),
                "n" => Some("7"),
                _ => None,
            }
        }
        fn line(&self) -> &str {
            "the line"
        }
        fn timestamp_ns(&self) -> i64 {
            1_767_225_620_000_000_000
        }
    }

    fn r(src: &str) -> Result<String, String> {
        let t = Template::parse("line", src)?;
        let mut out = String::new();
        t.render(&D, &mut out)?;
        Ok(out)
    }

    #[test]
    fn fields_funcs_pipes() {
        assert_eq!(r("L={{.level}}").unwrap(), "L=error");
        assert_eq!(r("V={{.missing}}").unwrap(), "V=");
        assert_eq!(r("{{.level | upper}}").unwrap(), "ERROR");
        assert_eq!(
            r("{{ ToUpper .level }}-{{ .msg | trunc 3 }}").unwrap(),
            "ERROR-hel"
        );
        assert_eq!(
            r(r#"{{ printf "\x1b[31m%s\x1b[0m" .msg }}"#).unwrap().len(),
            14
        );
        assert_eq!(r(r#"{{ .missing | default "none" }}"#).unwrap(), "none");
        assert_eq!(r("{{ div .n 2 }} {{ __line__ }}").unwrap(), "3 the line");
        assert_eq!(
            r("{{ __timestamp__ }}").unwrap(),
            "2026-01-01 00:00:20 +0000 UTC"
        );
        assert_eq!(
            r(r#"{{ replace "e" "E" .level }}"#).unwrap(),
            "ErrosE".replace("sE", "r")
        );
        assert_eq!(
            r(r#"{{ if eq .level "error" }}E{{ else if .msg }}M{{ else }}X{{ end }}"#).unwrap(),
            "E"
        );
        assert_eq!(r("a {{- .msg -}} b").unwrap(), "ahellob");
    }

    #[test]
    fn errors_read_like_go() {
        assert!(
            r("{{ nosuchfunc }}")
                .unwrap_err()
                .contains("function \"nosuchfunc\" not defined")
        );
        assert!(
            Template::parse("label", "{{")
                .unwrap_err()
                .contains("template: label:1: unclosed action")
        );
    }
}
