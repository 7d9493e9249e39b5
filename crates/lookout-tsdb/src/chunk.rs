//! Head chunk: Gorilla-style delta-of-delta timestamps, values as decimal deltas or XOR.
//!
//! Layout: a big-endian `u16` header, then a bit stream. The header's top bit marks the
//! decimal encoding below, the next bit its predicted deltas; the low 14 bits are the sample
//! count (15 in chunks without the decimal bit). Chunks written before either bit existed are
//! read as they were: those without the decimal bit had 15-bit counts, and those with only
//! the decimal bit never reach 2^14 samples (a chunk is cut at 1 KiB, ~4 000 samples at
//! most). The first sample is its timestamp as a zig-zag varint and its value as 64 raw
//! bits; every later sample writes the delta-of-delta of its timestamp (buckets `0`, `10`+7,
//! `110`+14, `1110`+20, `1111`+64 bits, the small buckets sized for millisecond scrape
//! jitter) and then its value:
//! - `0`: the same bits as the previous value;
//! - `10` + a zig-zag integer (`0`+6, `10`+13, `110`+20, `111`+64 bits): when the previous
//!   value is a decimal with `k <= 4` fraction digits (`v = s / 10^k` exactly, bit for bit,
//!   `|s| < 2^52`) and this one is too at the same `k`, the delta `d` of the scaled
//!   integers, less the previous sample's delta when predicting (below);
//! - `11` + the XOR with the previous value (Gorilla's "same window" / "new window").
//!
//! Predicted deltas: a counter that grows at a steady rate has deltas that change less than
//! they are large, so after a sample whose delta was closer to the delta before it than to
//! zero, the next sample stores its delta minus the previous one (a delta of deltas). The
//! choice follows from decoded values alone (a same-value sample counts as delta 0; an XOR
//! sample resets it), so it costs no bits. On the scrape simulator's counters and bucket
//! counts it stores ~30 % fewer value bits; gauges keep plain deltas. Chunks with the decimal
//! bit but not this one (written before it) store `zig-zag(d) - 1` without prediction.
//!
//! The decimal form is what counters, bucket counts and gauges rounded to a few digits look
//! like; on the scrape simulator's data it stores 1.3 bytes per sample where XOR alone needs
//! 2.3 (noisy three-digit gauges 2.1 instead of 6.2), and open chunks are the head's largest
//! growing heap. A value's scale is a function of its bits alone (`decimal_scale`), so the
//! decoder follows the encoder's choice without stored state. Timestamp arithmetic wraps, so
//! any `i64` sequence in strictly increasing order round-trips, however far apart.

use crate::bits::{BitReader, BitWriter};

const HEADER: usize = 2;
const NO_WINDOW: u8 = 0xff;
/// Header bit of the decimal value encoding.
const DECIMAL: u16 = 0x8000;
/// Header bit of predicted decimal deltas (set together with [`DECIMAL`]).
const PREDICT: u16 = 0x4000;
/// Largest sample count written (the header's low 14 bits).
const MAX_SAMPLES: u16 = 0x3fff;
/// No decimal scale (the previous value is not a short decimal).
const NO_SCALE: u8 = 0xff;
const POW10: [f64; 5] = [1.0, 10.0, 100.0, 1000.0, 10000.0];
/// Scaled integers stay below 2^52, where `f64` holds every integer and `s / 10^k` is one
/// correctly rounded division.
const SCALED_LIMIT: f64 = 4_503_599_627_370_496.0;

/// `v` as the integer `s` with `v == s / 10^k` bit for bit, if there is one.
#[inline]
fn scaled_at(v: f64, k: u8) -> Option<i64> {
    let m = POW10[usize::from(k)];
    let x = v * m;
    if x.is_nan() || x.abs() >= SCALED_LIMIT {
        return None;
    }
    // Nearest integer without a libm call; a wrong guess only fails the check below.
    let s = (x + 0.5f64.copysign(x)) as i64;
    ((s as f64 / m).to_bits() == v.to_bits()).then_some(s)
}

/// The fewest fraction digits (0..=4) that write `v` exactly, or [`NO_SCALE`].
#[inline]
fn decimal_scale(v: f64) -> u8 {
    (0..POW10.len() as u8)
        .find(|&k| scaled_at(v, k).is_some())
        .unwrap_or(NO_SCALE)
}

