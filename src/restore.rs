//! `jessy restore`: replace the store with the contents of a backup archive.
//!
//! 1. Refuse a non-empty store unless `--force` (and a store some process holds, always).
//! 2. Take the store's lock, so nothing opens it meanwhile.
//! 3. Extract the archive into a staging directory, `DIR/temp/restore-*`: inside the data
//!    directory rather than beside it, so the final rename never crosses file systems (the
//!    data directory is often a volume mount point), and so a crashed restore leaves only
//!    scratch that the next open sweeps. Only directories and regular files under
//!    `consciousness/` are accepted: an absolute path, a `..`, a link or a device entry
//!    rejects the whole archive before anything is swapped in.
//! 4. Open the staged store and verify every checksum.
//! 5. Swap the staged `consciousness/` into place: one `renameat2(RENAME_EXCHANGE)` on
//!    Linux (the old data goes into the staging directory, then is deleted), two renames
//!    where that is not supported.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write as _};
use std::os::fd::AsRawFd as _;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, Context as _};
use jessy_storage::{Error, Store};

use crate::common::{byte_spinner, has_store, is_dir_name, locked, StoreOpts};
use crate::init::write_readme;
use crate::Failure;

/// The flags of `jessy restore`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreOpts,
    /// The archive (`jessy backup`, `GET /v1/snapshot`, or `tar -czf` of consciousness/);
    /// `-` reads standard input
    #[arg(value_name = "FILE.tar.gz")]
    file: PathBuf,
    /// Replace a store that holds data (its current contents are lost)
    #[arg(long)]
    force: bool,
}

/// Restores the archive into the data directory (see the module docs for the steps).
pub fn run(args: Args) -> Result<(), Failure> {
    let config = args.store.config()?;
    let base = config.base_path_ref().to_path_buf();
    let from_stdin = args.file.as_os_str() == "-";
    let source = if from_stdin { "standard input".to_string() } else { args.file.display().to_string() };

    let input: Box<dyn Read> = if from_stdin {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(File::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?)
    };

    if has_store(&base) {
        match Store::open_config(config.clone()) {
            Ok(store) => {
                let stats = store.stats();
                let keys: u64 = stats.dimensions.iter().map(|d| d.keys).sum();
                let dims = stats.dimensions.len();
                store.close().context("closing the current store")?;
                if (dims > 1 || keys > 0) && !args.force {
                    return Err(anyhow!(
                        "the store in {} is not empty ({dims} dimension(s), {keys} key(s)); restoring replaces it: \
                         pass --force to do that, or restore into an empty --data directory",
                        base.display()
                    )
                    .into());
                }
            }
            Err(Error::Locked { holder, .. }) => return Err(locked(&base, &holder)),
            Err(e) if args.force => {
                eprintln!("jessy: the current store does not open ({e}); replacing it as --force asks");
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!(
                        "the current store in {} does not open; pass --force to replace it anyway",
                        base.display()
                    ))
                    .into())
            }
        }
    }

    // What this restore creates is removed again if it fails, so a failed restore leaves
    // nothing behind: not a new data directory (and its parents), nor jessy.lock or temp/ in
    // an existing one. Dropped after the staging directory, before the lock is released.
    let mut undo = UndoCreated::before(&base);
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let _lock = match DirLock::acquire(&base) {
        Ok(lock) => lock,
        Err(e) => {
            // Someone else's store (or a race with one): touch nothing.
            undo.disarm();
            return Err(e);
        }
    };
    let mut undo_on_failure = undo.take();
    let staging = base.join("temp").join(format!(
        "restore-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    ));
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let _cleanup = RemoveOnDrop(staging.clone());

    let bar = byte_spinner("extracting");
    let extracted = extract(input, &staging, &bar).with_context(|| format!("restoring from {source}"));
    bar.finish_and_clear();
    let files = extracted?;
    let staged_root = staging.join("consciousness");
    if !staged_root.is_dir() {
        return Err(anyhow!("{source} holds no consciousness/ directory: it is not a Jessy backup").into());
    }

    check_manifests(&staged_root, &source)?;

    // Open the staged copy (a store of its own) and check every checksum before using it.
    // Names are shown as in the archive (`consciousness/D01/...`), not under the staging dir.
    let in_archive = |p: &Path| p.strip_prefix(&staging).unwrap_or(p).display().to_string();
    let staged = match Store::open_with(&staging, config.clone()) {
        Ok(store) => store,
        Err(Error::MissingFiles(files)) => {
            let names: Vec<String> = files.iter().map(|f| in_archive(f)).collect();
            return Err(anyhow!(
                "{source} is incomplete: index.json lists {} file(s) the archive does not have: {}; it is not a \
                 whole backup (a copy taken while the store was compacting, or a cut or hand-made archive); \
                 nothing was changed",
                names.len(),
                names.join(", ")
            )
            .into());
        }
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("the store in {source} does not open; nothing was changed"))
                .into())
        }
    };
    let report = staged.verify();
    if !report.is_ok() {
        let list: Vec<String> = report
            .problems
            .iter()
            .map(|p| format!("{} at offset {}: {}", in_archive(&p.file), p.offset, p.what))
            .collect();
        return Err(anyhow!(
            "the store in {source} is damaged ({} problem(s)); nothing was changed:\n  {}",
            list.len(),
            list.join("\n  ")
        )
        .into());
    }
    let stats = staged.stats();
    staged.close().context("closing the staged store")?;
    let keys: u64 = stats.dimensions.iter().map(|d| d.keys).sum();

    swap_into_place(&staged_root, &base.join("consciousness"), &staging)?;
    // The restored store is in place: from here on, what was created stays.
    undo_on_failure.disarm();
    File::open(&base).and_then(|d| d.sync_all()).with_context(|| format!("syncing {}", base.display()))?;
    write_readme(&base)?;
    println!(
        "restored {} dimension(s) ({keys} key(s), {files} files) from {source} into {}",
        stats.dimensions.len(),
        base.display()
    );
    Ok(())
}

