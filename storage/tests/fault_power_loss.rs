//! Simulated power loss through the I/O trait (issue 4, part 1).
//!
//! Each seed runs a random workload (puts, deletes, batches, compaction, dimension
//! create/drop, reopen; small regions so that regions grow and seal; every other single
//! write through the committer's inbox, `enqueue_*`) against a
//! `FaultyIo` in `PowerLoss::Random` mode, loses power at a seeded operation (every unsynced
//! write is then kept, dropped, torn or garbled; unsynced directory changes may be undone),
//! sometimes loses power again during the recovery, and then reopens and compares the store
//! with a model of what was acknowledged:
//!
//! - `Durability::Immediate`: the store holds exactly the acknowledged state, or that state
//!   plus the one write that was in flight (all of it: batches are atomic). So every
//!   acknowledged write is there with its exact value, no deleted key is back, and no value
//!   appears that was never written.
//! - `Durability::None`: the store holds the state after some prefix of the writes, at least
//!   up to the last `sync` (or clean reopen): no value never written, no resurrection, no
//!   hole in the middle.
//!
//! Every reopen must succeed. After recovery the store must take new writes (with versions
//! above every recovered one), survive a clean reopen, and pass `verify`.
//!
//! Counts: `JESSY_FAULT_SEEDS` (default 1500 Immediate + 500 None seeds in `make test`;
//! `make soak` raises it). A failing seed prints the command that reruns it alone:
//! `JESSY_FAULT_SEED=<seed> cargo test -p jessy-storage --test fault_power_loss -- --exact <test> --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::*;
use jessy_storage::io::{CrashReport, FaultyIo, Io, PowerLoss};

fn verbose() -> bool {
    std::env::var_os("JESSY_FAULT_VERBOSE").is_some()
}
use jessy_storage::{Config, Durability, Store, WriteBatch};

type Dim = BTreeMap<Vec<u8>, Vec<u8>>;
type State = BTreeMap<String, Dim>;

const KEYS: u64 = 24;
const AUX: [&str; 2] = ["aux1", "aux2"];

fn key(n: u64) -> Vec<u8> {
    // Key lengths vary, so entries do not all line up the same way in the log.
    format!("k{n:02}{}", "-".repeat((n % 5 * 9) as usize)).into_bytes()
}

#[derive(Debug, Clone)]
enum Op {
    Put { dim: String, key: u64, len: usize },
    Delete { dim: String, key: u64 },
    Batch { dim: String, ops: Vec<(u64, Option<usize>)> },
    Compact { dim: String },
    Sync,
    Create(String),
    Drop(String),
    Reopen,
}

/// The model: the state after `op` (whose values are tagged with `tag`).
fn apply(state: &State, op: &Op, tag: u64) -> State {
    let mut s = state.clone();
    match op {
        Op::Put { dim, key: k, len } => {
            s.get_mut(dim).unwrap().insert(key(*k), tagged(&key(*k), tag, *len));
        }
        Op::Delete { dim, key: k } => {
            s.get_mut(dim).unwrap().remove(&key(*k));
        }
        Op::Batch { dim, ops } => {
            let d = s.get_mut(dim).unwrap();
            for (k, v) in ops {
                match v {
                    Some(len) => d.insert(key(*k), tagged(&key(*k), tag, *len)),
                    None => d.remove(&key(*k)),
                };
            }
        }
        Op::Create(name) => {
            s.insert(name.clone(), Dim::new());
        }
        Op::Drop(name) => {
            s.remove(name);
        }
        Op::Compact { .. } | Op::Sync | Op::Reopen => {}
    }
    s
}

fn value_len(rng: &mut Rng, cap: u64) -> usize {
    (match rng.below(10) {
        0..=4 => rng.below(120),
        5..=7 => rng.range(120, 700.min(cap)),
        _ => rng.range(cap / 2, cap),
    }) as usize
}

