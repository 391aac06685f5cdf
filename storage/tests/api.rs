//! The embedded API, as a user of the crate meets it.

mod common;

use common::*;
use jessy_storage::{Config, Durability, Error, Expect, Store, Version, WriteBatch};

#[test]
fn put_get_delete_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Config::default());
    let d = store.dimension("default").unwrap();
    assert_eq!(d.id(), 1);
    assert_eq!(d.dir(), "D01");
    let v1 = d.put(b"k", b"one").unwrap();
    let v2 = d.put(b"k", b"two").unwrap();
    assert!(v2 > v1);
    let got = d.get(b"k").unwrap().unwrap();
    assert_eq!(&got[..], b"two");
    assert_eq!(got.version(), v2);
    assert_eq!(d.version(b"k").unwrap(), Some(v2));
    assert!(d.get(b"missing").unwrap().is_none());
    assert_eq!(d.version(b"missing").unwrap(), None);
    let v3 = d.delete(b"k").unwrap();
    assert!(v3 > v2);
    assert!(d.get(b"k").unwrap().is_none());
    assert_eq!(d.version(b"k").unwrap(), None, "a deleted key has no version");
    d.delete(b"never-there").unwrap();
    d.put(b"empty-value", b"").unwrap();
    assert_eq!(d.get(b"empty-value").unwrap().unwrap().len(), 0);
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small(Durability::Immediate));
    let d = store.dimension("default").unwrap();
    assert!(matches!(d.put(b"", b"x"), Err(Error::EmptyKey)));
    let long = vec![b'k'; 4097];
    assert!(matches!(d.put(&long, b"x"), Err(Error::KeyTooLarge { len: 4097, max: 4096 })));
    d.put(vec![b'k'; 4096], b"x").unwrap();
    // validate_key is the same rule, for callers that must tell a malformed key from a missing one.
    assert!(matches!(jessy_storage::validate_key(b""), Err(Error::EmptyKey)));
    assert!(matches!(jessy_storage::validate_key(&long), Err(Error::KeyTooLarge { len: 4097, max: 4096 })));
    jessy_storage::validate_key(b"k").unwrap();
    jessy_storage::validate_key(&long[..4096]).unwrap();
    let err = d.put(b"big", vec![0u8; 20 * 1024]).unwrap_err();
    assert_eq!(err.code(), "value_too_large");
    assert!(err.to_string().contains("MMAP_MAX_SIZE"), "{err}");
    assert!(d.get(b"big").unwrap().is_none());
    assert_eq!(d.len(), 1);
    for bad in ["", ".x", "a b", "x/y"] {
        assert_eq!(store.dimension(bad).unwrap_err().code(), "invalid_dimension_name", "{bad:?}");
    }
}

#[test]
fn keys_are_listed_from_the_index_without_reading_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Config::default());
    let d = store.dimension("default").unwrap();
    let v1 = d.put(b"a", b"first value").unwrap();
    let v2 = d.put(b"b", b"DAMAGE-ME").unwrap();
    let v3 = d.put(b"c", b"third value").unwrap();
    // Flip a byte of b's value in the log: its checksum no longer holds.
    let region = dir.path().join("consciousness/D01/region.mmap");
    let mut bytes = std::fs::read(&region).unwrap();
    let at = bytes.windows(9).position(|w| w == b"DAMAGE-ME").unwrap();
    bytes[at] ^= 0x20;
    std::fs::write(&region, &bytes).unwrap();

    let mut keys = Vec::new();
    let mut it = d.range::<&[u8], _>(..);
    while let Some(entry) = it.next_key() {
        let (key, version) = entry.unwrap();
        keys.push((key.to_vec(), version));
    }
    let want = vec![(b"a".to_vec(), v1), (b"b".to_vec(), v2), (b"c".to_vec(), v3)];
    assert_eq!(keys, want, "every key with its version, the damaged one too");
    let mut it = d.range::<&[u8], _>(..);
    assert_eq!(it.next_back_key().unwrap().unwrap(), (&b"c"[..], v3));
    assert_eq!(it.next_back_key().unwrap().unwrap(), (&b"b"[..], v2));

    // Reading the value reports the damage.
    let mut it = d.range::<&[u8], _>(..);
    assert!(it.next_ref().unwrap().is_ok());
    assert_eq!(it.next_ref().unwrap().unwrap_err().code(), "corruption");
    assert_eq!(d.get(b"b").unwrap_err().code(), "corruption");
}

