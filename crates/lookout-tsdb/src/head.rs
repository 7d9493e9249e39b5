//! The in-memory head: series (interned labels + per-series chunk state), the lookup tables
//! (by id and by label hash, both lock-striped, one pointer a slot), the postings index and
//! the rules for appending a sample to a series, cutting full chunks to the head-chunk files,
//! dropping old chunks and taking read snapshots.

use std::cell::UnsafeCell;
use std::hash::{BuildHasher, Hasher};
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use hashbrown::HashTable;
use lookout_storage::{AppendError, Label, Labels, Matcher, Sample, StorageError};
use parking_lot::RwLock;
use parking_lot::lock_api::RawMutex as _;
use rustc_hash::{FxBuildHasher, FxHasher};

use crate::chunk::{XorChunk, XorIter};
use crate::chunk_file::{ChunkBytes, ChunkFile, ChunkFiles, ChunkKind};
use crate::metrics::Metrics;
use crate::postings::{IdList, PostingsIndex};
use crate::symbols::{Sym, SymbolTable};

const STRIPES: usize = 64;

/// A full chunk living in a head-chunk file.
#[derive(Clone, Copy, Debug)]
pub struct ChunkMeta {
    pub r: u64,
    pub min_t: i64,
    pub max_t: i64,
}

/// Chunk sizing rules.
#[derive(Clone, Copy, Debug)]
pub struct ChunkParams {
    pub samples_per_chunk: usize,
    pub max_chunk_bytes: usize,
    pub chunk_range_ms: i64,
    pub ooo_cap: usize,
}

pub struct HeadChunk {
    pub c: XorChunk,
    /// WAL segment holding this chunk's first sample.
    pub first_seg: u32,
}

/// Length of a series' first chunk in a chunk range: between 1 and `per_chunk`, spread by
/// series id (later chunks in the range hold `per_chunk`). Series scraped together would
/// otherwise fill and cut their chunks in lockstep, so every open chunk would be nearly full
/// at the same moment; with the phases spread, the open chunks hold half a chunk on average
/// at any time. (Open chunks are the largest growing part of the head's heap: ~400 bytes each
/// when full.)
fn first_chunk_len(id: u64, per_chunk: usize) -> usize {
    let spread = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize;
    1 + spread % per_chunk.max(1)
}

/// Initial buffer of an open chunk; it grows by a quarter at a time (see `BitWriter`).
const OPEN_CHUNK_BYTES: usize = 32;

#[derive(Default)]
pub struct OooState {
    /// Sorted by time, unique timestamps.
    pub head: Vec<(i64, f64)>,
    pub first_seg: u32,
    pub chunks: Vec<ChunkMeta>,
}

pub struct SeriesState {
    /// The open in-order chunk (its buffer is replaced by a small one at each cut).
    pub head: Option<HeadChunk>,
    /// In-order chunks in head-chunk files, sorted by time, non-overlapping. A boxed slice
    /// (no spare capacity, 8 bytes smaller than a `Vec`): a series gains a chunk every few
    /// minutes, so the list is reallocated one slot at a time anyway.
    pub chunks: Box<[ChunkMeta]>,
    pub ooo: Option<Box<OooState>>,
    /// Newest in-order timestamp (`i64::MIN` before the first sample). While the open chunk
    /// holds samples, this and `last_v` are its last sample, which it does not keep itself.
    pub max_t: i64,
    pub last_v: u64,
    /// Set when garbage collected; holds the labels so a racing appender can recreate it.
    pub deleted: Option<Box<Labels>>,
}

/// What appending needs besides the series: chunk sizing, the chunk files, the metrics.
pub struct Ctx<'a> {
    pub params: &'a ChunkParams,
    pub files: &'a ChunkFiles,
    pub metrics: &'a Metrics,
}

pub enum Applied {
    Stored,
    Noop,
}

/// A head series: 112 bytes, so with `Arc`'s counters it takes the allocator's 128-byte size
/// class (every active series pays this; see the size test).
pub struct MemSeries {
    pub id: u64,
    /// Interned `(name, value)` pairs, sorted by name; the count is in `state` (see
    /// [`SeriesLock`]), so this is a thin pointer to a `Box<[(Sym, Sym)]>`.
    labels: NonNull<(Sym, Sym)>,
    pub state: SeriesLock,
}

// SAFETY: `labels` points to an allocation the series owns and never changes after creation
// (read-only shared access); everything else is `Send + Sync` or guarded by the lock.
unsafe impl Send for MemSeries {}
// SAFETY: as above.
unsafe impl Sync for MemSeries {}

/// `SeriesLock::label_count` when the count does not fit: the real one is then the first
/// element of the label allocation (as `(low, high)` 32-bit halves).
const LONG_LABELS: u16 = u16::MAX;

impl MemSeries {
    fn new(id: u64, hash: u64, pairs: Box<[(Sym, Sym)]>) -> MemSeries {
        let (pairs, label_count) = match u16::try_from(pairs.len()) {
            Ok(n) if n != LONG_LABELS => (pairs, n),
            _ => {
                let n = pairs.len() as u64;
                let mut v = Vec::with_capacity(pairs.len() + 1);
                v.push((n as u32, (n >> 32) as u32));
                v.extend_from_slice(&pairs);
                (v.into_boxed_slice(), LONG_LABELS)
            }
        };
        let raw = Box::into_raw(pairs).cast::<(Sym, Sym)>();
        MemSeries {
            id,
            // SAFETY: `Box::into_raw` never returns null.
            labels: unsafe { NonNull::new_unchecked(raw) },
            state: SeriesLock {
                raw: parking_lot::RawMutex::INIT,
                label_count,
                hash: fold_hash(hash),
                data: UnsafeCell::new(SeriesState::new()),
            },
        }
    }

    /// The allocation behind `labels`: its pointer and length in pairs.
    #[inline]
    fn label_alloc(&self) -> (*mut (Sym, Sym), usize) {
        let p = self.labels.as_ptr();
        match self.state.label_count {
            LONG_LABELS => {
                // SAFETY: a long list's allocation starts with its count.
                let (lo, hi) = unsafe { *p };
                (p, ((u64::from(hi) << 32) | u64::from(lo)) as usize + 1)
            }
            n => (p, usize::from(n)),
        }
    }

