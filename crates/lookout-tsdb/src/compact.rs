//! Blocks in the store: loading (quarantine of corrupt blocks, clean-up after a crash),
//! cutting the head into blocks, compaction and block retention.
//!
//! Cut: once the head spans more than 1.5 chunk ranges, the oldest chunk range `[lo, hi)`
//! becomes a block. First `min_valid` moves to `hi` behind a commit barrier, so no in-order
//! sample below `hi` can arrive any more (later ones are stored as out-of-order); then every
//! series' data below `hi` is written to the block, the block is published and only then is
//! that data released from the head (and head-chunk files holding nothing newer deleted).
//! Queries read the head before the block list, so they never miss data in the middle of a
//! cut (they may see it twice, and merging drops the duplicate).
//!
//! Compaction merges overlapping blocks (out-of-order flushes) and then, level by level, the
//! blocks of a completed window of 3×, 9×, … the chunk range, up to a tenth of retention.
//! The merged block names its parents; a parent still present on open is deleted then.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use lookout_storage::{Labels, Sample, StorageError};
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashSet;

use crate::TsdbError;
use crate::block::{self, Block, BlockChunk, BlockError, BlockMeta, BlockWriter, GroupCache};
use crate::db::Inner;
use crate::head::Capture;
use crate::metrics::Metrics;

impl From<BlockError> for TsdbError {
    fn from(e: BlockError) -> Self {
        match e {
            BlockError::Io { path, source } => TsdbError::Io { path, source },
            BlockError::Corrupt { dir, reason } => TsdbError::Io {
                path: dir,
                source: std::io::Error::other(reason),
            },
        }
    }
}

impl From<BlockError> for StorageError {
    fn from(e: BlockError) -> Self {
        StorageError::Other(e.to_string())
    }
}

