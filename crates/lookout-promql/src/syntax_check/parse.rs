//! Recursive-descent recogniser of the PromQL grammar of Prometheus 3.5
//! (`promql/parser/generated_parser.y`). It builds a minimal tree (node kinds, spans and what
//! the type checker needs) and stops at the first error, choosing the message the LALR parser
//! would: each `error` production's (context, expected) pair, the innermost one still on the
//! parser's stack for a token no rule accepts, and the semantic checks Prometheus runs while
//! reducing (unknown function, offset/@ placement, argument counts, ...), in reduction order.

use super::CheckOptions;
use super::functions::{self, Function};
use super::golang::{format_f, parse_duration, parse_number, regexp_error};
use super::lex::{Kind, Lexer, Token};

/// Deepest nesting (and tree depth) the checker follows; beyond it, it gives up.
const MAX_DEPTH: usize = 256;

/// Why parsing stopped.
pub(crate) enum Fail {
    /// Prometheus's first error: byte offset and message.
    Error(usize, String),
    /// The input nests deeper than [`MAX_DEPTH`]; no verdict.
    TooDeep,
}

#[derive(Clone, Debug)]
pub(crate) struct Matcher {
    pub name: String,
    pub op: Kind,
    pub value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
}

pub(crate) struct Node {
    pub start: usize,
    pub end: usize,
    pub depth: usize,
    pub kind: NodeKind,
}

pub(crate) enum NodeKind {
    Number,
    Str,
    Vector {
        name: Option<String>,
        matchers: Vec<Matcher>,
        offset_set: bool,
        at_timestamp: bool,
        at_any: bool,
    },
    Matrix(Box<Node>),
    Subquery {
        expr: Box<Node>,
        offset_set: bool,
        at_any: bool,
    },
    Call {
        func: &'static Function,
        args: Vec<Node>,
    },
    Aggregate {
        op: Kind,
        param: Option<Box<Node>>,
        expr: Box<Node>,
    },
    Binary {
        op: Kind,
        lhs: Box<Node>,
        rhs: Box<Node>,
        return_bool: bool,
        on: bool,
        matching: Vec<String>,
        card: Card,
        include: Vec<String>,
    },
    Paren(Box<Node>),
    Unary(Box<Node>),
}

/// A duration (range, step or offset) as the grammar builds it: a literal with its value in
/// seconds, or an (experimental) arithmetic expression.
struct Dur {
    start: usize,
    end: usize,
    literal: Option<f64>,
}

#[derive(Default)]
struct Modifiers {
    return_bool: bool,
    on: bool,
    matching: Vec<String>,
    card: Option<Card>,
    include: Vec<String>,
}

type R<T> = Result<T, Fail>;

/// Largest magnitude (seconds) a duration literal may have: `1<<63 / 1e9`.
const MAX_DURATION_SECS: f64 = 9_223_372_036.854_775;

