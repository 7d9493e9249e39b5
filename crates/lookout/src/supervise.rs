//! `lookout demo` runs Redis and PostgreSQL itself when they are installed and nothing
//! answers on the configured addresses (`--redis-addr`, `--postgres-dsn`, both loopback):
//!
//! - `redis-server` bound to 127.0.0.1 without persistence, logging to stdout;
//! - PostgreSQL initialised once under `<data-dir>/demo-db/pg/data` (trust auth, the DSN's
//!   user as superuser) and run in the foreground (`postgres -D ... -p <port> -c
//!   listen_addresses=127.0.0.1 -k <dir>`), logging to stderr; as root it runs as the
//!   `postgres` user, its directories chowned to it.
//!
//! Both are restarted with backoff when they exit and stopped (Redis with SIGTERM,
//! PostgreSQL with SIGINT, its fast shutdown; SIGKILL after 10 s) when the demo stops. Their
//! stdout/stderr go through the log agent's process source into the Loki API with
//! `compose_service="redis"|"postgres"`. PIDs are in `<data-dir>/demo-db/{redis,postgres}.pid`,
//! the log, and `GET /databases` on the control endpoint. `--no-db-supervision` turns it off.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use clap::Args;
use parking_lot::Mutex;
use tokio::sync::watch;
use tracing::{info, warn};

use lookout_agent::supervise::{ProgramSpec, SIGINT, Supervised, SupervisedStatus};
use lookout_agent::{Agent, AgentConfig, ProcessSources, ProcessSpec};

use crate::cli::Listen;

/// Demo flags for the supervised databases.
#[derive(Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// Do not start Redis/PostgreSQL even when they are installed and nothing answers.
    #[arg(long)]
    pub no_db_supervision: bool,
}

/// The scrape job the databases' output runs through (relabeling like the seed's docker job).
const JOB: &str = "demo-databases";

/// How long a started database may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

