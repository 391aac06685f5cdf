//! Recovery: torn tails, garbage, damaged layers, missing files, lost power, disk errors.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use jessy_storage::io::{FaultOp, FaultyIo, Io};
use jessy_storage::{Config, Durability, Error, Expect, Store};

/// Writes `n` keys, returns the region's data end and the last frame's length.
fn store_with_keys(dir: &std::path::Path, n: usize) -> (usize, usize) {
    let store = open(dir, Config::default());
    let d = store.dimension("default").unwrap();
    for i in 0..n {
        d.put(format!("key{i}"), value(i, 40)).unwrap();
    }
    drop(store);
    // As a crash right after the last write would leave it (a clean close ends the log
    // with a sync mark, after which damage to the last frame is reported, not cut).
    assert!(strip_sync_mark(&region(dir, "D01")), "a clean close leaves a sync mark");
    let end = data_end(&region(dir, "D01"));
    let last = 24 + 12 + format!("key{}", n - 1).len() + 40;
    (end, last)
}

#[test]
fn torn_tail_at_every_byte_of_the_last_record() {
    let src = tempfile::tempdir().unwrap();
    let (end, last) = store_with_keys(src.path(), 5);
    for cut in 0..last {
        for garbage in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(src.path(), dir.path());
            let path = region(dir.path(), "D01");
            let mut bytes = std::fs::read(&path).unwrap();
            for (j, b) in bytes[end - last + cut..end].iter_mut().enumerate() {
                *b = if garbage { (j as u8).wrapping_mul(37) | 0x80 } else { 0 };
            }
            std::fs::write(&path, &bytes).unwrap();
            let store = open(dir.path(), Config::default());
            let d = store.dimension("default").unwrap();
            for i in 0..4 {
                assert_eq!(d.get(format!("key{i}")).unwrap().unwrap().as_bytes(), value(i, 40), "cut {cut}");
            }
            assert!(d.get("key4").unwrap().is_none(), "a torn record came back (cut {cut}, garbage {garbage})");
            // Writing after the cut and reopening never revives the old tail.
            d.put("after", b"x").unwrap();
            drop((d, store));
            let store = open(dir.path(), Config::default());
            let d = store.dimension("default").unwrap();
            assert_eq!(&d.get("after").unwrap().unwrap()[..], b"x");
            assert!(d.get("key4").unwrap().is_none());
            assert_eq!(d.len(), 5);
        }
    }
}

#[test]
fn garbage_after_the_tail_is_cut_and_zeroed() {
    let dir = tempfile::tempdir().unwrap();
    let (end, _) = store_with_keys(dir.path(), 3);
    let path = region(dir.path(), "D01");
    let mut bytes = std::fs::read(&path).unwrap();
    for b in &mut bytes[end + 100..end + 400] {
        *b = 0xAB;
    }
    std::fs::write(&path, &bytes).unwrap();
    let store = open(dir.path(), Config::default());
    assert_eq!(store.dimension("default").unwrap().len(), 3);
    drop(store);
    assert!(strip_sync_mark(&path), "the close ended the log with a sync mark");
    assert_eq!(data_end(&path), end, "the garbage was zeroed");
}

#[test]
fn stale_frames_beyond_a_gap_do_not_come_back() {
    // Frames A and B were written, A was lost (zeros), B survived: B must not reappear
    // once a new write fills A's place. A crash can do that only to writes no sync came
    // between (else B's synced-before bit makes it damage: the test after this one), so
    // they are written under `None`.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Config::default().durability(Durability::None));
    for i in 0..3 {
        store.dimension("default").unwrap().put(format!("key{i}"), value(i, 40)).unwrap();
    }
    store.close().unwrap();
    let path = region(dir.path(), "D01");
    assert!(strip_sync_mark(&path), "as a crash would have left it");
    let end = data_end(&path);
    let last = 24 + 12 + "key2".len() + 40;
    let mut bytes = std::fs::read(&path).unwrap();
    let a = end - 2 * last;
    for b in &mut bytes[a..a + last] {
        *b = 0;
    }
    std::fs::write(&path, &bytes).unwrap();
    let store = open(dir.path(), Config::default());
    let d = store.dimension("default").unwrap();
    assert_eq!(d.len(), 1);
    d.put("key1", value(1, 40)).unwrap();
    drop((d, store));
    let store = open(dir.path(), Config::default());
    assert!(store.dimension("default").unwrap().get("key2").unwrap().is_none());
}

