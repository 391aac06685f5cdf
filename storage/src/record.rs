//! The bytes of a log: file headers, frames and entries (docs/FORMAT.md specifies them).
//!
//! A *frame* is one commit: a put, a delete, or a whole write batch. Its header checksums
//! itself and the payload, so recovery takes a frame whole or not at all. The payload is a
//! run of *entries*, each with its own checksum over its header, key and value, so a read
//! can verify just the value it returns without touching the rest of the frame.

use std::sync::LazyLock;

use crate::{FORMAT_VERSION, OLDEST_FORMAT_VERSION};

/// A CRC-32 hasher ready to start. `crc32fast::Hasher::new` (and `crc32fast::hash`) asks
/// which instructions the CPU has every time; cloning one made once does not. Reading the
/// 150-byte entries of a scan, that asking was 0.4% of the samples beside the checksum's 5.3%.
fn hasher() -> crc32fast::Hasher {
    static READY: LazyLock<crc32fast::Hasher> = LazyLock::new(crc32fast::Hasher::new);
    READY.clone()
}

/// The CRC-32 of `bytes` (as `crc32fast::hash`).
fn crc32(bytes: &[u8]) -> u32 {
    let mut h = hasher();
    h.update(bytes);
    h.finalize()
}

/// Size of every file's header.
pub(crate) const FILE_HEADER_LEN: usize = 32;
/// Size of a frame header.
pub(crate) const FRAME_HEADER_LEN: usize = 24;
/// Size of an entry header.
pub(crate) const ENTRY_HEADER_LEN: usize = 12;

/// What a file holds; the magic differs so a file can never be mistaken for another kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// A log of frames: the active `region.mmap` or a sealed `layers/L*.mmap`.
    Log,
    /// A sealed layer's key index: `layers/L*.keys`.
    Keys,
}

impl FileKind {
    fn magic(self) -> &'static [u8; 8] {
        match self {
            FileKind::Log => b"JESSYLOG",
            FileKind::Keys => b"JESSYKEY",
        }
    }
}

/// The header that starts every data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileHeader {
    pub kind: FileKind,
    /// The format version: [`FORMAT_VERSION`] for a file this build writes.
    pub version: u32,
    pub dimension_id: u32,
    pub layer_id: u32,
}

impl FileHeader {
    pub fn encode(&self) -> [u8; FILE_HEADER_LEN] {
        let mut b = [0u8; FILE_HEADER_LEN];
        b[0..8].copy_from_slice(self.kind.magic());
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.dimension_id.to_le_bytes());
        b[16..20].copy_from_slice(&self.layer_id.to_le_bytes());
        // 20..28 reserved, zero.
        let crc = crc32(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a header; the error says which check failed.
    pub fn decode(b: &[u8], kind: FileKind) -> Result<FileHeader, String> {
        if b.len() < FILE_HEADER_LEN {
            return Err(format!("file is {} bytes, shorter than its {FILE_HEADER_LEN}-byte header", b.len()));
        }
        if &b[0..8] != kind.magic() {
            return Err(format!(
                "bad magic {:?}, expected {:?}",
                String::from_utf8_lossy(&b[0..8]),
                String::from_utf8_lossy(kind.magic())
            ));
        }
        if crc32(&b[0..28]) != u32_at(b, 28) {
            return Err("file header checksum mismatch".into());
        }
        // Reserved means zero (docs/FORMAT.md); a header with other bytes there and a
        // checksum to match was not written by this format. (cargo fuzz forged one:
        // tests/fuzz-regressions/key_index/.)
        if b[20..28] != [0u8; 8] {
            return Err("file header reserved bytes are not zero".into());
        }
        let version = u32_at(b, 8);
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(format!(
                "format version {version} is not supported by this build (it reads versions {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})"
            ));
        }
        Ok(FileHeader { kind, version, dimension_id: u32_at(b, 12), layer_id: u32_at(b, 16) })
    }
}

/// Entry kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Put = 1,
    Delete = 2,
}

impl Kind {
    pub fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Put),
            2 => Some(Kind::Delete),
            _ => None,
        }
    }
}

/// Encoded size of an entry.
pub(crate) fn entry_len(key_len: usize, value_len: usize) -> usize {
    ENTRY_HEADER_LEN + key_len + value_len
}

/// Builds a frame in memory. The sequence number is patched in last, under the writer's
/// lock, so that everything else (copying, checksumming the payload) happens outside it.
pub(crate) struct FrameBuilder {
    buf: Vec<u8>,
    count: u32,
}

impl FrameBuilder {
    pub fn with_capacity(payload: usize) -> FrameBuilder {
        let mut buf = Vec::with_capacity(FRAME_HEADER_LEN + payload);
        buf.resize(FRAME_HEADER_LEN, 0);
        FrameBuilder { buf, count: 0 }
    }

