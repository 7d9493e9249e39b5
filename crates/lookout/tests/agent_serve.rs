//! `lookout serve --config-dir DIR` with the weAlist example `promtail/promtail-config.yml`
//! (copied unchanged) runs the built-in agent on `<data-dir>/containers/*/*-json.log` and
//! pushes into the embedded Loki API: `{compose_service="user-service"}` returns the user
//! service's lines.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lookout_test_ports::free_port;

fn container(data: &Path, n: u8, service: &str, lines: &[&str]) {
    let id: String = std::iter::repeat_n(format!("{n:x}"), 64).collect();
    let dir = data.join("containers").join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.v2.json"),
        serde_json::json!({"ID": id, "Name": format!("/wealist-{service}"), "Config": {"Labels": {
            "com.docker.compose.project": "wealist", "com.docker.compose.service": service}}})
        .to_string(),
    )
    .unwrap();
    let mut text = String::new();
    for l in lines {
        // An empty `time` does not parse: the entry keeps the time it was read (now).
        text.push_str(
            &serde_json::json!({"log": format!("{l}\n"), "stream": "stdout", "time": ""})
                .to_string(),
        );
        text.push('\n');
    }
    std::fs::write(dir.join(format!("{id}-json.log")), text).unwrap();
}

#[test]
fn serve_runs_the_example_promtail_config() {
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(cfg.path().join("prometheus")).unwrap();
    std::fs::write(
        cfg.path().join("prometheus/prometheus.yml"),
        "scrape_configs: []\n",
    )
    .unwrap();
    std::fs::create_dir_all(cfg.path().join("promtail")).unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/wealist/docker/monitoring/promtail/promtail-config.yml");
    std::fs::copy(&example, cfg.path().join("promtail/promtail-config.yml")).unwrap();
    container(data.path(), 1, "user-service", &["user one", "user two"]);
    container(data.path(), 2, "board-service", &["board one"]);

    let loki = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .arg("serve")
        .arg("--config-dir")
        .arg(cfg.path())
        .arg("--data-dir")
        .arg(data.path())
        .args(["--prom-addr", "off", "--ui-addr", "off"])
        .arg("--loki-addr")
        .arg(format!("127.0.0.1:{loki}"))
        .env("LOOKOUT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let url = format!(
        "http://127.0.0.1:{loki}/loki/api/v1/query_range?query=%7Bcompose_service%3D%22user-service%22%7D&since=1h&limit=100"
    );
    let mut last = String::new();
    let lines = loop {
        if let Ok(body) = http::get(&url) {
            last = body.clone();
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
                let mut lines: Vec<String> = v["data"]["result"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
                    .filter_map(|v| v[1].as_str().map(str::to_string))
                    .collect();
                if lines.len() >= 2 {
                    lines.sort();
                    break lines;
                }
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("user-service lines never arrived; last answer: {last}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(lines, ["user one", "user two"]);
    // Positions live in the data directory when the agent runs inside serve.
    assert!(data.path().join("agent/positions.yaml").exists());
}

mod http {
    /// A tiny blocking GET over std (the crate's reqwest is async-only here).
    pub fn get(url: &str) -> std::io::Result<String> {
        use std::io::{Read, Write};
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut s = std::net::TcpStream::connect(host)?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)?;
        Ok(buf
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default())
    }
}
