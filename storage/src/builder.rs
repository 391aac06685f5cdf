//! Writes sealed layers from a stream of entries: used by compaction (copying live
//! records) and by bulk loading (`proto/`). Entries go into frames that keep their
//! original sequence numbers; a file is closed when the next entry would take it past
//! `MMAP_MAX_SIZE`, and each closed file gets its key index.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::dimension::{write_key_index, IndexKey};
use crate::io::{Io, IoFile};
use crate::keyindex::{self, KeyItem};
use crate::layout::DimPaths;
use crate::manifest::LayerEntry;
use crate::record::{entry_len, FileHeader, FileKind, FrameBuilder, Kind, FILE_HEADER_LEN, FRAME_HEADER_LEN};
use crate::{Error, Result};

/// Frames are cut at about this size, so a copy never holds much in memory.
const FRAME_TARGET: usize = 1 << 20;

struct OpenFile {
    layer_id: u32,
    path: PathBuf,
    file: Arc<dyn IoFile>,
    /// Where the next frame starts.
    offset: u64,
    /// Every entry pushed into this file, for its key index: recorded while writing, so
    /// finishing the file needs no second pass over it (that pass, hashing every key, was
    /// a sixth of a bulk load).
    items: Vec<Item>,
}

/// An entry written: what its key index item needs.
struct Item {
    key: IndexKey,
    kind: Kind,
    value_len: u32,
    offset: u32,
    seq: u64,
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
        let (key, value_len) = (IndexKey::from_slice(key), value.len() as u32);
        current.items.push(Item { key, kind, value_len, offset, seq });
        Ok((current.layer_id, offset))
    }

    /// Closes the last file; returns every layer written.
    pub fn finish(mut self) -> Result<Vec<BuiltLayer>> {
        self.flush_frame()?;
        self.finish_file()?;
        Ok(std::mem::take(&mut self.done))
    }

    fn start_file(&mut self) -> Result<()> {
        let layer_id = (self.next_id)();
        let path = self.dir.join(format!("L{layer_id:08}.mmap"));
        let _ = self.io.remove_file(&path);
        let file = self.io.open(&path, true).map_err(Error::io("create", &path))?;
        let header = FileHeader { kind: FileKind::Log, dimension_id: self.dimension_id, layer_id }.encode();
        file.write_all_at(&header, 0).map_err(Error::io("write", &path))?;
        self.current = Some(OpenFile { layer_id, path, file, offset: FILE_HEADER_LEN as u64, items: Vec::new() });
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
        current.file.write_all_at(frame.bytes(), current.offset).map_err(Error::io("write", &current.path))?;
        current.offset += frame.len() as u64;
        Ok(())
    }

    fn finish_file(&mut self) -> Result<()> {
        let Some(mut current) = self.current.take() else { return Ok(()) };
        current.file.sync_data().map_err(Error::io("fdatasync", &current.path))?;
        let keys = self.dir.join(format!("L{:08}.keys", current.layer_id));
        let records = current.items.len() as u64;
        let min_seq = current.items.iter().map(|i| i.seq).min().unwrap_or(0);
        let max_seq = current.items.iter().map(|i| i.seq).max().unwrap_or(0);
        // A key's newest entry in the file is its last one: a stable sort by key keeps the
        // entries of one key in the order they were written.
        let items = &mut current.items;
        items.sort_by(|a, b| a.key.cmp(&b.key));
        let newest = items.iter().enumerate().filter(|(i, it)| items.get(i + 1).is_none_or(|next| next.key != it.key));
        let index_items = newest.map(|(_, it)| KeyItem {
            kind: it.kind,
            key: &it.key,
            value_len: it.value_len,
            offset: it.offset,
            seq: it.seq,
        });
        let bytes = keyindex::encode(self.dimension_id, current.layer_id, current.offset as u32, index_items);
        write_key_index(&*self.io, &keys, &bytes)?;
        let entry = LayerEntry {
            layer_id: current.layer_id,
            file: DimPaths::layer_rel(current.layer_id),
            keys_file: DimPaths::keys_rel(current.layer_id),
            offset: FILE_HEADER_LEN as u64,
            size: current.offset - FILE_HEADER_LEN as u64,
            records,
            live_bytes: 0,
            min_seq,
            max_seq,
        };
        self.done.push(BuiltLayer { entry, log: current.path, keys });
        Ok(())
    }
}
