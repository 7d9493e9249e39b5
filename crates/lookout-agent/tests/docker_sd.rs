//! `docker_sd_configs` against a recorded-response Docker Engine API server on a unix socket
//! (no Docker engine runs on these machines): discovery, `__meta_docker_*` labels, filters,
//! and json-file records unwrapped as the API would deliver them.

mod common;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use common::*;
use parking_lot::Mutex;

#[derive(Clone)]
struct Engine {
    log_path: String,
    queries: Arc<Mutex<Vec<String>>>,
}

const ID: &str = "8dfafdbc3a40ab2c0d6ea31e6b0bd2e6b5c1d4c1ba3c9e1d5c8e1f8a7e3b2a10";

// Shapes as documented for Docker Engine API v1.43 (GET /containers/json, /containers/{id}/json).
async fn list(State(e): State<Engine>, RawQuery(q): RawQuery) -> impl IntoResponse {
    e.queries.lock().push(q.unwrap_or_default());
    let body = serde_json::json!([{
        "Id": ID,
        "Names": ["/wealist-user-service"],
        "Image": "wealist/user-service:latest",
        "ImageID": "sha256:1a2b",
        "Command": "/app/user-service",
        "Created": 1_767_000_000,
        "Ports": [{"PrivatePort": 8080, "PublicPort": 8080, "Type": "tcp"}],
        "Labels": {
            "com.docker.compose.project": "wealist",
            "com.docker.compose.service": "user-service",
            "com.docker.compose.oneoff": "False"
        },
        "State": "running",
        "Status": "Up 2 hours",
        "HostConfig": {"NetworkMode": "wealist_default"},
        "NetworkSettings": {"Networks": {"wealist_default": {
            "NetworkID": "f00dfeed", "IPAddress": "172.18.0.5", "Gateway": "172.18.0.1"
        }}},
        "Mounts": []
    }]);
    ([("content-type", "application/json")], body.to_string())
}

async fn inspect(State(e): State<Engine>, Path(id): Path<String>) -> impl IntoResponse {
    if id != ID {
        return (
            StatusCode::NOT_FOUND,
            format!("{{\"message\":\"No such container: {id}\"}}"),
        );
    }
    let body = serde_json::json!({
        "Id": ID,
        "Name": "/wealist-user-service",
        "LogPath": e.log_path,
        "Config": {"Labels": {"com.docker.compose.service": "user-service"}},
        "State": {"Running": true}
    });
    (StatusCode::OK, body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovers_containers_through_the_engine_api() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join(format!("{ID}-json.log"));
    append(
        &log,
        br#"{"log":"GET /api/users 200\n","stream":"stdout","time":"2026-01-02T03:04:05.000000001Z"}
{"log":"panic: boom\n","stream":"stderr","time":"2026-01-02T03:04:06Z"}
"#,
    );
    let sock = dir.path().join("docker.sock");
    let engine = Engine {
        log_path: log.display().to_string(),
        queries: Arc::default(),
    };
    let app = Router::new()
        .route("/containers/json", get(list))
        .route("/containers/{id}/json", get(inspect))
        .with_state(engine.clone());
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let rx = Receiver::start().await;
    let scrape = format!(
        "  - job_name: docker\n    docker_sd_configs:\n      - host: unix://{}\n        refresh_interval: 100ms\n        filters:\n          - name: label\n            values: ['com.docker.compose.project=wealist']\n    relabel_configs:\n      - source_labels: ['__meta_docker_container_name']\n        regex: '/(.*)'\n        target_label: container\n      - source_labels: ['__meta_docker_container_label_com_docker_compose_service']\n        target_label: compose_service\n      - source_labels: ['__meta_docker_network_ip']\n        target_label: ip\n",
        sock.display()
    );
    let agent = start_agent(&config_text(dir.path(), &rx.url(), &scrape, ""), false).await;
    rx.wait_for(10, "container lines", |l| l.len() == 2).await;
    let got = rx.got();
    assert_eq!(got[0].line, "GET /api/users 200");
    assert_eq!(got[0].ts, 1_767_323_045_000_000_001);
    assert_eq!(got[1].line, "panic: boom");
    for want in [
        r#"compose_service="user-service""#,
        r#"container="wealist-user-service""#,
        r#"ip="172.18.0.5""#,
    ] {
        assert!(
            got[0].labels.contains(want),
            "{} lacks {want}",
            got[0].labels
        );
    }
    assert!(!got[0].labels.contains("filename"), "{}", got[0].labels);
    let q = engine.queries.lock()[0].clone();
    assert!(q.starts_with("filters="), "{q}");
    assert!(q.contains("com.docker.compose.project%3Dwealist"), "{q}");
    agent.shutdown().await;
}

#[tokio::test]
async fn unreachable_socket_is_an_error_not_a_panic() {
    let cfg: lookout_agent::AgentConfig = lookout_agent::AgentConfig::parse(
        "scrape_configs:\n  - job_name: d\n    docker_sd_configs:\n      - host: unix:///nonexistent/docker.sock\n",
        &Default::default(),
    )
    .unwrap();
    let client = lookout_agent::docker_sd::DockerClient::new("unix:///nonexistent/docker.sock");
    let err = client
        .targets(&cfg.scrape_configs[0].docker_sd_configs[0])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/docker.sock"),
        "{err}"
    );
}
