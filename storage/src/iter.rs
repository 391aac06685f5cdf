//! Ordered, double-ended iteration over a dimension.
//!
//! The iterator never holds the index lock while the caller works: it takes a batch of
//! keys and locations under the read lock, releases it, and hands them out one by one. When
//! no change waits to be merged into the ordered index's base, which never changes once
//! built, the batch is a stretch of that base, shared instead of copied (`ordered::View`);
//! otherwise the entries are merged with the waiting changes and copied.
//! The front and back each remember the last key they handed out and narrow the range
//! past it, so the two ends never hand out the same key.
//!
//! The layers a batch points into come from one shared snapshot of the dimension's segments
//! and maps (`State::layers`), taken once per iterator: a short range over a big store
//! otherwise spends more time cloning `Arc`s and taking map locks than reading values.

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Arc;

use memmap2::Mmap;

use crate::dimension::{DimInner, IndexKey, LayerMaps, Loc, State};
use crate::ordered::{bounds_are_empty, View};
use crate::prefetch::prefetch_slice;
use crate::segment::Segment;
use crate::value::ValueRef;
use crate::{Result, Value, Version};

/// The first refill copies a few entries (a short scan should not pay for a long one);
/// each later refill doubles, up to `MAX_BATCH`. [`Iter::batch_size`] sets the first refill
/// for a caller that knows how many entries it will read, up to `MAX_HINT`: a refill holds
/// the index's read lock, which writers wait for, while it copies.
const FIRST_BATCH: usize = 16;
const MAX_BATCH: usize = 256;
const MAX_HINT: usize = 1024;

/// Values are prefetched this many entries ahead of the one handed out: enough for their
/// cache misses to overlap, few enough that a short scan does not load (and walk the page
/// tables for) entries it never reads, and within what the CPU keeps in flight.
const AHEAD: usize = 8;

/// At most this many bytes of an entry are prefetched (see `Layers::prefetch`).
const PREFETCH_MAX: usize = 1 << 10;

/// A key and where its value was when the batch was copied: a slot of `Iter::layers` and
/// the location in it. The value is read and verified only when handed out, so a short
/// scan does not pay for the whole batch. Keys up to 32 bytes stay inline (no allocation).
type Pending = (IndexKey, Result<(Slot, Loc)>);

/// What one end of the range took from the index, handed out nearest entry first (the
/// front end's lowest key, the back end's highest).
enum Batch {
    /// Entries copied out, nearest first. Taken when changes wait to be merged into the
    /// index's base, which the scan merges in on the way out.
    Copied(VecDeque<Pending>),
    /// A stretch of the index's base read in place (`ordered::View`), and which of the
    /// iterator's layer snapshots its entries point into: the state's own at the time, so
    /// each entry's layer is looked up when it is handed out, not stored. Nothing is copied:
    /// ranges of 10 over a million keys went from 424 k to 492 k a second against every
    /// batch copied with a slot per entry (docs/BENCHMARKS.md). The price is memory: while a shared batch is out, the base it
    /// reads stays alive even if a merge has replaced it.
    Shared { view: View, snap: u32 },
}

/// An entry taken from a batch: copied out, or in a shared batch (with its snapshot).
enum Taken<'a> {
    Copied(Pending),
    Shared(&'a (IndexKey, Loc), u32),
}

impl Batch {
    fn empty() -> Batch {
        Batch::Copied(VecDeque::new())
    }

    fn is_empty(&self) -> bool {
        match self {
            Batch::Copied(queue) => queue.is_empty(),
            Batch::Shared { view, .. } => view.entries().is_empty(),
        }
    }

    /// Takes the nearest entry (`far`: the farthest) of the batch of the front end
    /// (`back` false) or of the back end.
    #[inline(always)]
    fn pop(&mut self, back: bool, far: bool) -> Option<Taken<'_>> {
        match self {
            Batch::Copied(queue) => if far { queue.pop_back() } else { queue.pop_front() }.map(Taken::Copied),
            Batch::Shared { view, snap } => {
                // The back end's nearest entry is the stretch's last.
                let at = view.pop(back != far)?;
                let view: &View = view;
                Some(Taken::Shared(view.entry(at), *snap))
            }
        }
    }

    /// The `i`th nearest entry's layer slot and location, if it has both.
    fn nearest(&self, back: bool, i: usize, layers: &Layers) -> Option<(Slot, &Loc)> {
        match self {
            Batch::Copied(queue) => match queue.get(i) {
                Some((_, Ok((slot, loc)))) => Some((*slot, loc)),
                _ => None,
            },
            Batch::Shared { view, snap } => {
                let loc = &view.peek(back, i)?.1;
                Some((layers.slot_in(*snap, loc.layer)?, loc))
            }
        }
    }

    /// The key of the farthest entry.
    fn farthest_key(&self, back: bool) -> Option<&IndexKey> {
        match self {
            Batch::Copied(queue) => queue.back().map(|(key, _)| key),
            Batch::Shared { view, .. } => view.peek(!back, 0).map(|(key, _)| key),
        }
    }
}

