//! Jessy against redb, LMDB, sled, fjall and RocksDB on the same workloads (issue 8).
//!
//! ```text
//! cd benches/compare && cargo run --release -- --n 1000000
//! cargo run --release -- --n 100000 --engines jessy,redb --runs 3 --no-doc
//! cargo run --release --features rocksdb -- --n 1000000       # with RocksDB (builds C++)
//! ```
//!
//! Prints a markdown report and writes it as the `## Embedded engines` section of
//! `docs/BENCHMARKS.md` (other sections of that file are kept).

mod engines;
mod floor;
mod probe;
mod report;
mod workload;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use engines::{Engine, Kind, Mode, Res};
use workload::{key, value, Key, Picks, Val, BULK_BATCH, WRITE_BATCH};

/// What one run of one engine measured.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Metric {
    BulkRate,
    BulkCpu,
    BulkLoader,
    DiskLoaded,
    Reopen,
    Read1,
    Read1Cpu,
    Read2,
    Range,
    RangeCpu,
    FloorP50,
    DurableOps,
    DurableP50,
    DurableP99,
    DurableVsFloor,
    BatchKeys,
    BatchP50,
    BatchP99,
    BatchFloorP50,
    BatchVsFloor,
    RemoveRate,
    DiskRemoved,
    CompactTime,
    DiskCompacted,
}

pub type RunResult = std::collections::BTreeMap<Metric, f64>;

pub struct Args {
    pub n: u64,
    pub engines: Vec<Kind>,
    pub reads: u64,
    pub ranges: u64,
    pub writes: usize,
    pub batches: usize,
    pub runs: usize,
    pub dir: PathBuf,
    pub doc: Option<PathBuf>,
    pub keep: bool,
    pub argv: Vec<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: jessy-compare [--n N] [--engines a,b,..] [--reads R] [--ranges R] [--writes W] \
         [--batches B] [--runs K] [--dir DIR] [--doc PATH | --no-doc] [--keep]\n\
         engines: {} (rocksdb needs --features rocksdb)",
        Kind::all().iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut a = Args {
        n: 1_000_000,
        engines: Kind::all(),
        reads: 0,
        ranges: 0,
        writes: 2_000,
        batches: 500,
        runs: 1,
        dir: std::env::temp_dir().join("jessy-compare"),
        doc: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/BENCHMARKS.md")),
        keep: false,
        argv: argv.clone(),
    };
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        let num = |s: String| -> u64 { s.replace(['_', ','], "").parse().unwrap_or_else(|_| usage()) };
        match flag.as_str() {
            "--n" => a.n = num(val()),
            "--reads" => a.reads = num(val()),
            "--ranges" => a.ranges = num(val()),
            "--writes" => a.writes = num(val()) as usize,
            "--batches" => a.batches = num(val()) as usize,
            "--runs" => a.runs = num(val()).max(1) as usize,
            "--dir" => a.dir = PathBuf::from(val()),
            "--doc" => a.doc = Some(PathBuf::from(val())),
            "--no-doc" => a.doc = None,
            "--keep" => a.keep = true,
            "--engines" => {
                let list = val();
                a.engines = if list == "all" {
                    Kind::all()
                } else {
                    list.split(',')
                        .map(|s| {
                            Kind::parse(s.trim()).unwrap_or_else(|| {
                                eprintln!("unknown engine {s:?}");
                                usage()
                            })
                        })
                        .collect()
                };
            }
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    if a.n < 100 {
        eprintln!("--n must be at least 100");
        usage();
    }
    if a.reads == 0 {
        a.reads = a.n;
    }
    if a.ranges == 0 {
        a.ranges = (a.n / 10).max(1000);
    }
    a
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if raw.first().map(String::as_str) == Some("probe") {
        if let Err(e) = probe::main(&raw[1..]) {
            eprintln!("jessy-compare probe: {e}");
            std::process::exit(1);
        }
        return;
    }
    let args = parse_args();
    if let Err(e) = run(&args) {
        eprintln!("jessy-compare: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Res<()> {
    std::fs::create_dir_all(&args.dir)?;
    let started = Instant::now();
    let machine = report::Machine::probe(&args.dir);
    eprintln!("# {} ; data in {} ({})", machine.summary(), args.dir.display(), machine.filesystem);

    let mut floors: Vec<Vec<(floor::Space, Vec<Duration>)>> = Vec::new();
    let mut results: Vec<(Kind, Vec<RunResult>)> = args.engines.iter().map(|k| (*k, Vec::new())).collect();
    for r in 0..args.runs {
        let mut f = Vec::new();
        for space in floor::Space::all() {
            let lat = floor::measure(&args.dir, space, args.writes)?;
            eprintln!("[run {}] floor {:?}: p50 {:?}", r + 1, space, report::percentile(&lat, 50.0));
            f.push((space, lat));
        }
        floors.push(f);
        // Rotate the order between runs, so that no engine always runs first or last.
        let len = results.len();
        results.rotate_left(r % len);
        for (kind, runs) in results.iter_mut() {
            let dir = args.dir.join(format!("{}-run{}", kind.name(), r + 1));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            let t = Instant::now();
            let res = bench_engine(*kind, &dir, args)?;
            eprintln!("[run {}] {} done in {:.1} s", r + 1, kind.name(), t.elapsed().as_secs_f64());
            runs.push(res);
            if !args.keep {
                std::fs::remove_dir_all(&dir)?;
            }
        }
        results.rotate_right(r % len);
    }
    let machine = machine.finish();
    let md = report::render(args, &machine, &results, &floors, started.elapsed());
    println!("{md}");
    if let Some(doc) = &args.doc {
        report::write_section(doc, &md)?;
        eprintln!("wrote the `## Embedded engines` section of {}", doc.display());
    }
    if !args.keep {
        let _ = std::fs::remove_dir(&args.dir);
    }
    Ok(())
}

/// Bytes the directory takes on disk (allocated blocks, as `du` counts them).
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    for e in entries.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            total += disk_usage(&e.path());
        } else {
            total += m.blocks() * 512;
        }
    }
    total
}

