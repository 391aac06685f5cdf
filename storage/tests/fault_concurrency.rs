//! Readers, a writer, sealing and compaction together, under many seeded interleavings
//! (issue 4, part 6).
//!
//! Each seed runs, on a store with small regions (so the writer seals every few writes):
//! a writer (puts, batches, deletes, syncs), a compactor calling `compact()` in a loop, and
//! two readers (point reads, forward and backward scans, ranges). Every thread makes seeded
//! choices and yields or sleeps at seeded moments, and `FaultyIo::set_jitter` adds seeded
//! yields and sleeps inside the engine's I/O calls (between a write and its sync, inside a
//! seal or a compaction). The readers check:
//!
//! - no partial record: every value is whole (values name their key and generation);
//! - no value from a freed mapping: values held across seals and compactions (and past
//!   closing the store) still read back byte for byte;
//! - no key missing while it exists: the "stable" keys, written before the readers start
//!   and never deleted, are always found, by point reads and by every scan;
//! - no going back: a key's generation never decreases for a reader, and is at least the
//!   last one acknowledged to the writer before the read began.
//!
//! At the end the store holds exactly the writer's model, also after a reopen.
//! Seeds: `JESSY_CONCURRENCY_SEEDS` (default 40; `make soak` raises it); a failing seed
//! reruns with `JESSY_FAULT_SEED=<seed>`.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use jessy_storage::io::{FaultyIo, Io};
use jessy_storage::{Config, Durability, Store, Value, WriteBatch};

const STABLE: u64 = 16;
const FLIP: u64 = 8;

fn stable(k: u64) -> Vec<u8> {
    format!("s{k:02}").into_bytes()
}

fn flip(k: u64) -> Vec<u8> {
    format!("f{k:02}").into_bytes()
}

/// Values name their key and generation and are long enough to straddle pages sometimes.
fn val(key: &[u8], gen: u64) -> Vec<u8> {
    tagged(key, gen, (gen as usize * 131 + key[2] as usize * 17) % 1400)
}

fn pause(rng: &mut Rng) {
    match rng.below(20) {
        0 => std::thread::sleep(Duration::from_micros(rng.below(400))),
        1..=4 => std::thread::yield_now(),
        _ => {}
    }
}

/// Reads `v` as a value of `key` and returns its generation, or says what is wrong.
fn gen_of(key: &[u8], v: &[u8]) -> Result<u64, String> {
    check_tagged(key, v)
}

