//! Runs a log pipeline over one entry: line filters, parsers, label filters, formatters.
//!
//! Labels of an entry come from three sources with Loki's conflict rules: the base name goes to
//! the highest-precedence source (stream > structured metadata > parsed) and a losing value
//! spills to `<name>_extracted`, where the precedence is reversed (parsed > metadata > stream).
//! A failing stage sets `__error__` / `__error_details__` (the first failure keeps the details)
//! and the entry goes on, as in Loki.

use std::borrow::Cow;
use std::sync::OnceLock;

use lookout_storage::Labels;
use regex::Regex;

use crate::ast::*;
use crate::json::{JVal, parse_object, to_json};
use crate::template::TemplateData;
use crate::units::{parse_bytes, parse_go_duration, parse_go_float};

pub const ERROR_LABEL: &str = "__error__";
pub const ERROR_DETAILS_LABEL: &str = "__error_details__";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cat {
    Stream,
    Meta,
    Parsed,
}

/// The label set of one entry while it runs through the pipeline.
#[derive(Clone, Debug, Default)]
pub struct LabelState {
    pub labels: Vec<(String, String, Cat)>,
    pub err: Option<String>,
    pub err_details: Option<String>,
    /// Indexes (into `labels`) set by the parser stage currently running (first value wins
    /// within a stage).
    stage_keys: Vec<usize>,
    /// When set, parsers extract only these labels (see [`needed_labels`]).
    pub only: Option<Vec<String>>,
}

impl LabelState {
    pub fn reset(&mut self, stream: &Labels, metadata: &[(String, String)]) {
        self.labels.clear();
        self.err = None;
        self.err_details = None;
        for l in stream.iter() {
            self.labels
                .push((l.name.clone(), l.value.clone(), Cat::Stream));
        }
        for (k, v) in metadata {
            if self.has_cat(k, Cat::Stream) {
                self.set_raw(&format!("{k}_extracted"), v, Cat::Meta);
            } else {
                self.set_raw(k, v, Cat::Meta);
            }
        }
    }

    fn has_cat(&self, name: &str, cat: Cat) -> bool {
        self.labels.iter().any(|(n, _, c)| n == name && *c == cat)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, _)| v.as_str())
    }

    fn set_raw(&mut self, name: &str, value: &str, cat: Cat) {
        match self.labels.iter_mut().find(|(n, _, _)| n == name) {
            Some(l) => {
                l.1.clear();
                l.1.push_str(value);
                l.2 = cat;
            }
            None => self.labels.push((name.to_string(), value.to_string(), cat)),
        }
    }

    /// Sets a label from the template-driven `label_format` (overwrites in place).
    fn set_keep_cat(&mut self, name: &str, value: &str, cat: Cat) {
        match self.labels.iter_mut().find(|(n, _, _)| n == name) {
            Some(l) => {
                l.1.clear();
                l.1.push_str(value);
            }
            None => self.labels.push((name.to_string(), value.to_string(), cat)),
        }
    }

    fn del(&mut self, name: &str) {
        self.labels.retain(|(n, _, _)| n != name);
    }

    /// Adds a parsed label with the conflict rules; within one stage the first value wins.
    fn set_parsed(&mut self, name: &str, value: &str) {
        if let Some(only) = &self.only
            && !only.iter().any(|n| n == name)
        {
            return;
        }
        let target: Cow<'_, str> = if self
            .labels
            .iter()
            .any(|(n, _, c)| n == name && *c != Cat::Parsed)
        {
            Cow::Owned(format!("{name}_extracted"))
        } else {
            Cow::Borrowed(name)
        };
        if self
            .stage_keys
            .iter()
            .any(|&i| self.labels.get(i).is_some_and(|l| l.0 == target.as_ref()))
        {
            return;
        }
        let idx = match self
            .labels
            .iter()
            .position(|(n, _, _)| n == target.as_ref())
        {
            Some(i) => {
                let l = &mut self.labels[i];
                l.1.clear();
                l.1.push_str(value);
                l.2 = Cat::Parsed;
                i
            }
            None => {
                self.labels
                    .push((target.into_owned(), value.to_string(), Cat::Parsed));
                self.labels.len() - 1
            }
        };
        self.stage_keys.push(idx);
    }

    /// The series key of a range aggregation: error labels always kept, the unwrapped label
    /// dropped, `by`/`without` applied — built without copying labels that go away.
    pub fn grouped_key(
        &self,
        by: Option<&[String]>,
        without: &[String],
        drop: Option<&str>,
    ) -> Vec<(String, String)> {
        let keep = |n: &str| {
            drop != Some(n)
                && by.is_none_or(|b| b.iter().any(|x| x == n))
                && !without.iter().any(|x| x == n)
        };
        let mut v: Vec<(String, String)> = self
            .labels
            .iter()
            .filter(|(n, _, _)| keep(n))
            .map(|(n, v, _)| (n.clone(), v.clone()))
            .collect();
        if let Some(e) = &self.err {
            v.push((ERROR_LABEL.into(), e.clone()));
            if let Some(d) = &self.err_details {
                v.push((ERROR_DETAILS_LABEL.into(), d.clone()));
            }
        }
        v.sort_unstable();
        v
    }

    pub fn set_err(&mut self, err: &str, details: impl Into<String>) {
        if self.err.is_none() {
            self.err = Some(err.to_string());
            self.err_details = Some(details.into());
        }
    }

    /// The final, sorted label set (error labels included).
    pub fn to_sorted(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .labels
            .iter()
            .map(|(n, v, _)| (n.clone(), v.clone()))
            .collect();
        if let Some(e) = &self.err {
            v.push((ERROR_LABEL.into(), e.clone()));
            if let Some(d) = &self.err_details {
                v.push((ERROR_DETAILS_LABEL.into(), d.clone()));
            }
        }
        v.sort();
        v
    }
}