#[test]
fn damage_in_the_middle_of_the_region_is_reported_not_cut() {
    // Every put below was synced before the next was written, so each frame after the
    // first carries the synced-before bit: a flipped byte in key5's value is damage to an
    // acknowledged write, and so are the 14 frames after it. Opening must say so and leave
    // the file as it is, not cut the log there and zero what follows.
    let dir = tempfile::tempdir().unwrap();
    store_with_keys(dir.path(), 20);
    let path = region(dir.path(), "D01");
    let mut bytes = std::fs::read(&path).unwrap();
    let key5 = bytes.windows(4).position(|w| w == b"key5").expect("key5 is in the region");
    let flip = key5 + 4 + 10;
    bytes[flip] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let (file, offset, reason) = open_corrupt(dir.path(), Config::default());
    assert_eq!(file, path);
    assert!(offset < flip as u64 && offset + 200 > flip as u64, "offset {offset}, flipped {flip}");
    assert!(reason.contains("not torn by a crash"), "{reason}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "the failed open changed the region");

    // Salvage keeps what comes before the damage, as it does for sealed layers.
    let store = open(dir.path(), Config::default().salvage(true));
    let d = store.dimension("default").unwrap();
    for i in 0..5 {
        assert_eq!(d.get(format!("key{i}")).unwrap().unwrap().as_bytes(), value(i, 40));
    }
    assert_eq!(d.len(), 5);
}

/// A clean close ends the log with a sync mark: damage to any frame before it, the last ones
/// and those written under `None` without a sync between them included, is reported (QA:
/// a flipped byte in a `None` store that had been closed cleanly cost it 98 of 100 keys).
#[test]
fn after_a_clean_close_damage_to_any_frame_is_reported() {
    for (durability, frame) in [(Durability::None, 3), (Durability::None, 99), (Durability::Immediate, 99)] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), Config::default().durability(durability));
        let d = store.dimension("default").unwrap();
        for i in 0..100 {
            d.put(format!("k{i:03}"), value(i, 40)).unwrap();
        }
        drop(d);
        store.close().unwrap();
        let path = region(dir.path(), "D01");
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.windows(4).position(|w| w == format!("k{frame:03}").as_bytes()).unwrap() + 10;
        bytes[at] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let (_, offset, _) = open_corrupt(dir.path(), Config::default().durability(durability));
        assert!(offset < at as u64, "{durability:?}, frame {frame}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "the failed open changed the region");
    }
}

/// A value may hold bytes that are a whole frame with the synced-before bit (a stored copy of
/// a log, or a client's doing). After a crash that tore the write holding it, the store must
/// open with that write cut, not be refused as damaged (review: searching every offset after
/// the stopping point took the copy inside the value for evidence).
#[test]
fn a_frame_inside_a_value_is_no_evidence_of_damage() {
    let dir = tempfile::tempdir().unwrap();
    let inner = jessy_storage::fuzzing::encode_frame_marked(7, &[(1, b"x".to_vec(), b"y".to_vec())], true);
    let mut blob = vec![0xAAu8; 70_000];
    blob[40_000..40_000 + inner.len()].copy_from_slice(&inner);
    let store = open(dir.path(), Config::default());
    let d = store.dimension("default").unwrap();
    d.put("a", "small").unwrap();
    d.put("blob", &blob).unwrap();
    drop((d, store));
    let path = region(dir.path(), "D01");
    assert!(strip_sync_mark(&path), "as a crash would leave it");
    // The crash tore the blob's write: a page of it never reached the disk.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(4).position(|w| w == b"blob").unwrap();
    bytes[at + 8_192..at + 12_288].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    let store = open(dir.path(), Config::default());
    let d = store.dimension("default").unwrap();
    assert_eq!(d.get("a").unwrap().unwrap().as_bytes(), b"small");
    assert!(d.get("blob").unwrap().is_none(), "the torn write was cut");
}

