//! `jessy-compare probe PHASE`: one jessy workload at a time, repeated, for a profiler.
//!
//! ```text
//! jessy-compare probe load   --n 1000000 --dir /tmp/p      # once: fill the store
//! perf record -g -- jessy-compare probe reopen --n 1000000 --dir /tmp/p --repeat 5
//! perf record -g -- jessy-compare probe get    --n 1000000 --dir /tmp/p --repeat 3
//! ```
//!
//! Phases: load (`--sorted 1` writes the keys in key order, so that neighbouring keys'
//! values lie side by side in the log), bulkloader, reopen, get, get2, range (`--len N` keys each, default 10;
//! `--hint 0` leaves out `Iter::batch_size`, `--owned 1` reads
//! with `next` (a `Vec` per key) instead of `next_borrowed`), put, batch, mixed (ranges of
//! `--len` keys while a second thread writes durable batches of 100 without pause). `--max-size BYTES` sets `Config::max_size` (default: `Config::default()`);
//! `--durability none|immediate` the durability of put and batch (default immediate).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jessy_storage::{Config, Durability, Store, WriteBatch};

use crate::engines::Res;
use crate::report::percentile;
use crate::workload::{key, value, Picks, BULK_BATCH, WRITE_BATCH};

pub fn main(argv: &[String]) -> Res<()> {
    let phase = argv.first().cloned().unwrap_or_default();
    let (mut n, mut dir, mut repeat, mut max_size) = (1_000_000u64, PathBuf::from("/tmp/jessy-probe"), 1usize, None);
    let mut count = 0u64;
    let mut len = 10usize;
    let mut hint = true;
    let mut owned = false;
    let mut sorted = false;
    let mut durability = Durability::Immediate;
    let mut it = argv.iter().skip(1);
    while let Some(f) = it.next() {
        let v = it.next().ok_or("flag needs a value")?;
        match f.as_str() {
            "--n" => n = v.parse()?,
            "--dir" => dir = PathBuf::from(v),
            "--repeat" => repeat = v.parse()?,
            "--count" => count = v.parse()?,
            "--len" => len = v.parse()?,
            "--hint" => hint = v != "0",
            "--sorted" => sorted = v != "0",
            "--owned" => owned = v != "0",
            "--max-size" => max_size = Some(v.parse::<u64>()?),
            "--durability" => {
                durability = match v.as_str() {
                    "none" => Durability::None,
                    "immediate" => Durability::Immediate,
                    _ => return Err(format!("--durability takes none or immediate, not {v}").into()),
                }
            }
            _ => return Err(format!("unknown flag {f}").into()),
        }
    }
    let config = |d: Durability| {
        let c = Config::default().durability(d);
        match max_size {
            Some(m) => c.max_size(m),
            None => c,
        }
    };
    match phase.as_str() {
        "load" => {
            let _ = std::fs::remove_dir_all(&dir);
            let t = Instant::now();
            let store = Store::open_with(&dir, config(Durability::None))?;
            let d = store.dimension("default")?;
            let mut i = 0;
            let mut order: Vec<u64> = (0..n).collect();
            if sorted {
                order.sort_by_key(|&j| key(j));
            }
            while i < n {
                let mut b = WriteBatch::new();
                for &j in &order[i as usize..(i + BULK_BATCH).min(n) as usize] {
                    b.push_put(key(j), value(j));
                }
                d.write(b)?;
                i += BULK_BATCH;
            }
            store.sync()?;
            println!("load: {n} keys in {:?}", t.elapsed());
            drop(d);
            store.close()?;
        }
        "bulkloader" => {
            for _ in 0..repeat {
                let _ = std::fs::remove_dir_all(&dir);
                let t = Instant::now();
                let store = Store::open_with(&dir, config(Durability::Immediate))?;
                let mut l = store.bulk_load("bench")?;
                for i in 0..n {
                    l.put(key(i), value(i))?;
                }
                l.finish()?;
                println!("bulkloader: {n} keys in {:?}", t.elapsed());
            }
        }
        "reopen" => {
            for _ in 0..repeat {
                let t = Instant::now();
                let store = Store::open_with(&dir, config(Durability::Immediate))?;
                let d = store.dimension("default")?;
                let found = d.get(key(n / 2))?.is_some();
                let took = t.elapsed();
                println!(
                    "reopen: {took:?} (found {found}, {} keys, recovery_time {:?})",
                    d.len(),
                    store.stats().recovery_time
                );
            }
        }
        "get" | "get2" | "range" => {
            let store = Store::open_with(&dir, config(Durability::Immediate))?;
            let d = store.dimension("default")?;
            for i in 0..n {
                d.get(key(i))?.ok_or("missing")?;
            }
            let count = if count == 0 { n } else { count };
            for _ in 0..repeat {
                let t = Instant::now();
                let mut sink = 0usize;
                match phase.as_str() {
                    "get" => {
                        for i in Picks::new(0xBEEF, n).take(count as usize) {
                            sink += d.get(key(i))?.map_or(0, |v| v.len());
                        }
                    }
                    "get2" => {
                        sink = std::thread::scope(|s| {
                            let hs: Vec<_> = (0..2u64)
                                .map(|t| {
                                    let d = &d;
                                    s.spawn(move || {
                                        let mut sink = 0usize;
                                        for i in Picks::new(0xBEEF + t, n).take(count as usize / 2) {
                                            sink += d.get(key(i)).unwrap().map_or(0, |v| v.len());
                                        }
                                        sink
                                    })
                                })
                                .collect();
                            hs.into_iter().map(|h| h.join().unwrap()).sum()
                        });
                    }
                    _ => {
                        for i in Picks::new(0xA11CE, n).take(count as usize) {
                            let iter = d.range(key(i).as_slice()..);
                            let mut iter = if hint { iter.batch_size(len) } else { iter };
                            if owned {
                                for kv in iter.by_ref().take(len) {
                                    sink += kv?.1.len();
                                }
                            } else {
                                for _ in 0..len {
                                    let Some(kv) = iter.next_borrowed() else { break };
                                    sink += kv?.1.len();
                                }
                            }
                        }
                    }
                }
                let secs = t.elapsed().as_secs_f64();
                println!("{phase}: {:.0} ops/s ({sink})", count as f64 / secs);
            }
        }
        "put" | "batch" => {
            let store = Store::open_with(&dir, config(durability))?;
            let d = store.dimension("default")?;
            let count = if count == 0 { 2000 } else { count };
            let mut next = n + 10_000_000;
            for _ in 0..repeat {
                let mut lat = Vec::new();
                let t = Instant::now();
                let cpu = crate::process_cpu();
                for _ in 0..count {
                    let s = Instant::now();
                    if phase == "put" {
                        d.put(key(next), value(next))?;
                        next += 1;
                    } else {
                        let mut b = WriteBatch::new();
                        for _ in 0..WRITE_BATCH {
                            b.push_put(key(next), value(next));
                            next += 1;
                        }
                        d.write(b)?;
                    }
                    lat.push(s.elapsed());
                }
                let secs = t.elapsed().as_secs_f64();
                let cpu = crate::process_cpu() - cpu;
                println!(
                    "{phase}: {:.0} commits/s, {:.1} CPU-µs per commit, p50 {:?}, p99 {:?}, max {:?}, syncs {}",
                    count as f64 / secs,
                    cpu * 1e6 / count as f64,
                    percentile(&lat, 50.0),
                    percentile(&lat, 99.0),
                    percentile(&lat, 100.0),
                    store.stats().syncs
                );
                // Where the mean goes: commits slower than twice the median (growth, index
                // merges, table doubling) against the typical commit.
                let p50 = percentile(&lat, 50.0);
                let mean = lat.iter().sum::<Duration>() / count as u32;
                let slow: Vec<(usize, &Duration)> = lat.iter().enumerate().filter(|(_, l)| **l > p50 * 2).collect();
                let slow_time: Duration = slow.iter().map(|(_, l)| **l).sum();
                println!(
                    "  mean {mean:?}, p90 {:?}; {} commits over 2x p50 took {:.0}% of the time",
                    percentile(&lat, 90.0),
                    slow.len(),
                    100.0 * slow_time.as_secs_f64() / secs
                );
                if std::env::var_os("JESSY_PROBE_SLOW").is_some() {
                    for (i, l) in slow {
                        println!("  slow commit {i}: {l:?}");
                    }
                }
            }
        }
        "mixed" => {
            // Ranges of `len` on this thread while another writes durable batches of 100 new
            // keys without pause: what scans cost while changes wait beside the index.
            let store = Store::open_with(&dir, config(Durability::Immediate))?;
            let d = store.dimension("default")?;
            let count = if count == 0 { 100_000 } else { count };
            for r in 0..repeat {
                let stop = std::sync::atomic::AtomicBool::new(false);
                let (ranges, secs, cpu, commits) = std::thread::scope(|s| -> Res<(u64, f64, f64, u64)> {
                    let writer = s.spawn(|| -> u64 {
                        let mut next = n + 20_000_000 + r as u64 * 10_000_000;
                        let mut commits = 0;
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            let mut b = WriteBatch::new();
                            for _ in 0..WRITE_BATCH {
                                b.push_put(key(next), value(next));
                                next += 1;
                            }
                            if d.write(b).is_err() {
                                break;
                            }
                            commits += 1;
                        }
                        commits
                    });
                    let t = Instant::now();
                    let cpu = crate::thread_cpu();
                    let mut sink = 0usize;
                    for i in Picks::new(0xA11CE, n).take(count as usize) {
                        let mut iter = d.range(key(i).as_slice()..).batch_size(len);
                        for _ in 0..len {
                            match iter.next_borrowed() {
                                Some(kv) => sink += kv?.1.len(),
                                None => break,
                            }
                        }
                    }
                    let secs = t.elapsed().as_secs_f64();
                    let cpu = crate::thread_cpu() - cpu;
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    let commits = writer.join().map_err(|_| "writer panicked")?;
                    std::hint::black_box(sink);
                    Ok((count, secs, cpu, commits))
                })?;
                println!(
                    "mixed: {:.0} ranges/s ({:.0} per CPU-second of the reading thread) while {:.0} durable commits/s of {WRITE_BATCH} keys",
                    ranges as f64 / secs,
                    ranges as f64 / cpu,
                    commits as f64 / secs
                );
            }
        }
        "compact" => {
            // On a loaded store: remove every even key (durable batches of 10,000), then compact
            // until nothing is left to do, printing what is on disk at each step.
            let store = Store::open_with(&dir, config(Durability::Immediate))?;
            let d = store.dimension("default")?;
            let show = |what: &str| {
                let st = d.stats();
                println!(
                    "{what}: keys {} live {:.1} MiB disk_bytes {:.1} MiB layers {} du {:.1} MiB",
                    st.keys,
                    st.live_bytes as f64 / 1048576.0,
                    st.disk_bytes as f64 / 1048576.0,
                    st.layers,
                    crate::disk_usage(&dir) as f64 / 1048576.0
                );
            };
            show("before");
            let evens: Vec<u64> = (0..n).step_by(2).collect();
            for chunk in evens.chunks(BULK_BATCH as usize) {
                let mut b = WriteBatch::new();
                for i in chunk {
                    b.push_delete(key(*i));
                }
                d.write(b)?;
            }
            show("after removals");
            for round in 1..=5 {
                let t = Instant::now();
                let r = d.compact()?;
                println!("compact round {round}: {r:?} in {:?}", t.elapsed());
                show("  now");
                if r.layers_compacted == 0 {
                    break;
                }
            }
            drop(d);
            store.close()?;
            show_files(&dir);
        }
        _ => return Err("phase: load, bulkloader, reopen, get, get2, range, put, batch or compact".into()),
    }
    Ok(())
}

fn show_files(dir: &std::path::Path) {
    fn walk(p: &std::path::Path, out: &mut Vec<(String, u64)>) {
        use std::os::unix::fs::MetadataExt;
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            let m = match e.metadata() {
                Ok(m) => m,
                Err(_) => continue,
            };
            if m.is_dir() {
                walk(&e.path(), out);
            } else {
                out.push((e.path().display().to_string(), m.blocks() * 512));
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.sort();
    for (f, b) in files {
        println!("  {:>8.2} MiB  {f}", b as f64 / 1048576.0);
    }
}
