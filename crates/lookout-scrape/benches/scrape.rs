//! Steady-state scrape processing (parse, cache lookup, append, staleness bookkeeping) of a
//! realistic exposition into a storage that does nothing, i.e. the scrape loop's own CPU
//! cost per sample.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lookout_config::PrometheusConfig;
use lookout_scrape::client::Fetched;
use lookout_scrape::offline::{DiscardStorage, OfflineScraper};

/// ~10k samples: request counters and latency histograms over methods, paths and statuses.
fn exposition() -> (Vec<u8>, u64) {
    let mut s = String::new();
    let mut n = 0;
    s.push_str(
        "# HELP http_requests_total Total HTTP requests.\n# TYPE http_requests_total counter\n",
    );
    for m in ["GET", "POST", "PUT", "DELETE"] {
        for p in 0..40 {
            for st in [200, 201, 400, 404, 500] {
                s.push_str(&format!("http_requests_total{{method=\"{m}\",path=\"/api/v1/resource{p}\",status=\"{st}\"}} {}\n", p * 7 + st));
                n += 1;
            }
        }
    }
    s.push_str("# HELP http_request_duration_seconds Latency.\n# TYPE http_request_duration_seconds histogram\n");
    for m in ["GET", "POST", "PUT", "DELETE"] {
        for p in 0..40 {
            for le in [
                "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
                "+Inf",
            ] {
                s.push_str(&format!("http_request_duration_seconds_bucket{{method=\"{m}\",path=\"/api/v1/resource{p}\",le=\"{le}\"}} {p}\n"));
                n += 1;
            }
            s.push_str(&format!("http_request_duration_seconds_sum{{method=\"{m}\",path=\"/api/v1/resource{p}\"}} 12.5\n"));
            s.push_str(&format!("http_request_duration_seconds_count{{method=\"{m}\",path=\"/api/v1/resource{p}\"}} {p}\n"));
            n += 2;
        }
    }
    (s.into_bytes(), n)
}

fn bench(c: &mut Criterion) {
    let cfg = match PrometheusConfig::parse("scrape_configs:\n  - job_name: bench\n") {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let (body, n) = exposition();
    let body = Fetched {
        body,
        content_type: "text/plain; version=0.0.4".into(),
    };
    let mut s = match OfflineScraper::new(
        &cfg.scrape_configs[0],
        "127.0.0.1:9100",
        Arc::new(DiscardStorage::default()),
    ) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let mut ts = 0i64;
    let mut g = c.benchmark_group("scrape");
    g.throughput(Throughput::Elements(n));
    g.bench_function("steady_state_text_10k", |b| {
        b.iter(|| {
            ts += 15_000;
            s.scrape(&body, ts)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