/// `tar` or `rsync` of a running store reads the region front to back: zeros where the log
/// ended when it got there, then frames written since, some with the synced-before bit. That
/// copy restores to the prefix before the zeros, as docs/FORMAT.md (section 11) says.
#[test]
fn a_front_to_back_copy_of_a_running_store_opens_with_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Config::default());
    let d = store.dimension("default").unwrap();
    for i in 0..20 {
        d.put(format!("k{i:02}"), value(i, 300)).unwrap();
    }
    let path = region(dir.path(), "D01");
    let early = std::fs::read(&path).unwrap();
    let x = data_end(&path).div_ceil(4096) * 4096;
    for i in 20..60 {
        d.put(format!("k{i:02}"), value(i, 300)).unwrap();
    }
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    let late = std::fs::read(&path).unwrap();
    let mut torn = early[..x].to_vec();
    torn.extend_from_slice(&late[x..]);
    std::fs::write(region(copy.path(), "D01"), torn).unwrap();
    drop((d, store));
    let store = open(copy.path(), Config::default());
    let d = store.dimension("default").unwrap();
    assert_eq!(d.len(), 20);
    assert_eq!(d.get("k19").unwrap().unwrap().as_bytes(), value(19, 300));
}

#[test]
fn opening_and_closing_without_writes_adds_nothing_to_the_log() {
    let dir = tempfile::tempdir().unwrap();
    store_with_keys(dir.path(), 3); // ends without its mark, as after a crash
    let path = region(dir.path(), "D01");
    drop(open(dir.path(), Config::default()));
    let end = data_end(&path);
    for _ in 0..3 {
        drop(open(dir.path(), Config::default()));
        assert_eq!(data_end(&path), end, "a second mark was added");
    }
    assert!(strip_sync_mark(&path), "the first close added one");
    assert_eq!(open(dir.path(), Config::default()).dimension("default").unwrap().len(), 3);
}

#[test]
fn a_region_of_format_version_1_opens_and_gets_no_synced_before_bits() {
    let dir = tempfile::tempdir().unwrap();
    store_with_keys(dir.path(), 3);
    let path = region(dir.path(), "D01");
    let mut bytes = std::fs::read(&path).unwrap();
    // The region as version 1 wrote it: no frame has the bit, and the header says 1.
    let mut at = 32;
    while at + 24 <= bytes.len() && bytes[at..at + 24] != [0u8; 24] {
        let len = 24 + u32::from_le_bytes(bytes[at + 16..at + 20].try_into().unwrap()) as usize;
        bytes[at + 23] &= 0x7f;
        let crc = crc32fast::hash(&bytes[at + 4..at + 24]);
        bytes[at..at + 4].copy_from_slice(&crc.to_le_bytes());
        at += len;
    }
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    let crc = crc32fast::hash(&bytes[0..28]);
    bytes[28..32].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();

    let store = open(dir.path(), Config::default());
    let d = store.dimension("default").unwrap();
    assert_eq!(d.len(), 3);
    d.put("key3", value(3, 40)).unwrap();
    d.put("key4", value(4, 40)).unwrap();
    drop((d, store));
    let after = std::fs::read(&path).unwrap();
    assert_eq!(u32::from_le_bytes(after[8..12].try_into().unwrap()), 1, "still version 1");
    let mut at = 32;
    while at + 24 <= after.len() && after[at..at + 24] != [0u8; 24] {
        assert_eq!(after[at + 23] & 0x80, 0, "a version-1 region got a synced-before bit at {at}");
        at += 24 + u32::from_le_bytes(after[at + 16..at + 20].try_into().unwrap()) as usize;
    }
    assert_eq!(open(dir.path(), Config::default()).dimension("default").unwrap().len(), 5);
}

fn sealed_store(dir: &std::path::Path) {
    let store = open(dir, small(Durability::Immediate));
    let d = store.dimension("default").unwrap();
    for i in 0..400 {
        d.put(format!("key{i:03}"), value(i, 100)).unwrap();
    }
    assert!(dir.join("consciousness/D01/layers/L00000001.mmap").exists());
}

