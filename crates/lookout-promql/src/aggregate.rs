//! Aggregation operators (`sum`, `avg`, `topk`, `quantile`, `count_values`, ...), evaluated
//! step by step over a transposed input with per-series group ids computed once.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, TryLockError};

use lookout_storage::{Labels, METRIC_NAME};

use crate::QueryError;
use crate::eval::{Evaluator, Result, StepSeries, Val, format_float, format_g, transpose};
use crate::functions::{kahan_inc, quantile};

/// Running state of one group at one step, 24 bytes (a `sum by` table row of a day of
/// minutes is walked once per input series). `value` is the sum, the minimum or maximum, the
/// incremental mean of `avg` once `incremental`, or the squared deviations of
/// `stddev`/`stdvar`; `kahan` is the compensation of `sum`/`avg`, or the running mean of
/// `stddev`/`stdvar`.
#[derive(Clone, Copy, Default)]
struct Acc {
    value: f64,
    kahan: f64,
    /// Values folded in (a series count: no query holds 2^32 series).
    count: u32,
    incremental: bool,
}

impl Acc {
    /// The count as the float the arithmetic uses.
    #[inline(always)]
    fn n(&self) -> f64 {
        f64::from(self.count)
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn aggregate(
    ev: &mut Evaluator<'_>,
    op: &str,
    input: Vec<StepSeries>,
    without: bool,
    names: &[&str],
    param: Option<Vec<f64>>,
    param_string: Option<String>,
    n: usize,
) -> Result<Val> {
    // Group ids.
    let mut group_index: HashMap<Labels, usize> = HashMap::new();
    let mut group_labels: Vec<Labels> = Vec::new();
    let mut gid: Vec<usize> = Vec::with_capacity(input.len());
    for s in &input {
        let key = if without {
            let mut v = names.to_vec();
            v.push(METRIC_NAME);
            s.labels.without(&v)
        } else {
            s.labels.keep_only(names)
        };
        let id = match group_index.get(&key) {
            Some(&i) => i,
            None => {
                group_labels.push(key.clone());
                group_index.insert(key, group_labels.len() - 1);
                group_labels.len() - 1
            }
        };
        gid.push(id);
    }
    let ngroups = group_labels.len();
    if let Some(simple) = SimpleOp::of(op)
        && ngroups.saturating_mul(n) <= DENSE_CELLS
    {
        return dense_aggregate(ev, simple, &input, &gid, &group_labels, n);
    }
    let steps = transpose(&input, n);

    match op {
        "sum" | "avg" | "min" | "max" | "count" | "group" | "stddev" | "stdvar" => {
            let mut out: Vec<StepSeries> = Vec::new();
            let mut out_of_group: Vec<Option<usize>> = vec![None; ngroups];
            let mut acc: Vec<Acc> = vec![Acc::default(); ngroups];
            let mut touched: Vec<usize> = Vec::new();
            for (step, entries) in steps.iter().enumerate() {
                if step % 256 == 0 {
                    ev.check_deadline()?;
                }
                touched.clear();
                for &(si, f) in entries {
                    let g = gid[si];
                    let a = &mut acc[g];
                    if a.count == 0 {
                        touched.push(g);
                        *a = Acc {
                            count: 1,
                            value: f,
                            kahan: 0.0,
                            incremental: false,
                        };
                        if op == "stddev" || op == "stdvar" {
                            a.value = if f.is_finite() { 0.0 } else { f64::NAN };
                            a.kahan = f;
                        }
                        continue;
                    }
                    a.count = a.count.saturating_add(1);
                    match op {
                        "sum" => {
                            let (v, c) = kahan_inc(f, a.value, a.kahan);
                            a.value = v;
                            a.kahan = c;
                        }
                        "avg" => {
                            if !a.incremental {
                                let (v, c) = kahan_inc(f, a.value, a.kahan);
                                if !v.is_infinite() {
                                    a.value = v;
                                    a.kahan = c;
                                    continue;
                                }
                                a.incremental = true;
                                a.value /= a.n() - 1.0;
                                a.kahan /= a.n() - 1.0;
                            }
                            let q = (a.n() - 1.0) / a.n();
                            let (m, c) = kahan_inc(f / a.n(), q * a.value, q * a.kahan);
                            a.value = m;
                            a.kahan = c;
                        }
                        "min" if a.value > f || a.value.is_nan() => a.value = f,
                        "max" if a.value < f || a.value.is_nan() => a.value = f,
                        "stddev" | "stdvar" => {
                            let delta = f - a.kahan;
                            a.kahan += delta / a.n();
                            a.value += delta * (f - a.kahan);
                        }
                        _ => {}
                    }
                }
                for &g in &touched {
                    let a = acc[g];
                    let v = match op {
                        "sum" => a.value + a.kahan,
                        "avg" => {
                            if a.incremental {
                                a.value + a.kahan
                            } else if a.count == 1 {
                                a.value
                            } else {
                                a.value / a.n() + a.kahan / a.n()
                            }
                        }
                        "count" => a.n(),
                        "group" => 1.0,
                        "stdvar" => a.value / a.n(),
                        "stddev" => (a.value / a.n()).sqrt(),
                        _ => a.value,
                    };
                    let oi = match out_of_group[g] {
                        Some(i) => i,
                        None => {
                            out.push(StepSeries {
                                labels: group_labels[g].clone(),
                                pts: Vec::new(),
                            });
                            out_of_group[g] = Some(out.len() - 1);
                            out.len() - 1
                        }
                    };
                    out[oi].pts.push((step as u32, v));
                    acc[g] = Acc::default();
                }
            }
            Ok(Val::Vector(out))
        }
        "count_values" => {
            let label = param_string.unwrap_or_default();
            if !is_valid_label_name(&label) {
                return Err(QueryError::Execution(format!(
                    "invalid label name {label:?}"
                )));
            }
            let mut out: Vec<StepSeries> = Vec::new();
            let mut index: HashMap<Labels, usize> = HashMap::new();
            for (step, entries) in steps.iter().enumerate() {
                let mut counts: Vec<(Labels, f64)> = Vec::new();
                let mut local: HashMap<Labels, usize> = HashMap::new();
                for &(si, f) in entries {
                    let mut b = group_labels[gid[si]].builder();
                    b.set(label.clone(), format_float(f));
                    let l = b.into_labels();
                    match local.get(&l) {
                        Some(&i) => counts[i].1 += 1.0,
                        None => {
                            local.insert(l.clone(), counts.len());
                            counts.push((l, 1.0));
                        }
                    }
                }
                for (l, c) in counts {
                    let oi = match index.get(&l) {
                        Some(&i) => i,
                        None => {
                            out.push(StepSeries {
                                labels: l.clone(),
                                pts: Vec::new(),
                            });
                            index.insert(l, out.len() - 1);
                            out.len() - 1
                        }
                    };
                    out[oi].pts.push((step as u32, c));
                }
            }
            Ok(Val::Vector(out))
        }
        "quantile" => {
            let q = param.unwrap_or_else(|| vec![f64::NAN; n]);
            let mut out: Vec<StepSeries> = Vec::new();
            let mut out_of_group: Vec<Option<usize>> = vec![None; ngroups];
            let mut warned = false;
            for (step, entries) in steps.iter().enumerate() {
                if entries.is_empty() {
                    continue;
                }
                let qv = q[step];
                if !(0.0..=1.0).contains(&qv) && !warned {
                    ev.warn(format!(
                        "quantile value should be between 0 and 1, got {}",
                        format_g(qv)
                    ));
                    warned = true;
                }
                let mut vals: Vec<Vec<f64>> = vec![Vec::new(); ngroups];
                let mut order: Vec<usize> = Vec::new();
                for &(si, f) in entries {
                    let g = gid[si];
                    if vals[g].is_empty() {
                        order.push(g);
                    }
                    vals[g].push(f);
                }
                for g in order {
                    let v = quantile(qv, &mut vals[g]);
                    let oi = match out_of_group[g] {
                        Some(i) => i,
                        None => {
                            out.push(StepSeries {
                                labels: group_labels[g].clone(),
                                pts: Vec::new(),
                            });
                            out_of_group[g] = Some(out.len() - 1);
                            out.len() - 1
                        }
                    };
                    out[oi].pts.push((step as u32, v));
                }
            }
            Ok(Val::Vector(out))
        }
        "topk" | "bottomk" | "limitk" => {
            let k = param.unwrap_or_else(|| vec![0.0; n]);
            let mut out: Vec<StepSeries> = Vec::new();
            let mut out_of_series: Vec<Option<usize>> = vec![None; input.len()];
            for (step, entries) in steps.iter().enumerate() {
                if entries.is_empty() {
                    continue;
                }
                let kv = k[step];
                if kv.is_nan() {
                    return Err(QueryError::Execution("Parameter value is NaN".into()));
                }
                let kk = if kv >= 9.2e18 {
                    usize::MAX
                } else if kv < 1.0 {
                    0
                } else {
                    kv as usize
                };
                if kk == 0 {
                    continue;
                }
                let mut members: Vec<Vec<(usize, f64)>> = vec![Vec::new(); ngroups];
                let mut order: Vec<usize> = Vec::new();
                for &(si, f) in entries {
                    let g = gid[si];
                    if members[g].is_empty() {
                        order.push(g);
                    }
                    members[g].push((si, f));
                }
                for g in order {
                    let m = &mut members[g];
                    match op {
                        "topk" => m.sort_by(|a, b| cmp_desc_nan_last(a.1, b.1)),
                        "bottomk" => m.sort_by(|a, b| cmp_asc_nan_last(a.1, b.1)),
                        _ => {}
                    }
                    m.truncate(kk);
                    for &(si, f) in m.iter() {
                        let oi = match out_of_series[si] {
                            Some(i) => i,
                            None => {
                                out.push(StepSeries {
                                    labels: input[si].labels.clone(),
                                    pts: Vec::new(),
                                });
                                out_of_series[si] = Some(out.len() - 1);
                                out.len() - 1
                            }
                        };
                        out[oi].pts.push((step as u32, f));
                    }
                }
            }
            Ok(Val::Vector(out))
        }
        other => Err(QueryError::Execution(format!(
            "aggregation {other:?} is not supported"
        ))),
    }
}

/// Largest `groups × steps` accumulator table aggregated series by series (beyond it, the
/// step-by-step path over a transposed input is used).
const DENSE_CELLS: usize = 1 << 20;

/// The aggregations folded with one running [`Acc`] per group and step.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SimpleOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Group,
    Stddev,
    Stdvar,
}

impl SimpleOp {
    const ALL: [SimpleOp; 8] = [
        SimpleOp::Sum,
        SimpleOp::Avg,
        SimpleOp::Min,
        SimpleOp::Max,
        SimpleOp::Count,
        SimpleOp::Group,
        SimpleOp::Stddev,
        SimpleOp::Stdvar,
    ];

