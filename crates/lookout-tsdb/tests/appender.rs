mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use lookout_storage::memory::MemStorage;
use lookout_storage::{
    AppendError, Appendable, Labels, MatchOp, Matcher, Queryable, STALE_NAN, Sample, SelectHints,
    SeriesRef, StorageError, is_stale_nan,
};
use lookout_tsdb::TsdbOptions;

#[test]
fn in_order_duplicates_and_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), small_opts());
    let l = series("m", 0);
    let mut app = db.appender();
    let r = app.append(None, &l, 1000, 1.0).unwrap();
    assert_eq!(app.append(Some(r), &l, 2000, 2.0).unwrap(), r);
    // Same timestamp, same value: a no-op; different value: refused.
    assert_eq!(app.append(Some(r), &l, 2000, 2.0).unwrap(), r);
    assert_eq!(
        app.append(Some(r), &l, 2000, 3.0),
        Err(AppendError::DuplicateSampleForTimestamp)
    );
    assert_eq!(
        app.append(Some(r), &l, 1500, 3.0),
        Err(AppendError::OutOfOrder)
    );
    app.commit().unwrap();

    let mut app = db.appender();
    assert_eq!(
        app.append(Some(r), &l, 2000, 2.0).unwrap(),
        r,
        "same sample again is fine"
    );
    assert_eq!(
        app.append(Some(r), &l, 2000, 5.0),
        Err(AppendError::DuplicateSampleForTimestamp)
    );
    assert_eq!(app.append(None, &l, 10, 5.0), Err(AppendError::OutOfOrder));
    app.append(None, &l, 3000, STALE_NAN).unwrap();
    app.commit().unwrap();

    let got = samples_of(&db, &l);
    assert_eq!(got.len(), 3);
    assert_eq!((got[0].t, got[1].t, got[2].t), (1000, 2000, 3000));
    assert!(
        is_stale_nan(got[2].v),
        "staleness marker bit pattern is kept"
    );
    assert!(metric(&db, "lookout_tsdb_out_of_order_samples_total") >= 2.0);
    assert!(metric(&db, "lookout_tsdb_duplicate_samples_total") >= 2.0);
    assert_eq!(metric(&db, "lookout_tsdb_head_samples_appended_total"), 3.0);
}

/// Appending by reference: the same validation as with labels, batch-local series found
/// again, and an unknown reference answered so the caller can retry with labels.
#[test]
fn append_by_ref_validates_and_reports_unknown_refs() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), small_opts());
    let l = series("m", 0);
    let mut app = db.appender();
    let r = app.append(None, &l, 1000, 1.0).unwrap();
    // A series created in this very batch is known by reference already.
    assert_eq!(app.append_by_ref(r, 2000, 2.0), Ok(r));
    assert_eq!(
        app.append_by_ref(r, 1500, 3.0),
        Err(AppendError::OutOfOrder)
    );
    assert_eq!(
        app.append_by_ref(SeriesRef(r.0 + 1000), 2000, 1.0),
        Err(AppendError::UnknownSeriesRef)
    );
    app.commit().unwrap();
    let mut app = db.appender();
    assert_eq!(app.append_by_ref(r, 3000, 3.0), Ok(r));
    assert_eq!(
        app.append_by_ref(r, 3000, 4.0),
        Err(AppendError::DuplicateSampleForTimestamp)
    );
    assert_eq!(
        app.append_by_ref(r, i64::MAX, 4.0),
        Err(AppendError::TooNew)
    );
    app.commit().unwrap();
    let got = all(&db, "m");
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].samples,
        vec![
            Sample { t: 1000, v: 1.0 },
            Sample { t: 2000, v: 2.0 },
            Sample { t: 3000, v: 3.0 }
        ]
    );
}

