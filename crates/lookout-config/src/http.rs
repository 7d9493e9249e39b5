//! HTTP client settings shared by scrape, alerting and remote read/write sections
//! (Prometheus's `common/config.HTTPClientConfig` subset).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A string that is never printed by `Debug` (passwords, tokens).
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub username_file: Option<PathBuf>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Authorization {
    /// The scheme; `Bearer` unless set.
    #[serde(rename = "type")]
    pub kind: String,
    pub credentials: Option<Secret>,
    pub credentials_file: Option<PathBuf>,
}

impl Default for Authorization {
    fn default() -> Self {
        Authorization {
            kind: "Bearer".into(),
            credentials: None,
            credentials_file: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

/// The resolved HTTP client settings of one section. `bearer_token`/`bearer_token_file`
/// are folded into [`Authorization`] as Prometheus does.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpClientConfig {
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub tls_config: TlsConfig,
    pub follow_redirects: bool,
    pub enable_http2: bool,
}

impl Default for HttpClientConfig {
    fn default() -> Self {
        HttpClientConfig {
            basic_auth: None,
            authorization: None,
            tls_config: TlsConfig::default(),
            follow_redirects: true,
            enable_http2: true,
        }
    }
}

/// Builds and checks the resolved settings from the raw fields of a section.
pub(crate) fn resolve(
    basic_auth: &Option<BasicAuth>,
    authorization: &Option<Authorization>,
    bearer_token: &Option<Secret>,
    bearer_token_file: &Option<PathBuf>,
    tls_config: &TlsConfig,
    follow_redirects: bool,
    enable_http2: bool,
) -> Result<HttpClientConfig, String> {
    let has_bearer =
        bearer_token.as_ref().is_some_and(|s| !s.0.is_empty()) || bearer_token_file.is_some();
    if basic_auth.is_some() && has_bearer {
        return Err("at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured".into());
    }
    if bearer_token.as_ref().is_some_and(|s| !s.0.is_empty()) && bearer_token_file.is_some() {
        return Err("at most one of bearer_token & bearer_token_file must be configured".into());
    }
    if let Some(b) = basic_auth {
        if b.password.as_ref().is_some_and(|p| !p.0.is_empty()) && b.password_file.is_some() {
            return Err(
                "at most one of basic_auth password & password_file must be configured".into(),
            );
        }
        if !b.username.is_empty() && b.username_file.is_some() {
            return Err(
                "at most one of basic_auth username & username_file must be configured".into(),
            );
        }
    }
    let mut authorization = authorization.clone();
    if let Some(a) = &mut authorization {
        if has_bearer {
            return Err(
                "authorization is not compatible with bearer_token & bearer_token_file".into(),
            );
        }
        if basic_auth.is_some() {
            return Err(
                "at most one of basic_auth, oauth2 & authorization must be configured".into(),
            );
        }
        if a.kind.is_empty() {
            a.kind = "Bearer".into();
        }
        if a.kind.eq_ignore_ascii_case("basic") {
            return Err(
                "authorization type cannot be set to \"basic\", use \"basic_auth\" instead".into(),
            );
        }
        if a.credentials.as_ref().is_some_and(|c| !c.0.is_empty()) && a.credentials_file.is_some() {
            return Err(
                "at most one of authorization credentials & credentials_file must be configured"
                    .into(),
            );
        }
    } else if has_bearer {
        authorization = Some(Authorization {
            kind: "Bearer".into(),
            credentials: bearer_token.clone().filter(|s| !s.0.is_empty()),
            credentials_file: bearer_token_file.clone(),
        });
    }
    if tls_config.cert_file.is_some() != tls_config.key_file.is_some() {
        return Err("tls_config: exactly one of cert_file and key_file is configured, both or neither are needed".into());
    }
    Ok(HttpClientConfig {
        basic_auth: basic_auth.clone(),
        authorization,
        tls_config: tls_config.clone(),
        follow_redirects,
        enable_http2,
    })
}

/// Joins a relative path onto `base`.
pub(crate) fn join(base: &Path, p: &mut PathBuf) {
    if p.is_relative() && !p.as_os_str().is_empty() {
        *p = base.join(&*p);
    }
}

pub(crate) fn join_opt(base: &Path, p: &mut Option<PathBuf>) {
    if let Some(p) = p {
        join(base, p);
    }
}

impl HttpClientConfig {
    /// Makes every file path absolute relative to `base`.
    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        if let Some(b) = &mut self.basic_auth {
            join_opt(base, &mut b.password_file);
            join_opt(base, &mut b.username_file);
        }
        if let Some(a) = &mut self.authorization {
            join_opt(base, &mut a.credentials_file);
        }
        join_opt(base, &mut self.tls_config.ca_file);
        join_opt(base, &mut self.tls_config.cert_file);
        join_opt(base, &mut self.tls_config.key_file);
    }
}
