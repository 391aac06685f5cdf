//! Atomic groups of writes, and the conditions a write can carry.

use std::fmt;

use crate::Version;

/// One operation of a [`WriteBatch`], borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op<'a> {
    /// Store `value` under `key`.
    Put {
        /// The key.
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
    },
    /// Remove `key` (a tombstone; removing an absent key is not an error).
    Delete {
        /// The key.
        key: &'a [u8],
    },
}

impl<'a> Op<'a> {
    /// The key this operation writes.
    pub fn key(&self) -> &'a [u8] {
        match *self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// Writes applied all together or not at all, in order (a later op on the same key wins).
///
/// Keys and values are copied into one buffer as they are added. A `Vec` for each key and
/// each value, allocated when added and freed after the write, was about a seventh of the
/// writer thread's time in a bulk load of batches of 10,000.
///
/// ```
/// use jessy_storage::{Op, WriteBatch};
/// let batch = WriteBatch::new().put(b"a", b"1").delete(b"b");
/// assert_eq!(batch.len(), 2);
/// let ops: Vec<Op> = batch.ops().collect();
/// assert_eq!(ops, [Op::Put { key: b"a", value: b"1" }, Op::Delete { key: b"b" }]);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// Every op's key, then its value, one op after another.
    bytes: Vec<u8>,
    /// Where each op's parts lie in `bytes`.
    spans: Vec<Span>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    /// Start of the key; the value (empty for a delete) starts where the key ends.
    key: usize,
    value: usize,
    end: usize,
    put: bool,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    /// An empty batch with room for `ops` operations whose keys and values take `bytes`
    /// bytes in all, for a caller that knows (a bulk load), so that nothing is copied again
    /// as the batch grows.
    pub fn with_capacity(ops: usize, bytes: usize) -> WriteBatch {
        WriteBatch { bytes: Vec::with_capacity(bytes), spans: Vec::with_capacity(ops) }
    }

    /// Adds a put, builder style.
    pub fn put(mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> WriteBatch {
        self.push_put(key, value);
        self
    }

    /// Adds a delete, builder style.
    pub fn delete(mut self, key: impl AsRef<[u8]>) -> WriteBatch {
        self.push_delete(key);
        self
    }

    /// Adds a put to a batch held in a variable.
    pub fn push_put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.push(key.as_ref(), value.as_ref(), true);
    }

    /// Adds a delete to a batch held in a variable.
    pub fn push_delete(&mut self, key: impl AsRef<[u8]>) {
        self.push(key.as_ref(), &[], false);
    }

    fn push(&mut self, key: &[u8], value: &[u8], put: bool) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(value);
        self.spans.push(Span { key: start, value: start + key.len(), end: self.bytes.len(), put });
    }

    /// How many operations the batch holds.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True when the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The operations, in order.
    pub fn ops(&self) -> impl ExactSizeIterator<Item = Op<'_>> + '_ {
        self.spans.iter().map(|s| {
            let key = &self.bytes[s.key..s.value];
            match s.put {
                true => Op::Put { key, value: &self.bytes[s.value..s.end] },
                false => Op::Delete { key },
            }
        })
    }
}

impl fmt::Debug for WriteBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.ops()).finish()
    }
}

/// The state a conditional write ([`Dimension::put_if`](crate::Dimension::put_if)) requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The key has no value (HTTP `If-None-Match: *`).
    Absent,
    /// The key has a value (any version).
    Present,
    /// The key's current value has exactly this version (HTTP `If-Match`).
    Version(Version),
}

impl Expect {
    pub(crate) fn holds(&self, current: Option<Version>) -> bool {
        match (self, current) {
            (Expect::Absent, None) => true,
            (Expect::Present, Some(_)) => true,
            (Expect::Version(want), Some(have)) => *want == have,
            _ => false,
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Absent => f.write_str("no value"),
            Expect::Present => f.write_str("a value"),
            Expect::Version(v) => write!(f, "version {v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_come_back_in_order_with_their_bytes() {
        let mut b = WriteBatch::with_capacity(4, 16);
        b.push_put(b"k1", b"");
        b.push_delete([0u8, 255]);
        b.push_put([0u8], [1u8, 2, 3]);
        b.push_put(b"k1", b"again");
        let ops: Vec<Op> = b.ops().collect();
        assert_eq!(
            ops,
            [
                Op::Put { key: b"k1", value: b"" },
                Op::Delete { key: &[0, 255] },
                Op::Put { key: &[0], value: &[1, 2, 3] },
                Op::Put { key: b"k1", value: b"again" },
            ]
        );
        assert_eq!(b.ops().len(), 4);
        assert_eq!(ops.iter().map(|o| o.key().len()).sum::<usize>(), 7);
        assert_eq!(b, b.clone());
        assert_ne!(b, WriteBatch::new().put(b"k1", b""));
        assert!(format!("{b:?}").starts_with("[Put { key: [107, 49], value: [] }, Delete"));
    }
}
