//! `jessy scan`: keys (and values) of one dimension in key order.

use std::ffi::OsString;
use std::io::{BufWriter, Write as _};
use std::ops::Bound;

use crate::bytes::{escape, push_json_field, push_json_string};
use crate::common::{arg_bytes, engine, existing_dimension, is_broken_pipe, Need, StoreOpts};
use crate::Failure;

/// The flags of `jessy scan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreOpts,
    /// Dimension name (or directory name, like D01)
    dim: String,
    /// Only keys starting with P
    #[arg(long, value_name = "P", conflicts_with_all = ["start", "end"])]
    prefix: Option<OsString>,
    /// Only keys >= S
    #[arg(long, value_name = "S")]
    start: Option<OsString>,
    /// Only keys < E (exclusive)
    #[arg(long, value_name = "E")]
    end: Option<OsString>,
    /// At most N entries [default: all]
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Walk from the last key backwards
    #[arg(long)]
    reverse: bool,
    /// Print keys only
    #[arg(long)]
    keys_only: bool,
    /// Print JSON lines {"dim","key","value"} (the `jessy dump` format, which `jessy load` reads)
    #[arg(long)]
    json: bool,
    /// Decode \xHH, \t, \n, \r, \0 and \\ escapes in P, S and E
    #[arg(short, long)]
    escaped: bool,
}

/// Prints `key<TAB>value` lines with escapes (see `bytes.rs`), keys only, or JSON lines.
pub fn run(args: Args) -> Result<(), Failure> {
    let bytes = |what, v: &Option<OsString>| v.as_ref().map(|v| arg_bytes(what, v, args.escaped)).transpose();
    let prefix = bytes("--prefix", &args.prefix)?;
    let start = bytes("--start", &args.start)?;
    let end = bytes("--end", &args.end)?;
    let store = args.store.open(Need::Existing)?;
    let dim = existing_dimension(&store, &args.dim)?;
    let name = dim.name();
    let mut iter = match prefix {
        Some(p) => dim.prefix(p),
        None => {
            let lo = start.map_or(Bound::Unbounded, Bound::Included);
            let hi = end.map_or(Bound::Unbounded, Bound::Excluded);
            dim.range::<Vec<u8>, _>((lo, hi))
        }
    };
    let limit = args.limit.unwrap_or(u64::MAX);
    let mut out = BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
    let mut line = String::new();
    for _ in 0..limit {
        // Keys only: the engine lists them from its index without reading the values.
        let Some(item) = iter.next_entry_ref(args.reverse, !args.keys_only) else { break };
        let (key, value) = item.map_err(engine)?;
        line.clear();
        if args.json {
            line.push_str("{\"dim\":");
            push_json_string(&mut line, &name);
            line.push(',');
            push_json_field(&mut line, "key", key);
            if let Some(value) = &value {
                line.push(',');
                push_json_field(&mut line, "value", value);
            }
            line.push('}');
        } else {
            line.push_str(&escape(key));
            if let Some(value) = &value {
                line.push('\t');
                line.push_str(&escape(value));
            }
        }
        line.push('\n');
        if let Err(e) = out.write_all(line.as_bytes()) {
            return stdout_error(e);
        }
    }
    match out.flush() {
        Ok(()) => Ok(()),
        Err(e) => stdout_error(e),
    }
}

/// A reader that went away (`| head`) ends the output quietly; anything else is an error.
pub fn stdout_error(e: std::io::Error) -> Result<(), Failure> {
    if is_broken_pipe(&e) {
        Ok(())
    } else {
        Err(anyhow::Error::new(e).context("writing to standard output").into())
    }
}
