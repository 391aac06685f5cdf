//! The in-memory key of the indexes.

use std::borrow::Borrow;
use std::ops::Deref;

use smallvec::SmallVec;

/// A key as the indexes hold it: up to 32 bytes inline, so comparing keys while searching
/// reads the entry itself instead of chasing a pointer per comparison (it doubled get
/// throughput on 1M keys; see docs/ARCHITECTURE.md).
///
/// A newtype only for `clone`: `SmallVec`'s clone copies byte by byte through an iterator,
/// and the indexes clone keys on every write, every merge of the ordered index (a million
/// at a time) and every scan. Here it is one `memcpy`. Order, equality and hash are those of
/// the bytes, so maps of `IndexKey` can be searched with a `&[u8]`.
#[derive(Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct IndexKey(SmallVec<[u8; 32]>);

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
    use std::collections::{BTreeMap, HashMap};

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
