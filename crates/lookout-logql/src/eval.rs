//! Metric evaluation: every node yields its value at all steps of the query at once (a range
//! aggregation scans its logs once for the whole query range, then slides its window over the
//! extracted samples).

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::ops::ControlFlow;
use std::time::Instant;

use lookout_storage::logs::{LogQueryable, LogSelectParams};
use lookout_storage::{Labels, MatchOp};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::ast::*;
use crate::pipeline::{
    ERROR_DETAILS_LABEL, ERROR_LABEL, LabelState, label_filter, needed_labels, run_stages,
};
use crate::units::{parse_bytes, parse_go_duration, parse_go_float};
use crate::{LabelSet, LogqlError};

pub type Lbls = Vec<(String, String)>;

#[derive(Clone, Debug)]
pub struct StepSeries {
    pub labels: Lbls,
    pub pts: Vec<Option<f64>>,
}

#[derive(Clone, Debug)]
pub enum Val {
    Scalar(Vec<f64>),
    Vector(Vec<StepSeries>),
}

pub struct Evaluator<'a> {
    pub store: &'a dyn LogQueryable,
    pub start: i64,
    pub step: i64,
    pub nsteps: usize,
    pub deadline: Instant,
    pub timeout_desc: String,
    pub max_samples: usize,
    pub samples_loaded: usize,
}

fn label_set_string(l: &Lbls) -> String {
    LabelSet::from_sorted(l.clone()).to_string()
}

fn pipeline_error(labels: &Lbls) -> LogqlError {
    let err = labels
        .iter()
        .find(|(n, _)| n == ERROR_LABEL)
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    LogqlError::Pipeline(format!(
        "pipeline error: '{err}' for series: '{}'.\nUse a label filter to intentionally skip this error. (e.g | __error__!=\"{err}\").\nTo skip all potential errors you can match empty errors.(e.g __error__=\"\")\nThe label filter can also be specified after unwrap. (e.g | unwrap latency | __error__=\"\" )\n",
        label_set_string(labels)
    ))
}

