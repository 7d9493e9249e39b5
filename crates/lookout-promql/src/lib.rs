//! PromQL evaluation with Prometheus 3 semantics over [`lookout_storage::Queryable`].
//!
//! Public surface (used by the HTTP API, the rules engine and the CLI):
//! [`Engine::instant_query`], [`Engine::range_query`], [`Engine::parse_check`], [`Value`],
//! [`QueryError`]. Parsing is done by `promql-parser`; when it rejects a query, the
//! [`syntax_check`] module finds the first error and words it as Prometheus does
//! (`1:14: parse error: unexpected end of input`). Evaluation (module `eval`) is
//! series-at-a-time over all steps of a range query. Native histograms are not supported:
//! histogram-only functions return nothing for float series.

mod aggregate;
mod eval;
mod functions;
mod histogram;
mod par;
mod share;
pub mod syntax_check;
mod value;
pub use value::{InstantSample, QueryError, QueryResult, Value};

use std::time::{Duration, Instant};

use lookout_storage::{Queryable, Sample, Series, Timestamp};
use promql_parser::parser::{Expr, value::ValueType};

use eval::{Evaluator, Range, Val};

/// Engine settings; defaults are Prometheus's.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// How far back an instant selector looks for the latest sample (Prometheus: 5m).
    pub lookback_delta: Duration,
    /// Most samples one query may hold in memory at once (Prometheus: 50,000,000).
    pub max_samples: usize,
    /// Wall-clock limit per query (Prometheus: 2m).
    pub timeout: Duration,
    /// Step of subqueries written without one (`x[5m:]`); Prometheus uses the global
    /// evaluation interval (default 1m).
    pub default_subquery_step: Duration,
    /// Allow functions Prometheus marks experimental (`--enable-feature=promql-experimental-functions`).
    pub enable_experimental_functions: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta: Duration::from_secs(300),
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            default_subquery_step: Duration::from_secs(60),
            enable_experimental_functions: false,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Engine {
    opts: EngineOptions,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Engine { opts }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Parses `query` and reports a syntax error as [`QueryError::Parse`] (for rule validation).
    pub fn parse_check(&self, query: &str) -> Result<(), QueryError> {
        self.parse(query).map(|_| ())
    }

    fn parse(&self, query: &str) -> Result<Expr, QueryError> {
        let expr = match promql_parser::parser::parse(query) {
            Ok(expr) => expr,
            Err(message) => {
                return Err(self
                    .prometheus_syntax_error(query)
                    .unwrap_or_else(|| parse_error(message)));
            }
        };
        if !self.opts.enable_experimental_functions
            && let Some(name) = find_experimental(&expr)
        {
            return Err(self.prometheus_syntax_error(query).unwrap_or_else(|| {
                QueryError::Parse {
                    message: format!(
                        "function {name:?} is not enabled (enable it with --enable-feature=promql-experimental-functions)"
                    ),
                    position: None,
                }
            }));
        }
        Ok(expr)
    }

    /// Prometheus's diagnostic for a query the parser rejected (`None` if the checker
    /// finds no error, in which case the parser's own message is kept).
    fn prometheus_syntax_error(&self, query: &str) -> Option<QueryError> {
        let opts = syntax_check::CheckOptions {
            experimental_functions: self.opts.enable_experimental_functions,
            // The evaluator has no duration arithmetic, so it stays "not enabled".
            duration_expressions: false,
        };
        let err = syntax_check::check(query, &opts)?;
        Some(QueryError::Parse {
            message: err.to_string(),
            position: Some(err.position),
        })
    }

    fn evaluator<'a>(&self, storage: &'a dyn Queryable, start: i64, end: i64) -> Evaluator<'a> {
        Evaluator {
            storage,
            q_start: start,
            q_end: end,
            lookback: self.opts.lookback_delta.as_millis() as i64,
            default_sub_step: (self.opts.default_subquery_step.as_millis() as i64).max(1),
            deadline: Instant::now() + self.opts.timeout,
            max_samples: self.opts.max_samples,
            cur_samples: 0,
            warnings: Vec::new(),
            infos: Vec::new(),
            shared: share::Shared::default(),
        }
    }

    /// Evaluates `query` at `time` (ms).
    pub fn instant_query(
        &self,
        storage: &dyn Queryable,
        query: &str,
        time: Timestamp,
    ) -> Result<QueryResult, QueryError> {
        let expr = self.parse(query)?;
        let mut ev = self.evaluator(storage, time, time);
        ev.shared = share::Shared::plan(&ev, &expr);
        let r = Range {
            start: time,
            end: time,
            step: 1,
        };
        let val = ev.eval(&expr, &r)?;
        let value = match val {
            Val::Scalar(v) => Value::Scalar {
                t: time,
                v: v.first().copied().unwrap_or(f64::NAN),
            },
            Val::String(s) => Value::String { t: time, s },
            Val::Vector(vs) => Value::Vector(
                vs.into_iter()
                    .filter_map(|s| {
                        s.pts.first().map(|p| InstantSample {
                            labels: s.labels,
                            t: time,
                            v: p.1,
                        })
                    })
                    .collect(),
            ),
            Val::Matrix(mut m) => {
                m.sort_by(|a, b| a.labels.cmp(&b.labels));
                Value::Matrix(m)
            }
        };
        Ok(QueryResult {
            value,
            warnings: ev.warnings,
            infos: ev.infos,
        })
    }

    /// Evaluates `query` at every step from `start` to `end` inclusive (ms); the result is a
    /// matrix (or an error).
    pub fn range_query(
        &self,
        storage: &dyn Queryable,
        query: &str,
        start: Timestamp,
        end: Timestamp,
        step: Duration,
    ) -> Result<QueryResult, QueryError> {
        let expr = self.parse(query)?;
        let step_ms = step.as_millis() as i64;
        if step_ms <= 0 {
            return Err(QueryError::Execution(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end < start {
            return Err(QueryError::Execution(
                "end timestamp must not be before start time".into(),
            ));
        }
        match expr.value_type() {
            ValueType::Scalar | ValueType::Vector => {}
            other => {
                let name = match other {
                    ValueType::Matrix => "range vector",
                    _ => "string",
                };
                return Err(QueryError::Execution(format!(
                    "invalid expression type {name:?} for range query, must be Scalar or instant Vector"
                )));
            }
        }
        let mut ev = self.evaluator(storage, start, end);
        ev.shared = share::Shared::plan(&ev, &expr);
        let r = Range {
            start,
            end,
            step: step_ms,
        };
        let val = ev.eval(&expr, &r)?;
        let mut out: Vec<Series> = match val {
            Val::Scalar(v) => vec![Series {
                labels: lookout_storage::Labels::EMPTY,
                samples: v
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| Sample { t: r.ts(i), v })
                    .collect(),
            }],
            Val::Vector(vs) => vs
                .into_iter()
                .filter(|s| !s.pts.is_empty())
                .map(|s| Series {
                    labels: s.labels,
                    samples: s
                        .pts
                        .into_iter()
                        .map(|(i, v)| Sample {
                            t: r.ts(i as usize),
                            v,
                        })
                        .collect(),
                })
                .collect(),
            _ => {
                return Err(QueryError::Execution(
                    "range query must return a scalar or instant vector".into(),
                ));
            }
        };
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(QueryResult {
            value: Value::Matrix(out),
            warnings: ev.warnings,
            infos: ev.infos,
        })
    }
}

fn parse_error(message: String) -> QueryError {
    // promql-parser reports positions inside some messages as "... at position N" / "pos N".
    let position = ["position ", "pos "].iter().find_map(|key| {
        let idx = message.find(key)?;
        let digits: String = message[idx + key.len()..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.parse().ok()
    });
    QueryError::Parse { message, position }
}

fn find_experimental(e: &Expr) -> Option<&'static str> {
    match e {
        Expr::Call(c) => {
            if c.func.experimental {
                return Some(c.func.name);
            }
            c.args.args.iter().find_map(|a| find_experimental(a))
        }
        Expr::Aggregate(a) => {
            let op = a.op.to_string();
            if op == "limitk" || op == "limit_ratio" {
                return Some(match op.as_str() {
                    "limitk" => "limitk",
                    _ => "limit_ratio",
                });
            }
            find_experimental(&a.expr).or_else(|| a.param.as_deref().and_then(find_experimental))
        }
        Expr::Binary(b) => find_experimental(&b.lhs).or_else(|| find_experimental(&b.rhs)),
        Expr::Paren(p) => find_experimental(&p.expr),
        Expr::Unary(u) => find_experimental(&u.expr),
        Expr::Subquery(s) => find_experimental(&s.expr),
        _ => None,
    }
}
