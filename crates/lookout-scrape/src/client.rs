//! The scrape HTTP client: one keep-alive client per scrape pool, Prometheus's request
//! headers, authentication, redirects, timeout, gzip and the body size limit.

use std::io::Read;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lookout_config::{HttpClientConfig, Secret};

use crate::tls::{self, Connector};

/// `User-Agent` sent on scrapes.
pub const USER_AGENT: &str = concat!("Lookout/", env!("CARGO_PKG_VERSION"));

const MAX_REDIRECTS: usize = 10;

/// At most this much of a body's declared length is allocated before its bytes arrive.
const MAX_PREALLOC: usize = 16 << 20;

/// A fetched, decoded scrape body.
pub struct Fetched {
    pub body: Vec<u8>,
    pub content_type: String,
}

/// A scrape failure, worded like Prometheus's (it is shown as the target's last error).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FetchError {
    #[error("Get {url:?}: context deadline exceeded")]
    Timeout { url: String },
    #[error("Get {url:?}: {message}")]
    Transport { url: String, message: String },
    #[error("server returned HTTP status {0}")]
    Status(String),
    #[error("body size limit exceeded")]
    BodySizeLimit,
    #[error("{0}")]
    Config(String),
}

pub struct ScrapeClient {
    client: Client<Connector, Empty<Bytes>>,
    http: HttpClientConfig,
    accept: HeaderValue,
}

impl ScrapeClient {
    pub fn new(http: &HttpClientConfig, accept: &str) -> Result<Self, String> {
        let connector = tls::connector(&http.tls_config)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(2)
            // A fixed 16 KiB read buffer per connection: hyper's adaptive one grows towards
            // 400 KiB on large expositions and keeps that on every idle keep-alive connection
            // (10 MiB of the 40-target scrape race's heap). 64 KiB still cost 2.4-3.8 MB
            // more anonymous memory than 16 KiB in that race (two 240 s pairs), with CPU
            // within the noise: a 160 KB body takes ten reads instead of three.
            .http1_read_buf_exact_size(16 * 1024)
            .build(connector);
        let accept =
            HeaderValue::from_str(accept).map_err(|e| format!("invalid Accept header: {e}"))?;
        Ok(ScrapeClient {
            client,
            http: http.clone(),
            accept,
        })
    }

