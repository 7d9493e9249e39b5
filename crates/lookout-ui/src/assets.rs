//! The embedded app: one HTML shell for every page path, the bundled script and stylesheet
//! (built by build.rs from `web/`).

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::UiState;

const APP_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/app.js"));
const APP_CSS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/app.css"));

const INDEX: &str = r#"<!doctype html>
<html lang="ko">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Lookout</title>
<link rel="stylesheet" href="/public/app.css">
</head>
<body>
<div id="app"><noscript>Lookout needs JavaScript.</noscript></div>
<script src="/public/app.js"></script>
</body>
</html>
"#;

/// No inline script may run: everything the app shows is inserted as text, and the policy
/// backs that up.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";

async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        INDEX,
    )
}

async fn app_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_JS,
    )
}

async fn app_css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_CSS,
    )
}

pub(crate) fn routes() -> Router<Arc<UiState>> {
    let mut r = Router::new()
        .route("/public/app.js", get(app_js))
        .route("/public/app.css", get(app_css));
    for p in [
        "/",
        "/login",
        "/dashboards",
        "/dashboard/new",
        "/dashboard/import",
        "/d/{uid}",
        "/d/{uid}/{slug}",
        "/explore",
        "/alerting",
        "/targets",
        "/status",
        "/profile",
        "/admin/tokens",
        "/admin/users",
    ] {
        r = r.route(p, get(index));
    }
    r
}
