//! A scrape loop's series cache: the raw series text of a sample (`name{labels}` exactly as
//! the target wrote it) → the storage reference of the series it became.
//!
//! Memory is what matters here (one entry per series of every target), so the text is not
//! kept: a series is known by a 128-bit key, XXH3-128 of its text under a seed drawn once
//! per process, and an [`Entry`] is 48 bytes (key, storage handle and reference, scrape
//! iteration, flags) found through a table of 4-byte slot numbers. Two texts of one target
//! sharing a key would need ~2^64 series; with the seed secret, a target cannot aim for one
//! either. (Keeping the texts cost ~100 bytes a series — 8 MB of the 80 000-series race.
//! VictoriaMetrics tracks scraped series by a 64-bit hash for the same reason.) The final
//! label set is not kept either: storage is appended to by reference, and when it needs the
//! labels for a sample (a new series, or one it forgot) the scrape loop builds them from
//! the body it is parsing. Only a stale marker, written for a series missing from the
//! body, has no text to build them from: a storage that keeps its references
//! ([`Appender::keeps_references`], the TSDB) takes it by reference; for any other, the
//! texts of the series are kept, back to back in one arena.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use lookout_storage::{AppendError, Appender, SeriesHandle, SeriesRef};
use rustc_hash::FxHashMap;

/// `Entry::sref` when the series has no storage reference. A storage that hands out this
/// very reference is appended to with labels instead (correct, only slower).
const NO_REF: u64 = u64::MAX;
const FLAG_LIVE: u32 = 1;
const FLAG_DROPPED: u32 = 2;
const FLAG_OPENMETRICS: u32 = 4;
/// The series text's length is kept in the flags above these bits (0 when it does not fit).
const LEN_SHIFT: u32 = 3;

/// The key of a series text.
pub(crate) type Key = [u64; 2];

/// One series of the target (48 bytes; its text's length shares a word with the flags).
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// The storage's handle on the series, taken on the first scrape after it was created.
    handle: Option<SeriesHandle>,
    sref: u64,
    key: Key,
    /// Scrape iteration (mod 2^32, compared with wrapping arithmetic) that last produced
    /// this series.
    pub last_iter: u32,
    flags: u32,
}

impl Entry {
    pub fn sref(&self) -> Option<SeriesRef> {
        (self.sref != NO_REF).then_some(SeriesRef(self.sref))
    }

    fn live(&self) -> bool {
        self.flags & FLAG_LIVE != 0
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
        key: [0; 2],
        last_iter: 0,
        flags: 0,
    };
}

/// The process's seed for series keys.
fn process_seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| std::hash::RandomState::new().hash_one(0x5eed_u64))
}

#[inline]
fn xxh3_key(seed: u64, text: &[u8]) -> Key {
    let h = xxhash_rust::xxh3::xxh3_128_with_seed(text, seed);
    [h as u64, (h >> 64) as u64]
}

pub(crate) struct SeriesCache {
    /// Slots of the live entries, by the first word of their key.
    index: HashTable<u32>,
    entries: Vec<Entry>,
    free: Vec<u32>,
    /// Texts of the series, kept while `keep_texts`.
    pending: PendingTexts,
    /// The storage does not keep its references (see the module doc).
    keep_texts: bool,
    seed: u64,
    /// A test's own key function instead of XXH3-128.
    #[cfg(test)]
    hash: Option<fn(u64, &[u8]) -> Key>,
}

impl Default for SeriesCache {
    fn default() -> Self {
        SeriesCache {
            index: HashTable::new(),
            entries: Vec::new(),
            free: Vec::new(),
            pending: PendingTexts::default(),
            keep_texts: true,
            seed: process_seed(),
            #[cfg(test)]
            hash: None,
        }
    }
}

/// Texts kept for stale markers (see the module doc).
#[derive(Default)]
struct PendingTexts {
    arena: Vec<u8>,
    /// Slot → text span in the arena.
    at: FxHashMap<u32, (usize, usize)>,
    /// Arena bytes of forgotten texts.
    garbage: usize,
}

impl PendingTexts {
    fn put(&mut self, idx: u32, text: &[u8]) {
        self.forget(idx);
        self.at.insert(idx, (self.arena.len(), text.len()));
        self.arena.extend_from_slice(text);
    }

    fn get(&self, idx: u32) -> Option<&[u8]> {
        let &(off, len) = self.at.get(&idx)?;
        self.arena.get(off..off + len)
    }

