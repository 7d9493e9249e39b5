//! The appender: validates samples against the committed state plus the batch so far,
//! creates nothing until `commit` (so a rollback leaves no trace), then writes the whole
//! batch to the WAL with one write and applies it to the head under the commit gate.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use lookout_storage::{
    AppendError, Appender, Labels, SeriesHandle, SeriesRef, StorageError, Timestamp,
};
use rustc_hash::FxHashMap;

use crate::db::Inner;
use crate::head::{Applied, MemSeries, labels_hash};
use crate::wal;

struct Pending {
    series: Option<Arc<MemSeries>>,
    id: u64,
    /// Labels of a series this batch creates.
    labels: Option<Labels>,
    /// Newest in-order timestamp (committed or in this batch) and its value.
    max_t: i64,
    last_v: u64,
    samples: u32,
}

struct PendingSample {
    idx: u32,
    t: i64,
    v: f64,
    ooo: bool,
}

/// An appender's working vectors, kept per thread between batches (a scrape loop appends
/// about as many samples every time), so a steady-state batch does not grow them again.
#[derive(Default)]
struct Buffers {
    series: Vec<Pending>,
    by_id: FxHashMap<u64, u32>,
    samples: Vec<PendingSample>,
    wal: Vec<u8>,
}

impl Buffers {
    /// Larger sets (a huge remote-write request) are dropped rather than kept.
    const KEEP_MAX: usize = 1 << 16;

    fn clear(&mut self) {
        self.series.clear();
        self.by_id.clear();
        self.samples.clear();
        self.wal.clear();
    }
}

thread_local! {
    static SPARE: std::cell::RefCell<Option<Buffers>> = const { std::cell::RefCell::new(None) };
}

/// A batch of samples for a [`crate::Tsdb`]; see [`lookout_storage::Appender`].
pub struct TsdbAppender<'a> {
    db: &'a Inner,
    series: Vec<Pending>,
    by_id: FxHashMap<u64, u32>,
    new_by_labels: HashMap<Labels, u32>,
    samples: Vec<PendingSample>,
    wal: Vec<u8>,
    new_series: usize,
    /// [`Inner::series_removals`] before this appender looked up any series.
    removals_seen: u64,
    /// Newest timestamp accepted (`max_future` ahead of the clock), read once per batch.
    max_t_allowed: Option<i64>,
}

impl<'a> TsdbAppender<'a> {
    pub(crate) fn new(db: &'a Inner) -> Self {
        let b = SPARE
            .try_with(|s| s.borrow_mut().take())
            .ok()
            .flatten()
            .unwrap_or_default();
        TsdbAppender {
            db,
            series: b.series,
            by_id: b.by_id,
            new_by_labels: HashMap::new(),
            samples: b.samples,
            wal: b.wal,
            new_series: 0,
            removals_seen: db.series_removals.load(Ordering::Acquire),
            max_t_allowed: None,
        }
    }

    fn add_existing(&mut self, s: Arc<MemSeries>) -> u32 {
        let (max_t, last_v) = {
            let st = s.state.lock();
            (st.max_t, st.last_v)
        };
        self.add_pending(s, max_t, last_v)
    }

    fn add_pending(&mut self, s: Arc<MemSeries>, max_t: i64, last_v: u64) -> u32 {
        let id = s.id;
        let idx = push_existing(&mut self.series, s, max_t, last_v);
        self.by_id.insert(id, idx);
        idx
    }

    fn validate_new(&self, labels: &Labels) -> Result<(), AppendError> {
        let o = &self.db.opts;
        if labels.is_empty() {
            return Err(AppendError::InvalidSeries("empty label set".into()));
        }
        if labels.len() > o.max_labels_per_series {
            return Err(AppendError::TooManyLabels {
                count: labels.len(),
                limit: o.max_labels_per_series,
            });
        }
        for l in labels {
            if l.name.is_empty() {
                return Err(AppendError::InvalidSeries("empty label name".into()));
            }
            if l.name.len() > o.max_label_name_len {
                return Err(AppendError::LabelTooLong {
                    name: l.name.clone(),
                    limit: o.max_label_name_len,
                });
            }
            if l.value.len() > o.max_label_value_len {
                return Err(AppendError::LabelTooLong {
                    name: l.name.clone(),
                    limit: o.max_label_value_len,
                });
            }
        }
        if let Some(limit) = o.max_series {
            let current = self.db.head.metrics.head_series.get().max(0) as usize;
            if current + self.new_series >= limit {
                self.db.head.metrics.series_limit_rejections.inc();
                warn_series_limit(limit, current);
                return Err(AppendError::SeriesLimit { limit });
            }
        }
        Ok(())
    }

