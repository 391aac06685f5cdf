//! `jessy init`: create the data directory's layout and its README.

use std::path::Path;

use anyhow::Context as _;

use crate::common::{has_store, Need, StoreOpts};
use crate::Failure;

/// The data directory's documentation, written into it by `jessy init` (and `jessy restore`).
const README: &str = include_str!("../data/mmap/README.md");

/// The flags of `jessy init`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreOpts,
}

/// Opens (so creates) the store, closes it, and writes README.md if there is none.
pub fn run(args: Args) -> Result<(), Failure> {
    let base = args.store.config()?.base_path_ref().to_path_buf();
    let existed = has_store(&base);
    let store = args.store.open(Need::CreateIfMissing)?;
    let dimensions = store.dimensions().len();
    store.close().with_context(|| format!("closing the store in {}", base.display()))?;
    write_readme(&base)?;
    if existed {
        println!("a store already exists in {} ({dimensions} dimension(s)); nothing to do", base.display());
    } else {
        println!("created a store in {}", base.display());
    }
    Ok(())
}

/// Writes `README.md` into the data directory unless one is there.
pub fn write_readme(base: &Path) -> Result<(), Failure> {
    let path = base.join("README.md");
    if path.exists() {
        return Ok(());
    }
    std::fs::write(&path, README).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
