//! The series catalogue of one synthetic target and its closed-form values.
//!
//! Every value is a pure function of `(seed, target, series, tick)`, so any number of
//! scrapers hitting the same target during the same tick see identical data, and two
//! simulator processes started with the same `--seed` and epoch produce the same bodies.
//! Counters use `floor(rate * (tick + u(tick)))` with `u` in `[0, 1)`, which is
//! non-decreasing in `tick` for any non-negative rate while still moving irregularly.

use std::fmt::Write as _;

/// Histogram bucket upper bounds (`le`), without the implicit `+Inf`.
pub const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Series one classic histogram contributes: every bucket (incl. `+Inf`), `_sum`, `_count`.
pub const SERIES_PER_HISTOGRAM: usize = BUCKETS.len() + 1 + 2;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];
const STATUSES: [&str; 8] = ["200", "201", "204", "400", "401", "404", "500", "503"];
/// Per-second request rate range `(low, high)` for each entry of `STATUSES`.
const STATUS_RATES: [(f64, f64); 8] = [
    (2.0, 20.0),
    (0.5, 3.0),
    (0.2, 1.0),
    (0.1, 0.5),
    (0.05, 0.2),
    (0.1, 0.5),
    (0.02, 0.2),
    (0.01, 0.1),
];
const BASE_PATHS: [&str; 9] = [
    "/api/users",
    "/api/boards",
    "/api/projects",
    "/api/chats",
    "/api/notifications",
    "/api/files",
    "/api/videos",
    "/api/auth/login",
    "/health",
];
/// Relative share of requests falling in each bucket interval (last one is `(10, +Inf)`).
const LATENCY_PROFILE: [f64; 12] = [
    0.05, 0.10, 0.20, 0.25, 0.18, 0.10, 0.06, 0.03, 0.015, 0.008, 0.004, 0.003,
];

/// Everything that shapes the generated series (shared by all targets).
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Number of targets (listeners).
    pub targets: usize,
    /// Stable series per target (counters, gauges and histogram series; churn comes on top).
    pub series_per_target: usize,
    /// Extra series per target that come and go.
    pub churn_series: usize,
    /// Lifetime of one churn generation, in ticks.
    pub churn_period_ticks: u64,
    /// Seed for every pseudo-random choice.
    pub seed: u64,
    /// Length of one tick (the granularity at which values move), in milliseconds.
    pub tick_ms: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            targets: 1,
            series_per_target: 800,
            churn_series: 8,
            churn_period_ticks: 60,
            seed: 1,
            tick_ms: 1000,
        }
    }
}

/// Invalid simulator configuration.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// `tick_ms` must be at least 1.
    #[error("tick length must be at least 1 ms")]
    ZeroTick,
    /// `churn_period_ticks` must be at least 1 when churn series are requested.
    #[error("churn period must be at least one tick")]
    ZeroChurnPeriod,
    /// Too many series requested.
    #[error("{0} series per target is above the limit of {MAX_SERIES_PER_TARGET}")]
    TooManySeries(usize),
    /// Too many targets requested.
    #[error("{0} targets is above the limit of {MAX_TARGETS}")]
    TooManyTargets(usize),
}

/// Upper bound on `series_per_target + churn_series` (keeps memory bounded).
pub const MAX_SERIES_PER_TARGET: usize = 1_000_000;
/// Upper bound on the number of targets.
pub const MAX_TARGETS: usize = 10_000;

impl SimConfig {
    /// Checks the limits and non-zero fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tick_ms == 0 {
            return Err(ConfigError::ZeroTick);
        }
        if self.churn_series > 0 && self.churn_period_ticks == 0 {
            return Err(ConfigError::ZeroChurnPeriod);
        }
        let total = self.series_per_target.saturating_add(self.churn_series);
        if total > MAX_SERIES_PER_TARGET {
            return Err(ConfigError::TooManySeries(total));
        }
        if self.targets > MAX_TARGETS {
            return Err(ConfigError::TooManyTargets(self.targets));
        }
        Ok(())
    }
}