    /// The series' interned `(name, value)` pairs, sorted by name.
    #[inline]
    pub fn labels(&self) -> &[(Sym, Sym)] {
        let (p, n) = self.label_alloc();
        // A long list's first element is its count.
        let skip = usize::from(self.state.label_count == LONG_LABELS);
        // SAFETY: `p` points to `n` initialised pairs the series owns for as long as `self`
        // lives, and `skip <= n`.
        unsafe { std::slice::from_raw_parts(p.add(skip), n - skip) }
    }
}

impl Drop for MemSeries {
    fn drop(&mut self) {
        let (p, n) = self.label_alloc();
        // SAFETY: the pointer and length of the boxed slice `new` leaked.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, n)) });
    }
}

/// 32 bits of a label hash ([`labels_hash`]): what the series keeps and the lookup tables
/// are keyed by.
#[inline]
fn fold_hash(h: u64) -> u32 {
    (h ^ (h >> 32)) as u32
}

/// A series' lock around its [`SeriesState`]. It also holds two fixed facts about the series
/// in what would otherwise be the lock byte's padding (a `parking_lot::Mutex<SeriesState>`
/// is 8 bytes larger than its state, 7 of them padding): the label count and 32 bits of the
/// label hash. That, with the 32-byte open chunk, keeps [`MemSeries`] in a 128-byte block.
pub struct SeriesLock {
    raw: parking_lot::RawMutex,
    label_count: u16,
    hash: u32,
    data: UnsafeCell<SeriesState>,
}

// SAFETY: the state is only reached through a guard, which holds the lock; `SeriesState` is
// `Send`.
unsafe impl Sync for SeriesLock {}

impl SeriesLock {
    /// Locks the state (blocking, like `parking_lot::Mutex::lock`).
    #[inline]
    pub fn lock(&self) -> SeriesGuard<'_> {
        self.raw.lock();
        SeriesGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }
}

/// Access to a locked [`SeriesState`]; unlocks on drop.
pub struct SeriesGuard<'a> {
    lock: &'a SeriesLock,
    /// Unlocked by the thread that locked it (as `parking_lot`'s guards).
    _not_send: PhantomData<*const ()>,
}

impl Deref for SeriesGuard<'_> {
    type Target = SeriesState;
    #[inline]
    fn deref(&self) -> &SeriesState {
        // SAFETY: the guard holds the lock, so no one else reaches the state.
        unsafe { &*self.lock.data.get() }
    }
}

impl DerefMut for SeriesGuard<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut SeriesState {
        // SAFETY: as in `deref`, and `&mut self` makes this the only access.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl Drop for SeriesGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: this guard locked it and has not unlocked it.
        unsafe { self.lock.raw.unlock() }
    }
}

impl SeriesState {
    fn new() -> Self {
        SeriesState {
            head: None,
            chunks: Box::default(),
            ooo: None,
            max_t: i64::MIN,
            last_v: 0,
            deleted: None,
        }
    }

    /// Heap bytes of sample data held by this series.
    pub fn heap_bytes(&self) -> usize {
        self.head.as_ref().map_or(0, |h| h.c.capacity())
            + self
                .ooo
                .as_ref()
                .map_or(0, |o| o.head.capacity() * std::mem::size_of::<(i64, f64)>())
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
            && self.head.as_ref().is_none_or(|h| h.c.num_samples() == 0)
            && self
                .ooo
                .as_ref()
                .is_none_or(|o| o.head.is_empty() && o.chunks.is_empty())
    }

    pub fn min_time(&self) -> Option<i64> {
        let mut m: Option<i64> = None;
        let mut see = |t: i64| m = Some(m.map_or(t, |x| x.min(t)));
        if let Some(c) = self.chunks.first() {
            see(c.min_t);
        }
        if let Some(h) = &self.head
            && h.c.num_samples() > 0
        {
            see(h.c.min_t());
        }
        if let Some(o) = &self.ooo {
            if let Some(s) = o.head.first() {
                see(s.0);
            }
            for c in &o.chunks {
                see(c.min_t);
            }
        }
        m
    }

    /// True when some chunk overlaps `[start, end]` (chunk granularity).
    pub fn has_data(&self, start: i64, end: i64) -> bool {
        let i = self.chunks.partition_point(|c| c.max_t < start);
        if self.chunks.get(i).is_some_and(|c| c.min_t <= end) {
            return true;
        }
        if let Some(h) = &self.head
            && h.c.num_samples() > 0
            && h.c.min_t() <= end
            && self.max_t >= start
        {
            return true;
        }
        if let Some(o) = &self.ooo {
            if o.head.iter().any(|s| s.0 >= start && s.0 <= end) {
                return true;
            }
            if o.chunks.iter().any(|c| c.min_t <= end && c.max_t >= start) {
                return true;
            }
        }
        false
    }

