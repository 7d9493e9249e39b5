//! Helpers of the alerting end-to-end tests: a webhook receiver, an Alertmanager started on
//! a free port, `/api/v1/alerts` timelines and RFC 3339 parsing.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::Value;

use crate::common::{ChildGuard, PromApi, free_port};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A webhook receiver on a free loopback port; every POST body (JSON) is kept with its
/// arrival time.
pub struct Hook {
    pub addr: SocketAddr,
    pub bodies: Arc<Mutex<Vec<(i64, Value)>>>,
}

impl Hook {
    pub async fn start() -> Hook {
        let bodies: Arc<Mutex<Vec<(i64, Value)>>> = Arc::default();
        let b = bodies.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: String| {
                let b = b.clone();
                async move {
                    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
                    b.lock().push((now_ms(), v));
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Hook { addr, bodies }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// (arrival ms, payload status, alert) for every alert of every version-4 payload whose
    /// labels contain `want`.
    pub fn alerts(&self, want: &[(&str, &str)]) -> Vec<(i64, String, Value)> {
        let mut out = Vec::new();
        for (t, body) in self.bodies.lock().iter() {
            if body["version"] != "4" {
                continue;
            }
            let status = body["status"].as_str().unwrap_or_default().to_string();
            for a in body["alerts"].as_array().into_iter().flatten() {
                if want
                    .iter()
                    .all(|(k, v)| a["labels"][*k].as_str() == Some(*v))
                {
                    out.push((*t, status.clone(), a.clone()));
                }
            }
        }
        out
    }

    /// Whether an alert matching `want` was announced firing and, later, resolved (each
    /// alert's own `status`).
    pub fn fired_then_resolved(&self, want: &[(&str, &str)]) -> Result<(), String> {
        let seen = self.alerts(want);
        let fired = seen.iter().find(|(_, _, a)| a["status"] == "firing");
        let Some((t_fire, _, _)) = fired else {
            return Err(format!("no firing notification for {want:?}"));
        };
        if !seen
            .iter()
            .any(|(t, _, a)| t >= t_fire && a["status"] == "resolved")
        {
            return Err(format!(
                "no resolved notification after firing for {want:?}"
            ));
        }
        Ok(())
    }
}

/// A real Alertmanager (Debian's `prometheus-alertmanager`) with a webhook receiver, short
/// group timers, clustering off, storage in `dir`.
pub struct Alertmanager {
    pub addr: String,
    pub child: ChildGuard,
    http: reqwest::Client,
}

pub fn alertmanager_bin() -> Option<std::path::PathBuf> {
    ["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
}

impl Alertmanager {
    pub async fn start(bin: &Path, dir: &Path, webhook: &str) -> Alertmanager {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let cfg = dir.join("alertmanager.yml");
        std::fs::create_dir_all(dir.join("am-data")).unwrap();
        std::fs::write(
            &cfg,
            format!(
                "route:\n  receiver: test\n  group_by: ['alertname', 'job']\n  group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 1h\nreceivers:\n  - name: test\n    webhook_configs:\n      - url: {webhook}\n        send_resolved: true\n"
            ),
        )
        .unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=");
        let mut child =
            ChildGuard::spawn("alertmanager", &mut cmd, &dir.join("alertmanager.log")).unwrap();
        let probe = PromApi::new("alertmanager", &addr);
        probe
            .wait_ready("/-/ready", Duration::from_secs(30), &mut child)
            .await
            .unwrap();
        Alertmanager {
            addr,
            child,
            http: reqwest::Client::new(),
        }
    }

    /// `GET /api/v2/alerts` (active, unresolved alerts only, as Alertmanager lists them).
    pub async fn alerts(&self) -> Vec<Value> {
        let Ok(resp) = self
            .http
            .get(format!("http://{}/api/v2/alerts", self.addr))
            .send()
            .await
        else {
            return Vec::new();
        };
        let text = resp.text().await.unwrap_or_default();
        serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }
}

/// What `/api/v1/alerts` showed of one alert over time.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    /// States in the order seen, consecutive repeats collapsed; `gone` when absent.
    pub states: Vec<String>,
    /// activeAt of each state change.
    pub active_at: Vec<String>,
    /// The last labels and annotations seen.
    pub labels: Value,
    pub annotations: Value,
    /// When it was first seen firing (ms).
    pub first_firing_ms: Option<i64>,
}

impl Timeline {
    pub fn observe(&mut self, alert: Option<&Value>, now: i64) {
        let state = alert
            .and_then(|a| a["state"].as_str())
            .unwrap_or("gone")
            .to_string();
        if state == "gone" && self.states.is_empty() {
            return;
        }
        if let Some(a) = alert {
            self.labels = a["labels"].clone();
            self.annotations = a["annotations"].clone();
        }
        if state == "firing" && self.first_firing_ms.is_none() {
            self.first_firing_ms = Some(now);
        }
        if self.states.last() != Some(&state) {
            self.states.push(state);
            self.active_at.push(
                alert
                    .and_then(|a| a["activeAt"].as_str())
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }

    /// pending, then firing, then gone (in that order, possibly with repeats in between).
    pub fn pending_firing_resolved(&self) -> bool {
        let p = self.states.iter().position(|s| s == "pending");
        let f = p.and_then(|p| {
            self.states[p..]
                .iter()
                .position(|s| s == "firing")
                .map(|i| i + p)
        });
        f.is_some_and(|f| self.states[f..].iter().any(|s| s == "gone"))
    }
}

/// `data.alerts` of `/api/v1/alerts`.
pub async fn lookout_alerts(api: &PromApi) -> Vec<Value> {
    api.get_data("/api/v1/alerts", &[])
        .await
        .ok()
        .and_then(|d| d["alerts"].as_array().cloned())
        .unwrap_or_default()
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-29T05:53:51.123456Z` or `...+00:00` to Unix ms.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let num = |a: usize, b: usize| s.get(a..b)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let mut rest = s.get(19..)?;
    let mut ms = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
        let mut f = digits.clone();
        f.truncate(3);
        while f.len() < 3 {
            f.push('0');
        }
        ms = f.parse().ok()?;
        rest = &frac[digits.len()..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o.get(1..3)?.parse::<i64>().ok()? * 60 + o.get(4..6)?.parse::<i64>().ok()?)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60) * 1000) + ms)
}

/// Polls `f` every 200 ms until it returns true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// Alertmanager alerts by alertname.
pub fn by_name(alerts: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut m: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for a in alerts {
        let n = a["labels"]["alertname"].as_str().unwrap_or_default();
        m.entry(n.to_string()).or_default().push(a.clone());
    }
    m
}

#[test]
fn rfc3339() {
    assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1500));
    assert_eq!(
        parse_rfc3339_ms("2026-11-29T05:53:51.123456789Z"),
        Some(1_795_931_631_123)
    );
    assert_eq!(parse_rfc3339_ms("1970-01-01T01:00:00+01:00"), Some(0));
    assert_eq!(parse_rfc3339_ms("nope"), None);
}
