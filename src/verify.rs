//! `jessy verify`: read and check everything; change nothing.

use std::time::Instant;

use anyhow::{anyhow, Context as _};
use jessy_storage::{Error, Store};

use crate::common::{busy, has_store, open_error, Need, StoreOpts};
use crate::Failure;

/// The flags of `jessy verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreOpts,
    /// Print the report as one JSON object (`problems: [{file, offset, what}]`)
    #[arg(long)]
    json: bool,
}

/// Prints a summary and every problem (file and offset); exit 2 when there is any.
pub fn run(args: Args) -> Result<(), Failure> {
    let config = args.store.config()?;
    let base = config.base_path_ref().to_path_buf();
    let bar = busy(&format!("verifying {}", base.display()));
    let started = Instant::now();
    if !has_store(&base) {
        bar.finish_and_clear();
        return args.store.open(Need::Existing).map(drop);
    }
    let store = match Store::open_config(config) {
        Ok(store) => store,
        Err(e) => {
            bar.finish_and_clear();
            return Err(cannot_open(&base, e, args.json));
        }
    };
    let report = store.verify();
    bar.finish_and_clear();
    drop(store);
    if args.json {
        // The engine's report, plus `"opened": true` (a store that does not open is reported
        // as `{"opened": false, "problems": [...]}`, see `cannot_open`).
        let mut json = serde_json::to_value(&report).context("encoding JSON")?;
        if let Some(object) = json.as_object_mut() {
            object.insert("opened".into(), serde_json::Value::Bool(true));
        }
        println!("{}", serde_json::to_string_pretty(&json).context("encoding JSON")?);
    } else {
        println!(
            "verified {}: {} dimensions, {} layers, {} records ({} bytes), {} keys in {:.1?}",
            base.display(),
            report.dimensions,
            report.layers,
            report.records,
            report.bytes,
            report.keys,
            started.elapsed()
        );
        for p in &report.problems {
            println!("problem: {} at offset {}: {}", p.file.display(), p.offset, p.what);
        }
        if report.is_ok() {
            println!("OK: every checksum and index entry verified");
        }
    }
    if report.is_ok() {
        Ok(())
    } else {
        Err(anyhow!(
            "{} problem(s) found in {}; the store is damaged: restore it from a backup (`jessy restore --force`)",
            report.problems.len(),
            base.display()
        )
        .into())
    }
}

/// The store does not open: damage found on open is reported like any other problem.
fn cannot_open(base: &std::path::Path, e: Error, json: bool) -> Failure {
    let problems: Vec<(String, u64, String)> = match &e {
        Error::Corruption { file, offset, reason } => vec![(file.display().to_string(), *offset, reason.clone())],
        Error::MissingFiles(files) => {
            files.iter().map(|f| (f.display().to_string(), 0, "listed in index.json but missing".to_string())).collect()
        }
        _ => return open_error(base, e),
    };
    if json {
        let list: Vec<_> = problems
            .iter()
            .map(|(file, offset, what)| serde_json::json!({ "file": file, "offset": offset, "what": what }))
            .collect();
        println!("{}", serde_json::json!({ "opened": false, "problems": list }));
    } else {
        println!("verified {}: the store does not open", base.display());
        for (file, offset, what) in &problems {
            println!("problem: {file} at offset {offset}: {what}");
        }
    }
    Failure::Error(anyhow!(
        "{} problem(s) found in {}; the store is damaged: restore it from a backup (`jessy restore --force`)",
        problems.len(),
        base.display()
    ))
}
