//! Clock jumps: the wall clock (injected) and the sample timestamps that follow it stepping
//! forward by days or back by an hour. Head cuts and compaction must not produce overlapping
//! or empty blocks, retention must not delete fresh data, far-future samples are refused as
//! "out of bounds", and appends go on.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use common::*;
use lookout_storage::{AppendError, Appendable, Sample};
use lookout_tsdb::block::BlockMeta;
use lookout_tsdb::{Clock, Tsdb, TsdbOptions};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
const STEP: i64 = 15_000;
/// 2026-01-01T00:00:00Z, aligned to two hours.
const T0: i64 = 1_767_225_600_000;

struct Wall(Arc<AtomicI64>);

impl Wall {
    fn new(t: i64) -> (Wall, Clock) {
        let now = Arc::new(AtomicI64::new(t));
        let c = now.clone();
        (Wall(now), Clock::from_fn(move || c.load(Ordering::SeqCst)))
    }
    fn set(&self, t: i64) {
        self.0.store(t, Ordering::SeqCst);
    }
}

fn opts(clock: Clock) -> TsdbOptions {
    TsdbOptions {
        clock,
        compaction: false,
        ..small_opts()
    }
}

/// One scrape of `n` series at `t` (value derived from t); errors per sample are returned.
fn scrape(db: &Tsdb, n: usize, t: i64) -> Vec<AppendError> {
    let mut app = db.appender();
    let mut errs = Vec::new();
    for i in 0..n {
        if let Err(e) = app.append(None, &series("m", i), t, value(i, t)) {
            errs.push(e);
        }
    }
    app.commit().expect("commit");
    errs
}

fn value(i: usize, t: i64) -> f64 {
    (t / STEP) as f64 + i as f64
}

/// Scrapes every 15 s over `[from, to)`, moving the wall clock along; returns the errors.
fn scrape_range(db: &Tsdb, wall: &Wall, n: usize, from: i64, to: i64) -> Vec<AppendError> {
    let mut errs = Vec::new();
    let mut t = from;
    while t < to {
        wall.set(t);
        errs.extend(scrape(db, n, t));
        t += STEP;
    }
    errs
}

/// Compares sample lists without printing thousands of samples on failure.
fn same(got: &[Sample], want: &[Sample]) {
    let first_diff = got.iter().zip(want).position(|(a, b)| a != b);
    assert!(
        got.len() == want.len() && first_diff.is_none(),
        "got {} samples, want {}; first difference at {first_diff:?}: got {:?}, want {:?}",
        got.len(),
        want.len(),
        first_diff.map(|i| got[i]),
        first_diff.map(|i| want[i]),
    );
}

fn expected(i: usize, ranges: &[(i64, i64)]) -> Vec<Sample> {
    let mut out = Vec::new();
    for &(from, to) in ranges {
        let mut t = from;
        while t < to {
            out.push(Sample { t, v: value(i, t) });
            t += STEP;
        }
    }
    out
}

/// Blocks are sorted, non-empty and do not overlap.
fn check_blocks(blocks: &[BlockMeta]) {
    for b in blocks {
        assert!(
            b.stats.samples > 0 && b.stats.series > 0,
            "empty block {b:?}"
        );
        assert!(b.min_time < b.max_time, "inverted block {b:?}");
    }
    for w in blocks.windows(2) {
        assert!(
            w[0].max_time <= w[1].min_time,
            "overlapping blocks {:?} and {:?}",
            w[0],
            w[1]
        );
    }
}

#[test]
fn far_future_samples_are_out_of_bounds_and_appends_go_on() {
    let (wall, clock) = Wall::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), opts(clock));
    assert!(scrape(&db, 3, T0).is_empty());
    // Within the 10-minute allowance: stored.
    assert!(scrape(&db, 3, T0 + 9 * MIN).is_empty());
    // A sender with a clock a day ahead: refused, with Prometheus's wording.
    let errs = scrape(&db, 3, T0 + DAY);
    assert_eq!(errs.len(), 3);
    assert_eq!(errs[0], AppendError::TooNew);
    assert!(
        errs[0].to_string().starts_with("out of bounds"),
        "{}",
        errs[0]
    );
    assert_eq!(metric(&db, "lookout_tsdb_too_new_samples_total"), 3.0);
    // The refused sample did not move the head's max time, so retention (measured from
    // the newest sample) keeps everything.
    db.enforce_retention().unwrap();
    assert_eq!(
        samples_of(&db, &series("m", 1)),
        vec![
            Sample {
                t: T0,
                v: value(1, T0)
            },
            Sample {
                t: T0 + 9 * MIN,
                v: value(1, T0 + 9 * MIN)
            }
        ]
    );
    // Appends go on, and once the wall clock gets there the same timestamp is accepted.
    assert!(scrape(&db, 3, T0 + 10 * MIN).is_empty());
    wall.set(T0 + DAY);
    assert!(scrape(&db, 3, T0 + DAY).is_empty());
    assert_eq!(samples_of(&db, &series("m", 2)).len(), 4);
}