type Programs = Arc<Mutex<Vec<(&'static str, Supervised)>>>;

/// The supervised databases and the agent collecting their output.
pub struct DemoDatabases {
    programs: Programs,
    /// Databases this demo runs (PostgreSQL may still be initialising).
    planned: Vec<&'static str>,
    /// PostgreSQL's start-up (initdb, then start) runs in the background.
    pending: Option<tokio::task::JoinHandle<()>>,
    stopping: watch::Sender<bool>,
    agent: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
    router: Option<Router>,
}

impl DemoDatabases {
    fn none() -> DemoDatabases {
        DemoDatabases {
            programs: Arc::new(Mutex::new(Vec::new())),
            planned: Vec::new(),
            pending: None,
            stopping: watch::channel(false).0,
            agent: None,
            router: None,
        }
    }

    /// True when the demo runs this database (`"redis"`, `"postgres"`), answering or not yet:
    /// its exporter should start regardless.
    pub fn supervises(&self, name: &str) -> bool {
        self.planned.contains(&name)
    }

    /// `GET /databases` (name, PID, starts, last exit) and the collecting agent's
    /// `/databases/agent/{metrics,api/v1/targets,targets}`.
    pub fn router(&self) -> Router {
        let programs = self.programs.clone();
        let r = Router::new().route(
            "/databases",
            get(move || {
                let list: Vec<SupervisedStatus> =
                    programs.lock().iter().map(|(_, s)| s.status()).collect();
                async move { axum::Json(list) }
            }),
        );
        match &self.router {
            Some(agent) => r.nest("/databases/agent", agent.clone()),
            None => r,
        }
    }

    /// Stops the databases (their last lines are collected), then the agent.
    pub async fn stop(self) {
        let _ = self.stopping.send(true);
        if let Some(task) = self.pending
            && tokio::time::timeout(READY_TIMEOUT, task).await.is_err()
        {
            warn!("PostgreSQL's start-up did not finish in time");
        }
        let programs = std::mem::take(&mut *self.programs.lock());
        for (name, p) in programs {
            let st = p.stop().await;
            info!(
                database = name,
                exit = st.last_exit.as_deref().unwrap_or(""),
                "supervised database stopped"
            );
        }
        if let Some((tx, task)) = self.agent {
            let _ = tx.send(true);
            if tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .is_err()
            {
                warn!("the database log collector did not stop in time");
            }
        }
    }
}

/// Starts what is missing: Redis is waited for (it answers within milliseconds); PostgreSQL
/// (initdb on first use takes seconds) starts in the background, so the demo is not delayed.
/// Never fails the demo: problems are warnings, and the exporter targets stay down.
pub async fn start(
    args: &DatabaseArgs,
    redis_addr: &str,
    postgres_dsn: &str,
    data_dir: &Path,
    loki: &Listen,
    project: &str,
) -> DemoDatabases {
    if args.no_db_supervision {
        info!("database supervision is off (--no-db-supervision)");
        return DemoDatabases::none();
    }
    let redis = match plan_redis(redis_addr, data_dir).await {
        Ok(p) => p,
        Err(e) => {
            warn!("not starting Redis: {e:#}");
            None
        }
    };
    let postgres = match plan_postgres(postgres_dsn, data_dir).await {
        Ok(p) => p,
        Err(e) => {
            warn!("not starting PostgreSQL: {e:#}");
            None
        }
    };
    if redis.is_none() && postgres.is_none() {
        return DemoDatabases::none();
    }
    let mut out = DemoDatabases::none();
    let sources = match collector(data_dir, loki) {
        Ok(Some((agent, router, tx, task))) => {
            out.agent = Some((tx, task));
            out.router = Some(router);
            Some(agent)
        }
        Ok(None) => None,
        Err(e) => {
            warn!("the databases' logs are not collected: {e:#}");
            None
        }
    };
    let labels = |service: &str| ProcessSpec {
        name: service.to_string(),
        job: JOB.into(),
        labels: BTreeMap::from([
            (
                "__meta_docker_container_name".into(),
                format!("/{project}-{service}-1"),
            ),
            (
                "__meta_docker_container_label_com_docker_compose_service".into(),
                service.to_string(),
            ),
            (
                "__meta_docker_container_label_com_docker_compose_project".into(),
                project.to_string(),
            ),
            ("job".into(), JOB.into()),
        ]),
    };
    if let Some(mut p) = redis {
        p.spec.output = sources.clone().map(|s| (s, labels("redis")));
        let s = Supervised::start(p.spec);
        let addr = p.addr.clone();
        wait_ready("Redis", &mut s.watch(), || {
            wealist_demo::redis_fill::ping(&addr)
        })
        .await;
        out.programs.lock().push(("redis", s));
        out.planned.push("redis");
    }
    if let Some(mut p) = postgres {
        p.spec.output = sources.clone().map(|s| (s, labels("postgres")));
        out.planned.push("postgres");
        let programs = out.programs.clone();
        let mut stopping = out.stopping.subscribe();
        out.pending = Some(tokio::spawn(async move {
            if let Some(prepare) = p.prepare.take() {
                match tokio::task::spawn_blocking(prepare).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        warn!("not starting PostgreSQL: {e:#}");
                        return;
                    }
                    Err(e) => {
                        warn!(error = %e, "not starting PostgreSQL: initdb task failed");
                        return;
                    }
                }
            }
            if *stopping.borrow() {
                return;
            }
            let s = Supervised::start(p.spec);
            let dsn = p.addr.clone();
            let mut w = s.watch();
            programs.lock().push(("postgres", s));
            tokio::select! {
                _ = wait_ready("PostgreSQL", &mut w, || postgres_answers(dsn.clone())) => {}
                _ = stopped(&mut stopping) => {}
            }
        }));
    }
    out
}

type Prepare = Box<dyn FnOnce() -> anyhow::Result<()> + Send>;

struct Plan {
    spec: ProgramSpec,
    /// What readiness is checked against (Redis address or PostgreSQL DSN).
    addr: String,
    /// Slow one-time preparation before the first start (initdb).
    prepare: Option<Prepare>,
}

