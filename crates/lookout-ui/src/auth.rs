//! Passwords (argon2id), session and API tokens (random, stored as SHA-256), login throttling,
//! and resolving a request's principal from its session cookie, Basic or Bearer credentials.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::http::HeaderMap;
use base64::Engine as _;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::db::{Db, Role, User};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "lookout_session";
/// Sessions last this long (seconds).
pub const SESSION_TTL: i64 = 30 * 24 * 3600;

pub fn hash_password(password: &str) -> Result<String, Error> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| Error::Internal(format!("random: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::Internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("hashing: {e}")))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A fresh random token (URL-safe base64 of 32 random bytes) with a prefix.
pub fn new_token(prefix: &str) -> Result<String, Error> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| Error::Internal(format!("random: {e}")))?;
    Ok(format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    ))
}

/// Tokens are stored hashed, so a stolen database does not grant access.
pub fn token_hash(token: &str) -> String {
    let d = Sha256::digest(token.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Who is making a request.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The user (None for API tokens).
    pub user: Option<User>,
    pub role: Role,
    /// The session token hash when authenticated by cookie.
    pub session: Option<String>,
    /// Display name (user login or token name).
    pub name: String,
}

impl Principal {
    /// A UI session whose default password must still be changed.
    pub fn must_change_password(&self) -> bool {
        self.session.is_some() && self.user.as_ref().is_some_and(|u| u.must_change_password)
    }
}

/// Failed logins per login name and per client address within a window; beyond the limit,
/// further attempts are refused until the window passes.
pub struct Throttle {
    window: Duration,
    limit: u32,
    failures: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Throttle {
    pub fn new(limit: u32, window: Duration) -> Throttle {
        Throttle {
            window,
            limit,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether this key is currently blocked.
    pub fn blocked(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut f = self.failures.lock();
        f.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        f.get(key).is_some_and(|(_, n)| *n >= self.limit)
    }

    pub fn fail(&self, key: &str) {
        let now = Instant::now();
        let mut f = self.failures.lock();
        let e = f.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(e.0) >= self.window {
            *e = (now, 0);
        }
        e.1 += 1;
    }

    pub fn clear(&self, key: &str) {
        self.failures.lock().remove(key);
    }
}

/// Reads a cookie from the request headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Resolves the principal: session cookie, then `Authorization: Bearer <token>`, then Basic.
pub fn authenticate(
    db: &Db,
    throttle: &Throttle,
    headers: &HeaderMap,
) -> Result<Option<Principal>, Error> {
    if let Some(auth) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, rest) = auth.split_once(' ').unwrap_or((auth, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            return Ok(db
                .token_role(&token_hash(rest.trim()))?
                .map(|(_, name, role)| Principal {
                    user: None,
                    role,
                    session: None,
                    name,
                }));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or(Error::Unauthorized("malformed basic credentials".into()))?;
            let (login, password) = decoded
                .split_once(':')
                .ok_or(Error::Unauthorized("malformed basic credentials".into()))?;
            // A basic-auth password may also be an API token, as Grafana accepts.
            if login == "api_key"
                && let Some((_, name, role)) = db.token_role(&token_hash(password))?
            {
                return Ok(Some(Principal {
                    user: None,
                    role,
                    session: None,
                    name,
                }));
            }
            if throttle.blocked(login) {
                return Err(Error::TooManyAttempts);
            }
            return match db.user_by_login(login)? {
                Some(u) if verify_password(password, &u.password_hash) => {
                    throttle.clear(login);
                    Ok(Some(Principal {
                        role: u.role,
                        name: u.login.clone(),
                        user: Some(u),
                        session: None,
                    }))
                }
                _ => {
                    throttle.fail(login);
                    Err(Error::Unauthorized("invalid username or password".into()))
                }
            };
        }
    }
    if let Some(tok) = cookie(headers, SESSION_COOKIE) {
        let h = token_hash(tok);
        if let Some(u) = db.session_user(&h)? {
            return Ok(Some(Principal {
                role: u.role,
                name: u.login.clone(),
                user: Some(u),
                session: Some(h),
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("s3cret ", &h));
        assert!(!verify_password("s3cret", "not a hash"));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = new_token("glsa_").unwrap();
        let b = new_token("glsa_").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("glsa_") && a.len() > 40);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), token_hash(&b));
    }

    #[test]
    fn throttle_blocks_after_limit() {
        let t = Throttle::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(!t.blocked("admin"));
            t.fail("admin");
        }
        assert!(t.blocked("admin"));
        assert!(!t.blocked("other"));
        t.clear("admin");
        assert!(!t.blocked("admin"));
    }

    #[test]
    fn cookie_parsing() {
        let mut h = HeaderMap::new();
        h.insert("cookie", "a=1; lookout_session=xyz; b=2".parse().unwrap());
        assert_eq!(cookie(&h, "lookout_session"), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
