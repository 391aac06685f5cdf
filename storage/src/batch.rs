//! Atomic groups of writes, and the conditions a write can carry.

use std::fmt;

use crate::Version;

/// One operation of a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Store `value` under `key`.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove `key` (a tombstone; removing an absent key is not an error).
    Delete {
        /// The key.
        key: Vec<u8>,
    },
}

impl Op {
    /// The key this operation writes.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// Writes applied all together or not at all, in order (a later op on the same key wins).
///
/// ```
/// use jessy_storage::WriteBatch;
/// let batch = WriteBatch::new().put(b"a", b"1").delete(b"b");
/// assert_eq!(batch.len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub(crate) ops: Vec<Op>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> WriteBatch {
        WriteBatch::default()
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
        self.ops.push(Op::Put { key: key.as_ref().to_vec(), value: value.as_ref().to_vec() });
    }

    /// Adds a delete to a batch held in a variable.
    pub fn push_delete(&mut self, key: impl AsRef<[u8]>) {
        self.ops.push(Op::Delete { key: key.as_ref().to_vec() });
    }

    /// How many operations the batch holds.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
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
