//! A real full disk without root (issue 4, part 3): a child process (this test binary,
//! re-executed in child mode) runs with `RLIMIT_FSIZE` and SIGXFSZ ignored, so writes past
//! the limit fail with EFBIG instead of killing it. It writes until the limit bites and
//! reports what it saw: which write failed and how, what later writes did, whether reads
//! still work. The parent then opens the store with no limit and checks that every
//! acknowledged write is there with its value and the failed one is not.
//!
//! This lives in its own test binary: while a child is being spawned it holds copies of
//! the parent's file descriptors until it execs, which would include the `flock`ed lock
//! files of stores that parallel tests in the same binary hold.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use jessy_storage::{Config, Durability, Store};

fn key(n: u64) -> Vec<u8> {
    format!("key{n:02}").into_bytes()
}

const FSIZE_ENV: &str = "JESSY_FSIZE_CHILD";

/// Child mode: `JESSY_FSIZE_CHILD=<phase>`, store in `JESSY_FSIZE_DIR`, limit in
/// `JESSY_FSIZE_LIMIT`. Prints `ACK <i>` per acknowledged write, `FAIL <i> <code> <message>`
/// for the first refusal, then what later writes, reads and a sync did.
fn fsize_child(phase: &str) {
    use std::io::Write;
    let dir = std::env::var("JESSY_FSIZE_DIR").unwrap();
    let limit: u64 = std::env::var("JESSY_FSIZE_LIMIT").unwrap().parse().unwrap();
    let mut out = std::io::stdout().lock();
    // SAFETY: plain syscalls on this process; no memory is shared.
    let set_limit = || unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let lim = libc::rlimit { rlim_cur: limit as libc::rlim_t, rlim_max: libc::RLIM_INFINITY };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    };
    let config = Config::default()
        .initial_size(4096)
        .max_size(64 << 10)
        .durability(Durability::Immediate)
        .background_compaction(false);
    if phase == "open" {
        set_limit();
    }
    let store = match Store::open_with(&dir, config) {
        Ok(s) => s,
        Err(e) => {
            writeln!(out, "\nOPENFAIL {} {e}", e.code()).unwrap();
            return;
        }
    };
    writeln!(out, "\nOPEN").unwrap();
    if phase == "mid" {
        set_limit();
    }
    let d = store.dimension("default").unwrap();
    let mut failed = None;
    for i in 0..2000u64 {
        let k = key(i % 100);
        match d.put(&k, tagged(&k, i, 700)) {
            Ok(_) => writeln!(out, "ACK {i}").unwrap(),
            Err(e) => {
                writeln!(out, "FAIL {i} {} {e}", e.code()).unwrap();
                failed = Some(i);
                break;
            }
        }
        out.flush().unwrap();
    }
    if failed.is_some() {
        // Later writes: refused the same way, or (small ones) accepted if they still fit.
        for (j, len) in [700usize, 10].into_iter().enumerate() {
            let k = b"later".to_vec();
            match d.put(&k, tagged(&k, j as u64, len)) {
                Ok(_) => writeln!(out, "LATER {j} ok").unwrap(),
                Err(e) => writeln!(out, "LATER {j} {} {e}", e.code()).unwrap(),
            }
        }
        let reads_ok = d.iter().all(|r| r.map(|(k, v)| check_tagged(&k, &v).is_ok()).unwrap_or(false));
        writeln!(out, "READS {}", if reads_ok { "ok" } else { "bad" }).unwrap();
        writeln!(out, "SYNC {:?}", store.sync().map_err(|e| e.code())).unwrap();
    }
    writeln!(out, "END").unwrap();
}

fn run_fsize_child(phase: &str, dir: &Path, limit: u64) -> Vec<String> {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_real_file_size_limit_fails_writes_cleanly", "--nocapture", "--test-threads", "1"])
        .env(FSIZE_ENV, phase)
        .env("JESSY_FSIZE_DIR", dir)
        .env("JESSY_FSIZE_LIMIT", limit.to_string())
        .stderr(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "child ({phase}, limit {limit}) died: {:?}\n{text}", out.status);
    text.lines().map(|l| l.to_string()).collect()
}

#[test]
fn a_real_file_size_limit_fails_writes_cleanly() {
    if let Ok(phase) = std::env::var(FSIZE_ENV) {
        fsize_child(&phase);
        return;
    }
    let open = |dir: &Path| {
        Store::open_with(dir, Config::default().initial_size(4096).max_size(64 << 10).background_compaction(false))
    };
    // Limits between the initial size and MMAP_MAX_SIZE: growing the region hits the limit.
    for limit in [5000u64, 9000, 20_000, 40_000] {
        let dir = scratch();
        let lines = run_fsize_child("mid", dir.path(), limit);
        let acked: Vec<u64> = lines.iter().filter_map(|l| l.strip_prefix("ACK ")?.parse().ok()).collect();
        let fail = lines.iter().find(|l| l.starts_with("FAIL ")).unwrap_or_else(|| panic!("no failure: {lines:?}"));
        assert!(fail.contains("io_error") && fail.contains("os error 27"), "EFBIG expected: {fail}");
        assert!(lines.iter().any(|l| l == "READS ok"), "reads after the failure: {lines:?}");
        assert!(!acked.is_empty(), "limit {limit}: nothing was written before it");
        // The parent, with no limit: every acknowledged write is there, the failed one not.
        let store = open(dir.path()).unwrap();
        let d = store.get_dimension("default").unwrap();
        let mut want = BTreeMap::new();
        for i in &acked {
            let k = key(i % 100);
            want.insert(k.clone(), tagged(&k, *i, 700));
        }
        let later_ok: Vec<u64> =
            lines.iter().filter_map(|l| l.strip_prefix("LATER ")?.strip_suffix(" ok")?.parse().ok()).collect();
        if let Some(j) = later_ok.last() {
            let k = b"later".to_vec();
            want.insert(k.clone(), tagged(&k, *j, [700, 10][*j as usize]));
        }
        let got: BTreeMap<Vec<u8>, Vec<u8>> = d.iter().map(|r| r.map(|(k, v)| (k, v.to_vec())).unwrap()).collect();
        assert_eq!(got.len(), want.len(), "limit {limit}: {fail}");
        assert!(got == want, "limit {limit}: the store differs from what the child acknowledged");
        d.put("after", b"the limit is gone").unwrap();
        assert!(store.verify().is_ok());
        let after: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("LATER") || l.starts_with("READS") || l.starts_with("SYNC"))
            .collect();
        eprintln!("RLIMIT_FSIZE={limit}: {} writes acknowledged, then `{fail}`; after it: {after:?}", acked.len());
    }
    // A limit too small for even a new store's first region: open fails, cleanly.
    let dir = scratch();
    let lines = run_fsize_child("open", dir.path(), 1000);
    assert!(lines.iter().any(|l| l.starts_with("OPENFAIL io_error")), "{lines:?}");
    let store = open(dir.path()).unwrap();
    store.dimension("default").unwrap().put("k", "v").unwrap();
    assert_eq!(std::fs::read_dir(dir.path().join("temp")).unwrap().count(), 0, "leftovers swept");
}
