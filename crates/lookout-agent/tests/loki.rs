//! The weAlist example promtail-config.yml, unchanged, against the demo's container log
//! layout, pushing into Lookout's real log store through its Loki API; then
//! `{compose_service="user-service"}` returns exactly the user service's lines.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lookout_agent::{Agent, AgentConfig};
use lookout_logql::{EngineOptions, LogqlEngine};
use lookout_logstore::{LogStoreOptions, Tenants};
use lookout_loki_api::{LokiApi, LokiLimits};
use tokio::sync::watch;

fn container(root: &Path, service: &str, lines: &[&str]) {
    let id = format!("{:0>64}", service.len().to_string() + service);
    let id: String = id
        .chars()
        .map(|c| if c.is_ascii_hexdigit() { c } else { 'f' })
        .collect();
    let dir = root.join("containers").join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.v2.json"),
        serde_json::json!({
            "ID": id,
            "Name": format!("/wealist-{service}"),
            "Config": {"Image": format!("wealist/{service}:demo"), "Labels": {
                "com.docker.compose.project": "wealist",
                "com.docker.compose.service": service,
            }},
        })
        .to_string(),
    )
    .unwrap();
    let mut text = String::new();
    for l in lines {
        text.push_str(
            &serde_json::json!({"log": format!("{l}\n"), "stream": "stdout", "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)})
                .to_string(),
        );
        text.push('\n');
    }
    std::fs::write(dir.join(format!("{id}-json.log")), text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_config_compose_service_query() {
    let store = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let tenants = Arc::new(Tenants::open(store.path(), LogStoreOptions::default()).unwrap());
    let api = LokiApi::new(
        tenants,
        LogqlEngine::new(EngineOptions::default()),
        LokiLimits::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, lookout_loki_api::router(api)).await });

    container(
        data.path(),
        "user-service",
        &[
            r#"{"level":"info","msg":"user login"}"#,
            r#"{"level":"error","msg":"user db timeout"}"#,
        ],
    );
    container(
        data.path(),
        "board-service",
        &[r#"{"level":"info","msg":"board created"}"#],
    );

    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/wealist/docker/monitoring/promtail/promtail-config.yml");
    let vars = BTreeMap::from([(
        "LOOKOUT_DATA_DIR".to_string(),
        data.path().display().to_string(),
    )]);
    let mut cfg = AgentConfig::load(&example, &vars).unwrap();
    // Only where it pushes and keeps positions differ from the file.
    cfg.clients[0].url = format!("http://{addr}/loki/api/v1/push");
    cfg.clients[0].batchwait = lookout_agent::config::GoDuration(Duration::from_millis(50));
    cfg.positions.filename = data.path().join("positions.yaml").display().to_string();
    let agent = Agent::new(cfg, None).unwrap();
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(agent.run(None, rx));

    let now = lookout_agent::stages::now_ns();
    let (start, end) = (now - 3_600_000_000_000, now + 600_000_000_000);
    let query = |q: &str| {
        let url = format!(
            "http://{addr}/loki/api/v1/query_range?query={}&start={start}&end={end}&limit=100",
            q.bytes()
                .map(|b| if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                })
                .collect::<String>()
        );
        async move {
            let text = reqwest::get(url).await.unwrap().text().await.unwrap();
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or_else(|e| panic!("{e}: {text}"))
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let result = loop {
        let v = query(r#"{compose_service="user-service"}"#).await;
        let n: usize = v["data"]["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s["values"].as_array().map_or(0, Vec::len))
                    .sum()
            })
            .unwrap_or(0);
        if n >= 2 {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "user-service lines never arrived: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let streams = result["data"]["result"].as_array().unwrap();
    let mut lines = Vec::new();
    for s in streams {
        let labels = &s["stream"];
        assert_eq!(labels["compose_service"], "user-service");
        assert_eq!(labels["compose_project"], "wealist");
        assert_eq!(labels["container"], "wealist-user-service");
        assert_eq!(labels["stream"], "stdout");
        for v in s["values"].as_array().unwrap() {
            lines.push(v[1].as_str().unwrap().to_string());
        }
    }
    lines.sort();
    assert_eq!(
        lines,
        [
            r#"{"level":"error","msg":"user db timeout"}"#,
            r#"{"level":"info","msg":"user login"}"#
        ]
    );
    // The seed's other examples.
    let v = query(r#"{compose_service=~".+"} |= "error""#).await;
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 1, "{v}");
    let v = query(r#"{compose_service="board-service"} | json | level="info""#).await;
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 1, "{v}");
    let _ = tx.send(true);
    task.await.unwrap().unwrap();
}
