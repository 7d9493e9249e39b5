//! Block format versions: a version 1 block written by the first block code (a fixture in
//! `tests/data/block-v1`, made before format 2 existed) still reads, queries and compacts
//! together with version 2 and 3 blocks (into one version 3 block); a version 2 block with a chunk dictionary (`tests/data/block-v2`,
//! written by the format 2 writer from [`v2_series`]) still reads sample for sample.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use lookout_storage::{Labels, Matcher, Queryable, Sample, SelectHints};
use lookout_tsdb::TsdbOptions;
use lookout_tsdb::block::{Block, BlockWriter};

const FIXTURE_ID: &str = "066168a833df8b010bd0000";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/block-v1")
        .join(FIXTURE_ID)
}

/// The series the fixture was written from (the generator it was made with, unchanged):
/// regular counters, decimals, raw floats, NaN / stale NaN / inf / -0.0, jittered times.
fn fixture_series() -> Vec<(Labels, Vec<Sample>)> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let kinds = ["counter", "decimal", "float", "special", "jitter"];
    let mut out = Vec::new();
    for (k, kind) in kinds.iter().enumerate() {
        for i in 0..2 {
            let n = 2300 + 97 * (k * 2 + i);
            let mut t = 1_700_000_000_000i64 + (k as i64) * 1000;
            let mut v = 0.0f64;
            let mut samples = Vec::with_capacity(n);
            for j in 0..n {
                let r = rnd();
                match *kind {
                    "counter" => v += (r % 40) as f64,
                    "decimal" => v = (r % 100_000) as f64 / 100.0,
                    "float" => v = f64::from_bits(r >> 2) * 1e-300 + (r % 1000) as f64 / 7.0,
                    "special" => {
                        v = match j % 50 {
                            0 => f64::NAN,
                            1 => f64::from_bits(0x7ff0_0000_0000_0002),
                            2 => f64::INFINITY,
                            3 => -0.0,
                            _ => (r % 1000) as f64 / 8.0,
                        }
                    }
                    _ => v += 0.5,
                }
                samples.push(Sample { t, v });
                t += if *kind == "jitter" {
                    14_990 + (r % 20) as i64
                } else {
                    15_000
                };
            }
            let labels = Labels::from_pairs([
                ("__name__", "fixture".to_string()),
                ("i", i.to_string()),
                ("kind", kind.to_string()),
            ]);
            out.push((labels, samples));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn bits(samples: &[Sample]) -> Vec<(i64, u64)> {
    samples.iter().map(|s| (s.t, s.v.to_bits())).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn version_1_block_reads_sample_for_sample() {
    let b = Block::open(&fixture_dir()).unwrap();
    assert_eq!(b.meta.version, 1);
    b.verify_chunks().unwrap();
    // A window inside the second chunk.
    reads_sample_for_sample(&b, &fixture_series(), 2100..=2200);
}

/// Every series of `b` is `want`'s, whole and in the window of sample indexes `window`.
fn reads_sample_for_sample(
    b: &Block,
    want: &[(Labels, Vec<Sample>)],
    window: std::ops::RangeInclusive<usize>,
) {
    assert_eq!(b.num_series(), want.len());
    for (i, (labels, samples)) in want.iter().enumerate() {
        let (got_labels, chunks) = b.series(i as u64).unwrap();
        assert_eq!(&got_labels, labels);
        let mut got = Vec::new();
        b.samples(&chunks, i64::MIN, i64::MAX, &mut got).unwrap();
        assert_eq!(bits(&got), bits(samples), "{labels}");
        let (a, z) = (samples[*window.start()].t, samples[*window.end()].t);
        got.clear();
        b.samples(&chunks, a, z, &mut got).unwrap();
        assert_eq!(bits(&got), bits(&samples[window.clone()]), "{labels}");
    }
}

/// Service-like series for a version 2 block big enough to get a dictionary.
fn v2_series() -> Vec<(Labels, Vec<Sample>)> {
    (0..48)
        .map(|i| {
            let labels =
                Labels::from_pairs([("__name__", "newer".to_string()), ("i", format!("{i:02}"))]);
            let mut v = 0.0;
            let samples = (0..4000i64)
                .map(|k| {
                    v += ((k * 7919 + i * 31) % 41) as f64;
                    Sample {
                        t: 1_700_000_000_000 + k * 15_000,
                        v: if i % 4 == 0 { v / 100.0 } else { v },
                    }
                })
                .collect();
            (labels, samples)
        })
        .collect()
}

const FIXTURE_V2_ID: &str = "0661720deed72b058760000";

#[test]
fn version_2_block_reads_sample_for_sample() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/block-v2")
        .join(FIXTURE_V2_ID);
    let b = Block::open(&dir).unwrap();
    assert_eq!(b.meta.version, 2);
    let chunks = fs::read(dir.join("chunks")).unwrap();
    assert_eq!(
        (chunks[4], chunks[5]),
        (2, 1),
        "version 2 with a dictionary"
    );
    b.verify_chunks().unwrap();
    // A window across the chunk boundary.
    reads_sample_for_sample(&b, &v2_series(), 2000..=2100);
}

#[test]
fn version_1_2_and_3_blocks_query_and_compact_together() {
    let tmp = tempfile::tempdir().unwrap();
    let blocks = tmp.path().join("blocks");
    copy_dir(&fixture_dir(), &blocks.join(FIXTURE_ID));
    // The version 2 fixture holds the same series as the new block (same generator).
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/block-v2")
            .join(FIXTURE_V2_ID),
        &blocks.join(FIXTURE_V2_ID),
    );
    let newer = v2_series();
    let mut w = BlockWriter::new(&blocks).unwrap();
    for (l, s) in &newer {
        w.add_series(l.clone(), s).unwrap();
    }
    let meta = w
        .finish(
            1_700_000_000_000,
            1_700_000_000_000 + 4000 * 15_000,
            1,
            vec![],
            false,
        )
        .unwrap()
        .unwrap();
    assert_eq!(meta.version, 3);
    let chunks = fs::read(blocks.join(&meta.id).join("chunks")).unwrap();
    assert_eq!(
        (chunks[4], chunks[5]),
        (3, 1),
        "version 3 with a dictionary"
    );
    let new_block = Block::open(&blocks.join(&meta.id)).unwrap();
    new_block.verify_chunks().unwrap();
    // 48 series of two chunks each in groups of 16 series: three records after the
    // dictionary's.
    let (_, c0) = new_block.series(0).unwrap();
    let (_, c47) = new_block.series(47).unwrap();
    let g0 = new_block.group_of(c0[0].r).unwrap();
    assert_eq!(new_block.group_of(c0[1].r), Some(g0));
    assert_ne!(new_block.group_of(c47[0].r), Some(g0));

    let opts = TsdbOptions {
        compaction: false,
        retention: Duration::from_secs(3650 * 86_400),
        ..small_opts()
    };
    let check = |db: &lookout_tsdb::Tsdb| {
        let range = SelectHints::range(i64::MIN, i64::MAX);
        for (name, want) in [("fixture", fixture_series()), ("newer", newer.clone())] {
            let got = db
                .select(&[Matcher::equal("__name__", name)], &range)
                .unwrap();
            assert_eq!(got.len(), want.len());
            for (g, (l, s)) in got.iter().zip(&want) {
                assert_eq!(&g.labels, l);
                assert_eq!(bits(&g.samples), bits(s), "{l}");
            }
        }
    };
    let db = open(tmp.path(), opts.clone());
    assert_eq!(db.blocks().len(), 3);
    check(&db);
    // The blocks overlap in time: compaction rewrites them into one version 3 block.
    assert_eq!(db.compact().unwrap(), (0, 1));
    let after = db.blocks();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].version, 3);
    check(&db);
    drop(db);
    let db = open(tmp.path(), opts);
    check(&db);
}

#[test]
fn damaged_dictionary_fails_the_block_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = BlockWriter::new(tmp.path()).unwrap();
    for (l, s) in v2_series() {
        w.add_series(l, &s).unwrap();
    }
    let meta = w.finish(0, i64::MAX, 1, vec![], false).unwrap().unwrap();
    let dir = tmp.path().join(&meta.id);
    Block::open(&dir).unwrap().verify_chunks().unwrap();
    let path = dir.join("chunks");
    let mut c = fs::read(&path).unwrap();
    c[8 + 4 + 100] ^= 0x20; // inside the dictionary record
    fs::write(&path, &c).unwrap();
    let err = Block::open(&dir)
        .err()
        .expect("a damaged dictionary is an error");
    assert!(err.to_string().contains("dictionary"), "{err}");
}