#[test]
fn a_flipped_bit_in_a_sealed_layer_is_reported_not_returned() {
    let dir = tempfile::tempdir().unwrap();
    sealed_store(dir.path());
    let layer = dir.path().join("consciousness/D01/layers/L00000001.mmap");
    let mut bytes = std::fs::read(&layer).unwrap();
    // The first record: file header 32, frame header 24, entry header 12, key "key000".
    bytes[32 + 24 + 12 + 6 + 10] ^= 0x04;
    std::fs::write(&layer, &bytes).unwrap();
    let store = open(dir.path(), small(Durability::Immediate));
    let d = store.dimension("default").unwrap();
    let err = d.get("key000").unwrap_err();
    match &err {
        Error::Corruption { file, offset, .. } => {
            assert!(file.ends_with("layers/L00000001.mmap"), "{err}");
            assert_eq!(*offset, 32 + 24);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(d.get("key001").unwrap().unwrap().as_bytes(), value(1, 100));
    assert!(d.iter().any(|r| r.is_err()), "a scan reports the damaged record too");
}

#[test]
fn damage_found_while_rebuilding_a_key_index_fails_open_unless_salvaging() {
    let dir = tempfile::tempdir().unwrap();
    sealed_store(dir.path());
    let layer = dir.path().join("consciousness/D01/layers/L00000001.mmap");
    let mut bytes = std::fs::read(&layer).unwrap();
    bytes[500] ^= 0x01;
    std::fs::write(&layer, &bytes).unwrap();
    std::fs::remove_file(dir.path().join("consciousness/D01/layers/L00000001.keys")).unwrap();
    let err = Store::open_with(dir.path(), small(Durability::Immediate)).unwrap_err();
    assert_eq!(err.code(), "corruption", "{err}");
    assert!(err.to_string().contains("L00000001.mmap"), "{err}");
    let store = Store::open_with(dir.path(), small(Durability::Immediate).salvage(true)).unwrap();
    let d = store.dimension("default").unwrap();
    assert!(d.get("key399").unwrap().is_some(), "later layers are intact");
}

#[test]
fn a_damaged_key_index_or_manifest_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    sealed_store(dir.path());
    let keys = dir.path().join("consciousness/D01/layers/L00000002.keys");
    let mut bytes = std::fs::read(&keys).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0xff;
    std::fs::write(&keys, &bytes).unwrap();
    std::fs::write(dir.path().join("consciousness/D01/index.json"), b"{ not json").unwrap();
    let store = open(dir.path(), small(Durability::Immediate));
    let d = store.dimension("default").unwrap();
    assert_eq!(d.len(), 400);
    for i in 0..400 {
        assert_eq!(d.get(format!("key{i:03}")).unwrap().unwrap().as_bytes(), value(i, 100));
    }
    let manifest = std::fs::read_to_string(dir.path().join("consciousness/D01/index.json")).unwrap();
    assert!(manifest.contains("\"name\": \"default\""));
    // The rebuild keeps the store usable, but it is not silent: the damaged bytes are kept,
    // and verify reports them until someone has looked.
    let kept = dir.path().join("consciousness/D01/index.json.damaged");
    assert_eq!(std::fs::read(&kept).unwrap(), b"{ not json");
    let report = store.verify();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].file, kept);
    std::fs::remove_file(&kept).unwrap();
    assert!(store.verify().is_ok());
}

#[test]
fn a_manifest_damaged_anywhere_keeps_its_dimensions_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Config::default());
    store.dimension("sessions").unwrap().put("k", "v").unwrap();
    store.dimension("other").unwrap().put("k", "w").unwrap();
    drop(store);
    let path = dir.path().join("consciousness/D02/index.json");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1] ^= 0x55; // no longer JSON
    std::fs::write(&path, &bytes).unwrap();
    let store = open(dir.path(), Config::default());
    assert_eq!(store.dimension("sessions").unwrap().get("k").unwrap().unwrap().as_bytes(), b"v");
    assert!(store.verify().problems.iter().any(|p| p.file.ends_with("D02/index.json.damaged")));
    drop(store);

    // A damaged manifest that still parses, naming another dimension: refused, not guessed.
    let path = dir.path().join("consciousness/D03/index.json");
    let text = std::fs::read_to_string(&path).unwrap().replace("\"other\"", "\"sessions\"");
    std::fs::write(&path, text).unwrap();
    let (_, _, reason) = open_corrupt(dir.path(), Config::default());
    assert!(reason.contains("both named \"sessions\""), "{reason}");
    // What the error says to do works.
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_file(dir.path().join("consciousness/D03/index.json.damaged")).unwrap();
    let store = open(dir.path(), Config::default());
    assert_eq!(store.dimension("dimension-3").unwrap().get("k").unwrap().unwrap().as_bytes(), b"w");
}

#[test]
fn missing_layer_files_are_listed_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    sealed_store(dir.path());
    std::fs::remove_file(dir.path().join("consciousness/D01/layers/L00000002.mmap")).unwrap();
    let err = Store::open_with(dir.path(), small(Durability::Immediate)).unwrap_err();
    assert!(matches!(err, Error::MissingFiles(ref v) if v.len() == 1), "{err}");
    assert!(err.to_string().contains("L00000002.mmap"));
}

