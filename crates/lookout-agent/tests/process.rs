//! Process sources and supervised programs, end to end against an in-process push receiver:
//! a `sh -c` child writing to both streams (partial last line, binary garbage, an over-long
//! line), back-pressure through a push outage, restarts and stops.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use lookout_agent::supervise::{ProgramSpec, Supervised};
use lookout_agent::{Agent, AgentConfig, ProcessSources, ProcessSpec};
use tokio::net::TcpListener;
use tokio::sync::watch;

use common::{Receiver, Running, config_text, metrics};

/// A job for processes: relabeling maps Docker-style meta labels, a pipeline parses `level=`.
const JOB: &str = "  - job_name: procs\n    relabel_configs:\n      - source_labels: ['__meta_docker_container_label_com_docker_compose_service']\n        target_label: compose_service\n      - source_labels: ['__meta_docker_container_name']\n        regex: '/(.*)'\n        target_label: container\n    pipeline_stages:\n      - regex:\n          expression: 'level=(?P<level>\\w+)'\n      - labels:\n          level:\n";

fn spec(name: &str) -> ProcessSpec {
    ProcessSpec {
        name: name.into(),
        job: "procs".into(),
        labels: BTreeMap::from([
            (
                "__meta_docker_container_label_com_docker_compose_service".into(),
                name.into(),
            ),
            (
                "__meta_docker_container_name".into(),
                format!("/demo-{name}-1"),
            ),
            ("job".into(), "docker".into()),
        ]),
    }
}

async fn start(text: &str) -> (Running, ProcessSources) {
    let cfg = AgentConfig::parse(text, &BTreeMap::new()).expect("config");
    let agent = Agent::new(cfg, None).expect("agent");
    let sources = agent.processes();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(agent.run(Some(l), rx));
    (
        Running {
            stop: tx,
            task,
            http: Some(addr),
        },
        sources,
    )
}

