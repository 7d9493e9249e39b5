//! [`Tsdb`]: open (chunk-file scan + WAL replay with repair), the background WAL
//! fsync/checkpoint thread, retention, checkpoints, stats and the read path.
//!
//! Locking: `wal` (mutex) serialises commits' WAL writes and series creation; `gate`
//! (rwlock) is held for writing while a commit applies its samples and for reading while a
//! query copies per-series chunk references, so a query sees a batch entirely or not at
//! all. The gate is never held while chunks are decoded. Maintenance (retention,
//! checkpoint) takes `wal` and then the gate briefly as a barrier against in-flight commits.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lookout_storage::{
    Appendable, Appender, Label, Labels, Matcher, Queryable, Sample, SelectHints, Series,
    StorageError, Timestamp,
};
use parking_lot::{Condvar, Mutex, RwLock};
use prometheus_client::registry::Registry;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::appender::TsdbAppender;
use crate::block::{Block, BlockChunk, BlockMeta, GroupCache};
use crate::chunk_file::{ChunkFiles, ChunkKind};
use crate::compact::{BlockSet, load_blocks, merge_samples};
use crate::head::{Applied, ChunkMeta, ChunkParams, Head, MemSeries, Snapshot, labels_hash};
use crate::metrics::Metrics;
use crate::wal::{self, RecordSink, Wal};
use crate::{Cardinality, Stats, TsdbError, TsdbOptions};

trait IoCtx<T> {
    fn ctx(self, path: &Path) -> Result<T, TsdbError>;
}

impl<T> IoCtx<T> for io::Result<T> {
    fn ctx(self, path: &Path) -> Result<T, TsdbError> {
        self.map_err(|source| TsdbError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Every this many retention passes walk all series even when nothing suggests one is empty.
const FULL_WALK_EVERY: u64 = 10;

/// Helper threads for the read path's parallel decoding.
static READ_POOL: lookout_workpool::WorkPool = lookout_workpool::WorkPool::new("tsdb-query");

pub(crate) struct Inner {
    pub dir: PathBuf,
    pub opts: TsdbOptions,
    pub retention_ms: i64,
    pub ooo_window_ms: i64,
    pub head: Head,
    pub wal: Wal,
    pub gate: RwLock<()>,
    pub blocks: BlockSet,
    pub maintenance: Mutex<()>,
    pub closed: AtomicBool,
    /// Bumped under the WAL lock after series are marked deleted (garbage collection, a
    /// failed commit's new series): a commit whose appender read the same count before it
    /// looked up any series knows that none of them was deleted since, and skips checking.
    pub series_removals: AtomicU64,
    /// Retention passes so far, and the head cut line (`min_valid`) at the last pass that
    /// walked every series (see [`Inner::enforce_retention`]).
    retention_passes: AtomicU64,
    walked_min_valid: AtomicI64,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    _lock: File,
}

/// The embedded metrics store. See the crate docs.
pub struct Tsdb {
    inner: Arc<Inner>,
    bg: Mutex<Vec<JoinHandle<()>>>,
}

/// What one [`Tsdb::enforce_retention`] pass removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub chunks_removed: usize,
    pub files_removed: usize,
    pub series_removed: usize,
    /// Whole blocks deleted (by time or by size) and their bytes.
    pub blocks_removed: usize,
    pub block_bytes_removed: u64,
}

fn lock_dir(dir: &Path) -> Result<File, TsdbError> {
    use std::os::fd::AsRawFd;
    let path = dir.join("lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .ctx(&path)?;
    // SAFETY: flock on a file descriptor we own; no memory is shared with the call.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(TsdbError::Locked(dir.to_path_buf()));
    }
    Ok(f)
}

fn validate(opts: &TsdbOptions) -> Result<(), TsdbError> {
    let bad = |s: &str| Err(TsdbError::InvalidOptions(s.to_string()));
    if opts.retention.is_zero() {
        return bad("retention must be positive");
    }
    if opts.samples_per_chunk == 0 || opts.samples_per_chunk > usize::from(u16::MAX) {
        return bad("samples_per_chunk must be in 1..=65535");
    }
    if ms(opts.chunk_range) <= 0 {
        return bad("chunk_range must be at least 1ms");
    }
    if opts.out_of_order_cap == 0 || opts.out_of_order_cap > usize::from(u16::MAX) {
        return bad("out_of_order_cap must be in 1..=65535");
    }
    if opts.wal_checkpoint_segments < 3 {
        return bad("wal_checkpoint_segments must be at least 3");
    }
    if opts.max_labels_per_series == 0 {
        return bad("max_labels_per_series must be positive");
    }
    Ok(())
}

/// Applies replayed records to the head.
struct Replayer<'a> {
    head: &'a Head,
    pending: FxHashMap<u64, (Vec<ChunkMeta>, Vec<ChunkMeta>)>,
    by_ref: FxHashMap<u64, Arc<MemSeries>>,
    seg: u32,
    max_id: u64,
    unknown: u64,
    samples: u64,
    /// In-order samples below this are already in blocks.
    min_valid: i64,
    skipped: u64,
}

impl RecordSink for Replayer<'_> {
    fn series(&mut self, id: u64, labels: Labels) {
        self.max_id = self.max_id.max(id);
        if labels.is_empty() || self.by_ref.contains_key(&id) {
            return;
        }
        let (s, created) = self.head.get_or_create(&labels, labels_hash(&labels), id);
        if created && let Some((inorder, ooo)) = self.pending.remove(&id) {
            s.state
                .lock()
                .attach(inorder, ooo, &self.head.chunks, &self.head.metrics);
        }
        self.by_ref.insert(id, s);
    }

    fn sample(&mut self, ooo: bool, id: u64, t: i64, v: f64) {
        let Some(s) = self.by_ref.get(&id) else {
            self.unknown += 1;
            return;
        };
        if !ooo && t < self.min_valid {
            self.skipped += 1;
            return;
        }
        let h = self.head;
        let mut st = s.state.lock();
        let r = if ooo {
            st.insert_ooo(s.id, t, v, self.seg, &h.ctx())
        } else {
            st.append_in_order(s.id, t, v, self.seg, &h.ctx())
        };
        if let Ok(Applied::Stored) = r {
            self.samples += 1;
        }
    }
}

