//! Corrupt block files: a flipped byte in a block's chunks file (found by the chunk scrub
//! that runs before compaction), a damaged meta.json or a torn chunks file (found on open). Either way the block
//! is moved aside as `<id>.corrupt`, counted, and the other blocks keep answering queries.
//! (A flipped index byte is covered in `blocks.rs`.)

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use lookout_storage::Appendable;
use lookout_tsdb::block::BlockMeta;
use lookout_tsdb::{Tsdb, TsdbOptions};

const MIN: i64 = 60_000;
const SERIES: usize = 8;

fn opts() -> TsdbOptions {
    TsdbOptions {
        chunk_range: Duration::from_secs(600),
        retention: Duration::from_secs(24 * 3600),
        compaction: false,
        ..small_opts()
    }
}

fn fill(db: &Tsdb, from_min: i64, minutes: i64) {
    for m in from_min..from_min + minutes {
        let mut app = db.appender();
        for q in 0..4 {
            let t = m * MIN + q * 15_000;
            for i in 0..SERIES {
                app.append(None, &series("m", i), t, (t / 1000) as f64)
                    .unwrap();
            }
        }
        app.commit().unwrap();
    }
}

/// A store with at least two blocks; returns them (oldest first), the store closed.
fn store_with_blocks(dir: &Path) -> Vec<BlockMeta> {
    let db = open(dir, opts());
    fill(&db, 0, 70);
    db.compact().unwrap();
    fill(&db, 70, 40);
    db.compact().unwrap();
    let blocks = db.blocks();
    assert!(blocks.len() >= 2, "{blocks:?}");
    db.close().unwrap();
    blocks
}

/// The data after the victim block is served, each sample once and correct.
fn rest_is_served(db: &Tsdb, victim: &BlockMeta) {
    let got = all(db, "m");
    assert_eq!(got.len(), SERIES);
    for s in got {
        assert!(
            s.samples.windows(2).all(|w| w[0].t < w[1].t),
            "{}",
            s.labels
        );
        assert!(s.samples.iter().all(|x| x.v == (x.t / 1000) as f64));
        let want = ((110 * MIN - victim.max_time) / 15_000) as usize;
        let after = s.samples.iter().filter(|x| x.t >= victim.max_time).count();
        assert_eq!(after, want, "{}", s.labels);
    }
}

fn quarantined(dir: &Path, id: &str) -> bool {
    let blocks = dir.join("blocks");
    blocks.join(format!("{id}.corrupt")).is_dir() && !blocks.join(id).exists()
}

#[test]
fn flipped_chunk_byte_is_found_by_the_scrub_and_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = store_with_blocks(dir.path());
    let victim = &blocks[0];
    let path = dir.path().join("blocks").join(&victim.id).join("chunks");
    let mut data = std::fs::read(&path).unwrap();
    let at = 8 + (data.len() - 8) / 2;
    data[at] ^= 0x5a;
    std::fs::write(&path, data).unwrap();

    // Opening stays fast (chunks are not read), so the block is still listed...
    let db = open(dir.path(), opts());
    assert_eq!(db.blocks().len(), blocks.len());
    // ...until the scrub before compaction reads it.
    db.compact().unwrap();
    assert!(db.blocks().iter().all(|b| b.id != victim.id));
    assert!(quarantined(dir.path(), &victim.id));
    assert_eq!(metric(&db, "lookout_tsdb_blocks_quarantined_total"), 1.0);
    rest_is_served(&db, victim);
    db.close().unwrap();
    drop(db);

    // A restart does not bring it back, nor count it again.
    let db = open(dir.path(), opts());
    assert!(db.blocks().iter().all(|b| b.id != victim.id));
    db.compact().unwrap();
    assert_eq!(metric(&db, "lookout_tsdb_blocks_quarantined_total"), 0.0);
    rest_is_served(&db, victim);
}

#[test]
fn damaged_meta_json_is_quarantined_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = store_with_blocks(dir.path());
    let victim = &blocks[blocks.len() - 1];
    let path = dir.path().join("blocks").join(&victim.id).join("meta.json");
    let mut data = std::fs::read(&path).unwrap();
    data[0] ^= 0xff;
    std::fs::write(&path, data).unwrap();

    let db = open(dir.path(), opts());
    assert_eq!(db.blocks().len(), blocks.len() - 1);
    assert!(quarantined(dir.path(), &victim.id));
    assert_eq!(metric(&db, "lookout_tsdb_blocks_quarantined_total"), 1.0);
    // The older blocks answer.
    let first = &blocks[0];
    for s in all(&db, "m") {
        let n = s
            .samples
            .iter()
            .filter(|x| x.t >= first.min_time && x.t < first.max_time)
            .count();
        assert_eq!(n as i64, (first.max_time - first.min_time) / 15_000);
    }
}

#[test]
fn truncated_chunks_file_is_quarantined_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = store_with_blocks(dir.path());
    let victim = &blocks[0];
    let path = dir.path().join("blocks").join(&victim.id).join("chunks");
    // A torn chunks file: its size no longer matches meta.json.
    let data = std::fs::read(&path).unwrap();
    std::fs::write(&path, &data[..data.len() - 3]).unwrap();
    let db = open(dir.path(), opts());
    assert_eq!(db.blocks().len(), blocks.len() - 1);
    assert!(quarantined(dir.path(), &victim.id));
    assert_eq!(metric(&db, "lookout_tsdb_blocks_quarantined_total"), 1.0);
    rest_is_served(&db, victim);
}
