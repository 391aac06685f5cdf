//! Durable batches of 100 keys into a store that already holds N keys, with default
//! regions: keys per second and commit latency percentiles (the peer comparison's "batch
//! writes" row, alone, for profiling).
//! `cargo run --release -p jessy-storage --example durable_batches -- 200000 2000`

use std::time::{Duration, Instant};

use jessy_storage::{Config, Durability, Store, WriteBatch};

fn key(i: u64) -> String {
    format!("key:{:020}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 10_000_000_000_000_000_000)
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let preload = args.first().copied().unwrap_or(200_000);
    let batches = args.get(1).copied().unwrap_or(2000);
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open_with(dir.path(), Config::default().durability(Durability::None)).expect("open");
        let d = store.dimension("default").expect("dimension");
        for chunk in 0..preload.div_ceil(10_000) {
            let mut b = WriteBatch::new();
            for i in chunk * 10_000..((chunk + 1) * 10_000).min(preload) {
                b.push_put(key(i), [7u8; 150]);
            }
            d.write(b).expect("write");
        }
        store.sync().expect("sync");
    }
    let store = Store::open_with(dir.path(), Config::default().durability(Durability::Immediate)).expect("open");
    let d = store.dimension("default").expect("dimension");
    let mut lat: Vec<Duration> = Vec::with_capacity(batches as usize);
    let start = Instant::now();
    for b in 0..batches {
        let mut batch = WriteBatch::new();
        for i in 0..100 {
            batch.push_put(key(preload + b * 100 + i), [9u8; 150]);
        }
        let t = Instant::now();
        d.write(batch).expect("write");
        lat.push(t.elapsed());
    }
    let took = start.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "{batches} durable batches of 100: {:.0} keys/s; p50 {:?} p99 {:?} max {:?}; syncs {}",
        (batches * 100) as f64 / took.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1],
        store.stats().syncs
    );
}
