//! Real processes, `kill -9` (issue 4, part 2).
//!
//! The test re-executes its own binary in "writer mode" (`JESSY_KILL_CHILD` set): the child
//! opens the store with `Durability::Immediate` and small regions, runs a deterministic
//! stream of puts, deletes, batches and compactions, and prints `ACK <n>` (flushed) after
//! each acknowledged one. The parent SIGKILLs it at a random moment (after a random number of
//! acknowledgements, right after a compaction starts, or after a random delay that may land
//! while the child is still recovering), reopens the store, and checks it against the model:
//! the state after the last acknowledged operation, or after the one after it (which was in
//! flight). Then the next round starts a new writer on the same directory.
//!
//! Counts: `JESSY_KILL_ROUNDS` (100 in `make test`, 10,000 in `make soak`). Each round is
//! seeded from the test's seed: `JESSY_FAULT_SEED=<n>` replays one run of rounds.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::workload::{Op, State, DIMS};
use common::*;
use jessy_storage::{Config, Durability, Store};

const CHILD_ENV: &str = "JESSY_KILL_CHILD";
const KEYS: u64 = 40;
/// A child that is never killed stops by itself after this many operations.
const CHILD_MAX_OPS: u64 = 3000;

fn key(n: u64) -> Vec<u8> {
    format!("key{n:03}{}", "+".repeat((n % 4 * 5) as usize)).into_bytes()
}

/// Operation `i` of run `seed`: the child and the parent compute the same one.
fn op(seed: u64, i: u64) -> Op {
    let mut r = Rng::new(seed.wrapping_mul(0x1000_0000_01B3) ^ i);
    let len = |r: &mut Rng| match r.below(20) {
        0..=13 => r.below(200) as usize,
        14..=18 => r.range(200, 1500) as usize,
        _ => r.range(1500, 3000) as usize,
    };
    let dim = if r.chance(1, 6) { 1 } else { 0 };
    match r.below(100) {
        0..=59 => Op::Put(dim, r.below(KEYS), len(&mut r)),
        60..=74 => Op::Delete(dim, r.below(KEYS)),
        75..=93 => {
            let n = r.range(2, 5);
            Op::Batch(dim, (0..n).map(|_| (r.below(KEYS), r.chance(4, 5).then(|| r.below(400) as usize))).collect())
        }
        _ => Op::Compact(dim),
    }
}

fn config(seed: u64) -> Config {
    Config::default()
        .initial_size(4096)
        .max_size(if seed.is_multiple_of(2) { 8192 } else { 16384 })
        .durability(Durability::Immediate)
        .background_compaction(false)
        .compaction_threshold(0.2)
}

/// Writer mode: runs operations from `JESSY_KILL_START` on, printing each acknowledgement.
fn child() {
    let env = |n: &str| std::env::var(n).unwrap_or_else(|_| panic!("{n} not set"));
    let dir = env("JESSY_KILL_DIR");
    let seed: u64 = env("JESSY_KILL_SEED").parse().unwrap();
    let start: u64 = env("JESSY_KILL_START").parse().unwrap();
    let mut out = std::io::stdout().lock();
    let store = match Store::open_with(&dir, config(seed)) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(out, "ERROR open: {e}");
            std::process::exit(3);
        }
    };
    // A newline first: libtest has printed "test <name> ... " without one.
    writeln!(out, "\nOPEN").unwrap();
    out.flush().unwrap();
    let dims: Vec<_> = DIMS.iter().map(|n| store.get_dimension(n).unwrap()).collect();
    for i in start..start + CHILD_MAX_OPS {
        let o = op(seed, i);
        if let Op::Compact(_) = o {
            writeln!(out, "COMPACT {i}").unwrap();
            out.flush().unwrap();
        }
        let r = o.run(&dims[o.dim()], key, i);
        if let Err(e) = r {
            let _ = writeln!(out, "ERROR op {i} {o:?}: {e}");
            std::process::exit(4);
        }
        writeln!(out, "ACK {i}").unwrap();
        out.flush().unwrap();
    }
    writeln!(out, "DONE").unwrap();
}

fn read_state(store: &Store) -> Result<State, String> {
    let mut st = State::new();
    for name in DIMS {
        let d = store.get_dimension(name).map_err(|e| e.to_string())?;
        let mut m = BTreeMap::new();
        for item in d.iter() {
            let (k, v) = item.map_err(|e| format!("scan {name}: {e}"))?;
            check_tagged(&k, &v)?;
            m.insert(k, v.to_vec());
        }
        for n in 0..KEYS {
            let got = d.get(key(n)).map_err(|e| e.to_string())?;
            if got.as_deref() != m.get(&key(n)).map(|v| v.as_slice()) {
                return Err(format!("get and scan disagree on {}", show(&key(n))));
            }
        }
        st.insert(name.to_string(), m);
    }
    Ok(st)
}

