//! Compaction: space comes back, nothing is lost or resurrected, a crash at any step
//! leaves the state from before or after, and readers and writers keep going.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use jessy_storage::io::{FaultyIo, Io};
use jessy_storage::{Config, Dimension, Durability, Store};

fn disk_bytes(dir: &std::path::Path) -> u64 {
    let d = dir.join("consciousness/D01");
    let mut total = std::fs::metadata(d.join("region.mmap")).unwrap().len();
    for e in std::fs::read_dir(d.join("layers")).unwrap() {
        total += e.unwrap().metadata().unwrap().len();
    }
    total
}

/// Overwrites every key five times and deletes half of them; returns the model.
fn churn(d: &Dimension, keys: usize) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut model = BTreeMap::new();
    for round in 0..5 {
        for i in 0..keys {
            let (k, v) = (format!("key{i:05}").into_bytes(), value(i + round * 7, 120));
            d.put(&k, &v).unwrap();
            model.insert(k, v);
        }
    }
    for i in (0..keys).step_by(2) {
        let k = format!("key{i:05}").into_bytes();
        d.delete(&k).unwrap();
        model.remove(&k);
    }
    model
}

fn check(d: &Dimension, model: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let got: Vec<(Vec<u8>, Vec<u8>)> = d.iter().map(|r| r.map(|(k, v)| (k, v.to_vec())).unwrap()).collect();
    let want: Vec<(Vec<u8>, Vec<u8>)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "contents differ from the model");
    for (k, v) in model {
        assert_eq!(d.get(k).unwrap().unwrap().as_bytes(), v.as_slice());
    }
}

fn config() -> Config {
    Config::default()
        .initial_size(16 << 10)
        .max_size(64 << 10)
        .durability(Durability::None)
        .background_compaction(false)
}

#[test]
fn compaction_gives_space_back_and_keeps_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), config());
    let d = store.dimension("default").unwrap();
    let model = churn(&d, 2000);
    store.sync().unwrap();
    let before = disk_bytes(dir.path());
    let report = d.compact().unwrap();
    assert!(report.layers_compacted > 0 && report.bytes_reclaimed > 0, "{report:?}");
    check(&d, &model);
    let stats = d.stats();
    let after = disk_bytes(dir.path());
    let live = stats.live_bytes;
    assert_eq!(after, stats.disk_bytes);
    // Target: under 1.5x the live data plus one region.
    assert!(
        (after as f64) < 1.5 * live as f64 + (64 << 10) as f64,
        "disk {after} bytes for {live} live bytes (before compaction: {before})"
    );
    drop((d, store));
    let store = open(dir.path(), config());
    check(&store.dimension("default").unwrap(), &model);
}

#[test]
fn tombstones_hide_older_versions_in_layers_not_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), config());
    let d = store.dimension("default").unwrap();
    let mut model = BTreeMap::new();
    // Layer 1: long-lived keys that are never overwritten (not worth compacting).
    for i in 0..400 {
        let (k, v) = (format!("stable{i:04}").into_bytes(), value(i, 120));
        d.put(&k, &v).unwrap();
        model.insert(k, v);
    }
    // Delete a few of them, then churn so the deletes land in layers that get compacted.
    for i in 0..10 {
        let k = format!("stable{i:04}").into_bytes();
        d.delete(&k).unwrap();
        model.remove(&k);
    }
    for round in 0..6 {
        for i in 0..300 {
            let (k, v) = (format!("hot{i:04}").into_bytes(), value(i + round, 120));
            d.put(&k, &v).unwrap();
            model.insert(k, v);
        }
    }
    d.compact().unwrap();
    check(&d, &model);
    drop((d, store));
    let store = open(dir.path(), config());
    check(&store.dimension("default").unwrap(), &model);
}

