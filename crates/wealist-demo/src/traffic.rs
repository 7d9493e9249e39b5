//! The traffic generator: simulated users who sign up, log in, get tokens, create
//! workspaces, projects and boards, chat over real WebSocket connections, upload and download
//! files, hold video calls and read notifications — with a daily rhythm compressed into
//! minutes, plus an extra load ("spike") a fault can direct at one service.
//!
//! Reproducibility: the sequence of chosen users and actions is a function of the seed alone;
//! timing (and therefore server-side ids and interleavings) is not.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::ServiceKind;
use crate::rng::Rng;

/// Generator settings.
#[derive(Clone, Debug)]
pub struct TrafficConfig {
    pub seed: u64,
    /// Simulated users.
    pub users: usize,
    /// Requests per second at the daily peak (the rhythm scales it down at night).
    pub peak_rps: f64,
    /// Length of one simulated day.
    pub day_length: Duration,
    /// Simulated hour of day at the start.
    pub start_hour: f64,
    pub targets: BTreeMap<ServiceKind, SocketAddr>,
    /// Most requests in flight (beyond it, planned requests are skipped and counted).
    pub max_in_flight: usize,
    /// Multiplies the length of chat and video sessions (the fast schedule shortens them).
    pub session_scale: f64,
}

impl TrafficConfig {
    pub fn new(seed: u64, targets: BTreeMap<ServiceKind, SocketAddr>) -> Self {
        TrafficConfig {
            seed,
            users: 40,
            peak_rps: 25.0,
            day_length: Duration::from_secs(24 * 60),
            start_hour: 9.0,
            targets,
            max_in_flight: 512,
            session_scale: 1.0,
        }
    }
}

/// Relative activity at `hour` (0–24): low at night, peaks late morning and mid-afternoon.
pub fn rhythm(hour: f64) -> f64 {
    let h = hour.rem_euclid(24.0);
    let bump = |mu: f64, sigma: f64| (-((h - mu).powi(2)) / (2.0 * sigma * sigma)).exp();
    0.15 + 0.85 * (0.9 * bump(10.5, 2.0) + bump(15.0, 2.5)).min(1.0)
}

/// Extra load directed at one service until a deadline.
#[derive(Debug, Default)]
pub struct Spike {
    inner: Mutex<Option<(ServiceKind, f64, Instant)>>,
}

impl Spike {
    pub fn start(&self, service: ServiceKind, rps: f64, duration: Duration) {
        *self.inner.lock() = Some((service, rps.clamp(0.0, 5_000.0), Instant::now() + duration));
    }

    pub fn stop(&self) {
        *self.inner.lock() = None;
    }

    /// The active spike, if any.
    pub fn current(&self) -> Option<(ServiceKind, f64)> {
        let mut g = self.inner.lock();
        match *g {
            Some((s, r, until)) if Instant::now() < until => Some((s, r)),
            Some(_) => {
                *g = None;
                None
            }
            None => None,
        }
    }
}

/// Counters of what the generator did.
#[derive(Debug, Default)]
pub struct TrafficStats {
    pub planned: AtomicU64,
    pub skipped: AtomicU64,
    pub responses: AtomicU64,
    pub server_errors: AtomicU64,
    pub client_errors: AtomicU64,
    pub transport_errors: AtomicU64,
    pub ws_sessions: AtomicU64,
    pub video_calls: AtomicU64,
}

/// A snapshot of [`TrafficStats`].
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub planned: u64,
    pub skipped: u64,
    pub responses: u64,
    pub server_errors: u64,
    pub client_errors: u64,
    pub transport_errors: u64,
    pub ws_sessions: u64,
    pub video_calls: u64,
}

impl TrafficStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            planned: l(&self.planned),
            skipped: l(&self.skipped),
            responses: l(&self.responses),
            server_errors: l(&self.server_errors),
            client_errors: l(&self.client_errors),
            transport_errors: l(&self.transport_errors),
            ws_sessions: l(&self.ws_sessions),
            video_calls: l(&self.video_calls),
        }
    }
}

#[derive(Debug, Default)]
struct SimUser {
    email: String,
    password: String,
    user_id: Option<String>,
    access: Option<String>,
    refresh: Option<String>,
    workspace: Option<String>,
    project: Option<String>,
    boards: Vec<String>,
    notifications: Vec<String>,
    files: Vec<String>,
}

