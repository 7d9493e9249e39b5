//! Delivery targets: Alertmanagers from `alerting.alertmanagers` (static targets, scheme,
//! path prefix, timeout, basic auth, bearer/authorization) and configured webhooks.

use std::time::Duration;

use lookout_config::AlertmanagerConfig;
use lookout_storage::Labels;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointKind {
    Alertmanager,
    Webhook,
}

/// A built-in webhook receiver.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookConfig {
    pub url: String,
    pub timeout: Duration,
    /// Sent as `Authorization: Bearer ...` when set.
    pub bearer_token: Option<String>,
}

impl WebhookConfig {
    pub fn new(url: impl Into<String>) -> Self {
        WebhookConfig {
            url: url.into(),
            timeout: Duration::from_secs(10),
            bearer_token: None,
        }
    }
}

#[derive(Clone, Debug)]
enum Auth {
    None,
    Basic(String, Option<String>),
    Header(String),
}

/// One place alerts are posted to.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub kind: EndpointKind,
    /// Full URL posted to.
    pub url: String,
    pub timeout: Duration,
    auth: Auth,
}

fn read_secret_file(p: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("reading {}: {e}", p.display()))
}

/// The Alertmanagers of one `alertmanagers` entry. Each static target becomes
/// `<scheme>://<address><path_prefix>/api/v2/alerts`; `relabel_configs` see `__address__`,
/// `__scheme__`, `__alerts_path__` and the target group's labels, and may drop targets.
pub(crate) fn alertmanagers(am: &AlertmanagerConfig) -> Result<Vec<Endpoint>, String> {
    if !am.file_sd_configs.is_empty() {
        tracing::warn!(
            "alerting.alertmanagers file_sd_configs are not supported; only static_configs are used"
        );
    }
    let auth = match (&am.http.basic_auth, &am.http.authorization) {
        (Some(b), _) => {
            let user = match &b.username_file {
                Some(p) => read_secret_file(p)?,
                None => b.username.clone(),
            };
            let pass = match (&b.password, &b.password_file) {
                (_, Some(p)) => Some(read_secret_file(p)?),
                (Some(s), None) => Some(s.expose().to_string()),
                (None, None) => None,
            };
            Auth::Basic(user, pass)
        }
        (None, Some(a)) => {
            let cred = match (&a.credentials, &a.credentials_file) {
                (_, Some(p)) => read_secret_file(p)?,
                (Some(s), None) => s.expose().to_string(),
                (None, None) => String::new(),
            };
            Auth::Header(format!("{} {cred}", a.kind))
        }
        (None, None) => Auth::None,
    };
    let prefix = am.path_prefix.trim_end_matches('/');
    let alerts_path = format!("{prefix}/api/v2/alerts");
    let mut out = Vec::new();
    for tg in &am.static_configs {
        for target in &tg.targets {
            let mut pairs: Vec<(String, String)> = tg
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            pairs.push(("__address__".into(), target.clone()));
            pairs.push(("__scheme__".into(), am.scheme.clone()));
            pairs.push(("__alerts_path__".into(), alerts_path.clone()));
            let labels = Labels::from_pairs(pairs);
            let Some(l) = lookout_relabel::relabel(&labels, &am.relabel_configs) else {
                continue;
            };
            let addr = l.get_or_empty("__address__");
            if addr.is_empty() {
                continue;
            }
            if addr.contains('/') {
                return Err(format!("invalid alertmanager address {addr:?}"));
            }
            let scheme = match l.get_or_empty("__scheme__") {
                "" => "http",
                s => s,
            };
            let path = l.get_or_empty("__alerts_path__");
            out.push(Endpoint {
                kind: EndpointKind::Alertmanager,
                url: format!("{scheme}://{addr}{path}"),
                timeout: am.timeout.as_std(),
                auth: auth.clone(),
            });
        }
    }
    Ok(out)
}

impl Endpoint {
    pub(crate) fn webhook(w: &WebhookConfig) -> Endpoint {
        Endpoint {
            kind: EndpointKind::Webhook,
            url: w.url.clone(),
            timeout: w.timeout,
            auth: match &w.bearer_token {
                Some(t) => Auth::Header(format!("Bearer {t}")),
                None => Auth::None,
            },
        }
    }

    /// Posts one JSON body; any non-2xx answer is an error.
    pub(crate) async fn post(&self, client: &reqwest::Client, body: String) -> Result<(), String> {
        let mut req = client
            .post(&self.url)
            .timeout(self.timeout)
            .header("Content-Type", "application/json")
            .header("User-Agent", concat!("Lookout/", env!("CARGO_PKG_VERSION")))
            .body(body);
        match &self.auth {
            Auth::None => {}
            Auth::Basic(u, p) => req = req.basic_auth(u, p.as_deref()),
            Auth::Header(h) => req = req.header("Authorization", h),
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                format!("context deadline exceeded: {e}")
            } else {
                e.to_string()
            }
        })?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            let text = resp.text().await.unwrap_or_default();
            Err(format!(
                "bad response status {status}: {}",
                text.chars().take(200).collect::<String>()
            ))
        }
    }
}
