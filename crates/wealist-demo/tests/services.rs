//! The seven services over loopback: seed metric names, input validation, WebSockets,
//! streamed storage, faults, stop/restart, Docker-style logs, and `promtool check metrics`.

use std::time::Duration;

mod common;

use common::{Api, start};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wealist_demo::ServiceKind;

/// The value of the first sample of `series` (a name, optionally with a `{` label prefix).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.starts_with(series) && l[series.len()..].starts_with([' ', '{'])
                || l.starts_with(series) && series.ends_with('}')
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_behave_and_expose_the_seed_metrics() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let stack = start(tmp.path(), None).await;
    let api = Api::new(stack.clone());
    use ServiceKind::*;

    // user: sign up, log in, workspaces.
    let (s, v) = api
        .post(
            User,
            "/api/users/signup",
            json!({"email": "Ann@Example.com", "name": "Ann", "password": "correct horse"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let ann = v["id"].as_str().expect("id").to_owned();
    let (s, _) = api
        .post(
            User,
            "/api/users/signup",
            json!({"email": "ann@example.com", "name": "Ann", "password": "correct horse"}),
        )
        .await;
    assert_eq!(s, 409, "duplicate e-mail (case-insensitive)");
    let (s, v) = api
        .post(
            User,
            "/api/users/signup",
            json!({"email": "bob@example.com", "name": "Bob", "password": "hunter2hunter2"}),
        )
        .await;
    assert_eq!(s, 201);
    let bob = v["id"].as_str().expect("id").to_owned();
    let (s, _) = api
        .post(
            User,
            "/api/users/login",
            json!({"email": "ann@example.com", "password": "wrong password"}),
        )
        .await;
    assert_eq!(s, 401);
    let (s, v) = api
        .post(
            User,
            "/api/users/login",
            json!({"email": "ann@example.com", "password": "correct horse"}),
        )
        .await;
    assert_eq!((s, v["user_id"].as_str()), (200, Some(ann.as_str())));
    let (s, v) = api
        .post(
            User,
            "/api/workspaces",
            json!({"name": "Team", "owner_id": ann}),
        )
        .await;
    assert_eq!(s, 201);
    let ws = v["id"].as_str().expect("ws").to_owned();
    let (s, v) = api
        .post(
            User,
            &format!("/api/workspaces/{ws}/members"),
            json!({"user_id": bob}),
        )
        .await;
    assert_eq!((s, v["members"].as_u64()), (200, Some(2)));
    let (s, _) = api
        .post(
            User,
            &format!("/api/workspaces/{ws}/members"),
            json!({"user_id": bob}),
        )
        .await;
    assert_eq!(s, 409);
    let m = api.metrics(User).await;
    assert_eq!(sample(&m, "user_registrations_total"), Some(2.0));
    assert_eq!(sample(&m, "users_registered_total"), Some(2.0));
    assert_eq!(sample(&m, "user_logins_total"), Some(1.0));
    assert_eq!(sample(&m, "users_active_total"), Some(1.0));
    assert_eq!(sample(&m, "users_daily_active"), Some(1.0));
    assert_eq!(sample(&m, "users_monthly_active"), Some(1.0));
    assert_eq!(sample(&m, "workspaces_created_total"), Some(1.0));
    assert_eq!(sample(&m, "workspaces_total"), Some(1.0));
    assert_eq!(
        sample(
            &m,
            &format!("workspace_members_total{{workspace_id=\"{ws}\"}}")
        ),
        Some(2.0)
    );
    assert!(
        m.contains("http_requests_total{method=\"POST\",path=\"/api/workspaces/{id}/members\",status=\"409\"} 1"),
        "route templates, not raw paths:\n{m}"
    );

    // auth: Micrometer names and cache metrics.
    let (s, v) = api
        .post(Auth, "/api/auth/token", json!({"user_id": ann}))
        .await;
    assert_eq!(s, 200);
    let token = v["access_token"].as_str().expect("token").to_owned();
    let refresh = v["refresh_token"].as_str().expect("refresh").to_owned();
    for _ in 0..3 {
        let r = api
            .http
            .get(api.url(Auth, "/api/auth/verify"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("verify");
        assert_eq!(r.status().as_u16(), 200);
    }
    let r = api
        .http
        .get(api.url(Auth, "/api/auth/verify"))
        .bearer_auth("nope")
        .send()
        .await
        .expect("verify");
    assert_eq!(r.status().as_u16(), 401);
    let (s, _) = api
        .post(Auth, "/api/auth/refresh", json!({"refresh_token": refresh}))
        .await;
    assert_eq!(s, 200);
    let (s, _) = api
        .post(Auth, "/api/auth/refresh", json!({"refresh_token": refresh}))
        .await;
    assert_eq!(s, 401, "a refresh token is single-use");
    let m = api.metrics(Auth).await;
    assert_eq!(
        sample(&m, "cache_gets_total{cache=\"tokens\",result=\"hit\"}"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "cache_gets_total{cache=\"tokens\",result=\"miss\"}"),
        Some(2.0)
    );
    assert_eq!(sample(&m, "cache_puts_total{cache=\"tokens\"}"), Some(1.0));
    assert!(m.contains("http_server_requests_seconds_count{"), "{m}");
    assert!(m.contains("uri=\"/api/auth/verify\""));
    assert!(m.contains("exception=\"InvalidTokenException\""), "{m}");
    assert!(m.contains("outcome=\"CLIENT_ERROR\""));
    assert!(
        !m.contains("http_requests_total"),
        "auth uses Spring's names only"
    );
    assert!(!m.contains("jvm_"), "no fake JVM series");

    // board
    let (s, v) = api
        .post(
            Board,
            "/api/projects",
            json!({"name": "P", "owner_id": ann}),
        )
        .await;
    assert_eq!(s, 201);
    let p = v["id"].as_str().expect("project").to_owned();
    let (s, v) = api
        .post(
            Board,
            &format!("/api/projects/{p}/boards"),
            json!({"title": "Do it"}),
        )
        .await;
    assert_eq!(s, 201);
    let b = v["id"].as_str().expect("board").to_owned();
    let (s, v) = api
        .send(
            Board,
            reqwest::Method::PUT,
            &format!("/api/boards/{b}"),
            Some(r#"{"status":"done"}"#),
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("done")));
    let (s, _) = api
        .send(
            Board,
            reqwest::Method::PUT,
            &format!("/api/boards/{b}"),
            Some(r#"{"status":"sleeping"}"#),
        )
        .await;
    assert_eq!(s, 400);
    let m = api.metrics(Board).await;
    for (name, want) in [
        ("board_service_projects_total", 1.0),
        ("board_service_boards_total", 1.0),
        ("board_service_project_created_total", 1.0),
        ("board_service_board_created_total", 1.0),
    ] {
        assert_eq!(sample(&m, name), Some(want), "{name}");
    }

    // noti
    let (s, v) = api
        .post(
            Noti,
            "/api/notifications",
            json!({"user_id": ann, "title": "Hi"}),
        )
        .await;
    assert_eq!(s, 201);
    let n = v["id"].as_str().expect("id").to_owned();
    let (_, v) = api
        .get(
            Noti,
            &format!("/api/notifications?user_id={ann}&unread=true"),
        )
        .await;
    assert_eq!(v["unread"].as_u64(), Some(1));
    let (s, _) = api
        .post(Noti, &format!("/api/notifications/{n}/read"), json!({}))
        .await;
    assert_eq!(s, 200);
    let (_, v) = api
        .get(Noti, &format!("/api/notifications?user_id={ann}"))
        .await;
    assert_eq!(v["unread"].as_u64(), Some(0));
    let (s, _) = api
        .post(Noti, "/api/notifications/999/read", json!({}))
        .await;
    assert_eq!(s, 404);

    // video
    let (s, v) = api
        .post(Video, "/api/video/rooms", json!({"host_id": ann}))
        .await;
    assert_eq!(s, 201);
    let room = v["room_id"].as_str().expect("room").to_owned();
    let (s, _) = api
        .post(
            Video,
            &format!("/api/video/rooms/{room}/join"),
            json!({"user_id": bob}),
        )
        .await;
    assert_eq!(s, 200);
    let m = api.metrics(Video).await;
    assert_eq!(sample(&m, "video_rooms_active"), Some(1.0));
    assert_eq!(sample(&m, "video_participants_active"), Some(2.0));
    assert_eq!(sample(&m, "video_participants_total"), Some(2.0));
    assert_eq!(sample(&m, "video_daily_active_users"), Some(2.0));
    assert_eq!(sample(&m, "video_calls_started_total"), Some(1.0));
    for u in [&ann, &bob] {
        let (s, _) = api
            .post(
                Video,
                &format!("/api/video/rooms/{room}/leave"),
                json!({"user_id": u}),
            )
            .await;
        assert_eq!(s, 200);
    }
    let m = api.metrics(Video).await;
    assert_eq!(sample(&m, "video_rooms_active"), Some(0.0));
    assert_eq!(sample(&m, "video_participants_active"), Some(0.0));
    assert_eq!(sample(&m, "video_call_duration_seconds_count"), Some(1.0));

    // storage: a 3 MiB streamed upload and download.
    let size = 3 * 1024 * 1024 + 17;
    let chunks = futures_util::stream::iter((0..size).step_by(65_536).map(move |start| {
        let len = (size - start).min(65_536);
        Ok::<Vec<u8>, std::io::Error>((start..start + len).map(|i| (i % 251) as u8).collect())
    }));
    let r = api
        .http
        .put(api.url(Storage, "/api/files/report.bin"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status().as_u16(), 201);
    let body = api
        .http
        .get(api.url(Storage, "/api/files/report.bin"))
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(body.len(), size);
    assert!(body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    let m = api.metrics(Storage).await;
    assert_eq!(sample(&m, "storage_upload_bytes_total"), Some(size as f64));
    assert_eq!(
        sample(&m, "storage_download_bytes_total"),
        Some(size as f64)
    );
    let (s, _) = api
        .send(
            Storage,
            reqwest::Method::PUT,
            "/api/files/..secret",
            Some("x"),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = api.get(Storage, "/api/files/missing.bin").await;
    assert_eq!(s, 404);

    // Bad input: 400 with a JSON error body everywhere.
    for (k, method, path, body) in [
        (
            User,
            "POST",
            "/api/users/signup",
            r#"{"email":"x","name":"n","password":"12345678"}"#,
        ),
        (User, "POST", "/api/users/signup", "{not json"),
        (
            User,
            "POST",
            "/api/workspaces",
            r#"{"name":"","owner_id":"1"}"#,
        ),
        (User, "GET", "/api/users/abc", ""),
        (Auth, "POST", "/api/auth/token", r#"{"user_id":"a b"}"#),
        (Board, "POST", "/api/projects", r#"{"name":"x"}"#),
        (Board, "GET", "/api/boards/-3", ""),
        (
            Chat,
            "POST",
            "/api/chat/rooms/r1/messages",
            r#"{"user_id":"u","text":""}"#,
        ),
        (Chat, "GET", "/ws/chat?room=r1&user_id=u", ""),
        (Noti, "GET", "/api/notifications", ""),
        (
            Video,
            "POST",
            "/api/video/rooms/x/join",
            r#"{"user_id":"u"}"#,
        ),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let (s, v) = api
            .send(k, m, path, (!body.is_empty()).then_some(body))
            .await;
        assert_eq!(s, 400, "{k} {method} {path}: {v}");
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{k} {path}: {v}"
        );
    }
    // Odd methods and unknown paths do not hurt the instrumentation.
    let r = api
        .http
        .request(
            reqwest::Method::from_bytes(b"BREW").expect("m"),
            api.url(Noti, "/api/../../etc"),
        )
        .send()
        .await
        .expect("odd");
    assert!(r.status().is_client_error());
    let m = api.metrics(Noti).await;
    assert!(m.contains("path=\"unmatched\""), "{m}");

    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_survive_bad_frames_and_abrupt_disconnects() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let stack = start(tmp.path(), None).await;
    let api = Api::new(stack.clone());
    let ws_url = |user: &str| {
        format!(
            "ws://{}/ws/chat?room=lobby&user_id={user}",
            stack.addr(ServiceKind::Chat)
        )
    };

    let (mut a, _) = tokio_tungstenite::connect_async(ws_url("alice"))
        .await
        .expect("connect a");
    let (b, _) = tokio_tungstenite::connect_async(ws_url("bob"))
        .await
        .expect("connect b");
    let next_json = |m: Option<Result<Message, _>>| -> Value {
        match m {
            Some(Ok(Message::Text(t))) => serde_json::from_str(t.as_str()).expect("json frame"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    };
    assert_eq!(next_json(a.next().await)["type"], "joined");
    let m = api.metrics(ServiceKind::Chat).await;
    assert_eq!(sample(&m, "websocket_active_connections"), Some(2.0));
    assert_eq!(sample(&m, "websocket_connections_total"), Some(2.0));
    assert_eq!(sample(&m, "chat_rooms_active"), Some(1.0));

    // Malformed frames get an error frame; the connection stays usable.
    a.send(Message::Text("{{{ not json".into()))
        .await
        .expect("send");
    assert_eq!(next_json(a.next().await)["type"], "error");
    a.send(Message::Binary(vec![0xff, 0x00].into()))
        .await
        .expect("send");
    assert_eq!(next_json(a.next().await)["type"], "error");
    a.send(Message::Text(r#"{"type":"message","text":""}"#.into()))
        .await
        .expect("send");
    assert_eq!(next_json(a.next().await)["type"], "error");
    a.send(Message::Text(r#"{"type":"message","text":"hello"}"#.into()))
        .await
        .expect("send");
    let echo = next_json(a.next().await);
    assert_eq!(
        (
            echo["type"].as_str(),
            echo["text"].as_str(),
            echo["user_id"].as_str()
        ),
        (Some("message"), Some("hello"), Some("alice"))
    );
    // HTTP sends reach WebSocket listeners too.
    let (s, _) = api
        .post(
            ServiceKind::Chat,
            "/api/chat/rooms/lobby/messages",
            json!({"user_id": "carol", "text": "via http"}),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(next_json(a.next().await)["text"], "via http");

    // Abrupt disconnect (no close frame) and a clean close: the gauges come back down.
    drop(b);
    a.close(None).await.expect("close");
    eventually("active connections back to 0", || async {
        let m = api.metrics(ServiceKind::Chat).await;
        sample(&m, "websocket_active_connections") == Some(0.0)
            && sample(&m, "chat_rooms_active") == Some(0.0)
    })
    .await;
    let m = api.metrics(ServiceKind::Chat).await;
    assert_eq!(sample(&m, "chat_messages_sent_total"), Some(2.0));
    assert_eq!(sample(&m, "chat_daily_active_users"), Some(3.0));

    // A stop closes open WebSockets and releases their gauges with the old instance.
    let (mut c, _) = tokio_tungstenite::connect_async(ws_url("dave"))
        .await
        .expect("connect c");
    assert_eq!(next_json(c.next().await)["type"], "joined");
    assert!(stack.stop_service(ServiceKind::Chat).await);
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match c.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the socket is closed when the service stops"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_stop_restart_and_docker_logs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let stack = start(tmp.path(), None).await;
    let api = Api::new(stack.clone());

    // Injected 5xx: JSON body, counted by the metrics layer, Micrometer exception on auth.
    stack
        .faults(ServiceKind::Board)
        .inject_errors(1.0, Duration::from_secs(30));
    let (s, v) = api.get(ServiceKind::Board, "/api/projects").await;
    assert_eq!(s, 500);
    assert!(v["error"].as_str().is_some());
    let m = api.metrics(ServiceKind::Board).await;
    assert!(
        m.contains("http_requests_total{method=\"GET\",path=\"/api/projects\",status=\"500\"} 1"),
        "{m}"
    );
    stack.faults(ServiceKind::Board).clear();
    assert_eq!(api.get(ServiceKind::Board, "/api/projects").await.0, 200);
    stack
        .faults(ServiceKind::Auth)
        .inject_errors(1.0, Duration::from_secs(30));
    let (s, _) = api
        .post(
            ServiceKind::Auth,
            "/api/auth/token",
            json!({"user_id": "u1"}),
        )
        .await;
    assert_eq!(s, 500);
    let m = api.metrics(ServiceKind::Auth).await;
    assert!(
        m.contains("exception=\"DataAccessResourceFailureException\""),
        "{m}"
    );
    assert!(m.contains("outcome=\"SERVER_ERROR\""));

    // Slowness applies to the API, not to scrapes.
    stack
        .faults(ServiceKind::Noti)
        .inject_slowness(Duration::from_millis(400), Duration::from_secs(30));
    let t = std::time::Instant::now();
    api.get(ServiceKind::Noti, "/api/notifications?user_id=u1")
        .await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    let t = std::time::Instant::now();
    api.metrics(ServiceKind::Noti).await;
    assert!(t.elapsed() < Duration::from_millis(300));

    // Stop: connections refused; start: fresh state (counters reset, like a new container).
    let (s, _) = api
        .post(
            ServiceKind::Video,
            "/api/video/rooms",
            json!({"host_id": "h"}),
        )
        .await;
    assert_eq!(s, 201);
    assert!(stack.stop_service(ServiceKind::Video).await);
    assert!(!stack.stop_service(ServiceKind::Video).await);
    assert!(
        api.http
            .get(api.url(ServiceKind::Video, "/metrics"))
            .send()
            .await
            .is_err()
    );
    assert!(
        stack
            .start_service(ServiceKind::Video)
            .await
            .expect("restart")
    );
    let m = api.metrics(ServiceKind::Video).await;
    assert_eq!(sample(&m, "video_calls_started_total"), Some(0.0));

    // Docker json-file logs with compose metadata.
    stack.shutdown().await;
    let log = stack.log(ServiceKind::Board);
    let text = std::fs::read_to_string(log.log_path()).expect("log file");
    let mut saw_error = false;
    for line in text.lines() {
        let outer: Value = serde_json::from_str(line).expect("json-file line");
        let inner = outer["log"].as_str().expect("log");
        assert!(inner.ends_with('\n'));
        assert!(matches!(
            outer["stream"].as_str(),
            Some("stdout" | "stderr")
        ));
        assert!(outer["time"].as_str().is_some_and(|t| t.ends_with('Z')));
        let app: Value = serde_json::from_str(inner.trim_end()).expect("app json");
        assert_eq!(app["service"], "board-service");
        if app["status"] == 500 {
            saw_error = true;
            assert_eq!(app["level"], "error");
            assert_eq!(outer["stream"], "stderr");
            assert_eq!(app["path"], "/api/projects");
            assert!(app["trace_id"].as_str().is_some_and(|t| t.len() == 32));
            assert!(app["latency_ms"].is_number());
        }
    }
    assert!(saw_error, "{text}");
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(log.config_path()).expect("config"))
            .expect("json");
    assert_eq!(
        cfg["Config"]["Labels"]["com.docker.compose.service"],
        "board-service"
    );
    assert_eq!(
        cfg["Config"]["Labels"]["com.docker.compose.project"],
        "wealist"
    );
    assert_eq!(cfg["Name"], "/wealist-board-service");
    assert_eq!(cfg["State"]["Running"], false, "stopped at shutdown");
    let dir = log.log_path().parent().expect("dir").to_path_buf();
    assert_eq!(dir.parent(), Some(tmp.path().join("containers").as_path()));
    assert_eq!(dir.file_name().and_then(|n| n.to_str()), cfg["ID"].as_str());
}

/// `promtool check metrics` on every service's exposition. The seed's gauge names ending in
/// `_total` draw promtool's "non-counter metrics should not have _total suffix" lint; that is
/// the contract (exact seed names), so it is the only finding allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_check_metrics() {
    let Some(promtool) = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("promtool"))
            .find(|p| p.is_file())
    }) else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("promtool is required under CI=true");
        }
        println!("SKIP promtool_check_metrics: promtool not installed");
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let stack = start(tmp.path(), None).await;
    let api = Api::new(stack.clone());
    // Put data in the families first.
    let (_, v) = api
        .post(
            ServiceKind::User,
            "/api/users/signup",
            json!({"email": "a@b.co", "name": "A", "password": "12345678"}),
        )
        .await;
    let uid = v["id"].as_str().unwrap_or("1").to_owned();
    api.post(
        ServiceKind::User,
        "/api/users/login",
        json!({"email": "a@b.co", "password": "12345678"}),
    )
    .await;
    api.post(
        ServiceKind::User,
        "/api/workspaces",
        json!({"name": "W", "owner_id": uid}),
    )
    .await;
    api.post(
        ServiceKind::Auth,
        "/api/auth/token",
        json!({"user_id": "u"}),
    )
    .await;
    for k in ServiceKind::ALL {
        let text = api.metrics(k).await;
        let file = tmp.path().join(format!("{}.prom", k.name()));
        std::fs::write(&file, &text).expect("write exposition");
        let out = std::process::Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(std::fs::File::open(&file).expect("open"))
            .output()
            .expect("promtool runs");
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "promtool check metrics {k}: exit {:?}\n{report}",
            out.status.code()
        );
        for line in report.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                line.contains("non-counter metrics should not have \"_total\" suffix"),
                "{k}: unexpected promtool finding: {line}"
            );
        }
    }
    stack.shutdown().await;
}
