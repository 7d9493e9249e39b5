//! End to end: the demo's injected faults drive each of the seed's five alerts through
//! pending → firing → resolved, seen in Lookout's `/api/v1/alerts`, in a real Alertmanager's
//! `/api/v2/alerts` (labels, annotations, startsAt; gone once resolved) and as firing and
//! resolved notifications at two webhooks: Alertmanager's receiver and Lookout's built-in
//! webhook notifier.
//!
//! `lookout demo --schedule fast` runs every fault ten times faster and loads rule copies
//! with `for`, rate windows and the resend delay scaled by the same 0.1 (the seed's files
//! are untouched). The example configuration is copied to a temporary directory with
//! `alerting.alertmanagers` pointing at the test's Alertmanager. The example LogQL rule
//! (ErrorLogBurst) must fire too, from the services' logs shipped by the built-in agent.

mod alerts_common;
mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use alerts_common::{
    Alertmanager, Hook, Timeline, alertmanager_bin, copy_dir, lookout_alerts, now_ms,
    parse_rfc3339_ms,
};
use common::{ChildGuard, PromApi, free_port, free_port_block, repo_root, which};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_lookout");

/// The five alerts of alerts.yml, the label that picks the faulty target's instance, and
/// the scaled `for` (seconds).
const ALERTS: [(&str, &str, &str, f64); 5] = [
    ("ServiceDown", "job", "video-service", 6.0),
    ("HighErrorRate", "job", "board-service", 12.0),
    ("SlowResponses", "job", "noti-service", 30.0),
    ("RedisHighMemory", "job", "redis-exporter", 30.0),
    ("TrafficSpike", "job", "board-service", 12.0),
];

