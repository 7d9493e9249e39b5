//! `Tsdb::cardinality`: the tables behind `/api/v1/status/tsdb`, from the head and, once
//! the head was flushed, from the newest block.

mod common;

use common::*;
use lookout_storage::{Appendable, Labels, Sample};
use lookout_tsdb::Cardinality;

/// 3 series of "requests" (path a/bb/ccc), 1 of "up"; every series has job="api".
fn data() -> Vec<Labels> {
    let mut v: Vec<Labels> = ["a", "bb", "ccc"]
        .iter()
        .map(|p| Labels::from_pairs([("__name__", "requests"), ("job", "api"), ("path", p)]))
        .collect();
    v.push(Labels::from_pairs([("__name__", "up"), ("job", "api")]));
    v
}

fn fill(db: &lookout_tsdb::Tsdb) {
    let mut app = db.appender();
    for l in data() {
        app.append(None, &l, 1_000, 1.0).unwrap();
    }
    app.commit().unwrap();
}

fn check(c: &Cardinality) {
    assert_eq!(c.series, 4);
    assert_eq!(
        c.metrics,
        vec![("requests".to_string(), 3), ("up".to_string(), 1)]
    );
    // Distinct pairs: __name__ x2, job x1, path x3.
    assert_eq!(c.num_label_pairs, 6);
    assert_eq!(
        c.label_value_counts,
        vec![
            ("path".to_string(), 3),
            ("__name__".to_string(), 2),
            ("job".to_string(), 1)
        ]
    );
    // Value length x series: __name__ 8*3 + 2*1 = 26, job 3*4 = 12, path 1+2+3 = 6.
    assert_eq!(
        c.label_value_bytes,
        vec![
            ("__name__".to_string(), 26),
            ("job".to_string(), 12),
            ("path".to_string(), 6)
        ]
    );
    assert_eq!(c.label_pairs[0], ("job=api".to_string(), 4));
    assert_eq!(c.label_pairs[1], ("__name__=requests".to_string(), 3));
}

#[test]
fn head_tables() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), small_opts());
    fill(&db);
    let head = db.cardinality(10).unwrap();
    check(&head);
    let top1 = db.cardinality(1).unwrap();
    assert_eq!(top1.label_pairs.len(), 1);
    assert_eq!(top1.label_value_bytes.len(), 1);
    assert_eq!(top1.num_label_pairs, 6, "the total ignores the limit");
}

#[test]
fn block_tables_when_the_head_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let series = data()
        .into_iter()
        .map(|l| (l, vec![Sample { t: 1_000, v: 1.0 }]))
        .collect();
    lookout_tsdb::backfill(dir.path(), series, small_opts()).unwrap();
    let db = open(dir.path(), small_opts());
    assert_eq!(db.stats().series, 0, "everything is in the block");
    check(&db.cardinality(10).unwrap());
}

#[test]
fn empty_store_has_empty_tables() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), small_opts());
    assert_eq!(db.cardinality(10).unwrap(), Cardinality::default());
}