/// Handles: taken for committed series only, appended through with the same validation,
/// and refused once the series was garbage collected (the caller falls back to labels).
#[test]
fn series_handles_append_and_go_stale_with_their_series() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), small_opts());
    let l = series("m", 0);
    let mut app = db.appender();
    let r = app.append(None, &l, 1000, 1.0).unwrap();
    assert!(
        app.series_handle(r).is_none(),
        "created by this batch: no handle yet"
    );
    app.commit().unwrap();

    let mut app = db.appender();
    let h = app.series_handle(r).expect("committed series");
    assert_eq!(app.append_by_handle(&h, 2000, 2.0), Ok(r));
    assert_eq!(
        app.append_by_handle(&h, 1500, 2.0),
        Err(AppendError::OutOfOrder)
    );
    // The same series by reference in the same batch is one pending series.
    assert_eq!(
        app.append_by_ref(r, 2000, 9.0),
        Err(AppendError::DuplicateSampleForTimestamp)
    );
    assert_eq!(app.append_by_handle(&h, 3000, 3.0), Ok(r));
    app.commit().unwrap();
    assert!(db.appender().series_handle(SeriesRef(r.0 + 99)).is_none());

    // Another series moves time on past the retention: `m` has no data left and is
    // collected. The old handle and reference are refused; the labels create it anew.
    let later = 3000 + 100 * 24 * 3_600_000;
    let mut app = db.appender();
    app.append(None, &series("other", 0), later, 1.0).unwrap();
    app.commit().unwrap();
    db.enforce_retention().unwrap();
    let mut app = db.appender();
    assert_eq!(
        app.append_by_handle(&h, later, 4.0),
        Err(AppendError::UnknownSeriesRef)
    );
    assert_eq!(
        app.append_by_ref(r, later, 4.0),
        Err(AppendError::UnknownSeriesRef)
    );
    let r2 = app.append(None, &l, later, 4.0).unwrap();
    assert_ne!(r2, r);
    app.commit().unwrap();
    let got = all(&db, "m");
    assert_eq!(got.len(), 1);
    let ts: Vec<i64> = got[0].samples.iter().map(|s| s.t).collect();
    assert_eq!(ts, vec![later]);
}

#[test]
fn rollback_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), small_opts());
    let kept = series("kept", 0);
    let mut app = db.appender();
    app.append(None, &kept, 1000, 1.0).unwrap();
    app.commit().unwrap();

    let mut app = db.appender();
    let r = app.append(None, &series("ghost", 0), 2000, 1.0).unwrap();
    app.append(None, &kept, 2000, 2.0).unwrap();
    app.rollback();
    assert_eq!(
        db.stats().series,
        1,
        "no series created by a rolled-back batch"
    );
    assert!(all(&db, "ghost").is_empty());
    assert_eq!(
        db.label_values("__name__", &[], i64::MIN, i64::MAX)
            .unwrap(),
        vec!["kept"]
    );
    assert_eq!(samples_of(&db, &kept), vec![Sample { t: 1000, v: 1.0 }]);

    // The dangling ref from the rolled-back batch falls back to the labels.
    let mut app = db.appender();
    app.append(Some(r), &series("ghost", 0), 3000, 1.0).unwrap();
    app.commit().unwrap();
    assert_eq!(all(&db, "ghost").len(), 1);

    // An appender dropped without commit behaves like a rollback.
    {
        let mut app = db.appender();
        app.append(None, &series("dropped", 0), 3000, 1.0).unwrap();
    }
    assert!(all(&db, "dropped").is_empty());
    assert_eq!(db.stats().series, 2);
}

#[test]
fn out_of_order_window_and_too_old() {
    let dir = tempfile::tempdir().unwrap();
    let opts = TsdbOptions {
        out_of_order_window: Duration::from_secs(600),
        retention: Duration::from_secs(3600),
        out_of_order_cap: 4,
        ..small_opts()
    };
    let db = open(dir.path(), opts.clone());
    let l = series("ooo", 0);
    let base = 10_000_000;
    let mut app = db.appender();
    for i in 0..10 {
        app.append(None, &l, base + i * 60_000, i as f64).unwrap();
    }
    app.commit().unwrap();
    let newest = base + 9 * 60_000;
    let mut app = db.appender();
    // Within the 10 minute window: stored, merged in time order.
    for k in 0..9 {
        app.append(None, &l, newest - 30_000 - k * 60_000, -1.0)
            .unwrap();
    }
    // Older than the window: too old.
    assert_eq!(
        app.append(None, &l, newest - 700_000, 1.0),
        Err(AppendError::TooOld)
    );
    // Older than retention: too old even for a new series.
    assert_eq!(
        app.append(None, &series("ooo", 1), newest - 4_000_000, 1.0),
        Err(AppendError::TooOld)
    );
    app.commit().unwrap();
    let check = |db: &lookout_tsdb::Tsdb| {
        let got = samples_of(db, &l);
        assert!(got.windows(2).all(|w| w[0].t < w[1].t), "sorted by time");
        let in_window: Vec<&Sample> = got.iter().filter(|s| s.v == -1.0).collect();
        // newest-30s-k*60s for k=0..9, but only those ≥ newest-600s: k=0..9 → t ≥ newest-510s … all 9 within.
        assert_eq!(in_window.len(), 9);
        assert_eq!(got.len(), 19);
    };
    check(&db);
    assert!(metric(&db, "lookout_tsdb_out_of_order_samples_appended_total") == 9.0);
    assert!(metric(&db, "lookout_tsdb_too_old_samples_total") >= 2.0);
    // OOO samples survive a restart (some in OOO chunk files, the rest replayed from the WAL).
    db.close().unwrap();
    drop(db);
    let db = open(dir.path(), opts);
    check(&db);
}

