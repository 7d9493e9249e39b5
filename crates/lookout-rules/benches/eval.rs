//! Rule evaluation benchmarks: template expansion, and one evaluation of the seed's five
//! alerts (alerts.yml) over an in-memory store shaped like the demo (7 services × 6 paths ×
//! 4 statuses of `http_requests_total`, 12-bucket duration histograms, 10 minutes at 15 s).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use lookout_rules::group::{EvalEnv, Group};
use lookout_rules::{Language, PromqlQuerier, Queriers};
use lookout_storage::memory::MemStorage;
use lookout_storage::{Appendable, Labels};

const S: i64 = 1000;

fn store() -> Arc<MemStorage> {
    let st = Arc::new(MemStorage::new());
    let jobs = ["user", "board", "chat", "noti", "storage", "video", "auth"];
    let paths = ["/a", "/b", "/c", "/d", "/e", "/f"];
    let les = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ];
    let mut app = st.appender();
    for step in 0..=40i64 {
        let t = step * 15 * S;
        for (ji, job) in jobs.iter().enumerate() {
            let job = format!("{job}-service");
            for path in paths {
                for (si, status) in ["200", "201", "404", "500"].iter().enumerate() {
                    let l = Labels::from_pairs([
                        ("__name__", "http_requests_total"),
                        ("job", job.as_str()),
                        ("method", "GET"),
                        ("path", path),
                        ("status", status),
                    ]);
                    let v = (step * (10 + ji as i64 + si as i64)) as f64;
                    let _ = app.append(None, &l, t, v);
                }
                for (li, le) in les.iter().enumerate() {
                    let l = Labels::from_pairs([
                        ("__name__", "http_request_duration_seconds_bucket"),
                        ("job", job.as_str()),
                        ("method", "GET"),
                        ("path", path),
                        ("le", le),
                    ]);
                    let _ = app.append(None, &l, t, (step * (li as i64 + 1)) as f64);
                }
            }
            let up = Labels::from_pairs([("__name__", "up"), ("job", job.as_str())]);
            let _ = app.append(None, &up, t, 1.0);
        }
    }
    let _ = app.commit();
    st
}

fn bench(c: &mut Criterion) {
    c.bench_function("template_expand", |b| {
        let l = BTreeMap::from([("job".to_string(), "api".to_string())]);
        let e = BTreeMap::new();
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

    let alerts = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/wealist/docker/monitoring/prometheus/rules/alerts.yml");
    let file = lookout_rules::file::load_file(&alerts, Language::Promql).expect("alerts.yml");
    let st = store();
    let queriers = Queriers {
        promql: Some(Arc::new(PromqlQuerier {
            engine: lookout_promql::Engine::new(lookout_promql::EngineOptions::default()),
            storage: st.clone(),
        })),
        logql: None,
    };
    let out = Arc::new(MemStorage::new());
    let ext = BTreeMap::new();
    let mut groups: Vec<Group> = file
        .groups
        .iter()
        .map(|g| Group::new(g, 15 * S, 0))
        .collect();
    let mut ts = 10 * 60 * S;
    c.bench_function("seed_alerts_eval_all_groups", |b| {
        b.iter(|| {
            ts += 1;
            let env = EvalEnv {
                queriers: &queriers,
                appendable: out.as_ref(),
                restore_from: None,
                outage_tolerance_ms: 3_600_000,
                for_grace_period_ms: 600_000,
                sink: None,
                external_labels: &ext,
                external_url: "http://localhost:9090",
                resend_delay_ms: 60_000,
            };
            for g in &mut groups {
                g.eval(ts, &env);
            }
        })
    });
    // What was measured evaluated cleanly.
    for g in &groups {
        for r in &g.rules {
            assert_eq!(r.health.as_str(), "ok", "{}: {:?}", r.name(), r.last_error);
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
