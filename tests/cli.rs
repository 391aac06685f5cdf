//! The `jessy` command line, run as a process on temporary data directories: every command,
//! exit statuses (0 / 1 / 2), standard input, binary data through dump and load, backup and
//! restore (refusals, a malicious archive, a round trip), verify finding a flipped bit, and
//! the lock error while `jessy serve` holds the store.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const JESSY: &str = env!("CARGO_BIN_EXE_jessy");

/// Runs `jessy --data <data> args...` with `stdin`, a clean environment for Jessy's variables
/// plus `env`.
fn run_env(data: &Path, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(JESSY);
    cmd.arg("--data").arg(data).args(args);
    for var in ["MMAP_BASE_PATH", "MMAP_INITIAL_SIZE", "MMAP_MAX_SIZE", "JESSY_DURABILITY", "JESSY_ADDR"] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn jessy");
    let mut pipe = child.stdin.take().expect("stdin");
    let input = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait for jessy");
    feeder.join().expect("stdin feeder");
    out
}

fn run(data: &Path, args: &[&str]) -> Output {
    run_env(data, args, b"", &[])
}

fn run_in(data: &Path, args: &[&str], stdin: &[u8]) -> Output {
    run_env(data, args, stdin, &[])
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited with a status")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts exit 0 and returns standard output.
#[track_caller]
fn ok(out: Output) -> Vec<u8> {
    assert_eq!(code(&out), 0, "expected success; stdout: {} stderr: {}", stdout(&out), stderr(&out));
    out.stdout
}

#[track_caller]
fn fails(out: &Output, status: i32, needle: &str) {
    assert_eq!(code(out), status, "stdout: {} stderr: {}", stdout(out), stderr(out));
    assert!(stderr(out).contains(needle), "stderr lacks {needle:?}: {}", stderr(out));
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn init(data: &Path) {
    ok(run(data, &["init"]));
}

const ALL_COMMANDS: [&str; 15] = [
    "serve", "init", "info", "dims", "get", "put", "del", "scan", "compact", "verify", "dump", "load", "backup",
    "restore", "help",
];

#[test]
fn every_command_has_help_and_usage_errors_exit_2() {
    let out = Command::new(JESSY).arg("--help").output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0));
    for cmd in ALL_COMMANDS {
        assert!(text.contains(cmd), "--help lacks {cmd}: {text}");
    }
    for cmd in &ALL_COMMANDS[..14] {
        let out = Command::new(JESSY).args([cmd, "--help"]).output().expect("run");
        assert_eq!(out.status.code(), Some(0), "{cmd} --help");
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(help.contains("Usage: jessy"), "{cmd}: {help}");
        assert!(help.lines().next().is_some_and(|l| !l.trim().is_empty()), "{cmd} has no description: {help}");
    }
    let out = Command::new(JESSY).args(["get", "default"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "missing KEY is a usage error");
    let out = Command::new(JESSY).args(["scan", "default", "--bogus"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn init_info_and_dims() {
    let dir = tmp();
    let data = dir.path().join("mmap");
    // No store yet: every reading command says how to make one, exit 2.
    for args in [&["info"][..], &["dims"], &["get", "default", "k"], &["verify"], &["dump"], &["scan", "default"]] {
        fails(&run(&data, args), 2, "jessy init");
    }
    let first = stdout(&run(&data, &["init"]));
    assert!(first.contains("created a store"), "{first}");
    assert!(data.join("consciousness/D01/index.json").is_file());
    assert!(data.join("proto").is_dir() && data.join("temp").is_dir());
    let readme = std::fs::read_to_string(data.join("README.md")).expect("README.md written");
    let shipped = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mmap/README.md")).unwrap();
    assert_eq!(readme, shipped);
    assert!(stdout(&run(&data, &["init"])).contains("already exists"), "init is idempotent");

    ok(run(&data, &["put", "users", "u1", "Ada"]));
    ok(run(&data, &["put", "users", "u2", "Grace"]));
    let info = stdout(&run(&data, &["info"]));
    assert!(info.contains(&data.display().to_string()), "{info}");
    for word in ["D01", "default", "D02", "users", "KEYS", "LIVE BYTES", "DISK BYTES", "LAYERS"] {
        assert!(info.contains(word), "info lacks {word}: {info}");
    }
    let json: serde_json::Value = serde_json::from_slice(&ok(run(&data, &["info", "--json"]))).expect("info --json");
    assert_eq!(json["path"], data.display().to_string());
    assert_eq!(json["dimensions"][1]["name"], "users");
    assert_eq!(json["dimensions"][1]["keys"], 2);
    assert_eq!(json["dimensions"][1]["dir"], "D02");
    assert!(json["dimensions"][1]["disk_bytes"].as_u64().unwrap() > 0);
    assert!(json["dimensions"][1]["layers"].as_u64().unwrap() >= 1);

    assert_eq!(stdout(&run(&data, &["dims"])), "D01\tdefault\t0\nD02\tusers\t2\n");
    let dims: serde_json::Value = serde_json::from_slice(&ok(run(&data, &["dims", "--json"]))).unwrap();
    assert_eq!(dims["dimensions"].as_array().unwrap().len(), 2);

    // MMAP_BASE_PATH is the default data directory; --data after the subcommand works too.
    let out = Command::new(JESSY).arg("dims").env("MMAP_BASE_PATH", &data).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "D01\tdefault\t0\nD02\tusers\t2\n");
    let out = Command::new(JESSY).arg("dims").arg("--data").arg(&data).env_remove("MMAP_BASE_PATH").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    // A malformed variable is exit 2, naming it.
    fails(&run_env(&data, &["dims"], b"", &[("MMAP_MAX_SIZE", "ten")]), 2, "MMAP_MAX_SIZE");
}

#[test]
fn get_put_del_and_their_exit_statuses() {
    let dir = tmp();
    let data = dir.path();
    init(data);
    ok(run(data, &["put", "default", "greeting", "hello"]));
    assert_eq!(ok(run(data, &["get", "default", "greeting"])), b"hello");
    assert_eq!(ok(run(data, &["get", "D01", "greeting"])), b"hello", "a directory name works too");

    fails(&run(data, &["get", "default", "nope"]), 1, "not found");
    fails(&run(data, &["get", "nodim", "greeting"]), 1, "nodim");

    // `-` and a missing VALUE read standard input, byte for byte.
    let binary = [0u8, 0xff, b'\n', 0xfe, b'x', 0];
    ok(run_in(data, &["put", "default", "bin", "-"], &binary));
    assert_eq!(ok(run(data, &["get", "default", "bin"])), binary);
    ok(run_in(data, &["put", "default", "piped"], b"from stdin\n"));
    assert_eq!(ok(run(data, &["get", "default", "piped"])), b"from stdin\n");

    // Escaped keys and values: \xHH and friends.
    ok(run(data, &["put", "-e", "default", "k\\x00\\xff", "v\\tw\\x01"]));
    assert_eq!(ok(run(data, &["get", "--escaped", "default", "k\\x00\\xff"])), b"v\tw\x01");
    fails(&run(data, &["get", "-e", "default", "bad\\q"]), 2, "unknown escape");

    // put creates the dimension; a bad name, an empty key, a huge key are errors (2).
    ok(run(data, &["put", "fresh", "k", "v"]));
    assert_eq!(ok(run(data, &["get", "fresh", "k"])), b"v");
    fails(&run(data, &["put", "no/slash", "k", "v"]), 2, "invalid dimension name");
    fails(&run(data, &["put", "default", "", "v"]), 2, "empty key");
    let long = "k".repeat(5000);
    fails(&run(data, &["put", "default", &long, "v"]), 2, "4096");
    // No key can have those shapes, so reading or deleting one is the same mistake, not a miss.
    for cmd in ["get", "del"] {
        fails(&run(data, &[cmd, "default", ""]), 2, "empty key");
        fails(&run(data, &[cmd, "default", &long]), 2, "4096");
        fails(&run(data, &[cmd, "-e", "default", "\\x00"]), 1, "not found"); // one byte: a valid key
    }

    ok(run(data, &["del", "default", "greeting"]));
    fails(&run(data, &["get", "default", "greeting"]), 1, "greeting");
    fails(&run(data, &["del", "default", "greeting"]), 1, "not found");
    fails(&run(data, &["del", "nodim", "greeting"]), 1, "nodim");
}

#[test]
fn scan_filters_orders_and_escapes() {
    let dir = tmp();
    let data = dir.path();
    init(data);
    let mut lines = String::new();
    for k in ["a1", "a2", "a3", "b1", "b2", "c1"] {
        lines += &format!("{{\"dim\":\"s\",\"key\":\"{k}\",\"value\":\"v-{k}\"}}\n");
    }
    lines += "{\"dim\":\"s\",\"key\":\"t\\tab\",\"value\":\"line\\nbreak\\\\\"}\n";
    lines += "{\"dim\":\"s\",\"key_b64\":\"/w==\",\"value_b64\":\"AP8=\"}\n";
    ok(run_in(data, &["load"], lines.as_bytes()));

    let all = stdout(&run(data, &["scan", "s"]));
    assert_eq!(
        all,
        "a1\tv-a1\na2\tv-a2\na3\tv-a3\nb1\tv-b1\nb2\tv-b2\nc1\tv-c1\nt\\tab\tline\\nbreak\\\\\n\\xFF\t\\x00\\xFF\n"
    );
    assert_eq!(stdout(&run(data, &["scan", "s", "--prefix", "a"])), "a1\tv-a1\na2\tv-a2\na3\tv-a3\n");
    assert_eq!(stdout(&run(data, &["scan", "s", "--start", "a2", "--end", "b2", "--keys-only"])), "a2\na3\nb1\n");
    assert_eq!(stdout(&run(data, &["scan", "s", "--reverse", "--limit", "2", "--keys-only"])), "\\xFF\nt\\tab\n");
    assert_eq!(stdout(&run(data, &["scan", "s", "--prefix", "b", "--reverse"])), "b2\tv-b2\nb1\tv-b1\n");
    assert_eq!(stdout(&run(data, &["scan", "s", "-e", "--prefix", "\\xff", "--keys-only"])), "\\xFF\n");
    assert_eq!(stdout(&run(data, &["scan", "s", "--prefix", "zzz"])), "");

    let json = stdout(&run(data, &["scan", "s", "--json", "--start", "t"]));
    let rows: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["key"], "t\tab");
    assert_eq!(rows[0]["value"], "line\nbreak\\");
    assert_eq!(rows[1]["key_b64"], "/w==");
    assert_eq!(rows[1]["value_b64"], "AP8=");
    assert_eq!(rows[1]["dim"], "s");

    fails(&run(data, &["scan", "nodim"]), 1, "nodim");
}

/// Keys and values that are not text: NUL, 0xFF, invalid UTF-8, newlines, empty values.
fn awkward_entries() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        (vec![0x00], vec![0xff, 0x00, 0xfe]),
        (vec![0xff, 0xff], b"".to_vec()),
        (b"plain".to_vec(), b"text value".to_vec()),
        (b"nul\x00inside".to_vec(), b"\x00\x00".to_vec()),
        (vec![0xc3, 0x28], b"invalid utf-8 key".to_vec()),
        ("unicode ✓ é".as_bytes().to_vec(), "värde ✓".as_bytes().to_vec()),
        (b"new\nline\ttab".to_vec(), b"new\nline\r\n".to_vec()),
        (b"quote\"back\\slash".to_vec(), vec![0x80, 0x81, 0x82]),
    ]
}

