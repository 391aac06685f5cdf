//! A sealed layer's key index (`layers/Lnnnnnnnn.keys`): for every key written in the
//! layer, its newest entry there (offset, sizes, sequence number, put or delete).
//!
//! It lets open rebuild the in-memory index by reading keys only, never values. It is
//! derived data: if it is missing or damaged, open rebuilds it by scanning the layer.

use std::path::Path;

use crate::dimension::IndexKey;
use crate::io::{read_all, Io};
use crate::layout::DimPaths;
use crate::manifest::LayerEntry;
use crate::record::{u32_at, u64_at, FileHeader, FileKind, Kind, FILE_HEADER_LEN};
use crate::{Error, Result};

const META_LEN: usize = 16;
const ITEM_HEADER_LEN: usize = 20;

/// One key's newest entry in the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyItem<'a> {
    pub kind: Kind,
    pub key: &'a [u8],
    pub value_len: u32,
    /// Offset of the entry (its header) in the layer file.
    pub offset: u32,
    pub seq: u64,
}

/// The entries written to a log file, recorded as they are written, to encode the file's
/// key index when it is finished without a second pass over it. Rescanning a sealed
/// 10 MiB region (checking every frame, hashing every key, sorting keys that point into
/// the map) held the writer lock for about 30 ms; sorting the recorded keys (54,000 for
/// a region of 150-byte values) takes about 10.
#[derive(Default)]
pub(crate) struct Recorder {
    items: Vec<Recorded>,
}

struct Recorded {
    key: IndexKey,
    kind: Kind,
    value_len: u32,
    offset: u32,
    seq: u64,
}

/// What encoding a recorder gives: the key index and what the manifest says of the file.
pub(crate) struct Recording {
    pub bytes: Vec<u8>,
    pub summary: Summary,
}

impl Recording {
    /// See [`Summary::layer_entry`].
    pub fn layer_entry(&self, layer_id: u32, data_end: u64) -> LayerEntry {
        self.summary.layer_entry(layer_id, data_end)
    }
}

/// What the manifest says of a log file's records: how many, and their sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Summary {
    pub records: u64,
    pub min_seq: u64,
    pub max_seq: u64,
}

impl Summary {
    /// The manifest entry of sealed layer `layer_id`, whose records end at `data_end`
    /// (live bytes unknown: only the in-memory index knows them).
    pub fn layer_entry(&self, layer_id: u32, data_end: u64) -> LayerEntry {
        LayerEntry {
            layer_id,
            file: DimPaths::layer_rel(layer_id),
            keys_file: DimPaths::keys_rel(layer_id),
            offset: FILE_HEADER_LEN as u64,
            size: data_end - FILE_HEADER_LEN as u64,
            records: self.records,
            live_bytes: 0,
            min_seq: self.min_seq,
            max_seq: self.max_seq,
        }
    }
}

impl Recorder {
    /// Records an entry written at `offset` of the file.
    pub fn push(&mut self, kind: Kind, key: &[u8], value_len: u32, offset: u32, seq: u64) {
        self.items.push(Recorded { key: IndexKey::from_slice(key), kind, value_len, offset, seq });
    }

    /// Forgets the entries at `offset` and after (frames whose write failed and was undone).
    pub fn forget_from(&mut self, offset: u32) {
        let keep = self.items.partition_point(|r| r.offset < offset);
        self.items.truncate(keep);
    }

    /// The record count and sequence range, without encoding the index: a seal publishes
    /// the layer with this and encodes the index afterwards (dimension.rs, `seal_synced`).
    pub fn summary(&self) -> Summary {
        Summary {
            records: self.items.len() as u64,
            min_seq: self.items.iter().map(|i| i.seq).min().unwrap_or(0),
            max_seq: self.items.iter().map(|i| i.seq).max().unwrap_or(0),
        }
    }

