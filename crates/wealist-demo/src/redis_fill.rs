//! Driving the Redis memory alert: write a given amount of data into a local Redis under
//! `wealist-demo:fill:*` keys and delete it again. Only used when the demo owns that Redis
//! (or `--redis-fill` allows it). Speaks plain RESP over TCP; `redis://[:password@]host:port`
//! or `host:port` addresses, no TLS.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::DemoError;

const KEY_PREFIX: &str = "wealist-demo:fill:";
const VALUE_SIZE: usize = 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed Redis address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisAddr {
    pub host_port: String,
    pub password: Option<String>,
    pub db: u32,
}

impl RedisAddr {
    pub fn parse(s: &str) -> Result<RedisAddr, DemoError> {
        let bad = |why: &str| DemoError::Redis(format!("address {s:?}: {why}"));
        let rest = match s.trim().split_once("://") {
            Some(("redis", rest)) => rest,
            Some((scheme, _)) => return Err(bad(&format!("scheme {scheme} is not supported"))),
            None => s.trim(),
        };
        let (auth, hostpart) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let password = auth
            .map(|a| a.split_once(':').map(|(_, p)| p).unwrap_or(a).to_owned())
            .filter(|p| !p.is_empty());
        let (hp, db) = match hostpart.split_once('/') {
            Some((hp, db)) if !db.is_empty() => (
                hp,
                db.parse::<u32>()
                    .map_err(|_| bad("database must be a number"))?,
            ),
            Some((hp, _)) => (hp, 0),
            None => (hostpart, 0),
        };
        if hp.is_empty() {
            return Err(bad("no host"));
        }
        let host_port = if hp
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            hp.to_owned()
        } else {
            format!("{hp}:6379")
        };
        Ok(RedisAddr {
            host_port,
            password,
            db,
        })
    }
}

/// One RESP connection.
struct Conn {
    stream: BufReader<TcpStream>,
}

#[derive(Debug, PartialEq)]
enum Reply {
    Simple(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
}

impl Conn {
    async fn open(addr: &RedisAddr) -> Result<Conn, DemoError> {
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(&addr.host_port))
            .await
            .map_err(|_| DemoError::Redis(format!("connecting to {}: timed out", addr.host_port)))?
            .map_err(|e| DemoError::Redis(format!("connecting to {}: {e}", addr.host_port)))?;
        let mut c = Conn {
            stream: BufReader::new(stream),
        };
        if let Some(pw) = &addr.password {
            c.command(&[b"AUTH", pw.as_bytes()]).await?;
        }
        if addr.db != 0 {
            c.command(&[b"SELECT", addr.db.to_string().as_bytes()])
                .await?;
        }
        Ok(c)
    }

    async fn command(&mut self, args: &[&[u8]]) -> Result<Reply, DemoError> {
        let mut buf = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a);
            buf.extend_from_slice(b"\r\n");
        }
        tokio::time::timeout(TIMEOUT, async {
            self.stream
                .get_mut()
                .write_all(&buf)
                .await
                .map_err(|e| DemoError::Redis(e.to_string()))?;
            self.read_reply().await
        })
        .await
        .map_err(|_| DemoError::Redis("command timed out".into()))?
    }

    async fn read_reply(&mut self) -> Result<Reply, DemoError> {
        let io = |e: std::io::Error| DemoError::Redis(e.to_string());
        let mut line = String::new();
        if self.stream.read_line(&mut line).await.map_err(io)? == 0 {
            return Err(DemoError::Redis("connection closed".into()));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let (tag, body) = line.split_at(line.len().min(1));
        match tag {
            "+" => Ok(Reply::Simple(body.to_owned())),
            "-" => Err(DemoError::Redis(body.to_owned())),
            ":" => body
                .parse()
                .map(Reply::Int)
                .map_err(|_| DemoError::Redis(format!("bad integer reply {body:?}"))),
            "$" => {
                let len: i64 = body
                    .parse()
                    .map_err(|_| DemoError::Redis(format!("bad bulk length {body:?}")))?;
                if len < 0 {
                    return Ok(Reply::Bulk(None));
                }
                if len > 64 * 1024 * 1024 {
                    return Err(DemoError::Redis("bulk reply too large".into()));
                }
                let mut data = vec![0u8; len as usize + 2];
                self.stream.read_exact(&mut data).await.map_err(io)?;
                data.truncate(len as usize);
                Ok(Reply::Bulk(Some(data)))
            }
            _ => Err(DemoError::Redis(format!("unsupported reply {line:?}"))),
        }
    }
}

