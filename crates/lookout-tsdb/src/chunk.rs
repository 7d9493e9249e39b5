//! Gorilla-style float chunk: delta-of-delta timestamps and XOR-ed values.
//!
//! Layout: a big-endian `u16` sample count, then a bit stream. The first sample is its
//! timestamp as a zig-zag varint and its value as 64 raw bits; every later sample writes the
//! delta-of-delta of its timestamp (buckets `0`, `10`+7, `110`+14, `1110`+20, `1111`+64 bits,
//! the small buckets sized for millisecond scrape jitter) and the XOR of its value with the
//! previous one (Gorilla's "same window" / "new window" scheme). Timestamp arithmetic wraps,
//! so any `i64` sequence in strictly increasing order round-trips, however far apart.

use crate::bits::{BitReader, BitWriter};

const HEADER: usize = 2;
const NO_WINDOW: u8 = 0xff;

/// An appendable chunk. The bytes are a complete, decodable chunk after every append.
#[derive(Clone, Debug)]
pub struct XorChunk {
    w: BitWriter,
    num: u16,
    min_t: i64,
    t: i64,
    delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
}

impl Default for XorChunk {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl XorChunk {
    pub fn with_capacity(cap: usize) -> Self {
        let mut w = BitWriter::with_capacity(cap.max(HEADER));
        w.write_bits(0, 16);
        XorChunk {
            w,
            num: 0,
            min_t: 0,
            t: 0,
            delta: 0,
            v: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    #[inline]
    pub fn num_samples(&self) -> usize {
        usize::from(self.num)
    }

    /// True when another sample cannot be counted in the `u16` header.
    pub fn is_full(&self) -> bool {
        self.num == u16::MAX
    }

    #[inline]
    /// Address the next sample is written near (for a cache prefetch).
    pub fn tail_ptr(&self) -> *const u8 {
        self.w.tail_ptr()
    }

    pub fn bytes(&self) -> &[u8] {
        self.w.bytes()
    }

    /// Heap bytes held by the buffer.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.w.capacity()
    }

    /// First timestamp; meaningless when empty.
    pub fn min_t(&self) -> i64 {
        self.min_t
    }

    /// Last timestamp; meaningless when empty.
    pub fn max_t(&self) -> i64 {
        self.t
    }

    /// Appends a sample. The caller guarantees `t` is greater than the last timestamp (the
    /// encoding itself accepts anything; decoding reproduces exactly what was written) and
    /// that the chunk is not [`full`](Self::is_full).
    #[inline]
    pub fn append(&mut self, t: i64, v: f64) {
        let vb = v.to_bits();
        match self.num {
            0 => {
                write_varint(&mut self.w, t);
                self.w.write_bits(vb, 64);
                self.min_t = t;
                self.delta = 0;
            }
            _ => {
                let delta = t.wrapping_sub(self.t);
                put_dod(&mut self.w, delta.wrapping_sub(self.delta));
                self.delta = delta;
                self.put_value(vb);
            }
        }
        self.t = t;
        self.v = vb;
        self.num = self.num.saturating_add(1);
        let n = self.num.to_be_bytes();
        let bytes = self.w.bytes_mut();
        bytes[0] = n[0];
        bytes[1] = n[1];
    }

    #[inline]
    fn put_value(&mut self, vb: u64) {
        let x = vb ^ self.v;
        if x == 0 {
            self.w.write_bit(false);
            return;
        }
        self.w.write_bit(true);
        let lead = x.leading_zeros().min(31) as u8;
        let trail = x.trailing_zeros() as u8;
        if self.leading != NO_WINDOW && lead >= self.leading && trail >= self.trailing {
            self.w.write_bit(false);
            let sig = 64 - u32::from(self.leading) - u32::from(self.trailing);
            self.w.write_bits(x >> self.trailing, sig);
        } else {
            self.w.write_bit(true);
            let sig = 64 - u32::from(lead) - u32::from(trail);
            self.w.write_bits(u64::from(lead), 5);
            self.w.write_bits(u64::from(sig & 63), 6);
            self.w.write_bits(x >> trail, sig);
            self.leading = lead;
            self.trailing = trail;
        }
    }

    /// Encodes time-sorted samples (strictly increasing timestamps) into chunk bytes.
    pub fn encode(samples: impl IntoIterator<Item = (i64, f64)>) -> Vec<u8> {
        let mut c = XorChunk::with_capacity(64);
        for (t, v) in samples {
            if c.is_full() {
                break;
            }
            c.append(t, v);
        }
        c.w.into_inner()
    }
}

fn write_varint(w: &mut BitWriter, t: i64) {
    let mut z = ((t << 1) ^ (t >> 63)) as u64;
    while z >= 0x80 {
        w.write_byte((z as u8) | 0x80);
        z >>= 7;
    }
    w.write_byte(z as u8);
}

fn read_varint(r: &mut BitReader<'_>) -> Option<i64> {
    let mut z = 0u64;
    for shift in (0..70).step_by(7) {
        let b = r.read_byte()?;
        if shift == 63 && b > 1 {
            return None;
        }
        z |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

#[inline]
fn fits(x: i64, bits: u32) -> bool {
    let half = 1i64 << (bits - 1);
    (-half..half).contains(&x)
}

#[inline]
fn put_dod(w: &mut BitWriter, dod: i64) {
    if dod == 0 {
        w.write_bit(false);
    } else if fits(dod, 7) {
        w.write_bits(0b10, 2);
        w.write_bits(dod as u64, 7);
    } else if fits(dod, 14) {
        w.write_bits(0b110, 3);
        w.write_bits(dod as u64, 14);
    } else if fits(dod, 20) {
        w.write_bits(0b1110, 4);
        w.write_bits(dod as u64, 20);
    } else {
        w.write_bits(0b1111, 4);
        w.write_bits(dod as u64, 64);
    }
}

#[inline]
fn sign_extend(x: u64, bits: u32) -> i64 {
    ((x << (64 - bits)) as i64) >> (64 - bits)
}

/// Number of samples recorded in chunk bytes (0 for a malformed header).
pub fn sample_count(bytes: &[u8]) -> usize {
    match bytes {
        [a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])),
        _ => 0,
    }
}

/// Decodes a chunk. Yields `(t, v)` in stored order; stops early (and reports
/// [`corrupt`](Self::corrupt)) when the bytes end before the recorded sample count.
pub struct XorIter<'a> {
    r: BitReader<'a>,
    total: u16,
    read: u16,
    t: i64,
    delta: i64,
    v: u64,
    leading: u32,
    trailing: u32,
    corrupt: bool,
}

impl<'a> XorIter<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        let (total, body, corrupt) = match bytes {
            [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), rest, false),
            _ => (0, &[][..], true),
        };
        XorIter {
            r: BitReader::new(body),
            total,
            read: 0,
            t: 0,
            delta: 0,
            v: 0,
            leading: 0,
            trailing: 0,
            corrupt,
        }
    }

    /// True when decoding stopped because the data was malformed.
    pub fn corrupt(&self) -> bool {
        self.corrupt
    }

    fn fail(&mut self) -> Option<(i64, f64)> {
        self.corrupt = true;
        self.read = self.total;
        None
    }

    fn read_dod(&mut self) -> Option<i64> {
        let mut ones = 0;
        while ones < 4 {
            if !self.r.read_bit()? {
                break;
            }
            ones += 1;
        }
        Some(match ones {
            0 => 0,
            1 => sign_extend(self.r.read_bits(7)?, 7),
            2 => sign_extend(self.r.read_bits(14)?, 14),
            3 => sign_extend(self.r.read_bits(20)?, 20),
            _ => self.r.read_bits(64)? as i64,
        })
    }

    fn read_value(&mut self) -> Option<u64> {
        if !self.r.read_bit()? {
            return Some(self.v);
        }
        if self.r.read_bit()? {
            self.leading = self.r.read_bits(5)? as u32;
            let mut sig = self.r.read_bits(6)? as u32;
            if sig == 0 {
                sig = 64;
            }
            if self.leading + sig > 64 {
                return None;
            }
            self.trailing = 64 - self.leading - sig;
        }
        let sig = 64 - self.leading - self.trailing;
        let bits = self.r.read_bits(sig)?;
        Some(self.v ^ (bits << self.trailing))
    }
}

