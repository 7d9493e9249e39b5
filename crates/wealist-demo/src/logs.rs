//! Service logs as a Docker host holds them: one directory per container under
//! `<data-dir>/containers/<id>/`, with `<id>-json.log` in the json-file driver's format
//! (`{"log":"<line>\n","stream":"stdout","time":"<RFC3339Nano>"}`), rotated like
//! `--log-opt max-size/max-file` (`<id>-json.log.1`, `.2`, ...), and `config.v2.json` carrying
//! the container's name and its `com.docker.compose.*` labels, so a log agent discovers the
//! compose service exactly as on a real Docker host.
//!
//! Writes go through a bounded channel to one writer thread per container; when the disk
//! cannot keep up, lines are dropped and counted rather than blocking request handlers.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::json;

use crate::DemoError;
use crate::timefmt::{rfc3339_millis, rfc3339_nano};

/// Which stream a line came from (the json-file `stream` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Rotation settings (Docker's `max-size` and `max-file` log options).
#[derive(Clone, Copy, Debug)]
pub struct LogOptions {
    /// Rotate when the current file reaches this many bytes.
    pub max_size: u64,
    /// Files kept in total, the current one included (at least 1).
    pub max_files: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            max_size: 10 * 1024 * 1024,
            max_files: 3,
        }
    }
}

/// Identity of a simulated container.
#[derive(Clone, Debug)]
pub struct ContainerInfo {
    /// 64 hexadecimal characters, stable for a (project, service) pair.
    pub id: String,
    /// Container name without the leading slash, e.g. `wealist-user-service`.
    pub name: String,
    /// Compose service, e.g. `user-service`.
    pub service: String,
    /// Compose project, e.g. `wealist`.
    pub project: String,
    /// Image reference shown in the metadata.
    pub image: String,
}

impl ContainerInfo {
    pub fn new(project: &str, service: &str) -> Self {
        ContainerInfo {
            id: container_id(project, service),
            name: format!("{project}-{service}"),
            service: service.to_owned(),
            project: project.to_owned(),
            image: format!("{project}/{service}:demo"),
        }
    }
}

