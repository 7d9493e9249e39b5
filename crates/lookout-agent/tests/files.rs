//! End-to-end: files on disk → agent → an in-process Loki push receiver.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_layout_gets_compose_labels() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let id = "a".repeat(64);
    let cdir = dir.path().join("containers").join(&id);
    std::fs::create_dir_all(&cdir).unwrap();
    std::fs::write(
        cdir.join("config.v2.json"),
        format!(r#"{{"ID":"{id}","Name":"/wealist-user-service","Config":{{"Labels":{{"com.docker.compose.service":"user-service","com.docker.compose.project":"wealist"}}}}}}"#),
    )
    .unwrap();
    let log = cdir.join(format!("{id}-json.log"));
    append(
        &log,
        br#"{"log":"{\"level\":\"info\",\"msg\":\"hello\"}\n","stream":"stdout","time":"2026-01-02T03:04:05.123456789Z"}
"#,
    );
    let scrape = format!(
        "  - job_name: docker\n    static_configs:\n      - targets: [localhost]\n        labels:\n          __path__: {}/containers/*/*-json.log\n    relabel_configs:\n      - source_labels: ['__meta_docker_container_name']\n        regex: '/(.*)'\n        target_label: container\n      - source_labels: ['__meta_docker_container_label_com_docker_compose_service']\n        target_label: compose_service\n      - source_labels: ['__meta_docker_container_label_com_docker_compose_project']\n        target_label: compose_project\n    pipeline_stages:\n      - docker: {{}}\n      - json:\n          expressions:\n            level:\n      - labels:\n          level:\n",
        dir.path().display()
    );
    let agent = start_agent(&config_text(dir.path(), &rx.url(), &scrape, ""), false).await;
    rx.wait_for(10, "the docker line", |l| l.len() == 1).await;
    let got = rx.got();
    assert_eq!(got[0].line, r#"{"level":"info","msg":"hello"}"#);
    assert_eq!(got[0].ts, 1_767_323_045_123_456_789);
    let labels = &got[0].labels;
    for want in [
        r#"compose_service="user-service""#,
        r#"compose_project="wealist""#,
        r#"container="wealist-user-service""#,
        r#"stream="stdout""#,
        r#"level="info""#,
    ] {
        assert!(labels.contains(want), "{labels} lacks {want}");
    }
    assert!(!labels.contains("__"), "{labels}");
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_rename_and_create_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let log = dir.path().join("app.log");
    append(&log, numbered("a", 0..500).as_bytes());
    let agent = start_agent(
        &config_text(
            dir.path(),
            &rx.url(),
            &file_job(&dir.path().join("*.log")),
            "",
        ),
        false,
    )
    .await;
    rx.wait_for(10, "first lines", |l| l.len() >= 100).await;
    // Rename while the writer still has lines to add to the old file, then create anew.
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    append(
        &dir.path().join("app.log.1"),
        numbered("a", 500..600).as_bytes(),
    );
    append(&log, numbered("b", 0..300).as_bytes());
    rx.wait_for(10, "all lines", |l| l.len() >= 900).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut lines = rx.lines();
    assert_eq!(lines.len(), 900, "duplicates or extra lines");
    lines.sort();
    let mut want: Vec<String> = numbered("a", 0..600)
        .lines()
        .chain(numbered("b", 0..300).lines())
        .map(str::to_string)
        .collect();
    want.sort();
    assert_eq!(lines, want);
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_rereads_from_start() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let log = dir.path().join("app.log");
    append(&log, numbered("old", 0..200).as_bytes());
    let agent = start_agent(
        &config_text(
            dir.path(),
            &rx.url(),
            &file_job(&dir.path().join("*.log")),
            "",
        ),
        false,
    )
    .await;
    rx.wait_for(10, "old lines", |l| l.len() == 200).await;
    std::fs::copy(&log, dir.path().join("app.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    append(&log, numbered("new", 0..50).as_bytes());
    rx.wait_for(10, "new lines", |l| {
        l.iter().filter(|x| x.starts_with("new")).count() == 50
    })
    .await;
    agent.shutdown().await;
    assert_eq!(rx.lines().len(), 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_line_waits_for_its_newline() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let log = dir.path().join("app.log");
    append(&log, b"first\nhalf a ");
    let agent = start_agent(
        &config_text(
            dir.path(),
            &rx.url(),
            &file_job(&dir.path().join("*.log")),
            "",
        ),
        false,
    )
    .await;
    rx.wait_for(10, "first", |l| l.len() == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.lines(), vec!["first"]);
    // The position covers only the complete line.
    let pos = positions(dir.path());
    assert!(pos.contains("'6'") || pos.contains("\"6\""), "{pos}");
    append(&log, b"line\r\n");
    rx.wait_for(10, "joined line", |l| l.len() == 2).await;
    assert_eq!(rx.lines()[1], "half a line");
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_positions_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let log = dir.path().join("app.log");
    append(&log, numbered("x", 0..100).as_bytes());
    let text = config_text(
        dir.path(),
        &rx.url(),
        &file_job(&dir.path().join("*.log")),
        "",
    );
    let agent = start_agent(&text, false).await;
    rx.wait_for(10, "first run", |l| l.len() == 100).await;
    agent.shutdown().await;
    let size = std::fs::metadata(&log).unwrap().len();
    assert!(positions(dir.path()).contains(&size.to_string()));
    append(&log, numbered("x", 100..150).as_bytes());
    let agent = start_agent(&text, false).await;
    rx.wait_for(10, "second run", |l| l.len() >= 150).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        rx.lines(),
        numbered("x", 0..150).lines().collect::<Vec<_>>()
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_outage_pauses_reading_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.set_status(Some(503));
    let log = dir.path().join("app.log");
    // ~40 MB: far more than the queue and one batch hold.
    let line = format!("{}\n", "y".repeat(200));
    let mut blob = String::new();
    for i in 0..200_000 {
        blob.push_str(&format!("{i:08} "));
        blob.push_str(&line);
    }
    append(&log, blob.as_bytes());
    let size = std::fs::metadata(&log).unwrap().len();
    let agent = start_agent(
        &config_text(
            dir.path(),
            &rx.url(),
            &file_job(&dir.path().join("*.log")),
            "",
        ),
        true,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Reading paused: far less than the file is read while nothing is acknowledged.
    let t: serde_json::Value =
        reqwest::get(format!("http://{}/api/v1/targets", agent.http.unwrap()))
            .await
            .unwrap()
            .text()
            .await
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap();
    let read = t["data"][0]["read_offset"].as_u64().unwrap();
    assert!(
        read < size / 4,
        "read {read} of {size} bytes while the server is down"
    );
    assert!(positions(dir.path()).contains(": '0'") || positions(dir.path()).contains(": \"0\""));
    let m = metrics(agent.http.unwrap()).await;
    assert!(m.contains("promtail_batch_retries_total{host="), "{m}");
    rx.set_status(None);
    rx.wait_for(60, "every line after the outage", |l| l.len() >= 200_000)
        .await;
    let mut lines = rx.lines();
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), 200_000);
    // The reader reports the outage as time blocked on delivery.
    let m = metrics(agent.http.unwrap()).await;
    let blocked: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix(r#"lookout_agent_reader_blocked_seconds_total{job="files"} "#))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no reader_blocked_seconds in\n{m}"));
    assert!(blocked >= 1.0, "blocked {blocked} s during a 1.5 s outage");
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_then_server_appears() {
    let dir = tempfile::tempdir().unwrap();
    // Reserve a port, then free it: nothing listens there at first.
    let port = std::net::SocketAddr::from(([127, 0, 0, 1], lookout_test_ports::free_port()));
    let url = format!("http://{port}/loki/api/v1/push");
    let log = dir.path().join("app.log");
    append(&log, numbered("z", 0..1000).as_bytes());
    let agent = start_agent(
        &config_text(dir.path(), &url, &file_job(&dir.path().join("*.log")), ""),
        false,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rx = Receiver::start_on(port).await;
    rx.wait_for(20, "lines after the server appeared", |l| l.len() >= 1000)
        .await;
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_request_is_dropped_counted_and_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.set_status(Some(400));
    let log = dir.path().join("app.log");
    append(&log, numbered("r", 0..10).as_bytes());
    let agent = start_agent(
        &config_text(
            dir.path(),
            &rx.url(),
            &file_job(&dir.path().join("*.log")),
            "",
        ),
        true,
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let size = std::fs::metadata(&log).unwrap().len();
    while !positions(dir.path()).contains(&format!("'{size}'")) {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            positions(dir.path())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let requests = rx.state.lock().requests;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.state.lock().requests, requests, "a 400 was retried");
    let m = metrics(agent.http.unwrap()).await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("promtail_dropped_entries_total")
                && l.contains("reason=\"rejected_400\"")
                && l.ends_with(" 10")),
        "{m}"
    );
    // The server recovers: later lines go through.
    rx.set_status(None);
    append(&log, b"after\n");
    rx.wait_for(10, "the next line", |l| l == ["after"]).await;
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_positions_start_from_end() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    std::fs::write(
        dir.path().join("positions.yaml"),
        b"positions: {\x00\xff broken",
    )
    .unwrap();
    let log = dir.path().join("app.log");
    append(&log, numbered("before", 0..10).as_bytes());
    let agent = start_agent(
        &config_text(
            dir.path(),
            &rx.url(),
            &file_job(&dir.path().join("*.log")),
            "",
        ),
        false,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&log, b"after\n");
    rx.wait_for(10, "the new line", |l| !l.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.lines(), vec!["after"]);
    agent.shutdown().await;
    // The positions file is valid again.
    assert!(positions(dir.path()).starts_with("positions:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_and_long_lines() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let log = dir.path().join("app.log");
    let mut data = b"ok \xff\xfe bytes\n\x00\x01binary\n".to_vec();
    data.extend(std::iter::repeat_n(b'L', 5000));
    data.extend(b"\nshort\n");
    data.extend(std::iter::repeat_n(b'M', 3000));
    data.extend(b"\nend\n");
    append(&log, &data);
    let extra = "limits_config:\n  max_line_size: 1000\n  max_line_size_truncate: true\n";
    let agent = start_agent(
        &config_text(
            dir.path(),
            &rx.url(),
            &file_job(&dir.path().join("*.log")),
            extra,
        ),
        true,
    )
    .await;
    rx.wait_for(10, "all lines", |l| l.len() == 6).await;
    let lines = rx.lines();
    assert_eq!(lines[0], "ok \u{fffd}\u{fffd} bytes");
    assert_eq!(lines[1], "\u{0}\u{1}binary");
    assert_eq!(lines[2], "L".repeat(1000));
    assert_eq!(lines[3], "short");
    assert_eq!(lines[4], "M".repeat(1000));
    assert_eq!(lines[5], "end");
    let m = metrics(agent.http.unwrap()).await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("lookout_agent_truncated_lines_total") && l.ends_with(" 2")),
        "{m}"
    );
    assert!(
        m.lines()
            .any(|l| l.starts_with("lookout_agent_invalid_utf8_lines_total") && l.ends_with(" 1")),
        "{m}"
    );
    agent.shutdown().await;

    // Without truncation, long lines are dropped and counted.
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let log = dir.path().join("app.log");
    append(&log, &data);
    let extra = "limits_config:\n  max_line_size: 1000\n";
    let agent = start_agent(
        &config_text(
            dir.path(),
            &rx.url(),
            &file_job(&dir.path().join("*.log")),
            extra,
        ),
        true,
    )
    .await;
    rx.wait_for(10, "short lines", |l| l.len() == 4).await;
    assert_eq!(rx.lines()[2..], ["short", "end"]);
    let m = metrics(agent.http.unwrap()).await;
    assert!(
        m.lines().any(|l| l.contains("reason=\"line_too_long\"")
            && l.starts_with("promtail_dropped_entries_total")
            && l.ends_with(" 2")),
        "{m}"
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_appear_and_disappear_and_exclude() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let scrape = format!(
        "  - job_name: files\n    static_configs:\n      - labels:\n          __path__: {}/*.log\n          __path_exclude__: {}/skip*.log\n",
        dir.path().display(),
        dir.path().display()
    );
    let agent = start_agent(&config_text(dir.path(), &rx.url(), &scrape, ""), true).await;
    append(&dir.path().join("one.log"), b"one\n");
    append(&dir.path().join("skip-me.log"), b"skipped\n");
    rx.wait_for(10, "one", |l| l == ["one"]).await;
    append(&dir.path().join("two.log"), b"two\n");
    rx.wait_for(10, "two", |l| l.len() == 2).await;
    std::fs::remove_file(dir.path().join("one.log")).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let t: serde_json::Value =
        reqwest::get(format!("http://{}/api/v1/targets", agent.http.unwrap()))
            .await
            .unwrap()
            .text()
            .await
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap();
    let paths: Vec<&str> = t["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths.len(), 1, "{t}");
    assert!(paths[0].ends_with("two.log"));
    assert!(!positions(dir.path()).contains("one.log"));
    assert!(!rx.lines().contains(&"skipped".to_string()));
    let labels = &rx.got()[0].labels;
    assert!(labels.contains("filename="), "{labels}");
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readline_rate_and_max_streams_limits() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    append(&dir.path().join("a.log"), numbered("a", 0..50).as_bytes());
    append(&dir.path().join("b.log"), numbered("b", 0..5).as_bytes());
    let extra = "limits_config:\n  readline_rate_enabled: true\n  readline_rate: 1\n  readline_burst: 20\n  readline_rate_drop: true\n  max_streams: 1\n";
    let agent = start_agent(
        &config_text(
            dir.path(),
            &rx.url(),
            &file_job(&dir.path().join("*.log")),
            extra,
        ),
        true,
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = metrics(agent.http.unwrap()).await;
        let dropped: u64 = m
            .lines()
            .filter(|l| l.starts_with("promtail_dropped_entries_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        if dropped + rx.lines().len() as u64 >= 55 {
            assert!(m.contains("reason=\"readline_rate_limited\""), "{m}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = rx.lines();
    // At most the burst (plus a token or two of refill) got through, from one stream only.
    assert!(lines.len() <= 22 && !lines.is_empty(), "{}", lines.len());
    let streams: std::collections::HashSet<String> =
        rx.got().into_iter().map(|g| g.labels).collect();
    assert_eq!(streams.len(), 1);
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_external_labels_tenant_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    append(&dir.path().join("a.log"), b"one\n");
    let text = config_text(dir.path(), &rx.url(), &file_job(&dir.path().join("*.log")), "")
        .replace(
            "    batchwait: 50ms\n",
            "    batchwait: 50ms\n    tenant_id: team-a\n    bearer_token: s3cret\n    external_labels:\n      cluster: dev\n      job: overridden-not\n",
        );
    let agent = start_agent(&text, false).await;
    rx.wait_for(10, "the line", |l| l.len() == 1).await;
    let got = rx.got();
    assert!(
        got[0].labels.contains(r#"cluster="dev""#),
        "{}",
        got[0].labels
    );
    // A label the entry already has wins over the external one.
    assert!(
        got[0].labels.contains(r#"job="varlogs""#),
        "{}",
        got[0].labels
    );
    let (auth, tenant) = {
        let st = rx.state.lock();
        (st.auth[0].clone(), st.tenant[0].clone())
    };
    assert_eq!(auth.as_deref(), Some("Bearer s3cret"));
    assert_eq!(tenant.as_deref(), Some("team-a"));
    agent.shutdown().await;
}