async fn targets(addr: std::net::SocketAddr) -> serde_json::Value {
    let t = reqwest::get(format!("http://{addr}/api/v1/targets"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&t).unwrap()
}

fn sh(script: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_output_goes_through_the_pipeline_with_stream_labels() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let extra = "limits_config:\n  max_line_size: 100\n  max_line_size_truncate: true\n";
    let (agent, sources) = start(&config_text(dir.path(), &rx.url(), JOB, extra)).await;
    // stdout: two lines, binary garbage, an over-long line, and a partial last line (no
    // newline before EOF). stderr: a warning and its own partial last line.
    let long = "x".repeat(300);
    let script = format!(
        "printf 'level=info hello\\nsecond line\\n'; printf 'bad \\377\\376 bytes\\n'; printf '{long}\\n'; printf 'level=error oops\\n' >&2; printf 'tail without newline'; printf 'err tail' >&2"
    );
    let mut child = sh(&script).spawn().unwrap();
    let pid = child.id();
    sources
        .attach(
            &spec("redis"),
            pid,
            child.stdout.take(),
            child.stderr.take(),
        )
        .unwrap();
    assert!(child.wait().await.unwrap().success());
    rx.wait_for(10, "all seven lines", |l| l.len() >= 7).await;
    let got = rx.got();
    let find = |line: &str| {
        got.iter()
            .find(|g| g.line == line)
            .unwrap_or_else(|| panic!("line {line:?} missing from {got:#?}"))
    };
    let hello = find("level=info hello");
    assert_eq!(
        hello.labels,
        r#"{compose_service="redis", container="demo-redis-1", job="docker", level="info", stream="stdout"}"#
    );
    assert_eq!(
        find("second line").labels,
        r#"{compose_service="redis", container="demo-redis-1", job="docker", stream="stdout"}"#
    );
    assert!(
        find("level=error oops")
            .labels
            .contains(r#"stream="stderr""#)
    );
    find("bad \u{FFFD}\u{FFFD} bytes");
    find(&"x".repeat(100));
    find("tail without newline");
    assert!(find("err tail").labels.contains(r#"stream="stderr""#));
    assert_eq!(got.len(), 7, "{got:#?}");
    // Timestamped at read: within the test's lifetime.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert!(
        got.iter()
            .all(|g| g.ts <= now && g.ts > now - 60_000_000_000)
    );

    let m = metrics(agent.http.unwrap()).await;
    for want in [
        r#"lookout_agent_process_read_lines_total{process="redis",stream="stdout"} 5"#,
        r#"lookout_agent_process_read_lines_total{process="redis",stream="stderr"} 2"#,
        r#"lookout_agent_process_truncated_lines_total{process="redis",stream="stdout"} 1"#,
        r#"lookout_agent_process_invalid_utf8_lines_total{process="redis",stream="stdout"} 1"#,
    ] {
        assert!(m.contains(want), "{want} missing from\n{m}");
    }
    let t = targets(agent.http.unwrap()).await;
    let procs: Vec<&serde_json::Value> = t["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "process")
        .collect();
    assert_eq!(procs.len(), 2, "{t}");
    for p in &procs {
        assert_eq!(p["process"], "redis");
        assert_eq!(p["pid"].as_u64(), pid.map(u64::from));
        assert_eq!(p["state"], "closed");
        assert_eq!(p["labels"]["compose_service"], "redis");
    }
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_long_lines_are_dropped_and_counted_when_not_truncating() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let extra = "limits_config:\n  max_line_size: 50\n";
    let (agent, sources) = start(&config_text(dir.path(), &rx.url(), JOB, extra)).await;
    let long = "y".repeat(5000);
    let mut child = sh(&format!("echo before; printf '{long}\\n'; echo after"))
        .spawn()
        .unwrap();
    sources
        .attach(
            &spec("pg"),
            child.id(),
            child.stdout.take(),
            child.stderr.take(),
        )
        .unwrap();
    child.wait().await.unwrap();
    rx.wait_for(10, "before and after", |l| l.len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.lines(), vec!["before", "after"]);
    let m = metrics(agent.http.unwrap()).await;
    assert!(
        m.contains(r#"promtail_dropped_entries_total{host="",reason="line_too_long"} 1"#),
        "{m}"
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_outage_blocks_the_child_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.set_status(Some(503));
    let (agent, sources) = start(&config_text(dir.path(), &rx.url(), JOB, "")).await;
    const N: usize = 300_000;
    let mut child = sh(&format!("seq 1 {N}; echo done >&2")).spawn().unwrap();
    sources
        .attach(
            &spec("seq"),
            child.id(),
            child.stdout.take(),
            child.stderr.take(),
        )
        .unwrap();
    // The server refuses everything: the agent stops reading and `seq` blocks on its write.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the child finished although nothing was delivered"
    );
    let t = targets(agent.http.unwrap()).await;
    let stdout = t["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "process" && e["stream"] == "stdout")
        .cloned()
        .unwrap();
    assert_eq!(stdout["state"], "blocked", "{t}");
    let read = stdout["read_bytes"].as_u64().unwrap();
    assert!(read < 1_500_000, "read {read} bytes during the outage");
    assert!(rx.lines().is_empty());
    let m = metrics(agent.http.unwrap()).await;
    assert!(
        m.contains(r#"lookout_agent_process_blocked_seconds_total{process="seq",stream="stdout"}"#),
        "{m}"
    );

    // The server comes back: every line arrives, once, in order.
    rx.set_status(None);
    let started = Instant::now();
    rx.wait_for(60, "every line", |l| l.len() > N).await;
    assert!(child.wait().await.unwrap().success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = rx.got();
    let seq: Vec<String> = got
        .iter()
        .filter(|g| g.labels.contains(r#"stream="stdout""#))
        .map(|g| g.line.clone())
        .collect();
    let expect: Vec<String> = (1..=N).map(|i| i.to_string()).collect();
    assert!(
        seq == expect,
        "stdout lines differ (got {}, expected {N})",
        seq.len()
    );
    assert_eq!(got.len(), N + 1);
    assert!(got.iter().any(|g| g.line == "done"));
    eprintln!(
        "delivered {N} lines {:?} after the outage",
        started.elapsed()
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relabel_drop_drains_the_pipe_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let job = format!(
        "{JOB}  - job_name: none\n    relabel_configs:\n      - action: drop\n        source_labels: [job]\n        regex: docker\n"
    );
    let (agent, sources) = start(&config_text(dir.path(), &rx.url(), &job, "")).await;
    let mut child = sh("seq 1 100000").spawn().unwrap();
    let mut s = spec("dropped");
    s.job = "none".into();
    sources
        .attach(&s, child.id(), child.stdout.take(), child.stderr.take())
        .unwrap();
    // Drained although nothing is delivered: the child is never blocked.
    tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the child was blocked")
        .unwrap();
    assert!(rx.lines().is_empty());
    let mut bad = spec("x");
    bad.job = "missing".into();
    let err = sources
        .attach::<tokio::io::Empty, tokio::io::Empty>(&bad, None, None, None)
        .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = metrics(agent.http.unwrap()).await;
    assert!(
        m.contains(r#"promtail_dropped_entries_total{host="",reason="relabel_dropped"} 100000"#),
        "{m}"
    );
    agent.shutdown().await;
}

fn alive(pid: u32) -> bool {
    // A zombie still has /proc/<pid>; its state is Z.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervised_programs_restart_with_backoff_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let (agent, sources) = start(&config_text(dir.path(), &rx.url(), JOB, "")).await;

    // Exits after each start: restarted with backoff, each run's output collected.
    let mut flaky = ProgramSpec::new("flaky", "sh");
    flaky.args = vec!["-c".into(), "echo run $$; exit 3".into()];
    flaky.min_backoff = Duration::from_millis(50);
    flaky.max_backoff = Duration::from_millis(200);
    flaky.output = Some((sources.clone(), spec("flaky")));
    let flaky = Supervised::start(flaky);
    rx.wait_for(15, "three runs", |l| {
        l.iter().filter(|l| l.starts_with("run ")).count() >= 3
    })
    .await;
    let st = flaky.stop().await;
    assert!(st.starts >= 3, "{st:?}");
    assert!(st.last_exit.unwrap_or_default().contains('3'));
    let pids: HashSet<String> = rx
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("run "))
        .collect();
    assert!(pids.len() >= 3, "each run is a new process: {pids:?}");

    // Stops on SIGTERM, saying goodbye on stdout; the pid file comes and goes.
    let pid_file = dir.path().join("polite.pid");
    let mut polite = ProgramSpec::new("polite", "sh");
    polite.args = vec![
        "-c".into(),
        "trap 'echo bye; exit 0' TERM; echo up; while :; do sleep 0.05; done".into(),
    ];
    polite.output = Some((sources.clone(), spec("polite")));
    polite.pid_file = Some(pid_file.clone());
    let polite = Supervised::start(polite);
    rx.wait_for(10, "up", |l| l.iter().any(|l| l == "up")).await;
    let pid = polite.status().pid.unwrap();
    let recorded: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(recorded, pid);
    // Killing it from outside: restarted under a new PID.
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let mut w = polite.watch();
    tokio::time::timeout(
        Duration::from_secs(10),
        w.wait_for(|s| s.starts >= 2 && s.pid.is_some()),
    )
    .await
    .expect("restarted")
    .unwrap();
    let pid2 = polite.status().pid.unwrap();
    assert_ne!(pid, pid2);
    let st = polite.stop().await;
    assert_eq!(st.pid, None);
    assert!(!alive(pid2), "pid {pid2} still running");
    assert!(!pid_file.exists());
    rx.wait_for(10, "bye", |l| l.iter().any(|l| l == "bye"))
        .await;

    // Ignores SIGTERM: killed after the grace period.
    let mut stubborn = ProgramSpec::new("stubborn", "sh");
    stubborn.args = vec![
        "-c".into(),
        "trap '' TERM; echo ready; while :; do sleep 0.05; done".into(),
    ];
    stubborn.stop_timeout = Duration::from_millis(300);
    stubborn.output = Some((sources.clone(), spec("stubborn")));
    let stubborn = Supervised::start(stubborn);
    rx.wait_for(10, "ready", |l| l.iter().any(|l| l == "ready"))
        .await;
    let pid3 = stubborn.status().pid.unwrap();
    let t0 = Instant::now();
    let st = stubborn.stop().await;
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert!(st.last_exit.unwrap_or_default().contains("killed"));
    assert!(!alive(pid3));

    // A program that cannot start: retried, reported, never a panic.
    let mut missing = ProgramSpec::new("missing", "/nonexistent/program");
    missing.min_backoff = Duration::from_millis(20);
    let missing = Supervised::start(missing);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let st = missing.stop().await;
    assert_eq!(st.starts, 0);
    assert!(st.last_exit.unwrap_or_default().contains("spawn failed"));
    agent.shutdown().await;
}

/// The docs/agent.md example: PostgreSQL's stderr format parsed by the job's pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_style_lines_get_their_own_time_and_level() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let job = "  - job_name: procs\n    pipeline_stages:\n      - regex:\n          expression: '^(?P<time>\\S+ \\S+) UTC \\[(?P<pid>\\d+)\\] (?P<level>[A-Z]+):'\n      - labels:\n          level:\n      - timestamp:\n          source: time\n          format: '2006-01-02 15:04:05.000'\n";
    let (agent, sources) = start(&config_text(dir.path(), &rx.url(), job, "")).await;
    let mut child = sh(
        "echo '2026-11-29 06:21:10.418 UTC [1169] LOG:  database system is ready to accept connections' >&2",
    )
    .spawn()
    .unwrap();
    let mut s = spec("postgres");
    s.labels = BTreeMap::from([("job".into(), "db".into())]);
    sources
        .attach(&s, child.id(), child.stdout.take(), child.stderr.take())
        .unwrap();
    child.wait().await.unwrap();
    rx.wait_for(10, "the line", |l| !l.is_empty()).await;
    let g = &rx.got()[0];
    assert_eq!(g.labels, r#"{job="db", level="LOG", stream="stderr"}"#);
    // 2026-11-29T06:21:10.418Z
    assert_eq!(g.ts, 1_795_933_270_418_000_000);
    agent.shutdown().await;
}
