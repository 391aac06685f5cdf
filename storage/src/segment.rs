//! A log file of one dimension (the active region or a sealed layer), memory-mapped.
//!
//! Readers get values straight out of the map. The active region grows in place; when it
//! does, it is mapped again and the old map lives on for as long as a [`Value`] holds it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use parking_lot::RwLock;

use crate::io::{Io, IoFile};
use crate::record::{
    decode_entry, decode_frame, decode_header, Entry, FileHeader, FileKind, FrameHeader, Invalid, Kind, FILE_HEADER_LEN,
};
use crate::value::ValueRef;
use crate::{Error, Result, Value, Version};

pub(crate) struct Segment {
    pub layer_id: u32,
    /// The file's format version (its header's): frames get the synced-before bit only in
    /// files of version 2 or later, which a build that does not know the bit refuses.
    pub version: u32,
    pub file: Arc<dyn IoFile>,
    path: RwLock<PathBuf>,
    map: RwLock<Arc<Mmap>>,
}

impl Segment {
    /// Opens and maps a log file, checking its header.
    pub fn open(io: &dyn Io, path: &Path, dimension_id: u32) -> Result<Segment> {
        let file = io.open(path, false).map_err(Error::io("open", path))?;
        let map = file.map().map_err(Error::io("mmap", path))?;
        let header = FileHeader::decode(&map, FileKind::Log).map_err(|reason| Error::corruption(path, 0, reason))?;
        if header.dimension_id != dimension_id {
            return Err(Error::corruption(
                path,
                0,
                format!("file belongs to dimension {}, found in dimension {dimension_id}", header.dimension_id),
            ));
        }
        Ok(Segment {
            layer_id: header.layer_id,
            version: header.version,
            file,
            path: RwLock::new(path.to_path_buf()),
            map: RwLock::new(Arc::new(map)),
        })
    }

    pub fn path(&self) -> PathBuf {
        self.path.read().clone()
    }

    pub fn set_path(&self, path: PathBuf) {
        *self.path.write() = path;
    }

    pub fn map(&self) -> Arc<Mmap> {
        self.map.read().clone()
    }

    /// Maps the file again after it grew.
    pub fn remap(&self) -> Result<()> {
        let map = self.file.map().map_err(Error::io("mmap", self.path()))?;
        *self.map.write() = Arc::new(map);
        Ok(())
    }

    /// Reads and verifies the entry at `offset` of `map`, which the index says holds `key`;
    /// a put becomes a [`ValueRef`] into `map`. See [`value_span`].
    #[inline]
    pub fn read_value<'m>(
        &self,
        map: &'m Arc<Mmap>,
        offset: u32,
        version: Version,
        expect_key: &[u8],
    ) -> Result<ValueRef<'m>> {
        let (start, len) = value_span(map, offset, expect_key)
            .map_err(|reason| Error::corruption(self.path(), offset as u64, reason))?;
        Ok(ValueRef::new(map, start, len, version))
    }
}

/// Reads and verifies the entry at `offset` of `map`, which the index says holds
/// `expect_key`; a put becomes a [`Value`] that keeps `map` alive. See [`value_span`].
#[inline]
pub(crate) fn value_at(
    map: Arc<Mmap>,
    offset: u32,
    version: Version,
    expect_key: &[u8],
) -> std::result::Result<Value, &'static str> {
    let (start, len) = value_span(&map, offset, expect_key)?;
    Ok(Value::new(map, start, len, version))
}

/// Where the value of the put at `offset` of `map` is (start, length), once the entry's
/// checksum holds and its key is `expect_key`. Checking the key too means a wrong location
/// in the index (a bug, or a file swapped under us) is reported instead of answered with
/// another key's value. The error is what is wrong there.
#[inline]
fn value_span(map: &[u8], offset: u32, expect_key: &[u8]) -> std::result::Result<(usize, usize), &'static str> {
    let at = offset as usize;
    match decode_entry(map.get(at..).unwrap_or(&[])) {
        Ok((Entry { kind: Kind::Put, key, value }, _)) if key == expect_key => {
            Ok((at + crate::record::ENTRY_HEADER_LEN + key.len(), value.len()))
        }
        Ok((Entry { kind: Kind::Put, .. }, _)) => Err("entry holds another key than the index says"),
        Ok(_) => Err("index points at a delete entry"),
        Err(Invalid::Bad(reason)) => Err(reason),
        Err(_) => Err("entry runs past the end of the file"),
    }
}