#[test]
fn power_loss_keeps_every_immediate_write() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let config = small(Durability::Immediate).io(Arc::new(io.clone()) as Arc<dyn Io>);
    let store = Store::open_with(dir.path(), config.clone()).unwrap();
    let d = store.dimension("default").unwrap();
    for i in 0..300 {
        d.put(format!("k{i}"), value(i, 90)).unwrap();
    }
    io.crash();
    drop((d, store));
    io.revive();
    let store = Store::open_with(dir.path(), config).unwrap();
    let d = store.dimension("default").unwrap();
    for i in 0..300 {
        assert_eq!(d.get(format!("k{i}")).unwrap().unwrap().as_bytes(), value(i, 90), "k{i} was acknowledged");
    }
}

#[test]
fn power_loss_under_none_loses_only_a_suffix() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let config = small(Durability::None).io(Arc::new(io.clone()) as Arc<dyn Io>);
    let store = Store::open_with(dir.path(), config.clone()).unwrap();
    let d = store.dimension("default").unwrap();
    for i in 0..50 {
        d.put(format!("k{i:03}"), value(i, 90)).unwrap();
    }
    store.sync().unwrap();
    for i in 50..300 {
        d.put(format!("k{i:03}"), value(i, 90)).unwrap();
    }
    io.crash();
    drop((d, store));
    io.revive();
    let store = Store::open_with(dir.path(), config).unwrap();
    let d = store.dimension("default").unwrap();
    let present: Vec<bool> = (0..300).map(|i| d.get(format!("k{i:03}")).unwrap().is_some()).collect();
    assert!(present[..50].iter().all(|p| *p), "synced writes survive");
    let first_missing = present.iter().position(|p| !p).unwrap_or(300);
    assert!(present[first_missing..].iter().all(|p| !p), "what survives is a prefix of the writes");
    for (i, p) in present.iter().enumerate() {
        if *p {
            assert_eq!(d.get(format!("k{i:03}")).unwrap().unwrap().as_bytes(), value(i, 90));
        }
    }
}

#[test]
fn versions_of_writes_lost_in_a_power_loss_are_never_handed_out_again() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let config = small(Durability::None).io(Arc::new(io.clone()) as Arc<dyn Io>);
    let store = Store::open_with(dir.path(), config.clone()).unwrap();
    let d = store.dimension("default").unwrap();
    let kept = d.put("k", "synced").unwrap();
    store.sync().unwrap();
    // Acknowledged under `none`, seen by a client as an ETag, then lost.
    let mut lost = Vec::new();
    for i in 0..20 {
        lost.push(d.put("k", format!("lost {i}")).unwrap());
    }
    io.crash();
    drop((d, store));
    io.revive();
    let store = Store::open_with(dir.path(), config).unwrap();
    let d = store.dimension("default").unwrap();
    assert_eq!(d.get("k").unwrap().unwrap().version(), kept);
    let mut fresh = Vec::new();
    for i in 0..40 {
        fresh.push(d.put("k", format!("new {i}")).unwrap());
    }
    assert!(fresh.iter().all(|v| !lost.contains(v)), "a lost write's version was reused: {lost:?} / {fresh:?}");
    // So a conditional write holding a lost version cannot succeed by accident.
    for v in &lost {
        assert!(matches!(d.put_if("k", "stale", Expect::Version(*v)), Err(Error::ConditionFailed { .. })));
    }
}

#[test]
fn a_failed_sync_makes_the_store_read_only_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let config = Config::default().io(Arc::new(io.clone()) as Arc<dyn Io>);
    let store = Store::open_with(dir.path(), config.clone()).unwrap();
    let d = store.dimension("default").unwrap();
    d.put("before", b"1").unwrap();
    io.fail_nth(FaultOp::Sync, 1, libc::EIO, false);
    let err = d.put("during", b"2").unwrap_err();
    assert_eq!(err.code(), "read_only", "{err}");
    assert!(d.get("during").unwrap().is_none(), "an unacknowledged write is not visible");
    let err = d.put("after", b"3").unwrap_err();
    assert!(err.to_string().contains("reopen"), "{err}");
    assert_eq!(&d.get("before").unwrap().unwrap()[..], b"1", "reads keep working");
    assert!(store.stats().read_only.is_some());
    drop((d, store));
    let store = Store::open_with(dir.path(), config).unwrap();
    store.dimension("default").unwrap().put("after", b"3").unwrap();
}

