//! PromQL functions. Range-vector functions slide a window per series across all steps;
//! instant-vector functions map each series' points.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use lookout_storage::{Labels, METRIC_NAME, Sample, Series, is_stale_nan};
use promql_parser::parser::{Call, Expr};

use crate::QueryError;
use crate::eval::{
    Evaluator, Range, RangeData, Result, StepSeries, Val, Window, format_g, merge_same_labels,
    unwrap_paren,
};

/// Neumaier-improved Kahan summation step: returns the new sum and compensation.
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    // Both candidates are computed and one is selected (no data-dependent branch: which
    // operand is larger varies from value to value, and a mispredicted jump costs more).
    let big_sum = (sum - t) + inc;
    let big_inc = (inc - t) + sum;
    let d = if sum.abs() >= inc.abs() {
        big_sum
    } else {
        big_inc
    };
    let c = if t.is_infinite() { 0.0 } else { c + d };
    (t, c)
}

/// The φ-quantile of `values` (sorted in place), Prometheus's interpolation.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Least-squares fit of the samples; x is seconds relative to `intercept_t`.
pub(crate) fn linear_regression(samples: &[Sample], intercept_t: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init_y = samples[0].v;
    let mut const_y = true;
    for (i, s) in samples.iter().enumerate() {
        if const_y && i > 0 && s.v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (s.t - intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(s.v, sy, cy);
        (sxy, cxy) = kahan_inc(x * s.v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

/// Prometheus's extrapolated rate/increase/delta over one window `(range_start, range_end]`.
pub(crate) fn extrapolated_rate(
    samples: &[Sample],
    range_start: i64,
    range_end: i64,
    range_ms: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if is_counter {
        extrapolated_rate_scan(samples, range_start, range_end, range_ms, true, is_rate)
    } else {
        extrapolated_rate_inner(
            samples,
            range_start,
            range_end,
            range_ms,
            false,
            false,
            is_rate,
        )
    }
}

/// Counter rate/increase; `may_reset == false` promises the window has no counter reset, so
/// the per-sample scan for resets is skipped.
pub(crate) fn extrapolated_rate_scan(
    samples: &[Sample],
    range_start: i64,
    range_end: i64,
    range_ms: i64,
    may_reset: bool,
    is_rate: bool,
) -> Option<f64> {
    extrapolated_rate_inner(
        samples,
        range_start,
        range_end,
        range_ms,
        true,
        may_reset,
        is_rate,
    )
}

fn extrapolated_rate_inner(
    samples: &[Sample],
    range_start: i64,
    range_end: i64,
    range_ms: i64,
    is_counter: bool,
    scan_resets: bool,
    is_rate: bool,
) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let first = samples[0];
    let last = samples[samples.len() - 1];
    let mut result = last.v - first.v;
    if scan_resets {
        let mut prev = first.v;
        for s in &samples[1..] {
            if s.v < prev {
                result += prev;
            }
            prev = s.v;
        }
    }
    let mut dur_to_start = (first.t - range_start) as f64 / 1000.0;
    let mut dur_to_end = (range_end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg = sampled / (samples.len() - 1) as f64;
    let threshold = avg * 1.1;
    if dur_to_start >= threshold {
        dur_to_start = avg / 2.0;
    }
    if is_counter && result > 0.0 && first.v >= 0.0 {
        let dur_to_zero = sampled * (first.v / result);
        if dur_to_zero < dur_to_start {
            dur_to_start = dur_to_zero;
        }
    }
    if dur_to_end >= threshold {
        dur_to_end = avg / 2.0;
    }
    let mut factor = (sampled + dur_to_start + dur_to_end) / sampled;
    if is_rate {
        factor /= range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

/// The part of a counter window's extrapolation that depends only on sample times (the
/// window's first and last sample, their count) and the range: the same for most windows of
/// a regularly scraped series, so it is kept from the last window instead of recomputed
/// (six divisions).
#[derive(Clone, Copy, Default)]
pub(crate) struct RateMemo {
    /// `(first.t - range_start, range_end - last.t, last.t - first.t, samples)`.
    key: (i64, i64, i64, usize),
    valid: bool,
    sampled: f64,
    /// Seconds to extrapolate at each end, before the zero-crossing rule.
    dur_to_start: f64,
    dur_to_end: f64,
    /// `(sampled + dur_to_start + dur_to_end) / sampled`, divided by the range in seconds
    /// for `rate`.
    factor: f64,
}

/// [`extrapolated_rate_scan`] for a counter window known to hold no reset (`may_reset ==
/// false`), with the time-only arithmetic memoised in `memo`: the same operations on the
/// same operands, so the result is bit-identical.
#[allow(clippy::too_many_arguments)]
pub(crate) fn counter_rate_no_reset(
    first: Sample,
    last: Sample,
    len: usize,
    range_start: i64,
    range_end: i64,
    range_ms: i64,
    is_rate: bool,
    memo: &mut RateMemo,
) -> Option<f64> {
    if len < 2 {
        return None;
    }
    let key = (
        first.t - range_start,
        range_end - last.t,
        last.t - first.t,
        len,
    );
    memo.refresh(key, range_ms, is_rate);
    Some(memo.apply(first.v, last.v, range_ms, is_rate))
}

impl RateMemo {
    /// Makes the memo hold `key`'s arithmetic (`key.3 >= 2` samples), unless it does.
    #[inline]
    fn refresh(&mut self, key: (i64, i64, i64, usize), range_ms: i64, is_rate: bool) {
        if self.valid && self.key == key {
            return;
        }
        let len = key.3;
        let dur_to_start = key.0 as f64 / 1000.0;
        let dur_to_end = key.1 as f64 / 1000.0;
        let sampled = key.2 as f64 / 1000.0;
        let avg = sampled / (len - 1) as f64;
        let threshold = avg * 1.1;
        let dur_to_start = if dur_to_start >= threshold {
            avg / 2.0
        } else {
            dur_to_start
        };
        let dur_to_end = if dur_to_end >= threshold {
            avg / 2.0
        } else {
            dur_to_end
        };
        let mut factor = (sampled + dur_to_start + dur_to_end) / sampled;
        if is_rate {
            factor /= range_ms as f64 / 1000.0;
        }
        *self = RateMemo {
            key,
            valid: true,
            sampled,
            dur_to_start,
            dur_to_end,
            factor,
        };
    }

    /// The rate/increase of a reset-free window whose key the memo holds, from its first and
    /// last value.
    #[inline(always)]
    fn apply(&self, first: f64, last: f64, range_ms: i64, is_rate: bool) -> f64 {
        let result = last - first;
        if result > 0.0
            && first >= 0.0
            && !zero_point_is_far(first, result, self.sampled, self.dur_to_start)
        {
            // Extrapolating to the start could cross zero: the exact rule, unmemoised.
            let dur_to_zero = self.sampled * (first / result);
            if dur_to_zero < self.dur_to_start {
                let mut factor = (self.sampled + dur_to_zero + self.dur_to_end) / self.sampled;
                if is_rate {
                    factor /= range_ms as f64 / 1000.0;
                }
                return result * factor;
            }
        }
        result * self.factor
    }
}

/// rate/increase of every window of a series without counter resets or stale markers, for
/// a series whose timestamps are `t0 + k * s` with `s = t1 - t0` dividing the query step (no
/// `@`): each window's sample bounds `floor((x - t0) / s) + 1` then move by `step / s`
/// samples a step, so they are counted instead of searched, and every window whose bounds
/// lie inside the series has the same extrapolation key (offsets to the window ends, sample
/// count), so its memo is filled once and applied without comparing keys. Each such window
/// checks the four timestamps around its bounds against that arithmetic, which proves both
/// for it on sorted samples; the first mismatch (an irregular series) returns `None`, as do
/// the preconditions failing, and the caller takes the general path. Windows at the series'
/// ends (and all windows when the range spans under two samples) search their bounds. The same arithmetic as [`counter_rate_no_reset`] per window, so
/// bit-identical results.
fn counter_windows_regular(
    samples: &[Sample],
    rd: &Window,
    r: &Range,
    is_rate: bool,
) -> Option<Vec<(u32, f64)>> {
    let (Some(f0), Some(f1), Some(fl)) = (samples.first(), samples.get(1), samples.last()) else {
        return None;
    };
    let (t0, tl) = (f0.t, fl.t);
    let s = f1.t.checked_sub(t0)?;
    if s <= 0 || r.step <= 0 || r.step % s != 0 || rd.at.is_some() {
        return None;
    }
    let n = i64::try_from(samples.len()).ok()?;
    let q = r.step / s;
    let steps = i64::try_from(r.steps()).ok()?;
    let te0 = rd.eval_time(r.ts(0));
    // Index of the first sample after `x` if the series is regular, unclamped.
    let after = |x: i64| -> Option<i64> { Some(x.checked_sub(t0)?.div_euclid(s) + 1) };
    let hu0 = after(te0)?;
    let lu0 = after(te0.checked_sub(rd.range)?)?;
    let span = steps.checked_mul(q)?;
    hu0.checked_add(span)?;
    lu0.checked_add(span)?;
    let len = hu0 - lu0;
    // Inner steps: lo - 1 and hi exist (lu >= 1, hu <= n - 1).
    let ia = if lu0 >= 1 { 0 } else { (1 - lu0 + q - 1) / q };
    let ib = if hu0 > n - 1 {
        0
    } else {
        ((n - 1 - hu0) / q + 1).min(steps)
    };
    let (ia, ib) = (ia.min(steps), ib.max(ia.min(steps)));
    let mut pts: Vec<(u32, f64)> = Vec::with_capacity(r.steps());
    let mut edge = RateMemo::default();
    let mut edge_window = |i: i64, pts: &mut Vec<(u32, f64)>| {
        let te = rd.eval_time(r.ts(i as usize));
        let rs = te - rd.range;
        if te < t0 || rs >= tl {
            return;
        }
        let hi = samples.partition_point(|x| x.t <= te);
        let lo = samples[..hi].partition_point(|x| x.t <= rs);
        if hi >= lo + 2 {
            let (first, last) = (samples[lo], samples[hi - 1]);
            let key = (first.t - rs, te - last.t, last.t - first.t, hi - lo);
            edge.refresh(key, rd.range, is_rate);
            pts.push((i as u32, edge.apply(first.v, last.v, rd.range, is_rate)));
        }
    };
    for i in 0..ia {
        edge_window(i, &mut pts);
    }
    if ia < ib && len >= 2 {
        let len = len as usize;
        let (lo0, te_a) = (lu0 + ia * q, rd.eval_time(r.ts(ia as usize)));
        let lo = lo0 as usize;
        let (first, last) = (samples[lo], samples[lo + len - 1]);
        let mut memo = RateMemo::default();
        let key = (
            first.t - (te_a - rd.range),
            te_a - last.t,
            last.t - first.t,
            len,
        );
        memo.refresh(key, rd.range, is_rate);
        // The expected times checked run from e_lo - s up to the last window's hi: in range.
        let e_lo = lo0.checked_mul(s).and_then(|x| x.checked_add(t0))?;
        e_lo.checked_sub(s)?;
        (ib - 1 - ia)
            .checked_mul(r.step)
            .and_then(|x| x.checked_add(e_lo))
            .and_then(|x| x.checked_add((len as i64).checked_mul(s)?))?;
        let grid = Grid {
            lo,
            len,
            q: q as usize,
            e_lo,
            s,
            step: r.step,
        };
        if !inner_windows(samples, grid, ia..ib, &memo, rd.range, is_rate, &mut pts) {
            return None;
        }
    }
    if ia < ib && len < 2 {
        // A range under two samples of the grid: nothing on the grid, but irregular samples
        // could still make a window of two; search them.
        for i in ia..ib {
            edge_window(i, &mut pts);
        }
    }
    for i in ib..steps {
        edge_window(i, &mut pts);
    }
    Some(pts)
}

/// Where the inner windows of [`counter_windows_regular`] lie: the first one's samples
/// `[lo, lo + len)`, moving by `q` samples a step; `e_lo` is the expected time of sample `lo`
/// (`s` apart from its neighbours, advancing by `step`).
#[derive(Clone, Copy)]
struct Grid {
    lo: usize,
    len: usize,
    q: usize,
    e_lo: i64,
    s: i64,
    step: i64,
}

/// The inner windows (steps `steps`) of [`counter_windows_regular`] into `pts`, all with the
/// key `memo` holds; false at the first window whose timestamps are not on the grid.
#[inline(never)]
fn inner_windows(
    samples: &[Sample],
    g: Grid,
    steps: std::ops::Range<i64>,
    memo: &RateMemo,
    range_ms: i64,
    is_rate: bool,
    pts: &mut Vec<(u32, f64)>,
) -> bool {
    let m = *memo;
    let (len, s) = (g.len, g.s);
    let e_span = (len as i64 - 1) * s;
    let (mut lo, mut e_lo) = (g.lo, g.e_lo);
    pts.reserve(steps.end.saturating_sub(steps.start) as usize);
    for i in steps {
        // Samples lo - 1 ..= hi of this window.
        let Some(w) = samples.get(lo - 1..lo + len + 1) else {
            return false;
        };
        let (a, b, c, d) = (w[0], w[1], w[len], w[len + 1]);
        let e_hi = e_lo + e_span;
        if (b.t ^ e_lo) | (a.t ^ (e_lo - s)) | (c.t ^ e_hi) | (d.t ^ (e_hi + s)) != 0 {
            return false;
        }
        pts.push((i as u32, m.apply(b.v, c.v, range_ms, is_rate)));
        lo += g.q;
        e_lo += g.step;
    }
    true
}

/// True when `sampled * (first / result)` (all operands positive or zero, `result > 0`) is
/// certainly not below `dur_to_start`, decided without a division: `first * sampled` exceeds
/// `2 * dur_to_start * result`, which no rounding of the quotient can undo. False means
/// "compute it".
#[inline]
fn zero_point_is_far(first: f64, result: f64, sampled: f64, dur_to_start: f64) -> bool {
    let a = first * sampled;
    let b = dur_to_start * result;
    a.is_finite() && b.is_finite() && a >= 1e-200 && a > 2.0 * b
}

fn instant_value(samples: &[Sample], is_rate: bool) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let last = samples[samples.len() - 1];
    let prev = samples[samples.len() - 2];
    let mut result = if is_rate && last.v < prev.v {
        last.v
    } else {
        last.v - prev.v
    };
    let interval = last.t - prev.t;
    if interval == 0 {
        return None;
    }
    if is_rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

fn avg_values(vals: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut mean, mut count, mut c) = (0.0, 0.0, 0.0, 0.0);
    let mut incremental = false;
    for f in vals {
        count += 1.0;
        if !incremental {
            let (ns, nc) = kahan_inc(f, sum, c);
            if count == 1.0 || !ns.is_infinite() {
                sum = ns;
                c = nc;
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(f / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

fn variance(samples: &[Sample]) -> f64 {
    let (mut count, mut mean, mut cmean, mut aux, mut caux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for s in samples {
        count += 1.0;
        let delta = s.v - (mean + cmean);
        (mean, cmean) = kahan_inc(delta / count, mean, cmean);
        (aux, caux) = kahan_inc(delta * (s.v - (mean + cmean)), aux, caux);
    }
    (aux + caux) / count
}

fn double_exp_smoothing(samples: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, samples[0].v);
    let mut b = samples[1].v - samples[0].v;
    for (i, s) in samples.iter().enumerate().skip(1) {
        let x = sf * s.v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

/// Which argument of a function is the range vector, if any.
fn matrix_arg_index(name: &str) -> Option<usize> {
    match name {
        "quantile_over_time" => Some(1),
        "rate"
        | "irate"
        | "increase"
        | "delta"
        | "idelta"
        | "deriv"
        | "predict_linear"
        | "changes"
        | "resets"
        | "avg_over_time"
        | "min_over_time"
        | "max_over_time"
        | "sum_over_time"
        | "count_over_time"
        | "stddev_over_time"
        | "stdvar_over_time"
        | "last_over_time"
        | "first_over_time"
        | "present_over_time"
        | "absent_over_time"
        | "mad_over_time"
        | "double_exponential_smoothing"
        | "holt_winters" => Some(0),
        _ => None,
    }
}

pub(crate) fn call(ev: &mut Evaluator<'_>, c: &Call, r: &Range) -> Result<Val> {
    let name = c.func.name;
    let args: Vec<&Expr> = c.args.args.iter().map(|b| b.as_ref()).collect();
    if let Some(mi) = matrix_arg_index(name) {
        return range_function(ev, name, &args, mi, r);
    }
    let n = r.steps();
    match name {
        "time" => Ok(Val::Scalar(
            (0..n).map(|i| r.ts(i) as f64 / 1000.0).collect(),
        )),
        "pi" => Ok(Val::Scalar(vec![std::f64::consts::PI; n])),
        "vector" => {
            let s = ev.eval_scalar_arg(args[0], r)?;
            Ok(Val::Vector(vec![StepSeries {
                labels: Labels::EMPTY,
                pts: s
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (i as u32, v))
                    .collect(),
            }]))
        }
        "scalar" => {
            let v = ev.eval_vector_arg(args[0], r)?;
            let mut count = vec![0u32; n];
            let mut val = vec![f64::NAN; n];
            for s in &v {
                for &(i, x) in &s.pts {
                    count[i as usize] += 1;
                    val[i as usize] = x;
                }
            }
            Ok(Val::Scalar(
                (0..n)
                    .map(|i| if count[i] == 1 { val[i] } else { f64::NAN })
                    .collect(),
            ))
        }
        "timestamp" => {
            if let Expr::VectorSelector(vs) = unwrap_paren(args[0]) {
                return Ok(Val::Vector(merge_same_labels(
                    ev.eval_vector_selector(vs, r, true)?,
                )?));
            }
            let v = ev.eval_vector_arg(args[0], r)?;
            map_series(v, true, |i, _| Some(r.ts(i as usize) as f64 / 1000.0))
        }
        "abs" => simple(ev, &args, r, f64::abs),
        "ceil" => simple(ev, &args, r, f64::ceil),
        "floor" => simple(ev, &args, r, f64::floor),
        "exp" => simple(ev, &args, r, f64::exp),
        "ln" => simple(ev, &args, r, f64::ln),
        "log2" => simple(ev, &args, r, f64::log2),
        "log10" => simple(ev, &args, r, f64::log10),
        "sqrt" => simple(ev, &args, r, f64::sqrt),
        "sgn" => simple(ev, &args, r, |x| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x
            }
        }),
        "sin" => simple(ev, &args, r, f64::sin),
        "cos" => simple(ev, &args, r, f64::cos),
        "tan" => simple(ev, &args, r, f64::tan),
        "asin" => simple(ev, &args, r, f64::asin),
        "acos" => simple(ev, &args, r, f64::acos),
        "atan" => simple(ev, &args, r, f64::atan),
        "sinh" => simple(ev, &args, r, f64::sinh),
        "cosh" => simple(ev, &args, r, f64::cosh),
        "tanh" => simple(ev, &args, r, f64::tanh),
        "asinh" => simple(ev, &args, r, f64::asinh),
        "acosh" => simple(ev, &args, r, f64::acosh),
        "atanh" => simple(ev, &args, r, f64::atanh),
        "deg" => simple(ev, &args, r, |x| x * 180.0 / std::f64::consts::PI),
        "rad" => simple(ev, &args, r, |x| x * std::f64::consts::PI / 180.0),
        "round" => {
            let v = ev.eval_vector_arg(args[0], r)?;
            let to = if args.len() > 1 {
                ev.eval_scalar_arg(args[1], r)?
            } else {
                vec![1.0; n]
            };
            map_series(v, true, |i, x| {
                let inv = 1.0 / to[i as usize];
                Some((x * inv + 0.5).floor() / inv)
            })
        }
        "clamp" => {
            let v = ev.eval_vector_arg(args[0], r)?;
            let lo = ev.eval_scalar_arg(args[1], r)?;
            let hi = ev.eval_scalar_arg(args[2], r)?;
            map_series(v, true, |i, x| {
                let (l, h) = (lo[i as usize], hi[i as usize]);
                if h < l {
                    return None;
                }
                Some(x.max(l).min(h))
            })
        }
        "clamp_min" => {
            let v = ev.eval_vector_arg(args[0], r)?;
            let lo = ev.eval_scalar_arg(args[1], r)?;
            map_series(v, true, |i, x| Some(x.max(lo[i as usize])))
        }
        "clamp_max" => {
            let v = ev.eval_vector_arg(args[0], r)?;
            let hi = ev.eval_scalar_arg(args[1], r)?;
            map_series(v, true, |i, x| Some(x.min(hi[i as usize])))
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" => {
            let v = if args.is_empty() {
                vec![StepSeries {
                    labels: Labels::EMPTY,
                    pts: (0..n)
                        .map(|i| (i as u32, r.ts(i) as f64 / 1000.0))
                        .collect(),
                }]
            } else {
                ev.eval_vector_arg(args[0], r)?
            };
            map_series(v, true, |_, x| Some(date_part(name, x)))
        }
        "sort" | "sort_desc" => {
            let mut v = ev.eval_vector_arg(args[0], r)?;
            if n == 1 {
                let key = |s: &StepSeries| s.pts.first().map(|p| p.1).unwrap_or(f64::NAN);
                let desc = name == "sort_desc";
                v.sort_by(|a, b| {
                    let (x, y) = (key(a), key(b));
                    match (x.is_nan(), y.is_nan()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => {
                            if desc {
                                std::cmp::Ordering::Greater
                            } else {
                                std::cmp::Ordering::Less
                            }
                        }
                        (false, true) => {
                            if desc {
                                std::cmp::Ordering::Less
                            } else {
                                std::cmp::Ordering::Greater
                            }
                        }
                        _ => {
                            let o = x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal);
                            if desc { o.reverse() } else { o }
                        }
                    }
                });
            }
            Ok(Val::Vector(v))
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut v = ev.eval_vector_arg(args[0], r)?;
            let mut names = Vec::new();
            for a in &args[1..] {
                names.push(ev.eval_string_arg(a, r)?);
            }
            let desc = name == "sort_by_label_desc";
            v.sort_by(|a, b| {
                for l in &names {
                    let (x, y) = (a.labels.get_or_empty(l), b.labels.get_or_empty(l));
                    if x == y {
                        continue;
                    }
                    let o = natural_cmp(x, y);
                    return if desc { o.reverse() } else { o };
                }
                let o = a.labels.cmp(&b.labels);
                if desc { o.reverse() } else { o }
            });
            Ok(Val::Vector(v))
        }
        "label_replace" => {
            let v = ev.eval_vector_arg(args[0], r)?;
            let dst = ev.eval_string_arg(args[1], r)?;
            let repl = ev.eval_string_arg(args[2], r)?;
            let src = ev.eval_string_arg(args[3], r)?;
            let re_src = ev.eval_string_arg(args[4], r)?;
            let re = regex::Regex::new(&format!("^(?s:{re_src})$")).map_err(|e| {
                QueryError::Execution(format!(
                    "invalid regular expression in label_replace(): {re_src}: {e}"
                ))
            })?;
            if !is_valid_label_name(&dst) {
                return Err(QueryError::Execution(format!(
                    "invalid destination label name in label_replace(): {dst}"
                )));
            }
            let mut out = Vec::with_capacity(v.len());
            for mut s in v {
                let val = s.labels.get_or_empty(&src).to_string();
                if let Some(caps) = re.captures(&val) {
                    let mut res = String::new();
                    caps.expand(&repl, &mut res);
                    let mut b = s.labels.builder();
                    b.set(dst.clone(), res);
                    s.labels = b.into_labels();
                }
                out.push(s);
            }
            Ok(Val::Vector(merge_same_labels(out)?))
        }
        "label_join" => {
            let v = ev.eval_vector_arg(args[0], r)?;
            let dst = ev.eval_string_arg(args[1], r)?;
            let sep = ev.eval_string_arg(args[2], r)?;
            let mut srcs = Vec::new();
            for a in &args[3..] {
                srcs.push(ev.eval_string_arg(a, r)?);
            }
            if !is_valid_label_name(&dst) {
                return Err(QueryError::Execution(format!(
                    "invalid destination label name in label_join(): {dst}"
                )));
            }
            let mut out = Vec::with_capacity(v.len());
            for mut s in v {
                let joined: Vec<&str> = srcs.iter().map(|l| s.labels.get_or_empty(l)).collect();
                let joined = joined.join(&sep);
                let mut b = s.labels.builder();
                b.set(dst.clone(), joined);
                s.labels = b.into_labels();
                out.push(s);
            }
            Ok(Val::Vector(merge_same_labels(out)?))
        }
        "absent" => {
            let v = ev.eval_vector_arg(args[0], r)?;
            let mut present = vec![false; n];
            for s in &v {
                for &(i, _) in &s.pts {
                    present[i as usize] = true;
                }
            }
            let pts: Vec<(u32, f64)> = (0..n)
                .filter(|&i| !present[i])
                .map(|i| (i as u32, 1.0))
                .collect();
            if pts.is_empty() {
                return Ok(Val::Vector(Vec::new()));
            }
            Ok(Val::Vector(vec![StepSeries {
                labels: absent_labels(args[0]),
                pts,
            }]))
        }
        "histogram_quantile" => crate::histogram::histogram_quantile(ev, &args, r),
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_fraction"
        | "histogram_stddev" | "histogram_stdvar" => {
            // Only native histograms have a value here; float series produce nothing.
            let idx = if name == "histogram_fraction" { 2 } else { 0 };
            for (i, a) in args.iter().enumerate() {
                if i != idx {
                    ev.eval(a, r)?;
                }
            }
            let _ = ev.eval_vector_arg(args[idx], r)?;
            Ok(Val::Vector(Vec::new()))
        }
        other => Err(QueryError::Execution(format!(
            "function {other:?} is not supported by this engine"
        ))),
    }
}

fn is_valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {
            chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        _ => false,
    }
}

fn simple(
    ev: &mut Evaluator<'_>,
    args: &[&Expr],
    r: &Range,
    f: impl Fn(f64) -> f64,
) -> Result<Val> {
    let v = ev.eval_vector_arg(args[0], r)?;
    map_series(v, true, |_, x| Some(f(x)))
}

fn map_series(
    v: Vec<StepSeries>,
    drop_name: bool,
    mut f: impl FnMut(u32, f64) -> Option<f64>,
) -> Result<Val> {
    let mut out = Vec::with_capacity(v.len());
    for s in v {
        let pts: Vec<(u32, f64)> = s
            .pts
            .iter()
            .filter_map(|&(i, x)| f(i, x).map(|y| (i, y)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let labels = if drop_name {
            s.labels.without_metric_name()
        } else {
            s.labels
        };
        out.push(StepSeries { labels, pts });
    }
    Ok(Val::Vector(merge_same_labels(out)?))
}

fn date_part(name: &str, secs: f64) -> f64 {
    if !secs.is_finite() {
        return f64::NAN;
    }
    let s = secs.floor() as i64;
    let days = s.div_euclid(86400);
    let sod = s.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    match name {
        "day_of_month" => d as f64,
        "day_of_week" => ((days + 4).rem_euclid(7)) as f64,
        "day_of_year" => {
            let start = days_from_civil(y, 1, 1);
            (days - start + 1) as f64
        }
        "days_in_month" => days_in_month(y, m) as f64,
        "hour" => (sod / 3600) as f64,
        "minute" => ((sod % 3600) / 60) as f64,
        "month" => m as f64,
        "year" => y as f64,
        _ => f64::NAN,
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if is_leap(y) {
                29
            } else {
                28
            }
        }
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Natural ordering: runs of digits compare numerically.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < ab.len() && j < bb.len() {
        if ab[i].is_ascii_digit() && bb[j].is_ascii_digit() {
            let si = i;
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let na = a[si..i].trim_start_matches('0');
            let nb = b[sj..j].trim_start_matches('0');
            let o = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if o != Ordering::Equal {
                return o;
            }
        } else {
            if ab[i] != bb[j] {
                return ab[i].cmp(&bb[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (ab.len() - i).cmp(&(bb.len() - j))
}

/// Labels for `absent()`/`absent_over_time()`: the equality matchers of a plain selector.
fn absent_labels(arg: &Expr) -> Labels {
    let vs = match unwrap_paren(arg) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::EMPTY,
    };
    let mut seen: HashMap<&str, Option<&str>> = HashMap::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        let eq = matches!(m.op, promql_parser::label::MatchOp::Equal);
        match seen.get(m.name.as_str()) {
            None => {
                seen.insert(&m.name, if eq { Some(m.value.as_str()) } else { None });
            }
            Some(_) => {
                seen.insert(&m.name, None);
            }
        }
    }
    Labels::from_pairs(
        seen.into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v.to_string()))),
    )
}

fn range_function(
    ev: &mut Evaluator<'_>,
    name: &str,
    args: &[&Expr],
    mi: usize,
    r: &Range,
) -> Result<Val> {
    let n = r.steps();
    // Scalar arguments, one value per step.
    let mut scalars: Vec<Vec<f64>> = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i != mi {
            scalars.push(ev.eval_scalar_arg(a, r)?);
        }
    }
    if scalars.is_empty()
        && let Expr::MatrixSelector(ms) = unwrap_paren(args[mi])
        && let Some(f) = RangeFn::of(name)
    {
        return stream_range_function(ev, f, ms, r);
    }
    let rd: RangeData = ev.eval_range_arg(args[mi], r)?;
    if name == "absent_over_time" {
        let mut present = vec![false; n];
        for s in &rd.series {
            for_each_window(&rd, s, r, |i, w, _| {
                if !w.is_empty() {
                    present[i] = true;
                }
            });
        }
        let pts: Vec<(u32, f64)> = (0..n)
            .filter(|&i| !present[i])
            .map(|i| (i as u32, 1.0))
            .collect();
        if pts.is_empty() {
            return Ok(Val::Vector(Vec::new()));
        }
        return Ok(Val::Vector(vec![StepSeries {
            labels: absent_labels(args[mi]),
            pts,
        }]));
    }
    if name == "quantile_over_time"
        && let Some(q) = scalars.first()
        && let Some(bad) = q.iter().find(|q| !(0.0..=1.0).contains(*q))
    {
        ev.warn(format!(
            "quantile value should be between 0 and 1, got {}",
            format_g(*bad)
        ));
    }
    if matches!(name, "double_exponential_smoothing" | "holt_winters")
        && let (Some(sf), Some(tf)) = (scalars.first(), scalars.get(1))
    {
        {
            for i in 0..n {
                if !(sf[i] > 0.0 && sf[i] < 1.0) {
                    return Err(QueryError::Execution(format!(
                        "invalid smoothing factor. Expected: 0 < sf < 1, got: {}",
                        format_g(sf[i])
                    )));
                }
                if !(tf[i] > 0.0 && tf[i] < 1.0) {
                    return Err(QueryError::Execution(format!(
                        "invalid trend factor. Expected: 0 < tf < 1, got: {}",
                        format_g(tf[i])
                    )));
                }
            }
        }
    }
    let Some(f) = RangeFn::of(name) else {
        return Err(QueryError::Execution(format!(
            "function {name:?} is not supported by this engine"
        )));
    };
    let keep_name = f.keeps_name();
    let deadline = ev.deadline;
    let scalars = &scalars;
    let rd_ref = &rd;
    // Series are independent: evaluate contiguous parts of them on the available cores.
    let parts = crate::par::map_parts(
        &rd.series,
        |s| s.samples.len(),
        |part: &[Series]| -> Result<(Vec<StepSeries>, Vec<String>)> {
            let mut out = Vec::with_capacity(part.len());
            let mut non_counter_names: Vec<String> = Vec::new();
            let mut scratch = Vec::new();
            for s in part {
                if std::time::Instant::now() > deadline {
                    return Err(QueryError::Timeout("expression evaluation"));
                }
                let pts = eval_windows(
                    f,
                    &s.samples,
                    &rd_ref.window(),
                    r,
                    scalars,
                    &mut scratch,
                    None,
                );
                if pts.is_empty() {
                    continue;
                }
                if let Some(mn) = non_counter_name(f, &s.labels)
                    && !non_counter_names.iter().any(|x| x == mn)
                {
                    non_counter_names.push(mn.to_string());
                }
                let labels = if keep_name {
                    s.labels.clone()
                } else {
                    s.labels.without_metric_name()
                };
                out.push(StepSeries { labels, pts });
            }
            Ok((out, non_counter_names))
        },
    );
    let mut out = Vec::with_capacity(rd.series.len());
    let mut non_counter_names: Vec<String> = Vec::new();
    for part in parts {
        let (series, names) = part?;
        out.extend(series);
        for mn in names {
            if !non_counter_names.contains(&mn) {
                non_counter_names.push(mn);
            }
        }
    }
    for mn in non_counter_names {
        ev.info(non_counter_info(&mn));
    }
    Ok(Val::Vector(merge_same_labels(out)?))
}

pub(crate) fn non_counter_info(mn: &str) -> String {
    format!(
        "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {mn:?}"
    )
}

/// Whether `rate`/`increase` of this series earns the "might not be a counter" info.
fn non_counter_name(f: RangeFn, labels: &Labels) -> Option<&str> {
    if !matches!(f, RangeFn::Rate | RangeFn::Increase) {
        return None;
    }
    let mn = labels.metric_name()?;
    let counter_like = mn.ends_with("_total")
        || mn.ends_with("_sum")
        || mn.ends_with("_count")
        || mn.ends_with("_bucket");
    (!counter_like).then_some(mn)
}

thread_local! {
    /// Per-thread scratch of the streaming path: samples without stale markers, and the
    /// counter-reset prefix counts.
    static STREAM_SCRATCH: std::cell::RefCell<(Vec<Sample>, Vec<u32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Whether `samples` hold a stale marker, and whether a value is below the one before it
/// (what rate/increase need to know about counter resets). The usual series (values never
/// drop, no NaN) takes one comparison per sample: `next >= prev` fails exactly where a value
/// drops or either is NaN (stale markers are NaNs); only then the exact branch-free pass.
#[inline]
fn stale_and_reset(samples: &[Sample]) -> (bool, bool) {
    if let Some((first, rest)) = samples.split_first()
        && !rest.is_empty()
    {
        let (mut ok, mut prev) = (true, first.v);
        // Eight pairs a round without a dependency between them.
        let mut eights = rest.chunks_exact(8);
        for c in &mut eights {
            let mut round = c[0].v >= prev;
            for k in 1..8 {
                round &= c[k].v >= c[k - 1].v;
            }
            ok &= round;
            prev = c[7].v;
        }
        for x in eights.remainder() {
            ok &= x.v >= prev;
            prev = x.v;
        }
        if ok {
            return (false, false);
        }
    }
    let (mut stale, mut reset, mut prev) = (false, false, f64::NAN);
    for x in samples {
        stale |= is_stale_nan(x.v);
        reset |= x.v < prev;
        prev = x.v;
    }
    (stale, reset)
}

/// A range function without scalar arguments over a plain matrix selector, fused with the
/// selection: the storage hands over one series at a time (on several threads) and its
/// windows are evaluated while its samples are still in cache. Same results, in the same
/// order, as loading the selection first.
fn stream_range_function(
    ev: &mut Evaluator<'_>,
    f: RangeFn,
    ms: &promql_parser::parser::MatrixSelector,
    r: &Range,
) -> Result<Val> {
    stream_range_function_into(ev, f, ms, r, None)
}

/// `sum(rate(m[5m])) by (...)` and the like with the aggregation fused in: when `c` is a range
/// function that [`stream_range_function`] evaluates and its output needs no same-labelset
/// check, each evaluated series goes straight into `fold` and `Ok(true)` is returned;
/// `Ok(false)` (nothing evaluated) otherwise.
pub(crate) fn stream_call_into(
    ev: &mut Evaluator<'_>,
    c: &Call,
    r: &Range,
    fold: &crate::aggregate::StreamFold<'_>,
) -> Result<bool> {
    let name = c.func.name;
    if c.args.args.len() != 1 || matrix_arg_index(name) != Some(0) {
        return Ok(false);
    }
    let (Expr::MatrixSelector(ms), Some(f)) = (unwrap_paren(&c.args.args[0]), RangeFn::of(name))
    else {
        return Ok(false);
    };
    // Without a metric name, series may collide once the name is dropped: that needs the
    // whole input (merge_same_labels).
    if !(f.keeps_name() || ms.vs.name.is_some()) {
        return Ok(false);
    }
    stream_range_function_into(ev, f, ms, r, Some(fold))?;
    Ok(true)
}

/// The function and selector of a call [`range_function`] streams: a range function whose
/// only argument is a matrix selector.
pub(crate) fn streamable(c: &Call) -> Option<(RangeFn, &promql_parser::parser::MatrixSelector)> {
    let name = c.func.name;
    if c.args.args.len() != 1 || matrix_arg_index(name) != Some(0) {
        return None;
    }
    match unwrap_paren(&c.args.args[0]) {
        Expr::MatrixSelector(ms) => Some((RangeFn::of(name)?, ms)),
        _ => None,
    }
}

/// A call's output another call of its sharing group computed (see [`crate::share`]), handed
/// on as [`stream_range_function_into`] would have: in selection order (indices renumbered
/// over the series with output, which a fold cannot tell from its own numbering).
fn replay(
    ev: &mut Evaluator<'_>,
    stashed: crate::share::Stashed,
    sink: Option<&crate::aggregate::StreamFold<'_>>,
    keep_name: bool,
) -> Result<Val> {
    ev.check_deadline()?;
    let mut non_counter_names: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for (k, (series, odd_name)) in stashed.series.into_iter().enumerate() {
        if let Some(mn) = odd_name
            && !non_counter_names.contains(&mn)
        {
            non_counter_names.push(mn);
        }
        match sink {
            Some(sink) => {
                let labels = sink.group_key(&series.labels, keep_name);
                sink.push(
                    k,
                    Some(StepSeries {
                        labels,
                        pts: series.pts,
                    }),
                );
            }
            None => out.push(series),
        }
    }
    ev.release_samples(stashed.points);
    for mn in non_counter_names {
        ev.info(non_counter_info(&mn));
    }
    Ok(Val::Vector(out))
}

/// An aggregation's result folded while another call of its sharing group streamed, with
/// the annotations its own evaluation would have made.
pub(crate) fn replay_folded(ev: &mut Evaluator<'_>, done: crate::share::Folded) -> Result<Val> {
    ev.check_deadline()?;
    ev.release_samples(done.points);
    for mn in &done.odd_names {
        ev.info(non_counter_info(mn));
    }
    for w in done.warnings {
        if !ev.warnings.contains(&w) {
            ev.warnings.push(w);
        }
    }
    for i in done.infos {
        if !ev.infos.contains(&i) {
            ev.infos.push(i);
        }
    }
    Ok(done.val)
}

/// Another call of a sharing group while the group's selection streams.
struct Other<'g> {
    m: &'g crate::share::Member,
    target: Target<'g>,
}

enum Target<'g> {
    /// Its aggregation, folded as the series arrive, and the `(selection index, metric
    /// name)` of its "might not be a counter" infos.
    Fold(
        Box<crate::aggregate::StreamFold<'g>>,
        Mutex<Vec<(usize, String)>>,
    ),
    /// `(selection index, series, odd metric name)` to replay.
    Stash(Mutex<Vec<(usize, StepSeries, Option<String>)>>),
}

/// Hands series `i` (evaluated once) to the other calls of its group that select it: folded
/// into theirs, or stashed (while the stash stays within `budget`: `(points stashed, budget,
/// over budget)`). Returns the series when this call (`takes_it`) selects it too.
fn share_out(
    others: &[Other<'_>],
    i: usize,
    labels: &Labels,
    pts: Vec<(u32, f64)>,
    odd_name: &Option<String>,
    (takes_it, keep_name): (bool, bool),
    (stashed, budget, abandoned): (&AtomicUsize, usize, &AtomicBool),
) -> Option<Vec<(u32, f64)>> {
    let mut takers: Vec<&Other<'_>> = Vec::with_capacity(others.len());
    let mut stashes = 0usize;
    for o in others {
        let takes = o.m.takes(labels);
        match &o.target {
            Target::Fold(fold, _) if !takes => fold.push(i, None),
            Target::Fold(..) => takers.push(o),
            Target::Stash(_) if takes => {
                stashes += 1;
                takers.push(o);
            }
            Target::Stash(_) => {}
        }
    }
    if stashes > 0 {
        let points = stashes * pts.len();
        if abandoned.load(Ordering::Relaxed)
            || stashed.fetch_add(points, Ordering::Relaxed) + points > budget
        {
            abandoned.store(true, Ordering::Relaxed);
            takers.retain(|o| matches!(o.target, Target::Fold(..)));
        }
    }
    let mut kept = Some(pts);
    let n = takers.len();
    for (k, o) in takers.into_iter().enumerate() {
        let pts = if k + 1 == n && !takes_it {
            kept.take()
        } else {
            kept.clone()
        };
        let Some(pts) = pts else { break };
        match &o.target {
            Target::Fold(fold, odd) => {
                if let Some(mn) = odd_name {
                    odd.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((i, mn.clone()));
                }
                let labels = fold.group_key(labels, keep_name);
                fold.push(i, Some(StepSeries { labels, pts }));
            }
            Target::Stash(buf) => {
                let labels = output_labels(labels, keep_name);
                buf.lock().unwrap_or_else(|e| e.into_inner()).push((
                    i,
                    StepSeries { labels, pts },
                    odd_name.clone(),
                ))
            }
        }
    }
    kept.filter(|_| takes_it)
}

/// A range function's output labels for an input series.
fn output_labels(labels: &Labels, keep_name: bool) -> Labels {
    if keep_name {
        labels.clone()
    } else {
        labels.without_metric_name()
    }
}

/// [`stream_range_function`], handing each series to `sink` (in any order, from several
/// threads; `None` for a visited series without output) instead of collecting them when
/// one is given (the returned vector is then empty).
fn stream_range_function_into(
    ev: &mut Evaluator<'_>,
    f: RangeFn,
    ms: &promql_parser::parser::MatrixSelector,
    r: &Range,
    sink: Option<&crate::aggregate::StreamFold<'_>>,
) -> Result<Val> {
    let me = crate::share::key(ms);
    if let Some(stashed) = ev.shared.take_stash(me) {
        return replay(ev, stashed, sink, f.keeps_name());
    }
    // Sharing (see `crate::share`): stream the group's broadest selection, keep what this
    // call's matchers accept, fold or stash the other calls' series.
    let group = ev.shared.start(me);
    let n_steps = r.steps();
    let members: Vec<&crate::share::Member> = group
        .as_deref()
        .map(|g| g.members.iter().filter(|m| m.key != me).collect())
        .unwrap_or_default();
    let name_refs: Vec<Vec<&str>> = members
        .iter()
        .map(|m| {
            m.agg
                .as_ref()
                .map(|a| a.names.iter().map(String::as_str).collect())
                .unwrap_or_default()
        })
        .collect();
    let others: Vec<Other<'_>> = members
        .iter()
        .zip(&name_refs)
        .map(|(&m, names)| {
            let fold = m
                .agg
                .as_ref()
                .and_then(|a| crate::aggregate::StreamFold::new(&a.op, a.without, names, n_steps));
            let target = match fold {
                Some(fold) => Target::Fold(Box::new(fold), Mutex::new(Vec::new())),
                None => Target::Stash(Mutex::new(Vec::new())),
            };
            Other { m, target }
        })
        .collect();
    let mine = group
        .as_deref()
        .and_then(|g| g.members.iter().find(|m| m.key == me));
    let stash_budget = ev.max_samples.saturating_sub(ev.cur_samples);
    let stashed_points = AtomicUsize::new(0);
    let abandoned = AtomicBool::new(false);
    // Samples this call's own selection holds: what the query's limit counts, shared or not.
    let mine_loaded = AtomicUsize::new(0);
    let keep_name = f.keeps_name();
    let deadline = ev.deadline;
    let timed_out = AtomicBool::new(false);
    type Found = (usize, StepSeries, Option<String>);
    let found: Mutex<Vec<Found>> = Mutex::new(Vec::new());
    let w = ev.matrix_window(ms);
    let counter_fn = matches!(f, RangeFn::Rate | RangeFn::Increase);
    let is_rate = f == RangeFn::Rate;
    let visit = |i: usize, labels: &Labels, samples: &[Sample]| {
        if timed_out.load(Ordering::Relaxed) {
            return;
        }
        if std::time::Instant::now() > deadline {
            timed_out.store(true, Ordering::Relaxed);
            return;
        }
        let takes_it = mine.is_none_or(|m| m.takes(labels));
        if takes_it && group.is_some() {
            mine_loaded.fetch_add(samples.len(), Ordering::Relaxed);
        }
        let pts = STREAM_SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            let (clean, resets) = &mut *scratch;
            let (stale, reset) = stale_and_reset(samples);
            if let (true, false, false) = (counter_fn, stale, reset)
                && let Some(pts) = counter_windows_regular(samples, &w, r, is_rate)
            {
                pts
            } else if stale {
                clean.clear();
                clean.extend(samples.iter().filter(|x| !is_stale_nan(x.v)));
                eval_windows(f, clean, &w, r, &[], resets, None)
            } else {
                eval_windows(f, samples, &w, r, &[], resets, Some(reset))
            }
        });
        if pts.is_empty() {
            if let Some(sink) = sink {
                sink.push(i, None);
            }
            for o in &others {
                if let Target::Fold(fold, _) = &o.target {
                    fold.push(i, None);
                }
            }
            return;
        }
        let odd_name = non_counter_name(f, labels).map(str::to_string);
        let pts = if others.is_empty() {
            pts
        } else {
            let Some(pts) = share_out(
                &others,
                i,
                labels,
                pts,
                &odd_name,
                (takes_it, keep_name),
                (&stashed_points, stash_budget, &abandoned),
            ) else {
                if let Some(sink) = sink {
                    sink.push(i, None);
                }
                return;
            };
            pts
        };
        // A fold only needs the group: no copy of the output labels on the way.
        let labels = match sink {
            Some(fold) => fold.group_key(labels, keep_name),
            None => output_labels(labels, keep_name),
        };
        let series = StepSeries { labels, pts };
        let mut found = found.lock().unwrap_or_else(|e| e.into_inner());
        match sink {
            Some(sink) => {
                if let Some(mn) = odd_name {
                    found.push((
                        i,
                        StepSeries {
                            labels: Labels::EMPTY,
                            pts: Vec::new(),
                        },
                        Some(mn),
                    ));
                }
                drop(found);
                sink.push(i, Some(series));
            }
            None => found.push((i, series, odd_name)),
        }
    };
    match group.as_deref() {
        Some(g) => {
            ev.stream_matrix_selector_with(&g.broad, ms, r, &visit)?;
            ev.add_samples(mine_loaded.load(Ordering::Relaxed))?;
        }
        None => ev.stream_matrix_selector(ms, r, &visit)?,
    }
    if timed_out.into_inner() {
        return Err(QueryError::Timeout("expression evaluation"));
    }
    let points = stashed_points.into_inner();
    let keep_stash =
        !abandoned.into_inner() && ev.cur_samples.saturating_add(points) <= ev.max_samples;
    if keep_stash {
        ev.add_samples(points)?;
    }
    for o in others {
        match o.target {
            Target::Stash(buf) => {
                if !keep_stash {
                    continue;
                }
                let mut v = buf.into_inner().unwrap_or_else(|e| e.into_inner());
                v.sort_unstable_by_key(|x| x.0);
                let points = v.iter().map(|x| x.1.pts.len()).sum();
                let series = v.into_iter().map(|(_, s, odd)| (s, odd)).collect();
                ev.shared
                    .put_stash(o.m.key, crate::share::Stashed { series, points });
            }
            Target::Fold(fold, odd) => {
                let Some(agg) = &o.m.agg else { continue };
                let mut odd = odd.into_inner().unwrap_or_else(|e| e.into_inner());
                odd.sort_unstable_by_key(|x| x.0);
                let mut odd_names: Vec<String> = Vec::new();
                for (_, mn) in odd {
                    if !odd_names.contains(&mn) {
                        odd_names.push(mn);
                    }
                }
                let (nw, ni) = (ev.warnings.len(), ev.infos.len());
                let val = (*fold).finish(ev)?;
                let warnings = ev.warnings.split_off(nw);
                let infos = ev.infos.split_off(ni);
                let points = match &val {
                    Val::Vector(v) => v.iter().map(|s| s.pts.len()).sum(),
                    _ => 0,
                };
                // Past the limit the result is dropped and that aggregation evaluated as usual.
                if ev.cur_samples.saturating_add(points) > ev.max_samples {
                    continue;
                }
                ev.add_samples(points)?;
                ev.shared.put_folded(
                    agg.key,
                    crate::share::Folded {
                        val,
                        odd_names,
                        warnings,
                        infos,
                        points,
                    },
                );
            }
        }
    }
    let mut found = found.into_inner().unwrap_or_else(|e| e.into_inner());
    found.sort_unstable_by_key(|x| x.0);
    let mut non_counter_names: Vec<String> = Vec::new();
    let mut out = Vec::with_capacity(found.len());
    for (_, series, odd_name) in found {
        if let Some(mn) = odd_name
            && !non_counter_names.contains(&mn)
        {
            non_counter_names.push(mn);
        }
        out.push(series);
    }
    for mn in non_counter_names {
        ev.info(non_counter_info(&mn));
    }
    if sink.is_some() {
        return Ok(Val::Vector(Vec::new()));
    }
    if keep_name || ms.vs.name.is_some() {
        // Distinct series that all have the same name stay distinct without it.
        return Ok(Val::Vector(out));
    }
    Ok(Val::Vector(merge_same_labels(out)?))
}

/// A range-vector function, resolved once per call instead of by name per step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RangeFn {
    Rate,
    Increase,
    Delta,
    Irate,
    Idelta,
    Deriv,
    PredictLinear,
    Changes,
    Resets,
    Avg,
    Sum,
    Count,
    Min,
    Max,
    Last,
    First,
    Present,
    Stdvar,
    Stddev,
    Quantile,
    Mad,
    Smoothing,
}

impl RangeFn {
    /// `last_over_time` and `first_over_time` keep the metric name; the others drop it.
    fn keeps_name(self) -> bool {
        matches!(self, RangeFn::Last | RangeFn::First)
    }

    fn of(name: &str) -> Option<RangeFn> {
        Some(match name {
            "rate" => RangeFn::Rate,
            "increase" => RangeFn::Increase,
            "delta" => RangeFn::Delta,
            "irate" => RangeFn::Irate,
            "idelta" => RangeFn::Idelta,
            "deriv" => RangeFn::Deriv,
            "predict_linear" => RangeFn::PredictLinear,
            "changes" => RangeFn::Changes,
            "resets" => RangeFn::Resets,
            "avg_over_time" => RangeFn::Avg,
            "sum_over_time" => RangeFn::Sum,
            "count_over_time" => RangeFn::Count,
            "min_over_time" => RangeFn::Min,
            "max_over_time" => RangeFn::Max,
            "last_over_time" => RangeFn::Last,
            "first_over_time" => RangeFn::First,
            "present_over_time" => RangeFn::Present,
            "stdvar_over_time" => RangeFn::Stdvar,
            "stddev_over_time" => RangeFn::Stddev,
            "quantile_over_time" => RangeFn::Quantile,
            "mad_over_time" => RangeFn::Mad,
            "double_exponential_smoothing" | "holt_winters" => RangeFn::Smoothing,
            _ => return None,
        })
    }
}

/// `f` over every step's window of one series: `(step, value)` for the steps with a value.
/// `resets` is scratch space reused across series.
#[allow(clippy::needless_range_loop)] // the step index also picks scalar arguments
fn eval_windows(
    f: RangeFn,
    samples: &[Sample],
    rd: &Window,
    r: &Range,
    scalars: &[Vec<f64>],
    resets: &mut Vec<u32>,
    has_reset: Option<bool>,
) -> Vec<(u32, f64)> {
    // For rate/increase: resets[k] counts counter resets among samples 1..=k, so a window
    // [lo, hi) holds one iff resets[hi-1] != resets[lo]; windows without one skip the
    // per-sample reset scan (the result is the same, bit for bit).
    // A series without any reset (the usual case) needs no table: one branch-free pass.
    // (`has_reset` is that pass when the caller has made it already.)
    let counter = matches!(f, RangeFn::Rate | RangeFn::Increase)
        && has_reset.unwrap_or_else(|| {
            samples
                .windows(2)
                .fold(false, |any, w| any | (w[1].v < w[0].v))
        });
    if counter {
        resets.clear();
        resets.reserve(samples.len());
        let mut c = 0u32;
        let mut prev = f64::NAN;
        for x in samples {
            if x.v < prev {
                c += 1;
            }
            resets.push(c);
            prev = x.v;
        }
    }
    let mut pts: Vec<(u32, f64)> = Vec::with_capacity(r.steps());
    let mut memo = RateMemo::default();
    let (mut lo, mut hi) = (0usize, 0usize);
    let (mut dlo, mut dhi) = (0usize, 0usize);
    for i in 0..r.steps() {
        let ts = r.ts(i);
        let te = rd.eval_time(ts);
        let h = first_after(samples, hi, samples.len(), te, dhi);
        (dhi, hi) = (h - hi, h);
        let l = first_after(samples, lo, hi, te - rd.range, dlo);
        (dlo, lo) = (l - lo, l);
        if lo > hi {
            lo = hi;
        }
        let w = &samples[lo..hi];
        debug_assert!(w.iter().all(|x| !is_stale_nan(x.v)));
        let range_start = te - rd.range;
        let v = match f {
            RangeFn::Rate | RangeFn::Increase => {
                let may_reset = counter && hi >= lo + 2 && resets[hi - 1] != resets[lo];
                if may_reset {
                    extrapolated_rate_scan(w, range_start, te, rd.range, true, f == RangeFn::Rate)
                } else if w.len() < 2 {
                    None
                } else {
                    counter_rate_no_reset(
                        w[0],
                        w[w.len() - 1],
                        w.len(),
                        range_start,
                        te,
                        rd.range,
                        f == RangeFn::Rate,
                        &mut memo,
                    )
                }
            }
            RangeFn::Delta => extrapolated_rate(w, range_start, te, rd.range, false, false),
            RangeFn::Irate => instant_value(w, true),
            RangeFn::Idelta => instant_value(w, false),
            RangeFn::Deriv => {
                if w.len() < 2 {
                    None
                } else {
                    Some(linear_regression(w, w[0].t).0)
                }
            }
            RangeFn::PredictLinear => {
                if w.len() < 2 {
                    None
                } else {
                    let (slope, intercept) = linear_regression(w, ts);
                    Some(slope * scalars[0][i] + intercept)
                }
            }
            RangeFn::Changes => {
                if w.is_empty() {
                    None
                } else {
                    let mut c = 0.0;
                    for p in w.windows(2) {
                        let (a, b) = (p[0].v, p[1].v);
                        if !(a == b || (a.is_nan() && b.is_nan())) {
                            c += 1.0;
                        }
                    }
                    Some(c)
                }
            }
            RangeFn::Resets => {
                if w.is_empty() {
                    None
                } else {
                    Some(w.windows(2).filter(|p| p[1].v < p[0].v).count() as f64)
                }
            }
            _ if w.is_empty() => None,
            RangeFn::Avg => Some(avg_values(w.iter().map(|s| s.v))),
            RangeFn::Sum => {
                let (mut sum, mut c) = (0.0, 0.0);
                for s in w {
                    (sum, c) = kahan_inc(s.v, sum, c);
                }
                Some(if sum.is_infinite() { sum } else { sum + c })
            }
            RangeFn::Count => Some(w.len() as f64),
            RangeFn::Min => {
                let mut m = w[0].v;
                for s in &w[1..] {
                    if s.v < m || m.is_nan() {
                        m = s.v;
                    }
                }
                Some(m)
            }
            RangeFn::Max => {
                let mut m = w[0].v;
                for s in &w[1..] {
                    if s.v > m || m.is_nan() {
                        m = s.v;
                    }
                }
                Some(m)
            }
            RangeFn::Last => Some(w[w.len() - 1].v),
            RangeFn::First => Some(w[0].v),
            RangeFn::Present => Some(1.0),
            RangeFn::Stdvar => Some(variance(w)),
            RangeFn::Stddev => Some(variance(w).sqrt()),
            RangeFn::Quantile => {
                let mut vals: Vec<f64> = w.iter().map(|s| s.v).collect();
                Some(quantile(scalars[0][i], &mut vals))
            }
            RangeFn::Mad => {
                let mut vals: Vec<f64> = w.iter().map(|s| s.v).collect();
                let med = quantile(0.5, &mut vals);
                let mut dev: Vec<f64> = vals.iter().map(|v| (v - med).abs()).collect();
                Some(quantile(0.5, &mut dev))
            }
            RangeFn::Smoothing => double_exp_smoothing(w, scalars[0][i], scalars[1][i]),
        };
        if let Some(v) = v {
            pts.push((i as u32, v));
        }
    }
    pts
}

/// Calls `f(step, window, window_end)` for every step with the samples of `s` in
/// `(te - range, te]`.
/// The first index in `from..=limit` whose sample is after `bound` (`limit` if none) in
/// time-sorted `samples`, where every sample before `from` is known to be at or before
/// `bound`. `from + guess` is checked first: the windows of regular scrapes move by the same
/// number of samples every step, so two comparisons usually replace the scan.
#[inline(always)]
fn first_after(samples: &[Sample], from: usize, limit: usize, bound: i64, guess: usize) -> usize {
    let g = from + guess;
    if guess > 0 && g <= limit && samples[g - 1].t <= bound && (g == limit || samples[g].t > bound)
    {
        return g;
    }
    let mut i = from;
    while i < limit && samples[i].t <= bound {
        i += 1;
    }
    i
}

fn for_each_window(
    rd: &RangeData,
    s: &lookout_storage::Series,
    r: &Range,
    mut f: impl FnMut(usize, &[Sample], i64),
) {
    let samples = &s.samples;
    let (mut lo, mut hi) = (0usize, 0usize);
    let (mut dlo, mut dhi) = (0usize, 0usize);
    for i in 0..r.steps() {
        let te = rd.eval_time(r.ts(i));
        let h = first_after(samples, hi, samples.len(), te, dhi);
        (dhi, hi) = (h - hi, h);
        let l = first_after(samples, lo, hi, te - rd.range, dlo);
        (dlo, lo) = (l - lo, l);
        if lo > hi {
            lo = hi;
        }
        debug_assert!(samples[lo..hi].iter().all(|x| !is_stale_nan(x.v)));
        f(i, &samples[lo..hi], te);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The guessed window bound is the scanned one.
        #[test]
        fn first_after_matches_a_scan(
            gaps in proptest::collection::vec(0i64..4, 0..30),
            from_frac in 0.0f64..1.0,
            limit_frac in 0.0f64..1.0,
            bound in -2i64..70,
            guess in 0usize..35,
        ) {
            let mut t = 0;
            let samples: Vec<Sample> = gaps.iter().map(|g| { t += g; Sample { t, v: 0.0 } }).collect();
            let limit = (limit_frac * (samples.len() + 1) as f64) as usize;
            let limit = limit.min(samples.len());
            // `from` must have only samples at or before `bound` before it.
            let max_from = samples[..limit].iter().take_while(|x| x.t <= bound).count();
            let from = (from_frac * (max_from + 1) as f64) as usize;
            let from = from.min(max_from);
            let mut want = from;
            while want < limit && samples[want].t <= bound {
                want += 1;
            }
            prop_assert_eq!(first_after(&samples, from, limit, bound, guess), want);
        }

        /// The pre-pass answers what `any` over the samples and their pairs does.
        #[test]
        fn stale_and_reset_matches_a_plain_loop(
            vals in proptest::collection::vec(
                prop_oneof![
                    (0u32..50).prop_map(f64::from),
                    Just(lookout_storage::STALE_NAN),
                    Just(f64::NAN),
                ],
                0..40,
            )
        ) {
            let samples: Vec<Sample> = vals.iter().enumerate()
                .map(|(i, &v)| Sample { t: i as i64, v }).collect();
            let stale = samples.iter().any(|x| is_stale_nan(x.v));
            let reset = samples.windows(2).any(|w| w[1].v < w[0].v);
            prop_assert_eq!(stale_and_reset(&samples), (stale, reset));
        }

        #[test]
        fn stale_and_reset_on_counters(
            incs in proptest::collection::vec(0u32..4, 0..40),
            odd in proptest::option::of((0usize..40, 0u8..4)),
        ) {
            // Non-decreasing values (the one-comparison path), at most one odd sample:
            // a stale marker, another NaN, a drop or an equal value.
            let mut v = 0.0;
            let mut samples: Vec<Sample> = incs.iter().enumerate().map(|(i, &d)| {
                v += f64::from(d);
                Sample { t: i as i64, v }
            }).collect();
            if let Some((at, kind)) = odd && at < samples.len() {
                samples[at].v = match kind {
                    0 => lookout_storage::STALE_NAN,
                    1 => f64::NAN,
                    2 => samples[at].v - 1.5,
                    _ => samples[at].v,
                };
            }
            let stale = samples.iter().any(|x| is_stale_nan(x.v));
            let reset = samples.windows(2).any(|w| w[1].v < w[0].v);
            prop_assert_eq!(stale_and_reset(&samples), (stale, reset));
        }
    }

    proptest! {
        // Counted window bounds and the shared memo give what the searched windows give, bit
        // for bit: counters starting near zero (the zero-point rule), query steps that are and
        // are not multiples of the series' step, ranges shorter than two samples, offsets,
        // queries reaching before and after the series, and series with one sample off the
        // grid (refused, or only windows away from it counted).
        #[test]
        fn regular_counter_windows_equal_the_general_loop(
            t0 in 1_000_000i64..2_000_000,
            s in prop::sample::select(vec![1_000i64, 15_000, 10_000, 7_000]),
            v0 in prop_oneof![Just(0.0f64), 0.0..5.0f64, 1e3..1e9f64],
            incs in proptest::collection::vec(prop_oneof![
                4 => (0u32..40).prop_map(f64::from),
                1 => Just(0.0f64),
                1 => 0.0..1e6f64,
            ], 2..300),
            start_k in -30i64..150,
            start_j in prop_oneof![3 => Just(0i64), 1 => Just(1i64), 1 => Just(-1i64), 1 => 0i64..20_000],
            steps in 1i64..120,
            qstep_mul in prop_oneof![4 => 1i64..6, 1 => Just(0i64)],
            qstep_odd in 1i64..50_000,
            range in prop::sample::select(vec![1_000i64, 14_999, 15_000, 60_000, 300_000, 1_020_000]),
            offset in prop_oneof![3 => Just(0i64), 1 => Just(-60_000i64), 1 => -60_000i64..600_000],
            is_rate in any::<bool>(),
            jitter in prop_oneof![1 => Just(None), 2 => (0usize..300, -300i64..300).prop_map(Some)],
        ) {
            let mut v = v0;
            let mut samples: Vec<Sample> = incs.iter().enumerate().map(|(i, &d)| {
                v += d;
                Sample { t: t0 + i as i64 * s, v }
            }).collect();
            let mut regular = true;
            if let Some((at, dt)) = jitter && at < samples.len() && dt != 0 {
                samples[at].t += dt;
                regular = false;
            }
            let step = if qstep_mul > 0 { qstep_mul * s } else { qstep_odd };
            // Window ends often exactly on a sample, or one millisecond off.
            let start = t0 + start_k * s + start_j;
            let r = Range { start, end: start + (steps - 1) * step, step };
            let w = Window { range, offset, at: None };
            let f = if is_rate { RangeFn::Rate } else { RangeFn::Increase };
            prop_assert_eq!(stale_and_reset(&samples), (false, false));
            let want = eval_windows(f, &samples, &w, &r, &[], &mut Vec::new(), Some(false));
            match counter_windows_regular(&samples, &w, &r, is_rate) {
                Some(got) => {
                    let bits = |p: &[(u32, f64)]| p.iter().map(|&(i, v)| (i, v.to_bits())).collect::<Vec<_>>();
                    prop_assert_eq!(bits(&got), bits(&want));
                }
                None => prop_assert!(!regular || step % s != 0, "no counted windows for step {}", step),
            }
        }
    }

    #[test]
    fn counted_windows_near_the_ends_of_time() {
        // Timestamps close to i64::MAX, and a first gap too wide to count with: the answer is
        // the general loop's, nothing overflows.
        let series = [
            (0..50)
                .map(|i| Sample {
                    t: i64::MAX - 50_000 + i * 1000,
                    v: i as f64,
                })
                .collect::<Vec<_>>(),
            [0, 1 << 62, (1 << 62) + 1000, (1 << 62) + 2000]
                .iter()
                .enumerate()
                .map(|(i, &t)| Sample { t, v: i as f64 })
                .collect(),
        ];
        for (k, samples) in series.iter().enumerate() {
            let last = samples[samples.len() - 1].t;
            for (start, step) in [
                (last - 40_000, 1000),
                (last - 40_000, 3000),
                (last - 3000, 1000),
            ] {
                let r = Range {
                    start,
                    end: last,
                    step,
                };
                let w = Window {
                    range: 5000,
                    offset: 0,
                    at: None,
                };
                let want = eval_windows(
                    RangeFn::Rate,
                    samples,
                    &w,
                    &r,
                    &[],
                    &mut Vec::new(),
                    Some(false),
                );
                match counter_windows_regular(samples, &w, &r, true) {
                    Some(got) => assert_eq!(got, want, "start {start} step {step}"),
                    None => assert!(k == 1 || step % 1000 != 0, "the regular series is counted"),
                }
            }
        }
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => 0.0..1e6f64,
            2 => (0u32..5000).prop_map(f64::from),
            1 => -10.0..10.0f64,
            1 => prop::sample::select(vec![
                0.0, -0.0, 1e-300, 5e-324, 1e300, f64::MAX, f64::INFINITY, f64::NAN, 1e-200
            ]),
        ]
    }

    proptest! {
        // The memoised no-reset counter rate equals the plain computation bit for bit,
        // whatever the memo holds from earlier windows.
        #[test]
        fn memoised_counter_rate_is_bit_identical(
            windows in prop::collection::vec(
                (0i64..20_000, 1i64..400_000, 2usize..50, 0i64..20_000, value(), value()),
                1..40,
            ),
            range in prop::sample::select(vec![60_000i64, 300_000, 1_000_000]),
            is_rate in any::<bool>(),
        ) {
            let mut memo = RateMemo::default();
            for (gap_start, span, len, gap_end, v0, inc) in windows {
                let range_start = 1_700_000_000_000i64;
                let first = Sample { t: range_start + 1 + gap_start, v: v0 };
                let last = Sample { t: first.t + span, v: v0 + inc };
                let range_end = last.t + gap_end;
                // Only the first and last sample and the count matter without resets.
                let mut w = vec![first; len];
                w[len - 1] = last;
                let want = extrapolated_rate_scan(&w, range_start, range_end, range, false, is_rate);
                let got = counter_rate_no_reset(
                    first, last, len, range_start, range_end, range, is_rate, &mut memo,
                );
                prop_assert_eq!(want.map(f64::to_bits), got.map(f64::to_bits));
            }
        }
    }

    #[test]
    fn memoised_counter_rate_applies_the_zero_point_rule() {
        // A counter starting near zero: the extrapolation stops where it would cross zero.
        let mut memo = RateMemo::default();
        for v0 in [0.0, 0.5, 1.0, 3.0, 1000.0] {
            let first = Sample { t: 30_000, v: v0 };
            let last = Sample {
                t: 60_000,
                v: v0 + 30.0,
            };
            let mut w = vec![first; 4];
            w[3] = last;
            let want = extrapolated_rate_scan(&w, 0, 60_000, 60_000, false, false);
            let got = counter_rate_no_reset(first, last, 4, 0, 60_000, 60_000, false, &mut memo);
            assert_eq!(want.map(f64::to_bits), got.map(f64::to_bits), "{v0}");
        }
    }

    fn s(points: &[(i64, f64)]) -> Vec<Sample> {
        points.iter().map(|&(t, v)| Sample { t, v }).collect()
    }

    #[test]
    fn rate_extrapolates_to_window_boundaries() {
        // Samples every 10s covering the whole 60s window (0, 60]: 10..60.
        let w = s(&[
            (10_000, 1.0),
            (20_000, 2.0),
            (30_000, 3.0),
            (40_000, 4.0),
            (50_000, 5.0),
            (60_000, 6.0),
        ]);
        // Sampled 50s for an increase of 5; start gap 10s <= 1.1*10s so extrapolate to 60s.
        let inc = extrapolated_rate(&w, 0, 60_000, 60_000, true, false).unwrap();
        assert!((inc - 6.0).abs() < 1e-9, "{inc}");
        let rate = extrapolated_rate(&w, 0, 60_000, 60_000, true, true).unwrap();
        assert!((rate - 0.1).abs() < 1e-12);
    }

    #[test]
    fn rate_limits_extrapolation_to_half_interval_when_series_starts_late() {
        // Series starts 40s into a 60s window: gap 40s > 1.1*10s, extrapolate by 5s only;
        // the counter's zero point (first value 10 / slope 1 per 10s = 100s away) does not cut it.
        let w = s(&[(40_000, 10.0), (50_000, 11.0), (60_000, 12.0)]);
        let inc = extrapolated_rate(&w, 0, 60_000, 60_000, true, false).unwrap();
        assert!((inc - 2.0 * 25.0 / 20.0).abs() < 1e-9, "{inc}");
    }

    #[test]
    fn counter_zero_point_caps_start_extrapolation() {
        // Value 1 at 10s rising 10 per 10s: zero point is 1s before the first sample.
        let w = s(&[(10_000, 1.0), (20_000, 11.0), (30_000, 21.0)]);
        let inc = extrapolated_rate(&w, 0, 30_000, 30_000, true, false).unwrap();
        assert!((inc - 20.0 * 21.0 / 20.0).abs() < 1e-9, "{inc}");
        // delta (not a counter) extrapolates the full 10s to the start instead.
        let d = extrapolated_rate(&w, 0, 30_000, 30_000, false, false).unwrap();
        assert!((d - 20.0 * 30.0 / 20.0).abs() < 1e-9, "{d}");
    }

    #[test]
    fn counter_resets_are_compensated() {
        let w = s(&[(10_000, 5.0), (20_000, 8.0), (30_000, 2.0), (40_000, 4.0)]);
        // 3 (5->8) + 2 (reset to 2, counted from 0) + 2 (2->4) = 7 over 30s, window 40s.
        let inc = extrapolated_rate(&w, 0, 40_000, 40_000, true, false).unwrap();
        let zero_cap = 30.0 * (5.0 / 7.0);
        let expect = 7.0 * (30.0 + 10.0_f64.min(zero_cap)) / 30.0;
        assert!((inc - expect).abs() < 1e-9, "{inc} vs {expect}");
        assert!(extrapolated_rate(&w[..1], 0, 40_000, 40_000, true, false).is_none());
    }

    #[test]
    fn irate_uses_last_two_samples_and_handles_resets() {
        let w = s(&[(0, 1.0), (10_000, 5.0), (20_000, 2.0)]);
        assert_eq!(instant_value(&w, true), Some(0.2));
        assert_eq!(instant_value(&w, false), Some(-3.0));
    }

    #[test]
    fn regression_slope_and_intercept() {
        let w = s(&[(0, 1.0), (10_000, 3.0), (20_000, 5.0)]);
        let (slope, intercept) = linear_regression(&w, 20_000);
        assert!((slope - 0.2).abs() < 1e-12);
        assert!((intercept - 5.0).abs() < 1e-12);
        let flat = s(&[(0, 7.0), (10_000, 7.0)]);
        assert_eq!(linear_regression(&flat, 0), (0.0, 7.0));
    }

    #[test]
    fn quantile_interpolates_and_clamps() {
        let mut v = vec![3.0, 1.0, 2.0, 4.0];
        assert!((quantile(0.5, &mut v) - 2.5).abs() < 1e-12);
        assert_eq!(quantile(-1.0, &mut v), f64::NEG_INFINITY);
        assert_eq!(quantile(2.0, &mut v), f64::INFINITY);
        assert!(quantile(0.5, &mut []).is_nan());
    }

    #[test]
    fn kahan_keeps_small_terms() {
        let (mut sum, mut c) = (0.0, 0.0);
        for x in [1e100, 1.0, -1e100] {
            (sum, c) = kahan_inc(x, sum, c);
        }
        assert_eq!(sum + c, 1.0);
    }

    #[test]
    fn calendar_parts() {
        // 2024-02-29T13:45:00Z
        let t = 1_709_214_300.0;
        assert_eq!(date_part("year", t), 2024.0);
        assert_eq!(date_part("month", t), 2.0);
        assert_eq!(date_part("day_of_month", t), 29.0);
        assert_eq!(date_part("days_in_month", t), 29.0);
        assert_eq!(date_part("day_of_year", t), 60.0);
        assert_eq!(date_part("day_of_week", t), 4.0);
        assert_eq!(date_part("hour", t), 13.0);
        assert_eq!(date_part("minute", t), 45.0);
    }

    #[test]
    fn natural_order() {
        assert_eq!(natural_cmp("a2", "a10"), std::cmp::Ordering::Less);
        assert_eq!(natural_cmp("b", "a10"), std::cmp::Ordering::Greater);
    }

    /// Visits `all` backwards from two threads, as a parallel storage's `select_each` may;
    /// returns the number of samples.
    pub(crate) fn visit_scrambled(
        all: &[Series],
        visit: &(dyn Fn(usize, &Labels, &[Sample]) + Sync),
    ) -> usize {
        let half = all.len() / 2;
        let (a, b) = all.split_at(half);
        std::thread::scope(|sc| {
            sc.spawn(|| {
                for (i, x) in b.iter().enumerate().rev() {
                    visit(half + i, &x.labels, &x.samples);
                }
            });
            for (i, x) in a.iter().enumerate().rev() {
                visit(i, &x.labels, &x.samples);
            }
        });
        all.iter().map(|x| x.samples.len()).sum()
    }

    /// A store whose `select_each` visits the series backwards from two threads, as a
    /// parallel storage may.
    struct Scrambled<'a>(&'a lookout_storage::memory::MemStorage);

    impl lookout_storage::Queryable for Scrambled<'_> {
        fn select(
            &self,
            m: &[lookout_storage::Matcher],
            h: &lookout_storage::SelectHints,
        ) -> std::result::Result<Vec<Series>, lookout_storage::StorageError> {
            self.0.select(m, h)
        }

        fn select_each(
            &self,
            m: &[lookout_storage::Matcher],
            h: &lookout_storage::SelectHints,
            visit: &(dyn Fn(usize, &Labels, &[Sample]) + Sync),
        ) -> std::result::Result<usize, lookout_storage::StorageError> {
            Ok(visit_scrambled(&self.0.select(m, h)?, visit))
        }

        fn series(
            &self,
            m: &[lookout_storage::Matcher],
            a: i64,
            b: i64,
        ) -> std::result::Result<Vec<Labels>, lookout_storage::StorageError> {
            self.0.series(m, a, b)
        }

        fn label_names(
            &self,
            m: &[lookout_storage::Matcher],
            a: i64,
            b: i64,
        ) -> std::result::Result<Vec<String>, lookout_storage::StorageError> {
            self.0.label_names(m, a, b)
        }

        fn label_values(
            &self,
            n: &str,
            m: &[lookout_storage::Matcher],
            a: i64,
            b: i64,
        ) -> std::result::Result<Vec<String>, lookout_storage::StorageError> {
            self.0.label_values(n, m, a, b)
        }
    }

    #[test]
    fn streamed_range_functions_do_not_depend_on_visit_order() {
        use lookout_storage::{Appendable, memory::MemStorage};
        let mem = MemStorage::new();
        let mut app = mem.appender();
        for i in 0..12 {
            let name = ["odd_gauge", "another_gauge", "req_total", "req_total"][i % 4];
            let l = Labels::from_pairs([
                ("__name__", name),
                ("job", ["a", "b", "c"][i % 3]),
                ("i", &i.to_string()),
            ]);
            let mut v = 0.0;
            for k in 0..400i64 {
                // Increments, a reset every 97 samples, a stale marker now and then.
                v = if (k + i as i64) % 97 == 0 {
                    1.0
                } else {
                    v + (k % 7) as f64
                };
                let x = if (k + 3 * i as i64) % 151 == 0 {
                    lookout_storage::STALE_NAN
                } else {
                    v
                };
                app.append(None, &l, k * 15_000 + i as i64, x).unwrap();
            }
        }
        app.commit().unwrap();
        let scrambled = Scrambled(&mem);
        let engine = crate::Engine::default();
        for q in [
            "sum(rate(req_total[5m])) by (job)",
            "increase({job=~\"a|b\"}[2m])",
            "rate({__name__=~\".+_gauge\"}[1m])",
            "max_over_time(req_total[3m] offset 1m)",
            "last_over_time({__name__=~\".+\"}[45s])",
            "irate(req_total[1m])",
        ] {
            let want = engine
                .range_query(
                    &mem,
                    q,
                    60_000,
                    5_900_000,
                    std::time::Duration::from_secs(37),
                )
                .unwrap();
            let got = engine
                .range_query(
                    &scrambled,
                    q,
                    60_000,
                    5_900_000,
                    std::time::Duration::from_secs(37),
                )
                .unwrap();
            assert_eq!(
                format!("{:?}", want.value),
                format!("{:?}", got.value),
                "{q}"
            );
            assert_eq!(want.infos, got.infos, "{q}");
            if q.contains("_gauge") {
                // One info per name, in label order whatever the visiting order.
                assert_eq!(got.infos.len(), 2, "{q}");
                assert!(got.infos[0].contains("another_gauge"), "{:?}", got.infos);
            }
        }
    }
}
