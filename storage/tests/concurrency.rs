//! Readers on several threads while writers append, regions grow and seal.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use jessy_storage::{Durability, WriteBatch};

/// Values are self-describing: "key|generation|" repeated, so a reader can tell a whole
/// value from a torn or foreign one.
fn payload(key: u64, gen: u64) -> Vec<u8> {
    let unit = format!("{key}|{gen}|");
    unit.repeat(1 + (key as usize * 7 + gen as usize) % 20).into_bytes()
}

fn check(key: u64, v: &[u8]) -> u64 {
    let s = std::str::from_utf8(v).expect("value is utf-8");
    let mut parts = s.split('|');
    let k: u64 = parts.next().unwrap().parse().unwrap();
    let gen: u64 = parts.next().unwrap().parse().unwrap();
    assert_eq!(k, key, "value belongs to another key");
    assert_eq!(v, payload(key, gen).as_slice(), "partial or mixed value");
    gen
}

fn run(durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small(durability));
    let d = store.dimension("default").unwrap();
    const KEYS: u64 = 64;
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    // Everyone starts together: otherwise, under Durability::None, the writers can finish
    // before a reader has run at all.
    let start = Arc::new(std::sync::Barrier::new(5));
    let mut writers = Vec::new();
    for w in 0..2u64 {
        let (d, acked, start) = (d.clone(), acked.clone(), start.clone());
        writers.push(std::thread::spawn(move || {
            start.wait();
            for gen in 1..=400u64 {
                let k = (gen * 13 + w * 7) % KEYS;
                // Each writer owns the keys of its parity, so generations only grow.
                let k = k - k % 2 + w;
                if gen.is_multiple_of(10) {
                    d.write(WriteBatch::new().put(k.to_string(), payload(k, gen)).put(format!("{k}"), payload(k, gen)))
                        .unwrap();
                } else {
                    d.put(k.to_string(), payload(k, gen)).unwrap();
                }
                acked[k as usize].store(gen, Ordering::SeqCst);
            }
        }));
    }
    let mut readers = Vec::new();
    for r in 0..3u64 {
        let (d, acked, stop, start) = (d.clone(), acked.clone(), stop.clone(), start.clone());
        readers.push(std::thread::spawn(move || {
            start.wait();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let k = (n * 31 + r) % KEYS;
                let floor = acked[k as usize].load(Ordering::SeqCst);
                match d.get(k.to_string()).unwrap() {
                    Some(v) => assert!(check(k, &v) >= floor, "a reader saw an older value than was acknowledged"),
                    None => assert_eq!(floor, 0, "an acknowledged key went missing"),
                }
                if n.is_multiple_of(50) {
                    for item in d.iter() {
                        let (key, v) = item.unwrap();
                        check(std::str::from_utf8(&key).unwrap().parse().unwrap(), &v);
                    }
                }
                n += 1;
            }
            n
        }));
    }
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert!(d.stats().layers > 2, "the test should have sealed regions: {:?}", d.stats());
}

#[test]
fn readers_never_see_partial_or_lost_values_immediate() {
    run(Durability::Immediate);
}

#[test]
fn readers_never_see_partial_or_lost_values_none() {
    run(Durability::None);
}

/// A store big enough for the ordered index to merge its changes on a thread of its own
/// (65,536 keys or more): a scanner walks the whole dimension again and again while a writer
/// overwrites and deletes, and every walk must be in strictly increasing key order with
/// whole values; at the end the scan equals the writer's model.
#[test]
fn scans_stay_ordered_while_the_index_merges_in_the_background() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), jessy_storage::Config::default().durability(Durability::None));
    let d = store.dimension("default").unwrap();
    const KEYS: u64 = 80_000;
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut batch = WriteBatch::new();
    for k in 0..KEYS {
        let key = format!("k{k:06}");
        batch.push_put(&key, payload(k, 0));
        model.insert(key, payload(k, 0));
    }
    d.write(batch).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let walks = Arc::new(AtomicU64::new(0));
    let scanner = {
        let (d, stop, walks) = (d.clone(), stop.clone(), walks.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) || walks.load(Ordering::SeqCst) == 0 {
                let mut last: Option<Vec<u8>> = None;
                for kv in d.range("k0".as_bytes()..) {
                    let (k, v) = kv.unwrap();
                    if let Some(prev) = &last {
                        assert!(prev < &k, "scan went back from {prev:?} to {k:?}");
                    }
                    let n: u64 = std::str::from_utf8(&k[1..]).unwrap().parse().unwrap();
                    check(n, &v);
                    last = Some(k);
                }
                walks.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    // Enough changes to fill the delta (an eighth of the keys) several times.
    for round in 1..=4u64 {
        let mut batch = WriteBatch::new();
        for i in 0..KEYS / 4 {
            let k = (i * 7_919 + round * 13) % KEYS;
            let key = format!("k{k:06}");
            if (i + round).is_multiple_of(9) {
                batch.push_delete(&key);
                model.remove(&key);
            } else {
                batch.push_put(&key, payload(k, round));
                model.insert(key, payload(k, round));
            }
            if batch.len() == 1000 {
                d.write(std::mem::take(&mut batch)).unwrap();
            }
        }
        d.write(batch).unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    scanner.join().unwrap();
    assert!(walks.load(Ordering::SeqCst) > 0);
    let got: Vec<(Vec<u8>, Vec<u8>)> = d.iter().map(|kv| kv.unwrap()).map(|(k, v)| (k, v.to_vec())).collect();
    let want: Vec<(Vec<u8>, Vec<u8>)> = model.into_iter().map(|(k, v)| (k.into_bytes(), v)).collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "final scan differs from the model");
}
