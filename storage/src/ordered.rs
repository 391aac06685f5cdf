//! The ordered index: every key with a value, in key order, for scans.
//!
//! Most of it is one sorted array, the *base*. The changes since the base was last rebuilt
//! sit in a small B-tree, the *delta*, a deletion as `None` (with large sorted batches kept
//! as runs beside it: see `Changes`). A write inserts into a tree of
//! at most `DELTA_MAX` entries instead of one holding every key of the dimension: at a
//! million keys that big tree missed the cache at every level, and its inserts took a third
//! of the CPU of a write. When the delta is full it is merged into a new base in one
//! sequential pass. A scan binary-searches the base and walks it and the delta side by side;
//! neighbouring keys of the base are neighbours in memory, which a B-tree's are only within
//! a node.
//!
//! On a large base the merge runs on a thread of its own (at a million keys it takes 70 to
//! 90 ms, which held every writer and scan when it ran in the writer's critical section):
//! the full delta is frozen, a fresh delta takes the new writes, and scans read all three
//! until the next write installs the new base.
//!
//! The point index (`points.rs`) holds the same keys hashed; both change together under the
//! dimension's state lock.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::dimension::{IndexKey, Loc};

/// The delta is merged when it reaches an eighth of the base, within these bounds: a merge
/// copies the whole base, so it must be rare, and the delta must stay small enough for its
/// inserts to hit the cache.
const DELTA_MIN: usize = 4096;
const DELTA_MAX: usize = 1 << 17;

/// Bases this large are merged on a thread of their own; smaller ones take a few
/// milliseconds at most, and merging them in place keeps small stores simple.
const BACKGROUND_MIN: usize = 1 << 16;

/// A retired base's arrays are kept for the next merge this long after their base was
/// replaced (see `Spare`), then freed.
pub(crate) const SPARE_KEEP: Duration = Duration::from_secs(5);

/// At most one merge of changes that stopped coming (`Ordered::merge_if_idle`) per this
/// long: each copies the whole base (70 to 90 ms at a million keys), and a trickle of writes
/// a few seconds apart would otherwise pay for one after every write.
pub(crate) const IDLE_MERGE_GAP: Duration = Duration::from_secs(30);

/// `set_sorted` inserts a batch more than this many times smaller than the delta key by
/// key instead of appending it: appending copies the whole delta.
const APPEND_RATIO: usize = 8;

/// `set_sorted` keeps a batch of at least this many changes as a run of its own (see
/// `Changes`). Small in tests, so that the model tests build many runs.
const RUN_MIN: usize = if cfg!(test) { 3 } else { 4096 };

/// At most this many runs wait for a merge; past it they are folded into one.
const RUNS_MAX: usize = 16;

/// Deferred batches (see `Ordered::defer`) are inserted into the tree at once when there are
/// more than this many of them, or more than `RECENT_ENTRIES_MAX` changes in them: each is
/// one more sequence for every scan to overlay until then.
const RECENT_RUNS_MAX: usize = 8;
const RECENT_ENTRIES_MAX: usize = if cfg!(test) { 5 } else { 4096 };

/// A search of the base compares integers, not keys: each key's `heads` entry holds 8 of its
/// bytes (those after the prefix every key shares), every `FENCE`th head is copied into
/// `fences`, and every `FENCE`th fence into `tops`. The search runs over `tops` (8 KB for a
/// million keys, which stays in the cache), then over one block of `FENCE` fences, then one
/// block of `FENCE` heads, and compares whole keys only where heads are equal. Each block is
/// 256 bytes, four cache lines, asked for all at once before it is searched, so that its
/// misses overlap instead of following each other down the binary search. Searching the keys
/// themselves took a cache miss at nearly every step, a fifth of the time of a range of 10.
/// With one level of fences (250 KB, evicted by the values scans read) and no prefetch, the
/// binary searches of the fences and of the head block still waited on misses for a tenth.
const FENCE: usize = 32;
/// How many of a scan's first base entries are asked for before it walks them.
const SCAN_PREFETCH: usize = 16;

/// Changes to the base, in key order; `None` deletes the key.
type Delta = BTreeMap<IndexKey, Option<Loc>>;

/// A sorted batch of changes, each key once.
type Run = Vec<(IndexKey, Option<Loc>)>;

/// One change as scans and merges walk them.
type Change<'a> = (&'a IndexKey, &'a Option<Loc>);

/// The changes not yet in a base: the runs of large sorted batches, oldest first, a tree of
/// everything since the last run, newer than all of them, and the `recent` small batches
/// not yet inserted into the tree, newer than it (`Ordered::defer`). A bulk load's batches of
/// 10,000 were appended to the tree, and `BTreeMap::append` copies both trees: each batch
/// cost the whole delta (up to 125,000 entries at a million keys), and that copying was most
/// of the ordered index's share of a load. A run costs its own size; scans overlay the runs
/// (`Changes::walk`), and the merge into a new base takes them all in one pass.
#[derive(Default)]
struct Changes {
    runs: Vec<Run>,
    /// Entries in `runs` (a key in two runs counts twice).
    in_runs: usize,
    tree: Delta,
    /// Small sorted batches, oldest first, waiting to be inserted into `tree`.
    recent: Vec<Run>,
    /// Entries in `recent`.
    in_recent: usize,
}

impl Changes {
    fn len(&self) -> usize {
        self.in_runs + self.tree.len() + self.in_recent
    }

    fn is_empty(&self) -> bool {
        self.runs.is_empty() && self.tree.is_empty() && self.recent.is_empty()
    }

    /// Whether scans must overlay sorted sequences besides the tree (`walk`).
    fn has_runs(&self) -> bool {
        !self.runs.is_empty() || !self.recent.is_empty()
    }

    /// Inserts the recent batches into the tree, oldest first, so that a key's newest
    /// change stays.
    fn fold_recent(&mut self) {
        for run in self.recent.drain(..) {
            for (key, loc) in run {
                self.tree.insert(key, loc);
            }
        }
        self.in_recent = 0;
    }

    /// Appends a run, newer than every change so far.
    fn push_run(&mut self, run: Run) {
        self.fold_recent();
        if !self.tree.is_empty() {
            let tree: Run = std::mem::take(&mut self.tree).into_iter().collect();
            self.in_runs += tree.len();
            self.runs.push(tree);
        }
        self.in_runs += run.len();
        self.runs.push(run);
        if self.runs.len() > RUNS_MAX {
            let all: Run =
                walk(&[self], Bound::Unbounded, Bound::Unbounded, false).map(|(k, l)| (k.clone(), *l)).collect();
            self.in_runs = all.len();
            self.runs = vec![all];
        }
    }
}