/// Replaces a label-name-invalid character with `_`; a leading digit gets a `_` prefix.
pub fn sanitize_key(key: &str) -> Cow<'_, str> {
    let valid = !key.starts_with(|c: char| c.is_ascii_digit())
        && key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if valid {
        return Cow::Borrowed(key);
    }
    let mut out = String::with_capacity(key.len() + 1);
    if key.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        out.push('_');
    }
    for c in key.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    Cow::Owned(out)
}

struct Data<'a> {
    st: &'a LabelState,
    line: &'a str,
    ts: i64,
}

impl TemplateData for Data<'_> {
    fn field(&self, name: &str) -> Option<&str> {
        match name {
            ERROR_LABEL => self.st.err.as_deref(),
            ERROR_DETAILS_LABEL => self.st.err_details.as_deref(),
            _ => self.st.get(name),
        }
    }
    fn line(&self) -> &str {
        self.line
    }
    fn timestamp_ns(&self) -> i64 {
        self.ts
    }
}

fn ansi_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"[\x1b\x{9b}][\[\]()#;?]*(?:(?:(?:[a-zA-Z\d]*(?:;[a-zA-Z\d]*)*)?\x07)|(?:(?:\d{1,4}(?:;\d{0,4})*)?[\dA-PRZcf-ntqry=><~]))",
        )
        .unwrap_or_else(|_| Regex::new("$^").unwrap_or_else(|_| unreachable!()))
    })
}

fn filter_labels<'a>(f: &'a LabelFilter, out: &mut Vec<&'a str>) {
    match f {
        LabelFilter::And(a, b) | LabelFilter::Or(a, b) => {
            filter_labels(a, out);
            filter_labels(b, out);
        }
        LabelFilter::String(m) => out.push(&m.name),
        LabelFilter::Number { name, .. }
        | LabelFilter::Duration { name, .. }
        | LabelFilter::Bytes { name, .. }
        | LabelFilter::Ip { name, .. } => out.push(name),
    }
}

