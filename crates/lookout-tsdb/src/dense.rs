//! The columnar chunk encoding used in blocks (denser than the head's XOR chunks).
//!
//! A chunk is a time-sorted run of one series' samples. Raw layout, before compression:
//! `uvarint n`, the timestamp column (`varint t0`, `varint delta1`, then zig-zag varint
//! delta-of-deltas), then the value column. Values that are all decimal numbers with at most
//! 15 fractional digits become integers `m` with `v == m / 10^d` exactly (`d` shared by the
//! chunk); those integers are stored as deltas or delta-of-deltas (whichever is smaller);
//! values that do not fit (NaN, ±inf, -0.0, too many digits) are exceptions stored with their
//! raw bits. When most values are not decimal, the column is XOR-ed raw 64-bit words instead.
//! The raw bytes are then zstd-compressed when that makes them smaller.
//!
//! Stored form: `format u8` (0 plain, 1 zstd), `uvarint raw_len`, payload.

use lookout_storage::Sample;

const MAX_DIGITS: u32 = 15;
const MAX_EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
const MODE_DECIMAL: u8 = 0;
const MODE_XOR: u8 = 1;
const FORMAT_PLAIN: u8 = 0;
const FORMAT_ZSTD: u8 = 1;
/// Refuse to inflate a chunk beyond this (a corrupt length must not exhaust memory).
const MAX_RAW: u64 = 64 << 20;

pub const ZSTD_LEVEL: i32 = 9;

#[derive(Debug, thiserror::Error)]
#[error("corrupt block chunk: {0}")]
pub struct DecodeError(pub &'static str);

pub fn put_uvarint(buf: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        buf.push((x as u8) | 0x80);
        x >>= 7;
    }
    buf.push(x as u8);
}

pub fn put_varint(buf: &mut Vec<u8>, x: i64) {
    put_uvarint(buf, ((x << 1) ^ (x >> 63)) as u64);
}

fn uvarint_len(x: u64) -> usize {
    (64 - (x | 1).leading_zeros() as usize).div_ceil(7)
}

fn zz(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

/// A little cursor over encoded bytes.
pub struct Reader<'a> {
    pub b: &'a [u8],
}