#[test]
fn far_future_samples_can_be_refused() {
    let dir = tempfile::tempdir().unwrap();
    let opts = TsdbOptions {
        max_future: Some(Duration::from_secs(3600)),
        ..small_opts()
    };
    let db = open(dir.path(), opts);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut app = db.appender();
    app.append(None, &series("f", 0), now + 1000, 1.0).unwrap();
    assert_eq!(
        app.append(None, &series("f", 0), now + 7_200_000, 1.0),
        Err(AppendError::TooNew)
    );
    app.commit().unwrap();
    assert_eq!(metric(&db, "lookout_tsdb_too_new_samples_total"), 1.0);
}

#[test]
fn label_limits_and_series_limit() {
    let dir = tempfile::tempdir().unwrap();
    let opts = TsdbOptions {
        max_series: Some(2),
        max_labels_per_series: 3,
        max_label_name_len: 8,
        max_label_value_len: 10,
        ..small_opts()
    };
    let db = open(dir.path(), opts);
    let mut app = db.appender();
    let many = Labels::from_pairs([("a", "1"), ("b", "1"), ("c", "1"), ("d", "1")]);
    assert_eq!(
        app.append(None, &many, 1, 1.0),
        Err(AppendError::TooManyLabels { count: 4, limit: 3 })
    );
    let long_name = Labels::from_pairs([("abcdefghijk", "1")]);
    assert!(matches!(
        app.append(None, &long_name, 1, 1.0),
        Err(AppendError::LabelTooLong { limit: 8, .. })
    ));
    let long_value = Labels::from_pairs([("a", "x".repeat(11))]);
    assert!(matches!(
        app.append(None, &long_value, 1, 1.0),
        Err(AppendError::LabelTooLong { limit: 10, .. })
    ));
    assert!(matches!(
        app.append(None, &Labels::EMPTY, 1, 1.0),
        Err(AppendError::InvalidSeries(_))
    ));
    app.append(None, &series("s", 0), 1, 1.0).unwrap();
    app.append(None, &series("s", 1), 1, 1.0).unwrap();
    assert_eq!(
        app.append(None, &series("s", 2), 1, 1.0),
        Err(AppendError::SeriesLimit { limit: 2 })
    );
    app.commit().unwrap();
    let mut app = db.appender();
    assert_eq!(
        app.append(None, &series("s", 3), 2, 1.0),
        Err(AppendError::SeriesLimit { limit: 2 })
    );
    app.append(None, &series("s", 0), 2, 1.0).unwrap();
    app.commit().unwrap();
    assert_eq!(db.stats().series, 2);
}

#[test]
fn select_limits_ranges_and_label_apis() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), small_opts());
    let mut app = db.appender();
    for i in 0..5 {
        for t in 0..300 {
            app.append(
                None,
                &series("cpu", i),
                t * 1000,
                (i * 1000 + t as usize) as f64,
            )
            .unwrap();
        }
    }
    app.append(
        None,
        &Labels::from_pairs([("__name__", "mem"), ("zone", "a")]),
        500_000,
        1.0,
    )
    .unwrap();
    app.commit().unwrap();

    let ms = [Matcher::equal("__name__", "cpu")];
    let got = db.select(&ms, &SelectHints::range(10_000, 19_999)).unwrap();
    assert_eq!(got.len(), 5);
    assert!(
        got.windows(2).all(|w| w[0].labels < w[1].labels),
        "sorted by labels"
    );
    assert!(
        got.iter()
            .all(|s| s.samples.len() == 10 && s.samples[0].t == 10_000)
    );
    let hints = SelectHints {
        max_samples: Some(49),
        ..SelectHints::range(10_000, 19_999)
    };
    assert!(matches!(
        db.select(&ms, &hints),
        Err(StorageError::TooManySamples { limit: 49 })
    ));
    let hints = SelectHints {
        max_series: Some(4),
        ..SelectHints::range(0, 1)
    };
    assert!(matches!(
        db.select(&ms, &hints),
        Err(StorageError::TooManySeries { limit: 4 })
    ));
    let hints = SelectHints {
        max_series: Some(5),
        max_samples: Some(50),
        ..SelectHints::range(10_000, 19_999)
    };
    assert_eq!(db.select(&ms, &hints).unwrap().len(), 5);

    // Series without samples in range are not returned, by any API.
    assert!(
        db.select(&ms, &SelectHints::range(400_000, 600_000))
            .unwrap()
            .is_empty()
    );
    assert!(db.series(&ms, 400_000, 600_000).unwrap().is_empty());
    assert_eq!(
        db.label_names(&[], 400_000, 600_000).unwrap(),
        vec!["__name__", "zone"]
    );
    assert_eq!(
        db.label_names(&[], 0, 10).unwrap(),
        vec!["__name__", "instance", "job"]
    );
    assert_eq!(
        db.label_values("__name__", &[], 0, i64::MAX).unwrap(),
        vec!["cpu", "mem"]
    );
    assert_eq!(
        db.label_values("__name__", &[], 400_000, 600_000).unwrap(),
        vec!["mem"]
    );
    let re = Matcher::new(MatchOp::Regex, "instance", "host-[12]").unwrap();
    assert_eq!(
        db.label_values("instance", std::slice::from_ref(&re), 0, i64::MAX)
            .unwrap(),
        vec!["host-1", "host-2"]
    );
    assert_eq!(
        db.series(&[re], 0, i64::MAX).unwrap(),
        vec![series("cpu", 1), series("cpu", 2)]
    );
    assert_eq!(
        db.label_names(&[Matcher::equal("zone", "a")], 0, i64::MAX)
            .unwrap(),
        vec!["__name__", "zone"]
    );
    assert!(
        db.label_values("nope", &[], 0, i64::MAX)
            .unwrap()
            .is_empty()
    );
}

