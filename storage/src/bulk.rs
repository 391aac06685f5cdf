//! Bulk loading a new dimension through `proto/`.
//!
//! The loader writes sealed layers straight into `proto/<staging>/layers/`, with no sync
//! per record and no in-memory index. `finish` syncs, writes an empty active region and the
//! manifest, and renames the whole directory into `consciousness/Dnn` in one step. Until
//! then nothing of it is visible; a crash leaves only a staging directory that the next
//! open sweeps.

use std::path::PathBuf;

use crate::builder::LayerBuilder;
use crate::layout::{dir_name, DimPaths};
use crate::manifest::Manifest;
use crate::record::Kind;
use crate::{region, Dimension, Error, Result, Store};

/// Puts that share one sequence number (and so one frame); a later put of the same key
/// in the load wins, as it would with single puts.
const CHUNK: u64 = 4096;

type IdCounter = Box<dyn FnMut() -> u32 + Send>;

/// Loads a new dimension fast; see [`Store::bulk_load`].
pub struct BulkLoader {
    pub(crate) store: Store,
    pub(crate) id: u32,
    pub(crate) name: String,
    pub(crate) staging: PathBuf,
    builder: Option<LayerBuilder<IdCounter>>,
    count: u64,
    /// The sequence number of the first chunk of puts.
    first_seq: u64,
    next_layer: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl std::fmt::Debug for BulkLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkLoader")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("count", &self.count)
            .finish()
    }
}

impl BulkLoader {
    pub(crate) fn new(store: Store, id: u32, name: String, staging: PathBuf) -> Result<BulkLoader> {
        let io = store.shared().io.clone();
        let layers = DimPaths::at(&staging).layers();
        io.create_dir_all(&layers).map_err(Error::io("create directory", &layers))?;
        let next_layer = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(1));
        let counter = next_layer.clone();
        let next: IdCounter = Box::new(move || counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let builder = LayerBuilder::new(io, &layers, id, store.config().max_size, next);
        // As for any new dimension (see `first_seq_floor`): the name may have been dropped.
        let first_seq = store.new_dimension_floor() + 1;
        Ok(BulkLoader { store, id, name, staging, builder: Some(builder), count: 0, first_seq, next_layer })
    }

    /// Adds a key and its value. Nothing is visible until [`finish`](BulkLoader::finish).
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        let (key, value) = (key.as_ref(), value.as_ref());
        crate::dimension::validate_key(key)?;
        let max = crate::dimension::max_value_len(self.store.config().max_size, key.len());
        if value.len() as u64 > max {
            return Err(Error::ValueTooLarge { what: "value", len: value.len() as u64, max });
        }
        let builder = self.builder.as_mut().ok_or(Error::Closed)?;
        builder.push(Kind::Put, key, value, self.first_seq + self.count / CHUNK)?;
        self.count += 1;
        Ok(())
    }

    /// How many puts so far.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// True before the first put.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Makes the dimension durable and visible, atomically, and returns it.
    pub fn finish(mut self) -> Result<Dimension> {
        let builder = self.builder.take().ok_or(Error::Closed)?;
        let built = builder.finish()?;
        let shared = self.store.shared().clone();
        let io = &*shared.io;
        let paths = DimPaths::at(&self.staging);
        let active = self.next_layer.load(std::sync::atomic::Ordering::Relaxed);
        region::create(
            io,
            &shared.layout.temp(),
            &paths.region(),
            self.id,
            active,
            shared.config.initial_size,
            shared.config.durability,
        )?;
        let mut manifest = Manifest::new(self.id, &self.name, active);
        manifest.layers = built.into_iter().map(|b| b.entry).collect();
        manifest.last_seq = self.first_seq + self.count / CHUNK;
        io.sync_dir(&paths.layers()).map_err(Error::io("fsync directory", paths.layers()))?;
        manifest.store(io, &paths.manifest())?;
        let dest = shared.layout.dimension(self.id).dir;
        io.rename(&self.staging, &dest).map_err(Error::io("rename", &self.staging))?;
        let parent = shared.layout.consciousness();
        io.sync_dir(&parent).map_err(Error::io("fsync directory", &parent))?;
        tracing::info!(name = %self.name, id = self.id, keys = self.count, dir = %dir_name(self.id), "bulk load promoted");
        self.store.adopt_loaded(self.id)
    }
}

impl Drop for BulkLoader {
    fn drop(&mut self) {
        // Unfinished or failed: nothing of it may stay behind. (After a successful finish
        // the staging directory has been renamed away and this does nothing.) The builder
        // goes first: it waits for the file it may still be closing on a thread of its own,
        // which would otherwise write into the directory while it is being removed.
        drop(self.builder.take());
        if self.staging.exists() {
            let _ = self.store.shared().io.remove_dir_all(&self.staging);
        }
        self.store.release_reservation(self.id);
    }
}
