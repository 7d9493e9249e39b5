//! Writing expositions.

use std::io::Write as _;

use crate::float::{format_float, format_om_timestamp};
use crate::lex::{is_legacy_label_name, is_legacy_metric_name};
use crate::{Format, MetricType};

/// An exemplar to attach to a sample (written in OpenMetrics only).
#[derive(Clone, Copy, Debug)]
pub struct ExemplarOut<'e> {
    pub labels: &'e [(&'e str, &'e str)],
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

/// Writes one exposition into a `Vec<u8>`.
///
/// Sample names are written as given. A counter family is named as the text format and
/// client_golang name it, after its samples: the text format writes the name unchanged
/// (`# TYPE foo_total counter`, and `# TYPE foo counter` for a counter without `_total`, as
/// postgres_exporter's `pg_stat_database_xact_commit`). OpenMetrics writes `foo_total` as family
/// `foo` of type counter; a counter whose name lacks `_total` becomes family `foo` of type
/// `unknown` with its samples still named `foo`, as client_golang's encoder does, so its series
/// keep the same name whichever format a scraper negotiates. An info family may be called `foo`
/// or `foo_info` (text: `# TYPE foo_info gauge`, OpenMetrics: `# TYPE foo info`). Other types
/// the text format lacks are written as Prometheus exposes them: `stateset` as `gauge`,
/// `gaugehistogram` without metadata (untyped). Names outside the legacy character set are
/// quoted (`{"my.metric"}`) as Prometheus 3 does. Timestamps are milliseconds; the text format
/// writes them as integers (Prometheus cannot read negative ones there), OpenMetrics as exact
/// decimal seconds.
///
/// ```
/// use lookout_exposition::{Encoder, Format, MetricType};
/// let mut out = Vec::new();
/// let mut enc = Encoder::new(Format::PrometheusText, &mut out);
/// enc.family("http_requests_total", MetricType::Counter, Some("Requests."), None);
/// enc.sample("http_requests_total", &[("method", "GET")], 3.0, None);
/// enc.finish();
/// assert_eq!(
///     out,
///     b"# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\nhttp_requests_total{method=\"GET\"} 3\n"
/// );
/// ```
pub struct Encoder<'o> {
    out: &'o mut Vec<u8>,
    format: Format,
}