/// The only parsed labels a pipeline's result can depend on when its series are grouped by
/// `by` (and `unwrap` reads its label and post-filters), so parsers may skip all others (Loki's
/// parser hints). `None` when any stage can read arbitrary labels (formats, drop, keep).
pub fn needed_labels(
    stages: &[Stage],
    by: &[String],
    unwrap: Option<&Unwrap>,
) -> Option<Vec<String>> {
    let mut names: Vec<&str> = by.iter().map(String::as_str).collect();
    for s in stages {
        match s {
            Stage::LineFilter(_) | Stage::Parser(_) | Stage::Decolorize => {}
            Stage::LabelFilter(f) => filter_labels(f, &mut names),
            Stage::LineFormat(_) | Stage::LabelFormat(_) | Stage::Drop(_) | Stage::Keep(_) => {
                return None;
            }
        }
    }
    if let Some(u) = unwrap {
        names.push(&u.label);
        for f in &u.post_filters {
            filter_labels(f, &mut names);
        }
    }
    // A parsed key that collides with a stream label arrives as `<key>_extracted`.
    let mut out: Vec<String> = Vec::with_capacity(names.len() * 2);
    for n in names {
        out.push(n.to_string());
        if let Some(base) = n.strip_suffix("_extracted") {
            out.push(base.to_string());
        }
    }
    out.sort();
    out.dedup();
    Some(out)
}

fn line_filter_matches(f: &LineFilter, line: &str) -> bool {
    let any = f.operands.iter().any(|o| match o {
        LineOperand::Str(s) => line.contains(s.as_str()),
        LineOperand::Regex(r) => r.is_match(line),
        LineOperand::Pattern(p) => p.test(line),
        LineOperand::Ip(ip) => ip.matches_in(line),
    });
    if f.op.negated() { !any } else { any }
}

/// Runs `stages` over one entry. Returns false when the entry is filtered out; `line` holds
/// the (possibly rewritten) line.
pub fn run_stages(stages: &[Stage], ts: i64, line: &mut Cow<'_, str>, st: &mut LabelState) -> bool {
    for stage in stages {
        match stage {
            Stage::LineFilter(f) => {
                if !line_filter_matches(f, line) {
                    return false;
                }
            }
            Stage::Parser(p) => {
                st.stage_keys.clear();
                run_parser(p, line, st);
            }
            Stage::LabelFilter(f) => {
                if !label_filter(f, st) {
                    return false;
                }
            }
            Stage::LineFormat(t) => {
                let mut out = String::new();
                let r = t.render(&Data { st, line, ts }, &mut out);
                match r {
                    Ok(()) => *line = Cow::Owned(out),
                    Err(e) => st.set_err("TemplateFormatErr", e),
                }
            }
            Stage::LabelFormat(fmts) => {
                // (destination, new value and category, renamed source to delete)
                type Update = (String, Option<(String, Cat)>, Option<String>);
                let mut updates: Vec<Update> = Vec::new();
                for f in fmts {
                    match f {
                        LabelFmt::Rename { dst, src } => {
                            if let Some((_, v, c)) = st.labels.iter().find(|(n, _, _)| n == src) {
                                updates.push((
                                    dst.clone(),
                                    Some((v.clone(), *c)),
                                    Some(src.clone()),
                                ));
                            }
                        }
                        LabelFmt::Template { dst, tmpl } => {
                            let mut out = String::new();
                            match tmpl.render(&Data { st, line, ts }, &mut out) {
                                Ok(()) => {
                                    updates.push((dst.clone(), Some((out, Cat::Parsed)), None))
                                }
                                Err(e) => st.set_err("TemplateFormatErr", e),
                            }
                        }
                    }
                }
                for (dst, val, del) in updates {
                    if let Some(src) = del
                        && src != dst
                    {
                        st.del(&src);
                    }
                    if let Some((v, c)) = val {
                        st.set_keep_cat(&dst, &v, c);
                    }
                }
            }
            Stage::Decolorize => {
                if let Cow::Owned(s) = ansi_re().replace_all(line, "") {
                    *line = Cow::Owned(s);
                }
            }
            Stage::Drop(ms) => {
                for m in ms {
                    let matches = |v: &str| m.matcher.as_ref().is_none_or(|mm| mm.matches(v));
                    match m.name.as_str() {
                        ERROR_LABEL => {
                            if st.err.as_deref().is_some_and(matches) {
                                st.err = None;
                            }
                        }
                        ERROR_DETAILS_LABEL => {
                            if st.err_details.as_deref().is_some_and(matches) {
                                st.err_details = None;
                            }
                        }
                        name => st.labels.retain(|(n, v, _)| !(n == name && matches(v))),
                    }
                }
            }
            Stage::Keep(ms) => {
                st.labels.retain(|(n, v, _)| {
                    ms.iter()
                        .any(|m| &m.name == n && m.matcher.as_ref().is_none_or(|mm| mm.matches(v)))
                });
            }
        }
    }
    true
}

