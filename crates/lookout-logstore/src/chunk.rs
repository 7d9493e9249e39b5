//! Chunk encoding: a time-sorted run of one stream's entries, stored column by column.
//!
//! Lines that are flat-ish JSON objects are split into a *shape* (the literal text: braces,
//! keys, quotes, separators) and *slots* (each string's contents or number's text). Lines of
//! one shape put their slots in per-(shape, slot) columns, and each column is encoded by what
//! its values turn out to be (integers, decimals, RFC 3339 times, lowercase hex, or strings) and
//! compressed with zstd on its own. Reconstruction concatenates the original byte ranges, so
//! it is exact for every line; lines that are not JSON objects go to a raw column.

use lookout_storage::logs::LogEntry;

use crate::LogStoreError;
use crate::codec::{Reader, put_bytes, put_ivarint, put_uvarint};

const MAGIC: &[u8; 4] = b"LKC1";
/// Distinct shapes per chunk; lines of further shapes are stored raw.
const MAX_SHAPES: usize = 512;
/// Slots per shape; longer objects are stored raw.
const MAX_SLOTS: usize = 64;
/// Columns smaller than this are stored uncompressed.
const MIN_COMPRESS: usize = 48;

/// A line split into literal text and value slots: `lits.len() == slots.len() + 1` and the
/// line is `lits[0] + slots[0] + lits[1] + ... + lits[n]`.
struct Split<'a> {
    lits: Vec<&'a str>,
    slots: Vec<&'a str>,
}

/// Splits a JSON object line into literals and slots; `None` if the line is not an object this
/// encoder handles (the caller stores it raw).
fn split_json(line: &str) -> Option<Split<'_>> {
    let b = line.as_bytes();
    let mut lits = Vec::new();
    let mut slots = Vec::new();
    let mut lit_start = 0usize;
    let mut i = 0usize;
    let ws = |b: &[u8], mut i: usize| {
        while i < b.len() && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        i
    };
    i = ws(b, i);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = ws(b, i);
        match b.get(i)? {
            b'}' => {
                i += 1;
                break;
            }
            b'"' => {}
            _ => return None,
        }
        // key: literal
        i = skip_string(b, i)?;
        i = ws(b, i);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = ws(b, i + 1);
        match *b.get(i)? {
            b'"' => {
                let end = skip_string(b, i)?; // index after closing quote
                lits.push(line.get(lit_start..i + 1)?);
                slots.push(line.get(i + 1..end - 1)?);
                lit_start = end - 1;
                i = end;
            }
            c if c == b'-' || c.is_ascii_digit() => {
                let mut j = i + 1;
                while j < b.len() && matches!(b[j], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    j += 1;
                }
                lits.push(line.get(lit_start..i)?);
                slots.push(line.get(i..j)?);
                lit_start = j;
                i = j;
            }
            b't' | b'f' | b'n' => {
                while i < b.len() && b[i].is_ascii_alphabetic() {
                    i += 1;
                }
            }
            b'{' | b'[' => {
                let end = skip_nested(b, i)?;
                lits.push(line.get(lit_start..i)?);
                slots.push(line.get(i..end)?);
                lit_start = end;
                i = end;
            }
            _ => return None,
        }
        if slots.len() > MAX_SLOTS {
            return None;
        }
        i = ws(b, i);
        match b.get(i)? {
            b',' => i += 1,
            b'}' => {
                i += 1;
                break;
            }
            _ => return None,
        }
    }
    // Trailing text (whitespace, newline) belongs to the last literal.
    let _ = i;
    lits.push(line.get(lit_start..)?);
    Some(Split { lits, slots })
}

