//! Past data for `lookout demo --history`: what a 15 s scrape of the demo's targets would
//! have stored over the last hours, so dashboards over 24 h have data on first start.
//!
//! The label sets and relative rates come from a real scrape, not from a list kept here:
//! [`probe::run`] drives a throw-away copy of the seven services with the traffic generator
//! for a couple of seconds (with a few injected 5xx so error series exist), and the caller
//! scrapes it the way the live scrape would (target labels, `up`, `scrape_*`). From that
//! [`HistoryGenerator`] extrapolates backwards:
//!
//! - counters (and summary `_count`/`_sum`) grow at the probe's per-second rate scaled to
//!   the live traffic model (`peak_rps × rhythm(hour)`), so `rate()` draws a day curve whose
//!   hour at the end equals the live generator's start hour;
//! - histograms keep the probe's bucket distribution: buckets cumulative, `+Inf` = `_count`,
//!   `_sum` = count × mean latency;
//! - gauges: in-flight/active/connection-like ones follow the rhythm, distinct-user and other
//!   level gauges hold the probe's level with a slow ramp, `_max` gauges stay near the probe;
//! - incidents ([`incidents`]): a service down for 4 minutes (`up` 0, stale markers, counters
//!   restarting from zero), a traffic spike with a 30 % 5xx burst, and a 12-minute slow
//!   period — each longer than the matching alert rule's `for`.
//!
//! Output is cut into time windows ([`HistoryGenerator::next_window`]) so the caller can
//! write one block per window without holding all 24 h in memory.

pub mod logs;
pub mod probe;

use std::collections::HashMap;
use std::time::Duration;

use lookout_exposition::{Format, MetricType, Parser};
use lookout_storage::{Labels, METRIC_NAME, STALE_NAN, Sample};

use crate::ServiceKind;
use crate::rng::Rng;
use crate::traffic::rhythm;

/// The 5xx ratio [`probe::run`] injects so that error series exist in the probe.
pub const PROBE_ERROR_RATIO: f64 = 0.08;
/// Share of a counter's probe total used as its rate when it did not move between the two
/// probe scrapes (it only counted the probe's warm-up, e.g. sign-ups of fresh users).
const TRICKLE: f64 = 0.005;
/// 5xx ratio outside incidents.
const BASE_ERROR_RATIO: f64 = 0.002;

/// One scrape target as the probe saw it.
#[derive(Clone, Debug)]
pub struct ScrapedTarget {
    /// The weAlist service behind the target; `None` for others (e.g. self-monitoring),
    /// whose series are held as scraped (`up` stays 1).
    pub service: Option<ServiceKind>,
    /// Every stored series of one scrape (target labels applied, `up` and `scrape_*`
    /// included) with its value.
    pub series: Vec<(Labels, f64)>,
    /// Sample name → metric type, from the scraped body ([`metric_types`]).
    pub types: HashMap<String, MetricType>,
    /// Values of an earlier scrape `probe_seconds` before `series` (after a warm-up): rates
    /// come from the increase between the two. Empty: from `series` alone (counted from 0).
    pub previous: HashMap<Labels, f64>,
}

/// Sample name → metric type of every sample in an exposition body.
pub fn metric_types(body: &[u8], content_type: &str) -> HashMap<String, MetricType> {
    let mut out = HashMap::new();
    let mut parser = Parser::new(body, Format::from_content_type(content_type));
    while let Ok(Some(entry)) = parser.next_entry() {
        if let lookout_exposition::Entry::Sample(s) = entry {
            let o = s.to_owned_sample();
            out.insert(o.name, o.metric_type);
        }
    }
    out
}

/// Settings of one history run.
#[derive(Clone, Debug)]
pub struct HistoryConfig {
    /// Time of the last sample (ms).
    pub end_ms: i64,
    /// How far back the history reaches.
    pub window: Duration,
    /// Scrape interval the history is sampled at.
    pub step: Duration,
    /// The live generator's requests per second at the daily peak.
    pub peak_rps: f64,
    /// Simulated hour of day at `end_ms` (the live generator's start hour).
    pub end_hour: f64,
    /// Requests per second the probe actually sent.
    pub probe_rps: f64,
    /// Seconds between the probe's two scrapes (or from the start of its load to its only
    /// scrape).
    pub probe_seconds: f64,
    pub seed: u64,
    /// Share of the requests that get a past log line ([`HistoryGenerator::take_log_events`]);
    /// 0 for none.
    pub log_sample: f64,
}

