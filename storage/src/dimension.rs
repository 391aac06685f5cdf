//! A dimension: one ordered keyspace, its in-memory index, its log files, and its writer.
//!
//! Reads take the index's read lock just long enough to find a key's location, then read
//! the value from the memory map with no lock held. Writes are serialised by the writer
//! mutex: a frame is encoded outside it, then stamped with a sequence number and written
//! with `pwrite` under it. Under `Durability::Immediate` the new locations are parked as
//! *pending* and published to readers only after an `fdatasync` covers them; one thread
//! syncs for everyone waiting (group commit). Since nobody can see a pending frame, its
//! bytes wait in the writer too, and the sync writes all of them with one `pwrite` first.

use std::collections::{BTreeMap, HashMap};
use std::ops::{Bound, Range};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::batch::Op;
use crate::helper::{spawn_or_run, Helper};
use crate::keyindex::{KeyIndex, Recorder};
use crate::layout::{dir_name, DimPaths};
use crate::manifest::{LayerEntry, Manifest};
use crate::ordered::Ordered;
use crate::points::Points;
use crate::record::{entry_len, FrameBuilder, Kind, FILE_HEADER_LEN, FRAME_HEADER_LEN};
use crate::region;
use crate::runs::Found;
use crate::segment::{self, scan_frames, Segment};
use crate::store::Shared;
use crate::{Durability, Error, Expect, Iter, Result, Ticket, Value, Version, WriteBatch, MAX_KEY_LEN};

/// Sequence numbers reserved at a time (see `DimInner::reserve_seqs`): one `index.json`
/// rewrite per million writes, and versions jump by up to this much across a reopen.
const SEQ_BLOCK: u64 = 1 << 20;

/// How long a write that must not block waits for the writer lock before declining.
const SHORT_WAIT: std::time::Duration = std::time::Duration::from_micros(50);

/// Under `Immediate`, frames at least this long are written at once rather than queued
/// for the next sync's `pwrite`: copying them would cost more than the call it saves.
const QUEUE_FRAME_MAX: usize = 64 << 10;

/// Under `Immediate`, queued frame bytes are written as soon as they reach this much,
/// whether or not a sync is due, so the queue stays a bounded copy.
const QUEUE_BYTES_MAX: usize = 1 << 20;

/// Whether a write may wait for the writer lock, for growing the region or for a seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blocking {
    Allowed,
    Never,
}

/// Where the newest version of a key lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Loc {
    pub layer: u32,
    /// Offset of the entry header in the layer file.
    pub off: u32,
    /// Encoded entry size (header + key + value), for live-byte accounting.
    pub size: u32,
    pub seq: u64,
}

pub(crate) use crate::key::IndexKey;

/// Point-index slots are asked for this many updates ahead of the one being applied.
const PREFETCH_AHEAD: usize = 8;

/// A sync that makes at least this many updates durable defers their ordered-index inserts
/// to the next sync (`State::apply_all`). Below it, splitting the next sync in two (start the
/// write-back, fold, then `fdatasync`) costs more than the inserts it would hide.
const DEFER_MIN: usize = if cfg!(test) { 2 } else { 32 };

/// Batches of at least this many updates change the two indexes on two threads
/// (`State::apply_in_parallel`); starting a thread costs about as much as 100 updates.
const PARALLEL_APPLY_MIN: usize = 4096;

/// Sets each update's location in the point index, in order, and returns what each replaced.
fn set_points(points: &Points, updates: &[Update]) -> Vec<Option<Loc>> {
    for (key, _) in updates.iter().take(PREFETCH_AHEAD) {
        points.prefetch(key);
    }
    let mut olds = Vec::with_capacity(updates.len());
    for (i, (key, loc)) in updates.iter().enumerate() {
        if let Some((ahead, _)) = updates.get(i + PREFETCH_AHEAD) {
            points.prefetch(ahead);
        }
        olds.push(match loc {
            Some(loc) => points.insert(key.clone(), *loc),
            None => points.remove(key),
        });
    }
    olds
}

pub(crate) struct State {
    /// Ordered, for scans (ordered.rs).
    pub ordered: Ordered,
    /// The same entries hashed, for point reads: one probe instead of a binary search that
    /// misses the cache at every level (2.5x the gets per second at 1M keys).
    /// Shared with `DimInner::points`, which reads it without this lock (points.rs).
    pub points: Arc<Points>,
    /// Open segments by layer id. Change them only with `add_segment` / `remove_segment`,
    /// which keep the point index's table of maps and `layers` in step.
    pub segments: BTreeMap<u32, Arc<Segment>>,
    /// The same segments with their current maps, as one shared snapshot for scans.
    pub layers: Arc<LayerMaps>,
    /// Live entry bytes per layer.
    pub layer_live: HashMap<u32, u64, foldhash::fast::FixedState>,
    pub live_bytes: u64,
}

impl State {
    pub fn apply(&mut self, key: IndexKey, loc: Option<Loc>) {
        let old = match loc {
            Some(loc) => self.points.insert(key.clone(), loc),
            None => self.points.remove(&key),
        };
        self.settle(key, loc, old);
    }

    /// The ordered index and the live bytes, once the point index has taken `key` from
    /// `old` to `loc`. A delete of a key that was not there changes neither.
    fn settle(&mut self, key: IndexKey, loc: Option<Loc>, old: Option<Loc>) {
        if changes_order(loc, old) {
            self.ordered.set(key, loc);
        }
        self.account(loc, old);
    }

    /// Live bytes after a key's location went from `old` to `new`.
    fn account(&mut self, new: Option<Loc>, old: Option<Loc>) {
        if let Some(loc) = new {
            *self.layer_live.entry(loc.layer).or_insert(0) += loc.size as u64;
            self.live_bytes += loc.size as u64;
        }
        if let Some(old) = old {
            if let Some(l) = self.layer_live.get_mut(&old.layer) {
                *l = l.saturating_sub(old.size as u64);
            }
            self.live_bytes = self.live_bytes.saturating_sub(old.size as u64);
        }
    }

    /// [`apply`](Self::apply) for each of `updates`, in order. The point index takes them
    /// all first (`set_points`, which asks for slots ahead: in a large batch every insert is
    /// otherwise a cache miss that waits for the previous one), then the ordered index.
    /// With `defer`, a small batch waits beside the ordered index's tree instead of going
    /// into it (`Ordered::defer`): for a writer that will fold it in while its next sync is
    /// under way (`DimInner::lead_sync`).
    pub fn apply_all(&mut self, updates: Vec<Update>, defer: bool) {
        if updates.len() >= PARALLEL_APPLY_MIN {
            match self.apply_in_parallel(&updates) {
                Ok(()) => return,
                Err(e) => tracing::debug!(error = %e, "no thread for the point index; applying in turn"),
            }
        }
        let olds = set_points(&self.points, &updates);
        if !defer {
            for ((key, loc), old) in updates.into_iter().zip(olds) {
                self.settle(key, loc, old);
            }
            return;
        }
        let mut changed = Vec::with_capacity(updates.len());
        for ((key, loc), old) in updates.into_iter().zip(olds) {
            if changes_order(loc, old) {
                changed.push((key, loc));
            }
            self.account(loc, old);
        }
        // Stable, so that a key's later update stays later and wins.
        changed.sort_by(|a, b| a.0.cmp(&b.0));
        self.ordered.defer(changed.into_iter());
    }

    /// `apply_all` for a large batch: the point index is changed on a second thread while
    /// this one changes the ordered index. The two share nothing, and in a bulk load of
    /// batches of 10,000 they were together about two fifths of the writer's time, which
    /// now overlaps. Each index sees each key's updates in order (the ordered index gets
    /// them sorted by key, stably), so a key written twice in the batch ends with its last
    /// update in both. A delete goes into the ordered index whether or not the key was
    /// there (a delete of an absent key is dropped at its next merge); the point index says
    /// what each update replaced, for the live-byte count.
    /// Fails, having changed nothing, if no thread can be started.
    fn apply_in_parallel(&mut self, updates: &[Update]) -> std::io::Result<()> {
        let points = &*self.points;
        let ordered = &mut self.ordered;
        let plan = points.plan(updates);
        let (mine, theirs) = std::thread::scope(|s| -> std::io::Result<_> {
            let helper = std::thread::Builder::new()
                .name("jessy-apply".into())
                .spawn_scoped(s, || points.apply_shards(&plan, updates))?;
            // In key order, the ordered index takes the batch as one sorted run (see
            // `Ordered::set_sorted`); inserted key by key, the B-tree's inserts walked its
            // nodes in order and found them in the cache (`probe load`, alternating: 1.70 /
            // 1.67 / 1.60 / 1.52 s -> 1.55 / 1.56 / 1.53 / 1.44 s). The sort must be stable: a
            // key's later update must stay later.
            let mut order: Vec<u32> = (0..updates.len() as u32).collect();
            order.sort_by(|&a, &b| updates[a as usize].0.cmp(&updates[b as usize].0));
            ordered.set_sorted(order.into_iter().map(|i| updates[i as usize].clone()));
            // The point index's part was the longer (about 3 ms of a 10,000-key batch against
            // 1.3 ms, at a million keys), and this thread used to wait for it: now it takes
            // the shards the helper has not started (`probe load`: see docs/BENCHMARKS.md).
            let mine = points.apply_shards(&plan, updates);
            Ok((mine, helper.join()))
        })?;
        let theirs = theirs.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        for (i, old) in mine.into_iter().chain(theirs) {
            self.account(updates[i as usize].1, old);
        }
        Ok(())
    }

    pub fn new() -> State {
        State {
            ordered: Ordered::default(),
            points: Arc::new(Points::new()),
            segments: BTreeMap::new(),
            layers: Arc::default(),
            layer_live: HashMap::default(),
            live_bytes: 0,
        }
    }

    pub fn add_segment(&mut self, seg: Arc<Segment>) {
        let map = seg.map();
        self.points.set_map(seg.layer_id, &map);
        Arc::make_mut(&mut self.layers).set(seg.layer_id, &seg, map);
        self.segments.insert(seg.layer_id, seg);
    }

    pub fn remove_segment(&mut self, layer: u32) {
        self.points.remove_map(layer);
        Arc::make_mut(&mut self.layers).remove(layer);
        self.segments.remove(&layer);
    }

    /// After the segment of `layer` was mapped again (it grew).
    pub fn refresh_map(&mut self, layer: u32) {
        if let Some(seg) = self.segments.get(&layer) {
            let map = seg.map();
            self.points.set_map(layer, &map);
            Arc::make_mut(&mut self.layers).set(layer, seg, map);
        }
    }

    pub fn segment(&self, layer: u32) -> Result<&Arc<Segment>> {
        self.segments.get(&layer).ok_or_else(|| not_loaded(layer))
    }
}

/// The error for an index entry that points at a layer the dimension does not have open.
pub(crate) fn not_loaded(layer: u32) -> Error {
    Error::corruption(PathBuf::from(format!("layer {layer}")), 0, "index points at a layer that is not loaded")
}

