mod common;

use std::fs;
use std::path::Path;

use common::*;
use lookout_storage::{Appendable, Queryable};
use lookout_tsdb::{Tsdb, TsdbError, TsdbOptions};

/// Appends `batches` batches (one sample per series per batch at t = batch*1000) to series
/// `name`/0..n and returns the length of WAL segment `seg` after each commit.
fn write_batches(
    db: &Tsdb,
    name: &str,
    n: usize,
    batches: std::ops::Range<i64>,
    seg: &Path,
) -> Vec<u64> {
    let mut lens = Vec::new();
    for b in batches {
        let mut app = db.appender();
        for i in 0..n {
            app.append(None, &series(name, i), b * 1000, b as f64)
                .unwrap();
        }
        app.commit().unwrap();
        lens.push(fs::metadata(seg).map(|m| m.len()).unwrap_or(0));
    }
    lens
}

fn batches_present(db: &Tsdb, name: &str, n: usize) -> Vec<i64> {
    let got = all(db, name);
    assert!(got.len() <= n);
    let mut per_batch: Option<Vec<i64>> = None;
    for s in &got {
        let ts: Vec<i64> = s.samples.iter().map(|x| x.t / 1000).collect();
        for x in &s.samples {
            assert_eq!(x.v, (x.t / 1000) as f64);
        }
        match &per_batch {
            None => per_batch = Some(ts),
            Some(p) => assert_eq!(p, &ts, "every series has the same batches"),
        }
    }
    per_batch.unwrap_or_default()
}

#[test]
fn replay_restores_head_and_reloads_mmapped_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("wal/00000001");
    let (before, stats) = {
        let db = open(dir.path(), small_opts());
        write_batches(&db, "r", 20, 0..700, &seg);
        let stats = db.stats();
        assert!(stats.mmapped_chunks >= 20 * 5, "{stats:?}");
        (all(&db, "r"), stats)
    };
    let db = open(dir.path(), small_opts());
    let after = all(&db, "r");
    assert_eq!(after, before);
    assert_eq!(after[0].samples.len(), 700);
    let s2 = db.stats();
    assert_eq!(s2.series, 20);
    assert_eq!(
        s2.mmapped_chunks, stats.mmapped_chunks,
        "chunks reloaded from the chunk files"
    );
    assert_eq!(s2.max_time, Some(699_000));
    assert_eq!(s2.min_time, Some(0));
    // Appending continues where it stopped.
    let mut app = db.appender();
    assert_eq!(
        app.append(None, &series("r", 0), 699_000, 1.0),
        Err(lookout_storage::AppendError::DuplicateSampleForTimestamp)
    );
    app.append(None, &series("r", 0), 700_000, 700.0).unwrap();
    app.commit().unwrap();
    assert_eq!(samples_of(&db, &series("r", 0)).len(), 701);
}

#[test]
fn checkpoints_keep_the_wal_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let opts = TsdbOptions {
        wal_segment_size: 32 << 10,
        ..small_opts()
    };
    let seg = dir.path().join("wal/00000001");
    {
        let db = open(dir.path(), opts.clone());
        let mut max_wal = 0;
        for round in 0..20 {
            write_batches(&db, "c", 50, round * 100..(round + 1) * 100, &seg);
            db.checkpoint().unwrap();
            max_wal = max_wal.max(db.stats().wal_bytes);
        }
        let st = db.stats();
        // 100k samples went through a WAL that never held more than a few segments.
        assert!(
            max_wal <= 4 * (32 << 10) + (16 << 10),
            "WAL grew to {max_wal} bytes"
        );
        assert!(st.wal_segments <= 4, "{st:?}");
        assert!(metric(&db, "lookout_tsdb_checkpoints_total") >= 1.0);
        assert!(fs::read_dir(dir.path().join("wal")).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("checkpoint.")
        }));
    }
    let db = open(dir.path(), opts);
    let present = batches_present(&db, "c", 50);
    assert_eq!(present, (0..2000).collect::<Vec<_>>());
    assert_eq!(all(&db, "c").len(), 50);
}