#[test]
fn clock_jump_forward_by_days_keeps_fresh_data_and_cuts_clean_blocks() {
    let (wall, clock) = Wall::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), opts(clock.clone()));
    let n = 20;
    // Five hours, then the clock jumps three days forward and scraping goes on for five.
    assert!(scrape_range(&db, &wall, n, T0, T0 + 5 * HOUR).is_empty());
    let jump = T0 + 3 * DAY + 7 * MIN;
    assert!(scrape_range(&db, &wall, n, jump, jump + 5 * HOUR).is_empty());
    db.compact().unwrap();
    let out = db.enforce_retention().unwrap();
    assert_eq!(out.blocks_removed, 0, "{out:?}");
    assert_eq!(out.chunks_removed, 0, "{out:?}");
    let blocks = db.blocks();
    assert!(blocks.len() >= 2, "{blocks:?}");
    check_blocks(&blocks);
    let ranges = [(T0, T0 + 5 * HOUR), (jump, jump + 5 * HOUR)];
    for i in [0, 19] {
        same(&samples_of(&db, &series("m", i)), &expected(i, &ranges));
    }
    db.close().unwrap();
    drop(db);
    // Reopened: same blocks, same data, nothing aged out.
    let db = open(dir.path(), opts(clock));
    check_blocks(&db.blocks());
    same(&samples_of(&db, &series("m", 7)), &expected(7, &ranges));
}

#[test]
fn clock_jump_back_refuses_old_timestamps_then_resumes() {
    let (wall, clock) = Wall::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), opts(clock.clone()));
    let n = 10;
    assert!(scrape_range(&db, &wall, n, T0, T0 + 5 * HOUR).is_empty());
    // The clock steps an hour back: those scrapes are out of order (counted, not stored)...
    let back = T0 + 4 * HOUR + 7_000;
    // (up to the newest stored sample: anything past it is simply in order)
    let errs = scrape_range(&db, &wall, n, back, T0 + 5 * HOUR - STEP);
    assert!(!errs.is_empty());
    assert!(
        errs.iter().all(|e| *e == AppendError::OutOfOrder),
        "{errs:?}"
    );
    // ...and once it passes the newest sample, scraping stores again.
    assert!(scrape_range(&db, &wall, n, T0 + 5 * HOUR, T0 + 7 * HOUR).is_empty());
    db.compact().unwrap();
    check_blocks(&db.blocks());
    same(
        &samples_of(&db, &series("m", 3)),
        &expected(3, &[(T0, T0 + 7 * HOUR)]),
    );
}

#[test]
fn clock_jump_back_with_out_of_order_window_merges_without_overlap() {
    let (wall, clock) = Wall::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let o = TsdbOptions {
        out_of_order_window: Duration::from_secs(3 * 3600),
        ..opts(clock)
    };
    let db = open(dir.path(), o);
    let n = 10;
    assert!(scrape_range(&db, &wall, n, T0, T0 + 5 * HOUR).is_empty());
    // Cut what can be cut, then the clock steps back 2 h (timestamps 7 s off the grid, so
    // they are new samples, stored out of order, partly below the cut line).
    db.compact().unwrap();
    let cut = db.blocks();
    assert!(!cut.is_empty());
    let back = T0 + 3 * HOUR + 7_000;
    assert!(scrape_range(&db, &wall, n, back, back + HOUR).is_empty());
    assert!(scrape_range(&db, &wall, n, T0 + 5 * HOUR, T0 + 8 * HOUR).is_empty());
    db.flush_head().unwrap();
    db.compact().unwrap();
    let blocks = db.blocks();
    check_blocks(&blocks);
    let got = samples_of(&db, &series("m", 4));
    let mut want = expected(4, &[(T0, T0 + 8 * HOUR), (back, back + HOUR)]);
    want.sort_by_key(|s| s.t);
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
}
