//! How many durable puts per second N threads get, and how many writes each sync covers.
//! `cargo run --release -p jessy-storage --example group_commit -- 8 2000`

use std::time::Instant;

use jessy_storage::{Config, Durability, Store};

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let threads = args.first().copied().unwrap_or(8);
    let per_thread = args.get(1).copied().unwrap_or(2000);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config::default().max_size(64 << 20).initial_size(64 << 20).durability(Durability::Immediate);
    let store = Store::open_with(dir.path(), config).expect("open");
    let d = store.dimension("default").expect("dimension");
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let d = d.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(per_thread as usize);
                for i in 0..per_thread {
                    let t0 = Instant::now();
                    d.put(format!("t{t:02}-key-{i:012}"), [7u8; 150]).expect("put");
                    lat.push(t0.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<_> = handles.into_iter().flat_map(|h| h.join().expect("join")).collect();
    let elapsed = start.elapsed();
    lat.sort();
    let n = threads * per_thread;
    let syncs = store.stats().syncs;
    println!(
        "threads={threads} puts={n} elapsed={:.2}s rate={:.0}/s syncs={syncs} writes_per_sync={:.1} p50={:?} p99={:?}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        n as f64 / syncs.max(1) as f64,
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100]
    );
}
