//! Append throughput: batches of 1,000 samples to existing series with cached refs (a scrape
//! loop's steady state), and batches that create new series.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lookout_storage::{Appendable, Labels, SeriesRef};
use lookout_tsdb::{Tsdb, TsdbOptions};

const SERIES: usize = 10_000;
const BATCH: usize = 1_000;

fn labels(i: usize) -> Labels {
    Labels::from_pairs([
        ("__name__", "http_requests_total".to_string()),
        ("instance", format!("10.0.{}.{}:8080", i / 250, i % 250)),
        ("job", "api".to_string()),
        (
            "method",
            ["GET", "POST", "PUT", "DELETE"][i % 4].to_string(),
        ),
        ("status", ["200", "404", "500"][i % 3].to_string()),
    ])
}

fn bench_append(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Tsdb::open(dir.path(), TsdbOptions::default()).expect("open");
    let all: Vec<Labels> = (0..SERIES).map(labels).collect();
    let mut refs: Vec<SeriesRef> = Vec::with_capacity(SERIES);
    let mut app = db.appender();
    for l in &all {
        refs.push(app.append(None, l, 0, 0.0).expect("append"));
    }
    app.commit().expect("commit");

    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.measurement_time(Duration::from_secs(5));
    let mut t = 0i64;
    let mut off = 0usize;
    g.bench_function("existing_series_with_refs", |b| {
        b.iter(|| {
            // Each batch covers the next 1,000 series; a full pass advances the timestamp.
            if off == 0 {
                t += 15_000;
            }
            let mut app = db.appender();
            for i in off..off + BATCH {
                app.append(Some(refs[i]), &all[i], t, (t / 1000 + i as i64) as f64)
                    .expect("append");
            }
            app.commit().expect("commit");
            off = (off + BATCH) % SERIES;
        })
    });
    g.bench_function("existing_series_by_labels", |b| {
        b.iter(|| {
            if off == 0 {
                t += 15_000;
            }
            let mut app = db.appender();
            for (i, l) in all.iter().enumerate().skip(off).take(BATCH) {
                app.append(None, l, t, (t / 1000 + i as i64) as f64)
                    .expect("append");
            }
            app.commit().expect("commit");
            off = (off + BATCH) % SERIES;
        })
    });
    let mut next_new = 0usize;
    g.bench_function("new_series", |b| {
        b.iter(|| {
            let mut app = db.appender();
            for _ in 0..BATCH {
                let l = Labels::from_pairs([
                    ("__name__", "churn".to_string()),
                    ("id", next_new.to_string()),
                ]);
                next_new += 1;
                app.append(None, &l, t, 1.0).expect("append");
            }
            app.commit().expect("commit");
        })
    });
    g.finish();
    let st = db.stats();
    eprintln!(
        "after bench: {} series, {} samples, {} heap chunk bytes, {} mmapped chunk bytes",
        st.series, st.samples_appended, st.head_chunk_heap_bytes, st.mmapped_chunk_bytes
    );
}

criterion_group!(benches, bench_append);
criterion_main!(benches);
