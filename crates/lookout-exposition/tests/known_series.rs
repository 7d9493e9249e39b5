//! `Parser::next_entry_with_known` against the full parser: for any set of series texts a
//! parser of the same format accepted before (and any of them expected next), skipping
//! those texts' labels changes nothing but the skipped name and labels — same samples, same
//! errors, same line numbers.

use std::collections::HashSet;

use lookout_exposition::{Entry, Format, KnownSeries, ParseError, ParseMode, Parser};
use proptest::prelude::*;

/// Exemplar labels, value bits and timestamp.
type SeenExemplar = (Vec<(String, String)>, u64, Option<i64>);

/// What both paths must agree on for one sample.
#[derive(Debug, PartialEq)]
struct Seen {
    raw: Vec<u8>,
    value: u64,
    ts: Option<i64>,
    exemplar: Option<SeenExemplar>,
    line: usize,
}

/// The known texts, and the order in which they are expected (the n-th sample is expected
/// to be `order[n]`, as a scrape loop expects the last scrape's order).
type KnownSet<'k> = (&'k HashSet<Vec<u8>>, &'k [Vec<u8>]);

/// A caller that knows `known` and expects `order`, counting how each sample was found.
struct Oracle<'k> {
    known: &'k HashSet<Vec<u8>>,
    order: &'k [Vec<u8>],
    /// Samples returned so far (the position in `order`).
    n: usize,
    expected_hits: usize,
}

impl KnownSeries for Oracle<'_> {
    fn expected_len(&mut self) -> usize {
        self.order.get(self.n).map_or(0, Vec::len)
    }

    fn is_expected(&mut self, text: &[u8]) -> bool {
        let expected = &self.order[self.n];
        assert_eq!(text.len(), expected.len(), "asked with the expected length");
        let hit = text == expected.as_slice();
        self.expected_hits += usize::from(hit);
        hit
    }

    fn is_known(&mut self, text: &[u8]) -> bool {
        self.known.contains(text)
    }
}

/// What one parse produced.
struct Run {
    entries: Vec<Result<Seen, String>>,
    error: Option<ParseError>,
    /// Samples whose series was known.
    hits: usize,
    /// Of those, found as the expected text.
    expected_hits: usize,
}

/// Entries (samples as [`Seen`], metadata as text) and the final error, if any; with
/// `known`, also how the known samples were found.
fn run(body: &[u8], format: Format, mode: ParseMode, known: Option<KnownSet<'_>>) -> Run {
    let mut p = Parser::with_mode(body, format, mode);
    let empty = HashSet::new();
    let mut oracle = Oracle {
        known: known.map_or(&empty, |(k, _)| k),
        order: known.map_or(&[][..], |(_, o)| o),
        n: 0,
        expected_hits: 0,
    };
    let mut out = Run {
        entries: Vec::new(),
        error: None,
        hits: 0,
        expected_hits: 0,
    };
    loop {
        let line_before = p.line();
        oracle.n = out.entries.iter().filter(|e| e.is_ok()).count();
        let r = match known {
            Some(_) => p.next_entry_with_known(&mut oracle),
            None => p.next_entry(),
        };
        match r {
            Ok(None) => break,
            Err(e) => {
                out.error = Some(e);
                break;
            }
            Ok(Some(Entry::Sample(s))) => {
                if s.series_known() {
                    out.hits += 1;
                    assert_eq!(s.label_count(), 0);
                    assert_eq!(s.name(), "");
                }
                out.entries.push(Ok(Seen {
                    raw: s.raw_series().to_vec(),
                    value: s.value().to_bits(),
                    ts: s.timestamp_ms(),
                    exemplar: s.exemplar().map(|e| {
                        let o = e.to_owned_exemplar();
                        (o.labels, o.value.to_bits(), o.timestamp_ms)
                    }),
                    line: line_before,
                }))
            }
            Ok(Some(e)) => out.entries.push(Err(format!("{e:?}"))),
        }
    }
    out.expected_hits = oracle.expected_hits;
    out
}

/// The raw series of the samples the full parser accepted, in order.
fn accepted_order(body: &[u8], format: Format, mode: ParseMode) -> Vec<Vec<u8>> {
    run(body, format, mode, None)
        .entries
        .into_iter()
        .filter_map(|s| s.ok().map(|s| s.raw))
        .collect()
}

fn accepted(body: &[u8], format: Format, mode: ParseMode) -> HashSet<Vec<u8>> {
    accepted_order(body, format, mode).into_iter().collect()
}