fn escaped(bytes: &[u8]) -> String {
    let mut s = String::new();
    for b in bytes {
        s += &format!("\\x{b:02x}");
    }
    s
}

#[test]
fn dump_and_load_round_trip_any_bytes() {
    let dir = tmp();
    let src = dir.path().join("src");
    init(&src);
    for (k, v) in awkward_entries() {
        ok(run_in(&src, &["put", "-e", "bin", &escaped(&k), "-"], &v));
    }
    ok(run(&src, &["put", "default", "hello", "world"]));
    // An empty dimension survives too.
    ok(run(&src, &["put", "empty", "k", "v"]));
    ok(run(&src, &["del", "empty", "k"]));

    let dump = ok(run(&src, &["dump"]));
    let text = String::from_utf8(dump.clone()).expect("a dump is UTF-8 text");
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        assert!(v["dim"].is_string(), "{line}");
    }
    assert!(text.contains("\"key_b64\""), "non-UTF-8 keys are base64: {text}");
    assert!(text.contains("{\"dim\":\"empty\"}"), "{text}");
    assert!(text.contains("{\"dim\":\"default\",\"key\":\"hello\",\"value\":\"world\"}"), "{text}");

    let dst = dir.path().join("dst");
    let loaded = stdout(&run_in(&dst, &["load"], &dump));
    assert!(loaded.contains("loaded 9 records (lines 1-10)"), "{loaded}");
    assert_eq!(ok(run(&dst, &["dump"])), dump, "dump -> load -> dump is the identity");
    for (k, v) in awkward_entries() {
        assert_eq!(ok(run(&dst, &["get", "-e", "bin", &escaped(&k)])), v, "key {k:?}");
    }
    assert_eq!(stdout(&run(&dst, &["dims"])), "D01\tdefault\t1\nD02\tbin\t8\nD03\tempty\t0\n");

    // One dimension only; load from a FILE argument, into another name.
    let one = ok(run(&src, &["dump", "bin"]));
    assert_eq!(String::from_utf8_lossy(&one).lines().count(), 8);
    let file = dir.path().join("bin.jsonl");
    std::fs::write(&file, &one).unwrap();
    ok(run(&dst, &["load", file.to_str().unwrap(), "--into", "copy"]));
    assert_eq!(ok(run(&dst, &["get", "-e", "copy", "\\x00"])), [0xff, 0x00, 0xfe]);
    fails(&run(&src, &["dump", "nodim"]), 1, "nodim");
}

