//! Bit-level writer and reader for the chunk encodings.
//!
//! Hand-written rather than taken from a crate because this is the ingestion and query hot
//! path: the writer appends straight into the chunk's buffer (in the C library's allocator,
//! see [`crate::sysbuf`] why), so an open head chunk is readable at any moment without a
//! flush step; the reader keeps a 64-bit MSB-aligned register refilled a byte at a time, so
//! most reads are a shift and a mask.

use std::ptr::NonNull;

use crate::sysbuf;

/// Appends bits MSB-first to a byte buffer in the C library's allocator (see
/// [`crate::sysbuf`]). The last byte may be partially filled. 16 bytes: the length is kept in
/// bits (so no separate count of the last byte's free bits) and the capacity in 16-byte units.
pub struct BitWriter {
    ptr: NonNull<u8>,
    /// Bits written; the bytes are `ceil(bits / 8)`.
    bits: u32,
    /// Capacity in [`sysbuf`] units.
    units: u16,
}

// SAFETY: `BitWriter` owns its allocation exclusively, like `Vec<u8>`; shared references only
// read it.
unsafe impl Send for BitWriter {}
// SAFETY: as above; `&BitWriter` gives read-only access.
unsafe impl Sync for BitWriter {}

impl Default for BitWriter {
    fn default() -> Self {
        BitWriter {
            ptr: NonNull::dangling(),
            bits: 0,
            units: 0,
        }
    }
}

impl Drop for BitWriter {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `units` describe this writer's block (or `units` is 0).
        unsafe { sysbuf::release(self.ptr, self.units) }
    }
}

impl Clone for BitWriter {
    fn clone(&self) -> Self {
        let mut w = BitWriter::with_capacity(self.len());
        // SAFETY: `w` has room for `self.len()` bytes; the ranges belong to different blocks.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), w.ptr.as_ptr(), self.len());
        }
        w.bits = self.bits;
        w
    }
}

impl std::fmt::Debug for BitWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BitWriter")
            .field("bits", &self.bits)
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl BitWriter {
    pub fn with_capacity(cap: usize) -> Self {
        let mut w = BitWriter::default();
        if cap > 0 {
            w.reserve(cap);
        }
        w
    }

    #[inline]
    fn len(&self) -> usize {
        (self.bits as usize).div_ceil(8)
    }

    #[inline]
    /// Address of the byte the next bits go to (for a cache prefetch).
    pub fn tail_ptr(&self) -> *const u8 {
        self.ptr.as_ptr().wrapping_add(self.len().saturating_sub(1))
    }

    #[inline]
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `len()` initialised bytes (dangling and 0 when empty).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len()) }
    }

    #[inline]
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len()) }
    }

    #[inline]
    pub fn capacity(&self) -> usize {
        sysbuf::capacity(self.units)
    }

    /// Makes room for `need` bytes in all.
    fn reserve(&mut self, need: usize) {
        if need > self.capacity() {
            // SAFETY: `ptr`/`units` describe this writer's block and `need` exceeds it.
            (self.ptr, self.units) = unsafe { sysbuf::grow(self.ptr, self.units, need) };
        }
    }

    /// Appends a whole byte at a byte boundary. Grows by a quarter instead of doubling:
    /// every active series holds an open chunk's buffer, so slack would be paid for by every
    /// series.
    #[inline]
    fn push(&mut self, b: u8) {
        let len = self.len();
        if len == self.capacity() {
            self.reserve(len + (len / 4).max(16));
        }
        // SAFETY: `len < capacity` after the reserve, so the byte is inside the block.
        unsafe { self.ptr.as_ptr().add(len).write(b) };
        self.bits += 8;
    }

    /// ORs `b` into the last byte (there is one when `bits % 8 != 0`).
    #[inline]
    fn or_last(&mut self, b: u8) {
        let len = self.len();
        debug_assert!(len > 0);
        // SAFETY: callers only call this with a partly filled last byte, inside the block.
        unsafe { *self.ptr.as_ptr().add(len - 1) |= b };
    }

    /// Writes whole bytes (the stream must be byte-aligned for the result to be byte-aligned).
    pub fn write_byte(&mut self, b: u8) {
        self.write_bits(u64::from(b), 8);
    }

    #[inline]
    pub fn write_bit(&mut self, bit: bool) {
        let used = self.bits & 7;
        if used == 0 {
            self.push(if bit { 0x80 } else { 0 });
            self.bits -= 7;
        } else {
            let free = 8 - used;
            if bit {
                self.or_last(1 << (free - 1));
            }
            self.bits += 1;
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
        let used = self.bits & 7;
        if used != 0 {
            let free = 8 - used;
            if n <= free {
                self.or_last((v << (free - n)) as u8);
                self.bits += n;
                return;
            }
            self.or_last((v >> (n - free)) as u8);
            self.bits += free;
            n -= free;
        }
        while n >= 8 {
            n -= 8;
            self.push((v >> n) as u8);
        }
        if n > 0 {
            self.push((v << (8 - n)) as u8);
            self.bits -= 8 - n;
        }
    }

    /// The bytes as a `Vec` (a copy: the buffer lives in another allocator).
    pub fn into_inner(self) -> Vec<u8> {
        self.bytes().to_vec()
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

    #[test]
    fn a_writer_is_16_bytes_and_clones_and_grows() {
        assert_eq!(std::mem::size_of::<BitWriter>(), 16);
        let mut w = BitWriter::with_capacity(3);
        let first = w.capacity();
        assert!(first >= 3);
        w.write_bit(true);
        for i in 0..1000u32 {
            w.write_bits(u64::from(i), 11);
        }
        assert!(w.capacity() >= w.bytes().len() && w.capacity() > first);
        assert_eq!(w.bytes().len(), (1 + 1000 * 11usize).div_ceil(8));
        let c = w.clone();
        assert_eq!(c.bytes(), w.bytes());
        drop(w);
        let mut r = BitReader::new(c.bytes());
        assert_eq!(r.read_bit(), Some(true));
        for i in 0..1000u64 {
            assert_eq!(r.read_bits(11), Some(i & 0x7ff));
        }
        let empty = BitWriter::default();
        assert!(empty.bytes().is_empty() && empty.clone().bytes().is_empty());
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
