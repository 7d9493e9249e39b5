//! Byte-level helpers: varints and a bounds-checked reader (every decode path reads bytes that
//! come from disk, so nothing here may panic on bad input).

use crate::LogStoreError;

pub fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

pub fn put_ivarint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

pub fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

/// Reads from a byte slice; every accessor fails with [`LogStoreError::Corrupt`] instead of
/// panicking when the data ends early or is malformed.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn corrupt(what: &str) -> LogStoreError {
    LogStoreError::Corrupt(what.to_string())
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn uvarint(&mut self) -> Result<u64, LogStoreError> {
        let mut v: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| corrupt("truncated varint"))?;
            self.pos += 1;
            if shift >= 64 {
                return Err(corrupt("varint overflow"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
        }
    }

    pub fn ivarint(&mut self) -> Result<i64, LogStoreError> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    /// A length that must not exceed what is left (guards allocations sized from input).
    pub fn len_prefix(&mut self) -> Result<usize, LogStoreError> {
        let n = self.uvarint()?;
        let left = (self.buf.len() - self.pos.min(self.buf.len())) as u64;
        if n > left {
            return Err(corrupt("length beyond end of data"));
        }
        Ok(n as usize)
    }

    /// A count of items, each at least one byte long.
    pub fn count(&mut self) -> Result<usize, LogStoreError> {
        self.len_prefix()
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], LogStoreError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| corrupt("truncated data"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], LogStoreError> {
        let n = self.len_prefix()?;
        self.take(n)
    }

    pub fn str(&mut self) -> Result<&'a str, LogStoreError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| corrupt("invalid UTF-8"))
    }

    pub fn u8(&mut self) -> Result<u8, LogStoreError> {
        Ok(self.take(1)?[0])
    }

    pub fn u64_le(&mut self) -> Result<u64, LogStoreError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub fn i64_le(&mut self) -> Result<i64, LogStoreError> {
        Ok(self.u64_le()? as i64)
    }

    pub fn u32_le(&mut self) -> Result<u32, LogStoreError> {
        let b = self.take(4)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(u32::from_le_bytes(a))
    }
}

/// Frames a record as `len u32 | crc32c u32 | payload` (the WAL and the chunk index use it).
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Splits a buffer of framed records. Stops at the first torn or corrupt record and reports
/// the offset of the valid prefix, so a file cut short by a crash is truncated there.
pub fn unframe(buf: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while buf.len() - pos >= 8 {
        let mut l = [0u8; 4];
        l.copy_from_slice(&buf[pos..pos + 4]);
        let len = u32::from_le_bytes(l) as usize;
        let mut c = [0u8; 4];
        c.copy_from_slice(&buf[pos + 4..pos + 8]);
        let crc = u32::from_le_bytes(c);
        let Some(end) = (pos + 8).checked_add(len).filter(|&e| e <= buf.len()) else {
            break;
        };
        let payload = &buf[pos + 8..end];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        out.push(payload);
        pos = end;
    }
    (out, pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varints_round_trip(vs in proptest::collection::vec(any::<i64>(), 0..50)) {
            let mut b = Vec::new();
            for &v in &vs { put_ivarint(&mut b, v); put_uvarint(&mut b, v as u64); }
            let mut r = Reader::new(&b);
            for &v in &vs {
                prop_assert_eq!(r.ivarint().unwrap(), v);
                prop_assert_eq!(r.uvarint().unwrap(), v as u64);
            }
            prop_assert!(r.is_empty());
        }

        #[test]
        fn reader_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&b);
            let _ = r.bytes();
            let _ = r.ivarint();
            let _ = r.str();
            let _ = r.u64_le();
        }
    }

    #[test]
    fn frames_stop_at_a_torn_record() {
        let mut buf = frame(b"one");
        buf.extend(frame(b"two"));
        let whole = buf.len();
        buf.extend(&frame(b"three")[..5]);
        let (recs, valid) = unframe(&buf);
        assert_eq!(recs, vec![&b"one"[..], &b"two"[..]]);
        assert_eq!(valid, whole);
        let mut bad = frame(b"x");
        bad[9 - 1] ^= 1;
        assert_eq!(unframe(&bad).0.len(), 0);
    }
}
