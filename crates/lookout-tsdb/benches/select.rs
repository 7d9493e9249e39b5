//! Select over 1M samples (1,000 series × 1,000 samples, mostly in mmap'd chunks), and over
//! blocks: 200 series × 24 h at 15 s (1.15M samples) backfilled and compacted.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lookout_storage::{
    Appendable, Labels, MatchOp, Matcher, Queryable, Sample, SelectHints, SeriesRef,
};
use lookout_tsdb::{Tsdb, TsdbOptions};

const SERIES: usize = 1_000;
const SAMPLES: i64 = 1_000;

fn bench_select(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Tsdb::open(dir.path(), TsdbOptions::default()).expect("open");
    let labels: Vec<Labels> = (0..SERIES)
        .map(|i| {
            Labels::from_pairs([
                ("__name__", "node_cpu_seconds_total".to_string()),
                ("cpu", (i % 8).to_string()),
                ("instance", format!("node-{}", i / 8)),
                ("mode", "user".to_string()),
            ])
        })
        .collect();
    let mut refs: Vec<Option<SeriesRef>> = vec![None; SERIES];
    let start = 1_700_000_000_000i64;
    for k in 0..SAMPLES {
        let mut app = db.appender();
        for (i, l) in labels.iter().enumerate() {
            let v = (k * 15 + i as i64) as f64 * 0.25;
            refs[i] = Some(
                app.append(refs[i], l, start + k * 15_000, v)
                    .expect("append"),
            );
        }
        app.commit().expect("commit");
    }
    let end = start + SAMPLES * 15_000;

    let mut g = c.benchmark_group("select");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(8));
    let all = [Matcher::equal("__name__", "node_cpu_seconds_total")];
    g.throughput(Throughput::Elements((SERIES as i64 * SAMPLES) as u64));
    g.bench_function("1M_samples_all_series", |b| {
        b.iter(|| {
            let got = db
                .select(&all, &SelectHints::range(start, end))
                .expect("select");
            assert_eq!(got.len(), SERIES);
        })
    });
    let some = [
        Matcher::equal("__name__", "node_cpu_seconds_total"),
        Matcher::new(MatchOp::Regex, "instance", "node-1[0-9]").expect("regex"),
        Matcher::equal("cpu", "3"),
    ];
    g.throughput(Throughput::Elements(10 * 240));
    g.bench_function("10_series_last_hour", |b| {
        b.iter(|| {
            let got = db
                .select(&some, &SelectHints::range(end - 3_600_000, end))
                .expect("select");
            assert_eq!(got.len(), 10);
        })
    });
    g.finish();
}

fn bench_blocks(c: &mut Criterion) {
    const BLOCK_SERIES: usize = 200;
    const DAY: i64 = 5_760;
    let dir = tempfile::tempdir().expect("tempdir");
    let start = 1_700_000_000_000i64;
    let series: Vec<(Labels, Vec<Sample>)> = (0..BLOCK_SERIES)
        .map(|i| {
            let labels = Labels::from_pairs([
                ("__name__", "http_requests_total".to_string()),
                ("job", format!("svc{}", i % 7)),
                ("instance", format!("i{i}")),
            ]);
            let mut v = 0.0;
            let samples = (0..DAY)
                .map(|k| {
                    v += ((k * 7919 + i as i64) % 41) as f64;
                    Sample {
                        t: start + k * 15_000,
                        v,
                    }
                })
                .collect();
            (labels, samples)
        })
        .collect();
    let opts = TsdbOptions {
        compaction: false,
        ..TsdbOptions::default()
    };
    lookout_tsdb::backfill(dir.path(), series, opts.clone()).expect("backfill");
    let db = Tsdb::open(dir.path(), opts).expect("open");
    let end = start + DAY * 15_000;
    let all = [Matcher::equal("__name__", "http_requests_total")];
    let mut g = c.benchmark_group("select_blocks");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements((BLOCK_SERIES as i64 * DAY) as u64));
    g.bench_function("1.15M_samples_24h_200_series", |b| {
        b.iter(|| {
            let got = db
                .select(&all, &SelectHints::range(start, end))
                .expect("select");
            assert_eq!(got.len(), BLOCK_SERIES);
        })
    });
    g.finish();
}

criterion_group!(benches, bench_select, bench_blocks);
criterion_main!(benches);