impl Tsdb {
    /// Opens (creating if needed) the store in `dir`: reloads head-chunk files, replays the
    /// WAL from the last checkpoint, repairing a corrupt or torn tail, and starts the
    /// background WAL fsync/checkpoint thread.
    pub fn open(dir: &Path, opts: TsdbOptions) -> Result<Tsdb, TsdbError> {
        validate(&opts)?;
        let started = Instant::now();
        fs::create_dir_all(dir).ctx(dir)?;
        let lock = lock_dir(dir)?;
        let metrics = Metrics::default();
        let blocks = load_blocks(&dir.join("blocks"), &metrics)?;
        let min_valid = blocks
            .iter()
            .filter(|b| !b.meta.out_of_order)
            .map(|b| b.meta.max_time)
            .max()
            .unwrap_or(i64::MIN);

        let chunk_dir = dir.join("chunks_head");
        let opened = ChunkFiles::open(&chunk_dir, opts.chunk_file_size).ctx(&chunk_dir)?;
        for r in &opened.repairs {
            tracing::warn!("{r}");
            metrics.chunk_corruptions.inc();
        }
        let mut pending: FxHashMap<u64, (Vec<ChunkMeta>, Vec<ChunkMeta>)> = FxHashMap::default();
        let mut max_id = 0;
        for c in &opened.chunks {
            max_id = max_id.max(c.series);
            if c.kind == ChunkKind::InOrder && c.max_t < min_valid {
                // Already in a block.
                continue;
            }
            let e = pending.entry(c.series).or_default();
            let meta = ChunkMeta {
                r: c.r,
                min_t: c.min_t,
                max_t: c.max_t,
            };
            match c.kind {
                ChunkKind::InOrder => e.0.push(meta),
                ChunkKind::OutOfOrder => e.1.push(meta),
            }
        }
        let params = ChunkParams {
            samples_per_chunk: opts.samples_per_chunk,
            max_chunk_bytes: 1024,
            chunk_range_ms: ms(opts.chunk_range).max(1),
            ooo_cap: opts.out_of_order_cap,
        };
        let head = Head::new(opened.files, params, metrics.clone());

        let wal_dir = dir.join("wal");
        fs::create_dir_all(&wal_dir).ctx(&wal_dir)?;
        let listing = wal::list(&wal_dir).ctx(&wal_dir)?;
        let mut rp = Replayer {
            head: &head,
            pending,
            by_ref: FxHashMap::default(),
            seg: 0,
            max_id,
            unknown: 0,
            samples: 0,
            min_valid,
            skipped: 0,
        };
        let mut after = 0u32;
        if let Some(&cp) = listing.checkpoints.last() {
            let path = wal::checkpoint_path(&wal_dir, cp);
            rp.seg = cp;
            let out =
                wal::read_file_frames(&path, |p| wal::decode_record(p, &mut rp)).ctx(&path)?;
            if let Some(e) = out.error {
                tracing::warn!(path = %path.display(), "WAL checkpoint is corrupt ({e}); series recorded after the corruption are lost");
                metrics.wal_corruptions.inc();
            }
            after = cp;
            for old in listing.checkpoints.iter().filter(|&&c| c < cp) {
                let p = wal::checkpoint_path(&wal_dir, *old);
                fs::remove_file(&p).ctx(&p)?;
            }
        }
        let mut last = after;
        let mut first_kept: Option<u32> = None;
        let mut existing = 0u64;
        let mut drop_from: Option<usize> = None;
        for (i, &seg) in listing.segments.iter().enumerate() {
            let path = wal::segment_path(&wal_dir, seg);
            if seg <= after {
                // Left over from a truncation interrupted after its checkpoint was written.
                fs::remove_file(&path).ctx(&path)?;
                continue;
            }
            if seg != last + 1 && first_kept.is_some() {
                tracing::warn!(
                    segment = seg,
                    "WAL segment {} is missing; samples in it are lost",
                    last + 1
                );
            }
            rp.seg = seg;
            let out =
                wal::read_file_frames(&path, |p| wal::decode_record(p, &mut rp)).ctx(&path)?;
            first_kept.get_or_insert(seg);
            last = seg;
            existing += out.valid_len;
            if let Some(e) = out.error {
                let later = listing.segments.len() - i - 1;
                tracing::warn!(
                    segment = %path.display(),
                    offset = out.valid_len,
                    "WAL corruption: {e}; replayed up to it, truncating the segment there and dropping {later} later segment(s)"
                );
                metrics.wal_corruptions.inc();
                let f = OpenOptions::new().write(true).open(&path).ctx(&path)?;
                f.set_len(out.valid_len).ctx(&path)?;
                f.sync_all().ctx(&path)?;
                drop_from = Some(i + 1);
                break;
            }
        }
        if let Some(i) = drop_from {
            for &seg in &listing.segments[i..] {
                let p = wal::segment_path(&wal_dir, seg);
                fs::remove_file(&p).ctx(&p)?;
            }
        }
        if rp.unknown > 0 {
            tracing::warn!(
                samples = rp.unknown,
                "WAL replay skipped samples of unknown series"
            );
        }
        let replayed = rp.samples;
        if rp.skipped > 0 {
            tracing::debug!(
                samples = rp.skipped,
                "WAL replay skipped samples already in blocks"
            );
        }
        head.min_valid.store(min_valid, Ordering::Relaxed);
        head.next_id.fetch_max(rp.max_id + 1, Ordering::Relaxed);
        drop(rp);

        let next = last + 1;
        let wal = Wal::create(
            &wal_dir,
            opts.wal_segment_size,
            first_kept.unwrap_or(next),
            next,
            existing,
        )
        .ctx(&wal_dir)?;
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            retention_ms: ms(opts.retention),
            ooo_window_ms: ms(opts.out_of_order_window),
            opts,
            head,
            wal,
            gate: RwLock::new(()),
            blocks: BlockSet::new(blocks),
            maintenance: Mutex::new(()),
            closed: AtomicBool::new(false),
            series_removals: AtomicU64::new(0),
            retention_passes: AtomicU64::new(0),
            walked_min_valid: AtomicI64::new(i64::MIN),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            _lock: lock,
        });
        inner.recompute_time_bounds(true);
        inner.enforce_retention()?;
        inner.update_size_gauges();
        let bg_inner = inner.clone();
        let bg = std::thread::Builder::new()
            .name("lookout-tsdb-wal".into())
            .spawn(move || background(bg_inner))
            .ctx(dir)?;
        let mut threads = vec![bg];
        if inner.opts.compaction {
            let m_inner = inner.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("lookout-tsdb-compact".into())
                    .spawn(move || maintenance_loop(m_inner))
                    .ctx(dir)?,
            );
        }
        tracing::info!(
            dir = %dir.display(),
            series = inner.head.series_count(),
            replayed_samples = replayed,
            blocks = inner.blocks.get().len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "metrics storage opened"
        );
        Ok(Tsdb {
            inner,
            bg: Mutex::new(threads),
        })
    }

    /// Flushes the WAL and chunk files to disk and stops the background thread. Later
    /// appends and queries fail. Also run (best effort) on drop.
    pub fn close(&self) -> Result<(), TsdbError> {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        *inner.stop.lock() = true;
        inner.stop_cv.notify_all();
        for h in std::mem::take(&mut *self.bg.lock()) {
            if h.join().is_err() {
                tracing::error!("a storage background thread panicked");
            }
        }
        {
            // Wait for commits in flight.
            let _w = inner.wal.lock();
            drop(inner.gate.write());
        }
        let wal_dir = inner.dir.join("wal");
        if let Some(d) = inner.wal.close().ctx(&wal_dir)? {
            inner
                .head
                .metrics
                .wal_fsync_duration
                .observe(d.as_secs_f64());
        }
        inner
            .head
            .chunks
            .close()
            .ctx(&inner.dir.join("chunks_head"))?;
        Ok(())
    }

    pub fn stats(&self) -> Stats {
        let inner = &self.inner;
        inner.update_size_gauges();
        let m = &inner.head.metrics;
        let min = inner.head.min_t.load(Ordering::Relaxed);
        let max = inner.head.max_t.load(Ordering::Relaxed);
        let (first, cur) = inner.wal.segments();
        let blocks = inner.blocks.get();
        Stats {
            series: m.head_series.get().max(0) as usize,
            samples_appended: m.samples_appended.get(),
            head_chunks: m.head_chunks.get().max(0) as u64,
            mmapped_chunks: m.mmapped_chunks.get().max(0) as u64,
            head_chunk_heap_bytes: m.head_chunk_heap_bytes.get().max(0) as u64,
            mmapped_chunk_bytes: inner.head.chunks.total_bytes(),
            wal_bytes: inner.wal.size(),
            wal_segments: cur - first + 1,
            symbols: inner.head.symbols.read().len(),
            min_time: (min != i64::MAX && max != i64::MIN).then_some(min),
            max_time: (max != i64::MIN).then_some(max),
            corruptions: m.wal_corruptions.get() + m.chunk_corruptions.get(),
            blocks: blocks.len(),
            block_bytes: blocks.iter().map(|b| b.size_bytes()).sum(),
            block_samples: blocks.iter().map(|b| b.meta.stats.samples).sum(),
            block_chunks: blocks.iter().map(|b| b.meta.stats.chunks).sum(),
            block_min_time: blocks.iter().map(|b| b.meta.min_time).min(),
            block_max_time: blocks.iter().map(|b| b.meta.max_time - 1).max(),
        }
    }

    /// Registers the `lookout_tsdb_*` self-monitoring metrics.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.inner.head.metrics.register(registry);
    }

    /// Drops chunks older than the newest sample minus the retention, deletes head-chunk
    /// files holding only such chunks and garbage-collects series left without data.
    pub fn enforce_retention(&self) -> Result<RetentionOutcome, TsdbError> {
        self.inner.check_open()?;
        self.inner.enforce_retention()
    }

    /// Writes every open chunk whose samples sit in old WAL segments to the chunk files,
    /// records the series in a checkpoint and deletes those segments. Returns false when
    /// there were too few segments to truncate. Runs automatically in the background.
    pub fn checkpoint(&self) -> Result<bool, TsdbError> {
        self.inner.check_open()?;
        self.inner.checkpoint()
    }

    /// Runs one maintenance pass now: cuts the head into a block when it spans more than 1.5
    /// chunk ranges, compacts blocks and applies block retention. Runs automatically in the
    /// background when [`TsdbOptions::compaction`] is set. Returns (blocks cut, compactions).
    pub fn compact(&self) -> Result<(usize, usize), TsdbError> {
        self.inner.check_open()?;
        let _m = self.inner.maintenance.lock();
        let cut = self.inner.cut_head(false)?;
        let compacted = self.inner.compact_blocks()?;
        self.inner.block_retention()?;
        Ok((cut, compacted))
    }

    /// Cuts everything in the head into blocks (later in-order samples must be newer than
    /// what was cut) and compacts. Used by backfill. Returns (blocks cut, compactions).
    pub fn flush_head(&self) -> Result<(usize, usize), TsdbError> {
        self.inner.check_open()?;
        let _m = self.inner.maintenance.lock();
        let cut = self.inner.cut_head(true)?;
        let compacted = self.inner.compact_blocks()?;
        Ok((cut, compacted))
    }

    /// Metadata of the loaded blocks, oldest first.
    pub fn blocks(&self) -> Vec<BlockMeta> {
        self.inner
            .blocks
            .get()
            .iter()
            .map(|b| b.meta.clone())
            .collect()
    }

    /// Series counts for finding cardinality explosions (the `tsdb/status` data): the top
    /// `limit` metric names by series, label names by distinct values and by value bytes,
    /// and label pairs by series, over the head (or, when the head is empty, the newest
    /// block).
    pub fn cardinality(&self, limit: usize) -> Result<Cardinality, TsdbError> {
        let mut pairs: Vec<(String, String, u64)> = Vec::new();
        {
            let idx = self.inner.head.index.read();
            let syms = self.inner.head.symbols.read();
            for (n, values) in idx.names() {
                for (v, ids) in values {
                    if !ids.is_empty() {
                        pairs.push((
                            syms.str(*n).to_string(),
                            syms.str(*v).to_string(),
                            ids.len() as u64,
                        ));
                    }
                }
            }
        }
        let mut series = self.inner.head.series_count() as u64;
        if pairs.is_empty()
            && let Some(b) = self
                .inner
                .blocks
                .get()
                .iter()
                .max_by_key(|b| b.meta.max_time)
        {
            pairs = b.postings_counts()?;
            series = b.num_series() as u64;
        }
        // The all-series postings list (empty name), if any, is no label pair.
        pairs.retain(|p| !p.0.is_empty() && p.2 > 0);
        Ok(cardinality_of(series, &pairs, limit))
    }

    /// fsyncs the WAL now.
    pub fn sync(&self) -> Result<(), TsdbError> {
        self.inner.sync_wal().ctx(&self.inner.dir.join("wal"))
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

impl Drop for Tsdb {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "closing the metrics storage failed");
        }
    }
}

