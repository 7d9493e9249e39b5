mod common;

use common::*;
use lookout_storage::{Appendable, SeriesRef};
use lookout_tsdb::TsdbOptions;

/// Heap held by chunk data stays flat for a fixed series set however long the history is:
/// full chunks live in the mmap'd head-chunk files.
#[test]
fn heap_chunk_bytes_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let opts = TsdbOptions {
        chunk_file_size: 8 << 20,
        wal_segment_size: 1 << 20,
        ..small_opts()
    };
    let db = open(dir.path(), opts);
    const SERIES: usize = 100;
    let mut refs: Vec<Option<SeriesRef>> = vec![None; SERIES];
    let mut heap_after = Vec::new();
    let mut t = 1_700_000_000_000i64;
    for round in 0..10 {
        // 1,200 samples per series per round = 10 chunks each.
        for _ in 0..1200 {
            t += 15_000;
            let mut app = db.appender();
            for (i, r) in refs.iter_mut().enumerate() {
                let v = ((t / 15_000) % 1000) as f64 * 0.5 + i as f64;
                *r = Some(
                    app.append(*r, &series("mem", i), t + (i as i64 % 7), v)
                        .unwrap(),
                );
            }
            app.commit().unwrap();
        }
        let st = db.stats();
        heap_after.push(st.head_chunk_heap_bytes);
        if round == 9 {
            // 12,000 samples per series: at least 99 full chunks each went to the files.
            assert!(st.mmapped_chunks >= (SERIES * 99) as u64, "{st:?}");
            assert!(
                st.mmapped_chunk_bytes > 50 * st.head_chunk_heap_bytes,
                "{st:?}"
            );
        }
    }
    let (first, last) = (heap_after[0], heap_after[9]);
    // Bounded by the open chunk per series (≤ 1 KiB each), and not growing with history.
    assert!(last <= (SERIES * 1024) as u64, "{heap_after:?}");
    assert!(last <= first * 2, "{heap_after:?}");
    // Once the WAL has been checkpointed, its size is bounded too.
    db.checkpoint().unwrap();
    db.checkpoint().unwrap();
    assert!(db.stats().wal_bytes <= 4 << 20, "{:?}", db.stats());
}
