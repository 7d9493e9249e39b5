//! Blocks: head cuts, queries across head and blocks, out-of-order data after a cut,
//! compaction, retention by size, corrupt-block quarantine, and kill -9 at every step of a
//! cut, a compaction and a retention deletion.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use lookout_storage::{AppendError, Appendable, Matcher, Queryable};
use lookout_tsdb::{Tsdb, TsdbOptions};

const MIN: i64 = 60_000;
const SERIES: usize = 12;

fn opts() -> TsdbOptions {
    TsdbOptions {
        chunk_range: Duration::from_secs(600),
        retention: Duration::from_secs(24 * 3600),
        compaction: false,
        ..small_opts()
    }
}

/// Appends `minutes` minutes of 15-second samples, value = t/1000, one commit per minute.
fn fill(db: &Tsdb, from_min: i64, minutes: i64) {
    for m in from_min..from_min + minutes {
        let mut app = db.appender();
        for q in 0..4 {
            let t = m * MIN + q * 15_000;
            for i in 0..SERIES {
                app.append(None, &series("m", i), t, (t / 1000) as f64)
                    .unwrap();
            }
        }
        app.commit().unwrap();
    }
}

/// Every series has exactly the samples of `[from, to)` minutes, each once.
fn check(db: &Tsdb, from_min: i64, to_min: i64) {
    let got = all(db, "m");
    assert_eq!(got.len(), SERIES);
    let want: Vec<i64> = (from_min * 4..to_min * 4).map(|k| k * 15_000).collect();
    for s in got {
        let ts: Vec<i64> = s.samples.iter().map(|x| x.t).collect();
        assert_eq!(ts.len(), want.len(), "{}", s.labels);
        assert_eq!(ts, want, "{}", s.labels);
        assert!(s.samples.iter().all(|x| x.v == (x.t / 1000) as f64));
    }
}

#[test]
fn head_is_cut_into_blocks_and_queries_span_both() {
    let dir = tempfile::tempdir().unwrap();
    // Retention/10 is below 3 chunk ranges: no compaction levels.
    let o = TsdbOptions {
        retention: Duration::from_secs(4 * 3600),
        ..opts()
    };
    let db = open(dir.path(), o.clone());
    fill(&db, 0, 60);
    let (cut, _) = db.compact().unwrap();
    // 60 minutes with 10-minute ranges: cut while the head spans more than 15 minutes.
    assert_eq!(cut, 5, "{:?}", db.blocks());
    let st = db.stats();
    assert_eq!(st.blocks, 5);
    assert!(st.min_time.is_some_and(|t| t >= 50 * MIN), "{st:?}");
    assert_eq!(st.block_samples, (50 * 4 * SERIES) as u64);
    check(&db, 0, 60);
    let sel = db
        .select(
            &[Matcher::equal("instance", "host-3")],
            &lookout_storage::SelectHints::range(9 * MIN, 11 * MIN),
        )
        .unwrap();
    assert_eq!(sel.len(), 1);
    assert_eq!(sel[0].samples.len(), 9);
    assert_eq!(
        db.label_values("instance", &[], 0, 5 * MIN).unwrap().len(),
        SERIES
    );
    assert!(
        db.label_names(&[], 0, MIN)
            .unwrap()
            .contains(&"job".to_string())
    );
    assert_eq!(
        db.series(&[Matcher::equal("__name__", "m")], 0, MIN)
            .unwrap()
            .len(),
        SERIES
    );
    // In-order data below the cut line is refused without an out-of-order window.
    let mut app = db.appender();
    assert_eq!(
        app.append(None, &series("new", 0), 5 * MIN + 1, 1.0),
        Err(AppendError::TooOld)
    );
    drop(app);
    drop(db);
    // Reopen: blocks are loaded, the WAL replay skips what they hold; no duplicates.
    let db = open(dir.path(), o);
    assert_eq!(db.stats().blocks, 5);
    check(&db, 0, 60);
    fill(&db, 60, 30);
    db.compact().unwrap();
    check(&db, 0, 90);
    assert_eq!(metric(&db, "lookout_tsdb_head_block_cuts_total"), 3.0);
}

