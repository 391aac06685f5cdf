//! `jessy get`, `jessy put`, `jessy del`: one key at a time.

use std::ffi::OsString;
use std::io::{IsTerminal as _, Read as _, Write as _};

use anyhow::Context as _;

use crate::bytes::escape;
use crate::common::{arg_bytes, engine, existing_dimension, is_broken_pipe, key_arg, Need, StoreOpts};
use crate::Failure;

/// The flags of `jessy get`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    #[command(flatten)]
    store: StoreOpts,
    /// Dimension name (or directory name, like D01)
    dim: String,
    /// The key (its bytes as given; see --escaped)
    key: OsString,
    /// Decode \xHH, \t, \n, \r, \0 and \\ escapes in KEY (as `jessy scan` prints keys)
    #[arg(short, long)]
    escaped: bool,
}

/// The flags of `jessy put`.
#[derive(Debug, clap::Args)]
pub struct PutArgs {
    #[command(flatten)]
    store: StoreOpts,
    /// Dimension name (created if it does not exist), or directory name of an existing one (D01)
    dim: String,
    /// The key (its bytes as given; see --escaped)
    key: OsString,
    /// The value; `-` or no VALUE reads it (raw bytes) from standard input
    value: Option<OsString>,
    /// Decode \xHH, \t, \n, \r, \0 and \\ escapes in KEY and VALUE (not in standard input)
    #[arg(short, long)]
    escaped: bool,
}

/// The flags of `jessy del`.
#[derive(Debug, clap::Args)]
pub struct DelArgs {
    #[command(flatten)]
    store: StoreOpts,
    /// Dimension name (or directory name, like D01)
    dim: String,
    /// The key (its bytes as given; see --escaped)
    key: OsString,
    /// Decode \xHH, \t, \n, \r, \0 and \\ escapes in KEY
    #[arg(short, long)]
    escaped: bool,
}

fn key_not_found(key: &[u8], dim: &str) -> Failure {
    Failure::NotFound(format!("key \"{}\" in dimension {dim:?}", escape(key)))
}

/// Writes the raw value to standard output; exit 1 when the key or the dimension is missing.
pub fn run_get(args: GetArgs) -> Result<(), Failure> {
    let key = key_arg(&args.key, args.escaped)?;
    let store = args.store.open(Need::Existing)?;
    let dim = existing_dimension(&store, &args.dim)?;
    let value = dim.get(&key).map_err(engine)?.ok_or_else(|| key_not_found(&key, &args.dim))?;
    let mut out = std::io::stdout().lock();
    match out.write_all(&value).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if is_broken_pipe(&e) => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to standard output").into()),
    }
}

/// Stores the value (durably, under the default `immediate` durability); prints nothing.
pub fn run_put(args: PutArgs) -> Result<(), Failure> {
    let key = key_arg(&args.key, args.escaped)?;
    let value = match &args.value {
        Some(v) if v != "-" => arg_bytes("VALUE", v, args.escaped)?,
        _ => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("jessy: reading the value from standard input; end it with Ctrl-D");
            }
            let mut buf = Vec::new();
            stdin.lock().read_to_end(&mut buf).context("reading the value from standard input")?;
            buf
        }
    };
    let store = args.store.open(Need::Existing)?;
    let dim = store.dimension(&args.dim).map_err(engine)?;
    dim.put(&key, &value).map_err(engine)?;
    store.close().context("closing the store")?;
    Ok(())
}

/// Deletes the key; exit 1 (and nothing written) when it has no value.
pub fn run_del(args: DelArgs) -> Result<(), Failure> {
    let key = key_arg(&args.key, args.escaped)?;
    let store = args.store.open(Need::Existing)?;
    let dim = existing_dimension(&store, &args.dim)?;
    if !dim.contains_key(&key).map_err(engine)? {
        return Err(key_not_found(&key, &args.dim));
    }
    dim.delete(&key).map_err(engine)?;
    store.close().context("closing the store")?;
    Ok(())
}
