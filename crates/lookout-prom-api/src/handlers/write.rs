//! `POST /api/v1/write`: the remote-write 1.0 receiver.
//!
//! The whole request goes through one appender and is committed once, so a request that
//! fails anywhere stores nothing. Answers as Prometheus: 204 on success; 400 for what a sender
//! must not retry (malformed snappy/protobuf, invalid labels, out-of-order or duplicate
//! samples); 413 for oversized bodies; 415 for other encodings or protocol versions; 500 only
//! for storage failures, which senders retry.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lookout_remote_write::{
    DecodeError, WriteRequest, decode_write_request_with_limit, validate_labels,
};
use lookout_storage::{AppendError, Labels};

use super::{Shared, read_body};

/// A plain-text answer, as Go's `http.Error` writes it.
fn text(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, format!("{msg}\n")).into_response()
}

pub(crate) async fn remote_write(State(s): State<Shared>, req: Request) -> Response {
    let (resp, samples) = handle(&s, req).await;
    s.metrics()
        .observe_remote_write(resp.status().as_u16(), samples);
    resp
}

/// Checks `Content-Encoding` and `Content-Type` (absent headers mean remote-write 1.0, as
/// Prometheus tolerates).
fn check_headers(h: &HeaderMap) -> Result<(), (StatusCode, String)> {
    if let Some(enc) = h.get(header::CONTENT_ENCODING) {
        let enc = enc.to_str().unwrap_or("");
        if !enc.trim().eq_ignore_ascii_case("snappy") {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported compression: {enc}. Only snappy is supported"),
            ));
        }
    }
    if let Some(ct) = h.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let mut parts = ct.split(';');
        let media = parts.next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case("application/x-protobuf") {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported content type: {ct}; expected application/x-protobuf"),
            ));
        }
        for p in parts {
            if let Some((k, v)) = p.split_once('=')
                && k.trim().eq_ignore_ascii_case("proto")
                && v.trim() != "prometheus.WriteRequest"
            {
                return Err((
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "unsupported proto type {:?}: only remote-write 1.0 (prometheus.WriteRequest) is supported",
                        v.trim()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A validated series: canonical labels and its `(timestamp ms, value)` samples.
type ValidSeries = (Labels, Vec<(i64, f64)>);

/// Validated series of a request, in request order.
fn validate(req: &WriteRequest) -> Result<Vec<ValidSeries>, String> {
    let mut out = Vec::with_capacity(req.timeseries.len());
    for ts in &req.timeseries {
        let labels = validate_labels(&ts.labels).map_err(|e| e.to_string())?;
        if !ts.histograms.is_empty() {
            return Err(format!(
                "native histogram samples are not supported (series {labels})"
            ));
        }
        out.push((
            labels,
            ts.samples.iter().map(|s| (s.timestamp, s.value)).collect(),
        ));
    }
    Ok(out)
}

async fn handle(s: &Shared, req: Request) -> (Response, u64) {
    if let Err((status, msg)) = check_headers(req.headers()) {
        return (text(status, msg), 0);
    }
    let limits = s.limits().clone();
    let body = match read_body(req.into_body(), limits.remote_write_max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return (text(e.status(), e.message), 0),
    };
    let decoded =
        match decode_write_request_with_limit(&body, limits.remote_write_max_decoded_bytes) {
            Ok(r) => r,
            Err(e @ DecodeError::TooLarge { .. }) => {
                return (text(StatusCode::PAYLOAD_TOO_LARGE, e), 0);
            }
            Err(e) => {
                tracing::debug!(error = %e, "malformed remote-write request");
                return (text(StatusCode::BAD_REQUEST, e), 0);
            }
        };
    let series = match validate(&decoded) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "remote-write request rejected");
            return (text(StatusCode::BAD_REQUEST, e), 0);
        }
    };
    drop(decoded);
    let appendable = s.appendable.clone();
    let outcome = tokio::task::spawn_blocking(move || append_all(&*appendable, &series)).await;
    match outcome {
        Ok(Ok(n)) => (StatusCode::NO_CONTENT.into_response(), n),
        Ok(Err((status, msg))) => {
            if status.is_server_error() {
                tracing::error!(error = %msg, "remote-write append failed");
            } else {
                tracing::warn!(error = %msg, "remote-write samples rejected");
            }
            (text(status, msg), 0)
        }
        Err(e) => (
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("append task failed: {e}"),
            ),
            0,
        ),
    }
}

/// Appends every sample through one appender; commits only when all were accepted.
fn append_all(
    appendable: &dyn lookout_storage::Appendable,
    series: &[ValidSeries],
) -> Result<u64, (StatusCode, String)> {
    let mut app = appendable.appender();
    let mut n = 0u64;
    for (labels, samples) in series {
        let mut series_ref = None;
        for &(t, v) in samples {
            match app.append(series_ref, labels, t, v) {
                Ok(r) => series_ref = Some(r),
                Err(e) => {
                    app.rollback();
                    let status = match e {
                        AppendError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
                        _ => StatusCode::BAD_REQUEST,
                    };
                    return Err((status, format!("{e} (series {labels}, timestamp {t})")));
                }
            }
            n += 1;
        }
    }
    app.commit().map_err(|e| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("commit failed: {e}"),
        )
    })?;
    Ok(n)
}