impl Evaluator<'_> {
    fn ts(&self, i: usize) -> i64 {
        self.start + self.step * i as i64
    }

    fn check_deadline(&self) -> Result<(), LogqlError> {
        if Instant::now() > self.deadline {
            return Err(LogqlError::Timeout(self.timeout_desc.clone()));
        }
        Ok(())
    }

    pub fn eval(&mut self, e: &SampleExpr) -> Result<Val, LogqlError> {
        self.check_deadline()?;
        match e {
            SampleExpr::Literal(v) => Ok(Val::Scalar(vec![*v; self.nsteps])),
            SampleExpr::Vector(v) => Ok(Val::Vector(vec![StepSeries {
                labels: Vec::new(),
                pts: vec![Some(*v); self.nsteps],
            }])),
            SampleExpr::RangeAgg {
                op,
                param,
                range,
                grouping,
            } => self.range_agg(*op, *param, range, grouping.as_ref()),
            SampleExpr::VectorAgg {
                op,
                param,
                grouping,
                expr,
            } => {
                // sum by (x) of a count/rate/bytes/sum range aggregation equals the range
                // aggregation over series already merged by x: group while extracting.
                if let (
                    VecOp::Sum,
                    SampleExpr::RangeAgg {
                        op: rop,
                        param: rparam,
                        range,
                        grouping: None,
                    },
                ) = (op, expr.as_ref())
                    && matches!(
                        rop,
                        RangeOp::CountOverTime
                            | RangeOp::Rate
                            | RangeOp::BytesOverTime
                            | RangeOp::BytesRate
                            | RangeOp::SumOverTime
                    )
                {
                    let g = grouping.clone().unwrap_or(Grouping {
                        without: false,
                        labels: Vec::new(),
                    });
                    let Val::Vector(v) = self.range_agg(*rop, *rparam, range, Some(&g))? else {
                        return Err(LogqlError::BadData("sum expects a vector argument".into()));
                    };
                    return Ok(Val::Vector(self.vector_agg(
                        *op,
                        *param,
                        grouping.as_ref(),
                        v,
                    )));
                }
                let inner = self.eval(expr)?;
                let Val::Vector(v) = inner else {
                    return Err(LogqlError::BadData(format!(
                        "{} expects a vector argument",
                        op.name()
                    )));
                };
                Ok(Val::Vector(self.vector_agg(
                    *op,
                    *param,
                    grouping.as_ref(),
                    v,
                )))
            }
            SampleExpr::Binary {
                op,
                lhs,
                rhs,
                return_bool,
                matching,
            } => {
                let l = self.eval(lhs)?;
                let r = self.eval(rhs)?;
                self.binary(*op, l, r, *return_bool, matching.as_ref())
            }
            SampleExpr::LabelReplace {
                expr,
                dst,
                replacement,
                src,
                regex,
            } => {
                let Val::Vector(v) = self.eval(expr)? else {
                    return Err(LogqlError::BadData(
                        "label_replace expects a vector argument".into(),
                    ));
                };
                let mut out: Vec<StepSeries> = Vec::with_capacity(v.len());
                let mut seen: FxHashSet<Lbls> = FxHashSet::default();
                for mut s in v {
                    let val = s
                        .labels
                        .iter()
                        .find(|(n, _)| n == src)
                        .map(|(_, v)| v.as_str())
                        .unwrap_or("");
                    if let Some(c) = regex.captures(val) {
                        let mut res = String::new();
                        c.expand(replacement, &mut res);
                        s.labels.retain(|(n, _)| n != dst);
                        if !res.is_empty() {
                            s.labels.push((dst.clone(), res));
                            s.labels.sort();
                        }
                    }
                    if !seen.insert(s.labels.clone()) {
                        return Err(LogqlError::Execution(
                            "vector cannot contain metrics with the same labelset".into(),
                        ));
                    }
                    out.push(s);
                }
                Ok(Val::Vector(out))
            }
        }
    }

    fn range_agg(
        &mut self,
        op: RangeOp,
        param: Option<f64>,
        range: &LogRange,
        grouping: Option<&Grouping>,
    ) -> Result<Val, LogqlError> {
        let off = range.offset_ns;
        let rng = range.range_ns;
        let last = self.ts(self.nsteps.saturating_sub(1));
        let fetch_start = self.start - off - rng + 1;
        let fetch_end = last - off + 1;
        let hints = range.log.required_substrings();
        let mut params = LogSelectParams::new(&range.log.matchers, fetch_start, fetch_end);
        params.required_substrings = &hints;
        let unwrap = range.unwrap.as_ref();
        let bytes_op = matches!(op, RangeOp::BytesOverTime | RangeOp::BytesRate);
        let mut series: FxHashMap<Lbls, Vec<(i64, f64)>> = FxHashMap::default();
        let mut st = LabelState::default();
        let stages = &range.log.stages;
        if let Some(g) = grouping
            && !g.without
        {
            st.only = needed_labels(stages, &g.labels, unwrap);
        }
        let deadline = self.deadline;
        let max_samples = self.max_samples;
        let mut loaded = self.samples_loaded;
        let mut failure: Option<LogqlError> = None;
        let mut counter = 0usize;
        // Series keys per stream when the pipeline cannot change labels.
        let static_labels =
            unwrap.is_none() && stages.iter().all(|s| matches!(s, Stage::LineFilter(_)));
        let mut sink = |labels: &Labels, entries: &[lookout_storage::logs::LogEntry]| {
            let mut cached: Option<Lbls> = None;
            for e in entries {
                counter += 1;
                if counter.is_multiple_of(4096) && Instant::now() > deadline {
                    failure = Some(LogqlError::Timeout(String::new()));
                    return ControlFlow::Break(());
                }
                let mut line = Cow::Borrowed(e.line.as_str());
                let fast = static_labels && e.structured_metadata.is_empty();
                let key: Option<Lbls> = if fast {
                    if !stages.iter().all(|s| match s {
                        Stage::LineFilter(_) => {
                            run_stages(std::slice::from_ref(s), e.ts_ns, &mut line, &mut st)
                        }
                        _ => true,
                    }) {
                        continue;
                    }
                    Some(
                        cached
                            .get_or_insert_with(|| {
                                let l: Lbls = labels
                                    .iter()
                                    .map(|l| (l.name.clone(), l.value.clone()))
                                    .collect();
                                apply_grouping(l, grouping, None)
                            })
                            .clone(),
                    )
                } else {
                    st.reset(labels, &e.structured_metadata);
                    if !run_stages(stages, e.ts_ns, &mut line, &mut st) {
                        continue;
                    }
                    None
                };
                let value = if let Some(u) = unwrap {
                    let Some(raw) = st.get(&u.label) else {
                        continue;
                    };
                    if raw.is_empty() {
                        continue;
                    }
                    let conv = match u.conversion {
                        Conversion::None => parse_go_float(raw),
                        Conversion::Duration => parse_go_duration(raw, false).map(|ns| ns / 1e9),
                        Conversion::Bytes => parse_bytes(raw).map(|b| b as f64),
                    };
                    let v = match conv {
                        Ok(v) => v,
                        Err(err) => {
                            st.set_err("SampleExtractionErr", err);
                            0.0
                        }
                    };
                    if !u.post_filters.iter().all(|f| label_filter(f, &mut st)) {
                        continue;
                    }
                    v
                } else if bytes_op {
                    line.len() as f64
                } else {
                    1.0
                };
                let key = match key {
                    Some(k) => k,
                    None => {
                        let (by, without): (Option<&[String]>, &[String]) = match grouping {
                            None => (None, &[]),
                            Some(g) if g.without => (None, &g.labels),
                            Some(g) => (Some(&g.labels), &[]),
                        };
                        st.grouped_key(by, without, unwrap.map(|u| u.label.as_str()))
                    }
                };
                loaded += 1;
                if loaded > max_samples {
                    failure = Some(LogqlError::Limit(format!(
                        "the query would read more than {max_samples} samples; narrow the selector or shorten the range"
                    )));
                    return ControlFlow::Break(());
                }
                series.entry(key).or_default().push((e.ts_ns, value));
            }
            ControlFlow::Continue(())
        };
        self.store.select_logs(&params, &mut sink)?;
        self.samples_loaded = loaded;
        if let Some(f) = failure {
            return Err(match f {
                LogqlError::Timeout(_) => LogqlError::Timeout(self.timeout_desc.clone()),
                other => other,
            });
        }
        self.check_deadline()?;

        if op == RangeOp::AbsentOverTime {
            let mut all: Vec<Vec<(i64, f64)>> = series.into_values().collect();
            for s in &mut all {
                s.sort_by_key(|p| p.0);
            }
            let mut pts = vec![None; self.nsteps];
            for (i, p) in pts.iter_mut().enumerate() {
                let t = self.ts(i) - off;
                let present = all.iter().any(|s| {
                    let lo = s.partition_point(|x| x.0 <= t - rng);
                    lo < s.len() && s[lo].0 <= t
                });
                if !present {
                    *p = Some(1.0);
                }
            }
            if pts.iter().all(Option::is_none) {
                return Ok(Val::Vector(Vec::new()));
            }
            return Ok(Val::Vector(vec![StepSeries {
                labels: absent_labels(&range.log.matchers),
                pts,
            }]));
        }

        let mut out = Vec::with_capacity(series.len());
        for (labels, mut samples) in series {
            samples.sort_by_key(|p| p.0);
            let mut pts = vec![None; self.nsteps];
            let mut lo = 0;
            let mut hi = 0;
            let mut any = false;
            for (i, p) in pts.iter_mut().enumerate() {
                let t = self.ts(i) - off;
                while lo < samples.len() && samples[lo].0 <= t - rng {
                    lo += 1;
                }
                if hi < lo {
                    hi = lo;
                }
                while hi < samples.len() && samples[hi].0 <= t {
                    hi += 1;
                }
                if lo >= hi {
                    continue;
                }
                *p = range_fn(op, param, &samples[lo..hi], t - rng, t, rng);
                any |= p.is_some();
            }
            if any {
                if labels.iter().any(|(n, _)| n == ERROR_LABEL) {
                    return Err(pipeline_error(&labels));
                }
                out.push(StepSeries { labels, pts });
            }
        }
        Ok(Val::Vector(out))
    }

    fn vector_agg(
        &mut self,
        op: VecOp,
        param: Option<f64>,
        grouping: Option<&Grouping>,
        v: Vec<StepSeries>,
    ) -> Vec<StepSeries> {
        let n = self.nsteps;
        match op {
            VecOp::Sort | VecOp::SortDesc => {
                let mut v = v;
                let key = |s: &StepSeries| s.pts.first().copied().flatten();
                v.sort_by(|a, b| {
                    let (x, y) = (key(a), key(b));
                    match (x, y) {
                        (Some(x), Some(y)) if x.is_nan() && y.is_nan() => std::cmp::Ordering::Equal,
                        (Some(x), _) if x.is_nan() => std::cmp::Ordering::Greater,
                        (_, Some(y)) if y.is_nan() => std::cmp::Ordering::Less,
                        (Some(x), Some(y)) => {
                            if op == VecOp::Sort {
                                x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal)
                            } else {
                                y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal)
                            }
                        }
                        _ => std::cmp::Ordering::Equal,
                    }
                });
                v
            }
            VecOp::Topk | VecOp::Bottomk | VecOp::ApproxTopk => {
                let k = param.unwrap_or(1.0) as usize;
                let mut groups: FxHashMap<Lbls, Vec<usize>> = FxHashMap::default();
                let mut order: Vec<Lbls> = Vec::new();
                for (i, s) in v.iter().enumerate() {
                    let g = group_key(&s.labels, grouping);
                    match groups.entry(g) {
                        Entry::Occupied(mut o) => o.get_mut().push(i),
                        Entry::Vacant(vac) => {
                            order.push(vac.key().clone());
                            vac.insert(vec![i]);
                        }
                    }
                }
                let mut keep = vec![vec![false; n]; v.len()];
                let bottom = op == VecOp::Bottomk;
                for members in groups.values() {
                    #[allow(clippy::needless_range_loop)]
                    for step in 0..n {
                        let mut cands: Vec<(usize, f64)> = members
                            .iter()
                            .filter_map(|&i| v[i].pts[step].map(|x| (i, x)))
                            .collect();
                        cands.sort_by(|a, b| {
                            let (x, y) = (a.1, b.1);
                            let ord = match (x.is_nan(), y.is_nan()) {
                                (true, true) => std::cmp::Ordering::Equal,
                                (true, false) => std::cmp::Ordering::Greater,
                                (false, true) => std::cmp::Ordering::Less,
                                _ => {
                                    if bottom {
                                        x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal)
                                    } else {
                                        y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal)
                                    }
                                }
                            };
                            ord.then(a.0.cmp(&b.0))
                        });
                        for (i, _) in cands.into_iter().take(k) {
                            keep[i][step] = true;
                        }
                    }
                }
                let mut out = Vec::new();
                for (i, mut s) in v.into_iter().enumerate() {
                    for (step, p) in s.pts.iter_mut().enumerate() {
                        if !keep[i][step] {
                            *p = None;
                        }
                    }
                    if s.pts.iter().any(Option::is_some) {
                        out.push(s);
                    }
                }
                if n == 1 {
                    let desc = !bottom;
                    out.sort_by(|a, b| {
                        let (x, y) = (a.pts[0].unwrap_or(f64::NAN), b.pts[0].unwrap_or(f64::NAN));
                        let o = x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal);
                        if desc { o.reverse() } else { o }
                    });
                }
                out
            }
            _ => {
                let mut groups: FxHashMap<Lbls, Vec<usize>> = FxHashMap::default();
                let mut order: Vec<Lbls> = Vec::new();
                for (i, s) in v.iter().enumerate() {
                    let g = group_key(&s.labels, grouping);
                    match groups.entry(g) {
                        Entry::Occupied(mut o) => o.get_mut().push(i),
                        Entry::Vacant(vac) => {
                            order.push(vac.key().clone());
                            vac.insert(vec![i]);
                        }
                    }
                }
                let mut out = Vec::with_capacity(order.len());
                for g in order {
                    let members = &groups[&g];
                    let mut pts = vec![None; n];
                    let mut vals: Vec<f64> = Vec::with_capacity(members.len());
                    for (step, p) in pts.iter_mut().enumerate() {
                        vals.clear();
                        vals.extend(members.iter().filter_map(|&i| v[i].pts[step]));
                        if vals.is_empty() {
                            continue;
                        }
                        *p = Some(aggregate(op, &vals));
                    }
                    out.push(StepSeries { labels: g, pts });
                }
                out
            }
        }
    }

    fn binary(
        &mut self,
        op: BinOp,
        l: Val,
        r: Val,
        return_bool: bool,
        matching: Option<&VectorMatching>,
    ) -> Result<Val, LogqlError> {
        match (l, r) {
            (Val::Scalar(a), Val::Scalar(b)) => {
                let out = a
                    .iter()
                    .zip(b.iter())
                    .map(|(x, y)| {
                        let (v, keep) = scalar_op(op, *x, *y, true);
                        if keep { v } else { 0.0 }
                    })
                    .collect();
                Ok(Val::Scalar(out))
            }
            (Val::Vector(v), Val::Scalar(s)) => {
                Ok(Val::Vector(vector_scalar(op, v, &s, false, return_bool)))
            }
            (Val::Scalar(s), Val::Vector(v)) => {
                Ok(Val::Vector(vector_scalar(op, v, &s, true, return_bool)))
            }
            (Val::Vector(a), Val::Vector(b)) => {
                let default = VectorMatching {
                    card: Card::OneToOne,
                    on: false,
                    labels: Vec::new(),
                    include: Vec::new(),
                };
                let m = matching.unwrap_or(&default);
                self.vector_vector(op, a, b, return_bool, m)
                    .map(Val::Vector)
            }
        }
    }

    fn vector_vector(
        &mut self,
        op: BinOp,
        lhs: Vec<StepSeries>,
        rhs: Vec<StepSeries>,
        return_bool: bool,
        m: &VectorMatching,
    ) -> Result<Vec<StepSeries>, LogqlError> {
        let n = self.nsteps;
        let sig = |l: &Lbls| -> Lbls {
            l.iter()
                .filter(|(name, _)| {
                    if m.on {
                        m.labels.contains(name)
                    } else {
                        !m.labels.contains(name)
                    }
                })
                .cloned()
                .collect()
        };
        let lsig: Vec<Lbls> = lhs.iter().map(|s| sig(&s.labels)).collect();
        let rsig: Vec<Lbls> = rhs.iter().map(|s| sig(&s.labels)).collect();
        if op.is_set() {
            let mut out_l: Vec<StepSeries> = lhs
                .iter()
                .map(|s| StepSeries {
                    labels: s.labels.clone(),
                    pts: vec![None; n],
                })
                .collect();
            let mut out_r: Vec<StepSeries> = Vec::new();
            if op == BinOp::Or {
                out_r = rhs
                    .iter()
                    .map(|s| StepSeries {
                        labels: s.labels.clone(),
                        pts: vec![None; n],
                    })
                    .collect();
            }
            for step in 0..n {
                let rset: FxHashSet<&Lbls> = rhs
                    .iter()
                    .zip(rsig.iter())
                    .filter(|(s, _)| s.pts[step].is_some())
                    .map(|(_, g)| g)
                    .collect();
                let lset: FxHashSet<&Lbls> = lhs
                    .iter()
                    .zip(lsig.iter())
                    .filter(|(s, _)| s.pts[step].is_some())
                    .map(|(_, g)| g)
                    .collect();
                for (i, s) in lhs.iter().enumerate() {
                    let Some(v) = s.pts[step] else { continue };
                    let keep = match op {
                        BinOp::And => rset.contains(&lsig[i]),
                        BinOp::Unless => !rset.contains(&lsig[i]),
                        _ => true,
                    };
                    if keep {
                        out_l[i].pts[step] = Some(v);
                    }
                }
                if op == BinOp::Or {
                    for (j, s) in rhs.iter().enumerate() {
                        let Some(v) = s.pts[step] else { continue };
                        if !lset.contains(&rsig[j]) {
                            out_r[j].pts[step] = Some(v);
                        }
                    }
                }
            }
            let mut out: Vec<StepSeries> = out_l
                .into_iter()
                .chain(out_r)
                .filter(|s| s.pts.iter().any(Option::is_some))
                .collect();
            merge_duplicates(&mut out);
            return Ok(out);
        }

        let swap = m.card == Card::OneToMany;
        let (many, one, many_sig, one_sig) = if swap {
            (&rhs, &lhs, &rsig, &lsig)
        } else {
            (&lhs, &rhs, &lsig, &rsig)
        };
        let one_side = if swap { "left" } else { "right" };
        let mut out: Vec<StepSeries> = Vec::new();
        let mut index: FxHashMap<Lbls, usize> = FxHashMap::default();
        for step in 0..n {
            let mut one_map: FxHashMap<&Lbls, usize> = FxHashMap::default();
            for (j, s) in one.iter().enumerate() {
                if s.pts[step].is_none() {
                    continue;
                }
                if let Some(prev) = one_map.insert(&one_sig[j], j) {
                    return Err(LogqlError::Execution(format!(
                        "found duplicate series on the {one_side} hand-side of the operation: [{}, {}]; many-to-many matching not allowed: matching labels must be unique on one side",
                        label_set_string(&one[prev].labels),
                        label_set_string(&s.labels)
                    )));
                }
            }
            let mut matched: FxHashSet<&Lbls> = FxHashSet::default();
            let mut inserted: FxHashSet<usize> = FxHashSet::default();
            for (i, s) in many.iter().enumerate() {
                let Some(mv) = s.pts[step] else { continue };
                let Some(&j) = one_map.get(&many_sig[i]) else {
                    continue;
                };
                if m.card == Card::OneToOne && !matched.insert(&many_sig[i]) {
                    return Err(LogqlError::Execution(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                    ));
                }
                let ov = one[j].pts[step].unwrap_or(f64::NAN);
                let (lv, rv) = if swap { (ov, mv) } else { (mv, ov) };
                let (v, keep) = scalar_op(op, lv, rv, return_bool);
                if !keep {
                    continue;
                }
                let labels = result_metric(&s.labels, &one[j].labels, m);
                let idx = match index.entry(labels) {
                    Entry::Occupied(o) => *o.get(),
                    Entry::Vacant(vac) => {
                        let labels = vac.key().clone();
                        out.push(StepSeries {
                            labels,
                            pts: vec![None; n],
                        });
                        *vac.insert(out.len() - 1)
                    }
                };
                if !inserted.insert(idx) {
                    return Err(LogqlError::Execution(
                        "multiple matches for labels: grouping labels must ensure unique matches"
                            .into(),
                    ));
                }
                out[idx].pts[step] = Some(v);
            }
        }
        Ok(out)
    }
}

