//! Turning discovered target groups into scrape targets: default labels, `relabel_configs`,
//! meta-label removal, `instance`, and the scrape URL.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use lookout_config::{Duration, ScrapeConfig};
use lookout_storage::{Label, Labels, LabelsBuilder};

pub const ADDRESS_LABEL: &str = "__address__";
pub const SCHEME_LABEL: &str = "__scheme__";
pub const METRICS_PATH_LABEL: &str = "__metrics_path__";
pub const SCRAPE_INTERVAL_LABEL: &str = "__scrape_interval__";
pub const SCRAPE_TIMEOUT_LABEL: &str = "__scrape_timeout__";
pub const PARAM_LABEL_PREFIX: &str = "__param_";
pub const META_LABEL_PREFIX: &str = "__meta_";
pub const RESERVED_LABEL_PREFIX: &str = "__";
pub const JOB_LABEL: &str = "job";
pub const INSTANCE_LABEL: &str = "instance";
/// Set by file SD to the file a target came from.
pub const META_FILEPATH_LABEL: &str = "__meta_filepath";

/// A target after relabelling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Labels before relabelling (`discoveredLabels` in the API).
    pub discovered: Labels,
    /// Labels after relabelling, meta labels removed, `instance` set. Still holds the
    /// `__`-prefixed scrape parameters.
    pub labels: Labels,
}

/// The outcome of [`populate`].
#[derive(Clone, Debug, PartialEq)]
pub enum Populated {
    Active(Target),
    /// `relabel_configs` dropped it; the discovered labels are kept for the API.
    Dropped(Labels),
}

/// Builds a target from a discovered label set (group labels plus `__address__` and any
/// meta labels), as Prometheus's `PopulateLabels` does.
pub fn populate(discovered: &[Label], cfg: &ScrapeConfig) -> Result<Populated, String> {
    let mut b = LabelsBuilder::new();
    for l in discovered {
        b.set(l.name.as_str(), l.value.as_str());
    }
    let set_default = |b: &mut LabelsBuilder, name: &str, value: String| {
        if b.get(name).is_none() {
            b.set(name, value);
        }
    };
    set_default(&mut b, JOB_LABEL, cfg.job_name.clone());
    set_default(
        &mut b,
        SCRAPE_INTERVAL_LABEL,
        cfg.scrape_interval.to_string(),
    );
    set_default(&mut b, SCRAPE_TIMEOUT_LABEL, cfg.scrape_timeout.to_string());
    set_default(&mut b, METRICS_PATH_LABEL, cfg.metrics_path.clone());
    set_default(&mut b, SCHEME_LABEL, cfg.scheme.clone());
    for (k, v) in &cfg.params {
        if let Some(first) = v.first() {
            set_default(&mut b, &format!("{PARAM_LABEL_PREFIX}{k}"), first.clone());
        }
    }
    let pre = b.build();
    if !lookout_relabel::process_builder(&mut b, &cfg.relabel_configs) {
        return Ok(Populated::Dropped(pre));
    }
    let addr = b.get(ADDRESS_LABEL).unwrap_or("").to_string();
    if addr.is_empty() {
        return Err("no address".into());
    }
    if addr.contains('/') {
        return Err(format!("{addr:?} is not a valid hostname"));
    }
    let interval = parse_duration_label(&b, SCRAPE_INTERVAL_LABEL, "interval")?;
    let timeout = parse_duration_label(&b, SCRAPE_TIMEOUT_LABEL, "timeout")?;
    if interval.is_zero() {
        return Err("scrape interval cannot be 0".into());
    }
    if timeout.is_zero() {
        return Err("scrape timeout cannot be 0".into());
    }
    if timeout > interval {
        return Err(format!(
            "scrape timeout cannot be greater than scrape interval ({timeout:?} > {interval:?})"
        ));
    }
    b.retain(|l| !l.name.starts_with(META_LABEL_PREFIX));
    if b.get(INSTANCE_LABEL).is_none() {
        b.set(INSTANCE_LABEL, addr);
    }
    Ok(Populated::Active(Target {
        discovered: pre,
        labels: b.build(),
    }))
}

fn parse_duration_label(b: &LabelsBuilder, name: &str, what: &str) -> Result<Duration, String> {
    let v = b.get(name).unwrap_or("");
    v.parse::<Duration>()
        .map_err(|e| format!("error parsing scrape {what}: {e}"))
}

impl Target {
    /// Labels without the `__`-prefixed ones: what every scraped sample is stamped with.
    pub fn public_labels(&self) -> Labels {
        Labels::from_sorted_unchecked(
            self.labels
                .iter()
                .filter(|l| !l.name.starts_with(RESERVED_LABEL_PREFIX))
                .cloned()
                .collect(),
        )
    }

    fn get(&self, name: &str) -> &str {
        self.labels.get_or_empty(name)
    }

    pub fn scheme(&self) -> &str {
        self.get(SCHEME_LABEL)
    }

    pub fn address(&self) -> &str {
        self.get(ADDRESS_LABEL)
    }

    pub fn job(&self) -> &str {
        self.get(JOB_LABEL)
    }