/// Full parse against the known path with the texts of `known_from` expected in their own
/// order, shifted by one, and not at all; returns the known samples of the first.
fn check(known_from: &[u8], body: &[u8], format: Format, mode: ParseMode) -> usize {
    let order = accepted_order(known_from, format, mode);
    let known: HashSet<Vec<u8>> = order.iter().cloned().collect();
    let full = run(body, format, mode, None);
    let shifted: Vec<Vec<u8>> = order.iter().skip(1).cloned().collect();
    let mut first = None;
    for o in [&order[..], &shifted[..], &[]] {
        let fast = run(body, format, mode, Some((&known, o)));
        assert_eq!(full.entries, fast.entries, "entries differ");
        assert_eq!(full.error, fast.error, "errors differ");
        if o.is_empty() {
            assert_eq!(fast.expected_hits, 0);
        }
        let skips = format == Format::PrometheusText || mode != ParseMode::Strict;
        if skips && known_from == body && o.len() == order.len() {
            // Every accepted sample is where the last parse had it: none is scanned for.
            let accepted = fast.entries.iter().filter(|e| e.is_ok()).count();
            assert_eq!(fast.expected_hits, accepted, "found in order");
        }
        first.get_or_insert(fast.hits);
    }
    first.unwrap_or(0)
}

/// Label values with the characters that end a naive scan early.
fn value() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("}".to_string()),
            Just(",".to_string()),
            Just("\\\"".to_string()),
            Just("\\\\".to_string()),
            Just("\\n".to_string()),
            Just("=".to_string()),
            Just("{".to_string()),
            Just(" ".to_string()),
            Just("é".to_string()),
            "[a-z0-9]{1,3}",
        ],
        0..5,
    )
    .prop_map(|v| v.concat())
}

fn series(om: bool) -> impl Strategy<Value = String> {
    let label = ("[a-z_][a-z0-9_]{0,3}", value()).prop_map(|(n, v)| format!("{n}=\"{v}\""));
    (
        prop_oneof![
            Just("m".to_string()),
            Just("m_total".to_string()),
            Just("x:y".to_string())
        ],
        prop::collection::vec(label, 0..4),
        0..4u8,
    )
        .prop_map(move |(name, labels, style)| {
            let set = labels.join(",");
            match style {
                0 if labels.is_empty() => name,
                1 => format!(
                    "{{\"{name}\"{}{set}}}",
                    if set.is_empty() { "" } else { "," }
                ),
                2 if !om => format!("{name} {{{set}}}"),
                3 => format!("{name}{{{set},}}"),
                _ => format!("{name}{{{set}}}"),
            }
        })
}

fn line(om: bool) -> impl Strategy<Value = String> {
    let ex = (value(), 0..3u8).prop_map(|(v, k)| match k {
        0 => String::new(),
        1 => format!(" # {{id=\"{v}\"}} 1.5"),
        _ => format!(" # {{id=\"{v}\"}} 2 123.5"),
    });
    prop_oneof![
        6 => (series(om), "-?[0-9]{1,3}(\\.[0-9])?|NaN|\\+Inf", prop::option::of(1..2_000_000_000i64), ex)
            .prop_map(move |(s, v, ts, ex)| {
                let ts = ts.map_or(String::new(), |t| format!(" {t}"));
                if om { format!("{s} {v}{ts}{ex}") } else { format!("{s} {v}{ts}") }
            }),
        1 => Just("# TYPE m counter".to_string()),
        1 => Just("# HELP m_total some help".to_string()),
    ]
}

fn body(om: bool) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(line(om), 1..12).prop_map(move |lines| {
        let mut b = lines.join("\n");
        b.push('\n');
        if om {
            b.push_str("# EOF\n");
        }
        b.into_bytes()
    })
}

