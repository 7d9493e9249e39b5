//! The evaluator: walks the promql-parser AST over a time range (an instant query is a range
//! of one step) and produces per-step results series-at-a-time.
//!
//! Every node yields a [`Val`]: a scalar per step, a string, or a set of [`StepSeries`] whose
//! points are keyed by step index. Selectors load their data once for the whole range and
//! slide windows across the steps; binary operators and aggregations work step by step on
//! transposed inputs, as Prometheus's `rangeEval` does.

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use lookout_storage::{
    Labels, LabelsBuilder, METRIC_NAME, MatchOp, Matcher, Queryable, Sample, SelectHints, Series,
};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{
    AggregateExpr, AtModifier, BinaryExpr, Call, Expr, LabelModifier, MatrixSelector, Offset,
    SubqueryExpr, VectorMatchCardinality, VectorSelector,
};

use crate::QueryError;

pub(crate) type Result<T> = std::result::Result<T, QueryError>;

/// A series of an instant-vector expression: one optional value per step, stored sparsely.
#[derive(Clone, Debug)]
pub(crate) struct StepSeries {
    pub labels: Labels,
    /// `(step index, value)`, strictly increasing step index.
    pub pts: Vec<(u32, f64)>,
}

#[derive(Clone, Debug)]
pub(crate) enum Val {
    /// One value per step.
    Scalar(Vec<f64>),
    String(String),
    Vector(Vec<StepSeries>),
    /// Only produced at the top level of an instant query (range selector or subquery).
    Matrix(Vec<Series>),
}

/// The evaluation range: steps `start, start+step, ..., end` (ms).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Range {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

impl Range {
    pub fn steps(&self) -> usize {
        ((self.end - self.start) / self.step) as usize + 1
    }
    pub fn ts(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }
}

fn storage_error(e: lookout_storage::StorageError) -> QueryError {
    match e {
        lookout_storage::StorageError::TooManySamples { .. } => {
            QueryError::TooManySamples("query execution")
        }
        other => QueryError::Storage(other),
    }
}

/// Where each step's window of a range vector lies: `(te - range, te]` with
/// `te = (@ time or step time) - offset`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub range: i64,
    pub offset: i64,
    pub at: Option<i64>,
}

impl Window {
    /// Evaluation time (window end) for a step time.
    pub fn eval_time(&self, ts: i64) -> i64 {
        self.at.unwrap_or(ts) - self.offset
    }
}

/// Range-vector data for a function argument: series with their samples (stale markers
/// removed) plus how to derive each step's window.
pub(crate) struct RangeData {
    pub series: Vec<Series>,
    pub range: i64,
    pub offset: i64,
    pub at: Option<i64>,
}

impl RangeData {
    /// Evaluation time (window end) for a step time.
    pub fn eval_time(&self, ts: i64) -> i64 {
        self.window().eval_time(ts)
    }

    pub fn window(&self) -> Window {
        Window {
            range: self.range,
            offset: self.offset,
            at: self.at,
        }
    }
}

pub(crate) struct Evaluator<'a> {
    pub storage: &'a dyn Queryable,
    pub q_start: i64,
    pub q_end: i64,
    pub lookback: i64,
    pub default_sub_step: i64,
    pub deadline: Instant,
    pub max_samples: usize,
    pub cur_samples: usize,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
    /// Work shared between calls of this query ([`crate::share`]).
    pub shared: crate::share::Shared,
}

pub(crate) fn dur_ms(d: &std::time::Duration) -> i64 {
    d.as_millis() as i64
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => dur_ms(d),
        Some(Offset::Neg(d)) => -dur_ms(d),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

pub(crate) fn unwrap_paren(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

/// Formats a float the way Go's `strconv.FormatFloat(f, 'f', -1, 64)` does for the common
/// cases (shortest representation, no exponent).
pub(crate) fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        let s = format!("{f}");
        if s == "-0" { "-0".into() } else { s }
    }
}

/// Go's `%g`-like formatting used in a few annotation messages.
pub(crate) fn format_g(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        let abs = f.abs();
        if abs != 0.0 && !(1e-4..1e21).contains(&abs) {
            let s = format!("{f:e}");
            // Go writes e+XX / e-XX with at least two exponent digits.
            match s.split_once('e') {
                Some((m, e)) => {
                    let (sign, digits) = if let Some(d) = e.strip_prefix('-') {
                        ("-", d)
                    } else {
                        ("+", e)
                    };
                    format!("{m}e{sign}{digits:0>2}")
                }
                None => s,
            }
        } else {
            format!("{f}")
        }
    }
}

impl<'a> Evaluator<'a> {
    pub fn check_deadline(&self) -> Result<()> {
        if Instant::now() > self.deadline {
            return Err(QueryError::Timeout("expression evaluation"));
        }
        Ok(())
    }

    pub fn add_samples(&mut self, n: usize) -> Result<()> {
        self.cur_samples = self.cur_samples.saturating_add(n);
        if self.cur_samples > self.max_samples {
            return Err(QueryError::TooManySamples("expression evaluation"));
        }
        Ok(())
    }