fn merge_duplicates(v: &mut Vec<StepSeries>) {
    let mut idx: FxHashMap<Lbls, usize> = FxHashMap::default();
    let mut out: Vec<StepSeries> = Vec::with_capacity(v.len());
    for s in v.drain(..) {
        match idx.entry(s.labels.clone()) {
            Entry::Occupied(o) => {
                let t = &mut out[*o.get()];
                for (a, b) in t.pts.iter_mut().zip(s.pts) {
                    if a.is_none() {
                        *a = b;
                    }
                }
            }
            Entry::Vacant(vac) => {
                vac.insert(out.len());
                out.push(s);
            }
        }
    }
    *v = out;
}

fn result_metric(many: &Lbls, one: &Lbls, m: &VectorMatching) -> Lbls {
    let mut l: Lbls = many.clone();
    if m.card == Card::OneToOne {
        if m.on {
            l.retain(|(n, _)| m.labels.contains(n));
        } else {
            l.retain(|(n, _)| !m.labels.contains(n));
        }
    }
    for name in &m.include {
        l.retain(|(n, _)| n != name);
        if let Some((_, v)) = one.iter().find(|(n, _)| n == name)
            && !v.is_empty()
        {
            l.push((name.clone(), v.clone()));
        }
    }
    l.sort();
    l
}

