//! Property tests of `families::Families`: whatever families an exporter builds, both formats
//! parse back (OpenMetrics strictly) to the same series, in the same order, with the same values.

use lookout_exposition::families::Families;
use lookout_exposition::{Format, MetricType, OwnedSample, parse_samples};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Add {
        name: String,
        kind: MetricType,
        labels: Vec<(String, String)>,
        value: f64,
    },
    Summary {
        name: String,
        quantiles: Vec<(f64, f64)>,
        sum: f64,
        count: f64,
    },
}

fn metric_name() -> impl Strategy<Value = String> {
    // Few distinct names so samples pile up in shared families; `_total` and bare counters both
    // (never `x` next to `x_total`: both would be OpenMetrics family `x`).
    prop_oneof![
        Just("m_a"),
        Just("m_b_total"),
        Just("m_c_bytes"),
        Just("m_d")
    ]
    .prop_map(str::to_string)
}

fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9/._-]{0,8}",
        proptest::collection::vec(
            prop_oneof![Just('"'), Just('\\'), Just('\n'), Just('}'), any::<char>()],
            0..6
        )
        .prop_map(|v| v.into_iter().collect()),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (
            metric_name(),
            prop_oneof![Just(MetricType::Counter), Just(MetricType::Gauge)],
            // One label set per family shape: `db` and `i` carry the series identity.
            ("[xyz]", 0u8..20, label_value()),
            prop_oneof![
                (0u64..1 << 40).prop_map(|i| i as f64),
                0.0f64..1e12,
                Just(f64::INFINITY)
            ],
        )
            .prop_map(|(name, kind, (db, i, extra), value)| Op::Add {
                name,
                kind,
                labels: vec![
                    ("i".to_string(), i.to_string()),
                    ("db".to_string(), db),
                    ("extra".to_string(), extra),
                ],
                value,
            }),
        1 => (
            "[e-f]",
            proptest::collection::btree_map(0u8..=100, 0.0f64..10.0, 0..4),
            0.0f64..1e6,
            0u32..100_000,
        )
            .prop_map(|(base, qs, sum, count)| Op::Summary {
                name: format!("s_{base}"),
                quantiles: qs.into_iter().map(|(q, v)| (f64::from(q) / 100.0, v)).collect(),
                sum,
                count: f64::from(count),
            }),
    ]
}

fn build(ops: &[Op]) -> Families {
    let mut f = Families::new();
    for (n, op) in ops.iter().enumerate() {
        match op {
            Op::Add {
                name,
                kind,
                labels,
                value,
            } => {
                // A distinct series per sample, so OpenMetrics groups never repeat.
                let mut labels = labels.clone();
                labels.push(("n".to_string(), n.to_string()));
                f.add_owned(name, "Help \\ text\nwith newline.", *kind, labels, *value);
            }
            Op::Summary {
                name,
                quantiles,
                sum,
                count,
            } => f.add_summary(
                name,
                "Latency.",
                &[("n", &n.to_string())],
                quantiles,
                *sum,
                *count,
            ),
        }
    }
    f
}

fn key(s: &OwnedSample) -> (String, Vec<(String, String)>, u64) {
    (s.name.clone(), s.labels.clone(), s.value.to_bits())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn text_and_openmetrics_expose_the_same_series(ops in proptest::collection::vec(op(), 1..24)) {
        let f = build(&ops);
        let text_bytes = f.encode(Format::PrometheusText);
        let om_bytes = f.encode(Format::OpenMetrics);
        let text = parse_samples(&text_bytes, Format::PrometheusText)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&text_bytes))))?;
        let om = parse_samples(&om_bytes, Format::OpenMetrics)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&om_bytes))))?;
        prop_assert_eq!(
            text.iter().map(key).collect::<Vec<_>>(),
            om.iter().map(key).collect::<Vec<_>>()
        );
        let total: usize = f.iter().map(|fam| fam.samples.len()).sum();
        prop_assert_eq!(text.len(), total);
        for s in &text {
            // Text keeps each family's registered type; the sample name is the family name
            // (plus `_sum`/`_count` for summaries).
            let fam = f
                .iter()
                .find(|fam| s.name == fam.name || s.name.strip_prefix(fam.name.as_str()).is_some_and(|r| r == "_sum" || r == "_count"))
                .ok_or_else(|| TestCaseError::fail(format!("no family for {}", s.name)))?;
            prop_assert_eq!(s.metric_type, fam.kind);
        }
        for s in &om {
            let want = if s.name.starts_with("m_") && !s.name.ends_with("_total") {
                // Counters without `_total` are `unknown` in OpenMetrics; gauges stay gauges.
                let fam = f.get(&s.name).ok_or_else(|| TestCaseError::fail("family"))?;
                if fam.kind == MetricType::Counter { MetricType::Unknown } else { fam.kind }
            } else if s.name.starts_with("m_") {
                f.get(&s.name).ok_or_else(|| TestCaseError::fail("family"))?.kind
            } else {
                MetricType::Summary
            };
            prop_assert_eq!(s.metric_type, want);
        }
    }
}
