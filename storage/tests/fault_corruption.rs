//! Corruption of data at rest (issue 4, part 4).
//!
//! A small store (a sealed layer with its key index, the manifest, an active region with a
//! few records) has every bit of every file flipped, one at a time, each in a fresh copy;
//! a larger one (several layers, compaction output, deletes) gets random bit flips; and both
//! logs are cut at every byte of their last three records. After each, the store is opened
//! and every key read (point reads and a scan). The rule: each damaged byte is either
//!
//! - detected: open fails with `Error::Corruption` naming the file and offset, a read returns
//!   `Error::Corruption`, a torn tail is cut off the active region (the store then holds the
//!   writes up to the damaged record, as after a crash), a damaged key index or manifest is
//!   rebuilt from the logs, or `verify` reports it; or
//! - provably harmless: preallocated space past the end of a log's records.
//!
//! Never is a wrong value returned: every value read is the key's value after some prefix
//! of the writes, the same prefix for all keys, which includes every write in a sealed layer.
//!
//! Counts: `JESSY_BITFLIPS` random flips in the larger store (default 1,500 in `make test`,
//! 10,000 in `make soak`); `JESSY_FLIP_EVERY_BIT=1` flips all 8 bits of every byte of the
//! small store (`make soak`), where `make test` flips one seeded bit of every byte and all 8
//! bits of every byte that is not preallocated space.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use jessy_storage::{Config, Durability, Error, Store, WriteBatch};

type Dim = BTreeMap<Vec<u8>, Vec<u8>>;

/// One commit, as the engine frames it.
type Frame = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// A store on disk, kept in memory so that each damaged copy starts from the same bytes.
struct Pristine {
    files: Vec<(PathBuf, Vec<u8>)>,
    /// Every commit in order; the last `in_region` of them are in the active region.
    frames: Vec<Frame>,
    in_region: usize,
    /// Where the active region's frames end: before the sync mark the close left.
    records_end: usize,
    config: Config,
}

fn frame_len(f: &Frame) -> usize {
    24 + f.iter().map(|(k, v)| 12 + k.len() + v.as_ref().map_or(0, |v| v.len())).sum::<usize>()
}

impl Pristine {
    fn capture(dir: &Path, frames: Vec<Frame>, config: Config) -> Pristine {
        let mut files = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.file_name().unwrap() != "jessy.lock" {
                    files.push((p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap()));
                }
            }
        }
        files.sort();
        // The active region's frames: walk back from the end of its data.
        let region = &files.iter().find(|(p, _)| p.ends_with("D01/region.mmap")).unwrap().1;
        let mut end = region.iter().rposition(|&b| b != 0).map_or(32, |i| i + 1);
        // A clean close ends the log with a sync mark.
        if ends_with_sync_mark(&region[..end]) {
            end -= 24;
        }
        let records_end = end;
        let mut at = 32;
        let mut in_region = 0;
        while at < end {
            at += frame_len(&frames[frames.len() - 1 - in_region]);
            in_region += 1;
        }
        // Frames are walked newest first above only to count them; check the count adds up.
        let total: usize = frames[frames.len() - in_region..].iter().map(frame_len).sum();
        assert_eq!(32 + total, end, "region frames do not add up");
        Pristine { files, frames, in_region, records_end, config }
    }

    fn file(&self, name: &str) -> usize {
        self.files.iter().position(|(p, _)| p.to_string_lossy().ends_with(name)).unwrap()
    }

    /// Lays the store out in `dir` with `damage` applied to file `i`.
    fn lay_out(&self, dir: &Path, i: usize, damage: impl Fn(&mut Vec<u8>)) {
        let _ = std::fs::remove_dir_all(dir);
        for (j, (rel, bytes)) in self.files.iter().enumerate() {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            if i == j {
                let mut b = bytes.clone();
                damage(&mut b);
                std::fs::write(&p, b).unwrap();
            } else {
                std::fs::write(&p, bytes).unwrap();
            }
        }
        for d in ["temp", "proto"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
    }

    /// The store's contents after the first `n` commits.
    fn state(&self, n: usize) -> Dim {
        let mut m = Dim::new();
        for f in &self.frames[..n] {
            for (k, v) in f {
                match v {
                    Some(v) => m.insert(k.clone(), v.clone()),
                    None => m.remove(k),
                };
            }
        }
        m
    }

    fn keys(&self) -> Vec<Vec<u8>> {
        let mut k: Vec<Vec<u8>> = self.frames.iter().flatten().map(|(k, _)| k.clone()).collect();
        k.sort();
        k.dedup();
        k
    }
}

