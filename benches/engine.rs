//! Criterion benchmarks of the engine's own operations (`make bench`).
//!
//! Shapes follow the peer comparison: 24-byte keys, 150-byte values. `JESSY_BENCH_KEYS`
//! sets the store size for the read and reopen benchmarks (default 1,000,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use jessy_storage::{Config, Durability, Store, WriteBatch};

const VALUE_LEN: usize = 150;

/// 24-byte keys, scattered so that load order is not key order: "key:" + 20 digits.
fn key(i: u64) -> [u8; 24] {
    let mut k = *b"key:00000000000000000000";
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 10_000_000_000_000_000_000;
    for d in k[4..].iter_mut().rev() {
        *d = b'0' + (x % 10) as u8;
        x /= 10;
    }
    k
}

fn n_keys() -> u64 {
    std::env::var("JESSY_BENCH_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

fn config() -> Config {
    // Large regions as a production store would use them for bulk data.
    Config::default().max_size(64 << 20).initial_size(64 << 20).background_compaction(false)
}

fn load(dir: &std::path::Path, n: u64) -> Store {
    let store = Store::open_with(dir, config().durability(Durability::None)).unwrap();
    let d = store.dimension("default").unwrap();
    let value = [7u8; VALUE_LEN];
    let mut i = 0;
    while i < n {
        let mut b = WriteBatch::new();
        for j in i..(i + 1000).min(n) {
            b.push_put(key(j), value);
        }
        d.write(b).unwrap();
        i += 1000;
    }
    store.sync().unwrap();
    store
}

fn random_get(c: &mut Criterion) {
    let n = n_keys();
    let dir = tempfile::tempdir().unwrap();
    let store = load(dir.path(), n);
    let d = store.dimension("default").unwrap();
    let mut g = c.benchmark_group("get");
    g.throughput(Throughput::Elements(1));
    let mut x = 1u64;
    g.bench_function(format!("random_warm_{n}_keys"), |b| {
        b.iter(|| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let v = d.get(key((x >> 33) % n)).unwrap();
            assert!(v.is_some());
            v
        })
    });
    g.bench_function("range_10", |b| {
        b.iter(|| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            d.range(key((x >> 33) % n).as_slice()..).take(10).count()
        })
    });
    g.finish();
}

fn bulk_load(c: &mut Criterion) {
    let mut g = c.benchmark_group("bulk_load");
    const N: u64 = 100_000;
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function("write_batch_1000_none", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open_with(dir.path(), config().durability(Durability::None)).unwrap();
                (dir, store)
            },
            |(dir, store)| {
                let d = store.dimension("default").unwrap();
                let value = [7u8; VALUE_LEN];
                for chunk in 0..N / 1000 {
                    let mut batch = WriteBatch::new();
                    for j in chunk * 1000..(chunk + 1) * 1000 {
                        batch.push_put(key(j), value);
                    }
                    d.write(batch).unwrap();
                }
                (store, dir)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn durable_put(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), config().durability(Durability::Immediate)).unwrap();
    let d = store.dimension("default").unwrap();
    let value = [7u8; VALUE_LEN];
    let mut g = c.benchmark_group("put_immediate");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("1_thread", |b| {
        b.iter(|| {
            i += 1;
            d.put(key(i), value).unwrap()
        })
    });
    const THREADS: u64 = 8;
    g.throughput(Throughput::Elements(THREADS));
    g.bench_function("8_threads_each", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let d = d.clone();
                    std::thread::spawn(move || {
                        for j in 0..iters {
                            d.put(key(1_000_000_000 + t * 100_000_000 + j), value).unwrap();
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            start.elapsed()
        })
    });
    g.finish();
}

fn reopen(c: &mut Criterion) {
    let n = n_keys();
    let dir = tempfile::tempdir().unwrap();
    drop(load(dir.path(), n));
    let path = Arc::new(dir.path().to_path_buf());
    let mut g = c.benchmark_group("reopen");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function(format!("{n}_keys"), |b| {
        b.iter(|| {
            let s = Store::open_with(path.as_path(), config()).unwrap();
            assert_eq!(s.dimension("default").unwrap().len() as u64, n);
            s
        })
    });
    g.finish();
}

criterion_group!(benches, random_get, bulk_load, durable_put, reopen);
criterion_main!(benches);
