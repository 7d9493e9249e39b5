use std::collections::{BTreeMap, BTreeSet, HashMap};

use lookout_exposition::{Entry, Format, MetricType, Parser};
use lookout_storage::{Labels, METRIC_NAME, Sample, is_stale_nan};

use super::*;

const HOUR_MS: i64 = 3_600_000;

fn cfg(end_ms: i64, window: Duration) -> HistoryConfig {
    HistoryConfig {
        end_ms,
        window,
        step: Duration::from_secs(15),
        peak_rps: 25.0,
        end_hour: 9.0,
        probe_rps: 150.0,
        probe_seconds: 2.5,
        seed: 7,
        log_sample: 0.0,
    }
}

fn l(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().map(|(a, b)| (*a, *b)))
}

/// A hand-made scrape of one service with every kind of series the generator handles.
fn synthetic(service: ServiceKind) -> ScrapedTarget {
    let job = service.compose_service();
    let mut series = Vec::new();
    let mut types = HashMap::new();
    let mut add = |name: &str, extra: &[(&str, &str)], v: f64, ty: Option<MetricType>| {
        let mut pairs = vec![(METRIC_NAME, name), ("job", job), ("instance", "x:1")];
        pairs.extend_from_slice(extra);
        series.push((l(&pairs), v));
        if let Some(ty) = ty {
            types.insert(name.to_owned(), ty);
        }
    };
    let c = Some(MetricType::Counter);
    let h = Some(MetricType::Histogram);
    let g = Some(MetricType::Gauge);
    add(
        "http_requests_total",
        &[("method", "GET"), ("path", "/a/{id}"), ("status", "200")],
        230.0,
        c,
    );
    add(
        "http_requests_total",
        &[("method", "GET"), ("path", "/a/{id}"), ("status", "500")],
        20.0,
        c,
    );
    add("storage_upload_bytes_total", &[], 12345.5, c);
    for (le, v) in [
        ("0.005", 10.0),
        ("0.1", 200.0),
        ("2.5", 248.0),
        ("5", 250.0),
        ("+Inf", 250.0),
    ] {
        add(
            "http_request_duration_seconds_bucket",
            &[("path", "/a"), ("le", le)],
            v,
            h,
        );
    }
    add(
        "http_request_duration_seconds_count",
        &[("path", "/a")],
        250.0,
        h,
    );
    add(
        "http_request_duration_seconds_sum",
        &[("path", "/a")],
        9.5,
        h,
    );
    add("http_requests_in_flight", &[], 4.0, g);
    add("users_daily_active", &[], 30.0, g);
    add("process_start_time_seconds", &[], 1.0e9, g);
    add("up", &[], 1.0, None);
    add("scrape_duration_seconds", &[], 0.004, None);
    add("scrape_samples_scraped", &[], 14.0, None);
    add("scrape_series_added", &[], 14.0, None);
    ScrapedTarget {
        service: Some(service),
        series,
        types,
        previous: HashMap::new(),
    }
}

/// All samples per series over the whole history.
fn generate_all(generator: &mut HistoryGenerator, window_ms: i64) -> Vec<Vec<Sample>> {
    let mut all: Vec<Vec<Sample>> = vec![Vec::new(); generator.labels().len()];
    while !generator.done() {
        let until = generator.next_time() + window_ms;
        for (i, s) in generator.next_window(until).into_iter().enumerate() {
            all[i].extend(s);
        }
    }
    all
}

fn value_at(samples: &[Sample], t: i64) -> Option<f64> {
    samples.iter().find(|s| s.t == t).map(|s| s.v)
}