    pub fn release_samples(&mut self, n: usize) {
        self.cur_samples = self.cur_samples.saturating_sub(n);
    }

    pub fn warn(&mut self, msg: String) {
        let m = format!("PromQL warning: {msg}");
        if !self.warnings.contains(&m) {
            self.warnings.push(m);
        }
    }

    pub fn info(&mut self, msg: String) {
        let m = format!("PromQL info: {msg}");
        if !self.infos.contains(&m) {
            self.infos.push(m);
        }
    }

    fn resolve_at(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.q_start),
            Some(AtModifier::End) => Some(self.q_end),
            Some(AtModifier::At(t)) => Some(system_time_ms(t)),
        }
    }

    pub fn eval(&mut self, e: &Expr, r: &Range) -> Result<Val> {
        self.check_deadline()?;
        match e {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; r.steps()])),
            Expr::StringLiteral(s) => Ok(Val::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, r),
            Expr::Unary(u) => match self.eval(&u.expr, r)? {
                Val::Scalar(v) => Ok(Val::Scalar(v.into_iter().map(|x| -x).collect())),
                Val::Vector(vs) => {
                    let out = vs
                        .into_iter()
                        .map(|mut s| {
                            s.labels = s.labels.without_metric_name();
                            for p in &mut s.pts {
                                p.1 = -p.1;
                            }
                            s
                        })
                        .collect();
                    Ok(Val::Vector(merge_same_labels(out)?))
                }
                _ => Err(QueryError::Execution(
                    "unary expression only allowed on scalars and vectors".into(),
                )),
            },
            Expr::VectorSelector(vs) => Ok(Val::Vector(self.eval_vector_selector(vs, r, false)?)),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                // Only valid at the top of an instant query.
                let rd = self.eval_range_arg(e, r)?;
                let te = rd.eval_time(r.start);
                let mut out = Vec::new();
                for s in rd.series {
                    let samples: Vec<Sample> = s
                        .samples
                        .into_iter()
                        .filter(|x| x.t > te - rd.range && x.t <= te)
                        .collect();
                    if !samples.is_empty() {
                        out.push(Series {
                            labels: s.labels,
                            samples,
                        });
                    }
                }
                Ok(Val::Matrix(out))
            }
            Expr::Binary(b) => self.eval_binary(b, r),
            Expr::Aggregate(a) => self.eval_aggregate(a, r),
            Expr::Call(c) => self.eval_call(c, r),
            Expr::Extension(_) => Err(QueryError::Execution(
                "extension expressions are not supported".into(),
            )),
        }
    }

    pub fn eval_scalar_arg(&mut self, e: &Expr, r: &Range) -> Result<Vec<f64>> {
        match self.eval(e, r)? {
            Val::Scalar(v) => Ok(v),
            _ => Err(QueryError::Execution("expected scalar argument".into())),
        }
    }

    pub fn eval_vector_arg(&mut self, e: &Expr, r: &Range) -> Result<Vec<StepSeries>> {
        match self.eval(e, r)? {
            Val::Vector(v) => Ok(v),
            _ => Err(QueryError::Execution(
                "expected instant vector argument".into(),
            )),
        }
    }

    pub fn eval_string_arg(&mut self, e: &Expr, r: &Range) -> Result<String> {
        match self.eval(e, r)? {
            Val::String(s) => Ok(s),
            _ => Err(QueryError::Execution("expected string argument".into())),
        }
    }

    pub fn matchers(vs: &VectorSelector) -> Result<Vec<Matcher>> {
        let mut out = Vec::new();
        if let Some(name) = &vs.name {
            out.push(Matcher::equal(METRIC_NAME, name.clone()));
        }
        if !vs.matchers.or_matchers.is_empty() {
            return Err(QueryError::Execution(
                "\"or\" inside label matchers is not supported".into(),
            ));
        }
        for m in &vs.matchers.matchers {
            let op = match m.op {
                PMatchOp::Equal => MatchOp::Equal,
                PMatchOp::NotEqual => MatchOp::NotEqual,
                PMatchOp::Re(_) => MatchOp::Regex,
                PMatchOp::NotRe(_) => MatchOp::NotRegex,
            };
            let matcher = Matcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| {
                QueryError::Parse {
                    message: e.to_string(),
                    position: None,
                }
            })?;
            out.push(matcher);
        }
        Ok(out)
    }

    fn hints(&self, start: i64, end: i64) -> SelectHints {
        SelectHints {
            start,
            end,
            max_samples: Some(self.max_samples.saturating_sub(self.cur_samples)),
            max_series: None,
        }
    }

    fn select(&mut self, vs: &VectorSelector, start: i64, end: i64) -> Result<Vec<Series>> {
        let matchers = Self::matchers(vs)?;
        let hints = self.hints(start, end);
        let series = self
            .storage
            .select(&matchers, &hints)
            .map_err(storage_error)?;
        let n: usize = series.iter().map(|s| s.samples.len()).sum();
        self.add_samples(n)?;
        Ok(series)
    }

    /// Instant vector selector over all steps. With `timestamps`, each point's value is the
    /// selected sample's timestamp in seconds (for `timestamp()`), and the name is dropped.
    pub fn eval_vector_selector(
        &mut self,
        vs: &VectorSelector,
        r: &Range,
        timestamps: bool,
    ) -> Result<Vec<StepSeries>> {
        let offset = offset_ms(&vs.offset);
        let at = self.resolve_at(&vs.at);
        let n = r.steps();
        let te_of = |i: usize| at.unwrap_or(r.ts(i)) - offset;
        let (min_te, max_te) = if at.is_some() {
            (te_of(0), te_of(0))
        } else {
            (te_of(0), te_of(n - 1))
        };
        let series = self.select(vs, min_te - self.lookback + 1, max_te)?;
        let loaded: usize = series.iter().map(|s| s.samples.len()).sum();
        let mut out = Vec::with_capacity(series.len());
        for s in series {
            self.check_deadline()?;
            let mut pts = Vec::new();
            let mut j = 0usize;
            for i in 0..n {
                let te = te_of(i);
                while j < s.samples.len() && s.samples[j].t <= te {
                    j += 1;
                }
                if j == 0 {
                    continue;
                }
                let last = s.samples[j - 1];
                if last.t <= te - self.lookback || lookout_storage::is_stale_nan(last.v) {
                    continue;
                }
                let v = if timestamps {
                    last.t as f64 / 1000.0
                } else {
                    last.v
                };
                pts.push((i as u32, v));
            }
            if !pts.is_empty() {
                let labels = if timestamps {
                    s.labels.without_metric_name()
                } else {
                    s.labels
                };
                out.push(StepSeries { labels, pts });
            }
        }
        let produced: usize = out.iter().map(|s| s.pts.len()).sum();
        self.add_samples(produced)?;
        self.release_samples(loaded);
        Ok(out)
    }

    /// Loads a range-vector argument (matrix selector or subquery) for the whole range.
    pub fn eval_range_arg(&mut self, e: &Expr, r: &Range) -> Result<RangeData> {
        match unwrap_paren(e) {
            Expr::MatrixSelector(ms) => self.eval_matrix_selector(ms, r),
            Expr::Subquery(sq) => self.eval_subquery(sq, r),
            _ => Err(QueryError::Execution(
                "expected range vector argument".into(),
            )),
        }
    }

    /// The shape of a matrix selector's windows.
    pub fn matrix_window(&self, ms: &MatrixSelector) -> Window {
        Window {
            range: dur_ms(&ms.range),
            offset: offset_ms(&ms.vs.offset),
            at: self.resolve_at(&ms.vs.at),
        }
    }

    /// The time range a matrix selector must load over `r` (inclusive) and the shape of
    /// each step's window.
    fn matrix_bounds(&self, ms: &MatrixSelector, r: &Range) -> (i64, i64, Window) {
        let w = self.matrix_window(ms);
        let (min_te, max_te) = match w.at {
            Some(a) => (a - w.offset, a - w.offset),
            None => (r.start - w.offset, r.end - w.offset),
        };
        (min_te - w.range + 1, max_te, w)
    }

    fn eval_matrix_selector(&mut self, ms: &MatrixSelector, r: &Range) -> Result<RangeData> {
        let (start, end, w) = self.matrix_bounds(ms, r);
        let mut series = self.select(&ms.vs, start, end)?;
        for s in &mut series {
            s.samples.retain(|x| !lookout_storage::is_stale_nan(x.v));
        }
        series.retain(|s| !s.samples.is_empty());
        Ok(RangeData {
            series,
            range: w.range,
            offset: w.offset,
            at: w.at,
        })
    }

    /// Streams the series of a matrix selector over `r` through `visit(index, labels,
    /// samples)` (stale markers still in; see [`Queryable::select_each`]), counting the
    /// loaded samples against the query's limit as [`eval_range_arg`](Self::eval_range_arg)
    /// does. The windows' shape is [`matrix_window`](Self::matrix_window).
    pub fn stream_matrix_selector(
        &mut self,
        ms: &MatrixSelector,
        r: &Range,
        visit: &(dyn Fn(usize, &Labels, &[Sample]) + Sync),
    ) -> Result<()> {
        let (start, end, _) = self.matrix_bounds(ms, r);
        let matchers = Self::matchers(&ms.vs)?;
        let hints = self.hints(start, end);
        let n = self
            .storage
            .select_each(&matchers, &hints, visit)
            .map_err(storage_error)?;
        self.add_samples(n)?;
        Ok(())
    }

    /// [`stream_matrix_selector`](Self::stream_matrix_selector) with other `matchers` (a
    /// sharing group's broadest selection) over `ms`'s window; the caller counts the samples
    /// (the returned number is all the selection's).
    pub fn stream_matrix_selector_with(
        &mut self,
        matchers: &[Matcher],
        ms: &MatrixSelector,
        r: &Range,
        visit: &(dyn Fn(usize, &Labels, &[Sample]) + Sync),
    ) -> Result<usize> {
        let (start, end, _) = self.matrix_bounds(ms, r);
        let hints = self.hints(start, end);
        self.storage
            .select_each(matchers, &hints, visit)
            .map_err(storage_error)
    }

    fn eval_subquery(&mut self, sq: &SubqueryExpr, r: &Range) -> Result<RangeData> {
        let offset = offset_ms(&sq.offset);
        let at = self.resolve_at(&sq.at);
        let range = dur_ms(&sq.range);
        let step = match &sq.step {
            Some(s) if dur_ms(s) > 0 => dur_ms(s),
            _ => self.default_sub_step,
        };
        let (outer_start, outer_end) = match at {
            Some(a) => (a, a),
            None => (r.start, r.end),
        };
        let lo = outer_start - offset - range;
        let start = lo.div_euclid(step) * step + step;
        let end = outer_end - offset;
        let mut series = Vec::new();
        if start <= end {
            let inner = Range { start, end, step };
            let v = self.eval(&sq.expr, &inner)?;
            match v {
                Val::Vector(vs) => {
                    for s in vs {
                        let samples: Vec<Sample> = s
                            .pts
                            .iter()
                            .map(|&(i, v)| Sample {
                                t: inner.ts(i as usize),
                                v,
                            })
                            .collect();
                        series.push(Series {
                            labels: s.labels,
                            samples,
                        });
                    }
                }
                Val::Scalar(vals) => {
                    let samples = vals
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| Sample { t: inner.ts(i), v })
                        .collect();
                    series.push(Series {
                        labels: Labels::EMPTY,
                        samples,
                    });
                }
                _ => {
                    return Err(QueryError::Execution(
                        "subquery is only allowed on instant vector or scalar".into(),
                    ));
                }
            }
        }
        series.retain(|s| !s.samples.is_empty());
        Ok(RangeData {
            series,
            range,
            offset,
            at,
        })
    }

    // ---------------------------------------------------------------- binary operators

    fn eval_binary(&mut self, b: &BinaryExpr, r: &Range) -> Result<Val> {
        let op = b.op.to_string();
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let lhs = self.eval(&b.lhs, r)?;
        let rhs = self.eval(&b.rhs, r)?;
        match (lhs, rhs) {
            (Val::Scalar(l), Val::Scalar(rv)) => {
                let is_cmp = is_comparison(&op);
                let out = l
                    .iter()
                    .zip(rv.iter())
                    .map(|(&a, &c)| {
                        let (v, keep) = scalar_binop(&op, a, c);
                        if is_cmp {
                            if keep { 1.0 } else { 0.0 }
                        } else {
                            v
                        }
                    })
                    .collect();
                Ok(Val::Scalar(out))
            }
            (Val::Vector(l), Val::Scalar(s)) => {
                Ok(Val::Vector(vector_scalar(&op, l, &s, false, return_bool)?))
            }
            (Val::Scalar(s), Val::Vector(rv)) => {
                Ok(Val::Vector(vector_scalar(&op, rv, &s, true, return_bool)?))
            }
            (Val::Vector(l), Val::Vector(rv)) => {
                let n = r.steps();
                let out = match op.as_str() {
                    "and" | "or" | "unless" => set_op(&op, l, rv, b, n),
                    _ => self.vector_vector(&op, l, rv, b, n, return_bool)?,
                };
                Ok(Val::Vector(out))
            }
            _ => Err(QueryError::Execution(format!(
                "invalid operands for binary operator {op}"
            ))),
        }
    }

    fn vector_vector(
        &mut self,
        op: &str,
        lhs: Vec<StepSeries>,
        rhs: Vec<StepSeries>,
        b: &BinaryExpr,
        n: usize,
        return_bool: bool,
    ) -> Result<Vec<StepSeries>> {
        let modifier = b.modifier.clone().unwrap_or_default();
        let (on, match_names): (bool, Vec<String>) = match &modifier.matching {
            Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
            None => (false, Vec::new()),
        };
        let (card, include): (VectorMatchCardinality, Vec<String>) = match &modifier.card {
            VectorMatchCardinality::ManyToOne(l) => (modifier.card.clone(), l.labels.clone()),
            VectorMatchCardinality::OneToMany(l) => (modifier.card.clone(), l.labels.clone()),
            c => (c.clone(), Vec::new()),
        };
        let swapped = matches!(card, VectorMatchCardinality::OneToMany(_));
        let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
        let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
        let is_cmp = is_comparison(op);
        let drop_name = !is_cmp || return_bool;
        let names: Vec<&str> = match_names.iter().map(|s| s.as_str()).collect();
        let sig = |l: &Labels| signature(l, on, &names);
        let many_sigs: Vec<Labels> = many.iter().map(|s| sig(&s.labels)).collect();
        let one_sigs: Vec<Labels> = one.iter().map(|s| sig(&s.labels)).collect();
        // Intern signatures.
        let mut sig_ids: HashMap<&Labels, usize> = HashMap::new();
        for s in one_sigs.iter().chain(many_sigs.iter()) {
            let next = sig_ids.len();
            sig_ids.entry(s).or_insert(next);
        }
        let many_ids: Vec<usize> = many_sigs.iter().map(|s| sig_ids[s]).collect();
        let one_ids: Vec<usize> = one_sigs.iter().map(|s| sig_ids[s]).collect();
        let many_t = transpose(&many, n);
        let one_t = transpose(&one, n);

        let mut out: Vec<StepSeries> = Vec::new();
        let mut out_index: HashMap<Labels, usize> = HashMap::new();
        let mut pair_cache: HashMap<(usize, usize), Labels> = HashMap::new();
        let nsigs = sig_ids.len();
        // Per-step scratch: for each signature, the one-side entry (series idx, value).
        let mut one_by_sig: Vec<Option<(usize, f64)>> = vec![None; nsigs];
        let mut matched_sig: Vec<bool> = vec![false; nsigs];
        let mut step_seen: HashMap<usize, u32> = HashMap::new();
        for step in 0..n {
            self.check_deadline()?;
            for &(oi, v) in &one_t[step] {
                let sid = one_ids[oi];
                if let Some((prev, _)) = one_by_sig[sid] {
                    let side = if swapped { "left" } else { "right" };
                    return Err(QueryError::Execution(format!(
                        "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                        one_sigs[oi], one[prev].labels, one[oi].labels
                    )));
                }
                one_by_sig[sid] = Some((oi, v));
            }
            step_seen.clear();
            let mut first_of_sig: HashMap<usize, usize> = HashMap::new();
            for &(mi, mv) in &many_t[step] {
                let sid = many_ids[mi];
                let Some((oi, ov)) = one_by_sig[sid] else {
                    continue;
                };
                if one_to_one {
                    if matched_sig[sid] {
                        let prev = first_of_sig.get(&sid).copied().unwrap_or(mi);
                        return Err(QueryError::Execution(format!(
                            "found duplicate series for the match group {} on the left hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                            many_sigs[mi], many[prev].labels, many[mi].labels
                        )));
                    }
                    matched_sig[sid] = true;
                    first_of_sig.insert(sid, mi);
                }
                let (fl, fr) = if swapped { (ov, mv) } else { (mv, ov) };
                let (mut value, keep) = scalar_binop(op, fl, fr);
                let mut keep = keep;
                if return_bool {
                    value = if keep { 1.0 } else { 0.0 };
                    keep = true;
                }
                if !keep {
                    continue;
                }
                let labels = pair_cache
                    .entry((mi, oi))
                    .or_insert_with(|| {
                        result_labels(
                            &many[mi].labels,
                            &one[oi].labels,
                            on,
                            &names,
                            one_to_one,
                            &include,
                            drop_name,
                        )
                    })
                    .clone();
                let idx = match out_index.get(&labels) {
                    Some(&i) => i,
                    None => {
                        out.push(StepSeries {
                            labels: labels.clone(),
                            pts: Vec::new(),
                        });
                        out_index.insert(labels, out.len() - 1);
                        out.len() - 1
                    }
                };
                if let Some(prev) = step_seen.insert(idx, step as u32)
                    && prev == step as u32
                {
                    if one_to_one {
                        return Err(QueryError::Execution(
                            "vector cannot contain metrics with the same labelset".into(),
                        ));
                    }
                    return Err(QueryError::Execution(
                        "multiple matches for labels: grouping labels must ensure unique matches"
                            .into(),
                    ));
                }
                out[idx].pts.push((step as u32, value));
            }
            for &(oi, _) in &one_t[step] {
                one_by_sig[one_ids[oi]] = None;
            }
            for &(mi, _) in &many_t[step] {
                matched_sig[many_ids[mi]] = false;
            }
        }
        out.retain(|s| !s.pts.is_empty());
        Ok(out)
    }

    // ---------------------------------------------------------------- aggregations

    fn eval_aggregate(&mut self, a: &AggregateExpr, r: &Range) -> Result<Val> {
        // Folded while another call of its sharing group streamed (`crate::share`).
        if let Some(done) = self.shared.take_folded(crate::share::agg_key(a)) {
            return crate::functions::replay_folded(self, done);
        }
        let op = a.op.to_string();
        let n = r.steps();
        let param_scalar = match (&a.param, op.as_str()) {
            (Some(p), "topk" | "bottomk" | "quantile" | "limitk" | "limit_ratio") => {
                Some(self.eval_scalar_arg(p, r)?)
            }
            _ => None,
        };
        let param_string = match (&a.param, op.as_str()) {
            (Some(p), "count_values") => Some(self.eval_string_arg(p, r)?),
            _ => None,
        };
        let (without, names): (bool, Vec<String>) = match &a.modifier {
            Some(LabelModifier::Include(l)) => (false, l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => (true, l.labels.clone()),
            None => (false, Vec::new()),
        };
        let name_refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        // `sum(rate(m[5m]))` and the like: fold each series as soon as it is evaluated.
        if a.param.is_none()
            && let Expr::Call(c) = unwrap_paren(&a.expr)
            && let Some(fold) = crate::aggregate::StreamFold::new(&op, without, &name_refs, n)
        {
            self.check_deadline()?;
            if crate::functions::stream_call_into(self, c, r, &fold)? {
                return fold.finish(self);
            }
        }
        let input = self.eval_vector_arg(&a.expr, r)?;
        crate::aggregate::aggregate(
            self,
            &op,
            input,
            without,
            &name_refs,
            param_scalar,
            param_string,
            n,
        )
    }

    // ---------------------------------------------------------------- function calls

    fn eval_call(&mut self, c: &Call, r: &Range) -> Result<Val> {
        crate::functions::call(self, c, r)
    }
}

