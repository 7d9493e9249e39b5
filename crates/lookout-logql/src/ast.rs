//! The parsed (and already compiled: regexes, templates, patterns) form of a LogQL query.

use lookout_storage::Matcher;
use regex::Regex;

use crate::ip::IpMatcher;
use crate::pattern::Pattern;
use crate::template::Template;

#[derive(Clone, Debug)]
pub enum Expr {
    /// A log query: a stream selector and its pipeline.
    Log(LogExpr),
    Sample(SampleExpr),
}

#[derive(Clone, Debug)]
pub struct LogExpr {
    pub matchers: Vec<Matcher>,
    pub stages: Vec<Stage>,
}

impl LogExpr {
    /// The plain `|= "x"` substrings every line must contain (a storage hint).
    pub fn required_substrings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.stages {
            match s {
                Stage::LineFilter(f) if f.op == LineOp::Contains && f.operands.len() == 1 => {
                    if let LineOperand::Str(s) = &f.operands[0]
                        && !s.is_empty()
                    {
                        out.push(s.clone());
                    }
                }
                // A stage that rewrites the line ends what the store can check.
                Stage::LineFormat(_) | Stage::Decolorize | Stage::Parser(Parser::Unpack) => break,
                _ => {}
            }
        }
        out
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineOp {
    Contains,
    NotContains,
    Regex,
    NotRegex,
    Pattern,
    NotPattern,
}

impl LineOp {
    pub fn negated(self) -> bool {
        matches!(
            self,
            LineOp::NotContains | LineOp::NotRegex | LineOp::NotPattern
        )
    }
}

#[derive(Clone, Debug)]
pub enum LineOperand {
    Str(String),
    Regex(Regex),
    Pattern(Pattern),
    Ip(IpMatcher),
}

/// `|= a or b or ...`: a positive filter keeps a line matching any operand, a negative one drops it.
#[derive(Clone, Debug)]
pub struct LineFilter {
    pub op: LineOp,
    pub operands: Vec<LineOperand>,
}

#[derive(Clone, Debug)]
pub enum Stage {
    LineFilter(LineFilter),
    Parser(Parser),
    LabelFilter(LabelFilter),
    LineFormat(Template),
    LabelFormat(Vec<LabelFmt>),
    Decolorize,
    Drop(Vec<NamedMatcher>),
    Keep(Vec<NamedMatcher>),
}

/// `name` or `name="value"` in `drop` / `keep`.
#[derive(Clone, Debug)]
pub struct NamedMatcher {
    pub name: String,
    pub matcher: Option<Matcher>,
}

#[derive(Clone, Debug)]
pub enum LabelFmt {
    Rename { dst: String, src: String },
    Template { dst: String, tmpl: Template },
}

#[derive(Clone, Debug)]
pub enum Parser {
    /// `json` or `json a="path", b`.
    Json(Vec<(String, JsonPath)>),
    Logfmt {
        strict: bool,
        keep_empty: bool,
        exprs: Vec<(String, String)>,
    },
    Regexp {
        re: Regex,
        names: Vec<Option<String>>,
    },
    Pattern(Pattern),
    Unpack,
}

/// A json expression path: object keys and array indexes.
pub type JsonPath = Vec<JsonKey>;

#[derive(Clone, Debug, PartialEq)]
pub enum JsonKey {
    Field(String),
    Index(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    pub fn apply<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
        }
    }
}

