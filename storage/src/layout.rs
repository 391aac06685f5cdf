//! Where things live in the data directory, and what names are allowed.
//!
//! ```text
//! <base>/jessy.lock                      held by the process that has the store open
//! <base>/consciousness/Dnn/region.mmap   the active region of dimension nn
//! <base>/consciousness/Dnn/layers/       sealed layers: Lnnnnnnnn.mmap + Lnnnnnnnn.keys
//! <base>/consciousness/Dnn/index.json    the dimension's manifest
//! <base>/proto/                          dimensions being bulk-loaded
//! <base>/temp/                           scratch; swept on open
//! ```

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The name of dimension 1, which always exists.
pub const DEFAULT_DIMENSION: &str = "default";

pub(crate) const CONSCIOUSNESS: &str = "consciousness";
pub(crate) const PROTO: &str = "proto";
pub(crate) const TEMP: &str = "temp";
pub(crate) const LOCK_FILE: &str = "jessy.lock";
pub(crate) const REGION_FILE: &str = "region.mmap";
pub(crate) const MANIFEST_FILE: &str = "index.json";
/// A damaged `index.json`, kept after the rebuild for `verify` to report.
pub(crate) const DAMAGED_MANIFEST_FILE: &str = "index.json.damaged";
pub(crate) const LAYERS_DIR: &str = "layers";

/// The directory name of dimension `id`: `D01`..`D99`, then `D100`, `D101`, ...
pub(crate) fn dir_name(id: u32) -> String {
    format!("D{id:02}")
}

/// Parses `D07` / `D100` back to an id. `D7` is not accepted: every id has one spelling.
pub(crate) fn parse_dir_name(s: &str) -> Option<u32> {
    let digits = s.strip_prefix('D')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id: u32 = digits.parse().ok()?;
    (id >= 1 && dir_name(id) == s).then_some(id)
}

/// Checks a dimension name: 1 to 64 of `A-Za-z0-9_.-`, not starting with `.`, and not
/// of the form `D` + digits (those spell directory ids).
pub fn validate_dimension_name(name: &str) -> Result<()> {
    let bad = |reason| Error::InvalidDimensionName { name: name.to_string(), reason };
    if name.is_empty() || name.len() > 64 {
        return Err(bad("names are 1 to 64 characters long"));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return Err(bad("names use only A-Z, a-z, 0-9, '_', '.' and '-'"));
    }
    if name.starts_with('.') {
        return Err(bad("names must not start with '.'"));
    }
    if name.len() > 1 && name.starts_with('D') && name[1..].bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("'D' followed by digits is reserved for directory ids like D07"));
    }
    Ok(())
}

/// The paths of one store.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub base: PathBuf,
}

impl Layout {
    pub fn consciousness(&self) -> PathBuf {
        self.base.join(CONSCIOUSNESS)
    }
    pub fn proto(&self) -> PathBuf {
        self.base.join(PROTO)
    }
    pub fn temp(&self) -> PathBuf {
        self.base.join(TEMP)
    }
    pub fn lock(&self) -> PathBuf {
        self.base.join(LOCK_FILE)
    }
    pub fn dimension(&self, id: u32) -> DimPaths {
        DimPaths { dir: self.consciousness().join(dir_name(id)) }
    }
}

/// The paths inside one dimension's directory.
#[derive(Debug, Clone)]
pub(crate) struct DimPaths {
    pub dir: PathBuf,
}

impl DimPaths {
    pub fn at(dir: &Path) -> DimPaths {
        DimPaths { dir: dir.to_path_buf() }
    }
    pub fn region(&self) -> PathBuf {
        self.dir.join(REGION_FILE)
    }
    pub fn manifest(&self) -> PathBuf {
        self.dir.join(MANIFEST_FILE)
    }
    /// Where a damaged `index.json` is kept after it was rebuilt (see `dimension::open`).
    pub fn damaged_manifest(&self) -> PathBuf {
        self.dir.join(DAMAGED_MANIFEST_FILE)
    }
    pub fn layers(&self) -> PathBuf {
        self.dir.join(LAYERS_DIR)
    }
    /// Relative to the dimension directory, as `index.json` records it.
    pub fn layer_rel(layer_id: u32) -> String {
        format!("{LAYERS_DIR}/L{layer_id:08}.mmap")
    }
    pub fn keys_rel(layer_id: u32) -> String {
        format!("{LAYERS_DIR}/L{layer_id:08}.keys")
    }
    pub fn layer(&self, layer_id: u32) -> PathBuf {
        self.dir.join(Self::layer_rel(layer_id))
    }
    pub fn keys(&self, layer_id: u32) -> PathBuf {
        self.dir.join(Self::keys_rel(layer_id))
    }
}

/// Parses `L00000012.mmap` / `L00000012.keys` into (12, extension).
pub(crate) fn parse_layer_file(name: &str) -> Option<(u32, &str)> {
    let rest = name.strip_prefix('L')?;
    let (digits, ext) = rest.split_once('.')?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, ext))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_round_trip() {
        for id in [1, 7, 99, 100, 101, 12345] {
            assert_eq!(parse_dir_name(&dir_name(id)), Some(id));
        }
        assert_eq!(dir_name(7), "D07");
        assert_eq!(dir_name(100), "D100");
        for bad in ["D7", "D", "D00", "d07", "D0x", "D007", "X01"] {
            assert_eq!(parse_dir_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn dimension_names_follow_the_contract() {
        for good in ["default", "users", "a", "A-b_c.d", "D", "Dx1", &"x".repeat(64)] {
            assert!(validate_dimension_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "D07", "D1", "D100", "has space", "slash/x", "é", &"x".repeat(65)] {
            assert!(validate_dimension_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn layer_file_names_parse() {
        assert_eq!(parse_layer_file("L00000012.mmap"), Some((12, "mmap")));
        assert_eq!(parse_layer_file("L00000012.keys"), Some((12, "keys")));
        assert_eq!(parse_layer_file("L12.mmap"), None);
        assert_eq!(DimPaths::layer_rel(3), "layers/L00000003.mmap");
    }
}