#[test]
fn load_stops_at_a_malformed_line_and_writes_nothing_of_its_group() {
    let dir = tmp();
    let data = dir.path();
    init(data);
    let mut input = String::new();
    for i in 0..1699 {
        input += &format!("{{\"dim\":\"big\",\"key\":\"k{i:05}\",\"value\":\"v{i}\"}}\n");
    }
    input += "{\"dim\":\"big\",\"key\":\"broken\"\n"; // line 1700: not JSON
    for i in 1700..1800 {
        input += &format!("{{\"dim\":\"big\",\"key\":\"k{i:05}\",\"value\":\"v{i}\"}}\n");
    }
    let out = run_in(data, &["load"], input.as_bytes());
    fails(&out, 2, "line 1700");
    assert!(stderr(&out).contains("nothing from line 1001 on was written"), "{}", stderr(&out));
    // The first group (lines 1-1000) is in; nothing of the second.
    assert_eq!(stdout(&run(data, &["dims"])), "D01\tdefault\t0\nD02\tbig\t1000\n");
    fails(&run(data, &["get", "big", "k01000"]), 1, "k01000");
    assert_eq!(ok(run(data, &["get", "big", "k00999"])), b"v999");

    // Other malformed lines, each named by its number.
    for (line, needle) in [
        ("{\"dim\":\"x\",\"key\":\"k\"}", "`value`"),
        ("{\"key\":\"k\",\"value\":\"v\"}", "`dim` is missing"),
        ("{\"dim\":\"x\",\"key\":\"k\",\"value_b64\":\"***\"}", "base64"),
        ("{\"dim\":\"x\",\"key\":\"k\",\"key_b64\":\"aw==\",\"value\":\"v\"}", "both"),
        ("{\"dim\":\"bad name\",\"key\":\"k\",\"value\":\"v\"}", "invalid dimension name"),
        ("{\"dim\":\"x\",\"key\":\"\",\"value\":\"v\"}", "empty"),
        ("{\"dim\":\"x\",\"key\":\"k\",\"value\":\"v\",\"extra\":1}", "unknown field"),
    ] {
        let input = format!("{{\"dim\":\"x\",\"key\":\"ok\",\"value\":\"1\"}}\n{line}\n");
        let out = run_in(data, &["load"], input.as_bytes());
        fails(&out, 2, "line 2:");
        assert!(stderr(&out).contains(needle), "{line}: {}", stderr(&out));
    }
    assert!(!stdout(&run(data, &["dims"])).contains("\tx\t"), "no bad group created a dimension");
    let out = run_in(data, &["load"], b"{\"dim\":\"x\",\"key\":\"k\",\"value\":\"v\"}\n\xff\xfe\n");
    fails(&out, 2, "line 2: not valid UTF-8");
}

/// A store with small regions (4 KiB), so that a little data seals layers.
const SMALL: [(&str, &str); 2] = [("MMAP_MAX_SIZE", "4096"), ("MMAP_INITIAL_SIZE", "4096")];

fn fill_small(data: &Path, keys: usize, round: usize) {
    let mut input = String::new();
    for i in 0..keys {
        input += &format!("{{\"dim\":\"default\",\"key\":\"key{i:04}\",\"value\":\"{}-{round}\"}}\n", "x".repeat(100));
    }
    ok(run_env(data, &["load"], input.as_bytes(), &SMALL));
}