/// A stable 64-hex container id for a compose service (FNV-1a over four salted passes), so
/// restarting the demo on the same data directory appends to the same files.
pub fn container_id(project: &str, service: &str) -> String {
    let mut out = String::with_capacity(64);
    for salt in 0u8..4 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in [salt]
            .iter()
            .chain(project.as_bytes())
            .chain(b"/")
            .chain(service.as_bytes())
        {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

enum Msg {
    Line(Vec<u8>),
    Flush(SyncSender<()>),
}

/// One container's log directory and its writer thread.
pub struct ContainerLog {
    info: ContainerInfo,
    dir: PathBuf,
    tx: Mutex<Option<SyncSender<Msg>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    dropped: AtomicU64,
    written: Arc<AtomicU64>,
    created: SystemTime,
}

impl std::fmt::Debug for ContainerLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerLog")
            .field("id", &self.info.id)
            .field("service", &self.info.service)
            .finish_non_exhaustive()
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DemoError {
    let context = context.into();
    move |source| DemoError::Io { context, source }
}

impl ContainerLog {
    /// Creates (or re-opens) `<containers_dir>/<id>/`, writes `config.v2.json` and starts the
    /// writer thread. Existing log files are appended to.
    pub fn open(
        containers_dir: &Path,
        info: ContainerInfo,
        opts: LogOptions,
    ) -> Result<Arc<Self>, DemoError> {
        let dir = containers_dir.join(&info.id);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let log_path = dir.join(format!("{}-json.log", info.id));
        let written = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::sync_channel::<Msg>(8192);
        let mut writer = RotatingWriter::open(log_path, opts)?;
        let w = written.clone();
        let thread = std::thread::Builder::new()
            .name(format!("log-{}", info.service))
            .spawn(move || {
                loop {
                    match rx.recv_timeout(Duration::from_millis(250)) {
                        Ok(Msg::Line(bytes)) => {
                            if let Err(e) = writer.write_line(&bytes) {
                                tracing::warn!(error = %e, "writing a container log line");
                            } else {
                                w.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(Msg::Flush(done)) => {
                            let _ = writer.flush();
                            let _ = done.send(());
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            let _ = writer.flush();
                        }
                        Err(RecvTimeoutError::Disconnected) => {
                            let _ = writer.flush();
                            return;
                        }
                    }
                }
            })
            .map_err(io_err("starting a log writer thread"))?;
        let log = Arc::new(ContainerLog {
            info,
            dir,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            dropped: AtomicU64::new(0),
            written,
            created: SystemTime::now(),
        });
        log.write_metadata(true)?;
        Ok(log)
    }

    pub fn info(&self) -> &ContainerInfo {
        &self.info
    }

    /// `<dir>/<id>-json.log`.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}-json.log", self.info.id))
    }

    /// `<dir>/config.v2.json`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.v2.json")
    }

    /// Lines dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Lines written so far by this process.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Appends one line (a trailing newline is added, as the json-file driver does).
    pub fn write(&self, stream: Stream, line: &str) {
        let record = json!({
            "log": format!("{line}\n"),
            "stream": stream.as_str(),
            "time": rfc3339_nano(SystemTime::now()),
        });
        let Ok(mut bytes) = serde_json::to_vec(&record) else {
            return;
        };
        bytes.push(b'\n');
        let guard = self.tx.lock();
        let Some(tx) = guard.as_ref() else {
            return;
        };
        match tx.try_send(Msg::Line(bytes)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits (blocking, at most 5 s) until everything queued so far is on disk.
    pub fn flush(&self) {
        let tx = self.tx.lock().clone();
        if let Some(tx) = tx {
            let (done_tx, done_rx) = mpsc::sync_channel(1);
            if tx.send(Msg::Flush(done_tx)).is_ok() {
                let _ = done_rx.recv_timeout(Duration::from_secs(5));
            }
        }
    }

    /// Rewrites `config.v2.json` with the container's state (written atomically).
    pub fn write_metadata(&self, running: bool) -> Result<(), DemoError> {
        let now = rfc3339_nano(SystemTime::now());
        let zero = "0001-01-01T00:00:00Z";
        let (started, finished) = if running {
            (now.as_str(), zero)
        } else {
            (zero, now.as_str())
        };
        let i = &self.info;
        let config = json!({
            "StreamConfig": {},
            "State": {
                "Running": running, "Paused": false, "Restarting": false, "OOMKilled": false,
                "RemovalInProgress": false, "Dead": false,
                "Pid": if running { std::process::id() } else { 0 },
                "ExitCode": 0, "Error": "", "StartedAt": started, "FinishedAt": finished,
                "Health": null
            },
            "ID": i.id,
            "Created": rfc3339_nano(self.created),
            "Managed": false,
            "Path": format!("/app/{}", i.service),
            "Args": [],
            "Config": {
                "Hostname": &i.id[..12.min(i.id.len())],
                "Domainname": "", "User": "",
                "AttachStdin": false, "AttachStdout": true, "AttachStderr": true,
                "Tty": false, "OpenStdin": false, "StdinOnce": false,
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": [format!("/app/{}", i.service)],
                "Image": i.image,
                "Volumes": null, "WorkingDir": "/app", "Entrypoint": null, "OnBuild": null,
                "Labels": {
                    "com.docker.compose.config-hash": container_id(&i.project, &format!("{}#config", i.service)),
                    "com.docker.compose.container-number": "1",
                    "com.docker.compose.depends_on": "",
                    "com.docker.compose.image": format!("sha256:{}", container_id(&i.project, &format!("{}#image", i.service))),
                    "com.docker.compose.oneoff": "False",
                    "com.docker.compose.project": i.project,
                    "com.docker.compose.project.config_files": "docker/compose/docker-compose.yml",
                    "com.docker.compose.project.working_dir": "/wealist",
                    "com.docker.compose.service": i.service,
                    "com.docker.compose.version": "2.24.6"
                }
            },
            "Image": format!("sha256:{}", container_id(&i.project, &format!("{}#image", i.service))),
            "LogPath": self.log_path().display().to_string(),
            "Name": format!("/{}", i.name),
            "Driver": "overlay2",
            "OS": "linux",
            "RestartCount": 0,
            "HasBeenStartedBefore": true,
            "HasBeenManuallyStopped": !running,
            "MountPoints": {},
            "ExecIDs": null
        });
        let bytes = serde_json::to_vec(&config).map_err(|e| DemoError::Io {
            context: "encoding config.v2.json".into(),
            source: std::io::Error::other(e),
        })?;
        let tmp = self.dir.join(".config.v2.json.tmp");
        std::fs::write(&tmp, bytes).map_err(io_err(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, self.config_path())
            .map_err(io_err(format!("renaming {}", tmp.display())))
    }

    /// Stops the writer thread after it has written everything queued.
    pub fn close(&self) {
        self.tx.lock().take();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for ContainerLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// The current log file plus Docker-style rotation.
struct RotatingWriter {
    path: PathBuf,
    opts: LogOptions,
    file: BufWriter<File>,
    size: u64,
}

impl RotatingWriter {
    fn open(path: PathBuf, opts: LogOptions) -> Result<Self, DemoError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(format!("opening {}", path.display())))?;
        let size = file
            .metadata()
            .map_err(io_err(format!("reading {}", path.display())))?
            .len();
        Ok(RotatingWriter {
            path,
            opts,
            file: BufWriter::with_capacity(64 * 1024, file),
            size,
        })
    }

    fn write_line(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + bytes.len() as u64 > self.opts.max_size {
            self.rotate()?;
        }
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }

    /// `x-json.log.(n-1)` → `.n`, ..., `x-json.log` → `.1`, then a fresh `x-json.log`.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        let keep = self.opts.max_files.max(1);
        let name = |n: usize| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if keep == 1 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(name(keep - 1));
            for n in (1..keep - 1).rev() {
                let from = name(n);
                if from.exists() {
                    std::fs::rename(&from, name(n + 1))?;
                }
            }
            std::fs::rename(&self.path, name(1))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.file = BufWriter::with_capacity(64 * 1024, file);
        self.size = 0;
        Ok(())
    }
}

/// Log levels of the services' structured logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// One structured log line: `{"ts","level","service","msg",...}`; absent fields are omitted.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LogFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    level: Level,
    service: &'a str,
    msg: &'a str,
    #[serde(flatten)]
    fields: &'a LogFields,
}

/// A service's structured logger writing into its container log.
#[derive(Clone, Debug)]
pub struct Logger {
    service: Arc<str>,
    sink: Arc<ContainerLog>,
}

impl Logger {
    pub fn new(service: &str, sink: Arc<ContainerLog>) -> Self {
        Logger {
            service: service.into(),
            sink,
        }
    }

    pub fn sink(&self) -> &Arc<ContainerLog> {
        &self.sink
    }

    pub fn log(&self, level: Level, msg: &str, fields: &LogFields) {
        let line = Line {
            ts: rfc3339_millis(SystemTime::now()),
            level,
            service: &self.service,
            msg,
            fields,
        };
        if let Ok(text) = serde_json::to_string(&line) {
            let stream = if level == Level::Error {
                Stream::Stderr
            } else {
                Stream::Stdout
            };
            self.sink.write(stream, &text);
        }
    }

    pub fn info(&self, msg: &str) {
        self.log(Level::Info, msg, &LogFields::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn container_ids_are_stable_hex() {
        let a = container_id("wealist", "user-service");
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, container_id("wealist", "user-service"));
        assert_ne!(a, container_id("wealist", "auth-service"));
    }

    #[test]
    fn json_file_lines_and_metadata() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let info = ContainerInfo::new("wealist", "user-service");
        let log =
            ContainerLog::open(tmp.path(), info.clone(), LogOptions::default()).expect("open");
        let logger = Logger::new("user-service", log.clone());
        logger.log(
            Level::Info,
            "request \"quoted\"",
            &LogFields {
                method: Some("GET".into()),
                status: Some(200),
                ..LogFields::default()
            },
        );
        logger.log(Level::Error, "boom", &LogFields::default());
        log.flush();
        let text = std::fs::read_to_string(log.log_path()).expect("log file");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["stream"], "stdout");
        assert_eq!(lines[1]["stream"], "stderr");
        let inner = lines[0]["log"].as_str().expect("log field");
        assert!(inner.ends_with('\n'));
        let app: Value = serde_json::from_str(inner.trim_end()).expect("app json");
        assert_eq!(app["service"], "user-service");
        assert_eq!(app["msg"], "request \"quoted\"");
        assert_eq!(app["status"], 200);
        assert!(app.get("user_id").is_none());
        let time = lines[0]["time"].as_str().expect("time");
        assert!(time.ends_with('Z') && time.len() >= 20, "{time}");

        let cfg: Value = serde_json::from_str(
            &std::fs::read_to_string(log.config_path()).expect("config.v2.json"),
        )
        .expect("config json");
        assert_eq!(cfg["ID"], info.id.as_str());
        assert_eq!(cfg["Name"], "/wealist-user-service");
        assert_eq!(
            cfg["Config"]["Labels"]["com.docker.compose.service"],
            "user-service"
        );
        assert_eq!(
            cfg["Config"]["Labels"]["com.docker.compose.project"],
            "wealist"
        );
        assert_eq!(cfg["State"]["Running"], true);
        log.write_metadata(false).expect("metadata");
        let cfg: Value =
            serde_json::from_str(&std::fs::read_to_string(log.config_path()).expect("read"))
                .expect("json");
        assert_eq!(cfg["State"]["Running"], false);
    }

    #[test]
    fn rotates_like_docker_and_reopens_appending() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let info = ContainerInfo::new("wealist", "chat-service");
        let opts = LogOptions {
            max_size: 1000,
            max_files: 3,
        };
        let log = ContainerLog::open(tmp.path(), info.clone(), opts).expect("open");
        for i in 0..100 {
            log.write(Stream::Stdout, &format!("line {i:03} {}", "x".repeat(40)));
        }
        log.close();
        let base = log.log_path();
        let rotated = |n: u32| PathBuf::from(format!("{}.{n}", base.display()));
        assert!(base.exists() && rotated(1).exists() && rotated(2).exists());
        assert!(!rotated(3).exists(), "max_files bounds the number of files");
        for p in [&base, &rotated(1), &rotated(2)] {
            let len = std::fs::metadata(p).expect("meta").len();
            assert!(len <= 1000, "{} is {len} bytes", p.display());
        }
        let last = std::fs::read_to_string(&base).expect("read");
        assert!(last.contains("line 099"));
        let size_before = std::fs::metadata(&base).expect("meta").len();
        drop(log);
        // Re-opening appends to the same file (a demo restart keeps earlier logs).
        let log = ContainerLog::open(tmp.path(), info, opts).expect("reopen");
        log.write(Stream::Stdout, "after restart");
        log.flush();
        let text = std::fs::read_to_string(&base).expect("read");
        assert!(text.contains("after restart"));
        assert!(std::fs::metadata(&base).expect("meta").len() > size_before || rotated(1).exists());
    }
}