/// The outcome of walking the frames of a log.
pub(crate) struct Scan {
    /// Where the last whole frame ends.
    pub end: usize,
    /// Why the walk stopped before `limit`, if it did for another reason than clean zeros.
    pub stopped: Option<(usize, &'static str)>,
}

/// The offset of a valid frame with the synced-before bit (`record::SYNCED_BEFORE`) among
/// those that follow the frame at `from`, which failed its checks: found by walking from
/// the end that frame's own header gives, frame by frame, as long as they are valid. Only a
/// frame whose header is intact says where the next one starts; bytes at other offsets may
/// be anything, a value holding a copy of a frame included, so they prove nothing (searching
/// every offset let a stored value, or a copy of a running store's files, pass for evidence).
/// So damage to a frame's 24-byte header, or zeros where one should be, is taken for a torn
/// tail, as before this bit existed.
pub(crate) fn synced_frame_after(log: &[u8], from: usize) -> Option<usize> {
    let damaged = decode_header(log.get(from..)?).ok()?;
    let mut at = from.checked_add(damaged.total_len())?;
    loop {
        let (header, _) = decode_frame(log.get(at..)?).ok()?;
        if header.synced_before {
            return Some(at);
        }
        at += header.total_len();
    }
}

/// Walks the frames of `log[FILE_HEADER_LEN..limit]`, calling `each` for every whole,
/// verified frame with its offset and entries (offsets relative to the file).
pub(crate) fn scan_frames<'a>(
    log: &'a [u8],
    limit: usize,
    mut each: impl FnMut(usize, &FrameHeader, &[(usize, Entry<'a>)]),
) -> Scan {
    let limit = limit.min(log.len());
    let mut at = FILE_HEADER_LEN;
    while at < limit {
        match decode_frame(&log[at..limit]) {
            Ok((header, entries)) => {
                let abs: Vec<(usize, Entry<'a>)> = entries.into_iter().map(|(o, e)| (at + o, e)).collect();
                each(at, &header, &abs);
                at += header.total_len();
            }
            Err(Invalid::End) => return Scan { end: at, stopped: None },
            Err(Invalid::Truncated) => return Scan { end: at, stopped: Some((at, "frame cut short")) },
            Err(Invalid::Bad(reason)) => return Scan { end: at, stopped: Some((at, reason)) },
        }
    }
    Scan { end: at, stopped: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{mark_synced_before, FrameBuilder};

    fn frame(seq: u64, key: &[u8], synced_before: bool) -> Vec<u8> {
        let mut b = FrameBuilder::with_capacity(64);
        b.push(Kind::Put, key, b"value");
        let mut f = b.finish();
        f.set_seq(seq);
        let mut bytes = f.bytes().to_vec();
        if synced_before {
            mark_synced_before(&mut bytes);
        }
        bytes
    }

    #[test]
    fn the_walk_follows_frame_lengths_from_the_damaged_frame_and_trusts_nothing_else() {
        let mut log = vec![0u8; 32];
        let damaged_at = log.len();
        let mut damaged = frame(5, b"damaged", false);
        let n = damaged.len();
        damaged[n - 2] ^= 1; // in the payload: the header still says how long the frame is
        log.extend_from_slice(&damaged);
        log.extend_from_slice(&frame(6, b"plain", false));
        // A value that holds a whole frame with the bit, as a stored copy of a log would.
        let mut b = FrameBuilder::with_capacity(256);
        let inner = frame(99, b"forged", true);
        b.push(Kind::Put, b"blob", &inner);
        let mut holder = b.finish();
        holder.set_seq(7);
        log.extend_from_slice(holder.bytes());
        let flagged = log.len();
        log.extend_from_slice(&frame(8, b"marked", true));
        log.extend(std::iter::repeat_n(0u8, 50));

        assert_eq!(synced_frame_after(&log, damaged_at), Some(flagged), "walks past the value, not into it");
        let without_flagged = &log[..flagged];
        assert_eq!(synced_frame_after(without_flagged, damaged_at), None, "the copy inside the value proves nothing");

        // No intact header at the stopping point: nothing says where the next frame starts.
        let mut header_hit = log.clone();
        header_hit[damaged_at + 9] ^= 1;
        assert_eq!(synced_frame_after(&header_hit, damaged_at), None);
        assert_eq!(synced_frame_after(&log, log.len() - 10), None, "zeros");
        // A break in the chain before the flagged frame ends the walk.
        let mut broken = log.clone();
        broken[flagged - 3] ^= 1;
        assert_eq!(synced_frame_after(&broken, damaged_at), None);
        assert_eq!(synced_frame_after(&[], 0), None);
    }
}