fn vector_scalar(
    op: BinOp,
    v: Vec<StepSeries>,
    s: &[f64],
    scalar_left: bool,
    return_bool: bool,
) -> Vec<StepSeries> {
    let mut out = Vec::with_capacity(v.len());
    for mut series in v {
        for (p, sv) in series.pts.iter_mut().zip(s.iter()) {
            let Some(x) = *p else { continue };
            let (lv, rv) = if scalar_left { (*sv, x) } else { (x, *sv) };
            let (mut val, keep) = scalar_op(op, lv, rv, return_bool);
            if op.is_comparison() && !return_bool {
                val = x;
            }
            *p = if keep { Some(val) } else { None };
        }
        if series.pts.iter().any(Option::is_some) {
            out.push(series);
        }
    }
    out
}

/// Applies `op`; for comparisons without `bool` returns (lhs, holds), with `bool` (0/1, true).
fn scalar_op(op: BinOp, l: f64, r: f64, return_bool: bool) -> (f64, bool) {
    let cmp = |b: bool| {
        if return_bool {
            (f64::from(u8::from(b)), true)
        } else {
            (l, b)
        }
    };
    match op {
        BinOp::Add => (l + r, true),
        BinOp::Sub => (l - r, true),
        BinOp::Mul => (l * r, true),
        BinOp::Div => (if r == 0.0 { f64::NAN } else { l / r }, true),
        BinOp::Mod => (if r == 0.0 { f64::NAN } else { l % r }, true),
        BinOp::Pow => (l.powf(r), true),
        BinOp::Eq => cmp(l == r),
        BinOp::Ne => cmp(l != r),
        BinOp::Gt => cmp(l > r),
        BinOp::Ge => cmp(l >= r),
        BinOp::Lt => cmp(l < r),
        BinOp::Le => cmp(l <= r),
        BinOp::And | BinOp::Or | BinOp::Unless => (l, true),
    }
}

