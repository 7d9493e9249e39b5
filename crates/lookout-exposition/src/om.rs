//! OpenMetrics 1.0. Both modes share the line grammar (single spaces, no blank lines, only
//! HELP/TYPE/UNIT/EOF comments, `# EOF` last). Strict mode adds the family rules checked
//! across lines (metadata before samples, families not interleaved or repeated, per-type sample
//! names, values, labels, grouping, timestamps, histogram buckets and exemplars) and rejects
//! trailing commas in label sets. Prometheus-compatible mode checks only what Prometheus's
//! `openmetricsparse.go` checks (metric types, UNIT suffixes, finite timestamps) and uses its
//! error texts.

use std::borrow::Cow;
use std::hash::Hasher;

use rustc_hash::{FxHashSet, FxHasher};

use crate::float::{parse_go_float, parse_om_timestamp_ms};
use crate::parser::{
    Known, Parser, RawEntry, RawLabel, SampleHead, Src, is_label_start, is_metric_start,
    label_name_end, line_end, metric_name_end, unescape,
};
use crate::text::is_part_of_family;
use crate::{Format, MetricType, ParseMode};

/// Maximum number of characters in an exemplar's label names and values together.
const MAX_EXEMPLAR_LABEL_CHARS: usize = 128;

/// Sample-name suffixes each type allows (also the names a family reserves, with "").
fn type_suffixes(t: MetricType) -> &'static [&'static str] {
    match t {
        MetricType::Counter => &["_total", "_created"],
        MetricType::Summary => &["", "_count", "_sum", "_created"],
        MetricType::Histogram => &["_count", "_sum", "_bucket", "_created"],
        MetricType::GaugeHistogram => &["_gcount", "_gsum", "_bucket"],
        MetricType::Info => &["_info"],
        MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => &[""],
    }
}

fn is_histogram(t: MetricType) -> bool {
    matches!(t, MetricType::Histogram | MetricType::GaugeHistogram)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hash_str(s: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(s.as_bytes());
    mix(h.finish())
}

/// Raw bytes of a span.
#[inline]
fn bytes(src: Src<'_>, start: u32, end: u32) -> &[u8] {
    src.input.get(start as usize..end as usize).unwrap_or(&[])
}

/// FxHash of a span's unescaped text.
fn text_hash(src: Src<'_>, start: u32, end: u32, escaped: bool) -> u64 {
    let mut h = FxHasher::default();
    if escaped {
        h.write(unescape(src.str(start, end), true).as_bytes());
    } else {
        h.write(bytes(src, start, end));
    }
    h.finish()
}

/// What one pass over a sample's labels learned.
struct LabelScan {
    /// Order-independent hash of the whole label set.
    all: u64,
    /// The same without the special label (`le`, `quantile` or the state label).
    group: u64,
    /// Index of the special label.
    special: Option<usize>,
}

/// Hashes a sample's labels (pairs summed, so the set hash ignores order), rejects duplicate
/// names and finds the label named `special`.
fn scan_labels_into(
    name_hashes: &mut Vec<u64>,
    src: Src<'_>,
    labels: &[RawLabel],
    special: Option<&str>,
) -> Result<LabelScan, String> {
    name_hashes.clear();
    let mut all: u64 = 0;
    let mut special_at = None;
    let mut special_hash = 0;
    for (i, l) in labels.iter().enumerate() {
        let nh = text_hash(src, l.name_start, l.name_end, l.name_escaped);
        if name_hashes.contains(&nh) {
            let n = l.name(src);
            if labels[..i].iter().any(|p| p.name(src) == n) {
                return Err(format!("duplicate label name {n:?}"));
            }
        }
        name_hashes.push(nh);
        let vh = text_hash(src, l.value_start, l.value_end, l.value_escaped);
        let pair = mix(nh ^ vh.rotate_left(29).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        all = all.wrapping_add(pair);
        if special_at.is_none() && special.is_some_and(|sp| l.is(src, sp)) {
            special_at = Some(i);
            special_hash = pair;
        }
    }
    Ok(LabelScan {
        all,
        group: all.wrapping_sub(special_hash),
        special: special_at,
    })
}

fn has_duplicate_names(src: Src<'_>, labels: &[RawLabel]) -> Option<String> {
    for (i, l) in labels.iter().enumerate() {
        let dup = labels[..i].iter().any(|p| {
            if p.name_escaped || l.name_escaped {
                p.name(src) == l.name(src)
            } else {
                bytes(src, p.name_start, p.name_end) == bytes(src, l.name_start, l.name_end)
            }
        });
        if dup {
            return Some(l.name(src).into_owned());
        }
    }
    None
}

pub(crate) enum Meta<'a> {
    Help,
    Type(MetricType),
    Unit(&'a str),
}

/// The family being read.
struct Family<'a> {
    name: Cow<'a, str>,
    typ: Option<MetricType>,
    help: bool,
    unit: Option<&'a str>,
    has_samples: bool,
}

/// Running state of one histogram group (one label set at one timestamp).
#[derive(Default)]
struct Hist {
    active: bool,
    group: u64,
    ts: Option<i64>,
    count: Option<f64>,
    bucket: Option<f64>,
    value: f64,
    neg_buckets: bool,
    has_sum: bool,
    has_gsum: bool,
    neg_gsum: bool,
}

impl Hist {
    fn check(&self, name: &str) -> Result<(), String> {
        if self.bucket != Some(f64::INFINITY) {
            return Err(format!("histogram {name} is missing its +Inf bucket"));
        }
        if self.count.is_some_and(|c| c != self.value) {
            return Err(format!(
                "histogram {name}: count does not match the +Inf bucket"
            ));
        }
        if self.has_sum && self.count.is_none() {
            return Err(format!(
                "histogram {name}: _count must be present if _sum is present"
            ));
        }
        if self.has_gsum && self.count.is_none() {
            return Err(format!(
                "gauge histogram {name}: _gcount must be present if _gsum is present"
            ));
        }
        if !(self.has_sum || self.has_gsum) && self.count.is_some() {
            return Err(format!(
                "histogram {name}: _sum/_gsum must be present if _count is present"
            ));
        }
        if self.neg_buckets && self.has_sum {
            return Err(format!(
                "histogram {name}: cannot have _sum with negative buckets"
            ));
        }
        if !self.neg_buckets && self.neg_gsum {
            return Err(format!(
                "gauge histogram {name}: cannot have a negative _gsum with non-negative buckets"
            ));
        }
        Ok(())
    }
}

/// Validation state carried across lines.
#[derive(Default)]
pub(crate) struct OmState<'a> {
    fam: Option<Family<'a>>,
    /// Hashes of every name a finished family reserved (its name plus its type's suffixes).
    seen_names: FxHashSet<u64>,
    name_buf: String,
    /// Group (label set without le/quantile/state label) of the previous sample.
    group: Option<u64>,
    group_ts: Option<i64>,
    seen_groups: FxHashSet<u64>,
    /// Series of the current group, to skip exact repeats in histogram checks.
    group_series: Vec<u64>,
    /// Label-name hashes of the sample being checked (duplicate detection).
    name_hashes: Vec<u64>,
    hist: Hist,
}