    fn resolve(
        &mut self,
        series_ref: Option<SeriesRef>,
        labels: &Labels,
    ) -> Result<u32, AppendError> {
        let head = &self.db.head;
        if let Some(r) = series_ref {
            if let Some(&i) = self.by_id.get(&r.0) {
                return Ok(i);
            }
            if let Some(s) = head.get_by_id(r.0) {
                return Ok(self.add_existing(s));
            }
        }
        let hash = labels_hash(labels);
        if let Some(s) = head.get_by_labels(labels, hash) {
            if let Some(&i) = self.by_id.get(&s.id) {
                return Ok(i);
            }
            return Ok(self.add_existing(s));
        }
        if let Some(&i) = self.new_by_labels.get(labels) {
            return Ok(i);
        }
        self.validate_new(labels)?;
        let id = head.next_id.fetch_add(1, Ordering::Relaxed);
        let idx = self.series.len() as u32;
        self.series.push(Pending {
            series: None,
            id,
            labels: Some(labels.clone()),
            max_t: i64::MIN,
            last_v: 0,
            samples: 0,
        });
        self.by_id.insert(id, idx);
        self.new_by_labels.insert(labels.clone(), idx);
        self.new_series += 1;
        Ok(idx)
    }

    fn commit_batch(&mut self) -> Result<(), StorageError> {
        if self.samples.is_empty() {
            return Ok(());
        }
        let db = self.db;
        let head = &db.head;
        let m = &head.metrics;
        db.check_open()
            .map_err(|e| StorageError::Other(e.to_string()))?;

        let mut buf = std::mem::take(&mut self.wal);
        buf.reserve(self.samples.len() * 14 + 64);
        let mut w = db.wal.lock();
        // A block cut may have moved the line since these were validated; below it, samples
        // are stored as out-of-order (merged with the block at compaction).
        let min_valid = head.min_valid.load(Ordering::SeqCst);
        let mut ooo_count = 0;
        for s in &mut self.samples {
            if !s.ooo && s.t < min_valid {
                s.ooo = true;
            }
            ooo_count += usize::from(s.ooo);
        }
        // Series are created under the WAL lock, where garbage collection cannot interleave.
        // Series found existing are checked for deletion only when some were deleted since
        // this appender started (deletions happen under this lock).
        let removed = db.series_removals.load(Ordering::Acquire) != self.removals_seen;
        let mut created: Vec<u32> = Vec::new();
        for (i, p) in self.series.iter_mut().enumerate() {
            if p.samples == 0 || (p.series.is_some() && !removed) {
                continue;
            }
            let recreate = match &p.series {
                None => p.labels.clone(),
                Some(s) => s.state.lock().deleted.as_deref().cloned(),
            };
            if let Some(labels) = recreate {
                let id = if p.series.is_none() {
                    p.id
                } else {
                    head.next_id.fetch_add(1, Ordering::Relaxed)
                };
                let hash = labels_hash(&labels);
                let (s, was_created) = head.get_or_create(&labels, hash, id);
                p.id = s.id;
                p.series = Some(s);
                if was_created {
                    p.labels = Some(labels);
                    created.push(i as u32);
                }
            }
        }
        if !created.is_empty() {
            let start = wal::begin_frame(&mut buf, wal::REC_SERIES);
            for &i in &created {
                let p = &self.series[i as usize];
                if let Some(l) = &p.labels {
                    wal::put_series(
                        &mut buf,
                        p.id,
                        l.iter().map(|l| (l.name.as_str(), l.value.as_str())),
                    );
                }
            }
            wal::finish_frame(&mut buf, start);
        }
        let series = &self.series;
        let frame = |ooo: bool| {
            self.samples
                .iter()
                .filter(move |s| s.ooo == ooo)
                .map(|s| (series[s.idx as usize].id, s.t, s.v))
        };
        let inorder_count = self.samples.len() - ooo_count;
        wal::put_samples_frame_from(&mut buf, false, inorder_count, frame(false));
        if ooo_count > 0 {
            wal::put_samples_frame_from(&mut buf, true, ooo_count, frame(true));
        }
        let seg = match db.wal.write(&mut w, &buf) {
            Ok(seg) => seg,
            Err(e) => {
                // Series created by this batch have no WAL record: take them out again (as
                // garbage collection would) so the next batch creates and logs them anew.
                // Still under the WAL lock, so no commit has applied samples to them.
                for &i in &created {
                    let p = &mut self.series[i as usize];
                    if let (Some(s), Some(labels)) = (p.series.take(), p.labels.take()) {
                        s.state.lock().deleted = Some(Box::new(labels));
                        head.remove(&s);
                    }
                }
                db.series_removals.fetch_add(1, Ordering::Release);
                m.wal_write_failures.inc();
                tracing::error!(error = %e, samples = self.samples.len(), "WAL write failed (disk full?); batch not committed, nothing stored");
                return Err(StorageError::Io(e));
            }
        };
        self.wal = buf;
        let gate = db.gate.write();
        drop(w);

        let (mut stored, mut ooo_stored) = (0u64, 0u64);
        let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
        for s in &self.samples {
            let Some(series) = &self.series[s.idx as usize].series else {
                continue;
            };
            let mut st = series.state.lock();
            if st.deleted.is_some() {
                // Unreachable by construction: collection holds the WAL lock and waits for
                // applies. Dropping is the safe outcome should it ever happen.
                continue;
            }
            let r = if s.ooo {
                st.insert_ooo(series.id, s.t, s.v, seg, &head.ctx())
            } else {
                st.append_in_order(series.id, s.t, s.v, seg, &head.ctx())
            };
            match r {
                Ok(Applied::Stored) => {
                    stored += 1;
                    ooo_stored += u64::from(s.ooo);
                    min_t = min_t.min(s.t);
                    max_t = max_t.max(s.t);
                }
                Ok(Applied::Noop) => {}
                // A concurrent commit got in first with newer data.
                Err(AppendError::OutOfOrder) => {
                    m.out_of_order_samples.inc();
                }
                Err(AppendError::DuplicateSampleForTimestamp) => {
                    m.duplicate_samples.inc();
                }
                Err(e) => {
                    tracing::warn!(series = series.id, error = %e, "sample dropped at commit");
                }
            }
        }
        if stored > 0 {
            let new_max = head.max_t.fetch_max(max_t, Ordering::Relaxed).max(max_t);
            let new_min = head.min_t.fetch_min(min_t, Ordering::Relaxed).min(min_t);
            m.max_time.set(new_max);
            m.min_time.set(new_min);
        }
        drop(gate);
        m.samples_appended.inc_by(stored);
        m.ooo_samples_appended.inc_by(ooo_stored);
        if db.opts.wal_fsync_interval.is_zero() {
            db.sync_wal()?;
        }
        Ok(())
    }
}