/// Checks every histogram of `labels`/`all`: buckets cumulative in `le` at every time,
/// `+Inf` equal to `_count`, counts and sums never decreasing except across a restart.
fn check_histograms(labels: &[Labels], all: &[Vec<Sample>]) -> usize {
    let mut groups: BTreeMap<(String, Labels), Vec<(f64, usize)>> = BTreeMap::new();
    let mut counts: HashMap<(String, Labels), usize> = HashMap::new();
    for (i, l) in labels.iter().enumerate() {
        let name = l.metric_name().unwrap_or("");
        let rest = l.without(&["le"]).without_metric_name();
        if let Some(base) = name.strip_suffix("_bucket") {
            let le = lookout_exposition::parse_go_float(l.get("le").unwrap_or("+Inf").as_bytes())
                .unwrap();
            groups
                .entry((base.to_owned(), rest))
                .or_default()
                .push((le, i));
        } else if let Some(base) = name.strip_suffix("_count") {
            counts.insert((base.to_owned(), rest), i);
        }
    }
    let mut checked = 0;
    for (key, mut buckets) in groups {
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let times: Vec<i64> = all[buckets[0].1].iter().map(|s| s.t).collect();
        for &t in &times {
            let vals: Vec<f64> = buckets
                .iter()
                .filter_map(|b| value_at(&all[b.1], t))
                .collect();
            if vals.iter().any(|v| is_stale_nan(*v)) {
                continue;
            }
            assert_eq!(
                vals.len(),
                buckets.len(),
                "{key:?} at {t}: a bucket is missing"
            );
            assert!(
                vals.windows(2).all(|w| w[0] <= w[1]),
                "{key:?} at {t}: buckets not cumulative: {vals:?}"
            );
            if let (Some(&(inf, _)), Some(&ci)) = (buckets.last(), counts.get(&key))
                && inf.is_infinite()
            {
                assert_eq!(
                    vals.last().copied(),
                    value_at(&all[ci], t),
                    "{key:?} at {t}: +Inf != _count"
                );
            }
        }
        checked += 1;
    }
    checked
}

fn is_counter_like(l: &Labels, types: &HashMap<String, MetricType>) -> bool {
    let name = l.metric_name().unwrap_or("");
    matches!(
        types.get(name),
        Some(MetricType::Counter) | Some(MetricType::Histogram)
    ) && !name.ends_with("_created")
}

#[test]
fn counters_monotone_histograms_consistent_labels_kept() {
    let end = 1_800_000_000_000;
    let window = Duration::from_secs(3 * 3600);
    let targets = vec![synthetic(ServiceKind::Board), synthetic(ServiceKind::Video)];
    let input: Vec<Labels> = targets
        .iter()
        .flat_map(|t| t.series.iter().map(|s| s.0.clone()))
        .collect();
    let types = targets[0].types.clone();
    let mut generator = HistoryGenerator::new(targets, cfg(end, window));
    assert_eq!(
        generator.labels(),
        input.as_slice(),
        "same series, same labels"
    );
    let incidents = generator.incidents().to_vec();
    assert_eq!(incidents.len(), 4);
    let all = generate_all(&mut generator, 2 * HOUR_MS);
    let steps = generator.steps();
    assert_eq!(steps, 3 * 240 + 1);

    let down = incidents
        .iter()
        .find(|i| i.kind == IncidentKind::Down)
        .unwrap();
    for (l, samples) in generator.labels().iter().zip(&all) {
        let job = l.get("job").unwrap();
        assert!(
            samples.windows(2).all(|w| w[0].t < w[1].t),
            "{l}: times ascend"
        );
        assert!(samples.last().unwrap().t == end, "{l}: ends at the end");
        if job == "board-service" {
            assert_eq!(samples.len(), steps, "{l}: one sample per step");
            if is_counter_like(l, &types) {
                assert!(
                    samples.windows(2).all(|w| w[0].v <= w[1].v),
                    "{l}: counter decreased"
                );
                if l.get("status") != Some("500") {
                    assert!(samples.last().unwrap().v > 0.0, "{l}: counter grew");
                }
            }
        } else if is_counter_like(l, &types) {
            // Video restarted after being down: monotone before and after, one reset.
            let resets = samples
                .windows(2)
                .filter(|w| !is_stale_nan(w[1].v) && !is_stale_nan(w[0].v) && w[1].v < w[0].v)
                .count();
            assert_eq!(resets, 0, "{l}: a reset is only ever across the gap");
            let stale: Vec<i64> = samples
                .iter()
                .filter(|s| is_stale_nan(s.v))
                .map(|s| s.t)
                .collect();
            assert_eq!(stale.len(), 1, "{l}: one stale marker when it went down");
            assert!(stale[0] >= down.start_ms && stale[0] < down.start_ms + 15_000);
            assert!(
                !samples.iter().any(|s| s.t > stale[0] && s.t < down.end_ms),
                "{l}: no samples while down"
            );
        }
        if l.metric_name() == Some("up") {
            let zeros = samples.iter().filter(|s| s.v == 0.0).count();
            if job == "video-service" {
                assert_eq!(zeros, 16, "4 minutes of 15 s scrapes down");
            } else {
                assert_eq!(zeros, 0);
            }
        }
    }
    assert_eq!(check_histograms(generator.labels(), &all), 2);

    // The rate of requests follows the rhythm: the peak hour is busier than the night.
    let idx = generator
        .labels()
        .iter()
        .position(|l| {
            l.metric_name() == Some("http_requests_total")
                && l.get("job") == Some("board-service")
                && l.get("status") == Some("200")
        })
        .unwrap();
    let s = &all[idx];
    // end_hour 9: 13 h back is 20:00, 2.5 h back is 6:30 — compare 10:30 (-22.5 h is out of
    // the 3 h window), so compare the last hour (8-9) against the first (6-7).
    let inc =
        |from: i64, to: i64| value_at(s, end - to).unwrap() - value_at(s, end - from).unwrap();
    let late = inc(HOUR_MS, 0);
    let early = inc(3 * HOUR_MS - 15_000 * 4, 2 * HOUR_MS);
    assert!(late > early * 1.5, "rhythm: 8-9h {late} vs 6-7h {early}");

    // The 5xx burst: board's error ratio inside the incident is far above the baseline.
    let err_idx = generator
        .labels()
        .iter()
        .position(|l| l.get("job") == Some("board-service") && l.get("status") == Some("500"))
        .unwrap();
    let burst = incidents
        .iter()
        .find(|i| matches!(i.kind, IncidentKind::Errors { .. }))
        .unwrap();
    let grid = |t: i64| end - ((end - t) / 15_000) * 15_000;
    let (a, b) = (grid(burst.start_ms) + 15_000, grid(burst.end_ms));
    let ratio = |i0: i64, i1: i64| {
        let e = value_at(&all[err_idx], i1).unwrap() - value_at(&all[err_idx], i0).unwrap();
        let o = value_at(s, i1).unwrap() - value_at(s, i0).unwrap();
        e / (e + o)
    };
    assert!(ratio(a, b) > 0.2, "burst ratio {}", ratio(a, b));
    assert!(
        ratio(end - HOUR_MS / 2, end) < 0.05,
        "baseline ratio {}",
        ratio(end - HOUR_MS / 2, end)
    );
}

