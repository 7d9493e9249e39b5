//! Append-only head-chunk files (`chunks_head/NNNNNN`): full chunks leave the heap here and
//! are read back through a read-only memory map.
//!
//! A file starts with an 8-byte header (`LKHC`, version, padding). Each record is
//! `series u64 | min_t i64 | max_t i64 | kind u8 | len u32 | data | crc32c u32` (little
//! endian; the CRC covers everything before it). A chunk reference is `file << 32 | offset`.
//! The active file is sized up front (sparse) and mapped once. Records are gathered in a
//! small buffer and written with one `pwrite` per [`FLUSH_BYTES`] (a series cuts a chunk
//! every few minutes, so 80 000 series cut ~130 a second: one system call each was ~4 % of
//! the scrape race's CPU); a chunk still in the buffer is read from there. Only the written
//! prefix is ever read through the map, so a kill -9 leaves at most a torn last record, which
//! the scan on open cuts off; chunks lost with the buffer are still in the WAL, which is only
//! truncated after [`ChunkFiles::sync`] wrote and synced them.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;

const MAGIC: &[u8; 4] = b"LKHC";
const VERSION: u8 = 1;
pub const FILE_HEADER: u64 = 8;
const REC_HEADER: usize = 8 + 8 + 8 + 1 + 4;
const REC_TRAILER: usize = 4;
/// Buffered records are written once they reach this size.
const FLUSH_BYTES: usize = 64 << 10;
/// While writes fail (disk full), records are held in memory up to this size; past it new
/// chunks are refused (their series keep them in the head).
const MAX_PENDING: usize = 1 << 20;

/// What a chunk holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkKind {
    /// An in-order XOR chunk.
    InOrder = 1,
    /// An XOR chunk of out-of-order samples (may overlap others).
    OutOfOrder = 2,
}

impl ChunkKind {
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(ChunkKind::InOrder),
            2 => Some(ChunkKind::OutOfOrder),
            _ => None,
        }
    }
}

/// A chunk found while scanning files on open.
#[derive(Clone, Copy, Debug)]
pub struct ScannedChunk {
    pub series: u64,
    pub r: u64,
    pub min_t: i64,
    pub max_t: i64,
    pub kind: ChunkKind,
}

pub struct ChunkFile {
    pub index: u32,
    map: MmapRaw,
    /// Bytes written and readable.
    published: AtomicU64,
    max_t: AtomicI64,
}

impl ChunkFile {
    /// The data of the chunk record at `offset`, if it lies in the published prefix.
    pub fn chunk_data(&self, offset: u32) -> Option<&[u8]> {
        let published = self.published.load(Ordering::Acquire) as usize;
        let off = offset as usize;
        let hdr = self.slice(off, REC_HEADER, published)?;
        let len = u32::from_le_bytes([hdr[25], hdr[26], hdr[27], hdr[28]]) as usize;
        self.slice(off + REC_HEADER, len, published)
    }

    fn slice(&self, off: usize, len: usize, published: usize) -> Option<&[u8]> {
        let end = off.checked_add(len)?;
        if end > published || end > self.map.len() {
            return None;
        }
        // SAFETY: `[off, end)` lies inside the mapping and inside the published prefix, which
        // is never written again (writes only go past `published`, and files are only
        // truncated to their published length), so no mutation aliases this slice.
        Some(unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(off), len) })
    }

    pub fn len(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    pub fn max_t(&self) -> i64 {
        self.max_t.load(Ordering::Relaxed)
    }
}

struct Writer {
    file: File,
    cur: Arc<ChunkFile>,
    /// Offset of the next record.
    off: u64,
    /// Records not yet written: the file is written (and published) up to `off - buf.len()`.
    buf: Vec<u8>,
}

impl Writer {
    fn written(&self) -> u64 {
        self.off - self.buf.len() as u64
    }

    /// Writes the buffered records and publishes them; on failure they stay buffered (and
    /// readable) and the next flush writes them again at the same offset.
    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file.write_all_at(&self.buf, self.written())?;
        self.cur.published.store(self.off, Ordering::Release);
        self.buf.clear();
        Ok(())
    }
}

