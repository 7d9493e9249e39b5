//! Re-encoding a whole exposition from one format to the other.

use std::borrow::Cow;

use crate::{Encoder, Entry, Format, MetricType, ParseError, Parser};

/// Metadata of the family being copied, held until its first sample (or the next family) so the
/// header is written once with everything the input said about it.
struct Pending {
    from: Format,
    to: Format,
    name: String,
    metric_type: Option<MetricType>,
    help: Option<String>,
    unit: Option<String>,
    written: bool,
}

/// Parses `input` as `from` and appends it to `out` re-encoded as `to`.
///
/// OpenMetrics → text: a counter family `foo` becomes `# TYPE foo_total counter`; `info` and
/// `stateset` become gauges, `gaugehistogram` samples are left untyped; `_created` samples, units
/// and exemplars are dropped; timestamps become milliseconds. Text → OpenMetrics: a counter
/// `foo_total` becomes family `foo`, and so does a counter `foo` whose samples are named `foo`
/// (they get the `_total` suffix, keeping the counter type, where [`Encoder`] would keep the
/// name and type the family `unknown`); `untyped` becomes `unknown`, and `# EOF` is appended.
/// On error nothing is appended to `out`.
pub fn convert(
    input: &[u8],
    from: Format,
    to: Format,
    out: &mut Vec<u8>,
) -> Result<(), ParseError> {
    let start = out.len();
    let result = convert_into(input, from, to, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn convert_into(
    input: &[u8],
    from: Format,
    to: Format,
    out: &mut Vec<u8>,
) -> Result<(), ParseError> {
    let mut parser = Parser::new(input, from);
    let mut enc = Encoder::new(to, out);
    let mut pending = Pending {
        from,
        to,
        ..Pending::default()
    };
    let mut name_buf = String::new();
    while let Some(entry) = parser.next_entry()? {
        match entry {
            Entry::Help { name, help } => {
                switch_family(&mut enc, &mut pending, &name);
                pending.help = Some(help.into_owned());
            }
            Entry::Type { name, metric_type } => {
                switch_family(&mut enc, &mut pending, &name);
                pending.metric_type = Some(metric_type);
            }
            Entry::Unit { name, unit } => {
                switch_family(&mut enc, &mut pending, &name);
                pending.unit = Some(unit.to_owned());
            }
            Entry::Sample(s) => {
                flush(&mut enc, &mut pending);
                if to == Format::PrometheusText && s.is_created() {
                    continue;
                }
                let name = s.name();
                let mut name: &str = &name;
                if to == Format::OpenMetrics
                    && s.metric_type() == MetricType::Counter
                    && !name.ends_with("_total")
                    && !name.ends_with("_created")
                {
                    name_buf.clear();
                    name_buf.push_str(name);
                    name_buf.push_str("_total");
                    name = &name_buf;
                }
                let exemplar = s.exemplar().map(|e| e.to_owned_exemplar());
                let ex_labels: Vec<(&str, &str)> = exemplar
                    .as_ref()
                    .map(|e| {
                        e.labels
                            .iter()
                            .map(|(n, v)| (n.as_str(), v.as_str()))
                            .collect()
                    })
                    .unwrap_or_default();
                let ex_out = exemplar.as_ref().map(|e| crate::ExemplarOut {
                    labels: &ex_labels,
                    value: e.value,
                    timestamp_ms: e.timestamp_ms,
                });
                enc.sample_with(
                    name,
                    s.labels(),
                    s.value(),
                    s.timestamp_ms(),
                    ex_out.as_ref(),
                );
            }
        }
    }
    flush(&mut enc, &mut pending);
    enc.finish();
    Ok(())
}

impl Default for Pending {
    fn default() -> Self {
        Pending {
            from: Format::PrometheusText,
            to: Format::PrometheusText,
            name: String::new(),
            metric_type: None,
            help: None,
            unit: None,
            written: false,
        }
    }
}

fn switch_family(enc: &mut Encoder<'_>, pending: &mut Pending, name: &str) {
    if pending.name != name {
        flush(enc, pending);
        *pending = Pending {
            from: pending.from,
            to: pending.to,
            name: name.to_owned(),
            ..Pending::default()
        };
    }
}

fn flush(enc: &mut Encoder<'_>, pending: &mut Pending) {
    if pending.written || pending.name.is_empty() {
        return;
    }
    pending.written = true;
    let metric_type = pending.metric_type.unwrap_or(MetricType::Unknown);
    // The Encoder takes a counter family by its sample name. An OpenMetrics counter `foo` has
    // samples `foo_total`; a text counter written as OpenMetrics gets `_total` samples too.
    let name: Cow<'_, str> = match (metric_type, pending.from, pending.to) {
        (MetricType::Counter, Format::OpenMetrics, _) => format!("{}_total", pending.name).into(),
        (MetricType::Counter, Format::PrometheusText, Format::OpenMetrics)
            if !pending.name.ends_with("_total") =>
        {
            format!("{}_total", pending.name).into()
        }
        _ => pending.name.as_str().into(),
    };
    enc.family(
        &name,
        metric_type,
        pending.help.as_deref(),
        pending.unit.as_deref(),
    );
}
