//! Serving the registry: `/metrics` with content negotiation.

use std::sync::Arc;

use axum::Router;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lookout_exposition::Format;
use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::registry::Registry;

use crate::InstrumentError;

/// A frozen registry that renders expositions. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MetricsExporter {
    registry: Arc<Registry>,
}

impl MetricsExporter {
    pub(crate) fn new(registry: Registry) -> Self {
        MetricsExporter {
            registry: Arc::new(registry),
        }
    }

    /// Renders every metric in `format` (OpenMetrics ends with `# EOF`).
    pub fn render(&self, format: Format) -> Result<Vec<u8>, InstrumentError> {
        let mut out = String::with_capacity(8 * 1024);
        match format {
            Format::OpenMetrics => text::encode(&mut out, &self.registry),
            Format::PrometheusText => prometheus_text::encode(&mut out, &self.registry),
        }
        .map_err(|_| InstrumentError::Encode)?;
        Ok(out.into_bytes())
    }

    /// The HTTP response for a scrape with the given `Accept` header.
    pub fn respond(&self, accept: Option<&str>) -> Response {
        let format = Format::negotiate(accept);
        match self.render(format) {
            Ok(body) => (
                [(
                    CONTENT_TYPE,
                    HeaderValue::from_static(format.content_type()),
                )],
                body,
            )
                .into_response(),
            Err(e) => {
                tracing::error!(error = %e, "rendering metrics");
                (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
            }
        }
    }

    /// A router serving the exposition on `GET path` (e.g. `/metrics`,
    /// `/actuator/prometheus`), to `merge` into a service's router of any state type.
    pub fn route<S: Clone + Send + Sync + 'static>(&self, path: &str) -> Router<S> {
        let exporter = self.clone();
        Router::new().route(
            path,
            get(move |headers: HeaderMap| {
                let exporter = exporter.clone();
                async move {
                    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok());
                    exporter.respond(accept)
                }
            }),
        )
    }
}
