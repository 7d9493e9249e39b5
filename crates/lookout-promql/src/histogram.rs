//! `histogram_quantile` over classic (`le`-labelled) bucket series.

use std::collections::HashMap;

use lookout_storage::Labels;
use promql_parser::parser::Expr;

use crate::eval::{Evaluator, Range, Result, StepSeries, Val, format_g, merge_same_labels};

/// Weight of one bucket point in the parallel split, in samples ([`crate::par`]'s unit).
const POINT_WEIGHT: usize = 4;

/// One cumulative bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Bucket {
    pub upper: f64,
    pub count: f64,
}

/// Relative tolerance under which bucket count differences are treated as float noise.
const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < eps * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < eps
}

/// The quantile `q` of the cumulative `buckets` (any order), with Prometheus's rules: the
/// highest bucket must be `+Inf`, equal bounds are merged, decreasing counts are flattened
/// (reported by the returned flag), interpolation is linear within a bucket.
pub(crate) fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    if buckets.is_empty() {
        return (f64::NAN, false);
    }
    buckets.sort_by(|a, b| {
        a.upper
            .partial_cmp(&b.upper)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    if buckets[buckets.len() - 1].upper != f64::INFINITY {
        return (f64::NAN, false);
    }
    // Coalesce equal bounds (counts added in order into the first of each run).
    buckets.dedup_by(|b, kept| {
        let same = kept.upper == b.upper;
        if same {
            kept.count += b.count;
        }
        same
    });
    distinct_bucket_quantile(q, buckets)
}

/// [`bucket_quantile`] of `buckets` already in strictly increasing bound order (no NaN
/// bound, no two equal), `q` in `[0, 1]` and not NaN, at least one bucket: the sort and the
/// coalescing would leave them as they are.
fn distinct_bucket_quantile(q: f64, buckets: &mut [Bucket]) -> (f64, bool) {
    if buckets[buckets.len() - 1].upper != f64::INFINITY {
        return (f64::NAN, false);
    }
    // Monotonicity.
    let mut forced = false;
    let mut prev = buckets[0].count;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.count;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, SMALL_DELTA_TOLERANCE) {
            b.count = prev;
            continue;
        }
        if curr < prev {
            b.count = prev;
            forced = true;
            continue;
        }
        prev = curr;
    }
    if buckets.len() < 2 {
        return (f64::NAN, forced);
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 || observations.is_nan() {
        return (f64::NAN, forced);
    }
    let mut rank = q * observations;
    let last = buckets.len() - 1;
    let b = buckets[..last].partition_point(|x| x.count < rank);
    if b == last {
        return (buckets[last - 1].upper, forced);
    }
    if b == 0 && buckets[0].upper <= 0.0 {
        return (buckets[0].upper, forced);
    }
    let (mut start, end, mut count) = (0.0, buckets[b].upper, buckets[b].count);
    if b > 0 {
        start = buckets[b - 1].upper;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    (start + (end - start) * (rank / count), forced)
}

pub(crate) fn histogram_quantile(ev: &mut Evaluator<'_>, args: &[&Expr], r: &Range) -> Result<Val> {
    let q = ev.eval_scalar_arg(args[0], r)?;
    let v = ev.eval_vector_arg(args[1], r)?;
    let n = r.steps();
    if !v.is_empty()
        && let Some(bad) = q.iter().find(|q| !(0.0..=1.0).contains(*q))
    {
        ev.warn(format!(
            "quantile value should be between 0 and 1, got {}",
            format_g(*bad)
        ));
    }
    // Group bucket series by their labels without `le` (and without the name).
    let mut group_index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, String)> = Vec::new();
    let mut series_group: Vec<Option<(usize, f64)>> = Vec::with_capacity(v.len());
    for s in &v {
        let le = s.labels.get("le").unwrap_or("");
        let upper = match parse_go_float(le) {
            Some(u) => u,
            None => {
                let name = s.labels.metric_name().unwrap_or("").to_string();
                ev.warn(format!(
                    "bucket label \"le\" is missing or has a malformed value of {le:?} for metric name {name:?}"
                ));
                series_group.push(None);
                continue;
            }
        };
        let key = s.labels.without(&["le"]);
        let id = match group_index.get(&key) {
            Some(&i) => i,
            None => {
                groups.push((
                    key.without_metric_name(),
                    s.labels.metric_name().unwrap_or("").to_string(),
                ));
                group_index.insert(key, groups.len() - 1);
                groups.len() - 1
            }
        };
        series_group.push(Some((id, upper)));
    }
    // Each group on its own (groups are independent, so on several cores): its bucket
    // series ordered by bound once (a stable sort, so a step's buckets come in the order
    // the per-step sort would give them), then walked step by step.
    let mut members: Vec<Vec<(usize, f64)>> = vec![Vec::new(); groups.len()];
    for (si, sg) in series_group.iter().enumerate() {
        if let Some((g, upper)) = *sg {
            members[g].push((si, upper));
        }
    }
    for m in &mut members {
        // (A NaN bound makes the comparison no order: such a group keeps the input order
        // and leaves sorting to each step, as before.)
        if m.iter().all(|x| !x.1.is_nan()) {
            m.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal));
        }
    }
    let deadline = ev.deadline;
    // A point costs several samples' work here (its share of a step's bucket walk and
    // quantile), so two groups of ten buckets over a day of minutes already pay for a thread.
    let weight: usize = v.iter().map(|s| s.pts.len()).sum::<usize>() * POINT_WEIGHT;
    let ids: Vec<usize> = (0..groups.len()).collect();
    let per_group = crate::par::map_dynamic(&ids, weight, |&g| -> Result<GroupResult> {
        if std::time::Instant::now() > deadline {
            return Err(crate::QueryError::Timeout("expression evaluation"));
        }
        Ok(group_quantiles(&members[g], &v, &q, n))
    });
    let mut out: Vec<StepSeries> = Vec::with_capacity(groups.len());
    // (step, first input series with a value there, group) of each monotonicity fix: the
    // order the step-by-step evaluation reports them in.
    let mut forced: Vec<(u32, usize, usize)> = Vec::new();
    for (g, res) in per_group.into_iter().enumerate() {
        let (pts, fixes) = res?;
        forced.extend(fixes.into_iter().map(|(step, si)| (step, si, g)));
        out.push(StepSeries {
            labels: groups[g].0.clone(),
            pts,
        });
    }
    forced.sort_unstable();
    let mut forced_names: Vec<String> = Vec::new();
    for (_, _, g) in forced {
        if !forced_names.contains(&groups[g].1) {
            forced_names.push(groups[g].1.clone());
        }
    }
    for name in forced_names {
        ev.info(format!(
            "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {name:?}"
        ));
    }
    out.retain(|s| !s.pts.is_empty());
    Ok(Val::Vector(merge_same_labels(out)?))
}