/// `true` when a Redis answers `PING` at `addr`.
pub async fn ping(addr: &str) -> bool {
    let Ok(a) = RedisAddr::parse(addr) else {
        return false;
    };
    match Conn::open(&a).await {
        Ok(mut c) => matches!(c.command(&[b"PING"]).await, Ok(Reply::Simple(s)) if s == "PONG"),
        Err(_) => false,
    }
}

/// Fills and empties a Redis with throw-away keys.
#[derive(Clone, Debug)]
pub struct RedisFiller {
    addr: RedisAddr,
}

impl RedisFiller {
    pub fn new(addr: &str) -> Result<Self, DemoError> {
        Ok(RedisFiller {
            addr: RedisAddr::parse(addr)?,
        })
    }

    /// Writes `mib` keys of 1 MiB each (deterministic, incompressible-looking bytes).
    pub async fn fill(&self, mib: u64) -> Result<(), DemoError> {
        let mut c = Conn::open(&self.addr).await?;
        let mut value = vec![0u8; VALUE_SIZE];
        let mut rng = crate::rng::Rng::new(mib);
        for i in 0..mib {
            for chunk in value.chunks_mut(8) {
                let x = rng.next_u64().to_le_bytes();
                chunk.copy_from_slice(&x[..chunk.len()]);
            }
            let key = format!("{KEY_PREFIX}{i}");
            c.command(&[b"SET", key.as_bytes(), &value]).await?;
        }
        Ok(())
    }

    /// Deletes the keys written by [`fill`](Self::fill) (up to `mib` of them).
    pub async fn clear(&self, mib: u64) -> Result<u64, DemoError> {
        let mut c = Conn::open(&self.addr).await?;
        let mut deleted = 0;
        for i in 0..mib {
            let key = format!("{KEY_PREFIX}{i}");
            if let Reply::Int(n) = c.command(&[b"DEL", key.as_bytes()]).await? {
                deleted += n.max(0) as u64;
            }
        }
        Ok(deleted)
    }

    /// `used_memory` from `INFO memory`.
    pub async fn used_memory(&self) -> Result<u64, DemoError> {
        let mut c = Conn::open(&self.addr).await?;
        match c.command(&[b"INFO", b"memory"]).await? {
            Reply::Bulk(Some(text)) => String::from_utf8_lossy(&text)
                .lines()
                .find_map(|l| l.strip_prefix("used_memory:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| DemoError::Redis("INFO memory lacks used_memory".into())),
            other => Err(DemoError::Redis(format!("unexpected INFO reply {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let a = RedisAddr::parse("redis://127.0.0.1:6379").expect("parse");
        assert_eq!(a.host_port, "127.0.0.1:6379");
        assert_eq!(a.password, None);
        let a = RedisAddr::parse("redis://:secret@localhost:7000/2").expect("parse");
        assert_eq!(
            a,
            RedisAddr {
                host_port: "localhost:7000".into(),
                password: Some("secret".into()),
                db: 2
            }
        );
        assert_eq!(
            RedisAddr::parse("cache").expect("parse").host_port,
            "cache:6379"
        );
        assert!(RedisAddr::parse("rediss://x:1").is_err());
        assert!(RedisAddr::parse("redis://x:1/db").is_err());
        assert!(RedisAddr::parse("redis://").is_err());
    }
}
