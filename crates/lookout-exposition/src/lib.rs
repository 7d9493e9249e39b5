//! Prometheus text exposition format 0.0.4 and OpenMetrics 1.0: parsing and encoding.
//!
//! - [`Parser`] is a pull parser over a scraped body (`&[u8]`). It hands out one [`Entry`] at a
//!   time (HELP, TYPE, UNIT or a [`Sample`]) and borrows everything from the input; label spans
//!   live in a buffer reused across samples, so the common case (no escapes) allocates nothing
//!   per sample. It stops at the first error, as a Prometheus scrape does.
//!   Text follows Prometheus's `promparse` semantics (comments, blank lines, `untyped`, trailing
//!   commas, quoted UTF-8 names). OpenMetrics is strict: `# EOF`, metadata placement, family
//!   grouping and per-type rules (counter `_total`, histogram buckets, stateset/info values,
//!   exemplars, …) are checked in [`ParseMode::Strict`] (the default, for conformance);
//!   [`ParseMode::PrometheusCompatible`] accepts what Prometheus's own OpenMetrics scrape parser
//!   accepts (its line grammar, `# EOF`, UNIT suffixes) and nothing of the family rules.
//! - [`Encoder`] writes either format into a `Vec<u8>`, with Go-compatible float formatting
//!   ([`format_float`]) and Prometheus escaping; [`convert`] re-encodes a whole exposition from
//!   one format to the other.
//! - [`families`] builds metric families in memory (as exporters' const metrics) and encodes
//!   them in either format.

mod convert;
mod encode;
pub mod families;
mod float;
mod lex;
mod om;
mod parser;
mod text;

pub use convert::convert;
pub use encode::{Encoder, ExemplarOut};
pub use float::{format_float, parse_go_float};
pub use parser::{
    Entry, Exemplar, KnownSeries, LabelIter, OwnedExemplar, OwnedSample, Parser, Sample,
    parse_samples, parse_samples_with_mode,
};

use std::fmt;

/// Content type of the Prometheus text format this crate writes.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Content type of the OpenMetrics text format this crate writes.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `Accept` header Prometheus 3 sends on scrapes with its default `scrape_protocols`
/// (OpenMetrics 1.0.0 and 0.0.1, Prometheus text 1.0.0 and 0.0.4; no protobuf). Text 1.0.0 is
/// text 0.0.4 plus quoted UTF-8 names, which [`Parser`] accepts.
pub const SCRAPE_ACCEPT_HEADER: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
application/openmetrics-text;version=0.0.1;q=0.5,\
text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,\
text/plain;version=0.0.4;q=0.3,\
*/*;q=0.2";

/// How much of the OpenMetrics specification [`Parser`] enforces. The text format is parsed the
/// same way in both modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ParseMode {
    /// Every rule of OpenMetrics 1.0: line grammar, metadata placement, family grouping and
    /// per-type rules (quantile and `le` values, bucket order, `+Inf`, timestamps, exemplars).
    #[default]
    Strict,
    /// What Prometheus's OpenMetrics scrape parser (`openmetricsparse.go`) accepts: its line
    /// grammar (single spaces, trailing commas in label sets, exemplars on any sample, no blank
    /// lines or free comments), `# EOF` last, valid metric types and UNIT suffixes, and no family
    /// or per-type rules. Errors use Prometheus's texts.
    PrometheusCompatible,
}

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text format 0.0.4 (and 1.0.0, which only adds quoted UTF-8 names).
    PrometheusText,
    /// OpenMetrics 1.0 text format.
    OpenMetrics,
}

impl Format {
    /// The format of a scrape response: OpenMetrics for `application/openmetrics-text` (any
    /// version or parameters), the Prometheus text format otherwise (Prometheus's fallback).
    pub fn from_content_type(content_type: &str) -> Format {
        let media = content_type.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    }

    /// The `Content-Type` this crate's [`Encoder`] output should be served with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::PrometheusText => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }

    /// Picks the format to answer a request with, given its `Accept` header: OpenMetrics when
    /// `application/openmetrics-text` is acceptable with a higher or equal quality than
    /// `text/plain`, the text format otherwise (also when the header is absent).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::PrometheusText;
        };
        let mut best_om: Option<f32> = None;
        let mut best_text: Option<f32> = None;
        for part in accept.split(',') {
            let mut params = part.split(';');
            let media = params.next().unwrap_or("").trim();
            let mut q = 1.0f32;
            for p in params {
                let mut kv = p.splitn(2, '=');
                let k = kv.next().unwrap_or("").trim();
                let v = kv.next().unwrap_or("").trim();
                if k.eq_ignore_ascii_case("q") {
                    q = v.parse().unwrap_or(0.0);
                }
            }
            if q <= 0.0 {
                continue;
            }
            let slot = if media.eq_ignore_ascii_case("application/openmetrics-text") {
                &mut best_om
            } else if media.eq_ignore_ascii_case("text/plain")
                || media.eq_ignore_ascii_case("text/*")
                || media == "*/*"
            {
                &mut best_text
            } else {
                continue;
            };
            *slot = Some(slot.map_or(q, |b: f32| b.max(q)));
        }
        match (best_om, best_text) {
            (Some(om), Some(text)) if om >= text => Format::OpenMetrics,
            (Some(_), None) => Format::OpenMetrics,
            _ => Format::PrometheusText,
        }
    }
}