/// What one simulated step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Account,
    Verify,
    Refresh,
    Workspace,
    Board,
    ChatSend,
    ChatSession,
    Notification,
    File,
    VideoCall,
    BadRequest,
    Logout,
}

const ACTIONS: [(Action, f64); 12] = [
    (Action::Account, 6.0),
    (Action::Verify, 10.0),
    (Action::Refresh, 2.0),
    (Action::Workspace, 6.0),
    (Action::Board, 16.0),
    (Action::ChatSend, 8.0),
    (Action::ChatSession, 1.5),
    (Action::Notification, 18.0),
    (Action::File, 5.0),
    (Action::VideoCall, 1.0),
    (Action::BadRequest, 2.0),
    (Action::Logout, 1.5),
];

/// Draws the next (user index, action) pair; a pure function of the generator state.
pub fn plan_step(rng: &mut Rng, users: usize) -> (usize, Action) {
    let user = rng.below(users.max(1) as u64) as usize;
    let weights: Vec<f64> = ACTIONS.iter().map(|(_, w)| *w).collect();
    (user, ACTIONS[rng.weighted(&weights)].0)
}

/// The running generator.
pub struct Traffic {
    cfg: TrafficConfig,
    http: reqwest::Client,
    users: Vec<Mutex<SimUser>>,
    spike: Arc<Spike>,
    stats: Arc<TrafficStats>,
    in_flight: Arc<Semaphore>,
    sessions: Arc<Semaphore>,
}

impl std::fmt::Debug for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traffic")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

type Resp = Option<(u16, Value)>;

