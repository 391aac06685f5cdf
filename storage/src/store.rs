//! The store: a data directory, its lock, and its dimensions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::dimension::{self, DimInner};
use crate::io::Io;
use crate::layout::dir_name;
use crate::layout::{parse_dir_name, validate_dimension_name, Layout, DEFAULT_DIMENSION};
use crate::lock::LockFile;
use crate::verify::VerifyReport;
use crate::BulkLoader;
use crate::{Config, Dimension, DimensionStats, Durability, Error, Result};

/// What every dimension of a store shares.
pub(crate) struct Shared {
    pub config: Config,
    pub io: Arc<dyn Io>,
    pub layout: Layout,
    pub syncs: AtomicU64,
    pub compactions: AtomicU64,
    read_only: Mutex<Option<String>>,
    _lock: LockFile,
}

impl Shared {
    /// Turns the store read-only until it is reopened (after a failed sync, retrying and
    /// acknowledging would be a lie: the kernel may have dropped the dirty pages).
    pub fn poison(&self, reason: String) {
        tracing::error!(reason, "store is now read-only until reopened");
        let mut r = self.read_only.lock();
        if r.is_none() {
            *r = Some(reason);
        }
    }

    pub fn check_writable(&self) -> Result<()> {
        match &*self.read_only.lock() {
            Some(reason) => Err(Error::ReadOnly(reason.clone())),
            None => Ok(()),
        }
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only.lock().is_some()
    }

    pub fn read_only_reason(&self) -> Option<String> {
        self.read_only.lock().clone()
    }
}

struct StoreInner {
    shared: Arc<Shared>,
    dims: RwLock<BTreeMap<u32, Dimension>>,
    /// Serialises creating and dropping dimensions.
    ddl: Mutex<()>,
    /// Ids and names taken by bulk loads in progress.
    reserved: Mutex<Vec<(u32, String)>>,
    recovery_time: Duration,
    stop: Arc<(Mutex<bool>, Condvar)>,
    background: Mutex<Option<JoinHandle<()>>>,
}

/// An open store. Cheap to clone (`Send + Sync`); the directory stays locked, and a final
/// sync runs, when the last clone (and the last [`Dimension`] handle) is dropped.
///
/// ```
/// use jessy_storage::{Store, Config, Durability};
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open_with(dir.path(), Config::default().durability(Durability::None))?;
/// let default = store.dimension("default")?;
/// default.put(b"hello", b"world")?;
/// store.sync()?;
/// assert_eq!(store.stats().dimensions[0].keys, 1);
/// # Ok::<(), jessy_storage::Error>(())
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.inner.shared.layout.base).finish_non_exhaustive()
    }
}

/// Numbers about the whole store.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreStats {
    /// One entry per dimension, by id.
    pub dimensions: Vec<DimensionStats>,
    /// `fdatasync` calls made for commits since open.
    pub syncs: u64,
    /// Compactions run since open.
    pub compactions: u64,
    /// How long open took (reading manifests, key indexes and active regions).
    pub recovery_time: Duration,
    /// Why the store refuses writes, if it does.
    pub read_only: Option<String>,
}

