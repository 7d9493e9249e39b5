//! Reference-counted string interning. Series keep their labels as `(name, value)` pairs of
//! 32-bit symbol ids (8 bytes per label instead of two `String`s); the postings index is keyed
//! by the same ids. A symbol is freed when the last series using it is garbage collected.

use std::sync::Arc;

use parking_lot::{RwLock, RwLockReadGuard};
use rustc_hash::FxHashMap;

pub type Sym = u32;

#[derive(Default)]
pub struct SymbolTable {
    inner: RwLock<Inner>,
}

#[derive(Default)]
pub struct Inner {
    strs: Vec<Option<Arc<str>>>,
    refs: Vec<u32>,
    ids: FxHashMap<Arc<str>, Sym>,
    free: Vec<Sym>,
}

impl Inner {
    /// The string of a live symbol (`""` for an unknown id, which callers never hold).
    #[inline]
    pub fn str(&self, id: Sym) -> &str {
        match self.strs.get(id as usize) {
            Some(Some(s)) => s,
            _ => "",
        }
    }

    pub fn lookup(&self, s: &str) -> Option<Sym> {
        self.ids.get(s).copied()
    }

    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.ids.len()
    }
}

impl SymbolTable {
    pub fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read()
    }

    /// Interns every string of `pairs`, taking one reference per occurrence.
    pub fn intern_pairs<'a>(
        &self,
        pairs: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Box<[(Sym, Sym)]> {
        let mut g = self.inner.write();
        pairs
            .map(|(n, v)| (intern(&mut g, n), intern(&mut g, v)))
            .collect()
    }

    /// Drops one reference per occurrence; symbols reaching zero are freed.
    pub fn release_pairs(&self, pairs: &[(Sym, Sym)]) {
        let mut g = self.inner.write();
        for &(n, v) in pairs {
            release(&mut g, n);
            release(&mut g, v);
        }
    }
}

fn intern(g: &mut Inner, s: &str) -> Sym {
    if let Some(&id) = g.ids.get(s) {
        g.refs[id as usize] += 1;
        return id;
    }
    let arc: Arc<str> = Arc::from(s);
    let id = match g.free.pop() {
        Some(id) => {
            g.strs[id as usize] = Some(arc.clone());
            g.refs[id as usize] = 1;
            id
        }
        None => {
            let id = g.strs.len() as Sym;
            g.strs.push(Some(arc.clone()));
            g.refs.push(1);
            id
        }
    };
    g.ids.insert(arc, id);
    id
}

fn release(g: &mut Inner, id: Sym) {
    let Some(r) = g.refs.get_mut(id as usize) else {
        return;
    };
    if *r == 0 {
        return;
    }
    *r -= 1;
    if *r == 0
        && let Some(s) = g.strs[id as usize].take()
    {
        g.ids.remove(&s);
        g.free.push(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refcounted_interning_frees_and_reuses() {
        let t = SymbolTable::default();
        let a = t.intern_pairs([("job", "api"), ("instance", "api")].into_iter());
        assert_eq!(a[0].1, a[1].1, "same string, same symbol");
        assert_eq!(t.read().len(), 3);
        let b = t.intern_pairs([("job", "db")].into_iter());
        assert_eq!(b[0].0, a[0].0);
        t.release_pairs(&a);
        {
            let g = t.read();
            assert_eq!(g.len(), 2, "api and instance freed, job kept by b");
            assert_eq!(g.str(b[0].0), "job");
            assert_eq!(g.lookup("api"), None);
        }
        let c = t.intern_pairs([("x", "y")].into_iter());
        assert!(c[0].0 < 4 && c[0].1 < 4, "freed ids are reused");
        assert_eq!(t.read().str(c[0].1), "y");
    }
}