/// Evaluates a label filter; numeric conversions that fail set `LabelFilterErr` and keep the
/// line. `and` runs both sides, `or` stops at the first match.
pub fn label_filter(f: &LabelFilter, st: &mut LabelState) -> bool {
    match f {
        LabelFilter::And(a, b) => {
            let x = label_filter(a, st);
            let y = label_filter(b, st);
            x && y
        }
        LabelFilter::Or(a, b) => label_filter(a, st) || label_filter(b, st),
        LabelFilter::String(m) => {
            let v = match m.name.as_str() {
                ERROR_LABEL => st.err.as_deref().unwrap_or(""),
                ERROR_DETAILS_LABEL => st.err_details.as_deref().unwrap_or(""),
                n => st.get(n).unwrap_or(""),
            };
            m.matches(v)
        }
        LabelFilter::Number { name, op, value } => {
            let Some(v) = st.get(name) else { return false };
            match parse_go_float(v) {
                Ok(x) => op.apply(x, *value),
                Err(e) => {
                    st.set_err("LabelFilterErr", e);
                    true
                }
            }
        }
        LabelFilter::Duration { name, op, value } => {
            let Some(v) = st.get(name) else { return false };
            match parse_go_duration(v, false) {
                Ok(ns) => op.apply(ns / 1e9, *value),
                Err(e) => {
                    st.set_err("LabelFilterErr", e);
                    true
                }
            }
        }
        LabelFilter::Bytes { name, op, value } => {
            let Some(v) = st.get(name) else { return false };
            match parse_bytes(v) {
                Ok(b) => op.apply(b, *value),
                Err(e) => {
                    st.set_err("LabelFilterErr", e);
                    true
                }
            }
        }
        LabelFilter::Ip { name, negate, ip } => {
            if st.err.is_some() {
                return true;
            }
            let Some(v) = st.get(name) else { return false };
            ip.matches_in(v) != *negate
        }
    }
}

fn run_parser(p: &Parser, line: &mut Cow<'_, str>, st: &mut LabelState) {
    match p {
        Parser::Json(exprs) => match parse_object(line) {
            Err(e) => st.set_err("JSONParserErr", e.msg),
            Ok(obj) => {
                if exprs.is_empty() {
                    let mut prefix = String::new();
                    flatten_json(&obj, &mut prefix, st);
                } else {
                    for (name, path) in exprs {
                        let v = json_path_value(&obj, path);
                        st.set_parsed(name, &v);
                    }
                }
            }
        },
        Parser::Unpack => match parse_object(line) {
            Err(e) => st.set_err("JSONParserErr", e.msg),
            Ok(obj) => {
                let mut entry: Option<String> = None;
                for (k, v) in obj {
                    if let JVal::Str(s) = v {
                        if k == "_entry" {
                            if entry.is_none() {
                                entry = Some(s.into_owned());
                            }
                        } else {
                            st.set_parsed(&sanitize_key(&k), &s);
                        }
                    }
                }
                if let Some(e) = entry {
                    *line = Cow::Owned(e);
                }
            }
        },
        Parser::Logfmt {
            strict,
            keep_empty,
            exprs,
        } => {
            let text: &str = line;
            let mut pairs: Vec<(String, String)> = Vec::new();
            let r = parse_logfmt(text, *strict, |k, v| {
                pairs.push((k.to_string(), v.into_owned()))
            });
            if let Err(e) = r {
                st.set_err("LogfmtParserErr", e);
                return;
            }
            if exprs.is_empty() {
                for (k, v) in pairs {
                    if v.is_empty() && !keep_empty {
                        continue;
                    }
                    st.set_parsed(&sanitize_key(&k), &v);
                }
            } else {
                for (name, key) in exprs {
                    if let Some((_, v)) = pairs.iter().find(|(k, _)| k == key) {
                        st.set_parsed(name, v);
                    }
                }
            }
        }
        Parser::Regexp { re, names } => {
            let text: &str = line;
            if let Some(c) = re.captures(text) {
                let found: Vec<(String, String)> = names
                    .iter()
                    .enumerate()
                    .filter_map(|(i, n)| Some((n.clone()?, c.get(i)?.as_str().to_string())))
                    .collect();
                for (n, v) in found {
                    st.set_parsed(&n, &v);
                }
            }
        }
        Parser::Pattern(p) => {
            let text: &str = line;
            let mut found: Vec<(String, String)> = Vec::new();
            p.extract(text, |n, v| found.push((n.to_string(), v.to_string())));
            for (n, v) in found {
                st.set_parsed(&n, &v);
            }
        }
    }
}