    /// Encodes the key index of the file, whose records end at `data_end`.
    pub fn encode(self, dimension_id: u32, layer_id: u32, data_end: u32) -> Recording {
        let summary = self.summary();
        // A key's newest entry in the file is its last one: ordered by key, then by offset
        // (offsets grow with the writes), the last entry of each key's run is its newest.
        // Sorting (head, position) pairs moves 12 bytes per swap where sorting the entries
        // moved 64, and compares integers: the stable sort of the entries by key was a fifth
        // of the CPU of `Store::bulk_load`.
        let items = &self.items;
        let mut order: Vec<(u64, u32)> = {
            let common = common_prefix(items.iter().map(|it| &*it.key));
            items.iter().enumerate().map(|(i, it)| (crate::ordered::head(&it.key, common), i as u32)).collect()
        };
        // Heads (8 key bytes after the shared prefix, as an integer) order keys that differ
        // in them; only equal heads need the keys compared.
        order.sort_unstable_by(|&(ha, a), &(hb, b)| {
            ha.cmp(&hb).then_with(|| {
                let (a, b) = (&items[a as usize], &items[b as usize]);
                a.key.cmp(&b.key).then(a.offset.cmp(&b.offset))
            })
        });
        let at = |n: usize| order.get(n).map(|&(_, i)| &items[i as usize]);
        let newest = (0..order.len()).filter_map(|n| {
            let it = at(n)?;
            at(n + 1).is_none_or(|next| next.key != it.key).then_some(it)
        });
        let index_items = newest.map(|it| KeyItem {
            kind: it.kind,
            key: &it.key,
            value_len: it.value_len,
            offset: it.offset,
            seq: it.seq,
        });
        let bytes = encode(dimension_id, layer_id, data_end, index_items);
        Recording { bytes, summary }
    }
}

/// How many leading bytes all of `keys` share.
fn common_prefix<'a>(mut keys: impl Iterator<Item = &'a [u8]>) -> usize {
    let Some(first) = keys.next() else { return 0 };
    let mut common = first.len();
    for key in keys {
        common = first[..common].iter().zip(key).take_while(|(a, b)| a == b).count();
        if common == 0 {
            break;
        }
    }
    common
}

/// Encodes a key index. `data_end` is where the layer's records end.
pub(crate) fn encode<'a>(
    dimension_id: u32,
    layer_id: u32,
    data_end: u32,
    items: impl IntoIterator<Item = KeyItem<'a>>,
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(
        &FileHeader { kind: FileKind::Keys, version: crate::FORMAT_VERSION, dimension_id, layer_id }.encode(),
    );
    out.resize(FILE_HEADER_LEN + META_LEN, 0);
    let mut count = 0u32;
    for it in items {
        out.push(it.kind as u8);
        out.push(0);
        out.extend_from_slice(&(it.key.len() as u16).to_le_bytes());
        out.extend_from_slice(&it.value_len.to_le_bytes());
        out.extend_from_slice(&it.offset.to_le_bytes());
        out.extend_from_slice(&it.seq.to_le_bytes());
        out.extend_from_slice(it.key);
        count += 1;
    }
    let body_len = (out.len() - FILE_HEADER_LEN - META_LEN) as u32;
    let m = FILE_HEADER_LEN;
    out[m..m + 4].copy_from_slice(&count.to_le_bytes());
    out[m + 4..m + 8].copy_from_slice(&data_end.to_le_bytes());
    out[m + 8..m + 12].copy_from_slice(&body_len.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out[m..m + 12]);
    crc.update(&out[m + META_LEN..]);
    let crc = crc.finalize();
    out[m + 12..m + 16].copy_from_slice(&crc.to_le_bytes());
    out
}

/// A decoded key index.
pub(crate) struct KeyIndex {
    pub header: FileHeader,
    pub data_end: u32,
    bytes: Vec<u8>,
}

