//! Compaction: gives back the space of overwritten and deleted records.
//!
//! A sealed layer's *dead* bytes are those of entries the index no longer points at.
//! Compaction picks the layers whose dead share passes `Config::compaction_threshold`,
//! copies their live entries into new layers built under `temp/`, moves those into
//! `layers/`, and publishes a new `index.json`: that rename is the commit point. Only then
//! does it repoint the in-memory index (where a concurrent write has not moved the key on
//! already) and unlink the old files. A crash before the commit leaves unlisted files that
//! the next open sweeps; a crash after it leaves old files that the next open sweeps.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::builder::LayerBuilder;
use crate::dimension::{DimInner, IndexKey, Loc};
use crate::io::Io;
use crate::keyindex::KeyIndex;
use crate::layout::DimPaths;
use crate::manifest::LayerEntry;
use crate::record::Kind;
use crate::segment::{scan_frames, Segment};
use crate::{CompactReport, Error, Result};

/// Layers a compaction wrote without giving much back, with their live bytes at the time.
/// A layer of tombstones that must stay has no live bytes and so looks 100% dead: without
/// this memo every compaction would rewrite it again for nothing. It is picked again only
/// once its live bytes change (an overwrite or delete made part of it dead).
pub(crate) type Futile = HashMap<u32, u64>;

/// A compaction that gives back less than this share of what it read is futile.
const FUTILE_SHARE: f64 = 0.1;

/// A live put that was copied: where it was, and where it is now.
struct Moved {
    key: IndexKey,
    old: Loc,
    layer: u32,
    off: u32,
}

impl DimInner {
    /// The sealed layers worth compacting, and every other sealed layer.
    fn pick(&self, futile: &Futile) -> (Vec<(LayerEntry, Arc<Segment>)>, Vec<LayerEntry>) {
        let threshold = self.shared.config.compaction_threshold;
        let w = self.writer.lock();
        let state = self.state.read();
        let mut picked = Vec::new();
        let mut others = Vec::new();
        for l in &w.manifest.layers {
            let live = state.layer_live.get(&l.layer_id).copied().unwrap_or(0);
            let dead = l.size.saturating_sub(live);
            let worth = l.size > 0
                && dead as f64 >= threshold * l.size as f64
                && dead > 0
                && futile.get(&l.layer_id) != Some(&live);
            match state.segments.get(&l.layer_id) {
                Some(seg) if worth => picked.push((l.clone(), seg.clone())),
                _ => others.push(l.clone()),
            }
        }
        (picked, others)
    }

    /// Runs one compaction now (see the module docs).
    pub fn compact(&self) -> Result<CompactReport> {
        let mut futile = self.compacting.lock();
        // A layer sealed a moment ago may still be getting its key index: let it finish
        // before its files are read or removed.
        self.finish_key_index();
        self.check_live()?;
        self.shared.check_writable()?;
        let (picked, others) = self.pick(&futile);
        if picked.is_empty() {
            return Ok(CompactReport::default());
        }
        let io = &*self.shared.io;
        let staging = self.shared.layout.temp().join(format!(
            "compact-{}-{}",
            crate::layout::dir_name(self.id),
            crate::region::unique()
        ));
        io.create_dir_all(&staging).map_err(Error::io("create directory", &staging))?;
        let mut older = OlderKeys::new(others);
        let result = self.copy_and_publish(&picked, &mut older, &staging);
        let _ = io.remove_dir_all(&staging);
        let (report, written) = result?;
        let read: u64 = picked.iter().map(|(l, _)| l.size).sum();
        if (report.bytes_reclaimed as f64) < FUTILE_SHARE * read as f64 {
            let state = self.state.read();
            for id in written {
                futile.insert(id, state.layer_live.get(&id).copied().unwrap_or(0));
            }
        }
        let listed: Vec<u32> = self.writer.lock().manifest.layers.iter().map(|l| l.layer_id).collect();
        futile.retain(|id, _| listed.contains(id));
        self.shared.compactions.fetch_add(1, Ordering::Relaxed);
        tracing::info!(dimension = %self.name, layers = report.layers_compacted, reclaimed = report.bytes_reclaimed, "compacted");
        Ok(report)
    }