    /// Adds an in-order sample (`t` newer than every stored in-order sample).
    pub fn append_in_order(
        &mut self,
        id: u64,
        t: i64,
        v: f64,
        seg: u32,
        cx: &Ctx<'_>,
    ) -> Result<Applied, AppendError> {
        let (p, files, m) = (cx.params, cx.files, cx.metrics);
        if self.max_t != i64::MIN {
            if t < self.max_t {
                return Err(AppendError::OutOfOrder);
            }
            if t == self.max_t {
                return if v.to_bits() == self.last_v {
                    Ok(Applied::Noop)
                } else {
                    Err(AppendError::DuplicateSampleForTimestamp)
                };
            }
        }
        let before = self.heap_bytes();
        if let Some(h) = &self.head {
            let n = h.c.num_samples();
            let want_cut = n > 0 && {
                // The open chunk's range: that of its last sample (`max_t`), the same as its
                // first one's, since a sample of another range cuts it; `min_t()` would read
                // the chunk's first bytes.
                let range = self.max_t.div_euclid(p.chunk_range_ms);
                n >= self.cut_len(id, n, range, p)
                    || h.c.bytes().len() >= p.max_chunk_bytes
                    || t.div_euclid(p.chunk_range_ms) != range
            };
            // After a failed write the chunk stays open; retry once per chunk's worth of samples.
            if want_cut && (n <= p.samples_per_chunk || n % p.samples_per_chunk == 0) {
                self.cut_head(id, files, m);
            }
            if self.head.as_ref().is_some_and(|h| h.c.is_full()) && !self.cut_head(id, files, m) {
                return Err(AppendError::Storage(
                    "head chunk is full and cannot be written to disk".into(),
                ));
            }
        }
        let h = match &mut self.head {
            Some(h) => h,
            None => {
                m.head_chunks.inc();
                self.head.insert(HeadChunk {
                    c: XorChunk::with_capacity(OPEN_CHUNK_BYTES),
                    first_seg: seg,
                })
            }
        };
        if h.c.num_samples() == 0 {
            h.first_seg = seg;
        }
        h.c.append((self.max_t, self.last_v), t, v);
        self.max_t = t;
        self.last_v = v.to_bits();
        let after = self.heap_bytes();
        if after != before {
            m.head_chunk_heap_bytes.inc_by(after as i64 - before as i64);
        }
        Ok(Applied::Stored)
    }

    /// The sample count at which the open chunk (`n` samples, in chunk range `range`) is cut:
    /// [`first_chunk_len`] when it is the first chunk in its range, else `samples_per_chunk`.
    /// Worked out when asked rather than kept (every series holds an open chunk); the chunk
    /// list is only looked at once `n` reaches the shorter length.
    #[inline]
    fn cut_len(&self, id: u64, n: usize, range: i64, p: &ChunkParams) -> usize {
        let first = first_chunk_len(id, p.samples_per_chunk);
        if n < first {
            return first;
        }
        let continues_range = self
            .chunks
            .last()
            .is_some_and(|c| c.max_t.div_euclid(p.chunk_range_ms) == range);
        if continues_range {
            p.samples_per_chunk
        } else {
            first
        }
    }

    /// Writes the open chunk to the chunk files; false (and the chunk kept) on failure.
    fn cut_head(&mut self, id: u64, files: &ChunkFiles, m: &Metrics) -> bool {
        let Some(h) = &mut self.head else { return true };
        if h.c.num_samples() == 0 {
            return true;
        }
        let (min_t, max_t) = (h.c.min_t(), self.max_t);
        match files.write_chunk(id, min_t, max_t, ChunkKind::InOrder, h.c.bytes()) {
            Ok(r) => {
                let mut list = std::mem::take(&mut self.chunks).into_vec();
                list.reserve_exact(1);
                list.push(ChunkMeta { r, min_t, max_t });
                self.chunks = list.into_boxed_slice();
                m.mmapped_chunks.inc();
                // A fresh small buffer rather than keeping the full one: with the cut phases
                // spread, this halves the open chunks' memory (see `first_chunk_len`).
                h.c = XorChunk::with_capacity(OPEN_CHUNK_BYTES);
                true
            }
            Err(e) => {
                m.chunk_write_failures.inc();
                tracing::error!(series = id, error = %e, "writing a full chunk to the head-chunk file failed; keeping it in memory");
                false
            }
        }
    }

    fn cut_ooo(&mut self, id: u64, files: &ChunkFiles, m: &Metrics) -> bool {
        let Some(o) = &mut self.ooo else { return true };
        let (Some(first), Some(last)) = (o.head.first().copied(), o.head.last().copied()) else {
            return true;
        };
        let data = XorChunk::encode(o.head.iter().copied());
        match files.write_chunk(id, first.0, last.0, ChunkKind::OutOfOrder, &data) {
            Ok(r) => {
                o.chunks.push(ChunkMeta {
                    r,
                    min_t: first.0,
                    max_t: last.0,
                });
                m.mmapped_chunks.inc();
                o.head.clear();
                true
            }
            Err(e) => {
                m.chunk_write_failures.inc();
                tracing::error!(series = id, error = %e, "writing an out-of-order chunk failed; keeping it in memory");
                false
            }
        }
    }

    /// Adds an out-of-order sample (the caller checked the window).
    pub fn insert_ooo(
        &mut self,
        id: u64,
        t: i64,
        v: f64,
        seg: u32,
        cx: &Ctx<'_>,
    ) -> Result<Applied, AppendError> {
        let (p, files, m) = (cx.params, cx.files, cx.metrics);
        if t == self.max_t {
            return if v.to_bits() == self.last_v {
                Ok(Applied::Noop)
            } else {
                Err(AppendError::DuplicateSampleForTimestamp)
            };
        }
        let before = self.heap_bytes();
        let o = self.ooo.get_or_insert_with(Box::default);
        match o.head.binary_search_by(|s| s.0.cmp(&t)) {
            Ok(i) => {
                return if o.head[i].1.to_bits() == v.to_bits() {
                    Ok(Applied::Noop)
                } else {
                    Err(AppendError::DuplicateSampleForTimestamp)
                };
            }
            Err(i) => {
                if o.head.is_empty() {
                    o.first_seg = seg;
                }
                if o.head.len() >= usize::from(u16::MAX) {
                    return Err(AppendError::Storage(
                        "out-of-order buffer is full and cannot be written".into(),
                    ));
                }
                o.head.insert(i, (t, v));
            }
        }
        let n = o.head.len();
        if n >= p.ooo_cap && (n == p.ooo_cap || n.is_multiple_of(p.ooo_cap)) {
            self.cut_ooo(id, files, m);
        }
        let after = self.heap_bytes();
        if after != before {
            m.head_chunk_heap_bytes.inc_by(after as i64 - before as i64);
        }
        Ok(Applied::Stored)
    }

