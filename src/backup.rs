//! `jessy backup`: a consistent `.tar.gz` of `consciousness/`.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal as _, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};

use crate::common::{byte_spinner, human, Need, StoreOpts, Via};
use crate::Failure;

/// The flags of `jessy backup`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreOpts,
    /// The archive to write (replaced atomically if it exists); `-` writes standard output
    #[arg(value_name = "FILE.tar.gz")]
    file: PathBuf,
}

/// Writes the archive to a temporary file beside FILE, syncs it, renames it over FILE.
pub fn run(args: Args) -> Result<(), Failure> {
    let to_stdout = args.file.as_os_str() == "-";
    if to_stdout && std::io::stdout().is_terminal() {
        return Err(anyhow!(
            "refusing to write a binary archive to a terminal; redirect it: `jessy backup - > FILE.tar.gz`"
        )
        .into());
    }
    let store = args.store.open_as(Need::Existing, Via::Snapshot, |c| c)?;
    let bar = byte_spinner("backing up");
    if to_stdout {
        let out = std::io::stdout().lock();
        let mut out =
            store.backup(Counting { inner: out, bar: &bar }).context("writing the backup to standard output")?;
        out.flush().context("writing the backup to standard output")?;
        bar.finish_and_clear();
        return Ok(());
    }
    let dest = &args.file;
    let tmp = temp_path(dest)?;
    let result = write_to(&store, &tmp, dest, &bar);
    bar.finish_and_clear();
    match result {
        Ok(bytes) => {
            drop(store);
            println!("wrote {}: {}", dest.display(), human(bytes));
            Ok(())
        }
        Err(e) => {
            // A failed backup leaves no half-written archive behind.
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// `dir/.name.partial-<pid>` next to `dest`, so the final rename stays on one file system.
fn temp_path(dest: &Path) -> Result<PathBuf, Failure> {
    let name = dest.file_name().ok_or_else(|| anyhow!("{} is not a file name", dest.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".partial-{}", std::process::id()));
    Ok(dest.with_file_name(tmp_name))
}

fn write_to(
    store: &jessy_storage::Store,
    tmp: &Path,
    dest: &Path,
    bar: &indicatif::ProgressBar,
) -> Result<u64, Failure> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let writer = store.backup(Counting { inner: std::io::BufWriter::with_capacity(1 << 20, file), bar });
    let writer = writer.with_context(|| format!("writing the backup to {}", tmp.display()))?;
    let file: File = writer
        .inner
        .into_inner()
        .map_err(|e| anyhow::Error::new(e.into_error()).context(format!("writing {}", tmp.display())))?;
    file.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    drop(file);
    std::fs::rename(tmp, dest).with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(parent).and_then(|d| d.sync_all()).with_context(|| format!("syncing directory {}", parent.display()))?;
    Ok(bytes)
}

/// A writer that moves the progress bar by the bytes it passes on.
struct Counting<'a, W> {
    inner: W,
    bar: &'a indicatif::ProgressBar,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