fn storage_err(e: StorageError) -> TsdbError {
    TsdbError::Io {
        path: std::path::PathBuf::new(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// The published blocks, sorted by min time. Readers clone the `Arc`'d list.
#[derive(Default)]
pub struct BlockSet {
    list: RwLock<Arc<Vec<Arc<Block>>>>,
    /// Ids of blocks whose chunks were all checksum-verified (or that this process wrote).
    verified: Mutex<FxHashSet<String>>,
}

impl BlockSet {
    /// Blocks loaded from disk: their chunks are verified later, by [`Inner::scrub_blocks`].
    pub fn new(blocks: Vec<Arc<Block>>) -> Self {
        BlockSet {
            list: RwLock::new(Arc::new(blocks)),
            verified: Mutex::new(FxHashSet::default()),
        }
    }

    pub fn get(&self) -> Arc<Vec<Arc<Block>>> {
        self.list.read().clone()
    }

    /// Atomically removes the blocks with ids in `remove` and adds `add`.
    pub fn replace(&self, remove: &[String], add: Option<Arc<Block>>, m: &Metrics) {
        let mut g = self.list.write();
        let mut v: Vec<Arc<Block>> = g
            .iter()
            .filter(|b| !remove.contains(&b.meta.id))
            .cloned()
            .collect();
        if let Some(b) = &add {
            self.verified.lock().insert(b.meta.id.clone());
        }
        v.extend(add);
        v.sort_by(|a, b| (a.meta.min_time, &a.meta.id).cmp(&(b.meta.min_time, &b.meta.id)));
        m.blocks_loaded.set(v.len() as i64);
        m.blocks_bytes
            .set(v.iter().map(|b| b.size_bytes()).sum::<u64>() as i64);
        *g = Arc::new(v);
    }
}

/// Deletes a block directory: renamed first so a crash mid-way leaves a `.deleted` name
/// (removed on the next open), never a half-deleted block.
fn delete_block_dir(dir: &Path) -> Result<(), TsdbError> {
    let mut gone = dir.as_os_str().to_owned();
    gone.push(".deleted");
    let gone = std::path::PathBuf::from(gone);
    fs::rename(dir, &gone).map_err(|source| TsdbError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    block::failpoint("delete-after-rename");
    fs::remove_dir_all(&gone).map_err(|source| TsdbError::Io { path: gone, source })
}

/// Opens every block in `dir`, removing leftovers of interrupted writes and deletions,
/// quarantining corrupt blocks (renamed `<id>.corrupt`) and deleting blocks that a
/// compaction already replaced.
pub fn load_blocks(dir: &Path, m: &Metrics) -> Result<Vec<Arc<Block>>, TsdbError> {
    fs::create_dir_all(dir).map_err(|source| TsdbError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let io = |source| TsdbError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut blocks = Vec::new();
    let mut names: Vec<String> = fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        if name.ends_with(".tmp") || name.ends_with(".deleted") {
            tracing::info!(dir = %path.display(), "removing an interrupted block write or deletion");
            fs::remove_dir_all(&path).map_err(|source| TsdbError::Io { path, source })?;
            continue;
        }
        if name.ends_with(".corrupt") {
            continue;
        }
        match Block::open(&path) {
            Ok(b) => blocks.push(Arc::new(b)),
            Err(e) => {
                let to = dir.join(format!("{name}.corrupt"));
                tracing::error!(block = %name, error = %e, quarantined_as = %to.display(), "block is unreadable; quarantined, the other blocks are served");
                m.blocks_quarantined.inc();
                fs::rename(&path, &to).map_err(|source| TsdbError::Io { path, source })?;
            }
        }
    }
    let replaced: FxHashSet<String> = blocks
        .iter()
        .flat_map(|b| b.meta.parents.iter().cloned())
        .collect();
    let mut kept = Vec::with_capacity(blocks.len());
    for b in blocks {
        if replaced.contains(&b.meta.id) {
            tracing::info!(block = %b.meta.id, "removing a block already compacted into another");
            let d = b.dir.clone();
            drop(b);
            delete_block_dir(&d)?;
        } else {
            kept.push(b);
        }
    }
    kept.sort_by(|a, b| (a.meta.min_time, &a.meta.id).cmp(&(b.meta.min_time, &b.meta.id)));
    m.blocks_loaded.set(kept.len() as i64);
    m.blocks_bytes
        .set(kept.iter().map(|b| b.size_bytes()).sum::<u64>() as i64);
    Ok(kept)
}

/// Merges time-sorted sample lists, keeping the first of equal timestamps.
pub fn merge_samples(mut lists: Vec<Vec<Sample>>) -> Vec<Sample> {
    lists.retain(|l| !l.is_empty());
    match lists.len() {
        0 => Vec::new(),
        1 => lists.pop().unwrap_or_default(),
        _ => {
            let mut all: Vec<Sample> = Vec::with_capacity(lists.iter().map(Vec::len).sum());
            for l in lists {
                all.extend(l);
            }
            all.sort_by_key(|s| s.t);
            all.dedup_by_key(|s| s.t);
            all
        }
    }
}

/// The window ranges compaction builds: 3×, 9×, … the chunk range, at most `max`.
pub fn level_ranges(chunk_range: i64, max: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut r = chunk_range.saturating_mul(3);
    while r <= max && r > 0 {
        out.push(r);
        r = r.saturating_mul(3);
    }
    out
}

/// The next set of blocks to compact: overlapping blocks first, then the oldest complete
/// window of the smallest level with more than one block.
pub fn plan(blocks: &[Arc<Block>], ranges: &[i64]) -> Option<Vec<Arc<Block>>> {
    let mut i = 0;
    while i < blocks.len() {
        let mut j = i + 1;
        let mut end = blocks[i].meta.max_time;
        while j < blocks.len() && blocks[j].meta.min_time < end {
            end = end.max(blocks[j].meta.max_time);
            j += 1;
        }
        if j - i > 1 {
            return Some(blocks[i..j].to_vec());
        }
        i = j;
    }
    let newest = blocks.iter().map(|b| b.meta.max_time).max()?;
    for &r in ranges {
        let mut group: Vec<Arc<Block>> = Vec::new();
        let mut window = i64::MIN;
        for b in blocks {
            let w = b.meta.min_time.div_euclid(r);
            let fits = b.meta.max_time <= (w + 1).saturating_mul(r);
            if !fits || b.meta.max_time - b.meta.min_time >= r {
                continue;
            }
            if w != window {
                if group.len() > 1 && (window + 1).saturating_mul(r) <= newest {
                    return Some(group);
                }
                group.clear();
                window = w;
            }
            group.push(b.clone());
        }
        if group.len() > 1 && (window + 1).saturating_mul(r) <= newest {
            return Some(group);
        }
    }
    None
}

/// Writes one block merging `parents` into `dir`.
pub fn merge_blocks(dir: &Path, parents: &[Arc<Block>]) -> Result<Option<BlockMeta>, TsdbError> {
    struct Cursor<'a> {
        b: &'a Block,
        next: u64,
        cur: Option<(Labels, Vec<BlockChunk>)>,
        /// Series are read in order: each group of a version 3 parent is inflated once, and
        /// only the current one is kept.
        cache: GroupCache,
    }
    impl Cursor<'_> {
        fn advance(&mut self) -> Result<(), BlockError> {
            self.cur = if (self.next as usize) < self.b.num_series() {
                Some(self.b.series(self.next)?)
            } else {
                None
            };
            self.next += 1;
            Ok(())
        }
    }
    let mut cursors = Vec::with_capacity(parents.len());
    for b in parents {
        let mut c = Cursor {
            b,
            next: 0,
            cur: None,
            cache: GroupCache::new(1),
        };
        c.advance()?;
        cursors.push(c);
    }
    let mut w = BlockWriter::new(dir)?;
    while let Some(min) = cursors
        .iter()
        .filter_map(|c| c.cur.as_ref().map(|x| &x.0))
        .min()
        .cloned()
    {
        let mut lists = Vec::new();
        for c in cursors.iter_mut() {
            if c.cur.as_ref().is_some_and(|x| x.0 == min) {
                let mut out = Vec::new();
                if let Some((_, chunks)) = &c.cur {
                    c.b.samples_cached(chunks, i64::MIN, i64::MAX, &mut out, &mut c.cache)?;
                }
                lists.push(out);
                c.advance()?;
            }
        }
        w.add_series(min, &merge_samples(lists))?;
    }
    let min_time = parents.iter().map(|b| b.meta.min_time).min().unwrap_or(0);
    let max_time = parents.iter().map(|b| b.meta.max_time).max().unwrap_or(0);
    let level = parents.iter().map(|b| b.meta.level).max().unwrap_or(0) + 1;
    let ids = parents.iter().map(|b| b.meta.id.clone()).collect();
    Ok(w.finish(min_time, max_time, level, ids, false)?)
}

/// Backfill: writes `series` (any order; samples sorted and deduplicated here) directly as
/// blocks of one chunk range each under `dir`, then opens the store once so the blocks are
/// compacted as usual. Returns the blocks of the store afterwards.
pub fn backfill(
    dir: &Path,
    mut series: Vec<(Labels, Vec<Sample>)>,
    opts: crate::TsdbOptions,
) -> Result<Vec<BlockMeta>, TsdbError> {
    series.sort_by(|a, b| a.0.cmp(&b.0));
    let mut merged: Vec<(Labels, Vec<Sample>)> = Vec::with_capacity(series.len());
    for (labels, samples) in series {
        match merged.last_mut() {
            Some(last) if last.0 == labels => last.1.extend(samples),
            _ => merged.push((labels, samples)),
        }
    }
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for (_, samples) in &mut merged {
        samples.sort_by_key(|s| s.t);
        samples.dedup_by_key(|s| s.t);
        if let (Some(f), Some(l)) = (samples.first(), samples.last()) {
            min = min.min(f.t);
            max = max.max(l.t);
        }
    }
    let r = i64::try_from(opts.chunk_range.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let blocks_dir = dir.join("blocks");
    if min <= max {
        let mut lo = min.div_euclid(r).saturating_mul(r);
        while lo <= max {
            let hi = lo.saturating_add(r);
            let mut w = BlockWriter::new(&blocks_dir)?;
            // The block's time range is its samples' (as promtool's), not the whole aligned
            // window: a window ending in the future would make the head refuse live samples
            // below its end as out of bounds.
            let (mut bmin, mut bmax) = (i64::MAX, i64::MIN);
            for (labels, samples) in &merged {
                let a = samples.partition_point(|s| s.t < lo);
                let b = samples.partition_point(|s| s.t < hi);
                if a < b {
                    bmin = bmin.min(samples[a].t);
                    bmax = bmax.max(samples[b - 1].t);
                    w.add_series(labels.clone(), &samples[a..b])?;
                }
            }
            let (bmin, bmax) = if bmin <= bmax {
                (bmin, bmax.saturating_add(1))
            } else {
                (lo, hi) // no series: finish writes nothing
            };
            w.finish(bmin, bmax, 1, Vec::new(), false)?;
            if hi == i64::MAX {
                break;
            }
            lo = hi;
        }
    }
    drop(merged);
    let db = crate::Tsdb::open(dir, opts)?;
    db.compact()?;
    let out = db.blocks();
    db.close()?;
    Ok(out)
}

impl Inner {
    fn blocks_dir(&self) -> std::path::PathBuf {
        self.dir.join("blocks")
    }

    /// Writes the head's data below `hi` (in-order data from `lo`, when `inorder`; all
    /// out-of-order data) to a block, publishes it and releases that data from the head.
    fn persist_head(&self, lo: i64, hi: i64, inorder: bool) -> Result<bool, TsdbError> {
        let started = Instant::now();
        let head = &self.head;
        let below_file = head.chunks.active_index().unwrap_or(0);
        let mut labelled: Vec<(Labels, Arc<crate::head::MemSeries>)> = head
            .all_series()
            .into_iter()
            .map(|s| (head.resolve_labels(&s), s))
            .collect();
        labelled.sort_by(|a, b| a.0.cmp(&b.0));
        let mut w = BlockWriter::new(&self.blocks_dir())?;
        let mut caps: Vec<(Arc<crate::head::MemSeries>, Capture)> = Vec::new();
        let (mut bmin, mut bmax) = (i64::MAX, i64::MIN);
        for (labels, s) in labelled {
            let cap = {
                let _g = self.gate.read();
                let st = s.state.lock();
                if st.deleted.is_some() {
                    continue;
                }
                st.capture(lo, hi, inorder, &head.chunks)
                    .map_err(storage_err)?
            };
            let Some(mut cap) = cap else { continue };
            let samples = cap
                .snap
                .decode(i64::MIN, hi.saturating_sub(1))
                .map_err(storage_err)?;
            if let (Some(f), Some(l)) = (samples.first(), samples.last()) {
                bmin = bmin.min(f.t);
                bmax = bmax.max(l.t);
            }
            w.add_series(labels, &samples)?;
            cap.snap.inorder.clear();
            cap.snap.ooo.clear();
            caps.push((s, cap));
        }
        if w.is_empty() {
            w.finish(0, 0, 1, Vec::new(), false)?;
            return Ok(false);
        }
        let (min_time, max_time) = if inorder {
            (lo.min(bmin), hi)
        } else {
            (bmin, bmax.saturating_add(1))
        };
        let overlaps = !inorder || bmin < lo;
        let Some(meta) = w.finish(min_time, max_time, 1, Vec::new(), overlaps)? else {
            return Ok(false);
        };
        block::failpoint("cut-after-block");
        let b = Block::open(&self.blocks_dir().join(&meta.id))?;
        let m = &head.metrics;
        self.blocks.replace(&[], Some(Arc::new(b)), m);
        for (s, cap) in &caps {
            s.state.lock().release(hi, inorder, cap, m);
        }
        let files = head
            .chunks
            .remove_persisted(hi, below_file)
            .map_err(|source| TsdbError::Io {
                path: self.dir.join("chunks_head"),
                source,
            })?;
        m.head_cuts.inc();
        m.cut_duration.observe(started.elapsed().as_secs_f64());
        tracing::info!(block = %meta.id, min_time, max_time, series = meta.stats.series, samples = meta.stats.samples, head_files_removed = files, "head cut into a block");
        Ok(true)
    }

    /// Cuts the head into blocks: the oldest chunk range while the head spans more than
    /// 1.5 of them (everything when `all`), then out-of-order data below the cut line.
    /// Returns the blocks written.
    pub fn cut_head(&self, all: bool) -> Result<usize, TsdbError> {
        let r = self.head.params.chunk_range_ms;
        let mut n = 0;
        loop {
            let max = self.head.max_t.load(Ordering::Relaxed);
            let min = self.head.min_t.load(Ordering::Relaxed);
            let mv = self.head.min_valid.load(Ordering::Relaxed);
            if max == i64::MIN || min == i64::MAX {
                break;
            }
            let start = min.max(mv);
            if start > max {
                break;
            }
            let lo = start.div_euclid(r).saturating_mul(r);
            let hi = lo.saturating_add(r);
            if !all && max.saturating_sub(lo) <= r / 2 * 3 {
                break;
            }
            let prev = {
                // Barrier: commits after this see the new line and store older samples as
                // out-of-order; commits before it have applied their samples.
                let _w = self.wal.lock();
                let prev = self.head.min_valid.fetch_max(hi, Ordering::SeqCst);
                drop(self.gate.write());
                prev
            };
            match self.persist_head(lo, hi, true) {
                Ok(true) => n += 1,
                Ok(false) => {}
                Err(e) => {
                    // Nothing was released from the head (the unfinished block directory
                    // is gone with its writer). Put the line back so the next pass cuts
                    // this range again rather than skipping it; samples stored as
                    // out-of-order meanwhile are flushed by the out-of-order pass.
                    let _w = self.wal.lock();
                    self.head.min_valid.store(prev, Ordering::SeqCst);
                    return Err(e);
                }
            }
            self.recompute_time_bounds(false);
        }
        let mv = self.head.min_valid.load(Ordering::Relaxed);
        if self.head.min_t.load(Ordering::Relaxed) < mv {
            if self.persist_head(i64::MIN, mv, false)? {
                n += 1;
            }
            self.recompute_time_bounds(false);
        }
        if n > 0 {
            // Truncate the WAL behind the cut (a no-op while it has fewer than 3 segments).
            self.checkpoint_locked()?;
        }
        Ok(n)
    }

    /// Checks every chunk checksum of blocks not verified yet (those loaded at open; opening
    /// only checks meta.json, the index checksum and file sizes, to stay fast). A corrupt
    /// block is quarantined: dropped from the served set, renamed `<id>.corrupt`, counted
    /// and logged; the other blocks go on serving. Returns the blocks quarantined.
    /// Callers hold the maintenance lock.
    pub fn scrub_blocks(&self) -> Result<usize, TsdbError> {
        let mut n = 0;
        for b in self.blocks.get().iter() {
            if self.blocks.verified.lock().contains(&b.meta.id) {
                continue;
            }
            match b.verify_chunks() {
                Ok(()) => {
                    self.blocks.verified.lock().insert(b.meta.id.clone());
                }
                Err(e) => {
                    let m = &self.head.metrics;
                    self.blocks
                        .replace(std::slice::from_ref(&b.meta.id), None, m);
                    let to = self.blocks_dir().join(format!("{}.corrupt", b.meta.id));
                    tracing::error!(block = %b.meta.id, error = %e, quarantined_as = %to.display(), "block is corrupt; quarantined, the other blocks are served");
                    m.blocks_quarantined.inc();
                    fs::rename(&b.dir, &to).map_err(|source| TsdbError::Io {
                        path: b.dir.clone(),
                        source,
                    })?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Compacts blocks until the planner finds nothing to do (after verifying blocks loaded
    /// at open, so a corrupt one is never merged). Returns compactions done.
    pub fn compact_blocks(&self) -> Result<usize, TsdbError> {
        self.scrub_blocks()?;
        let ranges = level_ranges(self.head.params.chunk_range_ms, self.retention_ms / 10);
        let mut n = 0;
        while let Some(parents) = plan(&self.blocks.get(), &ranges) {
            let started = Instant::now();
            let m = &self.head.metrics;
            let meta = match merge_blocks(&self.blocks_dir(), &parents) {
                Ok(meta) => meta,
                Err(e) => {
                    m.compaction_failures.inc();
                    return Err(e);
                }
            };
            block::failpoint("compact-after-block");
            let ids: Vec<String> = parents.iter().map(|b| b.meta.id.clone()).collect();
            let add = match &meta {
                Some(meta) => Some(Arc::new(Block::open(&self.blocks_dir().join(&meta.id))?)),
                None => None,
            };
            self.blocks.replace(&ids, add, m);
            block::failpoint("compact-before-delete");
            for b in &parents {
                delete_block_dir(&b.dir)?;
            }
            m.compactions.inc();
            m.cut_duration.observe(started.elapsed().as_secs_f64());
            tracing::info!(parents = ?ids, block = ?meta.as_ref().map(|m| &m.id), "blocks compacted");
            n += 1;
        }
        Ok(n)
    }

    /// Deletes whole blocks older than retention, then the oldest blocks while blocks, WAL
    /// and head-chunk files together exceed `retention_size`. Returns (blocks, bytes).
    pub fn block_retention(&self) -> Result<(usize, u64), TsdbError> {
        let blocks = self.blocks.get();
        if blocks.is_empty() {
            return Ok((0, 0));
        }
        let newest = blocks
            .iter()
            .map(|b| b.meta.max_time.saturating_sub(1))
            .max()
            .unwrap_or(i64::MIN)
            .max(self.head.max_t.load(Ordering::Relaxed));
        let cutoff = newest.saturating_sub(self.retention_ms);
        let mut victims: Vec<(Arc<Block>, &'static str)> = blocks
            .iter()
            .filter(|b| b.meta.max_time <= cutoff)
            .map(|b| (b.clone(), "time"))
            .collect();
        if let Some(limit) = self.opts.retention_size {
            let mut total = self.wal.size()
                + self.head.chunks.total_bytes()
                + blocks
                    .iter()
                    .filter(|b| b.meta.max_time > cutoff)
                    .map(|b| b.size_bytes())
                    .sum::<u64>();
            for b in blocks.iter().filter(|b| b.meta.max_time > cutoff) {
                if total <= limit {
                    break;
                }
                total = total.saturating_sub(b.size_bytes());
                victims.push((b.clone(), "size"));
            }
        }
        if victims.is_empty() {
            return Ok((0, 0));
        }
        let m = &self.head.metrics;
        let ids: Vec<String> = victims.iter().map(|(b, _)| b.meta.id.clone()).collect();
        self.blocks.replace(&ids, None, m);
        let mut bytes = 0;
        for (b, reason) in &victims {
            delete_block_dir(&b.dir)?;
            let label = vec![("reason".to_string(), reason.to_string())];
            m.retention_blocks.get_or_create(&label).inc();
            m.retention_bytes
                .get_or_create(&label)
                .inc_by(b.size_bytes());
            bytes += b.size_bytes();
            tracing::info!(block = %b.meta.id, reason, bytes = b.size_bytes(), "block deleted by retention");
        }
        Ok((victims.len(), bytes))
    }

    /// One maintenance pass: cut, compact, retention. Errors are logged and counted.
    pub fn maintain(&self) {
        let _m = self.maintenance.lock();
        if let Err(e) = self.cut_head(false) {
            self.head.metrics.compaction_failures.inc();
            tracing::error!(error = %e, "cutting the head into a block failed");
        }
        if let Err(e) = self.compact_blocks() {
            tracing::error!(error = %e, "block compaction failed");
        }
        if let Err(e) = self.block_retention() {
            tracing::error!(error = %e, "block retention failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_ranges_stop_at_the_maximum() {
        let h2 = 2 * 3600 * 1000;
        assert_eq!(level_ranges(h2, 7 * 24 * 3600 * 100), vec![3 * h2]);
        assert_eq!(level_ranges(h2, 3 * h2 - 1), Vec::<i64>::new());
        assert_eq!(level_ranges(10, 1000), vec![30, 90, 270, 810]);
    }

    #[test]
    fn merge_keeps_first_of_equal_timestamps() {
        let s = |t, v| Sample { t, v };
        let got = merge_samples(vec![
            vec![s(1, 1.0), s(3, 3.0)],
            vec![s(2, 2.0), s(3, 9.0)],
            vec![],
        ]);
        assert_eq!(got, vec![s(1, 1.0), s(2, 2.0), s(3, 3.0)]);
    }
}
