//! The in-memory key of the indexes.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::ops::Deref;

use smallvec::SmallVec;

/// A key as the indexes hold it: up to 32 bytes inline, so comparing keys while searching
/// reads the entry itself instead of chasing a pointer per comparison (it doubled get
/// throughput on 1M keys; see docs/ARCHITECTURE.md).
///
/// A newtype for speed: `SmallVec`'s clone and `into_vec` copy byte by byte through an
/// iterator, and its order calls `memcmp` per comparison; the indexes clone and compare keys
/// on every write, every merge of the ordered index (a million at a time) and every scan.
/// Here a copy is one `memcpy` and the order is compared eight bytes at a time (`compare`).
/// Order, equality and hash are those of the bytes, so maps of `IndexKey` can be searched
/// with a `&[u8]`.
#[derive(Default, PartialEq, Eq, Hash)]
pub(crate) struct IndexKey(SmallVec<[u8; 32]>);

impl Ord for IndexKey {
    fn cmp(&self, other: &IndexKey) -> Ordering {
        compare(&self.0, &other.0)
    }
}

impl PartialOrd for IndexKey {
    fn partial_cmp(&self, other: &IndexKey) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Byte order (as `<[u8]>::cmp`), eight bytes at a time. The slice comparison calls
/// `memcmp`, a function call with its own set-up for every pair of keys, and the delta of the
/// ordered index compares a key about thirty times per insert: 131,072 inserts of 24-byte
/// keys into a `BTreeMap` took 63 ms with `memcmp`, 51 ms with this.
fn compare(mut a: &[u8], mut b: &[u8]) -> Ordering {
    while let (Some((x, rest_a)), Some((y, rest_b))) = (a.split_first_chunk::<8>(), b.split_first_chunk::<8>()) {
        if x != y {
            return u64::from_be_bytes(*x).cmp(&u64::from_be_bytes(*y));
        }
        (a, b) = (rest_a, rest_b);
    }
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

impl IndexKey {
    pub fn new() -> IndexKey {
        IndexKey(SmallVec::new())
    }

    pub fn from_slice(bytes: &[u8]) -> IndexKey {
        IndexKey(SmallVec::from_slice(bytes))
    }

    /// The bytes as a `Vec`: a spilled key hands over its buffer; an inline one is copied
    /// with one `memcpy` (`SmallVec::into_vec` collects it byte by byte, which was an eighth
    /// of a short range's CPU).
    pub fn into_vec(self) -> Vec<u8> {
        if self.0.spilled() {
            self.0.into_vec()
        } else {
            self.0.to_vec()
        }
    }
}

impl Clone for IndexKey {
    fn clone(&self) -> IndexKey {
        IndexKey::from_slice(&self.0)
    }
}

impl Deref for IndexKey {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Borrow<[u8]> for IndexKey {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashMap};

    proptest! {
        /// Keys from a small alphabet, so that long shared prefixes and prefix keys are common.
        #[test]
        fn compares_as_byte_order(
            a in proptest::collection::vec(0u8..3, 0..40),
            b in proptest::collection::vec(0u8..3, 0..40),
        ) {
            prop_assert_eq!(compare(&a, &b), a.cmp(&b));
            prop_assert_eq!(IndexKey::from_slice(&a).cmp(&IndexKey::from_slice(&b)), a.cmp(&b));
            let (c, d) = (a.iter().map(|x| x * 127).collect::<Vec<u8>>(), b.iter().map(|x| x * 127).collect::<Vec<u8>>());
            prop_assert_eq!(compare(&c, &d), c.cmp(&d));
        }
    }

    #[test]
    fn clones_compare_and_hash_as_their_bytes() {
        let long = [7u8; 40];
        for bytes in [&b""[..], b"a", b"key:0001", &long[..]] {
            let k = IndexKey::from_slice(bytes);
            let c = k.clone();
            assert_eq!(&*c, bytes);
            assert_eq!(c, k);
            let map: HashMap<IndexKey, u8> = [(c, 1)].into_iter().collect();
            assert_eq!(map.get(bytes), Some(&1));
            assert_eq!(k.into_vec(), bytes);
        }
        let tree: BTreeMap<IndexKey, ()> =
            [&b"b"[..], b"a", b"ab", b""].iter().map(|k| (IndexKey::from_slice(k), ())).collect();
        let order: Vec<&[u8]> = tree.keys().map(|k| &**k).collect();
        assert_eq!(order, [&b""[..], b"a", b"ab", b"b"]);
    }
}