async fn wait_ready<F, Fut>(what: &str, s: &mut watch::Receiver<SupervisedStatus>, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < READY_TIMEOUT {
        if check().await {
            info!(
                pid = s.borrow().pid,
                after = ?started.elapsed(),
                "{what} (supervised) answers"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let st = s.borrow().clone();
    warn!(
        pid = st.pid,
        last_exit = st.last_exit.as_deref().unwrap_or(""),
        "{what} (supervised) did not answer within {READY_TIMEOUT:?}; its exporter target stays down until the demo restarts"
    );
}

async fn postgres_answers(dsn: String) -> bool {
    let opts = lookout_exporter_postgres::PgOptions {
        dsn,
        timeout: Duration::from_secs(2),
        ..Default::default()
    };
    match lookout_exporter_postgres::PgCollector::new(opts) {
        Ok(c) => c.scrape().await.up,
        Err(_) => false,
    }
}

/// True when something accepts TCP connections there.
async fn answers(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(addr)
        )
        .await,
        Ok(Ok(_))
    )
}

/// A loopback `host:port` (`localhost` included); `None` for anything else.
fn loopback(host: &str, port: u16) -> Option<SocketAddr> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = if host == "localhost" {
        std::net::Ipv4Addr::LOCALHOST.into()
    } else {
        host.parse().ok()?
    };
    ip.is_loopback().then_some(SocketAddr::new(ip, port))
}

/// Finds `name` on PATH, then in `extra` directories (newest first).
fn find_program(name: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().cloned())
        .map(|d| d.join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `/usr/lib/postgresql/<version>/bin`, newest version first.
fn postgres_bin_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let v = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
                    Some((v, e.path().join("bin")))
                })
                .collect()
        })
        .unwrap_or_default();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    dirs.into_iter().map(|(_, d)| d).collect()
}

async fn plan_redis(redis_addr: &str, data_dir: &Path) -> anyhow::Result<Option<Plan>> {
    let parsed = wealist_demo::redis_fill::RedisAddr::parse(redis_addr)?;
    let (host, port) = parsed
        .host_port
        .rsplit_once(':')
        .context("no port in the Redis address")?;
    let port: u16 = port.parse().context("Redis port")?;
    let Some(sock) = loopback(host, port) else {
        info!(redis = redis_addr, "Redis is not local: not supervised");
        return Ok(None);
    };
    if answers(sock).await {
        info!(%sock, "something answers on the Redis address: using it, not starting one");
        return Ok(None);
    }
    let Some(program) = find_program("redis-server", &[]) else {
        warn!(
            "redis-server is not installed: Redis is not started and the redis-exporter target stays down (apt-get install redis-server, or start one yourself)"
        );
        return Ok(None);
    };
    let dir = data_dir.join("demo-db/redis");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut spec = ProgramSpec::new("redis", program);
    spec.args = [
        "--port",
        &port.to_string(),
        "--bind",
        &sock.ip().to_string(),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--logfile",
        "",
        "--dir",
        &dir.display().to_string(),
    ]
    .iter()
    .map(Into::into)
    .collect();
    spec.current_dir = Some(dir);
    spec.pid_file = Some(data_dir.join("demo-db/redis.pid"));
    Ok(Some(Plan {
        spec,
        addr: parsed.host_port,
        prepare: None,
    }))
}

/// user, host, port of a `postgresql://` DSN (key=value DSNs are not supervised).
fn parse_dsn(dsn: &str) -> Option<(String, String, u16)> {
    let rest = dsn
        .strip_prefix("postgresql://")
        .or_else(|| dsn.strip_prefix("postgres://"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (u.split(':').next().unwrap_or(u), h),
        None => ("", authority),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => 5432,
        };
        (format!("[{h}]"), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (hostport.to_string(), 5432),
        }
    };
    let user = if user.is_empty() { "postgres" } else { user };
    Some((user.to_string(), host, port))
}