    fn copy_and_publish(
        &self,
        picked: &[(LayerEntry, Arc<Segment>)],
        older: &mut OlderKeys,
        staging: &std::path::Path,
    ) -> Result<(CompactReport, Vec<u32>)> {
        let mut moved = Vec::new();
        let next_id = || {
            let mut w = self.writer.lock();
            let id = w.next_layer_id;
            w.next_layer_id += 1;
            id
        };
        let io = &*self.shared.io;
        let mut builder =
            LayerBuilder::new(self.shared.io.clone(), staging, self.id, self.shared.config.max_size, next_id);
        for (entry, seg) in picked {
            let map = seg.map();
            let end = (entry.offset + entry.size) as usize;
            let mut failed = None;
            let scan = scan_frames(&map, end, |_, h, entries| {
                if failed.is_some() {
                    return;
                }
                let state = self.state.read();
                let mut copy = Vec::new();
                for (off, e) in entries {
                    let current = state.points.loc(e.key);
                    let keep = match e.kind {
                        Kind::Put => current.is_some_and(|l| l.layer == entry.layer_id && l.off == *off as u32),
                        // A tombstone must stay while an older version of its key may sit
                        // in a layer this compaction does not rewrite.
                        Kind::Delete => {
                            let superseded = current.is_some_and(|l| l.seq > h.seq);
                            !superseded && older.may_hold(io, &self.paths, e.key, h.seq)
                        }
                    };
                    if keep {
                        copy.push((*off, *e, current));
                    }
                }
                drop(state);
                for (off, e, current) in copy {
                    match builder.push(e.kind, e.key, e.value, h.seq) {
                        Ok((layer, new_off)) => {
                            if let (Kind::Put, Some(old)) = (e.kind, current) {
                                debug_assert_eq!(old.off, off as u32);
                                moved.push(Moved { key: IndexKey::from_slice(e.key), old, layer, off: new_off });
                            }
                        }
                        Err(err) => {
                            failed = Some(err);
                            return;
                        }
                    }
                }
            });
            if let Some(err) = failed {
                return Err(err);
            }
            if let Some((at, reason)) = scan.stopped {
                return Err(Error::corruption(seg.path(), at as u64, reason));
            }
        }
        let built = builder.finish()?;
        let written = built.iter().map(|b| b.entry.layer_id).collect();
        Ok((self.install(picked, built, moved)?, written))
    }

    /// Moves the new layers into place, commits the manifest, repoints the index and
    /// unlinks what was replaced.
    ///
    /// The writer lock is held only for the commit itself: the new files are renamed into
    /// `layers/` before it (until the manifest lists them they are files the next open
    /// sweeps, and nothing else reads them), and the index is repointed after it, a chunk
    /// of keys at a time, so that writers and readers wait for a chunk rather than for the
    /// whole compaction (tens of milliseconds for 50,000 keys).
    fn install(
        &self,
        picked: &[(LayerEntry, Arc<Segment>)],
        built: Vec<crate::builder::BuiltLayer>,
        moved: Vec<Moved>,
    ) -> Result<CompactReport> {
        let io = &*self.shared.io;
        let layers_dir = self.paths.layers();
        let old_bytes: u64 = picked.iter().map(|(_, s)| s.file.len().unwrap_or(0)).sum();
        let new_segments = self.place(&built)?;
        let mut w = self.writer.lock();
        // The entries left behind as dead were superseded by newer writes, which under
        // `Durability::None`/`Periodic` may still be unsynced in the active region. Once the
        // commit below unlinks the old layers, a power loss would take both versions and the
        // key would vanish (or an older version behind a dropped tombstone come back). So
        // make every write so far durable before the commit. Found by
        // tests/fault_power_loss.rs (`unsynced_writes_leave_a_prefix`).
        self.sync_locked(&mut w)?;
        let mut manifest = w.manifest.clone();
        manifest.layers.retain(|l| !picked.iter().any(|(p, _)| p.layer_id == l.layer_id));
        // Every put copied was live when copied (informational, like a seal's count).
        let mut live: HashMap<u32, u64> = HashMap::new();
        for m in &moved {
            *live.entry(m.layer).or_insert(0) += m.old.size as u64;
        }
        manifest.layers.extend(
            built.iter().map(|b| LayerEntry {
                live_bytes: live.get(&b.entry.layer_id).copied().unwrap_or(0),
                ..b.entry.clone()
            }),
        );
        manifest.layers.sort_by_key(|l| l.layer_id);
        manifest.generation += 1;
        // Should this fail after its rename, the manifest on disk lists the new layers and
        // the one in memory the old: both sets of files are still there, so either is whole,
        // and the next manifest stored (a seal's) lists the old ones again.
        manifest.store(io, &self.paths.manifest())?;
        w.manifest = manifest;
        {
            let mut state = self.state.write();
            for seg in &new_segments {
                state.add_segment(seg.clone());
            }
        }
        drop(w);
        self.repoint(moved);
        {
            let mut state = self.state.write();
            for (p, _) in picked {
                state.remove_segment(p.layer_id);
                state.layer_live.remove(&p.layer_id);
            }
        }
        // Readers still holding the old segments keep their maps; the kernel frees the
        // blocks when the last map goes.
        for (p, _) in picked {
            for f in [&p.file, &p.keys_file] {
                let path = self.paths.dir.join(f);
                if let Err(e) = io.remove_file(&path) {
                    tracing::warn!(file = %path.display(), error = %e, "could not remove a compacted layer; the next open sweeps it");
                }
            }
        }
        let _ = io.sync_dir(&layers_dir);
        let new_bytes: u64 = new_segments.iter().map(|s| s.file.len().unwrap_or(0)).sum();
        Ok(CompactReport { bytes_reclaimed: old_bytes.saturating_sub(new_bytes), layers_compacted: picked.len() })
    }