#[test]
fn verify_finds_a_flipped_bit_in_a_sealed_layer() {
    let dir = tmp();
    let data = dir.path();
    ok(run_env(data, &["init"], b"", &SMALL));
    fill_small(data, 200, 0);
    let layer = data.join("consciousness/D01/layers/L00000001.mmap");
    assert!(layer.is_file(), "200 records of 100 bytes seal layers in 4 KiB regions");
    let good = stdout(&run_env(data, &["verify"], b"", &SMALL));
    assert!(good.contains("OK"), "{good}");
    assert!(good.contains("200 keys"), "{good}");
    let json: serde_json::Value =
        serde_json::from_slice(&ok(run_env(data, &["verify", "--json"], b"", &SMALL))).unwrap();
    assert_eq!(json["problems"].as_array().unwrap().len(), 0);

    // Flip one bit in the middle of the first layer's records (past its 32-byte header).
    let mut bytes = std::fs::read(&layer).unwrap();
    let at = 32 + 24 + 12 + 40;
    bytes[at] ^= 0x10;
    std::fs::write(&layer, &bytes).unwrap();

    let out = run_env(data, &["verify"], b"", &SMALL);
    assert_eq!(code(&out), 2, "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    let report = stdout(&out);
    assert!(report.contains("problem: ") && report.contains("L00000001.mmap at offset "), "{report}");
    assert!(report.contains(": entry checksum mismatch") && !report.contains("Bad("), "plain reasons: {report}");
    assert!(stderr(&out).contains("problem"), "{}", stderr(&out));
    let out = run_env(data, &["verify", "--json"], b"", &SMALL);
    assert_eq!(code(&out), 2);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = json["problems"].as_array().unwrap();
    assert!(!problems.is_empty());
    assert!(problems[0]["file"].as_str().unwrap().ends_with("L00000001.mmap"), "{json}");
    assert!(problems[0]["offset"].is_u64());
}

#[test]
fn compact_reclaims_overwritten_space() {
    let dir = tmp();
    let data = dir.path();
    ok(run_env(data, &["init"], b"", &SMALL));
    fill_small(data, 60, 0);
    fill_small(data, 60, 1);
    fill_small(data, 60, 2);
    let before: serde_json::Value =
        serde_json::from_slice(&ok(run_env(data, &["info", "--json"], b"", &SMALL))).unwrap();
    let out = stdout(&run_env(data, &["compact", "--threshold", "0"], b"", &SMALL));
    assert!(out.contains("D01 default: reclaimed"), "{out}");
    // As docs/CLI.md shows it: "reclaimed N bytes (M layers rewritten)".
    for line in out.lines() {
        let rest = line.split_once(": reclaimed ").map(|(_, r)| r).unwrap_or_else(|| panic!("{out}"));
        let (bytes, layers) = rest.split_once(" bytes (").unwrap_or_else(|| panic!("{out}"));
        assert!(bytes.parse::<u64>().is_ok() && layers.ends_with(" layers rewritten)"), "{out}");
        assert!(layers.trim_end_matches(" layers rewritten)").parse::<u64>().is_ok(), "{out}");
    }
    let total = out.lines().last().unwrap().to_string();
    assert!(total.starts_with("total: reclaimed") && !total.contains("reclaimed 0 bytes"), "{out}");
    let after: serde_json::Value =
        serde_json::from_slice(&ok(run_env(data, &["info", "--json"], b"", &SMALL))).unwrap();
    let disk = |v: &serde_json::Value| v["dimensions"][0]["disk_bytes"].as_u64().unwrap();
    assert!(disk(&after) < disk(&before), "{before} -> {after}");
    assert_eq!(after["dimensions"][0]["keys"], 60);
    ok(run_env(data, &["verify"], b"", &SMALL));
    let round2 = format!("{}-2", "x".repeat(100));
    assert_eq!(ok(run_env(data, &["get", "default", "key0042"], b"", &SMALL)), round2.as_bytes());
    // One dimension by name; a missing one is exit 1; a bad threshold exit 2.
    assert!(stdout(&run_env(data, &["compact", "default"], b"", &SMALL)).contains("total: reclaimed"));
    fails(&run(data, &["compact", "nodim"]), 1, "nodim");
    fails(&run(data, &["compact", "--threshold", "2"]), 2, "threshold");
}

#[test]
fn backup_wipe_restore_round_trip() {
    let dir = tmp();
    let data = dir.path().join("mmap");
    init(&data);
    for (k, v) in awkward_entries() {
        ok(run_in(&data, &["put", "-e", "bin", &escaped(&k), "-"], &v));
    }
    ok(run(&data, &["put", "default", "a", "1"]));
    let before = ok(run(&data, &["dump"]));

    let archive = dir.path().join("backup.tar.gz");
    let out = stdout(&run(&data, &["backup", archive.to_str().unwrap()]));
    assert!(out.contains("wrote"), "{out}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 2, "only mmap/ and the archive: {leftovers:?}");
    // Backing up again replaces the archive.
    ok(run(&data, &["backup", archive.to_str().unwrap()]));

    // The archive is a plain tar.gz of consciousness/.
    let names = archive_names(&archive);
    assert!(names.iter().all(|n| n.starts_with("consciousness")), "{names:?}");

    std::fs::remove_dir_all(&data).unwrap();
    let out = stdout(&run(&data, &["restore", archive.to_str().unwrap()]));
    assert!(out.contains("restored 2 dimension(s)"), "{out}");
    assert_eq!(ok(run(&data, &["dump"])), before);
    ok(run(&data, &["verify"]));
    assert!(data.join("README.md").is_file());
    assert_eq!(std::fs::read_dir(data.join("temp")).unwrap().count(), 0, "no staging left behind");

    // `-` both ways: backup to standard output, restore from standard input.
    let streamed = ok(run(&data, &["backup", "-"]));
    assert_eq!(&streamed[..2], &[0x1f, 0x8b], "gzip");
    let other = dir.path().join("other");
    ok(run_in(&other, &["restore", "-"], &streamed));
    assert_eq!(ok(run(&other, &["dump"])), before);

    // Backing up a directory without a store fails, and leaves no file.
    let nowhere = dir.path().join("nothing");
    let target = dir.path().join("never.tar.gz");
    fails(&run(&nowhere, &["backup", target.to_str().unwrap()]), 2, "jessy init");
    assert!(!target.exists());
}

fn archive_names(path: &Path) -> Vec<String> {
    let f = std::fs::File::open(path).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    ar.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect()
}

#[test]
fn restore_refuses_a_store_with_data_unless_forced() {
    let dir = tmp();
    let a = dir.path().join("a");
    init(&a);
    ok(run(&a, &["put", "default", "from", "a"]));
    let archive = dir.path().join("a.tar.gz");
    ok(run(&a, &["backup", archive.to_str().unwrap()]));

    // An initialised but empty store may be restored into without --force.
    let empty = dir.path().join("empty");
    init(&empty);
    ok(run(&empty, &["restore", archive.to_str().unwrap()]));
    assert_eq!(ok(run(&empty, &["get", "default", "from"])), b"a");

    let b = dir.path().join("b");
    init(&b);
    ok(run(&b, &["put", "default", "from", "b"]));
    ok(run(&b, &["put", "other", "only-in", "b"]));
    fails(&run(&b, &["restore", archive.to_str().unwrap()]), 2, "--force");
    assert_eq!(ok(run(&b, &["get", "default", "from"])), b"b", "a refused restore changes nothing");

    let out = stdout(&run(&b, &["restore", "--force", archive.to_str().unwrap()]));
    assert!(out.contains("restored"), "{out}");
    assert_eq!(ok(run(&b, &["get", "default", "from"])), b"a");
    fails(&run(&b, &["get", "other", "only-in"]), 1, "other");

    // Not an archive at all, or no consciousness/ in it: exit 2, nothing changed.
    let junk = dir.path().join("junk.tar.gz");
    std::fs::write(&junk, b"this is not a tar file at all, not even close.............").unwrap();
    let out = run(&b, &["restore", "--force", junk.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_eq!(ok(run(&b, &["get", "default", "from"])), b"a");
    fails(&run(&b, &["restore", "/no/such/file.tar.gz"]), 2, "/no/such/file.tar.gz");
}

#[test]
fn a_failed_restore_leaves_nothing_it_created() {
    let dir = tmp();
    let junk = dir.path().join("junk.tar.gz");
    std::fs::write(&junk, b"this is not a tar file at all, not even close.............").unwrap();
    // A whole archive that is not a backup: no consciousness/ in it.
    let empty_tar = dir.path().join("empty.tar.gz");
    let gz = flate2::write::GzEncoder::new(std::fs::File::create(&empty_tar).unwrap(), flate2::Compression::fast());
    tar::Builder::new(gz).into_inner().unwrap().finish().unwrap();

    for archive in [&junk, &empty_tar] {
        // A data directory (and a parent) that did not exist: gone again.
        let new = dir.path().join("new");
        let data = new.join("mmap");
        let out = run(&data, &["restore", archive.to_str().unwrap()]);
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        assert!(!new.exists(), "a failed restore left {} behind", new.display());

        // An existing, empty directory (a fresh volume): still there, still empty.
        let mounted = dir.path().join("mounted");
        std::fs::create_dir_all(&mounted).unwrap();
        let out = run(&mounted, &["restore", archive.to_str().unwrap()]);
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        let left: Vec<_> = std::fs::read_dir(&mounted).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "a failed restore left {left:?} in {}", mounted.display());
    }

    // The same into a store that exists keeps it as it was (its lock file and temp/ included).
    let data = dir.path().join("store");
    init(&data);
    ok(run(&data, &["put", "default", "k", "v"]));
    fails(&run(&data, &["restore", "--force", junk.to_str().unwrap()]), 2, "junk.tar.gz");
    assert!(data.join("jessy.lock").is_file() && data.join("temp").is_dir());
    assert_eq!(ok(run(&data, &["get", "default", "k"])), b"v");

    // And a restore that succeeds into a new directory keeps what it made.
    let archive = dir.path().join("good.tar.gz");
    ok(run(&data, &["backup", archive.to_str().unwrap()]));
    let fresh = dir.path().join("fresh").join("mmap");
    ok(run(&fresh, &["restore", archive.to_str().unwrap()]));
    assert_eq!(ok(run(&fresh, &["get", "default", "k"])), b"v");
}

/// A `.tar.gz` with one regular entry named `name` (written raw, so `..` and absolute paths
/// get through) next to a valid-looking `consciousness/` directory.
fn evil_archive(path: &Path, name: &[u8], kind: tar::EntryType) {
    let gz = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    let mut dir = tar::Header::new_gnu();
    dir.set_path("consciousness/").unwrap();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_cksum();
    builder.append(&dir, std::io::empty()).unwrap();

    let body = b"pwned";
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_entry_type(kind);
    header.set_mode(0o644);
    if kind == tar::EntryType::Symlink {
        header.set_size(0);
        header.as_old_mut().linkname[..11].copy_from_slice(b"/etc/passwd");
        header.set_cksum();
        builder.append(&header, std::io::empty()).unwrap();
    } else {
        header.set_size(body.len() as u64);
        header.set_cksum();
        builder.append(&header, &body[..]).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap();
}

#[test]
fn restore_rejects_entries_outside_consciousness() {
    let dir = tmp();
    let data = dir.path().join("deep/mmap");
    init(&data);
    ok(run(&data, &["put", "default", "keep", "me"]));
    let cases: [(&[u8], tar::EntryType, &str); 4] = [
        (b"../evil", tar::EntryType::Regular, "`..`"),
        (b"consciousness/../../evil", tar::EntryType::Regular, "`..`"),
        (b"/tmp/jessy-cli-test-evil", tar::EntryType::Regular, "absolute"),
        (b"consciousness/D01/link", tar::EntryType::Symlink, "Symlink"),
    ];
    for (i, (name, kind, needle)) in cases.into_iter().enumerate() {
        let archive = dir.path().join(format!("evil{i}.tar.gz"));
        evil_archive(&archive, name, kind);
        let out = run(&data, &["restore", "--force", archive.to_str().unwrap()]);
        fails(&out, 2, "rejected entry");
        assert!(stderr(&out).contains(needle), "{}", stderr(&out));
        assert_eq!(ok(run(&data, &["get", "default", "keep"])), b"me", "the store is untouched");
    }
    assert!(!dir.path().join("deep/evil").exists() && !dir.path().join("evil").exists());
    assert!(!Path::new("/tmp/jessy-cli-test-evil").exists());
    assert_eq!(std::fs::read_dir(data.join("temp")).unwrap().count(), 0, "staging removed");
    // An archive of some other directory (no consciousness/ entry at all) is refused too.
    let other = dir.path().join("other.tar.gz");
    evil_archive(&other, b"consciousness/D01/ok", tar::EntryType::Regular);
    let out = run(&data, &["restore", "--force", other.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "a store without index.json does not verify: {}", stderr(&out));
    assert_eq!(ok(run(&data, &["get", "default", "keep"])), b"me");
}

/// `jessy serve` on a free loopback port.
struct Server {
    child: std::process::Child,
    addr: String,
}

impl Server {
    fn start(data: &Path) -> Server {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(JESSY)
            .arg("serve")
            .env("JESSY_ADDR", &addr)
            .env("MMAP_BASE_PATH", data)
            .env("RUST_LOG", "warn")
            .env_remove("JESSY_API_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn jessy serve");
        let mut server = Server { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !server.healthy() {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("jessy serve exited early: {status}");
            }
            assert!(Instant::now() < deadline, "jessy serve never became healthy on {}", server.addr);
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn healthy(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(&self.addr) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req = format!("GET /health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr);
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        resp.starts_with("HTTP/1.1 200")
    }

    fn stop(mut self) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.wait();
    }
}

#[test]
fn a_store_held_by_jessy_serve_points_to_the_http_api() {
    let dir = tmp();
    let data: PathBuf = dir.path().join("mmap");
    init(&data);
    ok(run(&data, &["put", "default", "k", "v"]));
    let archive = dir.path().join("a.tar.gz");
    ok(run(&data, &["backup", archive.to_str().unwrap()]));
    let server = Server::start(&data);
    let env = [("JESSY_ADDR", server.addr.as_str())];
    for args in [
        &["dims"][..],
        &["get", "default", "k"],
        &["put", "default", "k", "w"],
        &["restore", "--force", archive.to_str().unwrap()],
    ] {
        let out = run_env(&data, args, b"", &env);
        fails(&out, 2, "locked by another process");
        let msg = stderr(&out);
        assert!(msg.contains("pid "), "{msg}");
        assert!(msg.contains("jessy serve") && msg.contains("HTTP API"), "{msg}");
        assert!(msg.contains(&format!("curl http://{}/v1/", server.addr)), "{msg}");
    }
    let backup = dir.path().join("b.tar.gz");
    let out = run_env(&data, &["backup", backup.to_str().unwrap()], b"", &env);
    fails(&out, 2, "locked by another process");
    let msg = stderr(&out);
    assert!(msg.contains(&format!("`curl -o backup.tar.gz http://{}/v1/snapshot`", server.addr)), "{msg}");
    assert!(!backup.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 2, "no partial archive: {leftovers:?}");
    server.stop();
    assert_eq!(ok(run(&data, &["get", "default", "k"])), b"v", "usable again once the server is gone");
}

/// A store with two dimensions (so a cut archive can lose a whole one) and the `.tar.gz`
/// `jessy backup` makes of it.
fn two_dimension_backup(dir: &Path) -> (PathBuf, Vec<u8>) {
    let data = dir.join("source");
    init(&data);
    let mut input = String::new();
    for dim in ["default", "second"] {
        for i in 0..50 {
            input +=
                &format!("{{\"dim\":\"{dim}\",\"key\":\"key{i:03}\",\"value\":\"value-{i}-{}\"}}\n", "v".repeat(40));
        }
    }
    ok(run_in(&data, &["load"], input.as_bytes()));
    let archive = dir.join("backup.tar.gz");
    ok(run(&data, &["backup", archive.to_str().unwrap()]));
    let bytes = std::fs::read(&archive).unwrap();
    (data, bytes)
}

fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz).read_to_end(&mut out).unwrap();
    out
}

fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(raw).unwrap();
    gz.finish().unwrap()
}

/// Each entry of a plain tar: (name, header offset, data offset, size).
fn tar_entries(tar_bytes: &[u8]) -> Vec<(String, usize, usize, usize)> {
    let mut ar = tar::Archive::new(tar_bytes);
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            (name, e.raw_header_position() as usize, e.raw_file_position() as usize, e.size() as usize)
        })
        .collect()
}

/// A store holding one key, `keep` = `me`, to restore over with --force: a refused restore
/// must leave it as it was.
fn keeper(dir: &Path) -> PathBuf {
    let data = dir.join("target");
    init(&data);
    ok(run(&data, &["put", "default", "keep", "me"]));
    data
}

#[track_caller]
fn untouched(data: &Path) {
    assert_eq!(ok(run(data, &["get", "default", "keep"])), b"me", "a refused restore changes nothing");
    fails(&run(data, &["get", "second", "key000"]), 1, "second");
    assert_eq!(std::fs::read_dir(data.join("temp")).unwrap().count(), 0, "staging removed");
}

#[test]
fn restore_checks_the_gzip_checksum_and_reads_the_archive_to_its_end() {
    let dir = tmp();
    let (_, good) = two_dimension_backup(dir.path());
    let target = keeper(dir.path());
    let restore = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        run(&target, &["restore", "--force", path.to_str().unwrap()])
    };

    // One changed byte of file data, in a stream whose deflate part is valid: only the
    // gzip trailer's CRC-32 (here the original's) tells.
    let mut tar_bytes = gunzip(&good);
    let (_, _, at, size) = tar_entries(&tar_bytes).into_iter().find(|e| e.0.ends_with("region.mmap")).unwrap();
    tar_bytes[at + size - 10] ^= 0x01;
    let mut tampered = gzip(&tar_bytes);
    let n = tampered.len();
    tampered[n - 8..n - 4].copy_from_slice(&good[good.len() - 8..good.len() - 4]);
    let out = restore("tampered.tar.gz", &tampered);
    fails(&out, 2, "gzip data is damaged");
    untouched(&target);

    // A flipped bit in the CRC itself, and a trailer cut off.
    let mut bad_crc = good.clone();
    let n = bad_crc.len();
    bad_crc[n - 6] ^= 0x20;
    fails(&restore("crc.tar.gz", &bad_crc), 2, "matching checksum");
    untouched(&target);
    fails(&restore("cut.tar.gz", &good[..good.len() - 4]), 2, "gzip data is damaged");
    untouched(&target);

    // Garbage after the gzip data is refused; zero padding (which `gzip -d` ignores) and a
    // second gzip member are fine.
    let mut garbage = good.clone();
    garbage.extend_from_slice(b"garbage");
    fails(&restore("garbage.tar.gz", &garbage), 2, "neither another gzip member nor zero padding");
    untouched(&target);
    let mut padded = good.clone();
    padded.extend_from_slice(&[0; 1000]);
    let out = restore("padded.tar.gz", &padded);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("restored 2 dimension(s) (100 key(s)"), "{}", stdout(&out));
    let plain = gunzip(&good);
    let mut two_members = gzip(&plain[..5000]);
    two_members.extend(gzip(&plain[5000..]));
    let out = restore("members.tar.gz", &two_members);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(ok(run(&target, &["get", "second", "key049"])), format!("value-49-{}", "v".repeat(40)).as_bytes());
}