/// Where a chunk's bytes are: in a file's map, or copied out of the write buffer.
pub enum ChunkBytes {
    Mapped(Arc<ChunkFile>, u32),
    Copied(Vec<u8>),
}

pub struct ChunkFiles {
    dir: PathBuf,
    cap: u64,
    files: RwLock<FxHashMap<u32, Arc<ChunkFile>>>,
    writer: Mutex<Option<Writer>>,
    total_bytes: AtomicU64,
}

fn file_path(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("{index:06}"))
}

fn map_read_only(file: &File) -> io::Result<MmapRaw> {
    MmapOptions::new().map_raw_read_only(file)
}

/// Result of opening the chunk directory.
pub struct OpenedChunks {
    pub files: ChunkFiles,
    pub chunks: Vec<ScannedChunk>,
    /// Human-readable notes about torn or corrupt tails that were cut off.
    pub repairs: Vec<String>,
}

/// Whether `file[from..len]` holds only zeros. Holes (the never-written, preallocated end of
/// the file that was active at a crash) are skipped with `SEEK_DATA`/`SEEK_HOLE` instead of
/// being read; data extents are read through a small buffer, never mapped.
fn tail_is_zero(file: &File, from: u64, len: u64) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let mut buf = vec![0u8; 64 << 10];
    let mut off = from;
    while off < len {
        let Ok(signed) = libc::off_t::try_from(off) else {
            break;
        };
        // SAFETY: lseek on an open descriptor has no memory-safety preconditions.
        let data = unsafe { libc::lseek(fd, signed, libc::SEEK_DATA) };
        let (start, end) = if data < 0 {
            match io::Error::last_os_error().raw_os_error() {
                // No data after `off`: the rest is a hole.
                Some(libc::ENXIO) => return Ok(true),
                // SEEK_DATA unsupported here: read everything.
                _ => (off, len),
            }
        } else {
            // SAFETY: as above.
            let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
            let start = data as u64;
            let end = if hole < 0 {
                len
            } else {
                (hole as u64).min(len)
            };
            (start, end)
        };
        let mut pos = start;
        while pos < end {
            let n = buf.len().min((end - pos) as usize);
            let got = file.read_at(&mut buf[..n], pos)?;
            if got == 0 {
                return Ok(true);
            }
            if buf[..got].iter().any(|&b| b != 0) {
                return Ok(false);
            }
            pos += got as u64;
        }
        if end <= off {
            break;
        }
        off = end;
    }
    Ok(true)
}

