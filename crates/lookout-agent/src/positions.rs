//! The positions file, in Promtail's format:
//!
//! ```yaml
//! positions:
//!   /var/log/app.log: "1234"
//! ```
//!
//! An offset is recorded only once every client has acknowledged the lines before it
//! (at-least-once). Saved atomically (temporary file, fsync, rename) every `sync_period` and on
//! shutdown. A corrupt file is reported and the agent starts each existing file from its end.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum PositionsError {
    #[error("positions file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("positions file {path} is invalid: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Deserialize, Serialize, Default)]
struct File {
    #[serde(default)]
    positions: BTreeMap<String, Offset>,
}

/// Promtail writes offsets as strings; numbers are accepted too.
#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum Offset {
    Str(String),
    Num(u64),
}

impl Offset {
    fn value(&self) -> Option<u64> {
        match self {
            Offset::Str(s) => s.trim().parse().ok(),
            Offset::Num(n) => Some(*n),
        }
    }
}

struct State {
    /// Acknowledged offset per path and client.
    acked: BTreeMap<String, Vec<u64>>,
    dirty: bool,
}

/// Positions shared by the readers (start offsets) and the clients (acknowledgements).
pub struct Positions {
    path: PathBuf,
    clients: usize,
    state: Mutex<State>,
    corrupt: bool,
}

impl std::fmt::Debug for Positions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Positions")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Positions {
    /// Loads `path` (a missing file is an empty one). A corrupt file yields empty positions
    /// with [`Positions::was_corrupt`] set, unless `strict`, where it is an error.
    pub fn load(path: &Path, clients: usize, strict: bool) -> Result<Positions, PositionsError> {
        let clients = clients.max(1);
        let mut corrupt = false;
        let mut acked = BTreeMap::new();
        match std::fs::read(path) {
            Ok(bytes) => match parse(&bytes) {
                Ok(map) => {
                    for (k, v) in map {
                        acked.insert(k, vec![v; clients]);
                    }
                }
                Err(message) => {
                    if strict {
                        return Err(PositionsError::Invalid {
                            path: path.display().to_string(),
                            message,
                        });
                    }
                    tracing::warn!(
                        file = %path.display(),
                        error = %message,
                        "positions file is corrupt: starting every existing file from its end"
                    );
                    corrupt = true;
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(PositionsError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        }
        Ok(Positions {
            path: path.to_path_buf(),
            clients,
            state: Mutex::new(State {
                acked,
                dirty: false,
            }),
            corrupt,
        })
    }

    /// Was the file present but unreadable as positions?
    pub fn was_corrupt(&self) -> bool {
        self.corrupt
    }

    /// The recorded offset for `path`.
    pub fn get(&self, path: &str) -> Option<u64> {
        self.state
            .lock()
            .acked
            .get(path)
            .and_then(|v| v.iter().min().copied())
    }

    /// Sets the offset for every client (a reader starting a file, or a reset).
    pub fn set(&self, path: &str, offset: u64) {
        let mut st = self.state.lock();
        st.acked
            .insert(path.to_string(), vec![offset; self.clients]);
        st.dirty = true;
    }

    /// Client `client` has delivered everything in `path` up to `offset`. Files not tracked
    /// (never started, or forgotten after they disappeared) are ignored.
    pub fn ack(&self, client: usize, path: &str, offset: u64) {
        let mut st = self.state.lock();
        if let Some(slot) = st.acked.get_mut(path).and_then(|v| v.get_mut(client)) {
            *slot = offset;
            st.dirty = true;
        }
    }

    /// Forgets a file that no longer exists.
    pub fn remove(&self, path: &str) {
        let mut st = self.state.lock();
        if st.acked.remove(path).is_some() {
            st.dirty = true;
        }
    }

    /// All recorded offsets.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.state
            .lock()
            .acked
            .iter()
            .filter_map(|(k, v)| v.iter().min().map(|m| (k.clone(), *m)))
            .collect()
    }

    /// Writes the file if anything changed since the last save, and fsyncs it.
    pub fn save(&self) -> Result<(), PositionsError> {
        self.save_with(true)
    }

    /// Writes the file (atomically, by rename) without waiting for the disk: survives a
    /// killed process, not a power cut; the periodic [`Positions::save`] covers that.
    pub fn save_fast(&self) -> Result<(), PositionsError> {
        self.save_with(false)
    }

    fn save_with(&self, fsync: bool) -> Result<(), PositionsError> {
        let snapshot = {
            let mut st = self.state.lock();
            if !st.dirty {
                return Ok(());
            }
            st.dirty = false;
            st.acked
                .iter()
                .filter_map(|(k, v)| {
                    v.iter()
                        .min()
                        .map(|m| (k.clone(), Offset::Str(m.to_string())))
                })
                .collect::<BTreeMap<_, _>>()
        };
        let res = self.write(
            &File {
                positions: snapshot,
            },
            fsync,
        );
        if res.is_err() {
            self.state.lock().dirty = true;
        }
        res
    }

    fn write(&self, f: &File, fsync: bool) -> Result<(), PositionsError> {
        let io = |source| PositionsError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let text = serde_yaml_ng::to_string(f).map_err(|e| PositionsError::Invalid {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })?;
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        if fsync {
            file.sync_all().map_err(io)?;
        }
        drop(file);
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        Ok(())
    }
}

fn parse(bytes: &[u8]) -> Result<BTreeMap<String, u64>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let f: File = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for (k, v) in f.positions {
        let n = v
            .value()
            .ok_or_else(|| format!("offset of {k:?} is not a number"))?;
        out.insert(k, n);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_promtail_format() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("positions.yaml");
        let pos = Positions::load(&p, 1, false).unwrap();
        pos.ack(0, "/var/log/untracked.log", 5);
        pos.set("/var/log/a.log", 10);
        pos.ack(0, "/var/log/a.log", 42);
        pos.save().unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("positions:"), "{text}");
        assert!(
            text.contains("/var/log/a.log: '42'") || text.contains("/var/log/a.log: \"42\""),
            "{text}"
        );
        let again = Positions::load(&p, 1, false).unwrap();
        assert_eq!(again.get("/var/log/a.log"), Some(42));
        assert_eq!(again.get("/var/log/untracked.log"), None);
        assert!(!again.was_corrupt());
    }

    #[test]
    fn reads_promtail_written_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("positions.yaml");
        std::fs::write(&p, "positions:\n  /x/y.log: \"1234\"\n  /x/z.log: 7\n").unwrap();
        let pos = Positions::load(&p, 1, false).unwrap();
        assert_eq!(pos.get("/x/y.log"), Some(1234));
        assert_eq!(pos.get("/x/z.log"), Some(7));
    }

    #[test]
    fn position_is_the_minimum_over_clients() {
        let dir = tempfile::tempdir().unwrap();
        let pos = Positions::load(&dir.path().join("p.yaml"), 2, false).unwrap();
        pos.set("/a", 0);
        pos.ack(0, "/a", 100);
        assert_eq!(pos.get("/a"), Some(0));
        pos.ack(1, "/a", 50);
        assert_eq!(pos.get("/a"), Some(50));
    }

    #[test]
    fn corrupt_file_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("positions.yaml");
        for garbage in [
            &b"positions: [1, 2"[..],
            b"\xff\xfe\x00garbage",
            b"positions:\n  /a: notanumber\n",
        ] {
            std::fs::write(&p, garbage).unwrap();
            let pos = Positions::load(&p, 1, false).unwrap();
            assert!(pos.was_corrupt());
            assert!(pos.snapshot().is_empty());
            assert!(Positions::load(&p, 1, true).is_err());
        }
    }
}