impl TsdbAppender<'_> {
    /// Checks shared by both append paths: the store is open and `t` not too far ahead.
    fn check_time(&mut self, t: Timestamp) -> Result<(), AppendError> {
        let db = self.db;
        if db.closed.load(Ordering::Relaxed) {
            return Err(AppendError::Storage("storage is closed".into()));
        }
        if let Some(f) = db.opts.max_future {
            // The clock is read once per batch (a scrape or a request), not per sample.
            let limit = *self.max_t_allowed.get_or_insert_with(|| {
                let ahead = i64::try_from(f.as_millis()).unwrap_or(i64::MAX);
                db.opts.clock.now_ms().saturating_add(ahead)
            });
            if t > limit {
                db.head.metrics.too_new_samples.inc();
                return Err(AppendError::TooNew);
            }
        }
        Ok(())
    }

    /// Validates sample `(t, v)` for the batch's series `idx` and queues it.
    fn append_at(&mut self, idx: u32, t: Timestamp, v: f64) -> Result<SeriesRef, AppendError> {
        let db = self.db;
        let m = &db.head.metrics;
        let head_max = db.head.max_t.load(Ordering::Relaxed);
        if head_max != i64::MIN && t < head_max.saturating_sub(db.retention_ms) {
            m.too_old_samples.inc();
            return Err(AppendError::TooOld);
        }
        let min_valid = db.head.min_valid.load(Ordering::Relaxed);
        let p = &mut self.series[idx as usize];
        let mut ooo = if p.max_t == i64::MIN || t > p.max_t {
            false
        } else if t == p.max_t {
            if v.to_bits() == p.last_v {
                return Ok(SeriesRef(p.id));
            }
            m.duplicate_samples.inc();
            return Err(AppendError::DuplicateSampleForTimestamp);
        } else if db.ooo_window_ms > 0 {
            if t < head_max.max(p.max_t).saturating_sub(db.ooo_window_ms) {
                m.too_old_samples.inc();
                return Err(AppendError::TooOld);
            }
            true
        } else {
            m.out_of_order_samples.inc();
            return Err(AppendError::OutOfOrder);
        };
        if !ooo && t < min_valid {
            // That time range is already in a block: only out-of-order ingestion may add to it.
            if db.ooo_window_ms > 0 && t >= head_max.max(p.max_t).saturating_sub(db.ooo_window_ms) {
                ooo = true;
            } else {
                m.too_old_samples.inc();
                return Err(AppendError::TooOld);
            }
        }
        if !ooo {
            p.max_t = t;
            p.last_v = v.to_bits();
        }
        p.samples += 1;
        let id = p.id;
        self.samples.push(PendingSample { idx, t, v, ooo });
        Ok(SeriesRef(id))
    }
}