/// splitmix64 finaliser: a cheap, well-mixed 64-bit hash.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Uniform value in `[0, 1)` determined by `key` and `tick`.
pub(crate) fn unit(key: u64, tick: u64) -> f64 {
    let h = mix(key ^ mix(tick));
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Non-decreasing counter value at `tick` for a per-tick `rate >= 0`.
pub(crate) fn counter_value(key: u64, rate: f64, tick: u64) -> u64 {
    let x = rate * (tick as f64 + unit(key, tick));
    // `x` is finite and non-negative for the rates built here.
    x.floor() as u64
}

/// A counter series: the exposition prefix (`name{labels} `) and its rate per tick.
#[derive(Debug, Clone)]
pub(crate) struct CounterSeries {
    pub prefix: Vec<u8>,
    pub key: u64,
    pub rate: f64,
}

/// A gauge series oscillating around `base`.
#[derive(Debug, Clone)]
pub(crate) struct GaugeSeries {
    pub prefix: Vec<u8>,
    pub key: u64,
    pub base: f64,
    pub amplitude: f64,
    pub period_ticks: f64,
    pub phase: f64,
    pub noise: f64,
    pub integer: bool,
}

impl GaugeSeries {
    pub fn value(&self, tick: u64) -> f64 {
        let angle = std::f64::consts::TAU * (tick as f64 / self.period_ticks) + self.phase;
        let v =
            self.base + self.amplitude * angle.sin() + self.noise * (unit(self.key, tick) - 0.5);
        let v = v.max(0.0);
        if self.integer {
            v.round()
        } else {
            (v * 1000.0).round() / 1000.0
        }
    }
}

/// A classic histogram: one prefix per bucket (the last is `+Inf`), then `_sum`, `_count`.
#[derive(Debug, Clone)]
pub(crate) struct HistogramSeries {
    pub bucket_prefixes: Vec<Vec<u8>>,
    pub sum_prefix: Vec<u8>,
    pub count_prefix: Vec<u8>,
    pub key: u64,
    /// Per-tick rate of observations falling in each bucket interval.
    pub rates: Vec<f64>,
}

/// Representative observed value of each bucket interval (for `_sum`).
pub(crate) fn bucket_mid(j: usize) -> f64 {
    match j {
        0 => BUCKETS[0] / 2.0,
        j if j < BUCKETS.len() => (BUCKETS[j - 1] + BUCKETS[j]) / 2.0,
        _ => BUCKETS[BUCKETS.len() - 1] * 1.5,
    }
}

/// Churning gauges: `app_worker_tasks{worker, generation}`.
#[derive(Debug, Clone)]
pub(crate) struct ChurnSeries {
    pub worker: usize,
    pub key: u64,
    pub phase: u64,
}

/// The series catalogue of one target.
#[derive(Debug, Clone)]
pub(crate) struct TargetModel {
    pub counters: Vec<CounterSeries>,
    pub in_flight: Vec<GaugeSeries>,
    /// `(family name, help, series)` of the single-series process gauges.
    pub process: Vec<(&'static str, &'static str, GaugeSeries)>,
    pub queues: Vec<GaugeSeries>,
    pub histograms: Vec<HistogramSeries>,
    pub churn: Vec<ChurnSeries>,
    pub churn_period: u64,
}

/// Appends `v` as an OpenMetrics-canonical float (integers keep a `.0`).
pub(crate) fn write_canonical_float(out: &mut String, v: f64) {
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{v:.1}");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Escapes a label value per the text format (`\\`, `\"`, `\n`).
pub(crate) fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn prefix(name: &str, labels: &[(&str, &str)]) -> Vec<u8> {
    let mut s = String::with_capacity(name.len() + 16 * labels.len() + 2);
    s.push_str(name);
    if !labels.is_empty() {
        s.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(k);
            s.push_str("=\"");
            escape_label_value(&mut s, v);
            s.push('"');
        }
        s.push('}');
    }
    s.push(' ');
    s.into_bytes()
}

fn path_name(i: usize) -> String {
    match BASE_PATHS.get(i) {
        Some(p) => (*p).to_string(),
        None => format!("/api/items/{}", i - BASE_PATHS.len()),
    }
}

/// How a series budget splits into families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// Counter series.
    pub counters: usize,
    /// Number of classic histograms (each `SERIES_PER_HISTOGRAM` series).
    pub histograms: usize,
    /// Gauge series.
    pub gauges: usize,
}

impl Split {
    /// Roughly 40% counters, 40% histogram series, 20% gauges; sums to exactly `series`.
    pub fn of(series: usize) -> Split {
        let histograms = (series * 2 / 5) / SERIES_PER_HISTOGRAM;
        let counters = series * 2 / 5;
        let gauges = series - counters - histograms * SERIES_PER_HISTOGRAM;
        Split {
            counters,
            histograms,
            gauges,
        }
    }
}