/// The changes of `layers` (newest first) between `lo` and `hi` as one sequence in the
/// scan's order, a key once, with its newest change.
fn walk<'a>(
    layers: &[&'a Changes],
    lo: Bound<&[u8]>,
    hi: Bound<&[u8]>,
    rev: bool,
) -> Box<dyn Iterator<Item = Change<'a>> + 'a> {
    let first = if rev { Ordering::Greater } else { Ordering::Less };
    // Oldest first, so that each source is laid over what came before it.
    let mut sources: Vec<Box<dyn Iterator<Item = Change<'a>> + 'a>> = Vec::new();
    for layer in layers.iter().rev() {
        for run in &layer.runs {
            let slice = within(run, lo, hi).iter().map(|(k, l)| (k, l));
            sources.push(if rev { Box::new(slice.rev()) } else { Box::new(slice) });
        }
        let tree = layer.tree.range::<[u8], _>((lo, hi));
        sources.push(if rev { Box::new(tree.rev()) } else { Box::new(tree) });
        for run in &layer.recent {
            let slice = within(run, lo, hi).iter().map(|(k, l)| (k, l));
            sources.push(if rev { Box::new(slice.rev()) } else { Box::new(slice) });
        }
    }
    let mut sources = sources.into_iter();
    let oldest = sources.next().unwrap_or_else(|| Box::new(std::iter::empty()));
    sources.fold(oldest, |older, newer| Box::new(overlay(newer, older, first)))
}

/// A batch of changes sorted by key, stably, as a run: of equal keys, the last (the newest)
/// stays.
fn into_run(sorted: impl ExactSizeIterator<Item = (IndexKey, Option<Loc>)>) -> Run {
    let mut run: Run = Vec::with_capacity(sorted.len());
    for (key, loc) in sorted {
        match run.last_mut() {
            Some(last) if last.0 == key => last.1 = loc,
            _ => run.push((key, loc)),
        }
    }
    run
}

/// The stretch of `run` between `lo` and `hi`.
fn within<'a>(run: &'a [(IndexKey, Option<Loc>)], lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> &'a [(IndexKey, Option<Loc>)] {
    let from = run.partition_point(|(k, _)| below(k, lo));
    let to = from + run[from..].partition_point(|(k, _)| !above(k, hi));
    &run[from..to]
}

/// Whether `key` lies before the range that starts at `lo`.
fn below(key: &[u8], lo: Bound<&[u8]>) -> bool {
    match lo {
        Bound::Included(b) => key < b,
        Bound::Excluded(b) => key <= b,
        Bound::Unbounded => false,
    }
}

/// Whether `key` lies after the range that ends at `hi`.
fn above(key: &[u8], hi: Bound<&[u8]>) -> bool {
    match hi {
        Bound::Included(b) => key > b,
        Bound::Excluded(b) => key >= b,
        Bound::Unbounded => false,
    }
}

#[derive(Default)]
pub(crate) struct Ordered {
    base: Arc<Base>,
    /// A full delta being merged into `base` on its own thread.
    merging: Option<Merging>,
    /// Changes since `base` (and `merging`) were frozen; they win over both.
    delta: Changes,
    /// The arrays of the base retired last, for the next merge to fill.
    spare: Arc<Mutex<Option<Spare>>>,
    /// Calls that changed the delta, ever, and that count at the last `merge_if_idle`.
    changes: u64,
    changes_seen: u64,
    /// When `merge_if_idle` last started a merge.
    idle_merged: Option<Instant>,
}

/// The two large arrays of a retired base, emptied, with their capacity. A merge writes
/// a whole new base; into freshly allocated memory the kernel first zeroes every page, and
/// in a bulk load of a million keys that zeroing was a tenth of the process's CPU (`perf`:
/// `clear_page_erms` on the merging thread). Refilled arrays skip it. The price is that a
/// dimension being written holds a second base's worth of memory, as it does anyway while
/// a merge runs; `release_idle_spare` frees it once writes stop.
struct Spare {
    entries: Vec<(IndexKey, Loc)>,
    heads: Vec<u64>,
    since: Instant,
}

#[derive(Default)]
struct Base {
    /// Sorted by key, each key once.
    entries: Vec<(IndexKey, Loc)>,
    /// How many leading bytes every key of `entries` shares.
    common: usize,
    /// `head(key, common)` of each entry, in the same order (so never decreasing).
    heads: Vec<u64>,
    /// `heads[0]`, `heads[FENCE]`, `heads[2 * FENCE]`, ...
    fences: Vec<u64>,
    /// `fences[0]`, `fences[FENCE]`, `fences[2 * FENCE]`, ...
    tops: Vec<u64>,
}

/// A stretch of a base's entries, read in place by an iterator instead of copied out
/// (`Ordered::view`). Bases never change once built, so the stretch stays what it was when
/// taken; holding it keeps that base alive even after a merge replaced it.
pub(crate) struct View {
    base: Arc<Base>,
    /// The stretch is `base.entries[lo..hi]`; handing entries out narrows it.
    lo: usize,
    hi: usize,
}

impl View {
    pub fn entries(&self) -> &[(IndexKey, Loc)] {
        &self.base.entries[self.lo..self.hi]
    }

    /// Takes the first entry (the last if `back`) out of the stretch; its place, for
    /// [`View::entry`].
    pub fn pop(&mut self, back: bool) -> Option<usize> {
        if self.lo == self.hi {
            return None;
        }
        if back {
            self.hi -= 1;
            Some(self.hi)
        } else {
            self.lo += 1;
            Some(self.lo - 1)
        }
    }

    /// The entry at a place [`View::pop`] gave, which stays readable after it left the
    /// stretch.
    pub fn entry(&self, at: usize) -> &(IndexKey, Loc) {
        &self.base.entries[at]
    }

    /// The entry `i` places in from the front (from the back if `back`), if there is one.
    pub fn peek(&self, back: bool, i: usize) -> Option<&(IndexKey, Loc)> {
        let entries = self.entries();
        let at = if back { entries.len().checked_sub(i + 1)? } else { i };
        entries.get(at)
    }
}