fn background(inner: Arc<Inner>) {
    let tick = if inner.opts.wal_fsync_interval.is_zero() {
        Duration::from_secs(1)
    } else {
        inner
            .opts
            .wal_fsync_interval
            .clamp(Duration::from_millis(5), Duration::from_secs(60))
    };
    loop {
        {
            let mut stop = inner.stop.lock();
            if *stop {
                return;
            }
            inner.stop_cv.wait_for(&mut stop, tick);
            if *stop {
                return;
            }
        }
        if let Err(e) = inner.sync_wal() {
            tracing::error!(error = %e, "WAL fsync failed");
        }
        inner.update_size_gauges();
        let (first, cur) = inner.wal.segments();
        if cur - first + 1 >= inner.opts.wal_checkpoint_segments
            && let Err(e) = inner.checkpoint()
        {
            tracing::error!(error = %e, "WAL checkpoint failed");
        }
    }
}

fn maintenance_loop(inner: Arc<Inner>) {
    loop {
        {
            let mut stop = inner.stop.lock();
            if *stop {
                return;
            }
            inner
                .stop_cv
                .wait_for(&mut stop, inner.opts.maintenance_interval);
            if *stop {
                return;
            }
        }
        inner.maintain();
    }
}

impl Inner {
    pub fn check_open(&self) -> Result<(), TsdbError> {
        if self.closed.load(Ordering::Acquire) {
            Err(TsdbError::Closed)
        } else {
            Ok(())
        }
    }

