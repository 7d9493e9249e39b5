//! `/metrics` text output passes `promtool check metrics` (which reads the text format only;
//! skipped with a visible line when promtool is not installed, unless `CI=true`), and the
//! OpenMetrics output passes the strict OpenMetrics parser of `lookout-exposition`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use lookout_remote_write::{Label, Sample, TimeSeries, WriteRequest, encode_write_request};

fn promtool_check(body: &str) -> Option<(bool, String)> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(_) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("promtool not installed (apt-get install -y prometheus)");
            }
            println!("SKIP promtool check: promtool not installed (apt-get install -y prometheus)");
            return None;
        }
    };
    child.stdin.take()?.write_all(body.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), text))
}

#[tokio::test]
async fn self_metrics_pass_promtool() {
    let f = fixture();
    // Populate every metric family.
    let _ = get(&f.app, "/api/v1/query?query=up&time=1").await;
    let _ = get(
        &f.app,
        "/api/v1/query_range?query=up&start=0&end=60&step=15",
    )
    .await;
    let _ = get(&f.app, "/api/v1/labels").await;
    let body = encode_write_request(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![Label::new("__name__", "x")],
            samples: vec![Sample {
                value: 1.0,
                timestamp: 1,
            }],
            exemplars: vec![],
            histograms: vec![],
        }],
        metadata: vec![],
    })
    .unwrap();
    let r = send(
        &f.app,
        axum::http::Request::post("/api/v1/write")
            .body(axum::body::Body::from(body))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 204);

    let text = get(&f.app, "/metrics").await;
    assert!(
        text.body.contains("lookout_query_duration_seconds_bucket"),
        "{}",
        text.body
    );

    let om = metrics_om(&f.app).await;
    let mut parser = lookout_exposition::Parser::new(
        om.body.as_bytes(),
        lookout_exposition::Format::OpenMetrics,
    );
    let mut samples = 0;
    loop {
        match parser.next_entry() {
            Ok(Some(lookout_exposition::Entry::Sample(_))) => samples += 1,
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => panic!("invalid OpenMetrics: {e}\n{}", om.body),
        }
    }
    assert!(samples > 20, "{}", om.body);

    let Some((ok, out)) = promtool_check(&text.body) else {
        return;
    };
    assert!(
        ok && out.trim().is_empty(),
        "promtool on text output:\n{out}\n---\n{}",
        text.body
    );
}
