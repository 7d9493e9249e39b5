//! chat-service (:8001): chat rooms over real WebSockets (`GET /ws/chat?room=&user_id=`) and
//! an HTTP send endpoint.
//!
//! Client frames are JSON `{"type":"message","text":"..."}` (or `{"type":"ping"}`); anything
//! else gets an `{"type":"error",...}` frame back and the connection stays open. Messages are
//! broadcast to everyone in the room as `{"type":"message","room","user_id","text","ts"}`. A
//! connection's gauges are released by a drop guard, so abrupt disconnects and a service stop
//! bring them back down.
//!
//! Metrics: `websocket_connections_total`, `websocket_active_connections`,
//! `chat_messages_sent_total`, `chat_rooms_active`, `chat_daily_active_users` (HyperLogLog).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::Router;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{SinkExt, StreamExt};
use lookout_instrument::metrics::{Counter, Gauge};
use lookout_instrument::{HttpMetricsConfig, Metrics, UniqueCounter, UniqueCounterConfig};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, watch};

use super::{ApiError, JsonBody, ServiceContext, check_ident, check_text, finish, with_user};
use crate::DemoError;
use crate::timefmt::rfc3339_millis;

pub const MAX_CONNECTIONS: usize = 10_000;
pub const MAX_ROOMS: usize = 10_000;
pub const MAX_TEXT: usize = 2_000;
pub const MAX_FRAME: usize = 64 * 1024;

struct ChatMetrics {
    connections: Counter,
    active: Gauge,
    messages: Counter,
    rooms_active: Gauge,
    daily: UniqueCounter,
}

struct Room {
    tx: broadcast::Sender<Arc<str>>,
    connections: usize,
}

struct AppState {
    rooms: Mutex<HashMap<String, Room>>,
    m: ChatMetrics,
    shutdown: watch::Receiver<bool>,
}

type St = State<Arc<AppState>>;

pub fn router(ctx: &ServiceContext) -> Result<Router, DemoError> {
    let mut metrics = Metrics::new();
    let http = metrics.http_layer(HttpMetricsConfig::default())?;
    let m = ChatMetrics {
        connections: metrics.counter(
            "websocket_connections_total",
            "WebSocket connections accepted.",
        )?,
        active: metrics.gauge(
            "websocket_active_connections",
            "Open WebSocket connections.",
        )?,
        messages: metrics.counter("chat_messages_sent_total", "Chat messages sent.")?,
        rooms_active: metrics.gauge("chat_rooms_active", "Rooms with at least one connection.")?,
        daily: metrics.unique_counter(UniqueCounterConfig::new().daily(
            "chat_daily_active_users",
            "Distinct users who chatted during the last 24 hours.",
        ))?,
    };
    let state = Arc::new(AppState {
        rooms: Mutex::new(HashMap::new()),
        m,
        shutdown: ctx.shutdown.clone(),
    });
    let routes = Router::new()
        .route("/ws/chat", get(ws_chat))
        .route("/api/chat/rooms", get(list_rooms))
        .route("/api/chat/rooms/{room}/messages", post(send_message))
        .with_state(state);
    Ok(finish(ctx, routes, metrics, http))
}

impl AppState {
    /// Registers a connection in `room`.
    fn join(
        self: &Arc<Self>,
        room: &str,
    ) -> Result<(broadcast::Receiver<Arc<str>>, ConnGuard), ApiError> {
        let mut rooms = self.rooms.lock();
        let total: usize = rooms.values().map(|r| r.connections).sum();
        if total >= MAX_CONNECTIONS {
            return Err(ApiError::limit("too many connections"));
        }
        if !rooms.contains_key(room) && rooms.len() >= MAX_ROOMS {
            return Err(ApiError::limit("too many rooms"));
        }
        let r = rooms.entry(room.to_owned()).or_insert_with(|| Room {
            tx: broadcast::channel(256).0,
            connections: 0,
        });
        r.connections += 1;
        let rx = r.tx.subscribe();
        self.m.rooms_active.set(rooms.len() as i64);
        self.m.connections.inc();
        self.m.active.inc();
        Ok((
            rx,
            ConnGuard {
                state: self.clone(),
                room: room.to_owned(),
            },
        ))
    }