pub(crate) fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
}

/// Applies an arithmetic or comparison operator: returns the value and whether to keep it
/// (comparisons keep the left value when true).
pub(crate) fn scalar_binop(op: &str, l: f64, r: f64) -> (f64, bool) {
    match op {
        "+" => (l + r, true),
        "-" => (l - r, true),
        "*" => (l * r, true),
        "/" => (l / r, true),
        "^" => (l.powf(r), true),
        "%" => (l % r, true),
        "atan2" => (l.atan2(r), true),
        "==" => (l, l == r),
        "!=" => (l, l != r),
        ">" => (l, l > r),
        "<" => (l, l < r),
        ">=" => (l, l >= r),
        "<=" => (l, l <= r),
        _ => (f64::NAN, false),
    }
}

fn vector_scalar(
    op: &str,
    vec: Vec<StepSeries>,
    s: &[f64],
    scalar_left: bool,
    return_bool: bool,
) -> Result<Vec<StepSeries>> {
    let is_cmp = is_comparison(op);
    let drop_name = !is_cmp || return_bool;
    let mut out = Vec::with_capacity(vec.len());
    for series in vec {
        let mut pts = Vec::with_capacity(series.pts.len());
        for &(i, v) in &series.pts {
            let sv = s[i as usize];
            let (l, r) = if scalar_left { (sv, v) } else { (v, sv) };
            let (mut value, mut keep) = scalar_binop(op, l, r);
            if is_cmp && scalar_left {
                value = v;
            }
            if return_bool {
                value = if keep { 1.0 } else { 0.0 };
                keep = true;
            }
            if keep {
                pts.push((i, value));
            }
        }
        if !pts.is_empty() {
            let labels = if drop_name {
                series.labels.without_metric_name()
            } else {
                series.labels
            };
            out.push(StepSeries { labels, pts });
        }
    }
    if drop_name {
        merge_same_labels(out)
    } else {
        Ok(out)
    }
}

