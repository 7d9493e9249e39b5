//! The exporter's output model: metric families as the Go exporters build them (const
//! metrics), encoded with `lookout-exposition` in either format.
//!
//! Families come out sorted by name and samples by label values, as client_golang's registry
//! gathers them. Counters keep the real exporters' names even when they lack `_total`
//! (`pg_stat_database_blks_hit`): the text format writes them as they are, OpenMetrics adds
//! `_total` to the sample names as client_golang does.

use std::collections::BTreeMap;

use lookout_exposition::{Encoder, Format, MetricType};

/// One sample of a family: a name suffix (`""`, `_sum`, `_count`), labels and a value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub suffix: &'static str,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A metric family.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: MetricType,
    pub samples: Vec<Sample>,
}

impl Family {
    /// Label names of the first sample (sorted), without `quantile`/`le`.
    pub fn label_names(&self) -> Vec<&str> {
        self.samples
            .first()
            .map(|s| {
                s.labels
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .filter(|n| *n != "quantile" && *n != "le")
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A set of families keyed by name.
#[derive(Clone, Debug, Default)]
pub struct Families {
    map: BTreeMap<String, Family>,
}

impl Families {
    pub fn new() -> Self {
        Self::default()
    }

    fn family_mut(&mut self, name: &str, help: &str, kind: MetricType) -> &mut Family {
        self.map.entry(name.to_string()).or_insert_with(|| Family {
            name: name.to_string(),
            help: help.to_string(),
            kind,
            samples: Vec::new(),
        })
    }

    /// Adds one sample to the family `name` (created with `help`/`kind` on first use).
    pub fn add(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        self.add_owned(
            name,
            help,
            kind,
            labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            value,
        );
    }

    /// As [`Families::add`] with owned labels.
    pub fn add_owned(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        mut labels: Vec<(String, String)>,
        value: f64,
    ) {
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        self.family_mut(name, help, kind).samples.push(Sample {
            suffix: "",
            labels,
            value,
        });
    }

    /// Adds a summary (quantiles, `_sum`, `_count`) to the family `name`.
    pub fn add_summary(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        quantiles: &[(f64, f64)],
        sum: f64,
        count: f64,
    ) {
        let mut base: Vec<(String, String)> = labels
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        base.sort_by(|a, b| a.0.cmp(&b.0));
        let fam = self.family_mut(name, help, MetricType::Summary);
        let mut qs: Vec<(f64, f64)> = quantiles.to_vec();
        qs.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (q, v) in qs {
            let mut l = base.clone();
            let mut qbuf = Vec::new();
            lookout_exposition::format_float(q, &mut qbuf);
            l.push((
                "quantile".to_string(),
                String::from_utf8_lossy(&qbuf).into_owned(),
            ));
            fam.samples.push(Sample {
                suffix: "",
                labels: l,
                value: v,
            });
        }
        fam.samples.push(Sample {
            suffix: "_sum",
            labels: base.clone(),
            value: sum,
        });
        fam.samples.push(Sample {
            suffix: "_count",
            labels: base,
            value: count,
        });
    }

    pub fn get(&self, name: &str) -> Option<&Family> {
        self.map.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Family> {
        self.map.values()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Moves every family of `other` into `self` (samples of same-named families are appended).
    pub fn extend(&mut self, other: Families) {
        for (name, fam) in other.map {
            match self.map.get_mut(&name) {
                Some(existing) => existing.samples.extend(fam.samples),
                None => {
                    self.map.insert(name, fam);
                }
            }
        }
    }

    /// Encodes every family in `format`.
    pub fn encode(&self, format: Format) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.map.len() * 160);
        self.encode_into(format, &mut out);
        out
    }

    /// Encodes every family in `format`, appending to `out`.
    pub fn encode_into(&self, format: Format, out: &mut Vec<u8>) {
        let mut enc = Encoder::new(format, out);
        let mut name_buf = String::new();
        for fam in self.map.values() {
            let mut samples: Vec<&Sample> = fam.samples.iter().collect();
            if fam.kind != MetricType::Summary {
                samples.sort_by(|a, b| a.labels.cmp(&b.labels));
            }
            let counter_without_total =
                fam.kind == MetricType::Counter && !fam.name.ends_with("_total");
            match (format, counter_without_total) {
                (Format::PrometheusText, true) => {
                    // The Encoder names text counter metadata `<name>_total`; client_golang
                    // writes the name as registered, which is what dashboards query.
                    write_text_counter_meta(out, &fam.name, &fam.help);
                    enc = Encoder::new(format, out);
                }
                _ => enc.family(&fam.name, fam.kind, Some(&fam.help), None),
            }
            for s in samples {
                name_buf.clear();
                name_buf.push_str(&fam.name);
                name_buf.push_str(s.suffix);
                if format == Format::OpenMetrics && counter_without_total {
                    name_buf.push_str("_total");
                }
                enc.sample_with(
                    &name_buf,
                    s.labels.iter().map(|(n, v)| (n.as_str(), v.as_str())),
                    s.value,
                    None,
                    None,
                );
            }
        }
        enc.finish();
    }
}

/// `# HELP`/`# TYPE ... counter` for a text counter whose name lacks `_total`.
fn write_text_counter_meta(out: &mut Vec<u8>, name: &str, help: &str) {
    out.extend_from_slice(b"# HELP ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    for c in help.bytes() {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(c),
        }
    }
    out.extend_from_slice(b"\n# TYPE ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b" counter\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_families() -> Families {
        let mut f = Families::new();
        f.add("b_hits", "Hits.", MetricType::Counter, &[("db", "x")], 3.0);
        f.add("a_up", "Up.", MetricType::Gauge, &[], 1.0);
        f.add("b_hits", "Hits.", MetricType::Counter, &[("db", "a")], 2.0);
        f.add("c_total", "C.", MetricType::Counter, &[], 5.0);
        f.add_summary(
            "d_lat",
            "Lat\\n",
            &[("cmd", "get")],
            &[(0.99, 2.0), (0.5, 1.0)],
            10.0,
            4.0,
        );
        f
    }

    #[test]
    fn text_matches_client_golang_layout() {
        let out = String::from_utf8(sample_families().encode(Format::PrometheusText)).unwrap();
        let expected = "# HELP a_up Up.\n# TYPE a_up gauge\na_up 1\n\
# HELP b_hits Hits.\n# TYPE b_hits counter\nb_hits{db=\"a\"} 2\nb_hits{db=\"x\"} 3\n\
# HELP c_total C.\n# TYPE c_total counter\nc_total 5\n\
# HELP d_lat Lat\\\\n\n# TYPE d_lat summary\n\
d_lat{cmd=\"get\",quantile=\"0.5\"} 1\nd_lat{cmd=\"get\",quantile=\"0.99\"} 2\n\
d_lat_sum{cmd=\"get\"} 10\nd_lat_count{cmd=\"get\"} 4\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn openmetrics_counters_get_total_samples() {
        let out = String::from_utf8(sample_families().encode(Format::OpenMetrics)).unwrap();
        assert!(
            out.contains("# TYPE b_hits counter\nb_hits_total{db=\"a\"} 2.0\n"),
            "{out}"
        );
        assert!(out.contains("# TYPE c counter\nc_total 5.0\n"), "{out}");
        assert!(out.ends_with("# EOF\n"));
        // The strict OpenMetrics parser accepts it.
        let mut p = lookout_exposition::Parser::new(out.as_bytes(), Format::OpenMetrics);
        while p.next_entry().unwrap().is_some() {}
    }

    #[test]
    fn label_names_skip_quantile() {
        let f = sample_families();
        assert_eq!(f.get("d_lat").unwrap().label_names(), vec!["cmd"]);
        assert_eq!(f.get("b_hits").unwrap().label_names(), vec!["db"]);
    }
}