fn group_key(labels: &Lbls, g: Option<&Grouping>) -> Lbls {
    match g {
        None => Vec::new(),
        Some(g) if g.without => labels
            .iter()
            .filter(|(n, _)| !g.labels.contains(n))
            .cloned()
            .collect(),
        Some(g) => labels
            .iter()
            .filter(|(n, _)| g.labels.contains(n))
            .cloned()
            .collect(),
    }
}

/// Series labels of a range aggregation: the unwrapped label goes; `by`/`without` reduce the
/// set (error labels always survive so the failure still surfaces).
fn apply_grouping(mut l: Lbls, g: Option<&Grouping>, unwrap_label: Option<&str>) -> Lbls {
    if let Some(u) = unwrap_label {
        l.retain(|(n, _)| n != u);
    }
    match g {
        None => l,
        Some(g) if g.without => {
            l.retain(|(n, _)| {
                !g.labels.contains(n) || n == ERROR_LABEL || n == ERROR_DETAILS_LABEL
            });
            l
        }
        Some(g) => {
            l.retain(|(n, _)| g.labels.contains(n) || n == ERROR_LABEL || n == ERROR_DETAILS_LABEL);
            l
        }
    }
}

fn absent_labels(ms: &[lookout_storage::Matcher]) -> Lbls {
    let mut out: Lbls = Vec::new();
    let mut dup: Vec<String> = Vec::new();
    for m in ms {
        if m.op != MatchOp::Equal {
            continue;
        }
        if out.iter().any(|(n, _)| n == &m.name) {
            dup.push(m.name.clone());
            continue;
        }
        out.push((m.name.clone(), m.value.clone()));
    }
    out.retain(|(n, _)| !dup.contains(n));
    out.sort();
    out
}