/// An appendable chunk. The bytes are a complete, decodable chunk after every append.
///
/// The chunk does not keep its last sample: the caller passes it to
/// [`append`](Self::append). The head keeps each series' newest sample anyway (to reject
/// out-of-order and duplicate samples), so a copy here would cost every series 16 bytes. Nor
/// does it keep its sample count: the header holds it. 32 bytes in all.
#[derive(Clone, Debug)]
pub struct XorChunk {
    w: BitWriter,
    delta: i64,
    /// The last value's scaled-integer delta (0 when unknown or past `i32`).
    vdelta: i32,
    /// The next scaled delta is stored less `vdelta`.
    predict: bool,
    leading: u8,
    trailing: u8,
    /// Decimal scale of the last value ([`NO_SCALE`] if none).
    scale: u8,
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
            delta: 0,
            vdelta: 0,
            predict: false,
            leading: NO_WINDOW,
            trailing: 0,
            scale: NO_SCALE,
        }
    }

    /// The sample count in the header (written with both bits set once there is a sample,
    /// all zero before).
    #[inline]
    fn count(&self) -> u16 {
        match self.w.bytes() {
            [a, b, ..] => u16::from_be_bytes([*a, *b]) & MAX_SAMPLES,
            _ => 0,
        }
    }

    #[inline]
    pub fn num_samples(&self) -> usize {
        usize::from(self.count())
    }

    /// True when another sample cannot be counted in the header.
    pub fn is_full(&self) -> bool {
        self.count() >= MAX_SAMPLES
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

    /// First timestamp; meaningless when empty. Read back from the bytes (a varint after
    /// the header) rather than kept: every active series holds an open chunk.
    pub fn min_t(&self) -> i64 {
        let mut r = BitReader::new(self.w.bytes().get(HEADER..).unwrap_or_default());
        read_varint(&mut r).unwrap_or(0)
    }

    /// Appends a sample after `last`, the timestamp and value bits of the sample appended
    /// before (ignored for the first sample). The caller guarantees `t` is greater than the
    /// last timestamp (the encoding itself accepts anything; decoding reproduces exactly what
    /// was written), that `last` is the previous sample and that the chunk is not
    /// [`full`](Self::is_full).
    #[inline]
    pub fn append(&mut self, last: (i64, u64), t: i64, v: f64) {
        let vb = v.to_bits();
        let num = self.count();
        match num {
            0 => {
                write_varint(&mut self.w, t);
                self.w.write_bits(vb, 64);
                self.delta = 0;
                self.vdelta = 0;
                self.predict = false;
                self.scale = decimal_scale(v);
            }
            _ => {
                let delta = t.wrapping_sub(last.0);
                put_dod(&mut self.w, delta.wrapping_sub(self.delta));
                self.delta = delta;
                self.put_value(last.1, v);
            }
        }
        let n = ((num + 1).min(MAX_SAMPLES) | DECIMAL | PREDICT).to_be_bytes();
        let bytes = self.w.bytes_mut();
        bytes[0] = n[0];
        bytes[1] = n[1];
    }

    #[inline]
    fn put_value(&mut self, last: u64, v: f64) {
        let vb = v.to_bits();
        let x = vb ^ last;
        if x == 0 {
            self.w.write_bit(false);
            self.learn(0);
            return;
        }
        // The previous scaled integer is recomputed from its value rather than kept: a field
        // would grow every series' open chunk by 8 bytes.
        if self.scale != NO_SCALE
            && let Some(s) = scaled_at(v, self.scale)
            && let Some(prev) = scaled_at(f64::from_bits(last), self.scale)
        {
            let d = s.wrapping_sub(prev);
            let stored = if self.predict {
                d.wrapping_sub(i64::from(self.vdelta))
            } else {
                d
            };
            self.w.write_bits(0b10, 2);
            put_scaled(&mut self.w, zigzag(stored));
            self.learn(d);
            return;
        }
        self.w.write_bits(0b11, 2);
        self.scale = decimal_scale(v);
        self.vdelta = 0;
        self.predict = false;
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

    /// Takes `d` as the last scaled delta (see the module doc's predicted deltas).
    #[inline]
    fn learn(&mut self, d: i64) {
        (self.predict, self.vdelta) = next_prediction(self.vdelta, d);
    }

    /// Encodes time-sorted samples (strictly increasing timestamps) into chunk bytes.
    pub fn encode(samples: impl IntoIterator<Item = (i64, f64)>) -> Vec<u8> {
        let mut c = XorChunk::with_capacity(64);
        let mut last = (0, 0);
        for (t, v) in samples {
            if c.is_full() {
                break;
            }
            c.append(last, t, v);
            last = (t, v.to_bits());
        }
        c.w.into_inner()
    }
}

#[inline]
fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

#[inline]
fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

fn write_varint(w: &mut BitWriter, t: i64) {
    let mut z = zigzag(t);
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
            return Some(unzigzag(z));
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

/// After a scaled delta `d` with `vdelta` the one before: whether to predict the next delta
/// (`d` was closer to `vdelta` than to zero) and the `vdelta` to keep (0 past `i32`).
#[inline]
fn next_prediction(vdelta: i32, d: i64) -> (bool, i32) {
    let predict = d.wrapping_sub(i64::from(vdelta)).unsigned_abs() < d.unsigned_abs();
    (predict, i32::try_from(d).unwrap_or(0))
}

/// A zig-zag scaled integer `u` in buckets `0`+6, `10`+13, `110`+20, `111`+64 bits.
#[inline]
fn put_scaled(w: &mut BitWriter, u: u64) {
    if u < 1 << 6 {
        w.write_bits(u, 7);
    } else if u < 1 << 13 {
        w.write_bits((0b10 << 13) | u, 15);
    } else if u < 1 << 20 {
        w.write_bits((0b110 << 20) | u, 23);
    } else {
        w.write_bits(0b111, 3);
        w.write_bits(u, 64);
    }
}

#[inline]
fn sign_extend(x: u64, bits: u32) -> i64 {
    ((x << (64 - bits)) as i64) >> (64 - bits)
}

/// Number of samples recorded in chunk bytes (0 for a malformed header).
pub fn sample_count(bytes: &[u8]) -> usize {
    match bytes {
        [a, b, ..] => usize::from(header_count(u16::from_be_bytes([*a, *b]))),
        _ => 0,
    }
}

/// The sample count in a header (14 bits with the decimal bit, 15 without).
fn header_count(h: u16) -> u16 {
    if h & DECIMAL != 0 {
        h & MAX_SAMPLES
    } else {
        h & !DECIMAL
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
    /// Values use the decimal encoding (header bit).
    decimal: bool,
    /// Decimal deltas are predicted (header bit).
    predicting: bool,
    /// The encoder's prediction state (see `XorChunk::learn`).
    vdelta: i32,
    predict: bool,
    /// Decimal scale of the last value and its scaled integer.
    scale: u8,
    s: i64,
}

impl<'a> XorIter<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        let (header, body, corrupt) = match bytes {
            [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), rest, false),
            _ => (0, &[][..], true),
        };
        let total = header_count(header);
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
            decimal: header & DECIMAL != 0,
            predicting: header & DECIMAL != 0 && header & PREDICT != 0,
            vdelta: 0,
            predict: false,
            scale: NO_SCALE,
            s: 0,
        }
    }

    /// Takes `v` as the last value: its decimal scale and scaled integer.
    #[inline]
    fn rescale(&mut self, v: u64) {
        let f = f64::from_bits(v);
        self.scale = decimal_scale(f);
        self.s = if self.scale == NO_SCALE {
            0
        } else {
            scaled_at(f, self.scale).unwrap_or(0)
        };
    }

    /// A zig-zag scaled integer as [`put_scaled`] writes it.
    fn read_scaled(&mut self) -> Option<u64> {
        let mut ones = 0;
        while ones < 3 {
            if !self.r.read_bit()? {
                break;
            }
            ones += 1;
        }
        let u = match ones {
            0 => self.r.read_bits(6)?,
            1 => self.r.read_bits(13)?,
            2 => self.r.read_bits(20)?,
            _ => self.r.read_bits(64)?,
        };
        Some(u)
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
            if self.predicting {
                (self.predict, self.vdelta) = next_prediction(self.vdelta, 0);
            }
            return Some(self.v);
        }
        if self.decimal {
            if !self.r.read_bit()? {
                if self.scale == NO_SCALE {
                    return None;
                }
                let u = self.read_scaled()?;
                let d = if !self.predicting {
                    unzigzag(u.wrapping_add(1))
                } else if self.predict {
                    unzigzag(u).wrapping_add(i64::from(self.vdelta))
                } else {
                    unzigzag(u)
                };
                if self.predicting {
                    (self.predict, self.vdelta) = next_prediction(self.vdelta, d);
                }
                self.s = self.s.wrapping_add(d);
                return Some((self.s as f64 / POW10[usize::from(self.scale)]).to_bits());
            }
            let v = self.read_xor()?;
            self.rescale(v);
            self.vdelta = 0;
            self.predict = false;
            return Some(v);
        }
        self.read_xor()
    }

    fn read_xor(&mut self) -> Option<u64> {
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
            if self.decimal {
                self.rescale(v);
            }
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

    /// An open chunk appended to sample by sample, as the head does.
    fn chunk_of(samples: &[(i64, f64)]) -> XorChunk {
        let mut c = XorChunk::default();
        let mut last = (0, 0);
        for &(t, v) in samples {
            c.append(last, t, v);
            last = (t, v.to_bits());
        }
        c
    }

    fn round_trip(samples: &[(i64, f64)]) {
        let c = chunk_of(samples);
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
        let samples: Vec<(i64, f64)> = (0..120i64)
            .map(|i| {
                (
                    1_700_000_000_000 + i * 15_000 + (i % 3),
                    100.0 + (i / 10) as f64,
                )
            })
            .collect();
        let c = chunk_of(&samples);
        // Well under 2 bytes per sample for a steady counter-like series.
        assert!(c.bytes().len() < 240, "{} bytes", c.bytes().len());
    }

    #[test]
    fn chunks_written_before_the_decimal_encoding_read_as_before() {
        // Bytes of `XorChunk::encode` at 8b73ec6 (header bit clear, XOR values only).
        let old: &[u8] = &[
            0x00, 0x08, 0x80, 0xa0, 0xab, 0xfe, 0xf9, 0x62, 0x3f, 0xf0, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0xe0, 0x3a, 0x98, 0xd8, 0x0e, 0x02, 0xbf, 0x61, 0x07, 0x01, 0xc4, 0x77,
            0xfc, 0xac, 0x08, 0x60, 0x0e, 0xb0, 0x7d, 0xfc, 0x6f, 0xc8, 0x79, 0x10, 0x00, 0xeb,
            0x3a, 0x3e, 0x72, 0xe4, 0x3c, 0x88, 0x00, 0x75, 0x9c,
        ];
        let t0 = 1_700_000_000_000i64;
        let want = [
            (t0, 1.0f64),
            (t0 + 15_000, 1.5),
            (t0 + 30_001, 1.5),
            (t0 + 45_000, f64::NAN),
            (t0 + 60_000, 7.25),
            (t0 + 75_000, -0.0),
            (t0 + 90_000, 1e300),
            (t0 + 105_000, 42.0),
        ];
        reads_as_before(old, &want);
    }

    /// Chunk bytes of an older format decode to `want`, bit for bit; written today, the same
    /// samples carry both header bits and round-trip.
    fn reads_as_before(old: &[u8], want: &[(i64, f64)]) {
        assert_eq!(sample_count(old), want.len());
        let mut it = XorIter::new(old);
        let got: Vec<(i64, u64)> = it.by_ref().map(|(t, v)| (t, v.to_bits())).collect();
        assert!(!it.corrupt());
        let want_bits: Vec<(i64, u64)> = want.iter().map(|(t, v)| (*t, v.to_bits())).collect();
        assert_eq!(got, want_bits);
        let new = XorChunk::encode(want.iter().copied());
        assert_eq!(new[0] & 0xc0, 0xc0, "written today with both bits");
        round_trip(want);
    }

    #[test]
    fn chunks_written_before_predicted_deltas_read_as_before() {
        // Bytes of `XorChunk::encode` at 00dc377 (decimal bit, no prediction bit).
        let old: &[u8] = &[
            0x80, 0x10, 0x80, 0xa0, 0xab, 0xfe, 0xf9, 0x62, 0x40, 0x24, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0xc9, 0xc4, 0xd0, 0x14, 0xef, 0xd4, 0x05, 0x58, 0x15, 0x01, 0x4e, 0xfc,
            0x81, 0x50, 0x15, 0x6f, 0xd6, 0x02, 0x5a, 0x78, 0x15, 0xc0, 0x00, 0x00, 0x00, 0x1d,
            0xcd, 0x5b, 0x3b, 0xef, 0xdc, 0xec, 0xf9, 0x33, 0x59, 0x60, 0x58, 0x01, 0x00, 0x01,
            0x7e, 0xa4, 0xf0, 0x40, 0xb8, 0x7e, 0x80, 0x83, 0x33, 0x33, 0x33, 0x33, 0x33, 0x36,
            0xfd, 0x9f, 0xf8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x81, 0x58, 0x88, 0xb6, 0x6f,
            0xdc, 0x0c, 0x40, 0x70, 0x0b, 0xc0, 0xa9, 0x19, 0x20,
        ];
        let t0 = 1_700_000_000_000i64;
        let vals = [
            10.0f64,
            52.0,
            95.0,
            137.0,
            137.0,
            180.0,
            5000.0,
            1e9,
            12.5,
            12.75,
            0.1,
            f64::NAN,
            3.0,
            70000.0,
            -4.25,
            7.0,
        ];
        let want: Vec<(i64, f64)> = vals
            .iter()
            .enumerate()
            .map(|(i, &v)| (t0 + i as i64 * 5000 + (i as i64 % 2), v))
            .collect();
        reads_as_before(old, &want);
    }

    #[test]
    fn steady_counters_store_deltas_of_deltas() {
        // A counter growing by 40 ± 3 a scrape: its deltas need 13-bit buckets, their
        // differences 6-bit ones.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut v = 1000.0;
        let samples: Vec<(i64, f64)> = (0..120i64)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v += 37.0 + (x % 7) as f64;
                (1_700_000_000_000 + i * 5000, v)
            })
            .collect();
        let c = chunk_of(&samples);
        // 1 timestamp bit + 2 + 7 value bits a sample, ~10 bits; plain deltas took ~18.
        assert!(
            c.bytes().len() < 120 * 11 / 8 + 20,
            "{} bytes",
            c.bytes().len()
        );
        round_trip(&samples);
        // A level that changes rarely, then a gauge jumping around: no worse than deltas.
        let mut g = Vec::new();
        for i in 0..120i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let val = if i < 60 {
                (i / 20) as f64
            } else {
                (x % 1000) as f64 / 10.0
            };
            g.push((i * 1000, val));
        }
        round_trip(&g);
    }

    #[test]
    fn decimals_take_the_scaled_path_and_round_trip() {
        assert_eq!(decimal_scale(3.0), 0);
        assert_eq!(decimal_scale(0.1), 1);
        assert_eq!(decimal_scale(-12.345), 3);
        assert_eq!(decimal_scale(0.12345), NO_SCALE);
        assert_eq!(decimal_scale(f64::NAN), NO_SCALE);
        assert_eq!(decimal_scale(1e300), NO_SCALE);
        // -0.0 has no scaled integer (0 would decode as +0.0).
        assert_eq!(decimal_scale(-0.0), NO_SCALE);
        // A noisy three-digit gauge: ~3 bytes a sample instead of XOR's ~6.
        let mut samples = Vec::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in 0..120i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = (((50.0 + (x % 10_000) as f64 / 100.0) * 1000.0).round()) / 1000.0;
            samples.push((1_700_000_000_000 + i * 5000, v));
        }
        let c = chunk_of(&samples);
        assert!(c.bytes().len() < 120 * 3, "{} bytes", c.bytes().len());
        round_trip(&samples);
        // Scale changes, huge and special values in between.
        round_trip(&[
            (1, 0.5),
            (2, 0.25),
            (3, 0.125),
            (4, 2.0),
            (5, -0.0),
            (6, 0.0),
            (7, 4e15),
            (8, 4.5e15),
            (9, -4.5e15),
            (10, STALE_NAN),
            (11, 1.1),
            (12, 1.2),
            (13, f64::INFINITY),
            (14, 1.3),
            (15, 0.1 + 0.2),
            (16, 9_007_199_254_740_993.0),
        ]);
    }

    #[test]
    fn truncated_bytes_are_reported() {
        let samples: Vec<(i64, f64)> = (0..50).map(|i| (i * 1000, i as f64 * 1.37)).collect();
        let c = chunk_of(&samples);
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
            Just(-0.0),
            (-1000i32..1000).prop_map(f64::from),
            (-100_000i64..100_000, 0u8..=5)
                .prop_map(|(s, k)| s as f64 / POW10[usize::from(k.min(4))]
                    * if k == 5 { 1e-3 } else { 1.0 }),
            (any::<i64>(), 0u8..5).prop_map(|(s, k)| (s >> 10) as f64 / POW10[usize::from(k)]),
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

        #[test]
        fn decimal_walks_round_trip(
            start in -1_000_000_000i64..1_000_000_000,
            k in 0u8..5,
            steps in proptest::collection::vec(prop_oneof![
                8 => -300i64..300,
                1 => any::<i64>().prop_map(|d| d >> 8),
                1 => Just(i64::MIN),
            ], 1..200),
        ) {
            // i64::MIN in a step stands for a non-decimal value in between.
            let m = POW10[usize::from(k)];
            let mut s = start;
            let mut samples = Vec::new();
            for (i, d) in steps.iter().enumerate() {
                let v = if *d == i64::MIN {
                    f64::from_bits(0x3fb9_9999_9999_999a ^ i as u64)
                } else {
                    s = s.wrapping_add(*d);
                    s as f64 / m
                };
                samples.push((i as i64 * 5000, v));
            }
            round_trip(&samples);
        }
    }
}