#[test]
fn disk_full_while_growing_fails_the_write_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let config = small(Durability::Immediate).io(Arc::new(io.clone()) as Arc<dyn Io>);
    let store = Store::open_with(dir.path(), config.clone()).unwrap();
    let d = store.dimension("default").unwrap();
    io.fail_nth(FaultOp::Allocate, 1, libc::ENOSPC, true);
    let mut acked = Vec::new();
    let mut failed = 0;
    for i in 0..100 {
        match d.put(format!("k{i}"), value(i, 100)) {
            Ok(_) => acked.push(i),
            Err(e) => {
                assert!(e.is_disk_full(), "{e}");
                assert_eq!(e.code(), "disk_full");
                failed += 1;
            }
        }
    }
    assert!(failed > 0 && !acked.is_empty());
    io.clear_faults();
    d.put("later", b"ok").unwrap();
    drop((d, store));
    let store = Store::open_with(dir.path(), config).unwrap();
    let d = store.dimension("default").unwrap();
    for i in acked {
        assert!(d.get(format!("k{i}")).unwrap().is_some());
    }
    assert!(d.get("later").unwrap().is_some());
}

/// A store reopened on a full disk: the first write must reserve a block of sequence
/// numbers in index.json, which needs space. Under `Immediate` the write goes on without
/// it (QA: every PUT and DELETE answered 507, so no delete could free space).
#[test]
fn a_full_disk_after_a_reopen_does_not_stop_durable_writes() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    for durability in [Durability::Immediate, Durability::None] {
        let config = small(durability).io(Arc::new(io.clone()) as Arc<dyn Io>);
        let store = Store::open_with(dir.path(), config.clone()).unwrap();
        let first = store.dimension("default").unwrap().put("a", "1").unwrap();
        drop(store);
        let store = Store::open_with(dir.path(), config.clone()).unwrap();
        let d = store.dimension("default").unwrap();
        // The next write to a file is the reservation's temporary index.json.
        io.fail_nth(FaultOp::Write, 1, libc::ENOSPC, false);
        match (durability, d.delete("a")) {
            (Durability::Immediate, Ok(v)) => assert!(v > first),
            // Without a sync per write, a version may be seen before it is durable: there the
            // reservation is what keeps it from being handed out twice, so it is required.
            (Durability::None, Err(e)) => assert!(e.is_disk_full(), "{e}"),
            (_, other) => panic!("{durability:?}: {other:?}"),
        }
        let later = d.put("b", "2").unwrap();
        drop((d, store));
        let store = Store::open_with(dir.path(), config).unwrap();
        let d = store.dimension("default").unwrap();
        assert_eq!(d.get("b").unwrap().unwrap().as_bytes(), b"2");
        assert!(d.put("c", "3").unwrap() > later);
        if durability == Durability::Immediate {
            assert!(d.get("a").unwrap().is_none(), "the delete was acknowledged");
        }
        d.delete("b").unwrap();
        d.delete("c").unwrap();
    }
}

#[test]
fn a_write_error_is_not_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let config = Config::default().io(Arc::new(io.clone()) as Arc<dyn Io>);
    let store = Store::open_with(dir.path(), config).unwrap();
    let d = store.dimension("default").unwrap();
    io.fail_nth(FaultOp::Write, 1, libc::EIO, false);
    assert_eq!(d.put("k", b"v").unwrap_err().code(), "io_error");
    assert!(d.get("k").unwrap().is_none());
    d.put("k2", b"v2").unwrap();
}

#[test]
fn leftovers_in_temp_and_proto_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), Config::default()));
    std::fs::write(dir.path().join("temp/region-crashed.tmp"), b"x").unwrap();
    std::fs::create_dir_all(dir.path().join("proto/half-loaded")).unwrap();
    drop(open(dir.path(), Config::default()));
    assert_eq!(std::fs::read_dir(dir.path().join("temp")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(dir.path().join("proto")).unwrap().count(), 0);
}