    /// The PromQL name of the aggregation.
    fn name(self) -> &'static str {
        match self {
            SimpleOp::Sum => "sum",
            SimpleOp::Avg => "avg",
            SimpleOp::Min => "min",
            SimpleOp::Max => "max",
            SimpleOp::Count => "count",
            SimpleOp::Group => "group",
            SimpleOp::Stddev => "stddev",
            SimpleOp::Stdvar => "stdvar",
        }
    }

    fn of(op: &str) -> Option<SimpleOp> {
        Self::ALL.into_iter().find(|o| o.name() == op)
    }

    /// Folds `f` into `a` (same arithmetic, in the same order, as the step-by-step path).
    #[inline(always)]
    fn add(self, a: &mut Acc, f: f64) {
        if a.count == 0 {
            *a = Acc {
                count: 1,
                value: f,
                kahan: 0.0,
                incremental: false,
            };
            if matches!(self, SimpleOp::Stddev | SimpleOp::Stdvar) {
                a.value = if f.is_finite() { 0.0 } else { f64::NAN };
                a.kahan = f;
            }
            return;
        }
        a.count = a.count.saturating_add(1);
        match self {
            SimpleOp::Sum => {
                let (v, c) = kahan_inc(f, a.value, a.kahan);
                a.value = v;
                a.kahan = c;
            }
            SimpleOp::Avg => {
                if !a.incremental {
                    let (v, c) = kahan_inc(f, a.value, a.kahan);
                    if !v.is_infinite() {
                        a.value = v;
                        a.kahan = c;
                        return;
                    }
                    a.incremental = true;
                    a.value /= a.n() - 1.0;
                    a.kahan /= a.n() - 1.0;
                }
                let q = (a.n() - 1.0) / a.n();
                let (m, c) = kahan_inc(f / a.n(), q * a.value, q * a.kahan);
                a.value = m;
                a.kahan = c;
            }
            SimpleOp::Min if a.value > f || a.value.is_nan() => a.value = f,
            SimpleOp::Max if a.value < f || a.value.is_nan() => a.value = f,
            SimpleOp::Stddev | SimpleOp::Stdvar => {
                let delta = f - a.kahan;
                a.kahan += delta / a.n();
                a.value += delta * (f - a.kahan);
            }
            _ => {}
        }
    }

