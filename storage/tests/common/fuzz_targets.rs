//! The fuzz targets, shared by `fuzz/fuzz_targets/*.rs` (cargo fuzz, libFuzzer) and
//! `tests/fault_fuzz.rs` (proptest). Each takes arbitrary bytes and panics only on a bug:
//! a panic inside the engine, or a broken invariant asserted here.
//!
//! It is included with `#[path]` from both places, so it depends only on `jessy_storage`,
//! `tempfile` and std.

#![allow(dead_code)]

use std::path::Path;
use std::sync::OnceLock;

use jessy_storage::fuzzing as f;
use jessy_storage::{Config, Durability, Error, Store, WriteBatch};

/// Frames, entries and log scans.
pub fn record_decoder(data: &[u8]) {
    if let Ok((seq, entries, len, synced_before)) = f::decode_frame(data) {
        assert!(len <= data.len(), "frame of {len} bytes decoded from {}", data.len());
        assert!(!entries.is_empty() || synced_before, "a frame without entries that is not a sync mark decoded");
        for (kind, key, value) in &entries {
            assert!(*kind == 1 || *kind == 2, "kind {kind}");
            assert!(!key.is_empty() && key.len() <= jessy_storage::MAX_KEY_LEN, "key of {} bytes", key.len());
            assert!(*kind == 1 || value.is_empty(), "a delete with a value");
        }
        assert_eq!(
            f::encode_frame_marked(seq, &entries, synced_before),
            data[..len],
            "a valid frame re-encodes to the same bytes"
        );
    }
    if let Ok(((_, key, value), n)) = f::decode_entry(data) {
        assert_eq!(n, 12 + key.len() + value.len());
        assert!(n <= data.len());
    }
    let (end, stopped, frames) = f::scan_log(data);
    assert!(end <= data.len().max(32), "scan ended at {end} of {}", data.len());
    assert!(end >= 32);
    if frames == 0 {
        assert_eq!(end, 32);
    }
    // What the scan accepted is a run of valid frames ending exactly at `end`.
    let mut at = 32;
    while at < end {
        let (_, _, len, _) = f::decode_frame(&data[at..end]).expect("scan accepted an invalid frame");
        at += len;
    }
    assert_eq!(at, end);
    if let Some(why) = stopped {
        assert!(f::decode_frame(&data[end..]).is_err(), "scan stopped ({why}) at a valid frame");
    }
    let _ = f::decode_file_header(data, false);
    let _ = f::decode_file_header(data, true);
}

/// Sealed layers' key indexes.
pub fn key_index(data: &[u8]) {
    if let Ok((dim, layer, end, items)) = f::decode_key_index(data) {
        assert_eq!(f::encode_key_index(dim, layer, end, &items), data, "a valid key index re-encodes to itself");
    }
}

/// `index.json`.
pub fn manifest_parser(data: &[u8]) {
    if let Ok(encoded) = f::decode_manifest(data) {
        let again = f::decode_manifest(&encoded).expect("a re-encoded manifest decodes");
        assert_eq!(again, encoded, "manifest encoding is stable");
    }
}

