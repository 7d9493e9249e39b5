//! The read path over blocks: a day of backfilled data big enough for the parallel decode,
//! selected whole and in partial ranges (also through the streaming `select_each`), with
//! overlapping head samples and sample limits.

mod common;

use std::time::Duration;

use common::*;
use lookout_storage::{
    Appendable, Labels, MatchOp, Matcher, Queryable, Sample, SelectHints, StorageError,
};
use lookout_tsdb::{Tsdb, TsdbOptions};

const START: i64 = 1_700_000_000_000;
const STEP: i64 = 15_000;
/// 24 h at 15 s.
const N: i64 = 5_760;
const SERIES: usize = 40;

fn value(i: usize, k: i64) -> f64 {
    // Counters with a reset now and then, some decimals, a NaN.
    match (k + i as i64) % 997 {
        0 => f64::NAN,
        r => (k % 1_500) as f64 * 1.25 + r as f64 / 100.0,
    }
}

fn data() -> Vec<(Labels, Vec<Sample>)> {
    (0..SERIES)
        .map(|i| {
            let samples = (0..N)
                .map(|k| Sample {
                    t: START + k * STEP,
                    v: value(i, k),
                })
                .collect();
            (series("q", i), samples)
        })
        .collect()
}

fn opts() -> TsdbOptions {
    TsdbOptions {
        compaction: false,
        retention: Duration::from_secs(30 * 24 * 3600),
        ..small_opts()
    }
}

fn same(a: &[Sample], b: &[Sample]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.t == y.t && x.v.to_bits() == y.v.to_bits())
}

fn expect_range(want: &[(Labels, Vec<Sample>)], got: &[lookout_storage::Series], lo: i64, hi: i64) {
    let want: Vec<(&Labels, Vec<Sample>)> = want
        .iter()
        .map(|(l, s)| {
            (
                l,
                s.iter()
                    .filter(|x| x.t >= lo && x.t <= hi)
                    .copied()
                    .collect(),
            )
        })
        .filter(|(_, s): &(&Labels, Vec<Sample>)| !s.is_empty())
        .collect();
    assert_eq!(got.len(), want.len());
    for (g, (l, s)) in got.iter().zip(&want) {
        assert_eq!(&g.labels, *l);
        assert!(same(&g.samples, s), "{} differs in [{lo}, {hi}]", g.labels);
    }
}

/// [`Queryable::select_each`]'s series collected in index order, checked to be numbered in
/// label order.
fn select_each(
    db: &Tsdb,
    q: &[Matcher],
    hints: &SelectHints,
) -> Result<Vec<lookout_storage::Series>, StorageError> {
    let seen = std::sync::Mutex::new(Vec::new());
    let n = db.select_each(q, hints, &|i, labels, samples| {
        seen.lock().unwrap().push((
            i,
            lookout_storage::Series {
                labels: labels.clone(),
                samples: samples.to_vec(),
            },
        ));
    })?;
    let mut seen = seen.into_inner().unwrap();
    seen.sort_by_key(|x| x.0);
    assert!(
        seen.windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1.labels < w[1].1.labels)
    );
    assert_eq!(n, seen.iter().map(|x| x.1.samples.len()).sum::<usize>());
    Ok(seen.into_iter().map(|x| x.1).collect())
}

#[test]
fn a_day_of_blocks_selects_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut want = data();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    let metas = lookout_tsdb::backfill(dir.path(), want.clone(), opts()).unwrap();
    assert!(metas.len() > 1, "{} blocks", metas.len());
    let db = open(dir.path(), opts());
    let q = [Matcher::equal("__name__", "q")];
    let end = START + (N - 1) * STEP;
    // Whole range, a range inside one chunk, ranges across block boundaries.
    for (lo, hi) in [
        (i64::MIN, i64::MAX),
        (START, end),
        (START + 1_000 * STEP + 1, START + 1_010 * STEP),
        (START + 6 * 3_600_000 - 7 * STEP, START + 20 * 3_600_000 + 3),
        (end, i64::MAX),
    ] {
        let got = db.select(&q, &SelectHints::range(lo, hi)).unwrap();
        expect_range(&want, &got, lo, hi);
        let got = select_each(&db, &q, &SelectHints::range(lo, hi)).unwrap();
        expect_range(&want, &got, lo, hi);
    }
    // A regex selecting some of the series.
    let some = [
        Matcher::equal("__name__", "q"),
        Matcher::new(MatchOp::Regex, "instance", "host-1[0-9]").unwrap(),
    ];
    let got = db.select(&some, &SelectHints::range(START, end)).unwrap();
    assert_eq!(got.len(), 10);
    // Limits: the exact one passes, one sample less is refused.
    let total = SERIES * N as usize;
    let hints = |max| SelectHints {
        max_samples: Some(max),
        ..SelectHints::range(START, end)
    };
    assert_eq!(db.select(&q, &hints(total)).unwrap().len(), SERIES);
    assert!(matches!(
        db.select(&q, &hints(total - 1)),
        Err(StorageError::TooManySamples { .. })
    ));
    assert!(matches!(
        db.select(&q, &hints(1_000)),
        Err(StorageError::TooManySamples { .. })
    ));
    // The streaming form applies the same limits.
    assert_eq!(select_each(&db, &q, &hints(total)).unwrap().len(), SERIES);
    for max in [total - 1, 1_000] {
        assert!(matches!(
            select_each(&db, &q, &hints(max)),
            Err(StorageError::TooManySamples { .. })
        ));
    }
    let few = SelectHints {
        max_series: Some(SERIES - 1),
        ..SelectHints::range(START, end)
    };
    assert!(matches!(
        select_each(&db, &q, &few),
        Err(StorageError::TooManySeries { .. })
    ));
    db.close().unwrap();
}

#[test]
fn head_samples_after_the_blocks_follow_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut want = data();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    lookout_tsdb::backfill(dir.path(), want.clone(), opts()).unwrap();
    let db: Tsdb = open(dir.path(), opts());
    let mut app = db.appender();
    for (l, s) in want.iter_mut() {
        // Past the last block's (2 h aligned) end, so the head accepts them.
        for k in N + 600..N + 700 {
            let x = Sample {
                t: START + k * STEP,
                v: k as f64,
            };
            app.append(None, l, x.t, x.v).unwrap();
            s.push(x);
        }
    }
    app.commit().unwrap();
    let q = [Matcher::equal("__name__", "q")];
    let got = db
        .select(&q, &SelectHints::range(START, START + (N + 800) * STEP))
        .unwrap();
    expect_range(&want, &got, START, START + (N + 800) * STEP);
    let got = select_each(
        &db,
        &q,
        &SelectHints::range(START, START + (N + 800) * STEP),
    )
    .unwrap();
    expect_range(&want, &got, START, START + (N + 800) * STEP);
    db.close().unwrap();
}