#[test]
fn slow_incident_moves_p95_above_two_seconds() {
    let end = 1_800_000_000_000;
    let window = Duration::from_secs(2 * 3600);
    let mut generator = HistoryGenerator::new(vec![synthetic(ServiceKind::Noti)], cfg(end, window));
    let slow = *generator
        .incidents()
        .iter()
        .find(|i| matches!(i.kind, IncidentKind::Slow { .. }))
        .unwrap();
    let all = generate_all(&mut generator, HOUR_MS);
    let labels = generator.labels().to_vec();
    let bucket = |le: &str| labels.iter().position(|l| l.get("le") == Some(le)).unwrap();
    let grid = |t: i64| end - ((end - t) / 15_000) * 15_000;
    let (a, b) = (grid(slow.start_ms) + 15_000, grid(slow.end_ms));
    let d = |i: usize| value_at(&all[i], b).unwrap() - value_at(&all[i], a).unwrap();
    let (below, total) = (d(bucket("2.5")), d(bucket("+Inf")));
    assert!(total > 0.0);
    assert!(
        below / total < 0.05,
        "during the slow period {below} of {total} under 2.5 s"
    );
    let (a2, b2) = (end - HOUR_MS / 4, end);
    let d2 = |i: usize| value_at(&all[i], b2).unwrap() - value_at(&all[i], a2).unwrap();
    assert!(
        d2(bucket("2.5")) / d2(bucket("+Inf")) > 0.9,
        "fast again afterwards"
    );
}

#[test]
fn short_history_has_no_incidents_and_windows_partition_time() {
    let end = 1_800_000_123_456;
    let window = Duration::from_secs(1800);
    let mut generator = HistoryGenerator::new(vec![synthetic(ServiceKind::User)], cfg(end, window));
    assert!(generator.incidents().is_empty());
    let first = generator.next_time();
    assert_eq!(first, end - 120 * 15_000);
    // Uneven windows: every step exactly once.
    let mut times = BTreeSet::new();
    let mut n = 0;
    while !generator.done() {
        let w = generator.next_window(generator.next_time() + 7 * 15_000 + 1);
        for s in &w[0] {
            assert!(times.insert(s.t));
        }
        n += 1;
    }
    assert_eq!(times.len(), 121);
    assert_eq!(times.last().copied(), Some(end));
    assert!(n > 10);
    assert!(
        generator
            .next_window(end + HOUR_MS)
            .iter()
            .all(Vec::is_empty)
    );
}

