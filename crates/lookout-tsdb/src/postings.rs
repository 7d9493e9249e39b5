//! Inverted index: label name → label value → series ids, plus the set operations the
//! matcher evaluation needs on sorted id slices (intersection with galloping for skewed
//! sizes, union, difference; blocks use them).
//!
//! The head's lists are [`IdList`]s: compressed bitmaps (the `roaring` crate) rather than
//! sorted `u64` vectors. Head series ids are handed out in order, and series of one target
//! are created together, so a label value's ids are dense runs: a bitmap holds them in 2
//! bytes an id or less where the vector took 8 (in the 80k-series scrape race ~0.5 MB of
//! lists instead of ~4.5 MB).

use roaring::RoaringBitmap;
use rustc_hash::FxHashMap;

use crate::symbols::Sym;

/// The ids of one postings list: ids below 2^32 in a compressed bitmap, larger ones (only
/// after four billion series creations) in a sorted vector.
#[derive(Clone, Default, Debug, PartialEq)]
pub struct IdList {
    low: RoaringBitmap,
    high: Vec<u64>,
}

impl IdList {
    pub fn insert(&mut self, id: u64) {
        match u32::try_from(id) {
            Ok(x) => {
                self.low.insert(x);
            }
            Err(_) => {
                if let Err(pos) = self.high.binary_search(&id) {
                    self.high.insert(pos, id);
                }
            }
        }
    }

    pub fn remove(&mut self, id: u64) {
        match u32::try_from(id) {
            Ok(x) => {
                self.low.remove(x);
            }
            Err(_) => {
                if let Ok(pos) = self.high.binary_search(&id) {
                    self.high.remove(pos);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.low.len() as usize + self.high.len()
    }

    pub fn is_empty(&self) -> bool {
        self.low.is_empty() && self.high.is_empty()
    }

    /// The ids in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.low
            .iter()
            .map(u64::from)
            .chain(self.high.iter().copied())
    }

    pub fn to_vec(&self) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.len());
        out.extend(self.iter());
        out
    }

    /// Ids in any of `lists`.
    pub fn union_of<'a>(lists: impl IntoIterator<Item = &'a IdList>) -> IdList {
        let mut out = IdList::default();
        let mut high: Vec<&[u64]> = Vec::new();
        for l in lists {
            out.low |= &l.low;
            if !l.high.is_empty() {
                high.push(&l.high);
            }
        }
        out.high = union(&high);
        out
    }

    /// Keeps the ids that are also in `other`.
    pub fn intersect_with(&mut self, other: &IdList) {
        self.low &= &other.low;
        if !self.high.is_empty() {
            self.high = intersect(&self.high, &other.high);
        }
    }

    /// Drops the ids that are in `other`.
    pub fn subtract(&mut self, other: &IdList) {
        self.low -= &other.low;
        if !self.high.is_empty() && !other.high.is_empty() {
            self.high = subtract(&self.high, &other.high);
        }
    }
}

#[derive(Default)]
pub struct PostingsIndex {
    by_name: FxHashMap<Sym, FxHashMap<Sym, IdList>>,
    all: IdList,
}

impl PostingsIndex {
    pub fn add(&mut self, id: u64, labels: &[(Sym, Sym)]) {
        self.all.insert(id);
        for &(n, v) in labels {
            self.by_name
                .entry(n)
                .or_default()
                .entry(v)
                .or_default()
                .insert(id);
        }
    }

    pub fn remove(&mut self, id: u64, labels: &[(Sym, Sym)]) {
        self.all.remove(id);
        for &(n, v) in labels {
            let Some(values) = self.by_name.get_mut(&n) else {
                continue;
            };
            if let Some(list) = values.get_mut(&v) {
                list.remove(id);
                if list.is_empty() {
                    values.remove(&v);
                }
            }
            if values.is_empty() {
                self.by_name.remove(&n);
            }
        }
    }

    pub fn all(&self) -> &IdList {
        &self.all
    }

    pub fn values(&self, name: Sym) -> Option<&FxHashMap<Sym, IdList>> {
        self.by_name.get(&name)
    }

    #[cfg(test)]
    pub fn postings(&self, name: Sym, value: Sym) -> Vec<u64> {
        self.by_name
            .get(&name)
            .and_then(|m| m.get(&value))
            .map(IdList::to_vec)
            .unwrap_or_default()
    }

    pub fn names(&self) -> impl Iterator<Item = (&Sym, &FxHashMap<Sym, IdList>)> {
        self.by_name.iter()
    }
}

