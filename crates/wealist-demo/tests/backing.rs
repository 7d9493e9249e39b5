//! The user and board services on a real PostgreSQL and Redis (`LOOKOUT_TEST_PG_DSN`,
//! `LOOKOUT_TEST_REDIS_ADDR`; `bash scripts/db-servers.sh` starts both): rows in
//! `wealist.users`/`boards`, sessions and cached lists in Redis, scans in
//! `pg_stat_user_tables`. Skipped (with a SKIP line) when the servers are absent, unless
//! `CI=true`. And the stack unchanged when neither database answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{Api, start};
use serde_json::json;
use wealist_demo::ServiceKind;
use wealist_demo::backing::{Backing, CACHE_PREFIX, MAX_ITEMS_PER_BOARD, SESSION_PREFIX};

fn pg_dsn() -> String {
    std::env::var("LOOKOUT_TEST_PG_DSN")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".into())
}

fn redis_addr() -> String {
    std::env::var("LOOKOUT_TEST_REDIS_ADDR").unwrap_or_else(|_| "127.0.0.1:6379".into())
}

/// Value of the sample whose line starts with `series` exactly (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn host_port_of_dsn(dsn: &str) -> Option<String> {
    let rest = dsn.split_once("://")?.1;
    let host = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    let host = host.split(['/', '?']).next()?;
    Some(if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    })
}

async fn answers(addr: &str) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// `true` when both servers answer; otherwise prints SKIP (or fails under `CI=true`).
async fn servers_or_skip(test: &str) -> bool {
    let pg = host_port_of_dsn(&pg_dsn()).unwrap_or_default();
    let redis = redis_addr()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    if answers(&pg).await && answers(&redis).await {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: PostgreSQL at {pg} or Redis at {redis} does not answer (CI=true)"
    );
    eprintln!(
        "SKIP {test}: PostgreSQL at {pg} or Redis at {redis} does not answer (bash scripts/db-servers.sh starts both)"
    );
    false
}

async fn wealist_client() -> tokio_postgres::Client {
    let mut cfg: tokio_postgres::Config = pg_dsn().parse().expect("dsn");
    cfg.dbname("wealist");
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
}