/// Builds a store with batches 0..10 in segment 1 and 10..15 in segment 2; returns segment-1
/// lengths after each of its commits.
/// Options under which the few batches of these tests are never cut into chunk files (the
/// first chunk's length is spread per series up to `samples_per_chunk`; for series 1..=5
/// it is in the thousands), so the WAL alone holds them and a corrupt record decides what
/// comes back.
fn wal_only_opts() -> TsdbOptions {
    TsdbOptions {
        samples_per_chunk: usize::from(u16::MAX),
        ..small_opts()
    }
}

fn two_segments(dir: &Path) -> Vec<u64> {
    let seg1 = dir.join("wal/00000001");
    let lens = {
        let db = open(dir, wal_only_opts());
        write_batches(&db, "w", 5, 0..10, &seg1)
    };
    let db = open(dir, wal_only_opts());
    write_batches(&db, "w", 5, 10..15, &dir.join("wal/00000002"));
    lens
}

fn reopen_and_check(dir: &Path, want: std::ops::Range<i64>) {
    let db = open(dir, wal_only_opts());
    assert_eq!(
        batches_present(&db, "w", 5),
        want.clone().collect::<Vec<_>>()
    );
    assert_eq!(metric(&db, "lookout_tsdb_wal_corruptions_total"), 1.0);
    // Keeps serving: new data goes in and a further restart is clean.
    let next = want.end;
    write_batches(&db, "w", 5, next..next + 1, &dir.join("wal/none"));
    drop(db);
    let db = open(dir, wal_only_opts());
    assert_eq!(metric(&db, "lookout_tsdb_wal_corruptions_total"), 0.0);
    assert_eq!(
        batches_present(&db, "w", 5),
        (want.start..next + 1).collect::<Vec<_>>()
    );
}

#[test]
fn garbage_after_the_last_record_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let seg1 = dir.path().join("wal/00000001");
    let lens = {
        let db = open(dir.path(), small_opts());
        write_batches(&db, "w", 5, 0..10, &seg1)
    };
    let mut bytes = fs::read(&seg1).unwrap();
    bytes.extend_from_slice(b"\x13\x00\x00\x00garbage garbage garbage");
    fs::write(&seg1, &bytes).unwrap();
    reopen_and_check(dir.path(), 0..10);
    assert!(fs::metadata(&seg1).unwrap().len() == lens[9]);
}

#[test]
fn record_chopped_in_half_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let seg1 = dir.path().join("wal/00000001");
    let lens = {
        let db = open(dir.path(), small_opts());
        write_batches(&db, "w", 5, 0..10, &seg1)
    };
    let f = fs::OpenOptions::new().write(true).open(&seg1).unwrap();
    f.set_len((lens[8] + lens[9]) / 2).unwrap();
    drop(f);
    reopen_and_check(dir.path(), 0..9);
}

#[test]
fn flipped_crc_stops_replay_and_drops_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let lens = two_segments(dir.path());
    let seg1 = dir.path().join("wal/00000001");
    let mut bytes = fs::read(&seg1).unwrap();
    // The CRC of the record of batch 5 sits 4 bytes into its frame.
    bytes[lens[4] as usize + 4] ^= 0x55;
    fs::write(&seg1, &bytes).unwrap();
    // Batches 10..15 lived in segment 2: reopen_and_check sees exactly 0..5, so it was dropped.
    reopen_and_check(dir.path(), 0..5);
}

#[test]
fn torn_chunk_file_tail_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("wal/00000001");
    {
        let db = open(dir.path(), small_opts());
        write_batches(&db, "k", 3, 0..400, &seg);
    }
    let chunk = dir.path().join("chunks_head/000001");
    let mut bytes = fs::read(&chunk).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0xff; // corrupt the CRC of the last chunk record
    fs::write(&chunk, &bytes).unwrap();
    let db = open(dir.path(), small_opts());
    assert_eq!(
        metric(&db, "lookout_tsdb_head_chunk_corruptions_total"),
        1.0
    );
    // The WAL still holds the samples of the lost chunk, so nothing is missing.
    assert_eq!(batches_present(&db, "k", 3), (0..400).collect::<Vec<_>>());
}

#[test]
fn a_data_dir_is_opened_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), small_opts());
    assert!(matches!(
        Tsdb::open(dir.path(), small_opts()),
        Err(TsdbError::Locked(_))
    ));
    db.close().unwrap();
    assert!(
        db.select(&[], &lookout_storage::SelectHints::range(0, 1))
            .is_err()
    );
    drop(db);
    open(dir.path(), small_opts());
}