#[test]
fn an_index_pointing_at_another_keys_entry_is_reported_not_answered() {
    let dir = tempfile::tempdir().unwrap();
    let config = small(Durability::Immediate);
    {
        let store = open(dir.path(), config.clone());
        let d = store.dimension("default").unwrap();
        // Enough to seal at least one layer with a key index.
        for i in 0..200 {
            d.put(format!("k{i:03}"), value(i, 150)).unwrap();
        }
    }
    // Swap two keys' offsets in a sealed layer's key index, with a valid checksum: a wrong
    // index that no checksum can catch.
    let layers = dir.path().join("consciousness/D01/layers");
    let keys = std::fs::read_dir(&layers)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "keys"))
        .expect("a sealed layer");
    let (dim, layer, end, mut items) =
        jessy_storage::fuzzing::decode_key_index(&std::fs::read(&keys).unwrap()).unwrap();
    assert!(items.len() >= 2);
    let (a, b) = (items[0].3, items[1].3);
    items[0].3 = b;
    items[1].3 = a;
    let swapped = items[0].1.clone();
    std::fs::write(&keys, jessy_storage::fuzzing::encode_key_index(dim, layer, end, &items)).unwrap();

    let store = open(dir.path(), config);
    let d = store.dimension("default").unwrap();
    let err = d.get(&swapped).unwrap_err();
    assert_eq!(err.code(), "corruption", "{err}");
    assert!(err.to_string().contains("another key"), "{err}");
    assert!(err.to_string().contains(".mmap"), "names the file: {err}");
    let err = d.range(swapped.clone()..).next().unwrap().unwrap_err();
    assert!(err.to_string().contains("another key"), "{err}");
}

/// Real I/O, but a key index takes 20 ms to be renamed into place: the thread writing it is
/// still running when the checks after a seal begin.
#[derive(Default)]
struct SlowKeyIndex(jessy_storage::io::StdIo);

impl Io for SlowKeyIndex {
    fn open(&self, path: &Path, create: bool) -> std::io::Result<Arc<dyn jessy_storage::io::IoFile>> {
        self.0.open(path, create)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        if from.to_string_lossy().ends_with(".keys.tmp") {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.0.rename(from, to)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.0.hard_link(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.0.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.0.remove_dir_all(path)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.0.create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        self.0.sync_dir(path)
    }
    fn read_dir(&self, path: &Path) -> std::io::Result<Vec<PathBuf>> {
        self.0.read_dir(path)
    }
}

/// A seal publishes its layer first and writes the layer's key index afterwards, on a thread
/// of its own (docs/FORMAT.md, "Sealing"). Whatever reads layer files right after a seal
/// (`verify`, a snapshot) or closes the store must wait for that index, and the state in
/// between (layer listed, index not yet written) must reopen with nothing lost.
#[test]
fn a_key_index_written_after_its_seal_is_there_for_verify_snapshots_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small(Durability::Immediate).io(Arc::new(SlowKeyIndex::default())));
    let d = store.dimension("default").unwrap();
    let (mut layers, mut seals, mut written) = (0, 0, 0);
    // Each check right after a seal: verify after odd ones, a snapshot after even ones, and
    // closing after the last.
    while seals < 12 {
        d.put(format!("key{written:04}"), value(written, 100)).unwrap();
        written += 1;
        if d.stats().layers == layers {
            continue;
        }
        layers = d.stats().layers;
        seals += 1;
        if seals % 2 == 1 {
            let report = store.verify();
            assert!(report.is_ok(), "verify right after seal {seals}: {:?}", report.problems);
        } else if seals < 12 {
            let snap = tempfile::tempdir().unwrap();
            let dest = snap.path().join("s");
            store.snapshot(&dest).unwrap();
            let copied = std::fs::read_dir(dest.join("consciousness/D01/layers")).unwrap();
            let names: Vec<String> = copied.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            for log in names.iter().filter(|n| n.ends_with(".mmap")) {
                let keys = log.replace(".mmap", ".keys");
                assert!(names.contains(&keys), "snapshot after seal {seals} lacks {keys}: {names:?}");
            }
        }
    }
    drop(d);
    store.close().unwrap();

    let layers_dir = dir.path().join("consciousness/D01/layers");
    let mut logs: Vec<_> = std::fs::read_dir(&layers_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "mmap"))
        .collect();
    logs.sort();
    for log in &logs {
        assert!(log.with_extension("keys").exists(), "{} has no key index after close", log.display());
    }
    // The state a crash between publishing the newest layer and writing its index leaves.
    let newest = logs.last().unwrap().with_extension("keys");
    std::fs::remove_file(&newest).unwrap();
    let store = open(dir.path(), small(Durability::Immediate));
    let d = store.dimension("default").unwrap();
    assert_eq!(d.len() as usize, written);
    for i in 0..written {
        assert_eq!(d.get(format!("key{i:04}")).unwrap().unwrap().as_bytes(), value(i, 100), "key{i:04}");
    }
    assert!(newest.exists(), "open rebuilt the missing key index");
    assert!(store.verify().is_ok());
}

