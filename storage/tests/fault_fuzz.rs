//! The fuzz targets of `fuzz/` run through proptest (issue 4, part 5), so that they run in
//! `make test` on stable Rust, and in `make fuzz` when cargo-fuzz cannot run. The targets
//! themselves are in `common/fuzz_targets.rs`, shared with `fuzz/fuzz_targets/`:
//!
//! - `record_decoder`: frames, entries and whole-log scans;
//! - `key_index`: sealed layers' key indexes;
//! - `manifest_parser`: `index.json`;
//! - `open_store`: a small real store whose files are edited by the input, opened and read.
//!
//! Each is fed arbitrary bytes and valid inputs with random damage (bit flips, cuts,
//! overwrites, insertions). No input may panic; inputs that decode must re-encode to the
//! same bytes; a store that opens must agree with itself and open again.
//!
//! Cases per target: `JESSY_FUZZ_CASES` (default 400; the store target runs a quarter).
//! Inputs found by cargo-fuzz go in `tests/fuzz-regressions/<target>/` and are replayed
//! by `fuzz_regressions` on every run.

mod common;
#[path = "common/fuzz_targets.rs"]
mod targets;

use proptest::prelude::*;

fn cases(divisor: u32) -> u32 {
    (common::env_count("JESSY_FUZZ_CASES", 400) as u32 / divisor).max(8)
}

#[derive(Debug, Clone)]
enum Damage {
    Flip(usize, u8),
    Set(usize, u8),
    Cut(usize),
    Insert(usize, Vec<u8>),
    Zero(usize, usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(|(i, b)| Damage::Flip(i, b)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::Set(i, b)),
        1 => any::<usize>().prop_map(Damage::Cut),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, v)| Damage::Insert(i, v)),
        1 => (any::<usize>(), 1usize..64).prop_map(|(i, n)| Damage::Zero(i, n)),
    ]
}

fn apply(mut b: Vec<u8>, damage: &[Damage]) -> Vec<u8> {
    for d in damage {
        if b.is_empty() {
            break;
        }
        let at = |i: &usize| i % b.len();
        match d {
            Damage::Flip(i, bit) => {
                let i = at(i);
                b[i] ^= 1 << bit
            }
            Damage::Set(i, v) => {
                let i = at(i);
                b[i] = *v
            }
            Damage::Cut(i) => {
                let i = at(i);
                b.truncate(i)
            }
            Damage::Insert(i, v) => {
                let i = at(i);
                b.splice(i..i, v.iter().copied());
            }
            Damage::Zero(i, n) => {
                let i = at(i);
                let end = (i + n).min(b.len());
                b[i..end].fill(0)
            }
        }
    }
    b
}

fn entry() -> impl Strategy<Value = (u8, Vec<u8>, Vec<u8>)> {
    (prop::bool::weighted(0.8), prop::collection::vec(any::<u8>(), 1..24), prop::collection::vec(any::<u8>(), 0..120))
        .prop_map(|(put, k, v)| if put { (1, k, v) } else { (2, k, Vec::new()) })
}

/// A log: a file header's worth of bytes, valid frames, then zeros (preallocated space).
fn log() -> impl Strategy<Value = Vec<u8>> {
    (prop::collection::vec((any::<u64>(), prop::collection::vec(entry(), 1..5)), 0..6), 0usize..64).prop_map(
        |(frames, zeros)| {
            let mut b = vec![0u8; 32];
            for (seq, entries) in frames {
                b.extend(jessy_storage::fuzzing::encode_frame(seq, &entries));
            }
            b.resize(b.len() + zeros, 0);
            b
        },
    )
}

fn key_index_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        prop::collection::vec(
            (prop::bool::ANY, prop::collection::vec(any::<u8>(), 1..20), any::<u32>(), any::<u32>(), any::<u64>()),
            0..8,
        ),
    )
        .prop_map(|(dim, layer, end, items)| {
            let items: Vec<_> =
                items.into_iter().map(|(put, k, vl, off, seq)| (if put { 1 } else { 2 }, k, vl, off, seq)).collect();
            jessy_storage::fuzzing::encode_key_index(dim, layer, end, &items)
        })
}