fn flatten_json(obj: &[(Cow<'_, str>, JVal<'_>)], prefix: &mut String, st: &mut LabelState) {
    for (k, v) in obj {
        let len = prefix.len();
        if !prefix.is_empty() {
            prefix.push('_');
        }
        prefix.push_str(k);
        match v {
            JVal::Obj(o) => flatten_json(o, prefix, st),
            JVal::Str(s) => st.set_parsed(&sanitize_key(prefix), s),
            JVal::Num(n) => st.set_parsed(&sanitize_key(prefix), n),
            JVal::Bool(b) => {
                st.set_parsed(&sanitize_key(prefix), if *b { "true" } else { "false" })
            }
            JVal::Null | JVal::Arr(_) => {}
        }
        prefix.truncate(len);
    }
}

fn json_path_value(obj: &[(Cow<'_, str>, JVal<'_>)], path: &JsonPath) -> String {
    let mut cur: Option<&JVal<'_>> = None;
    for (i, key) in path.iter().enumerate() {
        let next = match (i, key, cur) {
            (0, JsonKey::Field(f), _) => obj.iter().find(|(k, _)| k == f).map(|(_, v)| v),
            (_, JsonKey::Field(f), Some(JVal::Obj(o))) => {
                o.iter().find(|(k, _)| k == f).map(|(_, v)| v)
            }
            (_, JsonKey::Index(n), Some(JVal::Arr(a))) => a.get(*n),
            _ => None,
        };
        match next {
            Some(v) => cur = Some(v),
            None => return String::new(),
        }
    }
    match cur {
        None | Some(JVal::Null) => String::new(),
        Some(JVal::Str(s)) => s.to_string(),
        Some(JVal::Num(n)) => n.to_string(),
        Some(JVal::Bool(b)) => b.to_string(),
        Some(v) => {
            let mut s = String::new();
            to_json(v, &mut s);
            s
        }
    }
}

