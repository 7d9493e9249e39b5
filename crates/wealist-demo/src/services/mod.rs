//! The seven services. Each `router` builds a fresh instance (new state, new metrics), which is
//! what a restarted container is. Shared here: the JSON error type, the JSON body extractor
//! that turns every rejection into a 400 with a JSON body, input checks, and the middleware
//! that applies injected faults and writes one structured log line per request.

pub mod auth;
pub mod board;
pub mod chat;
pub mod noti;
pub mod storage;
pub mod user;
pub mod video;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lookout_instrument::{ExceptionName, HttpMetricsLayer, Metrics};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::watch;

use crate::faults::ServiceFaults;
use crate::logs::{Level, LogFields, Logger};
use crate::{DemoError, ServiceKind};

/// What every service instance gets from the stack.
#[derive(Clone, Debug)]
pub struct ServiceContext {
    pub kind: ServiceKind,
    pub logger: Logger,
    pub faults: Arc<ServiceFaults>,
    /// Where the storage service keeps files.
    pub data_dir: PathBuf,
    /// Turns true when this instance is being stopped (long-lived WebSockets close on it).
    pub shutdown: watch::Receiver<bool>,
    /// PostgreSQL/Redis behind the user and board services (absent: in-memory only).
    pub backing: Option<Arc<crate::backing::Backing>>,
}

/// Builds a fresh instance of `kind`.
pub fn router(ctx: &ServiceContext) -> Result<Router, DemoError> {
    match ctx.kind {
        ServiceKind::User => user::router(ctx),
        ServiceKind::Auth => auth::router(ctx),
        ServiceKind::Board => board::router(ctx),
        ServiceKind::Chat => chat::router(ctx),
        ServiceKind::Noti => noti::router(ctx),
        ServiceKind::Storage => storage::router(ctx),
        ServiceKind::Video => video::router(ctx),
    }
}

/// An error answered as `{"error": "...", "status": N}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Reported as Micrometer's `exception` label by the auth service.
    pub exception: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            exception: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    pub fn limit(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, message)
    }
    pub fn with_exception(mut self, name: &'static str) -> Self {
        self.exception = Some(name);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.message, "status": self.status.as_u16() }));
        let mut resp = (self.status, body).into_response();
        resp.extensions_mut().insert(ErrorMessage(self.message));
        if let Some(e) = self.exception {
            resp.extensions_mut().insert(ExceptionName::new(e));
        }
        resp
    }
}

/// The error text, for the request log line.
#[derive(Clone, Debug)]
struct ErrorMessage(String);

/// The acting user, for the request log line (handlers put it in the response extensions).
#[derive(Clone, Debug)]
pub struct LoggedUser(pub String);

/// Adds the acting user to a response, for the log line.
pub fn with_user(resp: impl IntoResponse, user: &str) -> Response {
    let mut resp = resp.into_response();
    resp.extensions_mut().insert(LoggedUser(user.to_owned()));
    resp
}

/// `Json<T>` whose rejections (bad JSON, wrong content type, too large) are 400 JSON errors.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}

/// `1..=max` characters of `[A-Za-z0-9_.-]`.
pub fn check_ident(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > max {
        return Err(ApiError::bad_request(format!(
            "{field} must be 1 to {max} characters"
        )));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(ApiError::bad_request(format!(
            "{field} may only contain letters, digits, '_', '-' and '.'"
        )));
    }
    Ok(())
}

/// Non-blank text of at most `max` characters, without control characters.
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::bad_request(format!("{field} must not be blank")));
    }
    if value.chars().count() > max {
        return Err(ApiError::bad_request(format!(
            "{field} must be at most {max} characters"
        )));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::bad_request(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

/// A numeric id from a path segment.
pub fn parse_id(field: &str, value: &str) -> Result<u64, ApiError> {
    value
        .parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("{field} must be a positive integer")))
}

#[derive(Clone)]
struct MiddlewareState {
    logger: Logger,
    faults: Arc<ServiceFaults>,
    metrics_path: &'static str,
    fault_exception: &'static str,
}

/// Adds `/metrics` (or `/actuator/prometheus`), `/health`, the fault + log middleware and,
/// outermost, the HTTP metrics layer to a service's routes.
pub(crate) fn finish(
    ctx: &ServiceContext,
    routes: Router,
    metrics: Metrics,
    http: HttpMetricsLayer,
) -> Router {
    let exporter = metrics.exporter();
    let mw = MiddlewareState {
        logger: ctx.logger.clone(),
        faults: ctx.faults.clone(),
        metrics_path: ctx.kind.metrics_path(),
        fault_exception: if ctx.kind == ServiceKind::Auth {
            "DataAccessResourceFailureException"
        } else {
            "none"
        },
    };
    let health_path = if ctx.kind == ServiceKind::Auth {
        "/actuator/health"
    } else {
        "/health"
    };
    routes
        .merge(exporter.route(ctx.kind.metrics_path()))
        .route(
            health_path,
            get(|| async { Json(json!({ "status": "UP" })) }),
        )
        .layer(from_fn_with_state(mw, observe))
        .layer(http)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .filter(|v| v.bytes().all(|b| b.is_ascii_graphic()))
}

/// Applies injected faults and logs the request (scrapes and health checks are left alone).
async fn observe(State(mw): State<MiddlewareState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    if matches!(route.as_deref(), Some(p) if p == mw.metrics_path || p.ends_with("/health")) {
        return next.run(req).await;
    }
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let mut path: String = req.uri().path().chars().take(200).collect();
    if path.is_empty() {
        path.push('/');
    }
    let trace_id = header_str(req.headers(), "x-trace-id")
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let mut r = crate::rng::Rng::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0),
            );
            r.hex(32)
        });
    let header_user = header_str(req.headers(), "x-user-id").map(str::to_owned);

    let decision = mw.faults.decide();
    if let Some(d) = decision.delay {
        tokio::time::sleep(d).await;
    }
    let resp = if decision.fail {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "upstream dependency failed (injected fault)",
        )
        .with_exception(mw.fault_exception)
        .into_response()
    } else {
        next.run(req).await
    };

    let status = resp.status().as_u16();
    let level = match status {
        500.. => Level::Error,
        400..=499 => Level::Warn,
        _ => Level::Info,
    };
    let user_id = resp
        .extensions()
        .get::<LoggedUser>()
        .map(|u| u.0.clone())
        .or(header_user);
    let error = resp.extensions().get::<ErrorMessage>().map(|e| e.0.clone());
    let latency_ms = (start.elapsed().as_secs_f64() * 1e6).round() / 1e3;
    mw.logger.log(
        level,
        if status >= 500 {
            "request failed"
        } else {
            "request completed"
        },
        &LogFields {
            method: Some(method),
            path: Some(path),
            status: Some(status),
            latency_ms: Some(latency_ms),
            trace_id: Some(trace_id),
            user_id,
            error,
        },
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks() {
        assert!(check_ident("room", "general-1_a.b", 64).is_ok());
        assert!(check_ident("room", "", 64).is_err());
        assert!(check_ident("room", "a b", 64).is_err());
        assert!(check_ident("room", &"a".repeat(65), 64).is_err());
        assert!(check_ident("room", "ä", 64).is_err());
        assert!(check_text("text", "hello\nworld", 10).is_err());
        assert!(check_text("text", "hello", 10).is_ok());
        assert!(check_text("text", "   ", 10).is_err());
        assert!(check_text("text", "a\u{7}", 10).is_err());
        assert_eq!(parse_id("id", "42").ok(), Some(42));
        assert!(parse_id("id", "-1").is_err());
        assert!(parse_id("id", "x").is_err());
    }
}