/// One group's `(step, quantile)` points and the `(step, first series)` of each step whose
/// buckets needed a monotonicity fix.
type GroupResult = (Vec<(u32, f64)>, Vec<(u32, usize)>);

/// The quantiles of one group: `members` are its `(series, bound)` pairs sorted by bound.
fn group_quantiles(
    members: &[(usize, f64)],
    series: &[StepSeries],
    q: &[f64],
    n: usize,
) -> GroupResult {
    let mut cursor = vec![0usize; members.len()];
    let mut buckets: Vec<Bucket> = Vec::with_capacity(members.len());
    // Bounds sorted strictly increasing: every step's buckets (a subset in member order)
    // are sorted and distinct already.
    let distinct = members.windows(2).all(|w| w[0].1 < w[1].1);
    let (mut pts, mut fixes) = (Vec::new(), Vec::new());
    for step in 0..n as u32 {
        buckets.clear();
        let mut first = usize::MAX;
        for (k, &(si, upper)) in members.iter().enumerate() {
            let s = &series[si].pts;
            let c = &mut cursor[k];
            while *c < s.len() && s[*c].0 < step {
                *c += 1;
            }
            if let Some(&(at, count)) = s.get(*c)
                && at == step
            {
                buckets.push(Bucket { upper, count });
                first = first.min(si);
            }
        }
        if buckets.is_empty() {
            continue;
        }
        let qs = q[step as usize];
        let (val, was_forced) = if distinct && (0.0..=1.0).contains(&qs) {
            distinct_bucket_quantile(qs, &mut buckets)
        } else {
            bucket_quantile(qs, &mut buckets)
        };
        if was_forced {
            fixes.push((step, first));
        }
        pts.push((step, val));
    }
    (pts, fixes)
}

