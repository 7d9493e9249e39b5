//! Decode throughput of a realistic remote-write batch (2,000 series × 1 sample, 8 labels each).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lookout_remote_write::{
    Label, Sample, TimeSeries, WriteRequest, decode_write_request, encode_write_request,
    validate_labels,
};

fn batch() -> WriteRequest {
    let timeseries = (0..2000)
        .map(|i| TimeSeries {
            labels: vec![
                Label::new("__name__", "http_request_duration_seconds_bucket"),
                Label::new("instance", format!("10.0.{}.{}:8080", i / 250, i % 250)),
                Label::new("job", "user-service"),
                Label::new("le", format!("{}", (i % 12) as f64 * 0.25)),
                Label::new("method", if i % 2 == 0 { "GET" } else { "POST" }),
                Label::new("path", format!("/api/v1/items/{}", i % 40)),
                Label::new("status", "200"),
                Label::new("zone", "ap-northeast-2a"),
            ],
            samples: vec![Sample {
                value: i as f64 * 1.5,
                timestamp: 1_700_000_000_000 + i,
            }],
            exemplars: vec![],
            histograms: vec![],
        })
        .collect();
    WriteRequest {
        timeseries,
        metadata: vec![],
    }
}

fn bench(c: &mut Criterion) {
    let body = encode_write_request(&batch()).expect("bench batch is small");
    let mut g = c.benchmark_group("remote_write");
    g.throughput(Throughput::Elements(2000));
    g.bench_function("decode_2000_series", |b| {
        b.iter(|| decode_write_request(&body).expect("valid body"))
    });
    g.bench_function("decode_and_validate_2000_series", |b| {
        b.iter(|| {
            let req = decode_write_request(&body).expect("valid body");
            req.timeseries
                .iter()
                .map(|ts| validate_labels(&ts.labels).map(|l| l.len()).unwrap_or(0))
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