struct Merging {
    frozen: Arc<Changes>,
    /// Where the merging thread leaves the new base.
    done: Arc<Mutex<Option<Base>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Base {
    fn new(entries: Vec<(IndexKey, Loc)>) -> Base {
        let heads = crate::hugepage::vec_with_capacity(entries.len());
        Base::with_heads(entries, heads)
    }

    /// A base of `entries`, its heads written into `heads` (empty, with room for them all).
    fn with_heads(entries: Vec<(IndexKey, Loc)>, mut heads: Vec<u64>) -> Base {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
        // Sorted keys: what the first and last share, every key between them shares.
        let common = match (entries.first(), entries.last()) {
            (Some(a), Some(b)) => a.0.iter().zip(b.0.iter()).take_while(|(x, y)| x == y).count(),
            _ => 0,
        };
        heads.extend(entries.iter().map(|e| head(&e.0, common)));
        let fences: Vec<u64> = heads.iter().step_by(FENCE).copied().collect();
        let tops = fences.iter().step_by(FENCE).copied().collect();
        Base { entries, common, heads, fences, tops }
    }

    /// A new base: this one with `changes` applied, in `spare`'s arrays if they have room.
    fn merged(&self, changes: &Changes, spare: Option<Spare>) -> Base {
        let room = self.entries.len() + changes.len();
        let (mut out, heads) = match spare {
            Some(s) if s.entries.capacity() >= room && s.heads.capacity() >= room => (s.entries, s.heads),
            // A half more than this merge needs, so that the arrays serve a few more merges
            // of a growing base; the kernel backs only the part that is written.
            _ => (
                crate::hugepage::vec_with_capacity(room + room / 2),
                crate::hugepage::vec_with_capacity(room + room / 2),
            ),
        };
        let mut old = self.entries.iter().peekable();
        for (key, loc) in walk(&[changes], Bound::Unbounded, Bound::Unbounded, false) {
            while let Some(e) = old.next_if(|e| e.0 < *key) {
                out.push(e.clone());
            }
            // The delta's entry replaces the base's, or deletes it.
            old.next_if(|e| e.0 == *key);
            if let Some(loc) = loc {
                out.push((key.clone(), *loc));
            }
        }
        out.extend(old.cloned());
        Base::with_heads(out, heads)
    }

    /// The number of entries whose key is less than `key`, or less or equal if `or_equal`.
    #[cfg(test)]
    fn count_below(&self, key: &[u8], or_equal: bool) -> usize {
        self.count_below_prefetching(key, or_equal, Ahead::None)
    }

    /// `count_below`, which also asks for the entries a scan will copy from there as soon
    /// as the heads narrow the answer down: their misses then overlap the miss on the
    /// entry that decides the answer, instead of following it.
    fn count_below_prefetching(&self, key: &[u8], or_equal: bool, ahead: Ahead) -> usize {
        let below = |e: &[u8]| if or_equal { e <= key } else { e < key };
        let Some(first) = self.entries.first() else { return 0 };
        if !key.starts_with(&first.0[..self.common]) {
            // `key` differs from the shared prefix (or is a part of it): it is below or
            // above every entry alike.
            return if below(&first.0) { self.entries.len() } else { 0 };
        }
        // Sharing the prefix, a smaller head means a smaller key and a larger head a larger
        // key; only entries with `key`'s head need their keys compared.
        let h = head(key, self.common);
        let blocks = below_in_blocks(&self.fences, self.tops.partition_point(|&x| x < h), |x| x < h);
        if let Ahead::After(n) = ahead {
            self.prefetch_guess(blocks, h, n);
        }
        let lo = below_in_blocks(&self.heads, blocks, |x| x < h);
        let hi = self.end_of_run(lo, h);
        // The answer is in `lo..=hi`, and `hi` is `lo` or `lo + 1` for most key sets.
        let len = self.entries.len();
        match ahead {
            Ahead::None => {}
            Ahead::After(n) => crate::prefetch::prefetch_slice(&self.entries[lo..(hi + n).min(len)]),
            Ahead::Before(n) => crate::prefetch::prefetch_slice(&self.entries[lo.saturating_sub(n)..(hi + 1).min(len)]),
        }
        lo + self.entries[lo..hi].partition_point(|e| below(&e.0))
    }

    /// Asks for the entries around where `h` would fall in head block `blocks - 1` if heads
    /// were spread evenly between its fence and the next: the search of the block is a
    /// cache miss, and so is the first entry it leads to; guessed, the two overlap.
    fn prefetch_guess(&self, blocks: usize, h: u64, n: usize) {
        let Some(&at) = blocks.checked_sub(1).and_then(|b| self.fences.get(b)) else { return };
        let start = (blocks - 1) * FENCE;
        let next = self.fences.get(blocks).copied().unwrap_or(u64::MAX);
        let step = (next.saturating_sub(at) / FENCE as u64).max(1);
        let guess = start + (h.saturating_sub(at) / step) as usize;
        let from = guess.saturating_sub(2).min(self.entries.len());
        crate::prefetch::prefetch_slice(&self.entries[from..(guess + n + 2).min(self.entries.len()).max(from)]);
    }

    /// The first index at or after `from` whose head is greater than `h`, given that none
    /// before `from` is. Runs of equal heads are short for most key sets, so this gallops
    /// forward from `from` instead of searching the whole base again.
    fn end_of_run(&self, from: usize, h: u64) -> usize {
        let len = self.heads.len();
        let mut step = 1;
        while from + step <= len && self.heads[from + step - 1] <= h {
            step *= 2;
        }
        // Every head in `from..from + step / 2` is at most `h`; the one at
        // `from + step - 1`, if there is one, is greater.
        let (lo, hi) = (from + step / 2, (from + step).min(len));
        lo + self.heads[lo..hi].partition_point(|&x| x <= h)
    }

    /// The entries between `lo` and `hi`, of which a scan will read the first `n` (the last
    /// `n` if `rev`).
    fn range(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>, rev: bool, n: usize) -> std::ops::Range<usize> {
        let (from_lo, from_hi) = if rev { (Ahead::None, Ahead::Before(n)) } else { (Ahead::After(n), Ahead::None) };
        let start = match lo {
            Bound::Unbounded => 0,
            Bound::Included(k) => self.count_below_prefetching(k, false, from_lo),
            Bound::Excluded(k) => self.count_below_prefetching(k, true, from_lo),
        };
        let end = match hi {
            Bound::Unbounded => self.entries.len(),
            Bound::Included(k) => self.count_below_prefetching(k, true, from_hi),
            Bound::Excluded(k) => self.count_below_prefetching(k, false, from_hi),
        };
        // A search asked for the entries the scan reads first; an end left open was not
        // searched, so ask for them here.
        let end = end.max(start);
        let n = n.min(end - start);
        if !rev && matches!(lo, Bound::Unbounded) {
            crate::prefetch::prefetch_slice(&self.entries[start..start + n]);
        }
        if rev && matches!(hi, Bound::Unbounded) {
            crate::prefetch::prefetch_slice(&self.entries[end - n..end]);
        }
        start..end
    }
}

/// Which entries a search asks the CPU for, besides the ones it reads: the `n` from where
/// the answer is (`After`), or the `n` before it (`Before`).
#[derive(Clone, Copy)]
enum Ahead {
    None,
    After(usize),
    Before(usize),
}

/// A replaced base's large arrays, emptied, for a merge to refill; `None` if something
/// still holds the base, or it is too small to be worth keeping.
fn into_spare(base: Arc<Base>) -> Option<Spare> {
    let base = Arc::into_inner(base).filter(|b| b.entries.len() >= BACKGROUND_MIN)?;
    let (mut entries, mut heads) = (base.entries, base.heads);
    entries.clear();
    heads.clear();
    Some(Spare { entries, heads, since: Instant::now() })
}

/// The number of `items` satisfying `p` (which holds for a prefix of them), given how many
/// of their every-`FENCE`th items satisfy it.
fn below_in_blocks(items: &[u64], blocks: usize, p: impl Fn(u64) -> bool) -> usize {
    if blocks == 0 {
        return 0;
    }
    // Block `blocks - 1` starts with an item satisfying `p`; the next block does not.
    let start = (blocks - 1) * FENCE;
    let block = &items[start..(start + FENCE).min(items.len())];
    crate::prefetch::prefetch_slice(block);
    start + block.partition_point(|&x| p(x))
}

/// Up to 8 bytes of `key` after its first `common`, big-endian and padded with zeros: for
/// keys that share those `common` bytes, a smaller head means a smaller key (padding ranks a
/// shorter key before its extensions, as byte order does).
pub(crate) fn head(key: &[u8], common: usize) -> u64 {
    let rest = key.get(common..).unwrap_or(&[]);
    let mut bytes = [0u8; 8];
    let n = rest.len().min(8);
    bytes[..n].copy_from_slice(&rest[..n]);
    u64::from_be_bytes(bytes)
}

impl Ordered {
    /// An index of `sorted`, which must be sorted by key with each key once.
    pub fn from_sorted(sorted: Vec<(IndexKey, Loc)>) -> Ordered {
        Ordered {
            base: Arc::new(Base::new(sorted)),
            merging: None,
            delta: Changes::default(),
            spare: Arc::default(),
            changes: 0,
            changes_seen: 0,
            idle_merged: None,
        }
    }

