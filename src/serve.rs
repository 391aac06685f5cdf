//! `jessy serve`: run jessy-core.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::Failure;

/// The flags of `jessy serve` (its help text is the doc comment of `Command::Serve`).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on, like 127.0.0.1:8080 or 0.0.0.0:8080 [overrides JESSY_ADDR]
    #[arg(long, value_name = "ADDR")]
    addr: Option<String>,
    /// Data directory [overrides MMAP_BASE_PATH; default ./data/mmap]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
}

/// Runs the server on a multi-threaded runtime until it stops.
pub fn run(args: ServeArgs) -> Result<(), Failure> {
    let mut config = jessy_server::ServerConfig::from_env()?;
    if let Some(addr) = args.addr {
        config.addr = addr;
    }
    if let Some(dir) = args.data {
        config.storage = config.storage.base_path(dir);
    }
    jessy_server::init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("jessy-serve")
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(jessy_server::run(config));
    // The store is closed by now; do not wait long for stray blocking tasks (an abandoned
    // snapshot) before exiting.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result.map_err(Failure::from)
}
