//! The one door through which the engine touches the file system.
//!
//! Every create, write, sync, rename and unlink goes through [`Io`] and [`IoFile`], so tests
//! can swap in [`FaultyIo`] to inject errors (EIO, ENOSPC) at a chosen operation and to
//! "lose power": every write not followed by a sync of its file, and every directory change
//! not followed by a sync of its directory, may be lost, torn or garbled. Reads of record
//! data go through the read-only memory map that [`IoFile::map`] returns.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use memmap2::{Mmap, MmapOptions};
use parking_lot::Mutex;

/// File-system operations the engine needs. Implementations must be thread-safe.
pub trait Io: Send + Sync + 'static {
    /// Opens a file for reading and writing, creating it (empty) when `create` is set.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn IoFile>>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Creates a second name for a file.
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creates, renames, unlinks) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Lists a directory's entries (full paths), in no particular order.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
}

/// An open file.
#[allow(clippy::len_without_is_empty)] // a file's length is a size, not a collection's
pub trait IoFile: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// `fdatasync`: the file's data (and the metadata needed to read it) is durable.
    fn sync_data(&self) -> io::Result<()>;
    /// The file's length.
    fn len(&self) -> io::Result<u64>;
    /// Grows the file to `len` bytes of real, written blocks (never a sparse hole), so that
    /// later writes below `len` cannot fail for lack of space and a mapped read never faults.
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// Grows the file to `len` bytes of blocks reserved but not written (`fallocate(2)`;
    /// zeros where the file system has no such call). Later writes below `len` cannot fail
    /// for lack of space and mapped reads return zeros, as after `allocate`, at the cost of
    /// metadata only; but the first write to each block converts it, which makes a sync of
    /// that write dearer. For files that are not synced write by write. The default
    /// allocates.
    fn reserve(&self, len: u64) -> io::Result<()> {
        self.allocate(len)
    }
    /// A read-only shared mapping of the file's current length.
    fn map(&self) -> io::Result<Mmap>;
    /// Writes the dirty pages of `len` bytes at `offset` to the disk and waits for them,
    /// promising nothing about durability (no metadata, no disk cache flush): it only keeps
    /// a later `sync_data` from having that much to write. The default does nothing.
    fn write_back(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }
    /// Starts writing the file's dirty pages to the disk and returns without waiting,
    /// promising nothing (a `sync_data` must follow): the disk works on them while the
    /// caller does something else. The default does nothing.
    fn start_write_back(&self) -> io::Result<()> {
        Ok(())
    }
    /// Where the first hole at or after `from` begins, if the file system says there is one
    /// before the end of the file: a range never written, or only reserved (`reserve`), which
    /// reads as zeros. `None` if there is none, or no way to tell. The default cannot tell.
    /// It may drop the clean cached pages after `from` (for a file system that counts the
    /// cached pages of reserved blocks as data): ask only about space that holds nothing.
    fn first_hole(&self, from: u64) -> io::Result<Option<u64>> {
        let _ = from;
        Ok(None)
    }
}

/// Reads a whole (small) file: manifests and key indexes.
pub(crate) fn read_all(io: &dyn Io, path: &Path) -> io::Result<Vec<u8>> {
    let file = io.open(path, false)?;
    let len = file.len()? as usize;
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = file.read_at(&mut buf[done..], done as u64)?;
        if n == 0 {
            buf.truncate(done);
            break;
        }
        done += n;
    }
    Ok(buf)
}

/// How [`StdIo`] reserves space for a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prealloc {
    /// Write zeros. The blocks are then "written" extents: a later overwrite plus
    /// `fdatasync` flushes only data, with no extent conversion in the journal. Measured
    /// faster for durable appends (see docs/FORMAT.md), so this is the default.
    #[default]
    Zeros,
    /// `fallocate(2)`: fast to reserve, but the first write to each block must convert an
    /// unwritten extent, which `fdatasync` then has to journal.
    Fallocate,
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdIo {
    /// How space is reserved.
    pub prealloc: Prealloc,
}

struct StdFile {
    file: File,
    prealloc: Prealloc,
}

