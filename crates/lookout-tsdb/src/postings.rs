//! Inverted index: label name → label value → sorted series ids, plus the set operations
//! the matcher evaluation needs (intersection with galloping for skewed sizes, union,
//! difference).

use rustc_hash::FxHashMap;

use crate::symbols::Sym;

#[derive(Default)]
pub struct PostingsIndex {
    by_name: FxHashMap<Sym, FxHashMap<Sym, Vec<u64>>>,
    all: Vec<u64>,
}

/// Grows a postings list by an eighth instead of doubling: the few long lists (a job's, a
/// busy metric's, `all`) hold most ids, and doubling left them a quarter empty on average
/// (~1 MB of the 80k-series race's head); a realloc per eighth is cheap beside the
/// appends that fill it.
fn reserve_eighth(v: &mut Vec<u64>) {
    if v.len() == v.capacity() {
        v.reserve_exact(v.len() / 8 + 4);
    }
}

fn insert_sorted(v: &mut Vec<u64>, id: u64) {
    reserve_eighth(v);
    match v.last() {
        None => v.push(id),
        Some(&last) if last < id => v.push(id),
        _ => {
            if let Err(pos) = v.binary_search(&id) {
                v.insert(pos, id);
            }
        }
    }
}

fn remove_sorted(v: &mut Vec<u64>, id: u64) {
    if let Ok(pos) = v.binary_search(&id) {
        v.remove(pos);
    }
}

impl PostingsIndex {
    pub fn add(&mut self, id: u64, labels: &[(Sym, Sym)]) {
        insert_sorted(&mut self.all, id);
        for &(n, v) in labels {
            insert_sorted(self.by_name.entry(n).or_default().entry(v).or_default(), id);
        }
    }

    pub fn remove(&mut self, id: u64, labels: &[(Sym, Sym)]) {
        remove_sorted(&mut self.all, id);
        for &(n, v) in labels {
            let Some(values) = self.by_name.get_mut(&n) else {
                continue;
            };
            if let Some(list) = values.get_mut(&v) {
                remove_sorted(list, id);
                if list.is_empty() {
                    values.remove(&v);
                }
            }
            if values.is_empty() {
                self.by_name.remove(&n);
            }
        }
    }

    pub fn all(&self) -> &[u64] {
        &self.all
    }

    pub fn values(&self, name: Sym) -> Option<&FxHashMap<Sym, Vec<u64>>> {
        self.by_name.get(&name)
    }

    #[cfg(test)]
    pub fn postings(&self, name: Sym, value: Sym) -> &[u64] {
        self.by_name
            .get(&name)
            .and_then(|m| m.get(&value))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn names(&self) -> impl Iterator<Item = (&Sym, &FxHashMap<Sym, Vec<u64>>)> {
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
        assert_eq!(idx.postings(0, 1), &[1, 3]);
        assert_eq!(idx.all(), &[1, 2, 3]);
        idx.remove(3, &[(0, 1), (2, 3)]);
        assert_eq!(idx.postings(0, 1), &[1]);
        assert!(idx.values(2).is_none(), "empty names are dropped");
    }

    #[test]
    fn long_lists_grow_by_an_eighth_and_stay_sorted() {
        let mut idx = PostingsIndex::default();
        // In order, except every tenth id, which comes late and backwards (inserted in the
        // middle), and a few repeats.
        let ids: Vec<u64> = (1..=50_000u64)
            .filter(|i| i % 10 != 0)
            .chain((1..=5_000u64).rev().map(|i| i * 10))
            .chain([5, 50_000])
            .collect();
        for &id in &ids {
            idx.add(id, &[(0, 1)]);
        }
        let want = set(ids.iter().copied());
        assert_eq!(idx.postings(0, 1), want.as_slice());
        assert_eq!(idx.all(), want.as_slice());
        let (len, cap) = (idx.all.len(), idx.all.capacity());
        assert!(cap * 8 <= len * 9 + 64, "{len} ids held in {cap} slots");
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
    }
}