/// Opens the store at `dir`, puts keys `a0000`, `a0001`, ... (`n` of them, 100-byte values),
/// and closes it.
fn put_and_close(dir: &std::path::Path, config: Config, n: usize) {
    let store = open(dir, config);
    let d = store.dimension("default").unwrap();
    for i in 0..n {
        d.put(format!("a{i:04}"), value(i, 100)).unwrap();
    }
    drop(d);
    store.close().unwrap();
}

/// Without `Immediate` a region grows by reserving blocks (`fallocate`) instead of writing
/// zeros; the reserved space must read as zeros to recovery (the end of the log) and take
/// later writes under any durability. Here a store grows and seals under `None`, is cut
/// short by a crash in the middle of the region (the tail torn with garbage), and goes on
/// under `Immediate` into the same reserved space.
#[test]
fn reserved_space_reads_as_the_end_of_the_log_and_takes_durable_writes_later() {
    let dir = tempfile::tempdir().unwrap();
    let none = Config::default().initial_size(4096).max_size(64 * 1024).durability(Durability::None);
    put_and_close(dir.path(), none.clone(), 1000);
    let path = region(dir.path(), "D01");
    let end = data_end(&path);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    assert!(end + 64 < len, "the region has reserved space past its data ({end} of {len})");
    // A torn frame after the last whole one: recovery must cut it and find zeros beyond.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0xAB; 40], end as u64).unwrap();
    drop(f);

    let immediate = none.clone().durability(Durability::Immediate);
    let store = open(dir.path(), immediate.clone());
    let d = store.dimension("default").unwrap();
    assert_eq!(d.len(), 1000);
    for i in 0..200 {
        d.put(format!("b{i:04}"), value(i, 100)).unwrap();
    }
    drop((d, store));
    let store = open(dir.path(), immediate);
    let d = store.dimension("default").unwrap();
    assert_eq!(d.len(), 1200);
    assert_eq!(d.get("a0999").unwrap().unwrap().to_vec(), value(999, 100));
    assert_eq!(d.get("b0199").unwrap().unwrap().to_vec(), value(199, 100));
    assert!(store.verify().is_ok());
}

/// Where the first hole at or after `from` begins in the file at `path` (`SEEK_HOLE`; a
/// range reserved with `fallocate` but never written counts as one), if before its end.
fn first_hole(path: &std::path::Path, from: u64) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    // SAFETY: a plain syscall on a descriptor this function owns; no memory is passed.
    let at = unsafe { libc::lseek(f.as_raw_fd(), from as libc::off_t, libc::SEEK_HOLE) };
    assert!(at >= 0, "lseek: {}", std::io::Error::last_os_error());
    Some(at as u64).filter(|&at| at < len)
}

/// Drops the clean cached pages of the file at `path` (as a restart would find them): the
/// file system reports reserved blocks whose pages are cached as data.
fn drop_cache(path: &std::path::Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: a plain syscall on a descriptor this function owns; no memory is passed.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

/// A store written under `None` leaves its region's free space only reserved; reopened under
/// `Immediate`, that space is written with zeros first (each durable append into reserved
/// blocks would pay for converting them), and the data before it is untouched.
#[test]
fn reopening_under_immediate_writes_zeros_over_reserved_space() {
    let dir = tempfile::tempdir().unwrap();
    let none = Config::default().initial_size(1 << 20).max_size(1 << 20).durability(Durability::None);
    put_and_close(dir.path(), none.clone(), 300);
    let path = region(dir.path(), "D01");
    drop_cache(&path);
    let Some(hole) = first_hole(&path, 0) else {
        eprintln!("skipped: this file system shows no reserved space as a hole");
        return;
    };
    let end = data_end(&path) as u64;
    assert!(hole >= end - end % 4096, "a hole at {hole} inside the data (which ends at {end})");
    drop_cache(&path);

    let store = open(dir.path(), none.durability(Durability::Immediate));
    let d = store.dimension("default").unwrap();
    assert_eq!(d.len(), 300);
    assert_eq!(d.get("a0299").unwrap().unwrap().to_vec(), value(299, 100));
    d.put("b", value(1, 100)).unwrap();
    assert!(store.verify().is_ok());
    drop(d);
    store.close().unwrap();
    // Closed, so that no page of the region is mapped (mapped pages count as data too).
    drop_cache(&path);
    assert_eq!(first_hole(&path, 0), None, "reserved space left after the reopen");
}
