//! Errors from the disk (issue 4, part 3).
//!
//! - ENOSPC and EIO injected (through `FaultyIo::fail_nth`) at every n-th write, allocate,
//!   sync, rename and link/unlink/create of a workload that grows, seals and compacts, once
//!   or for good ("sticky"). Expectations: no panic; the failed call returns an error naming
//!   the cause (`disk_full` for ENOSPC) and is not acknowledged: it is not visible, and after
//!   a reopen it is not there (unless it was its sync that failed, which may or may not have
//!   reached the disk); acknowledged writes stay; reads keep working throughout; after a
//!   failed `fdatasync` of the active region the store refuses writes with
//!   `Error::ReadOnly`, saying why and to reopen, until it is reopened.
//! - The same during recovery: `Store::open` on a store that needs repairs fails cleanly,
//!   and the next open succeeds with nothing lost.
//! - A real full disk without root is in `fault_disk_full.rs` (its child processes would
//!   briefly inherit the store locks of this file's parallel tests).
//!
//! `JESSY_FAULT_NTH` caps how many n are tried per kind of fault (default 40; `make soak`
//! tries them all).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::workload::{Op, State, DIMS};
use common::*;
use jessy_storage::io::{FaultOp, FaultyIo, Io};
use jessy_storage::{Config, Durability, Error, Store, WriteBatch};

fn key(n: u64) -> Vec<u8> {
    format!("key{n:02}").into_bytes()
}

fn workload() -> Vec<Op> {
    let mut r = Rng::new(42);
    (0..70)
        .map(|i| {
            let d = (i % 7 == 3) as usize;
            match r.below(100) {
                _ if i % 23 == 22 => Op::Compact(0),
                0..=59 => Op::Put(d, r.below(20), if r.chance(1, 6) { 1500 } else { r.below(300) as usize }),
                60..=74 => Op::Delete(d, r.below(20)),
                _ => {
                    Op::Batch(d, (0..3).map(|_| (r.below(20), r.chance(3, 4).then(|| r.below(200) as usize))).collect())
                }
            }
        })
        .collect()
}

fn exec(store: &Store, op: &Op, tag: u64) -> jessy_storage::Result<()> {
    op.run(&store.get_dimension(DIMS[op.dim()])?, key, tag)
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
        for n in 0..20 {
            let got = d.get(key(n)).map_err(|e| format!("get: {e}"))?;
            if got.as_deref() != m.get(&key(n)).map(|v| v.as_slice()) {
                return Err(format!("get and scan disagree on {}", show(&key(n))));
            }
        }
        st.insert(name.to_string(), m);
    }
    Ok(st)
}

fn config(io: &Arc<FaultyIo>) -> Config {
    Config::default()
        .initial_size(4096)
        .max_size(8192)
        .durability(Durability::Immediate)
        .background_compaction(false)
        .compaction_threshold(0.2)
        .io(Arc::new(io.clone()) as Arc<dyn Io>)
}

fn fresh_store(dir: &Path, io: &Arc<FaultyIo>) -> Store {
    let store = Store::open_with(dir, config(io)).unwrap();
    for d in DIMS {
        store.dimension(d).unwrap();
    }
    store
}

/// True when the error is the one injected (directly, or as the reason the store went
/// read-only).
fn caused_by(e: &Error, errno: i32) -> bool {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    match e {
        Error::Io { source, .. } => source.raw_os_error() == Some(errno),
        Error::ReadOnly(reason) => reason.contains(&text),
        other => other.to_string().contains(&text),
    }
}

#[derive(Default, Debug)]
struct Tally {
    runs: u64,
    failed_calls: u64,
    went_read_only: u64,
    kept_going: u64,
    failed_sync_landed: u64,
}

