//! Range queries over ~1M samples in `MemStorage`: a `sum by (job) (rate(...))` and a
//! `histogram_quantile` over classic buckets, 1h at 15s resolution.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lookout_promql::{Engine, EngineOptions};
use lookout_storage::memory::MemStorage;
use lookout_storage::{Appendable, Labels};

const SCRAPE_MS: i64 = 15_000;
/// 6h of 15s samples = 1440 samples per series.
const POINTS: i64 = 1440;

fn load() -> MemStorage {
    let s = MemStorage::new();
    // 400 counters (x) + 40 histograms * 10 buckets = 800 series * 1440 ≈ 1.15M samples.
    for i in 0..400u32 {
        let l = Labels::from_pairs([
            ("__name__", "x".to_string()),
            ("job", format!("job{}", i % 8)),
            ("instance", format!("i{i}")),
        ]);
        let mut app = s.appender();
        let mut v = 0.0;
        for k in 0..POINTS {
            v += ((k as u32 * 7 + i) % 13) as f64;
            app.append(None, &l, k * SCRAPE_MS, v).expect("append");
        }
        app.commit().expect("commit");
    }
    let bounds = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
    ];
    for h in 0..40u32 {
        for (b, le) in bounds.iter().enumerate() {
            let l = Labels::from_pairs([
                ("__name__", "req_seconds_bucket".to_string()),
                ("job", format!("job{}", h % 4)),
                ("instance", format!("i{h}")),
                ("le", le.to_string()),
            ]);
            let mut app = s.appender();
            for k in 0..POINTS {
                let v = (k as f64) * (b as f64 + 1.0) * 3.0;
                app.append(None, &l, k * SCRAPE_MS, v).expect("append");
            }
            app.commit().expect("commit");
        }
    }
    s
}

fn bench(c: &mut Criterion) {
    let storage = load();
    let engine = Engine::new(EngineOptions::default());
    let end = (POINTS - 1) * SCRAPE_MS;
    let start = end - 3_600_000;
    let step = Duration::from_secs(15);
    let mut g = c.benchmark_group("range_query_1h_15s");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("sum_by_job_rate_5m", |b| {
        b.iter(|| {
            let r = engine
                .range_query(&storage, "sum by (job) (rate(x[5m]))", start, end, step)
                .expect("query");
            black_box(r)
        })
    });
    g.bench_function("sum_by_job_rate_5m_full_6h_step_60s", |b| {
        b.iter(|| {
            let r = engine
                .range_query(
                    &storage,
                    "sum by (job) (rate(x[5m]))",
                    0,
                    end,
                    Duration::from_secs(60),
                )
                .expect("query");
            black_box(r)
        })
    });
    g.bench_function("histogram_quantile_0.99", |b| {
        b.iter(|| {
            let r = engine
                .range_query(
                    &storage,
                    "histogram_quantile(0.99, sum by (job, le) (rate(req_seconds_bucket[5m])))",
                    start,
                    end,
                    step,
                )
                .expect("query");
            black_box(r)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