fn step(kind: Kind, what: &str) {
    eprintln!("  {:<10} {what}", kind.name());
}

fn bench_engine(kind: Kind, dir: &Path, args: &Args) -> Res<RunResult> {
    let n = args.n;
    let mut out = RunResult::new();

    // 1. Bulk load, durable at the end.
    step(kind, "bulk load");
    let t = Instant::now();
    let cpu = process_cpu();
    let mut e = kind.open(dir, Mode::Bulk)?;
    e.bulk_load(n)?;
    let secs = t.elapsed().as_secs_f64();
    out.insert(Metric::BulkRate, n as f64 / secs);
    out.insert(Metric::BulkCpu, process_cpu() - cpu);
    e.close()?;
    out.insert(Metric::DiskLoaded, disk_usage(dir) as f64);

    // 1b. Jessy only: its dedicated loader for a new dimension, in a separate directory.
    if kind.is_jessy() {
        step(kind, "bulk load through Store::bulk_load");
        let other = dir.with_extension("bulkloader");
        let _ = std::fs::remove_dir_all(&other);
        let secs = engines::jessy_bulk_loader(&other, kind, n)?;
        out.insert(Metric::BulkLoader, n as f64 / secs);
        std::fs::remove_dir_all(&other)?;
    }

    // 2. Reopen: open + the first get.
    step(kind, "reopen");
    let probe = key(n / 2);
    let t = Instant::now();
    let e = kind.open(dir, Mode::Normal)?;
    let found = e.reader()?.get(&probe);
    out.insert(Metric::Reopen, t.elapsed().as_secs_f64());
    if found.is_none() {
        return Err(format!("{}: key {} missing after reopen", kind.name(), n / 2).into());
    }
    if let Some(len) = e.len() {
        if len != n {
            return Err(format!("{}: {len} keys after reopen, expected {n}", kind.name()).into());
        }
    }
    let mut e = e;

    // 3. Random point reads, warm.
    step(kind, "warm-up");
    {
        let mut r = e.reader()?;
        for i in 0..n {
            if r.get(&key(i)).is_none() {
                return Err(format!("{}: key {i} missing", kind.name()).into());
            }
        }
    }
    step(kind, "random reads, 1 thread");
    let (wall, cpu) = read_random(&*e, n, args.reads, 1)?;
    out.insert(Metric::Read1, wall);
    out.insert(Metric::Read1Cpu, cpu);
    step(kind, "random reads, 2 threads");
    out.insert(Metric::Read2, read_random(&*e, n, args.reads, 2)?.0);

    // 4. Ranges of 10 from random starting keys.
    step(kind, "range reads");
    {
        let mut r = e.reader()?;
        let mut sink = 0usize;
        let t = Instant::now();
        let cpu = thread_cpu();
        for i in Picks::new(0xA11CE, n).take(args.ranges as usize) {
            sink = sink.wrapping_add(r.scan10(&key(i)));
        }
        out.insert(Metric::RangeCpu, args.ranges as f64 / (thread_cpu() - cpu));
        out.insert(Metric::Range, args.ranges as f64 / t.elapsed().as_secs_f64());
        std::hint::black_box(sink);
    }

    // 5. Individual durable writes of new keys, in chunks of 100 that alternate with chunks
    // of 100 floor writes (pwrite + fdatasync into zero-written space): the disk's fdatasync
    // latency drifts on a shared machine, so the floor is measured alongside.
    step(kind, "individual durable writes (alternating with floor writes)");
    let mut next = n; // new keys: n, n + 1, ...
    let mut lat = Vec::with_capacity(args.writes);
    let mut floor_lat = Vec::with_capacity(args.writes);
    let mut floor_file = floor::FloorFile::new(dir.parent().unwrap_or(dir), floor::Space::Zeroed)?;
    let mut engine_time = Duration::ZERO;
    let mut done = 0;
    while done < args.writes {
        let chunk = (args.writes - done).min(100);
        let t = Instant::now();
        for _ in 0..chunk {
            let (k, v) = (key(next), value(next));
            next += 1;
            let s = Instant::now();
            e.put_durable(&k, &v)?;
            lat.push(s.elapsed());
        }
        engine_time += t.elapsed();
        for _ in 0..chunk {
            floor_lat.push(floor_file.write_one()?);
        }
        done += chunk;
    }
    drop(floor_file);
    out.insert(Metric::DurableOps, args.writes as f64 / engine_time.as_secs_f64());
    out.insert(Metric::FloorP50, report::percentile(&floor_lat, 50.0).as_secs_f64());
    out.insert(Metric::DurableP50, report::percentile(&lat, 50.0).as_secs_f64());
    out.insert(Metric::DurableP99, report::percentile(&lat, 99.0).as_secs_f64());
    out.insert(Metric::DurableVsFloor, out[&Metric::DurableP50] / out[&Metric::FloorP50]);

    // 6. Batches of 100 new keys, one durable commit each.
    step(kind, "batch writes");
    // Alternating, 50 at a time, with bare writes of one such frame's size + fdatasync.
    let frame_len = 24 + WRITE_BATCH * (12 + workload::KEY_LEN + workload::VALUE_LEN);
    let mut lat = Vec::with_capacity(args.batches);
    let mut floor_lat = Vec::with_capacity(args.batches);
    let mut floor_file = floor::FloorFile::new(dir.parent().unwrap_or(dir), floor::Space::Zeroed)?;
    let mut engine_time = Duration::ZERO;
    let mut done = 0;
    while done < args.batches {
        let chunk = (args.batches - done).min(50);
        let t = Instant::now();
        for _ in 0..chunk {
            let batch: Vec<(Key, Val)> = (next..next + WRITE_BATCH as u64).map(|i| (key(i), value(i))).collect();
            next += WRITE_BATCH as u64;
            let s = Instant::now();
            e.batch_durable(&batch)?;
            lat.push(s.elapsed());
        }
        engine_time += t.elapsed();
        for _ in 0..chunk {
            floor_lat.push(floor_file.write_len(frame_len)?);
        }
        done += chunk;
    }
    drop(floor_file);
    out.insert(Metric::BatchKeys, (args.batches * WRITE_BATCH) as f64 / engine_time.as_secs_f64());
    out.insert(Metric::BatchFloorP50, report::percentile(&floor_lat, 50.0).as_secs_f64());
    out.insert(Metric::BatchP50, report::percentile(&lat, 50.0).as_secs_f64());
    out.insert(Metric::BatchP99, report::percentile(&lat, 99.0).as_secs_f64());
    out.insert(Metric::BatchVsFloor, out[&Metric::BatchP50] / out[&Metric::BatchFloorP50]);

    // 7. Remove every even-numbered loaded key, in durable batches.
    step(kind, "removals");
    let removed: Vec<u64> = (0..n).step_by(2).collect();
    let t = Instant::now();
    for chunk in removed.chunks(BULK_BATCH as usize) {
        let keys: Vec<Key> = chunk.iter().map(|i| key(*i)).collect();
        e.delete_durable(&keys)?;
    }
    out.insert(Metric::RemoveRate, removed.len() as f64 / t.elapsed().as_secs_f64());
    {
        let mut r = e.reader()?;
        if r.get(&key(0)).is_some() || r.get(&key(1)).is_none() {
            return Err(format!("{}: removals not visible", kind.name()).into());
        }
    }
    out.insert(Metric::DiskRemoved, disk_usage(dir) as f64);

    // 8. The engine's compaction.
    step(kind, "compaction");
    let t = Instant::now();
    e.compact()?;
    out.insert(Metric::CompactTime, t.elapsed().as_secs_f64());
    out.insert(Metric::DiskCompacted, disk_usage(dir) as f64);
    {
        let mut r = e.reader()?;
        if r.get(&key(1)).is_none() || r.get(&key(next - 1)).is_none() {
            return Err(format!("{}: keys lost by compaction", kind.name()).into());
        }
    }
    e.close()?;
    Ok(out)
}