#[test]
fn restore_refuses_a_tar_without_its_end_of_archive_marker() {
    let dir = tmp();
    let (_, good) = two_dimension_backup(dir.path());
    let target = keeper(dir.path());
    let plain = gunzip(&good);
    let entries = tar_entries(&plain);
    // Cut exactly where the second dimension's first entry starts: every entry before it is
    // whole, and the first dimension alone opens and verifies.
    let second = entries
        .iter()
        .filter(|e| e.0.trim_end_matches('/').matches('/').count() == 1)
        .nth(1)
        .expect("two dimensions")
        .1;
    let last = entries.last().unwrap();
    let data_end = last.2 + last.3.div_ceil(512) * 512;
    for (name, cut) in
        [("first-dimension-only.tar", second), ("no-end-marker.tar", data_end), ("one-zero-block.tar", data_end + 512)]
    {
        let path = dir.path().join(name);
        std::fs::write(&path, &plain[..cut]).unwrap();
        let out = run(&target, &["restore", "--force", path.to_str().unwrap()]);
        fails(&out, 2, "truncated");
        assert!(stderr(&out).contains("end-of-archive marker"), "{}", stderr(&out));
        untouched(&target);
    }
    // The same bytes whole restore; so does the archive from standard input.
    let whole = dir.path().join("whole.tar");
    std::fs::write(&whole, &plain).unwrap();
    let out = stdout(&run(&target, &["restore", "--force", whole.to_str().unwrap()]));
    assert!(out.contains("restored 2 dimension(s) (100 key(s)"), "{out}");
    // Another archive after the end marker is not "zero padding".
    let mut twice = plain.clone();
    twice.extend_from_slice(&plain);
    let out = run_in(&target, &["restore", "--force", "-"], &twice);
    fails(&out, 2, "data after its end-of-archive marker");
}

