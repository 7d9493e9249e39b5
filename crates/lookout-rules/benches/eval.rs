//! Rule evaluation benchmarks.

use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    c.bench_function("template_expand", |b| {
        let l = std::collections::BTreeMap::from([("job".to_string(), "api".to_string())]);
        let e = std::collections::BTreeMap::new();
        let t = lookout_rules::template::Template::parse(
            "b",
            "{{ $labels.job }} {{ $value | humanize }}",
        )
        .expect("valid template");
        b.iter(|| {
            t.expand(&lookout_rules::template::TemplateData {
                labels: &l,
                external_labels: &e,
                external_url: "",
                value: 1234.5,
                query: None,
            })
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