#[test]
fn conditional_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Config::default());
    let d = store.dimension("cond").unwrap();
    let v1 = d.put_if(b"k", b"a", Expect::Absent).unwrap();
    match d.put_if(b"k", b"b", Expect::Absent) {
        Err(Error::ConditionFailed { current: Some(v), .. }) => assert_eq!(v, v1),
        other => panic!("expected a failed condition, got {other:?}"),
    }
    assert!(d.put_if(b"k", b"b", Expect::Version(Version(v1.0 + 100))).is_err());
    let v2 = d.put_if(b"k", b"b", Expect::Version(v1)).unwrap();
    assert_eq!(&d.get(b"k").unwrap().unwrap()[..], b"b");
    assert!(d.delete_if(b"k", Expect::Version(v1)).is_err());
    d.delete_if(b"k", Expect::Version(v2)).unwrap();
    assert!(d.put_if(b"k", b"c", Expect::Present).is_err());
    assert!(d.get(b"k").unwrap().is_none());
}

#[test]
fn batches_are_atomic_and_ordered() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Config::default());
    let d = store.dimension("default").unwrap();
    d.put(b"b", b"old").unwrap();
    d.write(WriteBatch::new().put(b"a", b"1").delete(b"b").put(b"c", b"3").put(b"c", b"4")).unwrap();
    assert_eq!(&d.get(b"a").unwrap().unwrap()[..], b"1");
    assert!(d.get(b"b").unwrap().is_none());
    assert_eq!(&d.get(b"c").unwrap().unwrap()[..], b"4");
    // One bad op refuses the whole batch.
    let err = d.write(WriteBatch::new().put(b"x", b"1").put(b"", b"2")).unwrap_err();
    assert_eq!(err.code(), "empty_key");
    assert!(d.get(b"x").unwrap().is_none());
    d.write(WriteBatch::new()).unwrap();
}

/// Batches of 4,096 updates or more change the two in-memory indexes on two threads; puts,
/// deletes (of present and absent keys) and repeats of a key in one batch must end as they
/// would one at a time.
#[test]
fn large_batches_with_repeats_and_deletes_end_as_small_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Config::default());
    let (big, small) = (store.dimension("big").unwrap(), store.dimension("small").unwrap());
    let mut model = std::collections::BTreeMap::new();
    for i in 0..3000u64 {
        let (k, v) = (format!("key{i:05}"), format!("first{i}"));
        big.put(&k, &v).unwrap();
        small.put(&k, &v).unwrap();
        model.insert(k.into_bytes(), v.into_bytes());
    }
    let mut ops = Vec::new();
    let mut s = 0x1234_5678_u64;
    for n in 0..12_000u64 {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let k = format!("key{:05}", (s >> 33) % 6000).into_bytes();
        let put = !(s >> 20).is_multiple_of(3);
        ops.push((k.clone(), put.then(|| format!("v{n}").repeat(1 + (n % 5) as usize).into_bytes())));
        match put {
            true => model.insert(k, ops.last().unwrap().1.clone().unwrap()),
            false => model.remove(&k),
        };
    }
    let batch = |ops: &[(Vec<u8>, Option<Vec<u8>>)]| {
        let mut b = WriteBatch::new();
        for (k, v) in ops {
            match v {
                Some(v) => b.push_put(k, v),
                None => b.push_delete(k),
            }
        }
        b
    };
    big.write(batch(&ops)).unwrap();
    for chunk in ops.chunks(1000) {
        small.write(batch(chunk)).unwrap();
    }
    let check = |store: &Store, when: &str| {
        let (big, small) = (store.dimension("big").unwrap(), store.dimension("small").unwrap());
        assert_eq!(big.len(), model.len(), "{when}");
        // Thousands of entries: report the first difference, not both lists.
        let all: Vec<(Vec<u8>, Vec<u8>)> = big.iter().map(|r| r.map(|(k, v)| (k, v.to_vec())).unwrap()).collect();
        let want: Vec<(Vec<u8>, Vec<u8>)> = model.clone().into_iter().collect();
        let first = all.iter().zip(&want).position(|(a, b)| a != b);
        assert!(all == want, "{when}: a scan differs at entry {first:?} (lengths {} and {})", all.len(), want.len());
        let back: Vec<Vec<u8>> = big.iter().rev().map(|r| r.unwrap().0).collect();
        assert!(back.iter().eq(model.keys().rev()), "{when}: a reverse scan differs");
        for i in 0..6000 {
            let k = format!("key{i:05}");
            assert_eq!(big.get(&k).unwrap().map(|v| v.to_vec()), model.get(k.as_bytes()).cloned(), "{when}: {k}");
        }
        assert_eq!(big.stats().live_bytes, small.stats().live_bytes, "{when}: live bytes");
        assert!(store.verify().is_ok(), "{when}: {:?}", store.verify().problems);
    };
    check(&store, "after the batch");
    drop((big, small));
    store.close().unwrap();
    check(&open(dir.path(), Config::default()), "after reopening");
}