    fn value(self, a: &Acc) -> f64 {
        match self {
            SimpleOp::Sum => a.value + a.kahan,
            SimpleOp::Avg => {
                if a.incremental {
                    a.value + a.kahan
                } else if a.count == 1 {
                    a.value
                } else {
                    a.value / a.n() + a.kahan / a.n()
                }
            }
            SimpleOp::Count => a.n(),
            SimpleOp::Group => 1.0,
            SimpleOp::Stdvar => a.value / a.n(),
            SimpleOp::Stddev => (a.value / a.n()).sqrt(),
            SimpleOp::Min | SimpleOp::Max => a.value,
        }
    }
}

/// Folds `pts` into `row` (cell = step), with the operation's code specialised per loop.
fn fold_row(op: SimpleOp, row: &mut [Acc], pts: &[(u32, f64)]) {
    #[inline(always)]
    fn each(op: SimpleOp, row: &mut [Acc], pts: &[(u32, f64)]) {
        let (Some(&(first, _)), Some(&(last, _))) = (pts.first(), pts.last()) else {
            return;
        };
        let (first, last) = (first as usize, last as usize);
        if last.checked_sub(first) == Some(pts.len() - 1) && last < row.len() {
            // Steps are sorted and distinct, so a run as long as its span has a value at
            // every step in it: step first + k is pts[k] (no per-value index or bounds check).
            for (cell, &(_, f)) in row[first..=last].iter_mut().zip(pts) {
                op.add(cell, f);
            }
        } else {
            for &(step, f) in pts {
                if let Some(cell) = row.get_mut(step as usize) {
                    op.add(cell, f);
                }
            }
        }
    }
    match op {
        SimpleOp::Sum => each(SimpleOp::Sum, row, pts),
        SimpleOp::Avg => each(SimpleOp::Avg, row, pts),
        SimpleOp::Min => each(SimpleOp::Min, row, pts),
        SimpleOp::Max => each(SimpleOp::Max, row, pts),
        SimpleOp::Count => each(SimpleOp::Count, row, pts),
        SimpleOp::Group => each(SimpleOp::Group, row, pts),
        SimpleOp::Stddev => each(SimpleOp::Stddev, row, pts),
        SimpleOp::Stdvar => each(SimpleOp::Stdvar, row, pts),
    }
}

