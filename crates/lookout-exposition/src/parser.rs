//! The pull parser and the borrowed views it hands out.

use std::borrow::Cow;

use crate::{Format, MetricType, ParseError, ParseMode};

/// The input a parser reads, for turning spans back into `&str`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Src<'a> {
    pub(crate) input: &'a [u8],
    /// The whole input as `&str` when it is valid UTF-8 (the common case).
    pub(crate) text: Option<&'a str>,
}

impl<'a> Src<'a> {
    /// `input[start..end]`. Spans handed to this were checked while parsing (they lie between
    /// ASCII delimiters of valid UTF-8 input, or were validated one by one), so the empty
    /// fallback is never taken.
    #[inline(always)]
    pub(crate) fn str(self, start: u32, end: u32) -> &'a str {
        let r = start as usize..end as usize;
        match self.text {
            Some(t) => t.get(r).unwrap_or(""),
            None => self
                .input
                .get(r)
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or(""),
        }
    }
}

/// One label as found in the input: byte spans of the name and the value (without quotes),
/// still escaped when the matching flag is set. Strings are made from the spans only when a
/// consumer asks for them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawLabel {
    pub(crate) name_start: u32,
    pub(crate) name_end: u32,
    pub(crate) value_start: u32,
    pub(crate) value_end: u32,
    pub(crate) name_escaped: bool,
    pub(crate) value_escaped: bool,
}

impl RawLabel {
    #[inline]
    pub(crate) fn raw_name<'a>(&self, src: Src<'a>) -> &'a str {
        src.str(self.name_start, self.name_end)
    }

    #[inline]
    pub(crate) fn name<'a>(&self, src: Src<'a>) -> Cow<'a, str> {
        unescape(self.raw_name(src), self.name_escaped)
    }

    #[inline]
    pub(crate) fn value<'a>(&self, src: Src<'a>) -> Cow<'a, str> {
        unescape(
            src.str(self.value_start, self.value_end),
            self.value_escaped,
        )
    }

    /// Whether the (unescaped) name is `name`.
    #[inline]
    pub(crate) fn is(&self, src: Src<'_>, name: &str) -> bool {
        if self.name_escaped {
            self.name(src) == name
        } else {
            src.input
                .get(self.name_start as usize..self.name_end as usize)
                == Some(name.as_bytes())
        }
    }
}

/// One entry of an exposition.
#[derive(Clone, Debug)]
pub enum Entry<'p, 'a> {
    /// `# HELP name text`; the text is unescaped (borrowed unless it contained escapes).
    Help {
        name: Cow<'a, str>,
        help: Cow<'a, str>,
    },
    /// `# TYPE name type`.
    Type {
        name: Cow<'a, str>,
        metric_type: MetricType,
    },
    /// `# UNIT name unit` (OpenMetrics only).
    Unit { name: Cow<'a, str>, unit: &'a str },
    /// A sample line.
    Sample(Sample<'p, 'a>),
}

/// A sample line. Borrows the input (`'a`) and the parser (`'p`: the line's parsed fields
/// and label buffer, so that handing a sample out copies three pointers), so it lives until
/// the next call to [`Parser::next_entry`]; use [`Sample::to_owned_sample`] to keep it.
#[derive(Clone, Copy, Debug)]
pub struct Sample<'p, 'a> {
    pub(crate) head: &'p SampleHead<'a>,
    /// The sample's labels, then its exemplar's.
    pub(crate) labels: &'p [RawLabel],
    pub(crate) src: &'p Src<'a>,
}

/// An OpenMetrics exemplar attached to a sample.
#[derive(Clone, Copy, Debug)]
pub struct Exemplar<'p, 'a> {
    pub(crate) labels: &'p [RawLabel],
    pub(crate) src: &'p Src<'a>,
    pub(crate) value: f64,
    pub(crate) timestamp_ms: Option<i64>,
}

/// Iterator over `(name, value)` label pairs in input order, unescaped (borrowed from the input
/// unless the pair contained escape sequences). The metric name is not included.
#[derive(Clone, Debug)]
pub struct LabelIter<'p, 'a> {
    inner: std::slice::Iter<'p, RawLabel>,
    src: &'p Src<'a>,
}