#[test]
fn a_crash_at_every_step_of_a_compaction_leaves_the_same_contents() {
    let src = tempfile::tempdir().unwrap();
    let model = {
        let store = open(src.path(), config());
        let d = store.dimension("default").unwrap();
        let m = churn(&d, 600);
        store.sync().unwrap();
        m
    };
    // Count the I/O operations of a whole compaction.
    let steps = {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(src.path(), dir.path());
        let io = FaultyIo::new();
        let store = Store::open_with(dir.path(), config().io(Arc::new(io.clone()) as Arc<dyn Io>)).unwrap();
        let before = io.op_count();
        assert!(store.dimension("default").unwrap().compact().unwrap().layers_compacted > 0);
        io.op_count() - before
    };
    assert!(steps > 10, "a compaction takes more than {steps} steps");
    for n in 1..=steps {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(src.path(), dir.path());
        let io = FaultyIo::new();
        let cfg = config().io(Arc::new(io.clone()) as Arc<dyn Io>);
        let store = Store::open_with(dir.path(), cfg.clone()).unwrap();
        let d = store.dimension("default").unwrap();
        io.crash_after(n);
        let _ = d.compact();
        drop((d, store));
        io.revive();
        let store =
            Store::open_with(dir.path(), cfg).unwrap_or_else(|e| panic!("reopen after a crash at step {n}: {e}"));
        check(&store.dimension("default").unwrap(), &model);
        assert_eq!(std::fs::read_dir(dir.path().join("temp")).unwrap().count(), 0, "temp/ swept (step {n})");
    }
}

#[test]
fn readers_and_writers_keep_going_during_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), config());
    let d = store.dimension("default").unwrap();
    churn(&d, 1000);
    let writer = {
        let d = d.clone();
        std::thread::spawn(move || {
            for i in 0..3000 {
                d.put(format!("key{:05}", i % 1000), format!("new{i}")).unwrap();
            }
        })
    };
    let reader = {
        let d = d.clone();
        std::thread::spawn(move || {
            let mut reads = 0;
            for _ in 0..20 {
                for item in d.iter() {
                    let (_, v) = item.unwrap();
                    assert!(v.len() == 120 || v.starts_with(b"new"));
                    reads += 1;
                }
            }
            reads
        })
    };
    for _ in 0..5 {
        d.compact().unwrap();
    }
    writer.join().unwrap();
    assert!(reader.join().unwrap() > 0);
    d.compact().unwrap();
    // The writer's last round wins for every key.
    for i in 0..1000 {
        assert_eq!(&d.get(format!("key{i:05}")).unwrap().unwrap()[..], format!("new{}", 2000 + i).as_bytes());
    }
    drop((d, store));
    let store = open(dir.path(), config());
    let d = store.dimension("default").unwrap();
    for i in 0..1000 {
        assert_eq!(&d.get(format!("key{i:05}")).unwrap().unwrap()[..], format!("new{}", 2000 + i).as_bytes());
    }
}

/// After its commit a compaction repoints the index a chunk of keys at a time, letting
/// writers and readers in between: a write or delete that lands meanwhile must win over
/// the copy, and a key the compaction moves must stay readable all along.
#[test]
fn writes_during_a_large_compactions_repointing_win() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const KEYS: u64 = 20_000;
    let key = |i: u64| format!("key{i:06}").into_bytes();
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::default()
        .initial_size(1 << 20)
        .max_size(1 << 20)
        .durability(Durability::None)
        .background_compaction(false)
        .compaction_threshold(0.3);
    let store = open(dir.path(), cfg.clone());
    let d = store.dimension("default").unwrap();
    // Every key once, then the even ones again: the first layers are half dead, and their
    // odd keys (10,000) are what the compaction copies and repoints.
    for i in 0..KEYS {
        d.put(key(i), tagged(&key(i), 0, 100)).unwrap();
    }
    for i in (0..KEYS).step_by(2) {
        d.put(key(i), tagged(&key(i), 1, 100)).unwrap();
    }
    d.sync().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    // The writer overwrites and deletes odd keys `i % 4 == 1` while the compaction runs;
    // keys `i % 4 == 3` it leaves alone.
    let writer = {
        let (d, done) = (d.clone(), done.clone());
        std::thread::spawn(move || {
            let mut model: BTreeMap<Vec<u8>, Option<u64>> = BTreeMap::new();
            let mut rng = Rng::new(7);
            let mut tag = 2;
            while !done.load(Ordering::Acquire) || tag < 20_000 {
                let i = rng.below(KEYS / 4) * 4 + 1;
                if rng.below(5) == 0 {
                    d.delete(key(i)).unwrap();
                    model.insert(key(i), None);
                } else {
                    d.put(key(i), tagged(&key(i), tag, 100)).unwrap();
                    model.insert(key(i), Some(tag));
                }
                tag += 1;
            }
            model
        })
    };
    let reader = {
        let (d, done) = (d.clone(), done.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            let mut rng = Rng::new(11);
            while !done.load(Ordering::Acquire) {
                let i = rng.below(KEYS / 4) * 4 + 3;
                let v = d.get(key(i)).unwrap().unwrap_or_else(|| panic!("key{i:06} went missing"));
                assert_eq!(check_tagged(&key(i), &v), Ok(0));
                let j = rng.below(KEYS / 4) * 4 + 1;
                if let Some(v) = d.get(key(j)).unwrap() {
                    check_tagged(&key(j), &v).unwrap();
                }
                reads += 1;
            }
            reads
        })
    };
    let report = d.compact().unwrap();
    done.store(true, Ordering::Release);
    let written = writer.join().unwrap();
    assert!(reader.join().unwrap() > 0);
    assert!(report.layers_compacted > 0 && report.bytes_reclaimed > 0, "{report:?}");
    let want = |i: u64| match i % 4 {
        0 | 2 => Some(1),
        3 => Some(0),
        _ => written.get(&key(i)).copied().unwrap_or(Some(0)),
    };
    let check_all = |d: &Dimension| {
        for i in 0..KEYS {
            let got = d.get(key(i)).unwrap().map(|v| check_tagged(&key(i), &v).unwrap());
            assert_eq!(got, want(i), "key{i:06}");
        }
    };
    check_all(&d);
    drop((d, store));
    let store = open(dir.path(), cfg);
    check_all(&store.dimension("default").unwrap());
}

