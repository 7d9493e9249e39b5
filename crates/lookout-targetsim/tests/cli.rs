//! The `lookout-targetsim` binary: `--once-dump` reproducibility and formats, serving on
//! consecutive ports and stopping by itself.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_lookout-targetsim");

fn dump(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--once-dump")
        .args(args)
        .output()
        .expect("run lookout-targetsim")
}

#[test]
fn once_dump_is_reproducible() {
    let a = dump(&["--seed", "7", "--series-per-target", "300"]);
    let b = dump(&["--seed", "7", "--series-per-target", "300"]);
    let c = dump(&["--seed", "8", "--series-per-target", "300"]);
    let later = dump(&[
        "--seed",
        "7",
        "--series-per-target",
        "300",
        "--dump-tick",
        "5000",
    ]);
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
    assert_ne!(a.stdout, c.stdout);
    assert_ne!(a.stdout, later.stdout);
    let text = String::from_utf8(a.stdout).unwrap();
    let samples = text.lines().filter(|l| !l.starts_with('#')).count();
    // 300 stable series plus the churn series present at this tick (default 8, 3/4 of the time).
    assert!((300..=308).contains(&samples), "{samples}");
}

#[test]
fn once_dump_openmetrics_and_errors() {
    let om = dump(&[
        "--format",
        "openmetrics",
        "--targets",
        "2",
        "--dump-target",
        "1",
    ]);
    assert!(om.status.success());
    assert!(String::from_utf8_lossy(&om.stdout).ends_with("# EOF\n"));
    let bad = dump(&["--targets", "2", "--dump-target", "2"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("out of range"));
}

#[test]
fn once_dump_passes_promtool() {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        println!(
            "SKIP once_dump_passes_promtool: promtool not installed (apt-get install -y prometheus)"
        );
        return;
    };
    let body = dump(&["--churn-series", "3"]).stdout;
    child.stdin.take().unwrap().write_all(&body).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "promtool: {text}"
    );
}

fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut r = String::new();
    s.read_to_string(&mut r).ok()?;
    Some(r)
}

#[test]
fn serves_consecutive_ports_and_stops_by_itself() {
    let base = lookout_test_ports::free_port_block(3);
    let mut child = Command::new(BIN)
        .args(["--base-port", &base.to_string(), "--targets", "3"])
        .args(["--series-per-target", "50", "--duration-secs", "3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut bodies = Vec::new();
    for port in base..base + 3 {
        loop {
            if let Some(b) = scrape(port) {
                bodies.push(b);
                break;
            }
            assert!(Instant::now() < deadline, "port {port} never answered");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(
        bodies
            .iter()
            .all(|b| b.starts_with("HTTP/1.1 200") && b.contains("http_requests_total{"))
    );
    let stop_deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > stop_deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("did not stop after --duration-secs");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    assert!(scrape(base).is_none());
}