    fn forget(&mut self, idx: u32) {
        let Some((_, len)) = self.at.remove(&idx) else {
            return;
        };
        self.garbage += len;
        if self.at.is_empty() {
            // Freed whole (a first scrape's texts are one large block, given back at once).
            *self = PendingTexts::default();
        } else if self.garbage > 64 * 1024 && self.garbage * 2 > self.arena.len() {
            let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
            for (off, len) in self.at.values_mut() {
                let start = arena.len();
                arena.extend_from_slice(&self.arena[*off..*off + *len]);
                *off = start;
            }
            self.arena = arena;
            self.garbage = 0;
        }
    }
}

fn grow_by_eighth<T>(v: &mut Vec<T>, more: usize) {
    if v.len() + more > v.capacity() {
        v.reserve_exact(more.max(v.len() / 8).max(64));
    }
}

impl SeriesCache {
    /// The key of series text `text`.
    #[inline]
    pub fn key(&self, text: &[u8]) -> Key {
        #[cfg(test)]
        if let Some(hash) = self.hash {
            return hash(self.seed, text);
        }
        // Called directly (not through a function pointer): inlined, the key stays in
        // registers.
        xxh3_key(self.seed, text)
    }

    /// Whether slot `idx` holds the series of `key`.
    #[inline]
    pub fn holds(&self, idx: u32, key: &Key) -> bool {
        self.entries
            .get(idx as usize)
            .is_some_and(|e| e.live() && e.key == *key)
    }

    pub fn entry(&self, idx: u32) -> &Entry {
        &self.entries[idx as usize]
    }

    pub fn entry_mut(&mut self, idx: u32) -> &mut Entry {
        &mut self.entries[idx as usize]
    }

    /// Metric relabelling dropped the series (nothing is appended).
    pub fn dropped(&self, idx: u32) -> bool {
        self.entries[idx as usize].flags & FLAG_DROPPED != 0
    }

    /// The text came from an OpenMetrics body (else the Prometheus text format).
    pub fn openmetrics(&self, idx: u32) -> bool {
        self.entries[idx as usize].flags & FLAG_OPENMETRICS != 0
    }

    /// The length of series `idx`'s text (0 for a free slot or a text of 512 MiB or more).
    #[inline]
    pub fn text_len(&self, idx: u32) -> usize {
        self.entries
            .get(idx as usize)
            .map_or(0, |e| (e.flags >> LEN_SHIFT) as usize)
    }

    /// Keeps the text of series `idx`, whose sample the storage took by labels, if texts
    /// are kept.
    pub fn keep_text(&mut self, idx: u32, text: &[u8]) {
        if self.keep_texts {
            self.pending.put(idx, text);
        }
    }

    /// Whether texts are kept: not for a storage that keeps its references, whose every
    /// series can be taken by reference from its first commit on.
    pub fn set_keep_texts(&mut self, keep: bool) {
        if self.keep_texts && !keep {
            self.pending = PendingTexts::default();
        }
        self.keep_texts = keep;
    }

    /// The kept text of series `idx` (see [`keep_text`](Self::keep_text)).
    pub fn text(&self, idx: u32) -> Option<&[u8]> {
        self.pending.get(idx)
    }

