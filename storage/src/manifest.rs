//! `index.json`: a dimension's manifest, the list of its layers.
//!
//! It is JSON so that anyone may read it (`jq . index.json`), and it carries its own
//! checksum: a CRC-32 of the document serialised with `"checksum": ""`. It is replaced
//! atomically: written to `index.json.tmp`, synced, renamed over `index.json`, and the
//! directory synced, so a crash leaves either the old or the new one.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::io::{read_all, Io};
use crate::layout::REGION_FILE;
use crate::{Error, Result, FORMAT_VERSION, OLDEST_FORMAT_VERSION};

/// The manifest of one dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub format_version: u32,
    pub dimension_id: u32,
    pub name: String,
    /// Bumped on every rewrite; the newest manifest wins.
    pub generation: u64,
    /// No sequence number at or below this one will be handed out again.
    pub last_seq: u64,
    pub active: ActiveRegion,
    pub layers: Vec<LayerEntry>,
    /// In the default dimension only: no dropped dimension handed out a sequence number
    /// above this, and a dimension created later starts above it (`Store::drop_dimension`).
    /// Absent (zero) in every other manifest, and in those of older builds, whose checksum
    /// it thus leaves as it was.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_seqs: u64,
    #[serde(default)]
    pub checksum: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The region currently written to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ActiveRegion {
    pub layer_id: u32,
    pub file: String,
}

/// One sealed layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LayerEntry {
    pub layer_id: u32,
    /// The log file, relative to the dimension directory.
    pub file: String,
    /// Its key index, relative to the dimension directory.
    pub keys_file: String,
    /// Where the records start in `file`.
    pub offset: u64,
    /// How many bytes of records follow.
    pub size: u64,
    /// Entries (puts and deletes) in the layer.
    pub records: u64,
    /// Bytes of entries that were the newest version of their key when this was written.
    pub live_bytes: u64,
    pub min_seq: u64,
    pub max_seq: u64,
}

impl Manifest {
    pub fn new(dimension_id: u32, name: &str, active_layer: u32) -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            dimension_id,
            name: name.to_string(),
            generation: 1,
            last_seq: 0,
            active: ActiveRegion { layer_id: active_layer, file: REGION_FILE.to_string() },
            layers: Vec::new(),
            dropped_seqs: 0,
            checksum: String::new(),
        }
    }

    fn checksum_of(&self) -> String {
        let mut copy = self.clone();
        copy.checksum.clear();
        // Serialising a struct of plain fields cannot fail.
        let bytes = serde_json::to_vec(&copy).unwrap_or_default();
        format!("crc32:{:08x}", crc32fast::hash(&bytes))
    }

    /// The manifest as it is written: pretty JSON with its checksum.
    pub fn encode(&self) -> Vec<u8> {
        let mut m = self.clone();
        m.checksum = self.checksum_of();
        let mut out = serde_json::to_vec_pretty(&m).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Parses and checks a manifest; the error says what is wrong.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Manifest, String> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| format!("not a valid manifest: {e}"))?;
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&m.format_version) {
            return Err(format!(
                "format version {} is not supported (this build reads {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})",
                m.format_version
            ));
        }
        let want = m.checksum_of();
        if m.checksum != want {
            return Err(format!("checksum mismatch (file says {:?}, contents hash to {want:?})", m.checksum));
        }
        Ok(m)
    }

    /// Reads `path`; `Ok(None)` when it does not exist.
    pub fn load(io: &dyn Io, path: &Path) -> Result<Option<Manifest>> {
        let bytes = match read_all(io, path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::Io { op: "read", path: path.to_path_buf(), source: e }),
        };
        Manifest::decode(&bytes).map(Some).map_err(|reason| Error::corruption(path, 0, reason))
    }

    /// Atomically replaces the manifest at `path` (see the module docs).
    pub fn store(&self, io: &dyn Io, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        let bytes = self.encode();
        let file = io.open(&tmp, true).map_err(Error::io("create", &tmp))?;
        // A leftover longer temp file must not leave trailing bytes behind.
        if file.len().map_err(Error::io("stat", &tmp))? > 0 {
            drop(file);
            io.remove_file(&tmp).map_err(Error::io("remove", &tmp))?;
            return self.store(io, path);
        }
        file.write_all_at(&bytes, 0).map_err(Error::io("write", &tmp))?;
        file.sync_data().map_err(Error::io("fdatasync", &tmp))?;
        drop(file);
        io.rename(&tmp, path).map_err(Error::io("rename", &tmp))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        io.sync_dir(dir).map_err(Error::io("fsync directory", dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut m = Manifest::new(3, "users", 2);
        m.layers.push(LayerEntry {
            layer_id: 1,
            file: "layers/L00000001.mmap".into(),
            keys_file: "layers/L00000001.keys".into(),
            offset: 32,
            size: 1000,
            records: 10,
            live_bytes: 900,
            min_seq: 1,
            max_seq: 10,
        });
        m
    }

    #[test]
    fn round_trips_with_checksum() {
        let m = sample();
        let bytes = m.encode();
        let back = Manifest::decode(&bytes).unwrap();
        assert_eq!(back.layers, m.layers);
        assert!(back.checksum.starts_with("crc32:"));
        let text = String::from_utf8(bytes).unwrap();
        for field in [
            "format_version",
            "dimension_id",
            "\"name\"",
            "layer_id",
            "\"file\"",
            "offset",
            "size",
            "generation",
            "checksum",
        ] {
            assert!(text.contains(field), "{field} missing from {text}");
        }
    }

    #[test]
    fn any_edit_is_detected() {
        let text = String::from_utf8(sample().encode()).unwrap();
        let edited = text.replace("\"size\": 1000", "\"size\": 1001");
        assert_ne!(text, edited);
        assert!(Manifest::decode(edited.as_bytes()).unwrap_err().contains("checksum"));
        assert!(Manifest::decode(&text.as_bytes()[..text.len() / 2]).is_err());
        assert!(Manifest::decode(b"").is_err());
    }

    #[test]
    fn store_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let io = crate::io::StdIo::default();
        let p = dir.path().join("index.json");
        let mut m = sample();
        m.store(&io, &p).unwrap();
        m.generation = 2;
        m.store(&io, &p).unwrap();
        assert_eq!(Manifest::load(&io, &p).unwrap().unwrap().generation, 2);
        assert!(!p.with_extension("json.tmp").exists());
        assert_eq!(Manifest::load(&io, &dir.path().join("none.json")).unwrap(), None);
    }
}
