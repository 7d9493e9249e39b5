//! Route table, the request-counting/readiness middleware and form reading.

mod lifecycle;
mod meta;
mod query;
mod rules;
mod status;
mod write;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::ApiState;
use crate::error::ApiError;
use crate::params::Form;

pub(crate) type Shared = Arc<ApiState>;

pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/api/v1/query", get(query::instant).post(query::instant))
        .route("/api/v1/query_range", get(query::range).post(query::range))
        .route(
            "/api/v1/query_exemplars",
            get(query::exemplars).post(query::exemplars),
        )
        .route("/api/v1/series", get(meta::series).post(meta::series))
        .route(
            "/api/v1/labels",
            get(meta::label_names).post(meta::label_names),
        )
        .route("/api/v1/label/{name}/values", get(meta::label_values))
        .route("/api/v1/metadata", get(meta::metadata))
        .route("/api/v1/targets", get(status::targets))
        .route("/api/v1/rules", get(rules::rules).post(rules::rules))
        .route("/api/v1/alerts", get(rules::alerts))
        .route("/api/v1/targets/metadata", get(status::targets_metadata))
        .route("/api/v1/status/buildinfo", get(status::buildinfo))
        .route("/api/v1/status/config", get(status::config))
        .route("/api/v1/status/flags", get(status::flags))
        .route("/api/v1/status/runtimeinfo", get(status::runtimeinfo))
        .route("/api/v1/status/tsdb", get(status::tsdb))
        .route("/api/v1/write", post(write::remote_write))
        .route(
            "/-/healthy",
            get(lifecycle::healthy).head(lifecycle::healthy),
        )
        .route("/-/ready", get(lifecycle::ready).head(lifecycle::ready))
        .route("/-/reload", post(lifecycle::reload).put(lifecycle::reload))
        .route("/metrics", get(lifecycle::metrics))
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Counts every request by route and status code; answers 503 while the process is not
/// ready (except for the health check and self-metrics, as Prometheus). API routes get
/// Prometheus's CORS headers, and `OPTIONS` on them is answered with 204.
async fn track(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let handler = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let is_api = handler.starts_with("/api/v1/");
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut resp =
        if !s.is_ready() && !matches!(handler.as_str(), "/-/healthy" | "/metrics" | "/-/ready") {
            (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n").into_response()
        } else if is_api && req.method() == Method::OPTIONS {
            StatusCode::NO_CONTENT.into_response()
        } else {
            next.run(req).await
        };
    if is_api {
        set_cors(resp.headers_mut(), origin);
    }
    if !handler.is_empty() {
        s.metrics()
            .observe_request(&handler, resp.status().as_u16());
    }
    resp
}

/// Prometheus's `httputil.SetCORS` with its default origin pattern (`.*`).
fn set_cors(h: &mut axum::http::HeaderMap, origin: Option<HeaderValue>) {
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Accept, Authorization, Content-Type, Origin"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Date"),
    );
    if origin.is_some() {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
}

/// Reads the URL query and, for a urlencoded POST/PUT body, the body (Go's `ParseForm`).
pub(crate) async fn read_form(s: &ApiState, req: Request) -> Result<Form, ApiError> {
    let (parts, body) = req.into_parts();
    let query = parts.uri.query().map(str::to_string);
    let is_form = matches!(parts.method, Method::POST | Method::PUT | Method::PATCH)
        && parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
    if !is_form {
        return Ok(Form::parse(query.as_deref(), None));
    }
    let bytes = read_body(body, s.limits().max_form_body_bytes).await?;
    Ok(Form::parse(query.as_deref(), Some(&bytes)))
}

/// Collects a body up to `limit` bytes; 413 beyond.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        if inner.is::<http_body_util::LengthLimitError>() {
            ApiError::too_large(format!("request body exceeds the limit of {limit} bytes"))
        } else {
            ApiError::bad_data(format!("error reading request body: {inner}"))
        }
    })
}