fn run_seed(seed: u64) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let dir = scratch();
    let io = FaultyIo::new();
    io.set_jitter(seed, rng.range(50, 300) as u32);
    let durability = if rng.chance(1, 3) { Durability::None } else { Durability::Immediate };
    let cfg = Config::default()
        .initial_size(4096)
        .max_size(*rng.pick(&[8192u64, 16384]))
        .durability(durability)
        .background_compaction(false)
        .compaction_threshold(0.2)
        .io(Arc::new(io.clone()) as Arc<dyn Io>);
    let store = Store::open_with(dir.path(), cfg.clone()).map_err(|e| e.to_string())?;
    let d = store.dimension("default").map_err(|e| e.to_string())?;
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..STABLE).map(|_| AtomicU64::new(0)).collect());
    for k in 0..STABLE {
        d.put(stable(k), val(&stable(k), 1)).map_err(|e| e.to_string())?;
        acked[k as usize].store(1, Ordering::SeqCst);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let failure: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let fail = {
        let (failure, stop) = (failure.clone(), stop.clone());
        move |msg: String| {
            failure.lock().unwrap().get_or_insert(msg);
            stop.store(true, Ordering::SeqCst);
        }
    };
    let writes = rng.range(100, 300);
    // The writer starts once both readers have read, so that they always overlap.
    let reading = Arc::new(AtomicU64::new(0));

    type Held = (Vec<u8>, Value, Vec<u8>);
    let (held, want) = std::thread::scope(|s| -> (Vec<Held>, BTreeMap<Vec<u8>, Vec<u8>>) {
        // The writer: the only thread that changes anything; its model is the truth.
        let writer = {
            let (d, acked, stop, fail, reading) =
                (d.clone(), acked.clone(), stop.clone(), fail.clone(), reading.clone());
            let mut rng = Rng::new(seed ^ 1);
            s.spawn(move || {
                while reading.load(Ordering::SeqCst) < 2 && !stop.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
                let mut gens = vec![1u64; STABLE as usize];
                let mut flips: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
                for i in 0..writes {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let r = match rng.below(10) {
                        0..=4 => {
                            let k = rng.below(STABLE) as usize;
                            gens[k] += 1;
                            d.put(stable(k as u64), val(&stable(k as u64), gens[k])).map(|_| vec![k])
                        }
                        5..=6 => {
                            let mut b = WriteBatch::new();
                            let mut touched = Vec::new();
                            for _ in 0..rng.range(2, 4) {
                                let k = rng.below(STABLE) as usize;
                                gens[k] += 1;
                                b.push_put(stable(k as u64), val(&stable(k as u64), gens[k]));
                                touched.push(k);
                            }
                            let f = flip(rng.below(FLIP));
                            if rng.chance(1, 2) {
                                b.push_delete(&f);
                                flips.remove(&f);
                            } else {
                                let v = val(&f, 1000 + i);
                                b.push_put(&f, &v);
                                flips.insert(f, v);
                            }
                            d.write(b).map(|_| touched)
                        }
                        7 => {
                            let f = flip(rng.below(FLIP));
                            flips.remove(&f);
                            d.delete(&f).map(|_| vec![])
                        }
                        8 => {
                            let f = flip(rng.below(FLIP));
                            let v = val(&f, 1000 + i);
                            flips.insert(f.clone(), v.clone());
                            d.put(&f, &v).map(|_| vec![])
                        }
                        _ => d.sync().map(|_| vec![]),
                    };
                    match r {
                        Ok(touched) => {
                            for k in touched {
                                acked[k].store(gens[k], Ordering::SeqCst);
                            }
                        }
                        Err(e) => {
                            fail(format!("writer op {i}: {e}"));
                            break;
                        }
                    }
                    pause(&mut rng);
                }
                (gens, flips)
            })
        };
        // The compactor.
        {
            let (d, stop, fail) = (d.clone(), stop.clone(), fail.clone());
            let mut rng = Rng::new(seed ^ 2);
            s.spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Err(e) = d.compact() {
                        fail(format!("compaction: {e}"));
                    }
                    for _ in 0..rng.range(1, 6) {
                        pause(&mut rng);
                    }
                    std::thread::sleep(Duration::from_micros(rng.below(2000)));
                }
            });
        }
        // The readers.
        let mut readers = Vec::new();
        for r in 0..2u64 {
            let (d, acked, stop, fail, reading) =
                (d.clone(), acked.clone(), stop.clone(), fail.clone(), reading.clone());
            let mut rng = Rng::new(seed ^ (10 + r));
            readers.push(s.spawn(move || {
                let mut last = vec![0u64; STABLE as usize];
                let mut held: Vec<Held> = Vec::new();
                let mut reads = 0u64;
                let check = |k: u64, v: &[u8], floor: u64, last: &mut Vec<u64>| -> Result<(), String> {
                    let g = gen_of(&stable(k), v)?;
                    if g < floor {
                        return Err(format!("{} at generation {g}, but {floor} was acknowledged before the read", k));
                    }
                    if g < last[k as usize] {
                        return Err(format!("{} went back from generation {} to {g}", k, last[k as usize]));
                    }
                    last[k as usize] = g;
                    Ok(())
                };
                while !stop.load(Ordering::SeqCst) {
                    let result: Result<(), String> = (|| {
                        match rng.below(6) {
                            0..=2 => {
                                let k = rng.below(STABLE);
                                let floor = acked[k as usize].load(Ordering::SeqCst);
                                let v = d.get(stable(k)).map_err(|e| format!("get: {e}"))?;
                                let v = v.ok_or_else(|| format!("stable key {k} missing"))?;
                                check(k, &v, floor, &mut last)?;
                                if held.len() < 64 {
                                    held.push((stable(k), v.clone(), v.to_vec()));
                                } else {
                                    let i = rng.below(64) as usize;
                                    held[i] = (stable(k), v.clone(), v.to_vec());
                                }
                            }
                            3 => {
                                let f = flip(rng.below(FLIP));
                                if let Some(v) = d.get(&f).map_err(|e| format!("get: {e}"))? {
                                    gen_of(&f, &v)?;
                                }
                            }
                            _ => {
                                let floors: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
                                let rev = rng.chance(1, 2);
                                let items: Vec<_> = if rng.chance(1, 3) {
                                    let it = d.range(b"s".to_vec()..b"t".to_vec());
                                    if rev {
                                        it.rev().collect()
                                    } else {
                                        it.collect()
                                    }
                                } else if rev {
                                    d.iter().rev().collect()
                                } else {
                                    d.iter().collect()
                                };
                                let mut stables = Vec::new();
                                for item in items {
                                    let (k, v) = item.map_err(|e| format!("scan: {e}"))?;
                                    if k.starts_with(b"s") {
                                        let n: u64 = std::str::from_utf8(&k[1..]).unwrap().parse().unwrap();
                                        check(n, &v, floors[n as usize], &mut last)?;
                                        stables.push(n);
                                    } else {
                                        gen_of(&k, &v)?;
                                    }
                                }
                                if rev {
                                    stables.reverse();
                                }
                                if stables != (0..STABLE).collect::<Vec<_>>() {
                                    return Err(format!("a scan saw stable keys {stables:?}"));
                                }
                            }
                        }
                        // Values held across seals and compactions still read back whole.
                        if let Some((k, v, bytes)) = held.get(rng.below(64) as usize) {
                            if v[..] != bytes[..] || gen_of(k, v).is_err() {
                                return Err("a held value changed under its reader".into());
                            }
                        }
                        Ok(())
                    })();
                    if let Err(e) = result {
                        fail(format!("reader {r}: {e}"));
                        break;
                    }
                    reads += 1;
                    if reads == 1 {
                        reading.fetch_add(1, Ordering::SeqCst);
                    }
                    pause(&mut rng);
                }
                (reads, held)
            }));
        }
        let (gens, flips) = writer.join().unwrap();
        stop.store(true, Ordering::SeqCst);
        let mut held_all = Vec::new();
        for r in readers {
            let (reads, held) = r.join().unwrap();
            if reads == 0 {
                fail("a reader made no reads".into());
            }
            held_all.extend(held);
        }
        let mut want: BTreeMap<Vec<u8>, Vec<u8>> = flips;
        for k in 0..STABLE {
            want.insert(stable(k), val(&stable(k), gens[k as usize]));
        }
        (held_all, want)
    });
    if let Some(f) = failure.lock().unwrap().take() {
        return Err(f);
    }
    // Exactly the writer's model, now and after a reopen; held values outlive the store.
    let got: BTreeMap<Vec<u8>, Vec<u8>> =
        d.iter().map(|r| r.map(|(k, v)| (k, v.to_vec()))).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    if got != want {
        return Err("after the run the store differs from the writer's model".into());
    }
    if d.stats().layers < 2 {
        return Err(format!("nothing was sealed: {:?}", d.stats()));
    }
    drop(d);
    drop(store);
    for (k, v, bytes) in &held {
        if v[..] != bytes[..] || gen_of(k, v).is_err() {
            return Err("a value held past closing the store changed".into());
        }
    }
    let store = Store::open_with(dir.path(), cfg).map_err(|e| format!("reopen: {e}"))?;
    let got: BTreeMap<Vec<u8>, Vec<u8>> = store
        .dimension("default")
        .map_err(|e| e.to_string())?
        .iter()
        .map(|r| r.map(|(k, v)| (k, v.to_vec())))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if got != want {
        return Err("after a reopen the store differs from the writer's model".into());
    }
    Ok(())
}

#[test]
fn readers_writer_sealing_and_compaction_under_seeded_interleavings() {
    let n = env_count("JESSY_CONCURRENCY_SEEDS", 40);
    run_seeds(
        "fault_concurrency",
        "readers_writer_sealing_and_compaction_under_seeded_interleavings",
        &seeds(n),
        run_seed,
    );
}