fn aggregate(op: VecOp, vals: &[f64]) -> f64 {
    match op {
        VecOp::Sum => vals.iter().sum(),
        VecOp::Avg => vals.iter().sum::<f64>() / vals.len() as f64,
        VecOp::Count => vals.len() as f64,
        VecOp::Min => vals
            .iter()
            .copied()
            .fold(f64::NAN, |m, x| if m.is_nan() || x < m { x } else { m }),
        VecOp::Max => vals
            .iter()
            .copied()
            .fold(f64::NAN, |m, x| if m.is_nan() || x > m { x } else { m }),
        VecOp::Stddev => variance(vals).sqrt(),
        VecOp::Stdvar => variance(vals),
        _ => f64::NAN,
    }
}

fn variance(vals: &[f64]) -> f64 {
    let mut count = 0f64;
    let mut mean = 0f64;
    let mut m2 = 0f64;
    for &v in vals {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        m2 += delta * (v - mean);
    }
    m2 / count
}

fn quantile(q: f64, vals: &mut [f64]) -> f64 {
    if vals.is_empty() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    vals.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = vals.len() as f64;
    let rank = q * (n - 1.0);
    let lo = rank.floor().max(0.0);
    let hi = (lo + 1.0).min(n - 1.0);
    let w = rank - lo;
    vals[lo as usize] * (1.0 - w) + vals[hi as usize] * w
}