/// Extracts the accepted entries of a `.tar.gz` (or plain `.tar`) into `dest`; returns the
/// number of files.
///
/// The archive counts as whole only when it is read to its very end: every entry's data in
/// full, the tar end-of-archive marker (two 512-byte zero blocks) and nothing but zeros after
/// it, and, for a `.tar.gz`, every gzip member's CRC-32 and length checked ([`GzipMembers`]).
/// A tar cut off at an entry boundary or a gzip stream with a flipped byte is refused here,
/// before anything is opened or swapped in.
fn extract(input: Box<dyn Read>, dest: &Path, bar: &indicatif::ProgressBar) -> anyhow::Result<u64> {
    let mut input = BufReader::with_capacity(1 << 20, input);
    let gzip = input.fill_buf().context("reading the archive")?.starts_with(&GZIP_MAGIC);
    let reader: Box<dyn Read> = if gzip { Box::new(GzipMembers::new(input)) } else { Box::new(input) };
    let mut archive = tar::Archive::new(reader);
    let mut files = 0;
    for entry in archive.entries().context("reading the archive")? {
        let mut entry = entry.context("reading the archive")?;
        let raw = entry.path().context("reading an entry's name")?.into_owned();
        let kind = entry.header().entry_type();
        let rel = match checked_path(&raw) {
            Ok(Some(rel)) => rel,
            Ok(None) if kind.is_dir() => continue, // "./"
            Ok(None) => return Err(anyhow!("entry {:?} has an empty name", raw)),
            Err(reason) => return Err(anyhow!("rejected entry {:?}: {reason}; nothing was restored", raw)),
        };
        let target = dest.join(&rel);
        match kind {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
                }
                let size = entry.size();
                let mut out = File::create(&target).with_context(|| format!("creating {}", target.display()))?;
                let n = std::io::copy(&mut entry, &mut out).with_context(|| format!("extracting {:?}", raw))?;
                if n != size {
                    return Err(anyhow!(
                        "the archive is truncated: entry {:?} should have {size} bytes and has {n}; \
                         nothing was restored",
                        raw
                    ));
                }
                out.flush().and_then(|()| out.sync_all()).with_context(|| format!("syncing {}", target.display()))?;
                bar.inc(n);
                files += 1;
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
            other => {
                return Err(anyhow!(
                    "rejected entry {:?}: it is a {other:?}, and only directories and regular files are accepted; \
                     nothing was restored",
                    raw
                ))
            }
        }
    }
    check_end(archive.into_inner())?;
    sync_dirs(&dest.join("consciousness"));
    Ok(files)
}

