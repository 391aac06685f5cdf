//! `jessy`: Jessy's command-line tool. `jessy serve` runs jessy-core, the HTTP service.
//!
//! Each subcommand lives in its own module with a `clap::Args` struct and a `run` function
//! returning `Result<(), Failure>`; `main` only parses and maps failures to exit codes:
//! 0 success, 1 "not found", 2 any other error (clap's usage errors are 2 as well), with
//! the reason on standard error.

mod backup;
mod bytes;
mod common;
mod compact;
mod dump;
mod failure;
mod info;
mod init;
mod kv;
mod load;
mod logging;
mod restore;
mod scan;
mod serve;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use failure::Failure;

/// mimalloc instead of glibc's malloc: a request to `jessy serve` allocates and frees a few
/// dozen small buffers (headers, bodies, log lines), and glibc's malloc and free were about 9%
/// of the CPU of a GET (docs/BENCHMARKS.md, `## HTTP`). The storage library leaves the choice
/// to the program that links it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Jessy: an embedded key-value store with a memory-mapped, log-structured engine.
///
/// Every command but `serve` works on the data directory directly (`--data DIR`, else
/// MMAP_BASE_PATH, else ./data/mmap) and takes the store's lock: while `jessy serve` runs on
/// it, use the HTTP API instead. Exit status: 0 success, 1 not found, 2 any other error.
/// Repairs the engine makes on open (a torn tail cut, an index rebuilt) are printed on
/// standard error as warnings (RUST_LOG sets the level; default warn).
#[derive(Debug, Parser)]
#[command(name = "jessy", version, propagate_version = true)]
struct Cli {
    /// Data directory, for every command [default: $MMAP_BASE_PATH, else ./data/mmap]
    #[arg(long, value_name = "DIR")]
    data: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run jessy-core, the HTTP service, until SIGTERM or Ctrl-C.
    ///
    /// Serves the store over HTTP (see docs/HTTP.md, or GET /openapi.json). On SIGTERM or
    /// Ctrl-C it stops accepting, finishes in-flight requests, syncs and closes the store.
    /// Settings come from the environment: JESSY_ADDR, JESSY_API_TOKEN, MMAP_BASE_PATH,
    /// MMAP_INITIAL_SIZE, MMAP_MAX_SIZE, JESSY_DURABILITY, RUST_LOG; flags override them.
    /// Logs are JSON lines on standard output.
    Serve(serve::ServeArgs),
    /// Create the data directory's layout (and its README.md).
    Init(init::Args),
    /// Show the store: its path, settings, and each dimension's keys, bytes and layers.
    Info(info::InfoArgs),
    /// List the dimensions, one per line: directory, name, keys.
    Dims(info::DimsArgs),
    /// Print a key's value (raw bytes) to standard output; exit 1 if it is missing.
    Get(kv::GetArgs),
    /// Store a value under a key (VALUE, or standard input for `-` or no VALUE).
    Put(kv::PutArgs),
    /// Delete a key; exit 1 if it has no value.
    Del(kv::DelArgs),
    /// List a dimension's entries in key order, as `key<TAB>value` lines or JSON lines.
    ///
    /// Text output escapes bytes so that every entry is one line: a backslash is \\, tab,
    /// newline and carriage return are \t, \n, \r, and every other control character or
    /// byte that is not valid UTF-8 is \xHH. `--escaped` reads the same escapes in
    /// --prefix/--start/--end (and in KEY for get, put and del).
    Scan(scan::Args),
    /// Give back the space of overwritten and deleted records now; prints the bytes reclaimed.
    Compact(compact::Args),
    /// Check every checksum and index entry; exit 2 on any problem, each listed with file and offset.
    Verify(verify::Args),
    /// Write every entry (of one or all dimensions) to standard output as JSON lines.
    ///
    /// One line per entry: {"dim":"<name>","key":"...","value":"..."}. A key or value that is
    /// not valid UTF-8 is written base64-encoded (standard alphabet, padded) as "key_b64" /
    /// "value_b64" instead, so any bytes round-trip. An empty dimension is one line
    /// {"dim":"<name>"}. `jessy load` reads it back.
    Dump(dump::Args),
    /// Read `jessy dump` JSON lines (from FILE or standard input) into the store.
    ///
    /// Dimensions are created as needed. Lines are checked in groups of 1000 before any of a
    /// group is written, so a malformed line stops the load with its line number and nothing
    /// of its group is written (earlier groups stay); the store is synced once, at the end.
    Load(load::Args),
    /// Write a consistent .tar.gz of consciousness/ (atomically: a failed backup leaves no file).
    ///
    /// Needs the store's lock: while `jessy serve` runs on the store, take the same archive
    /// from it with `curl -o backup.tar.gz http://<JESSY_ADDR>/v1/snapshot`.
    Backup(backup::Args),
    /// Replace the store with a backup archive (refuses a store holding data unless --force).
    ///
    /// The archive is checked whole before anything is replaced: every entry complete, tar's
    /// end-of-archive marker present, every gzip checksum matching, every file index.json
    /// lists present, every record's checksum verified.
    Restore(restore::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(dir) = cli.data {
        if matches!(cli.command, Command::Serve(_)) {
            // `jessy serve` reads MMAP_BASE_PATH itself (its own --data still wins); nothing
            // else runs yet, so setting the variable here is safe.
            std::env::set_var("MMAP_BASE_PATH", &dir);
        }
        let _ = common::TOP_DATA.set(dir);
    }
    if !matches!(cli.command, Command::Serve(_)) {
        // The engine's warnings (repairs on open) go to standard error; `serve` logs JSON.
        logging::init();
    }
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Init(args) => init::run(args),
        Command::Info(args) => info::run_info(args),
        Command::Dims(args) => info::run_dims(args),
        Command::Get(args) => kv::run_get(args),
        Command::Put(args) => kv::run_put(args),
        Command::Del(args) => kv::run_del(args),
        Command::Scan(args) => scan::run(args),
        Command::Compact(args) => compact::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Dump(args) => dump::run(args),
        Command::Load(args) => load::run(args),
        Command::Backup(args) => backup::run(args),
        Command::Restore(args) => restore::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