    /// Appends an entry; returns its offset within the frame.
    pub fn push(&mut self, kind: Kind, key: &[u8], value: &[u8]) -> usize {
        let at = self.buf.len();
        let mut h = [0u8; ENTRY_HEADER_LEN];
        h[4] = kind as u8;
        h[6..8].copy_from_slice(&(key.len() as u16).to_le_bytes());
        h[8..12].copy_from_slice(&(value.len() as u32).to_le_bytes());
        let mut crc = hasher();
        crc.update(&h[4..]);
        crc.update(key);
        crc.update(value);
        h[0..4].copy_from_slice(&crc.finalize().to_le_bytes());
        self.buf.extend_from_slice(&h);
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(value);
        self.count += 1;
        at
    }

    /// Encoded length so far, header included.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Number of entries so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Fills in the payload checksum and length; the frame still lacks its sequence number.
    pub fn finish(mut self) -> Frame {
        let payload_len = (self.buf.len() - FRAME_HEADER_LEN) as u32;
        let payload_crc = crc32(&self.buf[FRAME_HEADER_LEN..]);
        self.buf[4..8].copy_from_slice(&payload_crc.to_le_bytes());
        self.buf[16..20].copy_from_slice(&payload_len.to_le_bytes());
        self.buf[20..24].copy_from_slice(&self.count.to_le_bytes());
        Frame { buf: self.buf }
    }
}

/// An encoded frame, ready to be stamped with a sequence number and written.
pub(crate) struct Frame {
    buf: Vec<u8>,
}

impl Frame {
    pub fn set_seq(&mut self, seq: u64) {
        self.buf[8..16].copy_from_slice(&seq.to_le_bytes());
        let crc = crc32(&self.buf[4..FRAME_HEADER_LEN]);
        self.buf[0..4].copy_from_slice(&crc.to_le_bytes());
    }
    /// Sets the synced-before bit ([`mark_synced_before`]).
    pub fn mark_synced_before(&mut self) {
        mark_synced_before(&mut self.buf);
    }
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
}

/// A decoded entry, borrowing from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    pub kind: Kind,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

/// Why bytes in a log are not a valid frame or entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// Zeros where a frame header would be: the clean end of the log.
    End,
    /// The frame ends past the data that was handed in.
    Truncated,
    /// A checksum or field check failed.
    Bad(&'static str),
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::End => f.write_str("zeros where an entry should start"),
            Invalid::Truncated => f.write_str("the entry runs past the end of the data"),
            Invalid::Bad(reason) => f.write_str(reason),
        }
    }
}

/// Decodes one entry at `b[0..]`; checks its checksum and that it fits in `b`.
pub(crate) fn decode_entry(b: &[u8]) -> Result<(Entry<'_>, usize), Invalid> {
    if b.len() < ENTRY_HEADER_LEN {
        return Err(Invalid::Truncated);
    }
    let kind = Kind::from_u8(b[4]).ok_or(Invalid::Bad("unknown entry kind"))?;
    if b[5] != 0 {
        return Err(Invalid::Bad("entry reserved byte is not zero"));
    }
    let key_len = u16::from_le_bytes([b[6], b[7]]) as usize;
    let value_len = u32_at(b, 8) as usize;
    let len = ENTRY_HEADER_LEN
        .checked_add(key_len)
        .and_then(|n| n.checked_add(value_len))
        .ok_or(Invalid::Bad("entry length overflows"))?;
    if len > b.len() {
        return Err(Invalid::Truncated);
    }
    if key_len == 0 || key_len > crate::MAX_KEY_LEN {
        return Err(Invalid::Bad("entry key length out of range"));
    }
    if kind == Kind::Delete && value_len != 0 {
        return Err(Invalid::Bad("delete entry carries a value"));
    }
    if crc32(&b[4..len]) != u32_at(b, 0) {
        return Err(Invalid::Bad("entry checksum mismatch"));
    }
    let key = &b[ENTRY_HEADER_LEN..ENTRY_HEADER_LEN + key_len];
    let value = &b[ENTRY_HEADER_LEN + key_len..len];
    Ok((Entry { kind, key, value }, len))
}

/// Bit 31 of a frame header's `count` field: when the frame was written, every byte of
/// the file before it had been synced (format version 2; docs/FORMAT.md). Recovery uses it
/// to tell damage from a torn tail: a frame that fails its checks but lies before a frame
/// with this bit was on disk whole once, so it was damaged afterwards.
pub(crate) const SYNCED_BEFORE: u32 = 1 << 31;