/// `b[i]` is a quote; returns the index after the closing quote.
fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// `b[i]` opens an object or array; returns the index after its matching close.
fn skip_nested(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i = skip_string(b, i)?;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// How a column's values are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ColKind {
    Strings = 0,
    /// Canonical decimal integers as zigzag varints: of the difference to the previous value
    /// (param 0) or of the value itself (param 1), whichever is smaller.
    Int = 1,
    /// `-?digits.digits` with a fixed number of fraction digits (param): mantissa deltas.
    /// Only decoded (chunks written before [`ColKind::Num`]).
    Decimal = 2,
    /// `YYYY-MM-DDTHH:MM:SS[.f{n}]Z`, as delta varints of 10^-n seconds.
    Time = 3,
    /// Lowercase hex of one even length, as bytes.
    Hex = 4,
    /// Canonical integers and decimals mixed, each with its own number of fraction digits:
    /// one byte of fraction digits per value (0 = integer), then the mantissas as in `Int`
    /// (param 0 = deltas, 1 = plain).
    Num = 5,
}

fn parse_canonical_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty()
        || digits.len() > 18
        || !digits.bytes().all(|c| c.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
        || s == "-0"
    {
        return None;
    }
    s.parse().ok()
}

/// `(mantissa, fraction digits)` for `-?d+.d+` that formats back identically.
fn parse_decimal(s: &str) -> Option<(i64, u8)> {
    let (int, frac) = s.split_once('.')?;
    if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits = int.strip_prefix('-').unwrap_or(int);
    if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    if !digits.bytes().all(|c| c.is_ascii_digit()) || digits.len() > 9 {
        return None;
    }
    let mut m: i64 = 0;
    for c in digits.bytes().chain(frac.bytes()) {
        m = m * 10 + i64::from(c - b'0');
    }
    let m = if int.starts_with('-') { -m } else { m };
    if int.starts_with('-') && m == 0 {
        return None;
    }
    Some((m, frac.len() as u8))
}

/// An integer (fraction digits 0) or a decimal.
fn parse_num(s: &str) -> Option<(i64, u8)> {
    if s.contains('.') {
        parse_decimal(s)
    } else {
        parse_canonical_int(s).map(|v| (v, 0))
    }
}

