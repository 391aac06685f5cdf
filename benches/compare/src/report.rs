//! The markdown report: one table of workloads by engine, the fdatasync floor, the targets,
//! the spread between runs, and how each engine was driven.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::engines::Kind;
use crate::floor::Space;
use crate::{Args, Metric, RunResult};

pub const SECTION: &str = "## Embedded engines";

pub fn percentile(lat: &[Duration], p: f64) -> Duration {
    if lat.is_empty() {
        return Duration::ZERO;
    }
    let mut v = lat.to_vec();
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

// ---- the machine --------------------------------------------------------------------------

pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory: String,
    pub kernel: String,
    pub filesystem: String,
    pub load_start: String,
    pub load_end: String,
    pub date: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Machine {
    pub fn probe(dir: &Path) -> Machine {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown CPU".into());
        let memory = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| format!("{:.1} GiB", kb / (1024.0 * 1024.0)))
            .unwrap_or_else(|| "unknown".into());
        let kernel = format!("Linux {}", read("/proc/sys/kernel/osrelease").trim());
        Machine {
            cpus,
            cpu_model,
            memory,
            kernel,
            filesystem: filesystem_of(dir),
            load_start: loadavg(),
            load_end: String::new(),
            date: today(),
        }
    }

    pub fn finish(mut self) -> Machine {
        self.load_end = loadavg();
        self
    }

    pub fn summary(&self) -> String {
        format!("{} CPUs ({}), {} memory, {}", self.cpus, self.cpu_model, self.memory, self.kernel)
    }
}

fn loadavg() -> String {
    read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The file system holding `dir`: type, device and mount options from /proc/self/mounts.
fn filesystem_of(dir: &Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut best: Option<(usize, String)> = None;
    for line in read("/proc/self/mounts").lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        let (dev, mnt, ty, opts) = (f[0], f[1], f[2], f[3]);
        if dir.starts_with(mnt) && best.as_ref().is_none_or(|(len, _)| mnt.len() > *len) {
            let opts: Vec<&str> = opts.split(',').filter(|o| !o.starts_with("errors")).take(3).collect();
            best = Some((mnt.len(), format!("{ty} on {dev} ({})", opts.join(","))));
        }
    }
    best.map(|(_, s)| s).unwrap_or_else(|| "unknown".into())
}

/// Today's date (UTC), YYYY-MM-DD.
fn today() -> String {
    let days = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() / 86_400).unwrap_or(0) as i64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

// ---- formatting -----------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
}

struct Row {
    metric: Metric,
    label: &'static str,
    better: Better,
    /// For the ratio column: "faster"/"slower" or "smaller"/"larger".
    words: (&'static str, &'static str),
}

