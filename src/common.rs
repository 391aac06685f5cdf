//! What the data subcommands share: where the store is, opening it (and explaining why it
//! cannot be opened), mapping engine errors to exit statuses, argument bytes, progress.

use std::ffi::OsStr;
use std::io::IsTerminal as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use indicatif::{ProgressBar, ProgressStyle};
use jessy_storage::{Config, Dimension, Error, Store};

use crate::bytes;
use crate::Failure;

/// `jessy --data DIR <command>`: the data directory given before the subcommand.
pub static TOP_DATA: OnceLock<PathBuf> = OnceLock::new();

/// The `--data` flag every data subcommand takes (it may also come before the subcommand).
#[derive(Debug, Clone, clap::Args)]
pub struct StoreOpts {
    /// Data directory [default: $MMAP_BASE_PATH, else ./data/mmap]
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

/// Whether a command may create the store when the data directory has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Fail with a hint to run `jessy init` when there is no store.
    Existing,
    /// Create the layout (init, load, restore).
    CreateIfMissing,
}

impl StoreOpts {
    /// The engine configuration: `MMAP_*` and `JESSY_DURABILITY` from the environment, the
    /// data directory from the flags, and no background compaction (a CLI run is short;
    /// `jessy compact` compacts explicitly).
    pub fn config(&self) -> Result<Config, Failure> {
        let mut config = Config::from_env().context("reading MMAP_* / JESSY_DURABILITY from the environment")?;
        if let Some(dir) = self.data.clone().or_else(|| TOP_DATA.get().cloned()) {
            config = config.base_path(dir);
        }
        Ok(config.background_compaction(false))
    }

    /// Opens the store with the environment's configuration.
    pub fn open(&self, need: Need) -> Result<Store, Failure> {
        self.open_with(need, |c| c)
    }

    /// Opens the store after `tweak` adjusted the configuration.
    pub fn open_with(&self, need: Need, tweak: impl FnOnce(Config) -> Config) -> Result<Store, Failure> {
        let config = tweak(self.config()?);
        let base = config.base_path_ref().to_path_buf();
        if need == Need::Existing && !has_store(&base) {
            return Err(no_store(&base));
        }
        Store::open_config(config).map_err(|e| open_error(&base, e))
    }
}

/// True when `base` holds a store (its `consciousness/` directory).
pub fn has_store(base: &Path) -> bool {
    base.join("consciousness").is_dir()
}

fn no_store(base: &Path) -> Failure {
    Failure::Error(anyhow!(
        "there is no Jessy store in {} (no consciousness/ directory); create one with `jessy init`, \
         or point --data (or MMAP_BASE_PATH) at an existing one",
        base.display()
    ))
}

/// Why the store in `base` could not be opened; a lock held by another process gets advice.
pub fn open_error(base: &Path, e: Error) -> Failure {
    match e {
        Error::Locked { holder, .. } => locked(base, &holder),
        e => Failure::Error(anyhow::Error::new(e).context(format!("cannot open the store in {}", base.display()))),
    }
}

/// The store is in use: most likely by `jessy serve`, whose HTTP API is the way in.
pub fn locked(base: &Path, holder: &str) -> Failure {
    let addr = std::env::var("JESSY_ADDR").ok().filter(|a| !a.trim().is_empty());
    let addr = addr.unwrap_or_else(|| "127.0.0.1:8080".into()).replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]");
    Failure::Error(anyhow!(
        "the store in {} is locked by another process ({holder}); is `jessy serve` running? \
         Use its HTTP API instead (for example `curl http://{addr}/v1/dimensions`), or stop it and try again",
        base.display()
    ))
}

/// Maps an engine error: a missing dimension is "not found" (exit 1), the rest exit 2.
pub fn engine(e: Error) -> Failure {
    match e {
        Error::DimensionNotFound(name) | Error::DimensionDropped(name) => {
            Failure::NotFound(format!("dimension {name:?} (`jessy dims` lists them)"))
        }
        e => Failure::Error(anyhow::Error::new(e)),
    }
}

/// An existing dimension, by name or directory name (`D07`); "not found" otherwise.
pub fn existing_dimension(store: &Store, name: &str) -> Result<Dimension, Failure> {
    store.get_dimension(name).map_err(engine)
}

/// The bytes of a KEY / VALUE / PREFIX argument: taken as given (any bytes the shell
/// passes), or with `\xHH`-style escapes decoded when `escaped`.
pub fn arg_bytes(what: &str, arg: &OsStr, escaped: bool) -> Result<Vec<u8>, Failure> {
    let raw = arg.as_bytes();
    if escaped {
        bytes::unescape(raw).map_err(|e| Failure::Error(anyhow!("{what} {:?}: {e}", arg)))
    } else {
        Ok(raw.to_vec())
    }
}

/// A KEY argument's bytes ([`arg_bytes`]), refused when no key can have them (empty, or
/// longer than the engine allows): `get` and `del` would otherwise answer "not found" (exit 1)
/// to what is a mistake in the command (exit 2).
pub fn key_arg(arg: &OsStr, escaped: bool) -> Result<Vec<u8>, Failure> {
    let key = arg_bytes("KEY", arg, escaped)?;
    jessy_storage::validate_key(&key).map_err(engine)?;
    Ok(key)
}

/// True when progress may be drawn: standard error is a terminal.
pub fn interactive() -> bool {
    std::io::stderr().is_terminal()
}

/// A spinner with a message, a count and the elapsed time on standard error, or a hidden
/// bar when standard error is not a terminal.
pub fn spinner(message: &str, unit: &str) -> ProgressBar {
    if !interactive() {
        return ProgressBar::hidden();
    }
    let template = format!("{{spinner}} {{msg}} {{human_pos}} {unit} ({{elapsed}})");
    let style = ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bar = ProgressBar::new_spinner().with_style(style).with_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A spinner with a message and the elapsed time (hidden off a terminal).
pub fn busy(message: &str) -> ProgressBar {
    if !interactive() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bar = ProgressBar::new_spinner().with_style(style).with_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Like [`spinner`], counting bytes.
pub fn byte_spinner(message: &str) -> ProgressBar {
    if !interactive() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{spinner} {msg} {bytes} ({bytes_per_sec}, {elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bar = ProgressBar::new_spinner().with_style(style).with_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A bar over `len` steps (dimensions), or a hidden one off a terminal.
pub fn steps(len: u64, message: &str) -> ProgressBar {
    if !interactive() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let bar = ProgressBar::new(len).with_style(style.progress_chars("=> ")).with_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// True when `e` (or its cause) is a write to a closed pipe (`jessy dump | head`).
pub fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// Byte counts for people: "12.0 MiB (12582912 bytes)".
pub fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64;
    let mut unit = "bytes";
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    format!("{value:.1} {unit} ({n} bytes)")
}
