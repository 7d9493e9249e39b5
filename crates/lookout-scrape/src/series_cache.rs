//! A scrape loop's series cache: the raw series text of a sample (`name{labels}` exactly as
//! the target wrote it) → the storage reference of the series it became.
//!
//! Memory is what matters here (one entry per series of every target): the texts live
//! back to back in one arena, the index holds only 4-byte slot numbers (found by the hash
//! of the text, compared exactly, and re-hashed from the arena when the table grows), and
//! the final label set is not kept at all — storage is appended to by reference, and the
//! rare caller that needs the labels (an unknown reference, stale markers after a restart,
//! a config reload) rebuilds them from the text.

use std::hash::Hasher;

use hashbrown::HashTable;
use lookout_storage::{AppendError, Appender, SeriesHandle, SeriesRef};
use rustc_hash::FxHasher;

/// One series of the target.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    key_start: usize,
    key_len: usize,
    sref: u64,
    has_ref: bool,
    /// The storage's handle on the series, taken on the first scrape after it was created.
    handle: Option<SeriesHandle>,
    /// Scrape number that last produced this series.
    pub last_iter: u64,
    /// Metric relabelling dropped it (nothing is appended).
    pub dropped: bool,
    /// The text came from an OpenMetrics body (else the Prometheus text format).
    pub openmetrics: bool,
    live: bool,
}

impl Entry {
    pub fn sref(&self) -> Option<SeriesRef> {
        self.has_ref.then_some(SeriesRef(self.sref))
    }

    /// Prefetch hint for the storage object behind the handle, if any.
    pub fn prefetch(&self) {
        if let Some(h) = &self.handle {
            h.prefetch();
        }
    }

    /// Records the series' reference; a different one (or none) drops the handle.
    pub fn set_sref(&mut self, r: Option<SeriesRef>) {
        if self.sref() != r {
            self.handle = None;
        }
        self.has_ref = r.is_some();
        self.sref = r.map_or(0, |r| r.0);
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
        key_start: 0,
        key_len: 0,
        sref: 0,
        has_ref: false,
        handle: None,
        last_iter: 0,
        dropped: false,
        openmetrics: false,
        live: false,
    };
}

pub(crate) struct SeriesCache {
    arena: Vec<u8>,
    /// Arena bytes of forgotten entries, reclaimed by compaction.
    garbage: usize,
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

fn key_in<'a>(arena: &'a [u8], entries: &[Entry], idx: u32) -> &'a [u8] {
    let e = &entries[idx as usize];
    &arena[e.key_start..e.key_start + e.key_len]
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

    /// Adds `key` (not present yet) and returns its slot.
    pub fn insert(&mut self, key: &[u8], openmetrics: bool, dropped: bool) -> u32 {
        let e = Entry {
            key_start: self.arena.len(),
            key_len: key.len(),
            dropped,
            openmetrics,
            live: true,
            ..Entry::FREE
        };
        // Grown by an eighth at a time, not doubled: a target's series set is built once
        // and then kept, so doubling would leave up to half of it as slack for good.
        grow_by_eighth(&mut self.arena, key.len());
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
        idx
    }

    /// Forgets series not produced by any of the last `keep` scrapes before `iter`.
    pub fn evict(&mut self, iter: u64, keep: u64) {
        let gone: Vec<u32> = (0..self.entries.len() as u32)
            .filter(|&i| {
                let e = &self.entries[i as usize];
                e.live && e.last_iter + keep < iter
            })
            .collect();
        for idx in gone {
            let h = (self.hash)(self.key(idx));
            if let Ok(slot) = self.index.find_entry(h, |&i| i == idx) {
                slot.remove();
            }
            self.garbage += self.entries[idx as usize].key_len;
            self.entries[idx as usize] = Entry::FREE;
            self.free.push(idx);
        }
        if self.garbage > 64 * 1024 && self.garbage * 2 > self.arena.len() {
            self.compact();
        }
    }

    /// Rewrites the arena with the live texts only.
    fn compact(&mut self) {
        let live: usize = self
            .entries
            .iter()
            .filter(|e| e.live)
            .map(|e| e.key_len)
            .sum();
        let mut arena = Vec::with_capacity(live);
        for e in self.entries.iter_mut().filter(|e| e.live) {
            let start = arena.len();
            arena.extend_from_slice(&self.arena[e.key_start..e.key_start + e.key_len]);
            e.key_start = start;
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
                    assert_eq!(c.entry(idx).openmetrics, n % 2 == 0);
                }
                None => assert!(!present(n), "{k} missing"),
            }
        }
    }

    fn fill(c: &mut SeriesCache, keys: &[String]) {
        for (n, k) in keys.iter().enumerate() {
            let idx = c.insert(k.as_bytes(), n % 2 == 0, false);
            c.entry_mut(idx).last_iter = if n < keys.len() * 4 / 5 { 1 } else { 20 };
            c.entry_mut(idx).set_sref(Some(SeriesRef(n as u64)));
        }
    }

    #[test]
    fn exact_lookups_insert_evict_and_reuse() {
        let mut c = SeriesCache::default();
        let keys: Vec<String> = (0..5000).map(|i| format!("m{{i=\"{i}\"}}")).collect();
        fill(&mut c, &keys);
        assert_eq!(c.len(), 5000);
        assert_eq!(c.get(b"m{i=\"5000\"}"), None);
        check_all(&c, &keys, |_| true);
        c.evict(20, 10);
        assert_eq!(c.len(), 1000);
        check_all(&c, &keys, |n| n >= 4000);
        let idx = c.insert(keys[0].as_bytes(), true, true);
        assert!(idx < 4000, "a freed slot is reused");
        assert_eq!(c.get(keys[0].as_bytes()), Some(idx));
        assert!(c.entry(idx).dropped);
        assert_eq!(c.entry(idx).sref(), None);
    }

    #[test]
    fn every_hash_colliding_still_exact() {
        let mut c = SeriesCache {
            hash: |_| 42,
            ..SeriesCache::default()
        };
        let keys: Vec<String> = (0..200).map(|i| format!("m{{i=\"{i}\"}}")).collect();
        fill(&mut c, &keys);
        assert_eq!(c.len(), 200);
        check_all(&c, &keys, |_| true);
        // The first texts go; the colliding rest are still found exactly.
        c.evict(20, 10);
        assert_eq!(c.len(), 40);
        check_all(&c, &keys, |n| n >= 160);
        let idx = c.insert(b"new{}", true, false);
        assert_eq!(c.get(b"new{}"), Some(idx));
    }

    #[test]
    fn compaction_reclaims_arena_of_churning_series() {
        let mut c = SeriesCache::default();
        for round in 0..20u64 {
            for i in 0..2000 {
                let k = format!("churn{{gen=\"{round}\",i=\"{i}\"}}");
                let idx = c.insert(k.as_bytes(), false, false);
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