    /// The `Authorization` header value, reading secret files on every call as Prometheus
    /// does (so rotated credentials are picked up).
    fn authorization(&self) -> Result<Option<HeaderValue>, FetchError> {
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .map_err(|e| {
                    FetchError::Config(format!("unable to read file {}: {e}", p.display()))
                })
        };
        let value = if let Some(b) = &self.http.basic_auth {
            let user = match &b.username_file {
                Some(p) => read(p)?,
                None => b.username.clone(),
            };
            let pass = match (&b.password_file, &b.password) {
                (Some(p), _) => read(p)?,
                (None, Some(Secret(p))) => p.clone(),
                (None, None) => String::new(),
            };
            format!("Basic {}", base64(format!("{user}:{pass}").as_bytes()))
        } else if let Some(a) = &self.http.authorization {
            let cred = match (&a.credentials_file, &a.credentials) {
                (Some(p), _) => read(p)?,
                (None, Some(Secret(c))) => c.clone(),
                (None, None) => String::new(),
            };
            format!("{} {}", a.kind, cred)
        } else {
            return Ok(None);
        };
        HeaderValue::from_str(&value).map(Some).map_err(|_| {
            FetchError::Config("credentials contain characters not allowed in a header".into())
        })
    }

    /// GETs `url` within `timeout`, following redirects when configured, and returns the
    /// decoded body (at most `body_limit` bytes after decompression; 0 = no limit).
    pub async fn fetch(
        &self,
        url: &str,
        timeout: Duration,
        body_limit: u64,
    ) -> Result<Fetched, FetchError> {
        match tokio::time::timeout(timeout, self.fetch_inner(url, timeout, body_limit)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout {
                url: url.to_string(),
            }),
        }
    }

    async fn fetch_inner(
        &self,
        url: &str,
        timeout: Duration,
        body_limit: u64,
    ) -> Result<Fetched, FetchError> {
        let auth = self.authorization()?;
        let transport = |message: String| FetchError::Transport {
            url: url.to_string(),
            message,
        };
        let mut uri: Uri = url
            .parse()
            .map_err(|e| transport(format!("invalid URL: {e}")))?;
        let timeout_header = HeaderValue::from_str(&format!("{}", timeout.as_secs_f64()))
            .map_err(|e| FetchError::Config(e.to_string()))?;
        let mut redirects = 0;
        let resp = loop {
            let mut req = Request::get(uri.clone())
                .header(header::ACCEPT, self.accept.clone())
                .header(header::ACCEPT_ENCODING, "gzip")
                .header(header::USER_AGENT, USER_AGENT)
                .header(
                    "X-Prometheus-Scrape-Timeout-Seconds",
                    timeout_header.clone(),
                )
                .body(Empty::<Bytes>::new())
                .map_err(|e| transport(e.to_string()))?;
            if let Some(a) = &auth {
                req.headers_mut().insert(header::AUTHORIZATION, a.clone());
            }
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| transport(error_chain(&e)))?;
            let status = resp.status();
            if self.http.follow_redirects
                && status.is_redirection()
                && status != StatusCode::NOT_MODIFIED
            {
                let Some(loc) = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                else {
                    break resp;
                };
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(transport("stopped after 10 redirects".into()));
                }
                uri = resolve_location(&uri, loc).map_err(transport)?;
                continue;
            }
            break resp;
        };
        let status = resp.status();
        if status != StatusCode::OK {
            return Err(FetchError::Status(format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )));
        }
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let gzip = resp
            .headers()
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
        let limit = if body_limit == 0 {
            usize::MAX
        } else {
            usize::try_from(body_limit).unwrap_or(usize::MAX)
        };
        // Frames are copied into one buffer as they come, sized by the declared length (within
        // the limit): no list of chunks concatenated at the end.
        let declared = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut raw = Vec::with_capacity(declared.min(limit).min(MAX_PREALLOC));
        let mut stream = Limited::new(resp.into_body(), limit);
        while let Some(frame) = stream.frame().await {
            let frame = frame.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    FetchError::BodySizeLimit
                } else {
                    transport(error_chain(e.as_ref()))
                }
            })?;
            if let Ok(data) = frame.into_data() {
                raw.extend_from_slice(&data);
            }
        }
        let body = if gzip {
            let mut out = Vec::with_capacity(raw.len() * 4);
            let take = if body_limit == 0 {
                u64::MAX
            } else {
                body_limit.saturating_add(1)
            };
            flate2::read::GzDecoder::new(&raw[..])
                .take(take)
                .read_to_end(&mut out)
                .map_err(|e| transport(format!("decompressing gzip body: {e}")))?;
            if body_limit != 0 && out.len() as u64 > body_limit {
                return Err(FetchError::BodySizeLimit);
            }
            out
        } else {
            raw
        };
        Ok(Fetched { body, content_type })
    }
}

fn resolve_location(base: &Uri, loc: &str) -> Result<Uri, String> {
    if loc.starts_with("http://") || loc.starts_with("https://") {
        return loc
            .parse()
            .map_err(|e| format!("invalid redirect location {loc:?}: {e}"));
    }
    let scheme = base.scheme_str().unwrap_or("http");
    let auth = base.authority().map(|a| a.as_str()).unwrap_or("");
    let path = if loc.starts_with('/') {
        loc.to_string()
    } else {
        let cur = base.path();
        let dir = &cur[..cur.rfind('/').map_or(0, |i| i + 1)];
        format!("{dir}{loc}")
    };
    format!("{scheme}://{auth}{path}")
        .parse()
        .map_err(|e| format!("invalid redirect location {loc:?}: {e}"))
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Standard base64 with padding (for basic auth).
pub fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("user:pass", "dXNlcjpwYXNz"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn redirect_locations() {
        let base: Uri = "http://h:1/a/metrics".parse().unwrap();
        assert_eq!(
            resolve_location(&base, "/x").unwrap().to_string(),
            "http://h:1/x"
        );
        assert_eq!(
            resolve_location(&base, "y").unwrap().to_string(),
            "http://h:1/a/y"
        );
        assert_eq!(
            resolve_location(&base, "https://o:2/z")
                .unwrap()
                .to_string(),
            "https://o:2/z"
        );
    }
}