impl TargetModel {
    pub fn build(cfg: &SimConfig, target: usize) -> TargetModel {
        let tkey = mix(cfg.seed ^ mix(target as u64 + 1));
        let per_tick = cfg.tick_ms as f64 / 1000.0;
        let split = Split::of(cfg.series_per_target);
        let mut serial = 0u64;
        let mut next_key = || {
            serial += 1;
            mix(tkey ^ mix(serial))
        };

        let counters = (0..split.counters)
            .map(|i| {
                let status = i % STATUSES.len();
                let method = (i / STATUSES.len()) % METHODS.len();
                let path = path_name(i / (STATUSES.len() * METHODS.len()));
                let key = next_key();
                let (lo, hi) = STATUS_RATES[status];
                let per_sec = lo + (hi - lo) * unit(key, u64::MAX);
                CounterSeries {
                    prefix: prefix(
                        "http_requests_total",
                        &[
                            ("method", METHODS[method]),
                            ("path", &path),
                            ("status", STATUSES[status]),
                        ],
                    ),
                    key,
                    rate: per_sec * per_tick,
                }
            })
            .collect();

        let histograms = (0..split.histograms)
            .map(|i| {
                let method = METHODS[i % METHODS.len()];
                let path = path_name(i / METHODS.len());
                let key = next_key();
                let total_per_sec = 1.0 + 9.0 * unit(key, u64::MAX);
                let rates = LATENCY_PROFILE
                    .iter()
                    .enumerate()
                    .map(|(j, w)| {
                        let wiggle = 0.5 + unit(key ^ 0x5bd1_e995, j as u64);
                        total_per_sec * w * wiggle * per_tick
                    })
                    .collect();
                let mut bucket_prefixes = Vec::with_capacity(BUCKETS.len() + 1);
                let mut le = String::new();
                for j in 0..=BUCKETS.len() {
                    le.clear();
                    write_canonical_float(
                        &mut le,
                        BUCKETS.get(j).copied().unwrap_or(f64::INFINITY),
                    );
                    bucket_prefixes.push(prefix(
                        "http_request_duration_seconds_bucket",
                        &[("method", method), ("path", &path), ("le", &le)],
                    ));
                }
                let labels = [("method", method), ("path", path.as_str())];
                HistogramSeries {
                    bucket_prefixes,
                    sum_prefix: prefix("http_request_duration_seconds_sum", &labels),
                    count_prefix: prefix("http_request_duration_seconds_count", &labels),
                    key,
                    rates,
                }
            })
            .collect();

        let mut gauges_left = split.gauges;
        let n_paths = split
            .counters
            .div_ceil(STATUSES.len() * METHODS.len())
            .max(1);
        let n_in_flight = gauges_left.min(n_paths);
        gauges_left -= n_in_flight;
        let in_flight = (0..n_in_flight)
            .map(|i| {
                let key = next_key();
                GaugeSeries {
                    prefix: prefix("http_requests_in_flight", &[("path", &path_name(i))]),
                    key,
                    base: 2.0 + 10.0 * unit(key, u64::MAX),
                    amplitude: 3.0,
                    period_ticks: 120.0,
                    phase: unit(key, 1) * std::f64::consts::TAU,
                    noise: 4.0,
                    integer: true,
                }
            })
            .collect();
        let n_process = gauges_left.min(2);
        gauges_left -= n_process;
        let process = (0..n_process)
            .map(|i| {
                let key = next_key();
                let (name, help, base, amplitude, noise) = if i == 0 {
                    (
                        "process_resident_memory_bytes",
                        "Resident memory size in bytes.",
                        2.5e8,
                        2.0e7,
                        4.0e6,
                    )
                } else {
                    (
                        "process_open_fds",
                        "Number of open file descriptors.",
                        120.0,
                        10.0,
                        6.0,
                    )
                };
                let series = GaugeSeries {
                    prefix: prefix(name, &[]),
                    key,
                    base,
                    amplitude,
                    period_ticks: 300.0,
                    phase: unit(key, 1) * std::f64::consts::TAU,
                    noise,
                    integer: true,
                };
                (name, help, series)
            })
            .collect();
        let queues = (0..gauges_left)
            .map(|i| {
                let key = next_key();
                GaugeSeries {
                    prefix: prefix("app_queue_depth", &[("queue", &format!("q{i}"))]),
                    key,
                    base: 50.0 * unit(key, u64::MAX),
                    amplitude: 20.0,
                    period_ticks: 60.0 + 240.0 * unit(key, 2),
                    phase: unit(key, 1) * std::f64::consts::TAU,
                    noise: 5.0,
                    integer: false,
                }
            })
            .collect();

        let churn_period = cfg.churn_period_ticks.max(1);
        let churn = (0..cfg.churn_series)
            .map(|worker| {
                let key = next_key();
                ChurnSeries {
                    worker,
                    key,
                    phase: mix(key) % churn_period,
                }
            })
            .collect();

        TargetModel {
            counters,
            in_flight,
            process,
            queues,
            histograms,
            churn,
            churn_period,
        }
    }

