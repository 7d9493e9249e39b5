//! Store behaviour through the public API: push, query, restart (WAL replay), chunk cutting,
//! filters, limits, retention.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lookout_logstore::{
    LogStore, LogStoreOptions, PushStream, QueryStats, QueryStatsSnapshot, RejectReason,
    StoreMetrics,
};
use lookout_storage::logs::{Direction, LogEntry, LogQueryable, LogSelectParams};
use lookout_storage::{Labels, Matcher, StorageError};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn open(dir: &std::path::Path, opts: LogStoreOptions) -> LogStore {
    LogStore::open(dir, opts, "t", Arc::new(StoreMetrics::default())).unwrap()
}

fn small() -> LogStoreOptions {
    LogStoreOptions {
        chunk_target_bytes: 4096,
        ..LogStoreOptions::default()
    }
}

fn line(i: usize) -> String {
    format!(
        r#"{{"level":"{}","msg":"request {i}","trace_id":"{:032x}"}}"#,
        if i.is_multiple_of(10) {
            "error"
        } else {
            "info"
        },
        (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
    )
}

/// Pushes `n` lines in batches of 20.
fn push_n(s: &LogStore, app: &str, base: i64, n: usize) {
    for from in (0..n).step_by(20) {
        let entries: Vec<LogEntry> = (from..(from + 20).min(n))
            .map(|i| LogEntry::new(base + i as i64 * 1000, line(i)))
            .collect();
        let len = entries.len();
        let out = s
            .push(vec![PushStream {
                labels: Labels::from_pairs([("app", app)]),
                entries,
            }])
            .unwrap();
        assert_eq!(out.accepted, len);
        assert!(out.rejected.is_empty());
    }
}

fn all(s: &LogStore, m: &[Matcher], dir: Direction, req: &[String]) -> Vec<(Labels, LogEntry)> {
    let mut p = LogSelectParams::new(m, 0, i64::MAX);
    p.direction = dir;
    p.required_substrings = req;
    let mut out = Vec::new();
    s.select_logs(&p, &mut |l, es| {
        out.extend(es.iter().map(|e| (l.clone(), e.clone())));
        ControlFlow::Continue(())
    })
    .unwrap();
    out
}

#[test]
fn entries_survive_restart_from_wal_and_from_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let base = now() - 1_000_000_000_000;
    {
        let s = open(dir.path(), small());
        push_n(&s, "a", base, 500);
        push_n(&s, "b", base, 3);
        assert!(s.chunks_flushed() > 5, "chunks were cut by size");
        // Dropped without flush: the tail of "a" and all of "b" live only in the WAL.
    }
    let s = open(dir.path(), small());
    let a = all(&s, &[Matcher::equal("app", "a")], Direction::Forward, &[]);
    assert_eq!(a.len(), 500);
    for (i, (_, e)) in a.iter().enumerate() {
        assert_eq!(e.line, line(i));
        assert_eq!(e.ts_ns, base + i as i64 * 1000);
    }
    assert_eq!(
        all(&s, &[Matcher::equal("app", "b")], Direction::Forward, &[]).len(),
        3
    );
    let back = all(&s, &[Matcher::equal("app", "a")], Direction::Backward, &[]);
    assert_eq!(back.first().unwrap().1.line, line(499));
    s.flush().unwrap();
    drop(s);
    let s = open(dir.path(), small());
    assert_eq!(
        all(&s, &[], Direction::Forward, &[]).len(),
        503,
        "no duplicates after flush + restart"
    );
    assert_eq!(
        s.log_label_values("app", &[], 0, i64::MAX).unwrap(),
        ["a", "b"]
    );
    assert_eq!(s.stats(&[], 0, i64::MAX).entries, 503);
}

#[test]
fn needles_skip_chunks_but_never_lose_matches() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), small());
    let base = now() - 1_000_000_000_000;
    push_n(&s, "a", base, 2000);
    s.flush().unwrap();
    let needle = format!(
        "{:032x}",
        1234u128.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
    );
    let req = [needle.clone()];
    let got = all(&s, &[], Direction::Forward, &req);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.line, line(1234));
    let m = s.stats(&[], 0, i64::MAX);
    assert!(m.chunks > 20);
    let absent = ["f".repeat(32)];
    assert!(all(&s, &[], Direction::Forward, &absent).is_empty());
    // Short needles are filtered line by line.
    let req = ["\"error\"".to_string()];
    assert_eq!(all(&s, &[], Direction::Forward, &req).len(), 200);
}