impl Iterator for XorIter<'_> {
    type Item = (i64, f64);

    #[inline]
    fn next(&mut self) -> Option<(i64, f64)> {
        if self.read >= self.total {
            return None;
        }
        if self.read == 0 {
            let Some(t) = read_varint(&mut self.r) else {
                return self.fail();
            };
            let Some(v) = self.r.read_bits(64) else {
                return self.fail();
            };
            self.t = t;
            self.v = v;
        } else {
            let Some(dod) = self.read_dod() else {
                return self.fail();
            };
            self.delta = self.delta.wrapping_add(dod);
            self.t = self.t.wrapping_add(self.delta);
            let Some(v) = self.read_value() else {
                return self.fail();
            };
            self.v = v;
        }
        self.read += 1;
        Some((self.t, f64::from_bits(self.v)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::from(self.total - self.read);
        (0, Some(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lookout_storage::STALE_NAN;
    use proptest::prelude::*;

    fn round_trip(samples: &[(i64, f64)]) {
        let mut c = XorChunk::default();
        for &(t, v) in samples {
            c.append(t, v);
        }
        assert_eq!(sample_count(c.bytes()), samples.len());
        let mut it = XorIter::new(c.bytes());
        let got: Vec<(i64, u64)> = it.by_ref().map(|(t, v)| (t, v.to_bits())).collect();
        assert!(!it.corrupt());
        let want: Vec<(i64, u64)> = samples.iter().map(|(t, v)| (*t, v.to_bits())).collect();
        assert_eq!(got, want);
        // The one-shot encoder produces identical bytes.
        assert_eq!(XorChunk::encode(samples.iter().copied()), c.bytes());
    }

    #[test]
    fn special_values_round_trip() {
        round_trip(&[
            (-5, 1.0),
            (0, f64::NAN),
            (1, STALE_NAN),
            (2, f64::INFINITY),
            (3, f64::NEG_INFINITY),
            (4, -0.0),
            (5, 0.0),
            (6, f64::MIN_POSITIVE),
            (i64::MAX, f64::MAX),
        ]);
        round_trip(&[(i64::MIN, 1.0), (i64::MIN + 1, 2.0), (i64::MAX, 3.0)]);
        round_trip(&[]);
    }

    #[test]
    fn regular_scrape_compresses_well() {
        let mut c = XorChunk::default();
        for i in 0..120i64 {
            c.append(
                1_700_000_000_000 + i * 15_000 + (i % 3),
                100.0 + (i / 10) as f64,
            );
        }
        // Well under 2 bytes per sample for a steady counter-like series.
        assert!(c.bytes().len() < 240, "{} bytes", c.bytes().len());
    }

    #[test]
    fn truncated_bytes_are_reported() {
        let mut c = XorChunk::default();
        for i in 0..50 {
            c.append(i * 1000, i as f64 * 1.37);
        }
        let bytes = &c.bytes()[..c.bytes().len() / 2];
        let mut it = XorIter::new(bytes);
        let n = it.by_ref().count();
        assert!(n < 50);
        assert!(it.corrupt());
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(STALE_NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            (-1000i32..1000).prop_map(f64::from),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_series_round_trip(
            start in any::<i64>(),
            steps in proptest::collection::vec(prop_oneof![1u64..100, 1u64..100_000, 1u64..u64::MAX / 4], 0..300),
            values in proptest::collection::vec(value(), 300),
        ) {
            let mut t = start;
            let mut samples = Vec::new();
            for (i, step) in steps.iter().enumerate() {
                samples.push((t, values[i]));
                match t.checked_add(*step as i64) {
                    Some(n) => t = n,
                    None => break,
                }
            }
            round_trip(&samples);
        }
    }
}
