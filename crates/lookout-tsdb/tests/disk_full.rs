//! Disk full, for real: the store lives on a small tmpfs that the test fills up. Commits fail
//! (and say so), nothing acknowledged is lost or duplicated, no half-written block or
//! checkpoint stays behind, and ingestion resumes by itself once space is freed.
//!
//! Needs root (to mount tmpfs); prints a SKIP line otherwise, and fails when `CI=true`.

mod common;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use lookout_storage::{Appendable, Queryable, Sample, StorageError};
use lookout_tsdb::{Tsdb, TsdbOptions};

/// A tmpfs mounted for the test; unmounted (lazily, so open files cannot block it) on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Mounts an 8 MiB tmpfs under `base`, or explains why the test is skipped.
fn small_disk(base: &Path, test: &str) -> Option<Tmpfs> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mounted = if root {
        Tmpfs::mount(&base.join("disk"), "8m")
    } else {
        None
    };
    if mounted.is_none() {
        let why = if root {
            "mount -t tmpfs failed"
        } else {
            "not root"
        };
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "{test}: cannot mount a tmpfs ({why}) and CI=true"
        );
        println!("SKIP {test}: cannot mount a tmpfs ({why})");
    }
    mounted
}

/// Writes zeros into `path` until the file system is full. Returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = File::create(path).unwrap();
    let block = vec![0u8; 16 << 10];
    let mut n = 0u64;
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                break;
            }
        }
    }
    // Also the last partial page.
    while f.write(&[0u8; 1]).is_ok_and(|k| k == 1) {
        n += 1;
    }
    n
}

fn opts() -> TsdbOptions {
    TsdbOptions {
        wal_fsync_interval: Duration::from_millis(20),
        wal_segment_size: 256 << 10,
        chunk_file_size: 512 << 10,
        chunk_range: Duration::from_secs(600),
        compaction: false,
        ..TsdbOptions::default()
    }
}

const STEP: i64 = 15_000;

/// Appends `rounds` scrapes of `n` series named `name`, starting at round `from`, in one
/// batch.
fn batch(db: &Tsdb, name: &str, n: usize, from: i64, rounds: i64) -> Result<(), StorageError> {
    let mut app = db.appender();
    for r in from..from + rounds {
        for i in 0..n {
            app.append(None, &series(name, i), r * STEP, (r * 7 + i as i64) as f64)
                .map_err(|e| StorageError::Other(e.to_string()))?;
        }
    }
    app.commit()
}

fn expect(i: usize, rounds: std::ops::Range<i64>) -> Vec<Sample> {
    rounds
        .map(|r| Sample {
            t: r * STEP,
            v: (r * 7 + i as i64) as f64,
        })
        .collect()
}

fn leftovers(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["blocks", "wal"] {
        if let Ok(rd) = fs::read_dir(dir.join(sub)) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".tmp") {
                    out.push(format!("{sub}/{name}"));
                }
            }
        }
    }
    out
}

fn count_series(db: &Tsdb, name: &str) -> usize {
    db.series(
        &[lookout_storage::Matcher::equal("__name__", name)],
        i64::MIN,
        i64::MAX,
    )
    .unwrap()
    .len()
}

