//! Property tests: what the encoder writes, the parser reads back unchanged (both formats), and
//! the parser never panics, whatever the bytes; Prometheus-compatible OpenMetrics parsing reads
//! whatever strict parsing accepts, identically.

use std::collections::BTreeMap;

use lookout_exposition::{
    Encoder, Entry, Format, MetricType, ParseMode, Parser, convert, parse_samples,
    parse_samples_with_mode,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Fam {
    name: String,
    typ: MetricType,
    /// A counter named without `_total`, samples included (postgres_exporter style).
    bare: bool,
    help: Option<String>,
    with_ts: bool,
    series: Vec<(BTreeMap<String, String>, f64, i64)>,
}

fn label_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,12}".prop_filter("reserved", |n| n != "le" && n != "quantile")
}

/// Label values and help texts: anything, with the characters that need escaping well
/// represented.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 _./:-]{0,20}",
        proptest::collection::vec(
            prop_oneof![
                Just('\\'),
                Just('"'),
                Just('\n'),
                Just('#'),
                Just('{'),
                Just('}'),
                Just(','),
                Just('='),
                any::<char>()
            ],
            0..16
        )
        .prop_map(|v| v.into_iter().collect()),
    ]
}

fn any_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        any::<f64>(),
        (-1_000_000i64..1_000_000).prop_map(|i| i as f64),
        (-1e6f64..1e6),
    ]
}

/// Counter values must be finite-or-+Inf and not negative in OpenMetrics.
fn counter_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::INFINITY),
        (0u64..1 << 53).prop_map(|i| i as f64),
        0.0f64..1e300
    ]
}

fn family(idx: usize) -> impl Strategy<Value = Fam> {
    (
        // A family name ending in `_total` would make the counter naming conventions ambiguous.
        "[a-z_][a-z0-9_]{0,10}".prop_filter("suffix", |b| !b.ends_with("total")),
        prop_oneof![
            Just(MetricType::Counter),
            Just(MetricType::Gauge),
            Just(MetricType::Unknown)
        ],
        // The text format cannot carry a HELP made only of blanks (Prometheus reads it as empty).
        proptest::option::of(text().prop_filter("blank help", |h| {
            h.is_empty() || !h.chars().all(|c| c == ' ' || c == '\t')
        })),
        any::<bool>(),
        proptest::collection::btree_map(label_name(), text(), 0..4),
        1usize..5,
        any::<bool>(),
    )
        .prop_flat_map(move |(base, typ, help, with_ts, shared, n, bare)| {
            let value = if typ == MetricType::Counter {
                counter_value().boxed()
            } else {
                any_value().boxed()
            };
            // Prometheus's text grammar has no negative timestamps, so none are generated.
            let series = proptest::collection::vec((value, 0i64..4_000_000_000_000), n).prop_map(
                move |vals| {
                    vals.into_iter()
                        .enumerate()
                        .map(|(i, (v, ts))| {
                            let mut labels = shared.clone();
                            // A distinct label set per series keeps OpenMetrics groups apart.
                            labels.insert("series".into(), i.to_string());
                            (labels, v, ts)
                        })
                        .collect::<Vec<_>>()
                },
            );
            let name = format!("m{idx}_{base}");
            let help = help.clone();
            series.prop_map(move |series| Fam {
                name: name.clone(),
                typ,
                bare: bare && typ == MetricType::Counter,
                help: help.clone(),
                with_ts,
                series,
            })
        })
}

fn families() -> impl Strategy<Value = Vec<Fam>> {
    (1usize..5).prop_flat_map(|n| (0..n).map(family).collect::<Vec<_>>())
}

/// The sample name, which is also the name a family is declared with.
fn sample_name(f: &Fam) -> String {
    if f.typ == MetricType::Counter && !f.bare {
        format!("{}_total", f.name)
    } else {
        f.name.clone()
    }
}

fn encode(fams: &[Fam], format: Format) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = Encoder::new(format, &mut out);
    for f in fams {
        enc.family(&sample_name(f), f.typ, f.help.as_deref(), None);
        for (labels, v, ts) in &f.series {
            enc.sample_with(
                &sample_name(f),
                labels.iter(),
                *v,
                f.with_ts.then_some(*ts),
                None,
            );
        }
    }
    enc.finish();
    out
}

/// The type a reader sees: OpenMetrics has no counter without `_total` samples, so the
/// Encoder writes a bare counter as `unknown` there (as client_golang does).
fn read_type(f: &Fam, format: Format) -> MetricType {
    if f.bare && format == Format::OpenMetrics {
        MetricType::Unknown
    } else {
        f.typ
    }
}

fn same_value(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits() || (a == 0.0 && b == 0.0)
}

