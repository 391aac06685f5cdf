//! Reader and writer throughput with and without a compaction running at the same time.
//! `cargo run --release -p jessy-storage --example compaction_throughput`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jessy_storage::{Config, Dimension, Durability, Store};

const KEYS: u64 = 200_000;

fn key(i: u64) -> String {
    format!("key:{:020}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % KEYS)
}

/// Runs a reader and a writer until `done` is set; returns (gets/s, puts/s).
fn load(d: &Dimension, done: Arc<AtomicBool>) -> (f64, f64) {
    let (gets, puts) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start = Instant::now();
    let reader = {
        let (d, done, gets) = (d.clone(), done.clone(), gets.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !done.load(Ordering::Relaxed) {
                i += 7919;
                let _ = d.get(key(i)).expect("get");
                gets.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let writer = {
        let (d, done, puts) = (d.clone(), done.clone(), puts.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !done.load(Ordering::Relaxed) {
                i += 104729;
                d.put(key(i), [9u8; 150]).expect("put");
                puts.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    reader.join().expect("reader");
    writer.join().expect("writer");
    let secs = start.elapsed().as_secs_f64();
    (gets.load(Ordering::Relaxed) as f64 / secs, puts.load(Ordering::Relaxed) as f64 / secs)
}

fn churn(d: &Dimension) {
    for round in 0..3u8 {
        for i in 0..KEYS {
            d.put(key(i), [round; 150]).expect("put");
        }
    }
    d.sync().expect("sync");
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config::default().durability(Durability::None).background_compaction(false);
    let store = Store::open_with(dir.path(), config).expect("open");
    let d = store.dimension("default").expect("dimension");
    churn(&d);

    let done = Arc::new(AtomicBool::new(false));
    let stopper = {
        let done = done.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(3));
            done.store(true, Ordering::Relaxed);
        })
    };
    let (g0, p0) = load(&d, done);
    stopper.join().expect("stopper");
    println!("no compaction:     {g0:>10.0} gets/s {p0:>10.0} puts/s (3 s)");

    churn(&d);
    let done = Arc::new(AtomicBool::new(false));
    let compactor = {
        let (d, done) = (d.clone(), done.clone());
        std::thread::spawn(move || {
            let t = Instant::now();
            let report = d.compact().expect("compact");
            done.store(true, Ordering::Relaxed);
            (report, t.elapsed())
        })
    };
    let (g1, p1) = load(&d, done);
    let (report, took) = compactor.join().expect("compactor");
    println!(
        "during compaction: {g1:>10.0} gets/s {p1:>10.0} puts/s ({:.2} s; {} layers, {} bytes reclaimed)",
        took.as_secs_f64(),
        report.layers_compacted,
        report.bytes_reclaimed
    );
}
