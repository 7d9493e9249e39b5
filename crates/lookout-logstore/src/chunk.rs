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
    /// Canonical decimal integers, zigzag varints of the difference to the previous value.
    Int = 1,
    /// `-?digits.digits` with a fixed number of fraction digits: mantissa as in `Int`.
    Decimal = 2,
    /// `YYYY-MM-DDTHH:MM:SS[.f{n}]Z`, as delta varints of 10^-n seconds.
    Time = 3,
    /// Lowercase hex of one even length, as bytes.
    Hex = 4,
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
    let m: i64 = format!("{digits}{frac}").parse().ok()?;
    let m = if int.starts_with('-') { -m } else { m };
    if int.starts_with('-') && m == 0 {
        return None;
    }
    Some((m, frac.len() as u8))
}

fn format_decimal(m: i64, frac: u8) -> String {
    let neg = m < 0;
    let abs = m.unsigned_abs().to_string();
    let f = frac as usize;
    let padded = if abs.len() <= f {
        format!("{}{abs}", "0".repeat(f + 1 - abs.len()))
    } else {
        abs
    };
    let (i, fr) = padded.split_at(padded.len() - f);
    format!("{}{i}.{fr}", if neg { "-" } else { "" })
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
    let frac_txt = &s[19..s.len() - 1];
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

fn format_time(units: i64, frac: u8) -> String {
    let p = 10i64.pow(u32::from(frac));
    let secs = units.div_euclid(p);
    let f = units.rem_euclid(p);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if frac > 0 {
        out.push_str(&format!(".{f:0width$}", width = frac as usize));
    }
    out.push('Z');
    out
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

/// Encodes a column's values with the most specific kind that fits all of them.
fn encode_column(values: &[&str]) -> (ColKind, u8, Vec<u8>) {
    let mut out = Vec::new();
    if let Some(ints) = values
        .iter()
        .map(|v| parse_canonical_int(v))
        .collect::<Option<Vec<_>>>()
    {
        let mut prev = 0i64;
        for v in ints {
            put_ivarint(&mut out, v.wrapping_sub(prev));
            prev = v;
        }
        return (ColKind::Int, 0, out);
    }
    if let Some(first) = values.first() {
        let check = |f: fn(&str) -> Option<(i64, u8)>| -> Option<(u8, Vec<i64>)> {
            let (_, frac) = f(first)?;
            let vs = values
                .iter()
                .map(|v| f(v).filter(|p| p.1 == frac).map(|p| p.0))
                .collect::<Option<Vec<_>>>()?;
            Some((frac, vs))
        };
        for (kind, f) in [
            (ColKind::Time, parse_time as fn(&str) -> Option<(i64, u8)>),
            (ColKind::Decimal, parse_decimal),
        ] {
            if let Some((frac, vs)) = check(f) {
                let mut prev = 0i64;
                for v in vs {
                    put_ivarint(&mut out, v.wrapping_sub(prev));
                    prev = v;
                }
                return (kind, frac, out);
            }
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

fn decode_column(kind: u8, param: u8, data: &[u8], n: usize) -> Result<Vec<String>, LogStoreError> {
    let mut r = Reader::new(data);
    let mut out = Vec::with_capacity(n.min(data.len() + 1));
    let corrupt = |w: &str| LogStoreError::Corrupt(format!("chunk column: {w}"));
    match kind {
        k if k == ColKind::Int as u8 => {
            let mut prev = 0i64;
            for _ in 0..n {
                prev = prev.wrapping_add(r.ivarint()?);
                out.push(prev.to_string());
            }
        }
        k if k == ColKind::Decimal as u8 || k == ColKind::Time as u8 => {
            if param > 9 {
                return Err(corrupt("fraction digits"));
            }
            let mut prev = 0i64;
            for _ in 0..n {
                prev = prev.wrapping_add(r.ivarint()?);
                out.push(if k == ColKind::Time as u8 {
                    format_time(prev, param)
                } else {
                    format_decimal(prev, param)
                });
            }
        }
        k if k == ColKind::Hex as u8 => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for _ in 0..n {
                let b = r.take(param as usize)?;
                let mut s = String::with_capacity(b.len() * 2);
                for &x in b {
                    s.push(HEX[(x >> 4) as usize] as char);
                    s.push(HEX[(x & 15) as usize] as char);
                }
                out.push(s);
            }
        }
        k if k == ColKind::Strings as u8 => {
            let mut lens = Vec::with_capacity(n.min(data.len() + 1));
            for _ in 0..n {
                lens.push(r.len_prefix()?);
            }
            for l in lens {
                let b = r.take(l)?;
                out.push(
                    std::str::from_utf8(b)
                        .map_err(|_| corrupt("invalid UTF-8"))?
                        .to_string(),
                );
            }
        }
        _ => return Err(corrupt("unknown kind")),
    }
    Ok(out)
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
    let mut r = Reader::new(buf);
    if r.take(4)? != MAGIC {
        return Err(LogStoreError::Corrupt("bad chunk magic".into()));
    }
    let n = r.uvarint()? as usize;
    if n > buf.len().saturating_mul(64) {
        return Err(LogStoreError::Corrupt("implausible entry count".into()));
    }
    let ts = get_section(&mut r)?;
    let meta = get_section(&mut r)?;
    let ids = get_section(&mut r)?;
    let mut tr = Reader::new(&ts);
    let mut mr = Reader::new(&meta);
    let mut ir = Reader::new(&ids);
    let mut entries = Vec::with_capacity(n);
    let mut line_shape = Vec::with_capacity(n);
    let mut prev = 0i64;
    for _ in 0..n {
        prev = prev.wrapping_add(tr.ivarint()?);
        let k = mr.count()?;
        let mut md = Vec::with_capacity(k);
        for _ in 0..k {
            md.push((mr.str()?.to_string(), mr.str()?.to_string()));
        }
        line_shape.push(ir.uvarint()? as usize);
        entries.push(LogEntry {
            ts_ns: prev,
            line: String::new(),
            structured_metadata: md,
        });
    }
    let nshapes = r.uvarint()? as usize;
    if nshapes > MAX_SHAPES {
        return Err(LogStoreError::Corrupt("too many shapes".into()));
    }
    // Per shape: its literals and an iterator over each slot column.
    let mut shapes: Vec<(Vec<String>, Vec<std::vec::IntoIter<String>>)> = Vec::new();
    for sid in 0..nshapes {
        let t = get_section(&mut r)?;
        let mut trd = Reader::new(&t);
        let nl = trd.count()?;
        let mut lits = Vec::with_capacity(nl);
        for _ in 0..nl {
            lits.push(trd.str()?.to_string());
        }
        let rows = line_shape.iter().filter(|&&s| s == sid + 1).count();
        let nslots = r.uvarint()? as usize;
        if nslots + 1 != lits.len() {
            return Err(LogStoreError::Corrupt("shape slot count".into()));
        }
        let stored_rows = r.uvarint()? as usize;
        if nslots > 0 && stored_rows != rows {
            return Err(LogStoreError::Corrupt("shape row count".into()));
        }
        let mut cols = Vec::with_capacity(nslots);
        for _ in 0..nslots {
            let kind = r.u8()?;
            let param = r.u8()?;
            let data = get_section(&mut r)?;
            cols.push(decode_column(kind, param, &data, rows)?.into_iter());
        }
        shapes.push((lits, cols));
    }
    let nraw = r.uvarint()? as usize;
    let rawb = get_section(&mut r)?;
    let mut raw = decode_column(ColKind::Strings as u8, 0, &rawb, nraw)?.into_iter();
    for (e, &sid) in entries.iter_mut().zip(&line_shape) {
        if sid == 0 {
            e.line = raw
                .next()
                .ok_or_else(|| LogStoreError::Corrupt("raw column short".into()))?;
            continue;
        }
        let (lits, cols) = shapes
            .get_mut(sid - 1)
            .ok_or_else(|| LogStoreError::Corrupt("unknown shape".into()))?;
        let mut line = String::with_capacity(256);
        for (i, lit) in lits.iter().enumerate() {
            line.push_str(lit);
            if let Some(col) = cols.get_mut(i) {
                let v = col
                    .next()
                    .ok_or_else(|| LogStoreError::Corrupt("column short".into()))?;
                line.push_str(&v);
            }
        }
        e.line = line;
    }
    Ok(entries)
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
