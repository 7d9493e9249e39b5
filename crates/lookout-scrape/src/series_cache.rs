//! A scrape loop's series cache: the raw series text of a sample (`name{labels}` exactly as
//! the target wrote it) → the storage reference of the series it became.
//!
//! Memory is what matters here (one entry per series of every target): the texts live
//! back to back in one arena, each behind a small header (its length and the two flags
//! fixed at insertion, one LEB128 number), the index holds only 4-byte slot numbers (found
//! by the hash of the text, compared exactly, and re-hashed from the arena when the table
//! grows), an [`Entry`] is 32 bytes (32-bit arena offset and scrape iteration), and the
//! final label set is not kept at all — storage is appended to by reference, and the rare
//! caller that needs the labels (an unknown reference, stale markers after a restart, a
//! config reload) rebuilds them from the text.

use std::hash::Hasher;

use hashbrown::HashTable;
use lookout_storage::{AppendError, Appender, SeriesHandle, SeriesRef};
use rustc_hash::FxHasher;

/// `Entry::off` of an unused slot (never a record's offset: the arena stays below it).
const FREE_SLOT: u32 = u32::MAX;
/// `Entry::sref` when the series has no storage reference. A storage that hands out this
/// very reference is appended to with labels instead (correct, only slower).
const NO_REF: u64 = u64::MAX;
const FLAG_DROPPED: u64 = 1;
const FLAG_OPENMETRICS: u64 = 2;
const FLAG_BITS: u32 = 2;

/// The arena of a target passed 4 GiB of series text (after reclaiming forgotten texts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the series cache of this target is full ({limit} bytes of series text)")]
pub(crate) struct CacheFull {
    pub limit: usize,
}

/// One series of the target (32 bytes).
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// The storage's handle on the series, taken on the first scrape after it was created.
    handle: Option<SeriesHandle>,
    sref: u64,
    /// Arena offset of the series' record; `FREE_SLOT` for an unused slot.
    off: u32,
    /// Scrape iteration (mod 2^32, compared with wrapping arithmetic) that last produced
    /// this series.
    pub last_iter: u32,
}

impl Entry {
    pub fn sref(&self) -> Option<SeriesRef> {
        (self.sref != NO_REF).then_some(SeriesRef(self.sref))
    }

    fn live(&self) -> bool {
        self.off != FREE_SLOT
    }

    /// Prefetch hint for the storage object behind the handle, if any.
    pub fn prefetch(&self) {
        if let Some(h) = &self.handle {
            h.prefetch();
        }
    }

    /// Records the series' reference; a different one (or none) drops the handle.
    pub fn set_sref(&mut self, r: Option<SeriesRef>) {
        let r = r.map_or(NO_REF, |r| r.0);
        if self.sref != r || r == NO_REF {
            self.handle = None;
        }
        self.sref = r;
    }

    /// Appends `(t, v)` without labels: through the storage's handle on the series (taken
    /// now if there is none yet), else by reference. `UnknownSeriesRef` means the storage
    /// needs the labels (new series, or one it no longer knows).
    pub fn append_fast(
        &mut self,
        app: &mut dyn Appender,
        t: i64,
        v: f64,
    ) -> Result<SeriesRef, AppendError> {
        if self.handle.is_none()
            && let Some(r) = self.sref()
        {
            self.handle = app.series_handle(r);
            if self.handle.is_none() {
                return app.append_by_ref(r, t, v);
            }
        }
        let Some(h) = &self.handle else {
            return Err(AppendError::UnknownSeriesRef);
        };
        let r = app.append_by_handle(h, t, v);
        if r == Err(AppendError::UnknownSeriesRef) {
            self.set_sref(None);
        }
        r
    }

    const FREE: Entry = Entry {
        handle: None,
        sref: NO_REF,
        off: FREE_SLOT,
        last_iter: 0,
    };
}

pub(crate) struct SeriesCache {
    /// Records back to back: LEB128 of `len << 2 | flags`, then the text.
    arena: Vec<u8>,
    /// Arena bytes of forgotten entries, reclaimed by compaction.
    garbage: usize,
    /// Largest arena (bytes); offsets are `u32`.
    max_arena: usize,
    /// Slots of the live entries, by the hash of their text.
    index: HashTable<u32>,
    entries: Vec<Entry>,
    free: Vec<u32>,
    hash: fn(&[u8]) -> u64,
}