/// go-logfmt style scanner. Non-strict mode skips a malformed pair and goes on; strict mode
/// fails the line.
pub fn parse_logfmt<'a>(
    s: &'a str,
    strict: bool,
    mut emit: impl FnMut(&'a str, Cow<'a, str>),
) -> Result<(), String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut seen: Vec<&str> = Vec::new();
    while i < b.len() {
        while i < b.len() && b[i] <= b' ' {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let ks = i;
        while i < b.len() && b[i] > b' ' && b[i] != b'=' && b[i] != b'"' {
            i += 1;
        }
        let key = &s[ks..i];
        let fail =
            |msg: &str, pos: usize| format!("logfmt syntax error at pos {} : {msg}", pos + 1);
        if key.is_empty() {
            // '=' or '"' where a key should start
            if strict {
                return Err(fail(&format!("unexpected {:?}", char::from(b[i])), i));
            }
            while i < b.len() && b[i] > b' ' {
                i += 1;
            }
            continue;
        }
        if i < b.len() && b[i] == b'"' {
            if strict {
                return Err(fail("unexpected '\"'", i));
            }
            while i < b.len() && b[i] > b' ' {
                i += 1;
            }
            continue;
        }
        if i >= b.len() || b[i] != b'=' {
            // bare key
            if !seen.contains(&key) {
                seen.push(key);
                emit(key, Cow::Borrowed(""));
            }
            continue;
        }
        i += 1; // '='
        if i < b.len() && b[i] == b'"' {
            let qs = i;
            i += 1;
            let mut out = String::new();
            let mut closed = false;
            let mut bad = false;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    b'\\' if i + 1 < b.len() => {
                        match b[i + 1] {
                            b'n' => out.push('\n'),
                            b't' => out.push('\t'),
                            b'r' => out.push('\r'),
                            b'"' => out.push('"'),
                            b'\\' => out.push('\\'),
                            b'/' => out.push('/'),
                            _ => bad = true,
                        }
                        i += 1 + s[i + 1..].chars().next().map_or(1, char::len_utf8);
                    }
                    _ => {
                        let ch = s[i..].chars().next().unwrap_or_default();
                        out.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            if !closed || bad {
                if strict {
                    return Err(fail(
                        if closed {
                            "invalid quoted value"
                        } else {
                            "unterminated quoted value"
                        },
                        qs,
                    ));
                }
                continue;
            }
            if i < b.len() && b[i] > b' ' {
                if strict {
                    return Err(fail(&format!("unexpected {:?}", char::from(b[i])), i));
                }
                while i < b.len() && b[i] > b' ' {
                    i += 1;
                }
                continue;
            }
            if !seen.contains(&key) {
                seen.push(key);
                emit(key, Cow::Owned(out));
            }
        } else {
            let vs = i;
            let mut invalid = None;
            while i < b.len() && b[i] > b' ' {
                if (b[i] == b'=' || b[i] == b'"') && invalid.is_none() {
                    invalid = Some(i);
                }
                i += 1;
            }
            if let Some(p) = invalid {
                if strict {
                    return Err(fail(&format!("unexpected {:?}", char::from(b[p])), p));
                }
                continue;
            }
            if !seen.contains(&key) {
                seen.push(key);
                emit(key, Cow::Borrowed(&s[vs..i]));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    fn run(
        q: &str,
        stream: &[(&str, &str)],
        md: &[(&str, &str)],
        line: &str,
    ) -> Option<(Vec<(String, String)>, String)> {
        let Ok(Expr::Log(l)) = parse(q) else {
            panic!("{q}")
        };
        let mut st = LabelState::default();
        let md: Vec<(String, String)> = md
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        st.reset(&Labels::from_pairs(stream.iter().copied()), &md);
        let mut line = Cow::Borrowed(line);
        if !run_stages(&l.stages, 0, &mut line, &mut st) {
            return None;
        }
        Some((st.to_sorted(), line.into_owned()))
    }

    fn lbl(v: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = v
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn conflicts_follow_loki() {
        let (l, _) = run(
            r#"{a="b"} | logfmt"#,
            &[("app", "a"), ("k", "s")],
            &[("k", "m")],
            "k=p",
        )
        .unwrap();
        assert_eq!(l, lbl(&[("app", "a"), ("k", "s"), ("k_extracted", "p")]));
        let (l, _) = run(
            r#"{a="b"}"#,
            &[("app", "a"), ("k", "s")],
            &[("k", "m")],
            "k=p",
        )
        .unwrap();
        assert_eq!(l, lbl(&[("app", "a"), ("k", "s"), ("k_extracted", "m")]));
        let (l, _) = run(
            r#"{a="b"} | logfmt"#,
            &[("app", "a")],
            &[("md", "m")],
            "md=p",
        )
        .unwrap();
        assert_eq!(l, lbl(&[("app", "a"), ("md", "m"), ("md_extracted", "p")]));
    }

    #[test]
    fn logfmt_edge_cases() {
        let (l, _) = run(
            r#"{a="b"} | logfmt"#,
            &[("app", "a")],
            &[],
            r#"a-b=1 9x=2 dup=first dup=second msg="hi there" empty="#,
        )
        .unwrap();
        assert_eq!(
            l,
            lbl(&[
                ("app", "a"),
                ("a_b", "1"),
                ("_9x", "2"),
                ("dup", "first"),
                ("msg", "hi there")
            ])
        );
        let (l, _) = run(
            r#"{a="b"} | logfmt"#,
            &[("app", "a")],
            &[],
            r#"good=1 bad="unterminated"#,
        )
        .unwrap();
        assert_eq!(l, lbl(&[("app", "a"), ("good", "1")]));
        let (l, _) = run(
            r#"{a="b"} | logfmt --strict"#,
            &[("app", "a")],
            &[],
            r#"good=1 bad="unterminated"#,
        )
        .unwrap();
        assert!(
            l.iter()
                .any(|(k, v)| k == ERROR_LABEL && v == "LogfmtParserErr")
        );
    }

    #[test]
    fn json_flattening_and_errors() {
        let line =
            r#"{"lvl":"warn","obj":{"x":1,"y":{"z":2}},"ok":true,"nil":null,"arr":[1,2],"f":1.5}"#;
        let (l, _) = run(r#"{a="b"} | json"#, &[("app", "a")], &[], line).unwrap();
        assert_eq!(
            l,
            lbl(&[
                ("app", "a"),
                ("lvl", "warn"),
                ("obj_x", "1"),
                ("obj_y_z", "2"),
                ("ok", "true"),
                ("f", "1.5")
            ])
        );
        let (l, _) = run(
            r#"{a="b"} | json who="user.id", age="user.age""#,
            &[("app", "a")],
            &[],
            r#"{"user":{"id":"u1"}}"#,
        )
        .unwrap();
        assert_eq!(l, lbl(&[("app", "a"), ("who", "u1"), ("age", "")]));
        assert!(
            run(
                r#"{a="b"} | json | __error__="""#,
                &[("app", "a")],
                &[],
                "broken"
            )
            .is_none()
        );
    }

    #[test]
    fn label_filter_errors_and_or() {
        // or short-circuits; and runs both sides
        assert!(
            run(
                r#"{a="b"} | logfmt | lvl="error" or took > 1s"#,
                &[("app", "a")],
                &[],
                "lvl=error took=oops"
            )
            .unwrap()
            .0
            .iter()
            .all(|(k, _)| k != ERROR_LABEL)
        );
        let (l, _) = run(
            r#"{a="b"} | logfmt | lvl="error" and took > 1s"#,
            &[("app", "a")],
            &[],
            "lvl=error took=oops",
        )
        .unwrap();
        assert!(
            l.iter()
                .any(|(k, v)| k == ERROR_DETAILS_LABEL && v.contains("invalid duration"))
        );
        assert!(
            run(
                r#"{a="b"} | logfmt | took > 1s | __error__ > 0"#,
                &[("app", "a")],
                &[],
                "took=oops"
            )
            .is_none()
        );
    }

    #[test]
    fn formatters() {
        let (l, line) = run(
            r#"{a="b"} | label_format verb=method | line_format "{{.verb}}!""#,
            &[("app", "a"), ("method", "get")],
            &[],
            "x",
        )
        .unwrap();
        assert_eq!(l, lbl(&[("app", "a"), ("verb", "get")]));
        assert_eq!(line, "get!");
        let (_, line) = run(
            r#"{a="b"} | decolorize"#,
            &[("app", "a")],
            &[],
            "\x1b[31mhello\x1b[0m",
        )
        .unwrap();
        assert_eq!(line, "hello");
        let (l, _) = run(
            r#"{a="b"} | keep code="500""#,
            &[("app", "a"), ("code", "200")],
            &[],
            "x",
        )
        .unwrap();
        assert!(l.is_empty());
    }
}
