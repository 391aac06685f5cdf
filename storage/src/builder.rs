//! Writes sealed layers from a stream of entries: used by compaction (copying live
//! records) and by bulk loading (`proto/`). Entries go into frames that keep their
//! original sequence numbers; a file is closed when the next entry would take it past
//! `MMAP_MAX_SIZE`, and each closed file gets its key index.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::dimension::write_key_index;
use crate::helper::{spawn_or_run, Helper};
use crate::io::{Io, IoFile};
use crate::keyindex::Recorder;
use crate::manifest::LayerEntry;
use crate::record::{entry_len, FileHeader, FileKind, FrameBuilder, Kind, FILE_HEADER_LEN, FRAME_HEADER_LEN};
use crate::{Error, Result};

/// Frames are cut at about this size, so a copy never holds much in memory.
const FRAME_TARGET: usize = 1 << 20;

/// Frames shorter than this are gathered and written `WRITE_BUFFER` bytes at a time: a
/// compaction copies entries one frame each (each keeps its own sequence number), and a
/// `pwrite` per entry was about a third of the copying thread's time. Longer frames (a bulk
/// load's) are written as they are, since copying them would cost more than the call.
const BUFFER_FRAME_MAX: usize = 64 << 10;
const WRITE_BUFFER: usize = 1 << 20;

struct OpenFile {
    layer_id: u32,
    path: PathBuf,
    file: Arc<dyn IoFile>,
    /// Where the next frame starts.
    offset: u64,
    /// Frames ending at `offset` not yet written to `file`.
    buffered: Vec<u8>,
    /// Every entry pushed into this file, for its key index (a second pass over the file,
    /// hashing every key, was a sixth of a bulk load).
    keys: Recorder,
}

/// A finished layer: its manifest entry and where its two files are now.
pub(crate) struct BuiltLayer {
    pub entry: LayerEntry,
    pub log: PathBuf,
    pub keys: PathBuf,
}

pub(crate) struct LayerBuilder<F: FnMut() -> u32> {
    io: Arc<dyn Io>,
    /// Directory the files are written in (a staging directory).
    dir: PathBuf,
    dimension_id: u32,
    max_size: u64,
    next_id: F,
    current: Option<OpenFile>,
    frame: Option<(FrameBuilder, u64)>,
    done: Vec<BuiltLayer>,
    /// The thread closing the last full file (`finish_file`), if it may still run.
    closing: Option<Helper<Result<BuiltLayer>>>,
}

impl<F: FnMut() -> u32> LayerBuilder<F> {
    pub fn new(io: Arc<dyn Io>, dir: &Path, dimension_id: u32, max_size: u64, next_id: F) -> Self {
        LayerBuilder {
            io,
            dir: dir.to_path_buf(),
            dimension_id,
            max_size,
            next_id,
            current: None,
            frame: None,
            done: Vec::new(),
            closing: None,
        }
    }

    /// Adds an entry with its sequence number; returns (layer id, entry offset in the file).
    pub fn push(&mut self, kind: Kind, key: &[u8], value: &[u8], seq: u64) -> Result<(u32, u32)> {
        let need = entry_len(key.len(), value.len());
        let same_frame = matches!(&self.frame, Some((f, s)) if *s == seq && f.len() + need <= FRAME_TARGET);
        if !same_frame {
            self.flush_frame()?;
        }
        let frame_len = self.frame.as_ref().map_or(FRAME_HEADER_LEN, |(f, _)| f.len());
        let offset = self.current.as_ref().map_or(u64::MAX, |c| c.offset);
        if self.current.is_none() || offset + (frame_len + need) as u64 > self.max_size {
            self.flush_frame()?;
            self.finish_file()?;
            self.start_file()?;
        }
        let (frame, _) =
            self.frame.get_or_insert_with(|| (FrameBuilder::with_capacity(FRAME_TARGET.min(need * 4)), seq));
        let in_frame = frame.push(kind, key, value);
        let current =
            self.current.as_mut().ok_or_else(|| Error::corruption(&self.dir, 0, "layer builder lost its file"))?;
        let offset = (current.offset + in_frame as u64) as u32;
        current.keys.push(kind, key, value.len() as u32, offset, seq);
        Ok((current.layer_id, offset))
    }

    /// Closes the last file; returns every layer written, each synced with its key index.
    pub fn finish(mut self) -> Result<Vec<BuiltLayer>> {
        self.flush_frame()?;
        self.finish_file()?;
        self.collect()?;
        Ok(std::mem::take(&mut self.done))
    }