/// Every open segment with its map at the time, sorted by layer id. A scan takes the whole
/// snapshot with one `Arc` clone, where it cloned a segment and took and cloned its map for
/// each layer it read: with 10 MiB regions a range of 10 keys over a million reads about as
/// many layers, and that was an eighth of its time. The state changes it in place with
/// `Arc::make_mut` when a segment is added, removed or mapped again: while no scan holds it
/// (as when open adds every layer) that costs no copy; while one does, the scan keeps its
/// snapshot, and with it the files mapped, as holding a `Value` does.
#[derive(Default, Clone)]
pub(crate) struct LayerMaps {
    pub list: Vec<(u32, Arc<Segment>, Arc<memmap2::Mmap>)>,
    /// `list`'s position of layer `first + i` at `by_layer[i]`, `NONE` where there is no such
    /// layer; empty when the ids span more than `DIRECT_SPAN` times the layers. A range reads
    /// each entry's layer from here: a binary search over scattered layers mispredicted a
    /// branch at nearly every step, about a tenth of a range of 10 with 10 MiB regions.
    first: u32,
    by_layer: Vec<u32>,
}

/// See `LayerMaps::by_layer`.
const NONE: u32 = u32::MAX;
const DIRECT_SPAN: usize = 4;

impl LayerMaps {
    /// Adds `layer`, or replaces its segment and map.
    fn set(&mut self, layer: u32, seg: &Arc<Segment>, map: Arc<memmap2::Mmap>) {
        let entry = (layer, seg.clone(), map);
        match self.list.binary_search_by_key(&layer, |l| l.0) {
            Ok(i) => self.list[i] = entry,
            Err(i) => {
                self.list.insert(i, entry);
                self.reindex();
            }
        }
    }

    fn remove(&mut self, layer: u32) {
        if let Some(i) = self.position(layer) {
            self.list.remove(i);
            self.reindex();
        }
    }

    /// Rebuilds `by_layer` after `list` gained or lost a layer (a seal, compaction: rare).
    fn reindex(&mut self) {
        self.by_layer.clear();
        let (Some(first), Some(last)) = (self.list.first(), self.list.last()) else { return };
        let span = (last.0 - first.0) as usize + 1;
        if span > self.list.len() * DIRECT_SPAN + 64 {
            return;
        }
        self.first = first.0;
        self.by_layer.resize(span, NONE);
        for (i, (layer, _, _)) in self.list.iter().enumerate() {
            self.by_layer[(layer - self.first) as usize] = i as u32;
        }
    }

    /// Where `layer` is in `list`.
    pub fn position(&self, layer: u32) -> Option<usize> {
        if self.by_layer.is_empty() {
            return self.list.binary_search_by_key(&layer, |l| l.0).ok();
        }
        let direct = (layer.checked_sub(self.first))
            .and_then(|i| self.by_layer.get(i as usize))
            .filter(|&&p| p != NONE)
            .map(|&p| p as usize);
        // Every test's reads check the table against the search it replaces.
        debug_assert_eq!(direct, self.list.binary_search_by_key(&layer, |l| l.0).ok());
        direct
    }
}

type Update = (IndexKey, Option<Loc>);

pub(crate) struct Writer {
    pub region: Arc<Segment>,
    /// End of the records in the region, the queued ones included.
    pub offset: u64,
    /// Under `Immediate`: the frames that end at `offset`, appended but not yet written to
    /// the file (see `write_queued`). Their writes are pending, so no reader looks for them.
    queued: Vec<u8>,
    /// The sequence number of the first queued frame.
    queued_from: u64,
    /// Writes whose queued frames failed to be written and were taken back: their sequence
    /// numbers and the error, for whoever waits on them (see `write_queued`). A failure is
    /// rare and its record small, so they are kept: a waiter may come late.
    lost: Vec<(std::ops::RangeInclusive<u64>, Option<i32>, String)>,
    /// Allocated length of the region file.
    capacity: u64,
    /// Bytes of the region that a finished `fdatasync` covered (0: none known yet). The
    /// frame written at exactly this offset gets the synced-before bit (`append_as`,
    /// `write_queued`), which lets recovery tell damage from a torn tail.
    synced_end: u64,
    /// Where the last sync mark ends (0: none), so that a store opened and closed without
    /// writes does not add one each time (`write_sync_mark`).
    mark_end: u64,
    next_seq: u64,
    pub written_seq: u64,
    synced_seq: u64,
    syncing: bool,
    /// Written but not yet durable (Immediate only), in sequence order.
    pending: Vec<(u64, Vec<Update>)>,
    /// Callbacks of [`Ticket::on_durable`](crate::Ticket::on_durable), waiting for their
    /// sequence number to become durable (Immediate only).
    callbacks: Vec<(u64, crate::ticket::Callback)>,
    /// Every entry written to the region, for the key index it gets when sealed.
    keys: Recorder,
    pub manifest: Manifest,
    pub next_layer_id: u32,
}

impl Writer {
    /// The error of a write whose frame was taken back after its `pwrite` failed.
    pub fn lost(&self, seq: u64) -> Option<Error> {
        let (_, code, text) = self.lost.iter().find(|(seqs, _, _)| seqs.contains(&seq))?;
        Some(self.write_error(*code, text))
    }

    /// A failed `pwrite` of the region, rebuilt from what `lost` keeps of it (the OS error
    /// code where there is one, so that ENOSPC is still `disk_full`).
    fn write_error(&self, code: Option<i32>, text: &str) -> Error {
        let source = match code {
            Some(code) => std::io::Error::from_raw_os_error(code),
            None => std::io::Error::other(text.to_string()),
        };
        Error::Io { op: "write", path: self.region.path(), source }
    }

    /// End of the records in the file: `offset` less the queued frames, which a read-only
    /// store (whose last sync failed) may still hold.
    pub fn written_end(&self) -> u64 {
        self.offset - self.queued.len() as u64
    }

    pub fn synced_seq(&self) -> u64 {
        self.synced_seq
    }

    /// Whether a frame written at `at` gets the synced-before bit: a sync covered every byte
    /// before it, and the region's format has the bit (version 2).
    fn all_synced_before(&self, at: u64) -> bool {
        self.synced_end == at && self.region.version >= 2
    }

    pub fn add_callback(&mut self, seq: u64, f: crate::ticket::Callback) {
        self.callbacks.push((seq, f));
    }
}

pub(crate) struct DimInner {
    pub shared: Arc<Shared>,
    pub id: u32,
    pub name: String,
    pub paths: DimPaths,
    pub state: RwLock<State>,
    /// `state.points`, read without the state lock.
    pub points: Arc<Points>,
    pub writer: Mutex<Writer>,
    synced: Condvar,
    /// Wakes the committer thread that syncs for waiting callbacks (see ticket.rs).
    pub committer: crate::ticket::Committer,
    /// Writes handed to the committer thread to append (see ticket.rs, "The inbox").
    pub inbox: Mutex<Vec<crate::ticket::Queued>>,
    dropped: AtomicBool,
    /// One compaction at a time per dimension. It guards the layers that were found not
    /// worth rewriting (see compaction.rs).
    pub compacting: Mutex<crate::compaction::Futile>,
    /// The thread writing the key index of the last sealed layer, if it may still run
    /// (see `seal_synced`).
    key_index: Mutex<Option<Helper<()>>>,
    /// The thread finishing the last seal's file steps behind the writer, if it may still
    /// run (see `seal_behind`).
    sealing: Mutex<Option<Helper<Result<()>>>>,
    /// Why a seal behind the writer failed: the writes made since it went into a region
    /// that never got its place, so no later sync can make them durable.
    seal_failed: Mutex<Option<String>>,
    /// Grows the active region ahead of need (growth.rs).
    pub grower: crate::growth::Grower,
    /// Whether a scan merged the ordered index's waiting changes since the last publish: if
    /// so, publish does not defer (see `DEFER_MIN`).
    scanned_changes: AtomicBool,
}

/// A handle to one dimension of a [`Store`](crate::Store): cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct Dimension {
    pub(crate) inner: Arc<DimInner>,
}

/// Size and shape of a dimension.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DimensionStats {
    /// Numeric id.
    pub id: u32,
    /// Directory name (`D01`).
    pub dir: String,
    /// Name.
    pub name: String,
    /// Number of keys with a value.
    pub keys: u64,
    /// Bytes of the newest entry of every key (headers, keys and values).
    pub live_bytes: u64,
    /// Bytes of the dimension's log files on disk (preallocated space included).
    pub disk_bytes: u64,
    /// Log files: sealed layers plus the active region.
    pub layers: usize,
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct CompactReport {
    /// Disk bytes given back.
    pub bytes_reclaimed: u64,
    /// Sealed layers rewritten.
    pub layers_compacted: usize,
}

impl std::fmt::Debug for Dimension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dimension").field("id", &self.inner.id).field("name", &self.inner.name).finish()
    }
}

/// Whether a key's location going from `old` to `new` changes the ordered index: a delete of
/// a key that was not there does not (`State::settle`, and `State::apply_all` when it defers).
fn changes_order(new: Option<Loc>, old: Option<Loc>) -> bool {
    new.is_some() || old.is_some()
}

/// Checks that `key` can be a key: 1 to [`MAX_KEY_LEN`] bytes. Writes check it themselves;
/// reads do not (a key of another shape is simply never found), so a program or tool that wants
/// to tell a malformed key from a missing one asks here.
pub fn validate_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::KeyTooLarge { len: key.len(), max: MAX_KEY_LEN });
    }
    Ok(())
}

impl Dimension {
    /// The numeric id (1 for `default`).
    pub fn id(&self) -> u32 {
        self.inner.id
    }
    /// The name.
    pub fn name(&self) -> String {
        self.inner.name.clone()
    }
    /// The directory name under `consciousness/` (`D01`).
    pub fn dir(&self) -> String {
        dir_name(self.inner.id)
    }

    /// The largest value one `put` of `key` can store: a record is at most a region
    /// (`MMAP_MAX_SIZE`), less the file's, the frame's and the entry's headers and the key.
    /// A larger value fails with [`Error::ValueTooLarge`] naming this number.
    pub fn max_value_len(&self, key: impl AsRef<[u8]>) -> u64 {
        max_value_len(self.inner.shared.config.max_size, key.as_ref().len())
    }

    /// Stores `value` under `key`; returns the write's version.
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<Version> {
        self.inner.commit(&[(Kind::Put, key.as_ref(), value.as_ref())], None)
    }