/// A layer in one of the iterator's snapshots: `Layers::snaps[snap].list[pos]`.
#[derive(Clone, Copy)]
struct Slot {
    snap: u32,
    pos: u32,
}

/// Iterator over `(key, value)` pairs in key order; see [`Dimension::range`](crate::Dimension::range).
pub struct Iter {
    dim: Arc<DimInner>,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    front: Batch,
    back: Batch,
    exhausted: bool,
    batch: usize,
    layers: Layers,
    /// The key of the entry `next_borrowed` or `next_back_borrowed` returned last.
    lent: IndexKey,
    /// Whether the caller reads values (the last call was not `next_key`): only then are they
    /// prefetched.
    reads_values: bool,
}

/// The snapshots of the dimension's layers (`State::layers`) that copied entries point
/// into. Usually one; another is taken when an entry points at a layer (or past a map's end)
/// that the newest one does not have: a seal or a region's growth since. Holding them keeps
/// the segments and maps alive even if compaction replaces the layers while the iterator is
/// out.
#[derive(Default)]
struct Layers {
    /// Inline room for the usual one: a short range does not allocate for it.
    snaps: smallvec::SmallVec<[Arc<LayerMaps>; 1]>,
}

impl std::fmt::Debug for Iter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter").field("lo", &self.lo).field("hi", &self.hi).finish_non_exhaustive()
    }
}

impl Iter {
    pub(crate) fn new(dim: Arc<DimInner>, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>) -> Iter {
        Iter {
            dim,
            lo,
            hi,
            front: Batch::empty(),
            back: Batch::empty(),
            exhausted: false,
            batch: FIRST_BATCH,
            layers: Layers::default(),
            lent: IndexKey::new(),
            reads_values: true,
        }
    }