/// One run: the workload with the `nth` call of `op` failing with `errno`.
fn run(op: FaultOp, nth: u64, errno: i32, sticky: bool, t: &mut Tally) -> Result<(), String> {
    let dir = scratch();
    let io = FaultyIo::new();
    let store = fresh_store(dir.path(), &io);
    let mut model: State = DIMS.iter().map(|d| (d.to_string(), BTreeMap::new())).collect();
    io.fail_nth(op, nth, errno, sticky);
    let mut may_have_landed: Option<State> = None;
    let mut first_failure: Option<String> = None;
    for (i, o) in workload().iter().enumerate() {
        let tag = i as u64;
        match exec(&store, o, tag) {
            Ok(()) => o.apply(&mut model, key, tag),
            Err(e) => {
                if !caused_by(&e, errno) {
                    return Err(format!("op {i} {o:?} failed with an error that does not name the cause: {e}"));
                }
                if errno == libc::ENOSPC
                    && matches!(e, Error::Io { .. })
                    && !(e.is_disk_full() && e.code() == "disk_full")
                {
                    return Err(format!("ENOSPC not reported as disk_full: {e} ({})", e.code()));
                }
                t.failed_calls += 1;
                let fault = io.last_fault().unwrap_or_default();
                if first_failure.is_none() {
                    first_failure = Some(format!("op {i} {o:?} at `{fault}`: {e}"));
                }
                // Judged from the op's own error: `last_fault` may name a later failure of a
                // background thread's I/O (a seal's key index, a growth of the region, which
                // syncs the region through a handle of its own and leaves the error to the
                // writer's next sync).
                let text = e.to_string();
                let region_sync = text.contains("fdatasync") && text.contains("region.mmap");
                if region_sync && may_have_landed.is_none() {
                    // Its data may have reached the disk before the sync failed. (The store
                    // takes no write after that, so there is at most one such op.)
                    let mut with = model.clone();
                    o.apply(&mut with, key, tag);
                    may_have_landed = Some(with);
                }
                // Not acknowledged, so not visible; reads keep working.
                let visible = read_state(&store).map_err(|e| format!("reads after a failure: {e}"))?;
                if visible != model {
                    return Err(format!("after the failure of op {i} ({e}) the store shows unacknowledged data"));
                }
                let read_only = store.stats().read_only;
                if region_sync && read_only.is_none() {
                    return Err(format!("a failed fdatasync of the region ({text}) left the store writable"));
                }
                if let Some(reason) = &read_only {
                    // Refuses writes, says why and what to do; reads still work.
                    let again = store.get_dimension("default").unwrap().put("probe", b"x").unwrap_err();
                    if again.code() != "read_only" || !again.to_string().contains("reopen") {
                        return Err(format!("a read-only store answered a write with: {again}"));
                    }
                    if !reason.contains(&std::io::Error::from_raw_os_error(errno).to_string()) {
                        return Err(format!("read-only reason does not say why: {reason}"));
                    }
                }
            }
        }
    }
    let Some(first) = first_failure else {
        return Ok(()); // the workload made fewer such calls
    };
    t.runs += 1;
    if store.stats().read_only.is_some() {
        t.went_read_only += 1;
    } else {
        t.kept_going += 1;
    }
    drop(store);
    io.clear_faults();
    let store = Store::open_with(dir.path(), config(&io)).map_err(|e| format!("reopen after `{first}`: {e}"))?;
    let got = read_state(&store)?;
    if got != model {
        if may_have_landed.as_ref() == Some(&got) {
            t.failed_sync_landed += 1;
        } else {
            return Err(format!("after `{first}` and a reopen, the store differs from what was acknowledged"));
        }
    }
    // Writable again, and sound.
    store.get_dimension("default").unwrap().put("after", b"reopen").map_err(|e| format!("write after reopen: {e}"))?;
    let report = store.verify();
    if !report.is_ok() {
        return Err(format!("verify after `{first}`: {:?}", report.problems));
    }
    Ok(())
}

fn count_calls(op: FaultOp) -> u64 {
    let dir = scratch();
    let io = FaultyIo::new();
    let store = fresh_store(dir.path(), &io);
    let before = io.count(op);
    for (i, o) in workload().iter().enumerate() {
        exec(&store, o, i as u64).unwrap();
    }
    io.count(op) - before
}

fn every_nth(op: FaultOp) {
    let calls = count_calls(op);
    assert!(calls > 0, "the workload makes no {op:?} calls");
    let cap = env_count("JESSY_FAULT_NTH", 40).max(1);
    // Every n up to the cap; past it, spread evenly.
    let ns: Vec<u64> =
        if calls <= cap { (1..=calls).collect() } else { (0..cap).map(|i| 1 + i * calls / cap).collect() };
    let mut t = Tally::default();
    for errno in [libc::ENOSPC, libc::EIO] {
        for sticky in [false, true] {
            for &n in &ns {
                run(op, n, errno, sticky, &mut t).unwrap_or_else(|e| {
                    panic!("{op:?} #{n} of {calls} failing with errno {errno} (sticky {sticky}): {e}")
                });
            }
        }
    }
    eprintln!("{op:?}: {calls} calls in the workload, {} n tried x ENOSPC/EIO x once/sticky: {t:?}", ns.len());
    assert!(t.runs > 0);
}

