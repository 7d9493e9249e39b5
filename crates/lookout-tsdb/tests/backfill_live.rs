//! Backfilled blocks end at their last sample, not at the end of their aligned window: data
//! imported up to "now" must not make the store refuse the live samples that follow.

mod common;

use common::*;
use lookout_storage::{Appendable, Labels, Sample};
use lookout_tsdb::TsdbOptions;

const HOUR: i64 = 3_600_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[test]
fn live_samples_after_a_backfill_up_to_now_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    // Pick a moment that is not on a 2 h boundary, so an aligned window would end in the future.
    let last = now - 60_000;
    let labels = Labels::from_pairs([("__name__", "requests_total"), ("job", "api")]);
    let samples: Vec<Sample> = (0..=(3 * HOUR / 15_000))
        .map(|i| Sample {
            t: last - 3 * HOUR + i * 15_000,
            v: i as f64,
        })
        .collect();
    let metas = lookout_tsdb::backfill(
        dir.path(),
        vec![(labels.clone(), samples)],
        TsdbOptions::default(),
    )
    .unwrap();
    let newest = metas.iter().map(|m| m.max_time).max().unwrap();
    assert_eq!(
        newest,
        last + 1,
        "the newest block ends right after its last sample"
    );

    let db = open(dir.path(), TsdbOptions::default());
    let mut app = db.appender();
    app.append(None, &labels, now - 30_000, 1e6).unwrap();
    app.commit().unwrap();
    let ts: Vec<i64> = samples_of(&db, &labels).iter().map(|x| x.t).collect();
    assert!(ts.contains(&(now - 30_000)), "live sample stored");
    assert!(ts.contains(&last), "backfilled samples kept");
}