impl Default for SeriesCache {
    fn default() -> Self {
        SeriesCache {
            arena: Vec::new(),
            garbage: 0,
            max_arena: FREE_SLOT as usize,
            index: HashTable::new(),
            entries: Vec::new(),
            free: Vec::new(),
            hash: fx_hash,
        }
    }
}

fn grow_by_eighth<T>(v: &mut Vec<T>, more: usize) {
    if v.len() + more > v.capacity() {
        v.reserve_exact(more.max(v.len() / 8).max(64));
    }
}

fn fx_hash(key: &[u8]) -> u64 {
    let mut h = FxHasher::default();
    h.write(key);
    h.write_usize(key.len());
    h.finish()
}

/// The header at `off`: `(len << 2 | flags, offset of the text)`.
#[inline]
fn header(arena: &[u8], off: usize) -> (u64, usize) {
    let mut v = 0u64;
    let mut shift = 0;
    let mut i = off;
    while let Some(&b) = arena.get(i) {
        v |= u64::from(b & 0x7f) << shift;
        i += 1;
        if b < 0x80 || shift >= 63 {
            break;
        }
        shift += 7;
    }
    (v, i)
}

/// Appends the LEB128 encoding of `v`.
fn put_header(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn header_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// `(flags, text span)` of the record at `off`.
#[inline]
fn record(arena: &[u8], off: u32) -> (u64, std::ops::Range<usize>) {
    let (h, start) = header(arena, off as usize);
    let len = (h >> FLAG_BITS) as usize;
    (h & ((1 << FLAG_BITS) - 1), start..start + len)
}

fn key_in<'a>(arena: &'a [u8], entries: &[Entry], idx: u32) -> &'a [u8] {
    let (_, span) = record(arena, entries[idx as usize].off);
    arena.get(span).unwrap_or(&[])
}

impl SeriesCache {
    pub fn key(&self, idx: u32) -> &[u8] {
        key_in(&self.arena, &self.entries, idx)
    }

    pub fn entry(&self, idx: u32) -> &Entry {
        &self.entries[idx as usize]
    }

    pub fn entry_mut(&mut self, idx: u32) -> &mut Entry {
        &mut self.entries[idx as usize]
    }

    fn flags(&self, idx: u32) -> u64 {
        record(&self.arena, self.entries[idx as usize].off).0
    }

    /// Metric relabelling dropped the series (nothing is appended).
    pub fn dropped(&self, idx: u32) -> bool {
        self.flags(idx) & FLAG_DROPPED != 0
    }

    /// The text came from an OpenMetrics body (else the Prometheus text format).
    pub fn openmetrics(&self, idx: u32) -> bool {
        self.flags(idx) & FLAG_OPENMETRICS != 0
    }

