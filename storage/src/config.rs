//! How a store is opened: sizes, durability, and the I/O backend.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::io::{Io, StdIo};
use crate::{Error, Result};

/// When a write reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `fdatasync` before the write returns, and only then is it visible to readers.
    /// Concurrent writers share one sync (group commit).
    #[default]
    Immediate,
    /// A background thread syncs at this interval; a crash loses at most about that much.
    Periodic(Duration),
    /// The OS writes back when it likes; [`Store::sync`](crate::Store::sync) forces it.
    None,
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Durability::Immediate => f.write_str("immediate"),
            Durability::Periodic(d) => write!(f, "periodic:{}", d.as_millis()),
            Durability::None => f.write_str("none"),
        }
    }
}

impl FromStr for Durability {
    type Err = Error;

    /// Parses `immediate`, `periodic:<ms>` or `none` (the `JESSY_DURABILITY` syntax).
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidConfig {
            name: "JESSY_DURABILITY",
            value: s.to_string(),
            reason: reason.to_string(),
        };
        match s.trim() {
            "immediate" => Ok(Durability::Immediate),
            "none" => Ok(Durability::None),
            other => {
                let ms = other.strip_prefix("periodic:").ok_or_else(|| bad("use immediate, periodic:<ms> or none"))?;
                let ms: u64 = ms.parse().map_err(|_| bad("periodic:<ms> takes a whole number of milliseconds"))?;
                if ms == 0 {
                    return Err(bad("the period must be at least 1 ms"));
                }
                Ok(Durability::Periodic(Duration::from_millis(ms)))
            }
        }
    }
}

/// Settings for [`Store::open_with`](crate::Store::open_with), built fluently:
///
/// ```
/// use jessy_storage::{Config, Durability};
/// let config = Config::default().max_size(64 << 20).durability(Durability::None);
/// assert_eq!(config.max_size_bytes(), 64 << 20);
/// ```
#[derive(Clone)]
pub struct Config {
    pub(crate) base_path: PathBuf,
    pub(crate) initial_size: u64,
    pub(crate) max_size: u64,
    pub(crate) durability: Durability,
    pub(crate) salvage: bool,
    pub(crate) compaction_threshold: f64,
    pub(crate) background_compaction: bool,
    pub(crate) io: Arc<dyn Io>,
}

/// `MMAP_INITIAL_SIZE`'s default: 1 MiB.
pub const DEFAULT_INITIAL_SIZE: u64 = 1 << 20;
/// `MMAP_MAX_SIZE`'s default: 10 MiB.
pub const DEFAULT_MAX_SIZE: u64 = 10 << 20;
/// The smallest region the engine accepts: room for the header and a few records.
pub const MIN_REGION_SIZE: u64 = 4096;