/// An owned copy of a [`Sample`].
#[derive(Clone, Debug, PartialEq)]
pub struct OwnedSample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
    pub exemplar: Option<OwnedExemplar>,
    pub metric_type: MetricType,
}

/// An owned copy of an [`Exemplar`].
#[derive(Clone, Debug, PartialEq)]
pub struct OwnedExemplar {
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

pub(crate) fn unescape(s: &str, escaped: bool) -> Cow<'_, str> {
    if !escaped {
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
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

impl<'p, 'a> Iterator for LabelIter<'p, 'a> {
    type Item = (Cow<'a, str>, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        let l = self.inner.next()?;
        Some((l.name(*self.src), l.value(*self.src)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl ExactSizeIterator for LabelIter<'_, '_> {}

impl<'p, 'a> Sample<'p, 'a> {
    /// Whether the caller of [`Parser::next_entry_with_known`] knew this sample's series text,
    /// so that its name and labels were not parsed: [`name`](Self::name) is then empty,
    /// [`labels`](Self::labels) yields nothing and [`metric_type`](Self::metric_type) is
    /// `Unknown`; the raw series, value, timestamp and exemplar are as always.
    pub fn series_known(&self) -> bool {
        self.head.series_known
    }

    /// The series name (e.g. `foo_bucket`), unescaped when it was a quoted name with escapes.
    pub fn name(&self) -> Cow<'a, str> {
        unescape(self.head.name, self.head.name_escaped)
    }

    /// The exact bytes from the start of the series (name or `{`) through the closing `}`, or
    /// just the name when there are no braces: the scrape cache key Prometheus uses.
    pub fn raw_series(&self) -> &'a [u8] {
        self.head.raw_series
    }

    /// The sample's own labels (without the exemplar's).
    #[inline]
    fn own_labels(&self) -> &'p [RawLabel] {
        self.labels.get(..self.head.n_labels).unwrap_or(self.labels)
    }

    /// The labels in input order, without the metric name.
    pub fn labels(&self) -> LabelIter<'p, 'a> {
        LabelIter {
            inner: self.own_labels().iter(),
            src: self.src,
        }
    }

    /// Number of labels (without the metric name).
    pub fn label_count(&self) -> usize {
        self.own_labels().len()
    }

    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<Cow<'a, str>> {
        self.own_labels()
            .iter()
            .find(|l| l.is(*self.src, name))
            .map(|l| l.value(*self.src))
    }

    pub fn value(&self) -> f64 {
        self.head.value
    }

    /// The sample's own timestamp in milliseconds (OpenMetrics seconds are converted).
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.head.timestamp_ms
    }

    pub fn exemplar(&self) -> Option<Exemplar<'p, 'a>> {
        let (value, timestamp_ms) = self.head.exemplar?;
        Some(Exemplar {
            labels: self.labels.get(self.head.n_labels..).unwrap_or(&[]),
            src: self.src,
            value,
            timestamp_ms,
        })
    }

    /// Type of the family the sample belongs to: the last `# TYPE` when the sample's name is
    /// that family's name or one of the type's suffixes (`_total`, `_bucket`, …), otherwise
    /// [`MetricType::Unknown`].
    pub fn metric_type(&self) -> MetricType {
        self.head.metric_type
    }

    /// Whether this is a `_created` sample of a counter, histogram or summary family.
    pub fn is_created(&self) -> bool {
        matches!(
            self.head.metric_type,
            MetricType::Counter | MetricType::Histogram | MetricType::Summary
        ) && self.head.name.ends_with("_created")
    }

    pub fn to_owned_sample(&self) -> OwnedSample {
        OwnedSample {
            name: self.name().into_owned(),
            labels: self
                .labels()
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect(),
            value: self.head.value,
            timestamp_ms: self.head.timestamp_ms,
            exemplar: self.exemplar().map(|e| e.to_owned_exemplar()),
            metric_type: self.head.metric_type,
        }
    }
}

impl<'p, 'a> Exemplar<'p, 'a> {
    pub fn labels(&self) -> LabelIter<'p, 'a> {
        LabelIter {
            inner: self.labels.iter(),
            src: self.src,
        }
    }