/// The backup, rewritten without the entries `drop` picks.
fn archive_without(good: &[u8], drop: impl Fn(&str) -> bool) -> Vec<u8> {
    let plain = gunzip(good);
    let mut builder = tar::Builder::new(Vec::new());
    let mut ar = tar::Archive::new(&plain[..]);
    for entry in ar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        if drop(&name) {
            continue;
        }
        let header = entry.header().clone();
        let mut body = Vec::new();
        entry.read_to_end(&mut body).unwrap();
        builder.append(&header, &body[..]).unwrap();
    }
    gzip(&builder.into_inner().unwrap())
}

#[test]
fn restore_names_what_an_incomplete_archive_lacks() {
    let dir = tmp();
    let data = dir.path().join("source");
    ok(run_env(&data, &["init"], b"", &SMALL));
    fill_small(&data, 200, 0);
    assert!(data.join("consciousness/D01/layers/L00000002.mmap").is_file());
    let archive = dir.path().join("full.tar.gz");
    ok(run(&data, &["backup", archive.to_str().unwrap()]));
    let good = std::fs::read(&archive).unwrap();
    let target = keeper(dir.path());

    // A layer index.json lists is missing: named as in the archive.
    let path = dir.path().join("no-layer.tar.gz");
    std::fs::write(&path, archive_without(&good, |n| n.ends_with("L00000002.mmap"))).unwrap();
    let out = run_env(&target, &["restore", "--force", path.to_str().unwrap()], b"", &SMALL);
    fails(&out, 2, "index.json lists 1 file(s) the archive does not have: consciousness/D01/layers/L00000002.mmap");
    assert_eq!(ok(run(&target, &["get", "default", "keep"])), b"me");

    // A dimension without its index.json (opening would rebuild one from whatever is there).
    let path = dir.path().join("no-manifest.tar.gz");
    std::fs::write(&path, archive_without(&good, |n| n.ends_with("D01/index.json"))).unwrap();
    let out = run_env(&target, &["restore", "--force", path.to_str().unwrap()], b"", &SMALL);
    fails(&out, 2, "no consciousness/D01/index.json");
    assert_eq!(ok(run(&target, &["get", "default", "keep"])), b"me");
}