/// Parses a float as Go's `strconv.ParseFloat` does for bucket bounds (`+Inf`, `1e0`, `.2`).
pub(crate) fn parse_go_float(s: &str) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    let t = s.replace('_', "");
    let lower = t.to_ascii_lowercase();
    match lower.as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    t.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lookout_storage::Appendable;

    /// The per-group walk gives what evaluating step by step gives (buckets in input order
    /// at each step, monotonicity infos in the order steps and input series meet them), on
    /// bucket series with gaps, non-monotonic steps and unsorted `le` strings.
    #[test]
    fn grouped_walk_matches_step_by_step_reference() {
        let mem = lookout_storage::memory::MemStorage::new();
        let mut app = mem.appender();
        let les = ["0.1", "1", "10", "2.5", "+Inf", "0.5"];
        let (n, step) = (40usize, 600_000i64);
        let mut series: Vec<(Labels, Vec<Option<f64>>)> = Vec::new();
        for (gi, (name, job)) in [("b_bucket", "x"), ("a_bucket", "y"), ("c_bucket", "z")]
            .into_iter()
            .enumerate()
        {
            for (li, le) in les.iter().enumerate() {
                let labels = Labels::from_pairs([("__name__", name), ("job", job), ("le", le)]);
                let upper = parse_go_float(le).unwrap();
                let vals: Vec<Option<f64>> = (0..n)
                    .map(|k| {
                        if (k + li * 3 + gi) % 7 == 0 {
                            return None;
                        }
                        let base = if upper.is_infinite() {
                            1000.0
                        } else {
                            upper * 10.0
                        };
                        // Fixes first needed by the last group, then the others.
                        Some(if (k + gi) % 5 == 4 {
                            1000.0 - base
                        } else {
                            base + k as f64
                        })
                    })
                    .collect();
                for (k, v) in vals.iter().enumerate() {
                    if let Some(v) = v {
                        app.append(None, &labels, k as i64 * step, *v).unwrap();
                    }
                }
                series.push((labels, vals));
            }
        }
        app.commit().unwrap();
        series.sort_by(|a, b| a.0.cmp(&b.0));

        // Reference: step by step, in input order.
        let mut keys: Vec<Labels> = Vec::new();
        let mut want: HashMap<Labels, Vec<(i64, u64)>> = HashMap::new();
        let mut want_names: Vec<String> = Vec::new();
        for k in 0..n {
            let mut per_group: Vec<(usize, Vec<Bucket>)> = Vec::new();
            for (labels, vals) in &series {
                let Some(v) = vals[k] else { continue };
                let key = labels.without(&["le"]);
                let g = keys.iter().position(|x| *x == key).unwrap_or_else(|| {
                    keys.push(key.clone());
                    keys.len() - 1
                });
                let upper = parse_go_float(labels.get("le").unwrap()).unwrap();
                match per_group.iter_mut().find(|x| x.0 == g) {
                    Some(x) => x.1.push(Bucket { upper, count: v }),
                    None => per_group.push((g, vec![Bucket { upper, count: v }])),
                }
            }
            for (g, mut bs) in per_group {
                let (v, forced) = bucket_quantile(0.9, &mut bs);
                let name = keys[g].metric_name().unwrap().to_string();
                if forced && !want_names.contains(&name) {
                    want_names.push(name);
                }
                want.entry(keys[g].without_metric_name())
                    .or_default()
                    .push((k as i64 * step, v.to_bits()));
            }
        }
        assert_eq!(want_names, ["c_bucket", "a_bucket", "b_bucket"]);

        let res = crate::Engine::default()
            .range_query(
                &mem,
                "histogram_quantile(0.9, {__name__=~\"a_bucket|b_bucket|c_bucket\"})",
                0,
                (n as i64 - 1) * step,
                std::time::Duration::from_millis(step as u64),
            )
            .unwrap();
        let crate::Value::Matrix(got) = res.value else {
            panic!("not a matrix")
        };
        let got: HashMap<Labels, Vec<(i64, u64)>> = got
            .into_iter()
            .map(|s| {
                let pts = s.samples.iter().map(|x| (x.t, x.v.to_bits())).collect();
                (s.labels, pts)
            })
            .collect();
        assert_eq!(got, want);
        let names: Vec<String> = res
            .infos
            .iter()
            .map(|i| i.rsplit('"').nth(1).unwrap().to_string())
            .collect();
        assert_eq!(names, want_names);
    }

    fn b(pairs: &[(f64, f64)]) -> Vec<Bucket> {
        pairs
            .iter()
            .map(|&(upper, count)| Bucket { upper, count })
            .collect()
    }

    #[test]
    fn interpolates_within_bucket() {
        let mut bs = b(&[
            (0.0, 0.0),
            (2.0, 1.0),
            (4.0, 2.0),
            (6.0, 3.0),
            (f64::INFINITY, 3.0),
        ]);
        let (v, forced) = bucket_quantile(0.5, &mut bs);
        assert!((v - 3.0).abs() < 1e-9);
        assert!(!forced);
    }

    #[test]
    fn missing_inf_bucket_is_nan_and_top_bucket_returns_second_highest_bound() {
        let mut bs = b(&[(1.0, 1.0), (2.0, 2.0)]);
        assert!(bucket_quantile(0.5, &mut bs).0.is_nan());
        let mut bs = b(&[(1.0, 1.0), (2.0, 2.0), (f64::INFINITY, 10.0)]);
        assert_eq!(bucket_quantile(0.99, &mut bs).0, 2.0);
    }

    #[test]
    fn monotonicity_is_forced_and_reported() {
        let mut bs = b(&[(1.0, 5.0), (2.0, 3.0), (f64::INFINITY, 10.0)]);
        let (_, forced) = bucket_quantile(0.5, &mut bs);
        assert!(forced);
    }

    #[test]
    fn out_of_range_quantiles() {
        let mut bs = b(&[(1.0, 1.0), (f64::INFINITY, 2.0)]);
        assert_eq!(bucket_quantile(-0.1, &mut bs).0, f64::NEG_INFINITY);
        assert_eq!(bucket_quantile(1.1, &mut bs).0, f64::INFINITY);
        assert!(bucket_quantile(f64::NAN, &mut bs).0.is_nan());
    }

    /// On sorted, distinct bounds the shortcut without sort and coalescing answers exactly as
    /// the full function: values (bit for bit) and the monotonicity flag, with and without
    /// `+Inf`, with decreasing and nearly equal counts, for quantiles 0 to 1.
    #[test]
    fn distinct_shortcut_matches_full_quantile() {
        let uppers = [-1.0, 0.0, 0.1, 0.5, 1.0, 2.5, 10.0, f64::INFINITY];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut flags = 0;
        for _ in 0..4000 {
            let mut bs: Vec<Bucket> = Vec::new();
            let mut acc = 0.0;
            for &upper in &uppers {
                if next() % 4 == 0 {
                    continue;
                }
                acc += match next() % 6 {
                    0 => -3.0,
                    1 => 1e-14 * acc,
                    2 => 0.0,
                    k => k as f64,
                };
                bs.push(Bucket { upper, count: acc });
            }
            if bs.is_empty() {
                continue;
            }
            let q = (next() % 101) as f64 / 100.0;
            let (mut full, mut short) = (bs.clone(), bs.clone());
            let want = bucket_quantile(q, &mut full);
            let got = distinct_bucket_quantile(q, &mut short);
            assert_eq!(want.0.to_bits(), got.0.to_bits(), "{bs:?} q={q}");
            assert_eq!(want.1, got.1, "{bs:?} q={q}");
            flags += usize::from(got.1);
        }
        assert!(flags > 0, "no case needed a monotonicity fix");
    }

    #[test]
    fn parses_go_style_bounds() {
        assert_eq!(parse_go_float("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_go_float(".2"), Some(0.2));
        assert_eq!(parse_go_float("1e0"), Some(1.0));
        assert_eq!(parse_go_float("x"), None);
    }
}
