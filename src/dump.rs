//! `jessy dump`: every entry of one or all dimensions as JSON lines.
//!
//! One line per entry: `{"dim":"<name>","key":"<utf-8>","value":"<utf-8>"}`, where a key or
//! value that is not valid UTF-8 is written as `"key_b64"` / `"value_b64"` (standard base64)
//! instead. An empty dimension is one line `{"dim":"<name>"}`, so `jessy load` recreates it.
//! Dimensions come in id order, keys in key order.

use std::io::{BufWriter, Write as _};

use anyhow::Context as _;

use crate::bytes::{push_json_field, push_json_string};
use crate::common::{engine, existing_dimension, spinner, Need, StoreOpts};
use crate::scan::stdout_error;
use crate::Failure;

/// The flags of `jessy dump`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreOpts,
    /// Only this dimension [default: every dimension]
    dim: Option<String>,
}

/// Writes the JSON lines to standard output.
pub fn run(args: Args) -> Result<(), Failure> {
    let store = args.store.open(Need::Existing)?;
    let dims = match &args.dim {
        Some(name) => vec![existing_dimension(&store, name)?],
        None => store.dimensions(),
    };
    let bar = spinner("dumping", "records");
    let mut out = BufWriter::with_capacity(256 << 10, std::io::stdout().lock());
    let mut line = String::new();
    let mut records = 0u64;
    for dim in &dims {
        let name = dim.name();
        bar.set_message(format!("dumping {name}"));
        let mut empty = true;
        for item in dim.iter() {
            let (key, value) = item.map_err(engine).map_err(|f| with_context(f, &name))?;
            empty = false;
            line.clear();
            line.push_str("{\"dim\":");
            push_json_string(&mut line, &name);
            line.push(',');
            push_json_field(&mut line, "key", &key);
            line.push(',');
            push_json_field(&mut line, "value", &value);
            line.push_str("}\n");
            if let Err(e) = out.write_all(line.as_bytes()) {
                bar.finish_and_clear();
                return stdout_error(e);
            }
            records += 1;
            bar.inc(1);
        }
        if empty {
            line.clear();
            line.push_str("{\"dim\":");
            push_json_string(&mut line, &name);
            line.push_str("}\n");
            if let Err(e) = out.write_all(line.as_bytes()) {
                bar.finish_and_clear();
                return stdout_error(e);
            }
        }
    }
    bar.finish_and_clear();
    if let Err(e) = out.flush() {
        return stdout_error(e);
    }
    drop(out);
    store.close().context("closing the store")?;
    if crate::common::interactive() {
        eprintln!("jessy: dumped {records} records from {} dimension(s)", dims.len());
    }
    Ok(())
}

fn with_context(f: Failure, dim: &str) -> Failure {
    match f {
        Failure::Error(e) => Failure::Error(e.context(format!("reading dimension {dim:?}"))),
        other => other,
    }
}
