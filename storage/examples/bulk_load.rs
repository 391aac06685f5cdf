//! Loads N keys (24-byte keys, 150-byte values) into a new dimension with
//! `Store::bulk_load` and times the two halves: writing the layers, and `finish` (sync,
//! promote, open with its index build).
//! `cargo run --release -p jessy-storage --example bulk_load -- 1000000`

use std::time::Instant;

use jessy_storage::{Config, Store};

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(dir.path(), Config::default()).expect("open");
    let t = Instant::now();
    let mut load = store.bulk_load("bulk").expect("bulk_load");
    for i in 0..n {
        let k = format!("key:{:020}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 10_000_000_000_000_000_000);
        load.put(k, [7u8; 150]).expect("put");
    }
    let written = t.elapsed();
    let dim = load.finish().expect("finish");
    let total = t.elapsed();
    println!(
        "bulk_load: {} keys in {total:?} ({:.0} keys/s): layers written in {written:?}, finish {:?}",
        dim.len(),
        n as f64 / total.as_secs_f64(),
        total - written
    );
}