fn gen_op(rng: &mut Rng, state: &State, immediate: bool, max_size: u64) -> Op {
    let dims: Vec<String> = state.keys().cloned().collect();
    let dim = rng.pick(&dims).clone();
    let cap = max_size / 3;
    let absent: Vec<&str> = AUX.iter().copied().filter(|a| !state.contains_key(*a)).collect();
    let present: Vec<&str> = AUX.iter().copied().filter(|a| state.contains_key(*a)).collect();
    match rng.below(100) {
        0..=44 => Op::Put { dim, key: rng.below(KEYS), len: value_len(rng, cap) },
        45..=56 => Op::Delete { dim, key: rng.below(KEYS) },
        57..=71 => {
            let n = rng.range(2, 6);
            let ops = (0..n).map(|_| (rng.below(KEYS), rng.chance(3, 4).then(|| value_len(rng, cap / 6)))).collect();
            Op::Batch { dim, ops }
        }
        72..=79 => Op::Compact { dim },
        80..=85 if !immediate => Op::Sync,
        86..=89 => Op::Reopen,
        90..=94 if immediate && !absent.is_empty() => Op::Create(rng.pick(&absent).to_string()),
        95..=99 if immediate && !present.is_empty() => Op::Drop(rng.pick(&present).to_string()),
        _ => Op::Put { dim, key: rng.below(KEYS), len: value_len(rng, cap) },
    }
}

fn exec(store: &mut Option<Store>, dir: &Path, cfg: &Config, op: &Op, tag: u64) -> jessy_storage::Result<()> {
    if let Op::Reopen = op {
        drop(store.take());
        *store = Some(Store::open_with(dir, cfg.clone())?);
        return Ok(());
    }
    let s = store.as_ref().expect("store is open");
    // Every other single write goes through the committer's inbox, as the HTTP server's do.
    let inbox = tag % 2 == 1;
    match op {
        Op::Put { dim, key: k, len } if inbox => {
            let (d, value) = (s.get_dimension(dim)?, tagged(&key(*k), tag, *len));
            answered(|reply| d.enqueue_put(key(*k), value, None, reply)).map(drop)
        }
        Op::Delete { dim, key: k } if inbox => {
            let d = s.get_dimension(dim)?;
            answered(|reply| d.enqueue_delete(key(*k), None, reply)).map(drop)
        }
        Op::Put { dim, key: k, len } => s.get_dimension(dim)?.put(key(*k), tagged(&key(*k), tag, *len)).map(drop),
        Op::Delete { dim, key: k } => s.get_dimension(dim)?.delete(key(*k)).map(drop),
        Op::Batch { dim, ops } => {
            let mut b = WriteBatch::new();
            for (k, v) in ops {
                match v {
                    Some(len) => b.push_put(key(*k), tagged(&key(*k), tag, *len)),
                    None => b.push_delete(key(*k)),
                }
            }
            s.get_dimension(dim)?.write(b).map(drop)
        }
        Op::Compact { dim } => s.get_dimension(dim)?.compact().map(drop),
        Op::Sync => s.sync(),
        Op::Create(name) => s.dimension(name).map(drop),
        Op::Drop(name) => s.drop_dimension(name),
        Op::Reopen => unreachable!(),
    }
}

/// Everything the store holds, checked for internal consistency: scans and point reads
/// agree, every value is one that was written for its key. Also the largest version per
/// dimension.
fn read_state(store: &Store) -> Result<(State, BTreeMap<String, u64>), String> {
    let mut state = State::new();
    let mut versions = BTreeMap::new();
    for d in store.dimensions() {
        let mut m = Dim::new();
        let mut top = 0;
        for item in d.iter() {
            let (k, v) = item.map_err(|e| format!("scan of {}: {e}", d.name()))?;
            check_tagged(&k, &v)?;
            top = top.max(v.version().0);
            m.insert(k, v.to_vec());
        }
        for n in 0..KEYS {
            let k = key(n);
            let got = d.get(&k).map_err(|e| format!("get {} in {}: {e}", show(&k), d.name()))?;
            if got.as_deref() != m.get(&k).map(|v| v.as_slice()) {
                return Err(format!("get and scan disagree on {} in {}", show(&k), d.name()));
            }
        }
        if d.len() != m.len() {
            return Err(format!("{} says it has {} keys, a scan finds {}", d.name(), d.len(), m.len()));
        }
        versions.insert(d.name(), top);
        state.insert(d.name(), m);
    }
    Ok((state, versions))
}

