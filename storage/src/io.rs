//! The one door through which the engine touches the file system.
//!
//! Every create, write, sync, rename and unlink goes through [`Io`] and [`IoFile`], so tests
//! can swap in [`FaultyIo`] to inject errors (EIO, ENOSPC) at a chosen operation and to
//! "lose power": undo every write that was not followed by a sync. Reads of record data go
//! through the read-only memory map that [`IoFile::map`] returns.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
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
    /// A read-only shared mapping of the file's current length.
    fn map(&self) -> io::Result<Mmap>;
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
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        let current = self.len()?;
        if len <= current {
            return Ok(());
        }
        match self.prealloc {
            Prealloc::Zeros => write_zeros(&self.file, current, len),
            Prealloc::Fallocate => {
                use std::os::fd::AsRawFd;
                // SAFETY: plain syscall on a file descriptor we own; no memory is passed.
                let rc = unsafe { libc::fallocate(self.file.as_raw_fd(), 0, current as i64, (len - current) as i64) };
                if rc == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            }
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

fn write_zeros(file: &File, from: u64, to: u64) -> io::Result<()> {
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

/// A test backend over the real file system that injects errors and simulates power loss.
///
/// - [`FaultyIo::fail_nth`]: the n-th call (counting from now, 1-based) of an operation
///   fails with the given errno, and so does every later one while `sticky`.
/// - [`FaultyIo::crash`]: every write not yet covered by a sync of its file is undone (the
///   file is restored byte for byte, and cut back to its synced length), and from then on
///   every operation fails, as if the machine had died. [`FaultyIo::revive`] lets a new
///   store be opened on what is left.
#[derive(Default)]
pub struct FaultyIo {
    inner: StdIo,
    state: Mutex<FaultState>,
    dead: AtomicBool,
    ops: AtomicU64,
    /// Lose power when the operation count reaches this (0: never).
    crash_at: AtomicU64,
}

#[derive(Default)]
struct FaultState {
    faults: HashMap<FaultOp, Fault>,
    counts: HashMap<FaultOp, u64>,
    /// Per file: its length at the last sync, and the bytes each later write overwrote.
    undo: HashMap<PathBuf, FileUndo>,
}

struct Fault {
    nth: u64,
    errno: i32,
    sticky: bool,
}

#[derive(Default)]
struct FileUndo {
    synced_len: u64,
    writes: Vec<(u64, Vec<u8>)>,
}

impl FaultyIo {
    /// A backend with no faults armed.
    pub fn new() -> Arc<FaultyIo> {
        Arc::new(FaultyIo::default())
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

    /// Loses power just before the `n`-th next mutating operation (write, sync, allocate,
    /// rename, link, unlink, mkdir): that operation and every later one fail.
    pub fn crash_after(&self, n: u64) {
        self.crash_at.store(self.ops.load(Ordering::SeqCst) + n, Ordering::SeqCst);
    }

    /// How many mutating operations went through this backend so far.
    pub fn op_count(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    /// Loses power: undoes every unsynced write, then fails every later operation.
    pub fn crash(&self) {
        self.dead.store(true, Ordering::SeqCst);
        let mut s = self.state.lock();
        for (path, undo) in s.undo.drain() {
            let Ok(file) = OpenOptions::new().write(true).open(&path) else { continue };
            for (offset, old) in undo.writes.iter().rev() {
                let _ = file.write_all_at(old, *offset);
            }
            if file.metadata().map(|m| m.len() > undo.synced_len).unwrap_or(false) {
                let _ = file.set_len(undo.synced_len);
            }
        }
    }

    /// After a [`crash`](FaultyIo::crash): operations work again.
    pub fn revive(&self) {
        self.clear_faults();
        self.crash_at.store(0, Ordering::SeqCst);
        self.dead.store(false, Ordering::SeqCst);
    }

    fn check(&self, op: FaultOp) -> io::Result<()> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let n = self.ops.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.crash_at.load(Ordering::SeqCst) {
            self.crash();
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let mut s = self.state.lock();
        let n = {
            let c = s.counts.entry(op).or_insert(0);
            *c += 1;
            *c
        };
        if let Some(f) = s.faults.get(&op) {
            if n == f.nth || (f.sticky && n > f.nth) {
                return Err(io::Error::from_raw_os_error(f.errno));
            }
        }
        Ok(())
    }

    fn dead_check(&self) -> io::Result<()> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }
}

struct FaultyFile {
    io: Arc<FaultyIo>,
    path: PathBuf,
    file: Arc<dyn IoFile>,
}

/// The backend is handed out as `Arc<dyn Io>`; files need a handle back to it.
impl Io for Arc<FaultyIo> {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn IoFile>> {
        if create && !path.exists() {
            self.check(FaultOp::Other)?;
        } else {
            self.dead_check()?;
        }
        let file = self.inner.open(path, create)?;
        let len = file.len()?;
        self.state.lock().undo.entry(path.to_path_buf()).or_insert(FileUndo { synced_len: len, writes: Vec::new() });
        Ok(Arc::new(FaultyFile { io: self.clone(), path: path.to_path_buf(), file }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(FaultOp::Rename)?;
        self.inner.rename(from, to)?;
        let mut s = self.state.lock();
        if let Some(u) = s.undo.remove(from) {
            s.undo.insert(to.to_path_buf(), u);
        }
        Ok(())
    }
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(FaultOp::Other)?;
        self.inner.hard_link(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check(FaultOp::Other)?;
        self.inner.remove_file(path)?;
        self.state.lock().undo.remove(path);
        Ok(())
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.check(FaultOp::Other)?;
        self.inner.remove_dir_all(path)?;
        self.state.lock().undo.retain(|p, _| !p.starts_with(path));
        Ok(())
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.check(FaultOp::Other)?;
        self.inner.create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.check(FaultOp::Sync)?;
        self.inner.sync_dir(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        self.dead_check()?;
        self.inner.read_dir(path)
    }
}

impl FaultyFile {
    /// Remembers what a write at `offset` of `len` bytes is about to overwrite.
    fn remember(&self, offset: u64, len: usize) -> io::Result<()> {
        let file_len = self.file.len()?;
        let mut old = vec![0u8; len.min(file_len.saturating_sub(offset) as usize)];
        let mut done = 0;
        while done < old.len() {
            let n = self.file.read_at(&mut old[done..], offset + done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        old.truncate(done);
        let mut s = self.io.state.lock();
        s.undo.entry(self.path.clone()).or_default().writes.push((offset, old));
        Ok(())
    }
}

impl IoFile for FaultyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.io.dead_check()?;
        self.file.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.io.check(FaultOp::Write)?;
        self.remember(offset, buf.len())?;
        self.file.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.io.check(FaultOp::Sync)?;
        self.file.sync_data()?;
        let len = self.file.len()?;
        let mut s = self.io.state.lock();
        let u = s.undo.entry(self.path.clone()).or_default();
        u.writes.clear();
        u.synced_len = len;
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        self.io.dead_check()?;
        self.file.len()
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        self.io.check(FaultOp::Allocate)?;
        self.file.allocate(len)
    }
    fn map(&self) -> io::Result<Mmap> {
        self.io.dead_check()?;
        self.file.map()
    }
}