#[derive(Default, Debug)]
struct Tally {
    rounds: u64,
    acked: u64,
    in_flight_landed: u64,
    during_compaction: u64,
    before_open_done: u64,
    finished: u64,
    /// The kill left a seal or compaction half done (files in layers/ the manifest does not
    /// list, or a region newer than the manifest's active one).
    interrupted_protocol: u64,
}

/// Looks at the files a killed writer left, before recovery touches them.
fn interrupted(dir: &Path) -> bool {
    for d in ["D01", "D02"] {
        let dim = dir.join("consciousness").join(d);
        let Ok(text) = std::fs::read_to_string(dim.join("index.json")) else { return true };
        let Ok(m) = serde_json::from_str::<serde_json::Value>(&text) else { return true };
        let listed: Vec<String> = m["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|l| {
                [l["file"].as_str().unwrap_or("").to_string(), l["keys_file"].as_str().unwrap_or("").to_string()]
            })
            .collect();
        for e in std::fs::read_dir(dim.join("layers")).into_iter().flatten().flatten() {
            let rel = format!("layers/{}", e.file_name().to_string_lossy());
            if !listed.contains(&rel) {
                return true;
            }
        }
        let region = std::fs::read(dim.join("region.mmap")).unwrap_or_default();
        let region_layer = region.get(16..20).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        if region_layer.map(|l| l as u64) != m["active"]["layer_id"].as_u64() {
            return true;
        }
    }
    false
}