const ROWS: &[Row] = &[
    Row {
        metric: Metric::BulkRate,
        label: "Bulk load, N keys (time, keys/s)",
        better: Better::Higher,
        words: ("faster", "slower"),
    },
    Row {
        metric: Metric::BulkCpu,
        label: "… CPU seconds of the whole process (background threads included)",
        better: Better::Lower,
        words: ("less CPU", "more CPU"),
    },
    Row {
        metric: Metric::BulkLoader,
        label: "Bulk load, jessy's `Store::bulk_load` into a new dimension",
        better: Better::Higher,
        words: ("faster", "slower"),
    },
    Row {
        metric: Metric::DiskLoaded,
        label: "Disk after the load",
        better: Better::Lower,
        words: ("smaller", "larger"),
    },
    Row {
        metric: Metric::Reopen,
        label: "Reopen: open + first get",
        better: Better::Lower,
        words: ("faster", "slower"),
    },
    Row { metric: Metric::Read1, label: "Random reads, 1 thread", better: Better::Higher, words: ("faster", "slower") },
    Row {
        metric: Metric::Read1Cpu,
        label: "… per CPU-second of the reading thread",
        better: Better::Higher,
        words: ("faster", "slower"),
    },
    Row {
        metric: Metric::Read2,
        label: "Random reads, 2 threads (total)",
        better: Better::Higher,
        words: ("faster", "slower"),
    },
    Row {
        metric: Metric::Range,
        label: "Range reads, 10 keys each",
        better: Better::Higher,
        words: ("faster", "slower"),
    },
    Row {
        metric: Metric::RangeCpu,
        label: "… per CPU-second of the reading thread",
        better: Better::Higher,
        words: ("faster", "slower"),
    },
    Row {
        metric: Metric::FloorP50,
        label: "Floor: p50 of a bare 210-byte pwrite + fdatasync (zero-written space), measured alongside",
        better: Better::Lower,
        words: ("faster", "slower"),
    },
    Row {
        metric: Metric::DurableOps,
        label: "Individual durable writes",
        better: Better::Higher,
        words: ("faster", "slower"),
    },
    Row { metric: Metric::DurableP50, label: "… p50 latency", better: Better::Lower, words: ("faster", "slower") },
    Row { metric: Metric::DurableP99, label: "… p99 latency", better: Better::Lower, words: ("faster", "slower") },
    Row {
        metric: Metric::DurableVsFloor,
        label: "… individual write p50 ÷ that floor",
        better: Better::Lower,
        words: ("closer to the floor", "further from the floor"),
    },
    Row {
        metric: Metric::BatchKeys,
        label: "Batch writes, 100 keys per durable commit",
        better: Better::Higher,
        words: ("faster", "slower"),
    },
    Row {
        metric: Metric::BatchP50, label: "… p50 commit latency", better: Better::Lower, words: ("faster", "slower")
    },
    Row {
        metric: Metric::BatchP99, label: "… p99 commit latency", better: Better::Lower, words: ("faster", "slower")
    },
    Row {
        metric: Metric::BatchFloorP50,
        label: "… floor: p50 of a bare 18.6 KB pwrite + fdatasync, measured alongside",
        better: Better::Lower,
        words: ("faster", "slower"),
    },
    Row {
        metric: Metric::BatchVsFloor,
        label: "… p50 ÷ that floor",
        better: Better::Lower,
        words: ("closer to the floor", "further from the floor"),
    },
    Row {
        metric: Metric::RemoveRate,
        label: "Remove N/2 keys, durable batches of 10,000",
        better: Better::Higher,
        words: ("faster", "slower"),
    },
    Row {
        metric: Metric::DiskRemoved,
        label: "Disk after removals",
        better: Better::Lower,
        words: ("smaller", "larger"),
    },
    Row { metric: Metric::CompactTime, label: "Compaction time", better: Better::Lower, words: ("faster", "slower") },
    Row {
        metric: Metric::DiskCompacted,
        label: "Disk after compaction",
        better: Better::Lower,
        words: ("smaller", "larger"),
    },
];

fn rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.0} k", x / 1e3)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn secs(s: f64) -> String {
    if s >= 10.0 {
        format!("{s:.1} s")
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 0.01 {
        format!("{:.0} ms", s * 1e3)
    } else if s >= 0.001 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

fn mib(b: f64) -> String {
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    }
}

