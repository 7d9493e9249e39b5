//! The write-ahead log: every accepted push is one framed record (`seq`, streams, entries)
//! appended to the active segment before the push is acknowledged. Segments are named by the
//! sequence number of their first record and deleted once every entry they hold is in a chunk.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use lookout_storage::Labels;
use lookout_storage::logs::LogEntry;
use tracing::warn;

use crate::LogStoreError;
use crate::codec::{Reader, frame, put_bytes, put_ivarint, put_uvarint, unframe};

pub struct WalRecord {
    pub seq: u64,
    pub streams: Vec<(Labels, Vec<LogEntry>)>,
}

pub fn encode_record(seq: u64, streams: &[(&Labels, &[LogEntry])]) -> Vec<u8> {
    let mut p = Vec::with_capacity(
        64 + streams
            .iter()
            .map(|(_, es)| es.iter().map(|e| e.line.len() + 12).sum::<usize>())
            .sum::<usize>(),
    );
    p.extend_from_slice(&seq.to_le_bytes());
    put_uvarint(&mut p, streams.len() as u64);
    for (labels, entries) in streams {
        encode_labels(&mut p, labels);
        put_uvarint(&mut p, entries.len() as u64);
        for e in entries.iter() {
            put_ivarint(&mut p, e.ts_ns);
            put_bytes(&mut p, e.line.as_bytes());
            put_uvarint(&mut p, e.structured_metadata.len() as u64);
            for (n, v) in &e.structured_metadata {
                put_bytes(&mut p, n.as_bytes());
                put_bytes(&mut p, v.as_bytes());
            }
        }
    }
    frame(&p)
}

pub fn encode_labels(p: &mut Vec<u8>, labels: &Labels) {
    put_uvarint(p, labels.len() as u64);
    for l in labels.iter() {
        put_bytes(p, l.name.as_bytes());
        put_bytes(p, l.value.as_bytes());
    }
}

pub fn decode_labels(r: &mut Reader<'_>) -> Result<Labels, LogStoreError> {
    let n = r.count()?;
    let mut pairs = Vec::with_capacity(n);
    for _ in 0..n {
        pairs.push((r.str()?.to_string(), r.str()?.to_string()));
    }
    Ok(Labels::from_pairs(pairs))
}

fn decode_record(p: &[u8]) -> Result<WalRecord, LogStoreError> {
    let mut r = Reader::new(p);
    let seq = r.u64_le()?;
    let n = r.count()?;
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let labels = decode_labels(&mut r)?;
        let ne = r.count()?;
        let mut entries = Vec::with_capacity(ne);
        for _ in 0..ne {
            let ts_ns = r.ivarint()?;
            let line = r.str()?.to_string();
            let nm = r.count()?;
            let mut md = Vec::with_capacity(nm);
            for _ in 0..nm {
                md.push((r.str()?.to_string(), r.str()?.to_string()));
            }
            entries.push(LogEntry {
                ts_ns,
                line,
                structured_metadata: md,
            });
        }
        streams.push((labels, entries));
    }
    Ok(WalRecord { seq, streams })
}

pub struct Wal {
    dir: PathBuf,
    /// `(first seq, path)` of every segment, oldest first; the last one is active.
    segments: Vec<(u64, PathBuf)>,
    file: File,
    size: u64,
    pub next_seq: u64,
    segment_bytes: u64,
    dirty: bool,
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.wal"))
}

