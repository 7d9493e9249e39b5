//! Route table, the request-counting/readiness middleware and form reading.

mod lifecycle;
mod meta;
mod query;
mod status;
mod write;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
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
/// ready (except for the health check and self-metrics, as Prometheus).
async fn track(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let handler = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let resp =
        if !s.is_ready() && !matches!(handler.as_str(), "/-/healthy" | "/metrics" | "/-/ready") {
            (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n").into_response()
        } else {
            next.run(req).await
        };
    if !handler.is_empty() {
        s.metrics()
            .observe_request(&handler, resp.status().as_u16());
    }
    resp
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