#[test]
fn background_compaction_runs_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), config().background_compaction(true));
    let d = store.dimension("default").unwrap();
    let model = churn(&d, 1000);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while store.stats().compactions == 0 {
        assert!(std::time::Instant::now() < deadline, "no background compaction within 20 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    check(&d, &model);
}

#[test]
fn layers_of_tombstones_that_must_stay_are_not_rewritten_forever() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), config());
    let d = store.dimension("default").unwrap();
    // Old layers that compaction leaves alone (a third dead) hold the keys of the
    // tombstones below, so those tombstones must stay.
    for i in 0..4000 {
        d.put(format!("stable{i:04}"), value(i, 120)).unwrap();
    }
    for i in (0..4000).step_by(3) {
        d.delete(format!("stable{i:04}")).unwrap();
    }
    for i in 0..200 {
        d.put(format!("filler{i:04}"), value(i, 120)).unwrap();
    }
    let mut rounds = Vec::new();
    for _ in 0..4 {
        rounds.push(d.compact().unwrap());
    }
    assert!(rounds[0].layers_compacted > 0, "{rounds:?}");
    assert_eq!(rounds[3].layers_compacted, 0, "compaction keeps rewriting the same tombstones: {rounds:?}");
    assert_eq!(d.len(), 4000 - 1334 + 200);
    assert!(d.get("stable0003").unwrap().is_none());
    drop((d, store));
    let store = open(dir.path(), config());
    let d = store.dimension("default").unwrap();
    assert_eq!(d.len(), 4000 - 1334 + 200);
    assert!(d.get("stable0003").unwrap().is_none());
}

/// Records listed in the sealed layers of index.json.
fn listed_records(dir: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(dir.join("consciousness/D01/index.json")).unwrap();
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    m["layers"].as_array().unwrap().iter().map(|l| l["records"].as_u64().unwrap()).sum()
}

#[test]
fn tombstones_whose_keys_no_untouched_layer_holds_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), config());
    let d = store.dimension("default").unwrap();
    // Layers compaction leaves alone, younger than nothing below but holding other keys:
    // by sequence numbers alone they would keep every tombstone.
    for i in 0..400 {
        d.put(format!("stable{i:04}"), value(i, 120)).unwrap();
    }
    for i in 0..3000 {
        d.put(format!("temp{i:05}"), value(i, 120)).unwrap();
    }
    for i in 0..3000 {
        d.delete(format!("temp{i:05}")).unwrap();
    }
    for i in 0..400 {
        d.put(format!("later{i:04}"), value(i, 120)).unwrap();
    }
    let before = listed_records(dir.path());
    d.compact().unwrap();
    let after = listed_records(dir.path());
    // What stays: the 800 live puts in sealed layers, and the tombstones of the few temp
    // keys that share a layer with stable keys (that layer is not worth compacting).
    assert!(before > 3000, "the test needs sealed tombstones: {before} records");
    assert!(after < 800 + 300, "{after} records after compaction, {before} before: tombstones were kept");
    assert_eq!(d.len(), 800);
    drop((d, store));
    let store = open(dir.path(), config());
    let d = store.dimension("default").unwrap();
    assert_eq!(d.len(), 800);
    for i in (0..3000).step_by(97) {
        assert!(d.get(format!("temp{i:05}")).unwrap().is_none());
    }
}
