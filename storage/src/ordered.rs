//! The ordered index: every key with a value, in key order, for scans.
//!
//! Most of it is one sorted array, the *base*. The changes since the base was last rebuilt
//! sit in a small B-tree, the *delta*, a deletion as `None`. A write inserts into a tree of
//! at most `DELTA_MAX` entries instead of one holding every key of the dimension: at a
//! million keys that big tree missed the cache at every level, and its inserts took a third
//! of the CPU of a write. When the delta is full it is merged into a new base in one
//! sequential pass. A scan binary-searches the base and walks it and the delta side by side;
//! neighbouring keys of the base are neighbours in memory, which a B-tree's are only within
//! a node.
//!
//! The point index (`points.rs`) holds the same keys hashed; both change together under the
//! dimension's state lock.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;

use crate::dimension::{IndexKey, Loc};

/// The delta is merged when it reaches an eighth of the base, within these bounds: a merge
/// copies the whole base, so it must be rare, and the delta must stay small enough for its
/// inserts to hit the cache.
const DELTA_MIN: usize = 4096;
const DELTA_MAX: usize = 1 << 17;

/// Every `FENCE`th key of the base is copied into `fences`. A search looks there first, in
/// an array small enough to stay in the cache (1.3 MB for a million keys), then in one
/// block of `FENCE` entries (2 KiB): a handful of cache misses instead of one per step of
/// a binary search over the whole base.
const FENCE: usize = 32;

#[derive(Default)]
pub(crate) struct Ordered {
    /// Sorted by key, each key once.
    base: Vec<(IndexKey, Loc)>,
    /// `base[0].0`, `base[FENCE].0`, `base[2 * FENCE].0`, ...
    fences: Vec<IndexKey>,
    /// Changes since `base` was built; they win over it.
    delta: BTreeMap<IndexKey, Option<Loc>>,
}

impl Ordered {
    /// An index of `sorted`, which must be sorted by key with each key once.
    pub fn from_sorted(sorted: Vec<(IndexKey, Loc)>) -> Ordered {
        debug_assert!(sorted.windows(2).all(|w| w[0].0 < w[1].0));
        let fences = sorted.iter().step_by(FENCE).map(|e| e.0.clone()).collect();
        Ordered { base: sorted, fences, delta: BTreeMap::new() }
    }

    /// The number of base entries whose key satisfies `before`, which must hold for a
    /// prefix of the keys (like `slice::partition_point`).
    fn partition_point(&self, before: impl Fn(&[u8]) -> bool) -> usize {
        let blocks = self.fences.partition_point(|k| before(k));
        if blocks == 0 {
            return 0;
        }
        // Block `blocks - 1` starts with a key before the point; the next one does not.
        let start = (blocks - 1) * FENCE;
        let end = (start + FENCE).min(self.base.len());
        start + self.base[start..end].partition_point(|e| before(&e.0))
    }

    /// Records that `key` now has the value at `loc`, or none.
    pub fn set(&mut self, key: IndexKey, loc: Option<Loc>) {
        self.delta.insert(key, loc);
        if self.delta.len() >= (self.base.len() / 8).clamp(DELTA_MIN, DELTA_MAX) {
            self.merge();
        }
    }

    /// Folds the delta into a new base.
    fn merge(&mut self) {
        let delta = std::mem::take(&mut self.delta);
        let mut out = Vec::with_capacity(self.base.len() + delta.len());
        let mut old = std::mem::take(&mut self.base).into_iter().peekable();
        for (key, loc) in delta {
            while let Some(e) = old.next_if(|e| e.0 < key) {
                out.push(e);
            }
            // The delta's entry replaces the base's, or deletes it.
            old.next_if(|e| e.0 == key);
            if let Some(loc) = loc {
                out.push((key, loc));
            }
        }
        out.extend(old);
        *self = Ordered::from_sorted(out);
    }

    /// Calls `f` with up to `n` entries between `lo` and `hi`, in key order, or in reverse
    /// key order from `hi` down when `rev`.
    pub fn scan(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>, rev: bool, n: usize, f: impl FnMut(&IndexKey, &Loc)) {
        if bounds_are_empty(lo, hi) || n == 0 {
            return;
        }
        let start = match lo {
            Bound::Unbounded => 0,
            Bound::Included(k) => self.partition_point(|e| e < k),
            Bound::Excluded(k) => self.partition_point(|e| e <= k),
        };
        let end = match hi {
            Bound::Unbounded => self.base.len(),
            Bound::Included(k) => self.partition_point(|e| e <= k),
            Bound::Excluded(k) => self.partition_point(|e| e < k),
        };
        let base = &self.base[start..end.max(start)];
        let delta = self.delta.range::<[u8], _>((lo, hi));
        let base = base.iter().map(|(k, l)| (k, l));
        if rev {
            merge(base.rev(), delta.rev(), Ordering::Greater, n, f);
        } else {
            merge(base, delta, Ordering::Less, n, f);
        }
    }