/// The first differences between two states, for a failure message.
fn diff(want: &State, got: &State) -> String {
    let mut out = Vec::new();
    let names: std::collections::BTreeSet<&String> = want.keys().chain(got.keys()).collect();
    for name in names {
        match (want.get(name), got.get(name)) {
            (Some(_), None) => out.push(format!("dimension {name} is missing")),
            (None, Some(_)) => out.push(format!("dimension {name} should not exist")),
            (Some(w), Some(g)) => {
                let keys: std::collections::BTreeSet<&Vec<u8>> = w.keys().chain(g.keys()).collect();
                for k in keys {
                    let (a, b) = (w.get(k), g.get(k));
                    if a != b {
                        out.push(format!(
                            "{name}/{}: want {}, got {}",
                            show(k),
                            a.map_or("absent".into(), |v| show(v)),
                            b.map_or("absent".into(), |v| show(v))
                        ));
                    }
                }
            }
            (None, None) => {}
        }
    }
    out.truncate(8);
    out.join("; ")
}

/// Where the power went, by what the operation in flight touched.
fn classify(r: &CrashReport) -> &'static str {
    let d = r.during.as_str();
    match () {
        _ if d == "crash()" => "after the workload",
        _ if d.contains("index.json") => "manifest swap",
        _ if d.contains(".keys") => "key index",
        _ if d.starts_with("link") => "seal: link into layers/",
        _ if d.contains("compact-") => "compaction: building layers",
        _ if d.contains("new-D") || d.contains("mkdir") => "dimension create / mkdir",
        _ if d.contains("drop-") => "dimension drop",
        _ if d.contains("/temp/region-") || d.contains("/layers/L") && d.starts_with("rename") => {
            "new region / layer rename"
        }
        _ if d.starts_with("allocate") => "region growth",
        _ if d.starts_with("write") && d.contains("region.mmap") => "region write",
        _ if d.starts_with("fdatasync") && d.contains("region.mmap") => "region sync",
        _ if d.starts_with("fsync directory") => "directory sync",
        _ if d.starts_with("unlink") || d.starts_with("remove tree") => "cleanup (unlink)",
        _ => "other",
    }
}

#[derive(Default)]
struct Tally {
    seeds: u64,
    by_place: BTreeMap<&'static str, u64>,
    recovery_crashes: u64,
    in_flight_landed: u64,
    older_prefix: u64,
    torn: u64,
    garbage: u64,
    kept: u64,
    dropped: u64,
    dir_undone: u64,
    seals: u64,
}

impl Tally {
    fn add(&mut self, r: &CrashReport) {
        self.torn += r.writes_torn;
        self.garbage += r.writes_garbage;
        self.kept += r.writes_kept;
        self.dropped += r.writes_dropped;
        self.dir_undone += r.dir_ops_undone;
    }
    fn print(&self, name: &str) {
        eprintln!(
            "{name}: {} seeds; {} crashes during recovery too; in-flight write landed {} times; {} recoveries to an older prefix (None)",
            self.seeds, self.recovery_crashes, self.in_flight_landed, self.older_prefix
        );
        eprintln!(
            "{name}: unsynced writes at the crashes: {} kept, {} dropped, {} torn, {} garbled; {} directory changes undone; {} layers sealed",
            self.kept, self.dropped, self.torn, self.garbage, self.dir_undone, self.seals
        );
        eprintln!("{name}: where the power went: {:?}", self.by_place);
    }
}

