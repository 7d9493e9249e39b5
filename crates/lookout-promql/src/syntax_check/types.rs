//! Prometheus's post-parse type check (`checkAST` in `promql/parser/parse.go`): same checks,
//! same order (children first, then the node), so the first error is the one Prometheus
//! reports.

use super::golang::quote;
use super::lex::Kind;
use super::parse::{Card, Fail, Matcher, Node, NodeKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Type {
    Scalar,
    Vector,
    Matrix,
    String,
}

impl Type {
    /// Go's `ValueType` string.
    fn value_type(self) -> &'static str {
        match self {
            Type::Scalar => "scalar",
            Type::Vector => "vector",
            Type::Matrix => "matrix",
            Type::String => "string",
        }
    }

    /// Go's `DocumentedType`.
    fn documented(self) -> &'static str {
        match self {
            Type::Vector => "instant vector",
            Type::Matrix => "range vector",
            t => t.value_type(),
        }
    }
}

type R<T> = Result<T, Fail>;

fn err<T>(at: usize, msg: String) -> R<T> {
    Err(Fail::Error(at, msg))
}

/// The type of an expression (Go's `Expr.Type()`), without checking it.
fn type_of(n: &Node) -> Type {
    match &n.kind {
        NodeKind::Number => Type::Scalar,
        NodeKind::Str => Type::String,
        NodeKind::Vector { .. } | NodeKind::Aggregate { .. } => Type::Vector,
        NodeKind::Matrix(_) | NodeKind::Subquery { .. } => Type::Matrix,
        NodeKind::Call { func, .. } => func.ret,
        NodeKind::Binary { lhs, rhs, .. } => {
            if type_of(lhs) == Type::Scalar && type_of(rhs) == Type::Scalar {
                Type::Scalar
            } else {
                Type::Vector
            }
        }
        NodeKind::Paren(e) | NodeKind::Unary(e) => type_of(e),
    }
}

/// Whether a matcher accepts the empty string (Go's `Matcher.Matches("")`).
fn matches_empty(m: &Matcher) -> bool {
    let regex_empty =
        || regex::Regex::new(&format!("^(?s:{})$", m.value)).is_ok_and(|re| re.is_match(""));
    match m.op {
        Kind::Eql => m.value.is_empty(),
        Kind::Neq => !m.value.is_empty(),
        Kind::EqlRegex => regex_empty(),
        Kind::NeqRegex => !regex_empty(),
        _ => false,
    }
}

fn is_comparison(op: Kind) -> bool {
    matches!(
        op,
        Kind::Eqlc | Kind::Neq | Kind::Lte | Kind::Lss | Kind::Gte | Kind::Gtr
    )
}

fn is_set_operator(op: Kind) -> bool {
    matches!(op, Kind::Land | Kind::Lor | Kind::Lunless)
}

pub(crate) struct Checker<'a> {
    pub input: &'a str,
}

