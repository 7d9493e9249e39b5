//! board-service (:8000): projects and their boards (CRUD).
//!
//! Metrics: `board_service_projects_total` and `board_service_boards_total` (gauges: how many
//! exist), `board_service_project_created_total` and `board_service_board_created_total`.
//!
//! With [`Backing`]: projects, boards and board history items are written to PostgreSQL
//! (keyed by this instance and the service's ids; reads are index lookups, the project count
//! a sequential scan); a project's board list and the project list are cached in Redis for
//! [`LIST_CACHE_TTL`] (read first, filled from PostgreSQL on a miss). Answers
//! still come from the in-memory state; database failures only count in
//! `wealist_backing_errors_total`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lookout_instrument::metrics::{Counter, Gauge};
use lookout_instrument::{HttpMetricsConfig, Metrics};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, JsonBody, ServiceContext, check_text, finish, parse_id, with_user};
use crate::DemoError;
use crate::backing::{Backend, Backing, BackingMetrics};

/// Lifetime of the cached project list in Redis.
pub const LIST_CACHE_TTL: Duration = Duration::from_secs(5);

pub const MAX_PROJECTS: usize = 10_000;
pub const MAX_BOARDS: usize = 100_000;
const STATUSES: [&str; 3] = ["todo", "in_progress", "done"];

struct BoardMetrics {
    projects: Gauge,
    boards: Gauge,
    projects_created: Counter,
    boards_created: Counter,
}

struct Project {
    name: String,
    owner: String,
    boards: Vec<u64>,
}

struct Board {
    project: u64,
    title: String,
    description: String,
    status: &'static str,
}

#[derive(Default)]
struct Db {
    projects: BTreeMap<u64, Project>,
    boards: BTreeMap<u64, Board>,
    next_project: u64,
    next_board: u64,
}

struct AppState {
    db: Mutex<Db>,
    m: BoardMetrics,
    backing: Option<Arc<Backing>>,
    bm: BackingMetrics,
    /// Tells this instance's rows from those of earlier (restarted) instances.
    instance: i64,
}

impl AppState {
    fn list_key(&self) -> String {
        format!("board:projects:{}", self.instance)
    }
}

type St = State<Arc<AppState>>;

pub fn router(ctx: &ServiceContext) -> Result<Router, DemoError> {
    let mut metrics = Metrics::new();
    let http = metrics.http_layer(HttpMetricsConfig::default())?;
    let m = BoardMetrics {
        projects: metrics.gauge("board_service_projects_total", "Existing projects.")?,
        boards: metrics.gauge("board_service_boards_total", "Existing boards.")?,
        projects_created: metrics
            .counter("board_service_project_created_total", "Projects created.")?,
        boards_created: metrics.counter("board_service_board_created_total", "Boards created.")?,
    };
    let bm = BackingMetrics::register(&mut metrics, "board")?;
    let instance = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_micros() & 0x3FFF_FFFF_FFFF_FFFF) as i64)
        .unwrap_or(0);
    let state = Arc::new(AppState {
        db: Mutex::new(Db {
            next_project: 1,
            next_board: 1,
            ..Db::default()
        }),
        m,
        backing: ctx.backing.clone(),
        bm,
        instance,
    });
    let routes = Router::new()
        .route("/api/projects", post(create_project).get(list_projects))
        .route(
            "/api/projects/{id}",
            get(get_project).delete(delete_project),
        )
        .route("/api/projects/{id}/boards", post(create_board))
        .route(
            "/api/boards/{id}",
            get(get_board).put(update_board).delete(delete_board),
        )
        .with_state(state);
    Ok(finish(ctx, routes, metrics, http))
}

impl AppState {
    fn refresh_gauges(&self, db: &Db) {
        self.m.projects.set(db.projects.len() as i64);
        self.m.boards.set(db.boards.len() as i64);
    }
}

#[derive(Deserialize)]
struct ProjectReq {
    name: String,
    owner_id: String,
}

