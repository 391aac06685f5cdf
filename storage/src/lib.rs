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
pub mod io;
mod iter;
mod keyindex;
mod layout;
mod lock;
mod manifest;
mod record;
mod region;
mod segment;
mod snapshot;
mod store;
mod value;
mod verify;

pub use batch::{Expect, Op, WriteBatch};
pub use bulk::BulkLoader;
pub use config::{Config, Durability, DEFAULT_INITIAL_SIZE, DEFAULT_MAX_SIZE, MIN_REGION_SIZE};
pub use dimension::{CompactReport, Dimension, DimensionStats};
pub use error::{Error, Result};
pub use iter::Iter;
pub use layout::{validate_dimension_name, DEFAULT_DIMENSION};
pub use store::{Store, StoreStats};
pub use value::{Value, Version};
pub use verify::{Problem, VerifyReport};

/// The longest key the engine accepts: 4 KiB.
pub const MAX_KEY_LEN: usize = 4096;

/// The on-disk format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
