//! Immutable blocks: `blocks/<id>/{meta.json,index,chunks}`.
//!
//! `chunks`: an 8-byte header (`LKBC`, version, flags) then records `len u32 | data |
//! crc32c u32`. From version 2 (meta.json `version`), flag bit 0 says the first record is
//! the block's zstd dictionary, trained on the block's first raw chunks (up to
//! [`DICT_TRAIN_BYTES`]) and loaded once at open. Version 3 (written now): each further
//! record is a group of consecutive series' raw [`crate::dense`] chunks (cut after
//! [`GROUP_SERIES`] series or before passing [`GROUP_RAW_BYTES`]) compressed as one zstd
//! frame, so small chunks do not each pay a frame's header and entropy tables; a chunk
//! reference is `record offset << 20 | offset in the group's raw bytes`. Versions 1 and 2
//! (each record one compressed chunk, the reference its offset; version 1 without flags or
//! dictionary, first chunk layout) are still read.
//!
//! `index`: an 8-byte header (`LKBI`, version); the symbol strings (sorted, `uvarint len |
//! bytes`) and a `u32` offset table; the series (sorted by labels; `uvarint nlabels`, symbol
//! pairs, `uvarint nchunks`, then per chunk min time, span, sample count and reference as
//! varints) and their `u32` offset table; postings lists (`u32` series numbers) and a table of
//! `(name, value, offset, count)` `u32` rows sorted by name then value; then a table of
//! contents (six `u64`) and a crc32c of everything before it. All little endian.
//!
//! A block is written under `<id>.tmp`, every file fsynced, then renamed into place, so a
//! crash leaves either no block or a whole one. On open the index checksum and the file sizes
//! are checked; chunks carry their own checksum, checked when read and by the scrub of blocks
//! loaded at open ([`Block::verify_chunks`], run before the first compaction). Both files are read
//! through read-only memory maps; nothing is rebuilt in memory.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use lookout_storage::{Label, Labels, MatchOp, Matcher, Sample};
use memmap2::Mmap;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::dense::{self, Compressor, Reader};
use crate::postings;

const INDEX_MAGIC: &[u8; 4] = b"LKBI";
const CHUNKS_MAGIC: &[u8; 4] = b"LKBC";
/// Index format version (unchanged since the first block format).
const VERSION: u8 = 1;
/// Chunks file and meta.json version written; versions 1 and 2 are still read.
const CHUNKS_VERSION: u8 = 3;
/// A version 3 chunk reference: the group record's offset shifted by this, or-ed with the
/// chunk's offset in the group's raw bytes.
const GROUP_SHIFT: u32 = 20;
/// A group is cut after this many series (at a series boundary)...
pub const GROUP_SERIES: usize = 16;
/// ... or before a chunk that would take its raw bytes past this. Reading one series of a
/// version 3 block inflates at most this many raw bytes per chunk it needs (one chunk alone
/// may be larger: up to [`CHUNK_SAMPLES`] raw 64-bit floats plus times, ~40 KiB).
pub const GROUP_RAW_BYTES: usize = 128 << 10;
/// Chunks-file flag: the first record is the block's compression dictionary.
const FLAG_DICT: u8 = 1;
/// Raw chunk bytes buffered for training the block's dictionary before chunks are written.
pub const DICT_TRAIN_BYTES: usize = 4 << 20;
const HEADER: usize = 8;
const TOC: usize = 6 * 8;
/// Samples per block chunk: big enough for the compressor, small enough to skip by time.
pub const CHUNK_SAMPLES: usize = 2048;
/// Decoded postings lists kept per block for repeated (dashboard) queries.
const POSTINGS_CACHE: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("block {dir} is corrupt: {reason}")]
    Corrupt { dir: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BlockError + '_ {
    move |source| BlockError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStats {
    pub series: u64,
    pub samples: u64,
    pub chunks: u64,
}

/// `meta.json`. Times are milliseconds, `max_time` exclusive (as in Prometheus).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMeta {
    pub version: u32,
    pub id: String,
    pub min_time: i64,
    pub max_time: i64,
    /// 1 for blocks cut from the head or imported, parents' max + 1 after compaction.
    pub level: u32,
    /// Blocks this one was compacted from (deleted once it is in place).
    #[serde(default)]
    pub parents: Vec<String>,
    /// Holds out-of-order samples cut from the head; may overlap other blocks.
    #[serde(default)]
    pub out_of_order: bool,
    pub stats: BlockStats,
    pub index_bytes: u64,
    pub chunks_bytes: u64,
}

static ID_SEQ: AtomicU64 = AtomicU64::new(0);

/// A new block id: sortable by creation time, unique within and across processes.
pub fn new_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let seq = ID_SEQ.fetch_add(1, Ordering::Relaxed);
    format!(
        "{now:014x}{:05x}{:04x}",
        std::process::id() & 0xfffff,
        seq & 0xffff
    )
}

fn sync_dir(dir: &Path) -> Result<(), BlockError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(dir))
}

/// Kill -9 hook for crash tests: when `LOOKOUT_TSDB_FAILPOINT` names this point, the process
/// kills itself with SIGKILL right here.
pub fn failpoint(name: &str) {
    if std::env::var("LOOKOUT_TSDB_FAILPOINT").is_ok_and(|v| v == name) {
        tracing::warn!(failpoint = name, "failpoint hit; killing the process");
        // SAFETY: getpid/kill have no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

struct SeriesEntry {
    labels: Labels,
    /// (min_t, max_t, samples, ref)
    chunks: Vec<(i64, i64, u32, u64)>,
}

/// A temporary block directory, removed on drop unless disarmed: a write that fails half
/// way (disk full) leaves nothing behind.
struct TmpDir {
    path: PathBuf,
    armed: bool,
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        if self.armed
            && let Err(e) = fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.path.display(), error = %e, "could not remove an unfinished block");
        }
    }
}

impl std::ops::Deref for TmpDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

/// (series, chunk, offset in the group's raw bytes) of each chunk of a group.
type Slots = Vec<(usize, usize, usize)>;

/// Raw chunk groups held back until the block's dictionary is trained on them.
#[derive(Default)]
struct Pending {
    /// The groups' raw bytes, one after the other.
    data: Vec<u8>,
    /// Raw chunk lengths (the training samples).
    sizes: Vec<usize>,
    /// Each group's range of `data` and its chunks.
    groups: Vec<(std::ops::Range<usize>, Slots)>,
}

/// The group being filled.
#[derive(Default)]
struct Group {
    raw: Vec<u8>,
    slots: Slots,
    series: usize,
}