async fn create_project(
    State(s): St,
    JsonBody(req): JsonBody<ProjectReq>,
) -> Result<Response, ApiError> {
    check_text("name", &req.name, 100)?;
    super::check_ident("owner_id", &req.owner_id, 64)?;
    let id = {
        let mut db = s.db.lock();
        if db.projects.len() >= MAX_PROJECTS {
            return Err(ApiError::limit("project limit reached"));
        }
        let id = db.next_project;
        db.next_project += 1;
        db.projects.insert(
            id,
            Project {
                name: req.name.trim().to_owned(),
                owner: req.owner_id.clone(),
                boards: Vec::new(),
            },
        );
        s.m.projects_created.inc();
        s.refresh_gauges(&db);
        id
    };
    if let Some(b) = s.backing.as_deref() {
        let r = b
            .insert_project(s.instance, id as i64, req.name.trim(), &req.owner_id)
            .await;
        s.bm.record(Backend::Postgres, r);
    }
    let body = Json(json!({ "id": id.to_string(), "name": req.name.trim() }));
    Ok(with_user((StatusCode::CREATED, body), &req.owner_id))
}

async fn list_projects(State(s): St) -> Response {
    let body = {
        let db = s.db.lock();
        let list: Vec<_> = db
            .projects
            .iter()
            .rev()
            .take(50)
            .map(
                |(id, p)| json!({ "id": id.to_string(), "name": p.name, "boards": p.boards.len() }),
            )
            .collect();
        json!({ "projects": list, "total": db.projects.len() })
    };
    if let Some(b) = s.backing.as_deref() {
        // Cache-aside: a miss reads PostgreSQL and fills the cache.
        let key = s.list_key();
        let hit = s.bm.record(Backend::Redis, b.cache_get(&key).await);
        if matches!(hit, Some(None)) {
            s.bm.record(Backend::Postgres, b.count_projects().await);
            let r = b.cache_set(&key, &body.to_string(), LIST_CACHE_TTL).await;
            s.bm.record(Backend::Redis, r);
        }
    }
    Json(body).into_response()
}

async fn get_project(State(s): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id("id", &id)?;
    let body = {
        let db = s.db.lock();
        let p = db
            .projects
            .get(&id)
            .ok_or_else(|| ApiError::not_found("no such project"))?;
        let boards: Vec<String> = p.boards.iter().map(|b| b.to_string()).collect();
        json!({ "id": id.to_string(), "name": p.name, "owner_id": p.owner, "boards": boards })
    };
    if let Some(b) = s.backing.as_deref() {
        let key = format!("board:project:{}:{id}", s.instance);
        let hit = s.bm.record(Backend::Redis, b.cache_get(&key).await);
        if matches!(hit, Some(None))
            && let Some(list) = s.bm.record(
                Backend::Postgres,
                b.project_boards(s.instance, id as i64).await,
            )
        {
            let value = serde_json::to_string(&list).unwrap_or_default();
            let r = b.cache_set(&key, &value, LIST_CACHE_TTL).await;
            s.bm.record(Backend::Redis, r);
        }
    }
    Ok(Json(body).into_response())
}