/// Parses a body as the scraper stores it (enough for these services: no label clashes).
fn stored_series(body: &[u8], content_type: &str, job: &str) -> Vec<(Labels, f64)> {
    let mut out = Vec::new();
    let mut parser = Parser::new(body, Format::from_content_type(content_type));
    while let Some(entry) = parser
        .next_entry()
        .expect("the services' exposition parses")
    {
        if let Entry::Sample(s) = entry {
            let o = s.to_owned_sample();
            let mut pairs = o.labels.clone();
            pairs.push((METRIC_NAME.to_owned(), o.name.clone()));
            pairs.push(("job".to_owned(), job.to_owned()));
            out.push((Labels::from_pairs(pairs), o.value));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_of_the_real_services_matches_their_scrape() {
    let dir = tempfile::tempdir().unwrap();
    let opts = probe::ProbeOptions::new(3, dir.path().join("probe"));
    let result = probe::run(&opts).await.expect("probe runs");
    assert_eq!(result.scrapes.len(), 7);
    assert!(result.rps > 10.0, "probe load {}", result.rps);
    assert!(
        !dir.path().join("probe").exists(),
        "scratch directory removed"
    );
    let mut targets = Vec::new();
    let mut scraped: Vec<Labels> = Vec::new();
    for s in &result.scrapes {
        let series = stored_series(&s.body, &s.content_type, s.service.compose_service());
        let previous = stored_series(&s.previous, &s.content_type, s.service.compose_service());
        assert!(!previous.is_empty());
        scraped.extend(series.iter().map(|x| x.0.clone()));
        targets.push(ScrapedTarget {
            service: Some(s.service),
            types: metric_types(&s.body, &s.content_type),
            series,
            previous: previous.into_iter().collect(),
        });
    }
    let names: BTreeSet<&str> = scraped.iter().filter_map(|l| l.metric_name()).collect();
    for must in [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_server_requests_seconds_count",
        "users_daily_active",
    ] {
        assert!(
            names.contains(must),
            "the probe's scrape has {must}: {names:?}"
        );
    }
    assert!(
        scraped
            .iter()
            .any(|l| l.metric_name() == Some("http_requests_total")
                && l.get("status").is_some_and(|s| s.starts_with('5'))),
        "error series exist"
    );
    let types: HashMap<String, MetricType> = targets.iter().flat_map(|t| t.types.clone()).collect();
    let end = 1_800_000_000_000;
    let mut c = cfg(end, Duration::from_secs(2 * 3600));
    c.probe_rps = result.rps;
    c.probe_seconds = result.seconds;
    let mut generator = HistoryGenerator::new(targets, c);
    let mut got: Vec<Labels> = generator.labels().to_vec();
    let mut want = scraped.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "history series are exactly the scrape's series");
    let all = generate_all(&mut generator, 2 * HOUR_MS);
    assert!(check_histograms(generator.labels(), &all) >= 10);
    for (l, samples) in generator.labels().iter().zip(&all) {
        assert!(!samples.is_empty(), "{l} has history");
        assert!(
            samples.iter().all(|s| s.v.is_finite() || is_stale_nan(s.v)),
            "{l}: finite values"
        );
        if is_counter_like(l, &types) && l.get("job") != Some("video-service") {
            assert!(
                samples.windows(2).all(|w| w[0].v <= w[1].v),
                "{l}: counter decreased"
            );
        }
    }
    // Request rates are in the live model's range: peak 25 RPS over the whole stack.
    let total_rps: f64 = generator
        .labels()
        .iter()
        .zip(&all)
        .filter(|(l, _)| {
            l.metric_name() == Some("http_requests_total") && l.get("job") != Some("video-service")
        })
        .map(|(_, s)| (s.last().unwrap().v - value_at(s, end - HOUR_MS).unwrap()) / 3600.0)
        .sum();
    assert!(
        total_rps > 3.0 && total_rps < 40.0,
        "history RPS {total_rps}"
    );
    // Sign-ups (which the probe's fresh users mostly did while warming up) trickle along.
    let signups: f64 = generator
        .labels()
        .iter()
        .zip(&all)
        .filter(|(l, _)| l.metric_name() == Some("user_registrations_total"))
        .map(|(_, s)| s.last().unwrap().v - value_at(s, end - HOUR_MS).unwrap())
        .sum();
    assert!(
        signups > 0.0 && signups < 1000.0,
        "sign-ups in the last hour: {signups}"
    );
}

#[test]
fn log_lines_have_the_services_format_and_follow_the_requests() {
    use crate::logs::{ContainerInfo, ContainerLog, LogOptions, Logger};
    use serde_json::Value;

    let tmp = tempfile::tempdir().unwrap();
    // A real line of the services' logger, for its shape.
    let real_dir = tmp.path().join("real");
    let log = ContainerLog::open(
        &real_dir,
        ContainerInfo::new("p", "board-service"),
        LogOptions::default(),
    )
    .unwrap();
    Logger::new("board-service", log.clone()).log(
        crate::logs::Level::Error,
        "request failed",
        &crate::logs::LogFields {
            method: Some("GET".into()),
            path: Some("/api/boards/1".into()),
            status: Some(500),
            latency_ms: Some(1.5),
            trace_id: Some("ab".into()),
            user_id: Some("u1".into()),
            error: Some("x".into()),
        },
    );
    log.flush();
    let real: Value =
        serde_json::from_str(std::fs::read_to_string(log.log_path()).unwrap().trim()).unwrap();
    let keys = |v: &Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
    let inner = |v: &Value| -> Value { serde_json::from_str(v["log"].as_str().unwrap()).unwrap() };

    let end = 1_800_000_000_000;
    let mut c = cfg(end, Duration::from_secs(2 * 3600));
    c.log_sample = 0.05;
    let mut generator = HistoryGenerator::new(vec![synthetic(ServiceKind::Board)], c);
    let all = generate_all(&mut generator, HOUR_MS);
    let mut events = generator.take_log_events();
    let requests: f64 = generator
        .labels()
        .iter()
        .zip(&all)
        .filter(|(l, _)| l.metric_name() == Some("http_requests_total"))
        .map(|(_, s)| s.last().unwrap().v)
        .sum();
    let n = events.len() as f64;
    assert!(
        (n - requests * 0.05).abs() < requests * 0.01 + 20.0,
        "{n} lines for {requests} requests"
    );
    assert!(
        events
            .iter()
            .all(|e| e.t_ms <= end && e.t_ms > end - 2 * HOUR_MS - 15_000)
    );
    let burst = *generator
        .incidents()
        .iter()
        .find(|i| matches!(i.kind, IncidentKind::Errors { .. }))
        .unwrap();
    let errors_in = |a: i64, b: i64| {
        let in_range: Vec<&logs::LogEvent> = events
            .iter()
            .filter(|e| e.t_ms >= a && e.t_ms < b)
            .collect();
        let e = in_range.iter().filter(|e| e.status >= 500).count() as f64;
        e / (in_range.len() as f64).max(1.0)
    };
    assert!(errors_in(burst.start_ms + 30_000, burst.end_ms) > 0.15);
    assert!(errors_in(end - HOUR_MS / 2, end) < 0.05);

    let containers = tmp.path().join("containers");
    let mut w = logs::LogHistoryWriter::create(&containers, "p", 1)
        .unwrap()
        .unwrap();
    w.write(&mut events).unwrap();
    let (lines, bytes) = w.finish().unwrap();
    assert_eq!(lines, events.len() as u64);
    assert!(bytes > lines * 100);
    let info = ContainerInfo::new("p", "board-service");
    let path = containers
        .join(&info.id)
        .join(format!("{}-json.log", info.id));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut last = String::new();
    for line in text.lines() {
        let rec: Value = serde_json::from_str(line).unwrap();
        assert_eq!(keys(&rec), keys(&real), "json-file record fields");
        let l = inner(&rec);
        let status = l["status"].as_u64().unwrap();
        let mut want = keys(&inner(&real));
        if status < 500 {
            want.remove("error");
        }
        let mut got = keys(&l);
        got.remove("user_id");
        want.remove("user_id");
        assert_eq!(got, want, "{line}");
        assert_eq!(l["service"], "board-service");
        assert!(!l["path"].as_str().unwrap().contains('{'));
        let ts = l["ts"].as_str().unwrap().to_owned();
        assert_eq!(ts.len(), "2027-01-15T06:27:36.037Z".len());
        assert!(ts >= last, "time order: {ts} after {last}");
        last = ts;
    }
    // Never into logs that exist already.
    assert!(
        logs::LogHistoryWriter::create(&containers, "p", 1)
            .unwrap()
            .is_none()
    );
}