/// What opening a damaged copy came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// Open failed with `Error::Corruption` naming a file and an offset.
    OpenFailed,
    /// A read or scan returned `Error::Corruption`.
    ReadError,
    /// The active region's tail was cut: the store holds an earlier prefix of the writes.
    TailCut,
    /// All data intact, and `verify` reports the damage (a sealed layer's frame header).
    FoundByVerify,
    /// All data intact; the damaged key index or manifest was rebuilt.
    Repaired,
    /// All data intact; the damage was in preallocated space.
    Harmless,
}

/// Opens `dir` and checks the rule; `Err` says how it was broken.
fn check(p: &Pristine, dir: &Path, damaged: &str, offset: usize) -> Result<Outcome, String> {
    let store = match Store::open_with(dir, p.config.clone()) {
        Ok(s) => s,
        Err(Error::Corruption { file, .. }) if file.starts_with(dir) => return Ok(Outcome::OpenFailed),
        Err(e) => return Err(format!("open failed without naming file and offset: {e:?}")),
    };
    let d = store.get_dimension("default").map_err(|e| format!("default dimension: {e}"))?;
    let mut read_error = false;
    let mut seen: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    for k in p.keys() {
        match d.get(&k) {
            Ok(v) => {
                seen.insert(k, v.map(|v| v.to_vec()));
            }
            Err(Error::Corruption { file, .. }) if file.starts_with(dir) => read_error = true,
            Err(e) => return Err(format!("get {}: unexpected error {e}", show(&k))),
        }
    }
    for item in d.iter() {
        match item {
            Ok((k, v)) => match seen.get(&k) {
                Some(Some(got)) if got[..] == v[..] => {}
                Some(None) => return Err(format!("scan returns {} which get says is absent", show(&k))),
                None if !p.keys().contains(&k) => return Err(format!("scan invents key {}", show(&k))),
                _ => {
                    // get failed on it but the scan got a value: it must still be a right one.
                    seen.insert(k, Some(v.to_vec()));
                }
            },
            Err(Error::Corruption { .. }) => read_error = true,
            Err(e) => return Err(format!("scan: unexpected error {e}")),
        }
    }
    // Every value read is from one prefix of the writes that keeps all sealed ones.
    let n = p.frames.len();
    let prefix = (n - p.in_region..=n).rev().find(|&j| {
        let s = p.state(j);
        seen.iter().all(|(k, v)| s.get(k) == v.as_ref())
    });
    let Some(j) = prefix else {
        let s = p.state(n);
        let wrong: Vec<String> = seen
            .iter()
            .filter(|(k, v)| s.get(*k) != v.as_ref())
            .take(4)
            .map(|(k, v)| format!("{} = {}", show(k), v.as_ref().map_or("absent".into(), |v| show(v))))
            .collect();
        return Err(format!("wrong values returned: {}", wrong.join(", ")));
    };
    if read_error {
        return Ok(Outcome::ReadError);
    }
    if j < n {
        if !damaged.ends_with("region.mmap") {
            return Err(format!("writes lost (prefix {j} of {n}) to damage outside the active region"));
        }
        return Ok(Outcome::TailCut);
    }
    let problems = store.verify().problems;
    drop(d);
    drop(store);
    if !problems.is_empty() {
        if !problems.iter().all(|pr| pr.file.starts_with(dir)) {
            return Err(format!("verify names files outside the store: {problems:?}"));
        }
        return Ok(Outcome::FoundByVerify);
    }
    let pristine = &p.files[p.files.iter().position(|(r, _)| r.to_string_lossy() == damaged).unwrap()].1;
    let now = std::fs::read(dir.join(damaged)).unwrap_or_default();
    if damaged.ends_with(".keys") || damaged.ends_with("index.json") {
        if Manifestish::parse(&now).is_none() && damaged.ends_with("index.json") {
            return Err("the manifest was not rebuilt".into());
        }
        return Ok(Outcome::Repaired);
    }
    // A log with all data intact and nothing for verify to find: the damage must have been
    // in preallocated space, past the records (and the active region's was zeroed again).
    // In the active region, damage to the sync mark after the records loses nothing: it is cut
    // like a torn tail, and the close writes a new one.
    let region = damaged.ends_with("region.mmap");
    let data_end = if region { p.records_end } else { pristine.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1) };
    if offset < data_end {
        return Err(format!("damage at {offset} inside the records went unnoticed (records end at {data_end})"));
    }
    let zeroed_after = |from: usize| now.len() <= pristine.len() && now.iter().skip(from).all(|&b| b == 0);
    if region && (now[..data_end] != pristine[..data_end] || !zeroed_after(data_end + 24)) {
        return Err("garbage past the active region's records was not zeroed".into());
    }
    Ok(Outcome::Harmless)
}