    /// Number of series cached.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn get(&self, key: &Key) -> Option<u32> {
        self.index
            .find(key[0], |&i| self.entries[i as usize].key == *key)
            .copied()
    }

    /// Adds the series of `key`, whose text is `text_len` bytes long (not present yet), and
    /// returns its slot; its `last_iter` is the iteration before `iter` (not produced by
    /// this scrape yet).
    pub fn insert(
        &mut self,
        key: Key,
        text_len: usize,
        openmetrics: bool,
        dropped: bool,
        iter: u32,
    ) -> u32 {
        let len = u32::try_from(text_len)
            .ok()
            .filter(|&l| l < 1 << (32 - LEN_SHIFT))
            .unwrap_or(0);
        let e = Entry {
            key,
            last_iter: iter.wrapping_sub(1),
            flags: FLAG_LIVE
                | if dropped { FLAG_DROPPED } else { 0 }
                | if openmetrics { FLAG_OPENMETRICS } else { 0 }
                | len << LEN_SHIFT,
            ..Entry::FREE
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.entries[i as usize] = e;
                i
            }
            None => {
                // Grown by an eighth at a time, not doubled: a target's series set is built
                // once and then kept, so doubling would leave up to half of it as slack.
                grow_by_eighth(&mut self.entries, 1);
                self.entries.push(e);
                (self.entries.len() - 1) as u32
            }
        };
        let entries = &self.entries;
        self.index
            .insert_unique(key[0], idx, |&i| entries[i as usize].key[0]);
        idx
    }

    /// Forgets series not produced by any of the last `keep` scrapes before `iter`.
    pub fn evict(&mut self, iter: u32, keep: u32) {
        for idx in 0..self.entries.len() as u32 {
            let e = &self.entries[idx as usize];
            if !e.live() || iter.wrapping_sub(e.last_iter) <= keep {
                continue;
            }
            if let Ok(slot) = self.index.find_entry(e.key[0], |&i| i == idx) {
                slot.remove();
            }
            self.pending.forget(idx);
            self.entries[idx as usize] = Entry::FREE;
            self.free.push(idx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_all(c: &SeriesCache, keys: &[String], present: impl Fn(usize) -> bool) {
        for (n, k) in keys.iter().enumerate() {
            match c.get(&c.key(k.as_bytes())) {
                Some(idx) => {
                    assert!(present(n), "{k} should be gone");
                    assert!(c.holds(idx, &c.key(k.as_bytes())));
                    assert_eq!(c.entry(idx).sref(), Some(SeriesRef(n as u64)));
                    assert_eq!(c.openmetrics(idx), n % 2 == 0);
                    assert_eq!(c.dropped(idx), n % 3 == 0);
                    assert_eq!(c.text_len(idx), k.len());
                }
                None => assert!(!present(n), "{k} missing"),
            }
        }
    }

    fn fill(c: &mut SeriesCache, keys: &[String], iter: u32) {
        for (n, k) in keys.iter().enumerate() {
            let idx = c.insert(c.key(k.as_bytes()), k.len(), n % 2 == 0, n % 3 == 0, iter);
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
    fn entry_is_48_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 48);
    }

    #[test]
    fn lookups_insert_evict_and_reuse() {
        let mut c = SeriesCache::default();
        let keys: Vec<String> = (0..5000).map(|i| format!("m{{i=\"{i}\"}}")).collect();
        fill(&mut c, &keys, 1);
        assert_eq!(c.len(), 5000);
        assert_eq!(c.get(&c.key(b"m{i=\"5000\"}")), None);
        check_all(&c, &keys, |_| true);
        c.evict(20, 10);
        assert_eq!(c.len(), 1000);
        check_all(&c, &keys, |n| n >= 4000);
        let k0 = c.key(keys[0].as_bytes());
        let idx = c.insert(k0, keys[0].len(), true, true, 20);
        assert!(idx < 4000, "a freed slot is reused");
        assert_eq!(c.get(&k0), Some(idx));
        assert!(c.dropped(idx));
        assert_eq!(c.entry(idx).sref(), None);
        // A freed slot holds nothing, whatever key is asked for, and has no text.
        assert!(!c.holds(1, &c.key(keys[1].as_bytes())));
        assert!(!c.holds(1, &[0, 0]));
        assert_eq!(c.text_len(1), 0);
        assert_eq!(c.text_len(u32::MAX), 0);
    }

    #[test]
    fn keys_depend_on_every_byte_and_the_seed() {
        let c = SeriesCache::default();
        let a = c.key(b"m{a=\"1\"}");
        assert_eq!(a, c.key(b"m{a=\"1\"}"));
        assert_ne!(a, c.key(b"m{a=\"2\"}"));
        assert_ne!(a, c.key(b"m{a=\"1\"} "));
        let other = SeriesCache {
            seed: c.seed ^ 1,
            ..SeriesCache::default()
        };
        assert_ne!(a, other.key(b"m{a=\"1\"}"));
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
        let idx = c.insert(c.key(b"new{}"), 5, false, false, 0);
        assert_eq!(c.entry(idx).last_iter, u32::MAX);
    }

    #[test]
    fn text_lengths_share_the_flags_word() {
        let mut c = SeriesCache::default();
        let max = (1 << (32 - LEN_SHIFT)) - 1;
        for (len, kept) in [(0, 0), (1, 1), (max, max), (max + 1, 0), (usize::MAX, 0)] {
            let idx = c.insert(c.key(&len.to_le_bytes()), len, true, true, 1);
            assert_eq!(c.text_len(idx), kept, "{len}");
            assert!(c.openmetrics(idx) && c.dropped(idx), "flags intact");
        }
    }

    #[test]
    fn references_round_trip() {
        let mut c = SeriesCache::default();
        let idx = c.insert(c.key(b"m"), 1, true, false, 1);
        let e = c.entry_mut(idx);
        e.set_sref(Some(SeriesRef(0)));
        assert_eq!(e.sref(), Some(SeriesRef(0)));
        e.set_sref(Some(SeriesRef(NO_REF)));
        assert_eq!(e.sref(), None, "the sentinel reference is not kept");
        e.set_sref(Some(SeriesRef(NO_REF - 1)));
        assert_eq!(e.sref(), Some(SeriesRef(NO_REF - 1)));
    }

    #[test]
    fn index_collisions_are_told_apart_by_the_whole_key() {
        // Every key shares its first word (the table's hash): the second word tells them apart.
        let mut c = SeriesCache {
            hash: Some(|seed, text| {
                let [_, hi] = xxh3_key(seed, text);
                [42, hi]
            }),
            ..SeriesCache::default()
        };
        let keys: Vec<String> = (0..200).map(|i| format!("m{{i=\"{i}\"}}")).collect();
        fill(&mut c, &keys, 1);
        assert_eq!(c.len(), 200);
        check_all(&c, &keys, |_| true);
        c.evict(20, 10);
        assert_eq!(c.len(), 40);
        check_all(&c, &keys, |n| n >= 160);
        let k = c.key(b"new{}");
        let idx = c.insert(k, 5, true, false, 20);
        assert_eq!(c.get(&k), Some(idx));
    }

    #[test]
    fn churning_series_reuse_slots() {
        let mut c = SeriesCache::default();
        for round in 0..20u32 {
            for i in 0..2000 {
                let k = format!("churn{{gen=\"{round}\",i=\"{i}\"}}");
                let idx = c.insert(c.key(k.as_bytes()), k.len(), false, false, round);
                c.entry_mut(idx).last_iter = round;
            }
            c.evict(round, 0);
        }
        assert_eq!(c.len(), 2000);
        assert!(c.get(&c.key(b"churn{gen=\"19\",i=\"7\"}")).is_some());
        assert!(c.get(&c.key(b"churn{gen=\"0\",i=\"7\"}")).is_none());
        assert!(c.entries.len() <= 4000, "slots are reused");
    }

    #[test]
    fn texts_are_kept_for_storages_without_references_until_evicted() {
        let mut c = SeriesCache::default();
        let a = c.insert(c.key(b"a"), 1, false, false, 1);
        let b = c.insert(c.key(b"b{x=\"1\"}"), 8, false, false, 1);
        c.keep_text(a, b"a");
        c.keep_text(b, b"b{x=\"1\"}");
        assert_eq!(c.text(a), Some(&b"a"[..]));
        c.entry_mut(a).last_iter = 20;
        c.entry_mut(b).last_iter = 1;
        c.evict(20, 10);
        assert!(c.text(b).is_none(), "evicted with its series");
        assert_eq!(c.text(a), Some(&b"a"[..]));
        c.set_keep_texts(false);
        assert!(c.text(a).is_none());
        assert_eq!(c.pending.arena.capacity(), 0, "the arena is freed");
        let n = c.insert(c.key(b"n"), 1, false, false, 21);
        c.keep_text(n, b"n");
        assert!(
            c.text(n).is_none(),
            "not kept for a storage that keeps references"
        );
    }

    #[test]
    fn pending_texts_compact_while_series_come_and_go() {
        // A storage without references: series are forgotten by eviction only.
        let mut c = SeriesCache::default();
        let texts: Vec<String> = (0..20_000).map(|i| format!("m{{i=\"{i}\"}}")).collect();
        let slots: Vec<u32> = texts
            .iter()
            .map(|t| {
                let i = c.insert(c.key(t.as_bytes()), t.len(), false, false, 1);
                c.keep_text(i, t.as_bytes());
                i
            })
            .collect();
        // All but every hundredth evicted: the arena shrinks to the rest.
        for (n, &i) in slots.iter().enumerate() {
            c.entry_mut(i).last_iter = if n % 100 != 0 { 1 } else { 30 };
        }
        c.evict(30, 10);
        assert!(
            c.pending.arena.len() < 64 * 1024 + 200 * 20,
            "{}",
            c.pending.arena.len()
        );
        for (n, &i) in slots.iter().enumerate() {
            let want = (n % 100 == 0).then_some(texts[n].as_bytes());
            assert_eq!(c.text(i), want);
        }
    }
}