fn cell(metric: Metric, v: f64, n: u64) -> String {
    match metric {
        Metric::BulkRate | Metric::BulkLoader => format!("{} ({}/s)", secs(n as f64 / v), rate(v)),
        Metric::RemoveRate => format!("{} ({}/s)", secs((n / 2) as f64 / v), rate(v)),
        Metric::DiskLoaded | Metric::DiskRemoved | Metric::DiskCompacted => mib(v),
        Metric::Reopen | Metric::CompactTime => secs(v),
        Metric::BulkCpu => format!("{v:.2} s"),
        Metric::Read1Cpu => format!("{} gets/CPU-s", rate(v)),
        Metric::RangeCpu => format!("{} ranges/CPU-s", rate(v)),
        Metric::FloorP50 | Metric::DurableP50 | Metric::DurableP99 | Metric::BatchP50 | Metric::BatchP99 => secs(v),
        Metric::DurableVsFloor | Metric::BatchVsFloor => format!("{v:.2}x"),
        Metric::BatchFloorP50 => secs(v),
        Metric::Read1 | Metric::Read2 => format!("{} gets/s", rate(v)),
        Metric::Range => format!("{} ranges/s", rate(v)),
        Metric::DurableOps => format!("{} writes/s", rate(v)),
        Metric::BatchKeys => format!("{} keys/s", rate(v)),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn value(runs: &[RunResult], m: Metric) -> Option<f64> {
    let v: Vec<f64> = runs.iter().filter_map(|r| r.get(&m).copied()).collect();
    (!v.is_empty()).then(|| median(v))
}

/// How many times better `x` is than `peer` (> 1: `x` is better).
fn advantage(better: Better, x: f64, peer: f64) -> f64 {
    match better {
        Better::Higher => x / peer,
        Better::Lower => peer / x,
    }
}

fn best_peer(results: &[(Kind, Vec<RunResult>)], row: &Row) -> Option<(Kind, f64)> {
    if row.metric == Metric::BulkLoader {
        let bulk = ROWS.iter().find(|r| r.metric == Metric::BulkRate).expect("bulk row");
        return best_peer(results, bulk);
    }
    if matches!(row.metric, Metric::CompactTime | Metric::FloorP50 | Metric::BatchFloorP50) {
        return None;
    }
    results
        .iter()
        .filter(|(k, _)| !k.is_jessy())
        .filter(|(k, _)| !(*k == Kind::Sled && not_durable_in_sled(row.metric)))
        .filter_map(|(k, runs)| value(runs, row.metric).map(|v| (*k, v)))
        .reduce(|a, b| if advantage(row.better, b.1, a.1) > 1.0 { b } else { a })
}

/// sled's `flush()` on Linux is `sync_file_range`, which neither flushes the device cache nor
/// persists metadata: its "durable" writes do not give the guarantee the others pay for.
fn not_durable_in_sled(m: Metric) -> bool {
    matches!(
        m,
        Metric::DurableOps
            | Metric::DurableP50
            | Metric::DurableP99
            | Metric::DurableVsFloor
            | Metric::BatchKeys
            | Metric::BatchP50
            | Metric::BatchP99
            | Metric::BatchVsFloor
            | Metric::RemoveRate
            | Metric::CompactTime
    )
}

fn ratio_text(row: &Row, adv: f64, peer: Kind) -> String {
    if adv >= 1.0 {
        format!("**{adv:.2}x {}** than {}", row.words.0, peer.name())
    } else {
        format!("{:.2}x {} than {}", 1.0 / adv, row.words.1, peer.name())
    }
}

// ---- the report ----------------------------------------------------------------------------

pub fn render(
    args: &Args,
    m: &Machine,
    results: &[(Kind, Vec<RunResult>)],
    floors: &[Vec<(Space, Vec<Duration>)>],
    took: Duration,
) -> String {
    let n = args.n;
    let jessies: Vec<Kind> = results.iter().map(|(k, _)| *k).filter(|k| k.is_jessy()).collect();
    let has_peers = results.iter().any(|(k, _)| !k.is_jessy());
    let mut s = String::new();
    let features = if cfg!(feature = "rocksdb") { " --features rocksdb" } else { "" };
    let env = if cfg!(feature = "rocksdb") { "ROCKSDB_LIB_DIR=/usr/lib/x86_64-linux-gnu " } else { "" };
    let _ = writeln!(s, "{SECTION}\n");
    let _ = writeln!(
        s,
        "Generated by `benches/compare` (issue 8) on {}. Command:\n\n```sh\ncd benches/compare && {env}cargo run --release{features} -- {}\n```\n",
        m.date,
        args.argv.join(" ")
    );
    let _ = writeln!(s, "(`make bench-compare N={n}` runs the same without RocksDB.)\n");
    let _ = writeln!(
        s,
        "- Data: N = {} keys of 24 bytes (`key:` + 20 digits, inserted in a scattered, unsorted order, the \
         same for every engine) with 150-byte incompressible values.",
        group(n)
    );
    let _ = writeln!(
        s,
        "- Machine: {} CPUs ({}), {} memory, {}; data on {}. Shared machine: load average {} at the \
         start, {} at the end (other engineers' builds were running).",
        m.cpus, m.cpu_model, m.memory, m.kernel, m.filesystem, m.load_start, m.load_end
    );
    let _ = writeln!(
        s,
        "- {} run{} per engine{}; whole benchmark took {:.0} s. Reads: {} random gets (after one \
         untimed pass over every key), {} ranges; {} individual writes, {} batches of 100.\n",
        args.runs,
        if args.runs == 1 { "" } else { "s" },
        if args.runs > 1 { ", each cell the median (spread below)" } else { "" },
        took.as_secs_f64(),
        group(args.reads),
        group(args.ranges),
        group(args.writes as u64),
        group(args.batches as u64),
    );

    // The main table.
    let mut header = String::from("| Workload |");
    let mut rule = String::from("|---|");
    for (k, _) in results {
        let _ = write!(header, " {} |", k.label());
        rule.push_str("---:|");
    }
    if has_peers {
        for j in &jessies {
            let _ = write!(header, " {} vs best peer |", j.name());
            rule.push_str("---|");
        }
    }
    let _ = writeln!(s, "{header}\n{rule}");
    for row in ROWS {
        let mut line = format!("| {} |", row.label);
        for (k, runs) in results {
            let c = match value(runs, row.metric) {
                Some(_) if row.metric == Metric::CompactTime && *k == Kind::Sled => "n/a (no API)".to_string(),
                Some(v) if *k == Kind::Sled && not_durable_in_sled(row.metric) => {
                    format!("{} †", cell(row.metric, v, n))
                }
                Some(v) => cell(row.metric, v, n),
                None => "—".into(),
            };
            let _ = write!(line, " {c} |");
        }
        if has_peers {
            let best = best_peer(results, row);
            for j in &jessies {
                let jv = results.iter().find(|(k, _)| k == j).and_then(|(_, r)| value(r, row.metric));
                let c = match (jv, best) {
                    (Some(jv), Some((pk, pv))) => ratio_text(row, advantage(row.better, jv, pv), pk),
                    _ => "—".into(),
                };
                let _ = write!(line, " {c} |");
            }
        }
        let _ = writeln!(s, "{line}");
    }
    s.push('\n');
    if results.iter().any(|(k, _)| *k == Kind::Sled) {
        let _ = writeln!(
            s,
            "† sled 0.34's `flush()` calls `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)` on Linux, not \
             `fsync`/`fdatasync`: it neither flushes the disk's write cache nor persists metadata, so its \
             \"durable\" writes are not durable across power loss. Its durable-write cells are shown but \
             left out of \"best peer\".\n"
        );
    }
    let _ = writeln!(
        s,
        "\"Best peer\" is the best of the other engines on that row; \"per CPU-second\" rows divide by the CPU \
         time of the timed threads (robust to other processes taking the CPUs; wall-clock rows are not). \
         Individual durable writes alternate, 100 at a time, with 100 bare pwrite + fdatasync writes into \
         zero-written space, so each engine's p50 is compared with the floor measured alongside it.\n"
    );

    // The fdatasync floor.
    let _ = writeln!(
        s,
        "### The machine's floor for one durable write\n\n{} sequential writes of {} bytes, each followed by \
         `fdatasync`, nothing else, at the start of each run (median over runs of each percentile). On this \
         virtual disk the fdatasync latency switches between about 60 µs and about 4 ms over minutes, so \
         compare durable writes with the floor measured alongside them (row \"… p50 ÷ the floor\" above):\n",
        group(args.writes as u64),
        crate::floor::WRITE_LEN
    );
    let _ = writeln!(s, "| Write | p50 | p99 |\n|---|---:|---:|");
    let mut floor_p50 = Vec::new();
    for space in Space::all() {
        let pick = |p: f64| {
            median(
                floors
                    .iter()
                    .flat_map(|f| f.iter().filter(|(sp, _)| *sp as u8 == space as u8))
                    .map(|(_, lat)| percentile(lat, p).as_secs_f64())
                    .collect(),
            )
        };
        let (p50, p99) = (pick(50.0), pick(99.0));
        floor_p50.push((space, p50));
        let _ = writeln!(s, "| {} | {} | {} |", space.label(), secs(p50), secs(p99));
    }
    s.push('\n');

    // Targets.
    if has_peers && !jessies.is_empty() {
        let (fl_space, fl) = floor_p50.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1)).expect("three floors");
        let _ = writeln!(s, "### Targets\n");
        let mut header = String::from("| Target |");
        let mut rule = String::from("|---|");
        for j in &jessies {
            let _ = write!(header, " {} |", j.name());
            rule.push_str("---|");
        }
        let _ = writeln!(s, "{header}\n{rule}");
        let targets: &[(&str, Metric, f64)] = &[
            ("Random reads, 1 thread ≥ 1.5x the fastest peer", Metric::Read1, 1.5),
            ("… the same per CPU-second", Metric::Read1Cpu, 1.5),
            ("Random reads, 2 threads ≥ 1.5x the fastest peer", Metric::Read2, 1.5),
            ("Range reads ≥ the fastest peer", Metric::Range, 1.0),
            ("… the same per CPU-second", Metric::RangeCpu, 1.0),
            ("Bulk load (WriteBatch path) ≥ 2x the fastest peer", Metric::BulkRate, 2.0),
            ("Bulk load (`Store::bulk_load`) ≥ 2x the fastest peer", Metric::BulkLoader, 2.0),
            ("Durable batch writes ≥ 2x the fastest peer", Metric::BatchKeys, 2.0),
            ("… the same on p50 ÷ floor measured alongside (disk drift removed)", Metric::BatchVsFloor, 2.0),
            ("Individual durable writes ≥ 1.2x the fastest peer", Metric::DurableOps, 1.2),
            ("… the same on p50 ÷ floor measured alongside (disk drift removed)", Metric::DurableVsFloor, 1.2),
            ("Disk after compaction within 1.5x of the smallest peer", Metric::DiskCompacted, 1.0 / 1.5),
        ];
        for (label, metric, need) in targets {
            let row = ROWS.iter().find(|r| r.metric == *metric).expect("row");
            let mut line = format!("| {label} |");
            for j in &jessies {
                let jv = results.iter().find(|(k, _)| k == j).and_then(|(_, r)| value(r, *metric));
                let c = match (jv, best_peer(results, row)) {
                    (Some(jv), Some((pk, pv))) => {
                        let adv = advantage(row.better, jv, pv);
                        let ok = adv >= *need;
                        let shown = if row.better == Better::Lower && row.words.0 == "smaller" {
                            format!("{:.2}x the size of {}", 1.0 / adv, pk.name())
                        } else {
                            format!("{adv:.2}x {}", pk.name())
                        };
                        format!("{} {shown}", if ok { "**holds**:" } else { "misses:" })
                    }
                    _ => "—".into(),
                };
                let _ = write!(line, " {c} |");
            }
            let _ = writeln!(s, "{line}");
        }
        let _ = (fl_space, fl);
        let mut line =
            String::from("| Individual durable write p50 within 1.3x of the fdatasync floor (zero-written space, measured alongside) |");
        for j in &jessies {
            let jv = results.iter().find(|(k, _)| k == j).and_then(|(_, r)| value(r, Metric::DurableVsFloor));
            let c = match jv {
                Some(v) => format!("{} {v:.2}x", if v <= 1.3 { "**holds**:" } else { "misses:" }),
                None => "—".into(),
            };
            let _ = write!(line, " {c} |");
        }
        let _ = writeln!(s, "{line}");
        let mut line = format!("| Reopen < 1 s (N = {}) |", group(n));
        for j in &jessies {
            let jv = results.iter().find(|(k, _)| k == j).and_then(|(_, r)| value(r, Metric::Reopen));
            let c = match jv {
                Some(v) => format!("{} {}", if v < 1.0 { "**holds**:" } else { "misses:" }, secs(v)),
                None => "—".into(),
            };
            let _ = write!(line, " {c} |");
        }
        let _ = writeln!(s, "{line}\n");
    }

    // Spread between runs.
    if args.runs > 1 {
        let _ = writeln!(s, "### Spread between runs\n\n(max − min) / median of each cell, over {} runs:\n", args.runs);
        let mut header = String::from("| Workload |");
        let mut rule = String::from("|---|");
        for (k, _) in results {
            let _ = write!(header, " {} |", k.name());
            rule.push_str("---:|");
        }
        let _ = writeln!(s, "{header}\n{rule}");
        for row in ROWS {
            let mut line = format!("| {} |", row.label);
            for (_, runs) in results {
                let v: Vec<f64> = runs.iter().filter_map(|r| r.get(&row.metric).copied()).collect();
                let c = if v.len() > 1 {
                    let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
                    let med = median(v);
                    if med > 0.0 {
                        format!("{:.0}%", 100.0 * (hi - lo) / med)
                    } else {
                        "—".into()
                    }
                } else {
                    "—".into()
                };
                let _ = write!(line, " {c} |");
            }
            let _ = writeln!(s, "{line}");
        }
        s.push('\n');
    }

    let _ = writeln!(s, "### How each engine is driven\n");
    let _ = writeln!(
        s,
        "Each engine gets a fresh directory and runs, in order: bulk load (timed until durable), close, \
         reopen (timed: open + one get), one untimed read of every key, random gets on 1 then 2 threads, \
         ranges of 10 from random existing keys, individual durable writes of new keys, durable batches of \
         100 new keys, removal of every other loaded key in durable batches of 10,000, then the engine's \
         compaction. Disk use is the allocated blocks of the engine's directory (as `du` counts them, \
         preallocated space included), measured after the load (store closed), after the removals and after \
         compaction. Every peer that keeps its own cache gets 1 GiB; jessy and LMDB read through the page \
         cache. Peers run with their defaults otherwise.\n"
    );
    for (k, _) in results {
        let _ = writeln!(s, "- **{}**: {}", k.label(), k.notes());
    }
    if !cfg!(feature = "rocksdb") {
        let _ = writeln!(
            s,
            "- **RocksDB** is behind the `rocksdb` cargo feature (off by default: see `benches/compare/Cargo.toml`: \
             it links Debian's librocksdb 7.8, or compiles RocksDB from source); this run did not include it."
        );
    }
    s
}

fn group(n: u64) -> String {
    let d = n.to_string();
    let mut out = String::new();
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Replaces (or adds) the `## Embedded engines` section of `doc`, keeping everything else.
pub fn write_section(doc: &Path, section: &str) -> std::io::Result<()> {
    let section = section.trim_end();
    let old = match std::fs::read_to_string(doc) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let new = if old.trim().is_empty() {
        format!("# Benchmarks\n\n{section}\n")
    } else if let Some(start) = find_heading(&old, SECTION) {
        let rest = &old[start + SECTION.len()..];
        let end = rest.find("\n## ").map(|i| start + SECTION.len() + i + 1).unwrap_or(old.len());
        let tail = &old[end..];
        if tail.is_empty() {
            format!("{}{section}\n", &old[..start])
        } else {
            format!("{}{section}\n\n{tail}", &old[..start])
        }
    } else {
        format!("{}\n\n{section}\n", old.trim_end())
    };
    if let Some(parent) = doc.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(doc, new)
}

/// Byte offset of a line that is exactly `heading`.
fn find_heading(text: &str, heading: &str) -> Option<usize> {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end() == heading {
            return Some(at);
        }
        at += line.len();
    }
    None
}