    /// Renames the built layers from the staging directory into `layers/`, opens them and
    /// makes the renames durable: ready for a manifest to list them.
    fn place(&self, built: &[crate::builder::BuiltLayer]) -> Result<Vec<Arc<Segment>>> {
        let io = &*self.shared.io;
        let mut segments = Vec::new();
        for b in built {
            let log = self.paths.layer(b.entry.layer_id);
            let keys = self.paths.keys(b.entry.layer_id);
            io.rename(&b.log, &log).map_err(Error::io("rename", &b.log))?;
            io.rename(&b.keys, &keys).map_err(Error::io("rename", &b.keys))?;
            segments.push(Arc::new(Segment::open(io, &log, self.id)?));
        }
        let layers_dir = self.paths.layers();
        io.sync_dir(&layers_dir).map_err(Error::io("fsync directory", &layers_dir))?;
        Ok(segments)
    }

    /// Points the index at the copies of the moved keys, `REPOINT_CHUNK` keys per hold of
    /// the state lock. A key that a write moved on (or deleted) since it was copied stays
    /// where the write put it. Until every chunk is done, the keys not yet repointed are
    /// read from the old layers, which stay mapped until then.
    fn repoint(&self, moved: Vec<Moved>) {
        let mut moved = moved.into_iter().peekable();
        while moved.peek().is_some() {
            let mut state = self.state.write();
            for m in moved.by_ref().take(REPOINT_CHUNK) {
                if state.points.loc(&m.key) == Some(m.old) {
                    let loc = Loc { layer: m.layer, off: m.off, ..m.old };
                    state.apply(m.key, Some(loc));
                }
            }
            // Hand the lock to whoever waits (the committer publishing, readers) rather
            // than take it straight back for the next chunk.
            parking_lot::RwLockWriteGuard::unlock_fair(state);
        }
    }
}

/// Keys repointed per hold of the state lock after a compaction: about a tenth of a
/// millisecond of readers and writers waiting (a key costs about half a microsecond).
const REPOINT_CHUNK: usize = 256;

/// Above this many keys in the layers a compaction leaves alone, it stops loading their
/// key indexes and keeps every tombstone that is younger than one of them: the precise
/// check would cost more memory than the tombstones it could drop.
const MAX_OLDER_KEYS: u64 = 4_000_000;

/// Answers "may a layer this compaction does not rewrite hold an older version of this
/// key?", which decides whether a tombstone must be copied. Looking only at sequence
/// numbers, one untouched layer older than the tombstones keeps all of them (after
/// deleting half of a bulk load, that was a fifth of the store's disk); so the untouched
/// layers' key indexes are loaded, once and only when a tombstone asks, and the key
/// looked up in them.
/// An untouched layer's oldest sequence number and its keys.
type LayerKeys = (u64, HashSet<IndexKey>);

pub(crate) struct OlderKeys {
    others: Vec<LayerEntry>,
    /// Per untouched layer: its oldest sequence number and its keys. `None` until a
    /// tombstone asks; `Some(None)` when loading failed or would be too large, and the
    /// answer falls back to sequence numbers alone.
    keys: Option<Option<Vec<LayerKeys>>>,
}

impl OlderKeys {
    pub fn new(others: Vec<LayerEntry>) -> OlderKeys {
        OlderKeys { others, keys: None }
    }

    fn may_hold(&mut self, io: &dyn Io, paths: &DimPaths, key: &[u8], seq: u64) -> bool {
        if !self.others.iter().any(|l| l.min_seq <= seq) {
            return false;
        }
        if self.keys.is_none() {
            self.keys = Some(self.load(io, paths));
        }
        match self.keys.as_ref().and_then(|k| k.as_ref()) {
            Some(layers) => layers.iter().any(|(min, keys)| *min <= seq && keys.contains(key)),
            None => true,
        }
    }

    fn load(&self, io: &dyn Io, paths: &DimPaths) -> Option<Vec<LayerKeys>> {
        if self.others.iter().map(|l| l.records).sum::<u64>() > MAX_OLDER_KEYS {
            return None;
        }
        let mut out = Vec::with_capacity(self.others.len());
        for l in &self.others {
            // A missing or damaged key index only costs precision here; open rebuilds it.
            let index = KeyIndex::load(io, &paths.dir.join(&l.keys_file)).ok()?;
            out.push((l.min_seq, index.iter().map(|it| IndexKey::from_slice(it.key)).collect()));
        }
        Some(out)
    }
}