fn run_seed(seed: u64, immediate: bool, tally: &mut Tally) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let dir = scratch();
    let dir = dir.path().join("store");
    let io = FaultyIo::seeded(seed);
    let max_size = *rng.pick(&[4096u64, 4096, 8192, 16384]);
    let durability = if immediate { Durability::Immediate } else { Durability::None };
    let cfg = Config::default()
        .initial_size(4096)
        .max_size(max_size)
        .durability(durability)
        .background_compaction(false)
        .compaction_threshold(*rng.pick(&[0.1, 0.25, 0.5]))
        .io(Arc::new(io.clone()) as Arc<dyn Io>);

    let n_ops = rng.range(10, 70);
    // Where the power goes: during the first open (rarely), before op `crash_op`, or after
    // everything (crash_op == n_ops). The offset lands it inside that op or a later one.
    let crash_op = if rng.chance(1, 20) { None } else { Some(rng.below(n_ops + 1)) };
    let offset = if rng.chance(1, 2) { rng.range(1, 3) } else { rng.range(1, 40) };

    let mut state: State = [("default".to_string(), Dim::new())].into();
    let mut history = vec![state.clone()];
    let mut floor = 0; // history[floor..] are the states a recovery may land on
    let mut in_flight: Option<State> = None;

    if crash_op.is_none() {
        io.crash_after(offset);
    }
    let mut store = match Store::open_with(&dir, cfg.clone()) {
        Ok(s) => Some(s),
        Err(e) if io.is_dead() => {
            let _ = e;
            None
        }
        Err(e) => return Err(format!("first open failed: {e}")),
    };
    if store.is_some() {
        for i in 0..n_ops {
            if crash_op == Some(i) {
                io.crash_after(offset);
            }
            if io.is_dead() {
                break;
            }
            let op = gen_op(&mut rng, &state, immediate, max_size);
            let tag = seed * 1000 + i;
            let next = apply(&state, &op, tag);
            let result = exec(&mut store, &dir, &cfg, &op, tag);
            if verbose() {
                eprintln!(
                    "op {i} (tag {tag}) {op:?}: {:?} (ops so far {})",
                    result.as_ref().map_err(|e| e.to_string()),
                    io.op_count()
                );
            }
            match result {
                Ok(()) => {
                    state = next;
                    history.push(state.clone());
                    if immediate || matches!(op, Op::Sync | Op::Reopen) {
                        floor = history.len() - 1;
                    }
                }
                Err(_) if io.is_dead() => {
                    in_flight = Some(next);
                    break;
                }
                Err(e) => return Err(format!("op {i} {op:?} failed with no fault injected: {e}")),
            }
            // While it runs, the store shows exactly the model.
            if let (Some(s), true) = (&store, rng.chance(1, 3)) {
                let name = rng.pick(&state.keys().cloned().collect::<Vec<_>>()).clone();
                let k = key(rng.below(KEYS));
                let got = s.get_dimension(&name).map_err(|e| e.to_string())?.get(&k).map_err(|e| e.to_string())?;
                if got.as_deref() != state[&name].get(&k).map(|v| v.as_slice()) {
                    return Err(format!("after op {i} {op:?}, get {name}/{} disagrees with the model", show(&k)));
                }
            }
        }
    }
    if !io.is_dead() {
        io.crash();
    }
    if let Some(s) = &store {
        tally.seals += s.dimensions().iter().map(|d| d.stats().layers as u64 - 1).sum::<u64>();
    }
    drop(store);
    let report = io.last_crash().expect("a crash happened");
    if verbose() {
        eprintln!("crash: {report:?}");
    }
    tally.add(&report);
    *tally.by_place.entry(classify(&report)).or_default() += 1;

    // Sometimes the power goes again while the store recovers.
    if rng.chance(1, 4) {
        tally.recovery_crashes += 1;
        io.revive();
        io.crash_after(rng.range(1, 15));
        let opened = Store::open_with(&dir, cfg.clone());
        if !io.is_dead() {
            io.crash();
        }
        drop(opened);
        if let Some(r) = io.last_crash() {
            tally.add(&r);
        }
    }

    io.revive();
    let store = Store::open_with(&dir, cfg.clone()).map_err(|e| format!("reopen after the crash failed: {e}"))?;
    let (got, versions) = read_state(&store)?;
    let acked = history.last().unwrap();
    if got != *acked {
        if in_flight.as_ref() == Some(&got) {
            tally.in_flight_landed += 1;
        } else if history[floor..].contains(&got) {
            tally.older_prefix += 1;
        } else {
            if verbose() {
                for (i, h) in history.iter().enumerate() {
                    eprintln!("history[{i}] vs recovered: {}", diff(h, &got));
                }
            }
            return Err(format!(
                "after the crash ({}) the store is not a state it may be in ({}): {}",
                report.during,
                if immediate {
                    "the acknowledged one, or it plus the write in flight"
                } else {
                    "a prefix of the writes"
                },
                diff(acked, &got)
            ));
        }
    }

    // The recovered store takes new writes, with versions above every recovered one.
    let mut state = got;
    for (name, top) in &versions {
        let d = store.get_dimension(name).map_err(|e| e.to_string())?;
        let k = key(rng.below(KEYS));
        let v = d.put(&k, tagged(&k, 1, 10)).map_err(|e| format!("first write after recovery: {e}"))?;
        if v.0 <= *top {
            return Err(format!("version {v} handed out again in {name} (recovered up to {top})"));
        }
        state.get_mut(name).unwrap().insert(k.clone(), tagged(&k, 1, 10));
    }
    let mut store = Some(store);
    for j in 0..rng.range(2, 8) {
        let op = gen_op(&mut rng, &state, immediate, max_size);
        if matches!(op, Op::Reopen) {
            continue;
        }
        let tag = 2 + j;
        exec(&mut store, &dir, &cfg, &op, tag).map_err(|e| format!("write after recovery {op:?}: {e}"))?;
        state = apply(&state, &op, tag);
    }
    let report = store.as_ref().unwrap().verify();
    if !report.is_ok() {
        return Err(format!("verify after recovery: {:?}", report.problems));
    }
    drop(store);
    let store = Store::open_with(&dir, cfg).map_err(|e| format!("clean reopen: {e}"))?;
    let (again, _) = read_state(&store)?;
    if again != state {
        return Err(format!("after recovery, new writes and a clean reopen: {}", diff(&state, &again)));
    }
    tally.seeds += 1;
    Ok(())
}