    fn publish(&self, room: &str, user: &str, text: &str) {
        self.m.messages.inc();
        self.m.daily.observe(user);
        let frame = json!({
            "type": "message", "room": room, "user_id": user, "text": text,
            "ts": rfc3339_millis(SystemTime::now()),
        })
        .to_string();
        if let Some(r) = self.rooms.lock().get(room) {
            // No receivers is fine: nobody is listening.
            let _ = r.tx.send(frame.into());
        }
    }
}

/// Releases a connection's share of the gauges however the connection ends.
struct ConnGuard {
    state: Arc<AppState>,
    room: String,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut rooms = self.state.rooms.lock();
        if let Some(r) = rooms.get_mut(&self.room) {
            r.connections = r.connections.saturating_sub(1);
            if r.connections == 0 {
                rooms.remove(&self.room);
            }
        }
        self.state.m.rooms_active.set(rooms.len() as i64);
        self.state.m.active.dec();
    }
}

#[derive(Deserialize)]
struct WsQuery {
    room: Option<String>,
    user_id: Option<String>,
}

async fn ws_chat(
    State(s): St,
    Query(q): Query<WsQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let room = q.room.unwrap_or_default();
    let user = q.user_id.unwrap_or_default();
    check_ident("room", &room, 64)?;
    check_ident("user_id", &user, 64)?;
    let upgrade = upgrade.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let (rx, guard) = s.join(&room)?;
    s.m.daily.observe(&user);
    let resp = upgrade
        .max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "websocket upgrade failed"))
        .on_upgrade(move |socket| session(s, room, user, socket, rx, guard));
    Ok(resp)
}

#[derive(Deserialize)]
struct ClientFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

fn error_frame(msg: &str) -> Message {
    Message::Text(json!({ "type": "error", "error": msg }).to_string().into())
}

async fn session(
    s: Arc<AppState>,
    room: String,
    user: String,
    socket: WebSocket,
    mut rx: broadcast::Receiver<Arc<str>>,
    guard: ConnGuard,
) {
    let _guard = guard;
    let mut shutdown = s.shutdown.clone();
    let (mut tx, mut incoming) = socket.split();
    let joined = json!({ "type": "joined", "room": room, "user_id": user }).to_string();
    if tx.send(Message::Text(joined.into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            frame = incoming.next() => {
                let reply = match frame {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => None,
                    Some(Ok(Message::Binary(_))) => Some(error_frame("binary frames are not supported")),
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<ClientFrame>(text.as_str()) {
                        Err(_) => Some(error_frame("frames must be JSON objects with a \"type\"")),
                        Ok(f) if f.kind == "ping" => Some(Message::Text(json!({"type": "pong"}).to_string().into())),
                        Ok(f) if f.kind == "message" => {
                            let t = f.text.unwrap_or_default();
                            match check_text("text", &t, MAX_TEXT) {
                                Ok(()) => { s.publish(&room, &user, &t); None }
                                Err(e) => Some(error_frame(&e.message)),
                            }
                        }
                        Ok(_) => Some(error_frame("unknown frame type")),
                    },
                };
                if let Some(r) = reply
                    && tx.send(r).await.is_err()
                {
                    break;
                }
            }
            msg = rx.recv() => match msg {
                Ok(m) => {
                    if tx.send(Message::Text(m.as_ref().into())).await.is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
                let _ = tx.send(Message::Close(None)).await;
                break;
            }
        }
    }
}

async fn list_rooms(State(s): St) -> Response {
    let rooms = s.rooms.lock();
    let mut list: Vec<_> = rooms
        .iter()
        .map(|(name, r)| json!({ "room": name, "connections": r.connections }))
        .collect();
    list.truncate(100);
    Json(json!({ "rooms": list })).into_response()
}

#[derive(Deserialize)]
struct SendReq {
    user_id: String,
    text: String,
}

async fn send_message(
    State(s): St,
    Path(room): Path<String>,
    JsonBody(req): JsonBody<SendReq>,
) -> Result<Response, ApiError> {
    check_ident("room", &room, 64)?;
    check_ident("user_id", &req.user_id, 64)?;
    check_text("text", &req.text, MAX_TEXT)?;
    s.publish(&room, &req.user_id, &req.text);
    Ok(with_user(
        (
            StatusCode::CREATED,
            Json(json!({ "room": room, "sent": true })),
        ),
        &req.user_id,
    ))
}