/// Sets the synced-before bit in the frame header at the start of `frame` and checksums
/// the header again. Done under the writer's lock, right before the `pwrite`, when the
/// writer knows where the last sync ended; the header is 20 bytes to checksum.
pub(crate) fn mark_synced_before(frame: &mut [u8]) {
    let count = u32_at(frame, 20) | SYNCED_BEFORE;
    frame[20..24].copy_from_slice(&count.to_le_bytes());
    let crc = crc32(&frame[4..FRAME_HEADER_LEN]);
    frame[0..4].copy_from_slice(&crc.to_le_bytes());
}

/// A *sync mark*: a frame header with no entries and the synced-before bit, written when a
/// store is closed (format version 2). It says that every frame before it was synced, which
/// no later frame says for the last ones; `seq` is the last number used, so it takes none.
pub(crate) fn sync_mark(seq: u64) -> [u8; FRAME_HEADER_LEN] {
    let mut b = [0u8; FRAME_HEADER_LEN];
    b[4..8].copy_from_slice(&crc32(&[]).to_le_bytes());
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    mark_synced_before(&mut b);
    b
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub seq: u64,
    pub payload_len: u32,
    pub count: u32,
    /// The [`SYNCED_BEFORE`] bit.
    pub synced_before: bool,
}

impl FrameHeader {
    pub fn total_len(&self) -> usize {
        FRAME_HEADER_LEN + self.payload_len as usize
    }
}

/// Decodes and checks the header of the frame at `b[0..]` (its checksum and fields), not its
/// payload: where a frame that fails as a whole says it ends, when its header is intact.
pub(crate) fn decode_header(b: &[u8]) -> Result<FrameHeader, Invalid> {
    if b.len() < FRAME_HEADER_LEN {
        return if b.iter().all(|&x| x == 0) { Err(Invalid::End) } else { Err(Invalid::Truncated) };
    }
    let h = &b[..FRAME_HEADER_LEN];
    if h.iter().all(|&x| x == 0) {
        return Err(Invalid::End);
    }
    if crc32(&h[4..]) != u32_at(h, 0) {
        return Err(Invalid::Bad("frame header checksum mismatch"));
    }
    let count_field = u32_at(h, 20);
    let header = FrameHeader {
        seq: u64_at(h, 8),
        payload_len: u32_at(h, 16),
        count: count_field & !SYNCED_BEFORE,
        synced_before: count_field & SYNCED_BEFORE != 0,
    };
    let mark = header.count == 0 && header.payload_len == 0 && header.synced_before;
    if (header.count == 0 && !mark) || (header.payload_len as usize) < header.count as usize * ENTRY_HEADER_LEN {
        return Err(Invalid::Bad("frame count and length disagree"));
    }
    Ok(header)
}

