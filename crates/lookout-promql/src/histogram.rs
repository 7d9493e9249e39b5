//! `histogram_quantile` over classic (`le`-labelled) bucket series.

use std::collections::HashMap;

use lookout_storage::Labels;
use promql_parser::parser::Expr;

use crate::eval::{
    Evaluator, Range, Result, StepSeries, Val, format_g, merge_same_labels, transpose,
};

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
    // Coalesce equal bounds.
    let mut merged: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.upper == b.upper => last.count += b.count,
            _ => merged.push(*b),
        }
    }
    *buckets = merged;
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
    let steps = transpose(&v, n);
    let mut out: Vec<StepSeries> = groups
        .iter()
        .map(|(l, _)| StepSeries {
            labels: l.clone(),
            pts: Vec::new(),
        })
        .collect();
    let mut buckets: Vec<Vec<Bucket>> = vec![Vec::new(); groups.len()];
    let mut forced_names: Vec<String> = Vec::new();
    for (step, entries) in steps.iter().enumerate() {
        let mut touched = Vec::new();
        for &(si, f) in entries {
            if let Some((g, upper)) = series_group[si] {
                if buckets[g].is_empty() {
                    touched.push(g);
                }
                buckets[g].push(Bucket { upper, count: f });
            }
        }
        for g in touched {
            let (val, forced) = bucket_quantile(q[step], &mut buckets[g]);
            if forced && !forced_names.contains(&groups[g].1) {
                forced_names.push(groups[g].1.clone());
            }
            out[g].pts.push((step as u32, val));
            buckets[g].clear();
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

    #[test]
    fn parses_go_style_bounds() {
        assert_eq!(parse_go_float("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_go_float(".2"), Some(0.2));
        assert_eq!(parse_go_float("1e0"), Some(1.0));
        assert_eq!(parse_go_float("x"), None);
    }
}
