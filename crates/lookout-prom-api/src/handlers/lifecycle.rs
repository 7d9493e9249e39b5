//! `/-/healthy`, `/-/ready`, `/-/reload` and `/metrics`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lookout_exposition::Format;

use super::Shared;

pub(crate) async fn healthy() -> Response {
    (StatusCode::OK, "Lookout Server is Healthy.\n").into_response()
}

pub(crate) async fn ready(State(s): State<Shared>) -> Response {
    if s.is_ready() {
        (StatusCode::OK, "Lookout Server is Ready.\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n").into_response()
    }
}

pub(crate) async fn reload(State(s): State<Shared>) -> Response {
    let Some(hook) = s.reload.clone() else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed to reload config: reload is not available in this process\n",
        )
            .into_response();
    };
    match tokio::task::spawn_blocking(move || hook.reload()).await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "config reload failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("failed to reload config: {e}\n"),
            )
                .into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        )
            .into_response(),
    }
}

/// Self-metrics: OpenMetrics when the `Accept` header prefers it, text 0.0.4 otherwise.
pub(crate) async fn metrics(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let mut om = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut om, &s.registry.read()) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response();
    }
    let body = match format {
        Format::OpenMetrics => om.into_bytes(),
        Format::PrometheusText => {
            let mut out = Vec::with_capacity(om.len());
            if let Err(e) = lookout_exposition::convert(
                om.as_bytes(),
                Format::OpenMetrics,
                Format::PrometheusText,
                &mut out,
            ) {
                tracing::error!(error = %e, "re-encoding self-metrics as text failed");
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("encoding metrics: {e}\n"),
                )
                    .into_response();
            }
            out
        }
    };
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    resp
}