    fn check_open_storage(&self) -> Result<(), StorageError> {
        self.check_open()
            .map_err(|e| StorageError::Other(e.to_string()))
    }

    pub fn sync_wal(&self) -> io::Result<()> {
        if let Some(d) = self.wal.sync()? {
            self.head
                .metrics
                .wal_fsync_duration
                .observe(d.as_secs_f64());
        }
        Ok(())
    }

    fn update_size_gauges(&self) {
        let m = &self.head.metrics;
        m.wal_size_bytes.set(self.wal.size() as i64);
        m.mmapped_chunk_bytes
            .set(self.head.chunks.total_bytes() as i64);
    }

    /// Recomputes the oldest sample time (and, on open, the newest) from the series.
    pub fn recompute_time_bounds(&self, with_max: bool) {
        let mut min = i64::MAX;
        let mut max = i64::MIN;
        for s in self.head.all_series() {
            let st = s.state.lock();
            if let Some(t) = st.min_time() {
                min = min.min(t);
            }
            max = max.max(st.max_t);
            if let Some(o) = &st.ooo {
                max = max.max(o.head.last().map_or(i64::MIN, |s| s.0));
                max = o.chunks.iter().fold(max, |m, c| m.max(c.max_t));
            }
        }
        if with_max {
            self.head.max_t.store(max, Ordering::Relaxed);
        }
        self.set_min_time(min);
    }

    /// Publishes the oldest head sample time found by a walk over every series.
    fn set_min_time(&self, min: i64) {
        self.head.min_t.store(min, Ordering::Relaxed);
        let m = &self.head.metrics;
        if min != i64::MAX {
            m.min_time.set(min);
        }
        let max = self.head.max_t.load(Ordering::Relaxed);
        if max != i64::MIN {
            m.max_time.set(max);
        }
    }

    /// Drops head data older than the retention, collects series left empty (by retention
    /// or by a head cut into a block) and deletes expired blocks.
    ///
    /// Walking every series costs a few milliseconds per 100k series, so a pass walks only
    /// when it can find something: the head holds data older than the cutoff, the head was
    /// cut since the last walk, or every [`FULL_WALK_EVERY`]th pass (series left empty in
    /// other ways, e.g. all of a new series' samples refused at commit).
    fn enforce_retention(&self) -> Result<RetentionOutcome, TsdbError> {
        let _m = self.maintenance.lock();
        let mut out = RetentionOutcome::default();
        let max = self.head.max_t.load(Ordering::Relaxed);
        if max == i64::MIN {
            return Ok(out);
        }
        let cutoff = max.saturating_sub(self.retention_ms);
        let pass = self.retention_passes.fetch_add(1, Ordering::Relaxed);
        let min_valid = self.head.min_valid.load(Ordering::Relaxed);
        let walk = self.head.min_t.load(Ordering::Relaxed) < cutoff
            || self.walked_min_valid.swap(min_valid, Ordering::Relaxed) != min_valid
            || pass.is_multiple_of(FULL_WALK_EVERY);
        if walk {
            self.collect_head(cutoff, &mut out)?;
        }
        let (blocks, bytes) = self.block_retention()?;
        out.blocks_removed = blocks;
        out.block_bytes_removed = bytes;
        self.update_size_gauges();
        if out != RetentionOutcome::default() {
            tracing::debug!(?out, cutoff, "retention enforced");
        }
        Ok(out)
    }

    /// The walk of [`enforce_retention`](Self::enforce_retention): drops head chunks older
    /// than `cutoff`, removes series left empty, deletes expired chunk files and publishes
    /// the new oldest head time.
    fn collect_head(&self, cutoff: i64, out: &mut RetentionOutcome) -> Result<(), TsdbError> {
        let m = &self.head.metrics;
        let mut empty = Vec::new();
        let mut min = i64::MAX;
        for s in self.head.all_series() {
            let mut st = s.state.lock();
            out.chunks_removed += st.drop_before(cutoff, m);
            if st.is_empty() && st.deleted.is_none() {
                drop(st);
                empty.push(s);
            } else if let Some(t) = st.min_time() {
                min = min.min(t);
            }
        }
        let chunk_dir = self.dir.join("chunks_head");
        out.files_removed = self.head.chunks.remove_before(cutoff).ctx(&chunk_dir)?;
        if !empty.is_empty() {
            // No commit may be between creating/looking up a series and applying to it.
            let _w = self.wal.lock();
            drop(self.gate.write());
            for s in empty {
                // Resolved before locking the series: never take the symbol lock under a
                // series lock (readers nest them the other way round).
                let labels = self.head.resolve_labels(&s);
                {
                    let mut st = s.state.lock();
                    if !st.is_empty() || st.deleted.is_some() {
                        continue;
                    }
                    st.clear(m);
                    st.deleted = Some(Box::new(labels));
                }
                self.head.remove(&s);
                out.series_removed += 1;
            }
            // Still under the WAL lock: see `series_removals`.
            self.series_removals.fetch_add(1, Ordering::Release);
        }
        m.retention_chunks_removed.inc_by(out.chunks_removed as u64);
        self.set_min_time(min);
        Ok(())
    }

    fn checkpoint(&self) -> Result<bool, TsdbError> {
        let _m = self.maintenance.lock();
        self.checkpoint_locked()
    }

