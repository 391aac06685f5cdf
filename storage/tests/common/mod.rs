#![allow(dead_code)]

pub mod workload;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use jessy_storage::{Config, Durability, Store, Version};

/// A config with small regions so tests seal layers quickly.
pub fn small(durability: Durability) -> Config {
    Config::default().initial_size(4096).max_size(16 * 1024).durability(durability).background_compaction(false)
}

pub fn open(dir: &Path, config: Config) -> Store {
    Store::open_with(dir, config).expect("open store")
}

pub fn region(dir: &Path, dim: &str) -> PathBuf {
    dir.join("consciousness").join(dim).join("region.mmap")
}

/// Index just past the last non-zero byte of a file.
pub fn data_end(path: &Path) -> usize {
    let b = std::fs::read(path).unwrap();
    b.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1)
}

/// Zeroes the sync mark a clean close leaves after a region's last frame (a frame header
/// with no entries), so the file looks as a crash before the close would have left it: the
/// tests that tear or damage the last frames mean a crash. Returns whether there was one.
pub fn strip_sync_mark(path: &Path) -> bool {
    let mut b = std::fs::read(path).unwrap();
    let end = data_end(path);
    if !ends_with_sync_mark(&b[..end]) {
        return false;
    }
    b[end - 24..end].fill(0);
    std::fs::write(path, b).unwrap();
    true
}

/// Whether `log` (a region's bytes up to the end of its data) ends with a sync mark: a frame
/// header whose count field is just the synced-before bit, with no payload.
pub fn ends_with_sync_mark(log: &[u8]) -> bool {
    let Some(at) = log.len().checked_sub(24).filter(|&at| at >= 32) else { return false };
    let h = &log[at..];
    let count = u32::from_le_bytes(h[20..24].try_into().unwrap());
    let payload_len = u32::from_le_bytes(h[16..20].try_into().unwrap());
    count == 1 << 31 && payload_len == 0 && crc32fast::hash(&h[4..24]).to_le_bytes() == h[0..4]
}

/// Opens `dir`, which must fail with `Error::Corruption`; returns its file, offset and reason.
pub fn open_corrupt(dir: &Path, config: Config) -> (PathBuf, u64, String) {
    match Store::open_with(dir, config) {
        Err(jessy_storage::Error::Corruption { file, offset, reason }) => (file, offset, reason),
        Err(e) => panic!("wrong error: {e}"),
        Ok(s) => panic!("a damaged store opened, with {} keys in default", s.dimension("default").unwrap().len()),
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A deterministic value that never ends in a zero byte (so `data_end` finds it).
pub fn value(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| ((i * 31 + j * 7) % 251) as u8 | 1).collect()
}

// ---- shared by the fault-injection suite (tests/fault_*.rs) ------------------------------

/// SplitMix64: a small seeded generator, so a failing seed replays exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_B00C)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    /// True with a chance of `n` in `of`.
    pub fn chance(&mut self, n: u64, of: u64) -> bool {
        self.below(of) < n
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// A count from an environment variable (`make soak` raises them), else `default`.
pub fn env_count(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        _ => default,
    }
}

/// The seeds a seeded test runs: only `JESSY_FAULT_SEED` when it is set, else `count`
/// seeds from `JESSY_FAULT_SEED_BASE` (default 0) on.
pub fn seeds(count: u64) -> Vec<u64> {
    if let Ok(s) = std::env::var("JESSY_FAULT_SEED") {
        return vec![s.trim().parse().unwrap_or_else(|_| panic!("JESSY_FAULT_SEED={s:?} is not a number"))];
    }
    let base = env_count("JESSY_FAULT_SEED_BASE", 0);
    (base..base + count).collect()
}

/// Runs `case` for every seed. A seed that fails (an `Err` or a panic, engine panics
/// included) is printed with the command that reruns it alone; after at most three failing
/// seeds the test fails. Returns how many seeds ran.
pub fn run_seeds(
    test_file: &str,
    test_name: &str,
    seeds: &[u64],
    mut case: impl FnMut(u64) -> Result<(), String>,
) -> usize {
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    for &seed in seeds {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(seed)));
        let msg = match r {
            Ok(Ok(())) => continue,
            Ok(Err(msg)) => msg,
            Err(p) => p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into()),
        };
        eprintln!(
            "\n*** seed {seed} FAILED: {msg}\n*** rerun it alone: JESSY_FAULT_SEED={seed} cargo test -p jessy-storage --test {test_file} -- --exact {test_name} --nocapture\n"
        );
        failures.push(seed);
        if failures.len() >= 3 {
            break;
        }
    }
    assert!(failures.is_empty(), "{test_name}: failing seeds {failures:?} (see above for how to rerun one)");
    eprintln!("{test_name}: {} seeds passed in {:.1?}", seeds.len(), started.elapsed());
    seeds.len()
}