/// What went wrong in the past.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum IncidentKind {
    /// The service was stopped (scrapes fail) and then restarted with fresh state.
    Down,
    /// This share of its requests answered 5xx.
    Errors { ratio: f64 },
    /// Requests took this many seconds longer.
    Slow { delay_s: f64 },
    /// This many extra requests per second.
    Spike { rps: f64 },
}

/// One past incident, `[start_ms, end_ms)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Incident {
    pub service: ServiceKind,
    pub kind: IncidentKind,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// The incidents of a history ending at `end_ms` and reaching back `window` (none below one
/// hour): video down 4 min at 70 % back, board spike (+200 RPS, 6 min) with a 30 % 5xx
/// burst (5 min) at 45 % back, noti slow by 3 s for 12 min at 25 % back.
pub fn incidents(end_ms: i64, window: Duration) -> Vec<Incident> {
    let w = window.as_millis() as i64;
    if w < 3_600_000 {
        return Vec::new();
    }
    let min = 60_000;
    let at = |frac: f64| end_ms - (w as f64 * frac) as i64;
    let mk = |service, kind, start_ms: i64, len: i64| Incident {
        service,
        kind,
        start_ms,
        end_ms: start_ms + len,
    };
    let spike = at(0.45);
    vec![
        mk(ServiceKind::Video, IncidentKind::Down, at(0.70), 4 * min),
        mk(
            ServiceKind::Board,
            IncidentKind::Spike { rps: 200.0 },
            spike,
            6 * min,
        ),
        mk(
            ServiceKind::Board,
            IncidentKind::Errors { ratio: 0.3 },
            spike + min,
            5 * min,
        ),
        mk(
            ServiceKind::Noti,
            IncidentKind::Slow { delay_s: 3.0 },
            at(0.25),
            12 * min,
        ),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum GaugeClass {
    /// Follows the load (in-flight, active, connections, ...).
    Activity,
    /// Holds a level with a slow ramp (registered users, distinct users, memory, ...).
    Level,
    /// A maximum over a recent window (Micrometer `_max`).
    Max,
    /// `process_start_time_seconds`: the (re)start time.
    StartTime,
    /// Scrape bookkeeping that drops to 0 when the target is down.
    ScrapeCount,
    /// `scrape_duration_seconds`.
    ScrapeDuration,
    /// `scrape_series_added`: 0 once the series exist.
    SeriesAdded,
    /// `up`.
    Up,
}

fn gauge_class(name: &str) -> GaugeClass {
    match name {
        "up" => return GaugeClass::Up,
        "scrape_duration_seconds" => return GaugeClass::ScrapeDuration,
        "scrape_series_added" => return GaugeClass::SeriesAdded,
        "process_start_time_seconds" => return GaugeClass::StartTime,
        _ => {}
    }
    if name.ends_with("_created") {
        return GaugeClass::StartTime;
    }
    if name.starts_with("scrape_") {
        return GaugeClass::ScrapeCount;
    }
    if name.ends_with("_max") {
        return GaugeClass::Max;
    }
    if ["daily", "weekly", "monthly", "registered"]
        .iter()
        .any(|w| name.contains(w))
    {
        return GaugeClass::Level;
    }
    if [
        "in_flight",
        "active",
        "connections",
        "sessions",
        "online",
        "rooms",
        "participants",
        "concurrent",
        "queue",
    ]
    .iter()
    .any(|w| name.contains(w))
    {
        return GaugeClass::Activity;
    }
    GaugeClass::Level
}

fn is_error_series(labels: &Labels) -> bool {
    labels.get("status").is_some_and(|s| s.starts_with('5'))
        || labels.get("outcome") == Some("SERVER_ERROR")
}

/// (method, route, status) from a request counter's labels.
fn request_route(l: &Labels, path_label: &str) -> Option<(String, String, u16)> {
    Some((
        l.get("method")?.to_owned(),
        l.get(path_label)?.to_owned(),
        l.get("status")?.parse().ok()?,
    ))
}

fn is_integral(v: f64) -> bool {
    v.is_finite() && v.fract() == 0.0
}

struct CounterPlan {
    idx: usize,
    /// Per second at probe load.
    rate: f64,
    integral: bool,
    error: bool,
    http: bool,
    acc: f64,
    /// (method, route, status) of a request counter, for log lines.
    route: Option<(String, String, u16)>,
}

struct HistPlan {
    /// (series index, upper bound, cumulative fraction) sorted by bound.
    buckets: Vec<(usize, f64, f64)>,
    count: Option<usize>,
    sum: Option<usize>,
    rate: f64,
    mean: f64,
    http: bool,
    n: f64,
    sum_acc: f64,
    bucket_acc: Vec<f64>,
}

/// The pieces of one histogram as scraped: (series index, value, increase during the probe).
#[derive(Default)]
struct HistParts {
    /// (series index, upper bound, value, increase).
    buckets: Vec<(usize, f64, f64, f64)>,
    count: Option<(usize, f64, f64)>,
    sum: Option<(usize, f64, f64)>,
    http: bool,
}

impl HistParts {
    /// Rate, mean and bucket fractions from the probe's increase, or (when it did not move
    /// during the probe) from its totals at a trickle.
    fn plan(mut self, probe_s: f64) -> HistPlan {
        self.buckets.sort_by(|a, b| a.1.total_cmp(&b.1));
        let inf = self.buckets.last().filter(|b| b.1.is_infinite());
        let count_of = |use_delta: bool| {
            let pick = |v: f64, d: f64| if use_delta { d } else { v };
            self.count
                .map(|c| pick(c.1, c.2))
                .or(inf.map(|b| pick(b.2, b.3)))
                .unwrap_or(0.0)
        };
        let moved = count_of(true) > 0.0;
        let total = count_of(moved);
        let pick = |v: f64, d: f64| if moved { d } else { v };
        let sum = self.sum.map(|s| pick(s.1, s.2)).unwrap_or(0.0);
        let rate = if moved {
            total / probe_s
        } else {
            total * TRICKLE / probe_s
        };
        let mut prev = 0.0f64;
        let buckets = self
            .buckets
            .iter()
            .map(|b| {
                let f = if total > 0.0 {
                    pick(b.2, b.3) / total
                } else {
                    1.0
                };
                // Cumulative and at most 1, whatever the probe's rounding.
                prev = if b.1.is_infinite() {
                    1.0
                } else {
                    f.clamp(prev, 1.0)
                };
                (b.0, b.1, prev)
            })
            .collect::<Vec<_>>();
        HistPlan {
            bucket_acc: vec![0.0; buckets.len()],
            buckets,
            count: self.count.map(|c| c.0),
            sum: self.sum.map(|s| s.0),
            rate,
            mean: if total > 0.0 { sum / total } else { 0.0 },
            http: self.http,
            n: 0.0,
            sum_acc: 0.0,
        }
    }
}

struct GaugePlan {
    idx: usize,
    base: f64,
    class: GaugeClass,
    integral: bool,
}

struct TargetPlan {
    service: Option<ServiceKind>,
    counters: Vec<CounterPlan>,
    hists: Vec<HistPlan>,
    gauges: Vec<GaugePlan>,
    /// Sum of the probe rates of the request counters (for spikes).
    http_rps: f64,
    /// Mean request latency (ms) of the busiest request histogram.
    http_mean_ms: f64,
    was_down: bool,
    /// Last (re)start, ms.
    started_ms: i64,
}

/// Generates the history window by window; see the module docs.
pub struct HistoryGenerator {
    cfg: HistoryConfig,
    incidents: Vec<Incident>,
    labels: Vec<Labels>,
    targets: Vec<TargetPlan>,
    next_t: i64,
    rng: Rng,
    events: Vec<logs::LogEvent>,
}

fn histogram_base(name: &str) -> Option<(&str, &'static str)> {
    for suffix in ["_bucket", "_count", "_sum"] {
        if let Some(base) = name.strip_suffix(suffix) {
            return Some((base, suffix));
        }
    }
    None
}

impl HistoryGenerator {
    /// Plans the series of `targets`; every scraped series appears in the output with the
    /// same labels, and nothing else does.
    pub fn new(targets: Vec<ScrapedTarget>, cfg: HistoryConfig) -> HistoryGenerator {
        let step_ms = (cfg.step.as_millis() as i64).max(1);
        let window_ms = cfg.window.as_millis() as i64;
        let steps = window_ms / step_ms;
        let first_t = cfg.end_ms - steps * step_ms;
        let probe_s = cfg.probe_seconds.max(0.1);
        let mut labels = Vec::new();
        let mut plans = Vec::new();
        for target in targets {
            let mut plan = TargetPlan {
                service: target.service,
                counters: Vec::new(),
                hists: Vec::new(),
                gauges: Vec::new(),
                http_rps: 0.0,
                http_mean_ms: 0.0,
                was_down: false,
                started_ms: first_t - 3_600_000,
            };
            // Histogram pieces grouped by family and the labels other than `le`.
            let mut parts: HashMap<(String, Labels), HistParts> = HashMap::new();
            let two_scrapes = !target.previous.is_empty();
            for (l, v) in target.series {
                let idx = labels.len();
                let name = l.metric_name().unwrap_or("").to_owned();
                let ty = target.types.get(&name).copied();
                let value = if v.is_finite() { v } else { 0.0 };
                let delta = if two_scrapes {
                    let prev = target.previous.get(&l).copied().filter(|p| p.is_finite());
                    (value - prev.unwrap_or(0.0)).max(0.0)
                } else {
                    value
                };
                let hist = match (ty, histogram_base(&name)) {
                    (Some(MetricType::Histogram), Some((base, suffix))) => Some((base, suffix)),
                    _ => None,
                };
                if let Some((base, suffix)) = hist {
                    let key = (
                        base.to_owned(),
                        l.without(&[METRIC_NAME, "le"]).without_metric_name(),
                    );
                    let g = parts.entry(key).or_insert_with(|| HistParts {
                        http: base.starts_with("http_"),
                        ..HistParts::default()
                    });
                    match suffix {
                        "_bucket" => {
                            let le = l
                                .get("le")
                                .and_then(|s| lookout_exposition::parse_go_float(s.as_bytes()))
                                .unwrap_or(f64::INFINITY);
                            g.buckets.push((idx, le, value, delta));
                        }
                        "_count" => g.count = Some((idx, value, delta)),
                        _ => g.sum = Some((idx, value, delta)),
                    }
                } else {
                    match ty {
                        Some(MetricType::Counter) | Some(MetricType::Summary)
                            if !name.ends_with("_created")
                                && (ty == Some(MetricType::Counter)
                                    || name.ends_with("_count")
                                    || name.ends_with("_sum")) =>
                        {
                            let http = name.starts_with("http_");
                            // A counter that only moved while the probe warmed up (sign-ups
                            // of its fresh users) keeps a trickle of that.
                            let rate = if delta > 0.0 {
                                delta / probe_s
                            } else {
                                value * TRICKLE / probe_s
                            };
                            if name == "http_requests_total"
                                || name == "http_server_requests_seconds_count"
                            {
                                plan.http_rps += rate;
                            }
                            let route = match name.as_str() {
                                "http_requests_total" => request_route(&l, "path"),
                                "http_server_requests_seconds_count" => request_route(&l, "uri"),
                                _ => None,
                            };
                            plan.counters.push(CounterPlan {
                                idx,
                                rate,
                                integral: is_integral(value),
                                error: is_error_series(&l),
                                http,
                                acc: 0.0,
                                route,
                            });
                        }
                        _ => plan.gauges.push(GaugePlan {
                            idx,
                            base: value,
                            class: gauge_class(&name),
                            integral: is_integral(value),
                        }),
                    }
                }
                labels.push(l);
            }
            let mut groups: Vec<HistPlan> = parts.into_values().map(|p| p.plan(probe_s)).collect();
            // Stable order: HashMap iteration is not.
            groups.sort_by_key(|g| {
                g.buckets
                    .first()
                    .map(|b| b.0)
                    .or(g.count)
                    .or(g.sum)
                    .unwrap_or(0)
            });
            plan.http_mean_ms = groups
                .iter()
                .filter(|g| g.http)
                .max_by(|a, b| a.rate.total_cmp(&b.rate))
                .map_or(20.0, |g| g.mean * 1000.0);
            plan.hists = groups;
            plans.push(plan);
        }
        HistoryGenerator {
            incidents: incidents(cfg.end_ms, cfg.window),
            rng: Rng::new(cfg.seed ^ 0x4849_5354),
            cfg,
            labels,
            targets: plans,
            next_t: first_t,
            events: Vec::new(),
        }
    }

    /// Every series, indexed like the vectors [`next_window`](Self::next_window) returns.
    pub fn labels(&self) -> &[Labels] {
        &self.labels
    }

    /// The incidents written into this history.
    pub fn incidents(&self) -> &[Incident] {
        &self.incidents
    }

    /// The sampled requests of the windows generated since the last call (see
    /// [`HistoryConfig::log_sample`]).
    pub fn take_log_events(&mut self) -> Vec<logs::LogEvent> {
        std::mem::take(&mut self.events)
    }

    /// Time of the last sample.
    pub fn end_ms(&self) -> i64 {
        self.cfg.end_ms
    }

    /// Time of the first sample not generated yet.
    pub fn next_time(&self) -> i64 {
        self.next_t
    }

    /// Whether every sample up to `end_ms` has been generated.
    pub fn done(&self) -> bool {
        self.next_t > self.cfg.end_ms
    }

    /// Number of sample times (steps) in the whole history.
    pub fn steps(&self) -> usize {
        let step = (self.cfg.step.as_millis() as i64).max(1);
        (self.cfg.window.as_millis() as i64 / step + 1) as usize
    }

    /// Samples of every series with timestamps in `[next_time(), until_ms)` (and not after
    /// the end), indexed like [`labels`](Self::labels).
    pub fn next_window(&mut self, until_ms: i64) -> Vec<Vec<Sample>> {
        let step_ms = (self.cfg.step.as_millis() as i64).max(1);
        let until = until_ms.min(self.cfg.end_ms.saturating_add(1));
        let n = ((until - self.next_t).max(0) + step_ms - 1) / step_ms;
        let mut out: Vec<Vec<Sample>> = (0..self.labels.len())
            .map(|_| Vec::with_capacity(n as usize))
            .collect();
        while self.next_t < until {
            let t = self.next_t;
            self.step(t, &mut out);
            self.next_t += step_ms;
        }
        out
    }

    /// Load relative to the probe's at `t`.
    fn load(&self, t: i64) -> f64 {
        let hour = self.cfg.end_hour - (self.cfg.end_ms - t) as f64 / 3_600_000.0;
        self.cfg.peak_rps * rhythm(hour) / self.cfg.probe_rps.max(1e-9)
    }

    fn step(&mut self, t: i64, out: &mut [Vec<Sample>]) {
        let step_s = self.cfg.step.as_secs_f64();
        let load = self.load(t);
        let window_ms = (self.cfg.window.as_millis() as i64).max(1);
        let progress = 1.0 - (self.cfg.end_ms - t) as f64 / window_ms as f64;
        let rng = &mut self.rng;
        let events = &mut self.events;
        let log_sample = self.cfg.log_sample;
        let step_ms = (self.cfg.step.as_millis() as i64).max(1);
        for plan in &mut self.targets {
            let mut down = false;
            let mut error_ratio = BASE_ERROR_RATIO;
            let mut slow = 0.0f64;
            let mut spike = 0.0f64;
            if let Some(svc) = plan.service {
                for inc in &self.incidents {
                    if inc.service != svc || t < inc.start_ms || t >= inc.end_ms {
                        continue;
                    }
                    match inc.kind {
                        IncidentKind::Down => down = true,
                        IncidentKind::Errors { ratio } => error_ratio = ratio,
                        IncidentKind::Slow { delay_s } => slow = delay_s,
                        IncidentKind::Spike { rps } => spike = rps,
                    }
                }
            }
            let push = |out: &mut [Vec<Sample>], idx: usize, v: f64| {
                if let Some(s) = out.get_mut(idx) {
                    s.push(Sample { t, v });
                }
            };
            if down {
                for g in &plan.gauges {
                    let v = match g.class {
                        GaugeClass::Up | GaugeClass::ScrapeCount | GaugeClass::SeriesAdded => 0.0,
                        GaugeClass::ScrapeDuration => 0.001 + 0.002 * rng.f64(),
                        _ => {
                            if !plan.was_down {
                                push(out, g.idx, STALE_NAN);
                            }
                            continue;
                        }
                    };
                    push(out, g.idx, v);
                }
                if !plan.was_down {
                    for c in &plan.counters {
                        push(out, c.idx, STALE_NAN);
                    }
                    for h in &plan.hists {
                        for b in &h.buckets {
                            push(out, b.0, STALE_NAN);
                        }
                        for i in h.count.iter().chain(h.sum.iter()) {
                            push(out, *i, STALE_NAN);
                        }
                    }
                }
                plan.was_down = true;
                continue;
            }
            if plan.was_down {
                // Restarted: fresh process, counters from zero.
                plan.was_down = false;
                plan.started_ms = t;
                for c in &mut plan.counters {
                    c.acc = 0.0;
                }
                for h in &mut plan.hists {
                    h.n = 0.0;
                    h.sum_acc = 0.0;
                    h.bucket_acc.iter_mut().for_each(|b| *b = 0.0);
                }
            }
            let spike_mult = if spike > 0.0 && plan.http_rps > 0.0 {
                1.0 + spike / (plan.http_rps * load).max(1e-9)
            } else {
                1.0
            };
            let err_mult = error_ratio / PROBE_ERROR_RATIO;
            let ok_mult = (1.0 - error_ratio) / (1.0 - PROBE_ERROR_RATIO);
            for c in &mut plan.counters {
                let mut expected = c.rate * load * step_s;
                if c.http {
                    expected *= spike_mult;
                    expected *= if c.error { err_mult } else { ok_mult };
                } else if c.error {
                    expected *= err_mult;
                }
                let noisy = expected * (0.8 + 0.4 * rng.f64());
                let inc = if c.integral {
                    (noisy + rng.f64()).floor()
                } else {
                    noisy
                };
                c.acc += inc.max(0.0);
                push(out, c.idx, c.acc);
                if let (Some(svc), Some((method, route, status))) = (plan.service, &c.route)
                    && log_sample > 0.0
                    && inc > 0.0
                {
                    let n = (inc * log_sample + rng.f64()).floor() as usize;
                    for _ in 0..n {
                        events.push(logs::LogEvent {
                            t_ms: t - (rng.f64() * step_ms as f64) as i64,
                            service: svc,
                            method: method.clone(),
                            route: route.clone(),
                            status: *status,
                            latency_ms: (plan.http_mean_ms + slow * 1000.0) * (0.5 + rng.f64()),
                        });
                    }
                }
            }
            for h in &mut plan.hists {
                let mut expected = h.rate * load * step_s;
                let slowed = h.http && slow > 0.0;
                if h.http {
                    expected *= spike_mult;
                }
                let dn = (expected * (0.8 + 0.4 * rng.f64()) + rng.f64())
                    .floor()
                    .max(0.0);
                let extra = if slowed { slow } else { 0.0 };
                for (i, b) in h.buckets.iter().enumerate() {
                    let f = if slowed {
                        // Nearly every request now takes `mean + slow` seconds.
                        if b.1 >= h.mean + extra {
                            1.0
                        } else {
                            b.2 * 0.02
                        }
                    } else {
                        b.2
                    };
                    if let Some(a) = h.bucket_acc.get_mut(i) {
                        *a += dn * f;
                    }
                }
                h.n += dn;
                h.sum_acc += dn * (h.mean + extra) * (0.9 + 0.2 * rng.f64());
                for (i, b) in h.buckets.iter().enumerate() {
                    let v = h.bucket_acc.get(i).copied().unwrap_or(0.0).floor();
                    push(out, b.0, v.min(h.n));
                }
                if let Some(i) = h.count {
                    push(out, i, h.n);
                }
                if let Some(i) = h.sum {
                    push(out, i, h.sum_acc);
                }
            }
            for g in &plan.gauges {
                let noise = 0.9 + 0.2 * rng.f64();
                let v = match g.class {
                    GaugeClass::Up => 1.0,
                    GaugeClass::ScrapeCount => g.base,
                    GaugeClass::SeriesAdded => 0.0,
                    GaugeClass::ScrapeDuration => g.base * noise,
                    GaugeClass::StartTime => plan.started_ms as f64 / 1000.0,
                    GaugeClass::Activity => g.base * load * spike_mult.min(10.0) * noise,
                    GaugeClass::Level => g.base * (0.6 + 0.4 * progress.clamp(0.0, 1.0)),
                    GaugeClass::Max => {
                        if slow > 0.0 {
                            g.base + slow
                        } else {
                            g.base * noise
                        }
                    }
                };
                let v = if g.integral && g.class != GaugeClass::StartTime {
                    v.round()
                } else {
                    v
                };
                push(out, g.idx, v);
            }
        }
    }
}

#[cfg(test)]
mod tests;