#[test]
fn warnings_the_engine_logs_on_open_go_to_stderr_and_stdout_stays_clean() {
    let dir = tmp();
    let data = dir.path();
    ok(run_env(data, &["init"], b"", &SMALL));
    fill_small(data, 200, 0);
    let keys = data.join("consciousness/D01/layers/L00000001.keys");
    let value = format!("{}-0", "x".repeat(100));
    let warning = "jessy: warning: key index unreadable; rebuilding it from the layer";

    std::fs::remove_file(&keys).unwrap();
    let out = run_env(data, &["get", "default", "key0001"], b"", &SMALL);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(out.stdout, value.as_bytes(), "standard output is the value alone");
    assert!(stderr(&out).contains(warning), "{}", stderr(&out));
    assert!(keys.is_file(), "the open rebuilt it");

    std::fs::remove_file(&keys).unwrap();
    let out = run_env(data, &["scan", "default", "--json", "--limit", "3"], b"", &SMALL);
    assert!(stderr(&out).contains(warning), "{}", stderr(&out));
    for line in stdout(&out).lines() {
        let json: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert_eq!(json["dim"], "default");
    }
    assert_eq!(stdout(&out).lines().count(), 3);

    // RUST_LOG overrides the default level.
    std::fs::remove_file(&keys).unwrap();
    let env = [SMALL[0], SMALL[1], ("RUST_LOG", "error")];
    let out = run_env(data, &["get", "default", "key0001"], b"", &env);
    assert_eq!(out.stdout, value.as_bytes());
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

#[test]
fn verify_json_says_whether_the_store_opened() {
    let dir = tmp();
    let data = dir.path();
    ok(run_env(data, &["init"], b"", &SMALL));
    fill_small(data, 200, 0);
    let json: serde_json::Value =
        serde_json::from_slice(&ok(run_env(data, &["verify", "--json"], b"", &SMALL))).unwrap();
    assert_eq!(json["opened"], true, "{json}");
    for field in ["dimensions", "layers", "records", "bytes", "keys", "problems"] {
        assert!(json.get(field).is_some(), "{field} missing: {json}");
    }
    std::fs::remove_file(data.join("consciousness/D01/layers/L00000002.mmap")).unwrap();
    let out = run_env(data, &["verify", "--json"], b"", &SMALL);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["opened"], false, "{json}");
    let problems = json["problems"].as_array().unwrap();
    assert!(problems[0]["file"].as_str().unwrap().ends_with("L00000002.mmap"), "{json}");
}