    /// Writes open chunks whose first sample lives in WAL segment `≤ upto` to the chunk
    /// files and frees their memory. False when a write failed.
    pub fn cut_for_checkpoint(
        &mut self,
        id: u64,
        upto: u32,
        files: &ChunkFiles,
        m: &Metrics,
    ) -> bool {
        let before = self.heap_bytes();
        let mut ok = true;
        if self
            .head
            .as_ref()
            .is_some_and(|h| h.c.num_samples() > 0 && h.first_seg <= upto)
        {
            if self.cut_head(id, files, m) {
                self.head = None;
                m.head_chunks.dec();
            } else {
                ok = false;
            }
        }
        if self
            .ooo
            .as_ref()
            .is_some_and(|o| !o.head.is_empty() && o.first_seg <= upto)
        {
            if self.cut_ooo(id, files, m) {
                if let Some(o) = &mut self.ooo {
                    o.head = Vec::new();
                }
            } else {
                ok = false;
            }
        }
        let after = self.heap_bytes();
        if after != before {
            m.head_chunk_heap_bytes.inc_by(after as i64 - before as i64);
        }
        ok
    }

    /// Keeps the in-order chunks `keep` accepts; the list is reallocated only when one goes.
    fn retain_chunks(&mut self, keep: impl Fn(&ChunkMeta) -> bool) {
        if self.chunks.iter().all(&keep) {
            return;
        }
        let mut list = std::mem::take(&mut self.chunks).into_vec();
        list.retain(keep);
        self.chunks = list.into_boxed_slice();
    }

    /// Drops every chunk (and buffered sample) older than `cutoff`; returns chunks dropped.
    pub fn drop_before(&mut self, cutoff: i64, m: &Metrics) -> usize {
        let before = self.heap_bytes();
        let n0 = self.chunks.len();
        self.retain_chunks(|c| c.max_t >= cutoff);
        let mut dropped = n0 - self.chunks.len();
        m.mmapped_chunks.dec_by(dropped as i64);
        if self
            .head
            .as_ref()
            .is_some_and(|h| h.c.num_samples() == 0 || self.max_t < cutoff)
        {
            if self.head.as_ref().is_some_and(|h| h.c.num_samples() > 0) {
                dropped += 1;
            }
            self.head = None;
            m.head_chunks.dec();
        }
        if let Some(o) = &mut self.ooo {
            let k0 = o.chunks.len();
            o.chunks.retain(|c| c.max_t >= cutoff);
            let k = k0 - o.chunks.len();
            m.mmapped_chunks.dec_by(k as i64);
            dropped += k;
            o.head.retain(|s| s.0 >= cutoff);
            if o.head.is_empty() && o.chunks.is_empty() {
                self.ooo = None;
            }
        }
        let after = self.heap_bytes();
        if after != before {
            m.head_chunk_heap_bytes.inc_by(after as i64 - before as i64);
        }
        dropped
    }

    /// Releases everything (the series is being removed); keeps gauges right.
    pub fn clear(&mut self, m: &Metrics) {
        m.head_chunk_heap_bytes.dec_by(self.heap_bytes() as i64);
        if self.head.take().is_some() {
            m.head_chunks.dec();
        }
        m.mmapped_chunks.dec_by(self.chunks.len() as i64);
        self.chunks = Box::default();
        if let Some(o) = self.ooo.take() {
            m.mmapped_chunks.dec_by(o.chunks.len() as i64);
        }
    }

    /// Attaches chunks found in the chunk files on open (sorted by time).
    pub fn attach(
        &mut self,
        mut inorder: Vec<ChunkMeta>,
        mut ooo: Vec<ChunkMeta>,
        files: &ChunkFiles,
        m: &Metrics,
    ) {
        inorder.sort_by_key(|c| c.min_t);
        // Overlapping in-order chunks can only come from a torn previous run; keep the first.
        inorder.dedup_by(|b, a| b.min_t <= a.max_t);
        m.mmapped_chunks.inc_by((inorder.len() + ooo.len()) as i64);
        if let Some(last) = inorder.last()
            && last.max_t > self.max_t
            && let Some((f, off)) = files.resolve(last.r)
            && let Some(data) = f.chunk_data(off)
            && let Some((t, v)) = XorIter::new(data).last()
        {
            self.max_t = t;
            self.last_v = v.to_bits();
        }
        self.chunks = inorder.into_boxed_slice();
        if !ooo.is_empty() {
            ooo.sort_by_key(|c| c.min_t);
            self.ooo.get_or_insert_with(Box::default).chunks = ooo;
        }
    }

    /// What a block cut up to `hi` takes from this series: in-order chunks in `[lo, hi)`
    /// (when `inorder`) and every out-of-order sample before `hi`. `None` when nothing.
    pub fn capture(
        &self,
        lo: i64,
        hi: i64,
        inorder: bool,
        files: &ChunkFiles,
    ) -> Result<Option<Capture>, StorageError> {
        let end = hi.saturating_sub(1);
        let mut snap = Snapshot::default();
        if inorder {
            let i = self.chunks.partition_point(|c| c.max_t < lo);
            for c in self.chunks[i..].iter().take_while(|c| c.min_t <= end) {
                snap.inorder.push(resolve(files, c)?);
            }
            if let Some(h) = &self.head
                && h.c.num_samples() > 0
                && h.c.min_t() <= end
                && self.max_t >= lo
            {
                snap.inorder.push(ChunkSrc::Heap(h.c.bytes().to_vec()));
            }
        }
        let mut ooo_refs = Vec::new();
        if let Some(o) = &self.ooo {
            for c in o.chunks.iter().filter(|c| c.min_t <= end) {
                snap.ooo.push(resolve(files, c)?);
                if c.max_t < hi {
                    ooo_refs.push(c.r);
                }
            }
            snap.ooo_head
                .extend(o.head.iter().filter(|s| s.0 < hi).copied());
        }
        if snap.inorder.is_empty() && snap.ooo.is_empty() && snap.ooo_head.is_empty() {
            return Ok(None);
        }
        Ok(Some(Capture { snap, ooo_refs }))
    }

