//! What a read returns: a [`Value`] borrowed straight from the memory map, and its [`Version`].

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;
use std::sync::Arc;

use memmap2::Mmap;

/// A write's sequence number within its dimension. Every write (put, delete, batch) gets a
/// larger one than the write before it, so a version identifies one state of a key: it is
/// the `ETag` of the HTTP API and what [`Expect::Version`](crate::Expect::Version) compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u64);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Version {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Version)
    }
}

/// A value read from the store, without copying: it points into the memory-mapped file and
/// keeps that mapping alive, so it stays valid after the store has moved on (later writes,
/// sealing, compaction, even dropping the dimension). It derefs to `[u8]`.
#[derive(Clone)]
pub struct Value {
    map: Arc<Mmap>,
    start: usize,
    len: usize,
    version: Version,
}

impl Value {
    /// Wraps `map[start..start + len]`. The caller has checked the bounds and the checksum.
    pub(crate) fn new(map: Arc<Mmap>, start: usize, len: usize, version: Version) -> Value {
        debug_assert!(start + len <= map.len());
        Value { map, start, len, version }
    }

    /// The version of the write that stored this value.
    #[inline]
    pub fn version(&self) -> Version {
        self.version
    }

    /// The bytes, borrowed.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.map[self.start..self.start + self.len]
    }
}

/// A value lent by an [`Iter`](crate::Iter) ([`next_ref`](crate::Iter::next_ref)): the same
/// bytes in the memory map as a [`Value`], valid until the iterator's next call, without
/// taking a reference on the map. A scan that copies each value out (into a response, say)
/// then does no atomic work per entry: with a [`Value`] per entry, threads scanning at once
/// all counted up and down on the same map's reference count. [`to_value`](ValueRef::to_value)
/// makes a [`Value`] of one to keep.
///
/// The borrow checker holds the iterator to that: a `ValueRef` kept across the next call does
/// not compile.
///
/// ```compile_fail
/// # let dir = tempfile::tempdir()?;
/// let store = jessy_storage::Store::open(dir.path())?;
/// let d = store.dimension("default")?;
/// let mut iter = d.iter();
/// let (_, first) = iter.next_ref().unwrap()?;
/// let _second = iter.next_ref();
/// assert!(first.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy)]
pub struct ValueRef<'a> {
    map: &'a Arc<Mmap>,
    start: usize,
    len: usize,
    version: Version,
}

impl<'a> ValueRef<'a> {
    /// Points at `map[start..start + len]`. The caller has checked the bounds and the checksum.
    pub(crate) fn new(map: &'a Arc<Mmap>, start: usize, len: usize, version: Version) -> ValueRef<'a> {
        debug_assert!(start + len <= map.len());
        ValueRef { map, start, len, version }
    }

    /// The bytes, borrowed for as long as the iterator lends them.
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        &self.map[self.start..self.start + self.len]
    }

    /// The version of the write that stored this value.
    #[inline]
    pub fn version(&self) -> Version {
        self.version
    }

    /// A [`Value`] of the same bytes, which keeps the map alive on its own.
    pub fn to_value(&self) -> Value {
        Value::new(self.map.clone(), self.start, self.len, self.version)
    }
}

impl Deref for ValueRef<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for ValueRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ValueRef({:?})", self.to_value())
    }
}

impl Deref for Value {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for Value {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<[u8]> for Value {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_bytes() == other
    }
}

impl PartialEq<&[u8]> for Value {
    fn eq(&self, other: &&[u8]) -> bool {
        self.as_bytes() == *other
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Value {
    fn eq(&self, other: &&[u8; N]) -> bool {
        self.as_bytes() == other.as_slice()
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(self.as_bytes()) {
            Ok(s) if s.len() <= 64 => write!(f, "Value({s:?} @ {})", self.version),
            _ => write!(f, "Value({} bytes @ {})", self.len, self.version),
        }
    }
}
