//! Merging the key runs found on open into the index's list of keys.
//!
//! Opening reads every sealed layer's key index (sorted by key, each key once) and replays
//! the active region (in log order). Each is a *run*; a key can be in several, and its
//! newest entry is the one the index keeps. The runs used to be concatenated and sorted
//! as a whole, which moved every 80-byte entry a handful of times; they are already
//! sorted, so a k-way merge moves each once and finds the newest entry of a key on the way.
//! The key space is split in two and each half merged on its own core.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Range;

use crate::dimension::{IndexKey, Loc};

/// A key's entry found while opening: key, sequence number, location (None: deleted).
pub(crate) type Found = (IndexKey, u64, Option<Loc>);

/// Below this many entries one core merges everything.
const SPLIT_MIN: usize = 1 << 14;

/// Every key once, in key order, with its newest entry: the one with the highest sequence
/// number, and of those the latest in `items` (a batch that writes a key twice gives both
/// entries one sequence number; compaction copies an entry, sequence number and all, into
/// a later layer). That is what a stable sort of `items` by key and sequence number, keeping
/// the last of each key, gives.
///
/// `runs` are ranges of `items`, in order, covering it. A run that is not sorted by key
/// (the active region's always, a damaged key index's perhaps) is sorted here first.
pub(crate) fn newest(mut items: Vec<Found>, runs: &[Range<usize>]) -> impl Iterator<Item = Found> {
    for run in runs {
        let run = &mut items[run.clone()];
        if !run.is_sorted_by(|a, b| a.0 <= b.0) {
            run.sort_by(|a, b| a.0.cmp(&b.0));
        }
    }
    let order = merge_order(&items, runs);
    // Each index is taken once; the emptied slot is never read again. Handed out one by
    // one, so the caller builds its index without a second list of every entry.
    order.into_iter().map(move |i| std::mem::take(&mut items[i as usize]))
}

/// The indexes of the newest entry of every key, in key order, on two cores when there is
/// enough to do: the runs are cut at one key, and each side merged on its own.
fn merge_order(items: &[Found], runs: &[Range<usize>]) -> Vec<u32> {
    let longest = runs.iter().max_by_key(|r| r.len());
    let pivot = match longest {
        Some(r) if items.len() >= SPLIT_MIN => &items[r.start + r.len() / 2].0,
        _ => return merge(items, runs),
    };
    // Every entry of a key falls on the same side of the cut.
    let (low, high): (Vec<_>, Vec<_>) = runs
        .iter()
        .map(|r| {
            let cut = r.start + items[r.clone()].partition_point(|e| e.0 < *pivot);
            (r.start..cut, cut..r.end)
        })
        .unzip();
    let (mut first, second) = std::thread::scope(|s| {
        let other = s.spawn(|| merge(items, &high));
        let mine = merge(items, &low);
        match other.join() {
            Ok(theirs) => (mine, theirs),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    });
    first.extend(second);
    first
}

/// One core's k-way merge: a heap holds each run's next key; for each key, every run's
/// entry of it is popped and the newest kept.
fn merge(items: &[Found], runs: &[Range<usize>]) -> Vec<u32> {
    let mut next: Vec<Range<usize>> = runs.to_vec();
    let mut heap: BinaryHeap<Reverse<(&[u8], usize)>> = BinaryHeap::with_capacity(runs.len());
    for (run, r) in next.iter().enumerate() {
        if !r.is_empty() {
            heap.push(Reverse((&items[r.start].0[..], run)));
        }
    }
    let mut out = Vec::with_capacity(runs.iter().map(|r| r.len()).sum());
    while let Some(Reverse((key, run))) = heap.pop() {
        let mut best = take(&mut next[run], &mut heap, items, run);
        while let Some(Reverse((k, other))) = heap.peek().copied() {
            if k != key {
                break;
            }
            heap.pop();
            let i = take(&mut next[other], &mut heap, items, other);
            // Runs are in order, so a later index is a later entry.
            if (items[i].1, i) > (items[best].1, best) {
                best = i;
            }
        }
        out.push(best as u32);
    }
    out
}

/// Takes the next index of `run` (whose key is at the top of the heap), pushing the
/// run's following key, if any.
fn take<'a>(
    range: &mut Range<usize>,
    heap: &mut BinaryHeap<Reverse<(&'a [u8], usize)>>,
    items: &'a [Found],
    run: usize,
) -> usize {
    let i = range.start;
    range.start += 1;
    if range.start < range.end {
        heap.push(Reverse((&items[range.start].0[..], run)));
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn loc(i: usize) -> Option<Loc> {
        Some(Loc { layer: 1, off: i as u32, size: 1, seq: 0 })
    }

    /// What opening did before: a stable sort by key and sequence number, keeping the last
    /// entry of each key.
    fn model(items: &[Found]) -> Vec<Found> {
        let mut sorted = items.to_vec();
        sorted.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut out: Vec<Found> = Vec::new();
        for e in sorted {
            if out.last().is_some_and(|l| l.0 == e.0) {
                out.pop();
            }
            out.push(e);
        }
        out
    }

    /// Runs of `keys` distinct keys and few sequence numbers: with few keys, a key is in many runs, with
    /// equal sequence numbers, and more than once in an unsorted run; the offset records each
    /// entry's place in `items`.
    fn runs(sizes: Vec<(usize, bool)>, seed: u64, keys: u64) -> (Vec<Found>, Vec<Range<usize>>) {
        let (mut items, mut runs, mut x) = (Vec::new(), Vec::new(), seed | 1);
        for (size, sorted) in sizes {
            let start = items.len();
            let mut run: Vec<(IndexKey, u64)> = (0..size)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (IndexKey::from_slice(format!("k{:06}", (x >> 33) % keys).as_bytes()), (x >> 20) % 5)
                })
                .collect();
            if sorted {
                // A sealed layer's key index: sorted, each key once.
                run.sort();
                run.dedup_by(|a, b| a.0 == b.0);
            }
            for (key, seq) in run {
                let at = items.len();
                items.push((key, seq, loc(at)));
            }
            runs.push(start..items.len());
        }
        (items, runs)
    }

    proptest! {
        #[test]
        fn merging_runs_keeps_what_a_stable_sort_keeps(
            sizes in proptest::collection::vec((0usize..400, proptest::bool::weighted(0.8)), 0..12),
            seed in any::<u64>(),
        ) {
            let (items, runs) = runs(sizes, seed, 151);
            prop_assert_eq!(newest(items.clone(), &runs).collect::<Vec<_>>(), model(&items));
        }
    }

    /// Large enough to be merged on two cores.
    #[test]
    fn two_cores_merge_like_one() {
        let (items, runs) = runs(vec![(30_000, true), (5_000, false), (20_000, true), (9_000, false)], 42, 40_000);
        assert!(items.len() >= SPLIT_MIN);
        assert_eq!(newest(items.clone(), &runs).collect::<Vec<_>>(), model(&items));
    }
}