impl Default for Config {
    fn default() -> Self {
        Config {
            base_path: PathBuf::from("./data/mmap"),
            initial_size: DEFAULT_INITIAL_SIZE,
            max_size: DEFAULT_MAX_SIZE,
            durability: Durability::Immediate,
            salvage: false,
            compaction_threshold: 0.5,
            background_compaction: true,
            io: Arc::new(StdIo::default()),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("base_path", &self.base_path)
            .field("initial_size", &self.initial_size)
            .field("max_size", &self.max_size)
            .field("durability", &self.durability)
            .field("salvage", &self.salvage)
            .field("compaction_threshold", &self.compaction_threshold)
            .field("background_compaction", &self.background_compaction)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Reads `MMAP_BASE_PATH`, `MMAP_INITIAL_SIZE`, `MMAP_MAX_SIZE` and `JESSY_DURABILITY`;
    /// unset variables keep their defaults, malformed ones are an error naming the variable.
    pub fn from_env() -> Result<Config> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Config::from_env`], reading variables through `lookup` (handy in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let mut config = Config::default();
        if let Some(path) = lookup("MMAP_BASE_PATH").filter(|p| !p.is_empty()) {
            config.base_path = PathBuf::from(path);
        }
        let size = |name: &'static str, value: String| -> Result<u64> {
            value.trim().parse::<u64>().map_err(|_| Error::InvalidConfig {
                name,
                value,
                reason: "expected a size in bytes, like 1048576".into(),
            })
        };
        if let Some(v) = lookup("MMAP_INITIAL_SIZE").filter(|v| !v.is_empty()) {
            config.initial_size = size("MMAP_INITIAL_SIZE", v)?;
        }
        if let Some(v) = lookup("MMAP_MAX_SIZE").filter(|v| !v.is_empty()) {
            config.max_size = size("MMAP_MAX_SIZE", v)?;
        }
        if let Some(v) = lookup("JESSY_DURABILITY").filter(|v| !v.is_empty()) {
            config.durability = v.parse()?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks that the sizes make sense together.
    pub fn validate(&self) -> Result<()> {
        if self.max_size < MIN_REGION_SIZE || self.max_size > u32::MAX as u64 {
            return Err(Error::InvalidConfig {
                name: "MMAP_MAX_SIZE",
                value: self.max_size.to_string(),
                reason: format!("must be between {MIN_REGION_SIZE} and {} bytes", u32::MAX),
            });
        }
        if self.initial_size < MIN_REGION_SIZE || self.initial_size > self.max_size {
            return Err(Error::InvalidConfig {
                name: "MMAP_INITIAL_SIZE",
                value: self.initial_size.to_string(),
                reason: format!("must be between {MIN_REGION_SIZE} bytes and MMAP_MAX_SIZE ({})", self.max_size),
            });
        }
        if let Durability::Periodic(every) = self.durability {
            if every < std::time::Duration::from_millis(1) {
                return Err(Error::InvalidConfig {
                    name: "JESSY_DURABILITY",
                    value: format!("periodic {every:?}"),
                    reason: "the sync interval must be at least 1 ms (for a sync on every write, use immediate)".into(),
                });
            }
        }
        if !(0.0..=1.0).contains(&self.compaction_threshold) {
            return Err(Error::InvalidConfig {
                name: "compaction_threshold",
                value: self.compaction_threshold.to_string(),
                reason: "must be a share between 0.0 and 1.0".into(),
            });
        }
        Ok(())
    }

    /// The data directory (`MMAP_BASE_PATH`), used by [`Store::open_config`](crate::Store::open_config).
    pub fn base_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.base_path = path.into();
        self
    }
    /// A new region's preallocated size in bytes (`MMAP_INITIAL_SIZE`).
    pub fn initial_size(mut self, bytes: u64) -> Self {
        self.initial_size = bytes;
        self
    }
    /// A region's largest size in bytes (`MMAP_MAX_SIZE`); a full region is sealed into `layers/`.
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
    }
    /// When writes reach the disk (`JESSY_DURABILITY`).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
    /// Open a store whose sealed layers are damaged by skipping the damaged records (each is
    /// logged) instead of failing. Off by default: corruption is an error.
    pub fn salvage(mut self, salvage: bool) -> Self {
        self.salvage = salvage;
        self
    }
    /// The dead share of a sealed layer above which compaction rewrites it (default 0.5).
    pub fn compaction_threshold(mut self, share: f64) -> Self {
        self.compaction_threshold = share;
        self
    }
    /// Whether a background thread compacts on its own (default on).
    pub fn background_compaction(mut self, on: bool) -> Self {
        self.background_compaction = on;
        self
    }
    /// The file-system backend; tests pass one that injects faults.
    pub fn io(mut self, io: Arc<dyn Io>) -> Self {
        self.io = io;
        self
    }

    /// The configured data directory.
    pub fn base_path_ref(&self) -> &std::path::Path {
        &self.base_path
    }
    /// The configured initial region size.
    pub fn initial_size_bytes(&self) -> u64 {
        self.initial_size
    }
    /// The configured maximum region size.
    pub fn max_size_bytes(&self) -> u64 {
        self.max_size
    }
    /// The configured durability.
    pub fn durability_mode(&self) -> Durability {
        self.durability
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = Config::from_lookup(env(&[])).unwrap();
        assert_eq!(c.initial_size, 1_048_576);
        assert_eq!(c.max_size, 10_485_760);
        assert_eq!(c.durability, Durability::Immediate);
        assert_eq!(c.base_path, PathBuf::from("./data/mmap"));
    }

    #[test]
    fn reads_every_variable() {
        let c = Config::from_lookup(env(&[
            ("MMAP_BASE_PATH", "/tmp/x"),
            ("MMAP_INITIAL_SIZE", "8192"),
            ("MMAP_MAX_SIZE", "65536"),
            ("JESSY_DURABILITY", "periodic:250"),
        ]))
        .unwrap();
        assert_eq!(c.base_path, PathBuf::from("/tmp/x"));
        assert_eq!(c.initial_size, 8192);
        assert_eq!(c.max_size, 65536);
        assert_eq!(c.durability, Durability::Periodic(Duration::from_millis(250)));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (pairs, name) in [
            (&[("MMAP_MAX_SIZE", "ten")][..], "MMAP_MAX_SIZE"),
            (&[("MMAP_INITIAL_SIZE", "20000000")][..], "MMAP_INITIAL_SIZE"),
            (&[("JESSY_DURABILITY", "sometimes")][..], "JESSY_DURABILITY"),
            (&[("JESSY_DURABILITY", "periodic:0")][..], "JESSY_DURABILITY"),
        ] {
            let err = Config::from_lookup(env(pairs)).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn durability_round_trips_through_text() {
        for d in [Durability::Immediate, Durability::None, Durability::Periodic(Duration::from_millis(5))] {
            assert_eq!(d.to_string().parse::<Durability>().unwrap(), d);
        }
    }
}
