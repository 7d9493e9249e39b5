//! `lookout agent` as a process: killed with SIGKILL while a writer appends, restarted, and
//! no line is lost (duplicates are allowed only for batches in flight at the kill).

use std::collections::HashSet;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use parking_lot::Mutex;

type Lines = Arc<Mutex<Vec<String>>>;

async fn push(State(lines): State<Lines>, body: Bytes) -> StatusCode {
    match lookout_agent::proto::decode_push_request(&body, 64 << 20) {
        Ok(req) => {
            let mut l = lines.lock();
            for s in req.streams {
                l.extend(s.entries.into_iter().map(|e| e.line));
            }
            StatusCode::NO_CONTENT
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

fn spawn_agent(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["agent", "--config"])
        .arg(config)
        .args(["--http-addr", "off"])
        .env("LOOKOUT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start lookout agent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_loses_no_line() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Lines = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/loki/api/v1/push", post(push))
        .with_state(lines.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let log = dir.path().join("app.log");
    let config = dir.path().join("promtail.yml");
    std::fs::write(
        &config,
        format!(
            "server:\n  http_listen_port: 0\npositions:\n  filename: {}/positions.yaml\n  sync_period: 100ms\nclients:\n  - url: http://{addr}/loki/api/v1/push\n    batchwait: 100ms\n    batchsize: 16384\ntarget_config:\n  sync_period: 100ms\nfile_watch_config:\n  min_poll_frequency: 10ms\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - labels:\n          job: app\n          __path__: {}\n",
            dir.path().display(),
            log.display()
        ),
    )
    .unwrap();

    const TOTAL: usize = 30_000;
    let writer_path = log.clone();
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&writer_path)
            .unwrap();
        for i in 0..TOTAL {
            writeln!(f, "line {i:06} {}", "p".repeat(100)).unwrap();
            if i % 1000 == 999 {
                std::thread::sleep(Duration::from_millis(40));
            }
        }
    });

    let mut agent = spawn_agent(&config);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        agent.kill().unwrap(); // SIGKILL
        agent.wait().unwrap();
        agent = spawn_agent(&config);
    }
    writer.join().unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let want: HashSet<String> = (0..TOTAL)
        .map(|i| format!("line {i:06} {}", "p".repeat(100)))
        .collect();
    loop {
        let got: HashSet<String> = lines.lock().iter().cloned().collect();
        if got == want {
            break;
        }
        assert!(
            got.is_subset(&want),
            "received a line that was never written"
        );
        if Instant::now() > deadline {
            let missing = want.difference(&got).count();
            let _ = agent.kill();
            panic!("{missing} of {TOTAL} lines never arrived after kill -9 and restart");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let received = lines.lock().len();
    // Positions are written right after each acknowledged batch: a kill duplicates at most
    // the batch in flight (16 KiB, about 150 of these lines) per kill.
    assert!(
        received - TOTAL <= 3 * 200,
        "{} duplicates",
        received - TOTAL
    );
    eprintln!(
        "kill -9 x3: {TOTAL} lines written, {received} received ({} duplicates from batches in flight)",
        received - TOTAL
    );
    agent.kill().unwrap();
    agent.wait().unwrap();
}
