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