/// Runs a query with statistics; returns the lines delivered and the counters.
fn with_stats(s: &LogStore, req: &[String]) -> (usize, QueryStatsSnapshot) {
    let m = [Matcher::equal("app", "a")];
    let mut p = LogSelectParams::new(&m, 0, i64::MAX);
    p.required_substrings = req;
    let stats = QueryStats::default();
    let mut n = 0;
    s.select_logs_with_stats(
        &p,
        &mut |_, es| {
            n += es.len();
            ControlFlow::Continue(())
        },
        &stats,
    )
    .unwrap();
    (n, stats.snapshot())
}

#[test]
fn query_stats_count_chunks_read_skipped_and_lines_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), small());
    let base = now() - 1_000_000_000_000;
    push_n(&s, "a", base, 2000);
    s.flush().unwrap();
    push_n(&s, "a", base + 2000 * 1000, 7); // stays in the head
    let total_chunks = s.stats(&[Matcher::equal("app", "a")], 0, i64::MAX).chunks;
    let raw: u64 = (0..2000).map(|i| line(i).len() as u64).sum();

    // Everything: every chunk decoded, every line counted once.
    let (n, st) = with_stats(&s, &[]);
    assert_eq!(n, 2007);
    assert_eq!(st.chunks_ref, total_chunks);
    assert_eq!(st.chunks_downloaded, total_chunks);
    assert_eq!(st.chunks_skipped_by_filter, 0);
    assert_eq!(st.decompressed_lines, 2000);
    assert_eq!(st.decompressed_bytes, raw);
    assert!(st.compressed_bytes > 0 && st.compressed_bytes < raw);
    assert_eq!(st.head_lines, 7);
    assert_eq!(st.post_filter_lines, 2007);

    // A rare needle: the filters skip (nearly) every chunk but the one holding it.
    let needle = format!(
        "{:032x}",
        1234u128.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
    );
    let (n, st) = with_stats(&s, &[needle]);
    assert_eq!(n, 1);
    assert_eq!(st.chunks_ref, total_chunks);
    assert_eq!(
        st.chunks_downloaded + st.chunks_skipped_by_filter,
        total_chunks
    );
    assert!(
        st.chunks_downloaded >= 1 && st.chunks_downloaded <= 3,
        "{st:?}"
    );
    assert!(st.decompressed_lines < 200, "{st:?}");
    assert_eq!(st.post_filter_lines, 1);

    // A short needle cannot use the filters: all chunks read, matches counted after filtering.
    let (n, st) = with_stats(&s, &["\"error\"".to_string()]);
    assert_eq!(n, 201);
    assert_eq!(st.chunks_downloaded, total_chunks);
    assert_eq!(st.post_filter_lines, 201);
}

#[test]
fn out_of_order_window_too_old_too_new_and_long_lines() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(
        dir.path(),
        LogStoreOptions {
            max_line_bytes: 10,
            ..LogStoreOptions::default()
        },
    );
    let n = now();
    let l = Labels::from_pairs([("app", "x")]);
    let h = 3_600_000_000_000i64;
    let out = s
        .push(vec![PushStream {
            labels: l.clone(),
            entries: vec![
                LogEntry::new(n, "newest"),
                LogEntry::new(n - h / 2, "late ok"),
                LogEntry::new(n - 2 * h, "too late"),
                LogEntry::new(n - 8 * 24 * h, "too old"),
                LogEntry::new(n + h, "future"),
                LogEntry::new(n, "much too long line"),
            ],
        }])
        .unwrap();
    assert_eq!(out.accepted, 2);
    let reasons: Vec<&str> = out
        .rejected
        .iter()
        .map(|r| r.reason.metric_reason())
        .collect();
    assert_eq!(
        reasons,
        [
            "too_far_behind",
            "greater_than_max_sample_age",
            "too_far_in_future",
            "line_too_long"
        ]
    );
    assert!(matches!(
        out.rejected[3].reason,
        RejectReason::LineTooLong {
            size: 18,
            limit: 10
        }
    ));
    assert!(out.rejected[0].to_string().contains("entry too far behind"));
    let got = all(&s, &[], Direction::Forward, &[]);
    assert_eq!(
        got.iter().map(|g| g.1.line.as_str()).collect::<Vec<_>>(),
        ["late ok", "newest"]
    );
}