/// The first two bytes of a gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads what follows the last tar entry to the end of the input. The tar reader stops at
/// the first zero block, or at the end of the input when there is none; a whole archive has
/// its end-of-archive marker (two zero blocks), possibly padded with more zeros to a record
/// size, and nothing else. Reading to the end also makes the gzip layer check its trailers.
fn check_end(mut rest: impl Read) -> anyhow::Result<()> {
    const TAR_BLOCK: u64 = 512;
    let mut buf = vec![0u8; 64 << 10];
    let mut zeros = 0u64;
    loop {
        let n = match rest.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(anyhow::Error::new(e).context("reading the archive to its end (the gzip checksum)"));
            }
        };
        if let Some(at) = buf[..n].iter().position(|&b| b != 0) {
            return Err(anyhow!(
                "the archive has data after its end-of-archive marker (at byte {} past the last entry); \
                 it is not one whole tar archive",
                TAR_BLOCK + zeros + at as u64
            ));
        }
        zeros += n as u64;
    }
    // The reader consumed the first zero block (if there was one); the second must follow.
    if zeros < TAR_BLOCK {
        return Err(anyhow!(
            "the archive is truncated: it ends without tar's end-of-archive marker (two 512-byte zero \
             blocks), so entries after the last one read may be missing; use a complete copy of the backup"
        ));
    }
    Ok(())
}

/// The decompressed bytes of a gzip stream: one member, or several in a row (as `cat a.gz
/// b.gz` makes). flate2 checks each member's CRC-32 and length when it reaches the member's
/// end, and fails on a mismatch; zero bytes after the last member (padding some tools add,
/// which `gzip -d` ignores) are accepted, anything else after it is an error.
struct GzipMembers<R: BufRead> {
    /// The member being read; `None` once the input is used up.
    member: Option<flate2::bufread::GzDecoder<R>>,
}

impl<R: BufRead> GzipMembers<R> {
    fn new(input: R) -> GzipMembers<R> {
        GzipMembers { member: Some(flate2::bufread::GzDecoder::new(input)) }
    }
}

impl<R: BufRead> Read for GzipMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let Some(member) = self.member.as_mut() else { return Ok(0) };
            let n = member.read(buf).map_err(|e| match e.kind() {
                ErrorKind::InvalidInput | ErrorKind::InvalidData | ErrorKind::UnexpectedEof => std::io::Error::new(
                    e.kind(),
                    format!("the gzip data is damaged ({e}); use an intact copy of the backup"),
                ),
                _ => e,
            })?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // The member ended and its checksum and length matched. What follows?
            let Some(member) = self.member.take() else { return Ok(0) };
            let mut input = member.into_inner();
            let next = input.fill_buf()?;
            match next.first() {
                None => return Ok(0),
                Some(&b) if b == GZIP_MAGIC[0] => self.member = Some(flate2::bufread::GzDecoder::new(input)),
                Some(0) => loop {
                    let chunk = input.fill_buf()?;
                    if chunk.is_empty() {
                        return Ok(0);
                    }
                    if chunk.iter().any(|&b| b != 0) {
                        return Err(trailing_garbage());
                    }
                    let len = chunk.len();
                    input.consume(len);
                },
                Some(_) => return Err(trailing_garbage()),
            }
        }
    }
}

fn trailing_garbage() -> std::io::Error {
    std::io::Error::new(
        ErrorKind::InvalidData,
        "the file goes on after the end of its gzip data with bytes that are neither another gzip member \
         nor zero padding; it is damaged or not one archive",
    )
}

/// Every dimension directory in the archive (`consciousness/Dnn/`) must have its manifest,
/// `index.json`: without it, opening would rebuild one from whatever layer files are there,
/// and a backup that lost files would restore as if it were whole. (That every file a
/// manifest lists is in the archive is checked by opening the staged store.)
fn check_manifests(root: &Path, source: &str) -> Result<(), Failure> {
    let entries = std::fs::read_dir(root).with_context(|| format!("reading {}", root.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", root.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_dir_name(name) && entry.path().is_dir() && !entry.path().join("index.json").is_file() {
            return Err(anyhow!(
                "{source} is incomplete: it has consciousness/{name}/ but no consciousness/{name}/index.json (the \
                 dimension's manifest); it is not a whole backup; nothing was changed"
            )
            .into());
        }
    }
    Ok(())
}

