//! Lookout's UI (Grafana's job, :3001): the embedded single-page app (dashboards rendered from
//! the Grafana JSON model, Explore, alerts, targets, status), login with sessions and a forced
//! change of the default admin password, users/sessions/tokens/dashboards in SQLite, dashboard
//! and data-source provisioning, and the part of Grafana's HTTP API that dashboard tooling uses.
//!
//! The app queries the Prometheus (`/api/v1/*`) and Loki (`/loki/api/v1/*`) APIs on the same
//! origin; the binary mounts those routers next to [`router`].

mod api;
mod assets;
pub mod auth;
pub mod db;
pub mod provisioning;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parking_lot::RwLock;

pub use provisioning::{Datasource, ProvisionError, Provisioned, ProvisionedDashboard};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error(
        "too many consecutive incorrect login attempts for user - login for user temporarily blocked"
    )]
    TooManyAttempts,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Grafana's 412 with a `status` word (`version-mismatch`, `name-exists`).
    #[error("{1}")]
    Precondition(&'static str, String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Error::Db(_) | Error::Internal(_) | Error::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Precondition(..) => StatusCode::PRECONDITION_FAILED,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "ui request failed");
        }
        let body = match &self {
            Error::Precondition(s, m) => serde_json::json!({"status": s, "message": m}),
            e => serde_json::json!({"message": e.to_string()}),
        };
        (status, axum::Json(body)).into_response()
    }
}

/// How the UI is set up.
#[derive(Clone, Debug)]
pub struct UiConfig {
    /// `ui.db` (users, sessions, tokens, saved dashboards) lives here.
    pub data_dir: PathBuf,
    /// A Grafana `provisioning/` directory (`datasources/`, `dashboards/`), if any.
    pub provisioning_dir: Option<PathBuf>,
    /// Reported by `/api/health` and the status page.
    pub version: String,
    /// Data sources listed when provisioning defines none.
    pub prometheus_url: String,
    pub loki_url: String,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            data_dir: PathBuf::from("data"),
            provisioning_dir: None,
            version: env!("CARGO_PKG_VERSION").to_string(),
            prometheus_url: "http://127.0.0.1:9090".into(),
            loki_url: "http://127.0.0.1:3100".into(),
        }
    }
}

/// Shared state of the UI router.
pub struct UiState {
    pub(crate) config: UiConfig,
    pub(crate) db: db::Db,
    pub(crate) throttle: auth::Throttle,
    pub(crate) provisioned: RwLock<Provisioned>,
}

impl UiState {
    /// Opens `<data_dir>/ui.db`, creates admin/admin (to be changed at first login) when no
    /// user exists, and loads provisioning.
    pub fn open(config: UiConfig) -> Result<UiState, Error> {
        std::fs::create_dir_all(&config.data_dir)?;
        let db = db::Db::open(&config.data_dir.join("ui.db"))?;
        Self::with_db(config, db)
    }

    /// Like [`UiState::open`] with an in-memory database (tests).
    pub fn in_memory(config: UiConfig) -> Result<UiState, Error> {
        Self::with_db(config, db::Db::in_memory()?)
    }

    fn with_db(config: UiConfig, db: db::Db) -> Result<UiState, Error> {
        if db.user_count()? == 0 {
            let hash = auth::hash_password("admin")?;
            db.create_user(
                "admin",
                "admin",
                "admin@localhost",
                db::Role::Admin,
                &hash,
                true,
            )?;
            tracing::info!(
                "created user admin with the default password; it must be changed at first login"
            );
        }
        let state = UiState {
            config,
            db,
            throttle: auth::Throttle::new(5, Duration::from_secs(300)),
            provisioned: RwLock::new(Provisioned::default()),
        };
        state.reload_provisioning()?;
        Ok(state)
    }

    /// Re-reads the provisioning directory.
    pub fn reload_provisioning(&self) -> Result<(), Error> {
        let mut p = match &self.config.provisioning_dir {
            Some(dir) => provisioning::load(dir),
            None => Provisioned::default(),
        };
        if p.datasources.is_empty() {
            p.datasources = default_datasources(&self.config);
        }
        for d in &mut p.dashboards {
            if !d.folder_title.is_empty() {
                let f = self.db.ensure_folder(&d.folder_uid, &d.folder_title)?;
                d.folder_uid = f.uid;
            }
        }
        for e in &p.errors {
            tracing::warn!(file = %e.file, reason = %e.reason, "provisioning file skipped");
        }
        tracing::info!(
            dashboards = p.dashboards.len(),
            datasources = p.datasources.len(),
            errors = p.errors.len(),
            "ui provisioning loaded"
        );
        *self.provisioned.write() = p;
        Ok(())
    }

    /// Problems found while provisioning (file and reason).
    pub fn provisioning_errors(&self) -> Vec<ProvisionError> {
        self.provisioned.read().errors.clone()
    }
}

fn default_datasources(c: &UiConfig) -> Vec<Datasource> {
    vec![
        Datasource {
            id: 1,
            uid: "prometheus".into(),
            name: "Prometheus".into(),
            kind: "prometheus".into(),
            access: "proxy".into(),
            url: c.prometheus_url.clone(),
            is_default: true,
            json_data: serde_json::json!({}),
        },
        Datasource {
            id: 2,
            uid: "loki".into(),
            name: "Loki".into(),
            kind: "loki".into(),
            access: "proxy".into(),
            url: c.loki_url.clone(),
            is_default: false,
            json_data: serde_json::json!({}),
        },
    ]
}

/// The UI router: the app's pages and assets and the Grafana HTTP API subset. It defines no
/// fallback, so it merges with the Prometheus and Loki API routers.
pub fn router(state: Arc<UiState>) -> Router {
    api::routes().merge(assets::routes()).with_state(state)
}