impl KeyIndex {
    /// Checks the header and checksum; the error says what is wrong.
    pub fn decode(bytes: Vec<u8>) -> std::result::Result<KeyIndex, String> {
        let header = FileHeader::decode(&bytes, FileKind::Keys)?;
        let m = FILE_HEADER_LEN;
        if bytes.len() < m + META_LEN {
            return Err("key index is shorter than its header".into());
        }
        let count = u32_at(&bytes, m);
        let data_end = u32_at(&bytes, m + 4);
        let body_len = u32_at(&bytes, m + 8) as usize;
        if bytes.len() != m + META_LEN + body_len {
            return Err(format!("key index is {} bytes, its header says {}", bytes.len(), m + META_LEN + body_len));
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&bytes[m..m + 12]);
        crc.update(&bytes[m + META_LEN..]);
        if crc.finalize() != u32_at(&bytes, m + 12) {
            return Err("key index checksum mismatch".into());
        }
        let index = KeyIndex { header, data_end, bytes };
        // Walk once so that iteration afterwards cannot fail.
        let mut n = 0u32;
        for item in index.raw_iter() {
            item?;
            n += 1;
        }
        if n != count {
            return Err(format!("key index holds {n} items, its header says {count}"));
        }
        Ok(index)
    }

    pub fn load(io: &dyn Io, path: &Path) -> Result<KeyIndex> {
        let bytes = read_all(io, path).map_err(Error::io("read", path))?;
        KeyIndex::decode(bytes).map_err(|reason| Error::corruption(path, 0, reason))
    }

