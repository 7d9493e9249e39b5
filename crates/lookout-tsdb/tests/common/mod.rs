#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use lookout_storage::{Labels, Matcher, Queryable, Sample, SelectHints};
use lookout_tsdb::{Tsdb, TsdbOptions};

pub fn small_opts() -> TsdbOptions {
    TsdbOptions {
        wal_fsync_interval: Duration::from_millis(50),
        wal_segment_size: 64 << 10,
        chunk_file_size: 1 << 20,
        ..TsdbOptions::default()
    }
}

/// Opens the store. A `Locked` answer right after this process closed the same store is
/// retried for up to two seconds: tests in this binary spawn child processes, and a child
/// forked while the store was open holds the inherited lock descriptor until its `exec`
/// closes it (a race of the test harness, not of the store).
pub fn open(dir: &Path, opts: TsdbOptions) -> Tsdb {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        match Tsdb::open(dir, opts.clone()) {
            Err(lookout_tsdb::TsdbError::Locked(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            r => return r.expect("open"),
        }
    }
}

pub fn series(name: &str, i: usize) -> Labels {
    Labels::from_pairs([
        ("__name__", name.to_string()),
        ("instance", format!("host-{i}")),
        ("job", "test".to_string()),
    ])
}

pub fn all(db: &Tsdb, name: &str) -> Vec<lookout_storage::Series> {
    db.select(
        &[Matcher::equal("__name__", name)],
        &SelectHints::range(i64::MIN, i64::MAX),
    )
    .expect("select")
}

pub fn samples_of(db: &Tsdb, labels: &Labels) -> Vec<Sample> {
    let ms: Vec<Matcher> = labels
        .iter()
        .map(|l| Matcher::equal(l.name.clone(), l.value.clone()))
        .collect();
    let got = db
        .select(&ms, &SelectHints::range(i64::MIN, i64::MAX))
        .expect("select");
    got.into_iter()
        .find(|s| &s.labels == labels)
        .map(|s| s.samples)
        .unwrap_or_default()
}

/// The metrics registry rendered in the text format.
pub fn metrics_text(db: &Tsdb) -> String {
    let mut reg = prometheus_client::registry::Registry::default();
    db.register_metrics(&mut reg);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg).expect("encode");
    out
}

pub fn metric(db: &Tsdb, name: &str) -> f64 {
    metrics_text(db)
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("metric {name} not found"))
}