impl<'o> Encoder<'o> {
    pub fn new(format: Format, out: &'o mut Vec<u8>) -> Self {
        Encoder { out, format }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Writes the metadata of a family: HELP and TYPE, and UNIT in OpenMetrics (skipped when it is
    /// empty, not a `_<unit>` suffix of the family name, or the type is info/stateset, which
    /// OpenMetrics forbids).
    pub fn family(
        &mut self,
        name: &str,
        metric_type: MetricType,
        help: Option<&str>,
        unit: Option<&str>,
    ) {
        match self.format {
            Format::PrometheusText => {
                let (meta_name, text_type): (std::borrow::Cow<'_, str>, &str) = match metric_type {
                    MetricType::Counter => (name.into(), "counter"),
                    MetricType::Info => (with_suffix(name, "_info"), "gauge"),
                    MetricType::StateSet | MetricType::Gauge => (name.into(), "gauge"),
                    MetricType::Histogram => (name.into(), "histogram"),
                    MetricType::Summary => (name.into(), "summary"),
                    MetricType::Unknown => (name.into(), "untyped"),
                    // No text type fits `_bucket`/`_gcount`/`_gsum` samples: leave them untyped.
                    MetricType::GaugeHistogram => return,
                };
                if let Some(help) = help {
                    self.out.extend_from_slice(b"# HELP ");
                    write_meta_name(self.out, &meta_name);
                    self.out.push(b' ');
                    escape_into(self.out, help, false);
                    self.out.push(b'\n');
                }
                self.out.extend_from_slice(b"# TYPE ");
                write_meta_name(self.out, &meta_name);
                self.out.push(b' ');
                self.out.extend_from_slice(text_type.as_bytes());
                self.out.push(b'\n');
            }
            Format::OpenMetrics => {
                let (meta_name, metric_type) = match metric_type {
                    MetricType::Counter => match name.strip_suffix("_total") {
                        Some(base) => (base, MetricType::Counter),
                        // OpenMetrics counter samples must be `<family>_total`; keep the name.
                        None => (name, MetricType::Unknown),
                    },
                    MetricType::Info => (name.strip_suffix("_info").unwrap_or(name), metric_type),
                    _ => (name, metric_type),
                };
                if let Some(help) = help {
                    self.out.extend_from_slice(b"# HELP ");
                    write_meta_name(self.out, meta_name);
                    self.out.push(b' ');
                    escape_into(self.out, help, true);
                    self.out.push(b'\n');
                }
                self.out.extend_from_slice(b"# TYPE ");
                write_meta_name(self.out, meta_name);
                self.out.push(b' ');
                self.out.extend_from_slice(metric_type.as_str().as_bytes());
                self.out.push(b'\n');
                if let Some(unit) = unit {
                    let fits = !unit.is_empty()
                        && !matches!(metric_type, MetricType::Info | MetricType::StateSet)
                        && meta_name
                            .strip_suffix(unit)
                            .is_some_and(|rest| rest.len() > 1 && rest.ends_with('_'));
                    if fits {
                        self.out.extend_from_slice(b"# UNIT ");
                        write_meta_name(self.out, meta_name);
                        self.out.push(b' ');
                        self.out.extend_from_slice(unit.as_bytes());
                        self.out.push(b'\n');
                    }
                }
            }
        }
    }

    /// Writes one sample line.
    pub fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: f64,
        timestamp_ms: Option<i64>,
    ) {
        self.sample_with(name, labels.iter().copied(), value, timestamp_ms, None);
    }

    /// Writes one sample line from any label iterator, with an optional exemplar (dropped in the
    /// text format, which has none).
    pub fn sample_with<I, N, V>(
        &mut self,
        name: &str,
        labels: I,
        value: f64,
        timestamp_ms: Option<i64>,
        exemplar: Option<&ExemplarOut<'_>>,
    ) where
        I: IntoIterator<Item = (N, V)>,
        N: AsRef<str>,
        V: AsRef<str>,
    {
        let om = self.format == Format::OpenMetrics;
        write_series(self.out, name, labels);
        self.out.push(b' ');
        write_value(self.out, value, om);
        if let Some(ts) = timestamp_ms {
            self.out.push(b' ');
            self.write_timestamp(ts);
        }
        if let (true, Some(ex)) = (om, exemplar) {
            self.out.extend_from_slice(b" # {");
            for (i, (n, v)) in ex.labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(b',');
                }
                write_label(self.out, n, v);
            }
            self.out.extend_from_slice(b"} ");
            write_value(self.out, ex.value, om);
            if let Some(ts) = ex.timestamp_ms {
                self.out.push(b' ');
                format_om_timestamp(ts, self.out);
            }
        }
        self.out.push(b'\n');
    }

    /// Ends the exposition (`# EOF` in OpenMetrics).
    pub fn finish(self) {
        if self.format == Format::OpenMetrics {
            self.out.extend_from_slice(b"# EOF\n");
        }
    }

    fn write_timestamp(&mut self, ts: i64) {
        match self.format {
            Format::PrometheusText => {
                let _ = write!(self.out, "{ts}");
            }
            Format::OpenMetrics => format_om_timestamp(ts, self.out),
        }
    }
}

fn with_suffix<'n>(name: &'n str, suffix: &str) -> std::borrow::Cow<'n, str> {
    if name.ends_with(suffix) {
        name.into()
    } else {
        format!("{name}{suffix}").into()
    }
}

fn write_value(out: &mut Vec<u8>, v: f64, om: bool) {
    let start = out.len();
    format_float(v, out);
    // OpenMetrics writers (client_golang, client_python) mark integral floats with ".0".
    if om && v.is_finite() && !out[start..].iter().any(|&c| c == b'.' || c == b'e') {
        out.extend_from_slice(b".0");
    }
}

fn write_meta_name(out: &mut Vec<u8>, name: &str) {
    if is_legacy_metric_name(name) {
        out.extend_from_slice(name.as_bytes());
    } else {
        out.push(b'"');
        escape_into(out, name, true);
        out.push(b'"');
    }
}

fn write_series<I, N, V>(out: &mut Vec<u8>, name: &str, labels: I)
where
    I: IntoIterator<Item = (N, V)>,
    N: AsRef<str>,
    V: AsRef<str>,
{
    let mut first = true;
    if is_legacy_metric_name(name) {
        out.extend_from_slice(name.as_bytes());
    } else {
        out.extend_from_slice(b"{\"");
        escape_into(out, name, true);
        out.push(b'"');
        first = false;
    }
    for (n, v) in labels {
        out.push(if first { b'{' } else { b',' });
        first = false;
        write_label(out, n.as_ref(), v.as_ref());
    }
    if !first {
        out.push(b'}');
    }
}

fn write_label(out: &mut Vec<u8>, name: &str, value: &str) {
    if is_legacy_label_name(name) {
        out.extend_from_slice(name.as_bytes());
    } else {
        out.push(b'"');
        escape_into(out, name, true);
        out.push(b'"');
    }
    out.extend_from_slice(b"=\"");
    escape_into(out, value, true);
    out.push(b'"');
}

