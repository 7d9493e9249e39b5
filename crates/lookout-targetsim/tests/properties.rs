//! Property tests on rendered bodies: well-formed lines, cumulative histograms,
//! monotone counters, the requested series count, and OpenMetrics framing.

use std::collections::BTreeMap;

use lookout_targetsim::{Format, SERIES_PER_HISTOGRAM, SimConfig, Simulator, Split};
use proptest::prelude::*;

/// Parses `name{labels} value` lines (skipping comments) into `(series, value)`.
fn parse(body: &str) -> Vec<(String, f64)> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("no value: {l:?}"));
            let v: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {l:?}"));
            assert!(v.is_finite() && v >= 0.0, "{l:?}");
            let name_end = series.find('{').unwrap_or(series.len());
            let name = &series[..name_end];
            assert!(
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad name: {l:?}"
            );
            if name_end < series.len() {
                assert!(series.ends_with('}'), "{l:?}");
            }
            (series.to_string(), v)
        })
        .collect()
}

fn render(sim: &Simulator, target: usize, tick: u64, format: Format) -> String {
    let mut out = Vec::new();
    assert!(sim.render(target, tick, format, &mut out));
    String::from_utf8(out).expect("utf-8 body")
}

fn config(series: usize, churn: usize, seed: u64) -> SimConfig {
    SimConfig {
        targets: 2,
        series_per_target: series,
        churn_series: churn,
        churn_period_ticks: 10,
        seed,
        tick_ms: 1000,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn bodies_are_consistent(series in 0usize..1500, churn in 0usize..20, seed: u64,
                             tick in 1000u64..10_000_000, step in 1u64..5000, target in 0usize..2) {
        let sim = Simulator::with_epoch(config(series, churn, seed), 0).unwrap();
        let a = parse(&render(&sim, target, tick, Format::Text));
        let b = parse(&render(&sim, target, tick + step, Format::Text));

        // Series count: exactly the stable budget plus the churn series present.
        let stable = a.iter().filter(|(s, _)| !s.starts_with("app_worker_tasks")).count();
        prop_assert_eq!(stable, series);
        prop_assert_eq!(a.len(), sim.series_at(target, tick));

        // Unique series.
        let map_a: BTreeMap<_, _> = a.iter().cloned().collect();
        prop_assert_eq!(map_a.len(), a.len());

        // Counters and histogram parts never go down.
        let map_b: BTreeMap<_, _> = b.iter().cloned().collect();
        for (s, v) in &map_a {
            if s.starts_with("http_requests_total") || s.starts_with("http_request_duration_seconds") {
                let later = map_b.get(s).copied().unwrap_or(f64::NAN);
                prop_assert!(later >= *v, "{} went from {} to {}", s, v, later);
            }
        }

        // Buckets are cumulative and `_count` equals the `+Inf` bucket.
        let split = Split::of(series);
        let buckets: Vec<_> = a.iter().filter(|(s, _)| s.starts_with("http_request_duration_seconds_bucket")).collect();
        prop_assert_eq!(buckets.len(), split.histograms * (SERIES_PER_HISTOGRAM - 2));
        for h in buckets.chunks(SERIES_PER_HISTOGRAM - 2) {
            for w in h.windows(2) {
                prop_assert!(w[0].1 <= w[1].1);
            }
            let last = h.last().unwrap();
            prop_assert!(last.0.contains("le=\"+Inf\""));
            let count_name = last.0.replace("_bucket", "_count").replace(",le=\"+Inf\"", "");
            prop_assert_eq!(map_a.get(&count_name).copied(), Some(last.1));
        }
    }

    #[test]
    fn openmetrics_has_same_samples(series in 0usize..600, seed: u64, tick in 1000u64..100_000) {
        let sim = Simulator::with_epoch(config(series, 3, seed), 0).unwrap();
        let text = render(&sim, 0, tick, Format::Text);
        let om = render(&sim, 0, tick, Format::OpenMetrics);
        prop_assert!(om.ends_with("# EOF\n"));
        prop_assert!(!text.contains("# EOF"));
        prop_assert_eq!(parse(&text), parse(&om));
        // OpenMetrics counter families drop the `_total` suffix in metadata.
        if series >= 5 {
            prop_assert!(om.contains("# TYPE http_requests counter\n"));
            prop_assert!(text.contains("# TYPE http_requests_total counter\n"));
        }
    }
}

#[test]
fn seed_changes_values_not_shape() {
    let a = Simulator::with_epoch(config(800, 0, 1), 0).unwrap();
    let b = Simulator::with_epoch(config(800, 0, 2), 0).unwrap();
    let pa = parse(&render(&a, 0, 5000, Format::Text));
    let pb = parse(&render(&b, 0, 5000, Format::Text));
    let names_a: Vec<_> = pa.iter().map(|(s, _)| s).collect();
    let names_b: Vec<_> = pb.iter().map(|(s, _)| s).collect();
    assert_eq!(names_a, names_b);
    assert_ne!(pa, pb);
}