/// uid and gid of a user from /etc/passwd.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        let _pw = f.next()?;
        Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
    })
}

/// The first ancestor of `dir` that `uid`/`gid` cannot enter, if any.
fn unreachable_ancestor(dir: &Path, uid: u32, gid: u32) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    dir.ancestors().skip(1).find_map(|a| {
        let m = a.metadata().ok()?;
        let mode = m.mode();
        let ok = if m.uid() == uid {
            mode & 0o100 != 0
        } else if m.gid() == gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        (!ok).then(|| a.to_path_buf())
    })
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective uid.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

async fn plan_postgres(dsn: &str, data_dir: &Path) -> anyhow::Result<Option<Plan>> {
    let Some((user, host, port)) = parse_dsn(dsn) else {
        info!("the PostgreSQL DSN is not a postgresql:// URL: not supervised");
        return Ok(None);
    };
    let Some(sock) = loopback(&host, port) else {
        info!(host, "PostgreSQL is not local: not supervised");
        return Ok(None);
    };
    if answers(sock).await {
        info!(%sock, "something answers on the PostgreSQL address: using it, not starting one");
        return Ok(None);
    }
    let bins = postgres_bin_dirs();
    let (Some(postgres), Some(initdb)) = (
        find_program("postgres", &bins),
        find_program("initdb", &bins),
    ) else {
        warn!(
            "PostgreSQL (postgres, initdb) is not installed: it is not started and the postgres-exporter target stays down (apt-get install postgresql, or start one yourself)"
        );
        return Ok(None);
    };
    let base = data_dir.join("demo-db/pg");
    let data = base.join("data");
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let run_as = if is_root() {
        let (uid, gid) = lookup_user("postgres").context(
            "running as root, and PostgreSQL refuses root: there is no `postgres` user to run it as",
        )?;
        if let Some(a) = unreachable_ancestor(&base, uid, gid) {
            anyhow::bail!(
                "the postgres user cannot enter {} (on the way to {}): use a --data-dir it can reach, or `chmod o+x` that directory",
                a.display(),
                base.display()
            );
        }
        for d in [&base, &data] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            std::os::unix::fs::chown(d, Some(uid), Some(gid))
                .with_context(|| format!("chown postgres {}", d.display()))?;
        }
        Some((uid, gid))
    } else {
        None
    };
    let prepare: Option<Prepare> = if data.join("PG_VERSION").is_file() {
        None
    } else {
        let (data, base) = (data.clone(), base.clone());
        Some(Box::new(move || {
            initdb_cluster(&initdb, &data, &base, &user, run_as)
        }))
    };
    let mut spec = ProgramSpec::new("postgres", postgres);
    spec.args = [
        "-D".to_string(),
        data.display().to_string(),
        "-p".into(),
        port.to_string(),
        "-c".into(),
        format!("listen_addresses={}", sock.ip()),
        "-k".into(),
        base.display().to_string(),
        "-c".into(),
        "logging_collector=off".into(),
        "-c".into(),
        "log_destination=stderr".into(),
    ]
    .into_iter()
    .map(Into::into)
    .collect();
    spec.current_dir = Some(base);
    spec.user = run_as;
    spec.stop_signal = SIGINT;
    spec.pid_file = Some(data_dir.join("demo-db/postgres.pid"));
    Ok(Some(Plan {
        spec,
        addr: dsn.to_string(),
        prepare,
    }))
}

/// `initdb` as the user PostgreSQL runs as: trust auth, `user` as superuser.
fn initdb_cluster(
    initdb: &Path,
    data: &Path,
    base: &Path,
    user: &str,
    run_as: Option<(u32, u32)>,
) -> anyhow::Result<()> {
    info!(dir = %data.display(), "initialising a PostgreSQL cluster for the demo");
    let started = Instant::now();
    let mut cmd = std::process::Command::new(initdb);
    cmd.arg("-D")
        .arg(data)
        .args(["-U", user, "-A", "trust", "-E", "UTF8", "--no-instructions"])
        .current_dir(base)
        .stdin(std::process::Stdio::null());
    if let Some((uid, gid)) = run_as {
        use std::os::unix::process::CommandExt;
        cmd.uid(uid).gid(gid);
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {}", initdb.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        anyhow::bail!(
            "initdb failed ({}): {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        );
    }
    info!(after = ?started.elapsed(), "PostgreSQL cluster initialised");
    Ok(())
}