/// Just enough of the manifest to see it parses after a repair.
struct Manifestish;
impl Manifestish {
    fn parse(b: &[u8]) -> Option<()> {
        serde_json::from_slice::<serde_json::Value>(b).ok().map(drop)
    }
}

fn small_config() -> Config {
    Config::default().initial_size(4096).max_size(4096).durability(Durability::Immediate).background_compaction(false)
}

/// A sealed layer nearly full of records, its key index, the manifest, and an active region
/// with a few records (one a batch with a delete).
fn small_store() -> Pristine {
    let dir = scratch();
    let store = Store::open_with(dir.path(), small_config()).unwrap();
    let d = store.dimension("default").unwrap();
    let mut frames: Vec<Frame> = Vec::new();
    let put = |k: &str, tag: u64, len: usize, frames: &mut Vec<Frame>| {
        let v = tagged(k.as_bytes(), tag, len);
        d.put(k, &v).unwrap();
        frames.push(vec![(k.as_bytes().to_vec(), Some(v))]);
    };
    for i in 0..9u64 {
        put(&format!("k{}", i % 6), i, 400, &mut frames);
    }
    // The next one does not fit: the region is sealed and this starts the new one.
    put("k6", 9, 200, &mut frames);
    put("k1", 10, 40, &mut frames);
    let b = WriteBatch::new().put("k7", tagged(b"k7", 11, 20)).delete("k2");
    d.write(b).unwrap();
    frames.push(vec![(b"k7".to_vec(), Some(tagged(b"k7", 11, 20))), (b"k2".to_vec(), None)]);
    put("k0", 12, 30, &mut frames);
    assert_eq!(d.stats().layers, 2, "one sealed layer and the region");
    drop((d, store));
    let p = Pristine::capture(dir.path(), frames, small_config());
    assert_eq!(p.in_region, 4);
    p
}

#[derive(Default)]
struct Tally(BTreeMap<(String, Outcome), u64>);

impl Tally {
    fn add(&mut self, file: &str, o: Outcome) {
        let short = Path::new(file).file_name().unwrap().to_string_lossy().to_string();
        *self.0.entry((short, o)).or_default() += 1;
    }
    fn print(&self, what: &str) {
        let total: u64 = self.0.values().sum();
        eprintln!("{what}: {total} damaged copies opened");
        for ((file, o), n) in &self.0 {
            eprintln!("  {file:>16}  {o:?}: {n}");
        }
    }
}

/// Byte ranges of value payloads in a log holding `frames` from offset 32 on.
fn value_ranges(frames: &[Frame]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut at = 32;
    for f in frames {
        let mut e = at + 24;
        for (k, v) in f {
            let len = v.as_ref().map_or(0, |v| v.len());
            out.push(e + 12 + k.len()..e + 12 + k.len() + len);
            e += 12 + k.len() + len;
        }
        at += frame_len(f);
    }
    out
}

/// Which bits of which bytes of file `i` to flip: every bit of every byte with structure
/// (headers, keys, lengths, checksums, key index, manifest); of value bytes (all under one
/// checksum) one seeded bit each; of preallocated zeros one bit of every 8th byte. With
/// `JESSY_FLIP_EVERY_BIT`, every bit of every byte.
fn flips_for(p: &Pristine, i: usize, rng: &mut Rng) -> Vec<(usize, u8)> {
    let (rel, bytes) = &p.files[i];
    let name = rel.to_string_lossy();
    let every_bit = std::env::var_os("JESSY_FLIP_EVERY_BIT").is_some();
    let n = p.frames.len();
    let values = if name.ends_with("region.mmap") {
        value_ranges(&p.frames[n - p.in_region..])
    } else if name.ends_with(".mmap") {
        value_ranges(&p.frames[..n - p.in_region])
    } else {
        Vec::new()
    };
    let data_end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let mut out = Vec::new();
    for offset in 0..bytes.len() {
        let in_value = values.iter().any(|r| r.contains(&offset));
        let prealloc = name.ends_with(".mmap") && offset >= data_end;
        if every_bit || !(in_value || prealloc) {
            out.extend((0..8).map(|b| (offset, b)));
        } else if in_value || offset % 8 == 0 {
            out.push((offset, rng.below(8) as u8));
        }
    }
    out
}