impl Appender for TsdbAppender<'_> {
    fn append(
        &mut self,
        series_ref: Option<SeriesRef>,
        labels: &Labels,
        t: Timestamp,
        v: f64,
    ) -> Result<SeriesRef, AppendError> {
        self.check_time(t)?;
        let idx = self.resolve(series_ref, labels)?;
        self.append_at(idx, t, v)
    }

    fn append_by_ref(
        &mut self,
        series_ref: SeriesRef,
        t: Timestamp,
        v: f64,
    ) -> Result<SeriesRef, AppendError> {
        self.check_time(t)?;
        let idx = match self.by_id.get(&series_ref.0) {
            Some(&i) => i,
            None => match self.db.head.get_by_id(series_ref.0) {
                Some(s) => self.add_existing(s),
                None => return Err(AppendError::UnknownSeriesRef),
            },
        };
        self.append_at(idx, t, v)
    }

    fn keeps_references(&self) -> bool {
        true
    }

    fn series_handle(&mut self, series_ref: SeriesRef) -> Option<SeriesHandle> {
        self.db.head.get_by_id(series_ref.0).map(SeriesHandle::new)
    }

    fn append_by_handle(
        &mut self,
        handle: &SeriesHandle,
        t: Timestamp,
        v: f64,
    ) -> Result<SeriesRef, AppendError> {
        self.check_time(t)?;
        let Some(s) = handle.get::<MemSeries>() else {
            return Err(AppendError::UnknownSeriesRef);
        };
        // One probe finds the series in this batch or the slot it takes.
        let slot = match self.by_id.entry(s.id) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let idx = *e.get();
                return self.append_at(idx, t, v);
            }
            std::collections::hash_map::Entry::Vacant(slot) => slot,
        };
        let (max_t, last_v, chunk) = {
            let st = s.state.lock();
            if st.deleted.is_some() {
                // Garbage collected since the handle was taken.
                return Err(AppendError::UnknownSeriesRef);
            }
            let chunk = st
                .head
                .as_ref()
                .map(|h| (h.c.bytes().as_ptr(), h.c.tail_ptr()));
            (st.max_t, st.last_v, chunk)
        };
        // The commit writes at the open chunk's tail and reads and rewrites its sample count
        // in the header at its start: start loading both now (addresses only, after the
        // unlock: the hint needs no lock, and the unlock does not wait for it).
        if let Some((start, tail)) = chunk {
            lookout_storage::prefetch(start, 64);
            lookout_storage::prefetch(tail, 64);
        }
        let idx = push_existing(&mut self.series, s, max_t, last_v);
        slot.insert(idx);
        self.append_at(idx, t, v)
    }

    fn commit(mut self: Box<Self>) -> Result<(), StorageError> {
        self.commit_batch()
    }

    fn rollback(self: Box<Self>) {}
}

