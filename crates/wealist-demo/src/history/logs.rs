//! Past request log lines for the history: a sample of the requests the history's counters
//! count, written into the containers' json-file logs before the services open them, in the
//! services' own line format. The log agent then ships them like any other line (the log
//! store takes old lines into a stream it has not seen yet, oldest first).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::json;

use crate::logs::{ContainerInfo, Level, LogFields};
use crate::rng::Rng;
use crate::timefmt::{rfc3339_millis, rfc3339_nano};
use crate::{DemoError, ServiceKind};

/// One past request.
#[derive(Clone, Debug, PartialEq)]
pub struct LogEvent {
    pub t_ms: i64,
    pub service: ServiceKind,
    pub method: String,
    /// Route template (`/api/boards/{id}`); ids are filled in when written.
    pub route: String,
    pub status: u16,
    pub latency_ms: f64,
}

/// The services' structured line (see `logs::Logger`).
#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    level: Level,
    service: &'a str,
    msg: &'a str,
    #[serde(flatten)]
    fields: &'a LogFields,
}

fn system_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// `/api/boards/{id}` → `/api/boards/417`.
fn concrete_path(route: &str, rng: &mut Rng) -> String {
    route
        .split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                (1 + rng.below(500)).to_string()
            } else {
                seg.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The json-file record (with its newline) of `ev`.
pub fn json_file_line(ev: &LogEvent, rng: &mut Rng) -> Option<Vec<u8>> {
    let level = match ev.status {
        500.. => Level::Error,
        400..=499 => Level::Warn,
        _ => Level::Info,
    };
    let fields = LogFields {
        method: Some(ev.method.clone()),
        path: Some(concrete_path(&ev.route, rng)),
        status: Some(ev.status),
        latency_ms: Some((ev.latency_ms * 1e3).round() / 1e3),
        trace_id: Some(rng.hex(32)),
        user_id: rng.chance(0.7).then(|| format!("u{}", 1 + rng.below(40))),
        error: (ev.status >= 500).then(|| "upstream dependency failed (injected fault)".into()),
    };
    let at = system_time(ev.t_ms);
    let line = Line {
        ts: rfc3339_millis(at),
        level,
        service: ev.service.compose_service(),
        msg: if ev.status >= 500 {
            "request failed"
        } else {
            "request completed"
        },
        fields: &fields,
    };
    let text = serde_json::to_string(&line).ok()?;
    let record = json!({
        "log": format!("{text}\n"),
        "stream": if level == Level::Error { "stderr" } else { "stdout" },
        "time": rfc3339_nano(at),
    });
    let mut bytes = serde_json::to_vec(&record).ok()?;
    bytes.push(b'\n');
    Some(bytes)
}

/// Writes past lines into `<containers>/<id>/<id>-json.log`, one file per service.
pub struct LogHistoryWriter {
    files: BTreeMap<ServiceKind, (PathBuf, BufWriter<File>)>,
    rng: Rng,
    lines: u64,
    bytes: u64,
}

impl LogHistoryWriter {
    /// Creates the services' log files; `None` when any of them exists already (the
    /// services have run here before, and older lines would land after newer ones).
    pub fn create(
        containers: &Path,
        project: &str,
        seed: u64,
    ) -> Result<Option<LogHistoryWriter>, DemoError> {
        let mut paths = Vec::new();
        for kind in ServiceKind::ALL {
            let info = ContainerInfo::new(project, kind.compose_service());
            let dir = containers.join(&info.id);
            let path = dir.join(format!("{}-json.log", info.id));
            if path.exists() {
                return Ok(None);
            }
            paths.push((kind, dir, path));
        }
        let mut files = BTreeMap::new();
        for (kind, dir, path) in paths {
            let io = |what: &str, p: &Path| {
                let context = format!("{what} {}", p.display());
                move |source| DemoError::Io { context, source }
            };
            std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
            let f = OpenOptions::new()
                .create_new(true)
                .write(true)
                .open(&path)
                .map_err(io("creating", &path))?;
            files.insert(kind, (path, BufWriter::new(f)));
        }
        Ok(Some(LogHistoryWriter {
            files,
            rng: Rng::new(seed ^ 0x4c4f_4753),
            lines: 0,
            bytes: 0,
        }))
    }

    /// Appends `events` (sorted here by time).
    pub fn write(&mut self, events: &mut [LogEvent]) -> Result<(), DemoError> {
        events.sort_by_key(|e| e.t_ms);
        for ev in events.iter() {
            let Some(line) = json_file_line(ev, &mut self.rng) else {
                continue;
            };
            if let Some((path, w)) = self.files.get_mut(&ev.service) {
                w.write_all(&line).map_err(|source| DemoError::Io {
                    context: format!("writing {}", path.display()),
                    source,
                })?;
                self.lines += 1;
                self.bytes += line.len() as u64;
            }
        }
        Ok(())
    }

    /// Flushes the files; returns (lines, bytes) written.
    pub fn finish(self) -> Result<(u64, u64), DemoError> {
        for (path, mut w) in self.files.into_values() {
            w.flush().map_err(|source| DemoError::Io {
                context: format!("writing {}", path.display()),
                source,
            })?;
        }
        Ok((self.lines, self.bytes))
    }
}