/// Once half the region is written, a thread grows it to the next size (growth.rs), so that
/// the write that needs the room finds the zeros written and synced.
#[test]
fn the_region_grows_before_it_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let config = || Config::default().initial_size(64 << 10).max_size(1 << 20);
    let store = open(dir.path(), config());
    let d = store.dimension("default").unwrap();
    let mut n = 0;
    while data_end(&region(dir.path(), "D01")) < 40 << 10 {
        d.put(format!("k{n:05}"), value(n, 500)).unwrap();
        n += 1;
    }
    drop(d);
    store.close().unwrap();
    let len = std::fs::metadata(region(dir.path(), "D01")).unwrap().len();
    assert_eq!(len, 128 << 10, "40 KiB written into 64 KiB: the next size is ready");
    let store = open(dir.path(), config());
    let d = store.dimension("default").unwrap();
    // On through every size up to the seal at 1 MiB, and past it.
    for i in n..n + 2500 {
        d.put(format!("k{i:05}"), value(i, 500)).unwrap();
    }
    for i in 0..n + 2500 {
        assert_eq!(d.get(format!("k{i:05}")).unwrap().unwrap().as_bytes(), value(i, 500), "k{i:05}");
    }
    assert!(d.stats().layers >= 2, "the region was sealed");
    assert!(store.verify().is_ok(), "{:?}", store.verify().problems);
}

fn keys(it: impl Iterator<Item = jessy_storage::Result<(Vec<u8>, jessy_storage::Value)>>) -> Vec<Vec<u8>> {
    it.map(|r| r.unwrap().0).collect()
}

#[test]
fn ordered_range_prefix_and_reverse() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Config::default().durability(Durability::None));
    let d = store.dimension("default").unwrap();
    for k in ["user:1", "user:2", "user:3", "userx", "a", "user;", "\u{ff}"] {
        d.put(k, k).unwrap();
    }
    d.put([0xffu8, 0xff], b"ff").unwrap();
    let k = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
    assert_eq!(keys(d.prefix(b"user:")), k(&["user:1", "user:2", "user:3"]));
    assert_eq!(keys(d.prefix(b"user:").rev()), k(&["user:3", "user:2", "user:1"]));
    assert_eq!(keys(d.range(b"user:".as_slice()..b"user;".as_slice())), k(&["user:1", "user:2", "user:3"]));
    assert_eq!(keys(d.range(b"user:2".as_slice()..=b"user;".as_slice())), k(&["user:2", "user:3", "user;"]));
    assert_eq!(keys(d.prefix([0xffu8])), vec![vec![0xff, 0xff]]);
    assert_eq!(d.iter().count(), 8);
    // Both ends at once never repeat or skip a key.
    let mut it = d.iter();
    let mut seen = Vec::new();
    loop {
        match (it.next(), it.next_back()) {
            (None, None) => break,
            (a, b) => seen.extend(a.into_iter().chain(b).map(|r| r.unwrap().0)),
        }
    }
    seen.sort();
    assert_eq!(seen, keys(d.iter()));
}