    /// Records that `key` now has the value at `loc`, or none.
    pub fn set(&mut self, key: IndexKey, loc: Option<Loc>) {
        self.changes += 1;
        // Deferred batches are older than this change: into the tree first.
        self.delta.fold_recent();
        self.delta.tree.insert(key, loc);
        self.install_merged();
        self.merge_if_full(None);
    }

    /// Starts a merge when the delta has grown to its limit and none is running; the merge
    /// refills `retired`'s arrays (a base just replaced), or else the spare ones. A retired
    /// base no merge takes is emptied into the spare on a thread of its own.
    fn merge_if_full(&mut self, retired: Option<Arc<Base>>) {
        let limit = (self.base.entries.len() / 8).clamp(DELTA_MIN, DELTA_MAX);
        if self.merging.is_none() && self.delta.len() >= limit {
            self.start_merge(retired);
        } else if let Some(old) = retired {
            // Emptying a base drops every key: on another thread's time, not the writer's.
            let spare = self.spare.clone();
            let retire = move || {
                if let Some(s) = into_spare(old) {
                    *spare.lock() = Some(s);
                }
            };
            let _ = std::thread::Builder::new().name("jessy-index-free".into()).spawn(retire);
        }
    }

    /// Records a batch of changes, sorted by key, stably: a key's later change comes later
    /// and wins. A batch that is large next to the delta is built into a tree of its own
    /// and appended, which merges the two trees in one pass instead of walking the delta
    /// from its root for every key (`probe load`, alternating: 1.54 / 1.70 / 1.61 / 1.50 /
    /// 1.65 / 1.69 / 1.64 s -> 1.42 / 1.44 / 1.31 / 1.44 / 1.40 / 1.51 / 1.62 s). A small
    /// batch is inserted key by key, so that it does not pay for copying a large delta.
    ///
    /// A batch of `RUN_MIN` changes or more becomes a run (see `Changes`) and costs only its
    /// own size.
    pub fn set_sorted(&mut self, sorted: impl ExactSizeIterator<Item = (IndexKey, Option<Loc>)>) {
        self.changes += 1;
        if sorted.len() >= RUN_MIN {
            self.delta.push_run(into_run(sorted));
            self.install_merged();
            self.merge_if_full(None);
            return;
        }
        self.delta.fold_recent();
        if sorted.len() * APPEND_RATIO < self.delta.tree.len() {
            for (key, loc) in sorted {
                self.set(key, loc);
            }
            return;
        }
        // `collect` keeps the last of equal keys, and `append` keeps the batch's entry
        // where both trees have the key: the newer change wins both times.
        let mut batch: Delta = sorted.collect();
        self.delta.tree.append(&mut batch);
        self.install_merged();
        self.merge_if_full(None);
    }

    /// Records a small batch of changes, sorted by key, stably (as `set_sorted`), without
    /// inserting it into the delta's B-tree yet: it waits beside the tree as a sorted run,
    /// which scans overlay, until `fold` (or a later change, or too many waiting) inserts it.
    /// Those inserts miss the cache and cost about 0.3 µs a key at a million keys, a fifth of
    /// the time of a durable commit of 100 keys; deferred, they are done while the next
    /// commit's frames are on their way to the disk (`DimInner::lead_sync`), where they cost
    /// the writer nothing.
    pub fn defer(&mut self, sorted: impl ExactSizeIterator<Item = (IndexKey, Option<Loc>)>) {
        self.changes += 1;
        if sorted.len() >= RUN_MIN {
            self.set_sorted(sorted);
            return;
        }
        let run = into_run(sorted);
        if run.is_empty() {
            return;
        }
        self.delta.in_recent += run.len();
        self.delta.recent.push(run);
        if self.delta.recent.len() > RECENT_RUNS_MAX || self.delta.in_recent > RECENT_ENTRIES_MAX {
            self.delta.fold_recent();
        }
        self.install_merged();
        self.merge_if_full(None);
    }

    /// Whether deferred batches wait to be inserted into the delta's tree.
    pub fn has_deferred(&self) -> bool {
        !self.delta.recent.is_empty()
    }

    /// How many deferred batches wait (tests).
    #[cfg(test)]
    pub fn deferred_runs(&self) -> usize {
        self.delta.recent.len()
    }

    /// How many changes wait beside the base, a merging one's included (tests).
    #[cfg(test)]
    pub fn waiting_changes(&self) -> usize {
        self.delta.len() + self.merging.as_ref().map_or(0, |m| m.frozen.len())
    }

    /// Inserts the deferred batches into the delta's tree (see `defer`).
    pub fn fold(&mut self) {
        self.delta.fold_recent();
    }

