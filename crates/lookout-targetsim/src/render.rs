//! Exposition rendering (Prometheus text 0.0.4 and OpenMetrics 1.0) and `Accept` negotiation.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::{
    ConfigError, GaugeSeries, SimConfig, TargetModel, bucket_mid, counter_value, escape_label_value,
};

/// Content type of the Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics 1.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Tick index of the simulator's epoch: counters start well above zero so the first
/// scrapes already show realistic magnitudes.
pub const START_TICK: u64 = 1000;

/// Exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Text,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` header value for this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// Picks the format for an `Accept` header: the supported media range with the highest
/// `q` wins (earlier entries win ties); no header or nothing supported means text.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let mut best: Option<(f64, Format)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let format = match media.as_str() {
            "application/openmetrics-text" => Format::OpenMetrics,
            "text/plain" | "text/*" | "*/*" => Format::Text,
            _ => continue,
        };
        let mut q = 1.0;
        for p in parts {
            if let Some((k, v)) = p.split_once('=')
                && k.trim().eq_ignore_ascii_case("q")
            {
                q = v.trim().parse::<f64>().unwrap_or(0.0);
            }
        }
        if q.is_nan() || q <= 0.0 {
            continue;
        }
        if best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, format));
        }
    }
    best.map_or(Format::Text, |(_, f)| f)
}