#[test]
fn long_scans_cross_batches_in_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small(Durability::None));
    let d = store.dimension("default").unwrap();
    for i in 0..1000u32 {
        d.put(format!("k{i:05}"), value(i as usize, 20)).unwrap();
    }
    let fwd = keys(d.iter());
    assert_eq!(fwd.len(), 1000);
    assert!(fwd.windows(2).all(|w| w[0] < w[1]));
    let mut back = keys(d.iter().rev());
    back.reverse();
    assert_eq!(fwd, back);
    // Both ends at once, with the default batches and with every kind of hint: each key
    // exactly once, in order.
    for hint in [None, Some(0), Some(1), Some(7), Some(999), Some(1000), Some(5000)] {
        let mut it = match hint {
            Some(n) => d.iter().batch_size(n),
            None => d.iter(),
        };
        let mut front = Vec::new();
        let mut rear = Vec::new();
        for i in 0.. {
            let next = if i % 3 == 0 { it.next_back().map(|r| (false, r)) } else { it.next().map(|r| (true, r)) };
            match next {
                Some((true, r)) => front.push(r.unwrap().0),
                Some((false, r)) => rear.push(r.unwrap().0),
                None => break,
            }
        }
        rear.reverse();
        front.extend(rear);
        assert_eq!(front, fwd, "batch_size {hint:?}");
    }
}

#[test]
fn one_scan_reads_the_index_in_place_and_copied_in_turn() {
    // After a reopen nothing waits to be merged into the ordered index, and an iterator's
    // batches are stretches of the index read in place; writes made while it is out leave
    // changes waiting, and its next batches are copied and merged instead. Both kinds, from
    // both ends of one scan, must hand out each key once, in order, with the values it had
    // when its batch was taken.
    let dir = tempfile::tempdir().unwrap();
    let name = |i: u32| format!("k{i:04}").into_bytes();
    {
        let store = open(dir.path(), Config::default());
        let d = store.dimension("default").unwrap();
        for i in (0..600u32).step_by(2) {
            d.put(name(i), value(i as usize, 30)).unwrap();
        }
        store.close().unwrap();
    }
    let store = open(dir.path(), Config::default());
    let d = store.dimension("default").unwrap();
    let mut it = d.iter().batch_size(4);
    let (mut front, mut rear) = (Vec::new(), Vec::new());
    // Batches of 4 then 8 from each end: keys 0..24 and 576..600 are taken in place.
    for _ in 0..6 {
        front.push(it.next_borrowed().unwrap().unwrap().0.to_vec());
        rear.push(it.next_back_borrowed().unwrap().unwrap().0.to_vec());
    }
    // Well inside what no batch has taken yet: new odd keys, an overwrite, a delete.
    let mut want: std::collections::BTreeMap<Vec<u8>, Vec<u8>> =
        (0..600u32).step_by(2).map(|i| (name(i), value(i as usize, 30))).collect();
    for i in (201..400u32).step_by(2) {
        d.put(name(i), value(i as usize, 40)).unwrap();
        want.insert(name(i), value(i as usize, 40));
    }
    d.put(name(300), b"new").unwrap();
    want.insert(name(300), b"new".to_vec());
    d.delete(name(302)).unwrap();
    want.remove(&name(302));
    let mut values = std::collections::BTreeMap::new();
    for i in 0.. {
        let next = if i % 3 == 0 { it.next_back_borrowed() } else { it.next_borrowed() };
        let Some(entry) = next else { break };
        let (k, v) = entry.unwrap();
        values.insert(k.to_vec(), v.to_vec());
        if i % 3 == 0 {
            rear.push(k.to_vec())
        } else {
            front.push(k.to_vec())
        }
    }
    rear.reverse();
    front.extend(rear);
    assert_eq!(front, want.keys().cloned().collect::<Vec<_>>());
    for (k, v) in &values {
        assert_eq!(Some(v), want.get(k), "{}", String::from_utf8_lossy(k));
    }
}