    /// Whether a merging thread has finished (so `install_merged` has work to do).
    pub fn merge_finished(&self) -> bool {
        self.merging
            .as_ref()
            .is_some_and(|m| m.done.lock().is_some() || m.thread.as_ref().is_some_and(|t| t.is_finished()))
    }

    /// Takes the base a merging thread has finished, if it has. Called on every write, and
    /// by the store's background thread, so that a store that stops writing does not keep
    /// the old base and the frozen delta beside the new base.
    pub fn install_merged(&mut self) {
        if !self.merge_finished() {
            return;
        }
        let Some(merging) = self.merging.take() else { return };
        let finished = merging.done.lock().take();
        // A thread that ended without leaving a base panicked: merge here instead.
        let base = finished.unwrap_or_else(|| self.base.merged(&merging.frozen, self.take_spare()));
        let old = std::mem::replace(&mut self.base, Arc::new(base));
        if let Some(thread) = merging.thread {
            let _ = thread.join();
        }
        // Under a steady stream of writes the delta is full again by now, and the next merge
        // starts here, in the old base's arrays.
        self.merge_if_full(Some(old));
    }

    /// Starts merging the waiting changes if nothing changed them since the last call (the
    /// store's background thread calls this every tick with `IDLE_MERGE_GAP`) and no such
    /// merge started within `gap`. The delta is otherwise merged only when full, so a
    /// dimension loaded and then only read kept up to an eighth of its keys there, and every
    /// scan walked the base and the delta side by side instead of reading the base in place
    /// (`view`).
    pub fn merge_if_idle(&mut self, gap: Duration) {
        let idle = self.changes == self.changes_seen;
        self.changes_seen = self.changes;
        let due = self.idle_merged.is_none_or(|at| at.elapsed() >= gap);
        if idle && due && self.merging.is_none() && !self.delta.is_empty() {
            self.idle_merged = Some(Instant::now());
            self.start_merge(None);
        }
    }

    fn take_spare(&self) -> Option<Spare> {
        self.spare.lock().take()
    }

    /// Frees the spare arrays if no merge has wanted them for `keep` (the store's background
    /// thread calls this every tick with `SPARE_KEEP`): a dimension that stopped being written
    /// returns to one base's worth of memory.
    pub fn release_idle_spare(&self, keep: Duration) {
        let idle = {
            let mut spare = self.spare.lock();
            if spare.as_ref().is_some_and(|s| s.since.elapsed() >= keep) {
                spare.take()
            } else {
                None
            }
        };
        drop(idle);
    }

    /// Freezes the delta and merges it into a new base: in place for a small base, on a
    /// thread of its own for a large one (or in place if no thread can be started).
    fn start_merge(&mut self, retired: Option<Arc<Base>>) {
        let frozen = Arc::new(std::mem::take(&mut self.delta));
        if self.base.entries.len() >= BACKGROUND_MIN {
            let done = Arc::new(Mutex::new(None));
            let (base, delta, slot, spare) = (self.base.clone(), frozen.clone(), done.clone(), self.spare.clone());
            let merge = move || {
                let spare = retired.and_then(into_spare).or_else(|| spare.lock().take());
                *slot.lock() = Some(base.merged(&delta, spare));
            };
            let thread = std::thread::Builder::new().name("jessy-index-merge".into());
            if let Ok(thread) = thread.spawn(merge) {
                self.merging = Some(Merging { frozen, done, thread: Some(thread) });
                return;
            }
        }
        // Here a retired base is small (not worth keeping) or went with the thread that
        // could not be started.
        self.base = Arc::new(self.base.merged(&frozen, self.take_spare()));
    }

    /// Folds every change into the base now (tests). A merge in progress is finished here
    /// if its thread has not finished it: both give the same base.
    #[cfg(test)]
    fn merge(&mut self) {
        if let Some(m) = self.merging.take() {
            let done = m.done.lock().take();
            self.base = Arc::new(done.unwrap_or_else(|| self.base.merged(&m.frozen, self.take_spare())));
        }
        let delta = std::mem::take(&mut self.delta);
        self.base = Arc::new(self.base.merged(&delta, self.take_spare()));
    }

    /// Calls `f` with up to `n` entries between `lo` and `hi`, in key order, or in reverse
    /// key order from `hi` down when `rev`.
    pub fn scan(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>, rev: bool, n: usize, mut f: impl FnMut(&IndexKey, &Loc)) {
        if bounds_are_empty(lo, hi) || n == 0 {
            return;
        }
        // The entries a short scan copies are neighbours, but the first is rarely cached;
        // asking for their lines at once (`Base::range` does) overlaps their misses. A long
        // scan's later entries are found by the CPU's own prefetcher, so only the first few
        // are asked for.
        if let Some(view) = self.view(lo, hi, rev, n) {
            // Nothing waits to be merged: the base alone, without the merge's comparisons.
            if rev {
                view.entries().iter().rev().for_each(|(k, l)| f(k, l));
            } else {
                view.entries().iter().for_each(|(k, l)| f(k, l));
            }
            return;
        }
        let base = &self.base.entries[self.base.range(lo, hi, rev, n.min(SCAN_PREFETCH))];
        let base = base.iter().map(|(k, l)| (k, l));
        let frozen = self.merging.as_ref().map(|m| &*m.frozen);
        // Under a stream of durable batches one deferred batch waits beside the tree nearly
        // all the time: it is laid over the trees without the general walk's boxed sources.
        let one_recent = self.delta.runs.is_empty() && self.delta.recent.len() <= 1;
        if !one_recent || frozen.is_some_and(|f| f.has_runs()) {
            // Runs waiting for a merge (a bulk load) or several deferred batches: the
            // general, slower walk.
            let layers: Vec<&Changes> = std::iter::once(&self.delta).chain(frozen).collect();
            let first = if rev { Ordering::Greater } else { Ordering::Less };
            let changes = walk(&layers, lo, hi, rev);
            if rev {
                merge(base.rev(), changes, first, n, f);
            } else {
                merge(base, changes, first, n, f);
            }
            return;
        }
        let delta = self.delta.tree.range::<[u8], _>((lo, hi));
        let frozen = frozen.map(|m| m.tree.range::<[u8], _>((lo, hi))).into_iter().flatten();
        let first = if rev { Ordering::Greater } else { Ordering::Less };
        match (self.delta.recent.first(), rev) {
            (None, false) => merge(base, overlay(delta, frozen, first), first, n, f),
            (None, true) => merge(base.rev(), overlay(delta.rev(), frozen.rev(), first), first, n, f),
            (Some(run), false) => {
                let recent = within(run, lo, hi).iter().map(|(k, l)| (k, l));
                merge(base, overlay(recent, overlay(delta, frozen, first), first), first, n, f);
            }
            (Some(run), true) => {
                let recent = within(run, lo, hi).iter().rev().map(|(k, l)| (k, l));
                let trees = overlay(delta.rev(), frozen.rev(), first);
                merge(base.rev(), overlay(recent, trees, first), first, n, f);
            }
        }
    }