impl Store {
    /// Opens (creating if needed) the store in `path` with the default [`Config`].
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(path, Config::default())
    }

    /// Opens the store in `config`'s base path (`MMAP_BASE_PATH` with [`Config::from_env`]).
    pub fn open_config(config: Config) -> Result<Store> {
        let path = config.base_path.clone();
        Store::open_with(path, config)
    }

    /// Opens (creating if needed) the store in `path`.
    pub fn open_with(path: impl AsRef<Path>, mut config: Config) -> Result<Store> {
        let started = Instant::now();
        config.validate()?;
        let base = path.as_ref().to_path_buf();
        if base.as_os_str().is_empty() {
            // `Path::new("")` names no directory: joining it would put the store's files in
            // the current directory.
            return Err(Error::InvalidConfig {
                name: "MMAP_BASE_PATH",
                value: String::new(),
                reason: "the data directory path is empty; give a directory, e.g. ./data/mmap".into(),
            });
        }
        config.base_path = base.clone();
        let io = config.io.clone();
        let base_existed = base.is_dir();
        io.create_dir_all(&base).map_err(Error::io("create directory", &base))?;
        let layout = Layout { base };
        let lock = LockFile::acquire(&layout.lock())?;
        tracing::debug!(lock = %lock.path().display(), "store locked");
        for dir in [layout.consciousness(), layout.proto(), layout.temp()] {
            io.create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
        }
        // A directory just made is an entry of its parent, and only an fsync of the parent
        // makes that entry durable: without this, a power loss after the first writes could
        // take `consciousness/` (and every acknowledged write in it) away. Found by
        // tests/fault_power_loss.rs (`a_fresh_store_survives_power_loss`).
        io.sync_dir(&layout.base).map_err(Error::io("fsync directory", &layout.base))?;
        if !base_existed {
            if let Some(parent) = layout.base.parent().filter(|p| !p.as_os_str().is_empty()) {
                io.sync_dir(parent).map_err(Error::io("fsync directory", parent))?;
            }
        }
        let shared = Arc::new(Shared {
            config,
            io,
            layout,
            syncs: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            read_only: Mutex::new(None),
            _lock: lock,
        });
        sweep_scratch(&shared)?;

        let mut dims = BTreeMap::new();
        for id in list_dimensions(&shared)? {
            let inner = dimension::open(&shared, id)?;
            dims.insert(id, Dimension { inner: Arc::new(inner) });
        }
        check_unique_names(&dims)?;
        if let std::collections::btree_map::Entry::Vacant(slot) = dims.entry(1) {
            dimension::create(&shared, 1, DEFAULT_DIMENSION, 0)?;
            slot.insert(Dimension { inner: Arc::new(dimension::open(&shared, 1)?) });
        }
        let recovery_time = started.elapsed();
        tracing::info!(path = %shared.layout.base.display(), dimensions = dims.len(), ms = recovery_time.as_millis() as u64, "store opened");
        let store = Store {
            inner: Arc::new(StoreInner {
                shared,
                dims: RwLock::new(dims),
                ddl: Mutex::new(()),
                reserved: Mutex::new(Vec::new()),
                recovery_time,
                stop: Arc::new((Mutex::new(false), Condvar::new())),
                background: Mutex::new(None),
            }),
        };
        store.start_background();
        Ok(store)
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.inner.shared.layout.base
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &Config {
        &self.inner.shared.config
    }

    /// Opens the dimension called `name`, creating it if it does not exist. `D07`-style
    /// directory names open an existing dimension by id.
    pub fn dimension(&self, name: &str) -> Result<Dimension> {
        self.create_dimension(name).map(|(d, _)| d)
    }

    /// Like [`Store::dimension`], also saying whether it was created now.
    pub fn create_dimension(&self, name: &str) -> Result<(Dimension, bool)> {
        if let Ok(d) = self.get_dimension(name) {
            return Ok((d, false));
        }
        if parse_dir_name(name).is_some() {
            return Err(Error::DimensionNotFound(name.to_string()));
        }
        validate_dimension_name(name)?;
        let _ddl = self.inner.ddl.lock();
        if let Ok(d) = self.get_dimension(name) {
            return Ok((d, false));
        }
        let shared = &self.inner.shared;
        shared.check_writable()?;
        if self.inner.reserved.lock().iter().any(|(_, n)| n == name) {
            return Err(Error::DimensionBusy(name.to_string()));
        }
        let id = self.next_dimension_id();
        dimension::create(shared, id, name, self.new_dimension_floor())?;
        let dim = Dimension { inner: Arc::new(dimension::open(shared, id)?) };
        self.inner.dims.write().insert(id, dim.clone());
        tracing::info!(name, id, "created dimension");
        Ok((dim, true))
    }

    /// A new dimension's sequence numbers start above this. A version is the HTTP `ETag`,
    /// and a name can be dropped and created again: a client holding a version of the
    /// dropped dimension must never find it current in the new one (a 304 for a stale copy,
    /// an `If-Match` that overwrites a value the client never saw). The dropped dimension's
    /// files are gone, so `drop_dimension` first records its highest number in the default
    /// dimension's `index.json`, which cannot be dropped.
    pub(crate) fn new_dimension_floor(&self) -> u64 {
        self.inner.dims.read().get(&1).map_or(0, |d| d.inner.dropped_seqs())
    }

    fn next_dimension_id(&self) -> u32 {
        let top = self.inner.dims.read().keys().next_back().copied().unwrap_or(1);
        let reserved = self.inner.reserved.lock().iter().map(|(id, _)| *id).max().unwrap_or(0);
        top.max(reserved) + 1
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// Starts loading a new dimension called `name` through `proto/`: the fastest way to
    /// load data (no sync per record, no index upkeep). Nothing is visible until
    /// [`BulkLoader::finish`] promotes it atomically; dropping the loader discards it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = jessy_storage::Store::open(dir.path())?;
    /// let mut load = store.bulk_load("cities")?;
    /// load.put(b"paris", b"fr")?;
    /// load.put(b"rome", b"it")?;
    /// let cities = load.finish()?;
    /// assert_eq!(&cities.get(b"rome")?.unwrap()[..], b"it");
    /// # Ok::<(), jessy_storage::Error>(())
    /// ```
    pub fn bulk_load(&self, name: &str) -> Result<BulkLoader> {
        validate_dimension_name(name)?;
        let _ddl = self.inner.ddl.lock();
        self.inner.shared.check_writable()?;
        if self.get_dimension(name).is_ok() {
            return Err(Error::DimensionExists(name.to_string()));
        }
        if self.inner.reserved.lock().iter().any(|(_, n)| n == name) {
            return Err(Error::DimensionBusy(name.to_string()));
        }
        let id = self.next_dimension_id();
        self.inner.reserved.lock().push((id, name.to_string()));
        let staging = self.inner.shared.layout.proto().join(format!("{}-{}", dir_name(id), crate::region::unique()));
        BulkLoader::new(self.clone(), id, name.to_string(), staging)
    }

    pub(crate) fn adopt_loaded(&self, id: u32) -> Result<Dimension> {
        let dim = Dimension { inner: Arc::new(dimension::open(&self.inner.shared, id)?) };
        self.inner.dims.write().insert(id, dim.clone());
        Ok(dim)
    }

    pub(crate) fn release_reservation(&self, id: u32) {
        self.inner.reserved.lock().retain(|(r, _)| *r != id);
    }

    /// Writes a consistent point-in-time copy of every dimension into `dest` (absent or
    /// empty), while the store keeps serving: it restores by copying `dest/consciousness`
    /// into a data directory. Every write acknowledged before the call is in it.
    pub fn snapshot(&self, dest: impl AsRef<Path>) -> Result<()> {
        let dims: Vec<Arc<DimInner>> = self.dimensions().into_iter().map(|d| d.inner).collect();
        crate::snapshot::snapshot(&*self.inner.shared.io, &dims, dest.as_ref())
    }

    /// Streams a snapshot as a `.tar.gz` whose entries are `consciousness/Dnn/...`;
    /// restore it with `tar -xzf backup.tar.gz -C data/mmap`. Returns the writer.
    pub fn backup<W: std::io::Write>(&self, out: W) -> Result<W> {
        let tmp = self.inner.shared.layout.temp().join(format!("snapshot-{}", crate::region::unique()));
        let result = self.snapshot(&tmp).and_then(|()| crate::snapshot::write_tar_gz(&tmp, out));
        if let Err(e) = self.inner.shared.io.remove_dir_all(&tmp) {
            tracing::warn!(path = %tmp.display(), error = %e, "could not remove a snapshot's scratch copy; the next open sweeps it");
        }
        result
    }

    /// Reads and checks everything (see [`VerifyReport`]); changes nothing.
    pub fn verify(&self) -> VerifyReport {
        let mut report = VerifyReport::default();
        for d in self.dimensions() {
            crate::verify::verify_dimension(&d.inner, &mut report);
        }
        report
    }

    /// The existing dimension with this name or directory name (`D07`):
    /// [`Error::DimensionNotFound`] if there is none, [`Error::InvalidDimensionName`] if
    /// there can be none (the name breaks [`validate_dimension_name`]).
    pub fn get_dimension(&self, name_or_dir: &str) -> Result<Dimension> {
        let dims = self.inner.dims.read();
        let dir = parse_dir_name(name_or_dir);
        let found = match dir {
            Some(id) => dims.get(&id),
            None => dims.values().find(|d| d.inner.name == name_or_dir),
        };
        if let Some(dim) = found {
            return Ok(dim.clone());
        }
        if dir.is_none() {
            validate_dimension_name(name_or_dir)?;
        }
        Err(Error::DimensionNotFound(name_or_dir.to_string()))
    }

    /// Every dimension, by id.
    pub fn dimensions(&self) -> Vec<Dimension> {
        self.inner.dims.read().values().cloned().collect()
    }

    /// Removes a dimension and its data: its directory is renamed into `temp/` (one atomic
    /// step), then deleted. Values already read stay valid.
    pub fn drop_dimension(&self, name_or_dir: &str) -> Result<()> {
        let _ddl = self.inner.ddl.lock();
        let dim = self.get_dimension(name_or_dir)?;
        if dim.id() == 1 {
            return Err(Error::CannotDropDefault);
        }
        let shared = &self.inner.shared;
        shared.check_writable()?;
        let io = &*shared.io;
        let dir = dim.inner.paths().dir.clone();
        let grave = shared.layout.temp().join(format!("drop-{}-{}", dim.dir(), crate::region::unique()));
        dim.inner.mark_dropped();
        crate::ticket::stop_committer(&dim.inner);
        dim.inner.finish_file_threads();
        // Once no write can start, and before the files go (a crash in between leaves the
        // floor raised, which is harmless): see `new_dimension_floor`.
        let default = self.inner.dims.read().get(&1).cloned();
        if let Some(default) = default {
            default.inner.note_dropped_seqs(dim.inner.seq_high_water())?;
        }
        io.rename(&dir, &grave).map_err(Error::io("rename", &dir))?;
        let parent = shared.layout.consciousness();
        io.sync_dir(&parent).map_err(Error::io("fsync directory", &parent))?;
        self.inner.dims.write().remove(&dim.id());
        if let Err(e) = io.remove_dir_all(&grave) {
            tracing::warn!(path = %grave.display(), error = %e, "could not delete a dropped dimension; the next open sweeps it");
        }
        tracing::info!(name = %dim.inner.name, "dropped dimension");
        Ok(())
    }

    /// Makes every write so far durable, in every dimension. On a store that turned
    /// read-only (`Error::ReadOnly`), under `Periodic` or `None` it fails with the reason:
    /// writes acknowledged before then may never reach the disk. Under `Immediate` it
    /// succeeds, every acknowledged write having been synced already.
    pub fn sync(&self) -> Result<()> {
        for d in self.dimensions() {
            d.sync()?;
        }
        Ok(())
    }

    /// Numbers about the store.
    pub fn stats(&self) -> StoreStats {
        let shared = &self.inner.shared;
        StoreStats {
            dimensions: self.dimensions().iter().map(|d| d.stats()).collect(),
            syncs: shared.syncs.load(Ordering::Relaxed),
            compactions: shared.compactions.load(Ordering::Relaxed),
            recovery_time: self.inner.recovery_time,
            read_only: shared.read_only.lock().clone(),
        }
    }

    /// Syncs everything and drops this handle; the lock goes with the last handle.
    pub fn close(self) -> Result<()> {
        let result = self.dimensions().iter().try_for_each(|d| d.inner.sync());
        drop(self);
        result
    }

    /// One background thread: under `Durability::Periodic` it syncs dirty dimensions at
    /// the interval; with background compaction on, it compacts about once a second. On
    /// each tick it also installs ordered-index merges that finished, and merges changes that
    /// stopped coming (ordered.rs).
    fn start_background(&self) {
        let config = &self.inner.shared.config;
        let periodic = match config.durability {
            Durability::Periodic(every) => Some(every),
            _ => None,
        };
        let compacting = config.background_compaction;
        if periodic.is_none() && !compacting {
            return;
        }
        let tick = periodic.unwrap_or(COMPACTION_INTERVAL).min(COMPACTION_INTERVAL);
        let weak: Weak<StoreInner> = Arc::downgrade(&self.inner);
        let stop = self.inner.stop.clone();
        let mut last_compaction = Instant::now();
        let handle = std::thread::Builder::new().name("jessy-background".into()).spawn(move || loop {
            {
                let (flag, cv) = &*stop;
                let mut stopped = flag.lock();
                if !*stopped {
                    cv.wait_for(&mut stopped, tick);
                }
                if *stopped {
                    return;
                }
            }
            let Some(inner) = weak.upgrade() else { return };
            let dims: Vec<Dimension> = inner.dims.read().values().cloned().collect();
            drop(inner);
            for d in &dims {
                d.inner.tend_ordered_index();
            }
            if periodic.is_some() {
                for d in &dims {
                    d.inner.sync_if_dirty();
                }
            }
            if compacting && last_compaction.elapsed() >= COMPACTION_INTERVAL {
                last_compaction = Instant::now();
                for d in &dims {
                    match d.compact() {
                        Ok(_) | Err(Error::DimensionDropped(_)) | Err(Error::ReadOnly(_)) => {}
                        Err(e) => tracing::error!(error = %e, dimension = %d.name(), "background compaction failed"),
                    }
                }
            }
        });
        match handle {
            Ok(h) => *self.inner.background.lock() = Some(h),
            Err(e) => tracing::error!(error = %e, "could not start the background thread; syncing on close only"),
        }
    }
}

/// How often the background thread looks for layers worth compacting.
const COMPACTION_INTERVAL: Duration = Duration::from_secs(1);

impl Drop for StoreInner {
    fn drop(&mut self) {
        {
            let (flag, cv) = &*self.stop;
            *flag.lock() = true;
            cv.notify_all();
        }
        if let Some(h) = self.background.lock().take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
        for d in self.dims.read().values() {
            crate::ticket::stop_committer(&d.inner);
        }
        for d in self.dims.read().values() {
            if let Err(e) = d.inner.sync() {
                tracing::error!(error = %e, dimension = %d.inner.name, "sync on close failed");
            } else if let Err(e) = d.inner.write_sync_mark() {
                tracing::warn!(error = %e, dimension = %d.inner.name, "could not end the log with a sync mark; damage to its last frames would look like a torn tail");
            }
            d.inner.finish_file_threads();
        }
    }
}

/// The ids of the dimension directories under `consciousness/`.
/// Two dimensions with one name can only come from a damaged `index.json` that still parsed
/// (its name taken as it was) or one edited by hand: a name would then read and write
/// whichever dimension came first. Refused, naming both, rather than guessed.
fn check_unique_names(dims: &BTreeMap<u32, Dimension>) -> Result<()> {
    let mut seen: std::collections::HashMap<&str, &Dimension> = std::collections::HashMap::new();
    for d in dims.values() {
        if let Some(first) = seen.insert(&d.inner.name, d) {
            return Err(Error::corruption(
                d.inner.paths().manifest(),
                0,
                format!(
                    "dimensions {} and {} are both named {:?}; a damaged or edited index.json gave one of them the \
                     other's name (the one with an index.json.damaged, if either has it): remove that one's \
                     index.json and index.json.damaged, and it opens as dimension-<nn>",
                    first.dir(),
                    d.dir(),
                    d.inner.name
                ),
            ));
        }
    }
    Ok(())
}

fn list_dimensions(shared: &Shared) -> Result<Vec<u32>> {
    let dir = shared.layout.consciousness();
    let mut ids = Vec::new();
    for p in shared.io.read_dir(&dir).map_err(Error::io("read directory", &dir))? {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        match parse_dir_name(name) {
            Some(id) if p.is_dir() => ids.push(id),
            _ => {
                tracing::warn!(path = %p.display(), "ignoring an entry of consciousness/ that is not a dimension directory")
            }
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Removes what crashed operations left in `temp/` and `proto/`.
fn sweep_scratch(shared: &Shared) -> Result<()> {
    for dir in [shared.layout.temp(), shared.layout.proto()] {
        for p in shared.io.read_dir(&dir).map_err(Error::io("read directory", &dir))? {
            tracing::info!(path = %p.display(), "removing a leftover of an interrupted operation");
            let r = if p.is_dir() { shared.io.remove_dir_all(&p) } else { shared.io.remove_file(&p) };
            r.map_err(Error::io("remove", &p))?;
        }
    }
    Ok(())
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync + Clone>() {}
    is::<Store>();
    is::<Dimension>();
    is::<crate::Value>();
    let _: Option<PathBuf> = None;
}
