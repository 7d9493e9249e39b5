//! Write-ahead log: numbered segment files (`wal/NNNNNNNN`) of framed records, plus
//! checkpoints (`wal/checkpoint.NNNNNNNN`) that replace the segments they cover.
//!
//! Frame: `len u32 | crc32c(payload) u32 | payload` (little endian). Payload: a type byte,
//! then
//! - series (1): repeated `id uvarint, n uvarint, n × (name, value)` with strings as
//!   `len uvarint, bytes`;
//! - samples (2, in-order) and out-of-order samples (3): `count uvarint, base id uvarint,
//!   base t varint`, then per sample `id − base varint, t − base varint, v f64 bits LE`.
//!
//! A commit is encoded into one buffer and written with one `pwrite`, so kill -9 can only
//! leave a torn last frame; fsync runs on a timer (or per commit when configured).
//! `checkpoint.N` holds series records only: it is written once every sample in segments
//! `≤ N` is persisted in head-chunk files, after which those segments are deleted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lookout_storage::{Label, Labels};
use parking_lot::{Mutex, MutexGuard};

pub const REC_SERIES: u8 = 1;
pub const REC_SAMPLES: u8 = 2;
pub const REC_OOO_SAMPLES: u8 = 3;
const FRAME_HEADER: usize = 8;
/// Frames claiming to be larger than this are treated as corruption.
const MAX_FRAME: usize = 1 << 30;

pub fn put_uvarint(buf: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        buf.push((x as u8) | 0x80);
        x >>= 7;
    }
    buf.push(x as u8);
}

pub fn put_varint(buf: &mut Vec<u8>, x: i64) {
    put_uvarint(buf, zigzag(x));
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_uvarint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// Starts a frame in `buf`; returns its start for [`finish_frame`].
pub fn begin_frame(buf: &mut Vec<u8>, kind: u8) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; FRAME_HEADER]);
    buf.push(kind);
    start
}

/// Fills in the length and CRC of the frame started at `start`.
pub fn finish_frame(buf: &mut [u8], start: usize) {
    let payload = &buf[start + FRAME_HEADER..];
    let len = payload.len() as u32;
    let crc = crc32c::crc32c(payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Appends one series entry to an open series frame.
pub fn put_series<'a>(
    buf: &mut Vec<u8>,
    id: u64,
    labels: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) {
    put_uvarint(buf, id);
    put_uvarint(buf, labels.len() as u64);
    for (n, v) in labels {
        put_str(buf, n);
        put_str(buf, v);
    }
}

/// Appends a complete samples frame.
#[cfg(test)]
pub fn put_samples_frame(buf: &mut Vec<u8>, ooo: bool, samples: &[(u64, i64, f64)]) {
    put_samples_frame_from(buf, ooo, samples.len(), samples.iter().copied());
}

/// Appends a complete samples frame of `samples` (nothing when there are none), read
/// straight from the caller's records instead of a copied list; `expected` sizes the buffer.
pub fn put_samples_frame_from(
    buf: &mut Vec<u8>,
    ooo: bool,
    expected: usize,
    mut samples: impl Iterator<Item = (u64, i64, f64)>,
) {
    let Some(first) = samples.next() else {
        return;
    };
    let (base_id, base_t, _) = first;
    let start = begin_frame(buf, if ooo { REC_OOO_SAMPLES } else { REC_SAMPLES });
    buf.reserve(expected * 10 + 32);
    // The count goes first but is known only at the end: room for the longest varint now,
    // the samples moved up to its real length afterwards (the bytes are as if written in
    // order).
    let count_at = buf.len();
    buf.extend_from_slice(&[0u8; MAX_VARINT]);
    put_uvarint(buf, base_id);
    put_varint(buf, base_t);
    let put = |buf: &mut Vec<u8>, (id, t, v): (u64, i64, f64)| {
        let (id, t) = (
            zigzag(id.wrapping_sub(base_id) as i64),
            zigzag(t.wrapping_sub(base_t)),
        );
        if (id | t) < 0x80 {
            // The usual case (neighbouring ids, one timestamp): one byte each.
            buf.extend_from_slice(&[id as u8, t as u8]);
        } else {
            put_uvarint(buf, id);
            put_uvarint(buf, t);
        }
        buf.extend_from_slice(&v.to_bits().to_le_bytes());
    };
    put(buf, first);
    let mut count = 1u64;
    for s in samples {
        put(buf, s);
        count += 1;
    }
    let (head, len) = uvarint_bytes(count);
    buf.copy_within(count_at + MAX_VARINT.., count_at + len);
    buf[count_at..count_at + len].copy_from_slice(&head[..len]);
    buf.truncate(buf.len() - (MAX_VARINT - len));
    finish_frame(buf, start);
}

/// Bytes of the longest `u64` varint.
const MAX_VARINT: usize = 10;

/// `x` as a uvarint in a fixed array, and its length.
fn uvarint_bytes(mut x: u64) -> ([u8; MAX_VARINT], usize) {
    let mut out = [0u8; MAX_VARINT];
    let mut n = 0;
    while x >= 0x80 {
        out[n] = (x as u8) | 0x80;
        x >>= 7;
        n += 1;
    }
    out[n] = x as u8;
    (out, n + 1)
}

fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

struct Dec<'a> {
    b: &'a [u8],
}

