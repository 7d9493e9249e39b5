//! Bit-level writer and reader for the chunk encodings.
//!
//! Hand-written rather than taken from a crate because this is the ingestion and query hot
//! path: the writer appends straight into the chunk's buffer (a [`SysBuf`], see there why),
//! so an open head chunk is readable at any moment without a flush step; the reader keeps a
//! 64-bit MSB-aligned register refilled a byte at a time, so most reads are a shift and a
//! mask.

use crate::sysbuf::SysBuf;

/// Appends bits MSB-first to a byte buffer. The last byte may be partially filled.
#[derive(Clone, Debug, Default)]
pub struct BitWriter {
    buf: SysBuf,
    /// Unused low bits in the last byte of `buf` (0..=7).
    free: u32,
}

impl BitWriter {
    pub fn with_capacity(cap: usize) -> Self {
        BitWriter {
            buf: SysBuf::with_capacity(cap),
            free: 0,
        }
    }

    #[inline]
    /// Address of the byte the next bits go to (for a cache prefetch).
    pub fn tail_ptr(&self) -> *const u8 {
        self.buf
            .as_ptr()
            .wrapping_add(self.buf.len().saturating_sub(1))
    }

    pub fn bytes(&self) -> &[u8] {
        self.buf.as_slice()
    }

    #[inline]
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.buf.as_mut_slice()
    }

    #[inline]
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Grows by a quarter instead of doubling: every active series holds an open chunk's
    /// buffer, so slack would be paid for by every series.
    #[inline]
    fn push(&mut self, b: u8) {
        if self.buf.len() == self.buf.capacity() {
            self.buf.reserve_exact((self.buf.len() / 4).max(16));
        }
        self.buf.push(b);
    }

    /// Writes whole bytes (the stream must be byte-aligned for the result to be byte-aligned).
    pub fn write_byte(&mut self, b: u8) {
        self.write_bits(u64::from(b), 8);
    }

    #[inline]
    pub fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.push(if bit { 0x80 } else { 0 });
            self.free = 7;
        } else {
            self.free -= 1;
            if bit && let Some(last) = self.buf.as_mut_slice().last_mut() {
                *last |= 1 << self.free;
            }
        }
    }

    /// Writes the low `n` bits of `v` (n ≤ 64), most significant first.
    #[inline]
    pub fn write_bits(&mut self, v: u64, mut n: u32) {
        debug_assert!(n <= 64);
        if n == 0 {
            return;
        }
        let v = if n == 64 { v } else { v & ((1u64 << n) - 1) };
        if self.free > 0 {
            let free = self.free;
            if let Some(last) = self.buf.as_mut_slice().last_mut() {
                if n <= free {
                    *last |= (v << (free - n)) as u8;
                    self.free = free - n;
                    return;
                }
                *last |= (v >> (n - free)) as u8;
            }
            n -= free;
            self.free = 0;
        }
        while n >= 8 {
            n -= 8;
            self.push((v >> n) as u8);
        }
        if n > 0 {
            self.push((v << (8 - n)) as u8);
            self.free = 8 - n;
        }
    }

    /// The bytes as a `Vec` (a copy: the buffer lives in another allocator).
    pub fn into_inner(self) -> Vec<u8> {
        self.buf.as_slice().to_vec()
    }
}

/// Reads bits MSB-first from a byte slice.
#[derive(Clone, Debug)]
pub struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte of `data` to load into `reg`.
    pos: usize,
    /// Valid bits are the top `valid` bits.
    reg: u64,
    valid: u32,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            pos: 0,
            reg: 0,
            valid: 0,
        }
    }

    #[inline]
    fn refill(&mut self) {
        if self.valid == 0 && self.pos + 8 <= self.data.len() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&self.data[self.pos..self.pos + 8]);
            self.reg = u64::from_be_bytes(b);
            self.valid = 64;
            self.pos += 8;
            return;
        }
        while self.valid <= 56 && self.pos < self.data.len() {
            self.reg |= u64::from(self.data[self.pos]) << (56 - self.valid);
            self.valid += 8;
            self.pos += 1;
        }
    }

    #[inline]
    pub fn read_bit(&mut self) -> Option<bool> {
        if self.valid == 0 {
            self.refill();
            if self.valid == 0 {
                return None;
            }
        }
        let bit = self.reg >> 63 == 1;
        self.reg <<= 1;
        self.valid -= 1;
        Some(bit)
    }

    /// Reads `n` bits (n ≤ 64) as the low bits of the result.
    #[inline]
    pub fn read_bits(&mut self, n: u32) -> Option<u64> {
        debug_assert!(n <= 64);
        if n == 0 {
            return Some(0);
        }
        if n > 56 {
            let hi = self.read_bits(n - 32)?;
            let lo = self.read_bits(32)?;
            return Some((hi << 32) | lo);
        }
        if self.valid < n {
            self.refill();
            if self.valid < n {
                return None;
            }
        }
        let v = self.reg >> (64 - n);
        self.reg <<= n;
        self.valid -= n;
        Some(v)
    }

    pub fn read_byte(&mut self) -> Option<u8> {
        self.read_bits(8).map(|b| b as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mixed_widths_round_trip() {
        let mut w = BitWriter::default();
        w.write_bit(true);
        w.write_bits(0b101, 3);
        w.write_bits(u64::MAX, 64);
        w.write_bit(false);
        w.write_bits(0x1234, 13);
        let bytes = w.into_inner();
        let mut r = BitReader::new(&bytes);
        assert_eq!(r.read_bit(), Some(true));
        assert_eq!(r.read_bits(3), Some(0b101));
        assert_eq!(r.read_bits(64), Some(u64::MAX));
        assert_eq!(r.read_bit(), Some(false));
        assert_eq!(r.read_bits(13), Some(0x1234 & 0x1fff));
        // Padding bits of the last byte are zero and readable; past them is the end.
        while r.read_bit().is_some() {}
        assert_eq!(r.read_bits(1), None);
    }

    proptest! {
        #[test]
        fn arbitrary_sequences_round_trip(items in proptest::collection::vec((any::<u64>(), 0u32..=64), 0..200)) {
            let mut w = BitWriter::default();
            for (v, n) in &items {
                w.write_bits(*v, *n);
            }
            let bytes = w.into_inner();
            let mut r = BitReader::new(&bytes);
            for (v, n) in &items {
                let want = if *n == 64 { *v } else if *n == 0 { 0 } else { v & ((1u64 << n) - 1) };
                prop_assert_eq!(r.read_bits(*n), Some(want));
            }
        }
    }
}
