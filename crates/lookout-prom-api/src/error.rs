//! Prometheus API error envelope: `{"status":"error","errorType":...,"error":...}` with the
//! HTTP status Prometheus uses for each error type.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Prometheus's `errorType` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    BadData,
    Execution,
    Timeout,
    Canceled,
    Internal,
    Unavailable,
    NotFound,
    NotAcceptable,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Timeout => "timeout",
            ErrorType::Canceled => "canceled",
            ErrorType::Internal => "internal",
            ErrorType::Unavailable => "unavailable",
            ErrorType::NotFound => "not_found",
            ErrorType::NotAcceptable => "not_acceptable",
        }
    }

    /// The HTTP status Prometheus answers with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Timeout | ErrorType::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            // 499 "client closed request", as Prometheus.
            ErrorType::Canceled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            ErrorType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::NotFound => StatusCode::NOT_FOUND,
            ErrorType::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
        }
    }

    /// Maps an `errorType` string (as `QueryError::error_type` returns) back to the enum.
    pub fn from_name(s: &str) -> ErrorType {
        match s {
            "bad_data" => ErrorType::BadData,
            "execution" => ErrorType::Execution,
            "timeout" => ErrorType::Timeout,
            "canceled" => ErrorType::Canceled,
            "unavailable" => ErrorType::Unavailable,
            "not_found" => ErrorType::NotFound,
            "not_acceptable" => ErrorType::NotAcceptable,
            _ => ErrorType::Internal,
        }
    }
}

/// An API error: rendered as Prometheus's error envelope.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub typ: ErrorType,
    pub message: String,
    /// Overrides the status derived from `typ` (e.g. 413 for an oversized body).
    pub status: Option<StatusCode>,
}

impl ApiError {
    pub fn new(typ: ErrorType, message: impl Into<String>) -> Self {
        ApiError {
            typ,
            message: message.into(),
            status: None,
        }
    }

    pub fn bad_data(message: impl Into<String>) -> Self {
        ApiError::new(ErrorType::BadData, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(ErrorType::Internal, message)
    }

    /// A bad_data error answered with 413 Payload Too Large.
    pub fn too_large(message: impl Into<String>) -> Self {
        ApiError {
            status: Some(StatusCode::PAYLOAD_TOO_LARGE),
            ..ApiError::bad_data(message)
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or_else(|| self.typ.status())
    }

    /// The JSON body, keys in Prometheus's order.
    pub fn body(&self) -> String {
        let mut out = String::with_capacity(self.message.len() + 64);
        out.push_str(r#"{"status":"error","errorType":""#);
        out.push_str(self.typ.as_str());
        out.push_str(r#"","error":"#);
        crate::json::write_str(&mut out, &self.message);
        out.push('}');
        out
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.typ.as_str(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        crate::json::json_response(self.status(), self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_in_prometheus_key_order() {
        let e = ApiError::bad_data("invalid parameter \"time\": x");
        assert_eq!(
            e.body(),
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"time\": x"}"#
        );
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            ApiError::new(ErrorType::Execution, "x").status().as_u16(),
            422
        );
        assert_eq!(
            ApiError::new(ErrorType::Timeout, "x").status().as_u16(),
            503
        );
        assert_eq!(
            ApiError::new(ErrorType::NotFound, "x").status().as_u16(),
            404
        );
        assert_eq!(ApiError::internal("x").status().as_u16(), 500);
        assert_eq!(ApiError::too_large("x").status().as_u16(), 413);
    }
}