    pub fn value(&self) -> f64 {
        self.value
    }

    pub fn timestamp_ms(&self) -> Option<i64> {
        self.timestamp_ms
    }

    pub fn to_owned_exemplar(&self) -> OwnedExemplar {
        OwnedExemplar {
            labels: self
                .labels()
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect(),
            value: self.value,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// What the format-specific code found, before it is turned into an [`Entry`] that borrows the
/// parser's label buffer.
pub(crate) enum RawEntry<'a> {
    Help {
        name: &'a str,
        name_escaped: bool,
        help: Cow<'a, str>,
    },
    Type {
        name: &'a str,
        name_escaped: bool,
        metric_type: MetricType,
    },
    Unit {
        name: &'a str,
        name_escaped: bool,
        unit: &'a str,
    },
    /// A sample line, parsed into `Parser::head`.
    Sample,
}

/// A parsed sample line; its labels are `Parser::labels[..n_labels]`, its exemplar's labels
/// the rest of that buffer.
#[derive(Debug)]
pub(crate) struct SampleHead<'a> {
    pub(crate) name: &'a str,
    pub(crate) name_escaped: bool,
    pub(crate) raw_series: &'a [u8],
    pub(crate) n_labels: usize,
    pub(crate) value: f64,
    pub(crate) timestamp_ms: Option<i64>,
    pub(crate) exemplar: Option<(f64, Option<i64>)>,
    pub(crate) metric_type: MetricType,
    /// The caller knew the series text: name and labels were not parsed.
    pub(crate) series_known: bool,
}

impl SampleHead<'static> {
    const EMPTY: Self = SampleHead {
        name: "",
        name_escaped: false,
        raw_series: &[],
        n_labels: 0,
        value: 0.0,
        timestamp_ms: None,
        exemplar: None,
        metric_type: MetricType::Unknown,
        series_known: false,
    };
}

/// What a caller that caches series by their raw text knows, for
/// [`Parser::next_entry_with_known`]. A known text is one the caller saw accepted as a
/// series by a parser of the same format before.
pub trait KnownSeries {
    /// The length of the series text the caller expects on the next sample line (a scrape
    /// loop: the last scrape's series at this position; targets print their series in the
    /// same order every time), or 0 when it expects none.
    fn expected_len(&mut self) -> usize;

    /// Whether `text` is the expected series text. `text` is the first
    /// [`expected_len`](Self::expected_len) bytes of the sample line, and a known series
    /// text may end there (it ends with `}`, or it is a name that no further name character
    /// or label set follows); the caller must answer `true` only when `text` is exactly the
    /// expected text, which the parser then takes as the series without scanning for its
    /// end.
    fn is_expected(&mut self, text: &[u8]) -> bool;

    /// Whether `text`, the series text of the next sample found by a scan of the quoting
    /// and braces, is known (also when `is_expected` just refused the same text: it was not
    /// the expected series, but may be another known one).
    fn is_known(&mut self, text: &[u8]) -> bool;
}

pub(crate) type Known<'k> = Option<&'k mut dyn KnownSeries>;

/// Pull parser over a whole exposition.
///
/// ```
/// use lookout_exposition::{Entry, Format, Parser};
/// let mut p = Parser::new(b"# TYPE up gauge\nup{job=\"a\"} 1\n", Format::PrometheusText);
/// while let Some(entry) = p.next_entry().unwrap() {
///     if let Entry::Sample(s) = entry {
///         assert_eq!(s.raw_series(), b"up{job=\"a\"}");
///         assert_eq!(s.value(), 1.0);
///     }
/// }
/// ```
pub struct Parser<'a> {
    pub(crate) input: &'a [u8],
    /// The whole input as `&str` when it is valid UTF-8 (the common case): spans are then
    /// sliced without re-validation.
    pub(crate) text: Option<&'a str>,
    /// `input` and `text` together, lent to the samples handed out.
    src: Src<'a>,
    pub(crate) format: Format,
    pub(crate) mode: ParseMode,
    /// Byte offset where the next entry starts.
    pub(crate) pos: usize,
    /// 1-based number of the line at `pos`.
    pub(crate) line: usize,
    /// 1-based number of the line the entry being parsed starts on.
    pub(crate) entry_line: usize,
    /// Sample labels followed by exemplar labels; reused across samples.
    pub(crate) labels: Vec<RawLabel>,
    /// The last sample line parsed (what [`Sample`] hands out).
    pub(crate) head: SampleHead<'a>,
    failed: Option<ParseError>,
    finished: bool,
    /// Name (as written) and type of the last `# TYPE` line (text format).
    pub(crate) meta_name: &'a str,
    pub(crate) meta_type: MetricType,
    pub(crate) om: crate::om::OmState<'a>,
}

