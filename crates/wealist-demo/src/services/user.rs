//! user-service (:8080): sign-up, login/logout and workspaces.
//!
//! Metrics (seed names): `user_registrations_total`, `user_logins_total`, `users_active_total`
//! (users with a session), `users_registered_total`, `workspaces_created_total`,
//! `workspaces_total`, `workspace_members_total{workspace_id}`, and the distinct-user gauges
//! `users_daily_active` / `users_monthly_active` (HyperLogLog over logins).
//!
//! With [`Backing`]: sign-ups are stored in PostgreSQL `users`, logins and profiles look the
//! user up by email, a login opens a Redis session (`wealist:session:<email>`, TTL
//! [`SESSION_TTL`]) that profile and workspace-list calls check. Answers still come from the
//! in-memory state; database failures only count in `wealist_backing_errors_total`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lookout_instrument::metrics::{Counter, Family, Gauge};
use lookout_instrument::{
    HttpMetricsConfig, Metrics, UniqueCounter, UniqueCounterConfig, label_set,
};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, JsonBody, ServiceContext, check_text, finish, parse_id, with_user};
use crate::DemoError;
use crate::backing::{Backend, Backing, BackingMetrics};

/// Lifetime of a Redis login session.
pub const SESSION_TTL: Duration = Duration::from_secs(600);

/// Most users and workspaces one instance keeps.
pub const MAX_USERS: usize = 100_000;
pub const MAX_WORKSPACES: usize = 10_000;
pub const MAX_MEMBERS: usize = 1_000;

label_set! {
    pub struct WorkspaceLabels { workspace_id: String }
}

struct UserMetrics {
    registrations: Counter,
    logins: Counter,
    active: Gauge,
    registered: Gauge,
    workspaces_created: Counter,
    workspaces: Gauge,
    members: Family<WorkspaceLabels, Gauge>,
    unique: UniqueCounter,
}

struct User {
    email: String,
    name: String,
    salt: u64,
    password_hash: u64,
}

struct Workspace {
    name: String,
    owner: u64,
    members: BTreeSet<u64>,
}

#[derive(Default)]
struct Db {
    users: HashMap<u64, User>,
    by_email: HashMap<String, u64>,
    sessions: HashSet<u64>,
    workspaces: BTreeMap<u64, Workspace>,
    next_user: u64,
    next_workspace: u64,
}

struct AppState {
    db: Mutex<Db>,
    m: UserMetrics,
    backing: Option<Arc<Backing>>,
    bm: BackingMetrics,
}

impl AppState {
    fn email_of(&self, id: u64) -> Option<String> {
        self.db.lock().users.get(&id).map(|u| u.email.clone())
    }
}

type St = State<Arc<AppState>>;

/// Demo-grade password hashing (salted SipHash; not a password KDF).
fn hash_password(salt: u64, password: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    salt.hash(&mut h);
    password.hash(&mut h);
    h.finish()
}

fn check_email(email: &str) -> Result<(), ApiError> {
    let ok = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(email.split_once('@'), Some((local, domain))
            if !local.is_empty() && domain.contains('.') && !domain.contains('@')
                && !domain.starts_with('.') && !domain.ends_with('.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "email must look like name@example.com",
        ))
    }
}

fn check_password(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if (8..=128).contains(&n) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "password must be 8 to 128 characters",
        ))
    }
}

pub fn router(ctx: &ServiceContext) -> Result<Router, DemoError> {
    let mut metrics = Metrics::new();
    let http = metrics.http_layer(HttpMetricsConfig::default())?;
    let m = UserMetrics {
        registrations: metrics.counter("user_registrations_total", "New user sign-ups.")?,
        logins: metrics.counter("user_logins_total", "Successful logins.")?,
        active: metrics.gauge("users_active_total", "Users with an open session.")?,
        registered: metrics.gauge("users_registered_total", "Registered users.")?,
        workspaces_created: metrics.counter("workspaces_created_total", "Workspaces created.")?,
        workspaces: metrics.gauge("workspaces_total", "Existing workspaces.")?,
        members: metrics
            .gauge_family::<WorkspaceLabels>("workspace_members_total", "Members per workspace.")?,
        unique: metrics.unique_counter(
            UniqueCounterConfig::new()
                .daily(
                    "users_daily_active",
                    "Distinct users who logged in during the last 24 hours.",
                )
                .monthly(
                    "users_monthly_active",
                    "Distinct users who logged in during the last 30 days.",
                ),
        )?,
    };
    let bm = BackingMetrics::register(&mut metrics, "user")?;
    let state = Arc::new(AppState {
        db: Mutex::new(Db {
            next_user: 1,
            next_workspace: 1,
            ..Db::default()
        }),
        m,
        backing: ctx.backing.clone(),
        bm,
    });
    let routes = Router::new()
        .route("/api/users/signup", post(signup))
        .route("/api/users/login", post(login))
        .route("/api/users/logout", post(logout))
        .route("/api/users/{id}", get(get_user))
        .route(
            "/api/workspaces",
            post(create_workspace).get(list_workspaces),
        )
        .route("/api/workspaces/{id}", get(get_workspace))
        .route("/api/workspaces/{id}/members", post(add_member))
        .with_state(state);
    Ok(finish(ctx, routes, metrics, http))
}