    /// The newest value of `key`, or `None`. The value is verified against its checksum.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>> {
        self.inner.check_live()?;
        let key = key.as_ref();
        // Verify the checksum after letting go of the lock: the map handle keeps it alive.
        let found = self.inner.points.get(key);
        let Some((map, loc)) = found else { return Ok(None) };
        let damaged = |reason| {
            let path = self.inner.state.read().segments.get(&loc.layer).map(|s| s.path());
            let path = path.unwrap_or_else(|| PathBuf::from(format!("layer {}", loc.layer)));
            Error::corruption(path, loc.off as u64, reason)
        };
        let map = map.ok_or_else(|| damaged("index points at a layer that is not loaded"))?;
        // The entry spans three or four cache lines that are rarely cached; asked for at
        // once, their misses overlap instead of following each other through the checksum.
        let entry = map.get(loc.off as usize..).unwrap_or(&[]);
        crate::prefetch::prefetch_slice(&entry[..entry.len().min(loc.size as usize)]);
        segment::value_at(map, loc.off, Version(loc.seq), key).map(Some).map_err(damaged)
    }

    /// The version of `key`'s newest value (the one [`Dimension::get`] returns), or `None`,
    /// from the index alone: the value is neither read nor checked against its checksum. For
    /// callers that need only the version, such as a condition on a list of ETags, where `get`
    /// would check a value of up to the region size to learn one number.
    pub fn version(&self, key: impl AsRef<[u8]>) -> Result<Option<Version>> {
        self.inner.check_live()?;
        Ok(self.inner.points.loc(key.as_ref()).map(|loc| Version(loc.seq)))
    }

    /// True when `key` has a value.
    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        Ok(self.version(key)?.is_some())
    }

    /// Removes `key` (not an error if it has no value); returns the write's version.
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<Version> {
        self.inner.commit(&[(Kind::Delete, key.as_ref(), &[])], None)
    }

    /// Stores `value` only if `key`'s current state matches `expect`; otherwise fails with
    /// [`Error::ConditionFailed`] and writes nothing. The condition counts every write before
    /// it, also those still waiting for their sync under `Immediate`; a failure caused by one
    /// is returned once that write is durable, so a read right after it sees that write (a
    /// read-and-retry loop then retries only when it really lost a race).
    pub fn put_if(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>, expect: Expect) -> Result<Version> {
        let key = key.as_ref();
        self.inner.commit(&[(Kind::Put, key, value.as_ref())], Some((key, expect)))
    }

    /// Removes `key` only if its current state matches `expect`.
    pub fn delete_if(&self, key: impl AsRef<[u8]>, expect: Expect) -> Result<Version> {
        let key = key.as_ref();
        self.inner.commit(&[(Kind::Delete, key, &[])], Some((key, expect)))
    }

    /// Applies a batch atomically: after a crash, all of it or none of it is there.
    /// An empty batch writes nothing and returns the current version, once every write
    /// before it is as durable (and so as visible) as a write of its own would be.
    pub fn write(&self, batch: WriteBatch) -> Result<Version> {
        let ops = batch_ops(&batch);
        if ops.is_empty() {
            self.inner.check_live()?;
            let seq = self.inner.writer.lock().written_seq;
            if self.inner.shared.config.durability == Durability::Immediate {
                self.inner.wait_durable(seq)?;
            }
            return Ok(Version(seq));
        }
        self.inner.commit(&ops, None)
    }

    /// Like [`put`](Self::put) (or [`put_if`](Self::put_if) with an `expect`), but returns
    /// as soon as the write is in the log, with a [`Ticket`] that tells when it is durable.
    /// Readers see the write only from then on, as with `put`. For servers that keep many
    /// writes in flight: see [`Ticket::on_durable`].
    pub fn submit_put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>, expect: Option<Expect>) -> Result<Ticket> {
        let key = key.as_ref();
        let seq = self.inner.append(&[(Kind::Put, key, value.as_ref())], expect.map(|e| (key, e)))?;
        Ok(Ticket::new(self.inner.clone(), seq))
    }

    /// [`submit_put`](Self::submit_put) that never waits long: `Ok(None)`, having written
    /// nothing, when it would have to (another writer has held the writer lock for 50 µs,
    /// or the active region must grow or be sealed first). For async servers: try this on the event loop
    /// and fall back to `submit_put` on a thread that may block. Under `Immediate`,
    /// [`enqueue_put`](Self::enqueue_put) never takes the writer lock at all.
    pub fn try_submit_put(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        expect: Option<Expect>,
    ) -> Result<Option<Ticket>> {
        let key = key.as_ref();
        let seq =
            self.inner.append_as(&[(Kind::Put, key, value.as_ref())], expect.map(|e| (key, e)), Blocking::Never)?;
        Ok(seq.map(|seq| Ticket::new(self.inner.clone(), seq)))
    }

    /// [`submit_delete`](Self::submit_delete) that never waits; see
    /// [`try_submit_put`](Self::try_submit_put).
    pub fn try_submit_delete(&self, key: impl AsRef<[u8]>, expect: Option<Expect>) -> Result<Option<Ticket>> {
        let key = key.as_ref();
        let seq = self.inner.append_as(&[(Kind::Delete, key, &[])], expect.map(|e| (key, e)), Blocking::Never)?;
        Ok(seq.map(|seq| Ticket::new(self.inner.clone(), seq)))
    }

    /// [`delete`](Self::delete) (or [`delete_if`](Self::delete_if)) that returns a
    /// [`Ticket`]; see [`submit_put`](Self::submit_put).
    pub fn submit_delete(&self, key: impl AsRef<[u8]>, expect: Option<Expect>) -> Result<Ticket> {
        let key = key.as_ref();
        let seq = self.inner.append(&[(Kind::Delete, key, &[])], expect.map(|e| (key, e)))?;
        Ok(Ticket::new(self.inner.clone(), seq))
    }

    /// [`write`](Self::write) that returns a [`Ticket`]; see [`submit_put`](Self::submit_put).
    pub fn submit(&self, batch: WriteBatch) -> Result<Ticket> {
        let ops = batch_ops(&batch);
        let seq = if ops.is_empty() {
            self.inner.check_live()?;
            self.inner.writer.lock().written_seq
        } else {
            self.inner.append(&ops, None)?
        };
        Ok(Ticket::new(self.inner.clone(), seq))
    }

    /// Key-ordered entries within `range`, double-ended (`.rev()` walks backwards).
    /// The iteration is not a snapshot: it sees each key at most once, with a value the key
    /// held at some moment during the walk.
    pub fn range<K: AsRef<[u8]>, R: std::ops::RangeBounds<K>>(&self, range: R) -> Iter {
        let conv = |b: Bound<&K>| match b {
            Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
            Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        Iter::new(self.inner.clone(), conv(range.start_bound()), conv(range.end_bound()))
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        let prefix = prefix.as_ref().to_vec();
        let end = prefix_end(&prefix).map_or(Bound::Unbounded, Bound::Excluded);
        Iter::new(self.inner.clone(), Bound::Included(prefix), end)
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> Iter {
        Iter::new(self.inner.clone(), Bound::Unbounded, Bound::Unbounded)
    }

    /// Number of keys with a value.
    pub fn len(&self) -> usize {
        self.inner.state.read().points.len()
    }

    /// True when no key has a value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size and shape.
    pub fn stats(&self) -> DimensionStats {
        self.inner.stats()
    }

    /// Makes every write so far durable (useful under `Periodic` or `None`). Fails on a
    /// read-only store under `Periodic` or `None`, as [`Store::sync`](crate::Store::sync)
    /// says.
    pub fn sync(&self) -> Result<()> {
        self.inner.sync()
    }

    /// Rewrites sealed layers whose dead share passes the configured threshold.
    /// Returns the bytes given back; readers and writers keep going while it runs.
    pub fn compact(&self) -> Result<CompactReport> {
        self.inner.compact()
    }
}

/// A batch's operations as the writer appends them.
fn batch_ops(batch: &WriteBatch) -> Vec<(Kind, &[u8], &[u8])> {
    batch
        .ops()
        .map(|op| match op {
            Op::Put { key, value } => (Kind::Put, key, value),
            Op::Delete { key } => (Kind::Delete, key, &[][..]),
        })
        .collect()
}

/// The smallest key greater than every key starting with `prefix`, if there is one.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl DimInner {
    pub fn check_live(&self) -> Result<()> {
        if self.dropped.load(Ordering::Acquire) {
            return Err(Error::DimensionDropped(self.name.clone()));
        }
        Ok(())
    }

    pub fn mark_dropped(&self) {
        self.dropped.store(true, Ordering::Release);
        let mut w = self.writer.lock();
        let name = self.name.clone();
        fail_callbacks(&mut w, || Error::DimensionDropped(name.clone()));
    }

    pub fn paths(&self) -> &DimPaths {
        &self.paths
    }

    fn max_frame(&self) -> u64 {
        self.shared.config.max_size - FILE_HEADER_LEN as u64
    }

    /// Validates, encodes, writes and (per durability) syncs one frame.
    fn commit(&self, ops: &[(Kind, &[u8], &[u8])], cond: Option<(&[u8], Expect)>) -> Result<Version> {
        let immediate = self.shared.config.durability == Durability::Immediate;
        let seq = match self.append(ops, cond) {
            Ok(seq) => seq,
            // Under `Immediate` a condition is checked against writes still waiting for their
            // sync, which readers cannot see yet: a caller that reads and retries (a
            // compare-and-set loop) would read the old version again and fail again until that
            // sync, hundreds of times. Answered once the write that failed it is durable, the
            // retry reads it.
            Err(Error::ConditionFailed { expected, current: Some(current) }) if immediate => {
                let _ = self.wait_durable(current.0);
                return Err(Error::ConditionFailed { expected, current: Some(current) });
            }
            Err(e) => return Err(e),
        };
        if immediate {
            self.wait_durable(seq)?;
        }
        Ok(Version(seq))
    }

    /// Validates, encodes and writes one frame; returns its sequence number. Under
    /// `Immediate` the frame is not durable (nor visible) until a sync covers it.
    pub(crate) fn append(&self, ops: &[(Kind, &[u8], &[u8])], cond: Option<(&[u8], Expect)>) -> Result<u64> {
        self.append_as(ops, cond, Blocking::Allowed).map(|seq| seq.unwrap_or_default())
    }

    /// [`append`](Self::append), or with `Blocking::Never`, `None` instead of waiting:
    /// when the writer is busy, or the region must grow or be sealed first.
    pub(crate) fn append_as(
        &self,
        ops: &[(Kind, &[u8], &[u8])],
        cond: Option<(&[u8], Expect)>,
        blocking: Blocking,
    ) -> Result<Option<u64>> {
        self.check_live()?;
        let mut payload = 0u64;
        for (_, key, value) in ops {
            validate_key(key)?;
            payload += entry_len(key.len(), value.len()) as u64;
        }
        let frame_len = FRAME_HEADER_LEN as u64 + payload;
        if frame_len > self.max_frame() {
            let what = if ops.len() == 1 { "value" } else { "write batch" };
            let len = if ops.len() == 1 { ops[0].2.len() as u64 } else { frame_len };
            let overhead = frame_len - len;
            return Err(Error::ValueTooLarge { what, len, max: self.max_frame().saturating_sub(overhead) });
        }
        let mut builder = FrameBuilder::with_capacity(payload as usize);
        let offsets: Vec<usize> = ops.iter().map(|(k, key, value)| builder.push(*k, key, value)).collect();
        let mut frame = builder.finish();

        let mut w = match blocking {
            Blocking::Allowed => self.writer.lock(),
            // Another append holds the lock for a few microseconds (one `pwrite`): worth
            // waiting for. A seal or a growing region holds it for milliseconds: decline.
            Blocking::Never => match self.writer.try_lock_for(SHORT_WAIT) {
                Some(w) => w,
                None => return Ok(None),
            },
        };
        if blocking == Blocking::Never && w.offset + frame.len() as u64 > w.capacity {
            return Ok(None);
        }
        self.shared.check_writable()?;
        self.check_live()?;
        if let Some((key, expect)) = cond {
            let current = self.current_version(&w, key);
            if !expect.holds(current) {
                return Err(Error::ConditionFailed { expected: expect, current });
            }
        }
        self.make_room(&mut w, frame.len() as u64)?;
        if w.next_seq > w.manifest.last_seq {
            if blocking == Blocking::Never {
                return Ok(None);
            }
            self.reserve_seqs(&mut w)?;
        }
        let seq = w.next_seq;
        frame.set_seq(seq);
        let at = w.offset;
        let queue = self.shared.config.durability == Durability::Immediate && frame.len() < QUEUE_FRAME_MAX;
        if !queue || w.queued.len() + frame.len() > QUEUE_BYTES_MAX {
            self.write_queued(&mut w)?;
        }
        if queue {
            if w.queued.is_empty() {
                w.queued_from = seq;
            }
            w.queued.extend_from_slice(frame.bytes());
        } else {
            if w.all_synced_before(at) {
                frame.mark_synced_before();
            }
            if let Err(e) = w.region.file.write_all_at(frame.bytes(), at) {
                // Nothing was acknowledged. Zero what may have landed, so the bytes cannot be
                // read back as a frame later; if even that fails, stop taking writes.
                let zeros = vec![0u8; frame.len()];
                if w.region.file.write_all_at(&zeros, at).is_err() {
                    self.shared
                        .poison(format!("write to {} failed and could not be undone: {e}", w.region.path().display()));
                }
                return Err(Error::Io { op: "write", path: w.region.path(), source: e });
            }
        }
        w.offset += frame.len() as u64;
        w.next_seq += 1;
        w.written_seq = seq;
        for ((kind, key, value), off) in ops.iter().zip(&offsets) {
            w.keys.push(*kind, key, value.len() as u32, (at + *off as u64) as u32, seq);
        }
        let layer = w.region.layer_id;
        let updates: Vec<Update> = ops
            .iter()
            .zip(&offsets)
            .map(|((kind, key, value), off)| {
                let loc = (*kind == Kind::Put).then(|| Loc {
                    layer,
                    off: (at + *off as u64) as u32,
                    size: entry_len(key.len(), value.len()) as u32,
                    seq,
                });
                (IndexKey::from_slice(key), loc)
            })
            .collect();
        if self.shared.config.durability == Durability::Immediate {
            w.pending.push((seq, updates));
        } else {
            self.state.write().apply_all(updates, false);
        }
        self.grow_ahead(&mut w);
        Ok(Some(seq))
    }

    /// Maps a growth of the region that finished, and starts the next once half the
    /// region is written (growth.rs). The write before it has succeeded, so nothing here
    /// may fail it: a failure only leaves the growing to `make_room`.
    ///
    /// Only under `Immediate`: there a commit's sync would otherwise flush the new zeros.
    /// Under `None` and `Periodic` no writer waits for a sync, and zeros written inline
    /// cost memory speed (about 0.3 ms a MiB), where the thread's chunks go at disk speed
    /// and a fast bulk load would catch up with them and wait.
    fn grow_ahead(&self, w: &mut Writer) {
        if self.shared.config.durability != Durability::Immediate {
            return;
        }
        if let Some(to) = self.grower.take(w.region.layer_id, false) {
            if let Err(e) = self.install_growth(w, to) {
                tracing::warn!(error = %e, "could not map the grown region; the next write that needs the room retries");
            }
        }
        let max = self.shared.config.max_size;
        if w.capacity < max && w.offset >= w.capacity / 2 {
            let to = w.capacity.saturating_mul(2).max(self.shared.config.initial_size).min(max);
            self.grower.start(&*self.shared.io, &w.region, to, self.id);
        }
    }

    /// Takes the region's file, grown to `to` bytes, into use.
    fn install_growth(&self, w: &mut Writer, to: u64) -> Result<()> {
        if to > w.capacity {
            w.region.remap()?;
            self.state.write().refresh_map(w.region.layer_id);
            w.capacity = to;
        }
        Ok(())
    }

    /// On close, after the last sync: a sync mark (`record::sync_mark`) after the last frame,
    /// and synced, so that damage to the frames written since the last synced-before bit is
    /// reported at the next open rather than cut as a torn tail (docs/FORMAT.md, section 3).
    /// Best effort: without it, the next open treats the log as before. Not when nothing was
    /// written since the last mark, or there is no room for one.
    pub(crate) fn write_sync_mark(&self) -> Result<()> {
        let mut w = self.writer.lock();
        if self.check_live().is_err() || self.shared.is_read_only() {
            return Ok(());
        }
        self.sync_locked(&mut w)?;
        let at = w.offset;
        let fits = at + FRAME_HEADER_LEN as u64 <= w.capacity;
        if w.region.version < 2 || w.synced_end != at || w.mark_end == at || !fits {
            return Ok(());
        }
        let mark = crate::record::sync_mark(w.next_seq - 1);
        if let Err(e) = w.region.file.write_all_at(&mark, at) {
            // What landed of it is a torn tail of nothing: cut, losing nothing, at the next open.
            return Err(Error::Io { op: "write", path: w.region.path(), source: e });
        }
        w.offset += FRAME_HEADER_LEN as u64;
        if let Err(e) = w.region.file.sync_data() {
            let reason = format!("fdatasync of {} failed: {e}", w.region.path().display());
            return Err(self.turn_read_only(&mut w, reason));
        }
        w.synced_end = w.offset;
        w.mark_end = w.offset;
        Ok(())
    }

    /// The highest sequence number this dimension may have handed out: the block reserved.
    pub(crate) fn seq_high_water(&self) -> u64 {
        let w = self.writer.lock();
        w.manifest.last_seq.max(w.next_seq)
    }

    /// See [`Manifest::dropped_seqs`].
    pub(crate) fn dropped_seqs(&self) -> u64 {
        self.writer.lock().manifest.dropped_seqs
    }

    /// Records in `index.json`, durably, that a dropped dimension handed out sequence numbers
    /// up to `seq` (the default dimension keeps this for the store; see `Store::drop_dimension`).
    pub(crate) fn note_dropped_seqs(&self, seq: u64) -> Result<()> {
        let mut w = self.writer.lock();
        if w.manifest.dropped_seqs >= seq {
            return Ok(());
        }
        self.rewrite_manifest(&mut w, |m| m.dropped_seqs = seq)
    }

    /// Stores the writer's manifest with `change` applied, as a new generation, and takes it
    /// into use once it is durable.
    fn rewrite_manifest(&self, w: &mut Writer, change: impl FnOnce(&mut Manifest)) -> Result<()> {
        // A seal behind the writer stores its manifest first.
        self.finish_sealing()?;
        let mut manifest = w.manifest.clone();
        change(&mut manifest);
        manifest.generation += 1;
        manifest.store(&*self.shared.io, &self.paths.manifest())?;
        w.manifest = manifest;
        Ok(())
    }

    /// Records in `index.json`, durably, that sequence numbers up to a block ahead are
    /// taken, before the first of them is used. A write that a crash takes back (under
    /// `none` or `periodic`, or one never acknowledged) may have shown its version to a
    /// client as an ETag; opening starts past the reserved block, so that version is never
    /// given to another value, and an `If-Match` holding it cannot succeed by accident.
    ///
    /// Under `Immediate` a version reaches a client only once its write is synced, so no
    /// crash can take it back: the block is a safeguard there, not a need. On a full disk the
    /// manifest cannot be rewritten, and a store reopened then (every reopen starts a new
    /// block) would refuse every write, the deletes that would free space included. So under
    /// `Immediate` a reservation that fails for lack of space is skipped, with a warning, and
    /// tried again by the next write; after a reopen the numbers go on from the log's highest.
    fn reserve_seqs(&self, w: &mut Writer) -> Result<()> {
        let last_seq = w.next_seq - 1 + SEQ_BLOCK;
        match self.rewrite_manifest(w, |m| m.last_seq = last_seq) {
            Err(e) if e.is_disk_full() && self.shared.config.durability == Durability::Immediate => {
                tracing::warn!(dimension = %self.name, error = %e, "disk full: writing without reserving sequence numbers ahead (safe under immediate durability)");
                Ok(())
            }
            result => result,
        }
    }

    /// The version a conditional write compares against: pending writes count, because
    /// they are ordered before this one.
    fn current_version(&self, w: &Writer, key: &[u8]) -> Option<Version> {
        for (_, updates) in w.pending.iter().rev() {
            if let Some((_, loc)) = updates.iter().rev().find(|(k, _)| &**k == key) {
                return loc.map(|l| Version(l.seq));
            }
        }
        self.points.loc(key).map(|l| Version(l.seq))
    }

    /// Blocks until `seq` is durable. The first waiter to find no sync running becomes the
    /// leader: it syncs once for everything written so far, then publishes it.
    pub(crate) fn wait_durable(&self, seq: u64) -> Result<()> {
        let mut w = self.writer.lock();
        loop {
            if let Some(e) = w.lost(seq) {
                return Err(e);
            }
            if w.synced_seq >= seq {
                return Ok(());
            }
            self.shared.check_writable()?;
            if w.syncing {
                self.synced.wait(&mut w);
                continue;
            }
            w = self.lead_sync(w);
        }
    }

    /// Syncs for the callbacks waiting in the writer, until none is left (the committer
    /// thread's round; see ticket.rs). Callbacks that can no longer become durable get
    /// the error that stopped them.
    pub(crate) fn sync_for_callbacks(self: &Arc<Self>) {
        let mut w = self.writer.lock();
        loop {
            // Writes that came in while the last sync ran go into the next one.
            if !self.inbox.lock().is_empty() {
                drop(w);
                crate::ticket::drain_inbox(self);
                w = self.writer.lock();
            }
            if w.callbacks.is_empty() {
                return;
            }
            if self.check_live().is_err() {
                let name = self.name.clone();
                fail_callbacks(&mut w, || Error::DimensionDropped(name.clone()));
                return;
            }
            if let Some(reason) = self.shared.read_only_reason() {
                fail_callbacks(&mut w, || Error::ReadOnly(reason.clone()));
                return;
            }
            if w.syncing {
                self.synced.wait(&mut w);
                continue;
            }
            w = self.lead_sync(w);
        }
    }

    /// One group sync: everything written so far is synced with the writer lock released
    /// (writers go on appending meanwhile), then published.
    fn lead_sync<'a>(&'a self, mut w: parking_lot::MutexGuard<'a, Writer>) -> parking_lot::MutexGuard<'a, Writer> {
        // Under the lock, so that a seal or a sync that comes next finds the bytes in the file.
        if self.write_queued(&mut w).is_err() {
            return w; // the waiters have their error
        }
        w.syncing = true;
        let target = w.written_seq;
        let end = w.offset;
        let region = w.region.clone();
        self.prefetch_pending(&w);
        drop(w);
        if self.state.read().ordered.has_deferred() {
            // The disk takes the frames while this thread inserts the last commits' keys into
            // the ordered index's tree, which readers see the same before and after; the sync
            // then waits only for the rest (docs/ARCHITECTURE.md, "Deferred inserts"). If the
            // hint fails, the sync writes the frames itself.
            let _ = region.file.start_write_back();
            self.state.write().ordered.fold();
        }
        let result = region.file.sync_data();
        let mut w = self.writer.lock();
        w.syncing = false;
        match result {
            Ok(()) => {
                self.shared.syncs.fetch_add(1, Ordering::Relaxed);
                // A seal while the lock was released switched regions: the offset was the old one's.
                if Arc::ptr_eq(&w.region, &region) {
                    w.synced_end = w.synced_end.max(end);
                }
                self.publish(&mut w, target);
            }
            Err(e) => {
                self.turn_read_only(&mut w, format!("fdatasync of {} failed: {e}", region.path().display()));
            }
        }
        self.synced.notify_all();
        w
    }

    /// After a write or sync of the region that cannot be taken back: no pending write can
    /// be acknowledged any more, and the store refuses writes until reopened (see
    /// docs/FORMAT.md, "Writing"). Returns the error for the caller.
    fn turn_read_only(&self, w: &mut Writer, reason: String) -> Error {
        self.shared.poison(reason.clone());
        w.pending.clear();
        fail_callbacks(w, || Error::ReadOnly(reason.clone()));
        self.synced.notify_all();
        Error::ReadOnly(reason)
    }

    /// Writes the queued frames (`Writer::queued`) with one `pwrite`: a group sync's worth
    /// of writes costs one system call instead of one each, and the writer lock is held for
    /// a copy per write instead of a call. Called before anything that needs the frames in
    /// the file: a sync, a seal, a write that is not queued.
    ///
    /// If it fails, the queued frames are the log's last: they are zeroed and taken back
    /// (offset, key recorder, pending locations), and each of their writes fails with the
    /// error (`disk_full` for ENOSPC), as a write whose own `pwrite` failed always has; the
    /// store stays writable. Only if the zeros cannot be written either does it turn
    /// read-only until reopened, since the bytes might then be read back as frames.
    fn write_queued(&self, w: &mut Writer) -> Result<()> {
        if w.queued.is_empty() {
            return Ok(());
        }
        let at = w.offset - w.queued.len() as u64;
        if w.all_synced_before(at) {
            crate::record::mark_synced_before(&mut w.queued);
        }
        let Err(e) = w.region.file.write_all_at(&w.queued, at) else {
            w.queued.clear();
            return Ok(());
        };
        let zeros = vec![0u8; w.queued.len()];
        w.queued.clear();
        if let Err(z) = w.region.file.write_all_at(&zeros, at) {
            w.offset = at;
            let reason =
                format!("write to {} failed and could not be undone: {e} (then {z})", w.region.path().display());
            return Err(self.turn_read_only(w, reason));
        }
        let lost = w.queued_from..=w.written_seq;
        w.offset = at;
        w.written_seq = w.queued_from - 1;
        w.keys.forget_from(at as u32);
        w.pending.retain(|(seq, _)| !lost.contains(seq));
        let (code, text) = (e.raw_os_error(), e.to_string());
        answer_callbacks(w, |seq| lost.contains(&seq), |w, _| Err(w.write_error(code, &text)));
        w.lost.push((lost, code, text));
        self.synced.notify_all();
        Err(Error::Io { op: "write", path: w.region.path(), source: e })
    }

    /// Asks the CPU to load the point-index slots of the first `PREFETCH_PENDING` pending
    /// keys while the thread waits for `fdatasync`: publishing them right after the sync then
    /// finds them in the cache. Each is otherwise a miss in a table far larger than the cache,
    /// taken while the writer and state locks are held.
    fn prefetch_pending(&self, w: &Writer) {
        const PREFETCH_PENDING: usize = 512;
        let keys = w.pending.iter().flat_map(|(_, updates)| updates.iter().map(|(key, _)| key));
        for key in keys.take(PREFETCH_PENDING) {
            self.points.prefetch(key);
        }
    }

    /// Marks everything up to `target` durable and makes it visible to readers.
    fn publish(&self, w: &mut Writer, target: u64) {
        if target > w.synced_seq {
            w.synced_seq = target;
        }
        let n = w.pending.partition_point(|(s, _)| *s <= target);
        if n > 0 {
            // One batch of everything this sync made durable, in sequence order (`apply_all`
            // keeps a key's last update): a group commit's single writes are then large enough
            // to defer.
            let mut drained = w.pending.drain(..n).map(|(_, updates)| updates);
            let mut updates = drained.next().unwrap_or_default();
            drained.for_each(|more| updates.extend(more));
            // Scans running beside the writer fared worse with deferred inserts (`probe mixed`:
            // ranges of 10 while batches of 100 are written, ~25% fewer ranges per second,
            // the same per CPU-second): the fold then takes the state lock a second time per
            // commit, and the writer's CPU in the sync's window is taken from them.
            let scanned = self.scanned_changes.swap(false, Ordering::Relaxed);
            let defer = updates.len() >= DEFER_MIN && !scanned;
            self.state.write().apply_all(updates, defer);
        }
        // Readers see the writes before their callbacks run, as with a blocking commit.
        answer_callbacks(w, |seq| seq <= target, |_, seq| Ok(Version(seq)));
    }

    /// Syncs the active region now, for `sync()`, periodic durability, seal, compaction
    /// and close.
    pub(crate) fn sync_locked(&self, w: &mut Writer) -> Result<()> {
        // Older regions first: a seal behind the writer may still be syncing the last.
        self.finish_sealing()?;
        self.write_queued(w)?;
        if w.synced_seq >= w.written_seq && w.pending.is_empty() {
            return Ok(());
        }
        let target = w.written_seq;
        if let Err(e) = w.region.file.sync_data() {
            return Err(self.turn_read_only(w, format!("fdatasync of {} failed: {e}", w.region.path().display())));
        }
        w.synced_end = w.offset;
        self.shared.syncs.fetch_add(1, Ordering::Relaxed);
        self.publish(w, target);
        self.synced.notify_all();
        Ok(())
    }

    pub fn sync(&self) -> Result<()> {
        let mut w = self.writer.lock();
        // Writes acknowledged before a seal behind the writer failed cannot be made durable.
        self.finish_sealing()?;
        if self.shared.is_read_only() {
            // Nothing new can have been written. Under `Immediate` every acknowledged write
            // was synced before it was acknowledged, so nothing is left to make durable.
            // Otherwise writes acknowledged before the store turned read-only may never
            // have reached the disk (a failed `fdatasync` is reported once, and a second one
            // would succeed over lost pages): a sync cannot promise them, so it says why.
            return match self.shared.config.durability {
                Durability::Immediate => Ok(()),
                Durability::Periodic(_) | Durability::None => self.shared.check_writable(),
            };
        }
        self.sync_locked(&mut w)
    }

    /// Ensures `need` more bytes fit in the active region: grows it, or seals it and
    /// starts a new one.
    fn make_room(&self, w: &mut Writer, need: u64) -> Result<()> {
        let max = self.shared.config.max_size;
        if w.offset + need > max {
            // The file growing is about to become a sealed layer.
            self.grower.finish();
            self.seal(w)?;
        }
        if w.offset + need > w.capacity {
            // A growth under way probably covers it.
            if let Some(to) = self.grower.take(w.region.layer_id, true) {
                self.install_growth(w, to)?;
            }
        }
        if w.offset + need > w.capacity {
            let mut cap = w.capacity.max(self.shared.config.initial_size);
            while cap < w.offset + need {
                cap = cap.saturating_mul(2);
            }
            let cap = cap.min(max);
            region::grow(&*w.region.file, cap, self.shared.config.durability)
                .map_err(Error::io("allocate", w.region.path()))?;
            w.region.remap()?;
            self.state.write().refresh_map(w.region.layer_id);
            w.capacity = cap;
        }
        Ok(())
    }

    /// Seals the active region into `layers/` and starts a fresh one (docs/FORMAT.md,
    /// "Sealing", lists the steps and what a crash between any two of them leaves).
    fn seal(&self, w: &mut Writer) -> Result<()> {
        let result = match self.shared.config.durability {
            Durability::Immediate => {
                self.sync_locked(w)?;
                self.seal_synced(w)
            }
            Durability::Periodic(_) | Durability::None => self.seal_behind(w),
        };
        if let Err(e) = &result {
            // Half a seal leaves the files and the in-memory state disagreeing; reopening
            // sorts it out from the files, so refuse writes until then.
            self.shared.poison(format!("sealing {} failed: {e}", w.region.path().display()));
        }
        result
    }

    fn seal_synced(&self, w: &mut Writer) -> Result<()> {
        let io = &*self.shared.io;
        let old = w.region.clone();
        let id = old.layer_id;
        let data_end = w.offset as usize;
        // The layer is published without its key index, which is written afterwards on a
        // thread of its own: encoding it (sorting some 55,000 keys) and writing and syncing
        // its 2.4 MB took about 20 ms of a 25 ms seal, and every writer waited. The index
        // is derived data: if a crash comes first, open rebuilds it from the layer. One is
        // pending at a time.
        self.finish_key_index();
        let keys = std::mem::take(&mut w.keys);

        let layer_path = link_into_layers(io, &self.paths, id)?;

        let new_id = w.next_layer_id;
        let initial = self.shared.config.initial_size;
        let durability = self.shared.config.durability;
        region::create(io, &self.shared.layout.temp(), &self.paths.region(), self.id, new_id, initial, durability)?;

        let manifest = self.sealed_manifest(w, &keys, new_id);
        manifest.store(io, &self.paths.manifest())?;
        w.manifest = manifest;

        old.set_path(layer_path);
        let fresh = Arc::new(Segment::open(io, &self.paths.region(), self.id)?);
        self.switch_region(w, fresh);
        self.write_key_index_later(keys, id, data_end as u32);
        tracing::debug!(dimension = %self.name, layer = id, "sealed region into layers/");
        Ok(())
    }

    /// A seal under `None` or `Periodic`, whose writes are acknowledged before they are
    /// synced: the writer moves on into a new region at once, and a thread of its own does
    /// the seal's file steps behind it. Sealing a 10 MiB region waited about 8 ms for its
    /// `fdatasync` and 2 ms for the link, the renames and the manifest, a sixth of a bulk
    /// load's time at the default `MMAP_MAX_SIZE` (docs/BENCHMARKS.md).
    ///
    /// The new region is built under `temp/` and written there until the thread has synced
    /// the old one, linked it into `layers/`, and synced and renamed the new one into place
    /// (then it stores the manifest, and writes the key index). Open empties `temp/`: a
    /// crash before the rename loses the writes made into the new region, which were never
    /// synced, and keeps the old region as the active one, so the store still recovers to a
    /// prefix of its writes. Every sync, manifest store, seal, snapshot, `verify`,
    /// compaction, drop and close waits for the thread first (`finish_sealing`,
    /// `finish_key_index`), so nothing is synced out of order and no file is read or
    /// removed before it is in place.
    fn seal_behind(&self, w: &mut Writer) -> Result<()> {
        self.finish_sealing()?;
        self.finish_key_index();
        self.write_queued(w)?;
        let io = &*self.shared.io;
        let old = w.region.clone();
        let id = old.layer_id;
        let data_end = w.offset as u32;
        let new_id = w.next_layer_id;
        let initial = self.shared.config.initial_size;
        let durability = self.shared.config.durability;
        let (tmp, _) = region::build(io, &self.shared.layout.temp(), self.id, new_id, initial, durability)?;
        let fresh = match Segment::open(io, &tmp, self.id) {
            Ok(seg) => Arc::new(seg),
            Err(e) => {
                let _ = io.remove_file(&tmp);
                return Err(e);
            }
        };
        let keys = std::mem::take(&mut w.keys);
        let manifest = self.sealed_manifest(w, &keys, new_id);
        w.manifest = manifest.clone();
        self.switch_region(w, fresh.clone());

        let (io, paths, dim) = (self.shared.io.clone(), self.paths.clone(), self.id);
        let shared = self.shared.clone();
        let job = move || -> Result<()> {
            let io = &*io;
            let result = (|| {
                old.file.sync_data().map_err(Error::io("fdatasync", old.path()))?;
                old.set_path(link_into_layers(io, &paths, id)?);
                region::put_in_place(io, &*fresh.file, &tmp, &paths.region())?;
                fresh.set_path(paths.region());
                manifest.store(io, &paths.manifest())
            })();
            if let Err(e) = &result {
                shared.poison(format!("sealing layer {id} of {} failed: {e}", paths.dir.display()));
                return result;
            }
            write_key_index_or_warn(io, dim, id, data_end, keys, &paths.keys(id));
            Ok(())
        };
        match spawn_or_run(format!("jessy-seal-{}", dir_name(self.id)), job) {
            Ok(helper) => *self.sealing.lock() = Some(helper),
            Err(Ok(())) => {}
            Err(Err(e)) => {
                *self.seal_failed.lock() = Some(format!("sealing a region failed: {e}; reopen the store"));
                return Err(e);
            }
        }
        tracing::debug!(dimension = %self.name, layer = id, "sealing region into layers/ behind the writer");
        Ok(())
    }

    /// Waits for a seal's steps running behind the writer (`seal_behind`). An error means
    /// the writes made since that seal can never be durable: it is returned now and by
    /// every later call, and the store is read-only.
    pub(crate) fn finish_sealing(&self) -> Result<()> {
        // The slot stays locked while the thread is joined: a second caller must wait for
        // the steps too, not find the slot empty and go on (a compaction joining here while
        // the writer stored a manifest let two manifest stores race: fault_concurrency.rs).
        let mut slot = self.sealing.lock();
        if let Some(helper) = slot.take() {
            let outcome = match helper.join() {
                Some(r) => r,
                None => {
                    let reason = format!("the thread sealing a layer of {} panicked", self.name);
                    self.shared.poison(reason.clone());
                    Err(Error::ReadOnly(reason))
                }
            };
            if let Err(e) = outcome {
                *self.seal_failed.lock() =
                    Some(format!("sealing a region failed: {e}; writes made since then are lost; reopen the store"));
            }
        }
        drop(slot);
        match &*self.seal_failed.lock() {
            Some(reason) => Err(Error::ReadOnly(reason.clone())),
            None => Ok(()),
        }
    }

    /// Encodes and writes the key index of sealed layer `layer` on a thread of its own
    /// (here, if no thread can be started). A failure only costs the next open a scan of
    /// the layer, so it is logged, not returned.
    fn write_key_index_later(&self, keys: Recorder, layer: u32, data_end: u32) {
        let io = self.shared.io.clone();
        let path = self.paths.keys(layer);
        let dim = self.id;
        let job = move || write_key_index_or_warn(&*io, dim, layer, data_end, keys, &path);
        if let Ok(helper) = spawn_or_run(format!("jessy-keys-{}", dir_name(self.id)), job) {
            *self.key_index.lock() = Some(helper);
        }
    }

    /// The manifest once the active region (`w.region`, `w.offset` bytes, whose entries
    /// `keys` recorded) is sealed and region `new_id` is the active one.
    fn sealed_manifest(&self, w: &Writer, keys: &Recorder, new_id: u32) -> Manifest {
        let id = w.region.layer_id;
        let entry = keys.summary().layer_entry(id, w.offset);
        let live = self.state.read().layer_live.get(&id).copied().unwrap_or(0);
        let mut manifest = w.manifest.clone();
        manifest.layers.push(LayerEntry { live_bytes: live, ..entry });
        manifest.active.layer_id = new_id;
        manifest.generation += 1;
        manifest.last_seq = manifest.last_seq.max(w.written_seq);
        manifest
    }

    /// Makes `fresh`, a new empty region, the one the writer appends to and readers see.
    fn switch_region(&self, w: &mut Writer, fresh: Arc<Segment>) {
        self.state.write().add_segment(fresh.clone());
        w.next_layer_id = fresh.layer_id + 1;
        w.region = fresh;
        w.offset = FILE_HEADER_LEN as u64;
        w.synced_end = 0;
        w.capacity = self.shared.config.initial_size;
    }

    /// Waits for every thread this dimension started that writes its files (the last key
    /// index, a growth of the region): before it is dropped, and on close.
    pub(crate) fn finish_file_threads(&self) {
        self.finish_key_index();
        self.grower.finish();
    }

    /// Waits until the key index of the last sealed layer is on disk: before a snapshot,
    /// `verify`, compaction or a drop reads or removes layer files, and on close.
    pub(crate) fn finish_key_index(&self) {
        // A seal behind the writer writes its key index last, on its own thread.
        let _ = self.finish_sealing();
        let pending = self.key_index.lock().take();
        if let Some(helper) = pending {
            if helper.join().is_none() {
                tracing::error!(dimension = %self.name, "writing a key index panicked; the next open rebuilds it");
            }
        }
    }

    pub fn stats(&self) -> DimensionStats {
        let state = self.state.read();
        // Log files plus the sealed layers' key indexes (the active region has none).
        let disk_bytes = state
            .segments
            .values()
            .map(|s| {
                let keys = std::fs::metadata(self.paths.keys(s.layer_id)).map(|m| m.len()).unwrap_or(0);
                s.file.len().unwrap_or(0) + keys
            })
            .sum();
        DimensionStats {
            id: self.id,
            dir: dir_name(self.id),
            name: self.name.clone(),
            keys: state.points.len() as u64,
            live_bytes: state.live_bytes,
            disk_bytes,
            layers: state.segments.len(),
        }
    }
}