impl<'a> Parser<'a> {
    /// A parser in [`ParseMode::Strict`].
    pub fn new(input: &'a [u8], format: Format) -> Self {
        Self::with_mode(input, format, ParseMode::Strict)
    }

    /// A parser enforcing `mode` (which only matters for OpenMetrics).
    pub fn with_mode(input: &'a [u8], format: Format, mode: ParseMode) -> Self {
        let text = std::str::from_utf8(input).ok();
        Parser {
            input,
            text,
            src: Src { input, text },
            format,
            mode,
            pos: 0,
            line: 1,
            entry_line: 1,
            labels: Vec::with_capacity(16),
            head: SampleHead::EMPTY,
            // Label spans are stored as `u32` offsets.
            failed: u32::try_from(input.len()).is_err().then(|| ParseError {
                line: 1,
                message: "exposition is larger than 4 GiB".into(),
            }),
            finished: false,
            meta_name: "",
            meta_type: MetricType::Unknown,
            om: crate::om::OmState::default(),
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn mode(&self) -> ParseMode {
        self.mode
    }

    /// 1-based number of the line the next entry starts on (after the last entry returned).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The next entry, `Ok(None)` at the end of the input. After an error, every further call
    /// returns the same error: the exposition as a whole is invalid.
    pub fn next_entry(&mut self) -> Result<Option<Entry<'_, 'a>>, ParseError> {
        self.next_entry_inner(None)
    }

    /// [`next_entry`](Self::next_entry) for a caller that caches series by their raw text
    /// (a scrape loop). On a sample line, `known` is first asked whether the line starts
    /// with the series text it expects (by length: no scan for the end of the series), else
    /// whether the series text, found by a cheap scan of the quoting and braces, is known
    /// (see [`KnownSeries`]). For a known text the name and labels are not tokenised or
    /// validated again and the sample is [`series_known`](Sample::series_known). Everything
    /// after the series (value, timestamp, exemplar, end of line) is parsed and checked as
    /// always, and any other text goes through the full parser with its exact errors, so the
    /// entries and errors are those of `next_entry` apart from the skipped name and labels.
    /// Strict OpenMetrics never skips (its family rules need every sample's labels).
    pub fn next_entry_with_known(
        &mut self,
        known: &mut dyn KnownSeries,
    ) -> Result<Option<Entry<'_, 'a>>, ParseError> {
        self.next_entry_inner(Some(known))
    }

    fn next_entry_inner(&mut self, known: Known<'_>) -> Result<Option<Entry<'_, 'a>>, ParseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.finished {
            return Ok(None);
        }
        self.labels.clear();
        let raw = match self.format {
            Format::PrometheusText => self.next_text(known),
            Format::OpenMetrics => self.next_om(known),
        };
        match raw {
            Ok(Some(raw)) => Ok(Some(self.entry(raw))),
            Ok(None) => {
                self.finished = true;
                Ok(None)
            }
            Err(message) => {
                let e = ParseError {
                    line: self.entry_line,
                    message,
                };
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    fn entry(&self, raw: RawEntry<'a>) -> Entry<'_, 'a> {
        match raw {
            RawEntry::Help {
                name,
                name_escaped,
                help,
            } => Entry::Help {
                name: unescape(name, name_escaped),
                help,
            },
            RawEntry::Type {
                name,
                name_escaped,
                metric_type,
            } => Entry::Type {
                name: unescape(name, name_escaped),
                metric_type,
            },
            RawEntry::Unit {
                name,
                name_escaped,
                unit,
            } => Entry::Unit {
                name: unescape(name, name_escaped),
                unit,
            },
            RawEntry::Sample => Entry::Sample(Sample {
                head: &self.head,
                labels: &self.labels,
                src: &self.src,
            }),
        }
    }

    #[inline(always)]
    pub(crate) fn src(&self) -> Src<'a> {
        self.src
    }

    /// Records a label whose spans were found at the given offsets. Spans of input that is not
    /// valid UTF-8 as a whole are validated here, one by one.
    #[inline(always)]
    pub(crate) fn push_label(
        &mut self,
        name: (usize, usize, bool),
        value: (usize, usize, bool),
    ) -> Result<(), String> {
        if self.text.is_none() {
            self.span_slow(name.0, name.1, "label name")?;
            self.span_slow(value.0, value.1, "label value")?;
        }
        // Lossless: `Parser::new` refuses inputs longer than `u32::MAX`.
        self.labels.push(RawLabel {
            name_start: name.0 as u32,
            name_end: name.1 as u32,
            value_start: value.0 as u32,
            value_end: value.1 as u32,
            name_escaped: name.2,
            value_escaped: value.2,
        });
        Ok(())
    }

    /// `input[a..b]` as `&str`, or an error naming `what` when it is not valid UTF-8.
    #[inline(always)]
    pub(crate) fn span(&self, a: usize, b: usize, what: &str) -> Result<&'a str, String> {
        if let Some(s) = self.text.and_then(|t| t.get(a..b)) {
            return Ok(s);
        }
        self.span_slow(a, b, what)
    }

    #[cold]
    #[inline(never)]
    fn span_slow(&self, a: usize, b: usize, what: &str) -> Result<&'a str, String> {
        let bytes = self.input.get(a..b).unwrap_or(&[]);
        std::str::from_utf8(bytes)
            .map_err(|_| format!("invalid UTF-8 {what}: {:?}", String::from_utf8_lossy(bytes)))
    }

    /// A Prometheus-style error: what was expected, the offending token and the line so far.
    pub(crate) fn unexpected(&self, expected: &str, line_start: usize, at: usize) -> String {
        let b = self.input;
        let got = match b.get(at) {
            None => "EOF".to_owned(),
            Some(&c) if c < 0x80 => format!("{:?}", char::from(c).to_string()),
            Some(_) => {
                let lossy = String::from_utf8_lossy(&b[at..(at + 4).min(b.len())]);
                format!(
                    "{:?}",
                    lossy.chars().next().map(String::from).unwrap_or_default()
                )
            }
        };
        let end = (at + 1).min(b.len());
        let ctx = String::from_utf8_lossy(&b[line_start.min(end)..end]);
        format!("{expected}, got {got} while parsing: {ctx:?}")
    }

    /// Scans a double-quoted string starting at the opening quote `at`. Returns the content span,
    /// whether it contains backslashes, the number of raw newlines in it and the offset after the
    /// closing quote.
    #[inline]
    pub(crate) fn scan_quoted(&self, at: usize) -> Option<Quoted> {
        let b = self.input;
        let mut i = at + 1;
        let mut escaped = false;
        let mut newlines = 0;
        loop {
            i = find_any_of3(b, i, [b'"', b'\\', b'\n']);
            match b.get(i)? {
                b'"' => {
                    return Some(Quoted {
                        start: at + 1,
                        end: i,
                        escaped,
                        newlines,
                        next: i + 1,
                    });
                }
                b'\\' => {
                    escaped = true;
                    if b.get(i + 1) == Some(&b'\n') {
                        newlines += 1;
                    }
                    i += 2;
                }
                _ => {
                    newlines += 1;
                    i += 1;
                }
            }
        }
    }
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Bit 7 of each byte of the result is set where `w` has a byte equal to `c` (exact for the
/// lowest such byte, which is all callers use).
#[inline(always)]
fn bytes_equal(w: u64, c: u8) -> u64 {
    let x = w ^ (LO * u64::from(c));
    x.wrapping_sub(LO) & !x & HI
}

/// Offset of the first of `stops` at or after `i` (or `b.len()`), eight bytes at a time
/// (the stops are constants at each call: `"`, `\\` or newline in a quoted value; `"`, `}`
/// or newline in a label set).
#[inline(always)]
fn find_any_of3(b: &[u8], i: usize, stops: [u8; 3]) -> usize {
    let rest = b.get(i..).unwrap_or(&[]);
    let mut chunks = rest.chunks_exact(8);
    let mut off = 0;
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let w = u64::from_le_bytes(w);
        let m = bytes_equal(w, stops[0]) | bytes_equal(w, stops[1]) | bytes_equal(w, stops[2]);
        if m != 0 {
            return i + off + (m.trailing_zeros() / 8) as usize;
        }
        off += 8;
    }
    for &c in chunks.remainder() {
        if stops.contains(&c) {
            return i + off;
        }
        off += 1;
    }
    i + off
}

impl Parser<'_> {
    /// The known series text at `start` (see [`Parser::next_entry_with_known`]): its end
    /// and the raw newlines inside its quoted strings. `blanks`: the text format, where
    /// blanks may come between the name and `{` and quoted strings may hold raw newlines.
    pub(crate) fn known_series(
        &self,
        start: usize,
        blanks: bool,
        k: &mut dyn KnownSeries,
    ) -> Option<(usize, usize)> {
        let b = self.input;
        let len = k.expected_len();
        if len != 0
            && let Some(text) = b.get(start..start + len)
            && self.may_end_series(text, start + len, blanks)
            && k.is_expected(text)
        {
            // Text that was accepted as a series before: it ends here (checked above for a
            // bare name), and its newlines are all inside quoted strings.
            let newlines = if blanks {
                text.iter().filter(|&&c| c == b'\n').count()
            } else {
                0
            };
            return Some((start + len, newlines));
        }
        let (end, newlines) = self.series_extent(start, blanks)?;
        // OpenMetrics never accepts a raw newline inside a string.
        if !blanks && newlines != 0 {
            return None;
        }
        k.is_known(&b[start..end]).then_some((end, newlines))
    }

    /// Whether an accepted series text equal to `text` (the input up to `end`) would end
    /// at `end`: one that ends with `}` closes its label set there; a bare name ends there
    /// when no name character and (after blanks when `blanks`) no label set follows. Any
    /// other `text` is no accepted series text.
    #[inline]
    fn may_end_series(&self, text: &[u8], end: usize, blanks: bool) -> bool {
        let b = self.input;
        match text.last() {
            Some(b'}') => true,
            Some(&c) if CLASS[c as usize] & METRIC_CHAR != 0 => {
                if b.get(end)
                    .is_some_and(|&c| CLASS[c as usize] & METRIC_CHAR != 0)
                {
                    return false;
                }
                let mut j = end;
                if blanks {
                    while matches!(b.get(j), Some(b' ' | b'\t')) {
                        j += 1;
                    }
                }
                b.get(j) != Some(&b'{')
            }
            _ => false,
        }
    }

    /// The series text of a sample line starting at `start`, found without tokenising its
    /// labels: a legacy name, then (after blanks when `blanks`) an optional brace block whose
    /// end is the first `}` outside double-quoted strings; or a brace block alone. Returns
    /// its end and the raw newlines inside its quoted strings, or `None` when the line does
    /// not even look like a series (the full parser then reports it). For text the full
    /// parser accepted once, this is exactly the span it took as the series.
    pub(crate) fn series_extent(&self, start: usize, blanks: bool) -> Option<(usize, usize)> {
        let b = self.input;
        let brace = match *b.get(start)? {
            b'{' => start,
            c if is_metric_start(c) => {
                let end = metric_name_end(b, start + 1);
                let mut j = end;
                if blanks {
                    while matches!(b.get(j), Some(b' ' | b'\t')) {
                        j += 1;
                    }
                }
                if b.get(j) != Some(&b'{') {
                    return Some((end, 0));
                }
                j
            }
            _ => return None,
        };
        let mut i = brace + 1;
        let mut newlines = 0;
        loop {
            i = find_any_of3(b, i, [b'"', b'}', b'\n']);
            match b.get(i)? {
                b'"' => {
                    let q = self.scan_quoted(i)?;
                    newlines += q.newlines;
                    i = q.next;
                }
                b'}' => return Some((i + 1, newlines)),
                _ => return None,
            }
        }
    }
}

pub(crate) struct Quoted {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) escaped: bool,
    pub(crate) newlines: usize,
    pub(crate) next: usize,
}