impl Traffic {
    pub fn new(cfg: TrafficConfig, spike: Arc<Spike>) -> Result<Arc<Self>, crate::DemoError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(15))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| crate::DemoError::Config(format!("http client: {e}")))?;
        let users = (0..cfg.users.max(1))
            .map(|i| {
                Mutex::new(SimUser {
                    email: format!("user{i}.s{}@wealist.demo", cfg.seed),
                    password: format!("pw-{}-{i}-demo", cfg.seed),
                    ..SimUser::default()
                })
            })
            .collect();
        Ok(Arc::new(Traffic {
            in_flight: Arc::new(Semaphore::new(cfg.max_in_flight.max(1))),
            sessions: Arc::new(Semaphore::new(32)),
            cfg,
            http,
            users,
            spike,
            stats: Arc::new(TrafficStats::default()),
        }))
    }

    pub fn stats(&self) -> &Arc<TrafficStats> {
        &self.stats
    }

    pub fn spike(&self) -> &Arc<Spike> {
        &self.spike
    }

    /// The simulated hour of day `elapsed` after the start.
    pub fn hour_at(&self, elapsed: Duration) -> f64 {
        let day = self.cfg.day_length.as_secs_f64().max(1.0);
        (self.cfg.start_hour + 24.0 * elapsed.as_secs_f64() / day).rem_euclid(24.0)
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut rng = Rng::new(self.cfg.seed);
        let start = Instant::now();
        let tick = Duration::from_millis(50);
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = Instant::now();
        let (mut budget, mut spike_budget) = (0.0f64, 0.0f64);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let now = Instant::now();
            let dt = now.duration_since(last).as_secs_f64().min(1.0);
            last = now;
            let rate = self.cfg.peak_rps * rhythm(self.hour_at(now - start));
            budget += rate * dt;
            while budget >= 1.0 {
                budget -= 1.0;
                let (user, action) = plan_step(&mut rng, self.users.len());
                let child = rng.fork();
                self.launch(user, action, child);
            }
            match self.spike.current() {
                Some((service, rps)) => {
                    spike_budget += rps * dt;
                    while spike_budget >= 1.0 {
                        spike_budget -= 1.0;
                        let child = rng.fork();
                        self.launch_spike(service, child);
                    }
                }
                None => spike_budget = 0.0,
            }
        }
    }

    fn launch(self: &Arc<Self>, user: usize, action: Action, rng: Rng) {
        self.stats.planned.fetch_add(1, Ordering::Relaxed);
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            me.step(user, action, rng).await;
            drop(permit);
        });
    }

    fn launch_spike(self: &Arc<Self>, service: ServiceKind, mut rng: Rng) {
        self.stats.planned.fetch_add(1, Ordering::Relaxed);
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            let path = match service {
                ServiceKind::User => "/api/workspaces".to_owned(),
                ServiceKind::Auth => "/api/auth/verify".to_owned(),
                ServiceKind::Board => "/api/projects".to_owned(),
                ServiceKind::Chat => "/api/chat/rooms".to_owned(),
                ServiceKind::Noti => format!("/api/notifications?user_id=u{}", rng.below(50)),
                ServiceKind::Storage => "/api/files".to_owned(),
                ServiceKind::Video => "/api/video/rooms".to_owned(),
            };
            me.call(service, reqwest::Method::GET, &path, None, None, &mut rng)
                .await;
            drop(permit);
        });
    }

    fn url(&self, service: ServiceKind, path: &str) -> String {
        let addr = self
            .cfg
            .targets
            .get(&service)
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], service.seed_port())));
        format!("http://{addr}{path}")
    }

    /// One HTTP request; `None` when the service could not be reached.
    async fn call(
        &self,
        service: ServiceKind,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        user: Option<&str>,
        rng: &mut Rng,
    ) -> Resp {
        let mut req = self
            .http
            .request(method, self.url(service, path))
            .header("x-trace-id", rng.hex(32));
        if let Some(u) = user {
            req = req.header("x-user-id", u);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        self.finish(req).await
    }

    async fn finish(&self, req: reqwest::RequestBuilder) -> Resp {
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                self.stats.responses.fetch_add(1, Ordering::Relaxed);
                if status >= 500 {
                    self.stats.server_errors.fetch_add(1, Ordering::Relaxed);
                } else if status >= 400 {
                    self.stats.client_errors.fetch_add(1, Ordering::Relaxed);
                }
                let bytes = resp.bytes().await.unwrap_or_default();
                Some((
                    status,
                    serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                ))
            }
            Err(_) => {
                self.stats.transport_errors.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn user_id(&self, idx: usize) -> Option<String> {
        self.users[idx].lock().user_id.clone()
    }

    async fn step(self: &Arc<Self>, idx: usize, action: Action, mut rng: Rng) {
        let Some(uid) = self.user_id(idx) else {
            self.account(idx, &mut rng).await;
            return;
        };
        match action {
            Action::Account => self.account(idx, &mut rng).await,
            Action::Verify => self.verify(idx, &uid, &mut rng).await,
            Action::Refresh => self.refresh(idx, &uid, &mut rng).await,
            Action::Workspace => self.workspace(idx, &uid, &mut rng).await,
            Action::Board => self.board(idx, &uid, &mut rng).await,
            Action::ChatSend => {
                let room = format!("room-{}", rng.below(8));
                let text = format!("hello from {uid} #{}", rng.below(1000));
                self.call(
                    ServiceKind::Chat,
                    reqwest::Method::POST,
                    &format!("/api/chat/rooms/{room}/messages"),
                    Some(json!({ "user_id": uid, "text": text })),
                    Some(&uid),
                    &mut rng,
                )
                .await;
            }
            Action::ChatSession => self.chat_session(uid, rng),
            Action::Notification => self.notification(idx, &uid, &mut rng).await,
            Action::File => self.file(idx, &uid, &mut rng).await,
            Action::VideoCall => self.video_call(uid, rng),
            Action::BadRequest => self.bad_request(&mut rng).await,
            Action::Logout => {
                self.call(
                    ServiceKind::User,
                    reqwest::Method::POST,
                    "/api/users/logout",
                    Some(json!({ "user_id": uid })),
                    Some(&uid),
                    &mut rng,
                )
                .await;
                let mut u = self.users[idx].lock();
                u.access = None;
                u.refresh = None;
            }
        }
    }

    /// Sign up (first time, or after the user service lost its state), then log in and get
    /// a token from the auth service.
    async fn account(&self, idx: usize, rng: &mut Rng) {
        let (email, password) = {
            let u = self.users[idx].lock();
            (u.email.clone(), u.password.clone())
        };
        let login = self
            .call(
                ServiceKind::User,
                reqwest::Method::POST,
                "/api/users/login",
                Some(json!({ "email": email, "password": password })),
                None,
                rng,
            )
            .await;
        let uid = match login {
            Some((200, v)) => v["user_id"].as_str().map(str::to_owned),
            Some((401, _)) => {
                let signup = self
                    .call(
                        ServiceKind::User,
                        reqwest::Method::POST,
                        "/api/users/signup",
                        Some(json!({ "email": email, "password": password, "name": format!("Demo User {idx}") })),
                        None,
                        rng,
                    )
                    .await;
                match signup {
                    Some((201, v)) => v["id"].as_str().map(str::to_owned),
                    _ => None,
                }
            }
            _ => None,
        };
        let Some(uid) = uid else { return };
        {
            let mut u = self.users[idx].lock();
            if u.user_id.as_deref() != Some(&uid) {
                // A restarted user service hands out new ids: forget what belonged to the old.
                u.workspace = None;
            }
            u.user_id = Some(uid.clone());
        }
        let token = self
            .call(
                ServiceKind::Auth,
                reqwest::Method::POST,
                "/api/auth/token",
                Some(json!({ "user_id": uid })),
                Some(&uid),
                rng,
            )
            .await;
        if let Some((200, v)) = token {
            let mut u = self.users[idx].lock();
            u.access = v["access_token"].as_str().map(str::to_owned);
            u.refresh = v["refresh_token"].as_str().map(str::to_owned);
        }
    }

    async fn verify(&self, idx: usize, uid: &str, rng: &mut Rng) {
        let token = self.users[idx].lock().access.clone();
        let Some(token) = token else {
            self.account(idx, rng).await;
            return;
        };
        let req = self
            .http
            .get(self.url(ServiceKind::Auth, "/api/auth/verify"))
            .header("authorization", format!("Bearer {token}"))
            .header("x-trace-id", rng.hex(32))
            .header("x-user-id", uid);
        if let Some((401, _)) = self.finish(req).await {
            self.users[idx].lock().access = None;
        }
    }

    async fn refresh(&self, idx: usize, uid: &str, rng: &mut Rng) {
        let token = self.users[idx].lock().refresh.clone();
        let Some(token) = token else {
            self.account(idx, rng).await;
            return;
        };
        let r = self
            .call(
                ServiceKind::Auth,
                reqwest::Method::POST,
                "/api/auth/refresh",
                Some(json!({ "refresh_token": token })),
                Some(uid),
                rng,
            )
            .await;
        let mut u = self.users[idx].lock();
        match r {
            Some((200, v)) => {
                u.access = v["access_token"].as_str().map(str::to_owned);
                u.refresh = v["refresh_token"].as_str().map(str::to_owned);
            }
            Some((401, _)) => {
                u.access = None;
                u.refresh = None;
            }
            _ => {}
        }
    }

    async fn workspace(&self, idx: usize, uid: &str, rng: &mut Rng) {
        let ws = self.users[idx].lock().workspace.clone();
        match ws {
            None => {
                let r = self
                    .call(
                        ServiceKind::User,
                        reqwest::Method::POST,
                        "/api/workspaces",
                        Some(json!({ "name": format!("team {}", rng.below(10_000)), "owner_id": uid })),
                        Some(uid),
                        rng,
                    )
                    .await;
                if let Some((201, v)) = r {
                    self.users[idx].lock().workspace = v["id"].as_str().map(str::to_owned);
                }
            }
            Some(ws) if rng.chance(0.5) => {
                // Invite another (registered) user.
                let other = rng.below(self.users.len() as u64) as usize;
                if let Some(other_id) = self.user_id(other) {
                    let r = self
                        .call(
                            ServiceKind::User,
                            reqwest::Method::POST,
                            &format!("/api/workspaces/{ws}/members"),
                            Some(json!({ "user_id": other_id })),
                            Some(uid),
                            rng,
                        )
                        .await;
                    if let Some((404, _)) = r {
                        self.users[idx].lock().workspace = None;
                    }
                }
            }
            Some(_) => {
                self.call(
                    ServiceKind::User,
                    reqwest::Method::GET,
                    &format!("/api/workspaces?user_id={uid}"),
                    None,
                    Some(uid),
                    rng,
                )
                .await;
            }
        }
    }

    async fn board(&self, idx: usize, uid: &str, rng: &mut Rng) {
        let (project, board) = {
            let u = self.users[idx].lock();
            let b = if u.boards.is_empty() {
                None
            } else {
                Some(u.boards[rng.below(u.boards.len() as u64) as usize].clone())
            };
            (u.project.clone(), b)
        };
        let Some(project) = project else {
            let r = self
                .call(
                    ServiceKind::Board,
                    reqwest::Method::POST,
                    "/api/projects",
                    Some(json!({ "name": format!("project {}", rng.below(10_000)), "owner_id": uid })),
                    Some(uid),
                    rng,
                )
                .await;
            if let Some((201, v)) = r {
                let mut u = self.users[idx].lock();
                u.project = v["id"].as_str().map(str::to_owned);
                u.boards.clear();
            }
            return;
        };
        let choice = rng.weighted(&[3.0, 4.0, 2.0, 2.0, 0.3]);
        match (choice, board) {
            (0, _) | (_, None) => {
                let r = self
                    .call(
                        ServiceKind::Board,
                        reqwest::Method::POST,
                        &format!("/api/projects/{project}/boards"),
                        Some(json!({ "title": format!("task {}", rng.below(100_000)), "description": "demo board" })),
                        Some(uid),
                        rng,
                    )
                    .await;
                match r {
                    Some((201, v)) => {
                        if let Some(id) = v["id"].as_str() {
                            let mut u = self.users[idx].lock();
                            u.boards.push(id.to_owned());
                            if u.boards.len() > 20 {
                                u.boards.remove(0);
                            }
                        }
                    }
                    Some((404, _)) => {
                        let mut u = self.users[idx].lock();
                        u.project = None;
                        u.boards.clear();
                    }
                    _ => {}
                }
            }
            (1, Some(b)) => {
                self.call(
                    ServiceKind::Board,
                    reqwest::Method::GET,
                    &format!("/api/boards/{b}"),
                    None,
                    Some(uid),
                    rng,
                )
                .await;
            }
            (2, Some(b)) => {
                let status = ["todo", "in_progress", "done"][rng.below(3) as usize];
                self.call(
                    ServiceKind::Board,
                    reqwest::Method::PUT,
                    &format!("/api/boards/{b}"),
                    Some(json!({ "status": status })),
                    Some(uid),
                    rng,
                )
                .await;
            }
            (3, Some(_)) => {
                self.call(
                    ServiceKind::Board,
                    reqwest::Method::GET,
                    &format!("/api/projects/{project}"),
                    None,
                    Some(uid),
                    rng,
                )
                .await;
            }
            (_, Some(b)) => {
                self.call(
                    ServiceKind::Board,
                    reqwest::Method::DELETE,
                    &format!("/api/boards/{b}"),
                    None,
                    Some(uid),
                    rng,
                )
                .await;
                self.users[idx].lock().boards.retain(|x| *x != b);
            }
        }
    }

    async fn notification(&self, idx: usize, uid: &str, rng: &mut Rng) {
        match rng.weighted(&[3.0, 4.0, 2.0]) {
            0 => {
                let r = self
                    .call(
                        ServiceKind::Noti,
                        reqwest::Method::POST,
                        "/api/notifications",
                        Some(json!({ "user_id": uid, "title": format!("update #{}", rng.below(1000)), "body": "something changed" })),
                        Some(uid),
                        rng,
                    )
                    .await;
                if let Some((201, v)) = r
                    && let Some(id) = v["id"].as_str()
                {
                    let mut u = self.users[idx].lock();
                    u.notifications.push(id.to_owned());
                    if u.notifications.len() > 20 {
                        u.notifications.remove(0);
                    }
                }
            }
            1 => {
                self.call(
                    ServiceKind::Noti,
                    reqwest::Method::GET,
                    &format!("/api/notifications?user_id={uid}&unread=true"),
                    None,
                    Some(uid),
                    rng,
                )
                .await;
            }
            _ => {
                let id = self.users[idx].lock().notifications.pop();
                if let Some(id) = id {
                    self.call(
                        ServiceKind::Noti,
                        reqwest::Method::POST,
                        &format!("/api/notifications/{id}/read"),
                        None,
                        Some(uid),
                        rng,
                    )
                    .await;
                }
            }
        }
    }

    async fn file(&self, idx: usize, uid: &str, rng: &mut Rng) {
        let existing = {
            let u = self.users[idx].lock();
            (!u.files.is_empty()).then(|| u.files[rng.below(u.files.len() as u64) as usize].clone())
        };
        match existing {
            Some(name) if rng.chance(0.6) => {
                let url = self.url(ServiceKind::Storage, &format!("/api/files/{name}"));
                let req = self
                    .http
                    .get(url)
                    .header("x-trace-id", rng.hex(32))
                    .header("x-user-id", uid);
                match req.send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        self.stats.responses.fetch_add(1, Ordering::Relaxed);
                        if status >= 500 {
                            self.stats.server_errors.fetch_add(1, Ordering::Relaxed);
                        }
                        // Consume the body as a stream, as a real client would.
                        let mut s = resp.bytes_stream();
                        while let Some(Ok(_)) = s.next().await {}
                        if status == 404 {
                            self.users[idx].lock().files.retain(|f| *f != name);
                        }
                    }
                    Err(_) => {
                        self.stats.transport_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            _ => {
                let name = format!("u{idx}-file{}.bin", rng.below(4));
                let size = 1024 + rng.below(192 * 1024) as usize;
                let seed = rng.next_u64();
                // Streamed upload body: 16 KiB chunks produced on the fly.
                let chunks =
                    futures_util::stream::iter((0..size.div_ceil(16 * 1024)).map(move |i| {
                        let len = (size - i * 16 * 1024).min(16 * 1024);
                        let byte = (seed as u8).wrapping_add(i as u8);
                        Ok::<Vec<u8>, std::io::Error>(vec![byte; len])
                    }));
                let req = self
                    .http
                    .put(self.url(ServiceKind::Storage, &format!("/api/files/{name}")))
                    .header("x-trace-id", rng.hex(32))
                    .header("x-user-id", uid)
                    .body(reqwest::Body::wrap_stream(chunks));
                if let Some((201, _)) = self.finish(req).await {
                    let mut u = self.users[idx].lock();
                    if !u.files.contains(&name) {
                        u.files.push(name);
                    }
                }
            }
        }
    }

    /// A malformed request to some service (the services answer 400 with a JSON body).
    async fn bad_request(&self, rng: &mut Rng) {
        let (service, method, path, body) = match rng.below(5) {
            0 => (
                ServiceKind::User,
                reqwest::Method::POST,
                "/api/users/signup",
                "{\"email\":\"not-an-email\"}",
            ),
            1 => (
                ServiceKind::Board,
                reqwest::Method::POST,
                "/api/projects",
                "{broken json",
            ),
            2 => (
                ServiceKind::Noti,
                reqwest::Method::GET,
                "/api/notifications",
                "",
            ),
            3 => (
                ServiceKind::Video,
                reqwest::Method::POST,
                "/api/video/rooms/abc/join",
                "{\"user_id\":\"x\"}",
            ),
            _ => (
                ServiceKind::Storage,
                reqwest::Method::PUT,
                "/api/files/..hidden",
                "x",
            ),
        };
        let mut req = self
            .http
            .request(method, self.url(service, path))
            .header("x-trace-id", rng.hex(32));
        if !body.is_empty() {
            req = req.header("content-type", "application/json").body(body);
        }
        self.finish(req).await;
    }

    fn scaled(&self, d: Duration) -> Duration {
        d.mul_f64(self.cfg.session_scale.clamp(0.01, 100.0))
    }

    /// A WebSocket chat session in its own task: join a room, send a few messages (now and
    /// then a malformed frame), read what others say, then close — or just drop the
    /// connection, as a phone losing signal would.
    fn chat_session(self: &Arc<Self>, uid: String, mut rng: Rng) {
        let Ok(permit) = self.sessions.clone().try_acquire_owned() else {
            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let room = format!("room-{}", rng.below(8));
            let url = me
                .url(
                    ServiceKind::Chat,
                    &format!("/ws/chat?room={room}&user_id={uid}"),
                )
                .replacen("http://", "ws://", 1);
            let Ok(Ok((ws, _))) = tokio::time::timeout(
                Duration::from_secs(10),
                tokio_tungstenite::connect_async(url),
            )
            .await
            else {
                me.stats.transport_errors.fetch_add(1, Ordering::Relaxed);
                return;
            };
            me.stats.ws_sessions.fetch_add(1, Ordering::Relaxed);
            let (mut tx, mut rx) = ws.split();
            let reader = tokio::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
            let messages = 2 + rng.below(5);
            for i in 0..messages {
                let pause = me.scaled(Duration::from_millis(500 + rng.below(3_000)));
                tokio::time::sleep(pause).await;
                let frame = if rng.chance(0.1) {
                    "this is not json".to_owned()
                } else {
                    json!({ "type": "message", "text": format!("{uid} says hi ({i})") }).to_string()
                };
                if tx.send(Message::Text(frame.into())).await.is_err() {
                    break;
                }
            }
            if rng.chance(0.8) {
                let _ = tx.send(Message::Close(None)).await;
                let _ = tokio::time::timeout(Duration::from_secs(2), tx.close()).await;
            }
            // Otherwise: dropped without a close frame (an abrupt disconnect).
            reader.abort();
        });
    }

    /// A video call in its own task: a host creates the room, others join, after a while
    /// everyone leaves (the last one ends the call) or the host ends it.
    fn video_call(self: &Arc<Self>, host: String, mut rng: Rng) {
        let Ok(permit) = self.sessions.clone().try_acquire_owned() else {
            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let r = me
                .call(
                    ServiceKind::Video,
                    reqwest::Method::POST,
                    "/api/video/rooms",
                    Some(json!({ "host_id": host })),
                    Some(&host),
                    &mut rng,
                )
                .await;
            let Some((201, v)) = r else { return };
            let Some(room) = v["room_id"].as_str().map(str::to_owned) else {
                return;
            };
            me.stats.video_calls.fetch_add(1, Ordering::Relaxed);
            let mut joined = vec![host.clone()];
            for _ in 0..1 + rng.below(4) {
                let other = rng.below(me.users.len() as u64) as usize;
                if let Some(o) = me.user_id(other).filter(|o| !joined.contains(o)) {
                    let r = me
                        .call(
                            ServiceKind::Video,
                            reqwest::Method::POST,
                            &format!("/api/video/rooms/{room}/join"),
                            Some(json!({ "user_id": o })),
                            Some(&o),
                            &mut rng,
                        )
                        .await;
                    if let Some((200, _)) = r {
                        joined.push(o);
                    }
                }
            }
            let length = me.scaled(Duration::from_secs(5 + rng.below(60)));
            tokio::time::sleep(length).await;
            if rng.chance(0.5) {
                me.call(
                    ServiceKind::Video,
                    reqwest::Method::POST,
                    &format!("/api/video/rooms/{room}/end"),
                    None,
                    Some(&host),
                    &mut rng,
                )
                .await;
            } else {
                for u in joined {
                    me.call(
                        ServiceKind::Video,
                        reqwest::Method::POST,
                        &format!("/api/video/rooms/{room}/leave"),
                        Some(json!({ "user_id": u })),
                        Some(&u),
                        &mut rng,
                    )
                    .await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rhythm_is_low_at_night_and_high_by_day() {
        assert!(rhythm(3.0) < 0.2);
        assert!(rhythm(10.5) > 0.9);
        assert!(rhythm(15.0) > 0.9);
        assert!(rhythm(13.0) > rhythm(3.0));
        for h in 0..48 {
            let r = rhythm(h as f64 * 0.5);
            assert!((0.15..=1.0).contains(&r));
        }
        assert_eq!(rhythm(26.0), rhythm(2.0));
    }

    #[test]
    fn plans_are_reproducible_from_the_seed() {
        let plan = |seed| {
            let mut r = Rng::new(seed);
            (0..200).map(|_| plan_step(&mut r, 40)).collect::<Vec<_>>()
        };
        assert_eq!(plan(7), plan(7));
        assert_ne!(plan(7), plan(8));
        let p = plan(7);
        assert!(p.iter().all(|(u, _)| *u < 40));
        // Every action shows up in a long enough plan.
        let mut r = Rng::new(1);
        let long: Vec<Action> = (0..5_000).map(|_| plan_step(&mut r, 10).1).collect();
        for (a, _) in ACTIONS {
            assert!(long.contains(&a), "{a:?}");
        }
    }

    #[test]
    fn spike_expires() {
        let s = Spike::default();
        assert_eq!(s.current(), None);
        s.start(ServiceKind::Board, 150.0, Duration::from_secs(60));
        assert_eq!(s.current(), Some((ServiceKind::Board, 150.0)));
        s.start(ServiceKind::Board, 150.0, Duration::ZERO);
        assert_eq!(s.current(), None);
    }
}
