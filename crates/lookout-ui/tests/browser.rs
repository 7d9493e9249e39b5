//! Headless Chromium (Debian `chromium`, driven by playwright-core from npm) against the UI and
//! the real Prometheus API over an in-memory store seeded with two services' HTTP metrics.
//! Prints a SKIP line when chromium or playwright-core is missing; fails then under CI=true.

use std::path::Path;
use std::sync::Arc;

use lookout_storage::{Appendable, Labels, Queryable, memory::MemStorage};

fn skip(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("browser test cannot run under CI: {why}");
    }
    println!("SKIP ui browser test: {why}");
}

fn seed(store: &MemStorage) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let start = now - 3 * 3600 * 1000;
    let mut app = store.appender();
    let paths = [
        "/api/users",
        "/api/boards",
        "<img src=x onerror=\"window.__xss=3\">",
    ];
    for (si, job) in ["user-service", "board-service"].iter().enumerate() {
        let inst = format!("localhost:80{si}0");
        let mut t = start;
        let mut n = 0.0f64;
        while t <= now {
            n += 1.0;
            let up = Labels::from_pairs([("__name__", "up"), ("job", job), ("instance", &inst)]);
            app.append(None, &up, t, 1.0).unwrap();
            for (pi, path) in paths.iter().enumerate() {
                for (status, mult) in [("200", 10.0), ("500", 0.3)] {
                    let l = Labels::from_pairs([
                        ("__name__", "http_requests_total"),
                        ("job", job),
                        ("instance", &inst),
                        ("method", "GET"),
                        ("path", path),
                        ("status", status),
                    ]);
                    app.append(None, &l, t, n * mult * (pi + 1) as f64).unwrap();
                }
                for (le, frac) in [("0.1", 0.6), ("0.5", 0.9), ("2", 0.99), ("+Inf", 1.0)] {
                    let l = Labels::from_pairs([
                        ("__name__", "http_request_duration_seconds_bucket"),
                        ("job", job),
                        ("instance", &inst),
                        ("method", "GET"),
                        ("path", path),
                        ("le", le),
                    ]);
                    app.append(None, &l, t, n * 10.0 * frac).unwrap();
                }
            }
            let l = Labels::from_pairs([
                ("__name__", "http_requests_in_flight"),
                ("job", job),
                ("instance", &inst),
            ]);
            app.append(None, &l, t, (n % 7.0) + 1.0).unwrap();
            let l = Labels::from_pairs([
                ("__name__", "scrape_duration_seconds"),
                ("job", job),
                ("instance", &inst),
            ]);
            app.append(None, &l, t, 0.004).unwrap();
            t += 15_000;
        }
    }
    app.commit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_flows() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !Path::new("/usr/bin/chromium").exists() {
        return skip("/usr/bin/chromium is missing (apt-get install -y chromium)");
    }
    if !manifest.join("web/node_modules/playwright-core").is_dir() {
        return skip(
            "playwright-core is not installed in web/node_modules (npm ci in crates/lookout-ui/web)",
        );
    }
    let store = Arc::new(MemStorage::new());
    seed(&store);
    let q: Arc<dyn Queryable> = store.clone();
    let a: Arc<dyn Appendable> = store.clone();
    let registry = Arc::new(parking_lot::RwLock::new(
        prometheus_client::registry::Registry::default(),
    ));
    let prom = lookout_prom_api::router(lookout_prom_api::ApiState::new(
        lookout_promql::Engine::new(lookout_promql::EngineOptions::default()),
        q,
        a,
        registry,
    ));
    let data = tempfile::tempdir().unwrap();
    let ui = lookout_ui::UiState::open(lookout_ui::UiConfig {
        data_dir: data.path().to_path_buf(),
        provisioning_dir: Some(
            manifest.join("../../examples/wealist/docker/monitoring/grafana/provisioning"),
        ),
        ..lookout_ui::UiConfig::default()
    })
    .unwrap();
    assert!(
        ui.provisioning_errors().is_empty(),
        "{:?}",
        ui.provisioning_errors()
    );
    let app = lookout_ui::router(Arc::new(ui)).merge(prom);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let shots = std::env::var("LOOKOUT_SCREENSHOTS").unwrap_or_default();
    let out = tokio::process::Command::new("node")
        .arg(manifest.join("web/e2e/ui.mjs"))
        .arg(format!("http://{addr}"))
        .arg(&shots)
        .current_dir(manifest.join("web"))
        .output()
        .await
        .expect("running node");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "browser flows failed");
}