/// A scratch directory: on tmpfs (`/dev/shm`) when there is one, since the fault tests
/// simulate durability themselves and only need fast files; `JESSY_TEST_TMPDIR` overrides.
pub fn scratch() -> tempfile::TempDir {
    let base = std::env::var_os("JESSY_TEST_TMPDIR").map(PathBuf::from).or_else(|| {
        let shm = Path::new("/dev/shm");
        let ok = shm.is_dir() && tempfile::tempdir_in(shm).is_ok();
        ok.then(|| shm.to_path_buf())
    });
    match base {
        Some(b) => tempfile::Builder::new().prefix("jessy-fault-").tempdir_in(b).expect("scratch dir"),
        None => tempfile::Builder::new().prefix("jessy-fault-").tempdir().expect("scratch dir"),
    }
}

/// A value that names its key and the write that made it, so a value that was never
/// written for this key (torn, foreign, resurrected) is recognised: `"<key>#<tag>:"` then
/// `len` bytes derived from both.
pub fn tagged(key: &[u8], tag: u64, len: usize) -> Vec<u8> {
    let mut v = key.to_vec();
    v.extend_from_slice(format!("#{tag}:").as_bytes());
    let mut r = Rng::new(tag.wrapping_mul(31) ^ key.iter().fold(7u64, |h, b| h.wrapping_mul(131) ^ *b as u64));
    v.extend((0..len).map(|_| r.next() as u8));
    v
}

/// Checks a value made by [`tagged`] for `key`; returns its tag.
pub fn check_tagged(key: &[u8], v: &[u8]) -> Result<u64, String> {
    let bad = |why: &str| format!("value of {:?} is not one ever written for it ({why}): {:?}", show(key), show(v));
    if !v.starts_with(key) || v.get(key.len()) != Some(&b'#') {
        return Err(bad("names another key"));
    }
    let rest = &v[key.len() + 1..];
    let colon = rest.iter().position(|&b| b == b':').ok_or_else(|| bad("no tag"))?;
    let tag: u64 =
        std::str::from_utf8(&rest[..colon]).ok().and_then(|s| s.parse().ok()).ok_or_else(|| bad("bad tag"))?;
    let len = rest.len() - colon - 1;
    if tagged(key, tag, len) != v {
        return Err(bad("torn or mixed bytes"));
    }
    Ok(tag)
}

/// Bytes for a message: text when printable, else a short hex prefix.
pub fn show(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if s.len() <= 48 && s.bytes().all(|c| (32..127).contains(&c)) => s.to_string(),
        _ => format!("{} bytes {:02x?}..", b.len(), &b[..b.len().min(12)]),
    }
}

/// What [`answered`] hands to the engine: a callback that only passes the result on.
pub type Reply = Box<dyn FnOnce(jessy_storage::Result<Version>) + Send>;

/// Waits for a write's answer through its callback, as an async server would: `register`
/// hands the callback to `Ticket::on_durable` or to an `enqueue_*` call.
pub fn answered(register: impl FnOnce(Reply)) -> jessy_storage::Result<Version> {
    let (tx, rx) = mpsc::channel();
    register(Box::new(move |r| {
        let _ = tx.send(r);
    }));
    rx.recv_timeout(Duration::from_secs(30)).expect("the write's callback never ran")
}