/// Decodes and fully verifies the frame at `b[0..]`: header checksum, payload checksum,
/// and every entry. Returns the header and the entries' offsets within the frame.
pub(crate) fn decode_frame(b: &[u8]) -> Result<(FrameHeader, Vec<(usize, Entry<'_>)>), Invalid> {
    let header = decode_header(b)?;
    let h = &b[..FRAME_HEADER_LEN];
    let end = header.total_len();
    if end > b.len() {
        return Err(Invalid::Truncated);
    }
    let payload = &b[FRAME_HEADER_LEN..end];
    if crc32(payload) != u32_at(h, 4) {
        return Err(Invalid::Bad("frame payload checksum mismatch"));
    }
    let mut entries = Vec::with_capacity(header.count as usize);
    let mut at = 0;
    for _ in 0..header.count {
        let (e, n) = decode_entry(&payload[at..]).map_err(|e| match e {
            Invalid::Truncated => Invalid::Bad("entry runs past its frame"),
            other => other,
        })?;
        entries.push((FRAME_HEADER_LEN + at, e));
        at += n;
    }
    if at != payload.len() {
        return Err(Invalid::Bad("frame payload has bytes after its last entry"));
    }
    Ok((header, entries))
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64, entries: &[(Kind, &[u8], &[u8])]) -> Vec<u8> {
        let mut b = FrameBuilder::with_capacity(64);
        for (k, key, value) in entries {
            b.push(*k, key, value);
        }
        let mut f = b.finish();
        f.set_seq(seq);
        f.bytes().to_vec()
    }

    #[test]
    fn checksum_is_crc32() {
        // The check value of CRC-32 with the IEEE polynomial, which docs/FORMAT.md names.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        // The hasher made once starts from scratch each time, in pieces as in one go.
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for _ in 0..2 {
            assert_eq!(crc32(&data), crc32fast::hash(&data));
            let mut h = hasher();
            h.update(&data[..333]);
            h.update(&data[333..]);
            assert_eq!(h.finalize(), crc32fast::hash(&data));
        }
    }

    #[test]
    fn file_header_round_trips_and_rejects_damage() {
        let h = FileHeader { kind: FileKind::Log, version: FORMAT_VERSION, dimension_id: 7, layer_id: 42 };
        let b = h.encode();
        assert_eq!(FileHeader::decode(&b, FileKind::Log).unwrap(), h);
        assert!(FileHeader::decode(&b, FileKind::Keys).unwrap_err().contains("magic"));
        for i in 0..FILE_HEADER_LEN {
            let mut d = b;
            d[i] ^= 0x10;
            assert!(FileHeader::decode(&d, FileKind::Log).is_err(), "flip in byte {i} went unnoticed");
        }
        assert!(FileHeader::decode(&b[..31], FileKind::Log).is_err());
    }

    #[test]
    fn frame_round_trips() {
        let b = frame(9, &[(Kind::Put, b"k1", b"v1"), (Kind::Delete, b"k2", b""), (Kind::Put, b"k3", b"")]);
        let (h, entries) = decode_frame(&b).unwrap();
        assert_eq!(h.seq, 9);
        assert_eq!(h.count, 3);
        assert_eq!(h.total_len(), b.len());
        let got: Vec<_> = entries.iter().map(|(_, e)| (e.kind, e.key, e.value)).collect();
        assert_eq!(
            got,
            vec![
                (Kind::Put, &b"k1"[..], &b"v1"[..]),
                (Kind::Delete, &b"k2"[..], &b""[..]),
                (Kind::Put, &b"k3"[..], &b""[..])
            ]
        );
        let (off, e) = entries[0];
        assert_eq!(decode_entry(&b[off..]).unwrap().0, e);
        assert!(!h.synced_before);
    }

    #[test]
    fn a_sync_mark_is_a_frame_without_entries_and_nothing_else_is() {
        let mark = sync_mark(41);
        let (h, entries) = decode_frame(&mark).unwrap();
        assert_eq!((h.seq, h.count, h.payload_len, h.synced_before), (41, 0, 0, true));
        assert!(entries.is_empty());
        // Without the bit, an empty frame is invalid, as in version 1.
        let mut plain = mark;
        plain[23] &= 0x7f;
        let crc = crc32(&plain[4..FRAME_HEADER_LEN]);
        plain[0..4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_frame(&plain).unwrap_err(), Invalid::Bad("frame count and length disagree"));
    }

    #[test]
    fn the_synced_before_bit_round_trips_and_leaves_the_rest_alone() {
        let mut b = frame(9, &[(Kind::Put, b"k1", b"v1"), (Kind::Put, b"k3", b"")]);
        let (plain, _) = decode_frame(&b).unwrap();
        mark_synced_before(&mut b);
        let (marked, entries) = decode_frame(&b).unwrap();
        assert!(marked.synced_before);
        assert_eq!(FrameHeader { synced_before: false, ..marked }, plain);
        assert_eq!(entries.len(), 2);
        // Still covered by the header checksum.
        b[23] ^= 0x80;
        assert_eq!(decode_frame(&b).unwrap_err(), Invalid::Bad("frame header checksum mismatch"));
    }

    #[test]
    fn every_truncation_of_a_frame_is_rejected() {
        let b = frame(1, &[(Kind::Put, b"key", b"value"), (Kind::Put, b"other", b"x")]);
        for cut in 0..b.len() {
            let r = decode_frame(&b[..cut]);
            assert!(r.is_err(), "frame cut at {cut} of {} decoded", b.len());
        }
        // A cut frame followed by zeros (preallocated space) is still rejected.
        for cut in 1..b.len() {
            let mut d = b[..cut].to_vec();
            d.resize(b.len() + 64, 0);
            assert!(decode_frame(&d).is_err(), "cut at {cut} then zeros decoded");
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let b = frame(3, &[(Kind::Put, b"key", b"value")]);
        for i in 0..b.len() * 8 {
            let mut d = b.clone();
            d[i / 8] ^= 1 << (i % 8);
            assert!(decode_frame(&d).is_err(), "flip of bit {i} went unnoticed");
        }
    }

    #[test]
    fn every_truncation_and_flip_of_an_entry_is_rejected() {
        let b = frame(3, &[(Kind::Put, b"key", b"value")]);
        let e = &b[FRAME_HEADER_LEN..];
        assert!(decode_entry(e).is_ok());
        for cut in 0..e.len() {
            assert!(decode_entry(&e[..cut]).is_err());
        }
        for i in 0..e.len() * 8 {
            let mut d = e.to_vec();
            d[i / 8] ^= 1 << (i % 8);
            assert!(decode_entry(&d).is_err(), "flip of bit {i} went unnoticed");
        }
    }

    #[test]
    fn zeros_are_the_end_not_an_error() {
        assert_eq!(decode_frame(&[0u8; 100]).unwrap_err(), Invalid::End);
        assert_eq!(decode_frame(&[0u8; 3]).unwrap_err(), Invalid::End);
    }
}