fn push_int(out: &mut Vec<u8>, v: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut u = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

fn format_decimal_into(out: &mut Vec<u8>, m: i64, frac: u8) {
    if frac == 0 {
        push_int(out, m);
        return;
    }
    let p = 10u64.pow(u32::from(frac));
    let abs = m.unsigned_abs();
    if m < 0 {
        out.push(b'-');
    }
    push_int(out, (abs / p) as i64);
    out.push(b'.');
    let f = abs % p;
    let mut digits = [b'0'; 9];
    let mut x = f;
    for d in digits[..frac as usize].iter_mut().rev() {
        *d = b'0' + (x % 10) as u8;
        x /= 10;
    }
    out.extend_from_slice(&digits[..frac as usize]);
}

#[cfg(test)]
fn format_decimal(m: i64, frac: u8) -> String {
    let mut s = Vec::new();
    format_decimal_into(&mut s, m, frac);
    String::from_utf8(s).unwrap_or_default()
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `(units of 10^-frac s since the epoch, frac)` for an RFC 3339 UTC time that
/// [`format_time`] reproduces exactly.
fn parse_time(s: &str) -> Option<(i64, u8)> {
    let b = s.as_bytes();
    if b.len() < 20 || *b.last()? != b'Z' || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let frac_txt = s.get(19..s.len() - 1)?;
    let (frac, fv) = if frac_txt.is_empty() {
        (0u8, 0i64)
    } else {
        let f = frac_txt.strip_prefix('.')?;
        if f.is_empty() || f.len() > 9 {
            return None;
        }
        (f.len() as u8, num(20..20 + f.len())?)
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se;
    let units = secs
        .checked_mul(10i64.pow(u32::from(frac)))?
        .checked_add(fv)?;
    let v = (units, frac);
    (format_time(units, frac) == s).then_some(v)
}

/// Formats RFC 3339 times, remembering the text of the last second (runs of lines share it).
#[derive(Default)]
struct TimeFormatter {
    secs: Option<i64>,
    text: String,
}

impl TimeFormatter {
    fn push(&mut self, out: &mut Vec<u8>, units: i64, frac: u8) {
        let p = 10i64.pow(u32::from(frac));
        let secs = units.div_euclid(p);
        if self.secs != Some(secs) {
            let days = secs.div_euclid(86_400);
            let rem = secs.rem_euclid(86_400);
            let (y, m, d) = civil_from_days(days);
            self.text = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
                rem / 3600,
                rem % 3600 / 60,
                rem % 60
            );
            self.secs = Some(secs);
        }
        out.extend_from_slice(self.text.as_bytes());
        if frac > 0 {
            let mut digits = [b'0'; 9];
            let mut x = units.rem_euclid(p);
            for d in digits[..frac as usize].iter_mut().rev() {
                *d = b'0' + (x % 10) as u8;
                x /= 10;
            }
            out.push(b'.');
            out.extend_from_slice(&digits[..frac as usize]);
        }
        out.push(b'Z');
    }
}

fn format_time(units: i64, frac: u8) -> String {
    let mut s = Vec::with_capacity(32);
    TimeFormatter::default().push(&mut s, units, frac);
    String::from_utf8(s).unwrap_or_default()
}

/// RFC 3339 UTC with nine fraction digits.
pub fn format_rfc3339_nanos(ns: i64) -> String {
    format_time(ns, 9)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Zigzag varints of `vs`, as deltas or plain, whichever is shorter; `(plain?, bytes)`.
fn put_ints(vs: &[i64]) -> (bool, Vec<u8>) {
    let mut delta = Vec::with_capacity(vs.len() * 2);
    let mut plain = Vec::with_capacity(vs.len() * 2);
    let mut prev = 0i64;
    for &v in vs {
        put_ivarint(&mut delta, v.wrapping_sub(prev));
        put_ivarint(&mut plain, v);
        prev = v;
    }
    if plain.len() < delta.len() {
        (true, plain)
    } else {
        (false, delta)
    }
}

/// Encodes a column's values with the most specific kind that fits all of them.
fn encode_column(values: &[&str]) -> (ColKind, u8, Vec<u8>) {
    let mut out = Vec::new();
    if let Some(ints) = values
        .iter()
        .map(|v| parse_canonical_int(v))
        .collect::<Option<Vec<_>>>()
    {
        let (plain, data) = put_ints(&ints);
        return (ColKind::Int, u8::from(plain), data);
    }
    if let Some(nums) = values
        .iter()
        .map(|v| parse_num(v))
        .collect::<Option<Vec<_>>>()
    {
        out.extend(nums.iter().map(|n| n.1));
        let ms: Vec<i64> = nums.iter().map(|n| n.0).collect();
        let (plain, data) = put_ints(&ms);
        out.extend_from_slice(&data);
        return (ColKind::Num, u8::from(plain), out);
    }
    if let Some(first) = values.first() {
        if let Some((_, frac)) = parse_time(first)
            && let Some(vs) = values
                .iter()
                .map(|v| parse_time(v).filter(|p| p.1 == frac).map(|p| p.0))
                .collect::<Option<Vec<_>>>()
        {
            let mut prev = 0i64;
            for v in vs {
                put_ivarint(&mut out, v.wrapping_sub(prev));
                prev = v;
            }
            return (ColKind::Time, frac, out);
        }
        let l = first.len();
        if l > 0
            && l % 2 == 0
            && l <= 254
            && values
                .iter()
                .all(|v| v.len() == l && v.bytes().all(|c| hex_val(c).is_some()))
        {
            for v in values {
                for p in v.as_bytes().chunks_exact(2) {
                    out.push((hex_val(p[0]).unwrap_or(0) << 4) | hex_val(p[1]).unwrap_or(0));
                }
            }
            return (ColKind::Hex, (l / 2) as u8, out);
        }
    }
    // Strings: all lengths first, then all bytes (lengths and texts compress better apart).
    for v in values {
        put_uvarint(&mut out, v.len() as u64);
    }
    for v in values {
        out.extend_from_slice(v.as_bytes());
    }
    (ColKind::Strings, 0, out)
}

/// A decoded column: the values' texts back to back, `ends[i]` closing value `i`.
#[derive(Default)]
struct Column {
    text: String,
    ends: Vec<usize>,
    next: usize,
    /// Start of value `next`.
    start: usize,
}

impl Column {
    fn take(&mut self) -> Option<&str> {
        let end = *self.ends.get(self.next)?;
        let start = std::mem::replace(&mut self.start, end);
        self.next += 1;
        self.text.get(start..end)
    }
}

fn get_ints(r: &mut Reader<'_>, n: usize, plain: bool) -> Result<Vec<i64>, LogStoreError> {
    let mut vs = Vec::with_capacity(n.min(r.remaining() + 1));
    let mut prev = 0i64;
    for _ in 0..n {
        let v = r.ivarint()?;
        prev = if plain { v } else { prev.wrapping_add(v) };
        vs.push(prev);
    }
    Ok(vs)
}

fn decode_column(kind: u8, param: u8, data: Vec<u8>, n: usize) -> Result<Column, LogStoreError> {
    let corrupt = |w: &str| LogStoreError::Corrupt(format!("chunk column: {w}"));
    let mut r = Reader::new(&data);
    let mut col = Column {
        text: String::new(),
        ends: Vec::with_capacity(n.min(data.len() + 1)),
        next: 0,
        start: 0,
    };
    // Numbers, times and hex are ASCII, formatted as bytes and checked once at the end.
    let mut text: Vec<u8> = Vec::with_capacity(n.min(1 << 20) * 8);
    match kind {
        k if k == ColKind::Int as u8 => {
            for v in get_ints(&mut r, n, param == 1)? {
                push_int(&mut text, v);
                col.ends.push(text.len());
            }
        }
        k if k == ColKind::Num as u8 => {
            let fracs = r.take(n)?;
            if fracs.iter().any(|&f| f > 9) {
                return Err(corrupt("fraction digits"));
            }
            for (v, &f) in get_ints(&mut r, n, param == 1)?.into_iter().zip(fracs) {
                format_decimal_into(&mut text, v, f);
                col.ends.push(text.len());
            }
        }
        k if k == ColKind::Decimal as u8 || k == ColKind::Time as u8 => {
            if param > 9 {
                return Err(corrupt("fraction digits"));
            }
            let mut tf = TimeFormatter::default();
            for v in get_ints(&mut r, n, false)? {
                if k == ColKind::Time as u8 {
                    tf.push(&mut text, v, param);
                } else {
                    format_decimal_into(&mut text, v, param);
                }
                col.ends.push(text.len());
            }
        }
        k if k == ColKind::Hex as u8 => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for _ in 0..n {
                for &x in r.take(param as usize)? {
                    text.push(HEX[(x >> 4) as usize]);
                    text.push(HEX[(x & 15) as usize]);
                }
                col.ends.push(text.len());
            }
        }
        k if k == ColKind::Strings as u8 => {
            let mut end = 0usize;
            for _ in 0..n {
                end += r.len_prefix()?;
                col.ends.push(end);
            }
            let base = r.position();
            let mut data = data;
            if data.len() - base < end {
                return Err(corrupt("strings beyond the end"));
            }
            data.truncate(base + end);
            let bytes = data.split_off(base);
            col.text = String::from_utf8(bytes).map_err(|_| corrupt("invalid UTF-8"))?;
            if !col.ends.iter().all(|&e| col.text.is_char_boundary(e)) {
                return Err(corrupt("value split inside a character"));
            }
            return Ok(col);
        }
        _ => return Err(corrupt("unknown kind")),
    }
    col.text = String::from_utf8(text).map_err(|_| corrupt("invalid UTF-8"))?;
    Ok(col)
}

fn put_section(out: &mut Vec<u8>, data: &[u8], level: i32) {
    if data.len() >= MIN_COMPRESS
        && let Ok(c) = zstd::bulk::compress(data, level)
        && c.len() < data.len()
    {
        out.push(1);
        put_uvarint(out, data.len() as u64);
        put_bytes(out, &c);
        return;
    }
    out.push(0);
    put_bytes(out, data);
}

fn get_section(r: &mut Reader<'_>) -> Result<Vec<u8>, LogStoreError> {
    match r.u8()? {
        0 => Ok(r.bytes()?.to_vec()),
        1 => {
            let raw_len = r.uvarint()? as usize;
            let c = r.bytes()?;
            // A chunk never holds more than a few hundred MB; refuse absurd sizes.
            if raw_len > (1 << 30) {
                return Err(LogStoreError::Corrupt("section too large".into()));
            }
            let d = zstd::bulk::decompress(c, raw_len)
                .map_err(|e| LogStoreError::Corrupt(format!("zstd: {e}")))?;
            if d.len() != raw_len {
                return Err(LogStoreError::Corrupt("section length mismatch".into()));
            }
            Ok(d)
        }
        _ => Err(LogStoreError::Corrupt("unknown section flag".into())),
    }
}

/// Encodes `entries` (sorted by timestamp) into one chunk.
pub fn encode(entries: &[LogEntry], level: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 16 + 64);
    out.extend_from_slice(MAGIC);
    put_uvarint(&mut out, entries.len() as u64);

    let mut ts = Vec::with_capacity(entries.len() * 3);
    let mut prev = 0i64;
    for e in entries {
        put_ivarint(&mut ts, e.ts_ns.wrapping_sub(prev));
        prev = e.ts_ns;
    }
    put_section(&mut out, &ts, level);

    let mut meta = Vec::new();
    for e in entries {
        put_uvarint(&mut meta, e.structured_metadata.len() as u64);
        for (n, v) in &e.structured_metadata {
            put_bytes(&mut meta, n.as_bytes());
            put_bytes(&mut meta, v.as_bytes());
        }
    }
    put_section(&mut out, &meta, level);

    // Shapes: literal lists, interned.
    let mut shape_ids: rustc_hash::FxHashMap<Vec<&str>, usize> = Default::default();
    let mut shapes: Vec<(Vec<&str>, Vec<Vec<&str>>)> = Vec::new();
    let mut ids = Vec::with_capacity(entries.len());
    let mut raw: Vec<&str> = Vec::new();
    for e in entries {
        let id = split_json(&e.line).and_then(|s| {
            let next = shapes.len();
            let id = match shape_ids.get(&s.lits) {
                Some(&id) => id,
                None if next < MAX_SHAPES => {
                    shape_ids.insert(s.lits.clone(), next);
                    shapes.push((s.lits, vec![Vec::new(); s.slots.len()]));
                    next
                }
                None => return None,
            };
            for (col, v) in shapes[id].1.iter_mut().zip(s.slots) {
                col.push(v);
            }
            Some(id + 1)
        });
        match id {
            Some(id) => put_uvarint(&mut ids, id as u64),
            None => {
                put_uvarint(&mut ids, 0);
                raw.push(&e.line);
            }
        }
    }
    put_section(&mut out, &ids, level);
    put_uvarint(&mut out, shapes.len() as u64);
    for (lits, cols) in &shapes {
        let mut t = Vec::new();
        put_uvarint(&mut t, lits.len() as u64);
        for l in lits {
            put_bytes(&mut t, l.as_bytes());
        }
        put_section(&mut out, &t, level);
        put_uvarint(&mut out, cols.len() as u64);
        put_uvarint(&mut out, cols.first().map_or(0, Vec::len) as u64);
        for col in cols {
            let (kind, param, data) = encode_column(col);
            out.push(kind as u8);
            out.push(param);
            put_section(&mut out, &data, level);
        }
    }
    let mut rawb = Vec::new();
    for l in &raw {
        put_uvarint(&mut rawb, l.len() as u64);
    }
    for l in &raw {
        rawb.extend_from_slice(l.as_bytes());
    }
    put_uvarint(&mut out, raw.len() as u64);
    put_section(&mut out, &rawb, level);
    out
}

/// Decodes a chunk produced by [`encode`].
pub fn decode(buf: &[u8]) -> Result<Vec<LogEntry>, LogStoreError> {
    Ok(decode_filtered(buf, |_, _| true)?.entries)
}

/// A chunk decoded by [`decode_filtered`].
#[derive(Debug, Default)]
pub struct Decoded {
    /// The entries `keep` accepted, in chunk order.
    pub entries: Vec<LogEntry>,
    /// Entries in the chunk.
    pub lines: usize,
    /// Bytes of all the chunk's lines and structured metadata.
    pub bytes: u64,
}

/// Decodes a chunk, materialising only the entries for which `keep(ts_ns, line)` is true (each
/// line is rebuilt in a reused buffer and copied out only when kept).
pub fn decode_filtered(
    buf: &[u8],
    mut keep: impl FnMut(i64, &str) -> bool,
) -> Result<Decoded, LogStoreError> {
    let corrupt = |w: &str| LogStoreError::Corrupt(w.to_string());
    let mut r = Reader::new(buf);
    if r.take(4)? != MAGIC {
        return Err(corrupt("bad chunk magic"));
    }
    let n = r.uvarint()? as usize;
    if n > buf.len().saturating_mul(64) {
        return Err(corrupt("implausible entry count"));
    }
    let ts = get_section(&mut r)?;
    let meta = get_section(&mut r)?;
    let ids = get_section(&mut r)?;
    let mut ir = Reader::new(&ids);
    let mut line_shape = Vec::with_capacity(n);
    let mut rows_per_shape: Vec<usize> = Vec::new();
    for _ in 0..n {
        let sid = ir.uvarint()? as usize;
        if sid > MAX_SHAPES {
            return Err(corrupt("unknown shape"));
        }
        if sid > 0 {
            if rows_per_shape.len() < sid {
                rows_per_shape.resize(sid, 0);
            }
            rows_per_shape[sid - 1] += 1;
        }
        line_shape.push(sid);
    }
    let nshapes = r.uvarint()? as usize;
    if nshapes > MAX_SHAPES {
        return Err(corrupt("too many shapes"));
    }
    // Per shape: its literals and its slot columns.
    let mut shapes: Vec<(Vec<String>, Vec<Column>)> = Vec::with_capacity(nshapes);
    for sid in 0..nshapes {
        let t = get_section(&mut r)?;
        let mut trd = Reader::new(&t);
        let nl = trd.count()?;
        let mut lits = Vec::with_capacity(nl);
        for _ in 0..nl {
            lits.push(trd.str()?.to_string());
        }
        let rows = rows_per_shape.get(sid).copied().unwrap_or(0);
        let nslots = r.uvarint()? as usize;
        if nslots + 1 != lits.len() {
            return Err(corrupt("shape slot count"));
        }
        let stored_rows = r.uvarint()? as usize;
        if nslots > 0 && stored_rows != rows {
            return Err(corrupt("shape row count"));
        }
        let mut cols = Vec::with_capacity(nslots);
        for _ in 0..nslots {
            let kind = r.u8()?;
            let param = r.u8()?;
            let data = get_section(&mut r)?;
            cols.push(decode_column(kind, param, data, rows)?);
        }
        shapes.push((lits, cols));
    }
    if line_shape.iter().any(|&s| s > shapes.len()) {
        return Err(corrupt("unknown shape"));
    }
    let nraw = r.uvarint()? as usize;
    let rawb = get_section(&mut r)?;
    let mut raw = decode_column(ColKind::Strings as u8, 0, rawb, nraw)?;

    let mut tr = Reader::new(&ts);
    let mut mr = Reader::new(&meta);
    let mut out = Decoded {
        entries: Vec::new(),
        lines: n,
        bytes: 0,
    };
    let mut line = String::with_capacity(512);
    let mut prev = 0i64;
    for &sid in &line_shape {
        prev = prev.wrapping_add(tr.ivarint()?);
        let k = mr.count()?;
        let mut md = Vec::new();
        for _ in 0..k {
            let (name, value) = (mr.str()?, mr.str()?);
            out.bytes += (name.len() + value.len()) as u64;
            md.push((name.to_string(), value.to_string()));
        }
        line.clear();
        if sid == 0 {
            line.push_str(raw.take().ok_or_else(|| corrupt("raw column short"))?);
        } else {
            let (lits, cols) = &mut shapes[sid - 1];
            for (i, lit) in lits.iter().enumerate() {
                line.push_str(lit);
                if let Some(col) = cols.get_mut(i) {
                    line.push_str(col.take().ok_or_else(|| corrupt("column short"))?);
                }
            }
        }
        out.bytes += line.len() as u64;
        if keep(prev, &line) {
            out.entries.push(LogEntry {
                ts_ns: prev,
                line: line.clone(),
                structured_metadata: md,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(lines: &[&str]) {
        let entries: Vec<LogEntry> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| LogEntry::new(1_700_000_000_000_000_000 + i as i64 * 7, *l))
            .collect();
        let enc = encode(&entries, 3);
        assert_eq!(decode(&enc).unwrap(), entries);
    }

    #[test]
    fn json_and_raw_lines_round_trip() {
        round_trip(&[
            r#"{"ts":"2024-06-01T12:00:00.123Z","level":"info","status":200,"latency_ms":12.5,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#,
            r#"{"ts":"2024-06-01T12:00:01.001Z","level":"error","status":500,"latency_ms":0.5,"trace_id":"00f92f3577b34da6a3ce929d0e0e4736"}"#,
            r#"{"ts":"2024-06-01T12:00:01.001Z","level":"error","status":-3,"latency_ms":10.0,"trace_id":"00F92F"}"#,
            r#"{ "a" : [1, {"b":"}"}], "n": null, "t": true, "s": "q\"x" }  "#,
            "plain text line",
            "{not json",
            r#"{"x":"y"} trailing"#,
            "",
            "{}",
            r#"{"n":007,"m":-0,"d":01.5,"e":1e5}"#,
        ]);
    }

    #[test]
    fn typed_columns_parse_only_what_formats_back() {
        assert_eq!(parse_canonical_int("007"), None);
        assert_eq!(parse_canonical_int("-12"), Some(-12));
        assert_eq!(parse_decimal("12.50"), Some((1250, 2)));
        assert_eq!(format_decimal(-5, 2), "-0.05");
        assert_eq!(parse_decimal("-0.00"), None);
        let (u, f) = parse_time("2024-02-29T23:59:59.999Z").unwrap();
        assert_eq!(format_time(u, f), "2024-02-29T23:59:59.999Z");
        assert_eq!(parse_time("2024-02-30T00:00:00Z"), None);
        assert_eq!(parse_time("1969-12-31T23:59:59Z").map(|p| p.0), Some(-1));
    }

    #[test]
    fn corrupt_chunks_fail_cleanly() {
        let e = vec![LogEntry::new(1, r#"{"a":"b","c":1}"#); 100];
        let enc = encode(&e, 3);
        for cut in 0..enc.len() {
            assert!(decode(&enc[..cut]).is_err());
        }
        for i in 0..enc.len() {
            let mut b = enc.clone();
            b[i] ^= 0x55;
            let _ = decode(&b);
        }
    }

    proptest! {
        #[test]
        fn any_lines_round_trip(lines in proptest::collection::vec(
            prop_oneof![
                ".*",
                r#"\{"[a-c]":("[a-z0-9\\"]{0,6}"|-?[0-9]{1,4}(\.[0-9]{1,3})?|true|\[1,2\]) ?(,"[d-f]" ?: ?"[0-9a-f]{0,8}")?\}"#,
            ], 0..40),
            md in proptest::collection::vec(("[a-z]{1,3}", ".{0,4}"), 0..3),
        ) {
            let entries: Vec<LogEntry> = lines.iter().enumerate().map(|(i, l)| LogEntry {
                ts_ns: (i as i64) * 1000 - 5,
                line: l.clone(),
                structured_metadata: if i % 3 == 0 { md.clone() } else { vec![] },
            }).collect();
            let enc = encode(&entries, 1);
            prop_assert_eq!(decode(&enc).unwrap(), entries);
        }
    }
}