#[test]
fn overlapping_chunks_merge_in_time_order_and_limits_apply() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), small());
    let base = now() - 1_000_000_000_000;
    push_n(&s, "a", base, 200);
    s.flush().unwrap();
    // Late entries interleaving the first chunk.
    let l = Labels::from_pairs([("app", "a")]);
    s.push(vec![PushStream {
        labels: l,
        entries: (0..50)
            .map(|i| LogEntry::new(base + i * 1000 + 500, format!("late {i}")))
            .collect(),
    }])
    .unwrap();
    let got = all(&s, &[], Direction::Forward, &[]);
    assert_eq!(got.len(), 250);
    assert!(got.windows(2).all(|w| w[0].1.ts_ns <= w[1].1.ts_ns));
    let got = all(&s, &[], Direction::Backward, &[]);
    assert!(got.windows(2).all(|w| w[0].1.ts_ns >= w[1].1.ts_ns));
    let mut p = LogSelectParams::new(&[], 0, i64::MAX);
    p.max_entries = Some(10);
    let r = s.select_logs(&p, &mut |_, _| ControlFlow::Continue(()));
    assert!(matches!(r, Err(StorageError::TooManySamples { limit: 10 })));
    // Range bounds: [start, end).
    let p = LogSelectParams::new(&[], base + 1000, base + 3000);
    let mut n = 0;
    s.select_logs(&p, &mut |_, es| {
        n += es.len();
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(n, 4); // 1000, 1500, 2000, 2500
}

#[test]
fn retention_deletes_chunks_and_files_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogStoreOptions {
        chunk_target_bytes: 4096,
        data_file_bytes: 8192,
        retention_streams: vec![lookout_logstore::RetentionRule {
            matchers: vec![Matcher::equal("app", "short")],
            period: Duration::from_secs(3600),
        }],
        ..LogStoreOptions::default()
    };
    let s = open(dir.path(), opts.clone());
    let day = 86_400_000_000_000i64;
    let base = now() - 6 * day;
    push_n(&s, "a", base, 1500);
    push_n(&s, "short", now() - 1_800_000_000_000, 10);
    s.flush().unwrap();
    let before = s.disk_usage().chunk_bytes;
    // Two days later the 6-day-old data is past 7d; "short" (1h) went long ago.
    let out = s.enforce_retention_at(now() + 2 * day).unwrap();
    assert!(out.chunks_deleted > 5);
    assert!(out.files_deleted > 1);
    assert!(s.disk_usage().chunk_bytes < before / 4);
    let left = all(&s, &[], Direction::Forward, &[]);
    assert!(left.is_empty(), "{:?}", left.first());
    drop(s);
    let s = open(dir.path(), opts);
    assert!(all(&s, &[], Direction::Forward, &[]).is_empty());
    assert!(s.log_series(&[], 0, i64::MAX).unwrap().is_empty());
}

#[test]
fn label_limits_use_loki_messages() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), LogStoreOptions::default());
    let many = Labels::from_pairs((0..16).map(|i| (format!("l{i}"), "v")));
    assert!(
        s.validate_labels(&many)
            .unwrap_err()
            .contains("16 label names; limit 15")
    );
    let bad = Labels::from_pairs([("1x", "v")]);
    assert!(
        s.validate_labels(&bad)
            .unwrap_err()
            .contains("invalid label name")
    );
    assert!(
        s.validate_labels(&Labels::from_pairs([("ok_1", "v")]))
            .is_ok()
    );
}

#[test]
fn truncation_mode_cuts_long_lines_on_a_character_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(
        dir.path(),
        LogStoreOptions {
            max_line_bytes: 10,
            truncate_long_lines: true,
            ..LogStoreOptions::default()
        },
    );
    let n = now();
    // "é" is two bytes: byte 10 falls inside the fifth one.
    let out = s
        .push(vec![PushStream {
            labels: Labels::from_pairs([("app", "x")]),
            entries: vec![
                LogEntry::new(n, "abcdefghijklmnop"),
                LogEntry::new(n + 1, "aéééééé"),
                LogEntry::new(n + 2, "short"),
            ],
        }])
        .unwrap();
    assert_eq!(out.accepted, 3);
    assert!(out.rejected.is_empty());
    s.flush().unwrap();
    let got = all(&s, &[], Direction::Forward, &[]);
    assert_eq!(
        got.iter().map(|g| g.1.line.as_str()).collect::<Vec<_>>(),
        ["abcdefghij", "aéééé", "short"]
    );
}