fn range_fn(
    op: RangeOp,
    param: Option<f64>,
    s: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    rng: i64,
) -> Option<f64> {
    let secs = rng as f64 / 1e9;
    let vals = s.iter().map(|p| p.1);
    Some(match op {
        RangeOp::CountOverTime => s.len() as f64,
        RangeOp::Rate | RangeOp::BytesRate => vals.sum::<f64>() / secs,
        RangeOp::BytesOverTime | RangeOp::SumOverTime => vals.sum(),
        RangeOp::AvgOverTime => vals.sum::<f64>() / s.len() as f64,
        RangeOp::MinOverTime => vals.fold(f64::NAN, |m, x| if m.is_nan() || x < m { x } else { m }),
        RangeOp::MaxOverTime => vals.fold(f64::NAN, |m, x| if m.is_nan() || x > m { x } else { m }),
        RangeOp::StddevOverTime => variance(&vals.collect::<Vec<_>>()).sqrt(),
        RangeOp::StdvarOverTime => variance(&vals.collect::<Vec<_>>()),
        RangeOp::QuantileOverTime => quantile(param.unwrap_or(0.5), &mut vals.collect::<Vec<_>>()),
        RangeOp::FirstOverTime => s.first()?.1,
        RangeOp::LastOverTime => s.last()?.1,
        RangeOp::AbsentOverTime => return None,
        RangeOp::RateCounter => extrapolated_rate(s, range_start, range_end),
    })
}

