//! The hash table of one point-index shard (points.rs): open addressing with linear
//! probing, each slot holding the key's hash beside the key and its location.
//!
//! Why not `hashbrown`: its lookup reads a control byte in one array and then the bucket
//! in another. In a table far larger than the cache that is two misses before the value's
//! own; `perf annotate` of random gets over a million keys put 26% of the lookup on the
//! control byte and 61% on the bucket. Here the hash sits in the slot: a lookup that finds
//! its key at home reads one slot (72 bytes, one line or two neighbours), and compares the
//! key only when the whole 64-bit hash matches. Growing moves slots by their stored hash,
//! without hashing a key again.
//!
//! The caller hashes (with a seeded hasher, so keys cannot be chosen to collide) and must
//! pass the same hash for the same key every time. Slot `hash & mask` is a key's home;
//! the table keeps every key between its home and the first empty slot after it, and
//! `remove` shifts later slots back instead of leaving tombstones, so that holds.

use crate::dimension::Loc;
use crate::key::IndexKey;

/// A hash of 0 marks an empty slot; a key hashing to 0 is stored as 1.
const EMPTY: u64 = 0;

/// At most 7 slots in 10 are used, so that probe runs stay short.
const MAX_LOAD: (usize, usize) = (7, 10);

const MIN_SLOTS: usize = 16;

#[derive(Clone, Default)]
struct Slot {
    hash: u64,
    key: IndexKey,
    loc: Loc,
}

#[derive(Default)]
pub(crate) struct Table {
    /// A power of two long, or empty.
    slots: Vec<Slot>,
    len: usize,
}

fn stored(hash: u64) -> u64 {
    if hash == EMPTY {
        1
    } else {
        hash
    }
}

impl Table {
    pub fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// The slot where a key with `hash` starts its probe, once `reserve` made room.
    pub fn home(&self, hash: u64) -> usize {
        stored(hash) as usize & self.mask()
    }