/// Sorted intersection. Gallops through the longer list when sizes differ a lot.
pub fn intersect(a: &[u64], b: &[u64]) -> Vec<u64> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let mut out = Vec::with_capacity(small.len());
    if small.is_empty() {
        return out;
    }
    if large.len() / small.len() >= 16 {
        let mut rest = large;
        for &x in small {
            let pos = gallop(rest, x);
            rest = &rest[pos..];
            match rest.first() {
                Some(&y) if y == x => {
                    out.push(x);
                    rest = &rest[1..];
                }
                Some(_) => {}
                None => break,
            }
        }
        return out;
    }
    let (mut i, mut j) = (0, 0);
    while i < small.len() && j < large.len() {
        match small[i].cmp(&large[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(small[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// First index in sorted `v` whose element is ≥ `x` (exponential then binary search).
fn gallop(v: &[u64], x: u64) -> usize {
    let mut hi = 1;
    while hi < v.len() && v[hi - 1] < x {
        hi *= 2;
    }
    let lo = hi / 2;
    let hi = hi.min(v.len());
    lo + v[lo..hi].partition_point(|&y| y < x)
}

/// Sorted, deduplicated union of several sorted lists.
pub fn union(lists: &[&[u64]]) -> Vec<u64> {
    match lists {
        [] => Vec::new(),
        [one] => one.to_vec(),
        _ => {
            let mut out: Vec<u64> = Vec::with_capacity(lists.iter().map(|l| l.len()).sum());
            for l in lists {
                out.extend_from_slice(l);
            }
            out.sort_unstable();
            out.dedup();
            out
        }
    }
}

/// Elements of sorted `a` that are not in sorted `b`.
pub fn subtract(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len());
    let mut j = 0;
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j < b.len() && b[j] == x {
            continue;
        }
        out.push(x);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn set(v: impl IntoIterator<Item = u64>) -> Vec<u64> {
        v.into_iter().collect::<BTreeSet<_>>().into_iter().collect()
    }

    #[test]
    fn set_operations() {
        let a = vec![1, 3, 5, 7, 9];
        let b = vec![3, 4, 5, 9, 10];
        assert_eq!(intersect(&a, &b), vec![3, 5, 9]);
        assert_eq!(union(&[&a, &b]), vec![1, 3, 4, 5, 7, 9, 10]);
        assert_eq!(subtract(&a, &b), vec![1, 7]);
        let big: Vec<u64> = (0..10_000).collect();
        assert_eq!(intersect(&[5, 77, 9999, 20_000], &big), vec![5, 77, 9999]);
    }

    #[test]
    fn index_add_remove() {
        let mut idx = PostingsIndex::default();
        idx.add(3, &[(0, 1), (2, 3)]);
        idx.add(1, &[(0, 1)]);
        idx.add(2, &[(0, 4)]);
        assert_eq!(idx.postings(0, 1), vec![1, 3]);
        assert_eq!(idx.all().to_vec(), vec![1, 2, 3]);
        idx.remove(3, &[(0, 1), (2, 3)]);
        assert_eq!(idx.postings(0, 1), vec![1]);
        assert!(idx.values(2).is_none(), "empty names are dropped");
    }

    #[test]
    fn lists_hold_ids_past_32_bits_in_order() {
        let mut idx = PostingsIndex::default();
        let big = u64::from(u32::MAX);
        // In order, except every tenth id, which comes late and backwards, a few repeats,
        // and ids on both sides of 2^32.
        let ids: Vec<u64> = (1..=50_000u64)
            .filter(|i| i % 10 != 0)
            .chain((1..=5_000u64).rev().map(|i| i * 10))
            .chain([5, 50_000, big + 7, big, big + 1, big + 7, u64::MAX])
            .collect();
        for &id in &ids {
            idx.add(id, &[(0, 1)]);
        }
        let want = set(ids.iter().copied());
        assert_eq!(idx.postings(0, 1), want);
        assert_eq!(idx.all().to_vec(), want);
        assert_eq!(idx.all().len(), want.len());
        for id in [big, 10, u64::MAX] {
            idx.remove(id, &[(0, 1)]);
        }
        let want: Vec<u64> = want
            .into_iter()
            .filter(|&i| ![big, 10, u64::MAX].contains(&i))
            .collect();
        assert_eq!(idx.postings(0, 1), want);
    }

    proptest! {
        #[test]
        fn ops_match_btreeset(a in proptest::collection::vec(0u64..5000, 0..400), b in proptest::collection::vec(0u64..5000, 0..40)) {
            let (a, b) = (set(a), set(b));
            let sa: BTreeSet<u64> = a.iter().copied().collect();
            let sb: BTreeSet<u64> = b.iter().copied().collect();
            prop_assert_eq!(intersect(&a, &b), sa.intersection(&sb).copied().collect::<Vec<_>>());
            prop_assert_eq!(intersect(&b, &a), sa.intersection(&sb).copied().collect::<Vec<_>>());
            prop_assert_eq!(union(&[&a, &b]), sa.union(&sb).copied().collect::<Vec<_>>());
            prop_assert_eq!(subtract(&a, &b), sa.difference(&sb).copied().collect::<Vec<_>>());
        }

        #[test]
        fn id_lists_match_btreeset(
            a in proptest::collection::vec(prop_oneof![0u64..5000, (u64::from(u32::MAX) - 50)..(u64::from(u32::MAX) + 50)], 0..400),
            b in proptest::collection::vec(prop_oneof![0u64..5000, (u64::from(u32::MAX) - 50)..(u64::from(u32::MAX) + 50)], 0..40),
        ) {
            let sa: BTreeSet<u64> = a.iter().copied().collect();
            let sb: BTreeSet<u64> = b.iter().copied().collect();
            let list = |v: &[u64]| {
                let mut l = IdList::default();
                for &x in v {
                    l.insert(x);
                }
                l
            };
            let (la, lb) = (list(&a), list(&b));
            prop_assert_eq!(la.to_vec(), sa.iter().copied().collect::<Vec<_>>());
            prop_assert_eq!(la.len(), sa.len());
            let mut i = la.clone();
            i.intersect_with(&lb);
            prop_assert_eq!(i.to_vec(), sa.intersection(&sb).copied().collect::<Vec<_>>());
            let mut d = la.clone();
            d.subtract(&lb);
            prop_assert_eq!(d.to_vec(), sa.difference(&sb).copied().collect::<Vec<_>>());
            prop_assert_eq!(IdList::union_of([&la, &lb]).to_vec(), sa.union(&sb).copied().collect::<Vec<_>>());
        }
    }
}