/// `sum`/`avg`/... without transposing: each input series is folded into its group's row of
/// a `groups × steps` table. Every cell sees its values in input order, as the step-by-step
/// path does, and groups are emitted in the order that path creates them (by the step, then
/// the input series, of their first value).
fn dense_aggregate(
    ev: &mut Evaluator<'_>,
    op: SimpleOp,
    input: &[StepSeries],
    gid: &[usize],
    group_labels: &[Labels],
    n: usize,
) -> Result<Val> {
    let ngroups = group_labels.len();
    // Output order: by the step, then the input series, of each group's first value.
    let mut first: Vec<(u32, usize)> = vec![(u32::MAX, usize::MAX); ngroups];
    for (si, s) in input.iter().enumerate() {
        let g = gid[si];
        if let Some(&(step, _)) = s.pts.first()
            && step < first[g].0
        {
            first[g] = (step, si);
        }
    }
    // Cells are independent, so contiguous runs of steps are folded on separate cores;
    // within a cell the input order, hence the arithmetic, is the serial one.
    let total: usize = input.iter().map(|s| s.pts.len()).sum();
    let parts = (crate::par::cores() * 2).clamp(1, n.max(1));
    let bounds: Vec<(usize, usize)> = (0..parts)
        .map(|k| (n * k / parts, n * (k + 1) / parts))
        .collect();
    let deadline = ev.deadline;
    let tables = crate::par::map_dynamic(
        &bounds,
        total,
        |&(lo, hi)| -> Result<(usize, usize, Vec<Acc>)> {
            let width = hi - lo;
            let mut acc: Vec<Acc> = vec![Acc::default(); ngroups * width];
            for (si, s) in input.iter().enumerate() {
                if si % 256 == 0 && std::time::Instant::now() > deadline {
                    return Err(QueryError::Timeout("expression evaluation"));
                }
                let g = gid[si];
                let row = &mut acc[g * width..(g + 1) * width];
                // A series with a value at every step has step k at index k (no search,
                // which costs a cache miss per probe on series written by other threads).
                let (a, b) = if s.pts.len() == n {
                    (lo, hi)
                } else {
                    (
                        s.pts.partition_point(|p| (p.0 as usize) < lo),
                        s.pts.partition_point(|p| (p.0 as usize) < hi),
                    )
                };
                for &(step, f) in &s.pts[a..b] {
                    if let Some(cell) = row.get_mut(step as usize - lo) {
                        op.add(cell, f);
                    }
                }
            }
            Ok((lo, width, acc))
        },
    );
    let mut tables_flat = Vec::with_capacity(parts);
    for t in tables {
        tables_flat.push(t?);
    }
    let mut order: Vec<usize> = (0..ngroups).filter(|&g| first[g].0 != u32::MAX).collect();
    order.sort_by_key(|&g| first[g]);
    let mut out = Vec::with_capacity(order.len());
    for g in order {
        let mut pts: Vec<(u32, f64)> = Vec::new();
        for (lo, width, acc) in &tables_flat {
            let row = &acc[g * width..(g + 1) * width];
            pts.extend(
                row.iter()
                    .enumerate()
                    .filter(|(_, a)| a.count != 0)
                    .map(|(step, a)| ((lo + step) as u32, op.value(a))),
            );
        }
        out.push(StepSeries {
            labels: group_labels[g].clone(),
            pts,
        });
    }
    Ok(Val::Vector(out))
}

