//! Metric families built in memory and encoded in either format, the way exporters built on
//! client_golang expose "const metrics" (redis_exporter, postgres_exporter).
//!
//! [`Families`] keeps families sorted by name; [`Families::encode`] writes samples sorted by
//! label values (summaries keep quantile order), as client_golang's registry gathers them.
//! Names are the text format's: a counter without `_total` (`pg_stat_database_xact_commit`)
//! keeps its name in both formats, see [`Encoder`] for the OpenMetrics mapping. As with
//! client_golang, a counter `x` next to a counter `x_total` cannot be written as OpenMetrics
//! (both are family `x` there); the exporters have no such pair.

use std::collections::BTreeMap;

use crate::{Encoder, Format, MetricType, format_float};

/// One sample of a [`Family`]: a name suffix (`""`, `_sum`, `_count`), labels sorted by name,
/// and a value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub suffix: &'static str,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A metric family: name, HELP text, type and samples.
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

/// A set of families keyed by name. The HELP text and type of a family are those of its first
/// sample; later samples only add values.
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
        self.add_owned(name, help, kind, owned_labels(labels), value);
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

    /// Adds a summary to the family `name`: one sample per `(quantile, value)` (in quantile
    /// order), then `_sum` and `_count`.
    pub fn add_summary(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        quantiles: &[(f64, f64)],
        sum: f64,
        count: f64,
    ) {
        let base = owned_labels(labels);
        let fam = self.family_mut(name, help, MetricType::Summary);
        let mut qs: Vec<(f64, f64)> = quantiles.to_vec();
        qs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut qbuf = Vec::new();
        for (q, v) in qs {
            qbuf.clear();
            format_float(q, &mut qbuf);
            let mut l = base.clone();
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

    /// Families in name order.
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
        let mut samples: Vec<&Sample> = Vec::new();
        for fam in self.map.values() {
            samples.clear();
            samples.extend(fam.samples.iter());
            if fam.kind != MetricType::Summary {
                samples.sort_by(|a, b| a.labels.cmp(&b.labels));
            }
            enc.family(&fam.name, fam.kind, Some(&fam.help), None);
            for s in &samples {
                name_buf.clear();
                name_buf.push_str(&fam.name);
                name_buf.push_str(s.suffix);
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

fn owned_labels(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = labels
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Entry, Parser};

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

    /// The layout client_golang's registry writes: families by name, series by label values,
    /// quantiles in order; in OpenMetrics a counter without `_total` is `unknown`.
    #[test]
    fn layout_matches_client_golang() {
        let text = "# HELP a_up Up.\n# TYPE a_up gauge\na_up 1\n\
# HELP b_hits Hits.\n# TYPE b_hits counter\nb_hits{db=\"a\"} 2\nb_hits{db=\"x\"} 3\n\
# HELP c_total C.\n# TYPE c_total counter\nc_total 5\n\
# HELP d_lat Lat\\\\n\n# TYPE d_lat summary\n\
d_lat{cmd=\"get\",quantile=\"0.5\"} 1\nd_lat{cmd=\"get\",quantile=\"0.99\"} 2\n\
d_lat_sum{cmd=\"get\"} 10\nd_lat_count{cmd=\"get\"} 4\n";
        let om = "# HELP a_up Up.\n# TYPE a_up gauge\na_up 1.0\n\
# HELP b_hits Hits.\n# TYPE b_hits unknown\nb_hits{db=\"a\"} 2.0\nb_hits{db=\"x\"} 3.0\n\
# HELP c C.\n# TYPE c counter\nc_total 5.0\n\
# HELP d_lat Lat\\\\n\n# TYPE d_lat summary\n\
d_lat{cmd=\"get\",quantile=\"0.5\"} 1.0\nd_lat{cmd=\"get\",quantile=\"0.99\"} 2.0\n\
d_lat_sum{cmd=\"get\"} 10.0\nd_lat_count{cmd=\"get\"} 4.0\n# EOF\n";
        let f = sample_families();
        for (format, expected) in [(Format::PrometheusText, text), (Format::OpenMetrics, om)] {
            assert_eq!(String::from_utf8(f.encode(format)).unwrap(), expected);
        }
    }

    /// Both formats parse back (OpenMetrics strictly) to the same series names and values,
    /// with the types each format can express.
    #[test]
    fn both_formats_give_the_same_series() {
        let f = sample_families();
        let text = crate::parse_samples(&f.encode(Format::PrometheusText), Format::PrometheusText)
            .unwrap();
        let om = crate::parse_samples(&f.encode(Format::OpenMetrics), Format::OpenMetrics).unwrap();
        let key = |s: &crate::OwnedSample| (s.name.clone(), s.labels.clone(), s.value.to_bits());
        assert_eq!(
            text.iter().map(key).collect::<Vec<_>>(),
            om.iter().map(key).collect::<Vec<_>>()
        );
        let type_of = |v: &[crate::OwnedSample], name: &str| {
            v.iter().find(|s| s.name == name).map(|s| s.metric_type)
        };
        assert_eq!(type_of(&text, "b_hits"), Some(MetricType::Counter));
        assert_eq!(type_of(&om, "b_hits"), Some(MetricType::Unknown));
        assert_eq!(type_of(&text, "c_total"), Some(MetricType::Counter));
        assert_eq!(type_of(&om, "c_total"), Some(MetricType::Counter));
    }

    #[test]
    fn text_metadata_names_the_family_as_registered() {
        let out = sample_families().encode(Format::PrometheusText);
        let mut p = Parser::new(&out, Format::PrometheusText);
        let mut types = Vec::new();
        while let Some(e) = p.next_entry().unwrap() {
            if let Entry::Type { name, metric_type } = e {
                types.push((name.into_owned(), metric_type));
            }
        }
        assert_eq!(
            types,
            vec![
                ("a_up".to_string(), MetricType::Gauge),
                ("b_hits".to_string(), MetricType::Counter),
                ("c_total".to_string(), MetricType::Counter),
                ("d_lat".to_string(), MetricType::Summary),
            ]
        );
    }

    #[test]
    fn first_sample_fixes_help_and_type() {
        let mut f = Families::new();
        f.add(
            "x",
            "First.",
            MetricType::Gauge,
            &[("b", "1"), ("a", "2")],
            1.0,
        );
        f.add(
            "x",
            "Second.",
            MetricType::Counter,
            &[("a", "0"), ("b", "1")],
            2.0,
        );
        let x = f.get("x").unwrap();
        assert_eq!((x.help.as_str(), x.kind), ("First.", MetricType::Gauge));
        assert_eq!(x.label_names(), vec!["a", "b"]);
        let out = String::from_utf8(f.encode(Format::PrometheusText)).unwrap();
        assert_eq!(
            out,
            "# HELP x First.\n# TYPE x gauge\nx{a=\"0\",b=\"1\"} 2\nx{a=\"2\",b=\"1\"} 1\n"
        );
    }

    #[test]
    fn extend_merges_same_named_families() {
        let mut a = Families::new();
        a.add("m", "M.", MetricType::Gauge, &[("i", "1")], 1.0);
        let mut b = Families::new();
        b.add("m", "M.", MetricType::Gauge, &[("i", "0")], 0.0);
        b.add("n", "N.", MetricType::Gauge, &[], 3.0);
        a.extend(b);
        assert_eq!(a.len(), 2);
        assert_eq!(a.get("m").unwrap().samples.len(), 2);
        assert_eq!(
            a.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["m", "n"]
        );
        assert!(!a.is_empty() && Families::new().is_empty());
    }

    #[test]
    fn label_names_skip_quantile() {
        let f = sample_families();
        assert_eq!(f.get("d_lat").unwrap().label_names(), vec!["cmd"]);
        assert_eq!(f.get("b_hits").unwrap().label_names(), vec!["db"]);
        assert!(Families::new().get("nope").is_none());
    }

    #[test]
    fn encode_into_appends() {
        let mut f = Families::new();
        f.add("g", "G.", MetricType::Gauge, &[], 0.5);
        let mut out = b"prefix\n".to_vec();
        f.encode_into(Format::OpenMetrics, &mut out);
        assert_eq!(out, b"prefix\n# HELP g G.\n# TYPE g gauge\ng 0.5\n# EOF\n");
    }
}