/// The match signature of a label set for `on(names)` / `ignoring(names)` (the latter also
/// ignores the metric name).
pub(crate) fn signature(l: &Labels, on: bool, names: &[&str]) -> Labels {
    if on {
        l.keep_only(names)
    } else {
        let mut v: Vec<&str> = names.to_vec();
        v.push(METRIC_NAME);
        l.without(&v)
    }
}

fn result_labels(
    many: &Labels,
    one: &Labels,
    on: bool,
    names: &[&str],
    one_to_one: bool,
    include: &[String],
    drop_name: bool,
) -> Labels {
    let mut b: LabelsBuilder = many.builder();
    if drop_name {
        b.del(METRIC_NAME);
    }
    if one_to_one {
        if on {
            b.retain(|l| names.contains(&l.name.as_str()));
        } else {
            b.retain(|l| !names.contains(&l.name.as_str()));
        }
    }
    for name in include {
        match one.get(name) {
            Some(v) => {
                b.set(name.clone(), v.to_string());
            }
            None => {
                b.del(name);
            }
        }
    }
    b.into_labels()
}

/// Step-major view: for each step, `(series index, value)` of the series present.
pub(crate) fn transpose(series: &[StepSeries], n: usize) -> Vec<Vec<(usize, f64)>> {
    let mut out: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
    for (si, s) in series.iter().enumerate() {
        for &(i, v) in &s.pts {
            if let Some(slot) = out.get_mut(i as usize) {
                slot.push((si, v));
            }
        }
    }
    out
}