impl ChunkFiles {
    /// Opens `dir`, scanning every file (cutting torn tails), and starts a new file for writes.
    pub fn open(dir: &Path, cap: u64) -> io::Result<OpenedChunks> {
        fs::create_dir_all(dir)?;
        let mut indices: Vec<u32> = Vec::new();
        for e in fs::read_dir(dir)? {
            let e = e?;
            if let Some(n) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                indices.push(n);
            }
        }
        indices.sort_unstable();
        let mut files = FxHashMap::default();
        let mut chunks = Vec::new();
        let mut repairs = Vec::new();
        let mut total = 0u64;
        for &index in &indices {
            let path = file_path(dir, index);
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let file_len = file.metadata()?.len();
            let (valid, max_t, zero_tail) = if file_len < FILE_HEADER {
                (0, i64::MIN, false)
            } else {
                let map = map_read_only(&file)?;
                // SAFETY: the file is not written while we scan it (it is not the active file).
                let bytes = unsafe { std::slice::from_raw_parts(map.as_ptr(), map.len()) };
                let (valid, max_t) = scan(bytes, index, &mut chunks);
                drop(map);
                let zero_tail = valid <= file_len && tail_is_zero(&file, valid, file_len)?;
                (valid, max_t, zero_tail)
            };
            if valid < file_len && zero_tail && valid > FILE_HEADER {
                // The preallocated, never-written end of a file that was active at a crash.
                file.set_len(valid)?;
            } else if valid < file_len {
                if valid <= FILE_HEADER {
                    repairs.push(format!(
                        "chunk file {} has no valid chunks; removed",
                        path.display()
                    ));
                    drop(file);
                    fs::remove_file(&path)?;
                    continue;
                }
                repairs.push(format!(
                    "chunk file {}: corrupt or torn data at offset {valid} of {file_len}; truncated",
                    path.display()
                ));
                file.set_len(valid)?;
            }
            if valid <= FILE_HEADER {
                drop(file);
                fs::remove_file(&path)?;
                continue;
            }
            let map = map_read_only(&file)?;
            total += valid;
            files.insert(
                index,
                Arc::new(ChunkFile {
                    index,
                    map,
                    published: AtomicU64::new(valid),
                    max_t: AtomicI64::new(max_t),
                }),
            );
        }
        let next = indices.last().map_or(1, |n| n + 1);
        let cf = ChunkFiles {
            dir: dir.to_path_buf(),
            cap: cap.max(4096),
            files: RwLock::new(files),
            writer: Mutex::new(None),
            total_bytes: AtomicU64::new(total),
        };
        {
            let mut w = cf.writer.lock();
            *w = Some(cf.new_file(next)?);
        }
        Ok(OpenedChunks {
            files: cf,
            chunks,
            repairs,
        })
    }

    fn new_file(&self, index: u32) -> io::Result<Writer> {
        let path = file_path(&self.dir, index);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let prepared = (|| {
            let mut header = [0u8; FILE_HEADER as usize];
            header[..4].copy_from_slice(MAGIC);
            header[4] = VERSION;
            file.write_all_at(&header, 0)?;
            file.set_len(self.cap)?;
            map_read_only(&file)
        })();
        let map = match prepared {
            Ok(map) => map,
            Err(e) => {
                // Disk full (or similar): remove the half-made file so a later attempt can
                // create it again once there is space.
                drop(file);
                let _ = fs::remove_file(&path);
                return Err(e);
            }
        };
        let cur = Arc::new(ChunkFile {
            index,
            map,
            published: AtomicU64::new(FILE_HEADER),
            max_t: AtomicI64::new(i64::MIN),
        });
        self.files.write().insert(index, cur.clone());
        self.total_bytes.fetch_add(FILE_HEADER, Ordering::Relaxed);
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(Writer {
            file,
            cur,
            off: FILE_HEADER,
            buf: Vec::new(),
        })
    }

    /// Writes one chunk and returns its reference.
    pub fn write_chunk(
        &self,
        series: u64,
        min_t: i64,
        max_t: i64,
        kind: ChunkKind,
        data: &[u8],
    ) -> io::Result<u64> {
        let rec_len = (REC_HEADER + data.len() + REC_TRAILER) as u64;
        let data_len =
            u32::try_from(data.len()).map_err(|_| io::Error::other("chunk too large"))?;
        let mut guard = self.writer.lock();
        let w = match guard.as_mut() {
            Some(w) => w,
            None => return Err(io::Error::other("chunk files are closed")),
        };
        if w.off + rec_len > self.cap && w.off > FILE_HEADER {
            let next = w.cur.index + 1;
            // Finish the full file: shrink it to what was written.
            w.flush()?;
            w.file.sync_data()?;
            w.file.set_len(w.off)?;
            *w = self.new_file(next)?;
        }
        if w.off + rec_len > self.cap || w.off + rec_len > u64::from(u32::MAX) {
            return Err(io::Error::other("chunk larger than a chunk file"));
        }
        if w.buf.len() >= MAX_PENDING {
            // Earlier flushes failed: retry, and refuse the chunk while they still fail.
            w.flush()?;
        }
        if w.buf.capacity() == 0 {
            w.buf.reserve_exact(FLUSH_BYTES + 1024);
        }
        let start = w.buf.len();
        w.buf.extend_from_slice(&series.to_le_bytes());
        w.buf.extend_from_slice(&min_t.to_le_bytes());
        w.buf.extend_from_slice(&max_t.to_le_bytes());
        w.buf.push(kind as u8);
        w.buf.extend_from_slice(&data_len.to_le_bytes());
        w.buf.extend_from_slice(data);
        let crc = crc32c::crc32c(&w.buf[start..]);
        w.buf.extend_from_slice(&crc.to_le_bytes());
        let r = (u64::from(w.cur.index) << 32) | w.off;
        w.off += rec_len;
        w.cur.max_t.fetch_max(max_t, Ordering::Relaxed);
        self.total_bytes.fetch_add(rec_len, Ordering::Relaxed);
        // Written when the buffer reaches FLUSH_BYTES; after a failure, retried (and logged)
        // each time another FLUSH_BYTES have gathered, not at every chunk.
        if w.buf.len() / FLUSH_BYTES > start / FLUSH_BYTES
            && let Err(e) = w.flush()
        {
            // The chunk is buffered and readable; the WAL still holds its samples.
            tracing::warn!(error = %e, buffered = w.buf.len(), "writing head chunks failed; keeping them buffered in memory");
        }
        Ok(r)
    }

    /// Where the bytes of chunk `r` are: mapped when written, else copied from the buffer.
    pub fn read(&self, r: u64) -> Option<ChunkBytes> {
        let (f, off) = self.resolve(r)?;
        if f.chunk_data(off).is_some() {
            return Some(ChunkBytes::Mapped(f, off));
        }
        let g = self.writer.lock();
        if let Some(w) = g.as_ref()
            && w.cur.index == f.index
            && u64::from(off) >= w.written()
        {
            let at = (u64::from(off) - w.written()) as usize;
            let hdr = w.buf.get(at..at.checked_add(REC_HEADER)?)?;
            let len = u32::from_le_bytes([hdr[25], hdr[26], hdr[27], hdr[28]]) as usize;
            let from = at + REC_HEADER;
            return Some(ChunkBytes::Copied(
                w.buf.get(from..from.checked_add(len)?)?.to_vec(),
            ));
        }
        drop(g);
        // Written in the meantime.
        f.chunk_data(off)
            .is_some()
            .then_some(ChunkBytes::Mapped(f, off))
    }

    /// Resolves a chunk reference to its file (kept alive by the `Arc`) and offset.
    pub fn resolve(&self, r: u64) -> Option<(Arc<ChunkFile>, u32)> {
        let f = self.files.read().get(&((r >> 32) as u32))?.clone();
        Some((f, r as u32))
    }

    /// Writes the buffered chunks and flushes the active file to disk.
    pub fn sync(&self) -> io::Result<()> {
        let mut g = self.writer.lock();
        if let Some(w) = g.as_mut() {
            w.flush()?;
            w.file.sync_data()?;
        }
        Ok(())
    }

    /// Writes the buffered chunks, syncs and shrinks the active file; later writes fail.
    /// On failure the file stays open (and its buffered chunks readable).
    pub fn close(&self) -> io::Result<()> {
        let mut g = self.writer.lock();
        if let Some(w) = g.as_mut() {
            w.flush()?;
            w.file.sync_data()?;
            w.file.set_len(w.off)?;
        }
        *g = None;
        Ok(())
    }

    /// Deletes every file except the active one whose newest sample is older than `cutoff`.
    /// Returns the number of files removed.
    pub fn remove_before(&self, cutoff: i64) -> io::Result<usize> {
        let active = self.writer.lock().as_ref().map(|w| w.cur.index);
        let victims: Vec<Arc<ChunkFile>> = {
            let mut files = self.files.write();
            let ids: Vec<u32> = files
                .values()
                .filter(|f| Some(f.index) != active && f.max_t() < cutoff)
                .map(|f| f.index)
                .collect();
            ids.iter().filter_map(|i| files.remove(i)).collect()
        };
        for f in &victims {
            self.total_bytes.fetch_sub(f.len(), Ordering::Relaxed);
            fs::remove_file(file_path(&self.dir, f.index))?;
        }
        Ok(victims.len())
    }

    /// Index of the file being written.
    pub fn active_index(&self) -> Option<u32> {
        self.writer.lock().as_ref().map(|w| w.cur.index)
    }

    /// Deletes files numbered below `below` whose newest sample is older than `cutoff`
    /// (their chunks are in blocks). Returns the number of files removed.
    pub fn remove_persisted(&self, cutoff: i64, below: u32) -> io::Result<usize> {
        let victims: Vec<Arc<ChunkFile>> = {
            let mut files = self.files.write();
            let ids: Vec<u32> = files
                .values()
                .filter(|f| f.index < below && f.max_t() < cutoff)
                .map(|f| f.index)
                .collect();
            ids.iter().filter_map(|i| files.remove(i)).collect()
        };
        for f in &victims {
            self.total_bytes.fetch_sub(f.len(), Ordering::Relaxed);
            fs::remove_file(file_path(&self.dir, f.index))?;
        }
        Ok(victims.len())
    }

    /// Bytes in all chunk files.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub fn file_count(&self) -> usize {
        self.files.read().len()
    }
}