#[derive(Deserialize)]
struct SignupReq {
    email: String,
    name: String,
    password: String,
}

async fn signup(State(s): St, JsonBody(req): JsonBody<SignupReq>) -> Result<Response, ApiError> {
    let email = req.email.trim().to_ascii_lowercase();
    check_email(&email)?;
    check_text("name", &req.name, 64)?;
    check_password(&req.password)?;
    let name = req.name.trim().to_owned();
    let id = signup_memory(&s, &email, &req.name, &req.password)?;
    if let Some(b) = s.backing.as_deref() {
        s.bm.record(Backend::Postgres, b.insert_user(&email, &name).await);
    }
    let body = Json(json!({ "id": id.to_string(), "email": email, "name": name }));
    Ok(with_user((StatusCode::CREATED, body), &id.to_string()))
}

fn signup_memory(s: &AppState, email: &str, name: &str, password: &str) -> Result<u64, ApiError> {
    let email = email.to_owned();
    let mut db = s.db.lock();
    if db.by_email.contains_key(&email) {
        return Err(ApiError::conflict("email is already registered"));
    }
    if db.users.len() >= MAX_USERS {
        return Err(ApiError::limit("user limit reached"));
    }
    let id = db.next_user;
    db.next_user += 1;
    let salt = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xA5A5;
    db.users.insert(
        id,
        User {
            email: email.clone(),
            name: name.trim().to_owned(),
            salt,
            password_hash: hash_password(salt, password),
        },
    );
    db.by_email.insert(email, id);
    s.m.registrations.inc();
    s.m.registered.set(db.users.len() as i64);
    Ok(id)
}

#[derive(Deserialize)]
struct LoginReq {
    email: String,
    password: String,
}

async fn login(State(s): St, JsonBody(req): JsonBody<LoginReq>) -> Result<Response, ApiError> {
    let email = req.email.trim().to_ascii_lowercase();
    check_email(&email)?;
    if req.password.is_empty() || req.password.len() > 512 {
        return Err(ApiError::bad_request("password is required"));
    }
    let id = {
        let mut db = s.db.lock();
        let id = db
            .by_email
            .get(&email)
            .copied()
            .filter(|id| {
                db.users
                    .get(id)
                    .is_some_and(|u| u.password_hash == hash_password(u.salt, &req.password))
            })
            .ok_or_else(|| ApiError::unauthorized("wrong email or password"))?;
        db.sessions.insert(id);
        s.m.active.set(db.sessions.len() as i64);
        id
    };
    s.m.logins.inc();
    s.m.unique.observe(&id);
    if let Some(b) = s.backing.as_deref() {
        s.bm.record(Backend::Postgres, b.login_user(&email).await);
        // A re-login finds its session still open (hit); a first login misses.
        s.bm.record(Backend::Redis, b.has_session(&email).await);
        s.bm.record(Backend::Redis, b.set_session(&email, SESSION_TTL).await);
    }
    let body = Json(json!({ "user_id": id.to_string() }));
    Ok(with_user(body, &id.to_string()))
}

#[derive(Deserialize)]
struct LogoutReq {
    user_id: String,
}

async fn logout(State(s): St, JsonBody(req): JsonBody<LogoutReq>) -> Result<Response, ApiError> {
    let id = parse_id("user_id", &req.user_id)?;
    let was = {
        let mut db = s.db.lock();
        let was = db.sessions.remove(&id);
        s.m.active.set(db.sessions.len() as i64);
        was
    };
    if let (Some(b), Some(email)) = (s.backing.as_deref(), s.email_of(id)) {
        s.bm.record(Backend::Redis, b.end_session(&email).await);
    }
    Ok(with_user(Json(json!({ "logged_out": was })), &req.user_id))
}