/// Answers every waiting callback with the error `err` makes: their writes will never
/// become durable (and were never visible).
/// Runs, and removes, the callbacks whose sequence number `which` picks, each with what
/// `result` says for it.
fn answer_callbacks(w: &mut Writer, which: impl Fn(u64) -> bool, result: impl Fn(&Writer, u64) -> Result<Version>) {
    let mut i = 0;
    while i < w.callbacks.len() {
        if which(w.callbacks[i].0) {
            let (seq, callback) = w.callbacks.swap_remove(i);
            crate::ticket::call(callback, result(w, seq));
        } else {
            i += 1;
        }
    }
}

fn fail_callbacks(w: &mut Writer, err: impl Fn() -> Error) {
    for (_, callback) in w.callbacks.drain(..) {
        crate::ticket::call(callback, Err(err()));
    }
}

/// Writes an encoded key index durably: under a temporary name, synced, renamed.
/// A seal's step 2 (docs/FORMAT.md): hard-links `region.mmap` (layer `id`) to
/// `layers/L<id>.mmap` and syncs `layers/`; returns the layer's path.
fn link_into_layers(io: &dyn crate::io::Io, paths: &DimPaths, id: u32) -> Result<PathBuf> {
    let layer_path = paths.layer(id);
    let _ = io.remove_file(&layer_path);
    io.hard_link(&paths.region(), &layer_path).map_err(Error::io("link", &layer_path))?;
    io.sync_dir(&paths.layers()).map_err(Error::io("fsync directory", paths.layers()))?;
    Ok(layer_path)
}

