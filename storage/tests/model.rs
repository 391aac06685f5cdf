//! Model-based property test: random operations against the engine and a `BTreeMap`,
//! with reopen, simulated power loss (through `FaultyIo`), compaction and
//! snapshot-and-restore as steps. Small regions
//! force growth and sealing. A failing case is shrunk and printed by proptest; rerun it
//! with `PROPTEST_CASES=1` and the seed proptest saves in `proptest-regressions/`.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use jessy_storage::io::{FaultyIo, Io};
use jessy_storage::{Config, Dimension, Durability, Store, Version, WriteBatch};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    Put(u8, u16),
    Delete(u8),
    Batch(Vec<(u8, Option<u16>)>),
    /// Single writes through `submit_*` (or, if true, `enqueue_*`: the committer's inbox),
    /// all in flight before any callback is awaited.
    Submitted(Vec<(u8, Option<u16>)>, bool),
    Get(u8),
    /// From, to, reversed, and a batch-size hint (`Iter::batch_size`), if any.
    Range(u8, u8, bool, Option<u8>),
    Prefix(u8, bool),
    Reopen,
    Crash,
    Compact,
    Snapshot,
}

fn key(k: u8) -> Vec<u8> {
    // Shared prefixes make prefix scans meaningful.
    format!("{}/{:03}", k % 4, k).into_bytes()
}

fn val(k: u8, n: u16) -> Vec<u8> {
    let len = (n % 700) as usize;
    (0..len).map(|i| (k as usize + n as usize + i) as u8).collect()
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        30 => (any::<u8>(), any::<u16>()).prop_map(|(k, n)| Step::Put(k, n)),
        10 => any::<u8>().prop_map(Step::Delete),
        8 => prop::collection::vec((any::<u8>(), prop::option::of(any::<u16>())), 1..12).prop_map(Step::Batch),
        // Large enough for a durable commit to defer its ordered-index inserts (DEFER_MIN),
        // with values small enough for the batch to fit a test region.
        2 => prop::collection::vec((any::<u8>(), prop::option::of(0u16..60)), 32..60).prop_map(Step::Batch),
        10 => (prop::collection::vec((any::<u8>(), prop::option::of(any::<u16>())), 1..8), any::<bool>())
            .prop_map(|(ops, inbox)| Step::Submitted(ops, inbox)),
        15 => any::<u8>().prop_map(Step::Get),
        5 => (any::<u8>(), any::<u8>(), any::<bool>(), prop::option::of(0u8..40))
            .prop_map(|(a, b, r, n)| Step::Range(a, b, r, n)),
        5 => (0u8..4, any::<bool>()).prop_map(|(p, r)| Step::Prefix(p, r)),
        2 => Just(Step::Reopen),
        2 => Just(Step::Crash),
        3 => Just(Step::Compact),
        1 => Just(Step::Snapshot),
    ]
}

/// `none`: `Durability::None`, under which seals run behind the writer (dimension.rs,
/// `seal_behind`) and only a `sync` makes writes durable.
fn config(io: &Arc<FaultyIo>, none: bool) -> Config {
    Config::default()
        .initial_size(4096)
        .max_size(8192)
        .durability(if none { Durability::None } else { Durability::Immediate })
        .background_compaction(false)
        .compaction_threshold(0.3)
        .io(Arc::new(io.clone()) as Arc<dyn Io>)
}

fn collect(
    it: impl Iterator<Item = jessy_storage::Result<(Vec<u8>, jessy_storage::Value)>>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    it.map(|r| {
        let (k, v) = r.expect("scan");
        (k, v.to_vec())
    })
    .collect()
}

/// Every entry of `it` in key order, taken with the lending calls: from the front, from the
/// back, or alternating between the two ends as the bits of `pattern` say, and the value
/// lent too (`next_ref`), not (`next_borrowed`), or not read at all (`next_key`, the value
/// then read with `d.get`, whose version must be the one `next_key` gave) as other bits of it
/// say.
fn collect_borrowed(d: &Dimension, mut it: jessy_storage::Iter, pattern: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
    let (mut front, mut back) = (Vec::new(), Vec::new());
    for i in 0.. {
        let from_back = pattern >> (i % 32) & 1 == 1;
        let how = (pattern >> ((i + 11) % 32) & 1) + 2 * (pattern >> ((i + 23) % 32) & 1);
        let next = match (from_back, how) {
            (false, 0) => it.next_borrowed().map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec()))),
            (true, 0) => it.next_back_borrowed().map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec()))),
            (false, 1) => it.next_ref().map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec()))),
            (true, 1) => it.next_back_ref().map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec()))),
            (false, _) => it.next_key().map(|e| e.map(|(k, version)| value_of(d, k, version))),
            (true, _) => it.next_back_key().map(|e| e.map(|(k, version)| value_of(d, k, version))),
        };
        let Some(entry) = next else { break };
        let pair = entry.expect("scan");
        if from_back {
            back.push(pair);
        } else {
            front.push(pair);
        }
    }
    front.extend(back.into_iter().rev());
    front
}

/// The key and its value, read with `get`, which must find the version `next_key` gave.
fn value_of(d: &Dimension, key: &[u8], version: Version) -> (Vec<u8>, Vec<u8>) {
    let value = d.get(key).expect("get").expect("a key the scan listed");
    assert_eq!(value.version(), version, "next_key's version of {key:?}");
    (key.to_vec(), value.to_vec())
}