    /// Frees what [`capture`](Self::capture) took once it is in a block: in-order chunks
    /// ending before `hi` (when `inorder`), the captured out-of-order chunks and buffered
    /// samples. Returns the chunks dropped.
    pub fn release(&mut self, hi: i64, inorder: bool, cap: &Capture, m: &Metrics) -> usize {
        let before = self.heap_bytes();
        let mut dropped = 0;
        if inorder {
            let n0 = self.chunks.len();
            self.retain_chunks(|c| c.max_t >= hi);
            dropped += n0 - self.chunks.len();
            m.mmapped_chunks.dec_by((n0 - self.chunks.len()) as i64);
            if self
                .head
                .as_ref()
                .is_some_and(|h| h.c.num_samples() > 0 && self.max_t < hi)
            {
                self.head = None;
                m.head_chunks.dec();
                dropped += 1;
            }
        }
        if let Some(o) = &mut self.ooo {
            let k0 = o.chunks.len();
            o.chunks.retain(|c| !cap.ooo_refs.contains(&c.r));
            m.mmapped_chunks.dec_by((k0 - o.chunks.len()) as i64);
            dropped += k0 - o.chunks.len();
            if !cap.snap.ooo_head.is_empty() {
                o.head.retain(|s| {
                    cap.snap
                        .ooo_head
                        .binary_search_by(|c| c.0.cmp(&s.0))
                        .map_or(true, |i| cap.snap.ooo_head[i].1.to_bits() != s.1.to_bits())
                });
            }
            if o.head.is_empty() && o.chunks.is_empty() {
                self.ooo = None;
            }
        }
        let after = self.heap_bytes();
        if after != before {
            m.head_chunk_heap_bytes.inc_by(after as i64 - before as i64);
        }
        dropped
    }

    /// Copies what a reader needs for `[start, end]`; `None` when nothing overlaps.
    pub fn snapshot(
        &self,
        start: i64,
        end: i64,
        files: &ChunkFiles,
    ) -> Result<Option<Snapshot>, StorageError> {
        let mut snap = Snapshot::default();
        let i = self.chunks.partition_point(|c| c.max_t < start);
        for c in self.chunks[i..].iter().take_while(|c| c.min_t <= end) {
            snap.inorder.push(resolve(files, c)?);
        }
        if let Some(h) = &self.head
            && h.c.num_samples() > 0
            && h.c.min_t() <= end
            && self.max_t >= start
        {
            snap.inorder.push(ChunkSrc::Heap(h.c.bytes().to_vec()));
        }
        if let Some(o) = &self.ooo {
            for c in o
                .chunks
                .iter()
                .filter(|c| c.min_t <= end && c.max_t >= start)
            {
                snap.ooo.push(resolve(files, c)?);
            }
            snap.ooo_head.extend(
                o.head
                    .iter()
                    .filter(|s| s.0 >= start && s.0 <= end)
                    .copied(),
            );
        }
        if snap.inorder.is_empty() && snap.ooo.is_empty() && snap.ooo_head.is_empty() {
            return Ok(None);
        }
        Ok(Some(snap))
    }
}

fn resolve(files: &ChunkFiles, c: &ChunkMeta) -> Result<ChunkSrc, StorageError> {
    match files.read(c.r) {
        Some(ChunkBytes::Mapped(f, off)) => Ok(ChunkSrc::Mapped(f, off)),
        Some(ChunkBytes::Copied(b)) => Ok(ChunkSrc::Heap(b)),
        None => Err(StorageError::Other(format!(
            "head-chunk file for chunk {:#x} is missing",
            c.r
        ))),
    }
}

pub enum ChunkSrc {
    Mapped(Arc<ChunkFile>, u32),
    Heap(Vec<u8>),
}

impl ChunkSrc {
    fn bytes(&self) -> Result<&[u8], StorageError> {
        match self {
            ChunkSrc::Heap(b) => Ok(b),
            ChunkSrc::Mapped(f, off) => f.chunk_data(*off).ok_or_else(|| {
                StorageError::Other(format!(
                    "chunk at offset {off} of file {} is unreadable",
                    f.index
                ))
            }),
        }
    }
}

/// What a block cut took from one series (see [`SeriesState::capture`]).
pub struct Capture {
    pub snap: Snapshot,
    /// Out-of-order chunks captured whole (released from the head after the cut).
    ooo_refs: Vec<u64>,
}

/// Chunk data copied (heap) or referenced (mmap) under the series lock, decoded without it.
#[derive(Default)]
pub struct Snapshot {
    pub inorder: Vec<ChunkSrc>,
    pub ooo: Vec<ChunkSrc>,
    pub ooo_head: Vec<(i64, f64)>,
}

fn decode_range(
    src: &ChunkSrc,
    start: i64,
    end: i64,
    out: &mut Vec<Sample>,
) -> Result<(), StorageError> {
    let mut it = XorIter::new(src.bytes()?);
    for (t, v) in it.by_ref() {
        if t > end {
            return Ok(());
        }
        if t >= start {
            out.push(Sample { t, v });
        }
    }
    if it.corrupt() {
        return Err(StorageError::Other("corrupt chunk".into()));
    }
    Ok(())
}

impl Snapshot {
    /// Samples in `[start, end]`, time-sorted; out-of-order data merged in, equal timestamps
    /// resolved in favour of the in-order sample.
    pub fn decode(&self, start: i64, end: i64) -> Result<Vec<Sample>, StorageError> {
        let mut out = Vec::new();
        for src in &self.inorder {
            decode_range(src, start, end, &mut out)?;
        }
        if self.ooo.is_empty() && self.ooo_head.is_empty() {
            return Ok(out);
        }
        let mut ooo = Vec::new();
        for src in &self.ooo {
            decode_range(src, start, end, &mut ooo)?;
        }
        ooo.extend(self.ooo_head.iter().map(|&(t, v)| Sample { t, v }));
        ooo.sort_by_key(|s| s.t);
        ooo.dedup_by_key(|s| s.t);
        let mut merged = Vec::with_capacity(out.len() + ooo.len());
        let (mut i, mut j) = (0, 0);
        while i < out.len() || j < ooo.len() {
            match (out.get(i), ooo.get(j)) {
                (Some(a), Some(b)) if a.t < b.t => {
                    merged.push(*a);
                    i += 1;
                }
                (Some(a), Some(b)) if a.t == b.t => {
                    merged.push(*a);
                    i += 1;
                    j += 1;
                }
                (_, Some(b)) => {
                    merged.push(*b);
                    j += 1;
                }
                (Some(a), None) => {
                    merged.push(*a);
                    i += 1;
                }
                (None, None) => break,
            }
        }
        Ok(merged)
    }
}

