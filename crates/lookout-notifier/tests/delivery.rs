//! Delivery over loopback HTTP: Alertmanager v2 body and auth, retries after 500s, failures
//! counted, the bounded queue dropping the oldest, webhook payloads and their repeat rules;
//! and, when Debian's `prometheus-alertmanager` is installed, a real Alertmanager.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use lookout_config::PrometheusConfig;
use lookout_notifier::{Alert, AlertSink, Notifier, NotifierOptions, WebhookConfig};
use lookout_storage::Labels;
use parking_lot::Mutex;

#[derive(Default)]
struct Seen {
    bodies: Mutex<Vec<(String, String)>>,
    fail_first: AtomicUsize,
}

async fn serve(seen: Arc<Seen>) -> std::net::SocketAddr {
    let s = seen.clone();
    let app = Router::new().fallback(post(move |headers: HeaderMap, body: String| {
        let s = s.clone();
        async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            s.bodies.lock().push((auth, body));
            if s.fail_first.load(Ordering::SeqCst) > 0 {
                s.fail_first.fetch_sub(1, Ordering::SeqCst);
                return StatusCode::INTERNAL_SERVER_ERROR;
            }
            StatusCode::OK
        }
    }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.ok() });
    addr
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn alert(name: &str, inst: &str, ends_at: i64) -> Alert {
    Alert {
        labels: Labels::from_pairs([
            ("alertname", name),
            ("instance", inst),
            ("severity", "critical"),
        ]),
        annotations: BTreeMap::from([
            ("summary".to_string(), format!("{inst} down")),
            ("summary_ko".to_string(), format!("{inst} 다운")),
        ]),
        starts_at: now_ms() - 60_000,
        ends_at,
        generator_url: "http://lookout:9090/graph?g0.expr=up&g0.tab=1".into(),
    }
}

fn config(yaml: &str) -> PrometheusConfig {
    PrometheusConfig::parse(yaml).unwrap()
}

async fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

fn opts() -> NotifierOptions {
    NotifierOptions {
        retry_backoff: Duration::from_millis(20),
        ..NotifierOptions::default()
    }
}

#[tokio::test]
async fn alertmanager_v2_with_basic_auth_external_labels_and_retries() {
    let seen = Arc::new(Seen::default());
    seen.fail_first.store(2, Ordering::SeqCst);
    let addr = serve(seen.clone()).await;
    let n = Notifier::new(opts()).unwrap();
    n.apply_config(
        &config(&format!(
            "global: {{ external_labels: {{ project: wealist }} }}\nalerting:\n  alertmanagers:\n  - path_prefix: /am\n    basic_auth: {{ username: u, password: p }}\n    static_configs: [{{ targets: ['{addr}'] }}]\n"
        )),
        &[],
    )
    .unwrap();
    n.start();
    n.send(vec![alert("Down", "a:1", now_ms() + 240_000)]);
    assert!(
        wait_for(|| seen.bodies.lock().len() >= 3).await,
        "two 500s, then accepted"
    );
    let bodies = seen.bodies.lock().clone();
    let (auth, body) = &bodies[2];
    assert_eq!(auth, "Basic dTpw");
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v[0]["labels"]["project"], "wealist");
    assert_eq!(v[0]["labels"]["alertname"], "Down");
    assert_eq!(v[0]["annotations"]["summary_ko"], "a:1 다운");
    let st = n.status();
    assert_eq!(st[0].url, format!("http://{addr}/am/api/v2/alerts"));
    assert_eq!(st[0].sent, 1);
    assert_eq!(st[0].errors, 0);
    n.stop();
}