/// Escapes `\` and newline, and `"` when `quote` is set (label values, quoted names, OpenMetrics
/// HELP; the text format's HELP leaves `"` alone).
pub(crate) fn escape_into(out: &mut Vec<u8>, s: &str, quote: bool) {
    let bytes = s.as_bytes();
    let mut last = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let rep: &[u8] = match c {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'"' if quote => b"\\\"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[last..i]);
        out.extend_from_slice(rep);
        last = i + 1;
    }
    out.extend_from_slice(&bytes[last..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(format: Format, f: impl FnOnce(&mut Encoder<'_>)) -> String {
        let mut out = Vec::new();
        let mut e = Encoder::new(format, &mut out);
        f(&mut e);
        e.finish();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_counter_and_escaping() {
        let s = enc(Format::PrometheusText, |e| {
            e.family(
                "foo_total",
                MetricType::Counter,
                Some("a \\ b\nc \"q\""),
                Some("seconds"),
            );
            e.sample("foo_total", &[("path", "/a\"b\\c\nd")], 1.5, Some(1234));
            e.sample("foo_total", &[], f64::NAN, None);
        });
        assert_eq!(
            s,
            "# HELP foo_total a \\\\ b\\nc \"q\"\n# TYPE foo_total counter\n\
             foo_total{path=\"/a\\\"b\\\\c\\nd\"} 1.5 1234\nfoo_total NaN\n"
        );
    }

    #[test]
    fn counter_without_total_keeps_its_name() {
        let write = |e: &mut Encoder<'_>| {
            e.family("xact_commit", MetricType::Counter, Some("Commits."), None);
            e.sample("xact_commit", &[("datname", "db")], 7.0, None);
        };
        assert_eq!(
            enc(Format::PrometheusText, write),
            "# HELP xact_commit Commits.\n# TYPE xact_commit counter\nxact_commit{datname=\"db\"} 7\n"
        );
        // client_golang's mapping: OpenMetrics counters need `_total` samples, so the family
        // is typed `unknown` and the series name stays what the text format exposes.
        let om = enc(Format::OpenMetrics, write);
        assert_eq!(
            om,
            "# HELP xact_commit Commits.\n# TYPE xact_commit unknown\n\
             xact_commit{datname=\"db\"} 7.0\n# EOF\n"
        );
        let samples = crate::parse_samples(om.as_bytes(), Format::OpenMetrics).unwrap();
        assert_eq!(samples[0].name, "xact_commit");
        assert_eq!(samples[0].metric_type, MetricType::Unknown);
    }

    #[test]
    fn openmetrics_counter_unit_and_exemplar() {
        let s = enc(Format::OpenMetrics, |e| {
            e.family(
                "req_seconds_total",
                MetricType::Counter,
                Some("x \"y\""),
                Some("seconds"),
            );
            e.sample_with(
                "req_seconds_total",
                [("a", "b")],
                3.0,
                Some(1500),
                Some(&ExemplarOut {
                    labels: &[("trace_id", "abc")],
                    value: 0.5,
                    timestamp_ms: Some(1),
                }),
            );
        });
        assert_eq!(
            s,
            "# HELP req_seconds x \\\"y\\\"\n# TYPE req_seconds counter\n# UNIT req_seconds seconds\n\
             req_seconds_total{a=\"b\"} 3.0 1.5 # {trace_id=\"abc\"} 0.5 0.001\n# EOF\n"
        );
    }

    #[test]
    fn om_unit_not_suffix_is_skipped() {
        let s = enc(Format::OpenMetrics, |e| {
            e.family("foo", MetricType::Gauge, None, Some("bytes"))
        });
        assert_eq!(s, "# TYPE foo gauge\n# EOF\n");
    }

    #[test]
    fn text_mapping_of_om_types() {
        let s = enc(Format::PrometheusText, |e| {
            e.family("build", MetricType::Info, Some("h"), None);
            e.family("state", MetricType::StateSet, None, None);
            e.family("gh", MetricType::GaugeHistogram, Some("h"), None);
            e.family("u", MetricType::Unknown, None, None);
        });
        assert_eq!(
            s,
            "# HELP build_info h\n# TYPE build_info gauge\n# TYPE state gauge\n# TYPE u untyped\n"
        );
    }

    #[test]
    fn utf8_names_are_quoted() {
        let s = enc(Format::PrometheusText, |e| {
            e.family("my.metric", MetricType::Gauge, None, None);
            e.sample("my.metric", &[("my.label", "v"), ("ok", "w")], 1.0, None);
            e.sample("my.metric", &[], 2.0, None);
        });
        assert_eq!(
            s,
            "# TYPE \"my.metric\" gauge\n{\"my.metric\",\"my.label\"=\"v\",ok=\"w\"} 1\n{\"my.metric\"} 2\n"
        );
    }
}