/// One stripe of a series lookup. A slot is the series pointer alone: the key (id or label
/// hash) is read from the series, and series whose label hashes collide are simply entries
/// with equal hashes (16–24 bytes a slot less than maps keyed by value, for every series).
type SeriesTable = HashTable<Arc<MemSeries>>;

/// Spreads a key over the table (stripes take keys modulo `STRIPES`, so the low bits of a
/// key are equal within a stripe).
#[inline]
fn slot_hash(key: u64) -> u64 {
    FxBuildHasher.hash_one(key)
}

/// Series lookup, index and symbols.
pub struct Head {
    pub symbols: SymbolTable,
    pub index: RwLock<PostingsIndex>,
    /// By series id.
    by_id: Box<[RwLock<SeriesTable>]>,
    /// By label hash ([`labels_hash`]).
    by_hash: Box<[RwLock<SeriesTable>]>,
    pub next_id: AtomicU64,
    pub chunks: ChunkFiles,
    pub params: ChunkParams,
    pub metrics: Metrics,
    pub max_t: AtomicI64,
    pub min_t: AtomicI64,
    /// In-order data below this is in blocks; older samples can only be out-of-order.
    pub min_valid: AtomicI64,
}

pub fn labels_hash(labels: &Labels) -> u64 {
    let mut h = FxHasher::default();
    for l in labels {
        h.write(l.name.as_bytes());
        h.write_u8(0xff);
        h.write(l.value.as_bytes());
        h.write_u8(0xfe);
    }
    h.finish()
}

impl Head {
    pub fn new(chunks: ChunkFiles, params: ChunkParams, metrics: Metrics) -> Self {
        Head {
            symbols: SymbolTable::default(),
            index: RwLock::new(PostingsIndex::default()),
            by_id: (0..STRIPES)
                .map(|_| RwLock::new(SeriesTable::new()))
                .collect(),
            by_hash: (0..STRIPES)
                .map(|_| RwLock::new(SeriesTable::new()))
                .collect(),
            next_id: AtomicU64::new(1),
            chunks,
            params,
            metrics,
            max_t: AtomicI64::new(i64::MIN),
            min_t: AtomicI64::new(i64::MAX),
            min_valid: AtomicI64::new(i64::MIN),
        }
    }

    pub fn ctx(&self) -> Ctx<'_> {
        Ctx {
            params: &self.params,
            files: &self.chunks,
            metrics: &self.metrics,
        }
    }

    #[inline]
    pub fn get_by_id(&self, id: u64) -> Option<Arc<MemSeries>> {
        self.by_id[id as usize % STRIPES]
            .read()
            .find(slot_hash(id), |s| s.id == id)
            .cloned()
    }

    fn same_labels(&self, s: &MemSeries, labels: &Labels) -> bool {
        if s.labels().len() != labels.len() {
            return false;
        }
        let syms = self.symbols.read();
        s.labels()
            .iter()
            .zip(labels.iter())
            .all(|(&(n, v), l)| syms.str(n) == l.name && syms.str(v) == l.value)
    }

    /// The by-hash stripe of a folded label hash ([`fold_hash`]).
    fn hash_stripe(&self, h: u32) -> &RwLock<SeriesTable> {
        &self.by_hash[h as usize % STRIPES]
    }

    /// The series with `labels` in a by-hash stripe's table, if there.
    fn find_by_labels<'t>(
        &self,
        table: &'t SeriesTable,
        labels: &Labels,
        h: u32,
    ) -> Option<&'t Arc<MemSeries>> {
        table.find(slot_hash(u64::from(h)), |s| {
            s.state.hash == h && self.same_labels(s, labels)
        })
    }

    pub fn get_by_labels(&self, labels: &Labels, hash: u64) -> Option<Arc<MemSeries>> {
        let h = fold_hash(hash);
        self.find_by_labels(&self.hash_stripe(h).read(), labels, h)
            .cloned()
    }

    /// Returns the series with `labels`, creating it with `id` when absent.
    pub fn get_or_create(&self, labels: &Labels, hash: u64, id: u64) -> (Arc<MemSeries>, bool) {
        let h = fold_hash(hash);
        let mut g = self.hash_stripe(h).write();
        if let Some(s) = self.find_by_labels(&g, labels, h) {
            return (s.clone(), false);
        }
        let syms = self
            .symbols
            .intern_pairs(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())));
        let s = Arc::new(MemSeries::new(id, hash, syms));
        g.insert_unique(slot_hash(u64::from(h)), s.clone(), |o| {
            slot_hash(u64::from(o.state.hash))
        });
        self.by_id[id as usize % STRIPES]
            .write()
            .insert_unique(slot_hash(id), s.clone(), |o| slot_hash(o.id));
        self.index.write().add(id, s.labels());
        drop(g);
        self.next_id.fetch_max(id + 1, Ordering::Relaxed);
        self.metrics.head_series.inc();
        self.metrics.series_created.inc();
        (s, true)
    }

    /// Removes a series (already marked deleted) from every structure and frees its symbols.
    pub fn remove(&self, s: &Arc<MemSeries>) {
        {
            let h = s.state.hash;
            let mut g = self.hash_stripe(h).write();
            if let Ok(e) = g.find_entry(slot_hash(u64::from(h)), |o| o.id == s.id) {
                e.remove();
            }
            let mut g = self.by_id[s.id as usize % STRIPES].write();
            if let Ok(e) = g.find_entry(slot_hash(s.id), |o| o.id == s.id) {
                e.remove();
            }
            self.index.write().remove(s.id, s.labels());
        }
        self.symbols.release_pairs(s.labels());
        self.metrics.head_series.dec();
        self.metrics.series_removed.inc();
    }

    pub fn resolve_labels(&self, s: &MemSeries) -> Labels {
        let syms = self.symbols.read();
        Labels::from_sorted_unchecked(
            s.labels()
                .iter()
                .map(|&(n, v)| Label::new(syms.str(n), syms.str(v)))
                .collect(),
        )
    }

    /// Every series (a snapshot of the maps).
    pub fn all_series(&self) -> Vec<Arc<MemSeries>> {
        let mut out = Vec::new();
        for stripe in self.by_id.iter() {
            out.extend(stripe.read().iter().cloned());
        }
        out
    }

    pub fn series_count(&self) -> usize {
        self.by_id.iter().map(|s| s.read().len()).sum()
    }

    /// Sorted ids of the series matching every matcher (Prometheus's postings-for-matchers:
    /// intersect the postings of matchers that need a value, subtract those of matchers that
    /// also accept the empty string).
    pub fn matching_ids(&self, matchers: &[Matcher]) -> Vec<u64> {
        let idx = self.index.read();
        let syms = self.symbols.read();
        let mut acc: Option<IdList> = None;
        let mut subtract: Vec<IdList> = Vec::new();
        // Cheap, selective equality matchers first.
        let mut order: Vec<&Matcher> = matchers.iter().collect();
        order.sort_by_key(|m| match m.op {
            lookout_storage::MatchOp::Equal if !m.value.is_empty() => 0,
            lookout_storage::MatchOp::Regex => 1,
            _ => 2,
        });
        for m in order {
            let name = syms.lookup(&m.name);
            let values = name.and_then(|n| idx.values(n));
            if m.matches_empty() {
                // Series without the label match; remove those whose value does not.
                let Some(values) = values else { continue };
                let mut bad = values
                    .iter()
                    .filter(|(v, _)| !m.matches(syms.str(**v)))
                    .map(|(_, l)| l)
                    .peekable();
                if bad.peek().is_some() {
                    subtract.push(IdList::union_of(bad));
                }
                continue;
            }
            let good: IdList = match (m.op, values) {
                (_, None) => IdList::default(),
                (lookout_storage::MatchOp::Equal, Some(values)) => syms
                    .lookup(&m.value)
                    .and_then(|v| values.get(&v))
                    .cloned()
                    .unwrap_or_default(),
                (_, Some(values)) => match literal_alternatives(m) {
                    Some(alts) => IdList::union_of(
                        alts.iter()
                            .filter_map(|a| syms.lookup(a).and_then(|v| values.get(&v))),
                    ),
                    None => IdList::union_of(
                        values
                            .iter()
                            .filter(|(v, _)| m.matches(syms.str(**v)))
                            .map(|(_, l)| l),
                    ),
                },
            };
            let next = match acc {
                None => good,
                Some(mut a) => {
                    a.intersect_with(&good);
                    a
                }
            };
            if next.is_empty() {
                return Vec::new();
            }
            acc = Some(next);
        }
        let mut ids = acc.unwrap_or_else(|| idx.all().clone());
        for s in &subtract {
            ids.subtract(s);
        }
        ids.to_vec()
    }
}