/// Streams series (in label order) into a new block directory.
pub struct BlockWriter {
    blocks_dir: PathBuf,
    id: String,
    tmp: TmpDir,
    chunks: BufWriter<File>,
    off: u64,
    series: Vec<SeriesEntry>,
    stats: BlockStats,
    raw: Vec<u8>,
    buf: Vec<u8>,
    group: Group,
    pending: Pending,
    /// Set once the dictionary is settled (trained or not) and the header written.
    comp: Option<Compressor>,
}

impl BlockWriter {
    pub fn new(blocks_dir: &Path) -> Result<BlockWriter, BlockError> {
        fs::create_dir_all(blocks_dir).map_err(io_err(blocks_dir))?;
        let id = new_id();
        let path = blocks_dir.join(format!("{id}.tmp"));
        fs::create_dir_all(&path).map_err(io_err(&path))?;
        let tmp = TmpDir { path, armed: true };
        let path = tmp.join("chunks");
        let f = File::create(&path).map_err(io_err(&path))?;
        let chunks = BufWriter::with_capacity(1 << 20, f);
        Ok(BlockWriter {
            blocks_dir: blocks_dir.to_path_buf(),
            id,
            tmp,
            chunks,
            off: HEADER as u64,
            series: Vec::new(),
            stats: BlockStats::default(),
            raw: Vec::new(),
            buf: Vec::new(),
            group: Group::default(),
            pending: Pending::default(),
            comp: None,
        })
    }

    fn corrupt(&self, reason: String) -> BlockError {
        BlockError::Corrupt {
            dir: self.tmp.to_path_buf(),
            reason,
        }
    }

    /// Appends one `len | data | crc` record; returns its offset.
    fn write_record(&mut self, data: &[u8]) -> Result<u64, BlockError> {
        let path = self.tmp.join("chunks");
        let len = u32::try_from(data.len()).map_err(|_| self.corrupt("chunk too large".into()))?;
        let crc = crc32c::crc32c(data);
        self.chunks
            .write_all(&len.to_le_bytes())
            .and_then(|()| self.chunks.write_all(data))
            .and_then(|()| self.chunks.write_all(&crc.to_le_bytes()))
            .map_err(io_err(&path))?;
        let at = self.off;
        self.off += 8 + u64::from(len);
        Ok(at)
    }

    /// Trains the dictionary on the held-back raw chunks (when there are enough), writes the
    /// header and the dictionary record, then compresses and writes the held-back chunks.
    fn settle(&mut self) -> Result<(), BlockError> {
        let pending = std::mem::take(&mut self.pending);
        let dict = dense::train_dictionary(&pending.data, &pending.sizes);
        let comp = match Compressor::new(dict.as_deref()) {
            Ok(c) => c,
            Err(e) => return Err(self.corrupt(e.to_string())),
        };
        let mut hdr = [0u8; HEADER];
        hdr[..4].copy_from_slice(CHUNKS_MAGIC);
        hdr[4] = CHUNKS_VERSION;
        hdr[5] = if dict.is_some() { FLAG_DICT } else { 0 };
        let path = self.tmp.join("chunks");
        self.chunks.write_all(&hdr).map_err(io_err(&path))?;
        if let Some(d) = &dict {
            self.write_record(d)?;
        }
        self.comp = Some(comp);
        for (range, slots) in &pending.groups {
            self.write_group(&pending.data[range.clone()], slots)?;
        }
        Ok(())
    }

    /// Compresses one group's raw bytes into a record and points its chunks at it.
    fn write_group(&mut self, raw: &[u8], slots: &Slots) -> Result<(), BlockError> {
        let mut buf = std::mem::take(&mut self.buf);
        if let Some(comp) = self.comp.as_mut() {
            comp.compress(raw, &mut buf);
        }
        let r = self.write_record(&buf);
        self.buf = buf;
        let at = r?;
        if at >= 1 << (64 - GROUP_SHIFT) {
            return Err(self.corrupt("chunks file too large".into()));
        }
        for &(si, ci, off) in slots {
            self.series[si].chunks[ci].3 = (at << GROUP_SHIFT) | off as u64;
        }
        Ok(())
    }

    /// Ends the group being filled: written out, or held back until the dictionary is
    /// settled.
    fn flush_group(&mut self) -> Result<(), BlockError> {
        let group = std::mem::take(&mut self.group);
        if group.slots.is_empty() {
            return Ok(());
        }
        if self.comp.is_some() {
            self.write_group(&group.raw, &group.slots)?;
            self.group = Group {
                raw: group.raw,
                ..Group::default()
            };
            self.group.raw.clear();
            return Ok(());
        }
        let base = self.pending.data.len();
        let ends = group
            .slots
            .iter()
            .skip(1)
            .map(|s| s.2)
            .chain([group.raw.len()]);
        for (s, end) in group.slots.iter().zip(ends) {
            self.pending.sizes.push(end - s.2);
        }
        self.pending.data.extend_from_slice(&group.raw);
        self.pending
            .groups
            .push((base..self.pending.data.len(), group.slots));
        Ok(())
    }

