//! Supervised programs: runs a program in the foreground (own process group, optionally as
//! another user), feeds its stdout/stderr to a [`ProcessSources`] so its lines go through the
//! agent like any other log source, restarts it with exponential backoff when it exits, and
//! stops it with its stop signal, then `SIGKILL` after a grace period.
//!
//! The child is in its own process group, so a Ctrl-C in the terminal reaches only the
//! supervisor, which then stops the child in order. If the supervisor itself is killed with
//! `SIGKILL` the child survives; its PID is in [`ProgramSpec::pid_file`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::process::{ProcessSources, ProcessSpec};

/// Stop signals, for [`ProgramSpec::stop_signal`].
pub const SIGTERM: i32 = libc::SIGTERM;
/// PostgreSQL's "fast shutdown" (what `pg_ctl stop` sends).
pub const SIGINT: i32 = libc::SIGINT;

/// A program has run "long enough" after this: the restart backoff starts again from its
/// minimum.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// What to run and how.
#[derive(Debug, Clone)]
pub struct ProgramSpec {
    /// Name in logs and status.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub current_dir: Option<PathBuf>,
    /// Run as this uid and gid (supplementary groups dropped); needs root.
    pub user: Option<(u32, u32)>,
    /// The signal that asks the program to stop (`libc::SIGTERM` for most).
    pub stop_signal: i32,
    /// How long to wait after the stop signal before `SIGKILL`.
    pub stop_timeout: Duration,
    /// Restart delay after an exit: doubles from `min_backoff` up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Where stdout and stderr go; `None` discards them.
    pub output: Option<(ProcessSources, ProcessSpec)>,
    /// A file that holds the running child's PID (removed once it is stopped).
    pub pid_file: Option<PathBuf>,
}

impl ProgramSpec {
    /// A spec with the usual defaults: SIGTERM, 10 s grace, backoff 1 s → 30 s.
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>) -> ProgramSpec {
        ProgramSpec {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            current_dir: None,
            user: None,
            stop_signal: libc::SIGTERM,
            stop_timeout: Duration::from_secs(10),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            output: None,
            pid_file: None,
        }
    }
}

/// The supervisor's view of a program.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SupervisedStatus {
    pub name: String,
    /// The running child's PID.
    pub pid: Option<u32>,
    /// How many times the program was started.
    pub starts: u64,
    /// How the previous run ended (exit status or spawn error).
    pub last_exit: Option<String>,
}

/// A program under supervision.
#[derive(Debug)]
pub struct Supervised {
    status: watch::Receiver<SupervisedStatus>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Supervised {
    /// Starts the program now and keeps it running until [`Supervised::stop`].
    pub fn start(spec: ProgramSpec) -> Supervised {
        let (status_tx, status) = watch::channel(SupervisedStatus {
            name: spec.name.clone(),
            ..Default::default()
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(spec, status_tx, stop_rx));
        Supervised { status, stop, task }
    }

    pub fn status(&self) -> SupervisedStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every start and exit.
    pub fn watch(&self) -> watch::Receiver<SupervisedStatus> {
        self.status.clone()
    }

    /// Stops the program (stop signal, grace period, `SIGKILL`) and the supervision.
    pub async fn stop(self) -> SupervisedStatus {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            warn!(error = %e, "supervisor task failed");
        }
        self.status.borrow().clone()
    }
}

fn command(spec: &ProgramSpec) -> Command {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .process_group(0);
    if spec.output.is_some() {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    } else {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    if let Some(dir) = &spec.current_dir {
        cmd.current_dir(dir);
    }
    if let Some((uid, gid)) = spec.user {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

async fn supervise(
    spec: ProgramSpec,
    status: watch::Sender<SupervisedStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = spec.min_backoff;
    loop {
        if *stop.borrow() {
            break;
        }
        let mut started = None;
        match command(&spec).spawn() {
            Err(e) => {
                warn!(process = %spec.name, program = %spec.program.display(), error = %e, "cannot start supervised program");
                status.send_modify(|s| s.last_exit = Some(format!("spawn failed: {e}")));
            }
            Ok(mut child) => {
                let pid = child.id();
                started = Some(Instant::now());
                status.send_modify(|s| {
                    s.pid = pid;
                    s.starts += 1;
                });
                if let (Some(path), Some(pid)) = (&spec.pid_file, pid)
                    && let Err(e) = std::fs::write(path, format!("{pid}\n"))
                {
                    warn!(path = %path.display(), error = %e, "cannot write the pid file");
                }
                info!(process = %spec.name, pid, "supervised program started");
                if let Some((sources, pspec)) = &spec.output
                    && let Err(e) =
                        sources.attach(pspec, pid, child.stdout.take(), child.stderr.take())
                {
                    warn!(process = %spec.name, error = %e, "its output is not collected");
                }
                let exit = tokio::select! {
                    r = child.wait() => Some(r),
                    _ = stopped(&mut stop) => None,
                };
                match exit {
                    Some(r) => {
                        let how = match r {
                            Ok(st) => st.to_string(),
                            Err(e) => format!("wait failed: {e}"),
                        };
                        status.send_modify(|s| {
                            s.pid = None;
                            s.last_exit = Some(how.clone());
                        });
                        if let Some(path) = &spec.pid_file {
                            let _ = std::fs::remove_file(path);
                        }
                        if started.is_some_and(|t| t.elapsed() >= STABLE_AFTER) {
                            backoff = spec.min_backoff;
                        }
                        warn!(process = %spec.name, pid, exit = %how, restart_in = ?backoff, "supervised program exited; restarting");
                    }
                    None => {
                        let how = terminate(&spec, &mut child).await;
                        status.send_modify(|s| {
                            s.pid = None;
                            s.last_exit = Some(how.clone());
                        });
                        if let Some(path) = &spec.pid_file {
                            let _ = std::fs::remove_file(path);
                        }
                        info!(process = %spec.name, pid, exit = %how, "supervised program stopped");
                        break;
                    }
                }
            }
        }
        if started.is_none() {
            warn!(process = %spec.name, retry_in = ?backoff, "retrying the start");
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped(&mut stop) => break,
        }
        backoff = (backoff * 2).min(spec.max_backoff.max(spec.min_backoff));
    }
}

/// The stop signal, then `SIGKILL` after the grace period; returns how the child ended.
async fn terminate(spec: &ProgramSpec, child: &mut Child) -> String {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) with a PID this supervisor spawned and has not reaped yet (the
        // `Child` is still alive), so it cannot name an unrelated process.
        let rc = unsafe { libc::kill(pid, spec.stop_signal) };
        if rc != 0 {
            warn!(process = %spec.name, pid, error = %std::io::Error::last_os_error(), "sending the stop signal failed");
        }
    }
    match tokio::time::timeout(spec.stop_timeout, child.wait()).await {
        Ok(Ok(st)) => st.to_string(),
        Ok(Err(e)) => format!("wait failed: {e}"),
        Err(_) => {
            warn!(process = %spec.name, grace = ?spec.stop_timeout, "did not stop in time; killing it");
            let _ = child.start_kill();
            match child.wait().await {
                Ok(st) => format!("{st} (killed after {:?})", spec.stop_timeout),
                Err(e) => format!("wait failed: {e}"),
            }
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