/// `sum`/`avg`/... fused with the evaluation of its input (see
/// `functions::stream_call_into`): series arrive from several threads in any order, each
/// with its input index, and are folded into their group's row of a `groups × steps` table
/// in index order — a series that arrives early waits in `pending` until all before it are
/// folded — so every cell sees the same additions in the same order as [`dense_aggregate`]
/// and the results are bit-identical, while the step values of only a few series exist at
/// once. Whichever thread finds the table free folds; the others only queue.
pub(crate) struct StreamFold<'a> {
    spec: FoldSpec<'a>,
    /// Evaluated series not folded yet, by input index (`None`: no output).
    pending: Mutex<BTreeMap<usize, Option<StepSeries>>>,
    /// Input index expected next (mirrors `table.next`, read without the table lock).
    next: AtomicUsize,
    table: Mutex<FoldTable>,
}

/// What a [`StreamFold`] computes.
#[derive(Clone, Copy)]
struct FoldSpec<'a> {
    op: SimpleOp,
    without: bool,
    names: &'a [&'a str],
    n: usize,
}

#[derive(Default)]
struct FoldTable {
    next: usize,
    /// Series folded (or spilled) so far: their input order.
    ordinal: usize,
    index: HashMap<Labels, Slot>,
    groups: Vec<FoldGroup>,
    /// Series of groups that did not fit the table ([`DENSE_CELLS`]), in input order,
    /// aggregated at the end by the general path.
    spilled: Vec<StepSeries>,
    /// `(first step, ordinal)` of each spilled group's first value.
    spilled_first: HashMap<Labels, (u32, usize)>,
}

#[derive(Clone, Copy)]
enum Slot {
    Row(usize),
    Spilled,
}

struct FoldGroup {
    labels: Labels,
    row: Vec<Acc>,
    /// `(first step, ordinal)` of the group's first value: the output order.
    first: (u32, usize),
}

/// Whether [`StreamFold`] folds aggregation `op`.
pub(crate) fn foldable(op: &str) -> bool {
    SimpleOp::of(op).is_some()
}