fn set_op(
    op: &str,
    lhs: Vec<StepSeries>,
    rhs: Vec<StepSeries>,
    b: &BinaryExpr,
    n: usize,
) -> Vec<StepSeries> {
    let (on, names): (bool, Vec<String>) =
        match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
            Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
            None => (false, Vec::new()),
        };
    let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let lsig: Vec<Labels> = lhs
        .iter()
        .map(|s| signature(&s.labels, on, &names))
        .collect();
    let rsig: Vec<Labels> = rhs
        .iter()
        .map(|s| signature(&s.labels, on, &names))
        .collect();
    // Per step: the set of signatures present on the other side.
    let mut sig_ids: HashMap<Labels, usize> = HashMap::new();
    let lid: Vec<usize> = lsig
        .into_iter()
        .map(|s| {
            let next = sig_ids.len();
            *sig_ids.entry(s).or_insert(next)
        })
        .collect();
    let rid: Vec<usize> = rsig
        .into_iter()
        .map(|s| {
            let next = sig_ids.len();
            *sig_ids.entry(s).or_insert(next)
        })
        .collect();
    let nsig = sig_ids.len();
    match op {
        "and" | "unless" => {
            let mut present: Vec<Vec<bool>> = vec![Vec::new(); n];
            let rt = transpose(&rhs, n);
            for (step, entries) in rt.iter().enumerate() {
                if entries.is_empty() {
                    continue;
                }
                let mut p = vec![false; nsig];
                for &(ri, _) in entries {
                    p[rid[ri]] = true;
                }
                present[step] = p;
            }
            let want = op == "and";
            let mut out = Vec::new();
            for (li, s) in lhs.into_iter().enumerate() {
                let sid = lid[li];
                let pts: Vec<(u32, f64)> = s
                    .pts
                    .into_iter()
                    .filter(|&(i, _)| {
                        present[i as usize].get(sid).copied().unwrap_or(false) == want
                    })
                    .collect();
                if !pts.is_empty() {
                    out.push(StepSeries {
                        labels: s.labels,
                        pts,
                    });
                }
            }
            out
        }
        _ => {
            // or
            let mut present: Vec<Vec<bool>> = vec![Vec::new(); n];
            let lt = transpose(&lhs, n);
            for (step, entries) in lt.iter().enumerate() {
                if entries.is_empty() {
                    continue;
                }
                let mut p = vec![false; nsig];
                for &(li, _) in entries {
                    p[lid[li]] = true;
                }
                present[step] = p;
            }
            let mut out = lhs;
            let mut index: HashMap<Labels, usize> = out
                .iter()
                .enumerate()
                .map(|(i, s)| (s.labels.clone(), i))
                .collect();
            for (ri, s) in rhs.into_iter().enumerate() {
                let sid = rid[ri];
                let pts: Vec<(u32, f64)> = s
                    .pts
                    .into_iter()
                    .filter(|&(i, _)| !present[i as usize].get(sid).copied().unwrap_or(false))
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                match index.get(&s.labels) {
                    Some(&i) => {
                        // Same label set on both sides at disjoint steps: merge.
                        let target = &mut out[i].pts;
                        target.extend(pts);
                        target.sort_by_key(|p| p.0);
                        target.dedup_by_key(|p| p.0);
                    }
                    None => {
                        index.insert(s.labels.clone(), out.len());
                        out.push(StepSeries {
                            labels: s.labels,
                            pts,
                        });
                    }
                }
            }
            out
        }
    }
}