#[test]
fn a_scan_in_place_reads_layers_sealed_after_it_started() {
    // A batch read in place from the index's base looks its entries' layers up when it hands
    // them out, in the snapshot of the layers taken with the batch. Here the first batch is
    // taken before thousands of writes seal new layers and the index merges them into a new
    // base (4,096 changes: the delta's limit for a small base), so that the later batches are
    // in place again and point into layers the first snapshot does not have.
    let dir = tempfile::tempdir().unwrap();
    let name = |i: u32| format!("k{i:05}").into_bytes();
    {
        let store = open(dir.path(), small(Durability::None));
        let d = store.dimension("default").unwrap();
        for i in 0..100u32 {
            d.put(name(i), value(i as usize, 100)).unwrap();
        }
        store.close().unwrap();
    }
    let store = open(dir.path(), small(Durability::None));
    let d = store.dimension("default").unwrap();
    let layers_before = d.stats().layers;
    let mut it = d.iter().batch_size(1);
    assert_eq!(it.next_borrowed().unwrap().unwrap().0, name(0));
    for i in 100..4196u32 {
        d.put(name(i), value(i as usize, 100)).unwrap();
    }
    assert!(d.stats().layers > layers_before + 10);
    let mut n = 1;
    while let Some(entry) = it.next_borrowed() {
        let (k, v) = entry.unwrap();
        assert_eq!((k, &v[..]), (&name(n)[..], &value(n as usize, 100)[..]));
        n += 1;
    }
    assert_eq!(n, 4196);
}

#[test]
fn data_survives_reopen_and_sealing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), small(Durability::Immediate));
        let d = store.dimension("users").unwrap();
        for i in 0..500 {
            d.put(format!("key{i}"), value(i, 100)).unwrap();
        }
        for i in (0..500).step_by(3) {
            d.delete(format!("key{i}")).unwrap();
        }
        assert!(d.stats().layers > 3, "small regions should have sealed: {:?}", d.stats());
    }
    let store = open(dir.path(), small(Durability::Immediate));
    let d = store.get_dimension("users").unwrap();
    assert_eq!(store.get_dimension("D02").unwrap().name(), "users");
    for i in 0..500 {
        let got = d.get(format!("key{i}")).unwrap();
        if i % 3 == 0 {
            assert!(got.is_none(), "key{i} was deleted");
        } else {
            assert_eq!(got.unwrap().as_bytes(), value(i, 100).as_slice(), "key{i}");
        }
    }
    let v = d.put(b"after", b"reopen").unwrap();
    assert!(v.0 > 500 + 167, "sequence numbers continue after reopen: {v}");
    let stats = d.stats();
    assert_eq!(stats.keys, 500 - 167 + 1);
    assert!(stats.live_bytes > 0 && stats.disk_bytes >= stats.live_bytes);
    let manifest = std::fs::read_to_string(dir.path().join("consciousness/D02/index.json")).unwrap();
    for field in ["format_version", "dimension_id", "\"name\": \"users\"", "layer_id", "offset", "size"] {
        assert!(manifest.contains(field), "{field} not in index.json");
    }
}