impl Io for StdIo {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn IoFile>> {
        let file = OpenOptions::new().read(true).write(true).create(create).truncate(false).open(path)?;
        Ok(Arc::new(StdFile { file, prealloc: self.prealloc }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::hard_link(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        fs::read_dir(path)?.map(|e| e.map(|e| e.path())).collect()
    }
}

impl IoFile for StdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    #[cfg(target_os = "linux")]
    fn write_back(&self, offset: u64, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        // SAFETY: plain syscall on a file descriptor we own; no memory is passed.
        let rc = unsafe { libc::sync_file_range(self.file.as_raw_fd(), offset as i64, len as i64, flags) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    #[cfg(target_os = "linux")]
    fn start_write_back(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: plain syscall on a file descriptor we own; no memory is passed. A length
        // of 0 means to the end of the file.
        let rc = unsafe { libc::sync_file_range(self.file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    #[cfg(target_os = "linux")]
    fn first_hole(&self, from: u64) -> io::Result<Option<u64>> {
        use std::os::fd::AsRawFd;
        let len = self.len()?;
        if from >= len {
            return Ok(None);
        }
        // ext4 (seen here) reports reserved blocks whose pages are cached (read ahead, say) as
        // data: drop those pages first. Only clean, unmapped ones go; a failure only makes
        // the answer less complete.
        let page = from.next_multiple_of(4096);
        // SAFETY: plain syscalls on a file descriptor we own; no memory is passed. `lseek`
        // moves the descriptor's offset, which nothing here uses (every read and write is
        // positional).
        let at = unsafe {
            libc::posix_fadvise(self.file.as_raw_fd(), page as libc::off_t, 0, libc::POSIX_FADV_DONTNEED);
            libc::lseek(self.file.as_raw_fd(), from as libc::off_t, libc::SEEK_HOLE)
        };
        if at < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Some(at as u64).filter(|&at| at < len))
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        let current = self.len()?;
        if len <= current {
            return Ok(());
        }
        match self.prealloc {
            Prealloc::Zeros => write_zeros(self, current, len),
            Prealloc::Fallocate => fallocate(&self.file, current, len),
        }
    }
    fn reserve(&self, len: u64) -> io::Result<()> {
        let current = self.len()?;
        if len <= current {
            return Ok(());
        }
        match fallocate(&self.file, current, len) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => write_zeros(self, current, len),
            r => r,
        }
    }
    fn map(&self) -> io::Result<Mmap> {
        // SAFETY: the engine holds the store's exclusive lock, never truncates or rewrites
        // bytes that a reader can reach (records are append-only, files are never shrunk and
        // are unlinked, not truncated, when replaced), and all space is allocated before it
        // is mapped, so the mapped bytes neither change under a reader nor fault.
        unsafe { MmapOptions::new().map(&self.file) }
    }
}

fn fallocate(file: &File, from: u64, to: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on a file descriptor we own; no memory is passed.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, from as i64, (to - from) as i64) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Writes zeros over `from..to` of `file`, a MiB at a time.
pub(crate) fn write_zeros(file: &dyn IoFile, from: u64, to: u64) -> io::Result<()> {
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK.min((to - from) as usize)];
    let mut at = from;
    while at < to {
        let n = zeros.len().min((to - at) as usize);
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Which operation a [`FaultyIo`] fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultOp {
    /// [`IoFile::write_all_at`].
    Write,
    /// [`IoFile::sync_data`] and [`Io::sync_dir`].
    Sync,
    /// [`IoFile::allocate`].
    Allocate,
    /// [`Io::rename`].
    Rename,
    /// Links, unlinks and directory creation.
    Other,
}

/// What a simulated power loss ([`FaultyIo::crash`]) does to everything that was not yet
/// durable: file writes and growth not followed by a `sync_data` of their file, and
/// directory changes (create, rename, unlink, link, mkdir) not followed by a `sync_dir` of
/// their directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PowerLoss {
    /// Everything that was not durable is lost (the default).
    #[default]
    LoseAll,
    /// Nothing is lost, as when only the process dies and the page cache survives.
    KeepAll,
    /// Seeded chaos. Each unsynced write is, independently, kept, dropped, torn (cut at a
    /// random byte, or kept or lost 512- or 4096-byte sector by sector) or partly replaced by
    /// random garbage; each unsynced growth of a file is kept or not; the unsynced changes of
    /// each directory survive as a random prefix of the order they were made in (a rename
    /// is one atomic change of both its directories, as in a journaling file system).
    Random(u64),
}

/// What the last simulated power loss did (see [`FaultyIo::last_crash`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// The operation in flight when the power went, e.g. `"rename /d/temp/x.tmp -> /d/consciousness/D01/region.mmap"`,
    /// or `"crash()"` when the test called [`FaultyIo::crash`] itself.
    pub during: String,
    /// The kind of that operation (`None` for a direct `crash()`).
    pub op: Option<FaultOp>,
    /// Unsynced writes that landed whole.
    pub writes_kept: u64,
    /// Unsynced writes that were lost.
    pub writes_dropped: u64,
    /// Unsynced writes that landed in part (a torn write).
    pub writes_torn: u64,
    /// Unsynced writes (partly) replaced by garbage.
    pub writes_garbage: u64,
    /// Unsynced growths of a file that were kept.
    pub extends_kept: u64,
    /// Unsynced growths of a file that were lost.
    pub extends_dropped: u64,
    /// Unsynced directory changes that survived.
    pub dir_ops_kept: u64,
    /// Unsynced directory changes that were undone.
    pub dir_ops_undone: u64,
}

/// A test backend over the real file system that injects errors and simulates power loss.
///
/// - [`FaultyIo::fail_nth`]: the n-th call (counting from now, 1-based) of an operation
///   fails with the given errno, and so does every later one while `sticky`.
/// - [`FaultyIo::crash_after`] / [`FaultyIo::crash`]: the machine loses power. The files
///   under the backend's root are rewritten to what a disk could hold after the crash, per
///   the [`PowerLoss`] mode, and from then on every operation fails, as if the machine had
///   died. [`FaultyIo::revive`] lets a new store be opened on what is left.
/// - [`FaultyIo::set_jitter`]: seeded random yields and short sleeps before I/O calls, to
///   shake out thread interleavings.
///
/// How it knows what is durable: it keeps a model of the tree under its *root* (the first
/// directory created through it, which is the data directory when a store is opened on it;
/// or [`FaultyIo::set_root`]). Everything on disk when it first looks is taken as durable.
/// From then on it records, per file (per inode, so hard links share contents), its durable
/// bytes plus the writes and growth since its last `sync_data`, and per directory the
/// changes since its last `sync_dir`. A crash computes the surviving tree from that model
/// and lays it out on disk (new inodes; `jessy.lock` is left alone); handles of the dead
/// store keep pointing at the old, now unlinked, files. Paths outside the root pass
/// through unmodelled (and are treated as always durable).
///
/// Because durability is simulated, the real `fdatasync`/`fsync` calls are skipped unless
/// [`FaultyIo::set_real_sync`] turns them on: a test does not wait for a disk it does not
/// need. Do not change files under the root behind its back while a store uses it; after
/// doing so, call [`FaultyIo::forget`].
#[derive(Default)]
pub struct FaultyIo {
    inner: StdIo,
    state: Mutex<FaultState>,
    dead: AtomicBool,
    ops: AtomicU64,
    /// Lose power when the operation count reaches this (0: never).
    crash_at: AtomicU64,
    real_sync: AtomicBool,
    jitter_seed: AtomicU64,
    /// Chance per thousand I/O calls of a yield or a short sleep (0: off).
    jitter_per_mille: AtomicU64,
    jitter_calls: AtomicU64,
}

#[derive(Default)]
struct FaultState {
    faults: HashMap<FaultOp, Fault>,
    counts: HashMap<FaultOp, u64>,
    power_loss: PowerLoss,
    crashes: u64,
    root: Option<PathBuf>,
    model: Option<Model>,
    /// Bumped whenever the model is thrown away, so that handles opened under an older
    /// model stop recording into the new one.
    generation: u64,
    last_crash: Option<CrashReport>,
    last_fault: Option<String>,
}

struct Fault {
    nth: u64,
    errno: i32,
    sticky: bool,
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

impl FaultyIo {
    /// A backend with no faults armed, losing everything unsynced on a crash.
    pub fn new() -> Arc<FaultyIo> {
        Arc::new(FaultyIo::default())
    }

    /// A backend whose crashes follow [`PowerLoss::Random`] with this seed.
    pub fn seeded(seed: u64) -> Arc<FaultyIo> {
        let io = FaultyIo::new();
        io.set_power_loss(PowerLoss::Random(seed));
        io
    }

    /// Chooses what the next crashes do to unsynced data.
    pub fn set_power_loss(&self, mode: PowerLoss) {
        self.state.lock().power_loss = mode;
    }

    /// Models the tree under `root` (instead of the first directory created through the
    /// backend). Call it before the first operation.
    pub fn set_root(&self, root: impl Into<PathBuf>) {
        let mut s = self.state.lock();
        s.root = Some(root.into());
        s.model = None;
        s.generation += 1;
    }

    /// Also make the real `fdatasync`/`fsync` calls (off by default: durability is simulated).
    pub fn set_real_sync(&self, on: bool) {
        self.real_sync.store(on, Ordering::SeqCst);
    }

    /// Before each I/O call, with a chance of `per_mille`/1000, yield the thread (and now
    /// and then sleep up to 300 µs), chosen by a generator seeded with `seed`. 0 turns it off.
    pub fn set_jitter(&self, seed: u64, per_mille: u32) {
        self.jitter_seed.store(seed, Ordering::SeqCst);
        self.jitter_per_mille.store(per_mille.min(1000) as u64, Ordering::SeqCst);
    }

    /// The `nth` next call of `op` fails with `errno` (e.g. `libc::EIO`, `libc::ENOSPC`);
    /// with `sticky`, every call after it fails too.
    pub fn fail_nth(&self, op: FaultOp, nth: u64, errno: i32, sticky: bool) {
        let mut s = self.state.lock();
        let done = s.counts.get(&op).copied().unwrap_or(0);
        s.faults.insert(op, Fault { nth: done + nth, errno, sticky });
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        self.state.lock().faults.clear();
    }

    /// Loses power during the `n`-th next mutating operation (write, sync, allocate, rename,
    /// link, unlink, create, mkdir). That operation is in flight: a write or directory change
    /// may or may not land (per the [`PowerLoss`] mode), a sync does not happen. It fails,
    /// and so does every later operation.
    pub fn crash_after(&self, n: u64) {
        self.crash_at.store(self.ops.load(Ordering::SeqCst) + n, Ordering::SeqCst);
    }

    /// How many mutating operations went through this backend so far.
    pub fn op_count(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    /// How many calls of `op` went through this backend so far (failed ones included).
    pub fn count(&self, op: FaultOp) -> u64 {
        self.state.lock().counts.get(&op).copied().unwrap_or(0)
    }

    /// True after a crash, until [`revive`](FaultyIo::revive).
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// What the last crash did, if there was one.
    pub fn last_crash(&self) -> Option<CrashReport> {
        self.state.lock().last_crash.clone()
    }

    /// The call the last injected error hit, e.g. `"fdatasync /d/consciousness/D01/region.mmap"`.
    pub fn last_fault(&self) -> Option<String> {
        self.state.lock().last_fault.clone()
    }

    /// Loses power now: lays out what survives (per the [`PowerLoss`] mode), then fails
    /// every later operation.
    pub fn crash(&self) {
        let mut s = self.state.lock();
        self.crash_locked(&mut s, "crash()".to_string(), None);
    }

    /// After a [`crash`](FaultyIo::crash): operations work again, and what is on disk now is
    /// durable. Also disarms every fault.
    pub fn revive(&self) {
        let mut s = self.state.lock();
        s.faults.clear();
        self.crash_at.store(0, Ordering::SeqCst);
        if self.dead.swap(false, Ordering::SeqCst) {
            s.model = None;
            s.generation += 1;
        }
    }

    /// Takes whatever is on disk now as durable (call it after changing files under the
    /// root behind the backend's back). Handles opened before stop being tracked.
    pub fn forget(&self) {
        let mut s = self.state.lock();
        s.model = None;
        s.generation += 1;
    }

    fn crash_locked(&self, s: &mut FaultState, during: String, op: Option<FaultOp>) {
        self.dead.store(true, Ordering::SeqCst);
        s.crashes += 1;
        let mut report = CrashReport { during, op, ..CrashReport::default() };
        if let Some(model) = s.model.take() {
            s.generation += 1;
            let salt = s.crashes;
            if let Err(e) = model.power_loss(s.power_loss, salt, &mut report) {
                panic!("FaultyIo could not lay out the files that survive a simulated power loss: {e}");
            }
        }
        s.last_crash = Some(report);
    }

    fn jitter(&self) {
        let per_mille = self.jitter_per_mille.load(Ordering::Relaxed);
        if per_mille == 0 {
            return;
        }
        let n = self.jitter_calls.fetch_add(1, Ordering::Relaxed);
        let h = Rng::new(self.jitter_seed.load(Ordering::Relaxed) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next();
        let roll = h % 1000;
        if roll < per_mille / 4 {
            std::thread::sleep(std::time::Duration::from_micros((h >> 32) % 300));
        } else if roll < per_mille {
            std::thread::yield_now();
        }
    }

    /// Starts a mutating operation: takes the state lock (held until the operation is done,
    /// so a crash never races with one), counts it, and applies armed faults. The flag says
    /// whether the power goes during this operation.
    fn begin(
        &self,
        op: FaultOp,
        what: &dyn Fn() -> String,
    ) -> io::Result<(parking_lot::MutexGuard<'_, FaultState>, bool)> {
        self.jitter();
        let mut s = self.state.lock();
        if self.dead.load(Ordering::SeqCst) {
            return Err(eio());
        }
        let n = self.ops.fetch_add(1, Ordering::SeqCst) + 1;
        let crash = n == self.crash_at.load(Ordering::SeqCst);
        let count = {
            let c = s.counts.entry(op).or_insert(0);
            *c += 1;
            *c
        };
        if !crash {
            if let Some(f) = s.faults.get(&op) {
                if count == f.nth || (f.sticky && count > f.nth) {
                    let errno = f.errno;
                    s.last_fault = Some(what());
                    return Err(io::Error::from_raw_os_error(errno));
                }
            }
        }
        Ok((s, crash))
    }

    /// Ends a mutating operation; if the power went during it, the machine dies now.
    fn end<T>(
        &self,
        s: &mut FaultState,
        crash: bool,
        op: FaultOp,
        what: impl FnOnce() -> String,
        r: io::Result<T>,
    ) -> io::Result<T> {
        if crash {
            self.crash_locked(s, what(), Some(op));
            return Err(eio());
        }
        r
    }

    fn dead_check(&self) -> io::Result<()> {
        self.jitter();
        if self.dead.load(Ordering::SeqCst) {
            return Err(eio());
        }
        Ok(())
    }
}

impl FaultState {
    /// The model, if `path` is the root or lies under it (adopting what is on disk on first use).
    fn model_for(&mut self, path: &Path) -> io::Result<Option<&mut Model>> {
        let Some(root) = &self.root else { return Ok(None) };
        if !path.starts_with(root) {
            return Ok(None);
        }
        if self.model.is_none() {
            if fs::symlink_metadata(root).is_err() {
                return Ok(None);
            }
            self.model = Some(Model::adopt_root(root, self.generation)?);
        }
        Ok(self.model.as_mut())
    }

    /// The model a file handle records into, if it is still the current one.
    fn model_of(&mut self, node: Option<(u64, NodeId)>) -> Option<(&mut Model, NodeId)> {
        let (generation, id) = node?;
        match &mut self.model {
            Some(m) if m.generation == generation => Some((m, id)),
            _ => None,
        }
    }
}

struct FaultyFile {
    io: Arc<FaultyIo>,
    path: PathBuf,
    file: StdFile,
    /// (model generation, node) when the file lies under the root.
    node: Option<(u64, NodeId)>,
}

/// The backend is handed out as `Arc<dyn Io>`; files need a handle back to it.
impl Io for Arc<FaultyIo> {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn IoFile>> {
        let existed = fs::symlink_metadata(path).is_ok();
        let open_real = || -> io::Result<StdFile> {
            let file = OpenOptions::new().read(true).write(true).create(create).truncate(false).open(path)?;
            Ok(StdFile { file, prealloc: self.inner.prealloc })
        };
        let what = || format!("create {}", path.display());
        let (file, node) = if create && !existed {
            let (mut s, crash) = self.begin(FaultOp::Other, &what)?;
            let r = (|| {
                let file = open_real()?;
                let ino = file.file.metadata()?.ino();
                let generation = s.generation;
                let node = match s.model_for(path)? {
                    Some(m) => Some((generation, m.created(path, ino, false)?)),
                    None => None,
                };
                Ok((file, node))
            })();
            self.end(&mut s, crash, FaultOp::Other, what, r)?
        } else {
            self.dead_check()?;
            let mut s = self.state.lock();
            if self.dead.load(Ordering::SeqCst) {
                return Err(eio());
            }
            let file = open_real()?;
            let generation = s.generation;
            let node = match s.model_for(path)? {
                Some(m) => Some((generation, m.lookup(path)?)),
                None => None,
            };
            (file, node)
        };
        Ok(Arc::new(FaultyFile { io: self.clone(), path: path.to_path_buf(), file, node }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let what = || format!("rename {} -> {}", from.display(), to.display());
        let (mut s, crash) = self.begin(FaultOp::Rename, &what)?;
        let r = (|| {
            let inside = (s.model_for(from)?.is_some(), s.model_for(to)?.is_some());
            let Some(m) = s.model.as_mut().filter(|_| inside.0 || inside.1) else {
                return self.inner.rename(from, to);
            };
            match inside {
                (true, true) => {
                    let node = m.lookup(from)?;
                    let (fp, fname) = m.parent_and_name(from)?;
                    let (tp, tname) = m.parent_and_name(to)?;
                    self.inner.rename(from, to)?;
                    m.push(vec![(fp, fname, None), (tp, tname, Some(node))]);
                }
                (true, false) => {
                    let (fp, fname) = m.parent_and_name(from)?;
                    self.inner.rename(from, to)?;
                    m.push(vec![(fp, fname, None)]);
                }
                _ => {
                    // Moved in from outside: taken as durable where it lands.
                    self.inner.rename(from, to)?;
                    m.lookup(to)?;
                }
            }
            Ok(())
        })();
        self.end(&mut s, crash, FaultOp::Rename, what, r)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let what = || format!("link {} -> {}", from.display(), to.display());
        let (mut s, crash) = self.begin(FaultOp::Other, &what)?;
        let r = (|| {
            let inside_from = s.model_for(from)?.is_some();
            match s.model_for(to)? {
                Some(m) if inside_from => {
                    let node = m.lookup(from)?;
                    let (tp, tname) = m.parent_and_name(to)?;
                    self.inner.hard_link(from, to)?;
                    m.push(vec![(tp, tname, Some(node))]);
                }
                Some(m) => {
                    self.inner.hard_link(from, to)?;
                    m.lookup(to)?;
                }
                None => self.inner.hard_link(from, to)?,
            }
            Ok(())
        })();
        self.end(&mut s, crash, FaultOp::Other, what, r)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let what = || format!("unlink {}", path.display());
        let (mut s, crash) = self.begin(FaultOp::Other, &what)?;
        let r = (|| {
            match s.model_for(path)? {
                Some(m) => {
                    let (parent, name) = m.parent_and_name(path)?;
                    self.inner.remove_file(path)?;
                    m.push(vec![(parent, name, None)]);
                }
                None => self.inner.remove_file(path)?,
            }
            Ok(())
        })();
        self.end(&mut s, crash, FaultOp::Other, what, r)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let what = || format!("remove tree {}", path.display());
        let (mut s, crash) = self.begin(FaultOp::Other, &what)?;
        let r = (|| {
            match s.model_for(path)? {
                Some(m) => {
                    // Every entry goes, deepest first, each its own change of its directory.
                    let mut unlinks = Vec::new();
                    m.tree_unlinks(path, &mut unlinks)?;
                    self.inner.remove_dir_all(path)?;
                    for u in unlinks {
                        m.push(vec![u]);
                    }
                }
                None => self.inner.remove_dir_all(path)?,
            }
            Ok(())
        })();
        self.end(&mut s, crash, FaultOp::Other, what, r)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let what = || format!("mkdir {}", path.display());
        let (mut s, crash) = self.begin(FaultOp::Other, &what)?;
        if s.root.is_none() {
            s.root = Some(path.to_path_buf());
        }
        let r = (|| match s.model_for(path)? {
            Some(m) => m.create_dir_all(path),
            None => self.inner.create_dir_all(path),
        })();
        self.end(&mut s, crash, FaultOp::Other, what, r)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let what = || format!("fsync directory {}", path.display());
        let (mut s, crash) = self.begin(FaultOp::Sync, &what)?;
        if crash {
            // The power went before the directory reached the disk.
            return self.end(&mut s, crash, FaultOp::Sync, what, Ok(()));
        }
        if self.real_sync.load(Ordering::SeqCst) {
            self.inner.sync_dir(path)?;
        } else {
            File::open(path)?;
        }
        if let Some(m) = s.model_for(path)? {
            m.sync_dir(path)?;
        }
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        self.dead_check()?;
        self.inner.read_dir(path)
    }
}

impl IoFile for FaultyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.io.dead_check()?;
        self.file.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let what = || format!("write {} bytes at {} of {}", buf.len(), offset, self.path.display());
        let (mut s, crash) = self.io.begin(FaultOp::Write, &what)?;
        let r = self.file.write_all_at(buf, offset);
        if r.is_ok() {
            if let Some((m, id)) = s.model_of(self.node) {
                m.file(id).pending.push(Pending::Write(offset, buf.to_vec()));
            }
        }
        self.io.end(&mut s, crash, FaultOp::Write, what, r)
    }
    fn sync_data(&self) -> io::Result<()> {
        let what = || format!("fdatasync {}", self.path.display());
        let (mut s, crash) = self.io.begin(FaultOp::Sync, &what)?;
        if crash {
            return self.io.end(&mut s, crash, FaultOp::Sync, what, Ok(()));
        }
        if self.io.real_sync.load(Ordering::SeqCst) {
            self.file.sync_data()?;
        }
        if let Some((m, id)) = s.model_of(self.node) {
            m.file(id).sync();
        }
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        self.io.dead_check()?;
        self.file.len()
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        self.grow(len, false)
    }
    fn reserve(&self, len: u64) -> io::Result<()> {
        self.grow(len, true)
    }
    fn map(&self) -> io::Result<Mmap> {
        self.io.dead_check()?;
        self.file.map()
    }
}

impl FaultyFile {
    /// `allocate` or `reserve`: to the model both are zeros up to `len` once synced.
    fn grow(&self, len: u64, reserve: bool) -> io::Result<()> {
        let what = || format!("allocate {} to {len} bytes", self.path.display());
        let (mut s, crash) = self.io.begin(FaultOp::Allocate, &what)?;
        let r = if reserve { self.file.reserve(len) } else { self.file.allocate(len) };
        if r.is_ok() {
            if let Some((m, id)) = s.model_of(self.node) {
                m.file(id).pending.push(Pending::Extend(len));
            }
        }
        self.io.end(&mut s, crash, FaultOp::Allocate, what, r)
    }
}

// ---- the power-loss model ----------------------------------------------------------------

/// The lock file is held with `flock` outside the `Io` layer; the model leaves it alone.
const LOCK_NAME: &str = "jessy.lock";

type NodeId = u64;
/// One change of a directory entry: (directory, name, new target or `None` for removal).
type Change = (NodeId, OsString, Option<NodeId>);

/// A write or growth of a file since its last `sync_data`.
enum Pending {
    Write(u64, Vec<u8>),
    Extend(u64),
}

#[derive(Default)]
struct FileNode {
    /// What a crash cannot take away.
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

impl FileNode {
    fn sync(&mut self) {
        for p in std::mem::take(&mut self.pending) {
            apply(&mut self.durable, &p);
        }
    }
}

fn apply(data: &mut Vec<u8>, p: &Pending) {
    match p {
        Pending::Write(offset, bytes) => put_bytes(data, *offset, bytes),
        Pending::Extend(len) => {
            if (data.len() as u64) < *len {
                data.resize(*len as usize, 0);
            }
        }
    }
}

fn put_bytes(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let start = offset as usize;
    let end = start + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[start..end].copy_from_slice(bytes);
}

struct DirOp {
    changes: Vec<Change>,
    /// A `sync_dir` of one of its directories came after it.
    durable: bool,
}

impl DirOp {
    fn dirs(&self) -> BTreeSet<NodeId> {
        self.changes.iter().map(|c| c.0).collect()
    }
}

/// The file tree under the root as the disk knows it (see [`FaultyIo`]).
struct Model {
    root: PathBuf,
    root_id: NodeId,
    generation: u64,
    next_id: NodeId,
    /// Real inode number of every name that exists now -> its node.
    by_ino: HashMap<u64, NodeId>,
    files: BTreeMap<NodeId, FileNode>,
    /// Each directory's entries as of when the model started (or the directory was made).
    dirs: BTreeMap<NodeId, BTreeMap<OsString, NodeId>>,
    /// Every directory change since, in order.
    ops: Vec<DirOp>,
}

impl Model {
    fn adopt_root(root: &Path, generation: u64) -> io::Result<Model> {
        let mut m = Model {
            root: root.to_path_buf(),
            root_id: 0,
            generation,
            next_id: 1,
            by_ino: HashMap::new(),
            files: BTreeMap::new(),
            dirs: BTreeMap::new(),
            ops: Vec::new(),
        };
        m.root_id = m.adopt(root)?;
        Ok(m)
    }

    fn contains(&self, path: &Path) -> bool {
        path != self.root && path.starts_with(&self.root)
    }

    fn fresh(&mut self) -> NodeId {
        self.next_id += 1;
        self.next_id
    }

    fn file(&mut self, id: NodeId) -> &mut FileNode {
        self.files.entry(id).or_default()
    }

    /// Takes what is at `path` (recursively) as durable.
    fn adopt(&mut self, path: &Path) -> io::Result<NodeId> {
        let meta = fs::symlink_metadata(path)?;
        if let Some(&id) = self.by_ino.get(&meta.ino()) {
            if self.dirs.contains_key(&id) == meta.is_dir() {
                return Ok(id); // a second name of a file already adopted
            }
        }
        let id = self.fresh();
        self.by_ino.insert(meta.ino(), id);
        if meta.is_dir() {
            self.dirs.insert(id, BTreeMap::new());
            let mut entries: Vec<_> = fs::read_dir(path)?.collect::<io::Result<_>>()?;
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let name = e.file_name();
                let kind = e.file_type()?;
                if name == LOCK_NAME || !(kind.is_dir() || kind.is_file()) {
                    continue;
                }
                let child = self.adopt(&e.path())?;
                self.dirs.entry(id).or_default().insert(name, child);
            }
        } else {
            self.files.insert(id, FileNode { durable: fs::read(path)?, pending: Vec::new() });
        }
        Ok(id)
    }

    /// The node of an existing path. Anything the model has not seen (made behind its back)
    /// is adopted as durable.
    fn lookup(&mut self, path: &Path) -> io::Result<NodeId> {
        if path == self.root {
            return Ok(self.root_id);
        }
        let meta = fs::symlink_metadata(path)?;
        if let Some(&id) = self.by_ino.get(&meta.ino()) {
            if self.dirs.contains_key(&id) == meta.is_dir() {
                return Ok(id);
            }
        }
        let (parent, name) = self.parent_and_name(path)?;
        let id = self.adopt(path)?;
        self.dirs.entry(parent).or_default().insert(name, id);
        Ok(id)
    }

    fn parent_and_name(&mut self, path: &Path) -> io::Result<(NodeId, OsString)> {
        let bad = || io::Error::new(io::ErrorKind::InvalidInput, format!("no parent: {}", path.display()));
        let parent = path.parent().ok_or_else(bad)?;
        let name = path.file_name().ok_or_else(bad)?.to_os_string();
        Ok((self.lookup(parent)?, name))
    }

    /// Records a file or directory just created at `path`.
    fn created(&mut self, path: &Path, ino: u64, dir: bool) -> io::Result<NodeId> {
        let (parent, name) = self.parent_and_name(path)?;
        let id = self.fresh();
        if dir {
            self.dirs.insert(id, BTreeMap::new());
        } else {
            self.files.insert(id, FileNode::default());
        }
        self.by_ino.insert(ino, id);
        self.push(vec![(parent, name, Some(id))]);
        Ok(id)
    }

    fn push(&mut self, changes: Vec<Change>) {
        self.ops.push(DirOp { changes, durable: false });
    }

    fn create_dir_all(&mut self, path: &Path) -> io::Result<()> {
        let mut missing = Vec::new();
        let mut p = path;
        while self.contains(p) && fs::symlink_metadata(p).is_err() {
            missing.push(p.to_path_buf());
            p = match p.parent() {
                Some(parent) => parent,
                None => break,
            };
        }
        if !self.contains(p) && p != self.root {
            return fs::create_dir_all(path);
        }
        for dir in missing.into_iter().rev() {
            match fs::create_dir(&dir) {
                Ok(()) => {
                    let ino = fs::symlink_metadata(&dir)?.ino();
                    self.created(&dir, ino, true)?;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        if fs::metadata(path)?.is_dir() {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} is not a directory", path.display())))
        }
    }

    /// The removals `remove_dir_all(path)` makes, deepest first.
    fn tree_unlinks(&mut self, path: &Path, out: &mut Vec<Change>) -> io::Result<()> {
        if fs::symlink_metadata(path)?.is_dir() {
            let mut entries: Vec<_> = fs::read_dir(path)?.collect::<io::Result<_>>()?;
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                self.tree_unlinks(&e.path(), out)?;
            }
        }
        let (parent, name) = self.parent_and_name(path)?;
        out.push((parent, name, None));
        Ok(())
    }

    fn sync_dir(&mut self, path: &Path) -> io::Result<()> {
        let id = self.lookup(path)?;
        for op in &mut self.ops {
            if !op.durable && op.changes.iter().any(|c| c.0 == id) {
                op.durable = true;
            }
        }
        Ok(())
    }

    /// Which directory changes survive: for each directory, a prefix of its changes that
    /// includes every durable one; a change of two directories survives in both or neither.
    fn surviving_ops(&self, mode: PowerLoss, rng: &mut Rng) -> Vec<bool> {
        let mut lists: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
        for (i, op) in self.ops.iter().enumerate() {
            for d in op.dirs() {
                lists.entry(d).or_default().push(i);
            }
        }
        let pos = |d: NodeId, i: usize| lists[&d].binary_search(&i).unwrap_or(0);
        let mut min: BTreeMap<NodeId, usize> = lists
            .iter()
            .map(|(d, l)| (*d, l.iter().rposition(|&i| self.ops[i].durable).map_or(0, |p| p + 1)))
            .collect();
        // What must survive: every change before a durable one in the same directory, and
        // (renames being atomic) its other directory's changes before it too.
        loop {
            let mut changed = false;
            for (d, list) in &lists {
                for &i in &list[..min[d]] {
                    for d2 in self.ops[i].dirs() {
                        let need = pos(d2, i) + 1;
                        if min[&d2] < need {
                            min.insert(d2, need);
                            changed = true;
                        }
                    }
                }
            }
            if !changed {
                break;
            }
        }
        let cut: BTreeMap<NodeId, usize> = lists
            .iter()
            .map(|(d, l)| {
                let lo = min[d];
                let c = match mode {
                    PowerLoss::LoseAll => lo,
                    PowerLoss::KeepAll => l.len(),
                    PowerLoss::Random(_) => lo + rng.below((l.len() - lo + 1) as u64) as usize,
                };
                (*d, c)
            })
            .collect();
        let mut kept: Vec<bool> =
            (0..self.ops.len()).map(|i| self.ops[i].dirs().iter().all(|d| pos(*d, i) < cut[d])).collect();
        // Keep each directory's survivors a prefix.
        loop {
            let mut changed = false;
            for list in lists.values() {
                let mut lost = false;
                for &i in list {
                    if !kept[i] {
                        lost = true;
                    } else if lost {
                        kept[i] = false;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        kept
    }

    /// What a file holds after the crash.
    fn surviving_bytes(&self, id: NodeId, mode: PowerLoss, rng: &mut Rng, report: &mut CrashReport) -> Vec<u8> {
        let Some(f) = self.files.get(&id) else { return Vec::new() };
        let mut data = f.durable.clone();
        for p in &f.pending {
            match (mode, p) {
                (PowerLoss::LoseAll, Pending::Write(..)) => report.writes_dropped += 1,
                (PowerLoss::LoseAll, Pending::Extend(_)) => report.extends_dropped += 1,
                (PowerLoss::KeepAll, Pending::Write(..)) => {
                    report.writes_kept += 1;
                    apply(&mut data, p);
                }
                (PowerLoss::KeepAll, Pending::Extend(_)) => {
                    report.extends_kept += 1;
                    apply(&mut data, p);
                }
                (PowerLoss::Random(_), Pending::Extend(_)) => {
                    if rng.below(2) == 0 {
                        report.extends_kept += 1;
                        apply(&mut data, p);
                    } else {
                        report.extends_dropped += 1;
                    }
                }
                (PowerLoss::Random(_), Pending::Write(offset, bytes)) => {
                    random_write(&mut data, *offset, bytes, rng, report);
                }
            }
        }
        data
    }

    /// Computes the tree that survives and lays it out on disk under the root.
    fn power_loss(self, mode: PowerLoss, salt: u64, report: &mut CrashReport) -> io::Result<()> {
        let seed = match mode {
            PowerLoss::Random(seed) => seed,
            _ => 0,
        };
        let mut rng = Rng::new(seed ^ salt.wrapping_mul(0xA076_1D64_78BD_642F));
        let kept = self.surviving_ops(mode, &mut rng);
        let mut tree = self.dirs.clone();
        for (op, keep) in self.ops.iter().zip(&kept) {
            if !keep {
                if !op.durable {
                    report.dir_ops_undone += 1;
                }
                continue;
            }
            if !op.durable {
                report.dir_ops_kept += 1;
            }
            for (dir, name, target) in &op.changes {
                let entries = tree.entry(*dir).or_default();
                match target {
                    Some(t) => entries.insert(name.clone(), *t),
                    None => entries.remove(name),
                };
            }
        }
        for e in fs::read_dir(&self.root)? {
            let e = e?;
            if e.file_name() == LOCK_NAME {
                continue;
            }
            if e.file_type()?.is_dir() {
                fs::remove_dir_all(e.path())?;
            } else {
                fs::remove_file(e.path())?;
            }
        }
        let mut files_written: HashMap<NodeId, PathBuf> = HashMap::new();
        let mut dirs_written: BTreeSet<NodeId> = BTreeSet::new();
        dirs_written.insert(self.root_id);
        let mut stack = vec![(self.root.clone(), self.root_id)];
        while let Some((path, dir)) = stack.pop() {
            let Some(entries) = tree.get(&dir) else { continue };
            for (name, child) in entries {
                if name == LOCK_NAME {
                    continue;
                }
                let p = path.join(name);
                if self.dirs.contains_key(child) {
                    if dirs_written.insert(*child) {
                        fs::create_dir(&p)?;
                        stack.push((p, *child));
                    }
                } else if let Some(first) = files_written.get(child) {
                    fs::hard_link(first, &p)?;
                } else {
                    let bytes = self.surviving_bytes(*child, mode, &mut rng, report);
                    fs::write(&p, bytes)?;
                    files_written.insert(*child, p);
                }
            }
        }
        Ok(())
    }
}

/// One unsynced write under [`PowerLoss::Random`].
fn random_write(data: &mut Vec<u8>, offset: u64, bytes: &[u8], rng: &mut Rng, report: &mut CrashReport) {
    if bytes.is_empty() {
        report.writes_kept += 1;
        return;
    }
    let len = bytes.len() as u64;
    match rng.below(100) {
        0..=34 => {
            report.writes_kept += 1;
            put_bytes(data, offset, bytes);
        }
        35..=64 => report.writes_dropped += 1,
        65..=89 => {
            report.writes_torn += 1;
            let sector = [1u64, 512, 4096][rng.below(3) as usize];
            if sector == 1 {
                // Torn at a byte: a prefix landed.
                let n = rng.below(len) as usize;
                put_bytes(data, offset, &bytes[..n]);
            } else {
                // Sector by sector, each independently.
                let mut at = offset;
                let end = offset + len;
                while at < end {
                    let next = ((at / sector) + 1) * sector;
                    let next = next.min(end);
                    if rng.below(2) == 0 {
                        let (a, b) = ((at - offset) as usize, (next - offset) as usize);
                        put_bytes(data, at, &bytes[a..b]);
                    }
                    at = next;
                }
            }
        }
        _ => {
            report.writes_garbage += 1;
            let mut landed = bytes.to_vec();
            let a = rng.below(len);
            let b = a + 1 + rng.below(len - a);
            for x in &mut landed[a as usize..b as usize] {
                *x = rng.next() as u8;
            }
            if rng.below(2) == 0 {
                put_bytes(data, offset, &landed);
            } else {
                put_bytes(data, offset + a, &landed[a as usize..b as usize]);
            }
        }
    }
}

/// SplitMix64: small, seedable, good enough to pick faults.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