#[derive(Clone, Debug)]
pub enum LabelFilter {
    And(Box<LabelFilter>, Box<LabelFilter>),
    Or(Box<LabelFilter>, Box<LabelFilter>),
    String(Matcher),
    Number {
        name: String,
        op: CmpOp,
        value: f64,
    },
    /// Seconds.
    Duration {
        name: String,
        op: CmpOp,
        value: f64,
    },
    Bytes {
        name: String,
        op: CmpOp,
        value: u64,
    },
    Ip {
        name: String,
        negate: bool,
        ip: IpMatcher,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conversion {
    None,
    Duration,
    Bytes,
}

#[derive(Clone, Debug)]
pub struct Unwrap {
    pub label: String,
    pub conversion: Conversion,
    pub post_filters: Vec<LabelFilter>,
}

#[derive(Clone, Debug)]
pub struct LogRange {
    pub log: LogExpr,
    pub unwrap: Option<Unwrap>,
    pub range_ns: i64,
    pub offset_ns: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeOp {
    CountOverTime,
    Rate,
    RateCounter,
    BytesOverTime,
    BytesRate,
    AbsentOverTime,
    SumOverTime,
    AvgOverTime,
    MinOverTime,
    MaxOverTime,
    StddevOverTime,
    StdvarOverTime,
    QuantileOverTime,
    FirstOverTime,
    LastOverTime,
}

impl RangeOp {
    pub fn from_name(s: &str) -> Option<RangeOp> {
        Some(match s {
            "count_over_time" => RangeOp::CountOverTime,
            "rate" => RangeOp::Rate,
            "rate_counter" => RangeOp::RateCounter,
            "bytes_over_time" => RangeOp::BytesOverTime,
            "bytes_rate" => RangeOp::BytesRate,
            "absent_over_time" => RangeOp::AbsentOverTime,
            "sum_over_time" => RangeOp::SumOverTime,
            "avg_over_time" => RangeOp::AvgOverTime,
            "min_over_time" => RangeOp::MinOverTime,
            "max_over_time" => RangeOp::MaxOverTime,
            "stddev_over_time" => RangeOp::StddevOverTime,
            "stdvar_over_time" => RangeOp::StdvarOverTime,
            "quantile_over_time" => RangeOp::QuantileOverTime,
            "first_over_time" => RangeOp::FirstOverTime,
            "last_over_time" => RangeOp::LastOverTime,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            RangeOp::CountOverTime => "count_over_time",
            RangeOp::Rate => "rate",
            RangeOp::RateCounter => "rate_counter",
            RangeOp::BytesOverTime => "bytes_over_time",
            RangeOp::BytesRate => "bytes_rate",
            RangeOp::AbsentOverTime => "absent_over_time",
            RangeOp::SumOverTime => "sum_over_time",
            RangeOp::AvgOverTime => "avg_over_time",
            RangeOp::MinOverTime => "min_over_time",
            RangeOp::MaxOverTime => "max_over_time",
            RangeOp::StddevOverTime => "stddev_over_time",
            RangeOp::StdvarOverTime => "stdvar_over_time",
            RangeOp::QuantileOverTime => "quantile_over_time",
            RangeOp::FirstOverTime => "first_over_time",
            RangeOp::LastOverTime => "last_over_time",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VecOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Sort,
    SortDesc,
    ApproxTopk,
}

impl VecOp {
    pub fn from_name(s: &str) -> Option<VecOp> {
        Some(match s {
            "sum" => VecOp::Sum,
            "avg" => VecOp::Avg,
            "min" => VecOp::Min,
            "max" => VecOp::Max,
            "count" => VecOp::Count,
            "stddev" => VecOp::Stddev,
            "stdvar" => VecOp::Stdvar,
            "topk" => VecOp::Topk,
            "bottomk" => VecOp::Bottomk,
            "sort" => VecOp::Sort,
            "sort_desc" => VecOp::SortDesc,
            "approx_topk" => VecOp::ApproxTopk,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            VecOp::Sum => "sum",
            VecOp::Avg => "avg",
            VecOp::Min => "min",
            VecOp::Max => "max",
            VecOp::Count => "count",
            VecOp::Stddev => "stddev",
            VecOp::Stdvar => "stdvar",
            VecOp::Topk => "topk",
            VecOp::Bottomk => "bottomk",
            VecOp::Sort => "sort",
            VecOp::SortDesc => "sort_desc",
            VecOp::ApproxTopk => "approx_topk",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grouping {
    pub without: bool,
    pub labels: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    And,
    Or,
    Unless,
}

impl BinOp {
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Ge | BinOp::Lt | BinOp::Le
        )
    }

    pub fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }

    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And | BinOp::Unless => 2,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Ge | BinOp::Lt | BinOp::Le => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::Div | BinOp::Mod => 5,
            BinOp::Pow => 6,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VectorMatching {
    pub card: Card,
    /// `on(...)` when true, `ignoring(...)` otherwise.
    pub on: bool,
    pub labels: Vec<String>,
    /// `group_left(...)`/`group_right(...)` labels copied from the "one" side.
    pub include: Vec<String>,
}

#[derive(Clone, Debug)]
pub enum SampleExpr {
    RangeAgg {
        op: RangeOp,
        param: Option<f64>,
        range: Box<LogRange>,
        grouping: Option<Grouping>,
    },
    VectorAgg {
        op: VecOp,
        param: Option<f64>,
        grouping: Option<Grouping>,
        expr: Box<SampleExpr>,
    },
    Binary {
        op: BinOp,
        lhs: Box<SampleExpr>,
        rhs: Box<SampleExpr>,
        return_bool: bool,
        matching: Option<VectorMatching>,
    },
    Literal(f64),
    Vector(f64),
    LabelReplace {
        expr: Box<SampleExpr>,
        dst: String,
        replacement: String,
        src: String,
        regex: Regex,
    },
}

impl SampleExpr {
    /// True when the expression (after folding) is a plain number.
    pub fn is_scalar(&self) -> bool {
        match self {
            SampleExpr::Literal(_) => true,
            SampleExpr::Binary { lhs, rhs, .. } => lhs.is_scalar() && rhs.is_scalar(),
            _ => false,
        }
    }
}