fn run_mode(test: &str, immediate: bool, default_seeds: u64) {
    let count = env_count("JESSY_FAULT_SEEDS", 2000) * default_seeds / 2000;
    let mut tally = Tally::default();
    run_seeds("fault_power_loss", test, &seeds(count.max(1)), |seed| run_seed(seed, immediate, &mut tally));
    tally.print(test);
}

#[test]
fn immediate_writes_survive_power_loss() {
    run_mode("immediate_writes_survive_power_loss", true, 1500);
}

#[test]
fn unsynced_writes_leave_a_prefix() {
    run_mode("unsynced_writes_leave_a_prefix", false, 500);
}

/// Regression: `Store::open` made `consciousness/`, `proto/` and `temp/` without syncing the
/// data directory, so a power loss could take the whole store (and every acknowledged
/// write) away.
#[test]
fn a_fresh_store_survives_power_loss() {
    let dir = scratch();
    let base = dir.path().join("new-store");
    let io = FaultyIo::new(); // PowerLoss::LoseAll: nothing unsynced survives
    let cfg = common::small(Durability::Immediate).io(Arc::new(io.clone()) as Arc<dyn Io>);
    let store = Store::open_with(&base, cfg.clone()).unwrap();
    store.dimension("default").unwrap().put("k", "acknowledged").unwrap();
    store.dimension("other").unwrap().put("k", "also").unwrap();
    io.crash();
    drop(store);
    io.revive();
    let store = Store::open_with(&base, cfg).unwrap();
    assert_eq!(&store.dimension("default").unwrap().get("k").unwrap().unwrap()[..], b"acknowledged");
    assert_eq!(&store.get_dimension("other").unwrap().get("k").unwrap().unwrap()[..], b"also");
}