/// A set of synthetic targets whose values are a function of wall-clock time.
#[derive(Debug, Clone)]
pub struct Simulator {
    config: SimConfig,
    targets: Vec<TargetModel>,
    epoch_ms: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Simulator {
    /// Builds every target's catalogue; the epoch (tick [`START_TICK`]) is "now".
    pub fn new(config: SimConfig) -> Result<Simulator, ConfigError> {
        Self::with_epoch(config, now_ms())
    }

    /// Like [`Simulator::new`] with an explicit epoch in Unix milliseconds.
    pub fn with_epoch(config: SimConfig, epoch_ms: u64) -> Result<Simulator, ConfigError> {
        config.validate()?;
        let targets = (0..config.targets)
            .map(|t| TargetModel::build(&config, t))
            .collect();
        Ok(Simulator {
            config,
            targets,
            epoch_ms,
        })
    }

    /// The configuration this simulator was built from.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Number of targets.
    pub fn targets(&self) -> usize {
        self.targets.len()
    }

    /// Tick index at Unix time `unix_ms` (saturates at [`START_TICK`] before the epoch).
    pub fn tick_at(&self, unix_ms: u64) -> u64 {
        START_TICK + unix_ms.saturating_sub(self.epoch_ms) / self.config.tick_ms
    }

    /// Tick index now.
    pub fn tick_now(&self) -> u64 {
        self.tick_at(now_ms())
    }

    /// Number of series target `target` exposes at `tick` (0 for an unknown target).
    pub fn series_at(&self, target: usize, tick: u64) -> usize {
        self.targets.get(target).map_or(0, |m| m.series_at(tick))
    }

    /// Appends the exposition of `target` at `tick` to `out`. Returns `false` (and writes
    /// nothing) when `target` is out of range.
    pub fn render(&self, target: usize, tick: u64, format: Format, out: &mut Vec<u8>) -> bool {
        let Some(m) = self.targets.get(target) else {
            return false;
        };
        let om = format == Format::OpenMetrics;

        if !m.counters.is_empty() {
            header(
                out,
                om,
                "http_requests",
                "_total",
                "counter",
                "Total HTTP requests.",
            );
            for c in &m.counters {
                out.extend_from_slice(&c.prefix);
                push_u64(out, counter_value(c.key, c.rate, tick));
                out.push(b'\n');
            }
        }

        if !m.histograms.is_empty() {
            header(
                out,
                om,
                "http_request_duration_seconds",
                "",
                "histogram",
                "HTTP request latency in seconds.",
            );
            for h in &m.histograms {
                let mut cumulative = 0u64;
                let mut sum = 0.0f64;
                for (j, (p, rate)) in h.bucket_prefixes.iter().zip(&h.rates).enumerate() {
                    let n = counter_value(h.key ^ (j as u64 + 1), *rate, tick);
                    cumulative += n;
                    sum += n as f64 * bucket_mid(j);
                    out.extend_from_slice(p);
                    push_u64(out, cumulative);
                    out.push(b'\n');
                }
                out.extend_from_slice(&h.sum_prefix);
                push_f64(out, sum);
                out.push(b'\n');
                out.extend_from_slice(&h.count_prefix);
                push_u64(out, cumulative);
                out.push(b'\n');
            }
        }

        gauge_family(
            out,
            om,
            "http_requests_in_flight",
            "HTTP requests currently being served.",
            &m.in_flight,
            tick,
        );
        for (name, help, g) in &m.process {
            gauge_family(out, om, name, help, std::slice::from_ref(g), tick);
        }
        gauge_family(
            out,
            om,
            "app_queue_depth",
            "Items waiting in each work queue.",
            &m.queues,
            tick,
        );

        let mut churn_header = false;
        let mut label = String::new();
        for c in &m.churn {
            let Some(generation) = m.churn_state(c, tick) else {
                continue;
            };
            if !churn_header {
                header(
                    out,
                    om,
                    "app_worker_tasks",
                    "",
                    "gauge",
                    "Tasks held by short-lived workers.",
                );
                churn_header = true;
            }
            label.clear();
            escape_label_value(&mut label, &format!("w{}", c.worker));
            let value = (crate::model::unit(c.key, tick) * 20.0).floor() as u64;
            let _ = write!(
                out,
                "app_worker_tasks{{worker=\"{label}\",generation=\"{generation}\"}} "
            );
            push_u64(out, value);
            out.push(b'\n');
        }

        if om {
            out.extend_from_slice(b"# EOF\n");
        }
        true
    }
}

fn header(out: &mut Vec<u8>, om: bool, family: &str, suffix: &str, kind: &str, help: &str) {
    if om {
        let _ = write!(out, "# TYPE {family} {kind}\n# HELP {family} {help}\n");
    } else {
        let _ = write!(
            out,
            "# HELP {family}{suffix} {help}\n# TYPE {family}{suffix} {kind}\n"
        );
    }
}

fn gauge_family(
    out: &mut Vec<u8>,
    om: bool,
    name: &str,
    help: &str,
    series: &[GaugeSeries],
    tick: u64,
) {
    if series.is_empty() {
        return;
    }
    header(out, om, name, "", "gauge", help);
    for g in series {
        out.extend_from_slice(&g.prefix);
        push_f64(out, g.value(tick));
        out.push(b'\n');
    }
}

fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn push_f64(out: &mut Vec<u8>, v: f64) {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        push_u64(out, v.abs() as u64);
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(None), Format::Text);
        assert_eq!(negotiate(Some("text/plain")), Format::Text);
        assert_eq!(negotiate(Some("*/*")), Format::Text);
        assert_eq!(negotiate(Some("application/json")), Format::Text);
        // What Prometheus 2.x sends.
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(prom)), Format::OpenMetrics);
        assert_eq!(
            negotiate(Some(
                "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5"
            )),
            Format::Text
        );
        assert_eq!(
            negotiate(Some(
                "text/plain;q=0.2, application/openmetrics-text; version=1.0.0"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            negotiate(Some("application/openmetrics-text;q=0, text/plain")),
            Format::Text
        );
    }

    #[test]
    fn integers() {
        let mut v = Vec::new();
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            push_u64(&mut v, n);
            v.push(b' ');
        }
        assert_eq!(
            String::from_utf8_lossy(&v),
            format!("0 7 10 12345 {} ", u64::MAX)
        );
        v.clear();
        push_f64(&mut v, 2.5e8);
        v.push(b' ');
        push_f64(&mut v, 0.125);
        assert_eq!(String::from_utf8_lossy(&v), "250000000 0.125");
    }

    #[test]
    fn unknown_target_writes_nothing() {
        let sim = Simulator::with_epoch(SimConfig::default(), 0).unwrap();
        let mut out = Vec::new();
        assert!(!sim.render(5, START_TICK, Format::Text, &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn render_is_deterministic_and_moves() {
        let cfg = SimConfig {
            targets: 2,
            ..SimConfig::default()
        };
        let a = Simulator::with_epoch(cfg.clone(), 0).unwrap();
        let b = Simulator::with_epoch(cfg, 12345).unwrap();
        let body = |s: &Simulator, t, tick| {
            let mut o = Vec::new();
            s.render(t, tick, Format::Text, &mut o);
            o
        };
        assert_eq!(body(&a, 1, 2000), body(&b, 1, 2000));
        assert_ne!(body(&a, 1, 2000), body(&a, 1, 2001));
        assert_ne!(body(&a, 0, 2000), body(&a, 1, 2000));
    }

    #[test]
    fn tick_follows_wall_clock() {
        let cfg = SimConfig {
            tick_ms: 500,
            ..SimConfig::default()
        };
        let s = Simulator::with_epoch(cfg, 10_000).unwrap();
        assert_eq!(s.tick_at(0), START_TICK);
        assert_eq!(s.tick_at(10_499), START_TICK);
        assert_eq!(s.tick_at(10_500), START_TICK + 1);
        assert_eq!(s.tick_at(20_000), START_TICK + 20);
    }
}
