//! Encoding cost of notification bodies.

use std::collections::BTreeMap;

use criterion::{Criterion, criterion_group, criterion_main};
use lookout_notifier::{Alert, payload};
use lookout_storage::Labels;

fn alerts(n: usize) -> Vec<Alert> {
    (0..n)
        .map(|i| Alert {
            labels: Labels::from_pairs([
                ("alertname".to_string(), format!("Alert{}", i % 5)),
                ("instance".to_string(), format!("host-{i}:9100")),
                ("severity".to_string(), "warning".to_string()),
            ]),
            annotations: BTreeMap::from([("summary".to_string(), format!("instance {i} is down"))]),
            starts_at: 1_700_000_000_000,
            ends_at: 1_700_000_240_000,
            generator_url: "http://localhost:9090/graph?g0.expr=up&g0.tab=1".into(),
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let a = alerts(256);
    c.bench_function("alertmanager_v2_256", |b| {
        b.iter(|| payload::alertmanager_v2(&a))
    });
    c.bench_function("webhook_groups_256", |b| {
        b.iter(|| payload::webhook_groups(&a, "http://hook", 1_700_000_100_000))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