#[test]
fn dimensions_are_created_listed_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Config::default());
    let (a, created) = store.create_dimension("a").unwrap();
    assert!(created);
    assert!(!store.create_dimension("a").unwrap().1);
    let b = store.dimension("b").unwrap();
    assert_eq!((a.id(), b.id()), (2, 3));
    a.put(b"k", b"in a").unwrap();
    b.put(b"k", b"in b").unwrap();
    let kept = a.get(b"k").unwrap().unwrap();
    let names: Vec<String> = store.dimensions().iter().map(|d| d.name()).collect();
    assert_eq!(names, ["default", "a", "b"]);
    assert!(matches!(store.drop_dimension("default"), Err(Error::CannotDropDefault)));
    store.drop_dimension("a").unwrap();
    assert_eq!(&kept[..], b"in a", "a value read before the drop stays valid");
    assert_eq!(a.put(b"k", b"x").unwrap_err().code(), "dimension_not_found");
    assert_eq!(a.version(b"k").unwrap_err().code(), "dimension_not_found");
    assert_eq!(store.get_dimension("a").unwrap_err().code(), "dimension_not_found");
    assert!(!dir.path().join("consciousness/D02").exists());
    assert_eq!(store.get_dimension("D05").unwrap_err().code(), "dimension_not_found");
    assert_eq!(store.dimension("D05").unwrap_err().code(), "dimension_not_found");
    // A name no dimension can have says so, rather than that it does not exist yet.
    for bad in ["", ".a", "a/b", "é", "D5"] {
        assert_eq!(store.get_dimension(bad).unwrap_err().code(), "invalid_dimension_name", "{bad:?}");
    }
    drop((a, b, store));
    let store = open(dir.path(), Config::default());
    assert_eq!(&store.get_dimension("b").unwrap().get(b"k").unwrap().unwrap()[..], b"in b");
    assert!(store.get_dimension("a").is_err());
}

#[test]
fn a_second_opener_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Config::default());
    let err = Store::open(dir.path()).expect_err("second open must fail");
    assert_eq!(err.code(), "store_locked");
    assert!(err.to_string().contains(&std::process::id().to_string()), "{err}");
    drop(store);
    Store::open(dir.path()).unwrap();
}

#[test]
fn an_iterator_reads_layers_written_grown_and_compacted_after_it_started() {
    // The iterator takes a snapshot of the layers on its first refill. Keys written after
    // that, into a region that then grew and sealed into new layers, and layers compaction
    // replaced, must all be read from where they are when each later batch is copied.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small(Durability::None));
    let d = store.dimension("default").unwrap();
    for i in 0..40u32 {
        d.put(format!("k{i:04}"), value(i as usize, 100)).unwrap();
    }
    let mut it = d.iter().batch_size(1);
    let (first, _) = it.next().unwrap().unwrap();
    assert_eq!(first, b"k0000");
    for i in 40..400u32 {
        d.put(format!("k{i:04}"), value(i as usize, 100)).unwrap();
    }
    // Overwrites make the early layers dead enough to compact.
    for i in 0..400u32 {
        d.put(format!("k{i:04}"), value(i as usize + 1, 100)).unwrap();
    }
    d.compact().unwrap();
    let rest: Vec<_> = it.map(|r| r.unwrap()).collect();
    assert_eq!(rest.len(), 399);
    for (n, (k, v)) in rest.iter().enumerate() {
        let i = n + 1;
        assert_eq!(k, format!("k{i:04}").as_bytes());
        // Each value is one that key had: the first, or the overwrite.
        assert!(*v == value(i, 100)[..] || *v == value(i + 1, 100)[..], "key {i}");
    }
}

#[test]
fn values_outlive_writes_growth_and_sealing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small(Durability::None));
    let d = store.dimension("default").unwrap();
    d.put(b"first", b"kept").unwrap();
    let v = d.get(b"first").unwrap().unwrap();
    for i in 0..300 {
        d.put(format!("k{i}"), value(i, 200)).unwrap();
    }
    d.put(b"first", b"changed").unwrap();
    assert_eq!(&v[..], b"kept");
    assert_eq!(&d.get(b"first").unwrap().unwrap()[..], b"changed");
}

#[test]
fn config_from_env_is_used_by_open_config() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("data");
    let config = Config::from_lookup(|k| match k {
        "MMAP_BASE_PATH" => Some(base.to_string_lossy().into_owned()),
        "MMAP_INITIAL_SIZE" => Some("8192".into()),
        "JESSY_DURABILITY" => Some("periodic:5".into()),
        _ => None,
    })
    .unwrap();
    let store = Store::open_config(config).unwrap();
    store.dimension("default").unwrap().put(b"k", b"v").unwrap();
    assert!(base.join("consciousness/D01/region.mmap").exists());
    assert!(base.join("proto").is_dir() && base.join("temp").is_dir());
    assert_eq!(std::fs::metadata(base.join("consciousness/D01/region.mmap")).unwrap().len(), 8192);
}

