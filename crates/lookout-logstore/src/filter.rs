//! Per-chunk substring filters: a Bloom filter of the chunk's *minimizers*.
//!
//! Every line is cut into overlapping 8-byte grams; of each window of 16 consecutive grams the
//! one with the smallest hash (the minimizer) is recorded. A needle of at least 23 bytes holds
//! at least one complete window, and any line containing the needle contains that window too,
//! so it recorded the same minimizer: if one of the needle's minimizers is missing from the
//! filter, no line of the chunk contains the needle and the chunk is skipped. Minimizers are
//! far fewer than grams (about 2 per 17 bytes of *new* text), which keeps filters small;
//! shorter needles are not filtered (every chunk is scanned).

use rustc_hash::FxHashSet;

use crate::LogStoreError;
use crate::codec::{Reader, put_uvarint};

const K: usize = 8;
const W: usize = 16;
/// Shortest needle the filter can rule out.
pub const MIN_NEEDLE: usize = K + W - 1;
/// 6 bits and 4 probes per key: about 5.6% false positives per key. A needle has several
/// minimizers (a 32-hex-digit trace id has about 3) and all must be present, so a chunk is read
/// for an absent needle far less often than that.
const BITS_PER_KEY: usize = 6;
const HASHES: u32 = 4;
/// Probes of filters written before the count was stored (index record type 1).
pub(crate) const HASHES_V1: u32 = 6;

#[inline]
fn gram_hash(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..K]);
    let x = u64::from_le_bytes(a).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 29)
}

/// Calls `emit` with the minimizer hash of every complete window of `text` (repeats of the same
/// minimizer in consecutive windows are reported once).
pub fn minimizers(text: &[u8], mut emit: impl FnMut(u64)) {
    if text.len() < MIN_NEEDLE {
        return;
    }
    let ngrams = text.len() - K + 1;
    // Monotone deque of (position, hash) with increasing hashes.
    let mut dq: std::collections::VecDeque<(usize, u64)> = std::collections::VecDeque::new();
    let mut last: Option<usize> = None;
    for i in 0..ngrams {
        let h = gram_hash(&text[i..]);
        while dq.back().is_some_and(|&(_, bh)| bh > h) {
            dq.pop_back();
        }
        dq.push_back((i, h));
        if i + 1 >= W {
            let start = i + 1 - W;
            while dq.front().is_some_and(|&(p, _)| p < start) {
                dq.pop_front();
            }
            if let Some(&(p, h)) = dq.front()
                && last != Some(p)
            {
                last = Some(p);
                emit(h);
            }
        }
    }
}

/// Collects the distinct minimizers of many lines.
#[derive(Default)]
pub struct FilterBuilder {
    keys: FxHashSet<u64>,
}

impl FilterBuilder {
    pub fn add_line(&mut self, line: &str) {
        minimizers(line.as_bytes(), |h| {
            self.keys.insert(h);
        });
    }