async fn scans(pg: &tokio_postgres::Client) -> (i64, i64) {
    let row = pg
        .query_one(
            "SELECT coalesce(sum(seq_scan), 0)::bigint, coalesce(sum(idx_scan), 0)::bigint \
             FROM pg_stat_user_tables \
             WHERE relname IN ('users', 'workspaces', 'projects', 'boards', 'board_items')",
            &[],
        )
        .await
        .expect("pg_stat_user_tables");
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_write_to_postgres_and_redis() {
    if !servers_or_skip("services_write_to_postgres_and_redis").await {
        return;
    }
    let backing =
        Backing::connect(Some(&pg_dsn()), Some(&redis_addr()), Duration::from_secs(5)).await;
    assert!(backing.uses_postgres(), "{backing:?}");
    assert!(backing.uses_redis(), "{backing:?}");
    // Idempotent: a second bootstrap over the existing database and tables works too.
    let again = Backing::connect(Some(&pg_dsn()), None, Duration::from_secs(5)).await;
    assert!(again.uses_postgres());
    drop(again);

    let pg = wealist_client().await;
    let scans_before = scans(&pg).await;
    let redis = redis::Client::open(format!(
        "redis://{}",
        redis_addr().trim_start_matches("redis://")
    ))
    .expect("redis url");
    let mut rc = redis
        .get_multiplexed_async_connection()
        .await
        .expect("redis connect");

    let dir = tempfile::tempdir().expect("tempdir");
    let stack = start(dir.path(), Some(Arc::new(backing))).await;
    let api = Api::new(stack.clone());
    let tag = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();

    // Three users sign up and log in; the last one logs out again.
    let mut users = Vec::new();
    for i in 0..3 {
        let email = format!("backing-{tag}-{i}@example.com");
        let (st, body) = api
            .post(
                ServiceKind::User,
                "/api/users/signup",
                json!({"email": email, "name": format!("User {i}"), "password": "secret-pw-1"}),
            )
            .await;
        assert_eq!(st, 201, "{body}");
        let id = body["id"].as_str().expect("id").to_owned();
        let (st, body) = api
            .post(
                ServiceKind::User,
                "/api/users/login",
                json!({"email": email, "password": "secret-pw-1"}),
            )
            .await;
        assert_eq!(st, 200, "{body}");
        let (st, _) = api
            .get(ServiceKind::User, &format!("/api/workspaces?user_id={id}"))
            .await;
        assert_eq!(st, 200);
        let (st, body) = api
            .get(ServiceKind::User, &format!("/api/users/{id}"))
            .await;
        assert_eq!(st, 200, "{body}");
        users.push((id, email));
    }
    let (st, _) = api
        .post(
            ServiceKind::User,
            "/api/users/logout",
            json!({"user_id": users[2].0}),
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = api
        .get(ServiceKind::User, &format!("/api/users/{}", users[2].0))
        .await;
    assert_eq!(st, 200);
    let (st, body) = api
        .post(
            ServiceKind::User,
            "/api/workspaces",
            json!({"name": format!("ws-{tag}"), "owner_id": users[0].0}),
        )
        .await;
    assert_eq!(st, 201, "{body}");

    // A project with two boards; one board updated more often than its history keeps.
    let (st, body) = api
        .post(
            ServiceKind::Board,
            "/api/projects",
            json!({"name": format!("project-{tag}"), "owner_id": users[0].0}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let project = body["id"].as_str().expect("project id").to_owned();
    let mut boards = Vec::new();
    for i in 0..2 {
        let (st, body) = api
            .post(
                ServiceKind::Board,
                &format!("/api/projects/{project}/boards"),
                json!({"title": format!("board-{tag}-{i}")}),
            )
            .await;
        assert_eq!(st, 201, "{body}");
        boards.push(body["id"].as_str().expect("board id").to_owned());
    }
    let updates = MAX_ITEMS_PER_BOARD + 5;
    for i in 0..updates {
        let status = ["todo", "in_progress", "done"][i as usize % 3];
        let (st, body) = api
            .put(
                ServiceKind::Board,
                &format!("/api/boards/{}", boards[0]),
                json!({"status": status}),
            )
            .await;
        assert_eq!(st, 200, "{body}");
    }
    for b in &boards {
        let (st, _) = api
            .get(ServiceKind::Board, &format!("/api/boards/{b}"))
            .await;
        assert_eq!(st, 200);
    }
    for _ in 0..3 {
        let (st, body) = api
            .get(ServiceKind::Board, &format!("/api/projects/{project}"))
            .await;
        assert_eq!(st, 200, "{body}");
        let (st, body) = api.get(ServiceKind::Board, "/api/projects").await;
        assert_eq!(st, 200, "{body}");
    }

    // Rows in wealist.users, boards and board_items.
    for (_, email) in &users {
        let row = pg
            .query_one(
                "SELECT count(*), count(last_login) FROM users WHERE email = $1",
                &[email],
            )
            .await
            .expect("users");
        assert_eq!(
            (row.get::<_, i64>(0), row.get::<_, i64>(1)),
            (1, 1),
            "{email}"
        );
    }
    let n: i64 = pg
        .query_one(
            "SELECT count(*) FROM workspaces WHERE name = $1",
            &[&format!("ws-{tag}")],
        )
        .await
        .expect("workspaces")
        .get(0);
    assert_eq!(n, 1);
    let n: i64 = pg
        .query_one(
            "SELECT count(*) FROM projects WHERE name = $1",
            &[&format!("project-{tag}")],
        )
        .await
        .expect("projects")
        .get(0);
    assert_eq!(n, 1);
    let row = pg
        .query_one(
            "SELECT id, status FROM boards WHERE title = $1",
            &[&format!("board-{tag}-0")],
        )
        .await
        .expect("board row");
    let board_id: i64 = row.get(0);
    let last = ["todo", "in_progress", "done"][(updates - 1) as usize % 3];
    assert_eq!(row.get::<_, String>(1), last);
    let items: i64 = pg
        .query_one(
            "SELECT count(*) FROM board_items WHERE board_id = $1",
            &[&board_id],
        )
        .await
        .expect("items")
        .get(0);
    assert_eq!(items, MAX_ITEMS_PER_BOARD, "history trimmed to the newest");

    // Redis: sessions of the logged-in users (with a TTL), none for the logged-out one, and
    // the cached project list.
    for (i, (_, email)) in users.iter().enumerate() {
        let ttl: i64 = redis::cmd("TTL")
            .arg(format!("{SESSION_PREFIX}{email}"))
            .query_async(&mut rc)
            .await
            .expect("TTL");
        if i < 2 {
            assert!(ttl > 0 && ttl <= 600, "{email}: ttl {ttl}");
        } else {
            assert_eq!(ttl, -2, "{email} logged out");
        }
    }
    let cached: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{CACHE_PREFIX}board:projects:*"))
        .query_async(&mut rc)
        .await
        .expect("KEYS");
    assert!(!cached.is_empty());
    let cached: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{CACHE_PREFIX}board:project:*:{project}"))
        .query_async(&mut rc)
        .await
        .expect("KEYS");
    assert!(!cached.is_empty());

    // The service metrics count the calls, and none failed.
    let user_metrics = api.metrics(ServiceKind::User).await;
    let board_metrics = api.metrics(ServiceKind::Board).await;
    for (text, service) in [(&user_metrics, "user"), (&board_metrics, "board")] {
        for backend in ["postgres", "redis"] {
            let labels = format!("{{service=\"{service}\",backend=\"{backend}\"}}");
            let calls = sample(text, &format!("wealist_backing_calls_total{labels}"));
            assert!(
                calls.is_some_and(|c| c > 0.0),
                "{service}/{backend}: {text}"
            );
            let errors = sample(text, &format!("wealist_backing_errors_total{labels}"));
            assert!(
                errors.is_none_or(|e| e == 0.0),
                "{service}/{backend}: {text}"
            );
        }
    }

    // pg_stat_user_tables shows new sequential and index scans (statistics reach it within
    // about a second of the backends going idle).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = scans(&pg).await;
        if now.0 > scans_before.0 && now.1 > scans_before.1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no new scans: before {scans_before:?}, now {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_attached_after_start() {
    if !servers_or_skip("postgres_attached_after_start").await {
        return;
    }
    let backing = Arc::new(Backing::connect(None, None, Duration::from_secs(1)).await);
    assert!(!backing.uses_postgres());
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = start(dir.path(), Some(backing.clone())).await;
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    backing
        .attach_postgres_later(pg_dsn(), Duration::from_secs(30), stop_rx)
        .await
        .expect("attach task");
    assert!(backing.uses_postgres());
    let api = Api::new(stack.clone());
    let email = format!(
        "late-{}@example.com",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    );
    let (st, body) = api
        .post(
            ServiceKind::User,
            "/api/users/signup",
            json!({"email": email, "name": "Late", "password": "secret-pw-1"}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let pg = wealist_client().await;
    let n: i64 = pg
        .query_one("SELECT count(*) FROM users WHERE email = $1", &[&email])
        .await
        .expect("users")
        .get(0);
    assert_eq!(n, 1);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_databases_leave_the_services_unchanged() {
    // Nothing listens on port 1 of loopback.
    let t = Instant::now();
    let backing = Backing::connect(
        Some("postgresql://postgres@127.0.0.1:1/postgres"),
        Some("127.0.0.1:1"),
        Duration::from_secs(2),
    )
    .await;
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(!backing.uses_postgres() && !backing.uses_redis());

    let dir = tempfile::tempdir().expect("tempdir");
    let stack = start(dir.path(), Some(Arc::new(backing))).await;
    let api = Api::new(stack.clone());
    let t = Instant::now();
    let (st, body) = api
        .post(
            ServiceKind::User,
            "/api/users/signup",
            json!({"email": "nodb@example.com", "name": "No DB", "password": "secret-pw-1"}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let id = body["id"].as_str().expect("id").to_owned();
    let (st, _) = api
        .post(
            ServiceKind::User,
            "/api/users/login",
            json!({"email": "nodb@example.com", "password": "secret-pw-1"}),
        )
        .await;
    assert_eq!(st, 200);
    let (st, body) = api
        .get(ServiceKind::User, &format!("/api/users/{id}"))
        .await;
    assert_eq!(st, 200);
    assert_eq!(body["online"], true);
    let (st, body) = api
        .post(
            ServiceKind::Board,
            "/api/projects",
            json!({"name": "p", "owner_id": id}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let (st, body) = api.get(ServiceKind::Board, "/api/projects").await;
    assert_eq!(st, 200);
    assert_eq!(body["total"], 1);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let text = api.metrics(ServiceKind::User).await;
    assert!(!text.contains("wealist_backing_errors_total{"), "{text}");
    stack.shutdown().await;
}