#[test]
fn failing_writes() {
    every_nth(FaultOp::Write);
}

#[test]
fn failing_allocations() {
    every_nth(FaultOp::Allocate);
}

#[test]
fn failing_syncs() {
    every_nth(FaultOp::Sync);
}

#[test]
fn failing_renames_links_and_unlinks() {
    every_nth(FaultOp::Rename);
    every_nth(FaultOp::Other);
}

#[test]
fn a_failed_region_sync_makes_the_store_read_only_until_reopened() {
    let dir = scratch();
    let io = FaultyIo::new();
    let store = fresh_store(dir.path(), &io);
    let d = store.get_dimension("default").unwrap();
    d.put("kept", b"1").unwrap();
    io.fail_nth(FaultOp::Sync, 1, libc::EIO, false);
    let err = d.put("lost", b"2").unwrap_err();
    assert_eq!(err.code(), "read_only", "{err}");
    assert!(err.to_string().contains("fdatasync") && err.to_string().contains("region.mmap"), "{err}");
    assert!(d.get("lost").unwrap().is_none());
    for e in [
        d.put("x", b"y").unwrap_err(),
        d.delete("kept").unwrap_err(),
        d.write(WriteBatch::new().put("a", "b")).unwrap_err(),
        store.dimension("new-one").unwrap_err(),
        d.compact().unwrap_err(),
    ] {
        assert!(matches!(e, Error::ReadOnly(_)), "{e}");
        assert!(e.to_string().contains("reopen"), "{e}");
    }
    assert_eq!(&d.get("kept").unwrap().unwrap()[..], b"1");
    assert_eq!(d.iter().count(), 1);
    assert!(store.sync().is_ok(), "sync of a read-only store has nothing new to make durable");
    drop((d, store));
    let store = Store::open_with(dir.path(), config(&io)).unwrap();
    let d = store.get_dimension("default").unwrap();
    assert_eq!(&d.get("kept").unwrap().unwrap()[..], b"1");
    d.put("after", b"reopen").unwrap();
}

/// Under `None` a seal's file steps run on a thread behind the writer (dimension.rs,
/// `seal_behind`), and the writes that follow go into a new region that takes its place
/// only once those steps are done. When one of them fails, those writes can never be made
/// durable: the next sync must fail with `read_only` (a read-only store's sync otherwise
/// reports success, having nothing new to make durable), and reopening keeps everything
/// synced before, and a prefix of the rest.
#[test]
fn a_failed_step_of_a_seal_behind_the_writer_fails_the_next_sync() {
    for op in [FaultOp::Sync, FaultOp::Rename] {
        let dir = scratch();
        let io = FaultyIo::new();
        let cfg = config(&io).durability(Durability::None);
        let store = Store::open_with(dir.path(), cfg.clone()).unwrap();
        let d = store.get_dimension("default").unwrap();
        d.put("synced", b"before").unwrap();
        store.sync().unwrap();
        // Sticky: whichever of the seal's syncs or renames comes first fails, and so does
        // every later one; the writer's own part of the seal has neither.
        io.fail_nth(op, 1, libc::EIO, true);
        let key = |i: u32| format!("k{i:03}");
        let mut acknowledged = 0;
        for i in 0..300 {
            if d.put(key(i), [b'v'; 100]).is_err() {
                break;
            }
            acknowledged = i + 1;
        }
        // 300 puts of 100 bytes fill several 8 KiB regions: a seal must have failed, and
        // the store gone read-only, before the last.
        assert!(acknowledged < 300, "{op:?}: no write failed");
        let err = store.sync().expect_err("a sync after a failed seal must fail");
        assert_eq!(err.code(), "read_only", "{op:?}: {err}");
        assert!(err.to_string().contains("reopen"), "{op:?}: {err}");
        io.clear_faults();
        drop((d, store));
        let store = Store::open_with(dir.path(), cfg).unwrap();
        let d = store.get_dimension("default").unwrap();
        assert_eq!(&d.get("synced").unwrap().unwrap()[..], b"before", "{op:?}");
        let kept = (0..acknowledged).take_while(|&i| d.get(key(i)).unwrap().is_some()).count() as u32;
        for i in kept..300 {
            assert!(d.get(key(i)).unwrap().is_none(), "{op:?}: {} kept after a lost {}", key(i), key(kept));
        }
        d.put("after", b"reopen").unwrap();
        store.sync().unwrap();
    }
}

