//! The active region: creating one crash-safely, and cutting a torn tail on open.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::io::{Io, IoFile};
use crate::record::{FileHeader, FileKind, FILE_HEADER_LEN};
use crate::segment::Segment;
use crate::{Durability, Error, Result};

/// Grows a region file to `len` bytes. Under `Immediate` every append is synced on its own,
/// so the space is written with zeros first: the append is then an overwrite, and its
/// `fdatasync` has no extent to convert. Otherwise appends are synced in bulk, if at all,
/// and writing the space twice (zeros, then the frames) was a tenth of a bulk load's time:
/// the blocks are only reserved. Either way no later append can run out of space.
pub(crate) fn grow(file: &dyn IoFile, len: u64, durability: Durability) -> std::io::Result<()> {
    match durability {
        Durability::Immediate => file.allocate(len),
        Durability::Periodic(_) | Durability::None => file.reserve(len),
    }
}

/// Creates a region file at `dest` holding only its header, with `size` bytes allocated.
/// It is built under `temp/`, synced, then renamed into place, so `dest` is either the old
/// file or a complete new one, never half-made.
pub(crate) fn create(
    io: &dyn Io,
    temp_dir: &Path,
    dest: &Path,
    dimension_id: u32,
    layer_id: u32,
    size: u64,
    durability: Durability,
) -> Result<()> {
    let (tmp, file) = build(io, temp_dir, dimension_id, layer_id, size, durability)?;
    let result = put_in_place(io, &*file, &tmp, dest);
    if result.is_err() {
        let _ = io.remove_file(&tmp);
    }
    result
}

/// The first half of `create`: a region file under `temp/` holding its header, with `size`
/// bytes allocated, neither synced nor in place. A seal behind the writer (see
/// `DimInner::seal_behind`) lets writes go into it before `put_in_place`; open removes
/// whatever `temp/` holds, so a crash before then takes those writes and nothing else.
pub(crate) fn build(
    io: &dyn Io,
    temp_dir: &Path,
    dimension_id: u32,
    layer_id: u32,
    size: u64,
    durability: Durability,
) -> Result<(PathBuf, Arc<dyn IoFile>)> {
    let tmp = temp_dir.join(format!("region-D{dimension_id:02}-L{layer_id:08}-{}.tmp", unique()));
    let file = io.open(&tmp, true).map_err(Error::io("create", &tmp))?;
    let header = FileHeader { kind: FileKind::Log, version: crate::FORMAT_VERSION, dimension_id, layer_id }.encode();
    let result = (|| {
        grow(&*file, size, durability).map_err(Error::io("allocate", &tmp))?;
        file.write_all_at(&header, 0).map_err(Error::io("write", &tmp))
    })();
    match result {
        Ok(()) => Ok((tmp, file)),
        Err(e) => {
            let _ = io.remove_file(&tmp);
            Err(e)
        }
    }
}

/// The second half of `create`: syncs the file built at `tmp` (its header, and whatever
/// was written into it since), renames it to `dest` and syncs the directory. The sync
/// comes first so that `dest` never names a file whose header a crash could take back.
pub(crate) fn put_in_place(io: &dyn Io, file: &dyn IoFile, tmp: &Path, dest: &Path) -> Result<()> {
    file.sync_data().map_err(Error::io("fdatasync", tmp))?;
    io.rename(tmp, dest).map_err(Error::io("rename", tmp))?;
    let dir = dest.parent().unwrap_or(Path::new("."));
    io.sync_dir(dir).map_err(Error::io("fsync directory", dir))
}

/// A name part that no two calls in this process share.
pub(crate) fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// After the last whole frame, a region must hold only zeros: stale frames from before a
/// crash could otherwise come back to life once new writes close the gap in front of them.
/// Returns how many bytes were zeroed.
pub(crate) fn scrub_tail(io: &dyn Io, path: &Path, map: &[u8], end: usize) -> Result<usize> {
    let tail = &map[end.max(FILE_HEADER_LEN).min(map.len())..];
    let Some(last) = tail.iter().rposition(|&b| b != 0) else { return Ok(0) };
    let n = last + 1;
    let file = io.open(path, false).map_err(Error::io("open", path))?;
    crate::io::write_zeros(&*file, end as u64, (end + n) as u64).map_err(Error::io("write", path))?;
    file.sync_data().map_err(Error::io("fdatasync", path))?;
    Ok(n)
}

/// Under `Immediate`, writes zeros over the active region's free space where it is only
/// reserved (`fallocate`: the store was last written under `None` or `Periodic`), and syncs
/// them. A durable append into reserved blocks converts them to written ones, which makes
/// its `fdatasync` dearer (here an 18.6 KB `pwrite` + `fdatasync` took a p50 of ~150 µs in
/// reserved space against ~90 in written zeros, and a 210-byte one that reached a new block
/// ~150 against ~85): after a bulk load under `None`, every durable commit into the rest of
/// that region paid it. Best effort: appends into reserved blocks are correct, only slower,
/// so a failure is logged and the store opens; nothing but these zeros is dirty yet, so a
/// failed sync here hides no one's data from a later sync. The caller finds reserved space
/// with `IoFile::first_hole` (`SEEK_HOLE`), and `end` is the end of the log: the file system
/// counts reserved blocks whose pages are mapped (the recovery scan read them) as data, so
/// the first hole it reports may lie past the first reserved block.
pub(crate) fn write_reserved_tail(region: &Segment, end: u64, capacity: u64) {
    if end >= capacity {
        return;
    }
    let file = &*region.file;
    match crate::io::write_zeros(file, end, capacity).and_then(|()| file.sync_data()) {
        Ok(()) => {
            tracing::debug!(file = %region.path().display(), from = end, to = capacity, "wrote zeros over reserved space")
        }
        Err(e) => {
            tracing::warn!(file = %region.path().display(), error = %e, "could not write zeros over the region's reserved space; durable appends into it are slower")
        }
    }
}