/// Regression: under `Durability::None` compaction dropped a layer's entry for a key whose
/// newer value was still unsynced in the active region; a power loss then took both, and
/// the key vanished although its old value had been synced.
#[test]
fn compaction_keeps_versions_whose_successors_are_not_durable() {
    for deleted in [false, true] {
        let dir = scratch();
        let io = FaultyIo::new(); // LoseAll
        let cfg = Config::default()
            .initial_size(4096)
            .max_size(4096)
            .durability(Durability::None)
            .background_compaction(false)
            .compaction_threshold(0.1)
            .io(Arc::new(io.clone()) as Arc<dyn Io>);
        let store = Store::open_with(dir.path(), cfg.clone()).unwrap();
        let d = store.dimension("default").unwrap();
        d.put("k", "synced").unwrap();
        // Overwritten filler: the first layers end up mostly dead, worth compacting.
        for i in 0..60 {
            d.put(format!("f{}", i % 3), value(i, 200)).unwrap();
        }
        store.sync().unwrap();
        assert!(d.stats().layers > 2, "{:?}", d.stats());
        // Newer state of k, not synced; compaction now finds k's old entry dead.
        if deleted {
            d.delete("k").unwrap();
        } else {
            d.put("k", "unsynced").unwrap();
        }
        assert!(d.compact().unwrap().layers_compacted > 0);
        io.crash();
        drop((d, store));
        io.revive();
        let store = Store::open_with(dir.path(), cfg).unwrap();
        let got = store.dimension("default").unwrap().get("k").unwrap();
        // Either the synced value or the newer state, never nothing-at-all from nowhere.
        match got {
            Some(v) => assert!(&v[..] == b"synced" || &v[..] == b"unsynced", "{v:?}"),
            None => assert!(deleted, "k vanished: its synced value was compacted away"),
        }
    }
}

// ---- every step of the multi-step protocols, with every kind of power loss ----------------

/// For each I/O step of `action` (run on a store prepared by `setup`) and each power-loss
/// mode: lose power at that step, reopen, and find exactly the state before or after it.
fn every_step(
    setup: impl Fn(&Store),
    action: impl Fn(&Store) -> jessy_storage::Result<()>,
    expect_change: impl Fn(&State) -> State,
) {
    let cfg = |io: &Arc<FaultyIo>| {
        Config::default()
            .initial_size(4096)
            .max_size(8192)
            .durability(Durability::Immediate)
            .background_compaction(false)
            .compaction_threshold(0.2)
            .io(Arc::new(io.clone()) as Arc<dyn Io>)
    };
    let (steps, before) = {
        let dir = scratch();
        let io = FaultyIo::new();
        let store = set_up(dir.path(), &cfg(&io), &setup);
        let before = read_state(&store).unwrap().0;
        let n = io.op_count();
        action(&store).unwrap();
        // Closing counts too: a seal writes its layer's key index on a thread of its own
        // after it returns, and closing waits for that thread.
        drop(store);
        let steps = io.op_count() - n;
        let store = Store::open_with(dir.path(), cfg(&io)).unwrap();
        let after = read_state(&store).unwrap().0;
        assert_eq!(after, expect_change(&before), "the action does what the test expects");
        (steps, before)
    };
    assert!(steps >= 3, "only {steps} steps");
    let after = expect_change(&before);
    let modes =
        [PowerLoss::LoseAll, PowerLoss::KeepAll, PowerLoss::Random(1), PowerLoss::Random(2), PowerLoss::Random(3)];
    for step in 1..=steps {
        for mode in modes {
            let dir = scratch();
            let io = FaultyIo::new();
            let store = set_up(dir.path(), &cfg(&io), &setup);
            io.set_power_loss(mode);
            io.crash_after(step);
            let _ = action(&store);
            drop(store);
            assert!(io.is_dead(), "step {step} of {steps} was not reached");
            let during = io.last_crash().unwrap().during;
            io.revive();
            let store = Store::open_with(dir.path(), cfg(&io))
                .unwrap_or_else(|e| panic!("reopen after power loss at step {step} ({during}), {mode:?}: {e}"));
            let got = read_state(&store).unwrap_or_else(|e| panic!("step {step} ({during}), {mode:?}: {e}")).0;
            assert!(
                got == before || got == after,
                "power loss at step {step} of {steps} ({during}), {mode:?}: {}",
                diff(&after, &got)
            );
            assert!(store.verify().is_ok(), "step {step} ({during}), {mode:?}: {:?}", store.verify().problems);
        }
    }
}

