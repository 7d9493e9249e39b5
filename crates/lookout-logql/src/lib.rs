//! LogQL (Loki 3 semantics) over [`lookout_storage::logs::LogQueryable`].
//!
//! [`LogqlEngine::query_instant`] / [`LogqlEngine::query_range`] run a query and return a
//! [`QueryValue`]: log streams for a log query, or a vector / matrix / scalar for a metric
//! query. [`parse`] / [`validate`] check syntax (for rule files). Errors carry Loki's messages
//! and an [`ErrorKind`]. Modules: `lexer`/`parser` (syntax → `ast`), `pipeline` (per-entry
//! stages), `template` (line/label_format), `eval` (metric evaluation over all steps).

pub mod ast;
mod eval;
mod ip;
mod json;
mod lexer;
pub mod parser;
mod pattern;
mod pipeline;
mod template;
mod units;

use std::borrow::Cow;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use lookout_storage::StorageError;
use lookout_storage::labels::write_quoted;
use lookout_storage::logs::{Direction, LogEntry, LogQueryable, LogSelectParams};

pub use ast::Expr;
pub use parser::ParseError;

/// A result label set: sorted by name, unique names; unlike [`lookout_storage::Labels`] an
/// empty value is kept (LogQL results can carry `age=""`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct LabelSet(Vec<(String, String)>);

impl LabelSet {
    pub fn new(mut pairs: Vec<(String, String)>) -> LabelSet {
        pairs.sort();
        pairs.dedup_by(|a, b| a.0 == b.0);
        LabelSet(pairs)
    }

