//! Snapshots, backups, plain tar copies, bulk loads and verify.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use jessy_storage::io::{FaultyIo, Io};
use jessy_storage::{Config, Dimension, Durability, Store};

fn config() -> Config {
    Config::default()
        .initial_size(16 << 10)
        .max_size(64 << 10)
        .durability(Durability::Immediate)
        .background_compaction(false)
}

fn contents(d: &Dimension) -> BTreeMap<Vec<u8>, Vec<u8>> {
    d.iter().map(|r| r.map(|(k, v)| (k, v.to_vec())).unwrap()).collect()
}

#[test]
fn a_snapshot_under_writes_holds_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), config());
    let d = store.dimension("default").unwrap();
    let other = store.dimension("other").unwrap();
    other.put("o", b"other dimension").unwrap();
    let acked = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (d, acked) = (d.clone(), acked.clone());
        std::thread::spawn(move || {
            for i in 0..3000 {
                d.put(format!("k{i:05}"), value(i, 80)).unwrap();
                acked.store(i + 1, Ordering::SeqCst);
            }
        })
    };
    while acked.load(Ordering::SeqCst) < 500 {
        std::thread::yield_now();
    }
    let before = acked.load(Ordering::SeqCst);
    let snap = tempfile::tempdir().unwrap();
    store.snapshot(snap.path().join("copy")).unwrap();
    writer.join().unwrap();

    let restored = tempfile::tempdir().unwrap();
    copy_dir(&snap.path().join("copy"), restored.path());
    let copy = open(restored.path(), config());
    let cd = copy.dimension("default").unwrap();
    let n = cd.len();
    assert!(n >= before, "snapshot has {n} keys, {before} were acknowledged before it");
    // A consistent prefix: exactly the first n writes, with their values.
    for i in 0..n {
        assert_eq!(cd.get(format!("k{i:05}")).unwrap().unwrap().as_bytes(), value(i, 80));
    }
    assert_eq!(&copy.get_dimension("other").unwrap().get("o").unwrap().unwrap()[..], b"other dimension");
    assert!(copy.verify().is_ok());
}

#[test]
fn backup_streams_a_tar_gz_that_tar_restores() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), config());
    let d = store.dimension("default").unwrap();
    for i in 0..1500 {
        d.put(format!("k{i:05}"), value(i, 90)).unwrap();
    }
    d.delete("k00007").unwrap();
    let want = contents(&d);
    let file = dir.path().join("backup.tar.gz");
    store.backup(std::fs::File::create(&file).unwrap()).unwrap();
    assert_eq!(std::fs::read_dir(dir.path().join("temp")).unwrap().count(), 0, "scratch copy removed");

    let restored = tempfile::tempdir().unwrap();
    let status = Command::new("tar").arg("-xzf").arg(&file).arg("-C").arg(restored.path()).status().unwrap();
    assert!(status.success());
    let listing = Command::new("tar").arg("-tzf").arg(&file).output().unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert!(listing.lines().all(|l| l.starts_with("consciousness/")), "{listing}");
    assert!(listing.contains("consciousness/D01/index.json"));
    let copy = open(restored.path(), config());
    assert_eq!(contents(&copy.dimension("default").unwrap()), want);
}

#[test]
fn plain_tar_of_a_stopped_store_restores_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let want = {
        let store = open(dir.path(), config());
        let d = store.dimension("users").unwrap();
        for i in 0..1000 {
            d.put(format!("u{i}"), value(i, 100)).unwrap();
        }
        contents(&d)
    };
    let archive = tempfile::tempdir().unwrap();
    let file = archive.path().join("b.tar.gz");
    let ok =
        Command::new("tar").arg("-czf").arg(&file).arg("-C").arg(dir.path()).arg("consciousness").status().unwrap();
    assert!(ok.success());
    let restored = tempfile::tempdir().unwrap();
    let ok = Command::new("tar").arg("-xzf").arg(&file).arg("-C").arg(restored.path()).status().unwrap();
    assert!(ok.success());
    let store = open(restored.path(), config());
    assert_eq!(contents(&store.get_dimension("users").unwrap()), want);
}

#[test]
fn bulk_load_is_invisible_until_finished_and_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), config());
    let mut load = store.bulk_load("bulk").unwrap();
    for i in 0..5000 {
        load.put(format!("b{i:05}"), value(i, 60)).unwrap();
    }
    load.put("b00001", b"later wins").unwrap();
    assert!(store.get_dimension("bulk").is_err(), "not visible before finish");
    assert_eq!(store.dimension("bulk").unwrap_err().code(), "dimension_busy");
    assert_eq!(load.put("", b"x").unwrap_err().code(), "empty_key");
    let d = load.finish().unwrap();
    assert_eq!(d.len(), 5000);
    assert_eq!(&d.get("b00001").unwrap().unwrap()[..], b"later wins");
    assert_eq!(d.get("b04999").unwrap().unwrap().as_bytes(), value(4999, 60));
    d.put("after", b"writes work").unwrap();
    assert_eq!(store.bulk_load("bulk").unwrap_err().code(), "dimension_exists");

    // An abandoned load leaves nothing behind.
    let mut abandoned = store.bulk_load("abandoned").unwrap();
    abandoned.put("x", b"y").unwrap();
    drop(abandoned);
    assert!(store.get_dimension("abandoned").is_err());
    assert_eq!(std::fs::read_dir(dir.path().join("proto")).unwrap().count(), 0);
    drop((d, store));
    let store = open(dir.path(), config());
    let d = store.get_dimension("bulk").unwrap();
    assert_eq!(d.len(), 5001);
    assert!(store.verify().is_ok());
}

