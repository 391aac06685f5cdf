//! # jessy-storage
//!
//! An embedded, ordered key-value store with a memory-mapped, log-structured engine.
//! A store is a directory (by default `./data/mmap`) holding *dimensions*: independent
//! ordered maps from byte-string keys to byte-string values.
//!
//! ```
//! use jessy_storage::{Store, WriteBatch, Expect};
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path())?;
//! let users = store.dimension("users")?;              // created on first use
//! let v1 = users.put(b"user:42", b"{\"name\":\"Ada\"}")?;
//! let value = users.get(b"user:42")?.expect("just written");
//! assert_eq!(&value[..], b"{\"name\":\"Ada\"}");      // zero-copy: points into the map
//! assert_eq!(value.version(), v1);
//!
//! users.write(WriteBatch::new().put(b"user:43", b"{}").delete(b"user:42"))?;
//! assert!(users.put_if(b"user:43", b"x", Expect::Absent).is_err());
//! let keys: Vec<Vec<u8>> = users.prefix(b"user:").map(|kv| kv.map(|(k, _)| k)).collect::<Result<_, _>>()?;
//! assert_eq!(keys, vec![b"user:43".to_vec()]);
//! # Ok::<(), jessy_storage::Error>(())
//! ```
//!
//! See `docs/FORMAT.md` for the bytes on disk and `docs/ARCHITECTURE.md` for how a read and
//! a write flow through the modules.

#![deny(missing_docs)]

mod batch;
mod builder;
mod bulk;
mod compaction;
mod config;
mod dimension;
mod error;
mod growth;
mod helper;
mod hugepage;
pub mod io;
mod iter;
mod key;
mod keyindex;
mod layout;
mod lock;
mod manifest;
mod ordered;
mod points;
mod prefetch;
mod record;
mod region;
mod runs;
mod segment;
mod snapshot;
mod store;
mod table;
mod ticket;
mod value;
mod verify;

pub use batch::{Expect, Op, WriteBatch};
pub use bulk::BulkLoader;
pub use config::{Config, Durability, DEFAULT_INITIAL_SIZE, DEFAULT_MAX_SIZE, MIN_REGION_SIZE};
pub use dimension::{validate_key, CompactReport, Dimension, DimensionStats};
pub use error::{Error, Result};
pub use iter::Iter;
pub use layout::{validate_dimension_name, DEFAULT_DIMENSION};
pub use store::{Store, StoreStats};
pub use ticket::Ticket;
pub use value::{Value, ValueRef, Version};
pub use verify::{Problem, VerifyReport};

/// The longest key the engine accepts: 4 KiB.
pub const MAX_KEY_LEN: usize = 4096;

/// The on-disk format version this build writes. Version 2 adds the synced-before bit to
/// frame headers (docs/FORMAT.md); files of version 1 never have it set and are read as
/// before, from [`OLDEST_FORMAT_VERSION`] on.
pub const FORMAT_VERSION: u32 = 2;

/// The oldest on-disk format version this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// The decoders behind `Store::open`, reachable from outside the crate for fuzzing
/// (`fuzz/` and `tests/fault_fuzz.rs`). Not an API: it may change at any time.
#[doc(hidden)]
pub mod fuzzing {
    use crate::record::{self, Kind};

    /// A decoded entry: kind (1 put, 2 delete), key, value.
    pub type Entry = (u8, Vec<u8>, Vec<u8>);

    /// A decoded key index item: kind, key, value length, entry offset, sequence number.
    pub type KeyItem = (u8, Vec<u8>, u32, u32, u64);

    fn kind(k: u8) -> Kind {
        Kind::from_u8(k).unwrap_or(Kind::Put)
    }

    fn invalid(e: record::Invalid) -> String {
        format!("{e:?}")
    }

    /// `record::decode_frame`: for a valid frame at the start of `b`, its sequence number,
    /// entries and length, and its synced-before bit.
    pub fn decode_frame(b: &[u8]) -> Result<(u64, Vec<Entry>, usize, bool), String> {
        let (h, entries) = record::decode_frame(b).map_err(invalid)?;
        let entries = entries.into_iter().map(|(_, e)| (e.kind as u8, e.key.to_vec(), e.value.to_vec())).collect();
        Ok((h.seq, entries, h.total_len(), h.synced_before))
    }

    /// A frame as the engine writes it, with the synced-before bit when asked (a sync mark
    /// when there are no entries).
    pub fn encode_frame_marked(seq: u64, entries: &[Entry], synced_before: bool) -> Vec<u8> {
        if entries.is_empty() && synced_before {
            return record::sync_mark(seq).to_vec();
        }
        let mut b = encode_frame(seq, entries);
        if synced_before {
            record::mark_synced_before(&mut b);
        }
        b
    }

    /// `record::decode_entry`: a valid entry at the start of `b`, and its length.
    pub fn decode_entry(b: &[u8]) -> Result<(Entry, usize), String> {
        let (e, n) = record::decode_entry(b).map_err(invalid)?;
        Ok(((e.kind as u8, e.key.to_vec(), e.value.to_vec()), n))
    }

    /// A frame as the engine writes it.
    pub fn encode_frame(seq: u64, entries: &[Entry]) -> Vec<u8> {
        let mut f = record::FrameBuilder::with_capacity(64);
        for (k, key, value) in entries {
            f.push(kind(*k), key, value);
        }
        let mut f = f.finish();
        f.set_seq(seq);
        f.bytes().to_vec()
    }

    /// `segment::scan_frames` over a whole log file (header included, not checked): where
    /// the last whole frame ends, why the walk stopped early if it did, and the frames seen.
    pub fn scan_log(b: &[u8]) -> (usize, Option<String>, usize) {
        let mut frames = 0;
        let scan = crate::segment::scan_frames(b, b.len(), |_, _, _| frames += 1);
        (scan.end, scan.stopped.map(|(at, why)| format!("{why} at {at}")), frames)
    }

    /// `record::FileHeader::decode`: dimension and layer id of a log (`keys` false) or key
    /// index (`keys` true) header.
    pub fn decode_file_header(b: &[u8], keys: bool) -> Result<(u32, u32), String> {
        let k = if keys { record::FileKind::Keys } else { record::FileKind::Log };
        record::FileHeader::decode(b, k).map(|h| (h.dimension_id, h.layer_id))
    }

    /// `keyindex::KeyIndex::decode`: dimension, layer, records end, items.
    pub fn decode_key_index(b: &[u8]) -> Result<(u32, u32, u32, Vec<KeyItem>), String> {
        let k = crate::keyindex::KeyIndex::decode(b.to_vec())?;
        let items = k.iter().map(|i| (i.kind as u8, i.key.to_vec(), i.value_len, i.offset, i.seq)).collect();
        Ok((k.header.dimension_id, k.header.layer_id, k.data_end, items))
    }

    /// A key index as the engine writes it.
    pub fn encode_key_index(dimension: u32, layer: u32, data_end: u32, items: &[KeyItem]) -> Vec<u8> {
        let items = items.iter().map(|(k, key, value_len, offset, seq)| crate::keyindex::KeyItem {
            kind: kind(*k),
            key,
            value_len: *value_len,
            offset: *offset,
            seq: *seq,
        });
        crate::keyindex::encode(dimension, layer, data_end, items)
    }

    /// `manifest::Manifest::decode`; a valid manifest comes back re-encoded.
    pub fn decode_manifest(b: &[u8]) -> Result<Vec<u8>, String> {
        crate::manifest::Manifest::decode(b).map(|m| m.encode())
    }
}