    /// The up to `n` entries between `lo` and `hi` that `scan` would hand out (the last `n`
    /// if `rev`), as a stretch of the base to read in place, when no change waits to be
    /// merged into the base (the usual state of a store read more than written); `None`
    /// when one does, and the entries must be merged on the way out (`scan`).
    pub fn view(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>, rev: bool, n: usize) -> Option<View> {
        let frozen = self.merging.as_ref().map(|m| &*m.frozen);
        if !self.delta.is_empty() || frozen.is_some_and(|f| !f.is_empty()) {
            return None;
        }
        let base = self.base.clone();
        if bounds_are_empty(lo, hi) || n == 0 {
            return Some(View { base, lo: 0, hi: 0 });
        }
        let all = base.range(lo, hi, rev, n.min(SCAN_PREFETCH));
        let n = n.min(all.len());
        let (lo, hi) = if rev { (all.end - n, all.end) } else { (all.start, all.start + n) };
        Some(View { base, lo, hi })
    }

    /// Calls `f` with every entry, in key order.
    pub fn for_each(&self, f: impl FnMut(&IndexKey, &Loc)) {
        self.scan(Bound::Unbounded, Bound::Unbounded, false, usize::MAX, f);
    }
}

/// Two deltas as one, both in the scan's order (`first` is the ordering of a key that
/// comes before another); a key in both is `newer`'s.
fn overlay<'a>(
    newer: impl Iterator<Item = (&'a IndexKey, &'a Option<Loc>)>,
    older: impl Iterator<Item = (&'a IndexKey, &'a Option<Loc>)>,
    first: Ordering,
) -> impl Iterator<Item = (&'a IndexKey, &'a Option<Loc>)> {
    let (mut newer, mut older) = (newer.peekable(), older.peekable());
    std::iter::from_fn(move || match (newer.peek(), older.peek()) {
        (None, None) => None,
        (Some(_), None) => newer.next(),
        (None, Some(_)) => older.next(),
        (Some(n), Some(o)) => match n.0.cmp(o.0) {
            Ordering::Equal => {
                older.next();
                newer.next()
            }
            order if order == first => newer.next(),
            _ => older.next(),
        },
    })
}