fn check_roundtrip(fams: &[Fam], format: Format) -> Result<(), TestCaseError> {
    let bytes = encode(fams, format);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let mut p = Parser::new(&bytes, format);
    let mut helps = Vec::new();
    let mut types = Vec::new();
    let mut samples = Vec::new();
    loop {
        match p.next_entry() {
            Ok(Some(Entry::Help { name, help })) => {
                helps.push((name.into_owned(), help.into_owned()))
            }
            Ok(Some(Entry::Type { name, metric_type })) => {
                types.push((name.into_owned(), metric_type))
            }
            Ok(Some(Entry::Unit { .. })) => {}
            Ok(Some(Entry::Sample(s))) => samples.push(s.to_owned_sample()),
            Ok(None) => break,
            Err(e) => return Err(TestCaseError::fail(format!("{e}\n--- input ---\n{text}"))),
        }
    }
    let mut want_helps = Vec::new();
    let mut want_types = Vec::new();
    for f in fams {
        let meta_name = match format {
            Format::PrometheusText => sample_name(f),
            Format::OpenMetrics => f.name.clone(),
        };
        if let Some(h) = &f.help {
            want_helps.push((meta_name.clone(), h.clone()));
        }
        want_types.push((meta_name, read_type(f, format)));
    }
    prop_assert_eq!(helps, want_helps, "{}", text);
    prop_assert_eq!(types, want_types, "{}", text);
    let want: Vec<_> = fams
        .iter()
        .flat_map(|f| f.series.iter().map(move |s| (f, s)))
        .collect();
    prop_assert_eq!(samples.len(), want.len(), "{}", text);
    for (got, (f, (labels, v, ts))) in samples.iter().zip(want) {
        prop_assert_eq!(&got.name, &sample_name(f));
        let want_labels: Vec<(String, String)> =
            labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        prop_assert_eq!(&got.labels, &want_labels);
        prop_assert!(
            same_value(got.value, *v),
            "value {} != {} in\n{}",
            got.value,
            v,
            text
        );
        prop_assert_eq!(got.timestamp_ms, f.with_ts.then_some(*ts));
        prop_assert_eq!(got.metric_type, read_type(f, format));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn text_roundtrip(fams in families()) {
        check_roundtrip(&fams, Format::PrometheusText)?;
    }

    #[test]
    fn openmetrics_roundtrip(fams in families()) {
        check_roundtrip(&fams, Format::OpenMetrics)?;
    }

    #[test]
    fn conversion_keeps_samples(fams in families()) {
        // OpenMetrics -> text -> OpenMetrics gives back the same exposition. (Bare counters are
        // `unknown` in OpenMetrics, so they come back `untyped` in text: leave them out.)
        let fams: Vec<Fam> = fams.into_iter().map(|f| Fam { bare: false, ..f }).collect();
        let om = encode(&fams, Format::OpenMetrics);
        let mut text = Vec::new();
        convert(&om, Format::OpenMetrics, Format::PrometheusText, &mut text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&text, &encode(&fams, Format::PrometheusText));
        let mut back = Vec::new();
        convert(&text, Format::PrometheusText, Format::OpenMetrics, &mut back).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, om);
    }

    #[test]
    fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), om in any::<bool>()) {
        let format = if om { Format::OpenMetrics } else { Format::PrometheusText };
        drain(&bytes, format);
    }

    #[test]
    fn parser_never_panics_on_mutated_input(
        fams in families(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
        om in any::<bool>(),
    ) {
        let format = if om { Format::OpenMetrics } else { Format::PrometheusText };
        let mut bytes = encode(&fams, format);
        for (at, byte, op) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => {
                    bytes.remove(i);
                }
            }
        }
        drain(&bytes, format);
        drain(&bytes, match format { Format::OpenMetrics => Format::PrometheusText, Format::PrometheusText => Format::OpenMetrics });
        drain_mode(&bytes, Format::OpenMetrics, ParseMode::PrometheusCompatible);
    }

    #[test]
    fn compatible_mode_reads_what_strict_accepts(
        fams in families(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..4),
    ) {
        let mut bytes = encode(&fams, Format::OpenMetrics);
        for (at, byte, op) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => {
                    bytes.remove(i);
                }
            }
        }
        if let Ok(strict) = parse_samples(&bytes, Format::OpenMetrics) {
            let compat = parse_samples_with_mode(&bytes, Format::OpenMetrics, ParseMode::PrometheusCompatible)
                .map_err(|e| TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&bytes))))?;
            prop_assert_eq!(strict.len(), compat.len());
            for (a, b) in strict.iter().zip(&compat) {
                prop_assert_eq!(&a.name, &b.name);
                prop_assert_eq!(&a.labels, &b.labels);
                prop_assert!(same_value(a.value, b.value));
                prop_assert_eq!(a.timestamp_ms, b.timestamp_ms);
                prop_assert_eq!(&a.exemplar.is_some(), &b.exemplar.is_some());
            }
        }
    }
}

/// Reads everything a consumer could read until the end or the first error, then checks that
/// the error is sticky.
fn drain(bytes: &[u8], format: Format) {
    drain_mode(bytes, format, ParseMode::Strict);
}

fn drain_mode(bytes: &[u8], format: Format, mode: ParseMode) {
    let mut p = Parser::with_mode(bytes, format, mode);
    loop {
        match p.next_entry() {
            Ok(Some(Entry::Sample(s))) => {
                let _ = (
                    s.name(),
                    s.raw_series(),
                    s.value(),
                    s.timestamp_ms(),
                    s.label("le"),
                    s.is_created(),
                );
                for (n, v) in s.labels() {
                    let _ = (n.len(), v.len());
                }
                if let Some(e) = s.exemplar() {
                    let _ = e.labels().count();
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                assert_eq!(p.next_entry().unwrap_err(), e);
                break;
            }
        }
    }
}