/// Encodes `keys` as sealed layer `layer`'s key index and writes it at `path`. A failure
/// only costs the next open a scan of the layer, so it is logged, not returned.
fn write_key_index_or_warn(
    io: &dyn crate::io::Io,
    dim: u32,
    layer: u32,
    data_end: u32,
    keys: Recorder,
    path: &std::path::Path,
) {
    let recording = keys.encode(dim, layer, data_end);
    if let Err(e) = write_key_index(io, path, &recording.bytes) {
        tracing::warn!(error = %e, file = %path.display(), "could not write a sealed layer's key index; the next open rebuilds it from the layer");
    }
}

pub(crate) fn write_key_index(io: &dyn crate::io::Io, keys_path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let tmp = keys_path.with_extension("keys.tmp");
    let _ = io.remove_file(&tmp);
    let f = io.open(&tmp, true).map_err(Error::io("create", &tmp))?;
    f.write_all_at(bytes, 0).map_err(Error::io("write", &tmp))?;
    f.sync_data().map_err(Error::io("fdatasync", &tmp))?;
    io.rename(&tmp, keys_path).map_err(Error::io("rename", &tmp))
}

/// Scans a sealed log, writes its key index next to it, and returns its manifest entry
/// (without live bytes, which only the in-memory index knows).
pub(crate) fn build_key_index(
    io: &dyn crate::io::Io,
    keys_path: &std::path::Path,
    dim: u32,
    layer: u32,
    log: &[u8],
    file: &std::path::Path,
) -> Result<LayerEntry> {
    let mut keys = Recorder::default();
    let scan = scan_frames(log, log.len(), |_, h, entries| {
        for (off, e) in entries {
            keys.push(e.kind, e.key, e.value.len() as u32, *off as u32, h.seq);
        }
    });
    if let Some((at, reason)) = scan.stopped {
        return Err(Error::corruption(file, at as u64, reason));
    }
    let recording = keys.encode(dim, layer, scan.end as u32);
    write_key_index(io, keys_path, &recording.bytes)?;
    Ok(recording.layer_entry(layer, scan.end as u64))
}