/// Deterministic pseudo-random workload checked against the reference `MemStorage`.
#[test]
fn matches_reference_storage() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(
        dir.path(),
        TsdbOptions {
            samples_per_chunk: 17,
            ..small_opts()
        },
    );
    let mem = MemStorage::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let names = ["a", "b", "c"];
    let mut t = 0i64;
    for _batch in 0..60 {
        let mut app = db.appender();
        let mut mapp = mem.appender();
        for _ in 0..40 {
            let i = (next() % 20) as usize;
            let l = Labels::from_pairs([
                ("__name__", names[i % 3].to_string()),
                ("id", i.to_string()),
                ("parity", (i % 2).to_string()),
            ]);
            t += (next() % 3) as i64;
            let v = (next() % 1000) as f64 / 7.0;
            let a = app.append(None, &l, t, v).map(|_| ());
            let b = mapp.append(None, &l, t, v).map(|_| ());
            assert_eq!(a, b, "append outcome differs at t={t}");
        }
        app.commit().unwrap();
        mapp.commit().unwrap();
    }
    let queries: Vec<Vec<Matcher>> = vec![
        vec![Matcher::equal("__name__", "a")],
        vec![Matcher::not_equal("parity", "0")],
        vec![
            Matcher::new(MatchOp::Regex, "id", "1.*").unwrap(),
            Matcher::equal("parity", "1"),
        ],
        vec![Matcher::new(MatchOp::NotRegex, "__name__", "a|b").unwrap()],
        vec![Matcher::equal("missing", "")],
    ];
    for ms in &queries {
        for (s, e) in [(i64::MIN, i64::MAX), (100, 900), (t / 2, t / 2 + 50)] {
            let hints = SelectHints::range(s, e);
            assert_eq!(
                db.select(ms, &hints).unwrap(),
                mem.select(ms, &hints).unwrap(),
                "select {ms:?} [{s},{e}]"
            );
        }
        assert_eq!(
            db.series(ms, i64::MIN, i64::MAX).unwrap(),
            mem.series(ms, i64::MIN, i64::MAX).unwrap()
        );
        assert_eq!(
            db.label_values("id", ms, i64::MIN, i64::MAX).unwrap(),
            mem.label_values("id", ms, i64::MIN, i64::MAX).unwrap()
        );
    }
}

#[test]
fn concurrent_appenders_and_readers() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(open(dir.path(), small_opts()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut refs: Vec<Option<SeriesRef>> = vec![None; 50];
                for b in 0..200i64 {
                    let mut app = db.appender();
                    for (i, r) in refs.iter_mut().enumerate() {
                        // Writers share half of the series, so commits race on them.
                        let l = series("conc", if i < 25 { i } else { 1000 + w * 100 + i });
                        match app.append(*r, &l, b * 1000 + w as i64, b as f64) {
                            Ok(nr) => *r = Some(nr),
                            Err(
                                AppendError::OutOfOrder | AppendError::DuplicateSampleForTimestamp,
                            ) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                    app.commit().unwrap();
                }
            })
        })
        .collect();
    let reader = {
        let db = db.clone();
        std::thread::spawn(move || {
            for _ in 0..100 {
                let got = all(&db, "conc");
                for s in &got {
                    assert!(s.samples.windows(2).all(|w| w[0].t < w[1].t));
                }
                db.label_values("instance", &[], i64::MIN, i64::MAX)
                    .unwrap();
            }
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    reader.join().unwrap();
    let got = all(&db, "conc");
    assert_eq!(got.len(), 25 + 4 * 25);
    for s in &got {
        let own = s
            .labels
            .get("instance")
            .is_some_and(|i| i.len() > "host-24".len());
        if own {
            assert_eq!(s.samples.len(), 200, "{}", s.labels);
        } else {
            assert!(s.samples.len() >= 200, "{}", s.labels);
        }
    }
}
