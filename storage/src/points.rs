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
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// A large batch of updates grouped by shard, each shard's in batch order: `Points::plan`
/// hashes every key once, and `Points::apply_shards` then takes one shard at a time, locked
/// once, from whichever thread asks next.
pub(crate) struct Plan {
    /// `(hash, index in the batch)`, shard 0's first, then shard 1's, ...
    items: Vec<(u64, u32)>,
    /// `items[starts[s]..starts[s + 1]]` are shard `s`'s.
    starts: [usize; SHARDS + 1],
    /// The next shard to hand out.
    next: AtomicUsize,
}

/// The updates a large batch gave the point index, with the location each replaced.
pub(crate) type Replaced = Vec<(u32, Option<Loc>)>;

impl Points {
    /// Groups `updates` by shard, keeping their order within each.
    pub fn plan(&self, updates: &[(IndexKey, Option<Loc>)]) -> Plan {
        let (items, starts) = self.group(updates.iter().map(|(key, _)| &key[..]));
        Plan { items, starts, next: AtomicUsize::new(0) }
    }

    /// `(hash, index)` of each key, grouped by shard (shard 0's first) and in the order
    /// given within each, with where each shard's start: `items[starts[s]..starts[s + 1]]`.
    fn group<'a>(&self, keys: impl Iterator<Item = &'a [u8]>) -> (Vec<(u64, u32)>, [usize; SHARDS + 1]) {
        let hashes: Vec<u64> = keys.map(|key| self.hash(key)).collect();
        let mut starts = [0usize; SHARDS + 1];
        for &h in &hashes {
            starts[shard_index(h) + 1] += 1;
        }
        for s in 0..SHARDS {
            starts[s + 1] += starts[s];
        }
        let mut at = starts;
        let mut items = vec![(0u64, 0u32); hashes.len()];
        for (i, &h) in hashes.iter().enumerate() {
            let s = shard_index(h);
            items[at[s]] = (h, i as u32);
            at[s] += 1;
        }
        (items, starts)
    }

    /// Applies the shards of `plan` that no other thread has taken yet, one at a time under
    /// its lock, until none are left; returns each update applied with what it replaced.
    /// Two threads calling this share the work without dividing it in advance: in a bulk
    /// load the writer's thread changes the ordered index first, then joins in here.
    pub fn apply_shards(&self, plan: &Plan, updates: &[(IndexKey, Option<Loc>)]) -> Replaced {
        const AHEAD: usize = 8;
        let mut done = Vec::new();
        loop {
            let s = plan.next.fetch_add(1, Ordering::Relaxed);
            if s >= SHARDS {
                return done;
            }
            let mine = &plan.items[plan.starts[s]..plan.starts[s + 1]];
            if mine.is_empty() {
                continue;
            }
            done.reserve(mine.len());
            let mut shard = self.shards[s].0.write();
            for (n, &(hash, i)) in mine.iter().enumerate() {
                if let Some(&(ahead, _)) = mine.get(n + AHEAD) {
                    shard.locs.prefetch(ahead);
                }
                let (key, loc) = &updates[i as usize];
                let old = match loc {
                    Some(loc) => shard.locs.insert(hash, key.clone(), *loc),
                    None => shard.locs.remove(hash, key),
                };
                done.push((i, old));
            }
        }
    }

    pub fn new() -> Points {
        let shards = (0..SHARDS).map(|_| Padded(RwLock::new(Shard::default()))).collect();
        Points { hasher: Hasher::default(), shards }
    }

    /// Adds every key with a value found on open. Large fills run on two threads, each
    /// filling half of the shards: filling took a fifth of the time to reopen a million keys.
    pub fn fill(&self, puts: &[(IndexKey, Loc)]) {
        let (items, starts) = self.group(puts.iter().map(|(key, _)| &key[..]));
        let fill = |shards: std::ops::Range<usize>| {
            for s in shards {
                fill_shard(&mut self.shards[s].0.write(), puts, &items[starts[s]..starts[s + 1]]);
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

    /// A batch applied by shards from two threads ends where the same batch applied update
    /// by update does, and reports for each update what it replaced, in batch order within
    /// a key: a key put twice, deleted and put again in one batch included.
    #[test]
    fn a_batch_applied_by_shards_from_two_threads_is_the_batch_applied_in_turn() {
        let key = |i: u32| IndexKey::from_slice(format!("key{i}").as_bytes());
        let start: Vec<(IndexKey, Loc)> = (0..20_000u32).map(|i| (key(i), loc(i))).collect();
        let mut updates: Vec<(IndexKey, Option<Loc>)> = Vec::new();
        for i in 0..30_000u32 {
            let k = (i * 7919) % 25_000;
            updates.push((key(k), if i % 5 == 0 { None } else { Some(loc(100_000 + i)) }));
        }
        let (turn, shared) = (Points::new(), Points::new());
        turn.fill(&start);
        shared.fill(&start);
        let expected: Vec<Option<Loc>> = updates
            .iter()
            .map(|(k, l)| match l {
                Some(l) => turn.insert(k.clone(), *l),
                None => turn.remove(k),
            })
            .collect();
        let plan = shared.plan(&updates);
        let (a, b) = std::thread::scope(|s| {
            let other = s.spawn(|| shared.apply_shards(&plan, &updates));
            let mine = shared.apply_shards(&plan, &updates);
            (mine, other.join().unwrap())
        });
        let mut got: Vec<Option<Option<Loc>>> = vec![None; updates.len()];
        for (i, old) in a.into_iter().chain(b) {
            assert!(got[i as usize].replace(old).is_none(), "update {i} applied twice");
        }
        let got: Vec<Option<Loc>> = got.into_iter().map(|o| o.expect("an update was not applied")).collect();
        assert_eq!(got, expected);
        assert_eq!(shared.len(), turn.len());
        for i in 0..25_000u32 {
            assert_eq!(shared.loc(&key(i)), turn.loc(&key(i)), "key{i}");
        }
    }
}