/// Prometheus's counter `rate()`: increase with resets added back, extrapolated to the window
/// edges (capped at half an average interval past ~1.1 intervals, and never below zero).
fn extrapolated_rate(s: &[(i64, f64)], range_start: i64, range_end: i64) -> f64 {
    if s.len() < 2 {
        return 0.0;
    }
    let (first, last) = (s[0], s[s.len() - 1]);
    let mut result = last.1 - first.1;
    let mut prev = first.1;
    for p in &s[1..] {
        if p.1 < prev {
            result += prev;
        }
        prev = p.1;
    }
    let sampled = (last.0 - first.0) as f64 / 1e9;
    let mut to_start = (first.0 - range_start) as f64 / 1e9;
    let mut to_end = (range_end - last.0) as f64 / 1e9;
    let avg = sampled / (s.len() - 1) as f64;
    let threshold = avg * 1.1;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let factor = (sampled + to_start + to_end) / sampled / ((range_end - range_start) as f64 / 1e9);
    result * factor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_counter_matches_the_corpus_examples() {
        let s = [(75_000_000_000i64, 30.0), (105_000_000_000, 90.0)];
        assert!((extrapolated_rate(&s, 45_000_000_000, 105_000_000_000) - 1.5).abs() < 1e-9);
        let s = [(150_000_000_000i64, 600.0), (180_000_000_000, 660.0)];
        assert!((extrapolated_rate(&s, 90_000_000_000, 180_000_000_000) - 1.0).abs() < 1e-9);
        assert!((extrapolated_rate(&s, 90_000_000_000, 240_000_000_000) - 0.8).abs() < 1e-9);
    }

    #[test]
    fn quantiles_and_variance() {
        assert_eq!(quantile(0.5, &mut [1.0, 3.0]), 2.0);
        assert_eq!(quantile(1.5, &mut [1.0]), f64::INFINITY);
        assert_eq!(variance(&[2.0, 2.0]), 0.0);
        assert!(variance(&[1.0, f64::INFINITY]).is_nan());
    }
}