    /// [`checkpoint`](Self::checkpoint) with the maintenance lock already held.
    pub fn checkpoint_locked(&self) -> Result<bool, TsdbError> {
        let m = &self.head.metrics;
        let (first, cur) = {
            let w = self.wal.lock();
            // Every commit that wrote to the WAL so far has applied its samples after this.
            drop(self.gate.write());
            (w.first_seg, w.seg)
        };
        if cur < first.saturating_add(2) {
            return Ok(false);
        }
        let upto = cur - 2;
        let wal_dir = self.dir.join("wal");
        let all = self.head.all_series();
        for s in &all {
            let mut st = s.state.lock();
            if st.deleted.is_none() && !st.cut_for_checkpoint(s.id, upto, &self.head.chunks, m) {
                m.checkpoint_failures.inc();
                return Err(TsdbError::Io {
                    path: self.dir.join("chunks_head"),
                    source: io::Error::other(
                        "could not write open chunks before truncating the WAL",
                    ),
                });
            }
        }
        let chunk_dir = self.dir.join("chunks_head");
        self.head.chunks.sync().ctx(&chunk_dir)?;
        let live: Vec<(u64, Labels)> = all
            .iter()
            .filter(|s| s.state.lock().deleted.is_none())
            .map(|s| (s.id, self.head.resolve_labels(s)))
            .collect();
        let written = wal::write_checkpoint(&wal_dir, upto, live.iter().map(|(id, l)| (*id, l)));
        if let Err(e) = written {
            m.checkpoint_failures.inc();
            return Err(TsdbError::Io {
                path: wal_dir,
                source: e,
            });
        }
        self.wal.remove_upto(upto).ctx(&wal_dir)?;
        m.checkpoints.inc();
        self.update_size_gauges();
        tracing::debug!(upto, series = live.len(), "WAL checkpoint written");
        Ok(true)
    }

    fn series_for(&self, matchers: &[Matcher]) -> Vec<Arc<MemSeries>> {
        self.head
            .matching_ids(matchers)
            .iter()
            .filter_map(|&id| self.head.get_by_id(id))
            .collect()
    }

    fn has_data(&self, id: u64, start: i64, end: i64) -> bool {
        self.head
            .get_by_id(id)
            .is_some_and(|s| s.state.lock().has_data(start, end))
    }
}

impl Inner {
    /// Head series matching `matchers` with samples in `[start, end]`, sorted by labels.
    fn head_select(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, StorageError> {
        let series = self.series_for(matchers);
        let mut snaps: Vec<(Arc<MemSeries>, Snapshot)> = Vec::new();
        {
            let _g = self.gate.read();
            for s in series {
                let snap = s.state.lock().snapshot(start, end, &self.head.chunks)?;
                if let Some(snap) = snap {
                    snaps.push((s, snap));
                }
            }
        }
        let mut labelled: Vec<(Labels, Snapshot)> = snaps
            .into_iter()
            .map(|(s, snap)| (self.head.resolve_labels(&s), snap))
            .collect();
        labelled.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = Vec::with_capacity(labelled.len());
        for (labels, snap) in labelled {
            let samples = snap.decode(start, end)?;
            if !samples.is_empty() {
                out.push((labels, samples));
            }
        }
        Ok(out)
    }

    /// Blocks overlapping `[start, end]`. Read after the head so a concurrent cut is seen.
    fn blocks_in(&self, start: i64, end: i64) -> Vec<Arc<Block>> {
        self.blocks
            .get()
            .iter()
            .filter(|b| b.meta.min_time <= end && b.meta.max_time > start)
            .cloned()
            .collect()
    }
}

/// Where part of a selected series' samples come from.
enum Piece {
    /// Decoded head samples.
    Head(Vec<Sample>),
    /// Chunks of `blocks[i]` overlapping the query range.
    Block(usize, Vec<BlockChunk>),
}

impl Piece {
    /// At most this many samples (chunks may reach outside the query range).
    fn estimate(&self) -> usize {
        match self {
            Piece::Head(s) => s.len(),
            Piece::Block(_, cs) => cs.iter().map(|c| c.samples as usize).sum(),
        }
    }

    /// `[min, max]` time the piece can hold.
    fn span(&self) -> Option<(i64, i64)> {
        match self {
            Piece::Head(s) => Some((s.first()?.t, s.last()?.t)),
            Piece::Block(_, cs) => Some((cs.first()?.min_t, cs.iter().map(|c| c.max_t).max()?)),
        }
    }

    fn decode_into(
        &self,
        blocks: &[Arc<Block>],
        start: i64,
        end: i64,
        out: &mut Vec<Sample>,
        cache: &mut GroupCache,
    ) -> Result<(), StorageError> {
        match self {
            Piece::Head(s) => out.extend_from_slice(s),
            Piece::Block(bi, cs) => match blocks.get(*bi) {
                Some(b) => b.samples_cached(cs, start, end, out, cache)?,
                None => return Err(StorageError::Other("block index out of range".into())),
            },
        }
        Ok(())
    }
}

/// Appends one series' samples in `[start, end]` from its pieces (head first, then blocks
/// by time, the first of equal timestamps kept) to `out`; returns the number of samples
/// decoded before merging. Pieces that follow each other in time are decoded straight into
/// `out`.
fn merge_pieces_into(
    pieces: &[Piece],
    blocks: &[Arc<Block>],
    start: i64,
    end: i64,
    out: &mut Vec<Sample>,
    cache: &mut GroupCache,
) -> Result<usize, StorageError> {
    let cap: usize = pieces.iter().map(Piece::estimate).sum();
    let mut spans: Vec<(i64, i64, usize)> = Vec::with_capacity(pieces.len());
    for (i, p) in pieces.iter().enumerate() {
        if let Some((lo, hi)) = p.span() {
            spans.push((lo, hi, i));
        }
    }
    spans.sort_by_key(|s| s.0);
    let base = out.len();
    if spans.windows(2).all(|w| w[0].1 < w[1].0) {
        out.reserve(cap);
        for &(_, _, i) in &spans {
            pieces[i].decode_into(blocks, start, end, out, cache)?;
        }
        return Ok(out.len() - base);
    }
    let mut lists = Vec::with_capacity(pieces.len());
    let mut raw = 0usize;
    for p in pieces {
        let mut v = Vec::with_capacity(p.estimate());
        p.decode_into(blocks, start, end, &mut v, cache)?;
        raw += v.len();
        lists.push(v);
    }
    out.extend(merge_samples(lists));
    Ok(raw)
}

/// [`merge_pieces_into`] a new vector: the samples and the number decoded before merging.
fn merge_pieces(
    pieces: &[Piece],
    blocks: &[Arc<Block>],
    start: i64,
    end: i64,
    cache: &mut GroupCache,
) -> Result<(Vec<Sample>, usize), StorageError> {
    let mut out = Vec::new();
    let raw = merge_pieces_into(pieces, blocks, start, end, &mut out, cache)?;
    Ok((out, raw))
}

/// Most threads one query's decoding uses.
const MAX_QUERY_THREADS: usize = 8;
/// Samples below which another decoding thread is not worth starting.
const SAMPLES_PER_THREAD: usize = 64 * 1024;

/// How many threads [`par_each`] should use for work of `weight` samples over `items`.
fn threads_for(weight: usize, items: usize) -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_QUERY_THREADS)
    });
    cores.min(weight / SAMPLES_PER_THREAD).min(items).max(1)
}