/// Under `None` a failed sync leaves the writes acknowledged before it perhaps nowhere but
/// in memory, and Linux reports a failed writeback once: a second `fdatasync` would succeed
/// over the lost pages. So every later sync must fail too, not report success because a
/// read-only store has nothing new to sync (which is right under `Immediate`, where every
/// acknowledged write was synced: `a_failed_region_sync_makes_the_store_read_only_until_reopened`).
#[test]
fn under_none_every_sync_after_a_failed_one_fails() {
    let dir = scratch();
    let io = FaultyIo::new();
    let store = Store::open_with(dir.path(), config(&io).durability(Durability::None)).unwrap();
    let d = store.get_dimension("default").unwrap();
    d.put("acknowledged", b"not synced").unwrap();
    io.fail_nth(FaultOp::Sync, 1, libc::EIO, false);
    let first = store.sync().expect_err("the injected sync failure");
    assert!(caused_by(&first, libc::EIO), "{first}");
    for _ in 0..2 {
        let again = store.sync().expect_err("a later sync must not report success");
        assert_eq!(again.code(), "read_only", "{again}");
        assert!(again.to_string().contains("reopen"), "{again}");
    }
}

// ---- errors during recovery ------------------------------------------------------------

/// The layer id in a log file's header, and the manifest's active layer id.
fn region_ahead_of_manifest(dir: &Path) -> bool {
    let dim = dir.join("consciousness/D01");
    let region = std::fs::read(dim.join("region.mmap")).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(dim.join("index.json")).unwrap()).unwrap();
    u32::from_le_bytes(region[16..20].try_into().unwrap()) as u64 > m["active"]["layer_id"].as_u64().unwrap()
}

/// A store that needs work on open: a seal interrupted after the new region was renamed
/// into place but before the manifest listed the sealed layer, garbage after the region's
/// last record, and leftovers in temp/. Returns what it holds.
fn store_needing_repairs(dir: &Path) -> State {
    let base = scratch();
    let mut model: State = DIMS.iter().map(|d| (d.to_string(), BTreeMap::new())).collect();
    {
        let io = FaultyIo::new();
        let store = fresh_store(base.path(), &io);
        for (i, o) in workload().iter().take(40).enumerate() {
            exec(&store, o, i as u64).unwrap();
            o.apply(&mut model, key, i as u64);
        }
    }
    let big = |i: u64| tagged(&key(0), 1000 + i, 2500);
    // Which put seals, and how many I/O calls it makes.
    let (puts_before, calls) = {
        let probe = scratch();
        copy_dir(base.path(), probe.path());
        let io = FaultyIo::new();
        let store = Store::open_with(probe.path(), config(&io)).unwrap();
        let d = store.get_dimension("default").unwrap();
        let mut i = 0;
        loop {
            let layers = d.stats().layers;
            let n = io.op_count();
            d.put(key(0), big(i)).unwrap();
            if d.stats().layers > layers {
                break (i, io.op_count() - n);
            }
            i += 1;
        }
    };
    for step in 1..=calls {
        let _ = std::fs::remove_dir_all(dir);
        copy_dir(base.path(), dir);
        let io = FaultyIo::new();
        let store = Store::open_with(dir, config(&io)).unwrap();
        let d = store.get_dimension("default").unwrap();
        let mut m = model.clone();
        for i in 0..puts_before {
            d.put(key(0), big(i)).unwrap();
            m.get_mut("default").unwrap().insert(key(0), big(i));
        }
        io.crash_after(step);
        assert!(d.put(key(0), big(puts_before)).is_err());
        drop((d, store));
        io.revive();
        if region_ahead_of_manifest(dir) {
            let region = dir.join("consciousness/D01/region.mmap");
            let mut bytes = std::fs::read(&region).unwrap();
            bytes[200..300].fill(0xA5);
            std::fs::write(&region, bytes).unwrap();
            std::fs::write(dir.join("temp/leftover.tmp"), b"junk").unwrap();
            return m;
        }
    }
    panic!("no step of a {calls}-call seal left the region ahead of the manifest");
}