async fn get_user(State(s): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id("id", &id)?;
    let body = {
        let db = s.db.lock();
        let u = db
            .users
            .get(&id)
            .ok_or_else(|| ApiError::not_found("no such user"))?;
        json!({
            "id": id.to_string(), "email": u.email, "name": u.name,
            "online": db.sessions.contains(&id),
        })
    };
    if let (Some(b), Some(email)) = (s.backing.as_deref(), body["email"].as_str()) {
        s.bm.record(Backend::Redis, b.has_session(email).await);
        s.bm.record(Backend::Postgres, b.user_name(email).await);
    }
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
struct WorkspaceReq {
    name: String,
    owner_id: String,
}

async fn create_workspace(
    State(s): St,
    JsonBody(req): JsonBody<WorkspaceReq>,
) -> Result<Response, ApiError> {
    check_text("name", &req.name, 100)?;
    let owner = parse_id("owner_id", &req.owner_id)?;
    let body = create_workspace_memory(&s, &req.name, owner)?;
    if let (Some(b), Some(email)) = (s.backing.as_deref(), s.email_of(owner)) {
        s.bm.record(
            Backend::Postgres,
            b.insert_workspace(req.name.trim(), &email).await,
        );
    }
    Ok(with_user((StatusCode::CREATED, body), &req.owner_id))
}

fn create_workspace_memory(
    s: &AppState,
    name: &str,
    owner: u64,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut db = s.db.lock();
    if !db.users.contains_key(&owner) {
        return Err(ApiError::not_found("owner does not exist"));
    }
    if db.workspaces.len() >= MAX_WORKSPACES {
        return Err(ApiError::limit("workspace limit reached"));
    }
    let id = db.next_workspace;
    db.next_workspace += 1;
    db.workspaces.insert(
        id,
        Workspace {
            name: name.trim().to_owned(),
            owner,
            members: BTreeSet::from([owner]),
        },
    );
    s.m.workspaces_created.inc();
    s.m.workspaces.set(db.workspaces.len() as i64);
    s.m.members
        .get_or_create(&WorkspaceLabels {
            workspace_id: id.to_string(),
        })
        .set(1);
    Ok(Json(
        json!({ "id": id.to_string(), "name": name.trim(), "members": 1 }),
    ))
}

#[derive(Deserialize)]
struct ListQuery {
    user_id: Option<String>,
}

async fn list_workspaces(State(s): St, Query(q): Query<ListQuery>) -> Result<Response, ApiError> {
    let user = q
        .user_id
        .as_deref()
        .map(|u| parse_id("user_id", u))
        .transpose()?;
    if let (Some(b), Some(email)) = (s.backing.as_deref(), user.and_then(|u| s.email_of(u))) {
        s.bm.record(Backend::Redis, b.has_session(&email).await);
    }
    let db = s.db.lock();
    let list: Vec<_> = db
        .workspaces
        .iter()
        .filter(|(_, w)| user.is_none_or(|u| w.members.contains(&u)))
        .take(100)
        .map(|(id, w)| json!({ "id": id.to_string(), "name": w.name, "members": w.members.len() }))
        .collect();
    Ok(Json(json!({ "workspaces": list })).into_response())
}

async fn get_workspace(State(s): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id("id", &id)?;
    let db = s.db.lock();
    let w = db
        .workspaces
        .get(&id)
        .ok_or_else(|| ApiError::not_found("no such workspace"))?;
    let members: Vec<String> = w.members.iter().map(|m| m.to_string()).collect();
    Ok(Json(json!({
        "id": id.to_string(), "name": w.name, "owner_id": w.owner.to_string(), "members": members,
    }))
    .into_response())
}

#[derive(Deserialize)]
struct MemberReq {
    user_id: String,
}

async fn add_member(
    State(s): St,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<MemberReq>,
) -> Result<Response, ApiError> {
    let id = parse_id("id", &id)?;
    let user = parse_id("user_id", &req.user_id)?;
    let mut db = s.db.lock();
    if !db.users.contains_key(&user) {
        return Err(ApiError::not_found("no such user"));
    }
    let w = db
        .workspaces
        .get_mut(&id)
        .ok_or_else(|| ApiError::not_found("no such workspace"))?;
    if w.members.len() >= MAX_MEMBERS {
        return Err(ApiError::limit("member limit reached"));
    }
    if !w.members.insert(user) {
        return Err(ApiError::conflict("already a member"));
    }
    let n = w.members.len();
    s.m.members
        .get_or_create(&WorkspaceLabels {
            workspace_id: id.to_string(),
        })
        .set(n as i64);
    Ok(with_user(
        Json(json!({ "id": id.to_string(), "members": n })),
        &req.user_id,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_and_password_rules() {
        assert!(check_email("a@b.co").is_ok());
        for bad in [
            "", "a", "a@b", "@b.co", "a@.co", "a@b.co.", "a b@c.de", "a@b@c.de",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
        assert!(check_password("12345678").is_ok());
        assert!(check_password("short").is_err());
        assert_ne!(hash_password(1, "pw"), hash_password(2, "pw"));
    }
}