    /// Scrape interval from `__scrape_interval__` (validated by [`populate`]).
    pub fn interval(&self) -> Duration {
        self.get(SCRAPE_INTERVAL_LABEL)
            .parse()
            .unwrap_or(Duration::from_secs(60))
    }

    /// Scrape timeout from `__scrape_timeout__` (validated by [`populate`]).
    pub fn timeout(&self) -> Duration {
        self.get(SCRAPE_TIMEOUT_LABEL)
            .parse()
            .unwrap_or(Duration::from_secs(10))
    }

    /// `scheme://address/path?params`, the `__param_*` labels overriding the first value of
    /// each configured parameter.
    pub fn url(&self, cfg_params: &BTreeMap<String, Vec<String>>) -> String {
        let mut params: BTreeMap<&str, Vec<&str>> = cfg_params
            .iter()
            .map(|(k, v)| (k.as_str(), v.iter().map(String::as_str).collect()))
            .collect();
        for l in self.labels.iter() {
            if let Some(k) = l.name.strip_prefix(PARAM_LABEL_PREFIX) {
                let e = params.entry(k).or_default();
                match e.first_mut() {
                    Some(first) => *first = l.value.as_str(),
                    None => e.push(l.value.as_str()),
                }
            }
        }
        let mut url = format!(
            "{}://{}{}",
            self.scheme(),
            self.address(),
            self.get(METRICS_PATH_LABEL)
        );
        let mut first = true;
        for (k, vs) in params {
            for v in vs {
                url.push(if first { '?' } else { '&' });
                first = false;
                query_escape(k, &mut url);
                url.push('=');
                query_escape(v, &mut url);
            }
        }
        url
    }

    /// A stable hash of the full label set: the target's identity within a pool and the seed
    /// of its scrape offset.
    pub fn hash(&self) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        self.labels.hash(&mut h);
        h.finish()
    }
}

/// Go's `url.QueryEscape`: unreserved bytes as-is, space as `+`, the rest percent-encoded.
fn query_escape(s: &str, out: &mut String) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lookout_config::PrometheusConfig;

    fn cfg(yaml: &str) -> ScrapeConfig {
        PrometheusConfig::parse(yaml)
            .unwrap()
            .scrape_configs
            .remove(0)
    }

    fn disc(pairs: &[(&str, &str)]) -> Vec<Label> {
        pairs.iter().map(|(k, v)| Label::new(*k, *v)).collect()
    }

    #[test]
    fn defaults_instance_and_url() {
        let c = cfg(
            "scrape_configs:\n  - job_name: api\n    scrape_interval: 5s\n    params:\n      module: [a b, c]\n",
        );
        let Populated::Active(t) = populate(
            &disc(&[("__address__", "h:1"), ("__meta_x", "y"), ("team", "t")]),
            &c,
        )
        .unwrap() else {
            panic!("dropped")
        };
        assert_eq!(t.discovered.get("__meta_x"), Some("y"));
        assert_eq!(t.discovered.get("__param_module"), Some("a b"));
        assert_eq!(t.labels.get("__meta_x"), None);
        assert_eq!(t.labels.get("instance"), Some("h:1"));
        assert_eq!(t.labels.get("job"), Some("api"));
        assert_eq!(t.interval(), Duration::from_secs(5));
        assert_eq!(t.timeout(), Duration::from_secs(5));
        assert_eq!(t.url(&c.params), "http://h:1/metrics?module=a+b&module=c");
        assert_eq!(
            t.public_labels(),
            Labels::from_pairs([("instance", "h:1"), ("job", "api"), ("team", "t")])
        );
    }

    #[test]
    fn relabel_can_drop_rewrite_and_break() {
        let c = cfg(
            "scrape_configs:\n  - job_name: api\n    relabel_configs:\n      - source_labels: [__address__]\n        regex: 'skip:.*'\n        action: drop\n      - source_labels: [__address__]\n        regex: '(.*):.*'\n        target_label: instance\n      - source_labels: [__meta_path]\n        regex: '(.+)'\n        target_label: __metrics_path__\n",
        );
        assert!(matches!(
            populate(&disc(&[("__address__", "skip:1")]), &c),
            Ok(Populated::Dropped(_))
        ));
        let Ok(Populated::Active(t)) =
            populate(&disc(&[("__address__", "h:1"), ("__meta_path", "/m")]), &c)
        else {
            panic!()
        };
        assert_eq!(t.labels.get("instance"), Some("h"));
        assert_eq!(t.url(&c.params), "http://h:1/m");
        let bad = cfg(
            "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - target_label: __scrape_timeout__\n        replacement: 2m\n",
        );
        let e = populate(&disc(&[("__address__", "h:1")]), &bad).unwrap_err();
        assert!(
            e.contains("scrape timeout cannot be greater than scrape interval"),
            "{e}"
        );
        let noaddr = cfg(
            "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - target_label: __address__\n        replacement: ''\n        regex: '.*'\n",
        );
        assert_eq!(
            populate(&disc(&[("__address__", "h:1")]), &noaddr).unwrap_err(),
            "no address"
        );
    }
}