impl Drop for TsdbAppender<'_> {
    fn drop(&mut self) {
        let mut b = Buffers {
            series: std::mem::take(&mut self.series),
            by_id: std::mem::take(&mut self.by_id),
            samples: std::mem::take(&mut self.samples),
            wal: std::mem::take(&mut self.wal),
        };
        if b.series.capacity() > Buffers::KEEP_MAX
            || b.samples.capacity() > Buffers::KEEP_MAX
            || b.wal.capacity() > Buffers::KEEP_MAX * 16
        {
            return;
        }
        b.clear();
        let _ = SPARE.try_with(|s| *s.borrow_mut() = Some(b));
    }
}

/// Adds an existing series to a batch's list; returns its index (the caller records it in
/// `by_id`).
fn push_existing(list: &mut Vec<Pending>, s: Arc<MemSeries>, max_t: i64, last_v: u64) -> u32 {
    let idx = list.len() as u32;
    list.push(Pending {
        id: s.id,
        series: Some(s),
        labels: None,
        max_t,
        last_v,
        samples: 0,
    });
    idx
}

/// Last time (Unix seconds) the series-limit warning was logged.
static SERIES_LIMIT_WARNED: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Logs the refusal of new series at most once a minute, phrased like Mimir's
/// `per-user series limit of N exceeded`, with what to do about it.
fn warn_series_limit(limit: usize, current: usize) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let last = SERIES_LIMIT_WARNED.load(Ordering::Relaxed);
    if now - last >= 60
        && SERIES_LIMIT_WARNED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            limit,
            active_series = current,
            "per-instance series limit of {limit} exceeded: new series are refused (counted in \
             lookout_tsdb_series_limit_rejections_total); find the metric that exploded with \
             /api/v1/status/tsdb, drop it with metric_relabel_configs or cap targets with \
             sample_limit, or raise --max-series"
        );
    }
}

#[cfg(test)]
mod tests {
    use lookout_storage::{Appendable, Matcher, Queryable, SelectHints};

    use super::*;
    use crate::{Tsdb, TsdbOptions};

    fn samples_of(db: &Tsdb, name: &str) -> Vec<(i64, f64)> {
        db.select(
            &[Matcher::equal("__name__", name)],
            &SelectHints::range(i64::MIN, i64::MAX),
        )
        .unwrap()
        .iter()
        .flat_map(|s| s.samples.iter().map(|p| (p.t, p.v)))
        .collect()
    }

    /// A series collected between an append and its commit is created anew by the commit
    /// (its existing series are checked only because a collection happened meanwhile), and
    /// an appender started after the collection does not check at all.
    #[test]
    fn a_series_collected_before_the_commit_is_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let db = Tsdb::open(dir.path(), TsdbOptions::default()).unwrap();
        let m = Labels::from_pairs([("__name__", "m")]);
        let mut app = db.appender();
        let r = app.append(None, &m, 1000, 1.0).unwrap();
        app.commit().unwrap();

        let later = 1000 + 100 * 24 * 3_600_000;
        let mut pending = db.appender();
        let h = pending.series_handle(r).unwrap();
        assert_eq!(pending.append_by_handle(&h, later, 2.0), Ok(r));
        // Time moves past the retention: `m` is left empty and collected.
        let mut app = db.appender();
        app.append(
            None,
            &Labels::from_pairs([("__name__", "other")]),
            later,
            1.0,
        )
        .unwrap();
        app.commit().unwrap();
        assert_eq!(db.enforce_retention().unwrap().series_removed, 1);
        assert!(db.appender().series_handle(r).is_none(), "collected");
        pending.commit().unwrap();
        assert_eq!(samples_of(&db, "m"), vec![(later, 2.0)]);

        let mut app = db.appender();
        let r2 = app.append(None, &m, later + 1000, 3.0).unwrap();
        assert_ne!(r2, r);
        app.commit().unwrap();
        assert_eq!(
            samples_of(&db, "m"),
            vec![(later, 2.0), (later + 1000, 3.0)]
        );
    }
}
