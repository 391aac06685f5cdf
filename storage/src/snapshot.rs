//! Consistent copies of a live store: `snapshot` into a directory, `backup` as a stream.
//!
//! Per dimension, under its writer lock, the active region is synced and its durable end,
//! the manifest and the sealed segments are captured; the lock is then released and the
//! copy proceeds while the store serves. Sealed layers are immutable, so they are
//! hard-linked (or copied from their map when linking fails, e.g. across file systems, or
//! when a compaction has unlinked them since); the active region is copied up to the
//! captured end; `index.json` is written last. Compaction of that dimension waits until
//! its copy is done.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::dimension::DimInner;
use crate::io::Io;
use crate::layout::{dir_name, DimPaths, CONSCIOUSNESS};
use crate::manifest::Manifest;
use crate::segment::Segment;
use crate::{Error, Result};

/// What a dimension looks like at the instant of the snapshot.
pub(crate) struct Capture {
    pub manifest: Manifest,
    pub region: Arc<Segment>,
    pub region_end: usize,
    /// The region's records end with a sync mark (the last close left one, nothing since).
    pub ends_with_mark: bool,
    pub sealed: Vec<(u32, Arc<Segment>)>,
}

/// Copies one dimension into `dest` (the snapshot's `consciousness/Dnn`).
pub(crate) fn copy_dimension(io: &dyn Io, dim: &DimInner, dest: &Path) -> Result<()> {
    let _no_compaction = dim.compacting.lock();
    let cap = dim.capture()?;
    // The newest layer captured may still be getting its key index (dimension.rs,
    // `seal_synced`).
    dim.finish_key_index();
    let out = DimPaths::at(dest);
    io.create_dir_all(&out.layers()).map_err(Error::io("create directory", out.layers()))?;
    for (layer, seg) in &cap.sealed {
        let target = out.layer(*layer);
        if io.hard_link(&seg.path(), &target).is_err() {
            write_file(io, &target, &seg.map(), &[])?;
        }
        let keys = dim.paths.keys(*layer);
        // The key index is derived data: if it cannot be linked, open rebuilds it.
        if io.hard_link(&keys, &out.keys(*layer)).is_err() {
            tracing::debug!(file = %keys.display(), "key index not copied into the snapshot; open will rebuild it");
        }
    }
    let region = &cap.region.map()[..cap.region_end];
    // Everything copied was synced (the capture syncs first): a sync mark after it (format
    // version 2) makes the copy's first open report damage to any of its frames, where it
    // would otherwise cut damage to the last ones as a torn tail.
    let mark =
        (cap.region.version >= 2 && !cap.ends_with_mark).then(|| crate::record::sync_mark(cap.manifest.last_seq));
    write_file(io, &out.region(), region, mark.as_ref().map_or(&[][..], |m| &m[..]))?;
    io.sync_dir(&out.layers()).map_err(Error::io("fsync directory", out.layers()))?;
    cap.manifest.store(io, &out.manifest())
}

/// Writes `bytes` and then `tail` into a new file at `path`, and syncs it.
fn write_file(io: &dyn Io, path: &Path, bytes: &[u8], tail: &[u8]) -> Result<()> {
    let f = io.open(path, true).map_err(Error::io("create", path))?;
    let mut at = 0;
    for chunk in bytes.chunks(4 << 20).chain([tail]) {
        f.write_all_at(chunk, at).map_err(Error::io("write", path))?;
        at += chunk.len() as u64;
    }
    f.sync_data().map_err(Error::io("fdatasync", path))
}

/// Writes a snapshot of `dims` into `dest` (which must be absent or empty).
pub(crate) fn snapshot(io: &dyn Io, dims: &[Arc<DimInner>], dest: &Path) -> Result<()> {
    if let Ok(mut entries) = std::fs::read_dir(dest) {
        if entries.next().is_some() {
            return Err(Error::InvalidConfig {
                name: "snapshot directory",
                value: dest.display().to_string(),
                reason: "must be empty or not exist yet".into(),
            });
        }
    }
    let root = dest.join(CONSCIOUSNESS);
    io.create_dir_all(&root).map_err(Error::io("create directory", &root))?;
    for d in dims {
        copy_dimension(io, d, &root.join(dir_name(d.id)))?;
    }
    io.sync_dir(&root).map_err(Error::io("fsync directory", &root))
}

/// Streams the snapshot in `dir` as a `.tar.gz` whose entries are `consciousness/...`.
pub(crate) fn write_tar_gz<W: Write>(dir: &Path, out: W) -> Result<W> {
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    let root: PathBuf = dir.join(CONSCIOUSNESS);
    tar.append_dir_all(CONSCIOUSNESS, &root).map_err(Error::io("archive", &root))?;
    let gz = tar.into_inner().map_err(Error::io("archive", &root))?;
    gz.finish().map_err(Error::io("compress", &root))
}