/// Opens a store and runs `setup` on it, then closes and reopens it: a seal in `setup` may
/// still be writing its key index on a thread of its own, and those steps must not be
/// counted as the action's (closing waits for that thread).
fn set_up(dir: &Path, cfg: &Config, setup: impl Fn(&Store)) -> Store {
    let store = Store::open_with(dir, cfg.clone()).unwrap();
    setup(&store);
    drop(store);
    Store::open_with(dir, cfg.clone()).unwrap()
}

fn fill(store: &Store, n: u64) {
    let d = store.dimension("default").unwrap();
    for i in 0..n {
        let k = key(i % KEYS);
        d.put(&k, tagged(&k, i, 150 + (i as usize * 37) % 400)).unwrap();
    }
    d.delete(key(3)).unwrap();
}

#[test]
fn power_loss_at_every_step_of_a_seal() {
    let k = key(7);
    let v = tagged(&k, 999, 3000);
    every_step(
        |s| {
            fill(s, 9);
            let d = s.dimension("default").unwrap();
            // Fill the region close to MMAP_MAX_SIZE, so the next write seals it.
            while d.stats().disk_bytes < 8192 || data_end(&s.path().join("consciousness/D01/region.mmap")) < 5000 {
                let k = key(1);
                d.put(&k, tagged(&k, 5, 700)).unwrap();
            }
        },
        |s| s.dimension("default")?.put(&k, &v).map(drop),
        |before| {
            let mut after = before.clone();
            after.get_mut("default").unwrap().insert(k.clone(), v.clone());
            after
        },
    );
}

#[test]
fn power_loss_at_every_step_of_a_compaction() {
    every_step(|s| fill(s, 60), |s| s.dimension("default")?.compact().map(drop), |before| before.clone());
}

#[test]
fn power_loss_at_every_step_of_creating_and_dropping_a_dimension() {
    every_step(
        |s| fill(s, 5),
        |s| s.dimension("aux1").map(drop),
        |before| {
            let mut after = before.clone();
            after.insert("aux1".into(), Dim::new());
            after
        },
    );
    every_step(
        |s| {
            fill(s, 5);
            s.dimension("aux1").unwrap().put("x", tagged(b"x", 1, 5)).unwrap();
        },
        |s| s.drop_dimension("aux1"),
        |before| {
            let mut after = before.clone();
            after.remove("aux1");
            after
        },
    );
}

// ---- the simulator itself: it must lose what a disk may lose, and keep what it must keep ----

fn faulty_in(dir: &Path, mode: PowerLoss) -> Arc<FaultyIo> {
    let io = FaultyIo::new();
    io.set_root(dir);
    io.set_power_loss(mode);
    io
}

#[test]
fn the_simulator_loses_exactly_what_was_not_synced() {
    let dir = scratch();
    let root = dir.path();
    let io = faulty_in(root, PowerLoss::LoseAll);
    io.create_dir_all(&root.join("a")).unwrap();
    let f = io.open(&root.join("a/f"), true).unwrap();
    f.write_all_at(b"durable", 0).unwrap();
    f.sync_data().unwrap();
    io.sync_dir(&root.join("a")).unwrap();
    // `a` itself was never synced into the root: it goes, with everything in it.
    io.crash();
    io.revive();
    assert!(!root.join("a").exists(), "an unsynced mkdir survived LoseAll");

    io.create_dir_all(&root.join("a")).unwrap();
    io.sync_dir(root).unwrap();
    let f = io.open(&root.join("a/f"), true).unwrap();
    f.write_all_at(b"durable", 0).unwrap();
    f.sync_data().unwrap();
    io.sync_dir(&root.join("a")).unwrap();
    f.write_all_at(b"LOST", 0).unwrap();
    f.allocate(4096).unwrap();
    io.hard_link(&root.join("a/f"), &root.join("a/g")).unwrap();
    io.rename(&root.join("a/f"), &root.join("moved")).unwrap();
    drop(f);
    io.crash();
    io.revive();
    assert_eq!(std::fs::read(root.join("a/f")).unwrap(), b"durable", "synced bytes kept, unsynced lost");
    assert!(!root.join("a/g").exists() && !root.join("moved").exists(), "unsynced link and rename undone");

    // A rename made durable by syncing its destination survives whole.
    let f = io.open(&root.join("tmp"), true).unwrap();
    f.write_all_at(b"new", 0).unwrap();
    f.sync_data().unwrap();
    io.rename(&root.join("tmp"), &root.join("a/f")).unwrap();
    io.sync_dir(&root.join("a")).unwrap();
    io.crash();
    io.revive();
    assert_eq!(std::fs::read(root.join("a/f")).unwrap(), b"new");
    assert!(!root.join("tmp").exists(), "a rename is atomic");
}

