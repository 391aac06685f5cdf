//! `jessy compact`: give back the space of overwritten and deleted records now.

use anyhow::{anyhow, Context as _};

use crate::common::{engine, existing_dimension, steps, Need, StoreOpts};
use crate::Failure;

/// The flags of `jessy compact`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreOpts,
    /// Only this dimension [default: every dimension]
    dim: Option<String>,
    /// Rewrite a sealed layer when at least this share of it is dead (0.0 to 1.0; 0 rewrites
    /// every layer with any dead bytes)
    #[arg(long, value_name = "SHARE", default_value_t = 0.5)]
    threshold: f64,
}

/// Compacts and prints, per dimension and in total, the bytes reclaimed.
pub fn run(args: Args) -> Result<(), Failure> {
    if !(0.0..=1.0).contains(&args.threshold) {
        return Err(anyhow!("--threshold {} is not a share between 0.0 and 1.0", args.threshold).into());
    }
    let threshold = args.threshold;
    let store = args.store.open_with(Need::Existing, |c| c.compaction_threshold(threshold))?;
    let dims = match &args.dim {
        Some(name) => vec![existing_dimension(&store, name)?],
        None => store.dimensions(),
    };
    let bar = steps(dims.len() as u64, "compacting");
    let mut total = 0;
    let mut layers = 0;
    let mut lines = Vec::new();
    for dim in &dims {
        bar.set_message(format!("compacting {}", dim.name()));
        let report = dim.compact().map_err(engine)?;
        total += report.bytes_reclaimed;
        layers += report.layers_compacted;
        lines.push(format!(
            "{} {}: reclaimed {} bytes ({} layers rewritten)",
            dim.dir(),
            dim.name(),
            report.bytes_reclaimed,
            report.layers_compacted
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    store.close().context("closing the store")?;
    for line in lines {
        println!("{line}");
    }
    println!("total: reclaimed {total} bytes ({layers} layers rewritten)");
    Ok(())
}