pub(crate) struct OmSample<'s, 'a> {
    pub(crate) name: Cow<'a, str>,
    pub(crate) src: Src<'a>,
    pub(crate) labels: &'s [RawLabel],
    pub(crate) value: f64,
    pub(crate) ts: Option<i64>,
    pub(crate) has_exemplar: bool,
}

impl<'a> OmState<'a> {
    fn start_family(&mut self, name: Cow<'a, str>, typ: Option<MetricType>) {
        self.fam = Some(Family {
            name,
            typ,
            help: false,
            unit: None,
            has_samples: false,
        });
        self.group = None;
        self.group_ts = None;
        self.seen_groups.clear();
        self.group_series.clear();
        self.hist = Hist::default();
    }

    /// Checks what can only be checked once a family is complete.
    pub(crate) fn finish_family(&mut self) -> Result<(), String> {
        let Some(fam) = self.fam.take() else {
            return Ok(());
        };
        let typ = fam.typ.unwrap_or(MetricType::Unknown);
        let suffixes = type_suffixes(typ);
        let extra: &[&str] = if suffixes.contains(&"") { &[] } else { &[""] };
        for suffix in suffixes.iter().chain(extra) {
            self.name_buf.clear();
            self.name_buf.push_str(&fam.name);
            self.name_buf.push_str(suffix);
            if !self.seen_names.insert(hash_str(&self.name_buf)) {
                return Err(format!(
                    "clashing name: {} is used by more than one metric family",
                    self.name_buf
                ));
            }
        }
        if let Some(unit) = fam.unit.filter(|u| !u.is_empty()) {
            let ok = fam
                .name
                .strip_suffix(unit)
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('_'));
            if !ok {
                return Err(format!(
                    "unit {unit:?} not a suffix of metric {:?}",
                    fam.name
                ));
            }
            if matches!(typ, MetricType::Info | MetricType::StateSet) {
                return Err(format!(
                    "units are not allowed for {} metric {}",
                    typ, fam.name
                ));
            }
        }
        if is_histogram(typ) && self.hist.active {
            self.hist.check(&fam.name)?;
        }
        self.hist = Hist::default();
        Ok(())
    }

    pub(crate) fn on_metadata(&mut self, name: Cow<'a, str>, meta: Meta<'a>) -> Result<(), String> {
        match &self.fam {
            Some(f) if f.name == name => {
                if f.has_samples {
                    return Err(format!(
                        "received metadata after samples for metric family {name}"
                    ));
                }
            }
            _ => {
                self.finish_family()?;
                self.start_family(name, None);
            }
        }
        let Some(f) = self.fam.as_mut() else {
            return Err("internal error: no metric family".into());
        };
        match meta {
            Meta::Help if f.help => {
                return Err(format!("more than one HELP for metric family {}", f.name));
            }
            Meta::Help => f.help = true,
            Meta::Type(_) if f.typ.is_some() => {
                return Err(format!("more than one TYPE for metric family {}", f.name));
            }
            Meta::Type(t) => f.typ = Some(t),
            Meta::Unit(_) if f.unit.is_some() => {
                return Err(format!("more than one UNIT for metric family {}", f.name));
            }
            Meta::Unit(u) => f.unit = Some(u),
        }
        Ok(())
    }

    /// Validates a sample against its family; returns the family's type.
    pub(crate) fn on_sample(&mut self, s: OmSample<'_, 'a>) -> Result<MetricType, String> {
        let belongs = self.fam.as_ref().is_some_and(|f| {
            s.name.strip_prefix(&*f.name).is_some_and(|suffix| {
                type_suffixes(f.typ.unwrap_or(MetricType::Unknown)).contains(&suffix)
            })
        });
        if !belongs {
            self.finish_family()?;
            self.start_family(s.name.clone(), Some(MetricType::Unknown));
        }
        let Some(fam) = self.fam.as_mut() else {
            return Err("internal error: no metric family".into());
        };
        fam.has_samples = true;
        let fam_name: &str = &fam.name;
        let typ = fam.typ.unwrap_or(MetricType::Unknown);
        let name: &str = &s.name;
        let suffix = name.strip_prefix(fam_name).unwrap_or("");
        let v = s.value;

        let quantile_sample = typ == MetricType::Summary && suffix.is_empty();
        let bucket_sample = is_histogram(typ) && suffix == "_bucket";
        let special = match typ {
            MetricType::StateSet => Some(fam_name),
            _ if bucket_sample => Some("le"),
            _ if quantile_sample => Some("quantile"),
            _ => None,
        };
        let scan = scan_labels_into(&mut self.name_hashes, s.src, s.labels, special)?;
        let special_value = scan
            .special
            .and_then(|i| s.labels.get(i))
            .map(|l| l.value(s.src));

        if typ == MetricType::StateSet && special_value.is_none() {
            return Err(format!(
                "stateset sample {name} is missing the {fam_name} label"
            ));
        }
        let mut le = None;
        if bucket_sample {
            let raw = special_value
                .as_deref()
                .ok_or_else(|| format!("{name} is missing the le label"))?;
            let b = parse_go_float(raw.as_bytes())
                .filter(|b| !b.is_nan())
                .ok_or_else(|| format!("invalid le label {raw:?} on {name}"))?;
            if b == f64::INFINITY && raw != "+Inf" {
                return Err(format!(
                    "invalid le label {raw:?} on {name}: +Inf must be written \"+Inf\""
                ));
            }
            le = Some(b);
        }
        if quantile_sample {
            let raw = special_value
                .as_deref()
                .ok_or_else(|| format!("{name} is missing the quantile label"))?;
            let ok = parse_go_float(raw.as_bytes()).is_some_and(|q| (0.0..=1.0).contains(&q));
            if !ok {
                return Err(format!("invalid quantile label {raw:?} on {name}"));
            }
        }

        // Grouping: a family's metrics must not be interleaved; within a group, timestamps are
        // all present or all absent and do not go backwards.
        let g = if typ == MetricType::Info {
            0
        } else {
            scan.group
        };
        if self.group.is_some_and(|cur| cur != g) && self.seen_groups.contains(&g) {
            return Err(format!(
                "invalid metric grouping: samples of {name} are interleaved with another group"
            ));
        }
        if self.group == Some(g) {
            if s.ts.is_some() != self.group_ts.is_some() {
                return Err(format!(
                    "mix of timestamp presence within a group of {name}"
                ));
            }
            if let (Some(prev), Some(t)) = (self.group_ts, s.ts)
                && prev > t
                && typ != MetricType::Info
            {
                return Err(format!(
                    "timestamps went backwards within a group of {name}"
                ));
            }
        } else {
            self.group_series.clear();
        }
        let mut repeat = false;
        if is_histogram(typ) {
            let sid = hash_str(name) ^ scan.all;
            repeat = s.ts == self.group_ts && self.group_series.contains(&sid);
            self.group_series.push(sid);
        }
        if self.group != Some(g) {
            self.seen_groups.insert(g);
        }
        self.group = Some(g);
        self.group_ts = s.ts;

        if is_histogram(typ) && !repeat {
            let h = &mut self.hist;
            if h.active && (h.group != g || h.ts != s.ts) {
                h.check(fam_name)?;
                *h = Hist::default();
            }
            h.active = true;
            h.group = g;
            h.ts = s.ts;
            match suffix {
                "_bucket" => {
                    let b = le.unwrap_or(f64::NAN);
                    if b < 0.0 {
                        h.neg_buckets = true;
                    }
                    if h.bucket.is_some_and(|prev| b <= prev) {
                        return Err(format!("histogram {fam_name}: buckets out of order"));
                    }
                    if v < h.value {
                        return Err(format!("histogram {fam_name}: bucket values out of order"));
                    }
                    h.bucket = Some(b);
                    h.value = v;
                }
                "_count" | "_gcount" => h.count = Some(v),
                "_sum" => h.has_sum = true,
                "_gsum" => {
                    h.has_gsum = true;
                    if v < 0.0 {
                        h.neg_gsum = true;
                    }
                }
                _ => {}
            }
        }

        if typ == MetricType::StateSet && v != 0.0 && v != 1.0 {
            return Err(format!(
                "stateset samples can only have values zero and one: {name}"
            ));
        }
        if typ == MetricType::Info && v != 1.0 {
            return Err(format!("info samples can only have value one: {name}"));
        }
        if quantile_sample && v < 0.0 {
            return Err(format!("quantile values cannot be negative: {name}"));
        }
        let counter_like = matches!(
            suffix,
            "_total" | "_sum" | "_count" | "_bucket" | "_gcount" | "_gsum"
        );
        if counter_like && v.is_nan() {
            return Err(format!("counter-like samples cannot be NaN: {name}"));
        }
        if counter_like && suffix != "_gsum" && v < 0.0 {
            return Err(format!("counter-like samples cannot be negative: {name}"));
        }
        if s.has_exemplar {
            let allowed = (is_histogram(typ) && name.ends_with("_bucket"))
                || (typ == MetricType::Counter && name.ends_with("_total"));
            if !allowed {
                return Err(format!(
                    "only histogram/gaugehistogram buckets and counters can have exemplars: {name}"
                ));
            }
        }
        Ok(typ)
    }
}

