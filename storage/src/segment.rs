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
    decode_entry, decode_frame, Entry, FileHeader, FileKind, FrameHeader, Invalid, Kind, FILE_HEADER_LEN,
    FRAME_HEADER_LEN,
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

/// The offset of the first whole, valid frame after `from` whose synced-before bit is set
/// (`record::SYNCED_BEFORE`), searching every byte offset: past a damaged frame, where the
/// next one starts is not known. Runs of zeros are skipped, since a header is never all
/// zeros; the bit is tested before any checksum, so most offsets cost one comparison. Only
/// opening a region that did not end cleanly calls it (and once over its zeroed tail).
pub(crate) fn synced_frame_after(log: &[u8], from: usize) -> Option<usize> {
    let mut at = from.checked_add(1)?;
    while at + FRAME_HEADER_LEN <= log.len() {
        // The earliest header that is not all zeros starts within FRAME_HEADER_LEN - 1 bytes
        // before the next non-zero byte.
        let nonzero = at + log[at..].iter().position(|&b| b != 0)?;
        at = at.max(nonzero.saturating_sub(FRAME_HEADER_LEN - 1));
        while at + FRAME_HEADER_LEN <= log.len() && at <= nonzero + FRAME_HEADER_LEN {
            let flagged = log[at + 23] & 0x80 != 0;
            if flagged {
                if let Ok((header, _)) = decode_frame(&log[at..]) {
                    if header.synced_before {
                        return Some(at);
                    }
                }
            }
            at += 1;
        }
    }
    None
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
    fn the_search_finds_only_whole_frames_with_the_bit_at_any_offset() {
        let mut log = vec![0u8; 100];
        log.extend_from_slice(&[0xAB, 0xFF, 0x80, 0x81, 0x00, 0x7F, 0x80]); // garbage
        log.extend_from_slice(&frame(5, b"plain", false));
        log.extend(std::iter::repeat_n(0u8, 333)); // an odd gap
        let flagged = log.len();
        log.extend_from_slice(&frame(6, b"marked", true));
        log.extend(std::iter::repeat_n(0u8, 50));
        assert_eq!(synced_frame_after(&log, 10), Some(flagged));
        assert_eq!(synced_frame_after(&log, flagged - 1), Some(flagged));
        assert_eq!(synced_frame_after(&log, flagged), None, "only frames after `from` count");
        // A flagged frame cut short, or with a damaged byte, is not one.
        assert_eq!(synced_frame_after(&log[..log.len() - 51], 10), None);
        let mut damaged = log.clone();
        damaged[flagged + 30] ^= 1;
        assert_eq!(synced_frame_after(&damaged, 10), None);
        assert_eq!(synced_frame_after(&[0u8; 4096], 0), None);
        assert_eq!(synced_frame_after(&[], 0), None);
    }
}