impl<'a> StreamFold<'a> {
    /// A fold of `op` (one of the [`SimpleOp`]s, else `None`) grouping `by`/`without` the
    /// `names` over `n` steps.
    pub(crate) fn new(op: &str, without: bool, names: &'a [&'a str], n: usize) -> Option<Self> {
        Some(StreamFold {
            spec: FoldSpec {
                op: SimpleOp::of(op)?,
                without,
                names,
                n,
            },
            pending: Mutex::new(BTreeMap::new()),
            next: AtomicUsize::new(0),
            table: Mutex::new(FoldTable::default()),
        })
    }

    /// The labels a series pushed into this fold carries: its group's, made from the input
    /// series' `labels` (metric name included when `keep_name`, as the range function's output
    /// keeps it). Computed by the pushing thread, so the fold only looks groups up.
    pub(crate) fn group_key(&self, labels: &Labels, keep_name: bool) -> Labels {
        if self.spec.without {
            let mut v = self.spec.names.to_vec();
            v.push(METRIC_NAME);
            labels.without(&v)
        } else if keep_name || !self.spec.names.contains(&METRIC_NAME) {
            labels.keep_only(self.spec.names)
        } else {
            let v: Vec<&str> = self
                .spec
                .names
                .iter()
                .copied()
                .filter(|&n| n != METRIC_NAME)
                .collect();
            labels.keep_only(&v)
        }
    }

    /// Hands over input series `i` (`None`: it has no values) whose labels are its
    /// [`group_key`](Self::group_key). Folds whatever is ready when the table is free;
    /// otherwise the thread folding now takes it.
    pub(crate) fn push(&self, i: usize, series: Option<StepSeries>) {
        lock(&self.pending).insert(i, series);
        loop {
            let mut table = match self.table.try_lock() {
                Ok(t) => t,
                Err(TryLockError::Poisoned(e)) => e.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            };
            loop {
                let item = {
                    let mut pending = lock(&self.pending);
                    match pending.first_key_value() {
                        Some((&k, _)) if k == table.next => pending.pop_first(),
                        _ => None,
                    }
                };
                let Some((k, series)) = item else { break };
                table.next = k + 1;
                if let Some(s) = series {
                    self.spec.fold(&mut table, s);
                }
            }
            self.next.store(table.next, Ordering::Release);
            drop(table);
            // A series queued while this thread held the table, by a thread that then
            // found it taken: fold it too.
            let ready = lock(&self.pending)
                .first_key_value()
                .is_some_and(|(&k, _)| k == self.next.load(Ordering::Acquire));
            if !ready {
                return;
            }
        }
    }
}

impl FoldSpec<'_> {
    /// Folds `s`, whose labels are its group's ([`StreamFold::group_key`]).
    fn fold(&self, t: &mut FoldTable, s: StepSeries) {
        let key = &s.labels;
        let ordinal = t.ordinal;
        t.ordinal += 1;
        let Some(&(first_step, _)) = s.pts.first() else {
            return;
        };
        let slot = match t.index.get(key) {
            Some(&slot) => slot,
            None => {
                let slot = if (t.groups.len() + 1).saturating_mul(self.n) <= DENSE_CELLS {
                    t.groups.push(FoldGroup {
                        labels: key.clone(),
                        row: vec![Acc::default(); self.n],
                        first: (first_step, ordinal),
                    });
                    Slot::Row(t.groups.len() - 1)
                } else {
                    Slot::Spilled
                };
                t.index.insert(key.clone(), slot);
                slot
            }
        };
        match slot {
            Slot::Row(g) => {
                let group = &mut t.groups[g];
                if first_step < group.first.0 {
                    group.first = (first_step, ordinal);
                }
                fold_row(self.op, &mut group.row, &s.pts);
            }
            Slot::Spilled => {
                let first = t
                    .spilled_first
                    .entry(key.clone())
                    .or_insert((first_step, ordinal));
                if first_step < first.0 {
                    *first = (first_step, ordinal);
                }
                t.spilled.push(s);
            }
        }
    }
}

impl StreamFold<'_> {
    /// The aggregation's result once every series has been pushed: what is still pending
    /// (after a skipped index) is folded in index order.
    pub(crate) fn finish(self, ev: &mut Evaluator<'_>) -> Result<Val> {
        let spec = self.spec;
        let op = spec.op;
        let mut table = self.table.into_inner().unwrap_or_else(|e| e.into_inner());
        let pending = self.pending.into_inner().unwrap_or_else(|e| e.into_inner());
        for s in pending.into_values().flatten() {
            spec.fold(&mut table, s);
        }
        let mut out: Vec<((u32, usize), StepSeries)> = Vec::with_capacity(table.groups.len());
        for g in table.groups {
            let pts: Vec<(u32, f64)> = g
                .row
                .iter()
                .enumerate()
                .filter(|(_, a)| a.count != 0)
                .map(|(step, a)| (step as u32, op.value(a)))
                .collect();
            out.push((
                g.first,
                StepSeries {
                    labels: g.labels,
                    pts,
                },
            ));
        }
        if !table.spilled.is_empty() {
            let opname = op.name();
            let Val::Vector(rest) = aggregate(
                ev,
                opname,
                table.spilled,
                spec.without,
                spec.names,
                None,
                None,
                spec.n,
            )?
            else {
                return Err(QueryError::Execution(
                    "aggregation result not a vector".into(),
                ));
            };
            for s in rest {
                let first = table
                    .spilled_first
                    .get(&s.labels)
                    .copied()
                    .unwrap_or((u32::MAX, usize::MAX));
                out.push((first, s));
            }
        }
        out.sort_by_key(|(first, _)| *first);
        Ok(Val::Vector(out.into_iter().map(|(_, s)| s).collect()))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn cmp_desc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
    }
}

