//! The data every engine gets: the same keys, values and orders.

pub const KEY_LEN: usize = 24;
pub const VALUE_LEN: usize = 150;
/// Keys per commit in the bulk load (engines that load in one transaction ignore it) and
/// in the removals.
pub const BULK_BATCH: u64 = 10_000;
/// Keys per durable commit in the batch-write workload.
pub const WRITE_BATCH: usize = 100;

pub type Key = [u8; KEY_LEN];
pub type Val = [u8; VALUE_LEN];

/// Key number `i`: "key:" + 20 digits, scattered so that load order is not key order
/// (the same function as `benches/engine.rs`).
pub fn key(i: u64) -> Key {
    let mut k = *b"key:00000000000000000000";
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 10_000_000_000_000_000_000;
    for d in k[4..].iter_mut().rev() {
        *d = b'0' + (x % 10) as u8;
        x /= 10;
    }
    k
}

/// Value number `i`: 150 pseudo-random bytes, so that compressing engines get no free ride.
pub fn value(i: u64) -> Val {
    let mut v = [0u8; VALUE_LEN];
    let mut s = i ^ 0x5DEE_CE66_D1CE_4E5B;
    for chunk in v.chunks_mut(8) {
        let r = splitmix(&mut s);
        chunk.copy_from_slice(&r.to_le_bytes()[..chunk.len()]);
    }
    v
}

pub fn splitmix(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A reproducible stream of indices below `n`.
pub struct Picks {
    s: u64,
    n: u64,
}

impl Picks {
    pub fn new(seed: u64, n: u64) -> Picks {
        Picks { s: seed, n }
    }
}

impl Iterator for Picks {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        Some(splitmix(&mut self.s) % self.n)
    }
}
