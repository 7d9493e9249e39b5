//! Pipeline throughput on demo-style Docker json-file lines: docker + json + labels stages.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lookout_agent::stages::{CustomMetrics, Entry, Pipeline, StageConfig, parse_stages};

fn lines(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let inner = format!(
                "{{\"ts\":\"2026-11-01T10:00:{:02}.123Z\",\"level\":\"{}\",\"service\":\"user-service\",\"msg\":\"request completed\",\"method\":\"GET\",\"path\":\"/api/users/{}\",\"status\":200,\"duration_ms\":{}}}",
                i % 60,
                if i % 10 == 0 { "error" } else { "info" },
                i,
                i % 250
            );
            serde_json::json!({"log": format!("{inner}\n"), "stream": "stdout", "time": "2026-11-01T10:00:00.123456789Z"})
                .to_string()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let yaml = "- docker: {}\n- json:\n    expressions:\n      level: level\n      path: path\n- labels:\n    level:\n";
    let stages: Vec<StageConfig> = parse_stages(yaml).expect("stages");
    let metrics = CustomMetrics::default();
    let mut p = Pipeline::new(&stages, &mut metrics.clone()).expect("pipeline");
    let input = lines(10_000);
    let bytes: usize = input.iter().map(|l| l.len() + 1).sum();
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("docker_json_labels_10k", |b| {
        let mut out = Vec::with_capacity(input.len());
        b.iter(|| {
            out.clear();
            for l in &input {
                let e = Entry {
                    line: l.clone(),
                    ..Entry::default()
                };
                p.process(e, &metrics, &mut out, &mut |_, _| {});
            }
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