#[tokio::test]
async fn failures_are_counted_and_visible() {
    let seen = Arc::new(Seen::default());
    seen.fail_first.store(100, Ordering::SeqCst);
    let addr = serve(seen.clone()).await;
    let n = Notifier::new(NotifierOptions {
        max_attempts: 2,
        ..opts()
    })
    .unwrap();
    n.apply_config(
        &config(&format!(
            "alerting:\n  alertmanagers:\n  - static_configs: [{{ targets: ['{addr}'] }}]\n"
        )),
        &[],
    )
    .unwrap();
    n.start();
    n.send(vec![
        alert("Down", "a:1", now_ms() + 240_000),
        alert("Down", "b:1", now_ms() + 240_000),
    ]);
    assert!(
        wait_for(|| n.status()[0].errors == 2).await,
        "{:?}",
        n.status()
    );
    assert_eq!(seen.bodies.lock().len(), 2, "two attempts");
    assert!(wait_for(|| n.dropped() == 2).await, "given up: dropped");
    assert!(
        n.status()[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("500")
    );
    n.stop();
}

/// An Alertmanager that is down (connection refused): every attempt fails, the batch is
/// dropped after the retries and both show in the exported metrics; once it is back, the
/// next alerts get through.
#[tokio::test]
async fn alertmanager_down_counts_errors_and_drops_then_recovers() {
    // A port nobody listens on.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let seen = Arc::new(Seen::default());
    let up = serve(seen.clone()).await;
    let n = Notifier::new(NotifierOptions {
        max_attempts: 3,
        ..opts()
    })
    .unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    n.register_metrics(&mut registry);
    let cfg = |addr: std::net::SocketAddr| {
        config(&format!(
            "alerting:\n  alertmanagers:\n  - static_configs: [{{ targets: ['{addr}'] }}]\n"
        ))
    };
    n.apply_config(&cfg(down), &[]).unwrap();
    n.start();
    n.send(vec![
        alert("Down", "a:1", now_ms() + 240_000),
        alert("Down", "b:1", now_ms() + 240_000),
        alert("Down", "c:1", now_ms() + 240_000),
    ]);
    assert!(
        wait_for(|| n.dropped() == 3).await,
        "dropped {} {:?}",
        n.dropped(),
        n.status()
    );
    let st = &n.status()[0];
    assert_eq!((st.sent, st.errors), (0, 3));
    assert!(st.last_error.is_some());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let url = format!("http://{down}/api/v2/alerts");
    for want in [
        format!("prometheus_notifications_errors_total{{alertmanager=\"{url}\"}} 3"),
        "prometheus_notifications_dropped_total 3".to_string(),
        "prometheus_notifications_queue_length 0".to_string(),
    ] {
        assert!(text.contains(&want), "{want} in\n{text}");
    }

    // Back up (here: moved to a live address by a reload): delivery resumes.
    n.apply_config(&cfg(up), &[]).unwrap();
    n.send(vec![alert("Down", "a:1", now_ms() + 240_000)]);
    assert!(wait_for(|| seen.bodies.lock().len() == 1).await);
    assert!(
        wait_for(|| n.status()[0].sent == 1).await,
        "{:?}",
        n.status()
    );
    assert_eq!(n.dropped(), 3);
    n.stop();
}

#[tokio::test]
async fn queue_drops_oldest_beyond_capacity() {
    // No endpoint is started: the queue fills.
    let n = Notifier::new(NotifierOptions {
        queue_capacity: 3,
        ..opts()
    })
    .unwrap();
    for i in 0..5 {
        n.send(vec![alert("Down", &format!("h{i}:1"), now_ms() + 1000)]);
    }
    assert_eq!(n.queue_len(), 3);
    assert_eq!(n.dropped(), 2);
    n.send((0..10).map(|i| alert("X", &format!("x{i}:1"), 0)).collect());
    assert_eq!(n.queue_len(), 3);
    assert_eq!(n.dropped(), 12);
}

#[tokio::test]
async fn webhook_announces_firing_once_then_resolved() {
    let seen = Arc::new(Seen::default());
    let addr = serve(seen.clone()).await;
    let n = Notifier::new(opts()).unwrap();
    let mut hook = WebhookConfig::new(format!("http://{addr}/hook"));
    hook.bearer_token = Some("t0k".into());
    n.apply_config(&PrometheusConfig::default(), &[hook])
        .unwrap();
    n.start();
    n.send(vec![alert("Down", "a:1", now_ms() + 240_000)]);
    assert!(wait_for(|| seen.bodies.lock().len() == 1).await);
    // A resend of the same firing alert is not repeated to the webhook.
    n.send(vec![alert("Down", "a:1", now_ms() + 240_000)]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(seen.bodies.lock().len(), 1);
    n.send(vec![alert("Down", "a:1", now_ms() - 1)]);
    assert!(wait_for(|| seen.bodies.lock().len() == 2).await);
    let bodies = seen.bodies.lock().clone();
    assert_eq!(bodies[0].0, "Bearer t0k");
    let first: serde_json::Value = serde_json::from_str(&bodies[0].1).unwrap();
    assert_eq!(first["version"], "4");
    assert_eq!(first["status"], "firing");
    let second: serde_json::Value = serde_json::from_str(&bodies[1].1).unwrap();
    assert_eq!(second["status"], "resolved");
    assert_eq!(second["alerts"][0]["status"], "resolved");
    n.stop();
}

/// Real Alertmanager: alerts appear in `/api/v2/alerts` with labels, annotations and times,
/// and resolve there.
#[tokio::test]
async fn real_alertmanager() {
    let bin = ["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(bin) = bin else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "prometheus-alertmanager is required under CI"
        );
        println!(
            "SKIP real_alertmanager: prometheus-alertmanager is not installed (apt-get install -y prometheus-alertmanager)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("am.yml");
    std::fs::write(
        &cfg,
        "route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n",
    )
    .unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = std::process::Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(std::mem::replace(
        &mut child,
        std::process::Command::new("true").spawn().unwrap(),
    ));
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..100 {
        if client
            .get(format!("{base}/-/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "alertmanager did not start");

    let n = Notifier::new(opts()).unwrap();
    n.apply_config(
        &config(&format!(
            "global: {{ external_labels: {{ project: wealist }} }}\nalerting:\n  alertmanagers:\n  - static_configs: [{{ targets: ['127.0.0.1:{port}'] }}]\n"
        )),
        &[],
    )
    .unwrap();
    n.start();
    let firing = alert("ServiceDown", "localhost:8080", now_ms() + 240_000);
    n.send(vec![firing.clone()]);
    let get = |client: reqwest::Client, url: String| async move {
        let r = client.get(url).send().await.ok()?;
        r.json::<serde_json::Value>().await.ok()
    };
    let mut found = None;
    for _ in 0..100 {
        if let Some(v) = get(client.clone(), format!("{base}/api/v2/alerts")).await
            && let Some(a) = v.as_array().and_then(|a| a.first())
        {
            found = Some(a.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let a = found.expect("alert reached Alertmanager");
    assert_eq!(a["labels"]["alertname"], "ServiceDown");
    assert_eq!(a["labels"]["project"], "wealist");
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(a["annotations"]["summary_ko"], "localhost:8080 다운");
    assert_eq!(a["status"]["state"], "active");
    assert_eq!(
        a["generatorURL"],
        "http://lookout:9090/graph?g0.expr=up&g0.tab=1"
    );
    let starts = a["startsAt"].as_str().unwrap();
    assert!(
        starts.starts_with(&lookout_notifier::payload::rfc3339(firing.starts_at)[..19]),
        "{starts}"
    );

    // Resolve: the alert leaves the active list.
    let mut resolved = firing.clone();
    resolved.ends_at = now_ms() - 1;
    n.send(vec![resolved]);
    let mut gone = false;
    for _ in 0..100 {
        if let Some(v) = get(
            client.clone(),
            format!(
                "{base}/api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true"
            ),
        )
        .await
            && v.as_array().is_some_and(|a| a.is_empty())
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "alert resolved in Alertmanager");
    n.stop();
}