// ---- opening ------------------------------------------------------------------------

/// Builds the in-memory state of a dimension from its directory (docs/FORMAT.md,
/// "Recovery").
pub(crate) fn open(shared: &Arc<Shared>, id: u32) -> Result<DimInner> {
    let io = &*shared.io;
    let paths = shared.layout.dimension(id);
    let mut rewrite = false;
    let mut manifest = match Manifest::load(io, &paths.manifest()) {
        Ok(Some(m)) => m,
        Ok(None) => {
            tracing::warn!(dir = %paths.dir.display(), "index.json is missing; rebuilding it from the layer files");
            keep_damaged_manifest(shared, &paths, false)?;
            rewrite = true;
            rebuild_manifest(shared, &paths, id)?
        }
        Err(e) => {
            tracing::warn!(dir = %paths.dir.display(), error = %e, "index.json is damaged; rebuilding it from the layer files");
            keep_damaged_manifest(shared, &paths, true)?;
            rewrite = true;
            rebuild_manifest(shared, &paths, id)?
        }
    };
    if manifest.dimension_id != id {
        return Err(Error::corruption(
            paths.manifest(),
            0,
            format!("manifest says dimension {}, directory says {id}", manifest.dimension_id),
        ));
    }

    // Every listed file must be there; a partial copy is an error, not a smaller store.
    let mut missing = Vec::new();
    for l in &manifest.layers {
        let p = paths.dir.join(&l.file);
        if !p.exists() {
            missing.push(p);
        }
    }
    if !paths.region().exists() {
        missing.push(paths.region());
    }
    if !missing.is_empty() {
        return Err(Error::MissingFiles(missing));
    }

    let region = Segment::open(io, &paths.region(), id)?;
    if region.layer_id < manifest.active.layer_id {
        return Err(Error::corruption(
            paths.region(),
            0,
            format!("region is layer {}, but index.json expects layer {}", region.layer_id, manifest.active.layer_id),
        ));
    }
    if region.layer_id > manifest.active.layer_id {
        // A crash after a seal renamed the new region into place but before index.json
        // listed the sealed layer: finish that seal now.
        let sealed = manifest.active.layer_id;
        tracing::info!(dimension = id, layer = sealed, "finishing a seal interrupted by a crash");
        let seg = Segment::open(io, &paths.layer(sealed), id)?;
        let map = seg.map();
        let entry = build_key_index(io, &paths.keys(sealed), id, sealed, &map, &seg.path())?;
        manifest.layers.push(entry);
        manifest.active.layer_id = region.layer_id;
        rewrite = true;
    }

    let mut state = State::new();
    let mut max_seq = manifest.last_seq;
    let mut layers = manifest.layers.clone();
    layers.sort_by_key(|l| l.layer_id);
    // Entries of every layer, oldest layer first; the active region's are appended below.
    // Two halves of the layers on two threads: reading key indexes is most of an open.
    let half = layers.len().div_ceil(2).max(1);
    let loaded = std::thread::scope(|s| {
        let mut chunks = layers.chunks_mut(half);
        let (first, second) = (chunks.next(), chunks.next());
        let paths = &paths;
        let other = second.map(|c| s.spawn(move || load_layers(shared, paths, id, c)));
        let mine = first.map_or_else(|| Ok(Default::default()), |c| load_layers(shared, paths, id, c));
        let theirs = match other.map(|h| h.join()) {
            None => Ok(Default::default()),
            Some(Ok(r)) => r,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
        };
        [mine, theirs]
    });
    let (mut sealed, mut runs): (Vec<Found>, Vec<Range<usize>>) = Default::default();
    for part in loaded {
        let part = part?;
        max_seq = max_seq.max(part.max_seq);
        for seg in part.segments {
            state.add_segment(Arc::new(seg));
        }
        let offset = sealed.len();
        runs.extend(part.runs.into_iter().map(|r| r.start + offset..r.end + offset));
        if sealed.is_empty() {
            sealed = part.items;
        } else {
            sealed.extend(part.items);
        }
    }
    // The active region: replay its frames; the first invalid one starts a torn tail.
    let map = region.map();
    let layer = region.layer_id;
    let mut keys = Recorder::default();
    let mut last_frame_was_mark = false;
    let scan = scan_frames(&map, map.len(), |_, h, entries| {
        max_seq = max_seq.max(h.seq);
        last_frame_was_mark = entries.is_empty();
        for (off, e) in entries {
            keys.push(e.kind, e.key, e.value.len() as u32, *off as u32, h.seq);
            let loc = (e.kind == Kind::Put).then(|| Loc {
                layer,
                off: *off as u32,
                size: entry_len(e.key.len(), e.value.len()) as u32,
                seq: h.seq,
            });
            sealed.push((IndexKey::from_slice(e.key), h.seq, loc));
        }
    });
    runs.push(runs.last().map_or(0, |r| r.end)..sealed.len());
    build_index(&mut state, sealed, &runs);
    // Asked before `check_torn_tail` and `scrub_tail` read the whole tail through the map:
    // the file system counts reserved blocks whose pages are mapped as data.
    let reserved_tail = shared.config.durability == Durability::Immediate
        && matches!(region.file.first_hole(scan.end as u64), Ok(Some(_)));
    check_torn_tail(shared, &region, &map, &scan)?;
    if let Some((at, reason)) = scan.stopped {
        tracing::warn!(file = %region.path().display(), offset = at, reason, "cut a torn tail off the active region");
    }
    let scrubbed = region::scrub_tail(io, &region.path(), &map, scan.end)?;
    if scrubbed > 0 {
        tracing::info!(file = %region.path().display(), offset = scan.end, bytes = scrubbed, "zeroed bytes after the last whole record");
    }
    let capacity = region.file.len().map_err(Error::io("stat", region.path()))?;
    if reserved_tail {
        region::write_reserved_tail(&region, scan.end as u64, capacity);
    }
    // What the log holds may be only in the page cache (a process killed before its sync):
    // synced now, the next frame can say that all before it is on disk.
    let synced_end = match region.file.sync_data() {
        Ok(()) => scan.end as u64,
        Err(e) => {
            tracing::warn!(file = %region.path().display(), error = %e, "could not sync the active region at open");
            0
        }
    };
    let region = Arc::new(region);
    state.add_segment(region.clone());

    sweep_layers_dir(shared, &paths, &manifest)?;
    manifest.layers = layers;
    manifest.last_seq = max_seq;
    if rewrite {
        manifest.generation += 1;
        manifest.store(io, &paths.manifest())?;
    }
    let next_layer_id = state.segments.keys().next_back().copied().unwrap_or(0) + 1;
    let name = manifest.name.clone();
    Ok(DimInner {
        shared: shared.clone(),
        id,
        name,
        paths,
        points: state.points.clone(),
        state: RwLock::new(state),
        writer: Mutex::new(Writer {
            region,
            offset: scan.end as u64,
            queued: Vec::new(),
            queued_from: 0,
            lost: Vec::new(),
            capacity,
            synced_end,
            mark_end: if last_frame_was_mark { scan.end as u64 } else { 0 },
            next_seq: max_seq + 1,
            written_seq: max_seq,
            synced_seq: max_seq,
            syncing: false,
            pending: Vec::new(),
            callbacks: Vec::new(),
            keys,
            manifest,
            next_layer_id,
        }),
        synced: Condvar::new(),
        committer: Default::default(),
        inbox: Default::default(),
        key_index: Mutex::new(None),
        sealing: Mutex::new(None),
        seal_failed: Mutex::new(None),
        grower: Default::default(),
        scanned_changes: AtomicBool::new(false),
        dropped: AtomicBool::new(false),
        compacting: Mutex::new(Default::default()),
    })
}