impl<'a> Reader<'a> {
    #[inline]
    pub fn uvarint(&mut self) -> Result<u64, DecodeError> {
        if let Some((&b0, rest)) = self.b.split_first()
            && b0 < 0x80
        {
            self.b = rest;
            return Ok(u64::from(b0));
        }
        let mut x = 0u64;
        for (i, &byte) in self.b.iter().enumerate().take(10) {
            x |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.b = &self.b[i + 1..];
                return Ok(x);
            }
        }
        Err(DecodeError("bad varint"))
    }

    #[inline]
    pub fn varint(&mut self) -> Result<i64, DecodeError> {
        let z = self.uvarint()?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    /// The next eight bytes as a little-endian word, when each of them is a whole one-byte
    /// varint (no continuation bit): the common case of regular timestamps and small
    /// counter increments, decoded eight at a time.
    #[inline]
    fn small8(&self) -> Option<u64> {
        let b: [u8; 8] = self.b.get(..8)?.try_into().ok()?;
        let w = u64::from_le_bytes(b);
        (w & 0x8080_8080_8080_8080 == 0).then_some(w)
    }

    #[inline]
    fn skip8(&mut self) {
        self.b = self.b.get(8..).unwrap_or_default();
    }

    pub fn byte(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.b.split_first().ok_or(DecodeError("truncated"))?;
        self.b = rest;
        Ok(b)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.b.len() {
            return Err(DecodeError("truncated"));
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }

    pub fn u64_le(&mut self) -> Result<u64, DecodeError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

/// The signed value of zig-zag byte `k` (0 = lowest) of a [`Reader::small8`] word.
#[inline(always)]
fn unzz8(word: u64, k: usize) -> i64 {
    let z = (word >> (8 * k)) & 0x7f;
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

fn pow10(d: u32) -> f64 {
    10f64.powi(d as i32)
}

/// The fewest fractional decimal digits that represent `v` exactly, if any (≤ 15).
fn digits(v: f64) -> Option<u32> {
    if !v.is_finite() || (v == 0.0 && v.is_sign_negative()) {
        return None;
    }
    (0..=MAX_DIGITS).find(|&d| to_int(v, d).is_some())
}

fn to_int(v: f64, d: u32) -> Option<i64> {
    let p = pow10(d);
    let m = (v * p).round();
    if m.abs() > MAX_EXACT {
        return None;
    }
    let back = m / p;
    (back.to_bits() == v.to_bits()).then_some(m as i64)
}

/// Encodes time-sorted samples (strictly increasing timestamps) into stored chunk bytes.
pub fn encode(samples: &[Sample], out: &mut Vec<u8>) {
    let mut raw = Vec::with_capacity(samples.len() * 3 + 16);
    put_uvarint(&mut raw, samples.len() as u64);
    let (mut prev_t, mut prev_d) = (0i64, 0i64);
    for (i, s) in samples.iter().enumerate() {
        match i {
            0 => put_varint(&mut raw, s.t),
            1 => {
                prev_d = s.t.wrapping_sub(prev_t);
                put_varint(&mut raw, prev_d);
            }
            _ => {
                let d = s.t.wrapping_sub(prev_t);
                put_varint(&mut raw, d.wrapping_sub(prev_d));
                prev_d = d;
            }
        }
        prev_t = s.t;
    }
    encode_values(samples, &mut raw);
    out.clear();
    if raw.len() > 24
        && let Ok(c) = zstd::bulk::compress(&raw, ZSTD_LEVEL)
        && c.len() + 4 < raw.len()
    {
        out.push(FORMAT_ZSTD);
        put_uvarint(out, raw.len() as u64);
        out.extend_from_slice(&c);
        return;
    }
    out.push(FORMAT_PLAIN);
    put_uvarint(out, raw.len() as u64);
    out.extend_from_slice(&raw);
}

fn encode_values(samples: &[Sample], raw: &mut Vec<u8>) {
    let mut d = 0u32;
    let mut exceptions = 0usize;
    for s in samples {
        match digits(s.v) {
            Some(x) => d = d.max(x),
            None => exceptions += 1,
        }
    }
    // Integers under the shared digit count; values that no longer fit become exceptions.
    let mut ints: Vec<i64> = Vec::with_capacity(samples.len());
    let mut exc: Vec<(usize, u64)> = Vec::new();
    let mut last = 0i64;
    if exceptions * 4 <= samples.len() {
        for (i, s) in samples.iter().enumerate() {
            match digits(s.v).and_then(|_| to_int(s.v, d)) {
                Some(m) => {
                    ints.push(m);
                    last = m;
                }
                None => {
                    exc.push((i, s.v.to_bits()));
                    ints.push(last);
                }
            }
        }
    }
    if ints.len() != samples.len() || exc.len() * 4 > samples.len() {
        raw.push(MODE_XOR);
        let mut prev = 0u64;
        for s in samples {
            let b = s.v.to_bits();
            raw.extend_from_slice(&(b ^ prev).to_le_bytes());
            prev = b;
        }
        return;
    }
    raw.push(MODE_DECIMAL);
    raw.push(d as u8);
    // Delta (1) or delta-of-delta (2), whichever is smaller.
    let (mut size1, mut size2) = (0usize, 0usize);
    let (mut p, mut pd) = (0i64, 0i64);
    for (i, &m) in ints.iter().enumerate() {
        let delta = m.wrapping_sub(p);
        size1 += uvarint_len(zz(delta));
        size2 += uvarint_len(zz(if i == 0 {
            delta
        } else {
            delta.wrapping_sub(pd)
        }));
        p = m;
        pd = delta;
    }
    let order: u8 = if size2 < size1 { 2 } else { 1 };
    raw.push(order);
    put_uvarint(raw, exc.len() as u64);
    let mut pi = 0usize;
    for &(i, bits) in &exc {
        put_uvarint(raw, (i - pi) as u64);
        pi = i;
        raw.extend_from_slice(&bits.to_le_bytes());
    }
    let (mut p, mut pd) = (0i64, 0i64);
    for (i, &m) in ints.iter().enumerate() {
        let delta = m.wrapping_sub(p);
        let x = if order == 2 && i > 0 {
            delta.wrapping_sub(pd)
        } else {
            delta
        };
        put_varint(raw, x);
        p = m;
        pd = delta;
    }
}

/// Appends the samples of a stored chunk that lie in `[start, end]` to `out`; values of
/// samples after `end` are not decoded.
pub fn decode(
    stored: &[u8],
    start: i64,
    end: i64,
    out: &mut Vec<Sample>,
) -> Result<(), DecodeError> {
    let mut r = Reader { b: stored };
    let format = r.byte()?;
    let raw_len = r.uvarint()?;
    if raw_len > MAX_RAW {
        return Err(DecodeError("chunk too large"));
    }
    match format {
        FORMAT_PLAIN => {
            if r.b.len() as u64 != raw_len {
                return Err(DecodeError("length mismatch"));
            }
            decode_raw(r.b, start, end, out)
        }
        FORMAT_ZSTD => ZSTD.with(|cell| {
            let mut state = cell.borrow_mut();
            let (dctx, buf) = &mut *state;
            let d = match dctx {
                Some(d) => d,
                None => dctx.insert(
                    zstd::bulk::Decompressor::new().map_err(|_| DecodeError("zstd context"))?,
                ),
            };
            buf.clear();
            buf.reserve(raw_len as usize);
            let n = d
                .decompress_to_buffer(r.b, buf)
                .map_err(|_| DecodeError("zstd payload"))?;
            if n as u64 != raw_len {
                return Err(DecodeError("length mismatch"));
            }
            let res = decode_raw(buf, start, end, out);
            // Keep one chunk's worth, not the largest ever seen.
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new();
            }
            res
        }),
        _ => Err(DecodeError("unknown format")),
    }
}

thread_local! {
    /// A decompression context and output buffer per thread: creating a zstd context costs
    /// more than decompressing a typical chunk.
    static ZSTD: std::cell::RefCell<(Option<zstd::bulk::Decompressor<'static>>, Vec<u8>)> =
        const { std::cell::RefCell::new((None, Vec::new())) };
}

fn decode_raw(raw: &[u8], start: i64, end: i64, out: &mut Vec<Sample>) -> Result<(), DecodeError> {
    let base = out.len();
    let res = decode_raw_into(raw, start, end, out);
    if res.is_err() {
        out.truncate(base);
    }
    res
}

/// Advances `t` to sample `i` (≥ 1): its varint is the first delta for `i == 1` and a
/// delta-of-delta after that (`d` is the running delta).
#[inline(always)]
fn next_time(r: &mut Reader<'_>, i: usize, t: &mut i64, d: &mut i64) -> Result<(), DecodeError> {
    let x = r.varint()?;
    *d = if i == 1 { x } else { d.wrapping_add(x) };
    *t = t.wrapping_add(*d);
    Ok(())
}

/// Decodes timestamps straight into `out` (values zero), keeping the run `[lo, hi)` of
/// samples in `[start, end]`, then fills in the values of that run.
fn decode_raw_into(
    raw: &[u8],
    start: i64,
    end: i64,
    out: &mut Vec<Sample>,
) -> Result<(), DecodeError> {
    let mut r = Reader { b: raw };
    let n = r.uvarint()? as usize;
    if n > raw.len() {
        return Err(DecodeError("sample count"));
    }
    let base = out.len();
    out.reserve(n);
    // Samples before `lo` are under `start`, samples from `hi` on are past `end`
    // (timestamps are increasing); the rest of the column is still read to reach the values.
    // `t` is the time of sample `i`; the first varint is t0, the second the first delta, the
    // others delta-of-deltas.
    let (mut lo, mut hi) = (n, n);
    if n > 0 {
        let mut t = r.varint()?;
        let mut d = 0i64;
        let mut i = 0usize;
        while t < start {
            i += 1;
            if i == n {
                break;
            }
            next_time(&mut r, i, &mut t, &mut d)?;
        }
        if i < n {
            lo = i;
            loop {
                if t > end {
                    hi = i;
                    break;
                }
                out.push(Sample { t, v: 0.0 });
                // Samples i+1..=i+8 at once while their delta-of-deltas are one byte each
                // and the last of them is still in range.
                while i >= 1
                    && n - 1 - i >= 8
                    && let Some(word) = r.small8()
                {
                    let (mut tt, mut dd) = (t, d);
                    let mut ts = [0i64; 8];
                    for (k, slot) in ts.iter_mut().enumerate() {
                        dd = dd.wrapping_add(unzz8(word, k));
                        tt = tt.wrapping_add(dd);
                        *slot = tt;
                    }
                    if tt > end {
                        break;
                    }
                    out.extend(ts.iter().map(|&t| Sample { t, v: 0.0 }));
                    r.skip8();
                    (t, d) = (tt, dd);
                    i += 8;
                }
                i += 1;
                if i == n {
                    break;
                }
                next_time(&mut r, i, &mut t, &mut d)?;
            }
            for _ in i + 1..n {
                r.varint()?;
            }
        }
    }
    if out.len() == base {
        return Ok(());
    }
    let lo = lo.min(hi);
    // Values of samples [lo, hi) land at out[base + i - lo].
    let dst = &mut out[base..];
    match r.byte()? {
        MODE_XOR => {
            let mut prev = 0u64;
            for i in 0..hi {
                prev ^= r.u64_le()?;
                if i >= lo {
                    dst[i - lo].v = f64::from_bits(prev);
                }
            }
        }
        MODE_DECIMAL => {
            let d = u32::from(r.byte()?);
            if d > MAX_DIGITS {
                return Err(DecodeError("digits"));
            }
            let p = pow10(d);
            let order = r.byte()?;
            let nexc = r.uvarint()? as usize;
            if nexc > n {
                return Err(DecodeError("exception count"));
            }
            let mut exc = Vec::with_capacity(nexc);
            let mut pi = 0usize;
            for _ in 0..nexc {
                pi = pi.saturating_add(r.uvarint()? as usize);
                exc.push((pi, r.u64_le()?));
            }
            // The integers m_i: deltas (order 1) or a first delta then delta-of-deltas
            // (order 2). Samples before `lo` are decoded but not stored.
            let dod = order == 2;
            let (mut m, mut delta) = (0i64, 0i64);
            let mut advance = |i: usize, x: i64| -> i64 {
                delta = if dod && i > 0 {
                    delta.wrapping_add(x)
                } else {
                    x
                };
                m = m.wrapping_add(delta);
                m
            };
            for i in 0..lo {
                advance(i, r.varint()?);
            }
            // m / 1.0 is m: no division per sample for integer-valued chunks.
            let scale = |m: i64| if d == 0 { m as f64 } else { m as f64 / p };
            let mut i = lo;
            while i < hi {
                if hi - i >= 8
                    && let Some(word) = r.small8()
                {
                    for (k, s) in dst[i - lo..i - lo + 8].iter_mut().enumerate() {
                        s.v = scale(advance(i + k, unzz8(word, k)));
                    }
                    r.skip8();
                    i += 8;
                } else {
                    dst[i - lo].v = scale(advance(i, r.varint()?));
                    i += 1;
                }
            }
            // Exceptions (NaN, ±Inf, -0, too many digits) overwrite their slots.
            for &(ei, bits) in &exc {
                if ei >= lo && ei < hi {
                    dst[ei - lo].v = f64::from_bits(bits);
                }
            }
        }
        _ => return Err(DecodeError("value mode")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(samples: &[Sample]) -> Vec<u8> {
        let mut enc = Vec::new();
        encode(samples, &mut enc);
        let mut got = Vec::new();
        decode(&enc, i64::MIN, i64::MAX, &mut got).unwrap();
        assert_eq!(got.len(), samples.len());
        for (a, b) in got.iter().zip(samples) {
            assert_eq!(a.t, b.t);
            assert_eq!(a.v.to_bits(), b.v.to_bits(), "{} vs {}", a.v, b.v);
        }
        enc
    }

    #[test]
    fn counters_compress_well() {
        let mut v = 0.0;
        let samples: Vec<Sample> = (0..1440)
            .map(|i| {
                v += ((i * 7919) % 13) as f64;
                Sample {
                    t: 1_700_000_000_000 + i * 15_000,
                    v,
                }
            })
            .collect();
        let enc = roundtrip(&samples);
        assert!(enc.len() < samples.len(), "{} bytes", enc.len());
    }

    #[test]
    fn decimals_nan_and_window() {
        let vals = [0.1, 0.25, f64::NAN, 1e-3, -0.0, 3.5, f64::INFINITY, 12.75];
        let samples: Vec<Sample> = vals
            .iter()
            .enumerate()
            .map(|(i, &v)| Sample {
                t: i as i64 * 1000,
                v,
            })
            .collect();
        let enc = roundtrip(&samples);
        let mut got = Vec::new();
        decode(&enc, 2000, 5000, &mut got).unwrap();
        assert_eq!(
            got.iter().map(|s| s.t).collect::<Vec<_>>(),
            vec![2000, 3000, 4000, 5000]
        );
        assert!(got[0].v.is_nan());
        assert_eq!(got[2].v.to_bits(), (-0.0f64).to_bits());
    }

    #[test]
    fn corrupt_input_errors() {
        let samples: Vec<Sample> = (0..100)
            .map(|i| Sample {
                t: i,
                v: i as f64 / 3.0,
            })
            .collect();
        let mut enc = Vec::new();
        encode(&samples, &mut enc);
        for cut in 0..enc.len() {
            let mut out = Vec::new();
            let _ = decode(&enc[..cut], i64::MIN, i64::MAX, &mut out);
        }
        let mut out = Vec::new();
        assert!(decode(&[7, 0], 0, 1, &mut out).is_err());
    }

    proptest! {
        // Decoding a window [start, end] keeps exactly the samples a full decode has there,
        // on data that takes the eight-at-a-time paths (regular times, small increments)
        // mixed with jitter, big jumps, decimals and NaN.
        #[test]
        fn window_decode_equals_filtered_full_decode(
            t0 in 0i64..1_000_000_000,
            steps in proptest::collection::vec(prop_oneof![
                8 => Just(15_000i64),
                2 => 14_990i64..15_010,
                1 => 1i64..10_000_000,
            ], 1..400),
            incs in proptest::collection::vec(prop_oneof![
                8 => (0i64..40).prop_map(|x| x as f64),
                1 => (0i64..100_000).prop_map(|x| x as f64 / 100.0),
                1 => (-5_000_000i64..5_000_000).prop_map(|x| x as f64),
                1 => Just(f64::NAN),
            ], 400),
            cut in (0.0f64..1.0, 0.0f64..1.0),
        ) {
            let mut t = t0;
            let mut v = 0.0f64;
            let samples: Vec<Sample> = steps.iter().zip(&incs).map(|(&st, &inc)| {
                t += st;
                v = if inc.is_nan() || v.is_nan() { inc } else { v + inc };
                Sample { t, v }
            }).collect();
            let mut enc = Vec::new();
            encode(&samples, &mut enc);
            let mut full = Vec::new();
            decode(&enc, i64::MIN, i64::MAX, &mut full).unwrap();
            prop_assert_eq!(full.len(), samples.len());
            for (a, b) in full.iter().zip(&samples) {
                prop_assert_eq!(a.t, b.t);
                prop_assert_eq!(a.v.to_bits(), b.v.to_bits());
            }
            let span = (t - t0) as f64;
            let (a, b) = (t0 + (span * cut.0.min(cut.1)) as i64, t0 + (span * cut.0.max(cut.1)) as i64);
            let mut got = vec![Sample { t: -1, v: 7.0 }];
            decode(&enc, a, b, &mut got).unwrap();
            let want: Vec<(i64, u64)> = std::iter::once((-1, 7.0f64.to_bits()))
                .chain(full.iter().filter(|s| s.t >= a && s.t <= b).map(|s| (s.t, s.v.to_bits())))
                .collect();
            let got: Vec<(i64, u64)> = got.iter().map(|s| (s.t, s.v.to_bits())).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn any_samples_roundtrip(
            start in any::<i64>(),
            steps in proptest::collection::vec(1i64..100_000, 0..300),
            vals in proptest::collection::vec(prop_oneof![
                any::<f64>(),
                (-1_000_000i64..1_000_000).prop_map(|x| x as f64),
                (-100_000i64..100_000).prop_map(|x| x as f64 / 1000.0),
            ], 300),
        ) {
            let mut t = start;
            let samples: Vec<Sample> = steps.iter().zip(&vals).map(|(&s, &v)| {
                t = t.wrapping_add(s);
                Sample { t, v }
            }).collect();
            // Wrapping timestamps are not sorted; encoding still reproduces them exactly.
            let mut enc = Vec::new();
            encode(&samples, &mut enc);
            let mut got = Vec::new();
            decode(&enc, i64::MIN, i64::MAX, &mut got).unwrap();
            if samples.windows(2).all(|w| w[0].t < w[1].t) {
                prop_assert_eq!(got.len(), samples.len());
                for (a, b) in got.iter().zip(&samples) {
                    prop_assert_eq!(a.t, b.t);
                    prop_assert_eq!(a.v.to_bits(), b.v.to_bits());
                }
            }
        }
    }
}