    /// Tells the iterator that about `n` entries will be read from it: the first refill
    /// copies that many from the index (at most 1,024) instead of 16, later ones double as
    /// usual. Each refill searches the index and takes its lock, so a caller that reads a
    /// known number of entries (a page of a scan, `take(n)`) gets them in one refill instead
    /// of several, and one that reads only a few does not copy entries it never uses. Only
    /// the cost changes, never what the iterator hands out.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = jessy_storage::Store::open(dir.path())?;
    /// let d = store.dimension("default")?;
    /// for i in 0..500u32 {
    ///     d.put(format!("user:{i:04}"), b"...")?;
    /// }
    /// let page: Vec<_> = d.prefix("user:").batch_size(100).take(100).collect::<Result<_, _>>()?;
    /// assert_eq!(page.len(), 100);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn batch_size(mut self, n: usize) -> Iter {
        self.batch = n.clamp(1, MAX_HINT);
        self
    }

    fn range_is_empty(&self) -> bool {
        bounds_are_empty(bound_ref(&self.lo), bound_ref(&self.hi))
    }

    /// Takes the next batch from one end of the remaining range: a stretch of the index's
    /// base when it can (`ordered::View`), copies otherwise.
    fn refill(&mut self, from_back: bool) {
        if self.exhausted || self.range_is_empty() {
            self.exhausted = true;
            return;
        }
        let batch = if from_back { &mut self.back } else { &mut self.front };
        if let Err(e) = self.dim.check_live() {
            *batch = Batch::Copied(VecDeque::from([(IndexKey::new(), Err(e))]));
            self.exhausted = true;
            return;
        }
        let n = self.batch;
        self.batch = (n * 2).min(MAX_BATCH);
        let (lo, hi) = (bound_ref(&self.lo), bound_ref(&self.hi));
        let layers = &mut self.layers;
        let state = self.dim.state.read();
        if let Some(view) = state.ordered.view(lo, hi, from_back, n) {
            *batch = Batch::Shared { view, snap: layers.current(&state) };
        } else {
            if !matches!(batch, Batch::Copied(_)) {
                *batch = Batch::empty();
            }
            self.dim.note_scan_of_changes();
            if let Batch::Copied(queue) = batch {
                // Straight into the end's queue, so a batch is not copied once more.
                queue.reserve(n);
                state.ordered.scan(lo, hi, from_back, n, |k, loc| {
                    queue.push_back((k.clone(), layers.slot(&state, loc).map(|s| (s, *loc))));
                });
            }
        }
        drop(state);
        if batch.is_empty() {
            self.exhausted = true;
            return;
        }
        if self.reads_values {
            for i in 0..AHEAD {
                layers.prefetch(batch.nearest(from_back, i, layers));
            }
        }
        let Some(last) = batch.farthest_key(from_back) else { return };
        let end = if from_back { &mut self.hi } else { &mut self.lo };
        exclude_from(end, last);
    }

    /// The next entry from the front, its key lent by the iterator instead of copied into a
    /// `Vec` of its own: a scan that only looks at each key, or copies it into a buffer it
    /// reuses, then allocates nothing per entry. The key is valid until the next call. The
    /// same entries in the same order as [`next`](Iterator::next), and the two can be mixed.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = jessy_storage::Store::open(dir.path())?;
    /// let d = store.dimension("default")?;
    /// d.put("user:1", "ada")?;
    /// d.put("user:2", "grace")?;
    /// let mut names = Vec::new();
    /// let mut iter = d.prefix("user:");
    /// while let Some(entry) = iter.next_borrowed() {
    ///     let (key, value) = entry?;
    ///     names.push(format!("{}={}", String::from_utf8_lossy(key), String::from_utf8_lossy(&value)));
    /// }
    /// assert_eq!(names, ["user:1=ada", "user:2=grace"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn next_borrowed(&mut self) -> Option<Result<(&[u8], Value)>> {
        Some(self.next_lent(false)?.map(|(key, value)| (key, value.to_value())))
    }

    /// [`next_borrowed`](Iter::next_borrowed) from the back: the entry
    /// [`next_back`](DoubleEndedIterator::next_back) would return.
    #[inline]
    pub fn next_back_borrowed(&mut self) -> Option<Result<(&[u8], Value)>> {
        Some(self.next_lent(true)?.map(|(key, value)| (key, value.to_value())))
    }

    /// [`next_borrowed`](Iter::next_borrowed) with the value lent as well: a [`ValueRef`]
    /// into the memory map, valid until the next call. A scan that copies each value out
    /// (into a response, say) then takes no reference on the map per entry, which threads
    /// scanning at once would all take on the same counter.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = jessy_storage::Store::open(dir.path())?;
    /// let d = store.dimension("default")?;
    /// d.put("user:1", "ada")?;
    /// d.put("user:2", "grace")?;
    /// let mut total = 0;
    /// let mut iter = d.prefix("user:");
    /// while let Some(entry) = iter.next_ref() {
    ///     let (_key, value) = entry?;
    ///     total += value.len();
    /// }
    /// assert_eq!(total, 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn next_ref(&mut self) -> Option<Result<(&[u8], ValueRef<'_>)>> {
        self.next_lent(false)
    }

    /// [`next_ref`](Iter::next_ref) from the back.
    #[inline]
    pub fn next_back_ref(&mut self) -> Option<Result<(&[u8], ValueRef<'_>)>> {
        self.next_lent(true)
    }

    /// The next key from the front and its value's version, lent as by
    /// [`next_ref`](Iter::next_ref), without reading the value: both come from the index
    /// alone, as [`Dimension::version`](crate::Dimension::version) answers. Listing keys then
    /// costs the same whatever the size of their values, and touches no log page. A key
    /// whose value is damaged is listed all the same; reading the value reports the damage.
    /// The same keys in the same order as [`next`](Iterator::next), and the two can be mixed.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = jessy_storage::Store::open(dir.path())?;
    /// let d = store.dimension("default")?;
    /// d.put("user:1", vec![0u8; 1 << 20])?;
    /// d.put("user:2", "grace")?;
    /// let mut keys = Vec::new();
    /// let mut iter = d.prefix("user:");
    /// while let Some(entry) = iter.next_key() {
    ///     let (key, _version) = entry?;
    ///     keys.push(String::from_utf8_lossy(key).into_owned());
    /// }
    /// assert_eq!(keys, ["user:1", "user:2"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn next_key(&mut self) -> Option<Result<(&[u8], Version)>> {
        self.next_key_lent(false)
    }

    /// [`next_key`](Iter::next_key) from the back.
    #[inline]
    pub fn next_back_key(&mut self) -> Option<Result<(&[u8], Version)>> {
        self.next_key_lent(true)
    }

    /// The lending calls chosen at run time, for a caller whose direction and need of values
    /// are parameters (a scan request, a command-line flag): the next entry from the back
    /// (`from_back`) or the front, its value lent as by [`next_ref`](Iter::next_ref), or, when
    /// `with_value` is false, not read at all (`None` in its place, as by
    /// [`next_key`](Iter::next_key)).
    #[inline]
    pub fn next_entry_ref(
        &mut self,
        from_back: bool,
        with_value: bool,
    ) -> Option<Result<(&[u8], Option<ValueRef<'_>>)>> {
        if with_value {
            self.next_lent(from_back).map(|e| e.map(|(key, value)| (key, Some(value))))
        } else {
            self.next_key_lent(from_back).map(|e| e.map(|(key, _)| (key, None)))
        }
    }

    /// Refills the batch of one end if it is used up.
    fn fill(&mut self, from_back: bool) {
        if (if from_back { &self.back } else { &self.front }).is_empty() {
            self.refill(from_back);
        }
    }

    /// The next entry from one end, its key and value lent (see `next_ref`).
    #[inline]
    fn next_lent(&mut self, from_back: bool) -> Option<Result<(&[u8], ValueRef<'_>)>> {
        self.reads_values = true;
        self.fill(from_back);
        let Iter { front, back, layers, lent, .. } = self;
        let (near, far) = if from_back { (back, front) } else { (front, back) };
        Some(match take(near, far, from_back, Some(layers))? {
            Taken::Copied((_, Err(e))) => Err(e),
            Taken::Copied((key, Ok((slot, loc)))) => match layers.read(&key, slot, &loc) {
                Ok(value) => {
                    *lent = key;
                    Ok((&lent[..], value))
                }
                Err(e) => Err(e),
            },
            Taken::Shared(entry, slot) => layers.read_shared(entry, slot),
        })
    }

    /// The next key from one end and its version, the key lent (see `next_key`).
    #[inline]
    fn next_key_lent(&mut self, from_back: bool) -> Option<Result<(&[u8], Version)>> {
        self.reads_values = false;
        self.fill(from_back);
        let Iter { front, back, lent, .. } = self;
        let (near, far) = if from_back { (back, front) } else { (front, back) };
        Some(match take(near, far, from_back, None)? {
            Taken::Copied((_, Err(e))) => Err(e),
            Taken::Copied((key, Ok((_, loc)))) => {
                *lent = key;
                Ok((&lent[..], Version(loc.seq)))
            }
            Taken::Shared((key, loc), _) => Ok((&key[..], Version(loc.seq))),
        })
    }

    /// The next entry from one end, its key copied.
    #[inline]
    fn next_owned(&mut self, from_back: bool) -> Option<Result<(Vec<u8>, Value)>> {
        self.reads_values = true;
        self.fill(from_back);
        let Iter { front, back, layers, .. } = self;
        let (near, far) = if from_back { (back, front) } else { (front, back) };
        // As `next_lent`, but a copied key is handed over (`into_vec`) instead of lent.
        Some(match take(near, far, from_back, Some(layers))? {
            Taken::Copied((_, Err(e))) => Err(e),
            Taken::Copied((key, Ok((slot, loc)))) => {
                layers.read(&key, slot, &loc).map(|value| (key.into_vec(), value.to_value()))
            }
            Taken::Shared(entry, slot) => {
                layers.read_shared(entry, slot).map(|(key, value)| (key.to_vec(), value.to_value()))
            }
        })
    }
}