/// `body` with a few bytes replaced, inserted or removed (mostly syntax characters).
fn mutated(om: bool) -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let edit = (
        any::<prop::sample::Index>(),
        0..3u8,
        prop::sample::select(b"{}\",=\\ \n#a1.\t\xff".to_vec()),
    );
    (body(om), prop::collection::vec(edit, 0..4)).prop_map(|(b, edits)| {
        let mut m = b.clone();
        for (at, kind, c) in edits {
            let i = at.index(m.len() + 1);
            match kind {
                0 if i < m.len() => m[i] = c,
                1 if i < m.len() => {
                    m.remove(i);
                }
                _ => m.insert(i, c),
            }
        }
        (b, m)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn text_known_series_parse_like_the_full_parser((orig, changed) in mutated(false)) {
        // Known from the original body, parsing the changed one, and the other way round.
        check(&orig, &changed, Format::PrometheusText, ParseMode::Strict);
        check(&changed, &orig, Format::PrometheusText, ParseMode::Strict);
        let hits = check(&orig, &orig, Format::PrometheusText, ParseMode::Strict);
        let n = run(&orig, Format::PrometheusText, ParseMode::Strict, None).entries;
        prop_assert_eq!(hits, n.iter().filter(|s| s.is_ok()).count(), "every series of a good body is known");
    }

    #[test]
    fn openmetrics_known_series_parse_like_the_full_parser((orig, changed) in mutated(true)) {
        let mode = ParseMode::PrometheusCompatible;
        check(&orig, &changed, Format::OpenMetrics, mode);
        check(&changed, &orig, Format::OpenMetrics, mode);
        check(&orig, &orig, Format::OpenMetrics, mode);
        // Strict mode never skips labels.
        prop_assert_eq!(check(&orig, &orig, Format::OpenMetrics, ParseMode::Strict), 0);
    }
}

#[test]
fn quoted_braces_commas_and_escapes_end_the_series_where_the_parser_does() {
    let body = b"m{a=\"}\",b=\"\\\"}\\\\\"} 1\nm {a=\"x,y\"} 2 17\n{\"m.x\",a=\"}\"} 3\nm 4\n";
    let known = accepted(body, Format::PrometheusText, ParseMode::Strict);
    assert_eq!(known.len(), 4);
    assert!(known.contains(b"m{a=\"}\",b=\"\\\"}\\\\\"}".as_slice()));
    assert!(known.contains(b"m {a=\"x,y\"}".as_slice()));
    assert_eq!(
        check(body, body, Format::PrometheusText, ParseMode::Strict),
        4
    );
    // A known text followed by a bad value still fails with the full parser's error.
    let bad = b"m{a=\"}\",b=\"\\\"}\\\\\"} 1\nm {a=\"x,y\"} zz\n";
    let err = run(
        bad,
        Format::PrometheusText,
        ParseMode::Strict,
        Some((&known, &[])),
    )
    .error
    .expect("bad value");
    assert_eq!(err.line, 2);
    assert!(err.message.contains("ParseFloat"), "{err}");
}

#[test]
fn raw_newlines_in_text_values_keep_line_numbers() {
    let body = b"m{a=\"x\ny\"} 1\nm{a=\"z\"} 2\nbad\n";
    assert_eq!(
        check(body, body, Format::PrometheusText, ParseMode::Strict),
        2
    );
    let known = accepted(body, Format::PrometheusText, ParseMode::Strict);
    let err = run(
        body,
        Format::PrometheusText,
        ParseMode::Strict,
        Some((&known, &[][..])),
    )
    .error;
    assert_eq!(err.map(|e| e.line), Some(4));
    // The same in order: the known texts are taken by length, newlines counted.
    let order = accepted_order(body, Format::PrometheusText, ParseMode::Strict);
    let fast = run(
        body,
        Format::PrometheusText,
        ParseMode::Strict,
        Some((&known, &order[..])),
    );
    assert_eq!(fast.expected_hits, 2);
    assert_eq!(fast.error.map(|e| e.line), Some(4));
}

#[test]
fn an_expected_bare_name_is_not_taken_for_a_longer_series() {
    let known: HashSet<Vec<u8>> = [b"m".to_vec()].into_iter().collect();
    let order = vec![b"m".to_vec(); 4];
    for (format, body) in [
        (
            Format::PrometheusText,
            &b"m_total 1\nm {a=\"1\"} 2\nm\t{} 3\nm 4\n"[..],
        ),
        (
            Format::OpenMetrics,
            &b"m_total 1\nm{a=\"1\"} 2\nm 4\n# EOF\n"[..],
        ),
    ] {
        let mode = ParseMode::PrometheusCompatible;
        let full = run(body, format, mode, None);
        let fast = run(body, format, mode, Some((&known, &order[..])));
        assert_eq!(full.entries, fast.entries);
        assert_eq!(full.error, None);
        assert_eq!(fast.hits, 1, "only the bare `m` line is known");
        assert_eq!(fast.expected_hits, 1);
    }
}

#[test]
fn a_text_refused_as_the_expected_one_may_still_be_known() {
    // The series at each position changed to another known one of the same length.
    let body = b"m{a=\"2\"} 1\nm{a=\"1\"} 2\nm{a=\"3\"} 3\n";
    let known = accepted(body, Format::PrometheusText, ParseMode::Strict);
    let order = [
        b"m{a=\"1\"}".to_vec(),
        b"m{a=\"2\"}".to_vec(),
        b"m{a=\"4\"}".to_vec(),
    ];
    let full = run(body, Format::PrometheusText, ParseMode::Strict, None);
    let fast = run(
        body,
        Format::PrometheusText,
        ParseMode::Strict,
        Some((&known, &order[..])),
    );
    assert_eq!(full.entries, fast.entries);
    assert_eq!((fast.hits, fast.expected_hits), (3, 0));
}

#[test]
fn an_expected_text_is_not_taken_where_a_quoted_brace_ends_its_length() {
    // `m{a="}}}` is 8 bytes like the expected `m{a="1"}` and ends with `}`, but the series
    // goes on: the caller's comparison refuses it and the scan finds the real end.
    let body = b"m{a=\"}}}}\"} 1\n";
    let known = accepted(body, Format::PrometheusText, ParseMode::Strict);
    let mut with_expected = known.clone();
    with_expected.insert(b"m{a=\"1\"}".to_vec());
    let order = [b"m{a=\"1\"}".to_vec()];
    let full = run(body, Format::PrometheusText, ParseMode::Strict, None);
    let fast = run(
        body,
        Format::PrometheusText,
        ParseMode::Strict,
        Some((&with_expected, &order[..])),
    );
    assert_eq!(full.entries, fast.entries);
    assert_eq!((fast.hits, fast.expected_hits), (1, 0));
}