fn cmp_asc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Prometheus label names: `[a-zA-Z_][a-zA-Z0-9_]*` (legacy) — UTF-8 names are accepted by
/// Prometheus 3 too, so only emptiness and invalid UTF-8 are refused here.
pub(crate) fn is_valid_label_name(s: &str) -> bool {
    !s.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of consecutive steps (folded by slice) and scattered steps (folded one by one)
    /// give the same cells, bit for bit, for every simple op, runs at either end included.
    #[test]
    fn fold_row_runs_match_scattered_folding() {
        let ops = SimpleOp::ALL;
        let n = 40;
        let inputs: Vec<Vec<(u32, f64)>> = vec![
            (5..20).map(|k| (k, k as f64 * 0.1)).collect(),
            (0..n as u32).map(|k| (k, 1e300 - k as f64)).collect(),
            (30..n as u32).map(|k| (k, -(k as f64) / 3.0)).collect(),
            vec![(3, 1.5), (7, f64::NAN), (8, 2.0), (39, f64::INFINITY)],
            vec![(12, 4.0)],
            Vec::new(),
        ];
        for op in ops {
            let mut by_run = vec![Acc::default(); n];
            let mut by_value = vec![Acc::default(); n];
            for pts in &inputs {
                fold_row(op, &mut by_run, pts);
                for &(step, f) in pts {
                    op.add(&mut by_value[step as usize], f);
                }
            }
            for (a, b) in by_run.iter().zip(&by_value) {
                assert_eq!(op.value(a).to_bits(), op.value(b).to_bits());
                assert_eq!(a.count, b.count);
            }
        }
    }

    /// A fold table cell stays at 24 bytes (three of them per 64-byte line pair less than
    /// the 40 of the five-field version): the `sum by` fold walks a row per input series.
    #[test]
    fn acc_is_24_bytes() {
        assert_eq!(std::mem::size_of::<Acc>(), 24);
    }

    fn test_input(nseries: usize, n: usize) -> Vec<StepSeries> {
        (0..nseries)
            .map(|i| StepSeries {
                labels: Labels::from_pairs([("g", (i * 3 % 7).to_string()), ("i", i.to_string())]),
                pts: (0..n)
                    .filter(|k| (k + i) % 13 != 0 && (i % 7 != 3 || *k > n / 3))
                    .map(|k| {
                        let v = match (i * 31 + k * 7) % 997 {
                            5 => f64::INFINITY,
                            6 => f64::NAN,
                            7 => -0.0,
                            _ => ((i * 7919 + k * 104_729) % 10_007) as f64 / 3.7 + 1e9,
                        };
                        (k as u32, v)
                    })
                    .collect(),
            })
            .collect()
    }

    fn bits(v: &Val) -> Vec<(Labels, Vec<(u32, u64)>)> {
        let Val::Vector(v) = v else {
            panic!("not a vector")
        };
        v.iter()
            .map(|s| {
                let pts = s.pts.iter().map(|p| (p.0, p.1.to_bits())).collect();
                (s.labels.clone(), pts)
            })
            .collect()
    }

    /// Pushes `input` into a [`StreamFold`] from two threads in scrambled order (with some
    /// indices skipped and some series empty) and compares with [`aggregate`] over the
    /// same series in order: same groups, same order, same bits.
    fn stream_matches_aggregate(op: &str, without: bool, names: &[&str], nseries: usize, n: usize) {
        let input = test_input(nseries, n);
        let mem = lookout_storage::memory::MemStorage::new();
        let mut ev = crate::Engine::default().evaluator(&mem, 0, 0);
        let fold = StreamFold::new(op, without, names, n).unwrap();
        // Index 2k+1 for series k (gaps between), every 5th pushed as "no output".
        let order: Vec<usize> = (0..nseries).map(|k| (k * 37 + 11) % nseries).collect();
        let (a, b) = order.split_at(nseries / 2);
        std::thread::scope(|s| {
            for part in [a, b] {
                let (fold, input) = (&fold, &input);
                s.spawn(move || {
                    for &k in part.iter().rev() {
                        let series = (k % 5 != 4).then(|| StepSeries {
                            labels: fold.group_key(&input[k].labels, false),
                            pts: input[k].pts.clone(),
                        });
                        fold.push(2 * k + 1, series);
                    }
                });
            }
        });
        let got = fold.finish(&mut ev).unwrap();
        let kept: Vec<StepSeries> = (0..nseries)
            .filter(|k| k % 5 != 4)
            .map(|k| input[k].clone())
            .collect();
        let want = aggregate(&mut ev, op, kept, without, names, None, None, n).unwrap();
        assert_eq!(bits(&got), bits(&want), "{op}");
    }

    #[test]
    fn stream_fold_matches_aggregate() {
        for op in [
            "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar",
        ] {
            stream_matches_aggregate(op, false, &["g"], 120, 300);
        }
        stream_matches_aggregate("sum", true, &["i"], 60, 200);
        stream_matches_aggregate("sum", false, &[], 60, 200);
    }

    /// More groups than the table holds: the rest are spilled to the general path and the
    /// output order is still by each group's first value.
    #[test]
    fn stream_fold_spills_groups_beyond_the_table() {
        let n = 1000;
        let nseries = DENSE_CELLS / n + 40;
        stream_matches_aggregate("sum", false, &["i"], nseries, n);
    }

    /// The step-parallel fold gives every cell exactly the serial fold's value (big enough
    /// input for several workers; gaps, so groups start at different steps).
    #[test]
    fn dense_aggregate_matches_a_serial_fold() {
        let (nseries, n, ngroups) = (300usize, 1000usize, 5usize);
        let input: Vec<StepSeries> = (0..nseries)
            .map(|i| StepSeries {
                labels: Labels::from_pairs([("i", i.to_string())]),
                pts: (0..n)
                    .filter(|k| (k + i) % 13 != 0 && (i % 7 != 3 || *k > 400))
                    .map(|k| {
                        let v = match (i * 31 + k * 7) % 997 {
                            5 => f64::INFINITY,
                            6 => f64::NAN,
                            7 => -0.0,
                            8 => f64::NEG_INFINITY,
                            _ => ((i * 7919 + k * 104_729) % 10_007) as f64 / 3.7 + 1e9,
                        };
                        (k as u32, v)
                    })
                    .collect(),
            })
            .collect();
        let gid: Vec<usize> = (0..nseries).map(|i| (i * 3) % ngroups).collect();
        let labels: Vec<Labels> = (0..ngroups)
            .map(|g| Labels::from_pairs([("g", g.to_string())]))
            .collect();
        let mem = lookout_storage::memory::MemStorage::new();
        for op in [
            SimpleOp::Sum,
            SimpleOp::Avg,
            SimpleOp::Stddev,
            SimpleOp::Max,
        ] {
            let mut ev = crate::Engine::default().evaluator(&mem, 0, 0);
            let Val::Vector(got) = dense_aggregate(&mut ev, op, &input, &gid, &labels, n).unwrap()
            else {
                panic!("not a vector");
            };
            assert_eq!(got.len(), ngroups);
            for out in &got {
                let g = labels.iter().position(|l| *l == out.labels).unwrap();
                let mut want = Vec::new();
                for step in 0..n {
                    let mut a = Acc::default();
                    for (si, s) in input.iter().enumerate() {
                        if gid[si] == g
                            && let Some(&(_, f)) = s.pts.iter().find(|p| p.0 as usize == step)
                        {
                            op.add(&mut a, f);
                        }
                    }
                    if a.count != 0 {
                        want.push((step as u32, op.value(&a).to_bits()));
                    }
                }
                let got: Vec<(u32, u64)> = out.pts.iter().map(|p| (p.0, p.1.to_bits())).collect();
                assert_eq!(got, want);
            }
        }
    }
}