#[test]
fn a_directory_name_addresses_an_existing_dimension_in_put_and_load_alike() {
    let dir = tmp();
    let data = dir.path().join("mmap");
    init(&data);
    ok(run(&data, &["put", "D01", "a", "1"]));
    let out = run(&data, &["put", "D05", "k", "v"]);
    fails(&out, 1, "create a new one by its name");
    let line = b"{\"dim\":\"elsewhere\",\"key\":\"b\",\"value\":\"2\"}\n";
    let out = stdout(&run_in(&data, &["load", "--into", "D01"], line));
    assert!(out.contains("loaded 1 records"), "{out}");
    assert_eq!(ok(run(&data, &["get", "default", "b"])), b"2");
    fails(&run_in(&data, &["load", "--into", "D05"], line), 1, "D05");
    fails(&run_in(&data, &["load", "--into", "a/b"], line), 2, "invalid dimension name");
    let dims = stdout(&run(&data, &["dims"]));
    assert_eq!(dims.lines().count(), 1, "nothing created: {dims}");
}

#[test]
fn a_value_too_large_names_exact_sizes_when_they_round_alike() {
    let dir = tmp();
    let data = dir.path();
    init(data);
    // A 10 MiB value in 10 MiB regions: both sizes round to "10.0 MiB".
    let value = vec![b'y'; 10 << 20];
    let out = run_in(data, &["put", "default", "k", "-"], &value);
    fails(&out, 2, "MMAP_MAX_SIZE");
    let msg = stderr(&out);
    assert!(
        msg.contains("value of 10485760 bytes is larger than MMAP_MAX_SIZE allows (")
            && msg.contains(" bytes per record)"),
        "{msg}"
    );
}

#[test]
fn serve_blames_the_flag_it_was_given() {
    let dir = tmp();
    let data = dir.path().join("mmap");
    init(&data);
    let out = Command::new(JESSY)
        .args(["serve", "--addr", "127.0.0.1:99999", "--data"])
        .arg(&data)
        .env_remove("JESSY_ADDR")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let msg = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(msg.contains("cannot listen on 127.0.0.1:99999 (--addr"), "{msg}");
}

#[test]
fn a_store_held_by_another_jessy_command_says_which() {
    let dir = tmp();
    let data = dir.path().join("mmap");
    init(&data);
    // `jessy load` holds the store while it waits for its standard input.
    let mut load = Command::new(JESSY)
        .arg("--data")
        .arg(&data)
        .arg("load")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let held = format!("pid {}", load.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(data.join("jessy.lock")).unwrap_or_default().trim() != held {
        assert!(Instant::now() < deadline, "jessy load never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = run(&data, &["get", "default", "k"]);
    fails(&out, 2, "locked by another process");
    let msg = stderr(&out);
    assert!(msg.contains(&held) && msg.contains("`jessy load`") && msg.contains("wait for it to finish"), "{msg}");
    assert!(!msg.contains("jessy serve"), "{msg}");
    drop(load.stdin.take());
    assert!(load.wait().unwrap().success());
}