const METRIC_START: u8 = 1;
const METRIC_CHAR: u8 = 2;
const LABEL_START: u8 = 4;
const LABEL_CHAR: u8 = 8;

/// Character classes of the legacy name grammar, by byte.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let alpha = b.is_ascii_alphabetic();
        let digit = b.is_ascii_digit();
        let mut v = 0;
        if alpha || b == b'_' || b == b':' {
            v |= METRIC_START | METRIC_CHAR;
        }
        if digit {
            v |= METRIC_CHAR | LABEL_CHAR;
        }
        if alpha || b == b'_' {
            v |= LABEL_START | LABEL_CHAR;
        }
        t[c] = v;
        c += 1;
    }
    t
};

#[inline(always)]
pub(crate) fn is_metric_start(c: u8) -> bool {
    CLASS[c as usize] & METRIC_START != 0
}

#[inline(always)]
pub(crate) fn is_label_start(c: u8) -> bool {
    CLASS[c as usize] & LABEL_START != 0
}

/// End of the run of bytes of class `bit` starting at `i`, eight bytes at a time.
#[inline(always)]
fn run_end(b: &[u8], i: usize, bit: u8) -> usize {
    let rest = b.get(i..).unwrap_or(&[]);
    let mut chunks = rest.chunks_exact(8);
    let mut off = 0;
    for c in &mut chunks {
        let m = CLASS[c[0] as usize]
            & CLASS[c[1] as usize]
            & CLASS[c[2] as usize]
            & CLASS[c[3] as usize]
            & CLASS[c[4] as usize]
            & CLASS[c[5] as usize]
            & CLASS[c[6] as usize]
            & CLASS[c[7] as usize];
        if m & bit == 0 {
            break;
        }
        off += 8;
    }
    for &c in &rest[off..] {
        if CLASS[c as usize] & bit == 0 {
            break;
        }
        off += 1;
    }
    i + off
}