impl<'a> Dec<'a> {
    fn uvarint(&mut self) -> Result<u64, String> {
        let mut x = 0u64;
        for (i, &byte) in self.b.iter().enumerate().take(10) {
            x |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.b = &self.b[i + 1..];
                return Ok(x);
            }
        }
        Err("bad varint".into())
    }
    fn varint(&mut self) -> Result<i64, String> {
        let z = self.uvarint()?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.b.len() {
            return Err("record shorter than its contents".into());
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.uvarint()? as usize;
        let b = self.bytes(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| "label is not UTF-8".to_string())
    }
}

/// What a decoded record asks the replayer to do.
pub trait RecordSink {
    fn series(&mut self, id: u64, labels: Labels);
    fn sample(&mut self, ooo: bool, id: u64, t: i64, v: f64);
}

/// Decodes one frame payload into `sink`.
pub fn decode_record(payload: &[u8], sink: &mut impl RecordSink) -> Result<(), String> {
    let (&kind, body) = payload.split_first().ok_or("empty record")?;
    let mut d = Dec { b: body };
    match kind {
        REC_SERIES => {
            while !d.b.is_empty() {
                let id = d.uvarint()?;
                let n = d.uvarint()? as usize;
                if n > d.b.len() {
                    return Err("bad label count".into());
                }
                let mut labels = Vec::with_capacity(n);
                for _ in 0..n {
                    let name = d.string()?;
                    let value = d.string()?;
                    labels.push(Label { name, value });
                }
                sink.series(id, Labels::new(labels));
            }
            Ok(())
        }
        REC_SAMPLES | REC_OOO_SAMPLES => {
            let n = d.uvarint()? as usize;
            let base_id = d.uvarint()?;
            let base_t = d.varint()?;
            for _ in 0..n {
                let id = base_id.wrapping_add(d.varint()? as u64);
                let t = base_t.wrapping_add(d.varint()?);
                let vb = d.bytes(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(vb);
                sink.sample(
                    kind == REC_OOO_SAMPLES,
                    id,
                    t,
                    f64::from_bits(u64::from_le_bytes(a)),
                );
            }
            if d.b.is_empty() {
                Ok(())
            } else {
                Err("trailing bytes in samples record".into())
            }
        }
        k => Err(format!("unknown record type {k}")),
    }
}

/// How far a file's frames were valid.
#[derive(Debug)]
pub struct FrameOutcome {
    pub valid_len: u64,
    pub error: Option<String>,
}

/// Feeds every valid frame payload of `data` to `f`, stopping at the first bad frame (or the
/// first payload `f` rejects).
#[cfg(test)]
pub fn read_frames(data: &[u8], f: impl FnMut(&[u8]) -> Result<(), String>) -> FrameOutcome {
    match read_frames_from(data, f) {
        Ok(o) => o,
        // Reading a slice cannot fail.
        Err(e) => FrameOutcome {
            valid_len: 0,
            error: Some(e.to_string()),
        },
    }
}

/// Reads the file at `path` frame by frame through a small buffer (memory bounded by the
/// largest frame, not the file size) and feeds each valid payload to `f`, as [`read_frames`].
pub fn read_file_frames(
    path: &Path,
    f: impl FnMut(&[u8]) -> Result<(), String>,
) -> io::Result<FrameOutcome> {
    let file = File::open(path)?;
    read_frames_from(io::BufReader::with_capacity(1 << 20, file), f)
}

/// Reads up to `buf.len()` bytes; fewer only at end of input.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Streaming core of [`read_frames`]: one reusable payload buffer, grown only as far as the
/// input really holds bytes (a garbage length in a torn header does not allocate it).
pub fn read_frames_from(
    mut r: impl Read,
    mut f: impl FnMut(&[u8]) -> Result<(), String>,
) -> io::Result<FrameOutcome> {
    let mut off = 0u64;
    let mut payload: Vec<u8> = Vec::new();
    let bad = |off: u64, msg: String| FrameOutcome {
        valid_len: off,
        error: Some(msg),
    };
    loop {
        let mut hdr = [0u8; FRAME_HEADER];
        match read_full(&mut r, &mut hdr)? {
            0 => break,
            FRAME_HEADER => {}
            _ => return Ok(bad(off, format!("torn frame header at offset {off}"))),
        }
        let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
        let crc = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        if len == 0 || len > MAX_FRAME {
            return Ok(bad(
                off,
                format!("invalid frame length {len} at offset {off}"),
            ));
        }
        payload.clear();
        (&mut r).take(len as u64).read_to_end(&mut payload)?;
        if payload.len() < len {
            return Ok(bad(off, format!("torn frame at offset {off}")));
        }
        if crc32c::crc32c(&payload) != crc {
            return Ok(bad(off, format!("CRC mismatch at offset {off}")));
        }
        if let Err(e) = f(&payload) {
            return Ok(bad(off, format!("undecodable record at offset {off}: {e}")));
        }
        off += (FRAME_HEADER + len) as u64;
        // Do not keep one huge commit's buffer for the rest of the replay.
        if payload.capacity() > 16 << 20 {
            payload = Vec::new();
        }
    }
    Ok(FrameOutcome {
        valid_len: off,
        error: None,
    })
}

pub fn segment_path(dir: &Path, seg: u32) -> PathBuf {
    dir.join(format!("{seg:08}"))
}

pub fn checkpoint_path(dir: &Path, seg: u32) -> PathBuf {
    dir.join(format!("checkpoint.{seg:08}"))
}

/// Segment numbers and the newest checkpoint found in a WAL directory.
#[derive(Debug, Default)]
pub struct WalListing {
    pub segments: Vec<u32>,
    pub checkpoints: Vec<u32>,
}

pub fn list(dir: &Path) -> io::Result<WalListing> {
    let mut out = WalListing::default();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name.strip_prefix("checkpoint.") {
            if let Ok(n) = n.parse::<u32>() {
                out.checkpoints.push(n);
            } else if n.ends_with(".tmp") {
                // An interrupted checkpoint write.
                let _ = fs::remove_file(e.path());
            }
        } else if let Ok(n) = name.parse::<u32>() {
            out.segments.push(n);
        }
    }
    out.segments.sort_unstable();
    out.checkpoints.sort_unstable();
    Ok(out)
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `checkpoint.{seg}` atomically (temp file, fsync, rename) with a series record for
/// every `(id, labels)`. Returns its size.
pub fn write_checkpoint<'a>(
    dir: &Path,
    seg: u32,
    series: impl Iterator<Item = (u64, &'a Labels)>,
) -> io::Result<u64> {
    let tmp = dir.join(format!("checkpoint.{seg:08}.tmp"));
    let r = write_checkpoint_to(&tmp, dir, seg, series);
    if r.is_err() {
        // Disk full or similar: leave no partial file behind (the segments stay).
        let _ = fs::remove_file(&tmp);
    }
    r
}

fn write_checkpoint_to<'a>(
    tmp: &Path,
    dir: &Path,
    seg: u32,
    series: impl Iterator<Item = (u64, &'a Labels)>,
) -> io::Result<u64> {
    let final_path = checkpoint_path(dir, seg);
    let mut f = File::create(tmp)?;
    let mut buf = Vec::with_capacity(1 << 20);
    let mut start = begin_frame(&mut buf, REC_SERIES);
    let mut total = 0u64;
    let mut in_frame = 0usize;
    for (id, labels) in series {
        put_series(
            &mut buf,
            id,
            labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
        );
        in_frame += 1;
        if buf.len() >= 1 << 20 {
            finish_frame(&mut buf, start);
            f.write_all(&buf)?;
            total += buf.len() as u64;
            buf.clear();
            start = begin_frame(&mut buf, REC_SERIES);
            in_frame = 0;
        }
    }
    if in_frame > 0 {
        finish_frame(&mut buf, start);
        f.write_all(&buf)?;
        total += buf.len() as u64;
    }
    f.sync_all()?;
    drop(f);
    fs::rename(tmp, &final_path)?;
    sync_dir(dir);
    Ok(total)
}

pub struct WalWriter {
    pub file: Arc<File>,
    pub seg: u32,
    pub seg_len: u64,
    pub first_seg: u32,
}

pub struct Wal {
    dir: PathBuf,
    seg_size: u64,
    inner: Mutex<WalWriter>,
    dirty: AtomicBool,
    size: AtomicU64,
    closed: AtomicBool,
}

impl Wal {
    /// Starts writing a fresh segment `seg`; segments from `first_seg` on exist with
    /// `existing_bytes` in total.
    pub fn create(
        dir: &Path,
        seg_size: u64,
        first_seg: u32,
        seg: u32,
        existing_bytes: u64,
    ) -> io::Result<Wal> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(segment_path(dir, seg))?;
        sync_dir(dir);
        Ok(Wal {
            dir: dir.to_path_buf(),
            seg_size: seg_size.max(4096),
            inner: Mutex::new(WalWriter {
                file: Arc::new(file),
                seg,
                seg_len: 0,
                first_seg: first_seg.min(seg),
            }),
            dirty: AtomicBool::new(false),
            size: AtomicU64::new(existing_bytes),
            closed: AtomicBool::new(false),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, WalWriter> {
        self.inner.lock()
    }

    /// Appends `buf` (whole frames) to the current segment, cutting a new one first when it
    /// would overflow. Returns the segment written to.
    pub fn write(&self, w: &mut WalWriter, buf: &[u8]) -> io::Result<u32> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(io::Error::other("WAL is closed"));
        }
        if w.seg_len > 0 && w.seg_len + buf.len() as u64 > self.seg_size {
            self.cut(w)?;
        }
        if let Err(e) = w.file.write_all_at(buf, w.seg_len) {
            // Drop whatever part of the frame made it, so later frames follow valid ones.
            if w.file.set_len(w.seg_len).is_err() {
                let _ = self.cut(w);
            }
            return Err(e);
        }
        w.seg_len += buf.len() as u64;
        self.size.fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Release);
        Ok(w.seg)
    }

    /// Closes the current segment (fsync) and starts the next.
    pub fn cut(&self, w: &mut WalWriter) -> io::Result<()> {
        w.file.sync_data()?;
        let next = w.seg + 1;
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(segment_path(&self.dir, next))?;
        sync_dir(&self.dir);
        w.file = Arc::new(file);
        w.seg = next;
        w.seg_len = 0;
        Ok(())
    }

    /// fsyncs the current segment if anything was written since the last sync; returns how
    /// long the fsync took. The WAL lock is not held during the fsync.
    pub fn sync(&self) -> io::Result<Option<Duration>> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(None);
        }
        let file = self.inner.lock().file.clone();
        let t0 = Instant::now();
        if let Err(e) = file.sync_data() {
            self.dirty.store(true, Ordering::Release);
            return Err(e);
        }
        Ok(Some(t0.elapsed()))
    }

    /// Deletes segments `≤ upto` (never the current one) and checkpoints older than `upto`.
    pub fn remove_upto(&self, upto: u32) -> io::Result<()> {
        let first = {
            let mut w = self.inner.lock();
            let first = w.first_seg;
            let new_first = upto.saturating_add(1).min(w.seg);
            w.first_seg = w.first_seg.max(new_first);
            (first, new_first)
        };
        for seg in first.0..first.1 {
            let p = segment_path(&self.dir, seg);
            if let Ok(m) = fs::metadata(&p) {
                self.size.fetch_sub(
                    m.len().min(self.size.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
                fs::remove_file(&p)?;
            }
        }
        for cp in list(&self.dir)?.checkpoints {
            if cp < upto {
                fs::remove_file(checkpoint_path(&self.dir, cp))?;
            }
        }
        sync_dir(&self.dir);
        Ok(())
    }

    /// Total bytes of segment files (checkpoints excluded).
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    /// `(first, current)` segment numbers.
    pub fn segments(&self) -> (u32, u32) {
        let w = self.inner.lock();
        (w.first_seg, w.seg)
    }

    /// Final fsync; later writes fail.
    pub fn close(&self) -> io::Result<Option<Duration>> {
        let r = self.sync();
        self.closed.store(true, Ordering::Relaxed);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        series: Vec<(u64, Labels)>,
        samples: Vec<(bool, u64, i64, u64)>,
    }
    impl RecordSink for Collect {
        fn series(&mut self, id: u64, labels: Labels) {
            self.series.push((id, labels));
        }
        fn sample(&mut self, ooo: bool, id: u64, t: i64, v: f64) {
            self.samples.push((ooo, id, t, v.to_bits()));
        }
    }

    #[test]
    fn records_round_trip_and_corruption_is_located() {
        let mut buf = Vec::new();
        let s = begin_frame(&mut buf, REC_SERIES);
        let l = Labels::from_pairs([("__name__", "up"), ("job", "é")]);
        put_series(
            &mut buf,
            5,
            l.iter().map(|l| (l.name.as_str(), l.value.as_str())),
        );
        finish_frame(&mut buf, s);
        put_samples_frame(
            &mut buf,
            false,
            &[(5, 1000, 1.5), (3, -7, f64::NAN), (u64::MAX, i64::MAX, 0.0)],
        );
        let first_two = buf.len();
        put_samples_frame(&mut buf, true, &[(5, 10, 2.0)]);

        let mut c = Collect::default();
        let out = read_frames(&buf, |p| decode_record(p, &mut c));
        assert!(out.error.is_none());
        assert_eq!(out.valid_len, buf.len() as u64);
        assert_eq!(c.series, vec![(5, l)]);
        assert_eq!(c.samples.len(), 4);
        assert_eq!(c.samples[1], (false, 3, -7, f64::NAN.to_bits()));
        assert_eq!(c.samples[2], (false, u64::MAX, i64::MAX, 0));
        assert!(c.samples[3].0);

        // Flip a payload byte of the last frame: everything before it is still valid.
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let out = read_frames(&bad, |p| decode_record(p, &mut Collect::default()));
        assert_eq!(out.valid_len, first_two as u64);
        assert!(out.error.unwrap().contains("CRC"));

        // Chop the last frame in half.
        let cut = &buf[..first_two + (buf.len() - first_two) / 2];
        let out = read_frames(cut, |p| decode_record(p, &mut Collect::default()));
        assert_eq!(out.valid_len, first_two as u64);
    }

    /// Hands out at most 3 bytes per `read`, like a slow file.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = out.len().min(3).min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn streaming_reader_matches_slices_and_bounds_torn_lengths() {
        let mut buf = Vec::new();
        for i in 0..50u64 {
            put_samples_frame(&mut buf, false, &[(i, i as i64 * 10, i as f64)]);
        }
        let whole = buf.len() as u64;
        for cut in [buf.len(), buf.len() - 5, 7, 0] {
            let data = &buf[..cut];
            let mut a = Collect::default();
            let mut b = Collect::default();
            let x = read_frames(data, |p| decode_record(p, &mut a));
            let y = read_frames_from(Trickle(data), |p| decode_record(p, &mut b)).unwrap();
            assert_eq!(x.valid_len, y.valid_len, "cut {cut}");
            assert_eq!(x.error.is_some(), y.error.is_some(), "cut {cut}");
            assert_eq!(a.samples, b.samples);
        }
        // A header claiming a 512 MB payload with 4 bytes behind it is torn, not allocated.
        let mut torn = buf.clone();
        torn.extend_from_slice(&(512u32 << 20).to_le_bytes());
        torn.extend_from_slice(&[0u8; 8]);
        let out = read_frames_from(Trickle(&torn), |_| Ok(())).unwrap();
        assert_eq!(out.valid_len, whole);
        assert!(out.error.unwrap().contains("torn frame"));
        // Files go through the same path.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        fs::write(&path, &torn).unwrap();
        let mut c = Collect::default();
        let out = read_file_frames(&path, |p| decode_record(p, &mut c)).unwrap();
        assert_eq!(out.valid_len, whole);
        assert_eq!(c.samples.len(), 50);
    }

    /// The samples record exactly as the module doc spells it, written the plain way.
    fn reference_frame(ooo: bool, samples: &[(u64, i64, f64)]) -> Vec<u8> {
        let mut p = vec![if ooo { REC_OOO_SAMPLES } else { REC_SAMPLES }];
        let (base_id, base_t, _) = samples[0];
        put_uvarint(&mut p, samples.len() as u64);
        put_uvarint(&mut p, base_id);
        put_varint(&mut p, base_t);
        for &(id, t, v) in samples {
            put_varint(&mut p, id.wrapping_sub(base_id) as i64);
            put_varint(&mut p, t.wrapping_sub(base_t));
            p.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        let mut f = (p.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(&crc32c::crc32c(&p).to_le_bytes());
        f.extend_from_slice(&p);
        f
    }

    #[test]
    fn samples_frame_bytes_are_the_documented_ones() {
        // 200 samples: a two-byte count moved into place; ids and times on both sides of
        // the one-byte deltas.
        let samples: Vec<(u64, i64, f64)> = (0..200u64)
            .map(|i| {
                (
                    1000 + i * (i % 7),
                    1_700_000_000_000 + (i as i64 % 3) * 70,
                    i as f64,
                )
            })
            .collect();
        let mut buf = vec![9u8; 3];
        put_samples_frame_from(&mut buf, false, 10, samples.iter().copied());
        assert_eq!(&buf[..3], &[9, 9, 9]);
        assert_eq!(buf[3..], reference_frame(false, &samples)[..]);
        // No samples, no frame.
        put_samples_frame_from(&mut buf, true, 0, std::iter::empty());
        assert_eq!(buf.len(), 3 + reference_frame(false, &samples).len());
    }

    proptest::proptest! {
        #[test]
        fn samples_frames_match_the_reference_and_decode(
            samples in proptest::collection::vec(
                (proptest::prelude::any::<u64>(), proptest::prelude::any::<i64>(),
                 proptest::prelude::any::<f64>()),
                1..300,
            ),
            near in proptest::prelude::any::<bool>(),
            ooo in proptest::prelude::any::<bool>(),
        ) {
            // `near`: ids and times close together (one-byte deltas), as a scrape has.
            let samples: Vec<(u64, i64, f64)> = if near {
                samples.iter().map(|&(i, t, v)| (i % 300, 5_000 + t % 100, v)).collect()
            } else {
                samples
            };
            let mut buf = Vec::new();
            put_samples_frame_from(&mut buf, ooo, samples.len() / 2, samples.iter().copied());
            proptest::prop_assert_eq!(&buf, &reference_frame(ooo, &samples));
            let mut c = Collect::default();
            let out = read_frames(&buf, |p| decode_record(p, &mut c));
            proptest::prop_assert!(out.error.is_none());
            let want: Vec<_> =
                samples.iter().map(|&(i, t, v)| (ooo, i, t, v.to_bits())).collect();
            proptest::prop_assert_eq!(c.samples, want);
        }
    }
}