#[test]
fn errors_during_recovery_fail_the_open_cleanly() {
    let src = scratch();
    let model = store_needing_repairs(src.path());
    let calls = {
        let dir = scratch();
        common::copy_dir(src.path(), dir.path());
        let io = FaultyIo::new();
        let n = io.op_count();
        drop(Store::open_with(dir.path(), config(&io)).unwrap());
        io.op_count() - n
    };
    assert!(calls > 5, "recovery made only {calls} calls");
    let mut failed_opens = 0;
    for op in [FaultOp::Write, FaultOp::Sync, FaultOp::Rename, FaultOp::Other, FaultOp::Allocate] {
        for n in 1..=calls {
            for errno in [libc::EIO, libc::ENOSPC] {
                let dir = scratch();
                common::copy_dir(src.path(), dir.path());
                let io = FaultyIo::new();
                io.fail_nth(op, n, errno, true);
                match Store::open_with(dir.path(), config(&io)) {
                    Ok(s) => drop(s),
                    Err(e) => {
                        failed_opens += 1;
                        assert!(caused_by(&e, errno), "{op:?} #{n}: open failed with an unrelated error: {e}");
                    }
                }
                io.clear_faults();
                let store = Store::open_with(dir.path(), config(&io))
                    .unwrap_or_else(|e| panic!("{op:?} #{n}: open after a failed open: {e}"));
                let got = read_state(&store).unwrap();
                assert!(got == model, "{op:?} #{n}: data changed by a failed recovery");
                assert!(store.verify().is_ok(), "{op:?} #{n}: {:?}", store.verify().problems);
            }
        }
    }
    assert!(failed_opens > 0);
    eprintln!("recovery: {calls} calls; faults at each made {failed_opens} opens fail, each then reopened cleanly");
}

/// The region is grown ahead of need on a thread of its own (growth.rs). When that fails,
/// the write that needs the room grows the region itself; when that fails too, it is the
/// one that reports the error, and nothing written before is lost.
#[test]
fn a_failed_growth_ahead_is_redone_or_reported_by_the_write_that_needs_the_room() {
    let config = |io: &Arc<FaultyIo>| {
        Config::default()
            .initial_size(16 << 10)
            .max_size(1 << 20)
            .durability(Durability::Immediate)
            .io(Arc::new(io.clone()) as Arc<dyn Io>)
    };
    for sticky in [false, true] {
        let dir = scratch();
        let io = FaultyIo::new();
        let store = Store::open_with(dir.path(), config(&io)).unwrap();
        let d = store.dimension("default").unwrap();
        // The first allocation from here on is the growth ahead, started once half of the
        // 16 KiB region is written.
        io.fail_nth(FaultOp::Allocate, 1, libc::ENOSPC, sticky);
        let mut written = 0;
        let mut failed = None;
        for i in 0..60u64 {
            match d.put(format!("k{i:03}"), [i as u8; 500]) {
                Ok(_) => written += 1,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        assert!(io.count(FaultOp::Allocate) >= 1, "sticky {sticky}: no growth was tried");
        match (sticky, failed) {
            (false, None) => {}
            (true, Some(e)) => {
                assert!(caused_by(&e, libc::ENOSPC), "{e}");
                assert!(written >= 16, "failed after only {written} writes: the region's own room was usable");
            }
            (sticky, other) => panic!("sticky {sticky}: {other:?} after {written} writes"),
        }
        for i in 0..written {
            assert_eq!(d.get(format!("k{i:03}")).unwrap().unwrap().as_bytes(), [i as u8; 500], "k{i:03}");
        }
        drop(d);
        drop(store);
        io.clear_faults();
        let store = Store::open_with(dir.path(), config(&io)).unwrap();
        let d = store.dimension("default").unwrap();
        assert_eq!(d.len(), written as usize);
        assert!(store.verify().is_ok(), "{:?}", store.verify().problems);
    }
}