/// CPU seconds this thread has run.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// CPU seconds (user + system) the whole process has run, background threads included.
pub(crate) fn process_cpu() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Random gets of loaded keys on `threads` threads; returns gets per second over all threads
/// (wall clock), and gets per CPU-second of the reading threads.
fn read_random(e: &dyn Engine, n: u64, total: u64, threads: u64) -> Res<(f64, f64)> {
    let per = total / threads;
    let barrier = std::sync::Barrier::new(threads as usize + 1);
    let (elapsed, missing, cpu) = std::thread::scope(|s| -> Res<(Duration, u64, f64)> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || -> Result<(u64, f64), String> {
                    let mut r = e.reader().map_err(|e| e.to_string())?;
                    let mut missing = 0;
                    let mut sink = 0usize;
                    barrier.wait();
                    let cpu = thread_cpu();
                    for i in Picks::new(0xBEEF + t, n).take(per as usize) {
                        match r.get(&key(i)) {
                            Some(d) => sink = sink.wrapping_add(d),
                            None => missing += 1,
                        }
                    }
                    std::hint::black_box(sink);
                    Ok((missing, thread_cpu() - cpu))
                })
            })
            .collect();
        barrier.wait();
        let t = Instant::now();
        let (mut missing, mut cpu) = (0, 0.0);
        for h in handles {
            let (m, c) = h.join().map_err(|_| "reader thread panicked")??;
            missing += m;
            cpu += c;
        }
        Ok((t.elapsed(), missing, cpu))
    })?;
    if missing > 0 {
        return Err(format!("{missing} reads found nothing").into());
    }
    Ok(((per * threads) as f64 / elapsed.as_secs_f64(), (per * threads) as f64 / cpu))
}