/// An exemplar's value and timestamp (its labels stay in the parser's label buffer).
type ExemplarHead = (f64, Option<i64>);

/// End of a value or timestamp token: the next space or newline.
#[inline]
fn token_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] != b' ' && b[i] != b'\n' {
        i += 1;
    }
    i
}

impl<'a> Parser<'a> {
    pub(crate) fn next_om(&mut self, known: Known<'_>) -> Result<Option<RawEntry<'a>>, String> {
        let b = self.input;
        let i = self.pos;
        self.entry_line = self.line;
        match b.get(i) {
            None => Err("data does not end with # EOF".into()),
            Some(b'#') => self.om_comment(i),
            Some(b'\n') if self.mode == ParseMode::PrometheusCompatible => {
                Err(self.unexpected("expected a valid start token", i, i))
            }
            Some(b'\n') => Err("blank lines are not allowed in OpenMetrics".into()),
            Some(_) => self.om_sample(i, known).map(Some),
        }
    }

    fn om_comment(&mut self, i: usize) -> Result<Option<RawEntry<'a>>, String> {
        let b = self.input;
        let compat = self.mode == ParseMode::PrometheusCompatible;
        let rest = &b[i..];
        if rest == b"# EOF" || rest == b"# EOF\n" {
            if !compat {
                self.om.finish_family()?;
            }
            self.pos = b.len();
            return Ok(None);
        }
        if rest.starts_with(b"# EOF\n") || (compat && rest.starts_with(b"# EOF")) {
            return Err("unexpected data after # EOF".into());
        }
        let kw = match rest.get(..7) {
            Some(b"# HELP ") => "HELP",
            Some(b"# TYPE ") => "TYPE",
            Some(b"# UNIT ") => "UNIT",
            _ if compat => {
                let at = if rest.get(1) == Some(&b' ') {
                    i + 2
                } else {
                    i + 1
                };
                return Err(self.unexpected("expected a valid start token", i, at));
            }
            _ => {
                let end = line_end(b, i);
                return Err(format!(
                    "invalid line: only # HELP, # TYPE, # UNIT and # EOF comments are allowed: {:?}",
                    String::from_utf8_lossy(&b[i..end])
                ));
            }
        };
        let k = i + 7;
        let (name, name_escaped, after) = match b.get(k) {
            Some(&c) if is_metric_start(c) => {
                let j = metric_name_end(b, k + 1);
                (self.span(k, j, "metric name")?, false, j)
            }
            Some(b'"') => match self.scan_quoted(k) {
                Some(q) if q.newlines == 0 => {
                    (self.span(q.start, q.end, "metric name")?, q.escaped, q.next)
                }
                _ => {
                    return Err(self.unexpected(&format!("expected metric name after {kw}"), i, k));
                }
            },
            _ => return Err(self.unexpected(&format!("expected metric name after {kw}"), i, k)),
        };
        let end = line_end(b, after + 1);
        if compat && (b.get(after) != Some(&b' ') || end == b.len()) {
            // Prometheus's lexer wants a space, the text and a newline.
            return Err(format!("expected text in {kw}"));
        }
        if b.get(after) != Some(&b' ') {
            return Err(self.unexpected(
                &format!("expected a space and text after the metric name in {kw}"),
                i,
                after,
            ));
        }
        let text = match self.span(after + 1, end, "metadata text") {
            Ok(t) => t,
            Err(_) if compat && kw == "HELP" => {
                return Err(format!(
                    "help text {:?} is not a valid utf8 string",
                    lossy(&b[after + 1..end])
                ));
            }
            Err(e) => return Err(e),
        };
        self.pos = (end + 1).min(b.len());
        self.line += 1;
        if compat {
            return self
                .om_compat_metadata(kw, name, name_escaped, text)
                .map(Some);
        }
        let family = unescape(name, name_escaped);
        match kw {
            "HELP" => {
                self.om.on_metadata(family, Meta::Help)?;
                Ok(Some(RawEntry::Help {
                    name,
                    name_escaped,
                    help: unescape(text, text.contains('\\')),
                }))
            }
            "TYPE" => {
                let metric_type = MetricType::from_type_str(text, Format::OpenMetrics)
                    .ok_or_else(|| format!("invalid metric type {text:?}"))?;
                self.om.on_metadata(family, Meta::Type(metric_type))?;
                Ok(Some(RawEntry::Type {
                    name,
                    name_escaped,
                    metric_type,
                }))
            }
            _ => {
                self.om.on_metadata(family, Meta::Unit(text))?;
                Ok(Some(RawEntry::Unit {
                    name,
                    name_escaped,
                    unit: text,
                }))
            }
        }
    }