#[test]
fn reversed_or_empty_ranges_are_empty_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Config::default());
    let d = store.dimension("default").unwrap();
    d.put(b"m", b"1").unwrap();
    assert_eq!(d.range(b"z".as_slice()..b"a".as_slice()).count(), 0);
    assert_eq!(d.range(b"m".as_slice()..b"m".as_slice()).count(), 0);
    assert_eq!(d.range(b"m".as_slice()..=b"m".as_slice()).count(), 1);
    assert_eq!(
        d.range::<&[u8], _>((std::ops::Bound::Excluded(b"m".as_slice()), std::ops::Bound::Excluded(b"m".as_slice())))
            .count(),
        0
    );
}

/// Enough writes to fill the ordered index's delta several times (it is merged into the
/// base array at 4,096 changes on a small store), with overwrites and deletes scattered
/// over the key space; every scan, in both directions and from any start, must match a
/// `BTreeMap`, before and after a reopen.
#[test]
fn scans_stay_exact_while_the_ordered_index_merges_its_changes() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    // A fixed multiplicative walk: scattered, repeatable, no rng crate needed.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let check = |d: &jessy_storage::Dimension, model: &BTreeMap<Vec<u8>, Vec<u8>>, probe: u64| {
        assert_eq!(d.len(), model.len());
        let start = format!("k{:05}", probe % 30_000).into_bytes();
        let got: Vec<_> = d.range(start.as_slice()..).take(50).map(|kv| kv.unwrap()).collect();
        let want: Vec<_> = model.range(start.clone()..).take(50).collect();
        assert_eq!(got.len(), want.len());
        for ((gk, gv), (wk, wv)) in got.iter().zip(&want) {
            assert_eq!((gk, &gv[..]), (*wk, &wv[..]));
        }
        let got: Vec<Vec<u8>> = d.range(..start.as_slice()).rev().take(50).map(|kv| kv.unwrap().0).collect();
        let want: Vec<Vec<u8>> = model.range(..start).rev().take(50).map(|(k, _)| k.clone()).collect();
        assert_eq!(got, want);
    };
    {
        let store = jessy_storage::Store::open(dir.path()).unwrap();
        let d = store.dimension("default").unwrap();
        for round in 0..30u64 {
            let mut batch = jessy_storage::WriteBatch::new();
            for _ in 0..1000 {
                let r = next();
                let key = format!("k{:05}", r % 30_000).into_bytes();
                if r % 5 == 0 {
                    batch.push_delete(key.clone());
                    model.remove(&key);
                } else {
                    let value = format!("v{round}-{r}").into_bytes();
                    batch.push_put(key.clone(), value.clone());
                    model.insert(key, value);
                }
            }
            d.write(batch).unwrap();
            check(&d, &model, next());
        }
        let all: Vec<Vec<u8>> = d.iter().map(|kv| kv.unwrap().0).collect();
        assert_eq!(all, model.keys().cloned().collect::<Vec<_>>());
        store.close().unwrap();
    }
    let store = jessy_storage::Store::open(dir.path()).unwrap();
    let d = store.dimension("default").unwrap();
    for _ in 0..20 {
        check(&d, &model, next());
    }
    let all: Vec<Vec<u8>> = d.iter().rev().map(|kv| kv.unwrap().0).collect();
    assert_eq!(all, model.keys().rev().cloned().collect::<Vec<_>>());
}