/// Metric family type, with the names Prometheus's metadata API uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    #[default]
    Unknown,
}

impl MetricType {
    /// `counter`, `gauge`, `histogram`, `gaugehistogram`, `summary`, `info`, `stateset`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }

    /// The type named by a `# TYPE` line in `format` (`untyped` in text, `unknown` in
    /// OpenMetrics), or `None` when the name is not a type of that format.
    pub fn from_type_str(s: &str, format: Format) -> Option<MetricType> {
        Some(match (s, format) {
            ("counter", _) => MetricType::Counter,
            ("gauge", _) => MetricType::Gauge,
            ("histogram", _) => MetricType::Histogram,
            ("summary", _) => MetricType::Summary,
            ("untyped", Format::PrometheusText) => MetricType::Unknown,
            ("unknown", Format::OpenMetrics) => MetricType::Unknown,
            ("gaugehistogram", Format::OpenMetrics) => MetricType::GaugeHistogram,
            ("info", Format::OpenMetrics) => MetricType::Info,
            ("stateset", Format::OpenMetrics) => MetricType::StateSet,
            _ => return None,
        })
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an exposition was rejected. `line` is 1-based.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_detection() {
        assert_eq!(
            Format::from_content_type(OPENMETRICS_CONTENT_TYPE),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::from_content_type("Application/OpenMetrics-Text;version=0.0.1"),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::from_content_type(TEXT_CONTENT_TYPE),
            Format::PrometheusText
        );
        assert_eq!(Format::from_content_type(""), Format::PrometheusText);
        assert_eq!(
            Format::from_content_type("application/json"),
            Format::PrometheusText
        );
    }

    #[test]
    fn negotiation() {
        assert_eq!(
            Format::negotiate(Some(SCRAPE_ACCEPT_HEADER)),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(None), Format::PrometheusText);
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")),
            Format::PrometheusText
        );
        assert_eq!(
            Format::negotiate(Some("text/plain;q=0.9,application/openmetrics-text;q=0.5")),
            Format::PrometheusText
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0,text/plain")),
            Format::PrometheusText
        );
        assert_eq!(Format::negotiate(Some("*/*")), Format::PrometheusText);
    }

    #[test]
    fn type_names() {
        for t in [
            MetricType::Counter,
            MetricType::Gauge,
            MetricType::Histogram,
            MetricType::GaugeHistogram,
            MetricType::Summary,
            MetricType::Info,
            MetricType::StateSet,
            MetricType::Unknown,
        ] {
            assert_eq!(
                MetricType::from_type_str(t.as_str(), Format::OpenMetrics),
                Some(t)
            );
        }
        assert_eq!(
            MetricType::from_type_str("untyped", Format::PrometheusText),
            Some(MetricType::Unknown)
        );
        assert_eq!(
            MetricType::from_type_str("untyped", Format::OpenMetrics),
            None
        );
        assert_eq!(
            MetricType::from_type_str("info", Format::PrometheusText),
            None
        );
    }
}
