//! Loads N keys (24-byte keys, 150-byte values), closes, and times reopening.
//! `cargo run --release -p jessy-storage --example reopen -- 1000000`

use std::time::Instant;

use jessy_storage::{Config, Durability, Store, WriteBatch};

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    // `reopen N default` measures the default 10 MiB regions instead of 64 MiB ones.
    let config = match std::env::args().nth(2).as_deref() {
        Some("default") => Config::default(),
        _ => Config::default().max_size(64 << 20).initial_size(64 << 20),
    };
    {
        let store = Store::open_with(dir.path(), config.clone().durability(Durability::None)).expect("open");
        let d = store.dimension("default").expect("dimension");
        let t = Instant::now();
        for chunk in 0..n.div_ceil(1000) {
            let mut b = WriteBatch::new();
            for i in chunk * 1000..((chunk + 1) * 1000).min(n) {
                let k = format!("key:{:020}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 10_000_000_000_000_000_000);
                b.push_put(k, [7u8; 150]);
            }
            d.write(b).expect("write");
        }
        store.sync().expect("sync");
        println!("load: {n} keys in {:?}", t.elapsed());
    }
    for _ in 0..3 {
        let t = Instant::now();
        let store = Store::open_with(dir.path(), config.clone()).expect("reopen");
        let keys = store.dimension("default").expect("dimension").len();
        println!("reopen: {keys} keys in {:?}", t.elapsed());
    }
}