#[test]
fn the_simulator_keeps_everything_on_keep_all() {
    let dir = scratch();
    let root = dir.path();
    let io = faulty_in(root, PowerLoss::KeepAll);
    io.create_dir_all(&root.join("a/b")).unwrap();
    let f = io.open(&root.join("a/b/f"), true).unwrap();
    f.write_all_at(b"unsynced", 0).unwrap();
    io.hard_link(&root.join("a/b/f"), &root.join("a/g")).unwrap();
    io.crash();
    io.revive();
    assert_eq!(std::fs::read(root.join("a/b/f")).unwrap(), b"unsynced");
    assert_eq!(std::fs::read(root.join("a/g")).unwrap(), b"unsynced");
}

#[test]
fn the_simulator_tears_and_garbles_on_random() {
    let mut total = CrashReport::default();
    let mut whole = 0;
    let mut outcomes = std::collections::BTreeSet::new();
    for seed in 0..200 {
        let dir = scratch();
        let root = dir.path();
        let io = faulty_in(root, PowerLoss::Random(seed));
        io.create_dir_all(&root.join("d")).unwrap();
        io.sync_dir(root).unwrap();
        let f = io.open(&root.join("d/f"), true).unwrap();
        io.sync_dir(&root.join("d")).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8 + 1).collect();
        f.write_all_at(&data, 0).unwrap();
        for i in 0..4 {
            io.open(&root.join(format!("d/n{i}")), true).unwrap();
        }
        io.crash();
        io.revive();
        let r = io.last_crash().unwrap();
        total.writes_torn += r.writes_torn;
        total.writes_garbage += r.writes_garbage;
        total.writes_kept += r.writes_kept;
        total.writes_dropped += r.writes_dropped;
        total.dir_ops_undone += r.dir_ops_undone;
        total.dir_ops_kept += r.dir_ops_kept;
        let got = std::fs::read(root.join("d/f")).unwrap();
        whole += (got == data) as u32;
        // Names made in order: what survives is a prefix of them.
        let n = (0..4).take_while(|i| root.join(format!("d/n{i}")).exists()).count();
        assert!((n..4).all(|i| !root.join(format!("d/n{i}")).exists()), "seed {seed}: not a prefix");
        outcomes.insert(n);
    }
    assert!(total.writes_torn > 20 && total.writes_garbage > 5, "{total:?}");
    assert!(total.writes_kept > 20 && total.writes_dropped > 20, "{total:?}");
    assert!(whole > 20 && outcomes.len() == 5, "{whole} whole; prefixes seen {outcomes:?}");
}

#[test]
fn the_write_in_flight_at_the_crash_may_land() {
    let mut landed = 0;
    for seed in 0..50 {
        let dir = scratch();
        let root = dir.path();
        let io = faulty_in(root, PowerLoss::Random(seed));
        let f = io.open(&root.join("f"), true).unwrap();
        io.sync_dir(root).unwrap();
        io.crash_after(1);
        assert!(f.write_all_at(b"in flight", 0).is_err(), "the crashing write reports an error");
        assert!(io.is_dead() && f.sync_data().is_err() && io.open(&root.join("g"), true).is_err());
        io.revive();
        landed += (std::fs::read(root.join("f")).unwrap() == b"in flight") as u32;
    }
    assert!(landed > 5 && landed < 45, "{landed} of 50");
}
