//! ~1M in-memory JSON log lines over one hour in 8 streams; a range query over the hour
//! (step 5m) scans every line once.
//! `needle_json_sum`: `sum by (level) (count_over_time({..} |= "needle" | json [5m]))`;
//! `needle_only`: the same without the json stage (line filter speed).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lookout_logql::{EngineOptions, LogqlEngine, QueryValue};
use lookout_storage::Labels;
use lookout_storage::logs::{Direction, LogEntry, MemLogStore};

const LINES: usize = 1_000_000;
const STREAMS: usize = 8;
const HOUR_NS: i64 = 3_600_000_000_000;

fn store() -> MemLogStore {
    let s = MemLogStore::new();
    let levels = ["info", "warn", "error", "debug"];
    let per = LINES / STREAMS;
    for st in 0..STREAMS {
        let labels =
            Labels::from_pairs([("app", "bench".to_string()), ("pod", format!("pod-{st}"))]);
        let entries = (0..per).map(|i| {
            let n = st * per + i;
            let needle = if n.is_multiple_of(10) { " needle" } else { "" };
            LogEntry::new(
                (i as i64) * (HOUR_NS / per as i64),
                format!(
                    r#"{{"level":"{}","msg":"request handled{needle}","path":"/api/v1/items/{}","status":{},"duration_ms":{}}}"#,
                    levels[n % 4],
                    n % 1000,
                    200 + (n % 5) * 100,
                    n % 250
                ),
            )
        });
        s.push_all(&labels, entries);
    }
    s
}

fn bench(c: &mut Criterion) {
    let s = store();
    let engine = LogqlEngine::new(EngineOptions::default());
    let run = |q: &str| {
        let v = engine
            .query_range(
                &s,
                q,
                0,
                HOUR_NS,
                Duration::from_secs(300),
                None,
                Direction::Forward,
                100,
            )
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        match v {
            QueryValue::Matrix(m) => m.len(),
            _ => 0,
        }
    };
    let mut g = c.benchmark_group("logql_1M_lines");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(LINES as u64));
    g.bench_function("needle_json_sum", |b| {
        b.iter(|| {
            black_box(run(
                r#"sum by (level) (count_over_time({app="bench"} |= "needle" | json [5m]))"#,
            ))
        })
    });
    g.bench_function("needle_only", |b| {
        b.iter(|| {
            black_box(run(
                r#"sum(count_over_time({app="bench"} |= "needle" [5m]))"#,
            ))
        })
    });
    g.bench_function("json_all_lines", |b| {
        b.iter(|| {
            black_box(run(
                r#"sum by (level) (count_over_time({app="bench"} | json [5m]))"#,
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