#[test]
fn out_of_order_samples_after_a_cut_land_in_an_overlapping_block_merged_by_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let o = TsdbOptions {
        out_of_order_window: Duration::from_secs(3600),
        retention: Duration::from_secs(100 * 3600),
        ..opts()
    };
    let db = open(dir.path(), o.clone());
    fill(&db, 0, 40);
    db.compact().unwrap();
    assert!(!db.blocks().is_empty());
    // Samples between the existing ones, in a range already cut.
    let mut app = db.appender();
    for i in 0..SERIES {
        app.append(None, &series("m", i), 5 * MIN + 7_000, -1.0)
            .unwrap();
        // A duplicate of a sample already in a block: deduplicated in queries.
        app.append(None, &series("m", i), 5 * MIN, 300.0).unwrap();
    }
    app.commit().unwrap();
    let got = samples_of(&db, &series("m", 0));
    assert_eq!(got.len(), 40 * 4 + 1);
    assert!(got.iter().any(|s| s.t == 5 * MIN + 7_000 && s.v == -1.0));
    db.compact().unwrap();
    // The flush made an overlapping block and compaction merged it away.
    assert!(
        db.blocks().iter().all(|b| !b.out_of_order || b.level > 1),
        "{:?}",
        db.blocks()
    );
    let got = samples_of(&db, &series("m", 0));
    assert_eq!(got.len(), 40 * 4 + 1);
    drop(db);
    let db = open(dir.path(), o);
    let got = samples_of(&db, &series("m", 0));
    assert_eq!(got.len(), 40 * 4 + 1);
    assert!(got.windows(2).all(|w| w[0].t < w[1].t));
}

#[test]
fn blocks_compact_into_larger_levels() {
    let dir = tempfile::tempdir().unwrap();
    // Ranges: 10m blocks, 30m and 90m levels (retention/10 = 2h).
    let o = TsdbOptions {
        retention: Duration::from_secs(20 * 3600),
        ..opts()
    };
    let db = open(dir.path(), o.clone());
    fill(&db, 0, 200);
    let (cut, compacted) = db.compact().unwrap();
    assert!(cut >= 18, "{cut}");
    assert!(compacted >= 2, "{compacted}");
    let blocks = db.blocks();
    assert!(
        blocks
            .iter()
            .any(|b| b.level >= 3 && b.max_time - b.min_time == 90 * MIN),
        "{blocks:?}"
    );
    // No overlaps and nothing lost.
    assert!(blocks.windows(2).all(|w| w[0].max_time <= w[1].min_time));
    check(&db, 0, 200);
    assert!(metric(&db, "lookout_tsdb_compactions_total") >= 2.0);
    drop(db);
    let db = open(dir.path(), o);
    check(&db, 0, 200);
    // Compacted blocks are denser than the 2 bytes per sample of the head format.
    let st = db.stats();
    assert!(
        (st.block_bytes as f64) < st.block_samples as f64 * 2.0,
        "{st:?}"
    );
}

#[test]
fn retention_by_size_deletes_oldest_blocks_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), opts());
    fill(&db, 0, 120);
    db.compact().unwrap();
    let st = db.stats();
    let blocks = db.blocks();
    assert!(blocks.len() >= 3);
    drop(db);
    // Room for about half of the blocks besides WAL and head files.
    let wal_head = st.wal_bytes + st.mmapped_chunk_bytes;
    let o = TsdbOptions {
        retention_size: Some(wal_head + st.block_bytes / 2),
        ..opts()
    };
    let db = open(dir.path(), o);
    let after = db.blocks();
    assert!(after.len() < blocks.len(), "{after:?}");
    assert!(!after.is_empty());
    assert_eq!(after.last().map(|b| &b.id), blocks.last().map(|b| &b.id));
    let deleted = blocks.len() - after.len();
    let text = metrics_text(&db);
    assert!(
        text.contains(&format!(
            "lookout_tsdb_retention_deleted_blocks_total{{reason=\"size\"}} {deleted}"
        )),
        "{text}"
    );
    // What is left is complete from the oldest kept block on.
    let first = after[0].min_time / MIN;
    check(&db, first, 120);
    let out = db.enforce_retention().unwrap();
    assert_eq!(out.blocks_removed, 0);
}

#[test]
fn retention_by_time_deletes_whole_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), opts());
    fill(&db, 0, 200);
    db.compact().unwrap();
    let n = db.blocks().len();
    drop(db);
    let o = TsdbOptions {
        retention: Duration::from_secs(3600),
        ..opts()
    };
    // Retention runs on open.
    let db = open(dir.path(), o);
    assert!(db.blocks().len() < n, "{:?}", db.blocks());
    assert!(
        db.blocks()
            .iter()
            .all(|b| b.max_time > 199 * MIN - 60 * MIN)
    );
    assert!(
        metrics_text(&db).contains("lookout_tsdb_retention_deleted_blocks_total{reason=\"time\"}")
    );
}

