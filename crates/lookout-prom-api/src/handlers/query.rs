//! `/api/v1/query`, `/api/v1/query_range`, `/api/v1/query_exemplars`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use lookout_promql::{EngineOptions, QueryError, QueryResult};

use super::{Shared, read_form};
use crate::error::{ApiError, ErrorType};
use crate::json;
use crate::params::{self, Form, invalid_param};

/// Prometheus's cap on points per series in a range query.
const MAX_POINTS_PER_SERIES: i128 = 11_000;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) async fn instant(State(s): State<Shared>, req: Request) -> Response {
    let result: Result<Response, ApiError> = async {
        let form = read_form(&s, req).await?;
        let ts = params::parse_time_param(&form, "time", now_ms())?;
        let timeout = query_timeout(&s, &form)?;
        let query = form.value("query").to_string();
        run(&s, Kind::Instant { ts }, query, timeout).await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub(crate) async fn range(State(s): State<Shared>, req: Request) -> Response {
    let result: Result<Response, ApiError> = async {
        let form = read_form(&s, req).await?;
        let start = params::parse_time(form.value("start")).map_err(|e| invalid_param("start", e))?;
        let end = params::parse_time(form.value("end")).map_err(|e| invalid_param("end", e))?;
        if end < start {
            return Err(invalid_param("end", "end timestamp must not be before start time"));
        }
        let step_ns = params::parse_duration_ns(form.value("step")).map_err(|e| invalid_param("step", e))?;
        if step_ns <= 0 {
            return Err(invalid_param(
                "step",
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        let range_ns = (end as i128 - start as i128) * 1_000_000;
        if range_ns / step_ns > MAX_POINTS_PER_SERIES {
            return Err(ApiError::bad_data(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
            ));
        }
        let step = Duration::from_nanos(step_ns as u64);
        let timeout = query_timeout(&s, &form)?;
        let query = form.value("query").to_string();
        run(&s, Kind::Range { start, end, step }, query, timeout).await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Exemplars are not stored: validates the parameters as Prometheus does and answers with an
/// empty list.
pub(crate) async fn exemplars(State(s): State<Shared>, req: Request) -> Response {
    let result: Result<Response, ApiError> = async {
        let form = read_form(&s, req).await?;
        let start = params::parse_time_param(&form, "start", params::MIN_TIME_MS)?;
        let end = params::parse_time_param(&form, "end", params::MAX_TIME_MS)?;
        if end < start {
            return Err(ApiError::bad_data(
                "end timestamp must not be before start timestamp",
            ));
        }
        promql_parser::parser::parse(form.value("query")).map_err(ApiError::bad_data)?;
        Ok(json::success("[]", &[], &[]))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The `timeout` parameter, capped by the server's limit.
fn query_timeout(s: &Shared, form: &Form) -> Result<Duration, ApiError> {
    let max = s.limits().query_timeout;
    let v = form.value("timeout");
    if v.is_empty() {
        return Ok(max);
    }
    let ns = params::parse_duration_ns(v).map_err(|e| invalid_param("timeout", e))?;
    if ns <= 0 {
        return Ok(Duration::ZERO);
    }
    Ok(Duration::from_nanos(ns.min(u64::MAX as i128) as u64).min(max))
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Instant {
        ts: i64,
    },
    Range {
        start: i64,
        end: i64,
        step: Duration,
    },
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Instant { .. } => "instant",
            Kind::Range { .. } => "range",
        }
    }
}

/// Waits for a query slot, evaluates on the blocking pool and renders the result, all within
/// `timeout`.
async fn run(
    s: &Shared,
    kind: Kind,
    query: String,
    timeout: Duration,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let permit =
        match tokio::time::timeout_at(deadline, s.query_slots.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => {
                return Err(ApiError::new(
                    ErrorType::Unavailable,
                    "query engine is shutting down",
                ));
            }
            Err(_) => {
                return Err(ApiError::new(
                    ErrorType::Timeout,
                    "query timed out in query queue",
                ));
            }
        };
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    let engine = lookout_promql::Engine::new(EngineOptions {
        timeout: remaining,
        ..s.engine.options().clone()
    });
    let queryable = s.queryable.clone();
    let q = query.clone();
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        match kind {
            Kind::Instant { ts } => engine.instant_query(&*queryable, &q, ts),
            Kind::Range { start, end, step } => {
                engine.range_query(&*queryable, &q, start, end, step)
            }
        }
    });
    let outcome = tokio::time::timeout_at(deadline, task).await;
    s.metrics()
        .observe_query(kind.label(), started.elapsed().as_secs_f64());
    match outcome {
        Err(_) => {
            tracing::info!(query = %query, ?timeout, "query timed out");
            Err(ApiError::new(
                ErrorType::Timeout,
                "query timed out in expression evaluation",
            ))
        }
        Ok(Err(join)) => {
            tracing::error!(query = %query, error = %join, "query evaluation panicked");
            Err(ApiError::internal(format!(
                "query evaluation failed unexpectedly: {join}"
            )))
        }
        Ok(Ok(Err(e))) => Err(query_error(&query, e)),
        Ok(Ok(Ok(QueryResult {
            value,
            warnings,
            infos,
        }))) => Ok(json::query_success(&value, &warnings, &infos)),
    }
}

/// Maps an engine error to the API error Prometheus would answer with.
fn query_error(query: &str, e: QueryError) -> ApiError {
    if let QueryError::Parse { message, position } = &e {
        let text = if message.contains("parse error") {
            message.clone()
        } else if let Some(pos) = position {
            format!("{}: parse error: {message}", line_col(query, *pos))
        } else {
            format!("parse error: {message}")
        };
        return invalid_param("query", text);
    }
    ApiError::new(ErrorType::from_name(e.error_type()), e.to_string())
}

/// `line:col` (1-based column in bytes) of byte offset `pos`, as Prometheus prints positions.
fn line_col(query: &str, pos: usize) -> String {
    let pos = pos.min(query.len());
    let before = query.get(..pos).unwrap_or(query);
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let col = match before.rfind('\n') {
        Some(nl) => pos - nl,
        None => pos + 1,
    };
    format!("{line}:{col}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_like_prometheus() {
        assert_eq!(line_col("1+", 2), "1:3");
        assert_eq!(line_col("a\nbc", 3), "2:2");
        assert_eq!(line_col("", 5), "1:1");
    }

    #[test]
    fn parse_errors_are_bad_data_with_position() {
        let e = query_error(
            "foo{",
            QueryError::Parse {
                message: "unexpected end of input".into(),
                position: Some(4),
            },
        );
        assert_eq!(e.typ, ErrorType::BadData);
        assert_eq!(
            e.message,
            "invalid parameter \"query\": 1:5: parse error: unexpected end of input"
        );
        let e = query_error("x", QueryError::Execution("boom".into()));
        assert_eq!(e.typ, ErrorType::Execution);
        let e = query_error("x", QueryError::Timeout("expression evaluation"));
        assert_eq!(e.typ, ErrorType::Timeout);
        assert_eq!(e.message, "query timed out in expression evaluation");
    }
}