/// End of the legacy metric-name characters starting at `i`.
#[inline(always)]
pub(crate) fn metric_name_end(b: &[u8], i: usize) -> usize {
    run_end(b, i, METRIC_CHAR)
}

/// End of the legacy label-name characters starting at `i`.
#[inline(always)]
pub(crate) fn label_name_end(b: &[u8], i: usize) -> usize {
    run_end(b, i, LABEL_CHAR)
}

/// Offset of the next `\n` at or after `from`, or the input length.
#[inline]
pub(crate) fn line_end(b: &[u8], from: usize) -> usize {
    b.get(from..)
        .and_then(|r| r.iter().position(|&c| c == b'\n'))
        .map_or(b.len(), |p| from + p)
}

/// Parses a whole exposition and returns its samples (metadata is reflected in
/// [`OwnedSample::metric_type`]). Convenient for tests and small inputs.
pub fn parse_samples(input: &[u8], format: Format) -> Result<Vec<OwnedSample>, ParseError> {
    parse_samples_with_mode(input, format, ParseMode::Strict)
}

/// [`parse_samples`] with the given [`ParseMode`].
pub fn parse_samples_with_mode(
    input: &[u8],
    format: Format,
    mode: ParseMode,
) -> Result<Vec<OwnedSample>, ParseError> {
    let mut p = Parser::with_mode(input, format, mode);
    let mut out = Vec::new();
    while let Some(e) = p.next_entry()? {
        if let Entry::Sample(s) = e {
            out.push(s.to_owned_sample());
        }
    }
    Ok(out)
}