fn template_file(name: &'static str) -> Vec<u8> {
    targets::template().iter().find(|(p, _)| p.ends_with(name)).map(|(_, b)| b.clone()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(1), ..ProptestConfig::default() })]

    #[test]
    fn record_decoder_arbitrary_bytes(b in prop::collection::vec(any::<u8>(), 0..600)) {
        targets::record_decoder(&b);
    }

    #[test]
    fn record_decoder_damaged_logs(b in log(), d in prop::collection::vec(damage(), 0..4)) {
        let damaged = apply(b, &d);
        targets::record_decoder(&damaged);
        if damaged.len() > 32 {
            targets::record_decoder(&damaged[32..]);
        }
    }

    #[test]
    fn key_index_arbitrary_and_damaged(b in prop::collection::vec(any::<u8>(), 0..300),
                                       k in key_index_bytes(), d in prop::collection::vec(damage(), 0..4)) {
        targets::key_index(&b);
        targets::key_index(&k);
        targets::key_index(&apply(k, &d));
        targets::key_index(&apply(template_file(".keys"), &d));
    }

    #[test]
    fn manifest_parser_arbitrary_and_damaged(b in prop::collection::vec(any::<u8>(), 0..300),
                                             s in "\\PC{0,200}", d in prop::collection::vec(damage(), 0..4)) {
        targets::manifest_parser(&b);
        targets::manifest_parser(s.as_bytes());
        targets::manifest_parser(&apply(template_file("D01/index.json"), &d));
    }
}

fn edit_script() -> impl Strategy<Value = Vec<u8>> {
    (0u8..4, any::<bool>(), prop::collection::vec(any::<u8>(), 0..200)).prop_map(|(mode, salvage, rest)| {
        let mut b = vec![mode | if salvage { 0x80 } else { 0 }];
        b.extend(rest);
        b
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(4), ..ProptestConfig::default() })]

    #[test]
    fn open_store_from_edited_files(script in edit_script()) {
        targets::open_store(&script);
    }
}

/// Found by cargo fuzz: a file header with non-zero reserved bytes and a checksum forged to
/// match was accepted, so a key index did not re-encode to itself. Reserved bytes must be
/// zero (docs/FORMAT.md), in file headers and in key index items alike.
#[test]
fn reserved_bytes_must_be_zero() {
    use jessy_storage::fuzzing as f;
    let good = f::encode_key_index(1, 7, 100, &[(1, b"key".to_vec(), 5, 32, 9)]);
    assert!(f::decode_key_index(&good).is_ok());
    // Reserved header bytes set, header checksum recomputed.
    let mut forged = good.clone();
    forged[20..28].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x53, 0, 0, 0]);
    let crc = crc32(&forged[..28]);
    forged[28..32].copy_from_slice(&crc.to_le_bytes());
    assert!(f::decode_file_header(&forged, true).unwrap_err().contains("reserved"));
    assert!(f::decode_key_index(&forged).is_err());
    // An item's reserved byte set, body checksum recomputed.
    let mut forged = good.clone();
    forged[48 + 1] = 1;
    let mut h = Vec::new();
    h.extend_from_slice(&forged[32..44]);
    h.extend_from_slice(&forged[48..]);
    let crc = crc32(&h);
    forged[44..48].copy_from_slice(&crc.to_le_bytes());
    assert!(f::decode_key_index(&forged).unwrap_err().contains("reserved"), "{:?}", f::decode_key_index(&forged));
}

/// CRC-32 (IEEE), bit by bit: the test does not need a faster one.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Replays every input saved under `tests/fuzz-regressions/<target>/`.
#[test]
fn fuzz_regressions() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut n = 0;
    for (target, run) in [
        ("record_decoder", targets::record_decoder as fn(&[u8])),
        ("key_index", targets::key_index),
        ("manifest_parser", targets::manifest_parser),
        ("open_store", targets::open_store),
    ] {
        let Ok(entries) = std::fs::read_dir(root.join(target)) else { continue };
        for e in entries {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "md") {
                continue;
            }
            run(&std::fs::read(&p).unwrap());
            n += 1;
        }
    }
    eprintln!("replayed {n} saved fuzz inputs");
}

/// With `JESSY_FUZZ_SEED_CORPUS=<dir>`, writes starting inputs for cargo-fuzz into
/// `<dir>/<target>/` (`make fuzz` does this); otherwise does nothing.
#[test]
fn seed_corpus() {
    let Some(dir) = std::env::var_os("JESSY_FUZZ_SEED_CORPUS") else { return };
    let dir = std::path::PathBuf::from(dir);
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let d = dir.join(target);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), bytes).unwrap();
    };
    for (rel, bytes) in targets::template() {
        let name = rel.replace('/', "_");
        if rel.ends_with(".mmap") {
            write("record_decoder", &name, bytes);
        } else if rel.ends_with(".keys") {
            write("key_index", &name, bytes);
        } else if rel.ends_with("index.json") {
            write("manifest_parser", &name, bytes);
        }
    }
    for (i, head) in [0u8, 1, 2, 3, 0x80, 0x83].iter().enumerate() {
        write("open_store", &format!("seed{i}"), &[*head, 3, 40, 0, 0xff, 1, 100, 0, 1]);
    }
}