/// Takes the next entry for one end from its batch (`near`) or, once that is used up, the
/// farthest of the other end's (`far`): when the middle is used up, what the other end took
/// is next in line. Given the layers (the caller reads values), also asks for the value
/// `AHEAD` entries on (`AHEAD` from the nearest now is `AHEAD - 1` from the next one).
#[inline(always)]
fn take<'a>(near: &'a mut Batch, far: &'a mut Batch, from_back: bool, layers: Option<&Layers>) -> Option<Taken<'a>> {
    if let Some(layers) = layers {
        layers.prefetch(near.nearest(from_back, AHEAD, layers));
    }
    near.pop(from_back, false).or_else(|| far.pop(!from_back, true))
}

impl Layers {
    /// Reads and checks the value at `loc` in the layer at `slot`, which must be `key`'s.
    #[inline(always)]
    fn read(&self, key: &[u8], slot: Slot, loc: &Loc) -> Result<ValueRef<'_>> {
        let (_, seg, map) = self.get(slot);
        seg.read_value(map, loc.off, Version(loc.seq), key)
    }

    /// A shared entry's key and value, its layer in snapshot `snap`.
    #[inline(always)]
    fn read_shared<'a>(&'a self, (key, loc): &'a (IndexKey, Loc), snap: u32) -> Result<(&'a [u8], ValueRef<'a>)> {
        let slot = self.slot_in(snap, loc.layer).ok_or_else(|| crate::dimension::not_loaded(loc.layer))?;
        Ok((key, self.read(key, slot, loc)?))
    }

    /// Where `layer` is in snapshot `snap`, if it has it.
    #[inline(always)]
    fn slot_in(&self, snap: u32, layer: u32) -> Option<Slot> {
        let pos = self.snaps.get(snap as usize)?.position(layer)?;
        Some(Slot { snap, pos: pos as u32 })
    }

    /// The state's own snapshot (taken unless the newest is that one already): it has every
    /// layer the index points into while the state's lock is held.
    fn current(&mut self, state: &State) -> u32 {
        let current = &state.layers;
        if !self.snaps.last().is_some_and(|s| Arc::ptr_eq(s, current)) {
            self.snaps.push(current.clone());
        }
        (self.snaps.len() - 1) as u32
    }

    /// The layer at `slot`; slots only come from `slot()` and `slot_in()`, which found it in
    /// the snapshot.
    fn get(&self, slot: Slot) -> &(u32, Arc<Segment>, Arc<Mmap>) {
        &self.snaps[slot.snap as usize].list[slot.pos as usize]
    }

    /// Asks the CPU to start loading the entry at `loc` in the layer at `slot`, if given.
    /// Keys that are neighbours in the index are scattered over the log, so each read is a
    /// cache miss; issued ahead (`AHEAD` entries) they overlap instead of waiting for each
    /// other.
    fn prefetch(&self, entry: Option<(Slot, &Loc)>) {
        let Some((slot, loc)) = entry else { return };
        let map = &self.get(slot).2;
        let start = (loc.off as usize).min(map.len());
        let end = (start + (loc.size as usize).min(PREFETCH_MAX)).min(map.len());
        // Every line of the entry, the last one too: an entry rarely starts on a line
        // boundary, and its checksum reads it to the end. Of a long entry only the start:
        // the CPU's own prefetcher follows a sequential read, and AHEAD entries of a few
        // MiB each would push out of the cache what the scan is reading now.
        prefetch_slice(&map[start..end]);
    }

    /// Where `loc`'s layer is in the newest snapshot, taking the state's current one first
    /// if the newest lacks the layer or maps too little of it (see `Layers`).
    fn slot(&mut self, state: &State, loc: &Loc) -> Result<Slot> {
        if let Some(slot) = self.find(loc) {
            return Ok(slot);
        }
        let snap = self.current(state);
        // Even the state's own snapshot may not map all of `loc`: the read then reports it.
        self.slot_in(snap, loc.layer).ok_or_else(|| crate::dimension::not_loaded(loc.layer))
    }

    /// `loc`'s layer in the newest snapshot, if it maps all of `loc`.
    fn find(&self, loc: &Loc) -> Option<Slot> {
        let snap = self.snaps.last()?;
        let pos = snap.position(loc.layer)?;
        let end = loc.off as usize + loc.size as usize;
        (snap.list[pos].2.len() >= end).then_some(Slot { snap: (self.snaps.len() - 1) as u32, pos: pos as u32 })
    }
}

/// Makes `bound` exclude `key` and everything before it (on its side), in the buffer
/// `bound` already holds when it has one: a short range would otherwise allocate for it.
fn exclude_from(bound: &mut Bound<Vec<u8>>, key: &[u8]) {
    let mut buf = match std::mem::replace(bound, Bound::Unbounded) {
        Bound::Included(v) | Bound::Excluded(v) => v,
        Bound::Unbounded => Vec::new(),
    };
    buf.clear();
    buf.extend_from_slice(key);
    *bound = Bound::Excluded(buf);
}

fn bound_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl Iterator for Iter {
    type Item = Result<(Vec<u8>, Value)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_owned(false)
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.next_owned(true)
    }
}