#[test]
fn disk_full_fails_loudly_keeps_acknowledged_data_and_resumes() {
    let base = tempfile::tempdir().unwrap();
    let Some(disk) = small_disk(base.path(), "disk_full_fails_loudly") else {
        return;
    };
    let dir = disk.path.join("data");
    let filler = disk.path.join("filler");
    let db = open(&dir, opts());

    // Acknowledged before the disk fills: 200 series × 40 rounds (10 minutes).
    batch(&db, "a", 200, 0, 40).expect("commit before the disk is full");
    db.sync().unwrap();

    let filled = fill(&filler);
    assert!(filled > 0);

    // Ingestion fails loudly: the commit errors, the failure is counted, and the new
    // series of the failed batch do not linger in the head.
    let err = batch(&db, "b", 200, 40, 40).expect_err("commit on a full disk");
    assert!(matches!(err, StorageError::Io(_)), "{err}");
    assert!(err.to_string().contains("No space left on device"), "{err}");
    assert!(metric(&db, "lookout_tsdb_wal_write_failures_total") >= 1.0);
    assert_eq!(count_series(&db, "b"), 0);
    // Existing series too: nothing of the failed batch is visible.
    assert!(batch(&db, "a", 200, 40, 40).is_err());
    for i in [0, 99, 199] {
        assert_eq!(samples_of(&db, &series("a", i)), expect(i, 0..40));
    }

    // Cutting the head into a block fails too, and leaves no half-written block.
    assert!(db.flush_head().is_err());
    assert!(db.blocks().is_empty());
    assert_eq!(leftovers(&dir), Vec::<String>::new());

    // Space returns: ingestion resumes without a restart, the failed series included.
    fs::remove_file(&filler).unwrap();
    batch(&db, "a", 200, 40, 40).expect("commit after space returned");
    batch(&db, "b", 200, 40, 40).expect("new series after space returned");
    db.close().unwrap();
    drop(db);

    // After a restart (WAL replay): everything acknowledged, exactly once; the failed
    // batches nowhere.
    let db = open(&dir, opts());
    for i in [0, 7, 199] {
        assert_eq!(samples_of(&db, &series("a", i)), expect(i, 0..80));
        assert_eq!(samples_of(&db, &series("b", i)), expect(i, 40..80));
    }
    assert_eq!(count_series(&db, "a"), 200);
    assert_eq!(count_series(&db, "b"), 200);
    db.flush_head().expect("head cut after space returned");
    assert!(!db.blocks().is_empty());
    assert_eq!(leftovers(&dir), Vec::<String>::new());
    batch(&db, "a", 200, 80, 4).unwrap();
    assert_eq!(samples_of(&db, &series("a", 3)), expect(3, 0..84));
    db.close().unwrap();
    drop(db);
    drop(disk);
}

#[test]
fn disk_full_during_head_cut_and_checkpoint_recovers() {
    let base = tempfile::tempdir().unwrap();
    let Some(disk) = small_disk(base.path(), "disk_full_during_head_cut") else {
        return;
    };
    let dir = disk.path.join("data");
    let filler = disk.path.join("filler");
    let db = open(&dir, opts());
    // Four chunk ranges of data, so the cut has work to do.
    for r in 0..4 {
        batch(&db, "c", 300, r * 40, 40).unwrap();
    }
    db.sync().unwrap();
    fill(&filler);
    assert!(db.compact().is_err(), "cut on a full disk must fail");
    assert!(db.blocks().is_empty());
    // A WAL checkpoint may fail as well; either way no temporary file stays.
    let _ = db.checkpoint();
    assert_eq!(leftovers(&dir), Vec::<String>::new());
    // Everything still served from the head.
    assert_eq!(samples_of(&db, &series("c", 5)), expect(5, 0..160));

    fs::remove_file(&filler).unwrap();
    db.compact().expect("cut once space returned");
    let blocks = db.blocks();
    assert!(!blocks.is_empty());
    for w in blocks.windows(2) {
        assert!(w[0].max_time <= w[1].min_time, "overlap: {blocks:?}");
    }
    assert_eq!(samples_of(&db, &series("c", 5)), expect(5, 0..160));
    batch(&db, "c", 300, 160, 4).unwrap();
    db.close().unwrap();
    drop(db);
    let db = open(&dir, opts());
    assert_eq!(samples_of(&db, &series("c", 299)), expect(299, 0..164));
    let all_c = db
        .select(
            &[lookout_storage::Matcher::equal("__name__", "c")],
            &lookout_storage::SelectHints::range(i64::MIN, i64::MAX),
        )
        .unwrap();
    assert_eq!(all_c.len(), 300);
    for s in &all_c {
        assert_eq!(s.samples.len(), 164, "{}", s.labels);
    }
    drop(db);
    drop(disk);
}
