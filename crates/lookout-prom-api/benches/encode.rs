//! JSON encoding of query results: a range result of 1,000 series × 240 points (a 1h dashboard
//! panel at 15s resolution over many series) and an instant vector of 10,000 samples.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lookout_prom_api::query_data;
use lookout_promql::{InstantSample, Value};
use lookout_storage::{Labels, Sample, Series};

fn labels(i: usize) -> Labels {
    Labels::from_pairs([
        ("__name__", "http_requests_total".to_string()),
        ("instance", format!("10.0.{}.{}:8080", i / 250, i % 250)),
        ("job", "user-service".to_string()),
        (
            "method",
            if i.is_multiple_of(2) { "GET" } else { "POST" }.to_string(),
        ),
        ("status", "200".to_string()),
    ])
}

fn bench(c: &mut Criterion) {
    let matrix = Value::Matrix(
        (0..1000)
            .map(|i| Series {
                labels: labels(i),
                samples: (0..240)
                    .map(|j| Sample {
                        t: 1_700_000_000_000 + j * 15_000,
                        v: i as f64 * j as f64 * 0.37,
                    })
                    .collect(),
            })
            .collect(),
    );
    let vector = Value::Vector(
        (0..10_000)
            .map(|i| InstantSample {
                labels: labels(i),
                t: 1_700_000_000_123,
                v: i as f64 / 7.0,
            })
            .collect(),
    );
    let mut g = c.benchmark_group("json");
    g.throughput(Throughput::Elements(240_000));
    g.bench_function("matrix_1000x240", |b| b.iter(|| query_data(&matrix).len()));
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("vector_10000", |b| b.iter(|| query_data(&vector).len()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
