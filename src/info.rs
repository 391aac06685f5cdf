//! `jessy info` and `jessy dims`: what the store holds.

use std::io::Write as _;

use anyhow::Context as _;
use jessy_storage::{DimensionStats, Store, FORMAT_VERSION};
use serde::Serialize;

use crate::common::{human, Need, StoreOpts};
use crate::Failure;

/// The flags of `jessy info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    #[command(flatten)]
    store: StoreOpts,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

/// The flags of `jessy dims`.
#[derive(Debug, clap::Args)]
pub struct DimsArgs {
    #[command(flatten)]
    store: StoreOpts,
    /// Print {"dimensions":[...]} (as GET /v1/dimensions does) instead of text
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Info {
    path: String,
    format_version: u32,
    initial_size: u64,
    max_size: u64,
    durability: String,
    dimensions: Vec<DimensionStats>,
}

fn info_of(store: &Store) -> Info {
    let config = store.config();
    Info {
        path: store.path().display().to_string(),
        format_version: FORMAT_VERSION,
        initial_size: config.initial_size_bytes(),
        max_size: config.max_size_bytes(),
        durability: config.durability_mode().to_string(),
        dimensions: store.stats().dimensions,
    }
}

/// Prints the layout path, the settings, and every dimension's numbers.
pub fn run_info(args: InfoArgs) -> Result<(), Failure> {
    let store = args.store.open(Need::Existing)?;
    let info = info_of(&store);
    let mut out = std::io::stdout().lock();
    if args.json {
        let text = serde_json::to_string_pretty(&info).context("encoding JSON")?;
        writeln!(out, "{text}").context("writing to standard output")?;
        return Ok(());
    }
    let total_keys: u64 = info.dimensions.iter().map(|d| d.keys).sum();
    let total_live: u64 = info.dimensions.iter().map(|d| d.live_bytes).sum();
    let total_disk: u64 = info.dimensions.iter().map(|d| d.disk_bytes).sum();
    let mut text = String::new();
    text += &format!("store:          {}\n", info.path);
    text += &format!("layout:         {}/consciousness/Dnn/{{region.mmap,layers/,index.json}}\n", info.path);
    text += &format!("format version: {}\n", info.format_version);
    text += &format!("region size:    initial {}, max {}\n", info.initial_size, info.max_size);
    text += &format!("durability:     {}\n", info.durability);
    text += &format!(
        "totals:         {} dimensions, {total_keys} keys, live {}, on disk {}\n\n",
        info.dimensions.len(),
        human(total_live),
        human(total_disk)
    );
    let name_width = info.dimensions.iter().map(|d| d.name.len()).max().unwrap_or(4).max(4);
    text += &format!(
        "{:>4}  {:<5} {:<name_width$}  {:>10}  {:>12}  {:>12}  {:>6}\n",
        "ID", "DIR", "NAME", "KEYS", "LIVE BYTES", "DISK BYTES", "LAYERS"
    );
    for d in &info.dimensions {
        text += &format!(
            "{:>4}  {:<5} {:<name_width$}  {:>10}  {:>12}  {:>12}  {:>6}\n",
            d.id, d.dir, d.name, d.keys, d.live_bytes, d.disk_bytes, d.layers
        );
    }
    out.write_all(text.as_bytes()).context("writing to standard output")?;
    Ok(())
}

/// Prints one line per dimension: directory, name, keys (tab-separated).
pub fn run_dims(args: DimsArgs) -> Result<(), Failure> {
    let store = args.store.open(Need::Existing)?;
    let dims = store.stats().dimensions;
    let mut out = std::io::stdout().lock();
    if args.json {
        let text = serde_json::to_string(&serde_json::json!({ "dimensions": dims })).context("encoding JSON")?;
        writeln!(out, "{text}").context("writing to standard output")?;
        return Ok(());
    }
    for d in dims {
        writeln!(out, "{}\t{}\t{}", d.dir, d.name, d.keys).context("writing to standard output")?;
    }
    Ok(())
}