impl Checker<'_> {
    /// Start of the operator of a binary expression: the first non-space after the LHS.
    fn op_start(&self, lhs: &Node) -> usize {
        let b = self.input.as_bytes();
        let mut i = lhs.end;
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
        }
        i
    }

    fn expect(&self, n: &Node, want: Type, context: &str) -> R<()> {
        let t = self.check(n)?;
        if t != want {
            return err(
                n.start,
                format!(
                    "expected type {} in {context}, got {}",
                    want.documented(),
                    t.documented()
                ),
            );
        }
        Ok(())
    }

    pub(crate) fn check(&self, n: &Node) -> R<Type> {
        let typ = type_of(n);
        match &n.kind {
            NodeKind::Number | NodeKind::Str => {}
            NodeKind::Aggregate { op, param, expr } => {
                self.expect(expr, Type::Vector, "aggregation expression")?;
                if let Some(p) = param {
                    match op {
                        Kind::Topk
                        | Kind::Bottomk
                        | Kind::Quantile
                        | Kind::Limitk
                        | Kind::LimitRatio => {
                            self.expect(p, Type::Scalar, "aggregation parameter")?
                        }
                        Kind::CountValues => {
                            self.expect(p, Type::String, "aggregation parameter")?
                        }
                        _ => {}
                    }
                }
            }
            NodeKind::Binary {
                op,
                lhs,
                rhs,
                return_bool,
                on,
                matching,
                card,
                include,
            } => {
                let lt = self.check(lhs)?;
                let rt = self.check(rhs)?;
                if *return_bool && !is_comparison(*op) {
                    return err(
                        self.op_start(lhs),
                        "bool modifier can only be used on comparison operators".into(),
                    );
                }
                if is_comparison(*op) && !*return_bool && lt == Type::Scalar && rt == Type::Scalar {
                    return err(
                        self.op_start(lhs),
                        "comparisons between scalars must use BOOL modifier".into(),
                    );
                }
                if *on && let Some(l) = matching.iter().find(|l| include.contains(l)) {
                    return err(
                        self.op_start(lhs),
                        format!(
                            "label {} must not occur in ON and GROUP clause at once",
                            quote(l)
                        ),
                    );
                }
                let operand_ok = |t: Type| matches!(t, Type::Scalar | Type::Vector);
                if !operand_ok(lt) {
                    return err(
                        lhs.start,
                        "binary expression must contain only scalar and instant vector types"
                            .into(),
                    );
                }
                if !operand_ok(rt) {
                    return err(
                        rhs.start,
                        "binary expression must contain only scalar and instant vector types"
                            .into(),
                    );
                }
                let name = op.text().unwrap_or("");
                if lt != Type::Vector || rt != Type::Vector {
                    if !matching.is_empty() {
                        return err(
                            n.start,
                            "vector matching only allowed between instant vectors".into(),
                        );
                    }
                } else if is_set_operator(*op) && *card != Card::OneToOne {
                    return err(
                        n.start,
                        format!("no grouping allowed for {} operation", quote(name)),
                    );
                }
                if (lt == Type::Scalar || rt == Type::Scalar) && is_set_operator(*op) {
                    return err(
                        n.start,
                        format!(
                            "set operator {} not allowed in binary scalar expression",
                            quote(name)
                        ),
                    );
                }
            }
            NodeKind::Call { func, args } => {
                let nargs = func.args.len();
                if func.variadic == 0 {
                    if nargs != args.len() {
                        return err(
                            n.start,
                            format!(
                                "expected {nargs} argument(s) in call to {}, got {}",
                                quote(func.name),
                                args.len()
                            ),
                        );
                    }
                } else {
                    let na = nargs.saturating_sub(1);
                    if na > args.len() {
                        return err(
                            n.start,
                            format!(
                                "expected at least {na} argument(s) in call to {}, got {}",
                                quote(func.name),
                                args.len()
                            ),
                        );
                    }
                    if let Ok(extra) = usize::try_from(func.variadic) {
                        let max = na + extra;
                        if max < args.len() {
                            return err(
                                n.start,
                                format!(
                                    "expected at most {max} argument(s) in call to {}, got {}",
                                    quote(func.name),
                                    args.len()
                                ),
                            );
                        }
                    }
                }
                let mut bypass_empty_check = None;
                if func.name == "info"
                    && let Some(sel) = args.get(1)
                {
                    if type_of(sel) != Type::Vector {
                        return err(
                            n.start,
                            format!(
                                "expected type instant vector in call to function \"info\", got {}",
                                type_of(sel).documented()
                            ),
                        );
                    }
                    match &sel.kind {
                        NodeKind::Vector { name: Some(_), .. } => {
                            return err(
                                sel.start,
                                "expected label selectors only, got vector selector instead".into(),
                            );
                        }
                        NodeKind::Vector { .. } => bypass_empty_check = Some(1),
                        _ => return err(sel.start, "expected label selectors only".into()),
                    }
                }
                for (i, arg) in args.iter().enumerate() {
                    let idx = if i >= nargs {
                        if func.variadic == 0 {
                            break;
                        }
                        nargs.saturating_sub(1)
                    } else {
                        i
                    };
                    let t = if bypass_empty_check == Some(i) {
                        type_of(arg)
                    } else {
                        self.check(arg)?
                    };
                    if let Some(&want) = func.args.get(idx)
                        && t != want
                    {
                        return err(
                            arg.start,
                            format!(
                                "expected type {} in call to function {}, got {}",
                                want.documented(),
                                quote(func.name),
                                t.documented()
                            ),
                        );
                    }
                }
            }
            NodeKind::Paren(e) => {
                self.check(e)?;
            }
            NodeKind::Unary(e) => {
                let t = self.check(e)?;
                if !matches!(t, Type::Scalar | Type::Vector) {
                    return err(
                        n.start,
                        format!(
                            "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                            quote(t.documented())
                        ),
                    );
                }
            }
            NodeKind::Subquery { expr, .. } => {
                let t = self.check(expr)?;
                if t != Type::Vector {
                    return err(
                        n.start,
                        format!(
                            "subquery is only allowed on instant vector, got {} instead",
                            t.value_type()
                        ),
                    );
                }
            }
            NodeKind::Matrix(vs) => {
                self.check(vs)?;
            }
            NodeKind::Vector { name, matchers, .. } => {
                if let Some(name) = name {
                    if let Some(m) = matchers.iter().find(|m| m.name == "__name__") {
                        return err(
                            n.start,
                            format!(
                                "metric name must not be set twice: {} or {}",
                                quote(name),
                                quote(&m.value)
                            ),
                        );
                    }
                } else if matchers.iter().all(matches_empty) {
                    return err(
                        n.start,
                        "vector selector must contain at least one non-empty matcher".into(),
                    );
                }
            }
        }
        Ok(typ)
    }
}