fn run(steps: Vec<Step>, none: bool) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut store = Store::open_with(dir.path(), config(&io, none)).unwrap();
    let mut d = store.dimension("model").unwrap();
    for s in steps {
        match s {
            Step::Put(k, n) => {
                d.put(key(k), val(k, n)).unwrap();
                model.insert(key(k), val(k, n));
            }
            Step::Delete(k) => {
                d.delete(key(k)).unwrap();
                model.remove(&key(k));
            }
            Step::Batch(ops) => {
                let mut b = WriteBatch::new();
                for (k, v) in &ops {
                    match v {
                        Some(n) => b.push_put(key(*k), val(*k, *n)),
                        None => b.push_delete(key(*k)),
                    }
                }
                d.write(b).unwrap();
                for (k, v) in ops {
                    match v {
                        Some(n) => model.insert(key(k), val(k, n)),
                        None => model.remove(&key(k)),
                    };
                }
            }
            Step::Submitted(ops, inbox) => {
                let (tx, rx) = std::sync::mpsc::channel();
                for (k, v) in &ops {
                    let tx = tx.clone();
                    let reply = move |r| tx.send(r).unwrap();
                    match (v, inbox) {
                        (Some(n), false) => d.submit_put(key(*k), val(*k, *n), None).unwrap().on_durable(reply),
                        (None, false) => d.submit_delete(key(*k), None).unwrap().on_durable(reply),
                        (Some(n), true) => d.enqueue_put(key(*k), val(*k, *n), None, reply),
                        (None, true) => d.enqueue_delete(key(*k), None, reply),
                    }
                }
                drop(tx);
                let answered: Vec<_> = rx.iter().collect();
                prop_assert_eq!(answered.len(), ops.len());
                prop_assert!(answered.iter().all(|r| r.is_ok()));
                // Both keep the order of the calls: the last write of a key is the one that stays.
                for (k, v) in ops {
                    match v {
                        Some(n) => model.insert(key(k), val(k, n)),
                        None => model.remove(&key(k)),
                    };
                }
            }
            Step::Get(k) => {
                let found = d.get(key(k)).unwrap();
                // The index's version is the one of the value `get` finds.
                prop_assert_eq!(d.version(key(k)).unwrap(), found.as_ref().map(|v| v.version()));
                prop_assert_eq!(found.map(|v| v.to_vec()), model.get(&key(k)).cloned());
            }
            Step::Range(a, b, rev, hint) => {
                let (lo, hi) = (key(a).min(key(b)), key(a).max(key(b)));
                let want: Vec<_> = model
                    .range::<Vec<u8>, _>((Bound::Included(&lo), Bound::Excluded(&hi)))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let iter = d.range(lo.clone()..hi.clone());
                let iter = match hint {
                    Some(n) => iter.batch_size(n as usize),
                    None => iter,
                };
                let got = if rev { collect(iter.rev()) } else { collect(iter) };
                // The lending calls, from either end, give the same entries.
                let pattern = (u32::from(a) * 0x0101_0101) ^ (u32::from(b) << 3);
                let pattern = if rev { !pattern } else { pattern };
                let borrowed = collect_borrowed(&d, d.range(lo.clone()..hi.clone()), pattern);
                prop_assert_eq!(&borrowed, &want);
                let want = if rev { want.into_iter().rev().collect() } else { want };
                prop_assert_eq!(got, want);
            }
            Step::Prefix(p, rev) => {
                let prefix = format!("{p}/").into_bytes();
                let want: Vec<_> =
                    model.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(k, v)| (k.clone(), v.clone())).collect();
                let got = if rev { collect(d.prefix(&prefix).rev()) } else { collect(d.prefix(&prefix)) };
                let want = if rev { want.into_iter().rev().collect() } else { want };
                prop_assert_eq!(got, want);
            }
            Step::Compact => {
                d.compact().unwrap();
            }
            Step::Snapshot => {
                let snap = tempfile::tempdir().unwrap();
                store.snapshot(snap.path().join("s")).unwrap();
                let copy = Store::open_with(snap.path().join("s"), config(&FaultyIo::new(), none)).unwrap();
                let got = collect(copy.get_dimension("model").unwrap().iter());
                let want: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                prop_assert_eq!(got, want);
            }
            Step::Reopen | Step::Crash => {
                if matches!(s, Step::Crash) {
                    // Under Immediate every write above was acknowledged durable; under None
                    // the sync makes them so, a seal still finishing behind the writer
                    // included. Either way all must survive.
                    if none {
                        store.sync().unwrap();
                    }
                    io.crash();
                }
                drop(d);
                drop(store);
                io.revive();
                store = Store::open_with(dir.path(), config(&io, none)).unwrap();
                d = store.get_dimension("model").unwrap();
            }
        }
    }
    // Final check of everything, after one more reopen.
    drop(d);
    drop(store);
    let store = Store::open_with(dir.path(), config(&io, none)).unwrap();
    let d = store.get_dimension("model").unwrap();
    let got = collect(d.iter());
    let want: Vec<_> = model.into_iter().collect();
    prop_assert_eq!(got, want);
    Ok(())
}

fn cases() -> u32 {
    // `make soak` raises this; `make test` keeps it quick.
    std::env::var("JESSY_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]
    #[test]
    fn engine_matches_a_btreemap(steps in prop::collection::vec(step(), 1..120), none in any::<bool>()) {
        run(steps, none)?;
    }
}
