//! `jessy`: Jessy's command-line tool. `jessy serve` runs jessy-core, the HTTP service.
//!
//! Each subcommand lives in its own module with a `clap::Args` struct and a `run` function
//! returning `Result<(), Failure>`; `main` only parses and maps failures to exit codes:
//! 0 success, 1 "not found", 2 any other error (clap's usage errors are 2 as well), with
//! the reason on standard error.

mod failure;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use failure::Failure;

/// Jessy: an embedded key-value store with a memory-mapped, log-structured engine.
#[derive(Debug, Parser)]
#[command(name = "jessy", version, propagate_version = true)]
struct Cli {
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