type Collector = (
    ProcessSources,
    Router,
    watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
);

/// An agent with one job for the databases, pushing to the demo's Loki API (which comes up a
/// moment later: the first pushes are retried). `None` when the Loki API is off.
fn collector(data_dir: &Path, loki: &Listen) -> anyhow::Result<Option<Collector>> {
    let Listen::Addr(loki) = loki else {
        info!("the Loki API is off: the databases' output is discarded");
        return Ok(None);
    };
    let positions = data_dir.join("demo-db/positions.yaml");
    let text = format!(
        "positions:\n  filename: {positions}\nclients:\n  - url: http://{loki}/loki/api/v1/push\n    batchwait: 500ms\n    backoff_config:\n      min_period: 200ms\n      max_period: 5s\n      max_retries: 0\nscrape_configs:\n  - job_name: {JOB}\n    relabel_configs:\n      - source_labels: ['__meta_docker_container_name']\n        regex: '/(.*)'\n        target_label: container\n      - source_labels: ['__meta_docker_container_label_com_docker_compose_service']\n        target_label: compose_service\n      - source_labels: ['__meta_docker_container_label_com_docker_compose_project']\n        target_label: compose_project\n",
        positions = serde_json::to_string(&positions.display().to_string())?,
    );
    let cfg = AgentConfig::parse(&text, &BTreeMap::new())?;
    let agent = Agent::new(cfg, None)?;
    let sources = agent.processes();
    let router = agent.router();
    let (tx, rx) = watch::channel(false);
    let mut wait = rx.clone();
    let loki = *loki;
    let task = tokio::spawn(async move {
        // The Loki API starts after the databases: push once it answers, not into errors.
        let started = Instant::now();
        while !answers(loki).await && started.elapsed() < READY_TIMEOUT * 5 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = stopped(&mut wait) => break,
            }
        }
        if let Err(e) = agent.run(None, rx).await {
            tracing::error!(error = %e, "the database log collector failed");
        }
    });
    Ok(Some((sources, router, tx, task)))
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_parts() {
        assert_eq!(
            parse_dsn("postgresql://postgres@127.0.0.1:5433/postgres?sslmode=disable"),
            Some(("postgres".into(), "127.0.0.1".into(), 5433))
        );
        assert_eq!(
            parse_dsn("postgres://app:secret@localhost/db"),
            Some(("app".into(), "localhost".into(), 5432))
        );
        assert_eq!(
            parse_dsn("postgresql://[::1]:6000/x"),
            Some(("postgres".into(), "[::1]".into(), 6000))
        );
        assert_eq!(
            parse_dsn("postgresql://u@[::1]/x"),
            Some(("u".into(), "[::1]".into(), 5432))
        );
        assert_eq!(parse_dsn("host=127.0.0.1 user=postgres"), None);
    }

    #[test]
    fn only_loopback_is_supervised() {
        assert!(loopback("127.0.0.1", 1).is_some());
        assert!(loopback("localhost", 1).is_some());
        assert!(loopback("[::1]", 1).is_some());
        assert!(loopback("10.0.0.5", 1).is_none());
        assert!(loopback("db.example", 1).is_none());
    }

    #[test]
    fn ancestors_must_be_searchable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let closed = dir.path().join("closed");
        let inner = closed.join("a/b");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // Someone else (uid/gid nobody owns) cannot get through `closed`.
        assert_eq!(
            unreachable_ancestor(&inner, 65_534, 65_534).as_deref(),
            Some(closed.as_path())
        );
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o711)).unwrap();
        assert_eq!(unreachable_ancestor(&inner, 65_534, 65_534), None);
    }
}