/// Walks `base` and `delta`, both in the scan's order, handing out up to `n` live
/// entries; a key in both is the delta's.
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

    /// What the merging thread does, at any point between writes (`step` 1 freezes the
    /// delta, 2 leaves the new base any number of writes later), or a merge in place (0).
    fn merge_step(ordered: &mut Ordered, step: u8) {
        match step {
            0 => ordered.merge(),
            1 if ordered.merging.is_none() => {
                let frozen = Arc::new(std::mem::take(&mut ordered.delta));
                ordered.merging = Some(Merging { frozen, done: Arc::new(Mutex::new(None)), thread: None });
            }
            2 => {
                if let Some(m) = &ordered.merging {
                    *m.done.lock() = Some(ordered.base.merged(&m.frozen, None));
                }
            }
            _ => {}
        }
    }

    type Scan = (u8, u8, u8, u8, bool, usize);
    type Pairs = Vec<(u8, u32)>;

    /// One scan (bounds, direction, limit) of `ordered` and of `model`: what each gives.
    fn scan_both(ordered: &Ordered, model: &BTreeMap<u8, u32>, scan: Scan) -> (Pairs, Pairs) {
        let (a, ak, b, bk, rev, n) = scan;
        let (lo, hi) = (bound(a, ak), bound(b, bk));
        let mut got = Vec::new();
        ordered.scan(as_ref(&lo), as_ref(&hi), rev, n, |k, l| got.push((k[0], l.off)));
        let want: Pairs = if bounds_are_empty(as_ref(&lo), as_ref(&hi)) {
            Vec::new()
        } else {
            let lo = lo.as_ref().map(|v| v[0]);
            let hi = hi.as_ref().map(|v| v[0]);
            let range = model.range((lo, hi)).map(|(k, v)| (*k, *v));
            if rev {
                range.rev().take(n).collect()
            } else {
                range.take(n).collect()
            }
        };
        (got, want)
    }

    proptest! {
        /// Any sequence of sets, with merges (in place, or frozen and finished as on the
        /// merging thread) at any point, scans like a `BTreeMap`, in both directions and
        /// with any bounds and limit.
        #[test]
        fn scans_like_a_btreemap(
            start in proptest::collection::btree_map(any::<u8>(), any::<u32>(), 0..200),
            ops in proptest::collection::vec((any::<u8>(), proptest::option::of(any::<u32>()), 0u8..8), 0..200),
            scans in proptest::collection::vec((any::<u8>(), 0u8..3, any::<u8>(), 0u8..3, any::<bool>(), 0usize..300), 1..20),
        ) {
            let mut model: BTreeMap<u8, u32> = start.clone();
            let mut ordered = Ordered::from_sorted(start.iter().map(|(k, v)| (key(*k), loc(*v))).collect());
            for (k, v, step) in ops {
                match v {
                    Some(v) => { model.insert(k, v); }
                    None => { model.remove(&k); }
                }
                ordered.set(key(k), v.map(loc));
                merge_step(&mut ordered, step);
            }
            for scan in scans {
                let (got, want) = scan_both(&ordered, &model, scan);
                prop_assert_eq!(&got, &want);
                // A view, when there is one (no change waiting), is the same stretch.
                let (a, ak, b, bk, rev, n) = scan;
                let (lo, hi) = (bound(a, ak), bound(b, bk));
                let waiting = !ordered.delta.is_empty() || ordered.merging.as_ref().is_some_and(|m| !m.frozen.is_empty());
                let view = ordered.view(as_ref(&lo), as_ref(&hi), rev, n);
                prop_assert_eq!(view.is_none(), waiting);
                if let Some(mut view) = view {
                    let mut got: Pairs = view.entries().iter().map(|(k, l)| (k[0], l.off)).collect();
                    if rev {
                        got.reverse();
                    }
                    prop_assert_eq!(&got, &want);
                    // Popping from both ends hands out the same entries, each once.
                    let mut popped = Vec::new();
                    let (mut i, mut from_back) = (0, Vec::new());
                    while let Some(at) = view.pop(i % 3 == 1) {
                        let (k, l) = view.entry(at);
                        if i % 3 == 1 { from_back.push((k[0], l.off)) } else { popped.push((k[0], l.off)) }
                        i += 1;
                    }
                    popped.extend(from_back.into_iter().rev());
                    if rev {
                        popped.reverse();
                    }
                    prop_assert_eq!(popped, want);
                }
            }
        }
    }

    #[test]
    fn searches_find_every_boundary_across_fence_blocks() {
        let keys: Vec<u32> = (0..1000).map(|i| i * 2).collect();
        let o = Ordered::from_sorted(keys.iter().map(|&i| (IndexKey::from_slice(&i.to_be_bytes()), loc(i))).collect());
        for probe in 0..2002u32 {
            let want = keys.partition_point(|&k| k < probe);
            assert_eq!(o.base.count_below(&probe.to_be_bytes(), false), want, "probe {probe}");
            let want = keys.partition_point(|&k| k <= probe);
            assert_eq!(o.base.count_below(&probe.to_be_bytes(), true), want, "probe {probe}");
        }
    }

    /// Keys from a small alphabet behind a shared prefix: many are prefixes of others, many
    /// share their first 8 bytes after the prefix (equal heads), some are shorter than a head.
    fn tricky_key() -> impl Strategy<Value = Vec<u8>> {
        (0u8..3, proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(b'a'), Just(0xff)], 0..14)).prop_map(
            |(prefix, rest)| {
                let mut k = [&b"pre"[..], b"prf", b""][prefix as usize % 3].to_vec();
                k.extend(rest);
                k
            },
        )
    }

    proptest! {
        /// Batches recorded with `set_sorted` (appended, or key by key when small next to
        /// the delta), with repeated keys and deletes, end as the same changes made one by
        /// one; merges in between.
        #[test]
        fn sorted_batches_end_as_single_sets(
            start in proptest::collection::btree_map(any::<u8>(), any::<u32>(), 0..100),
            batches in proptest::collection::vec(
                (proptest::collection::vec((any::<u8>(), proptest::option::of(any::<u32>())), 0..60), any::<bool>()),
                1..12,
            ),
        ) {
            let from = |m: &BTreeMap<u8, u32>| Ordered::from_sorted(m.iter().map(|(k, v)| (key(*k), loc(*v))).collect());
            let mut model = start.clone();
            let mut ordered = from(&start);
            for (ops, merge) in batches {
                let mut sorted = ops.clone();
                sorted.sort_by_key(|op| op.0);
                ordered.set_sorted(sorted.into_iter().map(|(k, v)| (key(k), v.map(loc))));
                for (k, v) in ops {
                    match v {
                        Some(v) => model.insert(k, v),
                        None => model.remove(&k),
                    };
                }
                if merge {
                    ordered.merge();
                }
            }
            let mut got = Vec::new();
            ordered.for_each(|k, l| got.push((k[0], l.off)));
            prop_assert_eq!(got, model.into_iter().collect::<Vec<_>>());
        }
    }

    proptest! {
        /// Batches large enough to become runs, small ones, deferred ones (folded into the
        /// tree now, later, or when too many wait) and single sets, in any mix, with the
        /// delta frozen and merges finished at any point (so that runs sit in the frozen
        /// delta and the live one at once, and are folded past `RUNS_MAX`), scan like a
        /// `BTreeMap` in both directions, with any bounds and limit.
        #[test]
        fn runs_scan_like_a_btreemap(
            start in proptest::collection::btree_map(any::<u8>(), any::<u32>(), 0..100),
            batches in proptest::collection::vec(
                (proptest::collection::vec((any::<u8>(), proptest::option::of(any::<u32>())), 1..12), 0u8..6, 0u8..5),
                1..40,
            ),
            scans in proptest::collection::vec((any::<u8>(), 0u8..3, any::<u8>(), 0u8..3, any::<bool>(), 0usize..300), 1..20),
        ) {
            let mut model: BTreeMap<u8, u32> = start.clone();
            let mut ordered = Ordered::from_sorted(start.iter().map(|(k, v)| (key(*k), loc(*v))).collect());
            for (mut ops, step, how) in batches {
                if how >= 2 {
                    // Deferred batches below `RUN_MIN` wait beside the tree; larger become runs.
                    ops.truncate(if how == 4 { 4 } else { 2 });
                }
                let mut sorted = ops.clone();
                sorted.sort_by_key(|op| op.0);
                let sorted = sorted.into_iter().map(|(k, v)| (key(k), v.map(loc)));
                match how {
                    _ if ops.len() == 1 && how < 2 => ordered.set(key(ops[0].0), ops[0].1.map(loc)),
                    0 | 1 => ordered.set_sorted(sorted),
                    3 => {
                        ordered.defer(sorted);
                        ordered.fold();
                    }
                    _ => ordered.defer(sorted),
                }
                for (k, v) in ops {
                    match v {
                        Some(v) => model.insert(k, v),
                        None => model.remove(&k),
                    };
                }
                merge_step(&mut ordered, step);
            }
            for scan in scans {
                let (got, want) = scan_both(&ordered, &model, scan);
                prop_assert_eq!(got, want);
            }
            let mut all = Vec::new();
            ordered.merge();
            ordered.for_each(|k, l| all.push((k[0], l.off)));
            prop_assert_eq!(all, model.into_iter().collect::<Vec<_>>());
        }
    }

    proptest! {
        /// The head-based search counts exactly what a search of the sorted keys counts.
        #[test]
        fn counts_match_a_search_of_the_keys(
            keys in proptest::collection::btree_set(tricky_key(), 0..400),
            probes in proptest::collection::vec(tricky_key(), 1..50),
        ) {
            let sorted: Vec<Vec<u8>> = keys.into_iter().collect();
            let base = Base::new(sorted.iter().map(|k| (IndexKey::from_slice(k), loc(0))).collect());
            for p in probes.iter().chain(sorted.iter().take(20)) {
                prop_assert_eq!(base.count_below(p, false), sorted.partition_point(|k| k < p), "below {:?}", p);
                prop_assert_eq!(base.count_below(p, true), sorted.partition_point(|k| k <= p), "up to {:?}", p);
            }
        }
    }

    fn big_key(i: u32) -> IndexKey {
        IndexKey::from_slice(&i.to_be_bytes())
    }

    /// Waits (up to 10 s) for a retired base's arrays to reach the spare.
    fn wait_for_spare(o: &Ordered) {
        let t = Instant::now();
        while o.spare.lock().is_none() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Scans of a large index match the model before, during and after a merge on the
    /// merging thread, whenever that thread happens to finish, also when a merge refills
    /// the arrays of a base it replaced earlier; the spare is kept while fresh and freed
    /// once idle.
    #[test]
    fn scans_are_exact_while_a_large_base_merges_in_the_background() {
        let n = BACKGROUND_MIN as u32 + 4000;
        let mut model: BTreeMap<u32, u32> = (0..n).map(|i| (i * 2, i)).collect();
        let mut o = Ordered::from_sorted(model.iter().map(|(k, v)| (big_key(*k), loc(*v))).collect());
        let check = |o: &Ordered, model: &BTreeMap<u32, u32>, at: u32| {
            let mut got = Vec::new();
            o.scan(Bound::Included(&at.to_be_bytes()), Bound::Unbounded, false, 40, |k, l| {
                got.push((u32::from_be_bytes(k[..4].try_into().unwrap()), l.off))
            });
            let want: Vec<(u32, u32)> = model.range(at..).take(40).map(|(k, v)| (*k, *v)).collect();
            assert_eq!(got, want, "forward from {at}");
            let mut got = Vec::new();
            o.scan(Bound::Unbounded, Bound::Excluded(&at.to_be_bytes()), true, 40, |k, l| {
                got.push((u32::from_be_bytes(k[..4].try_into().unwrap()), l.off))
            });
            let want: Vec<(u32, u32)> = model.range(..at).rev().take(40).map(|(k, v)| (*k, *v)).collect();
            assert_eq!(got, want, "backward from {at}");
        };
        let mut x: u32 = 12345;
        let mut started = false;
        // Arrays of retired bases, by address, and whether a later base was built in one.
        let mut spares = std::collections::HashSet::new();
        let mut reused = false;
        // How many merges run, and so whether one refills retired arrays, depends on how
        // fast the merging thread is next to this one: write until one has, however slow.
        for i in 0u32.. {
            if i >= 40_000 && started && reused {
                break;
            }
            assert!(i < 2_000_000, "after {i} writes: merged on a thread: {started}, refilled: {reused}");
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let k = x % (2 * n + 100);
            let before = Arc::as_ptr(&o.base);
            let before_entries = o.base.entries.as_ptr() as usize;
            if x.is_multiple_of(7) {
                model.remove(&k);
                o.set(big_key(k), None);
            } else {
                model.insert(k, i);
                o.set(big_key(k), Some(loc(i)));
            }
            started |= o.merging.is_some();
            if Arc::as_ptr(&o.base) != before {
                // A new base is in. If no merge took the old one's arrays right away, wait
                // for them to be handed to the spare, so that the next merge finds them.
                if o.merging.is_none() {
                    wait_for_spare(&o);
                }
                if let Some(s) = o.spare.lock().as_ref() {
                    spares.insert(s.entries.as_ptr() as usize);
                }
                reused |= spares.contains(&(o.base.entries.as_ptr() as usize));
                // A merge started at the install refills the old base's arrays.
                if o.merging.is_some() {
                    spares.insert(before_entries);
                }
            }
            if i.is_multiple_of(997) {
                check(&o, &model, x % (2 * n));
            }
        }
        while o.merging.is_some() {
            o.install_merged();
            std::thread::sleep(Duration::from_millis(1));
        }
        wait_for_spare(&o);
        o.release_idle_spare(Duration::from_secs(3600));
        assert!(o.spare.lock().is_some(), "a fresh spare was released");
        o.release_idle_spare(Duration::ZERO);
        assert!(o.spare.lock().is_none(), "an idle spare was kept");
        o.merge();
        assert!(o.merging.is_none() && o.delta.is_empty());
        for at in [0, 1, n, 2 * n - 1, 2 * n + 99] {
            check(&o, &model, at);
        }
        let mut count = 0;
        o.for_each(|_, _| count += 1);
        assert_eq!(count, model.len());
    }

    /// A merging thread that ends without leaving a base (it panicked) does not leave the
    /// index stuck: the next write merges in its place.
    #[test]
    fn a_merging_thread_that_died_is_replaced_by_a_merge_in_place() {
        let mut o = Ordered::from_sorted((0..10u32).map(|i| (big_key(i), loc(i))).collect());
        o.set(big_key(20), Some(loc(20)));
        let frozen = Arc::new(std::mem::take(&mut o.delta));
        let thread = std::thread::spawn(|| {});
        while !thread.is_finished() {
            std::thread::yield_now();
        }
        o.merging = Some(Merging { frozen, done: Arc::new(Mutex::new(None)), thread: Some(thread) });
        assert!(o.merge_finished());
        o.set(big_key(30), Some(loc(30)));
        assert!(o.merging.is_none());
        assert_eq!(o.base.entries.len(), 11);
        let mut keys = Vec::new();
        o.for_each(|k, _| keys.push(u32::from_be_bytes(k[..4].try_into().unwrap())));
        assert_eq!(keys, (0..10).chain([20, 30]).collect::<Vec<_>>());
    }

    #[test]
    fn the_delta_is_merged_once_it_is_full() {
        let mut o = Ordered::default();
        for i in 0..DELTA_MIN as u32 + 10 {
            o.set(IndexKey::from_slice(&i.to_be_bytes()), Some(loc(i)));
        }
        assert_eq!(o.base.entries.len(), DELTA_MIN);
        assert_eq!(o.delta.len(), 10);
        let mut n = 0;
        o.for_each(|_, _| n += 1);
        assert_eq!(n, DELTA_MIN + 10);
    }

    #[test]
    fn changes_that_stopped_coming_are_merged() {
        let mut o = Ordered::default();
        o.set_sorted((0..5u8).map(|i| (key(i), Some(loc(i.into())))));
        o.set(key(9), Some(loc(9)));
        let full = |o: &Ordered| o.view(Bound::Unbounded, Bound::Unbounded, false, usize::MAX).is_some();
        let gap = Duration::from_secs(3600);
        // Changed since the last look: not idle yet.
        o.merge_if_idle(gap);
        assert_eq!(o.delta.len(), 6);
        o.set(key(5), None);
        o.merge_if_idle(gap);
        assert_eq!(o.delta.len(), 7);
        assert!(!full(&o), "scans overlay the delta");
        // Nothing changed since: merged (a small base, in place).
        o.merge_if_idle(gap);
        assert!(o.delta.is_empty() && o.merging.is_none());
        assert!(full(&o), "scans read the base alone");
        let mut got = Vec::new();
        o.for_each(|k, l| got.push((k[0], l.off)));
        assert_eq!(got, [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (9, 9)]);
        // Idle and nothing waits: nothing to do.
        o.merge_if_idle(gap);
        assert_eq!(o.base.entries.len(), 6);
        // Idle again after a change, but within the gap since the last idle merge: it waits.
        o.set(key(7), Some(loc(7)));
        o.merge_if_idle(gap);
        o.merge_if_idle(gap);
        assert_eq!(o.delta.len(), 1);
        o.merge_if_idle(Duration::ZERO);
        assert!(o.delta.is_empty());
        assert_eq!(o.base.entries.len(), 7);
    }
}