/// Parses records from a whole file; returns the length of the valid prefix and the newest
/// timestamp seen.
fn scan(bytes: &[u8], index: u32, out: &mut Vec<ScannedChunk>) -> (u64, i64) {
    if bytes.len() < FILE_HEADER as usize || &bytes[..4] != MAGIC || bytes[4] != VERSION {
        return (0, i64::MIN);
    }
    let mut off = FILE_HEADER as usize;
    let mut max_seen = i64::MIN;
    while let Some(hdr) = bytes.get(off..off + REC_HEADER) {
        let series = u64::from_le_bytes(le8(&hdr[0..8]));
        let min_t = i64::from_le_bytes(le8(&hdr[8..16]));
        let max_t = i64::from_le_bytes(le8(&hdr[16..24]));
        let Some(kind) = ChunkKind::from_u8(hdr[24]) else {
            break;
        };
        let len = u32::from_le_bytes([hdr[25], hdr[26], hdr[27], hdr[28]]) as usize;
        let body_end = off + REC_HEADER + len;
        let Some(crc_bytes) = bytes.get(body_end..body_end + REC_TRAILER) else {
            break;
        };
        let want = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
        if crc32c::crc32c(&bytes[off..body_end]) != want || series == 0 {
            break;
        }
        out.push(ScannedChunk {
            series,
            r: (u64::from(index) << 32) | off as u64,
            min_t,
            max_t,
            kind,
        });
        max_seen = max_seen.max(max_t);
        off = body_end + REC_TRAILER;
    }
    (off as u64, max_seen)
}