    pub fn build(self) -> Bloom {
        // Whole words, not a power of two (probes are reduced modulo the bit count).
        let nbits = (self.keys.len() * BITS_PER_KEY).max(64).div_ceil(64) * 64;
        let mut b = Bloom {
            words: vec![0u64; nbits / 64],
            hashes: HASHES,
        };
        for k in self.keys {
            b.insert(k);
        }
        b
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bloom {
    words: Vec<u64>,
    hashes: u32,
}

impl Bloom {
    fn positions(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        let m = (self.words.len() * 64) as u64;
        let h1 = key;
        let h2 = key.rotate_left(31).wrapping_mul(0xC2B2_AE3D_27D4_EB4F) | 1;
        (0..self.hashes).map(move |i| (h1.wrapping_add(u64::from(i).wrapping_mul(h2)) % m) as usize)
    }

    fn insert(&mut self, key: u64) {
        let ps: Vec<usize> = self.positions(key).collect();
        for p in ps {
            self.words[p / 64] |= 1 << (p % 64);
        }
    }

    fn contains(&self, key: u64) -> bool {
        if self.words.is_empty() {
            return true;
        }
        self.positions(key)
            .all(|p| self.words[p / 64] & (1 << (p % 64)) != 0)
    }

    /// False only if no line added to the filter can contain `needle`.
    pub fn may_contain(&self, needle: &str) -> bool {
        let mut all = true;
        minimizers(needle.as_bytes(), |h| {
            if all && !self.contains(h) {
                all = false;
            }
        });
        all
    }

    pub fn byte_len(&self) -> usize {
        self.words.len() * 8
    }

    /// Writes the probe count, then the bits.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.hashes as u8);
        put_uvarint(out, self.words.len() as u64);
        for w in &self.words {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }

    /// Reads what [`Bloom::encode`] wrote.
    pub fn decode(r: &mut Reader<'_>) -> Result<Bloom, LogStoreError> {
        let hashes = u32::from(r.u8()?);
        if !(1..=16).contains(&hashes) {
            return Err(LogStoreError::Corrupt("filter probe count".into()));
        }
        Self::decode_bits(r, hashes)
    }

    /// Reads a filter written without its probe count (`hashes` probes).
    pub fn decode_bits(r: &mut Reader<'_>, hashes: u32) -> Result<Bloom, LogStoreError> {
        let n = r.uvarint()? as usize;
        if n.checked_mul(8).is_none_or(|b| b > (1 << 28)) {
            return Err(LogStoreError::Corrupt("filter too large".into()));
        }
        let mut words = Vec::with_capacity(n.min(1 << 20));
        for _ in 0..n {
            words.push(r.u64_le()?);
        }
        Ok(Bloom { words, hashes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rules_out_absent_needles_and_keeps_present_ones() {
        let mut fb = FilterBuilder::default();
        let mut ids = Vec::new();
        let id_of = |i: u64| {
            let a = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            format!("{a:016x}{:016x}", a.rotate_left(23) ^ 0x5555_1234_abcd_9876)
        };
        for i in 0..2000u64 {
            let id = id_of(i);
            fb.add_line(&format!(r#"{{"level":"info","trace_id":"{id}","n":{i}}}"#));
            ids.push(id);
        }
        let f = fb.build();
        for id in &ids {
            assert!(f.may_contain(id));
        }
        let absent = (0..1000)
            .filter(|i| f.may_contain(&id_of(1_000_000 + i)))
            .count();
        assert!(absent < 50, "false positives: {absent}/1000");
        // Short needles are never ruled out.
        assert!(f.may_contain("zzz"));
    }

    #[test]
    fn filters_round_trip_and_old_filters_keep_their_probe_count() {
        let mut fb = FilterBuilder::default();
        let lines: Vec<String> = (0..300)
            .map(|i| {
                format!(
                    "request {i} trace {:032x}",
                    (i as u128) * 0x1234_5678_9abc_def1
                )
            })
            .collect();
        for l in &lines {
            fb.add_line(l);
        }
        let mut f = fb.build();
        let mut buf = Vec::new();
        f.encode(&mut buf);
        assert_eq!(Bloom::decode(&mut Reader::new(&buf)).unwrap(), f);
        // A type-1 filter: built with 6 probes, stored without the count.
        f.hashes = HASHES_V1;
        f.words.iter_mut().for_each(|w| *w = 0);
        let keys: Vec<u64> = {
            let mut k = Vec::new();
            for l in &lines {
                minimizers(l.as_bytes(), |h| k.push(h));
            }
            k
        };
        for k in keys {
            f.insert(k);
        }
        let mut old = Vec::new();
        f.encode(&mut old);
        let back = Bloom::decode_bits(&mut Reader::new(&old[1..]), HASHES_V1).unwrap();
        assert_eq!(back, f);
        for l in &lines {
            assert!(back.may_contain(&l[8..]));
        }
        assert!(Bloom::decode(&mut Reader::new(&[0u8, 1])).is_err());
    }

    proptest! {
        #[test]
        fn a_substring_of_an_added_line_is_never_ruled_out(
            line in "[a-f0-9 ]{0,120}", a in 0usize..120, len in 0usize..100,
        ) {
            let mut fb = FilterBuilder::default();
            fb.add_line(&line);
            fb.add_line("unrelated text that is long enough to matter");
            let f = fb.build();
            let a = a.min(line.len());
            let b = (a + len).min(line.len());
            prop_assert!(f.may_contain(&line[a..b]));
        }
    }
}