    /// Calls `f` with every entry, in key order.
    pub fn for_each(&self, f: impl FnMut(&IndexKey, &Loc)) {
        self.scan(Bound::Unbounded, Bound::Unbounded, false, usize::MAX, f);
    }
}

/// Walks `base` and `delta`, both in the scan's order (`first` is the ordering of a key
/// that comes before another), handing out up to `n` live entries; a key in both is the
/// delta's.
fn merge<'a>(
    base: impl Iterator<Item = (&'a IndexKey, &'a Loc)>,
    delta: impl Iterator<Item = (&'a IndexKey, &'a Option<Loc>)>,
    first: Ordering,
    mut n: usize,
    mut f: impl FnMut(&IndexKey, &Loc),
) {
    let mut base = base.peekable();
    let mut delta = delta.peekable();
    while n > 0 {
        let from_delta = match (base.peek(), delta.peek()) {
            (None, None) => return,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(b), Some(d)) => {
                let order = b.0.cmp(d.0);
                if order == Ordering::Equal {
                    base.next();
                }
                order != first
            }
        };
        if from_delta {
            if let Some((key, Some(loc))) = delta.next() {
                f(key, loc);
                n -= 1;
            }
        } else if let Some((key, loc)) = base.next() {
            f(key, loc);
            n -= 1;
        }
    }
}

/// Whether no key can lie between `lo` and `hi` (`BTreeMap::range` panics on such bounds).
pub(crate) fn bounds_are_empty(lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> bool {
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b))
        | (Bound::Excluded(a), Bound::Excluded(b)) => a >= b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn loc(i: u32) -> Loc {
        Loc { layer: 1, off: i, size: 10, seq: i as u64 }
    }

    fn key(k: u8) -> IndexKey {
        IndexKey::from_slice(&[k])
    }

    fn bound(b: u8, kind: u8) -> Bound<Vec<u8>> {
        match kind % 3 {
            0 => Bound::Unbounded,
            1 => Bound::Included(vec![b]),
            _ => Bound::Excluded(vec![b]),
        }
    }

    fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
        b.as_ref().map(|v| v.as_slice())
    }

    proptest! {
        /// Any sequence of sets, with merges at any point, scans like a `BTreeMap`, in both
        /// directions and with any bounds and limit.
        #[test]
        fn scans_like_a_btreemap(
            start in proptest::collection::btree_map(any::<u8>(), any::<u32>(), 0..200),
            ops in proptest::collection::vec((any::<u8>(), proptest::option::of(any::<u32>()), any::<bool>()), 0..200),
            scans in proptest::collection::vec((any::<u8>(), 0u8..3, any::<u8>(), 0u8..3, any::<bool>(), 0usize..300), 1..20),
        ) {
            let mut model: BTreeMap<u8, u32> = start.clone();
            let mut ordered = Ordered::from_sorted(start.iter().map(|(k, v)| (key(*k), loc(*v))).collect());
            for (k, v, merge_now) in ops {
                match v {
                    Some(v) => { model.insert(k, v); }
                    None => { model.remove(&k); }
                }
                ordered.set(key(k), v.map(loc));
                if merge_now {
                    ordered.merge();
                }
            }
            for (a, ak, b, bk, rev, n) in scans {
                let (lo, hi) = (bound(a, ak), bound(b, bk));
                let mut got = Vec::new();
                ordered.scan(as_ref(&lo), as_ref(&hi), rev, n, |k, l| got.push((k[0], l.off)));
                let want: Vec<(u8, u32)> = if bounds_are_empty(as_ref(&lo), as_ref(&hi)) {
                    Vec::new()
                } else {
                    let lo = lo.as_ref().map(|v| v[0]);
                    let hi = hi.as_ref().map(|v| v[0]);
                    let range = model.range((lo, hi)).map(|(k, v)| (*k, *v));
                    if rev { range.rev().take(n).collect() } else { range.take(n).collect() }
                };
                prop_assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn searches_find_every_boundary_across_fence_blocks() {
        let keys: Vec<u32> = (0..1000).map(|i| i * 2).collect();
        let o = Ordered::from_sorted(keys.iter().map(|&i| (IndexKey::from_slice(&i.to_be_bytes()), loc(i))).collect());
        for probe in 0..2002u32 {
            let want = keys.partition_point(|&k| k < probe);
            assert_eq!(o.partition_point(|k| k < &probe.to_be_bytes()[..]), want, "probe {probe}");
        }
    }

    #[test]
    fn the_delta_is_merged_once_it_is_full() {
        let mut o = Ordered::default();
        for i in 0..DELTA_MIN as u32 + 10 {
            o.set(IndexKey::from_slice(&i.to_be_bytes()), Some(loc(i)));
        }
        assert_eq!(o.base.len(), DELTA_MIN);
        assert_eq!(o.delta.len(), 10);
        let mut n = 0;
        o.for_each(|_, _| n += 1);
        assert_eq!(n, DELTA_MIN + 10);
    }
}