    fn raw_iter(&self) -> impl Iterator<Item = std::result::Result<KeyItem<'_>, String>> {
        let body = &self.bytes[FILE_HEADER_LEN + META_LEN..];
        let mut at = 0usize;
        std::iter::from_fn(move || {
            if at >= body.len() {
                return None;
            }
            let b = &body[at..];
            // Where the item starts in the file, for the message.
            let start = FILE_HEADER_LEN + META_LEN + at;
            let bad = |what: &str| Some(Err(format!("key index item at byte {start} {what}")));
            if b.len() < ITEM_HEADER_LEN {
                at = body.len();
                return bad("is cut short");
            }
            let Some(kind) = Kind::from_u8(b[0]) else {
                at = body.len();
                return bad("has an unknown kind");
            };
            if b[1] != 0 {
                at = body.len();
                return bad("has a reserved byte that is not zero");
            }
            let key_len = u16::from_le_bytes([b[2], b[3]]) as usize;
            if key_len == 0 || ITEM_HEADER_LEN + key_len > b.len() {
                at = body.len();
                return bad("has a bad key length");
            }
            let item = KeyItem {
                kind,
                key: &b[ITEM_HEADER_LEN..ITEM_HEADER_LEN + key_len],
                value_len: u32_at(b, 4),
                offset: u32_at(b, 8),
                seq: u64_at(b, 12),
            };
            at += ITEM_HEADER_LEN + key_len;
            Some(Ok(item))
        })
    }

    /// The items, in the order they were written. Already validated by `decode`.
    pub fn iter(&self) -> impl Iterator<Item = KeyItem<'_>> {
        self.raw_iter().filter_map(|r| r.ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items() -> Vec<KeyItem<'static>> {
        vec![
            KeyItem { kind: Kind::Put, key: b"alpha", value_len: 5, offset: 56, seq: 1 },
            KeyItem { kind: Kind::Delete, key: b"beta", value_len: 0, offset: 100, seq: 2 },
        ]
    }

    #[test]
    fn round_trips() {
        let bytes = encode(4, 9, 4000, items());
        let idx = KeyIndex::decode(bytes).unwrap();
        assert_eq!(idx.header.layer_id, 9);
        assert_eq!(idx.header.dimension_id, 4);
        assert_eq!(idx.data_end, 4000);
        assert_eq!(idx.iter().collect::<Vec<_>>(), items());
    }

    /// Keys written many times, some in one batch (one sequence number): the index lists
    /// each key once, in order, with its last entry in the file.
    #[test]
    fn a_recorder_keeps_each_keys_last_entry() {
        let mut rec = Recorder::default();
        let mut newest = std::collections::BTreeMap::new();
        let n = 12_411u32;
        for i in 0..n {
            let key = format!("k{:04}", (i * 7919) % 1000).into_bytes();
            // Several entries of one key share a sequence number, as in a batch.
            let (kind, seq) = (if i.is_multiple_of(5) { Kind::Delete } else { Kind::Put }, u64::from(i / 3));
            rec.push(kind, &key, i, i * 10, seq);
            newest.insert(key, (kind, i, i * 10, seq));
        }
        let recording = rec.encode(1, 2, n * 10);
        let Summary { records, min_seq, max_seq } = recording.summary;
        assert_eq!(records, u64::from(n));
        assert_eq!((min_seq, max_seq), (0, u64::from((n - 1) / 3)));
        let idx = KeyIndex::decode(recording.bytes).unwrap();
        let got: Vec<_> = idx.iter().map(|it| (it.key.to_vec(), (it.kind, it.value_len, it.offset, it.seq))).collect();
        assert_eq!(got, newest.into_iter().collect::<Vec<_>>());
    }

    proptest::proptest! {
        /// Keys that share prefixes, are prefixes of each other, hold zero bytes and differ
        /// only past their first 8 bytes after the shared prefix (equal heads), written
        /// several times each: the index lists each key once, in byte order, with its last
        /// entry, as a `BTreeMap` of the writes keeps it.
        #[test]
        fn the_index_matches_a_map_of_the_writes(
            keys in proptest::collection::vec(
                (0usize..3, proptest::collection::vec(proptest::prelude::prop_oneof![proptest::prelude::Just(0u8), proptest::prelude::Just(1u8), proptest::prelude::Just(255u8)], 0..12)),
                1..200,
            ),
        ) {
            let mut rec = Recorder::default();
            let mut newest = std::collections::BTreeMap::new();
            for (i, (prefix, tail)) in keys.iter().enumerate() {
                let mut key = [&b"tenant/"[..], b"tenant/zzzzzzzz", b"t"][*prefix].to_vec();
                key.extend_from_slice(tail);
                if key.is_empty() {
                    continue;
                }
                let i = i as u32;
                rec.push(Kind::Put, &key, i, 100 + i * 10, u64::from(i));
                newest.insert(key, (i, 100 + i * 10));
            }
            let idx = KeyIndex::decode(rec.encode(1, 2, 100_000).bytes).unwrap();
            let got: Vec<_> = idx.iter().map(|it| (it.key.to_vec(), (it.value_len, it.offset))).collect();
            proptest::prop_assert_eq!(got, newest.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn common_prefix_of_keys() {
        let keys: [&[u8]; 3] = [b"abcd", b"abx", b"abcde"];
        assert_eq!(common_prefix(keys.into_iter()), 2);
        assert_eq!(common_prefix([&b"abc"[..], b"ab"].into_iter()), 2);
        assert_eq!(common_prefix([&b"abc"[..]].into_iter()), 3);
        assert_eq!(common_prefix(std::iter::empty()), 0);
        assert_eq!(common_prefix([&b"x"[..], b"y"].into_iter()), 0);
    }

    /// A damaged item is named by where it starts in the file (checksum forged to match, so
    /// that the item check is what finds it).
    #[test]
    fn a_bad_item_is_named_by_its_offset_in_the_file() {
        let second = FILE_HEADER_LEN + META_LEN + ITEM_HEADER_LEN + b"alpha".len();
        for (byte, value, what) in [(0, 9u8, "unknown kind"), (1, 1, "reserved byte"), (2, 0, "bad key length")] {
            let mut d = encode(4, 9, 4000, items());
            d[second + byte] = value;
            if byte == 2 {
                d[second + 3] = 0;
            }
            let m = FILE_HEADER_LEN;
            let mut crc = crc32fast::Hasher::new();
            crc.update(&d[m..m + 12]);
            crc.update(&d[m + META_LEN..]);
            let crc = crc.finalize().to_le_bytes();
            d[m + 12..m + 16].copy_from_slice(&crc);
            let err = KeyIndex::decode(d).err().unwrap_or_default();
            assert!(err.contains(what) && err.contains(&format!("at byte {second} ")), "{what}: {err}");
        }
    }

    #[test]
    fn damage_is_detected() {
        let bytes = encode(4, 9, 4000, items());
        for i in 0..bytes.len() {
            let mut d = bytes.clone();
            d[i] ^= 0x01;
            assert!(KeyIndex::decode(d).is_err(), "flip in byte {i} went unnoticed");
        }
        for cut in 0..bytes.len() {
            assert!(KeyIndex::decode(bytes[..cut].to_vec()).is_err(), "cut at {cut} went unnoticed");
        }
    }
}