    pub(crate) fn from_sorted(pairs: Vec<(String, String)>) -> LabelSet {
        LabelSet(pairs)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Prometheus's string form: `{a="1", b=""}`.
impl fmt::Display for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (n, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n}=")?;
            write_quoted(f, v)?;
        }
        f.write_str("}")
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct StreamResult {
    /// Stream labels merged with structured metadata and parsed labels, as Loki returns them
    /// without the categorize-labels flag.
    pub labels: LabelSet,
    pub entries: Vec<LogEntry>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VectorSample {
    pub labels: LabelSet,
    pub t_ns: i64,
    pub v: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MatrixSeries {
    pub labels: LabelSet,
    /// `(t_ns, value)`, time-ordered.
    pub points: Vec<(i64, f64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum QueryValue {
    Streams(Vec<StreamResult>),
    Vector(Vec<VectorSample>),
    Matrix(Vec<MatrixSeries>),
    Scalar { t_ns: i64, v: f64 },
}

impl QueryValue {
    /// `streams`, `vector`, `matrix` or `scalar` (Loki's `resultType`).
    pub fn result_type(&self) -> &'static str {
        match self {
            QueryValue::Streams(_) => "streams",
            QueryValue::Vector(_) => "vector",
            QueryValue::Matrix(_) => "matrix",
            QueryValue::Scalar { .. } => "scalar",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The query is malformed or cannot run as written (HTTP 400).
    BadData,
    /// Evaluation failed on the data (e.g. many-to-many matching).
    Execution,
    /// A configured limit was hit.
    Limits,
    Timeout,
    /// The store failed.
    Internal,
}

impl ErrorKind {
    /// The `errorType` of the error envelope.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadData => "bad_data",
            ErrorKind::Execution => "execution",
            ErrorKind::Limits => "limits",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Internal => "internal",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogqlError {
    #[error("{0}")]
    Parse(#[from] ParseError),
    #[error("{0}")]
    BadData(String),
    /// A metric query met a series carrying `__error__`.
    #[error("{0}")]
    Pipeline(String),
    #[error("{0}")]
    Execution(String),
    #[error("{0}")]
    Limit(String),
    #[error("query timed out{0}")]
    Timeout(String),
    #[error("{0}")]
    Storage(#[from] StorageError),
}

impl LogqlError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            LogqlError::Parse(_) | LogqlError::BadData(_) | LogqlError::Pipeline(_) => {
                ErrorKind::BadData
            }
            LogqlError::Execution(_) => ErrorKind::Execution,
            LogqlError::Limit(_) => ErrorKind::Limits,
            LogqlError::Storage(
                StorageError::TooManySamples { .. } | StorageError::TooManySeries { .. },
            ) => ErrorKind::Limits,
            LogqlError::Timeout(_) => ErrorKind::Timeout,
            LogqlError::Storage(_) => ErrorKind::Internal,
        }
    }
}

/// Engine limits and settings; defaults follow Loki's.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Largest `limit` a log query may ask for (Loki `max_entries_limit_per_query`: 5000).
    pub max_entries_limit: usize,
    /// Most series a metric query may return (Loki `max_query_series`: 500).
    pub max_series: usize,
    /// Longest `end - start` (Loki `max_query_length`: 30d1h).
    pub max_query_length: Duration,
    /// Most extracted samples a metric query may hold.
    pub max_samples: usize,
    /// Most points per series of a range query (Loki: 11000).
    pub max_points: usize,
    /// Wall-clock limit per query.
    pub timeout: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_entries_limit: 5000,
            max_series: 500,
            max_query_length: Duration::from_secs(721 * 3600),
            max_samples: 50_000_000,
            max_points: 11_000,
            timeout: Duration::from_secs(120),
        }
    }
}

/// Parses `query` (for rule validation and the API's `/query` syntax errors).
pub fn parse(query: &str) -> Result<Expr, LogqlError> {
    Ok(parser::parse(query)?)
}

/// Parses `query` and checks that it is a metric query (as alerting/recording rules need).
pub fn validate(query: &str) -> Result<(), LogqlError> {
    match parse(query)? {
        Expr::Sample(_) => Ok(()),
        Expr::Log(_) => Err(LogqlError::BadData(format!(
            "invalid rule query {query:?}: a log query is not a metric query"
        ))),
    }
}

#[derive(Clone, Debug, Default)]
pub struct LogqlEngine {
    opts: EngineOptions,
}

impl LogqlEngine {
    pub fn new(opts: EngineOptions) -> Self {
        LogqlEngine { opts }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    fn series_limit(&self) -> LogqlError {
        LogqlError::Limit(format!(
            "maximum number of series ({}) reached for a single query; consider reducing query cardinality by adding more specific stream selectors, reducing the time range, or aggregating results with a grouping",
            self.opts.max_series
        ))
    }

    fn deadline(&self) -> (Instant, String) {
        (
            Instant::now() + self.opts.timeout,
            format!(" after {:?}", self.opts.timeout),
        )
    }

    /// Evaluates a metric query at `ts_ns`. A log query is refused, as Loki refuses log
    /// queries of the instant type.
    pub fn query_instant(
        &self,
        store: &dyn LogQueryable,
        query: &str,
        ts_ns: i64,
    ) -> Result<QueryValue, LogqlError> {
        let expr = parse(query)?;
        let Expr::Sample(e) = expr else {
            return Err(LogqlError::BadData(
                "log queries are not supported as an instant query type, please change your query to a range query type"
                    .into(),
            ));
        };
        check_range_lengths(&e, &self.opts)?;
        let (deadline, desc) = self.deadline();
        let mut ev = eval::Evaluator {
            store,
            start: ts_ns,
            step: 1,
            nsteps: 1,
            deadline,
            timeout_desc: desc,
            max_samples: self.opts.max_samples,
            samples_loaded: 0,
        };
        Ok(match ev.eval(&e)? {
            eval::Val::Scalar(v) => QueryValue::Scalar {
                t_ns: ts_ns,
                v: v.first().copied().unwrap_or(f64::NAN),
            },
            eval::Val::Vector(v) if v.len() > self.opts.max_series => {
                return Err(self.series_limit());
            }
            eval::Val::Vector(v) => QueryValue::Vector(
                v.into_iter()
                    .filter_map(|s| {
                        s.pts.first().copied().flatten().map(|v| VectorSample {
                            labels: LabelSet::new(s.labels),
                            t_ns: ts_ns,
                            v,
                        })
                    })
                    .collect(),
            ),
        })
    }

    /// Runs `query` over `[start_ns, end_ns]`. A metric query is evaluated every `step`
    /// (the result is a matrix); a log query returns up to `limit` entries of `[start_ns,
    /// end_ns)` in `direction` order (`interval` thins them to one per interval per stream, as
    /// Loki's `interval` parameter does).
    #[allow(clippy::too_many_arguments)]
    pub fn query_range(
        &self,
        store: &dyn LogQueryable,
        query: &str,
        start_ns: i64,
        end_ns: i64,
        step: Duration,
        interval: Option<Duration>,
        direction: Direction,
        limit: usize,
    ) -> Result<QueryValue, LogqlError> {
        let expr = parse(query)?;
        if end_ns < start_ns {
            return Err(LogqlError::BadData(
                "end timestamp must not be before or equal to start time".into(),
            ));
        }
        if (end_ns - start_ns) as u128 > self.opts.max_query_length.as_nanos() {
            return Err(LogqlError::Limit(format!(
                "the query time range exceeds the limit (query length: {:?}, limit: {:?})",
                Duration::from_nanos((end_ns - start_ns) as u64),
                self.opts.max_query_length
            )));
        }
        match expr {
            Expr::Log(log) => {
                self.log_query(store, &log, start_ns, end_ns, interval, direction, limit)
            }
            Expr::Sample(e) => {
                check_range_lengths(&e, &self.opts)?;
                if contains_approx_topk(&e) {
                    return Err(LogqlError::BadData(
                        "approx_topk is only supported on instant queries".into(),
                    ));
                }
                let step_ns = step.as_nanos() as i64;
                if step_ns <= 0 {
                    return Err(LogqlError::BadData(
                        "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
                    ));
                }
                let nsteps = ((end_ns - start_ns) / step_ns) as usize + 1;
                if nsteps > self.opts.max_points {
                    return Err(LogqlError::BadData(format!(
                        "exceeded maximum resolution of {} points per timeseries. Try increasing the value of the step parameter",
                        self.opts.max_points
                    )));
                }
                let (deadline, desc) = self.deadline();
                let mut ev = eval::Evaluator {
                    store,
                    start: start_ns,
                    step: step_ns,
                    nsteps,
                    deadline,
                    timeout_desc: desc,
                    max_samples: self.opts.max_samples,
                    samples_loaded: 0,
                };
                let ts = |i: usize| start_ns + step_ns * i as i64;
                let series = match ev.eval(&e)? {
                    eval::Val::Scalar(v) => vec![MatrixSeries {
                        labels: LabelSet::default(),
                        points: v.into_iter().enumerate().map(|(i, v)| (ts(i), v)).collect(),
                    }],
                    eval::Val::Vector(v) => {
                        let mut out: Vec<MatrixSeries> = v
                            .into_iter()
                            .map(|s| MatrixSeries {
                                labels: LabelSet::new(s.labels),
                                points: s
                                    .pts
                                    .into_iter()
                                    .enumerate()
                                    .filter_map(|(i, p)| p.map(|v| (ts(i), v)))
                                    .collect(),
                            })
                            .filter(|s| !s.points.is_empty())
                            .collect();
                        out.sort_by(|a, b| a.labels.cmp(&b.labels));
                        out
                    }
                };
                if series.len() > self.opts.max_series {
                    return Err(self.series_limit());
                }
                Ok(QueryValue::Matrix(series))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn log_query(
        &self,
        store: &dyn LogQueryable,
        log: &ast::LogExpr,
        start_ns: i64,
        end_ns: i64,
        interval: Option<Duration>,
        direction: Direction,
        limit: usize,
    ) -> Result<QueryValue, LogqlError> {
        if limit > self.opts.max_entries_limit {
            return Err(LogqlError::Limit(format!(
                "max entries limit per query exceeded, limit > max_entries_limit ({limit} > {})",
                self.opts.max_entries_limit
            )));
        }
        let (deadline, desc) = self.deadline();
        let hints = log.required_substrings();
        let mut params = LogSelectParams::new(&log.matchers, start_ns, end_ns);
        params.direction = direction;
        params.required_substrings = &hints;
        let interval_ns = interval.map(|d| d.as_nanos() as i64).filter(|d| *d > 0);
        // Keep the `limit` best entries: oldest first (forward) or newest first (backward).
        // Heap entries: (order key, sequence, stream index, entry).
        let mut heap: BinaryHeap<(i64, u64, usize, HeapEntry)> = BinaryHeap::new();
        let mut stream_idx: HashMap<Vec<(String, String)>, usize> = HashMap::new();
        let mut streams: Vec<Vec<(String, String)>> = Vec::new();
        let mut last_kept: HashMap<usize, i64> = HashMap::new();
        let mut st = pipeline::LabelState::default();
        let mut seq = 0u64;
        let mut timed_out = false;
        let mut sink = |labels: &lookout_storage::Labels, entries: &[LogEntry]| {
            for e in entries {
                seq += 1;
                if seq.is_multiple_of(4096) && Instant::now() > deadline {
                    timed_out = true;
                    return ControlFlow::Break(());
                }
                st.reset(labels, &e.structured_metadata);
                let mut line = Cow::Borrowed(e.line.as_str());
                if !pipeline::run_stages(&log.stages, e.ts_ns, &mut line, &mut st) {
                    continue;
                }
                let key = st.to_sorted();
                let idx = match stream_idx.get(&key) {
                    Some(i) => *i,
                    None => {
                        streams.push(key.clone());
                        stream_idx.insert(key, streams.len() - 1);
                        streams.len() - 1
                    }
                };
                if let Some(iv) = interval_ns {
                    if let Some(prev) = last_kept.get(&idx)
                        && (e.ts_ns - prev).abs() < iv
                    {
                        continue;
                    }
                    last_kept.insert(idx, e.ts_ns);
                }
                let order = match direction {
                    Direction::Forward => e.ts_ns,
                    Direction::Backward => -e.ts_ns,
                };
                let entry = HeapEntry(LogEntry {
                    ts_ns: e.ts_ns,
                    line: line.into_owned(),
                    structured_metadata: e.structured_metadata.clone(),
                });
                heap.push((order, seq, idx, entry));
                if heap.len() > limit {
                    heap.pop();
                }
            }
            ControlFlow::Continue(())
        };
        store.select_logs(&params, &mut sink)?;
        if timed_out {
            return Err(LogqlError::Timeout(desc));
        }
        let mut kept = heap.into_vec();
        kept.sort_by_key(|(order, seq, _, _)| (*order, *seq));
        let mut by_stream: HashMap<usize, Vec<LogEntry>> = HashMap::new();
        for (_, _, idx, e) in kept {
            by_stream.entry(idx).or_default().push(e.0);
        }
        let mut out: Vec<StreamResult> = by_stream
            .into_iter()
            .map(|(idx, entries)| StreamResult {
                labels: LabelSet::from_sorted(streams[idx].clone()),
                entries,
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(QueryValue::Streams(out))
    }
}

/// Wrapper so heap ordering ignores the entry itself.
#[derive(Debug)]
struct HeapEntry(LogEntry);

impl PartialEq for HeapEntry {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for HeapEntry {}
impl PartialOrd for HeapEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for HeapEntry {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

fn contains_approx_topk(e: &ast::SampleExpr) -> bool {
    use ast::SampleExpr as S;
    match e {
        S::VectorAgg { op, expr, .. } => {
            *op == ast::VecOp::ApproxTopk || contains_approx_topk(expr)
        }
        S::Binary { lhs, rhs, .. } => contains_approx_topk(lhs) || contains_approx_topk(rhs),
        S::LabelReplace { expr, .. } => contains_approx_topk(expr),
        _ => false,
    }
}

fn check_range_lengths(e: &ast::SampleExpr, opts: &EngineOptions) -> Result<(), LogqlError> {
    use ast::SampleExpr as S;
    match e {
        S::RangeAgg { range, .. } => {
            if range.range_ns as u128 > opts.max_query_length.as_nanos() {
                return Err(LogqlError::Limit(format!(
                    "the query time range exceeds the limit (query length: {:?}, limit: {:?})",
                    Duration::from_nanos(range.range_ns as u64),
                    opts.max_query_length
                )));
            }
            Ok(())
        }
        S::VectorAgg { expr, .. } | S::LabelReplace { expr, .. } => check_range_lengths(expr, opts),
        S::Binary { lhs, rhs, .. } => {
            check_range_lengths(lhs, opts)?;
            check_range_lengths(rhs, opts)
        }
        _ => Ok(()),
    }
}