/// Unquotes a STRING token the lexer accepted (Prometheus's `strutil.Unquote`).
pub(crate) fn unquote(raw: &str) -> String {
    let Some(q) = raw.chars().next() else {
        return String::new();
    };
    // Quotes are ASCII: drop one byte at each end.
    let body = raw.get(1..raw.len().saturating_sub(1)).unwrap_or("");
    if q == '`' {
        return body.to_string();
    }
    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let mut it = body.chars().peekable();
    let mut buf = [0u8; 4];
    while let Some(c) = it.next() {
        if c != '\\' {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let Some(e) = it.next() else { break };
        let simple = match e {
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            '\\' | '\'' | '"' => Some(e),
            _ => None,
        };
        if let Some(s) = simple {
            out.extend_from_slice(s.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let (n, radix) = match e {
            '0'..='7' => (2, 8),
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            _ => (0, 10),
        };
        let mut v: u32 = if radix == 8 {
            e.to_digit(8).unwrap_or(0)
        } else {
            0
        };
        for _ in 0..n {
            if let Some(d) = it.peek().and_then(|c| c.to_digit(radix)) {
                v = v * radix + d;
                it.next();
            }
        }
        if matches!(e, 'u' | 'U') {
            let c = char::from_u32(v).unwrap_or('\u{FFFD}');
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        } else {
            out.push(u8::try_from(v).unwrap_or(u8::MAX));
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn binop_prec(k: Kind) -> Option<(u8, bool)> {
    use Kind::*;
    Some(match k {
        Lor => (1, false),
        Land | Lunless => (2, false),
        Eqlc | Gte | Gtr | Lss | Lte | Neq => (3, false),
        Add | Sub => (4, false),
        Mul | Div | Mod | Atan2 => (5, false),
        Pow => (6, true),
        _ => return None,
    })
}

const POW_PREC: u8 = 6;

fn dur_binop_prec(k: Kind) -> Option<(u8, bool)> {
    use Kind::*;
    match k {
        Add | Sub | Mul | Div | Mod | Pow => binop_prec(k),
        _ => None,
    }
}

/// Tokens that may name a metric (`metric_identifier`).
fn is_metric_identifier(k: Kind) -> bool {
    use Kind::*;
    k.is_aggregator()
        || matches!(
            k,
            Identifier
                | MetricIdentifier
                | By
                | Without
                | Land
                | Lor
                | Lunless
                | Offset
                | Start
                | End
        )
}

/// Tokens that may be a label name in grouping options (`maybe_label`).
fn is_maybe_label(k: Kind) -> bool {
    use Kind::*;
    is_metric_identifier(k) || matches!(k, Bool | GroupLeft | GroupRight | Ignoring | On | Atan2)
}

/// Tokens that can begin an expression.
fn starts_expr(k: Kind) -> bool {
    use Kind::*;
    is_metric_identifier(k)
        || matches!(
            k,
            Number | Duration | String | LeftParen | LeftBrace | Add | Sub
        )
}

fn starts_duration(k: Kind) -> bool {
    use Kind::*;
    matches!(k, Number | Duration | LeftParen | Add | Sub)
}

fn is_match_op(k: Kind) -> bool {
    matches!(k, Kind::Eql | Kind::Neq | Kind::EqlRegex | Kind::NeqRegex)
}

pub(crate) struct Parser<'a> {
    input: &'a str,
    lex: Lexer<'a>,
    peeked: Option<Token>,
    ctx: Vec<(&'static str, &'static str)>,
    opts: CheckOptions,
    nesting: usize,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(input: &'a str, opts: CheckOptions) -> Self {
        Parser {
            input,
            lex: Lexer::new(input),
            peeked: None,
            ctx: Vec::new(),
            opts,
            nesting: 0,
        }
    }

    fn fill(&mut self) -> R<()> {
        if self.peeked.is_none() {
            let t = loop {
                let t = self.lex.next_token();
                if t.kind != Kind::Comment {
                    break t;
                }
            };
            if t.kind == Kind::Error {
                return Err(Fail::Error(t.pos, t.msg));
            }
            self.peeked = Some(t);
        }
        Ok(())
    }

    /// The lookahead kind (lexing it if needed; a lexer error ends the parse).
    fn peek(&mut self) -> R<Kind> {
        self.fill()?;
        Ok(self.peeked.as_ref().map_or(Kind::Eof, |t| t.kind))
    }

    fn next(&mut self) -> R<Token> {
        self.fill()?;
        let len = self.input.len();
        Ok(self.peeked.take().unwrap_or(Token {
            kind: Kind::Eof,
            pos: len,
            end: len,
            msg: String::new(),
        }))
    }

    fn unexpected_in(&self, t: &Token, context: &str, expected: &str) -> Fail {
        let mut msg = format!("unexpected {}", t.desc(self.input));
        if !context.is_empty() {
            msg.push_str(" in ");
            msg.push_str(context);
        }
        if !expected.is_empty() {
            msg.push_str(", expected ");
            msg.push_str(expected);
        }
        Fail::Error(t.pos, msg)
    }

    /// An unexpected token with no error production of its own: reported against the
    /// innermost enclosing production that has one (as yacc's error recovery does).
    fn unexpected(&self, t: &Token) -> Fail {
        let (c, e) = self.ctx.last().copied().unwrap_or(("", ""));
        self.unexpected_in(t, c, e)
    }

    fn enter(&mut self) -> R<()> {
        self.nesting += 1;
        if self.nesting > MAX_DEPTH {
            return Err(Fail::TooDeep);
        }
        Ok(())
    }

    /// A node over `children` (already moved into `kind`), at most [`MAX_DEPTH`] deep.
    fn node(start: usize, end: usize, child_depth: usize, kind: NodeKind) -> R<Node> {
        let depth = child_depth + 1;
        if depth > MAX_DEPTH {
            return Err(Fail::TooDeep);
        }
        Ok(Node {
            start,
            end,
            depth,
            kind,
        })
    }

    fn leaf(start: usize, end: usize, kind: NodeKind) -> R<Node> {
        Self::node(start, end, 0, kind)
    }

    /// `start: START_EXPRESSION expr EOF`.
    pub(crate) fn parse(&mut self) -> R<Node> {
        if self.peek()? == Kind::Eof {
            return Err(Fail::Error(0, "no expression found in input".into()));
        }
        let e = self.parse_expr(0)?;
        let t = self.next()?;
        if t.kind != Kind::Eof {
            return Err(self.unexpected(&t));
        }
        Ok(e)
    }

    fn parse_expr(&mut self, min_prec: u8) -> R<Node> {
        self.enter()?;
        let mut lhs = self.parse_unary()?;
        loop {
            let k = self.peek()?;
            let Some((prec, right)) = binop_prec(k) else {
                break;
            };
            if prec < min_prec {
                break;
            }
            let op = self.next()?;
            let m = self.parse_bin_modifiers()?;
            let rhs = self.parse_expr(if right { prec } else { prec + 1 })?;
            let (start, end) = (lhs.start, rhs.end);
            let depth = lhs.depth.max(rhs.depth);
            let kind = NodeKind::Binary {
                op: op.kind,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
                return_bool: m.return_bool,
                on: m.on,
                matching: m.matching,
                card: m.card.unwrap_or(Card::OneToOne),
                include: m.include,
            };
            lhs = Self::node(start, end, depth, kind)?;
        }
        self.nesting -= 1;
        Ok(lhs)
    }

    fn parse_unary(&mut self) -> R<Node> {
        let k = self.peek()?;
        if !matches!(k, Kind::Add | Kind::Sub) {
            return self.parse_postfix();
        }
        let op = self.next()?;
        let operand = self.parse_expr(POW_PREC)?;
        if matches!(operand.kind, NodeKind::Number) {
            // A signed number literal stays a number literal, starting at the sign.
            return Ok(Node {
                start: op.pos,
                ..operand
            });
        }
        let (end, depth) = (operand.end, operand.depth);
        Self::node(op.pos, end, depth, NodeKind::Unary(Box::new(operand)))
    }

    fn parse_postfix(&mut self) -> R<Node> {
        let mut e = self.parse_primary()?;
        loop {
            e = match self.peek()? {
                Kind::LeftBracket => self.parse_range_or_subquery(e)?,
                Kind::Offset => self.parse_offset(e)?,
                Kind::At => self.parse_at(e)?,
                _ => return Ok(e),
            };
        }
    }

    fn literal(&self, t: &Token) -> R<f64> {
        let val = t.val(self.input);
        match t.kind {
            Kind::Duration => parse_duration(val)
                .map(|ms| ms as f64 / 1000.0)
                .map_err(|m| Fail::Error(t.pos, m)),
            _ => parse_number(val).map_err(|m| Fail::Error(t.pos, m)),
        }
    }

    fn parse_primary(&mut self) -> R<Node> {
        let t = self.next()?;
        match t.kind {
            Kind::Number | Kind::Duration => {
                self.literal(&t)?;
                Self::leaf(t.pos, t.end, NodeKind::Number)
            }
            Kind::String => Self::leaf(t.pos, t.end, NodeKind::Str),
            Kind::LeftParen => {
                let inner = self.parse_expr(0)?;
                let c = self.next()?;
                if c.kind != Kind::RightParen {
                    return Err(self.unexpected(&c));
                }
                let depth = inner.depth;
                Self::node(t.pos, c.end, depth, NodeKind::Paren(Box::new(inner)))
            }
            Kind::LeftBrace => self.parse_label_matchers(None, t.pos),
            Kind::Identifier if self.peek()? == Kind::LeftParen => self.parse_call(t),
            k if k.is_aggregator()
                && matches!(self.peek()?, Kind::LeftParen | Kind::By | Kind::Without) =>
            {
                self.parse_aggregate(t)
            }
            k if is_metric_identifier(k) => {
                let name = t.val(self.input).to_string();
                if self.peek()? == Kind::LeftBrace {
                    self.next()?;
                    return self.parse_label_matchers(Some(name), t.pos);
                }
                Self::leaf(
                    t.pos,
                    t.end,
                    NodeKind::Vector {
                        name: Some(name),
                        matchers: Vec::new(),
                        offset_set: false,
                        at_timestamp: false,
                        at_any: false,
                    },
                )
            }
            _ => Err(self.unexpected(&t)),
        }
    }

    /// After `{`: `label_match_list`, then `}`.
    fn parse_label_matchers(&mut self, name: Option<String>, start: usize) -> R<Node> {
        const CTX: &str = "label matching";
        let mut matchers = Vec::new();
        let mut t = self.next()?;
        let end = loop {
            if t.kind == Kind::RightBrace {
                break t.end;
            }
            match t.kind {
                Kind::Identifier | Kind::String => {
                    let label = if t.kind == Kind::String {
                        unquote(t.val(self.input))
                    } else {
                        t.val(self.input).to_string()
                    };
                    if t.kind == Kind::String && !is_match_op(self.peek()?) {
                        // `{"metric_name"}`.
                        matchers.push(Matcher {
                            name: "__name__".into(),
                            op: Kind::Eql,
                            value: label,
                        });
                    } else {
                        let op = self.next()?;
                        if !is_match_op(op.kind) {
                            return Err(self.unexpected_in(&op, CTX, "label matching operator"));
                        }
                        let v = self.next()?;
                        if v.kind != Kind::String {
                            return Err(self.unexpected_in(&v, CTX, "string"));
                        }
                        let value = unquote(v.val(self.input));
                        if matches!(op.kind, Kind::EqlRegex | Kind::NeqRegex)
                            && let Some(msg) = regexp_error(&value)
                        {
                            return Err(Fail::Error(t.pos, msg));
                        }
                        matchers.push(Matcher {
                            name: label,
                            op: op.kind,
                            value,
                        });
                    }
                }
                _ => return Err(self.unexpected_in(&t, CTX, "identifier or \"}\"")),
            }
            let n = self.next()?;
            match n.kind {
                Kind::RightBrace => break n.end,
                Kind::Comma => t = self.next()?,
                _ => return Err(self.unexpected_in(&n, CTX, "\",\" or \"}\"")),
            }
        };
        Self::leaf(
            start,
            end,
            NodeKind::Vector {
                name,
                matchers,
                offset_set: false,
                at_timestamp: false,
                at_any: false,
            },
        )
    }

    /// `grouping_labels`, after the keyword that introduces them.
    fn parse_grouping_labels(&mut self) -> R<(Vec<String>, usize)> {
        const CTX: &str = "grouping opts";
        let lp = self.next()?;
        if lp.kind != Kind::LeftParen {
            return Err(self.unexpected_in(&lp, CTX, "\"(\""));
        }
        let mut labels = Vec::new();
        let mut t = self.next()?;
        loop {
            if t.kind == Kind::RightParen {
                return Ok((labels, t.end));
            }
            if is_maybe_label(t.kind) {
                labels.push(t.val(self.input).to_string());
            } else if t.kind == Kind::String {
                labels.push(unquote(t.val(self.input)));
            } else {
                return Err(self.unexpected_in(&t, CTX, "label"));
            }
            let n = self.next()?;
            match n.kind {
                Kind::RightParen => return Ok((labels, n.end)),
                Kind::Comma => t = self.next()?,
                _ => return Err(self.unexpected_in(&n, CTX, "\",\" or \")\"")),
            }
        }
    }

    fn parse_bin_modifiers(&mut self) -> R<Modifiers> {
        let mut m = Modifiers::default();
        if self.peek()? == Kind::Bool {
            self.next()?;
            m.return_bool = true;
        }
        if matches!(self.peek()?, Kind::On | Kind::Ignoring) {
            m.on = self.next()?.kind == Kind::On;
            m.matching = self.parse_grouping_labels()?.0;
            if matches!(self.peek()?, Kind::GroupLeft | Kind::GroupRight) {
                let g = self.next()?;
                m.card = Some(if g.kind == Kind::GroupLeft {
                    Card::ManyToOne
                } else {
                    Card::OneToMany
                });
                let k = self.peek()?;
                if k == Kind::LeftParen {
                    m.include = self.parse_grouping_labels()?.0;
                } else if !starts_expr(k) {
                    let t = self.next()?;
                    return Err(self.unexpected_in(&t, "grouping opts", "\"(\""));
                }
            }
        }
        Ok(m)
    }

    /// `function_call_body` after `(` was seen (not consumed): the arguments and the end of `)`.
    fn parse_call_body(&mut self) -> R<(Vec<Node>, usize)> {
        self.next()?;
        if self.peek()? == Kind::RightParen {
            let rp = self.next()?;
            return Ok((Vec::new(), rp.end));
        }
        let mut args = Vec::new();
        loop {
            args.push(self.parse_expr(0)?);
            let t = self.next()?;
            match t.kind {
                Kind::RightParen => return Ok((args, t.end)),
                Kind::Comma => {
                    let k = self.peek()?;
                    if k == Kind::RightParen || !starts_expr(k) {
                        return Err(Fail::Error(
                            t.pos,
                            "trailing commas not allowed in function call args".into(),
                        ));
                    }
                }
                _ => return Err(self.unexpected(&t)),
            }
        }
    }

    fn parse_call(&mut self, ident: Token) -> R<Node> {
        let (args, end) = self.parse_call_body()?;
        let name = ident.val(self.input);
        let Some(func) = functions::lookup(name) else {
            return Err(Fail::Error(
                ident.pos,
                format!("unknown function with name {}", super::golang::quote(name)),
            ));
        };
        if func.experimental && !self.opts.experimental_functions {
            return Err(Fail::Error(
                ident.pos,
                format!("function {} is not enabled", super::golang::quote(name)),
            ));
        }
        let depth = args.iter().map(|a| a.depth).max().unwrap_or(0);
        Self::node(ident.pos, end, depth, NodeKind::Call { func, args })
    }

    fn parse_aggregate(&mut self, op: Token) -> R<Node> {
        self.ctx.push(("aggregation", ""));
        let modifier_first = matches!(self.peek()?, Kind::By | Kind::Without);
        if modifier_first {
            self.next()?;
            self.parse_grouping_labels()?;
        }
        if self.peek()? != Kind::LeftParen {
            let t = self.next()?;
            return Err(self.unexpected(&t));
        }
        let (mut args, mut end) = self.parse_call_body()?;
        if !modifier_first && matches!(self.peek()?, Kind::By | Kind::Without) {
            self.next()?;
            end = self.parse_grouping_labels()?.1;
        }
        self.ctx.pop();
        // newAggregateExpr.
        let name = op.kind.text().unwrap_or("");
        if args.is_empty() {
            return Err(Fail::Error(
                op.pos,
                "no arguments for aggregate expression provided".into(),
            ));
        }
        let with_param = matches!(
            op.kind,
            Kind::Topk
                | Kind::Bottomk
                | Kind::CountValues
                | Kind::Quantile
                | Kind::Limitk
                | Kind::LimitRatio
        );
        if with_param
            && matches!(op.kind, Kind::Limitk | Kind::LimitRatio)
            && !self.opts.experimental_functions
        {
            return Err(Fail::Error(
                op.pos,
                format!(
                    "{name}() is experimental and must be enabled with --enable-feature=promql-experimental-functions"
                ),
            ));
        }
        let desired = if with_param { 2 } else { 1 };
        if args.len() != desired {
            return Err(Fail::Error(
                op.pos,
                format!(
                    "wrong number of arguments for aggregate expression provided, expected {desired}, got {}",
                    args.len()
                ),
            ));
        }
        let expr = args.pop().ok_or(Fail::TooDeep)?;
        let param = args.pop();
        let depth = expr.depth.max(param.as_ref().map_or(0, |p| p.depth));
        let kind = NodeKind::Aggregate {
            op: op.kind,
            param: param.map(Box::new),
            expr: Box::new(expr),
        };
        Self::node(op.pos, end, depth, kind)
    }

    /// A `number_duration_literal` token, with the `duration out of range` check of
    /// `duration_expr`/`offset_duration_expr`; `sign` is the unary operator folded into it.
    fn dur_literal(&mut self, sign: Option<&Token>) -> R<Dur> {
        let t = self.next()?;
        self.dur_literal_token(t, sign)
    }

    fn dur_literal_token(&self, t: Token, sign: Option<&Token>) -> R<Dur> {
        let mut v = self.literal(&t)?;
        let mut start = t.pos;
        if let Some(s) = sign {
            if s.kind == Kind::Sub {
                v = -v;
            }
            start = s.pos;
        }
        if !(-MAX_DURATION_SECS..=MAX_DURATION_SECS).contains(&v) {
            return Err(Fail::Error(start, "duration out of range".into()));
        }
        Ok(Dur {
            start,
            end: t.end,
            literal: Some(v),
        })
    }

    fn experimental_duration(&self, at: usize) -> R<()> {
        if self.opts.duration_expressions {
            return Ok(());
        }
        Err(Fail::Error(
            at,
            "experimental duration expression is not enabled".into(),
        ))
    }

    /// `duration_expr` (precedence climbing over + - * / % ^ and unary signs).
    fn parse_dur_expr(&mut self, min_prec: u8) -> R<Dur> {
        self.enter()?;
        let mut lhs = self.parse_dur_unary()?;
        loop {
            let k = self.peek()?;
            let Some((prec, right)) = dur_binop_prec(k) else {
                break;
            };
            if prec < min_prec {
                break;
            }
            let op = self.next()?;
            let rhs = self.parse_dur_expr(if right { prec } else { prec + 1 })?;
            self.experimental_duration(lhs.start)?;
            if matches!(op.kind, Kind::Div | Kind::Mod) && rhs.literal == Some(0.0) {
                let what = if op.kind == Kind::Div {
                    "division"
                } else {
                    "modulo"
                };
                return Err(Fail::Error(op.pos, format!("{what} by zero")));
            }
            lhs = Dur {
                start: lhs.start,
                end: rhs.end,
                literal: None,
            };
        }
        self.nesting -= 1;
        Ok(lhs)
    }

    fn parse_dur_unary(&mut self) -> R<Dur> {
        let t = self.next()?;
        match t.kind {
            Kind::Number | Kind::Duration => self.dur_literal_token(t, None),
            Kind::Add | Kind::Sub => {
                let inner = self.parse_dur_expr(POW_PREC)?;
                match inner.literal {
                    Some(v) => {
                        let v = if t.kind == Kind::Sub { -v } else { v };
                        if !(-MAX_DURATION_SECS..=MAX_DURATION_SECS).contains(&v) {
                            return Err(Fail::Error(t.pos, "duration out of range".into()));
                        }
                        Ok(Dur {
                            start: t.pos,
                            end: inner.end,
                            literal: Some(v),
                        })
                    }
                    None => Ok(Dur {
                        start: t.pos,
                        end: inner.end,
                        literal: None,
                    }),
                }
            }
            Kind::LeftParen => {
                let inner = self.parse_dur_expr(0)?;
                let c = self.next()?;
                if c.kind != Kind::RightParen {
                    return Err(self.unexpected(&c));
                }
                self.experimental_duration(inner.start)?;
                Ok(Dur {
                    start: t.pos,
                    end: c.end,
                    literal: None,
                })
            }
            _ => Err(self.unexpected(&t)),
        }
    }

    /// `positive_duration_expr`: a literal must be > 0.
    fn positive(d: &Dur) -> R<()> {
        match d.literal {
            Some(v) if v <= 0.0 => Err(Fail::Error(
                d.start,
                "duration must be greater than 0".into(),
            )),
            _ => Ok(()),
        }
    }

    fn parse_range_or_subquery(&mut self, e: Node) -> R<Node> {
        let lb = self.next()?;
        self.ctx.push(("subquery selector", "number or duration"));
        let k = self.peek()?;
        if !starts_duration(k) {
            let t = self.next()?;
            return Err(self.unexpected(&t));
        }
        let range = self.parse_dur_expr(0)?;
        self.ctx.pop();
        Self::positive(&range)?;
        let t = self.next()?;
        match t.kind {
            Kind::RightBracket => {
                let msg = match &e.kind {
                    NodeKind::Vector {
                        offset_set: true, ..
                    } => Some("no offset modifiers allowed before range"),
                    NodeKind::Vector {
                        at_timestamp: true, ..
                    } => Some("no @ modifiers allowed before range"),
                    NodeKind::Vector { .. } => None,
                    _ => Some("ranges only allowed for vector selectors"),
                };
                if let Some(m) = msg {
                    return Err(Fail::Error(lb.pos, m.into()));
                }
                let (start, depth) = (e.start, e.depth);
                Self::node(start, t.end, depth, NodeKind::Matrix(Box::new(e)))
            }
            Kind::Colon => {
                self.ctx
                    .push(("subquery selector", "number or duration or \"]\""));
                let k = self.peek()?;
                let end = if k == Kind::RightBracket {
                    self.next()?.end
                } else if starts_duration(k) {
                    let step = self.parse_dur_expr(0)?;
                    Self::positive(&step)?;
                    let rb = self.next()?;
                    if rb.kind != Kind::RightBracket {
                        return Err(self.unexpected_in(&rb, "subquery selector", "\"]\""));
                    }
                    rb.end
                } else {
                    let t = self.next()?;
                    return Err(self.unexpected(&t));
                };
                self.ctx.pop();
                let (start, depth) = (e.start, e.depth);
                let kind = NodeKind::Subquery {
                    expr: Box::new(e),
                    offset_set: false,
                    at_any: false,
                };
                Self::node(start, end, depth, kind)
            }
            _ => Err(self.unexpected_in(&t, "subquery or range", "\":\" or \"]\"")),
        }
    }

    /// The `offset_duration_expr` after `offset`.
    fn parse_offset_duration(&mut self) -> R<Dur> {
        let k = self.peek()?;
        match k {
            Kind::Number | Kind::Duration => self.dur_literal(None),
            Kind::Add | Kind::Sub => {
                let sign = self.next()?;
                match self.peek()? {
                    Kind::Number | Kind::Duration => self.dur_literal(Some(&sign)),
                    Kind::LeftParen => {
                        // `unary_op ( duration_expr )`: the parentheses themselves are not
                        // checked for the experimental flag, their contents are.
                        self.next()?;
                        self.parse_dur_expr(0)?;
                        let c = self.next()?;
                        if c.kind != Kind::RightParen {
                            return Err(self.unexpected(&c));
                        }
                        Ok(Dur {
                            start: sign.pos,
                            end: c.end,
                            literal: None,
                        })
                    }
                    Kind::Add | Kind::Sub => {
                        let inner = self.parse_dur_expr(POW_PREC)?;
                        Ok(Dur {
                            start: sign.pos,
                            end: inner.end,
                            literal: inner
                                .literal
                                .map(|v| if sign.kind == Kind::Sub { -v } else { v }),
                        })
                    }
                    _ => {
                        let t = self.next()?;
                        Err(self.unexpected(&t))
                    }
                }
            }
            Kind::LeftParen => self.parse_dur_unary(),
            _ => {
                let t = self.next()?;
                Err(self.unexpected(&t))
            }
        }
    }

    fn parse_offset(&mut self, e: Node) -> R<Node> {
        self.next()?;
        self.ctx.push(("offset", "number or duration"));
        let mut d = self.parse_offset_duration()?;
        if d.literal.is_none() {
            // A parenthesised offset may continue as duration arithmetic.
            while let Some((_, _)) = dur_binop_prec(self.peek()?) {
                self.next()?;
                let rhs = self.parse_dur_expr(1)?;
                self.experimental_duration(d.start)?;
                d.end = rhs.end;
            }
        }
        self.ctx.pop();
        if d.literal.is_none() {
            // After a parenthesised duration the parser needs the lookahead to know it ended
            // (a literal offset reduces without it).
            self.peek()?;
        }
        let set = d.literal.is_none_or(|v| v != 0.0);
        let mut e = e;
        let already = match &mut e.kind {
            NodeKind::Vector { offset_set, .. } | NodeKind::Subquery { offset_set, .. } => {
                std::mem::replace(offset_set, *offset_set || set)
            }
            NodeKind::Matrix(vs) => match &mut vs.kind {
                NodeKind::Vector { offset_set, .. } => {
                    std::mem::replace(offset_set, *offset_set || set)
                }
                _ => {
                    return Err(Fail::Error(
                        e.start,
                        "ranges only allowed for vector selectors".into(),
                    ));
                }
            },
            _ => {
                return Err(Fail::Error(
                    e.start,
                    "offset modifier must be preceded by an instant vector selector or range vector selector or a subquery".into(),
                ));
            }
        };
        if already {
            return Err(Fail::Error(
                e.start,
                "offset may not be set multiple times".into(),
            ));
        }
        e.end = d.end;
        Ok(e)
    }

    fn parse_at(&mut self, e: Node) -> R<Node> {
        self.next()?;
        self.ctx.push(("@", "timestamp"));
        let t = self.next()?;
        let (ts, end) = match t.kind {
            Kind::Number | Kind::Duration => (Some(self.literal(&t)?), t.end),
            Kind::Add | Kind::Sub => {
                let n = self.next()?;
                if !matches!(n.kind, Kind::Number | Kind::Duration) {
                    return Err(self.unexpected(&n));
                }
                let v = self.literal(&n)?;
                (Some(if t.kind == Kind::Sub { -v } else { v }), n.end)
            }
            Kind::Start | Kind::End => {
                let lp = self.next()?;
                if lp.kind != Kind::LeftParen {
                    return Err(self.unexpected(&lp));
                }
                let rp = self.next()?;
                if rp.kind != Kind::RightParen {
                    return Err(self.unexpected(&rp));
                }
                (None, rp.end)
            }
            _ => return Err(self.unexpected(&t)),
        };
        self.ctx.pop();
        if let Some(ts) = ts
            && (!ts.is_finite() || ts >= i64::MAX as f64 || ts <= i64::MIN as f64)
        {
            return Err(Fail::Error(
                e.start,
                format!("timestamp out of bounds for @ modifier: {}", format_f(ts)),
            ));
        }
        let mut e = e;
        let start = e.start;
        let fields = match &mut e.kind {
            NodeKind::Vector {
                at_any,
                at_timestamp,
                ..
            } => Some((at_any, Some(at_timestamp))),
            NodeKind::Subquery { at_any, .. } => Some((at_any, None)),
            NodeKind::Matrix(vs) => match &mut vs.kind {
                NodeKind::Vector {
                    at_any,
                    at_timestamp,
                    ..
                } => Some((at_any, Some(at_timestamp))),
                _ => {
                    return Err(Fail::Error(
                        start,
                        "ranges only allowed for vector selectors".into(),
                    ));
                }
            },
            _ => None,
        };
        let Some((at_any, at_timestamp)) = fields else {
            return Err(Fail::Error(
                start,
                "@ modifier must be preceded by an instant vector selector or range vector selector or a subquery".into(),
            ));
        };
        if *at_any {
            return Err(Fail::Error(
                start,
                "@ <timestamp> may not be set multiple times".into(),
            ));
        }
        *at_any = true;
        if let Some(flag) = at_timestamp {
            *flag = ts.is_some();
        }
        e.end = end;
        Ok(e)
    }
}