#[derive(Default)]
struct AmSeen {
    /// The first time the alert was listed: its labels, annotations, startsAt.
    first: Option<Value>,
    /// Listed after having been seen, and then absent (resolved) at a later poll.
    gone_after_seen: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_faults_drive_the_five_alerts_end_to_end() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let (Some(am_bin), Some(redis_bin)) = (alertmanager_bin(), which("redis-server")) else {
        assert!(
            !ci,
            "prometheus-alertmanager and redis-server are required under CI=true"
        );
        println!(
            "SKIP alerts_demo: needs prometheus-alertmanager and redis-server (apt-get install -y prometheus-alertmanager redis-server)"
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();

    // Webhooks: one behind Alertmanager, one fed by Lookout directly.
    let am_hook = Hook::start().await;
    let lookout_hook = Hook::start().await;
    let am = Alertmanager::start(&am_bin, tmp.path(), &am_hook.url()).await;

    // A Redis the schedule may fill.
    let redis_port = free_port();
    let mut redis_cmd = Command::new(redis_bin);
    redis_cmd
        .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--latency-tracking",
            "no",
        ])
        .current_dir(tmp.path());
    let _redis = ChildGuard::spawn(
        "redis-server",
        &mut redis_cmd,
        &tmp.path().join("redis.log"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", redis_port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The example configuration with the Alertmanager moved to the test's.
    let config_dir = tmp.path().join("monitoring");
    copy_dir(
        &repo_root().join("examples/wealist/docker/monitoring"),
        &config_dir,
    );
    let prom_yml = config_dir.join("prometheus/prometheus.yml");
    let text = std::fs::read_to_string(&prom_yml).unwrap();
    assert!(
        text.contains("localhost:9093"),
        "seed alerting target moved?"
    );
    std::fs::write(&prom_yml, text.replace("localhost:9093", &am.addr)).unwrap();

    let data = tmp.path().join("data");
    let prom = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(BIN);
    cmd.current_dir(repo_root())
        .env("LOOKOUT_DATA_DIR", &data)
        .arg("demo")
        .arg("--data-dir")
        .arg(&data)
        .arg("--config-dir")
        .arg(&config_dir)
        .args(["--schedule", "fast", "--seed", "7"])
        // The schedule is timed from the process start; history would delay it.
        .args(["--history", "0"])
        .args(["--services-base-port", &free_port_block().to_string()])
        .args(["--prom-addr", &prom, "--ui-addr", "off"])
        .args(["--loki-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--control-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--redis-addr", &format!("redis://127.0.0.1:{redis_port}")])
        .args([
            "--redis-exporter-addr",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .args(["--postgres-exporter-addr", "off", "--redis-fill"])
        .args(["--alert-webhook", &lookout_hook.url()]);
    let mut demo =
        ChildGuard::spawn("lookout demo", &mut cmd, &tmp.path().join("demo.log")).unwrap();
    let api = PromApi::new("lookout", &prom);
    api.wait_ready("/-/ready", Duration::from_secs(60), &mut demo)
        .await
        .unwrap();
    let started = Instant::now();

    // The fast schedule's faults end at ~39 s and the 30 s windows clear by ~75 s; poll
    // both APIs until every alert went through its cycle everywhere (or time runs out).
    let mut timelines: BTreeMap<&str, Timeline> = BTreeMap::new();
    let mut am_seen: BTreeMap<&str, AmSeen> = BTreeMap::new();
    let done = |timelines: &BTreeMap<&str, Timeline>, am_seen: &BTreeMap<&str, AmSeen>| {
        ALERTS.iter().all(|(name, key, val, _)| {
            timelines
                .get(name)
                .is_some_and(Timeline::pending_firing_resolved)
                && am_seen.get(name).is_some_and(|s| s.gone_after_seen)
                && am_hook
                    .fired_then_resolved(&[("alertname", name), (key, val)])
                    .is_ok()
                && lookout_hook
                    .fired_then_resolved(&[("alertname", name), (key, val)])
                    .is_ok()
        })
    };
    while started.elapsed() < Duration::from_secs(150) && !done(&timelines, &am_seen) {
        demo.check_running().unwrap();
        let now = now_ms();
        let alerts = lookout_alerts(&api).await;
        let in_am = am.alerts().await;
        for (name, key, val, _) in ALERTS {
            let pick = |a: &&Value| a["labels"]["alertname"] == name && a["labels"][key] == val;
            timelines
                .entry(name)
                .or_default()
                .observe(alerts.iter().find(pick), now);
            let s = am_seen.entry(name).or_default();
            match in_am.iter().find(pick) {
                Some(a) if s.first.is_none() => s.first = Some(a.clone()),
                Some(_) => {}
                None if s.first.is_some() => s.gone_after_seen = true,
                None => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let elapsed = started.elapsed();

    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (name, key, val, for_s) in ALERTS {
        let tl = &timelines[name];
        report.push(format!("{name}{{{key}={val}}}: {:?}", tl.states));
        if !tl.pending_firing_resolved() {
            failures.push(format!(
                "{name}: /api/v1/alerts showed {:?}, want pending → firing → gone",
                tl.states
            ));
            continue;
        }
        // activeAt of the pending and the firing phase are the same instant.
        let p = tl.states.iter().position(|s| s == "pending").unwrap_or(0);
        let f = tl.states.iter().position(|s| s == "firing").unwrap_or(0);
        if tl.active_at[p] != tl.active_at[f] {
            failures.push(format!("{name}: activeAt changed: {:?}", tl.active_at));
        }
        let active_at = parse_rfc3339_ms(&tl.active_at[f]).unwrap_or(0);
        // Labels and annotations as alerts.yml writes them.
        let sev = tl.labels["severity"].as_str().unwrap_or_default();
        let want_sev = match name {
            "ServiceDown" => "critical",
            "TrafficSpike" => "info",
            _ => "warning",
        };
        if sev != want_sev {
            failures.push(format!("{name}: severity {sev}, want {want_sev}"));
        }
        for ann in [
            "summary",
            "description",
            "summary_ko",
            "description_ko",
            "runbook",
        ] {
            if tl.annotations[ann]
                .as_str()
                .is_none_or(|s| s.is_empty() || s.contains("{{"))
            {
                failures.push(format!(
                    "{name}: annotation {ann} = {}",
                    tl.annotations[ann]
                ));
            }
        }

        // Alertmanager: listed with the same labels (plus the external label), annotations
        // and a startsAt when the alert fired, then gone.
        let s = &am_seen[name];
        match &s.first {
            None => failures.push(format!("{name}: never in Alertmanager's /api/v2/alerts")),
            Some(a) => {
                for (k, v) in tl.labels.as_object().into_iter().flatten() {
                    if &a["labels"][k] != v {
                        failures.push(format!(
                            "{name}: Alertmanager label {k} = {}, want {v}",
                            a["labels"][k]
                        ));
                    }
                }
                if a["labels"]["project"] != "wealist" {
                    failures.push(format!(
                        "{name}: external label project missing: {}",
                        a["labels"]
                    ));
                }
                // Same annotations; the descriptions quote `$value`, which moves between
                // evaluations, so those only need to be filled in.
                for (k, v) in tl.annotations.as_object().into_iter().flatten() {
                    let am_v = &a["annotations"][k];
                    let ok = if k.starts_with("description") {
                        am_v.as_str()
                            .is_some_and(|s| !s.is_empty() && !s.contains("{{"))
                    } else {
                        am_v == v
                    };
                    if !ok {
                        failures.push(format!(
                            "{name}: Alertmanager annotation {k} = {am_v}, Lookout {v}"
                        ));
                    }
                }
                let starts = a["startsAt"]
                    .as_str()
                    .and_then(parse_rfc3339_ms)
                    .unwrap_or(0);
                let fired_seen = tl.first_firing_ms.unwrap_or(0);
                // Sent with the firing time: at least `for` after activeAt, not after Lookout
                // showed it firing.
                if starts < active_at + (for_s * 1000.0) as i64 - 100 || starts > fired_seen + 100 {
                    failures.push(format!(
                        "{name}: startsAt {} not between activeAt+for and first firing (activeAt {}, seen firing at {fired_seen})",
                        a["startsAt"], tl.active_at[f]
                    ));
                }
                if !s.gone_after_seen {
                    failures.push(format!("{name}: still active in Alertmanager"));
                }
            }
        }
        for (hook, which) in [
            (&am_hook, "Alertmanager's webhook"),
            (&lookout_hook, "Lookout's webhook"),
        ] {
            if let Err(e) = hook.fired_then_resolved(&[("alertname", name), (key, val)]) {
                failures.push(format!("{which}: {e}"));
            }
        }
    }
    // The built-in webhook sends Alertmanager's payload shape.
    if let Some((_, body)) = lookout_hook.bodies.lock().first() {
        for field in [
            "receiver",
            "status",
            "alerts",
            "groupLabels",
            "commonLabels",
            "externalURL",
            "groupKey",
        ] {
            if body.get(field).is_none() {
                failures.push(format!("Lookout's webhook payload lacks {field}: {body}"));
            }
        }
    }
    // The LogQL rule (rules/loki/log-alerts.yml) fires on board-service's error lines, which
    // the built-in agent ships from the containers' json-file logs into the log store.
    if !lookout_hook
        .alerts(&[
            ("alertname", "ErrorLogBurst"),
            ("compose_service", "board-service"),
        ])
        .iter()
        .any(|(_, _, a)| a["status"] == "firing")
    {
        failures.push("ErrorLogBurst (LogQL) never notified firing for board-service".into());
    }
    // Everything Lookout notified.
    let notified: std::collections::BTreeSet<String> = lookout_hook
        .alerts(&[])
        .into_iter()
        .map(|(_, _, a)| {
            format!(
                "{}{{{}}}",
                a["labels"]["alertname"].as_str().unwrap_or_default(),
                a["labels"]["job"]
                    .as_str()
                    .or(a["labels"]["compose_service"].as_str())
                    .unwrap_or_default()
            )
        })
        .collect();
    println!(
        "alert timelines after {:.0} s:\n{}\nnotifications: {} at Alertmanager's webhook, {} at Lookout's: {notified:?}",
        elapsed.as_secs_f64(),
        report.join("\n"),
        am_hook.bodies.lock().len(),
        lookout_hook.bodies.lock().len()
    );
    assert!(
        failures.is_empty(),
        "{}\n--- demo log ---\n{}",
        failures.join("\n"),
        demo.log_tail(40)
    );
}
