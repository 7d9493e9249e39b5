//! noti-service (:8002): create, list and mark notifications read. Only the common HTTP
//! metrics, as in the seed.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use lookout_instrument::{HttpMetricsConfig, Metrics};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::json;

use super::{
    ApiError, JsonBody, ServiceContext, check_ident, check_text, finish, parse_id, with_user,
};
use crate::DemoError;
use crate::timefmt::rfc3339_millis;

/// Notifications kept per user (oldest dropped) and users tracked.
pub const PER_USER: usize = 200;
pub const MAX_USERS: usize = 100_000;

struct Notification {
    id: u64,
    title: String,
    body: String,
    created: String,
    read: bool,
}

#[derive(Default)]
struct Db {
    by_user: HashMap<String, VecDeque<Notification>>,
    owner: HashMap<u64, String>,
    next: u64,
}

type St = State<Arc<Mutex<Db>>>;

pub fn router(ctx: &ServiceContext) -> Result<Router, DemoError> {
    let mut metrics = Metrics::new();
    let http = metrics.http_layer(HttpMetricsConfig::default())?;
    let state = Arc::new(Mutex::new(Db {
        next: 1,
        ..Db::default()
    }));
    let routes = Router::new()
        .route("/api/notifications", post(create).get(list))
        .route("/api/notifications/{id}/read", post(mark_read))
        .with_state(state);
    Ok(finish(ctx, routes, metrics, http))
}

#[derive(Deserialize)]
struct CreateReq {
    user_id: String,
    title: String,
    #[serde(default)]
    body: String,
}

async fn create(State(db): St, JsonBody(req): JsonBody<CreateReq>) -> Result<Response, ApiError> {
    check_ident("user_id", &req.user_id, 64)?;
    check_text("title", &req.title, 200)?;
    if req.body.chars().count() > 2_000 {
        return Err(ApiError::bad_request(
            "body must be at most 2000 characters",
        ));
    }
    let mut db = db.lock();
    if !db.by_user.contains_key(&req.user_id) && db.by_user.len() >= MAX_USERS {
        return Err(ApiError::limit("too many recipients"));
    }
    let id = db.next;
    db.next += 1;
    let dropped = {
        let list = db.by_user.entry(req.user_id.clone()).or_default();
        list.push_back(Notification {
            id,
            title: req.title.trim().to_owned(),
            body: req.body,
            created: rfc3339_millis(SystemTime::now()),
            read: false,
        });
        if list.len() > PER_USER {
            list.pop_front().map(|n| n.id)
        } else {
            None
        }
    };
    if let Some(old) = dropped {
        db.owner.remove(&old);
    }
    db.owner.insert(id, req.user_id.clone());
    Ok(with_user(
        (StatusCode::CREATED, Json(json!({ "id": id.to_string() }))),
        &req.user_id,
    ))
}

#[derive(Deserialize)]
struct ListQuery {
    user_id: Option<String>,
    unread: Option<bool>,
}

async fn list(State(db): St, Query(q): Query<ListQuery>) -> Result<Response, ApiError> {
    let user = q
        .user_id
        .ok_or_else(|| ApiError::bad_request("user_id is required"))?;
    check_ident("user_id", &user, 64)?;
    let unread_only = q.unread.unwrap_or(false);
    let db = db.lock();
    let items: Vec<_> = db
        .by_user
        .get(&user)
        .into_iter()
        .flatten()
        .rev()
        .filter(|n| !unread_only || !n.read)
        .take(50)
        .map(|n| {
            json!({ "id": n.id.to_string(), "title": n.title, "body": n.body,
                    "created_at": n.created, "read": n.read })
        })
        .collect();
    let unread = db
        .by_user
        .get(&user)
        .map(|l| l.iter().filter(|n| !n.read).count())
        .unwrap_or(0);
    Ok(with_user(
        Json(json!({ "notifications": items, "unread": unread })),
        &user,
    ))
}

async fn mark_read(State(db): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id("id", &id)?;
    let mut db = db.lock();
    let user = db
        .owner
        .get(&id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("no such notification"))?;
    let n = db
        .by_user
        .get_mut(&user)
        .and_then(|l| l.iter_mut().find(|n| n.id == id))
        .ok_or_else(|| ApiError::not_found("no such notification"))?;
    n.read = true;
    Ok(with_user(Json(json!({ "id": id.to_string(), "read": true })), &user).into_response())
}