/// The entry's path, relative and under `consciousness/`; `Ok(None)` for `.` itself.
fn checked_path(path: &Path) -> Result<Option<PathBuf>, String> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("it contains `..`".into()),
            Component::RootDir | Component::Prefix(_) => return Err("it is an absolute path".into()),
        }
    }
    if out.as_os_str().is_empty() {
        return Ok(None);
    }
    if out.components().next() != Some(Component::Normal("consciousness".as_ref())) {
        return Err("it is outside consciousness/".into());
    }
    Ok(Some(out))
}

/// fsyncs every directory under `root` (best effort: the files were synced one by one).
fn sync_dirs(root: &Path) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(e.path());
                }
            }
        }
        let _ = File::open(&dir).and_then(|d| d.sync_all());
    }
}

/// Puts `staged` at `live`; the old `live` (if any) ends up inside `staging`, to be deleted.
fn swap_into_place(staged: &Path, live: &Path, staging: &Path) -> Result<(), Failure> {
    if !live.exists() {
        std::fs::rename(staged, live)
            .with_context(|| format!("renaming {} to {}", staged.display(), live.display()))?;
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        match exchange(staged, live) {
            Ok(()) => return Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {}
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("exchanging {} and {}", staged.display(), live.display()))
                    .into())
            }
        }
    }
    let old = staging.join("replaced-consciousness");
    std::fs::rename(live, &old).with_context(|| format!("moving {} aside", live.display()))?;
    std::fs::rename(staged, live).with_context(|| format!("renaming {} to {}", staged.display(), live.display()))?;
    Ok(())
}

/// Atomically exchanges two paths (`renameat2(RENAME_EXCHANGE)`).
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt as _;
    let a = CString::new(a.as_os_str().as_bytes())?;
    let b = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: two valid NUL-terminated paths that outlive the call; no memory is shared.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The store's lock (`DIR/jessy.lock`, the engine's `flock`), held while the restore runs.
struct DirLock {
    _file: File,
}

impl DirLock {
    fn acquire(base: &Path) -> Result<DirLock, Failure> {
        let path = base.join("jessy.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = if holder.trim().is_empty() { "unknown".to_string() } else { holder.trim().to_string() };
                return Err(locked(base, &holder));
            }
            return Err(anyhow::Error::new(err).context(format!("locking {}", path.display())).into());
        }
        let pid = format!("pid {}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.write_all(pid.as_bytes()))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(DirLock { _file: file })
    }
}

/// The paths a restore creates in and above the data directory, deleted on drop unless
/// disarmed: the topmost directory that did not exist (the data directory itself or a parent;
/// everything under it is the restore's), else `jessy.lock` and `temp/` if they were not there.
#[derive(Default)]
struct UndoCreated {
    paths: Vec<PathBuf>,
}

impl UndoCreated {
    /// Notes what does not exist yet, before anything is created.
    fn before(base: &Path) -> UndoCreated {
        let mut paths = Vec::new();
        let top_missing = base.ancestors().take_while(|p| !p.as_os_str().is_empty() && !p.exists()).last();
        match top_missing {
            Some(top) => paths.push(top.to_path_buf()),
            None => {
                for name in ["jessy.lock", "temp"] {
                    let path = base.join(name);
                    if path.symlink_metadata().is_err() {
                        paths.push(path);
                    }
                }
            }
        }
        UndoCreated { paths }
    }

    /// Moves the duty into a new value (the one dropped at the right moment).
    fn take(&mut self) -> UndoCreated {
        std::mem::take(self)
    }

    /// Keeps everything.
    fn disarm(&mut self) {
        self.paths.clear();
    }
}

impl Drop for UndoCreated {
    fn drop(&mut self) {
        for path in self.paths.drain(..) {
            let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        }
    }
}

/// Deletes the staging directory however the restore ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relative_paths_under_consciousness_pass() {
        assert_eq!(
            checked_path(Path::new("consciousness/D01/index.json")).unwrap(),
            Some("consciousness/D01/index.json".into())
        );
        assert_eq!(checked_path(Path::new("./consciousness/D01")).unwrap(), Some("consciousness/D01".into()));
        assert_eq!(checked_path(Path::new("./")).unwrap(), None);
        assert!(checked_path(Path::new("../evil")).is_err());
        assert!(checked_path(Path::new("consciousness/../../evil")).is_err());
        assert!(checked_path(Path::new("/etc/passwd")).is_err());
        assert!(checked_path(Path::new("jessy.lock")).is_err());
        assert!(checked_path(Path::new("consciousnessX/D01")).is_err());
    }
}
