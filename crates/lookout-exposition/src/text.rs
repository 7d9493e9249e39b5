//! The Prometheus text format (0.0.4, plus the quoted UTF-8 names of 1.0.0), with the semantics
//! of Prometheus's `promparse`: whitespace between tokens, blank lines and comments allowed,
//! trailing (and even missing) commas between labels, integer millisecond timestamps.

use std::borrow::Cow;

use crate::float::parse_go_float;
use crate::parser::{
    Known, Parser, RawEntry, SampleHead, is_label_start, is_metric_start, label_name_end, line_end,
    metric_name_end,
};
use crate::{Format, MetricType};

#[inline]
fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

#[inline(always)]
fn skip_ws(b: &[u8], i: usize) -> usize {
    match b.get(i) {
        Some(b' ' | b'\t') => skip_ws_run(b, i + 1),
        _ => i,
    }
}

fn skip_ws_run(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

/// Text-format HELP unescaping: only `\\` and `\n` are escapes.
fn unescape_text_help(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// Whether a series named `name` belongs to the family `family` of type `typ` (a family may be
/// named after its samples, e.g. a counter `foo_total`).
pub(crate) fn is_part_of_family(name: &str, family: &str, typ: MetricType) -> bool {
    if family.is_empty() {
        return false;
    }
    let Some(suffix) = name.strip_prefix(family) else {
        // A counter family `foo_total` still owns `foo_total`; nothing else to try.
        return false;
    };
    match typ {
        MetricType::Counter => suffix.is_empty() || suffix == "_total" || suffix == "_created",
        MetricType::Histogram => matches!(suffix, "_bucket" | "_sum" | "_count" | "_created"),
        MetricType::GaugeHistogram => matches!(suffix, "_bucket" | "_gsum" | "_gcount"),
        MetricType::Summary => matches!(suffix, "" | "_sum" | "_count" | "_created"),
        MetricType::Info => suffix == "_info" || suffix.is_empty(),
        MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => suffix.is_empty(),
    }
}

impl<'a> Parser<'a> {
    pub(crate) fn next_text(&mut self, known: Known<'_>) -> Result<Option<RawEntry<'a>>, String> {
        let b = self.input;
        loop {
            self.entry_line = self.line;
            let line_start = self.pos;
            let i = skip_ws(b, self.pos);
            let Some(&c) = b.get(i) else {
                self.pos = b.len();
                return Ok(None);
            };
            match c {
                b'\n' => {
                    self.pos = i + 1;
                    self.line += 1;
                }
                // Prometheus's lexer treats a NUL outside strings as the end of the input.
                0 => {
                    self.pos = b.len();
                    return Ok(None);
                }
                b'#' => {
                    if let Some(e) = self.text_comment(line_start, i)? {
                        return Ok(Some(e));
                    }
                }
                c if is_metric_start(c) || c == b'{' => {
                    return self.text_sample(line_start, i, known).map(Some);
                }
                _ => return Err(self.unexpected("expected a valid start token", line_start, i)),
            }
        }
    }

    /// A `#` line: HELP/TYPE metadata, or a comment that is skipped (`Ok(None)`).
    fn text_comment(
        &mut self,
        line_start: usize,
        hash: usize,
    ) -> Result<Option<RawEntry<'a>>, String> {
        let b = self.input;
        let i = skip_ws(b, hash + 1);
        if i > hash + 1 {
            let rest = &b[i..];
            let is_help = rest.starts_with(b"HELP");
            if (is_help || rest.starts_with(b"TYPE")) && rest.get(4).is_some_and(|&c| is_ws(c)) {
                return self
                    .text_meta(line_start, skip_ws(b, i + 4), is_help)
                    .map(Some);
            }
        }
        let end = line_end(b, i);
        self.pos = (end + 1).min(b.len());
        self.line += 1;
        Ok(None)
    }

    fn text_meta(
        &mut self,
        line_start: usize,
        i: usize,
        is_help: bool,
    ) -> Result<RawEntry<'a>, String> {
        let b = self.input;
        let kw = if is_help { "HELP" } else { "TYPE" };
        let (name, name_escaped, after) = match b.get(i) {
            Some(&c) if is_metric_start(c) => {
                let j = metric_name_end(b, i + 1);
                (self.span(i, j, "metric name")?, false, j)
            }
            Some(b'"') => {
                let q = self.scan_quoted(i).ok_or_else(|| {
                    self.unexpected(&format!("expected metric name after {kw}"), line_start, i)
                })?;
                self.line += q.newlines;
                (self.span(q.start, q.end, "metric name")?, q.escaped, q.next)
            }
            _ => {
                return Err(self.unexpected(
                    &format!("expected metric name after {kw}"),
                    line_start,
                    i,
                ));
            }
        };
        let end = line_end(b, after);
        let rest = &b[after..end];
        // The text token starts right after the name; its first byte is the separator.
        let text_bytes: &[u8] = if rest.len() > 1 && !rest.iter().all(|&c| is_ws(c)) {
            &rest[1..]
        } else {
            &[]
        };
        self.pos = (end + 1).min(b.len());
        self.line += 1;
        if is_help {
            let text = std::str::from_utf8(text_bytes).map_err(|_| {
                format!(
                    "help text {:?} is not a valid utf8 string",
                    String::from_utf8_lossy(text_bytes)
                )
            })?;
            Ok(RawEntry::Help {
                name,
                name_escaped,
                help: unescape_text_help(text),
            })
        } else {
            let word = std::str::from_utf8(text_bytes).unwrap_or("");
            let metric_type =
                MetricType::from_type_str(word, Format::PrometheusText).ok_or_else(|| {
                    format!(
                        "invalid metric type {:?}",
                        String::from_utf8_lossy(text_bytes)
                    )
                })?;
            self.meta_name = name;
            self.meta_type = metric_type;
            Ok(RawEntry::Type {
                name,
                name_escaped,
                metric_type,
            })
        }
    }

    fn text_sample(
        &mut self,
        line_start: usize,
        start: usize,
        known: Known<'_>,
    ) -> Result<RawEntry<'a>, String> {
        let b = self.input;
        let mut name: Option<(&'a str, bool)> = None;
        let mut i = start;
        let mut newlines = 0;
        let series_end;
        let mut series_known = false;
        if let Some(known) = known
            && let Some((end, nl)) = self.known_series(start, true, known)
        {
            // Accepted before with exactly this text: name and labels are not read again.
            series_known = true;
            name = Some(("", false));
            newlines = nl;
            i = end;
            series_end = end;
        } else if b[i] == b'{' {
            i = self.text_labels(line_start, i + 1, &mut name, &mut newlines)?;
            series_end = i;
        } else {
            i = metric_name_end(b, i + 1);
            name = Some((self.span(start, i, "metric name")?, false));
            let j = skip_ws(b, i);
            if b.get(j) == Some(&b'{') {
                i = self.text_labels(line_start, j + 1, &mut name, &mut newlines)?;
            }
            series_end = i;
        }
        let Some((name, name_escaped)) = name else {
            return Err(format!(
                "metric name not set while parsing: {:?}",
                String::from_utf8_lossy(&b[line_start..series_end])
            ));
        };

        // Value: everything up to whitespace, a newline or a brace.
        let vstart = skip_ws(b, i);
        let mut vend = vstart;
        while vend < b.len() && !matches!(b[vend], b' ' | b'\t' | b'\n' | b'{') {
            vend += 1;
        }
        if vend == vstart {
            return Err(self.unexpected("expected value after metric", line_start, vstart));
        }
        let raw_value = &b[vstart..vend];
        let value = parse_go_float(raw_value).ok_or_else(|| {
            format!(
                "strconv.ParseFloat: parsing {:?}: invalid syntax while parsing: {:?}",
                String::from_utf8_lossy(raw_value),
                String::from_utf8_lossy(&b[line_start..vend])
            )
        })?;

        // Optional timestamp (digits only), then the end of the line.
        let mut k = skip_ws(b, vend);
        let mut timestamp_ms = None;
        match b.get(k) {
            None | Some(b'\n') => {}
            Some(c) if c.is_ascii_digit() => {
                let tstart = k;
                let mut ts: i64 = 0;
                while k < b.len() && b[k].is_ascii_digit() {
                    ts = ts
                        .checked_mul(10)
                        .and_then(|t| t.checked_add(i64::from(b[k] - b'0')))
                        .ok_or_else(|| {
                            format!(
                                "strconv.ParseInt: parsing {:?}: value out of range",
                                String::from_utf8_lossy(&b[tstart..line_end(b, tstart)])
                            )
                        })?;
                    k += 1;
                }
                timestamp_ms = Some(ts);
                k = skip_ws(b, k);
                if !matches!(b.get(k), None | Some(b'\n')) {
                    return Err(self.unexpected(
                        "expected next entry after timestamp",
                        line_start,
                        k,
                    ));
                }
            }
            Some(_) => {
                return Err(self.unexpected("expected timestamp or new record", line_start, k));
            }
        }
        self.pos = (k + 1).min(b.len());
        self.line += 1 + newlines;

        let metric_type =
            if !series_known && is_part_of_family(name, self.meta_name, self.meta_type) {
                self.meta_type
            } else {
                MetricType::Unknown
            };
        self.head = SampleHead {
            name,
            name_escaped,
            raw_series: &b[start..series_end],
            n_labels: self.labels.len(),
            value,
            timestamp_ms,
            exemplar: None,
            metric_type,
            series_known,
        };
        Ok(RawEntry::Sample)
    }

    /// Parses label pairs after `{` up to and including `}`; returns the offset after `}`.
    fn text_labels(
        &mut self,
        line_start: usize,
        mut i: usize,
        name: &mut Option<(&'a str, bool)>,
        newlines: &mut usize,
    ) -> Result<usize, String> {
        let b = self.input;
        loop {
            i = skip_ws(b, i);
            let lname = match b.get(i) {
                Some(b'}') => return Ok(i + 1),
                Some(&c) if is_label_start(c) => {
                    let s = i;
                    i = label_name_end(b, i + 1);
                    (s, i, false)
                }
                Some(b'"') => {
                    let q = self
                        .scan_quoted(i)
                        .ok_or_else(|| self.unexpected("expected label name", line_start, i))?;
                    *newlines += q.newlines;
                    i = skip_ws(b, q.next);
                    // A quoted string followed by a comma or brace is the metric name.
                    if matches!(b.get(i), Some(b',') | Some(b'}')) {
                        if name.is_some() {
                            return Err(format!(
                                "metric name already set while parsing: {:?}",
                                String::from_utf8_lossy(&b[line_start..i])
                            ));
                        }
                        *name = Some((self.span(q.start, q.end, "metric name")?, q.escaped));
                        if b[i] == b'}' {
                            return Ok(i + 1);
                        }
                        i += 1;
                        continue;
                    }
                    (q.start, q.end, q.escaped)
                }
                _ => return Err(self.unexpected("expected label name", line_start, i)),
            };
            i = skip_ws(b, i);
            if b.get(i) != Some(&b'=') {
                return Err(self.unexpected("expected equal", line_start, i));
            }
            i = skip_ws(b, i + 1);
            if b.get(i) != Some(&b'"') {
                return Err(self.unexpected("expected label value", line_start, i));
            }
            let q = self
                .scan_quoted(i)
                .ok_or_else(|| self.unexpected("expected label value", line_start, i))?;
            *newlines += q.newlines;
            self.push_label(lname, (q.start, q.end, q.escaped))?;
            i = skip_ws(b, q.next);
            if b.get(i) == Some(&b',') {
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Entry, Format, MetricType, OwnedSample, Parser, parse_samples};

    fn samples(input: &str) -> Vec<OwnedSample> {
        parse_samples(input.as_bytes(), Format::PrometheusText).unwrap()
    }

    fn err(input: &str) -> String {
        parse_samples(input.as_bytes(), Format::PrometheusText)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn basic_exposition() {
        let input = "# HELP http_requests_total The total.\n# TYPE http_requests_total counter\n\
                     http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
                     http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n\n\
                     # A comment\nmetric_without_timestamp_and_labels 12.47\n\
                     something_weird{problem=\"division by zero\"} +Inf -3982045\n";
        let err = parse_samples(input.as_bytes(), Format::PrometheusText).unwrap_err();
        // Negative timestamps are not part of the text format's grammar.
        assert_eq!(err.line, 8);
        assert!(
            err.message.contains("expected timestamp or new record"),
            "{err}"
        );

        let input = input.replace("-3982045", "3982045");
        let s = samples(&input);
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].name, "http_requests_total");
        assert_eq!(
            s[0].labels,
            vec![
                ("method".into(), "post".into()),
                ("code".into(), "200".into())
            ]
        );
        assert_eq!(s[0].value, 1027.0);
        assert_eq!(s[0].timestamp_ms, Some(1395066363000));
        assert_eq!(s[0].metric_type, MetricType::Counter);
        assert_eq!(s[1].value, 3.0);
        assert_eq!(s[2].labels, vec![]);
        assert_eq!(s[2].metric_type, MetricType::Unknown);
        assert_eq!(s[3].value, f64::INFINITY);
    }

    #[test]
    fn raw_series_and_entries() {
        let input = b"# HELP a Some \\\\ help\\n \"x\"\n# TYPE a histogram\na_bucket{le=\"1\" , x=\"y\",} 3\na_sum 2\n";
        let mut p = Parser::new(input, Format::PrometheusText);
        match p.next_entry().unwrap() {
            Some(Entry::Help { name, help }) => {
                assert_eq!(name, "a");
                assert_eq!(help, "Some \\ help\n \"x\"");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            p.next_entry().unwrap(),
            Some(Entry::Type {
                metric_type: MetricType::Histogram,
                ..
            })
        ));
        match p.next_entry().unwrap() {
            Some(Entry::Sample(s)) => {
                assert_eq!(s.raw_series(), b"a_bucket{le=\"1\" , x=\"y\",}");
                assert_eq!(s.label("le").as_deref(), Some("1"));
                assert_eq!(s.metric_type(), MetricType::Histogram);
            }
            other => panic!("{other:?}"),
        }
        match p.next_entry().unwrap() {
            Some(Entry::Sample(s)) => assert_eq!(s.raw_series(), b"a_sum"),
            other => panic!("{other:?}"),
        }
        assert!(p.next_entry().unwrap().is_none());
        assert!(p.next_entry().unwrap().is_none());
    }

    #[test]
    fn escapes_and_utf8_names() {
        let s = samples(
            "{\"my.metric\",\"my.label\"=\"a\\\"b\\\\c\\nd\\z\"} 1\nfoo{\"quoted\"=\"v\"} 2\n",
        );
        assert_eq!(s[0].name, "my.metric");
        assert_eq!(
            s[0].labels,
            vec![("my.label".into(), "a\"b\\c\nd\\z".into())]
        );
        assert_eq!(s[1].labels, vec![("quoted".into(), "v".into())]);
        assert!(err("{\"a\",\"b\"} 1\n").contains("metric name already set"));
        assert!(err("{x=\"1\"} 1\n").contains("metric name not set"));
    }

    #[test]
    fn lenient_whitespace_and_commas() {
        let s = samples("  foo { a = \"1\" b=\"2\" , } \t 5 \t 10 \nbar 1");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].labels.len(), 2);
        assert_eq!(s[0].timestamp_ms, Some(10));
        assert_eq!(s[1].value, 1.0);
    }

    #[test]
    fn values() {
        let s = samples("a NaN\nb -Inf\nc 1e-3\nd .5\n");
        assert!(s[0].value.is_nan());
        assert_eq!(s[1].value, f64::NEG_INFINITY);
        assert_eq!(s[2].value, 0.001);
        assert_eq!(s[3].value, 0.5);
        for bad in ["a 0x1p-3\n", "a 1_000\n", "a abc\n", "a\n", "a 1e400\n"] {
            assert!(
                parse_samples(bad.as_bytes(), Format::PrometheusText).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn errors_carry_line_numbers_and_are_sticky() {
        let input = b"a 1\n\nb{c=d} 2\n";
        let mut p = Parser::new(input, Format::PrometheusText);
        assert!(p.next_entry().unwrap().is_some());
        let e = p.next_entry().unwrap_err();
        assert_eq!(e.line, 3);
        assert_eq!(
            e.message,
            "expected label value, got \"d\" while parsing: \"b{c=d\""
        );
        assert_eq!(p.next_entry().unwrap_err(), e);
    }

    #[test]
    fn metadata_errors() {
        assert!(err("# TYPE a gaugehistogram\n").contains("invalid metric type"));
        assert!(err("# TYPE a counter \n").contains("invalid metric type"));
        assert!(err("# HELP \n").contains("expected metric name after HELP"));
        // Not metadata: comments.
        assert_eq!(samples("#HELP x\n# HELPER x\n# EOF\n"), vec![]);
        // HELP without text is fine.
        assert_eq!(
            samples("# HELP a\n# TYPE a untyped\na 1\n")[0].metric_type,
            MetricType::Unknown
        );
    }

    #[test]
    fn family_membership() {
        let s = samples(
            "# TYPE foo counter\nfoo_total 1\nfoo_created 2\nfoo 3\nfoo_bucket 1\n# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 1\ns_count 1\n",
        );
        let types: Vec<_> = s.iter().map(|s| s.metric_type).collect();
        assert_eq!(
            types,
            vec![
                MetricType::Counter,
                MetricType::Counter,
                MetricType::Counter,
                MetricType::Unknown,
                MetricType::Summary,
                MetricType::Summary,
                MetricType::Summary
            ]
        );
    }

    #[test]
    fn invalid_utf8_in_comments_is_tolerated_but_not_in_values() {
        let mut input = b"# \xff comment\na{b=\"ok\"} 1\n".to_vec();
        assert_eq!(
            parse_samples(&input, Format::PrometheusText).unwrap().len(),
            1
        );
        input.extend_from_slice(b"c{d=\"\xff\"} 1\n");
        let e = parse_samples(&input, Format::PrometheusText).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("invalid UTF-8 label value"));
    }

    #[test]
    fn prometheus_lexer_quirks() {
        let input = "# HELP g A summary.\n# \tTYPE g summary\ng{quantile=\"0\"} 4.9e-05\n# Hrandom comment\n#\n\
                     w{A=\"2\",c=\"3\"} 12345\n# HELP nohelp1\n# HELP nohelp2 \n\
                     g { quantile = \"1.0\" a = \"b\" } 8.3e-05\nm 33  \t123123\n_u 1\n\
                     t{l=\"\\\"bar\\\"\"} 1\n# HELP metric foo\x00bar\nnull_byte{a=\"abc\x00\"} 1";
        let mut p = Parser::new(input.as_bytes(), Format::PrometheusText);
        let mut helps = Vec::new();
        let mut samples = Vec::new();
        while let Some(e) = p.next_entry().unwrap() {
            match e {
                Entry::Help { name, help } => helps.push(format!("{name}:{help}")),
                Entry::Type { name, metric_type } => {
                    assert_eq!((name.as_ref(), metric_type), ("g", MetricType::Summary))
                }
                Entry::Sample(s) => samples.push(s.to_owned_sample()),
                Entry::Unit { .. } => panic!("no UNIT in the text format"),
            }
        }
        assert_eq!(
            helps,
            ["g:A summary.", "nohelp1:", "nohelp2:", "metric:foo\0bar"]
        );
        let names: Vec<_> = samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["g", "w", "g", "m", "_u", "t", "null_byte"]);
        assert_eq!(
            samples[2].labels,
            [("quantile".into(), "1.0".into()), ("a".into(), "b".into())]
        );
        assert_eq!(samples[3].timestamp_ms, Some(123123));
        assert_eq!(samples[5].labels[0].1, "\"bar\"");
        assert_eq!(samples[6].labels[0].1, "abc\0");
    }

    #[test]
    fn prometheus_error_cases() {
        let cases: &[(&[u8], &str)] = &[
            (b"a", "expected value after metric"),
            (b"a{b='c'} 1\n", "expected label value, got \"'\""),
            (b"a{b=\n", "expected label value"),
            (b"a{\xff=\"foo\"} 1\n", "expected label name"),
            (b"a{b=\"\xff\"} 1\n", "invalid UTF-8 label value"),
            (b"a true\n", "invalid syntax"),
            (b"something_weird{problem=\"", "expected label value"),
            (b"empty_label_name{=\"\"} 0", "expected label name"),
            (b"foo 0 1_2\n", "expected next entry after timestamp"),
            (b"{a=\"ok\"} 1", "metric name not set"),
            (b"# TYPE #\n", "expected metric name after TYPE"),
            (b"a\x00{b=\"ddd\"} 1", "invalid syntax"),
            (b"a 0 1\x00", "expected next entry after timestamp"),
            (b"a 1 99999999999999999999\n", "value out of range"),
        ];
        for (input, want) in cases {
            let e = parse_samples(input, Format::PrometheusText)
                .expect_err(&String::from_utf8_lossy(input));
            assert!(
                e.message.contains(want),
                "{:?}: {e}",
                String::from_utf8_lossy(input)
            );
        }
        // NUL bytes inside label values are fine, and a NUL at the start of a line ends the input.
        assert_eq!(samples("a{b=\"\x00ss\"} 1\n\x00garbage").len(), 1);
    }
}