    /// Waits for the file being closed behind the caller, if any, and keeps its layer.
    fn collect(&mut self) -> Result<()> {
        let Some(helper) = self.closing.take() else { return Ok(()) };
        let panicked = || Error::io("close a layer file in", &self.dir)(std::io::Error::other("its thread panicked"));
        let built = helper.join().ok_or_else(panicked)?;
        self.done.push(built?);
        Ok(())
    }

    fn start_file(&mut self) -> Result<()> {
        let layer_id = (self.next_id)();
        let path = self.dir.join(format!("L{layer_id:08}.mmap"));
        let _ = self.io.remove_file(&path);
        let file = self.io.open(&path, true).map_err(Error::io("create", &path))?;
        let header = FileHeader {
            kind: FileKind::Log,
            version: crate::FORMAT_VERSION,
            dimension_id: self.dimension_id,
            layer_id,
        }
        .encode();
        file.write_all_at(&header, 0).map_err(Error::io("write", &path))?;
        self.current = Some(OpenFile {
            layer_id,
            path,
            file,
            offset: FILE_HEADER_LEN as u64,
            buffered: Vec::new(),
            keys: Recorder::default(),
        });
        Ok(())
    }

    fn flush_frame(&mut self) -> Result<()> {
        let Some((builder, seq)) = self.frame.take() else { return Ok(()) };
        if builder.count() == 0 {
            return Ok(());
        }
        let mut frame = builder.finish();
        frame.set_seq(seq);
        let current = self.current.as_mut().ok_or_else(|| Error::corruption(&self.dir, 0, "frame without a file"))?;
        if frame.len() >= BUFFER_FRAME_MAX || current.buffered.len() + frame.len() > WRITE_BUFFER {
            current.write_buffered()?;
        }
        if frame.len() < BUFFER_FRAME_MAX {
            current.buffered.extend_from_slice(frame.bytes());
        } else {
            current.file.write_all_at(frame.bytes(), current.offset).map_err(Error::io("write", &current.path))?;
        }
        current.offset += frame.len() as u64;
        Ok(())
    }

    /// Closes the current file on a thread of its own while the caller fills the next one:
    /// its last writes, its `fdatasync`, and its key index (sorting the keys, writing and
    /// syncing the file). On the caller's thread they were about a quarter of a bulk load of
    /// a million keys (`strace -f -T`: 182 ms of `fdatasync` for 24 layers, besides the
    /// sorting). One file is closed at a time; `finish` waits for the last. Nothing is
    /// published before `finish` returns (compaction commits its manifest after it, a bulk
    /// load renames its directory after it), so the order of the syncs does not matter.
    fn finish_file(&mut self) -> Result<()> {
        let Some(current) = self.current.take() else { return Ok(()) };
        self.collect()?;
        let (io, dim) = (self.io.clone(), self.dimension_id);
        let keys = self.dir.join(format!("L{:08}.keys", current.layer_id));
        match spawn_or_run("jessy-layer-close".into(), move || close_file(&*io, dim, current, keys)) {
            Ok(helper) => self.closing = Some(helper),
            Err(built) => self.done.push(built?),
        }
        Ok(())
    }
}

/// Writes what `current` still buffers, syncs it, and writes its key index at `keys`.
fn close_file(io: &dyn Io, dimension_id: u32, mut current: OpenFile, keys: PathBuf) -> Result<BuiltLayer> {
    current.write_buffered()?;
    current.file.sync_data().map_err(Error::io("fdatasync", &current.path))?;
    let recording = current.keys.encode(dimension_id, current.layer_id, current.offset as u32);
    write_key_index(io, &keys, &recording.bytes)?;
    let entry = recording.layer_entry(current.layer_id, current.offset);
    Ok(BuiltLayer { entry, log: current.path, keys })
}

impl<F: FnMut() -> u32> Drop for LayerBuilder<F> {
    /// A builder given up on (an error) still waits for the file it was closing, so that
    /// no thread writes into a staging directory after its owner removed it.
    fn drop(&mut self) {
        if let Some(helper) = self.closing.take() {
            let _ = helper.join();
        }
    }
}

impl OpenFile {
    fn write_buffered(&mut self) -> Result<()> {
        if self.buffered.is_empty() {
            return Ok(());
        }
        let at = self.offset - self.buffered.len() as u64;
        self.file.write_all_at(&self.buffered, at).map_err(Error::io("write", &self.path))?;
        self.buffered.clear();
        Ok(())
    }
}