/// Builds the index from every entry found on open (sealed layers' key indexes, then the
/// active region's frames; `runs` says where each starts and ends): one merge gives the
/// ordered index its base array and the point index its entries.
fn build_index(state: &mut State, items: Vec<Found>, runs: &[Range<usize>]) {
    let mut puts: Vec<(IndexKey, Loc)> = crate::hugepage::vec_with_capacity(items.len());
    for (key, _, loc) in crate::runs::newest(items, runs) {
        if let Some(loc) = loc {
            *state.layer_live.entry(loc.layer).or_insert(0) += loc.size as u64;
            state.live_bytes += loc.size as u64;
            puts.push((key, loc));
        }
    }
    state.points.fill(&puts);
    state.ordered = Ordered::from_sorted(puts);
}

/// What `load_layers` found.
#[derive(Default)]
struct Loaded {
    segments: Vec<Segment>,
    /// The entries of every layer, a run of `items` each (sorted by key).
    items: Vec<Found>,
    runs: Vec<Range<usize>>,
    /// The largest sequence number seen.
    max_seq: u64,
}

/// Opens sealed layers and loads their keys.
fn load_layers(shared: &Shared, paths: &DimPaths, id: u32, layers: &mut [LayerEntry]) -> Result<Loaded> {
    let mut out = Loaded {
        segments: Vec::with_capacity(layers.len()),
        runs: Vec::with_capacity(layers.len()),
        ..Loaded::default()
    };
    for l in layers {
        let seg = Segment::open(&*shared.io, &paths.dir.join(&l.file), id)?;
        if seg.layer_id != l.layer_id {
            let reason = format!("file holds layer {}, index.json says {}", seg.layer_id, l.layer_id);
            return Err(Error::corruption(seg.path(), 0, reason));
        }
        let start = out.items.len();
        out.max_seq = out.max_seq.max(load_sealed(shared, paths, id, &seg, l, &mut out.items)?);
        out.runs.push(start..out.items.len());
        out.segments.push(seg);
    }
    Ok(out)
}

/// Loads a sealed layer's keys into the index; returns the largest sequence number seen.
fn load_sealed(
    shared: &Shared,
    paths: &DimPaths,
    dim: u32,
    seg: &Segment,
    entry: &mut LayerEntry,
    out: &mut Vec<Found>,
) -> Result<u64> {
    let io = &*shared.io;
    let map = seg.map();
    let data_end = (entry.offset + entry.size) as usize;
    // A layer cut short is damage like any other: salvage keeps its whole records (below,
    // rebuilding the key index, which still describes the uncut file); without salvage it
    // is an error. (Salvage used to refuse it too: tests/fault_corruption.rs,
    // `salvage_keeps_the_whole_records_of_a_cut_sealed_layer`.)
    let cut_short = data_end > map.len();
    if entry.offset != FILE_HEADER_LEN as u64 || (cut_short && !shared.config.salvage) {
        return Err(Error::corruption(
            seg.path(),
            0,
            format!("index.json says records end at {data_end}, the file has {} bytes", map.len()),
        ));
    }
    if cut_short {
        tracing::error!(file = %seg.path().display(), expected = data_end, found = map.len(), "salvage: sealed layer is shorter than index.json says; keeping its whole records");
    }
    let keys_path = paths.dir.join(&entry.keys_file);
    let index = match KeyIndex::load(io, &keys_path) {
        Ok(k) if !cut_short && k.header.layer_id == entry.layer_id && k.data_end as usize == data_end => Some(k),
        Ok(_) => {
            tracing::warn!(file = %keys_path.display(), "key index does not match its layer; rebuilding it");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "key index unreadable; rebuilding it from the layer");
            None
        }
    };
    let index = match index {
        Some(k) => k,
        None => {
            let log = &map[..data_end.min(map.len())];
            let rebuilt = build_key_index(io, &paths.keys(entry.layer_id), dim, entry.layer_id, log, &seg.path());
            let rebuilt = match rebuilt {
                Ok(r) => r,
                Err(e) if shared.config.salvage => {
                    tracing::error!(error = %e, "salvage: skipping the damaged part of a sealed layer");
                    salvage_key_index(io, paths, dim, seg, entry, &map)?
                }
                Err(e) => return Err(e),
            };
            entry.size = rebuilt.size;
            KeyIndex::load(io, &keys_path)?
        }
    };
    let data_end = index.data_end as usize;
    let mut max_seq = 0;
    for item in index.iter() {
        let size = entry_len(item.key.len(), item.value_len as usize);
        let end = item.offset as usize + size;
        if (item.offset as usize) < FILE_HEADER_LEN || end > data_end {
            return Err(Error::corruption(
                &keys_path,
                0,
                format!("key index points past the layer's records (offset {})", item.offset),
            ));
        }
        max_seq = max_seq.max(item.seq);
        let loc = (item.kind == Kind::Put).then_some(Loc {
            layer: entry.layer_id,
            off: item.offset,
            size: size as u32,
            seq: item.seq,
        });
        out.push((IndexKey::from_slice(item.key), item.seq, loc));
    }
    Ok(max_seq)
}

/// Salvage mode: index the frames before the first damaged one and report the rest lost.
fn salvage_key_index(
    io: &dyn crate::io::Io,
    paths: &DimPaths,
    dim: u32,
    seg: &Segment,
    entry: &LayerEntry,
    map: &[u8],
) -> Result<LayerEntry> {
    let data_end = (entry.offset + entry.size) as usize;
    let scan = scan_frames(map, data_end, |_, _, _| {});
    if let Some((at, reason)) = scan.stopped {
        tracing::error!(file = %seg.path().display(), offset = at, reason, lost_bytes = data_end - at, "salvage: records after this offset are lost");
    }
    build_key_index(io, &paths.keys(entry.layer_id), dim, entry.layer_id, &map[..scan.end], &seg.path())
}

