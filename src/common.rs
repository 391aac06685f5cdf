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
        self.open_as(need, Via::Api, tweak)
    }

    /// Like [`StoreOpts::open_with`]; `via` is what a lock error suggests doing over HTTP
    /// when `jessy serve` holds the store.
    pub fn open_as(&self, need: Need, via: Via, tweak: impl FnOnce(Config) -> Config) -> Result<Store, Failure> {
        let config = tweak(self.config()?);
        let base = config.base_path_ref().to_path_buf();
        if need == Need::Existing && !has_store(&base) {
            return Err(no_store(&base));
        }
        Store::open_config(config).map_err(|e| open_error_via(&base, e, via))
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
    open_error_via(base, e, Via::Api)
}

fn open_error_via(base: &Path, e: Error, via: Via) -> Failure {
    match e {
        Error::Locked { holder, .. } => locked_via(base, &holder, via),
        e => Failure::Error(anyhow::Error::new(e).context(format!("cannot open the store in {}", base.display()))),
    }
}

/// What to do over HTTP instead, when `jessy serve` holds the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Any request (`jessy dims`, `get`, ...): the API in general.
    Api,
    /// `jessy backup`: the server's own snapshot.
    Snapshot,
}

/// The store is in use by another process. The lock file records its pid; when that pid is a
/// `jessy` process, the message names its command: `jessy serve` gets the HTTP API as the way
/// in, any other command (a long `jessy load`) is waited for.
pub fn locked(base: &Path, holder: &str) -> Failure {
    locked_via(base, holder, Via::Api)
}

fn locked_via(base: &Path, holder: &str, via: Via) -> Failure {
    let addr = std::env::var("JESSY_ADDR").ok().filter(|a| !a.trim().is_empty());
    let addr = addr.unwrap_or_else(|| "127.0.0.1:8080".into()).replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]");
    let http = match via {
        Via::Api => format!("use its HTTP API instead (for example `curl http://{addr}/v1/dimensions`)"),
        Via::Snapshot => format!(
            "take the backup from it instead: `curl -o backup.tar.gz http://{addr}/v1/snapshot` writes a consistent \
             snapshot while it serves"
        ),
    };
    let base = base.display();
    let command = holder_pid(holder).and_then(jessy_command);
    Failure::Error(match command.as_deref() {
        Some("serve") => anyhow!(
            "the store in {base} is locked by another process ({holder}, `jessy serve`); {http}, or stop it and try again"
        ),
        Some(command) => anyhow!(
            "the store in {base} is locked by another process ({holder}, `jessy {command}`); wait for it to finish \
             and try again"
        ),
        None => anyhow!(
            "the store in {base} is locked by another process ({holder}); wait for it to finish and try again, \
             or, if it is `jessy serve`, {http}"
        ),
    })
}

/// The pid in the lock file's "pid 4242".
fn holder_pid(holder: &str) -> Option<u32> {
    holder.trim().strip_prefix("pid ")?.trim().parse().ok()
}

/// The subcommand of process `pid` when it is a `jessy` program ("serve", "load", ...), from
/// `/proc/<pid>/cmdline`; `None` when it is something else or cannot be told (another pid
/// namespace, no /proc).
fn jessy_command(pid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    command_of(&cmdline)
}

/// The subcommand in a NUL-separated `jessy` command line: the first argument that is not a
/// flag (nor the value of `--data`).
fn command_of(cmdline: &[u8]) -> Option<String> {
    let mut args = cmdline.split(|&b| b == 0).filter(|a| !a.is_empty());
    let program = Path::new(OsStr::from_bytes(args.next()?));
    if program.file_name()? != "jessy" {
        return None;
    }
    while let Some(arg) = args.next() {
        if arg == b"--data" {
            args.next();
        } else if !arg.starts_with(b"-") {
            return Some(String::from_utf8_lossy(arg).into_owned());
        }
    }
    None
}

/// Maps an engine error: a missing dimension is "not found" (exit 1), the rest exit 2.
pub fn engine(e: Error) -> Failure {
    match e {
        Error::DimensionNotFound(name) if is_dir_name(&name) => Failure::NotFound(format!(
            "dimension {name:?}: no dimension has that directory (`jessy dims` lists them); a directory \
             name only addresses an existing dimension, so create a new one by its name"
        )),
        Error::DimensionNotFound(name) | Error::DimensionDropped(name) => {
            Failure::NotFound(format!("dimension {name:?} (`jessy dims` lists them)"))
        }
        Error::ValueTooLarge { what, len, max } => {
            let (len, max) = two_sizes(len, max);
            Failure::Error(anyhow!(
                "{what} of {len} is larger than MMAP_MAX_SIZE allows ({max} per record); raise MMAP_MAX_SIZE"
            ))
        }
        e => Failure::Error(anyhow::Error::new(e)),
    }
}

/// True for a dimension directory name, `D` + digits (`D07`, `D100`): such an argument
/// addresses an existing dimension by id and is never a new dimension's name.
pub fn is_dir_name(name: &str) -> bool {
    name.len() > 1 && name.starts_with('D') && name[1..].bytes().all(|b| b.is_ascii_digit())
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

/// Two sizes to compare, for people: "10.0 MiB" and "12.0 MiB", or exact byte counts when
/// the rounded figures would read the same.
pub fn two_sizes(a: u64, b: u64) -> (String, String) {
    let (short_a, short_b) = (short(a), short(b));
    if a != b && short_a == short_b {
        (format!("{a} bytes"), format!("{b} bytes"))
    } else {
        (short_a, short_b)
    }
}

/// "12.0 MiB" from 1 MiB up, exact bytes below ("4027 bytes").
fn short(n: u64) -> String {
    match human(n).split_once(" (") {
        Some((rounded, _)) if n >= 1 << 20 => rounded.to_string(),
        _ => format!("{n} bytes"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_that_round_alike_are_exact() {
        assert_eq!(two_sizes(10 << 20, 20 << 20), ("10.0 MiB".into(), "20.0 MiB".into()));
        assert_eq!(two_sizes(10485800, 10485720), ("10485800 bytes".into(), "10485720 bytes".into()));
        assert_eq!(two_sizes(4050, 4027), ("4050 bytes".into(), "4027 bytes".into()));
        assert_eq!(two_sizes(100, 50), ("100 bytes".into(), "50 bytes".into()));
    }

    #[test]
    fn the_lock_holder_s_command_is_read_from_its_command_line() {
        assert_eq!(command_of(b"/usr/local/bin/jessy\0serve\0"), Some("serve".into()));
        assert_eq!(command_of(b"jessy\0--data\0/srv/x\0load\0f.jsonl\0"), Some("load".into()));
        assert_eq!(command_of(b"./jessy\0--data=/x\0-v\0dump\0"), Some("dump".into()));
        assert_eq!(command_of(b"/usr/bin/python3\0serve\0"), None);
        assert_eq!(command_of(b"jessy\0--data\0x\0"), None);
        assert_eq!(command_of(b""), None);
        assert_eq!(holder_pid("pid 4242"), Some(4242));
        assert_eq!(holder_pid("unknown"), None);
    }
}