/// A version is the HTTP `ETag`: a dimension dropped and created again under the same name
/// must not hand out a version the dropped one gave (a client holding it would get a 304
/// for a stale copy, or an `If-Match` overwriting a value it never saw). Also across a
/// reopen, and for a dimension created by a bulk load.
#[test]
fn versions_keep_growing_when_a_dropped_dimension_is_created_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Version(0);
    let mut fresh = |store: &Store, bulk: bool| {
        if store.dimensions().iter().any(|d| d.name() == "again") {
            store.drop_dimension("again").unwrap();
        }
        let d = if bulk {
            let mut loader = store.bulk_load("again").unwrap();
            loader.put("k", "loaded").unwrap();
            loader.finish().unwrap()
        } else {
            store.dimension("again").unwrap()
        };
        if let Some(v) = d.version("k").unwrap() {
            assert!(v > seen, "a loaded version {v:?} was handed out before (up to {seen:?})");
        }
        for _ in 0..3 {
            let v = d.put("k", "x").unwrap();
            assert!(v > seen, "version {v:?} was handed out before (up to {seen:?})");
            seen = v;
        }
    };
    let store = open(dir.path(), Config::default());
    fresh(&store, false);
    fresh(&store, false);
    fresh(&store, true);
    drop(store);
    // The floor is on disk: a reopened store remembers the dropped dimensions' versions.
    let store = open(dir.path(), Config::default());
    fresh(&store, false);
    drop(store);
    let store = open(dir.path(), Config::default());
    fresh(&store, true);
    fresh(&store, false);
}

#[test]
fn dimensions_start_at_version_1_until_one_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Config::default());
    assert_eq!(store.dimension("first").unwrap().put("k", "v").unwrap(), Version(1));
    assert_eq!(store.dimension("second").unwrap().put("k", "v").unwrap(), Version(1));
    let high = store.dimension("first").unwrap().put("k", "w").unwrap();
    store.drop_dimension("first").unwrap();
    let later = store.dimension("third").unwrap().put("k", "v").unwrap();
    assert!(later > high, "{later:?} after a dropped dimension's {high:?}");
    assert_eq!(store.dimension("default").unwrap().put("k", "v").unwrap(), Version(1), "the default keeps its own");
}

#[test]
fn max_value_len_is_the_largest_value_a_put_takes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small(Durability::Immediate));
    let d = store.dimension("default").unwrap();
    let max = d.max_value_len("k");
    d.put("k", vec![7u8; max as usize]).unwrap();
    match d.put("k", vec![7u8; max as usize + 1]) {
        Err(Error::ValueTooLarge { max: said, .. }) => assert_eq!(said, max),
        other => panic!("one byte more: {other:?}"),
    }
    assert_eq!(d.max_value_len("kk"), max - 1, "a longer key leaves less room");
}

#[test]
fn misuse_gets_errors_that_say_what_happened() {
    // An empty path would have put the store's files in the current directory.
    let before: Vec<_> = std::fs::read_dir(".").unwrap().map(|e| e.unwrap().file_name()).collect();
    match Store::open_with("", Config::default()) {
        Err(e @ Error::InvalidConfig { .. }) => assert!(e.to_string().contains("empty"), "{e}"),
        other => panic!("an empty path: {other:?}"),
    }
    let after: Vec<_> = std::fs::read_dir(".").unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before, after, "opening an empty path wrote into the current directory");

    // A zero sync interval would spin a thread.
    let dir = tempfile::tempdir().unwrap();
    let zero = Config::default().durability(Durability::Periodic(std::time::Duration::ZERO));
    assert!(matches!(Store::open_with(dir.path(), zero), Err(Error::InvalidConfig { .. })));

    // Opened twice in one process: not "another process".
    let store = open(dir.path(), small(Durability::Immediate));
    let again = Store::open_with(dir.path(), Config::default()).expect_err("the lock is held");
    assert!(again.to_string().contains("this process"), "{again}");

    drop(store);
    // One byte too large reads as two different numbers (not "10.0 MiB" twice).
    let store = open(dir.path(), Config::default().max_size(10 << 20));
    let d = store.dimension("default").unwrap();
    let max = d.max_value_len("k");
    let e = d.put("k", vec![0u8; max as usize + 1]).unwrap_err();
    assert!(e.to_string().contains(&format!("{} bytes", max + 1)), "{e}");
}