fn le8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(cf: &ChunkFiles, r: u64) -> Option<(bool, Vec<u8>)> {
        Some(match cf.read(r)? {
            ChunkBytes::Mapped(f, off) => (true, f.chunk_data(off)?.to_vec()),
            ChunkBytes::Copied(b) => (false, b),
        })
    }

    #[test]
    fn write_read_reopen_and_cut_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("chunks_head");
        let opened = ChunkFiles::open(&d, 1 << 16).unwrap();
        assert!(opened.chunks.is_empty());
        let cf = opened.files;
        let r1 = cf
            .write_chunk(7, 10, 20, ChunkKind::InOrder, b"hello")
            .unwrap();
        let r2 = cf
            .write_chunk(8, 30, 40, ChunkKind::OutOfOrder, b"world!")
            .unwrap();
        // Buffered, not yet written: read from the buffer.
        assert_eq!(bytes_of(&cf, r1), Some((false, b"hello".to_vec())));
        assert_eq!(bytes_of(&cf, r2), Some((false, b"world!".to_vec())));
        cf.sync().unwrap();
        assert_eq!(bytes_of(&cf, r1), Some((true, b"hello".to_vec())));
        assert_eq!(bytes_of(&cf, r2), Some((true, b"world!".to_vec())));
        cf.close().unwrap();
        drop(cf);

        // Append garbage to simulate a torn record.
        let path = d.join("000001");
        let mut bytes = fs::read(&path).unwrap();
        let good = bytes.len();
        bytes.extend_from_slice(&[9u8; 40]);
        fs::write(&path, &bytes).unwrap();

        let opened = ChunkFiles::open(&d, 1 << 16).unwrap();
        assert_eq!(opened.repairs.len(), 1, "{:?}", opened.repairs);
        assert_eq!(fs::metadata(&path).unwrap().len(), good as u64);
        assert_eq!(opened.chunks.len(), 2);
        assert_eq!(opened.chunks[0].series, 7);
        assert_eq!(opened.chunks[1].kind, ChunkKind::OutOfOrder);
        let (f, off) = opened.files.resolve(opened.chunks[1].r).unwrap();
        assert_eq!(f.chunk_data(off), Some(&b"world!"[..]));
    }

    #[test]
    fn zero_tail_checks_skip_holes_but_see_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.write_all_at(b"header", 0).unwrap();
        f.set_len(64 << 20).unwrap();
        assert!(tail_is_zero(&f, 6, 64 << 20).unwrap());
        // Written zeros are data, not a hole, and still count as a zero tail.
        f.write_all_at(&[0u8; 5000], 1 << 20).unwrap();
        assert!(tail_is_zero(&f, 6, 64 << 20).unwrap());
        // One stray byte deep in the file is found.
        f.write_all_at(&[1], (40 << 20) + 3).unwrap();
        assert!(!tail_is_zero(&f, 6, 64 << 20).unwrap());
        assert!(tail_is_zero(&f, (40 << 20) + 4, 64 << 20).unwrap());
        assert!(
            !tail_is_zero(&f, 0, 6).unwrap(),
            "the header itself is data"
        );
    }

    #[test]
    fn preallocated_tail_is_cut_without_a_repair() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("chunks_head");
        let cf = ChunkFiles::open(&d, 32 << 20).unwrap().files;
        cf.write_chunk(7, 10, 20, ChunkKind::InOrder, b"hello")
            .unwrap();
        cf.sync().unwrap();
        // Not synced: lost with the process (the WAL still has its samples).
        cf.write_chunk(7, 21, 30, ChunkKind::InOrder, b"again")
            .unwrap();
        // A crash: the active file keeps its preallocated length.
        drop(cf);
        let path = d.join("000001");
        assert_eq!(fs::metadata(&path).unwrap().len(), 32 << 20);
        let opened = ChunkFiles::open(&d, 32 << 20).unwrap();
        assert!(opened.repairs.is_empty(), "{:?}", opened.repairs);
        assert_eq!(opened.chunks.len(), 1);
        assert!(fs::metadata(&path).unwrap().len() < 4096);
    }

    #[test]
    fn files_roll_over_and_old_ones_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cf = ChunkFiles::open(dir.path(), 4096).unwrap().files;
        let data = vec![1u8; 1000];
        let mut refs = Vec::new();
        for i in 0..10 {
            refs.push(
                cf.write_chunk(1, i * 10, i * 10 + 9, ChunkKind::InOrder, &data)
                    .unwrap(),
            );
        }
        assert!(cf.file_count() >= 3);
        let removed = cf.remove_before(50).unwrap();
        assert!(removed >= 1);
        assert!(cf.resolve(refs[0]).is_none());
        assert_eq!(bytes_of(&cf, refs[9]).map(|(_, d)| d.len()), Some(1000));
        // Rolling over wrote the finished files: their chunks are mapped.
        assert_eq!(
            bytes_of(&cf, refs[5]).map(|(m, d)| (m, d.len())),
            Some((true, 1000))
        );
    }

    #[test]
    fn buffered_chunks_are_written_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let cf = ChunkFiles::open(dir.path(), 32 << 20).unwrap().files;
        let data = vec![7u8; 300];
        let mut refs = Vec::new();
        let written = |cf: &ChunkFiles, r: u64| cf.resolve(r).map_or(0, |(f, _)| f.len());
        while refs.is_empty() || written(&cf, refs[0]) == FILE_HEADER {
            refs.push(cf.write_chunk(1, 0, 9, ChunkKind::InOrder, &data).unwrap());
            assert!(refs.len() < 1000, "never written");
        }
        assert!(
            written(&cf, refs[0]) >= FLUSH_BYTES as u64,
            "a full buffer is written at once"
        );
        for _ in 0..3 {
            refs.push(cf.write_chunk(1, 0, 9, ChunkKind::InOrder, &data).unwrap());
        }
        let mapped = refs
            .iter()
            .filter(|&&r| bytes_of(&cf, r) == Some((true, data.clone())))
            .count();
        let buffered = refs
            .iter()
            .filter(|&&r| bytes_of(&cf, r) == Some((false, data.clone())))
            .count();
        assert_eq!(mapped + buffered, refs.len());
        assert!(
            mapped > 0 && buffered > 0,
            "{mapped} mapped, {buffered} buffered"
        );
        cf.close().unwrap();
        let opened = ChunkFiles::open(dir.path(), 32 << 20).unwrap();
        assert_eq!(opened.chunks.len(), refs.len(), "close writes the rest");
    }
}
