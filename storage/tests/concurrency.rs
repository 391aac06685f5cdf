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