/// One round: start a writer, kill it, check. Returns the next operation index.
fn round(dir: &Path, seed: u64, rng: &mut Rng, start: u64, model: &mut State, t: &mut Tally) -> Result<u64, String> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "kill_nine_during_writes_sealing_and_compaction", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, "1")
        .env("JESSY_KILL_DIR", dir)
        .env("JESSY_KILL_SEED", seed.to_string())
        .env("JESSY_KILL_START", start.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn the writer: {e}"))?;
    let pid = child.id() as i32;
    let (tx, lines) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // When to kill: after some acknowledgements, just after a compaction starts, or after a
    // delay measured from the spawn (which may land while the writer is still opening).
    let strategy = rng.below(10);
    let after_acks = rng.below(150);
    let delay = Duration::from_micros(rng.below(if strategy < 2 { 40_000 } else { 3_000 }));
    let started = Instant::now();
    let mut acks = 0u64;
    let mut last_ack: Option<u64> = None;
    let mut compacting = None;
    let mut opened = false;
    let mut error = None;
    let mut fire_at: Option<Instant> = (strategy < 2).then(|| started + delay);
    loop {
        if let Some(at) = fire_at {
            if Instant::now() >= at {
                break;
            }
        }
        let wait = fire_at.map_or(Duration::from_secs(30), |at| at.saturating_duration_since(Instant::now()));
        match lines.recv_timeout(wait) {
            Ok(line) => {
                if let Some(n) = line.strip_prefix("ACK ") {
                    last_ack = Some(n.parse().unwrap());
                    compacting = None;
                    acks += 1;
                    if strategy >= 4 && acks >= after_acks && fire_at.is_none() {
                        fire_at = Some(Instant::now() + delay / 8);
                    }
                } else if let Some(n) = line.strip_prefix("COMPACT ") {
                    compacting = Some(n.parse::<u64>().unwrap());
                    if (2..4).contains(&strategy) && fire_at.is_none() && acks >= after_acks / 4 {
                        fire_at = Some(Instant::now() + delay / 4);
                    }
                } else if line.ends_with("OPEN") {
                    opened = true;
                } else if line.starts_with("ERROR") {
                    error = Some(line);
                    break;
                } else if line == "DONE" {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if fire_at.is_none() {
                    error = Some("the writer printed nothing for 30 s".into());
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // SAFETY: plain syscall; the pid is our own child, not yet reaped.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = child.wait();
    // Lines the writer flushed before it died are still in the pipe.
    for line in lines.iter() {
        if let Some(n) = line.strip_prefix("ACK ") {
            last_ack = Some(n.parse().unwrap());
            compacting = None;
            acks += 1;
        } else if let Some(n) = line.strip_prefix("COMPACT ") {
            compacting = Some(n.parse::<u64>().unwrap());
        } else if line.ends_with("OPEN") {
            opened = true;
        } else if line.starts_with("ERROR") {
            error = Some(line);
        } else if line == "DONE" {
            t.finished += 1;
        }
    }
    let _ = reader.join();
    if let Some(e) = error {
        return Err(format!("the writer failed: {e}"));
    }
    t.rounds += 1;
    t.acked += acks;
    t.during_compaction += compacting.is_some() as u64;
    t.before_open_done += (!opened) as u64;
    t.interrupted_protocol += interrupted(dir) as u64;

    // The model: every acknowledged operation, then maybe the one in flight.
    let next = last_ack.map_or(start, |n| n + 1);
    if last_ack.is_some_and(|n| n + 1 < start) {
        return Err(format!("acknowledgement {last_ack:?} is older than the round's first op {start}"));
    }
    for i in start..next {
        op(seed, i).apply(model, key, i);
    }
    let mut with_next = model.clone();
    op(seed, next).apply(&mut with_next, key, next);

    let store = Store::open_with(dir, config(seed)).map_err(|e| format!("reopen after kill -9: {e}"))?;
    let got = read_state(&store)?;
    let verify = store.verify();
    if !verify.is_ok() {
        return Err(format!("verify after kill -9: {:?}", verify.problems));
    }
    drop(store);
    if got == *model {
        Ok(next)
    } else if got == with_next {
        t.in_flight_landed += 1;
        *model = with_next;
        Ok(next + 1)
    } else {
        let mut diffs = Vec::new();
        for (name, want) in model.iter() {
            for k in want.keys().chain(got[name].keys()) {
                if want.get(k) != got[name].get(k) {
                    diffs.push(format!(
                        "{name}/{}: want {}, got {}",
                        show(k),
                        want.get(k).map_or("absent".into(), |v| show(v)),
                        got[name].get(k).map_or("absent".into(), |v| show(v))
                    ));
                }
            }
        }
        diffs.truncate(6);
        Err(format!(
            "after kill -9 (last ack {last_ack:?}, in flight {:?}) the store lost or invented data: {}",
            op(seed, next),
            diffs.join("; ")
        ))
    }
}

#[test]
fn kill_nine_during_writes_sealing_and_compaction() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
        return;
    }
    let rounds = env_count("JESSY_KILL_ROUNDS", 500);
    // Rounds come in runs of up to 50 on one directory (so layers pile up and compaction
    // has work), each run seeded.
    let runs = rounds.div_ceil(50);
    let mut tally = Tally::default();
    let started = Instant::now();
    let all = seeds(runs);
    let per_run = if all.len() == 1 { rounds.min(50) } else { 50 };
    let mut left = rounds;
    run_seeds("fault_kill", "kill_nine_during_writes_sealing_and_compaction", &all, |seed| {
        let n = per_run.min(left).max(1);
        left = left.saturating_sub(n);
        let dir = scratch();
        let dir = dir.path().join("store");
        {
            let store = Store::open_with(&dir, config(seed)).map_err(|e| e.to_string())?;
            for d in DIMS {
                store.dimension(d).map_err(|e| e.to_string())?;
            }
        }
        let mut model: State = DIMS.iter().map(|d| (d.to_string(), BTreeMap::new())).collect();
        let mut rng = Rng::new(seed);
        let mut next = 0;
        for r in 0..n {
            next = round(&dir, seed, &mut rng, next, &mut model, &mut tally).map_err(|e| format!("round {r}: {e}"))?;
        }
        let layers = std::fs::read_dir(dir.join("consciousness/D01/layers")).map(|d| d.count()).unwrap_or(0);
        if std::env::var_os("JESSY_FAULT_VERBOSE").is_some() {
            eprintln!("seed {seed}: {n} rounds, {next} operations, {layers} layer files in D01 at the end");
        }
        Ok(())
    });
    eprintln!(
        "kill -9: {} rounds in {:.1?}: {} acknowledged operations checked; the in-flight one had landed {} times; \
         {} kills during a compaction; {} left a seal or compaction half done on disk; {} before the writer had \
         opened the store; {} writers finished unkilled",
        tally.rounds,
        started.elapsed(),
        tally.acked,
        tally.in_flight_landed,
        tally.during_compaction,
        tally.interrupted_protocol,
        tally.before_open_done,
        tally.finished
    );
    assert!(tally.rounds >= rounds.min(50), "{tally:?}");
}