    /// Number of series exposed at `tick` (churn series are present 3/4 of the time).
    pub fn series_at(&self, tick: u64) -> usize {
        self.counters.len()
            + self.in_flight.len()
            + self.process.len()
            + self.queues.len()
            + self.histograms.len() * SERIES_PER_HISTOGRAM
            + self
                .churn
                .iter()
                .filter(|c| self.churn_state(c, tick).is_some())
                .count()
    }

    /// `Some(generation)` when the churn series is present at `tick`.
    pub fn churn_state(&self, c: &ChurnSeries, tick: u64) -> Option<u64> {
        let shifted = tick.wrapping_add(c.phase);
        let within = shifted % self.churn_period;
        // Present during the first three quarters of each generation (at least one tick).
        let present_for = (self.churn_period * 3 / 4).max(1);
        (within < present_for).then_some(shifted / self.churn_period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_adds_up() {
        for s in [0, 1, 13, 14, 100, 800, 801, 5000] {
            let sp = Split::of(s);
            assert_eq!(
                sp.counters + sp.gauges + sp.histograms * SERIES_PER_HISTOGRAM,
                s,
                "{s}"
            );
        }
        let sp = Split::of(800);
        assert_eq!(sp.counters, 320);
        assert_eq!(sp.histograms, 22);
    }

    #[test]
    fn canonical_floats() {
        let mut s = String::new();
        for v in [1.0, 0.005, 10.0, f64::INFINITY, 2.5] {
            write_canonical_float(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "1.0 0.005 10.0 +Inf 2.5 ");
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        escape_label_value(&mut s, "a\"b\\c\nd");
        assert_eq!(s, "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn counters_never_decrease() {
        for key in 0..50u64 {
            let rate = unit(key, 7) * 30.0;
            let mut prev = 0;
            for tick in 0..2000 {
                let v = counter_value(key, rate, tick);
                assert!(v >= prev, "key {key} tick {tick}: {v} < {prev}");
                prev = v;
            }
        }
    }

    #[test]
    fn counters_track_rate() {
        let rate = 4.25;
        let v = counter_value(99, rate, 10_000);
        assert!((v as f64 - rate * 10_000.0).abs() <= rate + 1.0);
    }

    #[test]
    fn churn_comes_and_goes() {
        let cfg = SimConfig {
            series_per_target: 0,
            churn_series: 4,
            churn_period_ticks: 8,
            ..SimConfig::default()
        };
        let m = TargetModel::build(&cfg, 0);
        let c = &m.churn[0];
        let states: Vec<_> = (0..32).map(|t| m.churn_state(c, t)).collect();
        assert!(states.iter().any(Option::is_none));
        let gens: std::collections::BTreeSet<_> = states.iter().flatten().collect();
        assert!(gens.len() >= 3, "{states:?}");
        let present = states.iter().filter(|s| s.is_some()).count();
        assert_eq!(present, 24);
    }

    #[test]
    fn validate_rejects_bad_config() {
        let mut c = SimConfig::default();
        assert_eq!(c.validate(), Ok(()));
        c.tick_ms = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroTick));
        c.tick_ms = 1;
        c.churn_period_ticks = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroChurnPeriod));
        c.churn_series = 0;
        assert_eq!(c.validate(), Ok(()));
        c.series_per_target = MAX_SERIES_PER_TARGET + 1;
        assert!(matches!(c.validate(), Err(ConfigError::TooManySeries(_))));
    }
}