    /// The slot holding `key`, if any.
    fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let hash = stored(hash);
        let mask = self.mask();
        let mut i = hash as usize & mask;
        loop {
            let slot = &self.slots[i];
            if slot.hash == EMPTY {
                return None;
            }
            if slot.hash == hash && *slot.key == *key {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    pub fn get(&self, hash: u64, key: &[u8]) -> Option<&Loc> {
        self.find(hash, key).map(|i| &self.slots[i].loc)
    }

    /// Asks the CPU to load the slot where a key with `hash` starts its probe.
    pub fn prefetch(&self, hash: u64) {
        if let Some(slot) = self.slots.get(self.home(hash)) {
            crate::prefetch::prefetch(slot);
        }
    }

    /// Makes room for `additional` more keys without growing again.
    pub fn reserve(&mut self, additional: usize) {
        let need = self.len + additional;
        if need * MAX_LOAD.1 <= self.slots.len() * MAX_LOAD.0 {
            return;
        }
        let mut slots = MIN_SLOTS;
        while need * MAX_LOAD.1 > slots * MAX_LOAD.0 {
            slots *= 2;
        }
        self.resize(slots);
    }

    fn resize(&mut self, slots: usize) {
        let mut fresh = crate::hugepage::vec_with_capacity(slots);
        fresh.resize(slots, Slot::default());
        let old = std::mem::replace(&mut self.slots, fresh);
        let mask = self.mask();
        for slot in old.into_iter().filter(|s| s.hash != EMPTY) {
            let mut i = slot.hash as usize & mask;
            while self.slots[i].hash != EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
        }
    }

    /// Sets `key`'s location; returns the one it replaces.
    pub fn insert(&mut self, hash: u64, key: IndexKey, loc: Loc) -> Option<Loc> {
        self.reserve(1);
        let hash = stored(hash);
        let mask = self.mask();
        let mut i = hash as usize & mask;
        loop {
            let slot = &mut self.slots[i];
            if slot.hash == EMPTY {
                *slot = Slot { hash, key, loc };
                self.len += 1;
                return None;
            }
            if slot.hash == hash && slot.key == key {
                return Some(std::mem::replace(&mut slot.loc, loc));
            }
            i = (i + 1) & mask;
        }
    }

    /// Forgets `key`; returns its location.
    pub fn remove(&mut self, hash: u64, key: &[u8]) -> Option<Loc> {
        let i = self.find(hash, key)?;
        let loc = self.slots[i].loc;
        self.len -= 1;
        self.close_gap(i);
        Some(loc)
    }

    /// Empties slot `gap` and moves later slots of the run back into it where their home
    /// allows, so that no key ends up behind an empty slot on its way from home.
    fn close_gap(&mut self, mut gap: usize) {
        let mask = self.mask();
        let mut j = gap;
        loop {
            j = (j + 1) & mask;
            let hash = self.slots[j].hash;
            if hash == EMPTY {
                break;
            }
            // Slot `j` may move to `gap` unless its home lies cyclically in (gap, j]:
            // moved there, it would sit before its home.
            let from_gap = |i: usize| i.wrapping_sub(gap) & mask;
            let home = from_gap(hash as usize & mask);
            if home == 0 || home > from_gap(j) {
                self.slots.swap(gap, j);
                gap = j;
            }
        }
        self.slots[gap] = Slot::default();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn loc(n: u32) -> Loc {
        Loc { layer: n, off: n, size: n, seq: n as u64 }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u32),
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![(any::<u8>(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)), any::<u8>().prop_map(Op::Remove)]
    }

    proptest! {
        /// With only `distinct` hashes (0 among them) for 256 keys, keys collide, runs
        /// wrap around the end of the table and removals shift slots back: the table must
        /// still agree with a `HashMap` after every step.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec(op(), 1..400), distinct in 1u64..=256) {
            let hash = |k: u8| (k as u64 % distinct).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut table = Table::default();
            let mut model: HashMap<u8, Loc> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        let old = table.insert(hash(k), IndexKey::from_slice(&[k, 7]), loc(v));
                        prop_assert_eq!(old, model.insert(k, loc(v)));
                    }
                    Op::Remove(k) => prop_assert_eq!(table.remove(hash(k), &[k, 7]), model.remove(&k)),
                }
                prop_assert_eq!(table.len(), model.len());
                for k in 0..=255u8 {
                    prop_assert_eq!(table.get(hash(k), &[k, 7]), model.get(&k));
                }
            }
        }
    }

    #[test]
    fn a_zero_hash_is_a_key_like_any_other() {
        let mut table = Table::default();
        assert_eq!(table.get(0, b"a"), None);
        assert_eq!(table.insert(0, IndexKey::from_slice(b"a"), loc(1)), None);
        assert_eq!(table.insert(0, IndexKey::from_slice(b"b"), loc(2)), None);
        assert_eq!(table.insert(1, IndexKey::from_slice(b"c"), loc(3)), None);
        assert_eq!(table.get(0, b"a"), Some(&loc(1)));
        assert_eq!(table.get(0, b"b"), Some(&loc(2)));
        assert_eq!(table.remove(0, b"a"), Some(loc(1)));
        assert_eq!(table.get(0, b"b"), Some(&loc(2)));
        assert_eq!(table.get(1, b"c"), Some(&loc(3)));
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn grows_and_keeps_every_key() {
        let mut table = Table::default();
        for i in 0..10_000u32 {
            let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            assert_eq!(table.insert(h, IndexKey::from_slice(&i.to_be_bytes()), loc(i)), None);
        }
        assert!(table.len() * MAX_LOAD.1 <= table.slots.len() * MAX_LOAD.0);
        for i in 0..10_000u32 {
            let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            assert_eq!(table.get(h, &i.to_be_bytes()), Some(&loc(i)));
        }
    }
}