/// Calls `f(state, index, item)` for every item on `threads` scoped threads (the caller's
/// included) that each take the next few items whenever they are done: a thread that starts
/// late (a new thread often waits for the scheduler to move it to an idle core) or runs
/// slower leaves its share to the others. The items are taken in batches starting at
/// `starts` (increasing, the first 0), or four at a time when `starts` is empty. `init`
/// makes each thread's state; the first error stops the others.
fn par_each<T: Sync, S, E: Send>(
    items: &[T],
    threads: usize,
    starts: &[usize],
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize, &T) -> Result<(), E> + Sync,
) -> Result<(), E> {
    use std::sync::atomic::AtomicUsize;
    const BATCH: usize = 4;
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let work = || -> Result<(), E> {
        let mut state = init();
        loop {
            if failed.load(Ordering::Relaxed) {
                return Ok(());
            }
            let k = next.fetch_add(1, Ordering::Relaxed);
            let (i, to) = if starts.is_empty() {
                (
                    k.saturating_mul(BATCH),
                    k.saturating_add(1).saturating_mul(BATCH),
                )
            } else {
                match starts.get(k) {
                    Some(&i) => (i, starts.get(k + 1).copied().unwrap_or(items.len())),
                    None => return Ok(()),
                }
            };
            let Some(batch) = items.get(i..to.min(items.len())) else {
                return Ok(());
            };
            if batch.is_empty() {
                return Ok(());
            }
            for (k, item) in batch.iter().enumerate() {
                if let Err(e) = f(&mut state, i + k, item) {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
    };
    if threads <= 1 {
        return work();
    }
    let first_err: Mutex<Option<E>> = Mutex::new(None);
    READ_POOL.run(threads - 1, &|| {
        if let Err(e) = work() {
            first_err.lock().get_or_insert(e);
        }
    });
    match first_err.into_inner() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A selected series to decode: its labels and where its samples are.
type Job = (Labels, Vec<Piece>);

/// Batch starts for [`par_each`] over `jobs` that keep the series of one chunk group (see
/// [`Block::group_of`]) of the block with the most samples in one batch, so its group is
/// inflated by one thread only; at most [`crate::block::GROUP_SERIES`] series a batch. Empty
/// (four at a time) when that block is not grouped.
fn group_batches(jobs: &[Job], blocks: &[Arc<Block>]) -> Vec<usize> {
    let mut weight = vec![0usize; blocks.len()];
    for (_, ps) in jobs {
        for p in ps {
            if let Piece::Block(bi, _) = p
                && let Some(w) = weight.get_mut(*bi)
            {
                *w += p.estimate();
            }
        }
    }
    let Some((main, _)) = weight.iter().enumerate().max_by_key(|x| x.1) else {
        return Vec::new();
    };
    let group = |(_, ps): &Job| {
        ps.iter().find_map(|p| match p {
            Piece::Block(bi, cs) if *bi == main => blocks[main].group_of(cs.first()?.r),
            _ => None,
        })
    };
    if blocks[main].group_of(0).is_none() {
        return Vec::new();
    }
    let mut starts = Vec::with_capacity(jobs.len() / 4 + 1);
    let mut last = None;
    // The last eighth goes four at a time, so no thread is left alone with a whole group.
    let tail = jobs.len() - jobs.len() / 8;
    for (i, job) in jobs.iter().enumerate() {
        let g = group(job);
        let len = i - starts.last().copied().unwrap_or(0);
        if starts.is_empty()
            || g != last
            || (g.is_none() || i >= tail) && len >= 4
            || len >= crate::block::GROUP_SERIES
        {
            starts.push(i);
        }
        last = g;
    }
    starts
}

impl Tsdb {
    /// The series matching `matchers` in label order, with the head samples and block
    /// chunks overlapping `[start, end]` (nothing decoded from blocks yet), and the blocks
    /// the pieces refer to. Fails early when the chunks wholly inside the range already hold
    /// more than twice `hints.max_samples`.
    fn gather(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<(Vec<Job>, Vec<Arc<Block>>), StorageError> {
        let inner = &self.inner;
        let (start, end) = (hints.start, hints.end);
        let heads = inner.head_select(matchers, start, end)?;
        // Duplicates across head and blocks are counted twice here, so allow twice the limit
        // while gathering; the exact limit applies to the merged result.
        let budget = hints.max_samples.map(|l| l.saturating_mul(2));
        let mut sure: usize = heads.iter().map(|l| l.1.len()).sum();
        let blocks = inner.blocks_in(start, end);
        // Each block's index is read on its own (chunks filtered, label pairs borrowed from
        // the block's symbols: label sets are built once per distinct series, below), on
        // several cores when there are several blocks.
        type Found<'a> = (
            Vec<(&'a str, &'a str)>,
            Vec<(std::ops::Range<usize>, Piece)>,
        );
        let found: Vec<Mutex<Found<'_>>> = blocks.iter().map(|_| Mutex::default()).collect();
        let sure_blocks = std::sync::atomic::AtomicUsize::new(0);
        let over_budget = |add: usize| {
            let total = sure + sure_blocks.fetch_add(add, Ordering::Relaxed) + add;
            matches!(budget, Some(b) if total > b)
        };
        let limit_err = || StorageError::TooManySamples {
            limit: hints.max_samples.unwrap_or(0),
        };
        let threads = threads_for(blocks.len() * SAMPLES_PER_THREAD, blocks.len());
        par_each(
            &blocks,
            threads,
            &[],
            || (),
            |_, bi, _| -> Result<(), StorageError> {
                // The block through `blocks` itself: the pairs borrow from it beyond this call.
                let b: &Block = &blocks[bi];
                let (mut pairs, mut out) = (Vec::new(), Vec::new());
                let mut block_sure = 0usize;
                let mut symbols = crate::block::SymbolCache::default();
                for id in b.matching(matchers)? {
                    let at = pairs.len();
                    let mut chunks = Vec::new();
                    b.series_into_cached(id, &mut pairs, &mut chunks, &mut symbols)?;
                    chunks.retain(|c| c.max_t >= start && c.min_t <= end);
                    if chunks.is_empty() {
                        pairs.truncate(at);
                        continue;
                    }
                    // Chunks wholly inside the range are certain to be returned in full.
                    let n = chunks
                        .iter()
                        .filter(|c| c.min_t >= start && c.max_t <= end)
                        .map(|c| c.samples as usize)
                        .sum::<usize>();
                    block_sure += n;
                    if block_sure > 1 << 20 {
                        if over_budget(block_sure) {
                            return Err(limit_err());
                        }
                        block_sure = 0;
                    }
                    out.push((at..pairs.len(), Piece::Block(bi, chunks)));
                }
                if over_budget(block_sure) {
                    return Err(limit_err());
                }
                *found[bi].lock() = (pairs, out);
                Ok(())
            },
        )?;
        sure += sure_blocks.into_inner();
        if let (Some(budget), Some(limit)) = (budget, hints.max_samples)
            && sure > budget
        {
            return Err(StorageError::TooManySamples { limit });
        }
        let (pair_bufs, lists): (Vec<_>, Vec<_>) = found.into_iter().map(Mutex::into_inner).unzip();
        if lists.iter().all(Vec::is_empty) {
            // Only the head has data here: its label sets are unique and already built.
            let jobs = heads
                .into_iter()
                .map(|(labels, samples)| (labels, vec![Piece::Head(samples)]))
                .collect();
            return Ok((jobs, blocks));
        }
        let (head_labels, head_samples): (Vec<Labels>, Vec<Vec<Sample>>) =
            heads.into_iter().unzip();
        let head_pairs: Vec<Vec<(&str, &str)>> = head_labels
            .iter()
            .map(|l| {
                l.iter()
                    .map(|l| (l.name.as_str(), l.value.as_str()))
                    .collect()
            })
            .collect();
        // Every piece with its label pairs: the head first, then blocks by time.
        let mut pieces: Vec<(&[(&str, &str)], Piece)> =
            Vec::with_capacity(head_pairs.len() + lists.iter().map(Vec::len).sum::<usize>());
        for (pairs, samples) in head_pairs.iter().zip(head_samples) {
            pieces.push((pairs, Piece::Head(samples)));
        }
        for (pairs, list) in pair_bufs.iter().zip(lists) {
            for (range, piece) in list {
                pieces.push((&pairs[range], piece));
            }
        }
        // Stable: for equal labels the head comes first, then blocks by time. Pairs compare
        // as the label sets they make (name, then value, label by label).
        pieces.sort_by(|a, b| a.0.cmp(b.0));
        let mut jobs: Vec<Job> = Vec::new();
        let mut last: Option<&[(&str, &str)]> = None;
        for (pairs, piece) in pieces {
            match jobs.last_mut() {
                Some((_, ps)) if last == Some(pairs) => ps.push(piece),
                _ => {
                    let labels = pairs.iter().map(|&(n, v)| Label::new(n, v)).collect();
                    jobs.push((Labels::from_sorted_unchecked(labels), vec![piece]));
                    last = Some(pairs);
                }
            }
        }
        Ok((jobs, blocks))
    }
}

impl Queryable for Tsdb {
    fn select(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<Vec<Series>, StorageError> {
        let inner = &self.inner;
        inner.check_open_storage()?;
        let (start, end) = (hints.start, hints.end);
        if start > end {
            return Ok(Vec::new());
        }
        let (jobs, blocks) = self.gather(matchers, hints)?;
        let budget = hints.max_samples.map(|l| l.saturating_mul(2));
        // Decoding is the bulk of a query over blocks: spread the series over the cores.
        let weight: usize = jobs
            .iter()
            .map(|(_, ps)| ps.iter().map(Piece::estimate).sum::<usize>())
            .sum();
        let slots: Vec<Mutex<(Vec<Sample>, usize)>> =
            jobs.iter().map(|_| Mutex::default()).collect();
        par_each(
            &jobs,
            threads_for(weight, jobs.len()),
            &group_batches(&jobs, &blocks),
            // A group per block and two to spare: series of a batch share their groups.
            || GroupCache::new(blocks.len() + 2),
            |cache, i, (_, ps)| -> Result<(), StorageError> {
                *slots[i].lock() = merge_pieces(ps, &blocks, start, end, cache)?;
                Ok(())
            },
        )?;
        let mut out: Vec<Series> = Vec::with_capacity(jobs.len());
        let mut gathered = 0usize;
        let mut total = 0usize;
        for ((labels, _), slot) in jobs.into_iter().zip(slots) {
            let (samples, raw) = slot.into_inner();
            gathered += raw;
            if let (Some(budget), Some(limit)) = (budget, hints.max_samples)
                && gathered > budget
            {
                return Err(StorageError::TooManySamples { limit });
            }
            if samples.is_empty() {
                continue;
            }
            total += samples.len();
            if let Some(limit) = hints.max_samples
                && total > limit
            {
                return Err(StorageError::TooManySamples { limit });
            }
            out.push(Series { labels, samples });
            if let Some(limit) = hints.max_series
                && out.len() > limit
            {
                return Err(StorageError::TooManySeries { limit });
            }
        }
        Ok(out)
    }

    /// Decodes each series into a buffer reused per thread and visits it there, on all
    /// cores: the selection's samples never exist all at once.
    fn select_each(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
        visit: &(dyn Fn(usize, &Labels, &[Sample]) + Sync),
    ) -> Result<usize, StorageError> {
        use std::sync::atomic::AtomicUsize;
        let inner = &self.inner;
        inner.check_open_storage()?;
        let (start, end) = (hints.start, hints.end);
        if start > end {
            return Ok(0);
        }
        let (jobs, blocks) = self.gather(matchers, hints)?;
        let budget = hints.max_samples.map(|l| l.saturating_mul(2));
        // Running totals across threads; the limits are on sums, so where the sum crosses a
        // limit does not depend on the order series are decoded in.
        let gathered = AtomicUsize::new(0);
        let total = AtomicUsize::new(0);
        let visited = AtomicUsize::new(0);
        let weight: usize = jobs
            .iter()
            .map(|(_, ps)| ps.iter().map(Piece::estimate).sum::<usize>())
            .sum();
        par_each(
            &jobs,
            threads_for(weight, jobs.len()),
            &group_batches(&jobs, &blocks),
            || (Vec::<Sample>::new(), GroupCache::new(blocks.len() + 2)),
            |(buf, cache), i, (labels, ps)| -> Result<(), StorageError> {
                buf.clear();
                let raw = merge_pieces_into(ps, &blocks, start, end, buf, cache)?;
                let g = gathered.fetch_add(raw, Ordering::Relaxed) + raw;
                if let (Some(budget), Some(limit)) = (budget, hints.max_samples)
                    && g > budget
                {
                    return Err(StorageError::TooManySamples { limit });
                }
                if buf.is_empty() {
                    return Ok(());
                }
                let t = total.fetch_add(buf.len(), Ordering::Relaxed) + buf.len();
                if let Some(limit) = hints.max_samples
                    && t > limit
                {
                    return Err(StorageError::TooManySamples { limit });
                }
                let v = visited.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(limit) = hints.max_series
                    && v > limit
                {
                    return Err(StorageError::TooManySeries { limit });
                }
                visit(i, labels, buf);
                Ok(())
            },
        )?;
        Ok(total.into_inner())
    }

    fn series(
        &self,
        matchers: &[Matcher],
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<Labels>, StorageError> {
        let inner = &self.inner;
        inner.check_open_storage()?;
        let mut out: Vec<Labels> = inner
            .series_for(matchers)
            .iter()
            .filter(|s| s.state.lock().has_data(start, end))
            .map(|s| inner.head.resolve_labels(s))
            .collect();
        for b in inner.blocks_in(start, end) {
            for id in b.matching(matchers)? {
                let (labels, chunks) = b.series(id)?;
                if chunks.iter().any(|c| c.max_t >= start && c.min_t <= end) {
                    out.push(labels);
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<String>, StorageError> {
        let inner = &self.inner;
        inner.check_open_storage()?;
        let mut names: Vec<String> = if matchers.is_empty() {
            let idx = inner.head.index.read();
            let syms = inner.head.symbols.read();
            idx.names()
                .filter(|(_, values)| {
                    values
                        .values()
                        .any(|ids| ids.iter().any(|id| inner.has_data(id, start, end)))
                })
                .map(|(n, _)| syms.str(*n).to_string())
                .collect()
        } else {
            let series = inner.series_for(matchers);
            let syms = inner.head.symbols.read();
            let mut set = FxHashSet::default();
            for s in series {
                if s.state.lock().has_data(start, end) {
                    set.extend(s.labels().iter().map(|&(n, _)| syms.str(n)));
                }
            }
            set.into_iter().map(str::to_string).collect()
        };
        for b in inner.blocks_in(start, end) {
            names.extend(b.label_names(matchers)?);
        }
        names.sort_unstable();
        names.dedup();
        Ok(names)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<String>, StorageError> {
        let inner = &self.inner;
        inner.check_open_storage()?;
        let mut values: Vec<String> = 'head: {
            if matchers.is_empty() {
                let idx = inner.head.index.read();
                let syms = inner.head.symbols.read();
                let Some(values) = syms.lookup(name).and_then(|n| idx.values(n)) else {
                    break 'head Vec::new();
                };
                values
                    .iter()
                    .filter(|(_, ids)| ids.iter().any(|id| inner.has_data(id, start, end)))
                    .map(|(v, _)| syms.str(*v).to_string())
                    .collect()
            } else {
                let series = inner.series_for(matchers);
                let syms = inner.head.symbols.read();
                let Some(n) = syms.lookup(name) else {
                    break 'head Vec::new();
                };
                let mut set = FxHashSet::default();
                for s in series {
                    if let Some(&(_, v)) = s.labels().iter().find(|(ln, _)| *ln == n)
                        && s.state.lock().has_data(start, end)
                    {
                        set.insert(syms.str(v));
                    }
                }
                set.into_iter().map(str::to_string).collect()
            }
        };
        for b in inner.blocks_in(start, end) {
            values.extend(b.label_values(name, matchers)?);
        }
        values.sort_unstable();
        values.dedup();
        Ok(values)
    }
}

impl Appendable for Tsdb {
    fn appender(&self) -> Box<dyn Appender + Send + '_> {
        Box::new(TsdbAppender::new(&self.inner))
    }
}

/// The top-`limit` tables of [`Cardinality`] from `(name, value, series)` postings counts.
fn cardinality_of(series: u64, pairs: &[(String, String, u64)], limit: usize) -> Cardinality {
    let top = |mut v: Vec<(String, u64)>| {
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(limit);
        v
    };
    let metrics = top(pairs
        .iter()
        .filter(|p| p.0 == lookout_storage::METRIC_NAME)
        .map(|p| (p.1.clone(), p.2))
        .collect());
    let mut names: FxHashMap<&str, (u64, u64)> = FxHashMap::default();
    for p in pairs {
        let e = names.entry(p.0.as_str()).or_default();
        e.0 += 1;
        e.1 += p.1.len() as u64 * p.2;
    }
    let label_value_counts = top(names.iter().map(|(k, v)| (k.to_string(), v.0)).collect());
    let label_value_bytes = top(names.iter().map(|(k, v)| (k.to_string(), v.1)).collect());
    let label_pairs = top(pairs
        .iter()
        .map(|p| (format!("{}={}", p.0, p.1), p.2))
        .collect());
    Cardinality {
        series,
        metrics,
        label_value_counts,
        label_pairs,
        label_value_bytes,
        num_label_pairs: pairs.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{BlockWriter, GROUP_SERIES};
    use std::sync::atomic::AtomicUsize;

    /// Batches keep a group's series together (at most GROUP_SERIES), except in the last
    /// eighth (four at a time); `par_each` visits every item once with such starts.
    #[test]
    fn batches_follow_groups_and_visit_everything_once() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::new(tmp.path()).unwrap();
        let samples: Vec<Sample> = (0..50).map(|t| Sample { t, v: 1.0 }).collect();
        for i in 0..200 {
            let labels =
                Labels::from_pairs([("__name__", "m".to_string()), ("i", format!("{i:03}"))]);
            w.add_series(labels, &samples).unwrap();
        }
        let meta = w.finish(0, 50, 1, vec![], false).unwrap().unwrap();
        let b = Arc::new(Block::open(&tmp.path().join(&meta.id)).unwrap());
        // Every third series is selected.
        let jobs: Vec<Job> = (0..200u64)
            .filter(|i| i % 3 == 0)
            .map(|i| {
                let (labels, chunks) = b.series(i).unwrap();
                (labels, vec![Piece::Block(0, chunks)])
            })
            .collect();
        let blocks = vec![b.clone()];
        let starts = group_batches(&jobs, &blocks);
        assert_eq!(starts.first(), Some(&0));
        let group = |j: &Job| match &j.1[0] {
            Piece::Block(_, cs) => b.group_of(cs[0].r).unwrap(),
            Piece::Head(_) => unreachable!(),
        };
        let tail = jobs.len() - jobs.len() / 8;
        let ends = starts.iter().skip(1).copied().chain([jobs.len()]);
        for (&s, e) in starts.iter().zip(ends) {
            assert!(e > s && e - s <= GROUP_SERIES);
            assert!(jobs[s..e].iter().all(|j| group(j) == group(&jobs[s])));
            if s >= tail {
                assert!(e - s <= 4);
            }
            // A batch ends where its group does (or at the tail's fours).
            if e < jobs.len() && e < tail {
                assert_ne!(group(&jobs[e]), group(&jobs[e - 1]));
            }
        }
        let seen: Vec<AtomicUsize> = (0..jobs.len()).map(|_| AtomicUsize::new(0)).collect();
        par_each(
            &jobs,
            2,
            &starts,
            || (),
            |_, i, _| -> Result<(), ()> {
                seen[i].fetch_add(1, Ordering::Relaxed);
                Ok(())
            },
        )
        .unwrap();
        assert!(seen.iter().all(|n| n.load(Ordering::Relaxed) == 1));
        // Head-only jobs (no group): four at a time.
        let heads: Vec<Job> = (0..10)
            .map(|_| (Labels::default(), vec![Piece::Head(samples.clone())]))
            .collect();
        assert!(group_batches(&heads, &[]).is_empty());
    }
}