#[test]
fn every_bit_of_a_small_store() {
    let p = small_store();
    let started = std::time::Instant::now();
    let mut rng = Rng::new(7);
    let mut work: Vec<(usize, usize, u8)> = Vec::new();
    for i in 0..p.files.len() {
        work.extend(flips_for(&p, i, &mut rng).into_iter().map(|(o, b)| (i, o, b)));
    }
    // Two threads, each on its own copy.
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let (p, work) = (&p, &work);
                s.spawn(move || {
                    let dir = scratch();
                    let dir = dir.path().join("s");
                    let mut tally = Tally::default();
                    for &(i, offset, bit) in work.iter().skip(t).step_by(2) {
                        let name = p.files[i].0.to_string_lossy().to_string();
                        p.lay_out(&dir, i, |b| b[offset] ^= 1 << bit);
                        let o = check(p, &dir, &name, offset)
                            .unwrap_or_else(|e| panic!("flip of bit {bit} of byte {offset} of {name}: {e}"));
                        tally.add(&name, o);
                    }
                    tally
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut tally = Tally::default();
    for t in tallies {
        for (k, n) in t.0 {
            *tally.0.entry(k).or_default() += n;
        }
    }
    let bytes: usize = p.files.iter().map(|(_, b)| b.len()).sum();
    tally.print(&format!(
        "bit flips in a small store ({} files, {bytes} bytes) in {:.1?}",
        p.files.len(),
        started.elapsed()
    ));
}

/// Cuts a log at every byte from the start of its third-last record to the end of its data.
fn truncations(p: &Pristine, name: &str, records: &[usize]) -> Tally {
    let i = p.file(name);
    let dir = scratch();
    let dir = dir.path().join("s");
    let mut tally = Tally::default();
    let bytes = &p.files[i].1;
    let end = records.last().copied().unwrap();
    let from = records[records.len() - 4]; // start of the third-last record
    let mut rel = p.files[i].0.to_string_lossy().to_string();
    rel.truncate(rel.len());
    for cut in from..=end {
        p.lay_out(&dir, i, |b| b.truncate(cut));
        let o = check(p, &dir, &rel, cut).unwrap_or_else(|e| panic!("{name} cut at {cut}: {e}"));
        tally.add(name, o);
        if name.ends_with("region.mmap") {
            // Exactly the records that end before the cut survive, and writing after the cut
            // never brings a cut record back.
            let whole = records.iter().filter(|&&e| e <= cut).count() - 1;
            let want = p.state(p.frames.len() - p.in_region + whole);
            let store = Store::open_with(&dir, p.config.clone()).unwrap();
            let d = store.get_dimension("default").unwrap();
            d.put("after-the-cut", b"x").unwrap();
            drop((d, store));
            let store = Store::open_with(&dir, p.config.clone()).unwrap();
            let d = store.get_dimension("default").unwrap();
            let mut got: Dim = d.iter().map(|r| r.map(|(k, v)| (k, v.to_vec())).unwrap()).collect();
            assert_eq!(got.remove(&b"after-the-cut"[..]).as_deref(), Some(&b"x"[..]), "cut at {cut}");
            assert!(got == want, "{name} cut at {cut}: not exactly the {whole} whole records");
        } else if cut < end {
            // A sealed layer shorter than its manifest says: an error naming it, never a
            // silently smaller store.
            assert_eq!(o, Outcome::OpenFailed, "{name} cut at {cut} of {}", bytes.len());
        }
    }
    tally
}

/// Offsets where each record of a log ends (the first is where records start).
fn record_ends(frames: &[Frame]) -> Vec<usize> {
    let mut ends = vec![32];
    for f in frames {
        ends.push(ends.last().unwrap() + frame_len(f));
    }
    ends
}

#[test]
fn cutting_the_last_three_records_of_each_log() {
    let p = small_store();
    let n = p.frames.len();
    let region = truncations(&p, "D01/region.mmap", &record_ends(&p.frames[n - p.in_region..]));
    region.print("active region cut at every byte of its last three records");
    let layer = truncations(&p, "L00000001.mmap", &record_ends(&p.frames[..n - p.in_region]));
    layer.print("sealed layer cut at every byte of its last three records");
}

/// Several layers, compaction output, overwrites and deletes, and a region with records.
fn larger_store() -> Pristine {
    let dir = scratch();
    let config = Config::default()
        .initial_size(4096)
        .max_size(16384)
        .durability(Durability::Immediate)
        .background_compaction(false)
        .compaction_threshold(0.3);
    let store = Store::open_with(dir.path(), config.clone()).unwrap();
    let d = store.dimension("default").unwrap();
    let mut frames: Vec<Frame> = Vec::new();
    let mut rng = Rng::new(11);
    let mut compacted = 0;
    for i in 0..420u64 {
        let k = format!("key{:03}", rng.below(90)).into_bytes();
        if i % 9 == 4 {
            d.delete(&k).unwrap();
            frames.push(vec![(k, None)]);
        } else if i % 13 == 6 {
            let k2 = format!("key{:03}", rng.below(90)).into_bytes();
            let (v1, v2) = (tagged(&k, i, 30), tagged(&k2, i, 60));
            d.write(WriteBatch::new().put(&k, &v1).put(&k2, &v2)).unwrap();
            frames.push(vec![(k, Some(v1)), (k2, Some(v2))]);
        } else {
            let v = tagged(&k, i, rng.below(300) as usize);
            d.put(&k, &v).unwrap();
            frames.push(vec![(k, Some(v))]);
        }
        if i == 300 {
            compacted = d.compact().unwrap().layers_compacted;
        }
    }
    assert!(compacted > 0 && d.stats().layers >= 3, "{compacted} compacted, {:?}", d.stats());
    drop((d, store));
    Pristine::capture(dir.path(), frames, config)
}

#[test]
fn random_bit_flips_in_a_larger_store() {
    let p = larger_store();
    let flips = env_count("JESSY_BITFLIPS", 1500);
    let total: usize = p.files.iter().map(|(_, b)| b.len()).sum();
    let dir = scratch();
    let dir = dir.path().join("s");
    let mut tally = Tally::default();
    let started = std::time::Instant::now();
    let seeds = seeds(flips);
    run_seeds("fault_corruption", "random_bit_flips_in_a_larger_store", &seeds, |seed| {
        let mut rng = Rng::new(seed);
        // Uniform over every byte of every file.
        let mut at = rng.below(total as u64) as usize;
        let i = p
            .files
            .iter()
            .position(|(_, b)| {
                at < b.len() || {
                    at -= b.len();
                    false
                }
            })
            .unwrap();
        let bit = rng.below(8) as u8;
        let name = p.files[i].0.to_string_lossy().to_string();
        p.lay_out(&dir, i, |b| b[at] ^= 1 << bit);
        let o = check(&p, &dir, &name, at).map_err(|e| format!("bit {bit} of byte {at} of {name}: {e}"))?;
        tally.add(&name, o);
        Ok(())
    });
    tally.print(&format!(
        "random bit flips in a store of {} files, {total} bytes ({:.1?})",
        p.files.len(),
        started.elapsed()
    ));
}

/// Regression: `Config::salvage` is for opening a store whose sealed layers are damaged,
/// but a sealed layer cut short (shorter than `index.json` says) still failed the open.
/// With salvage, the whole records before the cut are kept; without it, open still fails.
#[test]
fn salvage_keeps_the_whole_records_of_a_cut_sealed_layer() {
    let p = small_store();
    let n = p.frames.len();
    let ends = record_ends(&p.frames[..n - p.in_region]);
    let i = p.file("L00000001.mmap");
    let dir = scratch();
    let dir = dir.path().join("s");
    // Every byte of the last record, every third byte of the two before it.
    let last = ends[ends.len() - 2];
    for cut in (ends[ends.len() - 4]..*ends.last().unwrap()).filter(|c| *c >= last || c % 3 == 0) {
        p.lay_out(&dir, i, |b| b.truncate(cut));
        assert!(Store::open_with(&dir, p.config.clone()).is_err(), "cut at {cut}: opened without salvage");
        let store = Store::open_with(&dir, p.config.clone().salvage(true))
            .unwrap_or_else(|e| panic!("cut at {cut}: salvage could not open: {e}"));
        let d = store.get_dimension("default").unwrap();
        // The layer's records that end before the cut, then everything in the region.
        let whole = ends.iter().filter(|&&e| e <= cut).count() - 1;
        let mut want = p.state(whole);
        for f in &p.frames[n - p.in_region..] {
            for (k, v) in f {
                match v {
                    Some(v) => want.insert(k.clone(), v.clone()),
                    None => want.remove(k),
                };
            }
        }
        let got: Dim = d.iter().map(|r| r.map(|(k, v)| (k, v.to_vec())).unwrap()).collect();
        assert!(got == want, "cut at {cut}: salvage kept the wrong records");
        d.put("after", b"salvage").unwrap();
        assert!(store.verify().is_ok(), "cut at {cut}: {:?}", store.verify().problems);
    }
}
