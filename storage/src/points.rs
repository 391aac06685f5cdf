//! The point index: every key with a value, hashed, for `get`.
//!
//! It is split into shards, each behind its own lock, and it is read without the
//! dimension's state lock. A read lock is an atomic write to the lock's cache line; with one
//! lock for the whole index, two threads doing gets bounced that line between their cores
//! on every call (two threads did 1.4x the gets of one, against 2x for LMDB). Each shard
//! also keeps its own copy of the layer → memory-map table, so a get touches one lock only.
//!
//! Writers change it under the state lock (the ordered index, ordered.rs, changes in the
//! same critical section), shard by shard; a get sees each key's old or new location, never
//! a mix.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use memmap2::Mmap;
use parking_lot::RwLock;

use crate::dimension::{IndexKey, Loc};
use crate::table::Table;

const SHARDS: usize = 32;

/// Seeded per process, so keys sent over HTTP cannot be chosen to collide.
type Hasher = foldhash::fast::RandomState;

pub(crate) struct Points {
    /// One hash per key: its top bits pick the shard, its low bits the slot in the shard's
    /// table.
    hasher: Hasher,
    shards: Box<[Padded]>,
}

/// A shard on cache lines of its own, so that locking one does not disturb its neighbours.
#[repr(align(128))]
struct Padded(RwLock<Shard>);

#[derive(Default)]
struct Shard {
    locs: Table,
    maps: HashMap<u32, Arc<Mmap>, foldhash::fast::FixedState>,
}

/// Inserts `puts[i]` for each `(hash, i)` of `which` into `shard`, in the order of the
/// slots they land in. Inserted in key order, every key went to a random slot of a table
/// far larger than the cache; in slot order the table is written from one end to the other.
fn fill_shard(shard: &mut Shard, puts: &[(IndexKey, Loc)], which: &[(u64, u32)]) {
    shard.locs.reserve(which.len());
    let mut order: Vec<(usize, u64, u32)> = which.iter().map(|&(h, i)| (shard.locs.home(h), h, i)).collect();
    order.sort_unstable();
    // `puts` is now read out of order: ask for the entries a few inserts ahead.
    const AHEAD: usize = 16;
    for (n, &(_, hash, i)) in order.iter().enumerate() {
        if let Some(&(_, _, ahead)) = order.get(n + AHEAD) {
            crate::prefetch::prefetch(&puts[ahead as usize]);
        }
        let (key, loc) = &puts[i as usize];
        shard.locs.insert(hash, key.clone(), *loc);
    }
}

impl Points {
    pub fn new() -> Points {
        let shards = (0..SHARDS).map(|_| Padded(RwLock::new(Shard::default()))).collect();
        Points { hasher: Hasher::default(), shards }
    }

    /// Adds every key with a value found on open. Large fills run on two threads, each
    /// filling half of the shards: filling took a fifth of the time to reopen a million keys.
    pub fn fill(&self, puts: &[(IndexKey, Loc)]) {
        let mut by_shard: Vec<Vec<(u64, u32)>> = vec![Vec::new(); SHARDS];
        for (i, (key, _)) in puts.iter().enumerate() {
            let hash = self.hash(key);
            by_shard[shard_index(hash)].push((hash, i as u32));
        }
        let fill = |shards: std::ops::Range<usize>| {
            for s in shards {
                fill_shard(&mut self.shards[s].0.write(), puts, &by_shard[s]);
            }
        };
        if puts.len() < 1 << 14 {
            return fill(0..SHARDS);
        }
        std::thread::scope(|s| {
            let other = s.spawn(|| fill(0..SHARDS / 2));
            fill(SHARDS / 2..SHARDS);
            if let Err(panic) = other.join() {
                std::panic::resume_unwind(panic);
            }
        });
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn shard(&self, hash: u64) -> &Padded {
        &self.shards[shard_index(hash)]
    }

    /// Where `key`'s newest value is, with the map of its layer (`None` if the layer is not
    /// loaded: an index bug, reported by the caller).
    pub fn get(&self, key: &[u8]) -> Option<(Option<Arc<Mmap>>, Loc)> {
        let hash = self.hash(key);
        let shard = self.shard(hash).0.read();
        shard.locs.get(hash, key).map(|loc| (shard.maps.get(&loc.layer).cloned(), *loc))
    }

    pub fn loc(&self, key: &[u8]) -> Option<Loc> {
        let hash = self.hash(key);
        self.shard(hash).0.read().locs.get(hash, key).copied()
    }

    /// Asks the CPU to load the slot where `key`'s lookup or insert will start.
    pub fn prefetch(&self, key: &[u8]) {
        let hash = self.hash(key);
        self.shard(hash).0.read().locs.prefetch(hash);
    }

    /// Sets `key`'s location; returns the one it replaces.
    pub fn insert(&self, key: IndexKey, loc: Loc) -> Option<Loc> {
        let hash = self.hash(&key);
        self.shard(hash).0.write().locs.insert(hash, key, loc)
    }

    /// Forgets `key`; returns its location.
    pub fn remove(&self, key: &[u8]) -> Option<Loc> {
        let hash = self.hash(key);
        self.shard(hash).0.write().locs.remove(hash, key)
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.read().locs.len()).sum()
    }

    /// Sets the map of `layer` (a new segment, or one mapped again after it grew).
    pub fn set_map(&self, layer: u32, map: &Arc<Mmap>) {
        for s in self.shards.iter() {
            s.0.write().maps.insert(layer, map.clone());
        }
    }

    pub fn remove_map(&self, layer: u32) {
        for s in self.shards.iter() {
            s.0.write().maps.remove(&layer);
        }
    }
}

/// The top bits: the shard's table uses the low ones.
fn shard_index(hash: u64) -> usize {
    (hash >> 59) as usize % SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(i: u32) -> Loc {
        Loc { layer: i % 3, off: i, size: 10, seq: i as u64 }
    }

    #[test]
    fn keeps_every_key_across_shards() {
        let puts: Vec<(IndexKey, Loc)> =
            (0..50_000u32).map(|i| (IndexKey::from_slice(format!("key{i}").as_bytes()), loc(i))).collect();
        let p = Points::new();
        p.fill(&puts);
        assert_eq!(p.len(), 50_000);
        for (k, l) in &puts {
            assert_eq!(p.loc(k), Some(*l));
        }
        p.remove(b"key7");
        p.insert(IndexKey::from_slice(b"key8"), loc(99));
        assert_eq!(p.loc(b"key7"), None);
        assert_eq!(p.loc(b"key8"), Some(loc(99)));
        assert_eq!(p.len(), 49_999);
        // No layer map set yet: the location comes back without a map.
        assert!(matches!(p.get(b"key1"), Some((None, l)) if l == loc(1)));
    }
}