    /// Number of series cached.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn get(&self, key: &[u8]) -> Option<u32> {
        self.index
            .find((self.hash)(key), |&i| self.key(i) == key)
            .copied()
    }

    /// Adds `key` (not present yet) and returns its slot; its `last_iter` is the iteration
    /// before `iter` (not produced by this scrape yet). Fails only when the arena, even
    /// after reclaiming forgotten texts, would pass `u32` offsets.
    pub fn insert(
        &mut self,
        key: &[u8],
        openmetrics: bool,
        dropped: bool,
        iter: u32,
    ) -> Result<u32, CacheFull> {
        let h = ((key.len() as u64) << FLAG_BITS)
            | if dropped { FLAG_DROPPED } else { 0 }
            | if openmetrics { FLAG_OPENMETRICS } else { 0 };
        let rec = header_len(h) + key.len();
        if self.arena.len() + rec > self.max_arena {
            if self.garbage > 0 {
                self.compact();
            }
            if self.arena.len() + rec > self.max_arena {
                return Err(CacheFull {
                    limit: self.max_arena,
                });
            }
        }
        let e = Entry {
            // Lossless: the arena stays at or below `max_arena` <= `u32::MAX` bytes, and a
            // record starting at `u32::MAX` would make it longer.
            off: self.arena.len() as u32,
            last_iter: iter.wrapping_sub(1),
            ..Entry::FREE
        };
        // Grown by an eighth at a time, not doubled: a target's series set is built once
        // and then kept, so doubling would leave up to half of it as slack for good.
        grow_by_eighth(&mut self.arena, rec);
        put_header(&mut self.arena, h);
        self.arena.extend_from_slice(key);
        let idx = match self.free.pop() {
            Some(i) => {
                self.entries[i as usize] = e;
                i
            }
            None => {
                grow_by_eighth(&mut self.entries, 1);
                self.entries.push(e);
                (self.entries.len() - 1) as u32
            }
        };
        let (arena, entries, hash) = (&self.arena, &self.entries, self.hash);
        self.index
            .insert_unique(hash(key), idx, |&i| hash(key_in(arena, entries, i)));
        Ok(idx)
    }

    /// Forgets series not produced by any of the last `keep` scrapes before `iter`.
    pub fn evict(&mut self, iter: u32, keep: u32) {
        let gone: Vec<u32> = (0..self.entries.len() as u32)
            .filter(|&i| {
                let e = &self.entries[i as usize];
                e.live() && iter.wrapping_sub(e.last_iter) > keep
            })
            .collect();
        for idx in gone {
            let key = self.key(idx);
            let h = (self.hash)(key);
            let off = self.entries[idx as usize].off as usize;
            let (_, span) = record(&self.arena, off as u32);
            if let Ok(slot) = self.index.find_entry(h, |&i| i == idx) {
                slot.remove();
            }
            self.garbage += span.end - off;
            self.entries[idx as usize] = Entry::FREE;
            self.free.push(idx);
        }
        if self.garbage > 64 * 1024 && self.garbage * 2 > self.arena.len() {
            self.compact();
        }
    }

    /// Rewrites the arena with the live records only.
    fn compact(&mut self) {
        let live: usize = self.arena.len().saturating_sub(self.garbage);
        let mut arena = Vec::with_capacity(live);
        for e in self.entries.iter_mut().filter(|e| e.live()) {
            let (_, span) = record(&self.arena, e.off);
            let start = arena.len();
            arena.extend_from_slice(&self.arena[e.off as usize..span.end]);
            e.off = start as u32;
        }
        self.arena = arena;
        self.garbage = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_all(c: &SeriesCache, keys: &[String], present: impl Fn(usize) -> bool) {
        for (n, k) in keys.iter().enumerate() {
            match c.get(k.as_bytes()) {
                Some(idx) => {
                    assert!(present(n), "{k} should be gone");
                    assert_eq!(c.key(idx), k.as_bytes());
                    assert_eq!(c.entry(idx).sref(), Some(SeriesRef(n as u64)));
                    assert_eq!(c.openmetrics(idx), n % 2 == 0);
                    assert_eq!(c.dropped(idx), n % 3 == 0);
                }
                None => assert!(!present(n), "{k} missing"),
            }
        }
    }

    fn fill(c: &mut SeriesCache, keys: &[String], iter: u32) {
        for (n, k) in keys.iter().enumerate() {
            let idx = c
                .insert(k.as_bytes(), n % 2 == 0, n % 3 == 0, iter)
                .unwrap();
            assert_ne!(
                c.entry(idx).last_iter,
                iter,
                "not produced by this scrape yet"
            );
            c.entry_mut(idx).last_iter = if n < keys.len() * 4 / 5 {
                iter
            } else {
                iter.wrapping_add(19)
            };
            c.entry_mut(idx).set_sref(Some(SeriesRef(n as u64)));
        }
    }

    #[test]
    fn entry_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
    }

    #[test]
    fn exact_lookups_insert_evict_and_reuse() {
        let mut c = SeriesCache::default();
        let keys: Vec<String> = (0..5000).map(|i| format!("m{{i=\"{i}\"}}")).collect();
        fill(&mut c, &keys, 1);
        assert_eq!(c.len(), 5000);
        assert_eq!(c.get(b"m{i=\"5000\"}"), None);
        check_all(&c, &keys, |_| true);
        c.evict(20, 10);
        assert_eq!(c.len(), 1000);
        check_all(&c, &keys, |n| n >= 4000);
        let idx = c.insert(keys[0].as_bytes(), true, true, 20).unwrap();
        assert!(idx < 4000, "a freed slot is reused");
        assert_eq!(c.get(keys[0].as_bytes()), Some(idx));
        assert!(c.dropped(idx));
        assert_eq!(c.entry(idx).sref(), None);
    }

    #[test]
    fn iterations_wrap_around() {
        let mut c = SeriesCache::default();
        let keys: Vec<String> = (0..100).map(|i| format!("m{{i=\"{i}\"}}")).collect();
        // Inserted 5 scrapes before the counter wraps; the last fifth seen 19 later.
        fill(&mut c, &keys, u32::MAX - 4);
        c.evict(14, 10);
        check_all(&c, &keys, |n| n >= 80);
        // Inserted at iteration 0 (just wrapped): not a duplicate of this scrape.
        let idx = c.insert(b"new{}", false, false, 0).unwrap();
        assert_eq!(c.entry(idx).last_iter, u32::MAX);
    }

    #[test]
    fn long_texts_and_references_round_trip() {
        let mut c = SeriesCache::default();
        let long = format!("m{{v=\"{}\"}}", "x".repeat(70_000));
        let idx = c.insert(long.as_bytes(), true, false, 1).unwrap();
        let short = c.insert(b"s", false, true, 1).unwrap();
        assert_eq!(c.key(idx), long.as_bytes());
        assert!(c.openmetrics(idx) && !c.dropped(idx));
        assert_eq!(c.key(short), b"s");
        assert!(!c.openmetrics(short) && c.dropped(short));
        let e = c.entry_mut(idx);
        e.set_sref(Some(SeriesRef(0)));
        assert_eq!(e.sref(), Some(SeriesRef(0)));
        e.set_sref(Some(SeriesRef(NO_REF)));
        assert_eq!(e.sref(), None, "the sentinel reference is not kept");
        e.set_sref(Some(SeriesRef(NO_REF - 1)));
        assert_eq!(e.sref(), Some(SeriesRef(NO_REF - 1)));
    }

    #[test]
    fn a_full_arena_reclaims_then_refuses() {
        let mut c = SeriesCache {
            max_arena: 1000,
            ..SeriesCache::default()
        };
        let keys: Vec<String> = (0..100).map(|i| format!("m{{i=\"{i:03}\"}}")).collect();
        let mut n = 0;
        while let Ok(idx) = c.insert(keys[n].as_bytes(), false, false, 1) {
            c.entry_mut(idx).last_iter = if n < 50 { 1 } else { 5 };
            n += 1;
        }
        // 10-byte texts with a 1-byte header: 90 fit in 1000 bytes.
        assert_eq!(n, 90);
        assert_eq!(
            c.insert(keys[99].as_bytes(), false, false, 1),
            Err(CacheFull { limit: 1000 })
        );
        // Forget the first 50: the next insert compacts instead of failing.
        c.evict(5, 2);
        let idx = c.insert(keys[95].as_bytes(), false, false, 5).unwrap();
        assert_eq!(c.key(idx), keys[95].as_bytes());
        assert_eq!(c.garbage, 0);
        for k in &keys[50..90] {
            let i = c.get(k.as_bytes()).unwrap();
            assert_eq!(c.key(i), k.as_bytes());
        }
        assert!(c.get(keys[0].as_bytes()).is_none());
    }

    #[test]
    fn every_hash_colliding_still_exact() {
        let mut c = SeriesCache {
            hash: |_| 42,
            ..SeriesCache::default()
        };
        let keys: Vec<String> = (0..200).map(|i| format!("m{{i=\"{i}\"}}")).collect();
        fill(&mut c, &keys, 1);
        assert_eq!(c.len(), 200);
        check_all(&c, &keys, |_| true);
        // The first texts go; the colliding rest are still found exactly.
        c.evict(20, 10);
        assert_eq!(c.len(), 40);
        check_all(&c, &keys, |n| n >= 160);
        let idx = c.insert(b"new{}", true, false, 20).unwrap();
        assert_eq!(c.get(b"new{}"), Some(idx));
    }

    #[test]
    fn compaction_reclaims_arena_of_churning_series() {
        let mut c = SeriesCache::default();
        for round in 0..20u32 {
            for i in 0..2000 {
                let k = format!("churn{{gen=\"{round}\",i=\"{i}\"}}");
                let idx = c.insert(k.as_bytes(), false, false, round).unwrap();
                c.entry_mut(idx).last_iter = round;
            }
            c.evict(round, 0);
        }
        assert_eq!(c.len(), 2000);
        assert!(
            c.arena.len() < 3 * 2000 * 30,
            "arena {} bytes",
            c.arena.len()
        );
        assert!(c.get(b"churn{gen=\"19\",i=\"7\"}").is_some());
        assert!(c.get(b"churn{gen=\"0\",i=\"7\"}").is_none());
        assert!(c.entries.len() <= 4000, "slots are reused");
    }
}
