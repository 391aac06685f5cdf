//! The engine's one error type. Every variant says what went wrong and, where the
//! caller can do something about it, what to do.

use std::io;
use std::path::PathBuf;

use crate::Version;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `jessy-storage`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system refused an I/O operation.
    #[error("{op} {path}: {source}")]
    Io {
        /// What the engine was doing ("write", "fdatasync", "rename", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Data on disk failed a check. Nothing from the damaged place is returned.
    #[error("corruption in {file} at offset {offset}: {reason}; run `jessy verify` and restore from a backup")]
    Corruption {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damaged structure in that file.
        offset: u64,
        /// Which check failed.
        reason: String,
    },

    /// Files listed in a manifest are not on disk (for example a copy taken mid-compaction).
    #[error("missing files listed in the manifest: {}; restore them from the same backup", display_paths(.0))]
    MissingFiles(Vec<PathBuf>),

    /// Another process holds the store's lock.
    #[error("{}", locked_message(path, holder))]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// What the lock file says about its holder (a pid, or "unknown").
        holder: String,
    },

    /// Keys must have at least one byte.
    #[error("empty key; keys are 1 to {max} bytes", max = crate::MAX_KEY_LEN)]
    EmptyKey,

    /// The key is longer than [`MAX_KEY_LEN`](crate::MAX_KEY_LEN).
    #[error("key of {len} bytes is longer than the limit of {max} bytes")]
    KeyTooLarge {
        /// The key's length.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// A record (or batch) does not fit in one region.
    #[error("{what} of {} is larger than MMAP_MAX_SIZE allows ({} per record); raise MMAP_MAX_SIZE", sizes(*.len, *.max).0, sizes(*.len, *.max).1)]
    ValueTooLarge {
        /// "value" or "write batch".
        what: &'static str,
        /// Its encoded size.
        len: u64,
        /// The largest that fits.
        max: u64,
    },

    /// A dimension name breaks the naming rules.
    #[error("invalid dimension name {name:?}: {reason}")]
    InvalidDimensionName {
        /// The name given.
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },

    /// No dimension has this name or id.
    #[error("dimension {0:?} does not exist; create it first")]
    DimensionNotFound(String),

    /// A dimension with this name already exists (bulk loads create new ones only).
    #[error("dimension {0:?} already exists; load into a new name, or drop it first")]
    DimensionExists(String),

    /// A bulk load of this name is in progress.
    #[error("dimension {0:?} is being bulk-loaded; wait for the load to finish")]
    DimensionBusy(String),

    /// The dimension was dropped while this handle was held.
    #[error("dimension {0:?} was dropped")]
    DimensionDropped(String),

    /// `default` (D01) always exists.
    #[error("the default dimension (D01) cannot be dropped")]
    CannotDropDefault,

    /// A conditional write found a different state than it expected.
    #[error("condition failed: expected {expected}, found {}", match .current { Some(v) => format!("version {v}"), None => "no value".to_string() })]
    ConditionFailed {
        /// What the write expected.
        expected: crate::Expect,
        /// The key's current version, if it has a value.
        current: Option<Version>,
    },

    /// An earlier sync failed; the store accepts no writes until it is reopened.
    #[error("the store is read-only because an earlier sync failed ({0}); fix the disk, then reopen the store")]
    ReadOnly(String),

    /// A configuration value is out of range or malformed.
    #[error("invalid configuration {name}={value:?}: {reason}")]
    InvalidConfig {
        /// The setting or environment variable.
        name: &'static str,
        /// The value given.
        value: String,
        /// What is accepted.
        reason: String,
    },

    /// The store was closed.
    #[error("the store is closed")]
    Closed,
}

impl Error {
    /// A stable snake_case name for the error, for APIs and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Io { source, .. } if is_disk_full(source) => "disk_full",
            Error::Io { .. } => "io_error",
            Error::Corruption { .. } => "corruption",
            Error::MissingFiles(_) => "missing_files",
            Error::Locked { .. } => "store_locked",
            Error::EmptyKey => "empty_key",
            Error::KeyTooLarge { .. } => "key_too_large",
            Error::ValueTooLarge { .. } => "value_too_large",
            Error::InvalidDimensionName { .. } => "invalid_dimension_name",
            Error::DimensionNotFound(_) | Error::DimensionDropped(_) => "dimension_not_found",
            Error::CannotDropDefault => "cannot_drop_default",
            Error::DimensionExists(_) => "dimension_exists",
            Error::DimensionBusy(_) => "dimension_busy",
            Error::ConditionFailed { .. } => "condition_failed",
            Error::ReadOnly(_) => "read_only",
            Error::InvalidConfig { .. } => "invalid_config",
            Error::Closed => "store_closed",
        }
    }

    /// True when the error is the disk being full (ENOSPC or EDQUOT).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::Io { source, .. } if is_disk_full(source))
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }

    pub(crate) fn corruption(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Error {
        Error::Corruption { file: file.into(), offset, reason: reason.into() }
    }
}

fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// Two byte counts to compare, each as [`human`] puts it unless that makes them read alike
/// ("10.0 MiB" against "10.0 MiB" for a value one byte too large): then in exact bytes.
fn sizes(a: u64, b: u64) -> (String, String) {
    let (ha, hb) = (human(a), human(b));
    if ha == hb && a != b {
        (format!("{a} bytes"), format!("{b} bytes"))
    } else {
        (ha, hb)
    }
}

/// The lock's holder, as its file names it; a holder that is this very process has opened the
/// store already, which "another process" would misstate.
fn locked_message(path: &std::path::Path, holder: &str) -> String {
    let me = std::process::id();
    if holder == format!("pid {me}") {
        format!(
            "{} is held by this process (pid {me}), which has the store open already; share that Store (clones are \
             cheap) instead of opening it again, or close it first",
            path.display()
        )
    } else {
        format!("{} is locked by another process ({holder}); stop it, or use its HTTP API instead", path.display())
    }
}

/// Byte counts the way people read them: "12 MiB", "4096 bytes".
pub(crate) fn human(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    const KIB: u64 = 1 << 10;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= MIB {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}
