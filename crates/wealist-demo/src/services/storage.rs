//! storage-service (:8003): file upload and download with streamed bodies — uploads are
//! written to disk chunk by chunk (`<data-dir>/storage/`), downloads read back in 64 KiB
//! chunks; neither holds a whole file in memory.
//!
//! Metrics: `storage_upload_bytes_total`, `storage_download_bytes_total` (counted per chunk).

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use lookout_instrument::metrics::Counter;
use lookout_instrument::{HttpMetricsConfig, Metrics};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ApiError, ServiceContext, finish};
use crate::DemoError;

/// Largest accepted upload.
pub const MAX_FILE: u64 = 64 * 1024 * 1024;
/// Most files kept.
pub const MAX_FILES: usize = 10_000;
const CHUNK: usize = 64 * 1024;

struct AppState {
    dir: PathBuf,
    seq: std::sync::atomic::AtomicU64,
    uploaded: Counter,
    downloaded: Counter,
}

type St = State<Arc<AppState>>;

pub fn router(ctx: &ServiceContext) -> Result<Router, DemoError> {
    let mut metrics = Metrics::new();
    let http = metrics.http_layer(HttpMetricsConfig::default())?;
    let dir = ctx.data_dir.join("storage");
    std::fs::create_dir_all(&dir).map_err(|source| DemoError::Io {
        context: format!("creating {}", dir.display()),
        source,
    })?;
    let state = Arc::new(AppState {
        dir,
        seq: std::sync::atomic::AtomicU64::new(0),
        uploaded: metrics.counter("storage_upload_bytes_total", "Bytes uploaded.")?,
        downloaded: metrics.counter("storage_download_bytes_total", "Bytes downloaded.")?,
    });
    let routes = Router::new()
        .route("/api/files", get(list))
        .route(
            "/api/files/{name}",
            get(download).put(upload).delete(remove),
        )
        .with_state(state);
    Ok(finish(ctx, routes, metrics, http))
}

/// File names: `1..=128` of `[A-Za-z0-9_.-]`, not starting with a dot.
fn check_name(name: &str) -> Result<(), ApiError> {
    super::check_ident("file name", name, 128)?;
    if name.starts_with('.') {
        return Err(ApiError::bad_request("file name must not start with '.'"));
    }
    Ok(())
}

fn io_error(e: std::io::Error) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("storage I/O: {e}"),
    )
}

async fn upload(State(s): St, Path(name): Path<String>, body: Body) -> Result<Response, ApiError> {
    check_name(&name)?;
    let count = std::fs::read_dir(&s.dir).map(|d| d.count()).unwrap_or(0);
    let target = s.dir.join(&name);
    if count >= MAX_FILES && !target.exists() {
        return Err(ApiError::limit("file limit reached"));
    }
    let seq = s.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = s.dir.join(format!(".upload-{seq}-{name}"));
    let mut file = tokio::fs::File::create(&tmp).await.map_err(io_error)?;
    let mut stream = body.into_data_stream();
    let mut size: u64 = 0;
    let result: Result<(), ApiError> = async {
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
            size += chunk.len() as u64;
            s.uploaded.inc_by(chunk.len() as u64);
            if size > MAX_FILE {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("files are limited to {MAX_FILE} bytes"),
                ));
            }
            file.write_all(&chunk).await.map_err(io_error)?;
        }
        file.flush().await.map_err(io_error)?;
        Ok(())
    }
    .await;
    drop(file);
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    tokio::fs::rename(&tmp, &target).await.map_err(io_error)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": name, "size": size })),
    )
        .into_response())
}

async fn download(State(s): St, Path(name): Path<String>) -> Result<Response, ApiError> {
    check_name(&name)?;
    let file = match tokio::fs::File::open(s.dir.join(&name)).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found("no such file"));
        }
        Err(e) => return Err(io_error(e)),
    };
    let len = file.metadata().await.map_err(io_error)?.len();
    let state = s.clone();
    let stream = futures_util::stream::unfold(Some(file), move |file| {
        let state = state.clone();
        async move {
            let mut file = file?;
            let mut buf = vec![0u8; CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    state.downloaded.inc_by(n as u64);
                    Some((Ok::<Bytes, std::io::Error>(Bytes::from(buf)), Some(file)))
                }
                Err(e) => Some((Err(e), None)),
            }
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

async fn remove(State(s): St, Path(name): Path<String>) -> Result<Response, ApiError> {
    check_name(&name)?;
    match tokio::fs::remove_file(s.dir.join(&name)).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(ApiError::not_found("no such file"))
        }
        Err(e) => Err(io_error(e)),
    }
}

async fn list(State(s): St) -> Result<Response, ApiError> {
    let mut files = Vec::new();
    let mut dir = tokio::fs::read_dir(&s.dir).await.map_err(io_error)?;
    while let Some(entry) = dir.next_entry().await.map_err(io_error)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let size = entry.metadata().await.map(|m| m.len()).unwrap_or(0);
        files.push(json!({ "name": name, "size": size }));
        if files.len() >= 100 {
            break;
        }
    }
    Ok(Json(json!({ "files": files })).into_response())
}