/// The files of a small store: two sealed layers with key indexes, compaction output, the
/// manifests, active regions with records, a second dimension. Built once per process.
pub fn template() -> &'static [(String, Vec<u8>)] {
    static T: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    T.get_or_init(|| {
        let dir = scratch();
        {
            let store = Store::open_with(dir.path(), config(false)).unwrap();
            let d = store.dimension("default").unwrap();
            for i in 0..40u32 {
                let v = vec![b'a' + (i % 26) as u8; 60 + (i as usize * 37) % 300];
                d.put(format!("key{:02}", i % 13), v).unwrap();
            }
            d.delete("key03").unwrap();
            d.write(WriteBatch::new().put("b1", "one").delete("key05").put("b2", "two")).unwrap();
            d.compact().unwrap();
            d.put("last", "record").unwrap();
            store.dimension("other").unwrap().put("o", "x").unwrap();
        }
        let mut files = Vec::new();
        let mut stack = vec![dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.file_name().unwrap() != "jessy.lock" {
                    let rel = p.strip_prefix(dir.path()).unwrap().to_string_lossy().to_string();
                    files.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
        files.sort();
        files
    })
}

/// On tmpfs when there is one: each input opens a store, and real fsyncs on a disk would
/// make that a hundred times slower.
fn scratch() -> tempfile::TempDir {
    match std::path::Path::new("/dev/shm") {
        shm if shm.is_dir() => tempfile::tempdir_in(shm).or_else(|_| tempfile::tempdir()).unwrap(),
        _ => tempfile::tempdir().unwrap(),
    }
}

fn config(salvage: bool) -> Config {
    Config::default()
        .initial_size(4096)
        .max_size(8192)
        .durability(Durability::None)
        .background_compaction(false)
        .compaction_threshold(0.2)
        .salvage(salvage)
}

/// "Open a store from arbitrary bytes": the input edits the template store's files, then
/// the store is opened and everything in it read. Byte 0 picks the edit (and salvage mode):
/// XOR bytes at offsets, cut a file, replace a file with the rest of the input, or overwrite
/// a stretch of a file with it. Chunks are (file, offset lo, offset hi, byte).
pub fn open_store(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else { return };
    let mut files: Vec<(String, Vec<u8>)> = template().to_vec();
    let n = files.len();
    let pick = |b: u8| b as usize % n;
    let offset = |lo: u8, hi: u8, len: usize| (lo as usize | (hi as usize) << 8) % len.max(1);
    match head % 4 {
        0 => {
            for c in rest.chunks_exact(4) {
                let file = &mut files[pick(c[0])].1;
                if !file.is_empty() {
                    let at = offset(c[1], c[2], file.len());
                    file[at] ^= c[3].max(1);
                }
            }
        }
        1 if rest.len() >= 3 => {
            let file = &mut files[pick(rest[0])].1;
            let at = offset(rest[1], rest[2], file.len() + 1);
            file.truncate(at);
        }
        2 if !rest.is_empty() => files[pick(rest[0])].1 = rest[1..].to_vec(),
        3 if rest.len() >= 3 => {
            let file = &mut files[pick(rest[0])].1;
            let at = offset(rest[1], rest[2], file.len());
            let patch = &rest[3..];
            let end = (at + patch.len()).min(file.len());
            file[at..end].copy_from_slice(&patch[..end - at]);
        }
        _ => return,
    }
    let dir = scratch();
    for (rel, bytes) in &files {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    exercise(dir.path(), head & 0x80 != 0);
}

/// Opens the store in `dir` and reads everything; a store that opens must agree with
/// itself, take a write, and open again.
fn exercise(dir: &Path, salvage: bool) {
    let store = match Store::open_with(dir, config(salvage)) {
        Ok(s) => s,
        Err(Error::Corruption { .. } | Error::MissingFiles(_) | Error::Io { .. }) => return,
        Err(e) => panic!("open failed with an unexpected kind of error: {e:?}"),
    };
    let mut seen = Vec::new();
    for d in store.dimensions() {
        let mut read = Vec::new();
        for item in d.iter() {
            match item {
                Ok((k, v)) => {
                    read.push((k.clone(), v.version()));
                    // A point read of a key the scan returned agrees, or reports damage.
                    match d.get(&k) {
                        Ok(Some(g)) => assert_eq!(&g[..], &v[..], "get and scan disagree"),
                        Ok(None) => panic!("scan returned a key that get does not find"),
                        Err(Error::Corruption { .. }) => {}
                        Err(e) => panic!("get failed with an unexpected error: {e}"),
                    }
                    seen.push((d.name(), k));
                }
                Err(Error::Corruption { .. }) => {}
                Err(e) => panic!("scan failed with an unexpected error: {e}"),
            }
        }
        // The keys-only listing (the index alone) holds every key the scan read, with the
        // version of the value read, in the same order.
        let mut listed = Vec::new();
        let mut keys = d.iter();
        while let Some(item) = keys.next_key() {
            match item {
                Ok((k, version)) => listed.push((k.to_vec(), version)),
                Err(Error::Corruption { .. }) => {}
                Err(e) => panic!("keys-only listing failed with an unexpected error: {e}"),
            }
        }
        assert!(listed.windows(2).all(|w| w[0].0 < w[1].0), "keys-only listing out of order");
        for entry in &read {
            assert!(listed.binary_search(entry).is_ok(), "scan read {entry:?}, the keys-only listing lacks it");
        }
        let _ = d.stats();
    }
    let _ = store.verify();
    let d = store.dimension("default").unwrap();
    let wrote = d.put("fuzz-probe", b"written after open").is_ok();
    drop(d);
    drop(store);
    let store = Store::open_with(dir, config(salvage)).expect("a store that opened once opens again");
    if wrote {
        let d = store.get_dimension("default").unwrap();
        let v = d.get("fuzz-probe").expect("the probe reads back").expect("the probe was kept");
        assert_eq!(&v[..], b"written after open");
    }
    for (dim, k) in seen {
        let d = store.get_dimension(&dim).expect("dimension still there");
        match d.get(&k) {
            Ok(_) | Err(Error::Corruption { .. }) => {}
            Err(e) => panic!("get after reopen: {e}"),
        }
    }
}