#[test]
fn a_crash_during_a_bulk_load_leaves_all_or_nothing() {
    let steps = {
        let dir = tempfile::tempdir().unwrap();
        let io = FaultyIo::new();
        let store = Store::open_with(dir.path(), config().io(Arc::new(io.clone()) as Arc<dyn Io>)).unwrap();
        let before = io.op_count();
        let mut load = store.bulk_load("bulk").unwrap();
        for i in 0..2000 {
            load.put(format!("b{i:05}"), value(i, 60)).unwrap();
        }
        load.finish().unwrap();
        io.op_count() - before
    };
    for n in 1..=steps {
        let dir = tempfile::tempdir().unwrap();
        let io = FaultyIo::new();
        let cfg = config().io(Arc::new(io.clone()) as Arc<dyn Io>);
        let store = Store::open_with(dir.path(), cfg.clone()).unwrap();
        io.crash_after(n);
        let result = (|| {
            let mut load = store.bulk_load("bulk")?;
            for i in 0..2000 {
                load.put(format!("b{i:05}"), value(i, 60))?;
            }
            load.finish()
        })();
        drop(result);
        drop(store);
        io.revive();
        let store = Store::open_with(dir.path(), cfg).unwrap_or_else(|e| panic!("reopen after crash at step {n}: {e}"));
        match store.get_dimension("bulk") {
            Ok(d) => assert_eq!(d.len(), 2000, "crash at step {n} left a partial dimension"),
            Err(e) => assert_eq!(e.code(), "dimension_not_found"),
        }
        assert_eq!(std::fs::read_dir(dir.path().join("proto")).unwrap().count(), 0);
    }
}

#[test]
fn verify_reports_damage_with_file_and_offset_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), config());
        let d = store.dimension("default").unwrap();
        for i in 0..1500 {
            d.put(format!("k{i:05}"), value(i, 90)).unwrap();
        }
        let report = store.verify();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.keys, 1500);
        assert!(report.records >= 1500 && report.layers > 2);
    }
    let layer = dir.path().join("consciousness/D01/layers/L00000002.mmap");
    let mut bytes = std::fs::read(&layer).unwrap();
    bytes[200] ^= 0x40;
    std::fs::write(&layer, &bytes).unwrap();
    let snapshot_of_files = |p: &std::path::Path| std::fs::read(p).unwrap();
    let store = open(dir.path(), config());
    let before = snapshot_of_files(&layer);
    let report = store.verify();
    assert!(!report.is_ok());
    assert!(report.problems.iter().any(|p| p.file.ends_with("L00000002.mmap")), "{:?}", report.problems);
    assert_eq!(snapshot_of_files(&layer), before, "verify changed the file");
}

/// Everything a snapshot copies was synced, so the copy's active region ends with a sync
/// mark: damage to its last frame, which a crash could not have torn, is reported when the
/// copy is opened (a restore's check), not cut off as a torn tail.
#[test]
fn damage_to_the_last_frame_of_a_snapshot_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), config());
    let d = store.dimension("default").unwrap();
    for i in 0..20 {
        d.put(format!("key{i:02}"), value(i, 50)).unwrap();
    }
    let copy = tempfile::tempdir().unwrap();
    store.snapshot(copy.path().join("s")).unwrap();
    // A second snapshot of a region that already ends with a mark adds no other.
    drop(d);
    store.close().unwrap();
    let store = open(dir.path(), config());
    store.snapshot(copy.path().join("t")).unwrap();
    let (s, t) = (region(&copy.path().join("s"), "D01"), region(&copy.path().join("t"), "D01"));
    let (sb, tb) = (std::fs::read(&s).unwrap(), std::fs::read(&t).unwrap());
    assert_eq!(sb.len(), tb.len(), "one mark each (the second is the close's)");
    assert_eq!(sb[..sb.len() - 24], tb[..tb.len() - 24]);

    let mut bytes = std::fs::read(&s).unwrap();
    let at = bytes.windows(5).position(|w| w == b"key19").unwrap() + 20;
    bytes[at] ^= 0x04;
    std::fs::write(&s, &bytes).unwrap();
    open_corrupt(&copy.path().join("s"), config());
    // Undamaged, the copy opens with every key.
    assert_eq!(open(&copy.path().join("t"), config()).dimension("default").unwrap().len(), 20);
}
