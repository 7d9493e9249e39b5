//! Parse throughput on a realistic ~10k-sample exposition (histograms with many labels,
//! counters, gauges), in both formats; reported as samples/s.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lookout_exposition::{Encoder, Entry, Format, KnownSeries, MetricType, ParseMode, Parser};

const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// About 10k samples shaped like a busy service's /metrics: a request-duration histogram over
/// service × method × path × status, request counters, in-flight gauges and a few process
/// metrics.
fn exposition(format: Format) -> (Vec<u8>, usize) {
    let services = [
        "user-service",
        "board-service",
        "chat-service",
        "noti-service",
        "storage-service",
    ];
    let methods = ["GET", "POST", "PUT", "DELETE"];
    let paths = [
        "/api/users/{id}",
        "/api/boards",
        "/api/boards/{id}/columns",
        "/api/chats/{id}/messages",
        "/health",
    ];
    let statuses = ["200", "201", "400", "404", "500"];
    let mut out = Vec::with_capacity(2 << 20);
    let mut n = 0;
    let mut enc = Encoder::new(format, &mut out);
    enc.family(
        "http_request_duration_seconds",
        MetricType::Histogram,
        Some("HTTP request latency in seconds."),
        Some("seconds"),
    );
    let mut seed = 1u64;
    for s in services {
        for m in methods {
            for p in paths {
                for st in &statuses {
                    let labels = [
                        ("service", s),
                        ("method", m),
                        ("path", p),
                        ("status", *st),
                        ("instance", "10.0.0.7:8080"),
                    ];
                    let mut cum = 0u64;
                    for le in BUCKETS {
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        cum += seed >> 58;
                        let le_s = le.to_string();
                        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
                        with_le.push(("le", &le_s));
                        enc.sample(
                            "http_request_duration_seconds_bucket",
                            &with_le,
                            cum as f64,
                            None,
                        );
                        n += 1;
                    }
                    let mut with_le: Vec<(&str, &str)> = labels.to_vec();
                    with_le.push(("le", "+Inf"));
                    enc.sample(
                        "http_request_duration_seconds_bucket",
                        &with_le,
                        cum as f64,
                        None,
                    );
                    enc.sample(
                        "http_request_duration_seconds_sum",
                        &labels,
                        cum as f64 * 0.137,
                        None,
                    );
                    enc.sample(
                        "http_request_duration_seconds_count",
                        &labels,
                        cum as f64,
                        None,
                    );
                    n += 3;
                }
            }
        }
    }
    enc.family(
        "http_requests_total",
        MetricType::Counter,
        Some("Total HTTP requests."),
        None,
    );
    for s in services {
        for m in methods {
            for p in paths {
                for st in statuses {
                    let labels = [("service", s), ("method", m), ("path", p), ("status", st)];
                    enc.sample("http_requests_total", &labels, 12345.0 + n as f64, None);
                    n += 1;
                }
            }
        }
    }
    enc.family(
        "http_requests_in_flight",
        MetricType::Gauge,
        Some("Requests being served."),
        None,
    );
    for s in services {
        for i in 0..500 {
            let inst = format!("10.{}.{}.1:8080", i / 250, i % 250);
            enc.sample(
                "http_requests_in_flight",
                &[("service", s), ("instance", &inst)],
                (i % 7) as f64,
                None,
            );
            n += 1;
        }
    }
    enc.family(
        "process_resident_memory_bytes",
        MetricType::Gauge,
        Some("Resident memory size in bytes."),
        None,
    );
    enc.sample("process_resident_memory_bytes", &[], 2.478268416e9, None);
    n += 1;
    enc.finish();
    (out, n)
}

fn parse_all(input: &[u8], format: Format, mode: ParseMode, decode_labels: bool) -> usize {
    let mut p = Parser::with_mode(input, format, mode);
    let mut acc = 0usize;
    while let Some(e) = p.next_entry().expect("benchmark input parses") {
        if let Entry::Sample(s) = e {
            acc = acc.wrapping_add(s.raw_series().len());
            if decode_labels {
                for (n, v) in s.labels() {
                    acc = acc.wrapping_add(n.len() + v.len());
                }
            }
            black_box(s.value());
        }
    }
    acc
}

/// A scrape loop's cache that knows every series text, its lookups left out; with
/// `order`, the n-th series is expected to be `order[n]` long (a scrape loop expects the last
/// scrape's order), else each is asked about after the scan for its end.
struct AllKnown<'o> {
    order: &'o [usize],
    n: usize,
}

impl KnownSeries for AllKnown<'_> {
    fn expected_len(&mut self) -> usize {
        self.order.get(self.n).copied().unwrap_or(0)
    }

    fn is_expected(&mut self, text: &[u8]) -> bool {
        !text.is_empty()
    }

    fn is_known(&mut self, text: &[u8]) -> bool {
        !text.is_empty()
    }
}

/// The series-only parse of a scrape loop whose cache knows every series text: labels are
/// not tokenised.
fn parse_known(input: &[u8], format: Format, mode: ParseMode, order: &[usize]) -> usize {
    let mut p = Parser::with_mode(input, format, mode);
    let mut acc = 0usize;
    let mut known = AllKnown { order, n: 0 };
    while let Some(e) = p
        .next_entry_with_known(&mut known)
        .expect("benchmark input parses")
    {
        if let Entry::Sample(s) = e {
            known.n += 1;
            acc = acc.wrapping_add(s.raw_series().len());
            black_box(s.value());
        }
    }
    acc
}

fn bench(c: &mut Criterion) {
    for (format, mode, fname) in [
        (Format::PrometheusText, ParseMode::Strict, "text"),
        (Format::OpenMetrics, ParseMode::Strict, "openmetrics"),
        (
            Format::OpenMetrics,
            ParseMode::PrometheusCompatible,
            "openmetrics_compat",
        ),
    ] {
        let (input, samples) = exposition(format);
        let mut g = c.benchmark_group(format!("parse/{fname}"));
        g.throughput(Throughput::Elements(samples as u64));
        g.sample_size(30)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        g.bench_function(format!("{samples}_samples/series_only"), |b| {
            b.iter(|| parse_all(black_box(&input), format, mode, false))
        });
        g.bench_function(format!("{samples}_samples/with_labels"), |b| {
            b.iter(|| parse_all(black_box(&input), format, mode, true))
        });
        let mut order = Vec::new();
        let mut p = Parser::with_mode(&input, format, mode);
        while let Some(e) = p.next_entry().expect("benchmark input parses") {
            if let Entry::Sample(s) = e {
                order.push(s.raw_series().len());
            }
        }
        g.bench_function(format!("{samples}_samples/known_series"), |b| {
            b.iter(|| parse_known(black_box(&input), format, mode, &[]))
        });
        g.bench_function(format!("{samples}_samples/known_series_in_order"), |b| {
            b.iter(|| parse_known(black_box(&input), format, mode, &order))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
