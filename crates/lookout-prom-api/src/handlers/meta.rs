//! `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/<name>/values`, `/api/v1/metadata`.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use lookout_storage::{Labels, Matcher, StorageError};
use serde::Serialize;

use super::{Shared, read_form};
use crate::error::{ApiError, ErrorType};
use crate::json;
use crate::params::{self, Form};

const TRUNCATED: &str = "results truncated due to limit";

/// Time range and matcher sets shared by the metadata-style endpoints.
struct Selection {
    start: i64,
    end: i64,
    matcher_sets: Vec<Vec<Matcher>>,
    limit: usize,
}

fn selection(form: &Form) -> Result<Selection, ApiError> {
    let limit = params::parse_limit(form)?;
    let start = params::parse_time_param(form, "start", params::MIN_TIME_MS)?;
    let end = params::parse_time_param(form, "end", params::MAX_TIME_MS)?;
    let matcher_sets = params::parse_matchers_param(&form.values("match[]"))?;
    Ok(Selection {
        start,
        end,
        matcher_sets,
        limit,
    })
}

fn storage_error(e: StorageError) -> ApiError {
    match e {
        StorageError::TooManySamples { .. } | StorageError::TooManySeries { .. } => {
            ApiError::new(ErrorType::Execution, e.to_string())
        }
        _ => ApiError::internal(e.to_string()),
    }
}

/// Runs blocking storage work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("storage task failed: {e}")))?
}

/// Truncates to `limit` (0 = unlimited) and reports the warning Prometheus adds.
fn truncate<T>(items: &mut Vec<T>, limit: usize) -> Vec<String> {
    if limit > 0 && items.len() > limit {
        items.truncate(limit);
        vec![TRUNCATED.to_string()]
    } else {
        Vec::new()
    }
}

pub(crate) async fn series(State(s): State<Shared>, req: Request) -> Response {
    let result: Result<Response, ApiError> = async {
        let form = read_form(&s, req).await?;
        if form.values("match[]").is_empty() {
            return Err(ApiError::bad_data("no match[] parameter provided"));
        }
        let sel = selection(&form)?;
        let q = s.queryable.clone();
        let mut all: Vec<Labels> = blocking(move || {
            let mut set = BTreeSet::new();
            for ms in &sel.matcher_sets {
                set.extend(q.series(ms, sel.start, sel.end).map_err(storage_error)?);
            }
            Ok(set.into_iter().collect())
        })
        .await?;
        let warnings = truncate(&mut all, sel.limit);
        let mut out = String::from("[");
        for (i, l) in all.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json::write_labels(&mut out, l);
        }
        out.push(']');
        Ok(json::success(&out, &warnings, &[]))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub(crate) async fn label_names(State(s): State<Shared>, req: Request) -> Response {
    let result: Result<Response, ApiError> = async {
        let form = read_form(&s, req).await?;
        let sel = selection(&form)?;
        let q = s.queryable.clone();
        let mut names: Vec<String> = blocking(move || {
            if sel.matcher_sets.is_empty() {
                return q
                    .label_names(&[], sel.start, sel.end)
                    .map_err(storage_error);
            }
            let mut set = BTreeSet::new();
            for ms in &sel.matcher_sets {
                set.extend(
                    q.label_names(ms, sel.start, sel.end)
                        .map_err(storage_error)?,
                );
            }
            Ok(set.into_iter().collect())
        })
        .await?;
        let warnings = truncate(&mut names, sel.limit);
        Ok(json::success_value(&names, &warnings))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub(crate) async fn label_values(
    State(s): State<Shared>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let result: Result<Response, ApiError> = async {
        let form = read_form(&s, req).await?;
        let name = params::unescape_label_name(&name);
        if name.is_empty() {
            return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
        }
        let sel = selection(&form)?;
        let q = s.queryable.clone();
        let mut values: Vec<String> = blocking(move || {
            if sel.matcher_sets.is_empty() {
                return q
                    .label_values(&name, &[], sel.start, sel.end)
                    .map_err(storage_error);
            }
            let mut set = BTreeSet::new();
            for ms in &sel.matcher_sets {
                set.extend(
                    q.label_values(&name, ms, sel.start, sel.end)
                        .map_err(storage_error)?,
                );
            }
            Ok(set.into_iter().collect())
        })
        .await?;
        let warnings = truncate(&mut values, sel.limit);
        Ok(json::success_value(&values, &warnings))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
struct MetadataEntry {
    #[serde(rename = "type")]
    typ: String,
    help: String,
    unit: String,
}

/// Parses an optional integer parameter; `-1` when absent (Prometheus's "no limit").
fn int_param(form: &Form, name: &str) -> Result<i64, ApiError> {
    let v = form.value(name);
    if v.is_empty() {
        return Ok(-1);
    }
    v.parse()
        .map_err(|_| ApiError::bad_data(format!("{name} must be a number")))
}

pub(crate) async fn metadata(State(s): State<Shared>, req: Request) -> Response {
    let result: Result<Response, ApiError> = async {
        let form = read_form(&s, req).await?;
        let limit = int_param(&form, "limit")?;
        let limit_per_metric = int_param(&form, "limit_per_metric")?;
        let metric = form.value("metric").to_string();
        let targets = s.targets.clone();
        let all = blocking(move || Ok(targets.target_metadata())).await?;
        let mut by_metric: BTreeMap<String, BTreeSet<MetadataEntry>> = BTreeMap::new();
        for t in all {
            for m in t.metadata {
                if !metric.is_empty() && m.metric != metric {
                    continue;
                }
                let set = by_metric.entry(m.metric).or_default();
                if limit_per_metric > 0 && set.len() as i64 >= limit_per_metric {
                    continue;
                }
                set.insert(MetadataEntry {
                    typ: m.metric_type,
                    help: m.help,
                    unit: m.unit,
                });
            }
        }
        let mut out: BTreeMap<String, Vec<MetadataEntry>> = BTreeMap::new();
        for (name, set) in by_metric {
            if limit >= 0 && out.len() as i64 >= limit {
                break;
            }
            out.insert(name, set.into_iter().collect());
        }
        Ok(json::success_value(&out, &[]))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