/// Merges series that ended up with identical label sets (after dropping the metric name);
/// two values at the same step are Prometheus's "same labelset" error.
pub(crate) fn merge_same_labels(series: Vec<StepSeries>) -> Result<Vec<StepSeries>> {
    let mut index: HashMap<Labels, usize> = HashMap::with_capacity(series.len());
    let mut out: Vec<StepSeries> = Vec::with_capacity(series.len());
    let mut need_sort = Vec::new();
    for s in series {
        match index.get(&s.labels) {
            None => {
                index.insert(s.labels.clone(), out.len());
                out.push(s);
            }
            Some(&i) => {
                out[i].pts.extend(s.pts);
                need_sort.push(i);
            }
        }
    }
    for i in need_sort {
        let pts = &mut out[i].pts;
        pts.sort_by_key(|p| p.0);
        if pts.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(QueryError::Execution(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use lookout_storage::memory::MemStorage;
    use lookout_storage::{Appendable, Labels};

    use crate::{Engine, QueryError, Value};

    fn store(series: &[(&[(&str, &str)], f64)]) -> MemStorage {
        let s = MemStorage::new();
        let mut app = s.appender();
        for (labels, v) in series {
            let l = Labels::from_pairs(labels.iter().copied());
            app.append(None, &l, 0, *v).unwrap();
        }
        app.commit().unwrap();
        s
    }

    fn vector(s: &MemStorage, q: &str) -> Vec<(String, f64)> {
        match Engine::default().instant_query(s, q, 0).unwrap().value {
            Value::Vector(v) => {
                let mut out: Vec<(String, f64)> =
                    v.into_iter().map(|x| (x.labels.to_string(), x.v)).collect();
                out.sort_by(|a, b| a.0.cmp(&b.0));
                out
            }
            other => panic!("not a vector: {other:?}"),
        }
    }

    #[test]
    fn one_to_one_matching_drops_name_and_ignored_labels() {
        let s = store(&[
            (&[("__name__", "a"), ("job", "x"), ("i", "1")], 10.0),
            (&[("__name__", "b"), ("job", "x"), ("i", "1")], 2.0),
            (&[("__name__", "b"), ("job", "y"), ("i", "1")], 3.0),
        ]);
        assert_eq!(
            vector(&s, "a / b"),
            vec![(r#"{i="1", job="x"}"#.into(), 5.0)]
        );
        assert_eq!(
            vector(&s, "a / on(job) b"),
            vec![(r#"{job="x"}"#.into(), 5.0)]
        );
        assert_eq!(
            vector(&s, "a > bool ignoring(i) b"),
            vec![(r#"{job="x"}"#.into(), 1.0)]
        );
        // Filtering comparison keeps the name and the left value.
        assert_eq!(
            vector(&s, "a > b"),
            vec![(r#"{__name__="a", i="1", job="x"}"#.into(), 10.0)]
        );
    }

    #[test]
    fn group_left_copies_labels_from_one_side() {
        let s = store(&[
            (&[("__name__", "req"), ("job", "x"), ("path", "/a")], 4.0),
            (&[("__name__", "req"), ("job", "x"), ("path", "/b")], 6.0),
            (
                &[("__name__", "info"), ("job", "x"), ("version", "1.2")],
                1.0,
            ),
        ]);
        assert_eq!(
            vector(&s, "req * on(job) group_left(version) info"),
            vec![
                (r#"{job="x", path="/a", version="1.2"}"#.into(), 4.0),
                (r#"{job="x", path="/b", version="1.2"}"#.into(), 6.0),
            ]
        );
    }

    #[test]
    fn many_to_many_is_an_error_with_prometheus_message() {
        let s = store(&[
            (&[("__name__", "a"), ("job", "x"), ("i", "1")], 1.0),
            (&[("__name__", "a"), ("job", "x"), ("i", "2")], 1.0),
            (&[("__name__", "b"), ("job", "x")], 1.0),
        ]);
        let err = Engine::default()
            .instant_query(&s, "b + on(job) a", 0)
            .unwrap_err();
        assert!(matches!(err, QueryError::Execution(_)));
        assert!(err.to_string().starts_with(
            "found duplicate series for the match group {job=\"x\"} on the right hand-side"
        ));
        assert!(err.to_string().ends_with(
            "many-to-many matching not allowed: matching labels must be unique on one side"
        ));
    }

    #[test]
    fn set_operators() {
        let s = store(&[
            (&[("__name__", "a"), ("job", "x")], 1.0),
            (&[("__name__", "a"), ("job", "y")], 2.0),
            (&[("__name__", "b"), ("job", "y")], 3.0),
            (&[("__name__", "b"), ("job", "z")], 4.0),
        ]);
        assert_eq!(
            vector(&s, "a and b"),
            vec![(r#"{__name__="a", job="y"}"#.into(), 2.0)]
        );
        assert_eq!(
            vector(&s, "a unless b"),
            vec![(r#"{__name__="a", job="x"}"#.into(), 1.0)]
        );
        assert_eq!(vector(&s, "a or b").len(), 3);
    }

    #[test]
    fn range_query_of_scalar_is_one_unlabelled_series() {
        let s = MemStorage::new();
        let r = Engine::default()
            .range_query(&s, "1 + 1", 0, 120_000, std::time::Duration::from_secs(60))
            .unwrap();
        match r.value {
            Value::Matrix(m) => {
                assert_eq!(m.len(), 1);
                assert!(m[0].labels.is_empty());
                assert_eq!(m[0].samples.len(), 3);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_map_to_api_types() {
        let s = MemStorage::new();
        let e = Engine::default().parse_check("sum(").unwrap_err();
        assert_eq!(e.error_type(), "bad_data");
        let e = Engine::default()
            .instant_query(&s, "rate(x)", 0)
            .unwrap_err();
        assert_eq!(e.error_type(), "bad_data");
        let e = Engine::default()
            .range_query(&s, "x[5m]", 0, 60_000, std::time::Duration::from_secs(60))
            .unwrap_err();
        assert_eq!(e.error_type(), "execution");
    }

    #[test]
    fn limits_and_timeout() {
        let s = MemStorage::new();
        let mut app = s.appender();
        let l = Labels::from_pairs([("__name__", "x")]);
        for k in 0..100 {
            app.append(None, &l, k * 1000, k as f64).unwrap();
        }
        app.commit().unwrap();
        let engine = Engine::new(crate::EngineOptions {
            max_samples: 10,
            ..Default::default()
        });
        let e = engine
            .instant_query(&s, "sum_over_time(x[100s])", 100_000)
            .unwrap_err();
        assert!(matches!(e, QueryError::TooManySamples(_)), "{e}");
        let engine = Engine::new(crate::EngineOptions {
            timeout: std::time::Duration::ZERO,
            ..Default::default()
        });
        let e = engine.instant_query(&s, "x", 0).unwrap_err();
        assert!(matches!(e, QueryError::Timeout(_)), "{e}");
        assert_eq!(e.error_type(), "timeout");
    }
}