async fn delete_project(State(s): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id("id", &id)?;
    {
        let mut db = s.db.lock();
        let p = db
            .projects
            .remove(&id)
            .ok_or_else(|| ApiError::not_found("no such project"))?;
        for b in p.boards {
            db.boards.remove(&b);
        }
        s.refresh_gauges(&db);
    }
    if let Some(b) = s.backing.as_deref() {
        s.bm.record(
            Backend::Postgres,
            b.delete_project(s.instance, id as i64).await,
        );
        s.bm.record(Backend::Redis, b.cache_del(&s.list_key()).await);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct BoardReq {
    title: String,
    #[serde(default)]
    description: String,
}

async fn create_board(
    State(s): St,
    Path(project): Path<String>,
    JsonBody(req): JsonBody<BoardReq>,
) -> Result<Response, ApiError> {
    let project = parse_id("project id", &project)?;
    check_text("title", &req.title, 200)?;
    if req.description.chars().count() > 5_000 {
        return Err(ApiError::bad_request(
            "description must be at most 5000 characters",
        ));
    }
    let id = {
        let mut db = s.db.lock();
        if db.boards.len() >= MAX_BOARDS {
            return Err(ApiError::limit("board limit reached"));
        }
        let id = db.next_board;
        let p = db
            .projects
            .get_mut(&project)
            .ok_or_else(|| ApiError::not_found("no such project"))?;
        p.boards.push(id);
        db.next_board += 1;
        db.boards.insert(
            id,
            Board {
                project,
                title: req.title.trim().to_owned(),
                description: req.description,
                status: STATUSES[0],
            },
        );
        s.m.boards_created.inc();
        s.refresh_gauges(&db);
        id
    };
    if let Some(b) = s.backing.as_deref() {
        let r = b
            .insert_board(
                s.instance,
                id as i64,
                project as i64,
                req.title.trim(),
                STATUSES[0],
            )
            .await;
        s.bm.record(Backend::Postgres, r);
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id.to_string(), "project_id": project.to_string(), "status": STATUSES[0] })),
    )
        .into_response())
}

fn board_json(id: u64, b: &Board) -> serde_json::Value {
    json!({
        "id": id.to_string(), "project_id": b.project.to_string(), "title": b.title,
        "description": b.description, "status": b.status,
    })
}

async fn get_board(State(s): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id("id", &id)?;
    let body = {
        let db = s.db.lock();
        let b = db
            .boards
            .get(&id)
            .ok_or_else(|| ApiError::not_found("no such board"))?;
        board_json(id, b)
    };
    if let Some(b) = s.backing.as_deref() {
        s.bm.record(Backend::Postgres, b.get_board(s.instance, id as i64).await);
    }
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
struct UpdateReq {
    title: Option<String>,
    description: Option<String>,
    status: Option<String>,
}

async fn update_board(
    State(s): St,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<UpdateReq>,
) -> Result<Response, ApiError> {
    let id = parse_id("id", &id)?;
    if let Some(t) = &req.title {
        check_text("title", t, 200)?;
    }
    if req
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 5_000)
    {
        return Err(ApiError::bad_request(
            "description must be at most 5000 characters",
        ));
    }
    let status =
        match req.status.as_deref() {
            None => None,
            Some(st) => Some(STATUSES.into_iter().find(|x| *x == st).ok_or_else(|| {
                ApiError::bad_request("status must be todo, in_progress or done")
            })?),
        };
    let (body, title, status) = {
        let mut db = s.db.lock();
        let b = db
            .boards
            .get_mut(&id)
            .ok_or_else(|| ApiError::not_found("no such board"))?;
        if let Some(t) = req.title {
            b.title = t.trim().to_owned();
        }
        if let Some(d) = req.description {
            b.description = d;
        }
        if let Some(st) = status {
            b.status = st;
        }
        (board_json(id, b), b.title.clone(), b.status)
    };
    if let Some(b) = s.backing.as_deref() {
        let r = b.update_board(s.instance, id as i64, &title, status).await;
        s.bm.record(Backend::Postgres, r);
    }
    Ok(Json(body).into_response())
}

async fn delete_board(State(s): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id("id", &id)?;
    {
        let mut db = s.db.lock();
        let b = db
            .boards
            .remove(&id)
            .ok_or_else(|| ApiError::not_found("no such board"))?;
        if let Some(p) = db.projects.get_mut(&b.project) {
            p.boards.retain(|x| *x != id);
        }
        s.refresh_gauges(&db);
    }
    if let Some(b) = s.backing.as_deref() {
        s.bm.record(
            Backend::Postgres,
            b.delete_board(s.instance, id as i64).await,
        );
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
