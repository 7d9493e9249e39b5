//! A simple in-memory store implementing both traits. Used by tests (the PromQL peer-test
//! runner loads its data here) and as a reference the TSDB is checked against. Samples must
//! arrive in time order per series; it has no WAL and no limits.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use parking_lot::RwLock;

use crate::matcher::matches_all;
use crate::{
    AppendError, Appendable, Appender, Labels, Matcher, Queryable, Sample, SelectHints, Series,
    SeriesRef, StorageError, Timestamp,
};

#[derive(Default)]
pub struct MemStorage {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    series: BTreeMap<Labels, Vec<Sample>>,
    refs: HashMap<Labels, SeriesRef>,
}

impl MemStorage {
    pub fn new() -> Self {
        MemStorage::default()
    }

    /// Drops all data.
    pub fn clear(&self) {
        *self.inner.write() = Inner::default();
    }

    /// Number of series held.
    pub fn series_count(&self) -> usize {
        self.inner.read().series.len()
    }

    fn matching<'a>(
        inner: &'a Inner,
        matchers: &'a [Matcher],
        start: Timestamp,
        end: Timestamp,
    ) -> impl Iterator<Item = (&'a Labels, &'a Vec<Sample>)> + 'a {
        inner.series.iter().filter(move |(l, s)| {
            matches_all(matchers, l) && s.iter().any(|x| x.t >= start && x.t <= end)
        })
    }
}

impl Queryable for MemStorage {
    fn select(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<Vec<Series>, StorageError> {
        let inner = self.inner.read();
        let mut out = Vec::new();
        let mut total = 0usize;
        for (labels, samples) in Self::matching(&inner, matchers, hints.start, hints.end) {
            let lo = samples.partition_point(|s| s.t < hints.start);
            let hi = samples.partition_point(|s| s.t <= hints.end);
            total += hi - lo;
            if let Some(limit) = hints.max_samples
                && total > limit
            {
                return Err(StorageError::TooManySamples { limit });
            }
            out.push(Series {
                labels: labels.clone(),
                samples: samples[lo..hi].to_vec(),
            });
            if let Some(limit) = hints.max_series
                && out.len() > limit
            {
                return Err(StorageError::TooManySeries { limit });
            }
        }
        Ok(out)
    }

    fn series(
        &self,
        matchers: &[Matcher],
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<Labels>, StorageError> {
        let inner = self.inner.read();
        Ok(Self::matching(&inner, matchers, start, end)
            .map(|(l, _)| l.clone())
            .collect())
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<String>, StorageError> {
        let inner = self.inner.read();
        let mut names = BTreeSet::new();
        for (l, _) in Self::matching(&inner, matchers, start, end) {
            names.extend(l.iter().map(|l| l.name.clone()));
        }
        Ok(names.into_iter().collect())
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<String>, StorageError> {
        let inner = self.inner.read();
        let mut values = BTreeSet::new();
        for (l, _) in Self::matching(&inner, matchers, start, end) {
            if let Some(v) = l.get(name) {
                values.insert(v.to_string());
            }
        }
        Ok(values.into_iter().collect())
    }
}

impl Appendable for MemStorage {
    fn appender(&self) -> Box<dyn Appender + Send + '_> {
        Box::new(MemAppender {
            store: self,
            pending: Vec::new(),
        })
    }
}

struct MemAppender<'a> {
    store: &'a MemStorage,
    pending: Vec<(Labels, Sample)>,
}

impl Appender for MemAppender<'_> {
    fn append(
        &mut self,
        _series_ref: Option<SeriesRef>,
        labels: &Labels,
        t: Timestamp,
        v: f64,
    ) -> Result<SeriesRef, AppendError> {
        if labels.is_empty() {
            return Err(AppendError::InvalidSeries("empty label set".into()));
        }
        let last = self
            .pending
            .iter()
            .rev()
            .find(|(l, _)| l == labels)
            .map(|(_, s)| *s)
            .or_else(|| {
                self.store
                    .inner
                    .read()
                    .series
                    .get(labels)
                    .and_then(|s| s.last().copied())
            });
        if let Some(last) = last {
            if t < last.t {
                return Err(AppendError::OutOfOrder);
            }
            if t == last.t {
                return if last.v.to_bits() == v.to_bits() {
                    Ok(SeriesRef(1))
                } else {
                    Err(AppendError::DuplicateSampleForTimestamp)
                };
            }
        }
        self.pending.push((labels.clone(), Sample { t, v }));
        Ok(SeriesRef(1))
    }

    fn commit(self: Box<Self>) -> Result<(), StorageError> {
        let mut inner = self.store.inner.write();
        for (labels, sample) in self.pending {
            let next = inner.refs.len() as u64 + 1;
            inner.refs.entry(labels.clone()).or_insert(SeriesRef(next));
            inner.series.entry(labels).or_default().push(sample);
        }
        Ok(())
    }

    fn rollback(self: Box<Self>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_commit_select_roundtrip() {
        let s = MemStorage::new();
        let l = Labels::from_pairs([("__name__", "x"), ("a", "1")]);
        let mut app = s.appender();
        app.append(None, &l, 10, 1.0).unwrap();
        app.append(None, &l, 20, 2.0).unwrap();
        assert_eq!(app.append(None, &l, 15, 2.0), Err(AppendError::OutOfOrder));
        app.commit().unwrap();
        let got = s
            .select(&[Matcher::equal("a", "1")], &SelectHints::range(0, 15))
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].samples, vec![Sample { t: 10, v: 1.0 }]);
        let mut app = s.appender();
        app.append(None, &l, 30, 3.0).unwrap();
        app.rollback();
        assert_eq!(s.select(&[], &SelectHints::range(25, 40)).unwrap().len(), 0);
    }
}
