//! Ordered, double-ended iteration over a dimension.
//!
//! The iterator never holds the index lock while the caller works: it copies a batch of
//! keys and locations under the read lock, releases it, and hands them out one by one.
//! The front and back each remember the last key they handed out and narrow the range
//! past it, so the two ends never hand out the same key.

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Arc;

use crate::dimension::{DimInner, Loc};
use crate::segment::Segment;
use crate::{Result, Value, Version};

/// The first refill copies a few entries (a short scan should not pay for a long one);
/// each later refill doubles, up to `MAX_BATCH`.
const FIRST_BATCH: usize = 16;
const MAX_BATCH: usize = 256;

/// A key and where its value was when the batch was copied; the value is read and
/// verified only when handed out, so a short scan does not pay for the whole batch.
type Pending = (Vec<u8>, Result<(Arc<Segment>, Loc)>);

/// Iterator over `(key, value)` pairs in key order; see [`Dimension::range`](crate::Dimension::range).
pub struct Iter {
    dim: Arc<DimInner>,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    front: VecDeque<Pending>,
    back: VecDeque<Pending>,
    exhausted: bool,
    batch: usize,
}

impl std::fmt::Debug for Iter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter").field("lo", &self.lo).field("hi", &self.hi).finish_non_exhaustive()
    }
}

impl Iter {
    pub(crate) fn new(dim: Arc<DimInner>, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>) -> Iter {
        Iter { dim, lo, hi, front: VecDeque::new(), back: VecDeque::new(), exhausted: false, batch: FIRST_BATCH }
    }

    fn range_is_empty(&self) -> bool {
        match (&self.lo, &self.hi) {
            (Bound::Included(a), Bound::Included(b)) => a > b,
            (Bound::Included(a), Bound::Excluded(b))
            | (Bound::Excluded(a), Bound::Included(b))
            | (Bound::Excluded(a), Bound::Excluded(b)) => a >= b,
            _ => false,
        }
    }

    /// Copies the next batch from one end of the remaining range.
    fn refill(&mut self, from_back: bool) {
        if self.exhausted || self.range_is_empty() {
            self.exhausted = true;
            return;
        }
        if let Err(e) = self.dim.check_live() {
            self.front.push_back((Vec::new(), Err(e)));
            self.exhausted = true;
            return;
        }
        let state = self.dim.state.read();
        let range = state.index.range::<[u8], _>((bound_ref(&self.lo), bound_ref(&self.hi)));
        let n = self.batch;
        self.batch = (n * 2).min(MAX_BATCH);
        let mut got = Vec::with_capacity(n);
        if from_back {
            for (k, loc) in range.rev().take(n) {
                got.push((k.to_vec(), state.segment(loc.layer).map(|s| (s.clone(), *loc))));
            }
        } else {
            for (k, loc) in range.take(n) {
                got.push((k.to_vec(), state.segment(loc.layer).map(|s| (s.clone(), *loc))));
            }
        }
        drop(state);
        let Some((last, _)) = got.last() else {
            self.exhausted = true;
            return;
        };
        if from_back {
            self.hi = Bound::Excluded(last.clone());
            self.back.extend(got);
        } else {
            self.lo = Bound::Excluded(last.clone());
            self.front.extend(got);
        }
    }
}

fn bound_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn resolve((key, at): Pending) -> Result<(Vec<u8>, Value)> {
    let (seg, loc) = at?;
    let value = seg.read_value(seg.map(), loc.off, Version(loc.seq))?;
    Ok((key, value))
}

impl Iterator for Iter {
    type Item = Result<(Vec<u8>, Value)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.front.is_empty() {
            self.refill(false);
        }
        // When the middle is used up, what the back end fetched is next in line.
        let item = self.front.pop_front().or_else(|| self.back.pop_back())?;
        Some(resolve(item))
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.back.is_empty() {
            self.refill(true);
        }
        let item = self.back.pop_front().or_else(|| self.front.pop_back())?;
        Some(resolve(item))
    }
}
