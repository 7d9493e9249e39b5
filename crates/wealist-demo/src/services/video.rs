//! video-service (:8004): video rooms — create (starts a call), join, leave, end.
//!
//! Metrics: `video_rooms_active`, `video_participants_total`, `video_participants_active`,
//! `video_daily_active_users` (HyperLogLog), `video_calls_started_total`,
//! `video_call_duration_seconds` (histogram, observed when a call ends).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use lookout_instrument::metrics::{Counter, Gauge, Histogram};
use lookout_instrument::{HttpMetricsConfig, Metrics, UniqueCounter, UniqueCounterConfig};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, JsonBody, ServiceContext, check_ident, finish, parse_id, with_user};
use crate::DemoError;

pub const MAX_ROOMS: usize = 1_000;
pub const MAX_PARTICIPANTS: usize = 50;
/// Call-duration buckets in seconds (demo calls last seconds to an hour).
pub const DURATION_BUCKETS: [f64; 10] = [
    5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];

struct VideoMetrics {
    rooms_active: Gauge,
    participants_total: Counter,
    participants_active: Gauge,
    daily: UniqueCounter,
    calls_started: Counter,
    call_duration: Histogram,
}

struct Room {
    started: Instant,
    participants: BTreeSet<String>,
}

struct AppState {
    rooms: Mutex<(BTreeMap<u64, Room>, u64)>,
    m: VideoMetrics,
}

type St = State<Arc<AppState>>;

pub fn router(ctx: &ServiceContext) -> Result<Router, DemoError> {
    let mut metrics = Metrics::new();
    let http = metrics.http_layer(HttpMetricsConfig::default())?;
    let m = VideoMetrics {
        rooms_active: metrics.gauge("video_rooms_active", "Rooms with a call in progress.")?,
        participants_total: metrics.counter(
            "video_participants_total",
            "Participants who joined a call.",
        )?,
        participants_active: metrics.gauge(
            "video_participants_active",
            "Participants currently in a call.",
        )?,
        daily: metrics.unique_counter(UniqueCounterConfig::new().daily(
            "video_daily_active_users",
            "Distinct users in a video call during the last 24 hours.",
        ))?,
        calls_started: metrics.counter("video_calls_started_total", "Calls started.")?,
        call_duration: metrics.histogram(
            "video_call_duration_seconds",
            "Duration of ended calls.",
            &DURATION_BUCKETS,
        )?,
    };
    let state = Arc::new(AppState {
        rooms: Mutex::new((BTreeMap::new(), 1)),
        m,
    });
    let routes = Router::new()
        .route("/api/video/rooms", post(create).get(list))
        .route("/api/video/rooms/{id}/join", post(join))
        .route("/api/video/rooms/{id}/leave", post(leave))
        .route("/api/video/rooms/{id}/end", post(end))
        .with_state(state);
    Ok(finish(ctx, routes, metrics, http))
}

impl AppState {
    fn refresh(&self, rooms: &BTreeMap<u64, Room>) {
        self.m.rooms_active.set(rooms.len() as i64);
        self.m
            .participants_active
            .set(rooms.values().map(|r| r.participants.len() as i64).sum());
    }

    /// Ends a call: observes its duration and forgets the room.
    fn end_call(&self, rooms: &mut BTreeMap<u64, Room>, id: u64) -> Option<f64> {
        let room = rooms.remove(&id)?;
        let secs = room.started.elapsed().as_secs_f64();
        self.m.call_duration.observe(secs);
        self.refresh(rooms);
        Some(secs)
    }
}

#[derive(Deserialize)]
struct CreateReq {
    host_id: String,
}

async fn create(State(s): St, JsonBody(req): JsonBody<CreateReq>) -> Result<Response, ApiError> {
    check_ident("host_id", &req.host_id, 64)?;
    let mut guard = s.rooms.lock();
    let (rooms, next) = &mut *guard;
    if rooms.len() >= MAX_ROOMS {
        return Err(ApiError::limit("room limit reached"));
    }
    let id = *next;
    *next += 1;
    rooms.insert(
        id,
        Room {
            started: Instant::now(),
            participants: BTreeSet::from([req.host_id.clone()]),
        },
    );
    s.m.calls_started.inc();
    s.m.participants_total.inc();
    s.m.daily.observe(&req.host_id);
    s.refresh(rooms);
    Ok(with_user(
        (
            StatusCode::CREATED,
            Json(json!({ "room_id": id.to_string(), "participants": 1 })),
        ),
        &req.host_id,
    ))
}

#[derive(Deserialize)]
struct UserReq {
    user_id: String,
}

async fn join(
    State(s): St,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<UserReq>,
) -> Result<Response, ApiError> {
    let id = parse_id("room id", &id)?;
    check_ident("user_id", &req.user_id, 64)?;
    let mut guard = s.rooms.lock();
    let rooms = &mut guard.0;
    let room = rooms
        .get_mut(&id)
        .ok_or_else(|| ApiError::not_found("no such room"))?;
    if room.participants.len() >= MAX_PARTICIPANTS {
        return Err(ApiError::conflict("room is full"));
    }
    if !room.participants.insert(req.user_id.clone()) {
        return Err(ApiError::conflict("already in the room"));
    }
    let n = room.participants.len();
    s.m.participants_total.inc();
    s.m.daily.observe(&req.user_id);
    s.refresh(rooms);
    Ok(with_user(
        Json(json!({ "room_id": id.to_string(), "participants": n })),
        &req.user_id,
    ))
}

async fn leave(
    State(s): St,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<UserReq>,
) -> Result<Response, ApiError> {
    let id = parse_id("room id", &id)?;
    check_ident("user_id", &req.user_id, 64)?;
    let mut guard = s.rooms.lock();
    let rooms = &mut guard.0;
    let room = rooms
        .get_mut(&id)
        .ok_or_else(|| ApiError::not_found("no such room"))?;
    if !room.participants.remove(&req.user_id) {
        return Err(ApiError::not_found("not in the room"));
    }
    let left = room.participants.len();
    if left == 0 {
        s.end_call(rooms, id);
    } else {
        s.refresh(rooms);
    }
    Ok(with_user(
        Json(json!({ "room_id": id.to_string(), "participants": left, "ended": left == 0 })),
        &req.user_id,
    ))
}

async fn end(State(s): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id("room id", &id)?;
    let mut guard = s.rooms.lock();
    let secs = s
        .end_call(&mut guard.0, id)
        .ok_or_else(|| ApiError::not_found("no such room"))?;
    Ok(Json(json!({ "room_id": id.to_string(), "duration_seconds": secs })).into_response())
}

async fn list(State(s): St) -> Response {
    let guard = s.rooms.lock();
    let list: Vec<_> = guard
        .0
        .iter()
        .take(100)
        .map(|(id, r)| json!({ "room_id": id.to_string(), "participants": r.participants.len() }))
        .collect();
    Json(json!({ "rooms": list })).into_response()
}