    /// Adds one series; calls must come in strictly increasing label order and the samples
    /// must be time-sorted with unique timestamps. Empty sample lists are skipped.
    pub fn add_series(&mut self, labels: Labels, samples: &[Sample]) -> Result<(), BlockError> {
        if samples.is_empty() {
            return Ok(());
        }
        if self.series.last().is_some_and(|l| l.labels >= labels) {
            return Err(BlockError::Corrupt {
                dir: self.tmp.to_path_buf(),
                reason: format!("series {labels} added out of order"),
            });
        }
        let si = self.series.len();
        self.series.push(SeriesEntry {
            labels,
            chunks: Vec::with_capacity(samples.len().div_ceil(CHUNK_SAMPLES)),
        });
        for part in samples.chunks(CHUNK_SAMPLES) {
            dense::encode_raw(part, &mut self.raw);
            if !self.group.slots.is_empty()
                && self.group.raw.len() + self.raw.len() > GROUP_RAW_BYTES
            {
                self.flush_group()?;
            }
            let ci = self.series[si].chunks.len();
            self.group.slots.push((si, ci, self.group.raw.len()));
            self.group.raw.extend_from_slice(&self.raw);
            let (first, last) = (part[0].t, part[part.len() - 1].t);
            // The reference is filled in when the group is written.
            self.series[si]
                .chunks
                .push((first, last, part.len() as u32, 0));
            self.stats.chunks += 1;
            self.stats.samples += part.len() as u64;
        }
        self.stats.series += 1;
        self.group.series += 1;
        if self.group.series >= GROUP_SERIES {
            self.flush_group()?;
        }
        if self.comp.is_none() && self.pending.data.len() >= DICT_TRAIN_BYTES {
            self.settle()?;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Writes the index and meta, fsyncs and renames the block into place. Returns `None`
    /// (and removes the temporary directory) when no series was added.
    pub fn finish(
        mut self,
        min_time: i64,
        max_time: i64,
        level: u32,
        parents: Vec<String>,
        out_of_order: bool,
    ) -> Result<Option<BlockMeta>, BlockError> {
        if self.series.is_empty() {
            drop(self.chunks);
            self.tmp.armed = false;
            fs::remove_dir_all(&*self.tmp).map_err(io_err(&self.tmp))?;
            return Ok(None);
        }
        self.flush_group()?;
        if self.comp.is_none() {
            self.settle()?;
        }
        let cpath = self.tmp.join("chunks");
        self.chunks.flush().map_err(io_err(&cpath))?;
        self.chunks.get_ref().sync_all().map_err(io_err(&cpath))?;
        let index = build_index(&self.series).map_err(|reason| BlockError::Corrupt {
            dir: self.tmp.to_path_buf(),
            reason,
        })?;
        let ipath = self.tmp.join("index");
        write_synced(&ipath, &index)?;
        let meta = BlockMeta {
            version: u32::from(CHUNKS_VERSION),
            id: self.id.clone(),
            min_time,
            max_time,
            level,
            parents,
            out_of_order,
            stats: self.stats.clone(),
            index_bytes: index.len() as u64,
            chunks_bytes: self.off,
        };
        let mpath = self.tmp.join("meta.json");
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| BlockError::Corrupt {
            dir: self.tmp.to_path_buf(),
            reason: e.to_string(),
        })?;
        write_synced(&mpath, &json)?;
        sync_dir(&self.tmp)?;
        failpoint("block-before-rename");
        let dest = self.blocks_dir.join(&self.id);
        fs::rename(&*self.tmp, &dest).map_err(io_err(&dest))?;
        self.tmp.armed = false;
        sync_dir(&self.blocks_dir)?;
        Ok(Some(meta))
    }
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), BlockError> {
    let mut f = File::create(path).map_err(io_err(path))?;
    f.write_all(data).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

fn u32_of(x: usize, what: &str) -> Result<u32, String> {
    u32::try_from(x).map_err(|_| format!("index too large ({what})"))
}

fn build_index(series: &[SeriesEntry]) -> Result<Vec<u8>, String> {
    let mut syms: Vec<&str> = series
        .iter()
        .flat_map(|s| {
            s.labels
                .iter()
                .flat_map(|l| [l.name.as_str(), l.value.as_str()])
        })
        .collect();
    syms.sort_unstable();
    syms.dedup();
    let sym_id: FxHashMap<&str, u32> = syms
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, i as u32))
        .collect();
    let mut out = Vec::with_capacity(series.len() * 64 + 1024);
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&[VERSION, 0, 0, 0]);
    let mut sym_offs = Vec::with_capacity(syms.len());
    for s in &syms {
        sym_offs.push(u32_of(out.len(), "symbols")?);
        dense::put_uvarint(&mut out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
    let symtab = out.len() as u64;
    for o in sym_offs {
        out.extend_from_slice(&o.to_le_bytes());
    }
    let mut postings: FxHashMap<(u32, u32), Vec<u32>> = FxHashMap::default();
    let mut ser_offs = Vec::with_capacity(series.len());
    for (i, s) in series.iter().enumerate() {
        ser_offs.push(u32_of(out.len(), "series")?);
        dense::put_uvarint(&mut out, s.labels.len() as u64);
        for l in &s.labels {
            let (n, v) = (sym_id[l.name.as_str()], sym_id[l.value.as_str()]);
            dense::put_uvarint(&mut out, u64::from(n));
            dense::put_uvarint(&mut out, u64::from(v));
            postings.entry((n, v)).or_default().push(i as u32);
        }
        dense::put_uvarint(&mut out, s.chunks.len() as u64);
        for &(min_t, max_t, n, r) in &s.chunks {
            dense::put_varint(&mut out, min_t);
            dense::put_uvarint(&mut out, max_t.wrapping_sub(min_t) as u64);
            dense::put_uvarint(&mut out, u64::from(n));
            dense::put_uvarint(&mut out, r);
        }
    }
    let sertab = out.len() as u64;
    for o in ser_offs {
        out.extend_from_slice(&o.to_le_bytes());
    }
    let mut keys: Vec<(u32, u32)> = postings.keys().copied().collect();
    keys.sort_unstable();
    let mut rows = Vec::with_capacity(keys.len());
    for k in &keys {
        let list = &postings[k];
        rows.push((k.0, k.1, u32_of(out.len(), "postings")?, list.len() as u32));
        for &x in list {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    let posttab = out.len() as u64;
    for (n, v, o, c) in rows {
        for x in [n, v, o, c] {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    for x in [
        symtab,
        syms.len() as u64,
        sertab,
        series.len() as u64,
        posttab,
        keys.len() as u64,
    ] {
        out.extend_from_slice(&x.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// A chunk of a block series.
#[derive(Clone, Copy, Debug)]
pub struct BlockChunk {
    pub min_t: i64,
    pub max_t: i64,
    pub samples: u32,
    pub r: u64,
}

type PostingsCache = FxHashMap<(u32, u32), std::sync::Arc<Vec<u64>>>;

/// An open, verified block.
pub struct Block {
    pub meta: BlockMeta,
    pub dir: PathBuf,
    index: Mmap,
    chunks: Mmap,
    symtab: usize,
    nsym: usize,
    sertab: usize,
    nseries: usize,
    posttab: usize,
    npost: usize,
    cache: Mutex<PostingsCache>,
    /// The prepared compression dictionary of a version 2 block that has one.
    dict: Option<zstd::zstd_safe::DDict<'static>>,
    /// Offset of the first chunk record (after the dictionary record).
    first_chunk: usize,
    /// Unique per opened block in this process (the key of [`GroupCache`] entries).
    uid: u64,
}

static BLOCK_UID: AtomicU64 = AtomicU64::new(0);

fn map(path: &Path) -> Result<Mmap, BlockError> {
    let f = File::open(path).map_err(io_err(path))?;
    // SAFETY: block files are never modified after the block is renamed into place (they
    // are only deleted, which keeps existing mappings valid).
    unsafe { Mmap::map(&f) }.map_err(io_err(path))
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

impl Block {
    /// Opens and verifies the block in `dir`.
    pub fn open(dir: &Path) -> Result<Block, BlockError> {
        let corrupt = |reason: String| BlockError::Corrupt {
            dir: dir.to_path_buf(),
            reason,
        };
        let mpath = dir.join("meta.json");
        let raw = fs::read(&mpath).map_err(io_err(&mpath))?;
        let meta: BlockMeta =
            serde_json::from_slice(&raw).map_err(|e| corrupt(format!("meta.json: {e}")))?;
        if !(1..=u32::from(CHUNKS_VERSION)).contains(&meta.version) {
            return Err(corrupt(format!("unsupported version {}", meta.version)));
        }
        let index = map(&dir.join("index"))?;
        let chunks = map(&dir.join("chunks"))?;
        if index.len() as u64 != meta.index_bytes || chunks.len() as u64 != meta.chunks_bytes {
            return Err(corrupt("file sizes differ from meta.json".into()));
        }
        if index.len() < HEADER + TOC + 4 || &index[..4] != INDEX_MAGIC || index[4] != VERSION {
            return Err(corrupt("bad index header".into()));
        }
        if chunks.len() < HEADER
            || &chunks[..4] != CHUNKS_MAGIC
            || u32::from(chunks[4]) != meta.version
            || (chunks[4] == 1 && chunks[5] != 0)
            || chunks[5] & !FLAG_DICT != 0
        {
            return Err(corrupt("bad chunks header".into()));
        }
        let (dict, first_chunk) = if chunks[5] & FLAG_DICT != 0 {
            let len = le_u32(&chunks, HEADER).map_or(usize::MAX, |l| l as usize);
            let end = len.checked_add(HEADER + 8).filter(|&e| e <= chunks.len());
            let Some(end) = end else {
                return Err(corrupt("dictionary record runs past the file".into()));
            };
            let data = &chunks[HEADER + 4..end - 4];
            if le_u32(&chunks, end - 4) != Some(crc32c::crc32c(data)) {
                return Err(corrupt("dictionary checksum mismatch".into()));
            }
            let d = dense::prepare_dictionary(data).map_err(|e| corrupt(e.to_string()))?;
            (Some(d), end)
        } else {
            (None, HEADER)
        };
        let body = index.len() - 4;
        if le_u32(&index, body) != Some(crc32c::crc32c(&index[..body])) {
            return Err(corrupt("index checksum mismatch".into()));
        }
        let toc = body - TOC;
        let f = |i: usize| le_u64(&index, toc + i * 8).map_or(usize::MAX, |x| x as usize);
        let (symtab, nsym, sertab, nseries, posttab, npost) = (f(0), f(1), f(2), f(3), f(4), f(5));
        let fits = |off: usize, n: usize, w: usize| {
            n.checked_mul(w)
                .and_then(|b| off.checked_add(b))
                .is_some_and(|end| end <= toc)
        };
        if !fits(symtab, nsym, 4) || !fits(sertab, nseries, 4) || !fits(posttab, npost, 16) {
            return Err(corrupt("table of contents out of range".into()));
        }
        if nseries as u64 != meta.stats.series {
            return Err(corrupt("series count differs from meta.json".into()));
        }
        Ok(Block {
            meta,
            dir: dir.to_path_buf(),
            index,
            chunks,
            symtab,
            nsym,
            sertab,
            nseries,
            posttab,
            npost,
            cache: Mutex::new(FxHashMap::default()),
            dict,
            first_chunk,
            uid: BLOCK_UID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Whether chunk references point into groups of raw chunks (version 3).
    fn grouped(&self) -> bool {
        self.meta.version >= 3
    }

    /// The group (its record's offset) holding chunk reference `r`, in a version 3 block;
    /// chunks of one group are read with one decompression through a [`GroupCache`].
    pub fn group_of(&self, r: u64) -> Option<u64> {
        self.grouped().then_some(r >> GROUP_SHIFT)
    }

    fn corrupt(&self, reason: &str) -> BlockError {
        BlockError::Corrupt {
            dir: self.dir.clone(),
            reason: reason.to_string(),
        }
    }

    pub fn size_bytes(&self) -> u64 {
        self.meta.index_bytes + self.meta.chunks_bytes
    }

    pub fn num_series(&self) -> usize {
        self.nseries
    }

    pub fn symbol(&self, i: u32) -> Result<&str, BlockError> {
        if i as usize >= self.nsym {
            return Err(self.corrupt("symbol reference out of range"));
        }
        let off = le_u32(&self.index, self.symtab + i as usize * 4)
            .ok_or_else(|| self.corrupt("symbol table"))? as usize;
        let mut r = Reader {
            b: self
                .index
                .get(off..)
                .ok_or_else(|| self.corrupt("symbol offset"))?,
        };
        let n = r.uvarint().map_err(|_| self.corrupt("symbol length"))? as usize;
        let b = r.bytes(n).map_err(|_| self.corrupt("symbol bytes"))?;
        std::str::from_utf8(b).map_err(|_| self.corrupt("symbol is not UTF-8"))
    }

    fn lookup(&self, s: &str) -> Result<Option<u32>, BlockError> {
        let (mut lo, mut hi) = (0usize, self.nsym);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.symbol(mid as u32)?.cmp(s) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Some(mid as u32)),
            }
        }
        Ok(None)
    }

    fn row(&self, i: usize) -> (u32, u32, u32, u32) {
        let at = self.posttab + i * 16;
        let g = |k: usize| le_u32(&self.index, at + k * 4).unwrap_or(0);
        (g(0), g(1), g(2), g(3))
    }

    /// Rows of the postings table for label name symbol `n`.
    fn name_rows(&self, n: u32) -> std::ops::Range<usize> {
        let lo = partition(self.npost, |i| self.row(i).0 < n);
        let hi = partition(self.npost, |i| self.row(i).0 <= n);
        lo..hi
    }

    fn postings_of_row(&self, i: usize) -> Result<std::sync::Arc<Vec<u64>>, BlockError> {
        let (n, v, off, count) = self.row(i);
        if let Some(p) = self.cache.lock().get(&(n, v)) {
            return Ok(p.clone());
        }
        let (off, count) = (off as usize, count as usize);
        let bytes = off
            .checked_add(count.saturating_mul(4))
            .and_then(|end| self.index.get(off..end))
            .ok_or_else(|| self.corrupt("postings out of range"))?;
        let list: Vec<u64> = bytes
            .chunks_exact(4)
            .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        let list = std::sync::Arc::new(list);
        let mut cache = self.cache.lock();
        if cache.len() >= POSTINGS_CACHE {
            cache.clear();
        }
        cache.insert((n, v), list.clone());
        Ok(list)
    }

    /// Series numbers (sorted, which is label order) matching every matcher.
    pub fn matching(&self, matchers: &[Matcher]) -> Result<Vec<u64>, BlockError> {
        let mut acc: Option<Vec<u64>> = None;
        let mut subtract: Vec<Vec<u64>> = Vec::new();
        let mut order: Vec<&Matcher> = matchers.iter().collect();
        order.sort_by_key(|m| match m.op {
            MatchOp::Equal if !m.value.is_empty() => 0,
            MatchOp::Regex => 1,
            _ => 2,
        });
        for m in order {
            let rows = match self.lookup(&m.name)? {
                Some(n) => self.name_rows(n),
                None => 0..0,
            };
            if m.matches_empty() {
                let mut bad = Vec::new();
                for i in rows {
                    if !m.matches(self.symbol(self.row(i).1)?) {
                        bad.push(self.postings_of_row(i)?);
                    }
                }
                if !bad.is_empty() {
                    let lists: Vec<&[u64]> = bad.iter().map(|l| l.as_slice()).collect();
                    subtract.push(postings::union(&lists));
                }
                continue;
            }
            let good: Vec<u64> = if m.op == MatchOp::Equal {
                match self.lookup(&m.value)? {
                    Some(v) => {
                        let i =
                            rows.start + partition(rows.len(), |k| self.row(rows.start + k).1 < v);
                        if i < rows.end && self.row(i).1 == v {
                            self.postings_of_row(i)?.to_vec()
                        } else {
                            Vec::new()
                        }
                    }
                    None => Vec::new(),
                }
            } else {
                let mut lists = Vec::new();
                for i in rows {
                    if m.matches(self.symbol(self.row(i).1)?) {
                        lists.push(self.postings_of_row(i)?);
                    }
                }
                let refs: Vec<&[u64]> = lists.iter().map(|l| l.as_slice()).collect();
                postings::union(&refs)
            };
            let next = match acc {
                None => good,
                Some(a) => postings::intersect(&a, &good),
            };
            if next.is_empty() {
                return Ok(next);
            }
            acc = Some(next);
        }
        let mut ids = acc.unwrap_or_else(|| (0..self.nseries as u64).collect());
        for s in &subtract {
            ids = postings::subtract(&ids, s);
        }
        Ok(ids)
    }

    /// Labels and chunks of series number `i`.
    pub fn series(&self, i: u64) -> Result<(Labels, Vec<BlockChunk>), BlockError> {
        let (mut pairs, mut chunks) = (Vec::new(), Vec::new());
        self.series_into(i, &mut pairs, &mut chunks)?;
        let labels = pairs.iter().map(|&(n, v)| Label::new(n, v)).collect();
        Ok((Labels::from_sorted_unchecked(labels), chunks))
    }

    /// [`Block::series`] without building the label set: appends the series' label pairs
    /// (name, value; in label order, borrowed from the symbol table) to `pairs` and its
    /// chunks to `chunks`. A query's series gathering allocates once per distinct series
    /// this way, not once per label per block.
    pub fn series_into<'a>(
        &'a self,
        i: u64,
        pairs: &mut Vec<(&'a str, &'a str)>,
        chunks: &mut Vec<BlockChunk>,
    ) -> Result<(), BlockError> {
        self.series_into_cached(i, pairs, chunks, &mut SymbolCache::default())
    }

    /// [`Block::series_into`] with the symbols looked up through `cache` (one per block and
    /// caller): the series of a query mostly share their label names and many values.
    pub fn series_into_cached<'a>(
        &'a self,
        i: u64,
        pairs: &mut Vec<(&'a str, &'a str)>,
        chunks: &mut Vec<BlockChunk>,
        cache: &mut SymbolCache<'a>,
    ) -> Result<(), BlockError> {
        if i as usize >= self.nseries {
            return Err(self.corrupt("series number out of range"));
        }
        let off = le_u32(&self.index, self.sertab + i as usize * 4)
            .ok_or_else(|| self.corrupt("series table"))? as usize;
        let bad = |_| self.corrupt("series entry");
        let mut r = Reader {
            b: self
                .index
                .get(off..)
                .ok_or_else(|| self.corrupt("series offset"))?,
        };
        let nl = r.uvarint().map_err(bad)? as usize;
        pairs.reserve(nl.min(256));
        for _ in 0..nl {
            let n = r.uvarint().map_err(bad)? as u32;
            let v = r.uvarint().map_err(bad)? as u32;
            pairs.push((cache.get(self, n)?, cache.get(self, v)?));
        }
        let nc = r.uvarint().map_err(bad)? as usize;
        chunks.reserve(nc.min(4096));
        for _ in 0..nc {
            let min_t = r.varint().map_err(bad)?;
            let span = r.uvarint().map_err(bad)?;
            let samples = r.uvarint().map_err(bad)? as u32;
            let cr = r.uvarint().map_err(bad)?;
            chunks.push(BlockChunk {
                min_t,
                max_t: min_t.wrapping_add(span as i64),
                samples,
                r: cr,
            });
        }
        Ok(())
    }

    /// The stored record at offset `r`, checksum verified: a chunk (versions 1 and 2, where a
    /// chunk reference is that offset) or a group of chunks (version 3, see
    /// [`Block::group_of`]).
    pub fn chunk(&self, r: u64) -> Result<&[u8], BlockError> {
        let at = usize::try_from(r).map_err(|_| self.corrupt("chunk reference"))?;
        let len = le_u32(&self.chunks, at).ok_or_else(|| self.corrupt("chunk reference"))? as usize;
        let data = at
            .checked_add(4)
            .and_then(|s| Some(s..s.checked_add(len)?))
            .and_then(|rg| self.chunks.get(rg))
            .ok_or_else(|| self.corrupt("chunk out of range"))?;
        let crc = le_u32(&self.chunks, at + 4 + len).ok_or_else(|| self.corrupt("chunk crc"))?;
        if crc32c::crc32c(data) != crc {
            return Err(self.corrupt(&format!("chunk checksum mismatch at offset {r}")));
        }
        Ok(data)
    }

    /// Reads every chunk record and checks its checksum (and that the records fill the file
    /// and number `meta.stats.chunks`). Used by the background scrub after open.
    pub fn verify_chunks(&self) -> Result<(), BlockError> {
        let data = &self.chunks[..];
        let mut at = self.first_chunk;
        let mut n = 0u64;
        while at < data.len() {
            let len = le_u32(data, at).ok_or_else(|| self.corrupt("truncated chunk record"))?;
            let end = at
                .checked_add(8 + len as usize)
                .filter(|&e| e <= data.len())
                .ok_or_else(|| self.corrupt(&format!("chunk record at {at} runs past the file")))?;
            let body = &data[at + 4..end - 4];
            if le_u32(data, end - 4) != Some(crc32c::crc32c(body)) {
                return Err(self.corrupt(&format!("chunk checksum mismatch at offset {at}")));
            }
            n += 1;
            at = end;
        }
        // Version 3 records are groups: at least one, at most one per chunk.
        let bad = if self.grouped() {
            n > self.meta.stats.chunks || (n == 0) != (self.meta.stats.chunks == 0)
        } else {
            n != self.meta.stats.chunks
        };
        if bad {
            return Err(self.corrupt(&format!(
                "{n} chunk records, meta.json says {}",
                self.meta.stats.chunks
            )));
        }
        Ok(())
    }

    /// Samples of `chunks` within `[start, end]`, skipping chunks outside the range.
    pub fn samples(
        &self,
        chunks: &[BlockChunk],
        start: i64,
        end: i64,
        out: &mut Vec<Sample>,
    ) -> Result<(), BlockError> {
        self.samples_cached(chunks, start, end, out, &mut GroupCache::default())
    }

    /// [`Block::samples`] with the groups of a version 3 block inflated through `cache`:
    /// series read one after the other mostly share their groups.
    pub fn samples_cached(
        &self,
        chunks: &[BlockChunk],
        start: i64,
        end: i64,
        out: &mut Vec<Sample>,
        cache: &mut GroupCache,
    ) -> Result<(), BlockError> {
        for c in chunks.iter().filter(|c| c.max_t >= start && c.min_t <= end) {
            if self.grouped() {
                let raw = cache.group(self, c.r >> GROUP_SHIFT)?;
                let off = (c.r & ((1 << GROUP_SHIFT) - 1)) as usize;
                let chunk = raw
                    .get(off..)
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| self.corrupt("chunk offset past its group"))?;
                dense::decode_raw_chunk(chunk, start, end, out)
            } else {
                dense::decode(self.chunk(c.r)?, self.dict.as_ref(), start, end, out)
            }
            .map_err(|e| self.corrupt(&e.to_string()))?;
        }
        Ok(())
    }

    /// Label names of the block (all series when `matchers` is empty).
    pub fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, BlockError> {
        let mut names: Vec<String> = Vec::new();
        if matchers.is_empty() {
            let mut last = None;
            for i in 0..self.npost {
                let n = self.row(i).0;
                if last != Some(n) {
                    names.push(self.symbol(n)?.to_string());
                    last = Some(n);
                }
            }
            return Ok(names);
        }
        for i in self.matching(matchers)? {
            let (l, _) = self.series(i)?;
            names.extend(l.iter().map(|l| l.name.clone()));
        }
        names.sort_unstable();
        names.dedup();
        Ok(names)
    }

    /// Values of label `name` (over all series when `matchers` is empty).
    pub fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, BlockError> {
        let mut values = Vec::new();
        if matchers.is_empty() {
            if let Some(n) = self.lookup(name)? {
                for i in self.name_rows(n) {
                    values.push(self.symbol(self.row(i).1)?.to_string());
                }
            }
            return Ok(values);
        }
        for i in self.matching(matchers)? {
            let (l, _) = self.series(i)?;
            if let Some(v) = l.get(name) {
                values.push(v.to_string());
            }
        }
        values.sort_unstable();
        values.dedup();
        Ok(values)
    }

    /// Series count per postings row: `(name, value, series)` for the status API.
    pub fn postings_counts(&self) -> Result<Vec<(String, String, u64)>, BlockError> {
        let mut out = Vec::with_capacity(self.npost);
        for i in 0..self.npost {
            let (n, v, _, c) = self.row(i);
            out.push((
                self.symbol(n)?.to_string(),
                self.symbol(v)?.to_string(),
                u64::from(c),
            ));
        }
        Ok(out)
    }
}

/// Groups of raw chunks (version 3 blocks) inflated recently by one reader, least recently
/// used given up first: a reader going through consecutive series inflates each group once
/// when the cache has a slot per block it reads (and one or two to spare). Holds at most its
/// number of slots (default [`GROUP_CACHE`]) of groups, each up to about [`GROUP_RAW_BYTES`].
pub struct GroupCache {
    entries: Vec<GroupEntry>,
    tick: u64,
    slots: usize,
}

/// Default slots of a [`GroupCache`]: more than the blocks one query usually spans.
pub const GROUP_CACHE: usize = 32;

impl Default for GroupCache {
    fn default() -> Self {
        GroupCache::new(GROUP_CACHE)
    }
}

struct GroupEntry {
    /// `(block uid, record offset)`; `None` while (or after failing at) filling `raw`.
    key: Option<(u64, u64)>,
    used: u64,
    raw: Vec<u8>,
}

impl GroupCache {
    /// A cache of `slots` groups (at least one).
    pub fn new(slots: usize) -> GroupCache {
        GroupCache {
            entries: Vec::new(),
            tick: 0,
            slots: slots.max(1),
        }
    }

    /// The raw bytes of the group at record offset `at` of `b`.
    fn group(&mut self, b: &Block, at: u64) -> Result<&[u8], BlockError> {
        self.tick += 1;
        let key = Some((b.uid, at));
        let i = match self.entries.iter().position(|e| e.key == key) {
            Some(i) => i,
            None => {
                let i = if self.entries.len() < self.slots {
                    self.entries.push(GroupEntry {
                        key: None,
                        used: 0,
                        raw: Vec::new(),
                    });
                    self.entries.len() - 1
                } else {
                    self.entries
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, e)| e.used)
                        .map_or(0, |(i, _)| i)
                };
                let e = &mut self.entries[i];
                e.key = None;
                dense::inflate(b.chunk(at)?, b.dict.as_ref(), &mut e.raw)
                    .map_err(|err| b.corrupt(&err.to_string()))?;
                e.key = key;
                i
            }
        };
        let e = &mut self.entries[i];
        e.used = self.tick;
        Ok(&e.raw)
    }
}

/// Recently looked-up symbols of one block, by number (direct-mapped): a query's series
/// repeat a few label names and values, each otherwise read and UTF-8-checked per use.
pub struct SymbolCache<'a> {
    slots: [(u32, &'a str); SYMBOL_SLOTS],
}

const SYMBOL_SLOTS: usize = 64;

impl Default for SymbolCache<'_> {
    fn default() -> Self {
        SymbolCache {
            slots: [(u32::MAX, ""); SYMBOL_SLOTS],
        }
    }
}

impl<'a> SymbolCache<'a> {
    /// Symbol `i` of `block` (the block this cache is used with).
    #[inline]
    pub fn get(&mut self, block: &'a Block, i: u32) -> Result<&'a str, BlockError> {
        let slot = &mut self.slots[i as usize % SYMBOL_SLOTS];
        if slot.0 != i {
            *slot = (i, block.symbol(i)?);
        }
        Ok(slot.1)
    }
}

fn partition(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(name: &str, i: usize) -> Labels {
        Labels::from_pairs([("__name__", name.to_string()), ("i", format!("{i:03}"))])
    }

    fn write(dir: &Path) -> BlockMeta {
        let mut w = BlockWriter::new(dir).unwrap();
        let mut all: Vec<Labels> = (0..20)
            .map(|i| l("a", i))
            .chain((0..5).map(|i| l("b", i)))
            .collect();
        all.sort();
        for labels in all {
            let samples: Vec<Sample> = (0..5000)
                .map(|t| Sample {
                    t: t * 15,
                    v: t as f64,
                })
                .collect();
            w.add_series(labels, &samples).unwrap();
        }
        w.finish(0, 5000 * 15, 1, vec![], false).unwrap().unwrap()
    }

    #[test]
    fn cached_symbols_give_the_same_series() {
        // 150 series with distinct values: symbol numbers collide in the cache's slots.
        let tmp = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::new(tmp.path()).unwrap();
        let mut all: Vec<Labels> = (0..150)
            .map(|i| {
                Labels::from_pairs([
                    ("__name__", format!("m{}", i % 3)),
                    ("i", format!("{i:03}")),
                    ("job", format!("j{}", i % 7)),
                ])
            })
            .collect();
        all.sort();
        let samples: Vec<Sample> = (0..10).map(|t| Sample { t, v: 1.0 }).collect();
        for labels in all {
            w.add_series(labels, &samples).unwrap();
        }
        let meta = w.finish(0, 10, 1, vec![], false).unwrap().unwrap();
        let b = Block::open(&tmp.path().join(&meta.id)).unwrap();
        let mut cache = SymbolCache::default();
        // Forwards, then backwards, through one cache.
        let ids: Vec<u64> = (0..b.num_series() as u64)
            .chain((0..b.num_series() as u64).rev())
            .collect();
        for id in ids {
            let (mut p1, mut c1, mut p2, mut c2) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            b.series_into(id, &mut p1, &mut c1).unwrap();
            b.series_into_cached(id, &mut p2, &mut c2, &mut cache)
                .unwrap();
            assert_eq!(p1, p2, "series {id}");
            assert_eq!(c1.len(), c2.len());
        }
        assert!(b.symbol(u32::MAX - 1).is_err());
        assert!(cache.get(&b, u32::MAX - 1).is_err());
    }

    #[test]
    fn write_open_query() {
        let tmp = tempfile::tempdir().unwrap();
        let meta = write(tmp.path());
        assert_eq!(meta.stats.series, 25);
        assert_eq!(meta.stats.samples, 25 * 5000);
        assert_eq!(meta.stats.chunks, 25 * 3);
        let b = Block::open(&tmp.path().join(&meta.id)).unwrap();
        let ids = b.matching(&[Matcher::equal("__name__", "b")]).unwrap();
        assert_eq!(ids, vec![20, 21, 22, 23, 24]);
        let ids = b
            .matching(&[
                Matcher::new(MatchOp::Regex, "i", "00[12]").unwrap(),
                Matcher::not_equal("__name__", "a"),
            ])
            .unwrap();
        assert_eq!(ids, vec![21, 22]);
        let (labels, chunks) = b.series(21).unwrap();
        assert_eq!(labels, l("b", 1));
        let mut out = Vec::new();
        b.samples(&chunks, 30_000, 30_100, &mut out).unwrap();
        assert_eq!(
            out.iter().map(|s| s.t).collect::<Vec<_>>(),
            (2000..=2006).map(|t| t * 15).collect::<Vec<_>>()
        );
        assert_eq!(b.label_names(&[]).unwrap(), vec!["__name__", "i"]);
        assert_eq!(b.label_values("__name__", &[]).unwrap(), vec!["a", "b"]);
        assert_eq!(
            b.label_values("i", &[Matcher::equal("__name__", "b")])
                .unwrap()
                .len(),
            5
        );
        assert!(
            b.matching(&[Matcher::equal("nope", "x")])
                .unwrap()
                .is_empty()
        );
        assert_eq!(b.matching(&[Matcher::equal("nope", "")]).unwrap().len(), 25);
    }

    #[test]
    fn corruption_is_detected() {
        let tmp = tempfile::tempdir().unwrap();
        let meta = write(tmp.path());
        let dir = tmp.path().join(&meta.id);
        let ipath = dir.join("index");
        let mut data = fs::read(&ipath).unwrap();
        data[100] ^= 0x55;
        fs::write(&ipath, &data).unwrap();
        assert!(matches!(Block::open(&dir), Err(BlockError::Corrupt { .. })));
        data[100] ^= 0x55;
        fs::write(&ipath, &data).unwrap();
        let cpath = dir.join("chunks");
        let mut c = fs::read(&cpath).unwrap();
        c[50] ^= 0x01;
        fs::write(&cpath, &c).unwrap();
        let b = Block::open(&dir).unwrap();
        let (_, chunks) = b.series(0).unwrap();
        let mut out = Vec::new();
        assert!(b.samples(&chunks, i64::MIN, i64::MAX, &mut out).is_err());
        fs::write(dir.join("meta.json"), b"{").unwrap();
        assert!(Block::open(&dir).is_err());
    }

    #[test]
    fn dictionary_settles_mid_stream_and_every_chunk_reads_back() {
        // Raw float columns (8 bytes a sample): the held-back chunks pass DICT_TRAIN_BYTES
        // part way through, so chunks are written both before and after the dictionary.
        let tmp = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::new(tmp.path()).unwrap();
        let series = |i: usize| -> Vec<Sample> {
            (0..1000)
                .map(|k| Sample {
                    t: k * 15_000 + (k * k) % 7,
                    v: ((k as f64) + 0.5).sqrt() * (i as f64 + 1.0),
                })
                .collect()
        };
        let n = DICT_TRAIN_BYTES / 8000 + 100;
        for i in 0..n {
            w.add_series(l("m", i), &series(i)).unwrap();
        }
        let meta = w
            .finish(0, 1000 * 15_000, 1, vec![], false)
            .unwrap()
            .unwrap();
        let b = Block::open(&tmp.path().join(&meta.id)).unwrap();
        assert!(b.dict.is_some());
        b.verify_chunks().unwrap();
        for i in 0..n {
            let (labels, chunks) = b.series(i as u64).unwrap();
            assert_eq!(labels, l("m", i));
            let mut out = Vec::new();
            b.samples(&chunks, i64::MIN, i64::MAX, &mut out).unwrap();
            let want = series(i);
            assert_eq!(out.len(), want.len(), "{labels}");
            assert!(
                out.iter()
                    .zip(&want)
                    .all(|(a, b)| a.t == b.t && a.v.to_bits() == b.v.to_bits()),
                "{labels}"
            );
        }
    }

    #[test]
    fn groups_are_cut_by_series_and_size_and_read_through_any_cache() {
        // Small series (16 to a group), then raw-float series large enough that the raw
        // size cuts groups inside a series (3 chunks each, ~18 KiB raw per chunk).
        let tmp = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::new(tmp.path()).unwrap();
        let small = |i: usize| -> Vec<Sample> {
            (0..100)
                .map(|k| Sample {
                    t: k * 15_000,
                    v: (k as usize * i) as f64,
                })
                .collect()
        };
        let big = |i: usize| -> Vec<Sample> {
            (0..5000)
                .map(|k| Sample {
                    t: k * 15_000 + (k * k) % 7,
                    v: ((k as f64) + 0.25).sqrt() * (i as f64 + 1.0),
                })
                .collect()
        };
        let want: Vec<(Labels, Vec<Sample>)> = (0..40)
            .map(|i| (l("a", i), small(i)))
            .chain((0..12).map(|i| (l("b", i), big(i))))
            .collect();
        for (labels, samples) in &want {
            w.add_series(labels.clone(), samples).unwrap();
        }
        let meta = w
            .finish(0, 5000 * 15_000, 1, vec![], false)
            .unwrap()
            .unwrap();
        assert_eq!(meta.version, 3);
        let b = Block::open(&tmp.path().join(&meta.id)).unwrap();
        b.verify_chunks().unwrap();
        let groups: Vec<Vec<u64>> = (0..want.len() as u64)
            .map(|i| {
                let (_, cs) = b.series(i).unwrap();
                cs.iter().map(|c| b.group_of(c.r).unwrap()).collect()
            })
            .collect();
        // Series 0-15, 16-31 and 32-39 + the first big ones share groups by count.
        assert!(groups[..16].iter().all(|g| g == &groups[0]));
        assert_ne!(groups[16], groups[15]);
        assert!(groups[16..32].iter().all(|g| g == &groups[16]));
        // A big series' chunks: a group holds at most GROUP_RAW_BYTES of raw chunks.
        let mut per_group: FxHashMap<u64, usize> = FxHashMap::default();
        for g in groups.iter().flatten() {
            *per_group.entry(*g).or_default() += 1;
        }
        let mut sizes = GroupCache::default();
        for &g in per_group.keys() {
            let n = sizes.group(&b, g).unwrap().len();
            assert!(n <= GROUP_RAW_BYTES, "group at {g}: {n} raw bytes");
        }
        // 40 small series (~2.5 groups) and 36 float chunks of 11-18 KiB raw each.
        assert!(per_group.len() >= 7, "{per_group:?}");
        // Read through one shared cache (forwards, backwards) and through fresh ones; with a
        // time window too.
        let mut cache = GroupCache::default();
        let order: Vec<usize> = (0..want.len()).chain((0..want.len()).rev()).collect();
        for i in order {
            let (labels, samples) = &want[i];
            let (got_labels, chunks) = b.series(i as u64).unwrap();
            assert_eq!(&got_labels, labels);
            let mut out = Vec::new();
            b.samples_cached(&chunks, i64::MIN, i64::MAX, &mut out, &mut cache)
                .unwrap();
            let same = |a: &[Sample], b: &[Sample]| {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|(x, y)| x.t == y.t && x.v.to_bits() == y.v.to_bits())
            };
            assert!(same(&out, samples), "{labels}");
            let (lo, hi) = (samples.len() / 3, samples.len() * 2 / 3);
            out.clear();
            b.samples(&chunks, samples[lo].t, samples[hi].t, &mut out)
                .unwrap();
            assert!(same(&out, &samples[lo..=hi]), "{labels} window");
        }
        assert!(cache.entries.len() <= GROUP_CACHE);
        // One slot: every group change inflates again, reads stay the same.
        let mut one = GroupCache::new(0);
        for (i, (labels, samples)) in want.iter().enumerate() {
            let (_, chunks) = b.series(i as u64).unwrap();
            let mut out = Vec::new();
            b.samples_cached(&chunks, i64::MIN, i64::MAX, &mut out, &mut one)
                .unwrap();
            assert_eq!(out.len(), samples.len(), "{labels}");
            assert_eq!(one.entries.len(), 1);
        }
    }

    #[test]
    fn a_damaged_group_fails_its_reads_and_is_not_cached() {
        let tmp = tempfile::tempdir().unwrap();
        let meta = write(tmp.path());
        let dir = tmp.path().join(&meta.id);
        let b = Block::open(&dir).unwrap();
        let (_, chunks) = b.series(0).unwrap();
        let at = b.group_of(chunks[0].r).unwrap() as usize;
        drop(b);
        let cpath = dir.join("chunks");
        let mut c = fs::read(&cpath).unwrap();
        c[at + 20] ^= 0x01;
        fs::write(&cpath, &c).unwrap();
        let b = Block::open(&dir).unwrap();
        assert!(b.verify_chunks().is_err());
        let mut cache = GroupCache::default();
        let mut out = Vec::new();
        for _ in 0..2 {
            let err = b
                .samples_cached(&chunks, i64::MIN, i64::MAX, &mut out, &mut cache)
                .unwrap_err();
            assert!(err.to_string().contains("checksum"), "{err}");
        }
        assert!(cache.entries.iter().all(|e| e.key.is_none()));
    }

    #[test]
    fn out_of_order_series_are_refused_and_empty_writer_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::new(tmp.path()).unwrap();
        let s = [Sample { t: 1, v: 1.0 }];
        w.add_series(l("b", 0), &s).unwrap();
        assert!(w.add_series(l("a", 0), &s).is_err());
        let w = BlockWriter::new(tmp.path()).unwrap();
        assert!(w.finish(0, 1, 1, vec![], false).unwrap().is_none());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