#[test]
fn corrupt_block_is_quarantined_and_the_rest_serves() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), opts());
    fill(&db, 0, 70);
    db.compact().unwrap();
    fill(&db, 70, 40);
    db.compact().unwrap();
    let blocks = db.blocks();
    assert!(blocks.len() >= 2, "{blocks:?}");
    drop(db);
    let victim = dir.path().join("blocks").join(&blocks[0].id);
    let idx = victim.join("index");
    let mut data = std::fs::read(&idx).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&idx, data).unwrap();
    let db = open(dir.path(), opts());
    assert_eq!(db.blocks().len(), blocks.len() - 1);
    assert!(
        dir.path()
            .join("blocks")
            .join(format!("{}.corrupt", blocks[0].id))
            .exists()
    );
    assert_eq!(metric(&db, "lookout_tsdb_blocks_quarantined_total"), 1.0);
    // The rest is served (the quarantined range may come back from the WAL where it still
    // holds it); never twice.
    for s in all(&db, "m") {
        assert!(s.samples.windows(2).all(|w| w[0].t < w[1].t));
        let from = blocks[0].max_time;
        let want = ((110 * MIN - from) / 15_000) as usize;
        assert_eq!(s.samples.iter().filter(|x| x.t >= from).count(), want);
    }
}

// ---- kill -9 during cut, compaction and retention deletion ----

const CHILD_DIR: &str = "LOOKOUT_TSDB_BLOCKS_CHILD_DIR";
const CHILD_STEP: &str = "LOOKOUT_TSDB_BLOCKS_CHILD_STEP";

fn crash_opts() -> TsdbOptions {
    TsdbOptions {
        retention: Duration::from_secs(20 * 3600),
        ..opts()
    }
}

/// Child mode: writes 100 minutes, acknowledges, then runs the requested step.
#[test]
fn blocks_crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR).map(PathBuf::from) else {
        return;
    };
    let step = std::env::var(CHILD_STEP).unwrap_or_default();
    let db = open(&dir, crash_opts());
    if step == "write" {
        fill(&db, 0, 100);
        println!("ACK");
    }
    match step.as_str() {
        "write" | "compact" => {
            db.compact().unwrap();
        }
        "retention" => {
            drop(db);
            let o = TsdbOptions {
                retention_size: Some(1),
                ..crash_opts()
            };
            let db = open(&dir, o);
            db.enforce_retention().unwrap();
        }
        _ => {}
    }
    println!("DONE");
}

fn run_child(dir: &Path, step: &str, failpoint: &str) -> (bool, String) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "blocks_crash_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_STEP, step)
        .env("LOOKOUT_TSDB_FAILPOINT", failpoint)
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    let killed = out.status.signal() == Some(9);
    (killed, String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn kill9_during_cut_and_compaction_loses_and_duplicates_nothing() {
    for fp in [
        "block-before-rename",
        "cut-after-block",
        "compact-after-block",
        "compact-before-delete",
        "delete-after-rename",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (killed, out) = run_child(dir.path(), "write", fp);
        assert!(out.contains("ACK"), "{fp}: {out}");
        assert!(killed, "{fp}: the failpoint was not reached: {out}");
        let db = open(dir.path(), crash_opts());
        check(&db, 0, 100);
        // The interrupted work completes on the next pass, still without loss or duplicates.
        db.compact().unwrap();
        check(&db, 0, 100);
        let blocks = db.blocks();
        assert!(
            blocks.windows(2).all(|w| w[0].max_time <= w[1].min_time),
            "{fp}: {blocks:?}"
        );
        let names: Vec<String> = std::fs::read_dir(dir.path().join("blocks"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains('.')), "{fp}: {names:?}");
        drop(db);
        let db = open(dir.path(), crash_opts());
        check(&db, 0, 100);
    }
}

#[test]
fn kill9_during_retention_deletion_leaves_a_readable_store() {
    let dir = tempfile::tempdir().unwrap();
    let (killed, out) = run_child(dir.path(), "write", "none");
    assert!(!killed && out.contains("DONE"), "{out}");
    let (killed, _) = run_child(dir.path(), "retention", "delete-after-rename");
    assert!(killed);
    let db = open(dir.path(), crash_opts());
    // Blocks are either whole or gone; the head (newest data) is intact; no duplicates.
    let blocks = db.blocks();
    let got = all(&db, "m");
    assert_eq!(got.len(), SERIES);
    for s in &got {
        assert!(s.samples.windows(2).all(|w| w[0].t < w[1].t));
        assert_eq!(s.samples.last().map(|x| x.t), Some(100 * MIN - 15_000));
        let first = blocks.first().map_or(s.samples[0].t, |b| b.min_time);
        let want = ((100 * MIN - first) / 15_000) as usize;
        assert_eq!(s.samples.len(), want, "{}", s.labels);
    }
    assert!(
        std::fs::read_dir(dir.path().join("blocks"))
            .unwrap()
            .all(|e| !e.unwrap().file_name().to_string_lossy().contains('.'))
    );
}
