//! auth-service (:8090, Spring Boot style): token issue, verify and refresh.
//!
//! Metrics on `/actuator/prometheus` use Micrometer's names: `http_server_requests_seconds`
//! (`{exception,method,outcome,status,uri}`) and `_max`, `cache_gets_total{cache,result}`,
//! `cache_puts_total{cache}`, `cache_evictions_total{cache}`, `cache_size{cache}` for the
//! verified-token cache, plus the process metrics. No JVM series are invented.
//!
//! Tokens are random hexadecimal strings from a generator seeded by the clock — fine for a
//! demo, not for production.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use lookout_instrument::metrics::{Counter, Family, Gauge};
use lookout_instrument::{HttpMetricsConfig, Metrics, label_set};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, JsonBody, ServiceContext, check_ident, finish, with_user};
use crate::DemoError;
use crate::rng::Rng;

pub const ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
pub const REFRESH_TTL: Duration = Duration::from_secs(24 * 3600);
/// Most live tokens kept (oldest dropped beyond it) and verified-token cache entries.
pub const MAX_TOKENS: usize = 50_000;
pub const CACHE_CAPACITY: usize = 1_000;
const CACHE: &str = "tokens";

label_set! {
    pub struct CacheGet { cache: &'static str, result: &'static str }
}
label_set! {
    pub struct CacheName { cache: &'static str }
}

struct AuthMetrics {
    gets: Family<CacheGet, Counter>,
    puts: Family<CacheName, Counter>,
    evictions: Family<CacheName, Counter>,
    size: Family<CacheName, Gauge>,
}

struct Token {
    user: String,
    expires: Instant,
}

#[derive(Default)]
struct Store {
    access: HashMap<String, Token>,
    refresh: HashMap<String, Token>,
    order: VecDeque<String>,
    cache: HashMap<String, String>,
    cache_order: VecDeque<String>,
}

struct AppState {
    store: Mutex<Store>,
    rng: Mutex<Rng>,
    m: AuthMetrics,
}

type St = State<Arc<AppState>>;

pub fn router(ctx: &ServiceContext) -> Result<Router, DemoError> {
    let mut metrics = Metrics::new();
    let http =
        metrics.micrometer_http_layer(HttpMetricsConfig::default().unmatched_path("NOT_FOUND"))?;
    let m = AuthMetrics {
        gets: metrics.counter_family("cache_gets_total", "The number of times cache lookup methods have returned a cached (hit) or uncached (miss) value.")?,
        puts: metrics.counter_family("cache_puts_total", "The number of entries added to the cache.")?,
        evictions: metrics.counter_family("cache_evictions_total", "The number of times the cache was evicted.")?,
        size: metrics.gauge_family("cache_size", "The number of entries in this cache.")?,
    };
    m.size.get_or_create(&CacheName { cache: CACHE }).set(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let state = Arc::new(AppState {
        store: Mutex::new(Store::default()),
        rng: Mutex::new(Rng::new(seed)),
        m,
    });
    let routes = Router::new()
        .route("/api/auth/token", post(issue))
        .route("/api/auth/verify", get(verify))
        .route("/api/auth/refresh", post(refresh))
        .with_state(state);
    Ok(finish(ctx, routes, metrics, http))
}

impl AppState {
    fn new_token(&self) -> String {
        self.rng.lock().hex(40)
    }

    fn issue_pair(&self, user: &str) -> (String, String) {
        let access = self.new_token();
        let refresh = self.new_token();
        let now = Instant::now();
        let mut st = self.store.lock();
        st.access.insert(
            access.clone(),
            Token {
                user: user.to_owned(),
                expires: now + ACCESS_TTL,
            },
        );
        st.refresh.insert(
            refresh.clone(),
            Token {
                user: user.to_owned(),
                expires: now + REFRESH_TTL,
            },
        );
        st.order.push_back(access.clone());
        st.order.push_back(refresh.clone());
        while st.order.len() > MAX_TOKENS * 2 {
            if let Some(old) = st.order.pop_front() {
                st.access.remove(&old);
                st.refresh.remove(&old);
                st.cache.remove(&old);
            }
        }
        (access, refresh)
    }
}

fn token_response(access: &str, refresh: &str, user: &str) -> Response {
    with_user(
        (
            StatusCode::OK,
            Json(json!({
                "access_token": access,
                "refresh_token": refresh,
                "token_type": "Bearer",
                "expires_in": ACCESS_TTL.as_secs(),
            })),
        ),
        user,
    )
}

#[derive(Deserialize)]
struct IssueReq {
    user_id: String,
}

async fn issue(State(s): St, JsonBody(req): JsonBody<IssueReq>) -> Result<Response, ApiError> {
    check_ident("user_id", &req.user_id, 64)
        .map_err(|e| e.with_exception("MethodArgumentNotValidException"))?;
    let (access, refresh) = s.issue_pair(&req.user_id);
    Ok(token_response(&access, &refresh, &req.user_id))
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .ok_or_else(|| {
            ApiError::unauthorized("missing bearer token")
                .with_exception("AuthenticationCredentialsNotFoundException")
        })
}

async fn verify(State(s): St, headers: HeaderMap) -> Result<Response, ApiError> {
    let token = bearer(&headers)?;
    let invalid = || {
        ApiError::unauthorized("invalid or expired token").with_exception("InvalidTokenException")
    };
    let mut st = s.store.lock();
    if let Some(user) = st.cache.get(token).cloned() {
        // A cached token may have expired since it was cached.
        if st
            .access
            .get(token)
            .is_some_and(|t| t.expires > Instant::now())
        {
            s.m.gets
                .get_or_create(&CacheGet {
                    cache: CACHE,
                    result: "hit",
                })
                .inc();
            return Ok(with_user(
                Json(json!({ "user_id": user, "valid": true })),
                &user,
            ));
        }
    }
    s.m.gets
        .get_or_create(&CacheGet {
            cache: CACHE,
            result: "miss",
        })
        .inc();
    let user = match st.access.get(token) {
        Some(t) if t.expires > Instant::now() => t.user.clone(),
        Some(_) => {
            st.access.remove(token);
            st.cache.remove(token);
            return Err(invalid());
        }
        None => return Err(invalid()),
    };
    if !st.cache.contains_key(token) {
        st.cache.insert(token.to_owned(), user.clone());
        st.cache_order.push_back(token.to_owned());
        s.m.puts.get_or_create(&CacheName { cache: CACHE }).inc();
        while st.cache.len() > CACHE_CAPACITY {
            let Some(old) = st.cache_order.pop_front() else {
                break;
            };
            if st.cache.remove(&old).is_some() {
                s.m.evictions
                    .get_or_create(&CacheName { cache: CACHE })
                    .inc();
            }
        }
    }
    s.m.size
        .get_or_create(&CacheName { cache: CACHE })
        .set(st.cache.len() as i64);
    Ok(with_user(
        Json(json!({ "user_id": user, "valid": true })),
        &user,
    ))
}

#[derive(Deserialize)]
struct RefreshReq {
    refresh_token: String,
}

async fn refresh(State(s): St, JsonBody(req): JsonBody<RefreshReq>) -> Result<Response, ApiError> {
    if req.refresh_token.is_empty() || req.refresh_token.len() > 256 {
        return Err(ApiError::bad_request("refresh_token is required")
            .with_exception("MethodArgumentNotValidException"));
    }
    let user = {
        let mut st = s.store.lock();
        match st.refresh.remove(&req.refresh_token) {
            Some(t) if t.expires > Instant::now() => t.user,
            _ => {
                return Err(ApiError::unauthorized("invalid or expired refresh token")
                    .with_exception("InvalidTokenException"));
            }
        }
    };
    let (access, refresh) = s.issue_pair(&user);
    Ok(token_response(&access, &refresh, &user))
}