impl Wal {
    /// Opens the WAL in `dir`, handing every intact record to `replay` in order, then starts a
    /// fresh segment. A torn tail (crash mid-write) is cut off.
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        mut replay: impl FnMut(WalRecord),
        min_next_seq: u64,
    ) -> Result<Wal, LogStoreError> {
        fs::create_dir_all(dir)?;
        let mut segments: Vec<(u64, PathBuf)> = Vec::new();
        for e in fs::read_dir(dir)? {
            let p = e?.path();
            let Some(stem) = p.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if p.extension().and_then(|s| s.to_str()) != Some("wal") {
                continue;
            }
            if let Ok(first) = stem.parse::<u64>() {
                segments.push((first, p));
            }
        }
        segments.sort();
        let mut next_seq = segments.iter().map(|s| s.0).max().unwrap_or(1).max(1);
        for (_, path) in &segments {
            let buf = fs::read(path)?;
            let (recs, valid) = unframe(&buf);
            for rec in recs {
                match decode_record(rec) {
                    Ok(r) => {
                        next_seq = next_seq.max(r.seq + 1);
                        replay(r);
                    }
                    Err(e) => {
                        warn!(segment = %path.display(), error = %e, "skipping an undecodable WAL record");
                    }
                }
            }
            if valid < buf.len() {
                warn!(segment = %path.display(), dropped = buf.len() - valid, "WAL segment has a torn tail; truncating");
                let f = OpenOptions::new().write(true).open(path)?;
                f.set_len(valid as u64)?;
                f.sync_all()?;
            }
        }
        next_seq = next_seq.max(min_next_seq);
        let path = segment_path(dir, next_seq);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        if segments.last().map(|s| &s.1) != Some(&path) {
            segments.push((next_seq, path));
        }
        sync_dir(dir);
        Ok(Wal {
            dir: dir.to_path_buf(),
            segments,
            file,
            size,
            next_seq,
            segment_bytes,
            dirty: false,
        })
    }

    /// Appends a framed record (built with [`encode_record`] using [`Wal::next_seq`]).
    pub fn append(&mut self, framed: &[u8]) -> Result<(), LogStoreError> {
        if self.size > 0 && self.size + framed.len() as u64 > self.segment_bytes {
            self.roll()?;
        }
        self.file.write_all(framed)?;
        self.size += framed.len() as u64;
        self.next_seq += 1;
        self.dirty = true;
        Ok(())
    }

    /// Starts a new segment unless the active one is still empty.
    pub fn roll_if_used(&mut self) -> Result<(), LogStoreError> {
        if self.size > 0 { self.roll() } else { Ok(()) }
    }

    fn roll(&mut self) -> Result<(), LogStoreError> {
        self.file.sync_data()?;
        let path = segment_path(&self.dir, self.next_seq);
        self.file = OpenOptions::new().create(true).append(true).open(&path)?;
        self.segments.push((self.next_seq, path));
        self.size = 0;
        sync_dir(&self.dir);
        Ok(())
    }

    pub fn sync(&mut self) -> Result<(), LogStoreError> {
        if self.dirty {
            self.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Deletes closed segments whose records all have `seq < keep_from`.
    pub fn truncate_before(&mut self, keep_from: u64) -> Result<usize, LogStoreError> {
        let mut removed = 0;
        while self.segments.len() > 1 && self.segments[1].0 <= keep_from {
            let (_, path) = self.segments.remove(0);
            fs::remove_file(&path)?;
            removed += 1;
        }
        Ok(removed)
    }

    pub fn disk_bytes(&self) -> u64 {
        self.segments
            .iter()
            .filter_map(|(_, p)| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_replay_and_torn_tails_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let l = Labels::from_pairs([("app", "a")]);
        let e = vec![LogEntry::new(5, "hello"), LogEntry::new(6, "world")];
        {
            let mut w = Wal::open(dir.path(), 200, |_| panic!("empty"), 1).unwrap();
            for _ in 0..5 {
                let rec = encode_record(w.next_seq, &[(&l, &e)]);
                w.append(&rec).unwrap();
            }
            w.sync().unwrap();
            assert!(w.segments.len() > 1);
        }
        // Tear the last segment.
        let mut segs: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| fs::metadata(p).unwrap().len() > 0)
            .collect();
        segs.sort();
        let last = segs.last().unwrap();
        let len = fs::metadata(last).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(last)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let mut seen = Vec::new();
        let mut w = Wal::open(
            dir.path(),
            200,
            |r| {
                assert_eq!(r.streams[0].1, e);
                seen.push(r.seq)
            },
            1,
        )
        .unwrap();
        assert_eq!(seen, vec![1, 2, 3, 4]);
        assert_eq!(w.next_seq, 5);
        w.truncate_before(5).unwrap();
        assert_eq!(w.segments.len(), 1);
    }
}
