//! Relabelling throughput on a typical target label set with a Kubernetes-style pipeline.

use criterion::{Criterion, criterion_group, criterion_main};
use lookout_relabel::{RelabelConfig, process_builder_with, relabel};
use lookout_storage::Labels;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let labels = Labels::from_pairs([
        ("__address__", "10.1.2.3:8080"),
        ("__meta_kubernetes_namespace", "prod"),
        ("__meta_kubernetes_pod_label_app", "board-service"),
        ("__meta_kubernetes_pod_label_version", "v2"),
        ("__meta_kubernetes_pod_name", "board-service-7d9f-abcde"),
        ("__metrics_path__", "/metrics"),
        ("__scheme__", "http"),
        ("job", "kubernetes-pods"),
    ]);
    let configs: Vec<RelabelConfig> = match serde_yaml_ng::from_str(
        r#"
- source_labels: [__meta_kubernetes_namespace]
  regex: prod|staging
  action: keep
- regex: __meta_kubernetes_pod_label_(.+)
  action: labelmap
- source_labels: [__meta_kubernetes_pod_name]
  target_label: pod
- source_labels: [__address__]
  regex: '([^:]+):\d+'
  target_label: host
- source_labels: [__address__]
  modulus: 8
  target_label: __tmp_shard
  action: hashmod
"#,
    ) {
        Ok(c) => c,
        Err(e) => panic!("bench config: {e}"),
    };
    c.bench_function("relabel_target_pipeline", |b| {
        b.iter(|| relabel(black_box(&labels), &configs))
    });
    let mut scratch = String::new();
    c.bench_function("process_builder_reused_scratch", |b| {
        b.iter(|| {
            let mut lb = labels.builder();
            process_builder_with(&mut lb, &configs, &mut scratch)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