    /// A metadata line in Prometheus-compatible mode: types must be known and a non-empty unit
    /// must be a `_`-separated suffix of the name; nothing else is checked.
    fn om_compat_metadata(
        &mut self,
        kw: &str,
        name: &'a str,
        name_escaped: bool,
        text: &'a str,
    ) -> Result<RawEntry<'a>, String> {
        match kw {
            "HELP" => Ok(RawEntry::Help {
                name,
                name_escaped,
                help: unescape(text, text.contains('\\')),
            }),
            "TYPE" => {
                let metric_type = MetricType::from_type_str(text, Format::OpenMetrics)
                    .ok_or_else(|| format!("invalid metric type {text:?}"))?;
                self.meta_name = name;
                self.meta_type = metric_type;
                Ok(RawEntry::Type {
                    name,
                    name_escaped,
                    metric_type,
                })
            }
            _ => {
                let suffix_ok = name.len() > text.len()
                    && name.ends_with(text)
                    && name.as_bytes().get(name.len() - text.len() - 1) == Some(&b'_');
                if !text.is_empty() && !suffix_ok {
                    return Err(format!("unit {text:?} not a suffix of metric {name:?}"));
                }
                Ok(RawEntry::Unit {
                    name,
                    name_escaped,
                    unit: text,
                })
            }
        }
    }

    fn om_sample(&mut self, start: usize, known: Known<'_>) -> Result<RawEntry<'a>, String> {
        let b = self.input;
        let mut name: Option<(&'a str, bool)> = None;
        let mut i = start;
        let mut series_known = false;
        // Strict mode's family rules need the labels of every sample.
        let known = known.filter(|_| self.mode == ParseMode::PrometheusCompatible);
        if let Some(known) = known
            && let Some((end, _)) = self.known_series(start, false, known)
        {
            // Accepted before with exactly this text: name and labels are not read again.
            series_known = true;
            name = Some(("", false));
            i = end;
        } else if b[i] == b'{' {
            i = self.om_labels(start, i + 1, Some(&mut name))?;
        } else if is_metric_start(b[i]) {
            i = metric_name_end(b, i + 1);
            name = Some((self.span(start, i, "metric name")?, false));
            if b.get(i) == Some(&b'{') {
                i = self.om_labels(start, i + 1, Some(&mut name))?;
            }
        } else {
            return Err(self.unexpected("expected a valid start token", start, i));
        }
        let series_end = i;
        let Some((name, name_escaped)) = name else {
            return Err(format!(
                "metric name not set while parsing: {:?}",
                String::from_utf8_lossy(&b[start..i])
            ));
        };
        let n_labels = self.labels.len();
        let compat = self.mode == ParseMode::PrometheusCompatible;

        if b.get(i) != Some(&b' ') {
            let expected = if compat {
                "expected value after metric"
            } else {
                "expected a space and the value after the metric"
            };
            return Err(self.unexpected(expected, start, i));
        }
        let vs = i + 1;
        let ve = token_end(b, vs);
        if ve == vs {
            return Err(self.unexpected("expected value after metric", start, vs));
        }
        let value = parse_go_float(&b[vs..ve]).ok_or_else(|| {
            if compat {
                go_float_error(&b[vs..ve], &b[start..ve])
            } else {
                format!(
                    "invalid value {:?} while parsing: {:?}",
                    lossy(&b[vs..ve]),
                    lossy(&b[start..ve])
                )
            }
        })?;
        i = ve;

        let mut timestamp_ms = None;
        let mut exemplar = None;
        if compat {
            (i, timestamp_ms, exemplar) = self.om_compat_tail(start, i, n_labels)?;
        } else if b.get(i) == Some(&b' ') {
            i += 1;
            if b.get(i) != Some(&b'#') {
                let te = token_end(b, i);
                if te == i {
                    return Err(self.unexpected(
                        "expected timestamp or exemplar after value",
                        start,
                        i,
                    ));
                }
                timestamp_ms = Some(parse_om_timestamp_ms(&b[i..te]).ok_or_else(|| {
                    format!(
                        "invalid timestamp {:?} while parsing: {:?}",
                        lossy(&b[i..te]),
                        lossy(&b[start..te])
                    )
                })?);
                i = te;
                if b.get(i) == Some(&b' ') {
                    i += 1;
                    if b.get(i) != Some(&b'#') {
                        return Err(self.unexpected("expected exemplar after timestamp", start, i));
                    }
                }
            }
            if b.get(i) == Some(&b'#') {
                if b.get(i + 1) != Some(&b' ') || b.get(i + 2) != Some(&b'{') {
                    return Err(self.unexpected("expected exemplar labels after #", start, i + 1));
                }
                let (next, ex) = self.om_exemplar(start, i + 3, n_labels)?;
                i = next;
                exemplar = Some(ex);
            }
        }
        match b.get(i) {
            Some(b'\n') => {}
            None => return Err("data does not end with # EOF".into()),
            Some(_) => return Err(self.unexpected("expected end of line", start, i)),
        }
        self.pos = i + 1;
        self.line += 1;

        let src = self.src();
        let metric_type = if compat {
            if !series_known && is_part_of_family(name, self.meta_name, self.meta_type) {
                self.meta_type
            } else {
                MetricType::Unknown
            }
        } else {
            self.om.on_sample(OmSample {
                name: unescape(name, name_escaped),
                src,
                labels: &self.labels[..n_labels],
                value,
                ts: timestamp_ms,
                has_exemplar: exemplar.is_some(),
            })?
        };
        self.head = SampleHead {
            name,
            name_escaped,
            raw_series: &b[start..series_end],
            n_labels,
            value,
            timestamp_ms,
            exemplar,
            metric_type,
            series_known,
        };
        Ok(RawEntry::Sample)
    }

    /// What follows a sample's value in Prometheus-compatible mode: an optional timestamp and an
    /// optional exemplar (` # {...} value [timestamp]`), then the newline. Returns the offset of
    /// the newline.
    fn om_compat_tail(
        &mut self,
        start: usize,
        mut i: usize,
        n_labels: usize,
    ) -> Result<(usize, Option<i64>, Option<ExemplarHead>), String> {
        let b = self.input;
        let mut timestamp_ms = None;
        loop {
            match b.get(i) {
                None => return Err("data does not end with # EOF".into()),
                Some(b'\n') => return Ok((i, timestamp_ms, None)),
                Some(b' ') if b.get(i + 1..i + 4) == Some(b"# {") => {
                    let (next, ex) = self.om_exemplar(start, i + 4, n_labels)?;
                    return Ok((next, timestamp_ms, Some(ex)));
                }
                Some(b' ') if timestamp_ms.is_none() && token_end(b, i + 1) > i + 1 => {
                    let te = token_end(b, i + 1);
                    let raw = &b[i + 1..te];
                    let v =
                        parse_go_float(raw).ok_or_else(|| go_float_error(raw, &b[start..te]))?;
                    if !v.is_finite() {
                        return Err(format!("invalid timestamp {}", go_non_finite(v)));
                    }
                    // Exact for plain decimals; Prometheus multiplies the float by 1000.
                    timestamp_ms = Some(parse_om_timestamp_ms(raw).unwrap_or((v * 1000.0) as i64));
                    i = te;
                }
                Some(_) if timestamp_ms.is_some() => {
                    return Err(self.unexpected("expected next entry after timestamp", start, i));
                }
                Some(_) => {
                    return Err(self.unexpected(
                        "expected timestamp or exemplar after value",
                        start,
                        i + 1,
                    ));
                }
            }
        }
    }

    /// An exemplar from its label set (`at` is just after `{`) through its value and optional
    /// timestamp. Returns the offset after it, which must be the newline, and its value and
    /// timestamp; its labels are `self.labels[n_labels..]`.
    fn om_exemplar(
        &mut self,
        start: usize,
        at: usize,
        n_labels: usize,
    ) -> Result<(usize, ExemplarHead), String> {
        let b = self.input;
        let compat = self.mode == ParseMode::PrometheusCompatible;
        let mut i = self.om_labels(start, at, None)?;
        if !compat {
            let ex_labels = &self.labels[n_labels..];
            let src = self.src();
            if let Some(dup) = has_duplicate_names(src, ex_labels) {
                return Err(format!("duplicate exemplar label name {dup:?}"));
            }
            let chars: usize = ex_labels
                .iter()
                .map(|l| l.name(src).chars().count() + l.value(src).chars().count())
                .sum();
            if chars > MAX_EXEMPLAR_LABEL_CHARS {
                return Err(format!(
                    "exemplar labels have {chars} characters, more than the limit of {MAX_EXEMPLAR_LABEL_CHARS}"
                ));
            }
        }
        let es = i + 1;
        let ee = token_end(b, es);
        if b.get(i) != Some(&b' ') || ee == es {
            let (expected, at) = if compat {
                ("expected value after exemplar labels", i)
            } else if b.get(i) != Some(&b' ') {
                ("expected a space and the value after exemplar labels", i)
            } else {
                ("expected exemplar value", es)
            };
            return Err(self.unexpected(expected, start, at));
        }
        let ev = parse_go_float(&b[es..ee]).ok_or_else(|| {
            if compat {
                go_float_error(&b[es..ee], &b[start..ee])
            } else {
                format!("invalid exemplar value {:?}", lossy(&b[es..ee]))
            }
        })?;
        i = ee;
        let mut ets = None;
        if b.get(i) == Some(&b' ') {
            let ts = i + 1;
            let te = token_end(b, ts);
            if te == ts {
                let expected = if compat {
                    "expected timestamp or comment"
                } else {
                    "expected exemplar timestamp"
                };
                return Err(self.unexpected(expected, start, ts));
            }
            let raw = &b[ts..te];
            ets = Some(if compat {
                let v = parse_go_float(raw).ok_or_else(|| go_float_error(raw, &b[start..te]))?;
                if !v.is_finite() {
                    return Err(format!("invalid exemplar timestamp {}", go_non_finite(v)));
                }
                parse_om_timestamp_ms(raw).unwrap_or((v * 1000.0) as i64)
            } else {
                parse_om_timestamp_ms(raw)
                    .ok_or_else(|| format!("invalid exemplar timestamp {:?}", lossy(raw)))?
            });
            i = te;
            if compat && b.get(i).is_some_and(|&c| c != b'\n') {
                return Err(self.unexpected(
                    "expected next entry after exemplar timestamp",
                    start,
                    i,
                ));
            }
        }
        Ok((i, (ev, ets)))
    }

    /// Strict label set after `{` through `}`: `name="value"` pairs separated by single commas,
    /// no spaces, and (in strict mode) no trailing comma. `name_slot` is `None` for exemplars,
    /// where the quoted metric-name form is not allowed.
    fn om_labels(
        &mut self,
        line_start: usize,
        mut i: usize,
        mut name_slot: Option<&mut Option<(&'a str, bool)>>,
    ) -> Result<usize, String> {
        let b = self.input;
        let trailing_comma_ok = self.mode == ParseMode::PrometheusCompatible;
        if b.get(i) == Some(&b'}') {
            return Ok(i + 1);
        }
        loop {
            let lname = match b.get(i) {
                Some(&c) if is_label_start(c) => {
                    let s = i;
                    i = label_name_end(b, i + 1);
                    (s, i, false)
                }
                Some(b'"') => {
                    let q = match self.scan_quoted(i) {
                        Some(q) if q.newlines == 0 => q,
                        _ => return Err(self.unexpected("expected label name", line_start, i)),
                    };
                    i = q.next;
                    if matches!(b.get(i), Some(b',') | Some(b'}')) {
                        let Some(slot) = name_slot.as_deref_mut() else {
                            return Err(self.unexpected(
                                "expected label name",
                                line_start,
                                q.start - 1,
                            ));
                        };
                        if slot.is_some() {
                            return Err(format!(
                                "metric name already set while parsing: {:?}",
                                lossy(&b[line_start..i])
                            ));
                        }
                        *slot = Some((self.span(q.start, q.end, "metric name")?, q.escaped));
                        if b[i] == b'}' {
                            return Ok(i + 1);
                        }
                        i += 1;
                        if trailing_comma_ok && b.get(i) == Some(&b'}') {
                            return Ok(i + 1);
                        }
                        continue;
                    }
                    (q.start, q.end, q.escaped)
                }
                _ => return Err(self.unexpected("expected label name", line_start, i)),
            };
            if b.get(i) != Some(&b'=') {
                if trailing_comma_ok && name_slot.is_none() && matches!(b.get(i), Some(b',' | b'}'))
                {
                    // Prometheus reads a bare name there as a (forbidden) exemplar metric name.
                    return Err(self.unexpected("expected label name", line_start, i));
                }
                return Err(self.unexpected("expected equal", line_start, i));
            }
            i += 1;
            let q = match (b.get(i), self.scan_quoted(i)) {
                (Some(b'"'), Some(q)) if q.newlines == 0 => q,
                _ => return Err(self.unexpected("expected label value", line_start, i)),
            };
            self.push_label(lname, (q.start, q.end, q.escaped))?;
            i = q.next;
            match b.get(i) {
                Some(b',') => {
                    i += 1;
                    if trailing_comma_ok && b.get(i) == Some(&b'}') {
                        return Ok(i + 1);
                    }
                }
                Some(b'}') => return Ok(i + 1),
                _ => return Err(self.unexpected("expected comma or brace close", line_start, i)),
            }
        }
    }
}

fn lossy(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// The error Prometheus reports for a value or timestamp its float parser refuses; `ctx` is the
/// line up to the end of the token.
#[cold]
fn go_float_error(raw: &[u8], ctx: &[u8]) -> String {
    if raw.iter().any(|c| matches!(c, b'p' | b'P' | b'_')) {
        return format!(
            "unsupported character in float while parsing: {:?}",
            lossy(ctx)
        );
    }
    // Go reports a finite literal beyond f64's range separately.
    let out_of_range = std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .is_some_and(f64::is_infinite);
    let why = if out_of_range {
        "value out of range"
    } else {
        "invalid syntax"
    };
    format!(
        "strconv.ParseFloat: parsing {:?}: {why} while parsing: {:?}",
        lossy(raw),
        lossy(ctx)
    )
}

/// Go's `%f` of a non-finite float.
fn go_non_finite(v: f64) -> &'static str {
    if v.is_nan() {
        "NaN"
    } else if v > 0.0 {
        "+Inf"
    } else {
        "-Inf"
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        Entry, Format, MetricType, OwnedSample, ParseMode, Parser, parse_samples,
        parse_samples_with_mode,
    };

    fn ok(input: &str) -> Vec<OwnedSample> {
        parse_samples(input.as_bytes(), Format::OpenMetrics)
            .unwrap_or_else(|e| panic!("{e}\n{input}"))
    }

    fn err(input: &str) -> crate::ParseError {
        parse_samples(input.as_bytes(), Format::OpenMetrics).expect_err(input)
    }

    #[test]
    fn exemplars_and_timestamps() {
        let s = ok(
            "# TYPE a counter\na_total{x=\"1\"} 3 -1.5 # {trace_id=\"t\\\"q\"} 0.5 1.25\na_created{x=\"1\"} 17 -1.5\n# EOF",
        );
        let e = s[0].exemplar.as_ref().expect("exemplar");
        assert_eq!(e.labels, vec![("trace_id".to_string(), "t\"q".to_string())]);
        assert_eq!((e.value, e.timestamp_ms), (0.5, Some(1250)));
        assert_eq!(s[0].timestamp_ms, Some(-1500));
        assert_eq!(s[1].metric_type, MetricType::Counter);
    }

    #[test]
    fn entries_and_raw_series() {
        let input = b"# HELP \"my.metric\" Some \\\"help\\\"\n# TYPE \"my.metric\" gauge\n{\"my.metric\",a=\"b\"} 1\n# EOF\n";
        let mut p = Parser::new(input, Format::OpenMetrics);
        match p.next_entry().unwrap() {
            Some(Entry::Help { name, help }) => assert_eq!(
                (name.as_ref(), help.as_ref()),
                ("my.metric", "Some \"help\"")
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            p.next_entry().unwrap(),
            Some(Entry::Type {
                metric_type: MetricType::Gauge,
                ..
            })
        ));
        match p.next_entry().unwrap() {
            Some(Entry::Sample(s)) => {
                assert_eq!(s.raw_series(), b"{\"my.metric\",a=\"b\"}");
                assert_eq!(s.name(), "my.metric");
                assert_eq!(s.metric_type(), MetricType::Gauge);
            }
            other => panic!("{other:?}"),
        }
        assert!(p.next_entry().unwrap().is_none());
    }

    #[test]
    fn errors_name_the_line() {
        let e = err("# TYPE a gauge\na 1\nb{x=\"1\",} 2\n# EOF\n");
        assert_eq!(e.line, 3);
        assert!(e.message.starts_with("expected label name"), "{e}");
        let e = err("# TYPE a gauge\na{x=\"1\"} 1\na{x=\"2\"} 1\na{x=\"1\"} 1\n# EOF\n");
        assert_eq!(e.line, 4);
        assert!(e.message.contains("interleaved"), "{e}");
        let e = err("a 1\nb 1\na 2\n# EOF\n");
        assert!(e.message.contains("clashing name: a"), "{e}");
        assert!(err("a 1\n").message.contains("# EOF"));
        assert!(err("a 1\n# EOF\n\n").message.contains("after # EOF"));
        assert!(
            err("# TYPE a histogram\na_bucket{le=\"1\"} 2\na_bucket{le=\"+Inf\"} 1\n# EOF\n")
                .message
                .contains("out of order")
        );
    }

    fn compat(input: &str) -> Result<Vec<OwnedSample>, crate::ParseError> {
        parse_samples_with_mode(
            input.as_bytes(),
            Format::OpenMetrics,
            ParseMode::PrometheusCompatible,
        )
    }

    #[test]
    fn compatible_mode_accepts_what_prometheus_accepts() {
        let cases = [
            // redis_exporter's percentiles as quantile labels.
            "# TYPE redis_latency_percentiles_usec summary\nredis_latency_percentiles_usec{cmd=\"get\",quantile=\"50\"} 12\nredis_latency_percentiles_usec{cmd=\"get\",quantile=\"99.9\"} 40\n# EOF\n",
            // Buckets out of order, decreasing counts, no +Inf.
            "# TYPE h histogram\nh_bucket{le=\"5\"} 3\nh_bucket{le=\"1\"} 1\nh_count 2\n# EOF\n",
            // Interleaved and repeated families, metadata after samples, repeated HELP.
            "# TYPE a gauge\na{x=\"1\"} 1\nb 1\na{x=\"2\"} 1\n# HELP a one\n# HELP a two\na{x=\"1\"} 2\n# EOF\n",
            // Trailing commas, duplicate label names, exemplars on a gauge, long exemplars.
            "a{x=\"1\",} 1\n{\"a.b\",} 1\na{x=\"1\",x=\"2\"} 1\n# TYPE g gauge\ng 1 # {trace_id=\"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\",} 2 3\n# EOF\n",
            // Per-type value rules and timestamps going backwards.
            "# TYPE c counter\nc_total -1 20\nc_total NaN 10\n# TYPE s stateset\ns{s=\"a\"} 2\n# TYPE i info\ni_info 0\n# EOF",
            // A unit equal to the whole name after `_`, a counter without `_total`.
            "# TYPE c counter\n# UNIT c_seconds seconds\nc 1\n# EOF\n",
        ];
        for input in cases {
            assert!(
                parse_samples(input.as_bytes(), Format::OpenMetrics).is_err(),
                "{input}"
            );
            compat(input).unwrap_or_else(|e| panic!("{e}\n{input}"));
        }
        let s = compat(cases[0]).unwrap();
        assert_eq!(s[1].labels[1], ("quantile".into(), "99.9".into()));
        assert_eq!(s[1].metric_type, MetricType::Summary);
        let s = compat(cases[3]).unwrap();
        assert_eq!(s[1].name, "a.b");
        let e = s[3].exemplar.as_ref().expect("exemplar on a gauge");
        assert_eq!((e.value, e.timestamp_ms), (2.0, Some(3000)));
        let s = compat(cases[4]).unwrap();
        assert_eq!(s[0].timestamp_ms, Some(20_000));
        assert!(s[1].value.is_nan());
        assert_eq!(s[0].metric_type, MetricType::Counter);
        assert_eq!(s[3].metric_type, MetricType::Info);
    }

    #[test]
    fn compatible_mode_types_follow_the_last_type_line() {
        let s = compat(
            "# TYPE foo counter\nfoo_total 1\nfoo_created 2\nbar 3\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nfoo_total 4\n# EOF\n",
        )
        .unwrap();
        let types: Vec<_> = s.iter().map(|s| s.metric_type).collect();
        assert_eq!(
            types,
            [
                MetricType::Counter,
                MetricType::Counter,
                MetricType::Unknown,
                MetricType::Histogram,
                MetricType::Unknown
            ]
        );
    }

    #[test]
    fn compatible_mode_rejects_what_prometheus_rejects() {
        let cases: &[(&str, &str)] = &[
            ("", "data does not end with # EOF"),
            ("metric 1\n", "data does not end with # EOF"),
            ("metric 1", "data does not end with # EOF"),
            (
                "metric_total 1 # {aa=\"bb\"} 4",
                "data does not end with # EOF",
            ),
            ("\n# EOF\n", "expected a valid start token"),
            (" a 1\n# EOF\n", "expected a valid start token"),
            ("9\n# EOF\n", "expected a valid start token"),
            ("# a comment\n# EOF\n", "expected a valid start token"),
            ("#  TYPE c counter\n# EOF\n", "expected a valid start token"),
            (
                "<html><body>Not found</body></html>\n",
                "expected a valid start token",
            ),
            ("# EOF\na 1", "unexpected data after # EOF"),
            ("# EOF\n\n", "unexpected data after # EOF"),
            ("# EOFa 1", "unexpected data after # EOF"),
            (
                "# TYPE u untyped\n# EOF\n",
                "invalid metric type \"untyped\"",
            ),
            (
                "# TYPE c counter \n# EOF\n",
                "invalid metric type \"counter \"",
            ),
            ("# TYPE \n# EOF\n", "expected metric name after TYPE"),
            ("# TYPE m\n# EOF\n", "expected text in TYPE"),
            ("# HELP m\n# EOF\n", "expected text in HELP"),
            ("# HELP m text", "expected text in HELP"),
            (
                "# UNIT metric suffix\n# EOF\n",
                "unit \"suffix\" not a suffix of metric \"metric\"",
            ),
            (
                "# UNIT metricsuffix suffix\n# EOF\n",
                "unit \"suffix\" not a suffix of metric \"metricsuffix\"",
            ),
            (
                "# UNIT m suffix\n# EOF\n",
                "unit \"suffix\" not a suffix of metric \"m\"",
            ),
            ("a\t1\n# EOF\n", "expected value after metric"),
            ("a  1\n# EOF\n", "expected value after metric"),
            (
                "a 1\t2\n# EOF\n",
                "strconv.ParseFloat: parsing \"1\\t2\": invalid syntax while parsing: \"a 1\\t2\"",
            ),
            ("a 1 2 \n# EOF\n", "expected next entry after timestamp"),
            ("a 1 2 #\n# EOF\n", "expected next entry after timestamp"),
            ("a 1 1 1\n# EOF\n", "expected next entry after timestamp"),
            (
                "a 1 1z\n# EOF\n",
                "strconv.ParseFloat: parsing \"1z\": invalid syntax while parsing: \"a 1 1z\"",
            ),
            (
                "a true\n",
                "strconv.ParseFloat: parsing \"true\": invalid syntax while parsing: \"a true\"",
            ),
            (
                "a 1e999\n# EOF\n",
                "strconv.ParseFloat: parsing \"1e999\": value out of range",
            ),
            (
                "foo 1_2\n# EOF\n",
                "unsupported character in float while parsing: \"foo 1_2\"",
            ),
            (
                "foo 0x1p-3\n# EOF\n",
                "unsupported character in float while parsing: \"foo 0x1p-3\"",
            ),
            (
                "foo 0 1_2\n# EOF\n",
                "unsupported character in float while parsing: \"foo 0 1_2\"",
            ),
            ("a{b='c'} 1\n# EOF\n", "expected label value"),
            ("a{,b=\"c\"} 1\n# EOF\n", "expected label name"),
            (
                "a{b=\"c\"d=\"e\"} 1\n# EOF\n",
                "expected comma or brace close",
            ),
            ("a{b=\"c\",,d=\"e\"} 1\n# EOF\n", "expected label name"),
            ("a{b=\n# EOF\n", "expected label value"),
            ("a{b=\"\n\"} 1\n# EOF\n", "expected label value"),
            ("empty_label_name{=\"\"} 0\n# EOF\n", "expected label name"),
            ("{b=\"c\",} 1\n# EOF\n", "metric name not set while parsing"),
            (
                "{\"a\",\"b\"} 1\n# EOF\n",
                "metric name already set while parsing",
            ),
            (
                "custom_metric_total 1 # {aa=bb}\n# EOF\n",
                "expected label value",
            ),
            (
                "custom_metric_total 1 # {aa=\"bb\"}\n# EOF\n",
                "expected value after exemplar labels",
            ),
            (
                "custom_metric_total 1 # {bb}\n# EOF\n",
                "expected label name",
            ),
            (
                "custom_metric_total 1 # {aa=\"bb\"} 1_2\n# EOF\n",
                "unsupported character in float",
            ),
            (
                "custom_metric_total 1 # {aa=\"bb\"} true\n# EOF\n",
                "strconv.ParseFloat: parsing \"true\": invalid syntax",
            ),
            (
                "custom_metric_total 1 # {aa=\"bb\"} 1 2 3\n# EOF\n",
                "expected next entry after exemplar timestamp",
            ),
            ("a 1 NaN", "invalid timestamp NaN"),
            ("a 1 -Inf", "invalid timestamp -Inf"),
            ("a 1 Inf", "invalid timestamp +Inf"),
            (
                "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1 # {aa=\"bb\"} 4 NaN",
                "invalid exemplar timestamp NaN",
            ),
            (
                "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1 # {aa=\"bb\"} 4 -Inf",
                "invalid exemplar timestamp -Inf",
            ),
        ];
        for (input, want) in cases {
            let e = compat(input).expect_err(input);
            assert!(e.message.starts_with(want), "{input:?}: {e}");
        }
        assert!(compat("# HELP m a\u{ff}\n# EOF\n").is_ok());
        let e = parse_samples_with_mode(
            b"# HELP m a\xff\n# EOF\n",
            Format::OpenMetrics,
            ParseMode::PrometheusCompatible,
        )
        .expect_err("invalid UTF-8 help");
        assert!(e.message.starts_with("help text"), "{e}");
        let e = parse_samples_with_mode(
            b"a{b=\"\xff\"} 1\n# EOF\n",
            Format::OpenMetrics,
            ParseMode::PrometheusCompatible,
        )
        .expect_err("invalid UTF-8 label value");
        assert!(e.message.starts_with("invalid UTF-8 label value"), "{e}");
    }

    #[test]
    fn histogram_groups_are_checked_at_their_end() {
        // Two complete groups; the second lacks +Inf, which is noticed at # EOF.
        let e = err(
            "# TYPE h histogram\nh_bucket{a=\"1\",le=\"+Inf\"} 1\nh_bucket{a=\"2\",le=\"1\"} 1\n# EOF\n",
        );
        assert_eq!(e.line, 4);
        assert!(e.message.contains("+Inf"), "{e}");
        // Same series at a later timestamp starts a new group.
        ok("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1 1\nh_bucket{le=\"+Inf\"} 2 2\n# EOF\n");
    }
}
