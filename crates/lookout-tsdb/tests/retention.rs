mod common;

use std::time::Duration;

use common::*;
use lookout_storage::{AppendError, Appendable, Queryable};
use lookout_tsdb::TsdbOptions;

const MIN: i64 = 60_000;

#[test]
fn old_chunks_files_and_series_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let opts = TsdbOptions {
        retention: Duration::from_secs(3600),
        chunk_file_size: 8 << 10,
        samples_per_chunk: 30,
        ..small_opts()
    };
    let db = open(dir.path(), opts.clone());
    let mut app = db.appender();
    // "short" only has data in the first 30 minutes; "long" runs for 3 hours.
    for m in 0..180 {
        if m < 30 {
            app.append(None, &series("short", 0), m * MIN, m as f64)
                .unwrap();
        }
        for j in 0..40 {
            app.append(None, &series("long", j), m * MIN, m as f64)
                .unwrap();
        }
    }
    app.commit().unwrap();
    let files_before = std::fs::read_dir(dir.path().join("chunks_head"))
        .unwrap()
        .count();
    assert_eq!(db.stats().series, 41);
    let chunks = |db: &lookout_tsdb::Tsdb| {
        let st = db.stats();
        st.mmapped_chunks + st.head_chunks
    };
    let chunks_before = chunks(&db);

    let out = db.enforce_retention().unwrap();
    // Cutoff is 179min - 60min = 119min. Each "long" series has three or four 30-sample
    // chunks wholly before it (its first chunk is shorter, by a per-series amount); "short"
    // has one.
    assert_eq!(out.series_removed, 1);
    assert!(
        (3 * 40 + 1..=4 * 40 + 1).contains(&out.chunks_removed),
        "{out:?}"
    );
    assert_eq!(
        chunks_before - chunks(&db),
        out.chunks_removed as u64,
        "{out:?}"
    );
    assert!(out.files_removed >= 1, "{out:?}");
    let files_after = std::fs::read_dir(dir.path().join("chunks_head"))
        .unwrap()
        .count();
    assert!(files_after < files_before);
    let st = db.stats();
    assert_eq!(st.series, 40);
    assert!(st.min_time.is_some_and(|t| t >= 90 * MIN), "{st:?}");
    assert!(all(&db, "short").is_empty());
    assert_eq!(
        db.label_values("__name__", &[], i64::MIN, i64::MAX)
            .unwrap(),
        vec!["long"]
    );
    let long = samples_of(&db, &series("long", 0));
    assert_eq!(long.last().map(|s| s.t), Some(179 * MIN));
    assert!(
        long.first()
            .is_some_and(|s| s.t >= 90 * MIN && s.t <= 119 * MIN)
    );
    assert_eq!(metric(&db, "lookout_tsdb_head_series_removed_total"), 1.0);

    // Too old for the retention window.
    let mut app = db.appender();
    assert_eq!(
        app.append(None, &series("short", 0), 100 * MIN, 1.0),
        Err(AppendError::TooOld)
    );
    // A collected series can come back.
    app.append(None, &series("short", 0), 180 * MIN, 1.0)
        .unwrap();
    app.commit().unwrap();
    assert_eq!(all(&db, "short").len(), 1);

    // The same holds after a restart (the WAL still has the old samples; they are dropped again).
    drop(db);
    let db = open(dir.path(), opts);
    assert_eq!(db.stats().series, 41);
    let long2 = samples_of(&db, &series("long", 0));
    assert!(
        long2.first().is_some_and(|s| s.t >= 90 * MIN),
        "{:?}",
        long2.first()
    );
    assert_eq!(samples_of(&db, &series("short", 0)).len(), 1);
}

#[test]
fn series_emptied_by_a_head_cut_are_collected_at_the_next_pass() {
    let dir = tempfile::tempdir().unwrap();
    let opts = TsdbOptions {
        chunk_range: Duration::from_secs(600),
        retention: Duration::from_secs(24 * 3600),
        compaction: false,
        ..small_opts()
    };
    let db = open(dir.path(), opts);
    // "gone" stops after 5 minutes; "live" runs for an hour.
    for m in 0..60 {
        let mut app = db.appender();
        if m < 5 {
            app.append(None, &series("gone", 0), m * MIN, 1.0).unwrap();
        }
        app.append(None, &series("live", 0), m * MIN, 1.0).unwrap();
        app.commit().unwrap();
    }
    // Nothing is old enough for retention and nothing was cut: a pass removes nothing.
    assert_eq!(db.enforce_retention().unwrap().series_removed, 0);
    assert_eq!(db.stats().series, 2);
    // The cut moves all of "gone" into blocks; the next pass collects the empty series
    // although nothing in the head is older than the retention.
    let (cut, _) = db.compact().unwrap();
    assert!(cut > 0);
    let out = db.enforce_retention().unwrap();
    assert_eq!(out.series_removed, 1, "{out:?}");
    assert_eq!(out.chunks_removed, 0, "{out:?}");
    assert_eq!(db.stats().series, 1);
    // Its samples are still served from the blocks.
    assert_eq!(samples_of(&db, &series("gone", 0)).len(), 5);
    assert_eq!(samples_of(&db, &series("live", 0)).len(), 60);
}
