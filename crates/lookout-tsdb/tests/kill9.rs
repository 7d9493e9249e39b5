//! kill -9 durability: a child process (this test binary re-run in "writer" mode) appends and
//! commits batches, printing each acknowledged batch number; the parent kills it with
//! SIGKILL mid-way, reopens the store and checks that every acknowledged sample is there.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use lookout_storage::{Appendable, SeriesRef};
use lookout_tsdb::TsdbOptions;

const ENV: &str = "LOOKOUT_TSDB_KILL9_WRITER_DIR";
const SERIES: usize = 40;

fn opts() -> TsdbOptions {
    // Small segments and files so the run crosses segment cuts, checkpoints and chunk files.
    TsdbOptions {
        wal_segment_size: 16 << 10,
        chunk_file_size: 64 << 10,
        samples_per_chunk: 30,
        wal_fsync_interval: Duration::from_millis(20),
        ..TsdbOptions::default()
    }
}

/// Writer mode: only does something when the parent sets the environment variable.
#[test]
fn kill9_writer_child() {
    let Some(dir) = std::env::var_os(ENV).map(PathBuf::from) else {
        return;
    };
    let db = open(&dir, opts());
    let mut refs: Vec<Option<SeriesRef>> = vec![None; SERIES];
    let stdout = std::io::stdout();
    let deadline = Instant::now() + Duration::from_secs(60);
    // After an earlier crash, continue after the newest batch that made it.
    let mut batch = db.stats().max_time.map_or(0, |t| t / 1000 + 1);
    while Instant::now() < deadline {
        let mut app = db.appender();
        for (i, r) in refs.iter_mut().enumerate() {
            *r = Some(
                app.append(*r, &series("k9", i), batch * 1000, batch as f64)
                    .expect("append"),
            );
        }
        app.commit().expect("commit");
        let mut out = stdout.lock();
        writeln!(out, "ACK {batch}").expect("stdout");
        out.flush().expect("flush");
        batch += 1;
    }
}

#[test]
fn acknowledged_samples_survive_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    for round in 0..2 {
        let mut child = Command::new(&exe)
            .args([
                "kill9_writer_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut last_ack: Option<i64> = None;
        let target = 1500 + round * 700;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("ACK ") {
                let n: i64 = n.trim().parse().unwrap();
                last_ack = Some(n);
                if n >= target {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let last_ack = last_ack.expect("child acknowledged nothing");
        assert!(last_ack >= target, "child stopped early at {last_ack}");

        // Round 0 starts from an empty dir; round 1 replays the first crash and continues.
        let db = open(dir.path(), opts());
        let got = all(&db, "k9");
        assert_eq!(got.len(), SERIES);
        for s in &got {
            let ts: Vec<i64> = s.samples.iter().map(|x| x.t / 1000).collect();
            let want: Vec<i64> = (0..=last_ack.max(ts.len() as i64 - 1)).collect();
            assert!(
                ts.len() as i64 > last_ack,
                "{}: {} samples, last ack {last_ack}",
                s.labels,
                ts.len()
            );
            assert_eq!(ts, want[..ts.len()].to_vec(), "{}", s.labels);
            assert!(s.samples.iter().all(|x| x.v == (x.t / 1000) as f64));
        }
        let st = db.stats();
        assert!(st.mmapped_chunks > 0, "{st:?}");
        drop(db);
        if round == 1 {
            // The crashes really did cut WAL segments and checkpoint.
            let names: Vec<String> = std::fs::read_dir(dir.path().join("wal"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(
                names.iter().any(|n| n.starts_with("checkpoint.")),
                "{names:?}"
            );
        }
    }
}