/// For `=~"a|b|c"` with plain literal alternatives, the literals (looked up directly instead
/// of testing every value).
fn literal_alternatives(m: &Matcher) -> Option<Vec<&str>> {
    if m.op != lookout_storage::MatchOp::Regex {
        return None;
    }
    let plain =
        |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | ':' | '/' | ' ' | ',' | '@' | '=');
    if m.value.is_empty() || !m.value.chars().all(|c| c == '|' || plain(c)) {
        return None;
    }
    Some(m.value.split('|').collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lookout_storage::MatchOp;

    fn head() -> (tempfile::TempDir, Head) {
        let dir = tempfile::tempdir().unwrap();
        let files = ChunkFiles::open(dir.path(), 1 << 20).unwrap().files;
        let p = ChunkParams {
            samples_per_chunk: 4,
            max_chunk_bytes: 1024,
            chunk_range_ms: 1 << 40,
            ooo_cap: 3,
        };
        (dir, Head::new(files, p, Metrics::default()))
    }

    #[test]
    fn series_with_colliding_label_hashes_stay_apart() {
        let (_d, h) = head();
        let a = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let b = Labels::from_pairs([("__name__", "up"), ("job", "b")]);
        let c = Labels::from_pairs([("__name__", "up"), ("job", "c")]);
        // Three label sets given one hash, plus many other series so the tables grow.
        let (sa, new_a) = h.get_or_create(&a, 7, 1);
        let (sb, new_b) = h.get_or_create(&b, 7, 2);
        for i in 0..2_000u64 {
            let l = Labels::from_pairs([("__name__", "x"), ("i", &i.to_string())]);
            h.get_or_create(&l, labels_hash(&l), 10 + i);
        }
        let (sc, _) = h.get_or_create(&c, 7, 3);
        assert!(new_a && new_b);
        assert_eq!((sa.id, sb.id, sc.id), (1, 2, 3));
        assert!(!h.get_or_create(&b, 7, 99).1, "found, not created again");
        assert_eq!(h.get_by_labels(&a, 7).map(|s| s.id), Some(1));
        assert_eq!(h.get_by_labels(&b, 7).map(|s| s.id), Some(2));
        assert!(h.get_by_labels(&a, 8).is_none());
        h.remove(&sb);
        assert!(h.get_by_labels(&b, 7).is_none());
        assert!(h.get_by_id(2).is_none());
        assert_eq!(h.get_by_labels(&a, 7).map(|s| s.id), Some(1));
        assert_eq!(h.get_by_labels(&c, 7).map(|s| s.id), Some(3));
        assert_eq!(h.get_by_id(3).map(|s| s.id), Some(3));
        assert_eq!(h.get_by_id(1_009).map(|s| s.id), Some(1_009));
        assert_eq!(h.series_count(), 2_002);
        assert_eq!(h.all_series().len(), 2_002);
    }

    #[test]
    fn matchers_use_the_index() {
        let (_d, h) = head();
        let mk = |pairs: &[(&str, &str)], id: u64| {
            let l = Labels::from_pairs(pairs.iter().copied());
            h.get_or_create(&l, labels_hash(&l), id);
        };
        mk(&[("__name__", "up"), ("job", "api")], 1);
        mk(&[("__name__", "up"), ("job", "db")], 2);
        mk(&[("__name__", "up")], 3);
        mk(&[("__name__", "rps"), ("job", "api")], 4);
        let q = |ms: Vec<Matcher>| h.matching_ids(&ms);
        assert_eq!(q(vec![Matcher::equal("__name__", "up")]), vec![1, 2, 3]);
        assert_eq!(
            q(vec![
                Matcher::equal("__name__", "up"),
                Matcher::equal("job", "api")
            ]),
            vec![1]
        );
        assert_eq!(
            q(vec![
                Matcher::equal("__name__", "up"),
                Matcher::not_equal("job", "api")
            ]),
            vec![2, 3]
        );
        assert_eq!(q(vec![Matcher::equal("job", "")]), vec![3]);
        assert_eq!(
            q(vec![Matcher::new(MatchOp::Regex, "job", "api|db").unwrap()]),
            vec![1, 2, 4]
        );
        assert_eq!(
            q(vec![Matcher::new(MatchOp::Regex, "job", "a.*").unwrap()]),
            vec![1, 4]
        );
        assert_eq!(
            q(vec![Matcher::new(MatchOp::NotRegex, "job", "a.*").unwrap()]),
            vec![2, 3]
        );
        assert_eq!(
            q(vec![Matcher::new(MatchOp::Regex, "job", "db|").unwrap()]),
            vec![2, 3]
        );
        assert_eq!(q(vec![Matcher::equal("nope", "x")]), Vec::<u64>::new());
        assert_eq!(q(vec![]), vec![1, 2, 3, 4]);
    }

    #[test]
    fn series_state_cuts_and_decodes() {
        let (_d, h) = head();
        let l = Labels::from_pairs([("a", "b")]);
        let (s, _) = h.get_or_create(&l, labels_hash(&l), 5);
        let mut st = s.state.lock();
        for t in 0..10 {
            st.append_in_order(5, t * 10, t as f64, 1, &h.ctx())
                .unwrap();
        }
        assert_eq!(
            st.chunks.len(),
            2,
            "4 samples per chunk (series 5's first chunk is full length)"
        );
        assert!(matches!(
            st.append_in_order(5, 90, 9.0, 1, &h.ctx()),
            Ok(Applied::Noop)
        ));
        assert_eq!(
            st.append_in_order(5, 90, 8.0, 1, &h.ctx()).err(),
            Some(AppendError::DuplicateSampleForTimestamp)
        );
        assert_eq!(
            st.append_in_order(5, 5, 8.0, 1, &h.ctx()).err(),
            Some(AppendError::OutOfOrder)
        );
        for t in [15, 25, 35, 45] {
            st.insert_ooo(5, t, -1.0, 1, &h.ctx()).unwrap();
        }
        assert_eq!(st.ooo.as_ref().map(|o| o.chunks.len()), Some(1));
        let snap = st.snapshot(10, 50, &h.chunks).unwrap().unwrap();
        let got: Vec<i64> = snap.decode(10, 50).unwrap().iter().map(|s| s.t).collect();
        assert_eq!(got, vec![10, 15, 20, 25, 30, 35, 40, 45, 50]);
        assert_eq!(st.drop_before(45, &h.metrics), 2);
        assert!(st.snapshot(0, 39, &h.chunks).unwrap().is_none());
    }

    #[test]
    fn a_series_fits_a_128_byte_allocation() {
        // `Arc` adds two counters; the allocator's size classes around it are 112, 128, 160.
        // Every active series pays this, so a field that pushes it past 128 costs 32 bytes a
        // series (2.6 MB at 80k series).
        assert!(
            std::mem::size_of::<MemSeries>() + 16 <= 128,
            "{}",
            std::mem::size_of::<MemSeries>()
        );
        assert_eq!(std::mem::size_of::<XorChunk>(), 32);
    }

    #[test]
    fn label_lists_of_any_length_round_trip() {
        for n in [
            0usize,
            1,
            7,
            usize::from(LONG_LABELS) - 1,
            usize::from(LONG_LABELS),
            70_000,
        ] {
            let pairs: Box<[(Sym, Sym)]> = (0..n as u32).map(|i| (i, !i)).collect();
            let s = MemSeries::new(9, 0xdead_beef_0bad_cafe, pairs.clone());
            assert_eq!(s.labels(), &pairs[..], "{n} labels");
            assert_eq!(s.state.hash, fold_hash(0xdead_beef_0bad_cafe));
            assert_eq!(s.id, 9);
        }
    }

    #[test]
    fn first_chunk_in_a_range_is_shortened_by_series() {
        let (_d, h) = head();
        assert_eq!(first_chunk_len(5, 4), 4);
        let lens: std::collections::BTreeSet<usize> =
            (0..64).map(|id| first_chunk_len(id, 120)).collect();
        assert!(lens.len() > 30 && lens.iter().all(|&n| (1..=120).contains(&n)));

        let l = Labels::from_pairs([("a", "b")]);
        let (s, _) = h.get_or_create(&l, labels_hash(&l), 1);
        let mut st = s.state.lock();
        let first = first_chunk_len(1, 4) as i64;
        assert!(first < 4);
        for t in 0..first + 4 {
            st.append_in_order(1, t * 10, t as f64, 1, &h.ctx())
                .unwrap();
        }
        let counts = |st: &SeriesState| -> Vec<i64> {
            st.chunks
                .iter()
                .map(|c| (c.max_t - c.min_t) / 10 + 1)
                .collect()
        };
        assert_eq!(counts(&st), vec![first], "the first chunk is cut early");
        st.append_in_order(1, (first + 4) * 10, 0.0, 1, &h.ctx())
            .unwrap();
        assert_eq!(counts(&st), vec![first, 4], "later chunks are full length");
        // A new chunk range starts with a short chunk again.
        let next = h.params.chunk_range_ms;
        for k in 0..first + 1 {
            st.append_in_order(1, next + k * 10, 0.0, 1, &h.ctx())
                .unwrap();
        }
        assert_eq!(counts(&st).len(), 4);
        assert_eq!(counts(&st)[3], first);
    }
}