/// Removes files in `layers/` that no manifest lists: leftovers of a seal or compaction
/// that crashed before it was published.
fn sweep_layers_dir(shared: &Shared, paths: &DimPaths, manifest: &Manifest) -> Result<()> {
    let io = &*shared.io;
    let dir = paths.layers();
    let entries = match io.read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            io.create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
            return Ok(());
        }
        Err(e) => return Err(Error::Io { op: "read directory", path: dir, source: e }),
    };
    let listed: Vec<PathBuf> =
        manifest.layers.iter().flat_map(|l| [paths.dir.join(&l.file), paths.dir.join(&l.keys_file)]).collect();
    for p in entries {
        if !listed.contains(&p) {
            tracing::info!(file = %p.display(), "removing a file no manifest lists (left by an interrupted seal)");
            io.remove_file(&p).map_err(Error::io("remove", &p))?;
        }
    }
    Ok(())
}

/// Where the replay of the active region stopped, a crash may have torn the last writes, or
/// the disk may have damaged bytes that were synced long ago; cutting the log there is right
/// only in the first case. A valid frame further on with the synced-before bit settles it:
/// when it was written, everything before it, the stopping point included, was on disk
/// whole, so the log is damaged there and the frames after it are acknowledged writes.
/// That is corruption, reported; `Config::salvage` cuts the log anyway, and logs that the
/// records after the offset are lost. (Without such a frame the stop is taken for a torn tail, as always: after a
/// crash, unsynced frames may be missing or garbled in any pattern.)
fn check_torn_tail(shared: &Shared, region: &Segment, map: &[u8], scan: &segment::Scan) -> Result<()> {
    let Some(found) = segment::synced_frame_after(map, scan.end) else { return Ok(()) };
    let reason = scan.stopped.map_or("zeros where a frame should start", |(_, reason)| reason);
    let what = format!(
        "{reason}, but the frame at offset {found} was written after this point had been synced: \
         the log is damaged here, not torn by a crash, and the frames after it hold acknowledged writes"
    );
    if !shared.config.salvage {
        return Err(Error::corruption(region.path(), scan.end as u64, what));
    }
    tracing::error!(file = %region.path().display(), offset = scan.end, reason = %what, "salvage: records after this offset are lost");
    Ok(())
}

/// Reconstructs a manifest from the files when `index.json` is missing or damaged.
fn rebuild_manifest(shared: &Shared, paths: &DimPaths, id: u32) -> Result<Manifest> {
    let io = &*shared.io;
    let region = Segment::open(io, &paths.region(), id)?;
    let name = if id == 1 {
        crate::DEFAULT_DIMENSION.to_string()
    } else {
        recover_name(paths).unwrap_or_else(|| format!("dimension-{id}"))
    };
    let mut manifest = Manifest::new(id, &name, region.layer_id);
    let mut ids: Vec<u32> = io
        .read_dir(&paths.layers())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).and_then(crate::layout::parse_layer_file))
        .filter(|(_, ext)| *ext == "mmap")
        .map(|(i, _)| i)
        // Compaction outputs get ids above the active region's: take every layer file.
        .filter(|i| *i != region.layer_id)
        .collect();
    ids.sort_unstable();
    for layer in ids {
        let seg = Segment::open(io, &paths.layer(layer), id)?;
        let map = seg.map();
        manifest.layers.push(build_key_index(io, &paths.keys(layer), id, layer, &map, &seg.path())?);
    }
    Ok(manifest)
}

/// Pulls the name out of a damaged manifest if its JSON still parses.
/// The name a damaged `index.json` (kept as `index.json.damaged`) still shows: from the
/// JSON if it parses, else from the text after `"name"`, so that a flipped byte elsewhere
/// in the file does not cost the dimension its name (an application would find it gone).
fn recover_name(paths: &DimPaths) -> Option<String> {
    let bytes = std::fs::read(paths.manifest()).or_else(|_| std::fs::read(paths.damaged_manifest())).ok()?;
    let name = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(v) => v.get("name")?.as_str()?.to_string(),
        Err(_) => {
            let text = String::from_utf8_lossy(&bytes);
            let after = text.split_once("\"name\"")?.1.trim_start().strip_prefix(':')?.trim_start();
            after.strip_prefix('"')?.split('"').next()?.to_string()
        }
    };
    crate::validate_dimension_name(&name).ok().map(|_| name)
}

/// Before a damaged or missing `index.json` is rebuilt: the damaged bytes (or, when it is
/// missing, a line saying so) are kept in `index.json.damaged`, which `verify` reports until
/// an operator has checked the dimension and removed it. The rebuild is what keeps the data
/// reachable, but it cannot know what the lost manifest knew (a layer file lost with it,
/// the name if unreadable), so it must not pass silently. An earlier `.damaged` file is kept:
/// it is the first evidence.
fn keep_damaged_manifest(shared: &Shared, paths: &DimPaths, damaged: bool) -> Result<()> {
    let io = &*shared.io;
    let kept = paths.damaged_manifest();
    if kept.exists() {
        return Ok(());
    }
    if damaged {
        io.rename(&paths.manifest(), &kept).map_err(Error::io("rename", paths.manifest()))?;
    } else {
        let note = b"index.json was missing when the store was opened; it was rebuilt from the layer files\n";
        let file = io.open(&kept, true).map_err(Error::io("create", &kept))?;
        file.write_all_at(note, 0).and_then(|()| file.sync_data()).map_err(Error::io("write", &kept))?;
    }
    io.sync_dir(&paths.dir).map_err(Error::io("fsync directory", &paths.dir))
}

/// The largest value a record with a key of `key_len` bytes can hold in a region of
/// `max_size` bytes (`MMAP_MAX_SIZE`): less the file's, the frame's and the entry's headers.
pub(crate) fn max_value_len(max_size: u64, key_len: usize) -> u64 {
    max_size.saturating_sub((FILE_HEADER_LEN + FRAME_HEADER_LEN + entry_len(key_len, 0)) as u64)
}

/// Creates dimension `id`, whose sequence numbers start above `first_seq_after`
/// (`Store::new_dimension_floor`): its directory is made under `temp/` and moved into
/// place, so a crash leaves either nothing or a complete dimension.
pub(crate) fn create(shared: &Arc<Shared>, id: u32, name: &str, first_seq_after: u64) -> Result<()> {
    let io = &*shared.io;
    let temp = shared.layout.temp();
    let staging = temp.join(format!("new-{}-{}", dir_name(id), region::unique()));
    let p = DimPaths::at(&staging);
    io.create_dir_all(&p.layers()).map_err(Error::io("create directory", p.layers()))?;
    region::create(io, &temp, &p.region(), id, 1, shared.config.initial_size, shared.config.durability)?;
    let mut manifest = Manifest::new(id, name, 1);
    manifest.last_seq = first_seq_after;
    manifest.store(io, &p.manifest())?;
    io.sync_dir(&p.layers()).map_err(Error::io("fsync directory", p.layers()))?;
    let dest = shared.layout.dimension(id).dir;
    io.rename(&staging, &dest).map_err(Error::io("rename", &staging))?;
    let parent = shared.layout.consciousness();
    io.sync_dir(&parent).map_err(Error::io("fsync directory", &parent))
}

impl DimInner {
    /// Syncs the active region and captures what a snapshot copies (see snapshot.rs).
    pub fn capture(&self) -> Result<crate::snapshot::Capture> {
        self.check_live()?;
        let mut w = self.writer.lock();
        if !self.shared.is_read_only() {
            self.sync_locked(&mut w)?;
        }
        let state = self.state.read();
        let mut sealed = Vec::new();
        for l in &w.manifest.layers {
            sealed.push((l.layer_id, state.segment(l.layer_id)?.clone()));
        }
        let mut manifest = w.manifest.clone();
        manifest.last_seq = manifest.last_seq.max(w.synced_seq);
        Ok(crate::snapshot::Capture {
            manifest,
            region: w.region.clone(),
            region_end: w.written_end() as usize,
            ends_with_mark: w.mark_end == w.written_end(),
            sealed,
        })
    }

    /// Records that a scan merged the ordered index's waiting changes (see `publish`). Read
    /// first, so that scans running side by side do not keep writing the same cache line.
    pub(crate) fn note_scan_of_changes(&self) {
        if !self.scanned_changes.load(Ordering::Relaxed) {
            self.scanned_changes.store(true, Ordering::Relaxed);
        }
    }

    /// Installs the ordered index's new base if its merging thread has finished, and merges
    /// changes that stopped coming (see ordered.rs); the store's background thread calls this
    /// every tick.
    pub fn tend_ordered_index(&self) {
        if self.state.read().ordered.merge_finished() {
            self.state.write().ordered.install_merged();
        }
        // Batches deferred by a writer that stopped writing: scans overlay them until folded.
        if self.state.read().ordered.has_deferred() {
            self.state.write().ordered.fold();
        }
        // Changes that stopped coming: merged, so that scans read the base alone.
        self.state.write().ordered.merge_if_idle(crate::ordered::IDLE_MERGE_GAP);
        self.state.read().ordered.release_idle_spare(crate::ordered::SPARE_KEEP);
    }

    /// Periodic durability: sync if anything was written since the last sync.
    pub fn sync_if_dirty(&self) {
        let mut w = self.writer.lock();
        if w.written_seq > w.synced_seq && !self.shared.is_read_only() {
            if let Err(e) = self.sync_locked(&mut w) {
                tracing::error!(error = %e, dimension = %self.name, "periodic sync failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Durability, Store, WriteBatch};

    #[test]
    fn a_dimension_no_longer_written_has_its_changes_merged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), Config::default().durability(Durability::None)).unwrap();
        let d = store.dimension("default").unwrap();
        for k in 0..10u8 {
            d.put([k], [k]).unwrap();
        }
        let waiting = || d.inner.state.read().ordered.waiting_changes();
        assert_eq!(waiting(), 10);
        // The background thread ticks every second; the second tick without a write merges.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while waiting() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(waiting(), 0, "the changes were merged into the base");
        let keys: Vec<Vec<u8>> = d.iter().map(|e| e.unwrap().0.to_vec()).collect();
        assert_eq!(keys, (0..10u8).map(|k| vec![k]).collect::<Vec<_>>());
    }

    /// A durable commit leaves its keys deferred beside the ordered index's tree (and
    /// visible to scans), and the next commit folds them in while its own sync runs; after a
    /// scan of waiting changes, the next commit does not defer.
    #[test]
    fn each_durable_commit_folds_what_the_last_one_deferred() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), Config::default().durability(Durability::Immediate)).unwrap();
        let d = store.dimension("default").unwrap();
        let deferred = || d.inner.state.read().ordered.deferred_runs();
        let mut want = Vec::new();
        let mut write = |round: u8| {
            let mut batch = WriteBatch::new();
            // Two keys: under test, a batch of `RUN_MIN` (3) becomes a run instead.
            for k in [3u8, 1] {
                let key = vec![k, round];
                batch.push_put(key.clone(), vec![round]);
                want.push(key);
            }
            d.write(batch).unwrap();
        };
        for round in 0..4u8 {
            write(round);
            assert_eq!(deferred(), 1, "round {round}: only the last commit's batch waits");
        }
        let scan = || d.iter().map(|e| e.unwrap().0.to_vec()).collect::<Vec<Vec<u8>>>();
        let first = scan();
        write(4);
        assert_eq!(deferred(), 0, "a scan ran since the last commit: nothing deferred");
        let second = scan();
        want.sort();
        let four_rounds: Vec<Vec<u8>> = want.iter().filter(|k| k[1] < 4).cloned().collect();
        assert_eq!(first, four_rounds);
        assert_eq!(second, want);
    }
}
