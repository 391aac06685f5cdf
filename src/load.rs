//! `jessy load`: read `jessy dump`'s JSON lines back.
//!
//! Strategy: lines are read in groups of up to [`GROUP_LINES`] lines (or [`GROUP_BYTES`] of
//! keys and values). A whole group is parsed and checked before any of it is written, so a
//! malformed line stops the load with its line number and nothing of its group is applied;
//! the groups before it stay loaded. A group is written as one `WriteBatch` per dimension
//! (split further only when a batch would not fit in one region, `MMAP_MAX_SIZE`).
//! Dimensions are created as needed (existing ones are written into, later lines win).
//! The store is opened with `Durability::None` and synced once at the end (also after a
//! failure), so a load costs one sync, not one per batch: a crash during a load keeps a
//! prefix of its batches, and running the same load again is harmless.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use anyhow::{anyhow, Context as _};
use jessy_storage::{validate_dimension_name, Durability, Store, WriteBatch, MAX_KEY_LEN};
use serde::Deserialize;

use crate::bytes::from_json;
use crate::common::{engine, existing_dimension, is_dir_name, spinner, Need, StoreOpts};
use crate::Failure;

/// Lines per group (a group is checked whole before it is written).
pub const GROUP_LINES: usize = 1000;
/// Key and value bytes per group.
pub const GROUP_BYTES: u64 = 16 << 20;
/// The engine's per-entry, per-frame and per-file overheads (docs/FORMAT.md): an entry is
/// 12 bytes + key + value, a frame adds 24, a region's header is 32.
const ENTRY_OVERHEAD: u64 = 12;
const FRAME_OVERHEAD: u64 = 24;
const FILE_HEADER: u64 = 32;

/// The flags of `jessy load`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreOpts,
    /// The JSON lines file; `-` (the default) reads standard input
    #[arg(value_name = "FILE", default_value = "-")]
    file: PathBuf,
    /// Load every line into this dimension, whatever its "dim" says (a name, created if
    /// needed, or the directory name of an existing dimension, like D01)
    #[arg(long, value_name = "DIM")]
    into: Option<String>,
}

/// One line of the dump format.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    dim: Option<String>,
    key: Option<String>,
    key_b64: Option<String>,
    value: Option<String>,
    value_b64: Option<String>,
}

/// Key-value pairs, in input order.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The parsed, checked lines of one group, per dimension in first-seen order.
#[derive(Default)]
struct Group {
    first_line: u64,
    lines: usize,
    bytes: u64,
    order: Vec<String>,
    ops: HashMap<String, Pairs>,
}

impl Group {
    fn touch(&mut self, dim: &str) -> &mut Pairs {
        if !self.ops.contains_key(dim) {
            self.order.push(dim.to_string());
        }
        self.ops.entry(dim.to_string()).or_default()
    }
}

struct Loader {
    store: Store,
    max_frame_payload: u64,
    known_dims: HashSet<String>,
    created: Vec<String>,
    records: u64,
    last_line_loaded: u64,
}

/// Reads the lines, writes them in checked groups, syncs once; reports what it did.
pub fn run(args: Args) -> Result<(), Failure> {
    // `--into` takes what `put` takes: a dimension's name (created if needed) or the
    // directory name of an existing one (`D01`). A name no dimension can have fails before
    // the store is opened; a directory name is looked up once it is.
    if let Some(into) = args.into.as_deref().filter(|d| !is_dir_name(d)) {
        validate_dimension_name(into).map_err(engine)?;
    }
    let from_stdin = args.file.as_os_str() == "-";
    let reader: Box<dyn BufRead> = if from_stdin {
        Box::new(BufReader::with_capacity(1 << 20, std::io::stdin()))
    } else {
        let f = File::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?;
        Box::new(BufReader::with_capacity(1 << 20, f))
    };
    let source = if from_stdin { "standard input".to_string() } else { args.file.display().to_string() };
    let store = args.store.open_with(Need::CreateIfMissing, |c| c.durability(Durability::None))?;
    if let Some(into) = args.into.as_deref().filter(|d| is_dir_name(d)) {
        existing_dimension(&store, into)?;
    }
    let max_size = store.config().max_size_bytes();
    let mut loader = Loader {
        known_dims: store.dimensions().iter().map(|d| d.name()).collect(),
        store,
        max_frame_payload: max_size.saturating_sub(FILE_HEADER + FRAME_OVERHEAD),
        created: Vec::new(),
        records: 0,
        last_line_loaded: 0,
    };
    let result = loader.read_all(reader, args.into.as_deref());
    // Whatever happened, what was written is made durable once.
    let synced = loader.store.sync().context("syncing the store");
    let summary = format!(
        "loaded {} records{} from {source}{}",
        loader.records,
        if loader.last_line_loaded > 0 { format!(" (lines 1-{})", loader.last_line_loaded) } else { String::new() },
        if loader.created.is_empty() {
            String::new()
        } else {
            format!("; created dimension(s): {}", loader.created.join(", "))
        }
    );
    match result {
        Ok(()) => {
            synced?;
            loader.store.close().context("closing the store")?;
            println!("{summary}");
            Ok(())
        }
        Err(e) => {
            if let Err(s) = synced {
                eprintln!("jessy: error: {s:#}");
            }
            eprintln!("jessy: {summary}");
            Err(e)
        }
    }
}

impl Loader {
    fn read_all(&mut self, mut reader: Box<dyn BufRead>, into: Option<&str>) -> Result<(), Failure> {
        let bar = spinner("loading", "records");
        let mut buf = Vec::new();
        let mut line_no = 0u64;
        let mut group = Group { first_line: 1, ..Group::default() };
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).context("reading the input")?;
            if n == 0 {
                break;
            }
            line_no += 1;
            if let Err(reason) = self.parse_into(&buf, into, &mut group) {
                bar.finish_and_clear();
                return Err(
                    anyhow!("line {line_no}: {reason}; nothing from line {} on was written", group.first_line).into()
                );
            }
            group.lines += 1;
            if group.lines >= GROUP_LINES || group.bytes >= GROUP_BYTES {
                let next = line_no + 1;
                let done = std::mem::replace(&mut group, Group { first_line: next, ..Group::default() });
                let records = self.flush(done, line_no).inspect_err(|_| bar.finish_and_clear())?;
                bar.inc(records);
            }
        }
        let records = self.flush(group, line_no).inspect_err(|_| bar.finish_and_clear())?;
        bar.inc(records);
        bar.finish_and_clear();
        Ok(())
    }

    /// Parses and checks one line into the group; the error is the reason, for the caller
    /// to prefix with the line number.
    fn parse_into(&mut self, raw: &[u8], into: Option<&str>, group: &mut Group) -> Result<(), String> {
        let text = std::str::from_utf8(raw).map_err(|e| format!("not valid UTF-8 ({e})"))?;
        let text = text.trim();
        if text.is_empty() {
            return Ok(());
        }
        let line: Line = serde_json::from_str(text).map_err(|e| format!("not a dump line: {e}"))?;
        let dim = match (into, line.dim) {
            (Some(into), _) => into.to_string(),
            (None, Some(dim)) => dim,
            (None, None) => return Err("`dim` is missing (or pass --into DIM)".into()),
        };
        if !self.known_dims.contains(&dim) {
            if self.store.get_dimension(&dim).is_err() {
                validate_dimension_name(&dim).map_err(|e| e.to_string())?;
            }
            self.known_dims.insert(dim.clone());
        }
        let key = from_json("key", line.key, line.key_b64)?;
        let value = from_json("value", line.value, line.value_b64)?;
        let (key, value) = match (key, value) {
            (None, None) => {
                group.touch(&dim);
                return Ok(());
            }
            (Some(k), Some(v)) => (k, v),
            (None, Some(_)) => return Err("`key` (or `key_b64`) is missing".into()),
            (Some(_), None) => return Err("`value` (or `value_b64`) is missing".into()),
        };
        if key.is_empty() {
            return Err("the key is empty; keys are 1 to 4096 bytes".into());
        }
        if key.len() > MAX_KEY_LEN {
            return Err(format!("the key is {} bytes, longer than the limit of {MAX_KEY_LEN}", key.len()));
        }
        let size = ENTRY_OVERHEAD + key.len() as u64 + value.len() as u64;
        if size > self.max_frame_payload {
            return Err(format!(
                "the value of {} bytes does not fit in one region (MMAP_MAX_SIZE={}); raise MMAP_MAX_SIZE",
                value.len(),
                self.store.config().max_size_bytes()
            ));
        }
        group.bytes += key.len() as u64 + value.len() as u64;
        group.touch(&dim).push((key, value));
        Ok(())
    }

    /// Writes a checked group; returns the records written.
    fn flush(&mut self, mut group: Group, last_line: u64) -> Result<u64, Failure> {
        let mut written = 0;
        for name in std::mem::take(&mut group.order) {
            let ops = group.ops.remove(&name).unwrap_or_default();
            let context = || format!("writing lines {}-{last_line} into dimension {name:?}", group.first_line);
            let (dim, created) = self.store.create_dimension(&name).with_context(context)?;
            if created {
                self.created.push(name.clone());
            }
            let mut batch = WriteBatch::new();
            let mut payload = 0u64;
            for (key, value) in ops {
                let size = ENTRY_OVERHEAD + key.len() as u64 + value.len() as u64;
                if !batch.is_empty() && payload + size > self.max_frame_payload {
                    written += batch.len() as u64;
                    dim.write(std::mem::take(&mut batch)).with_context(context)?;
                    payload = 0;
                }
                payload += size;
                batch.push_put(key, value);
            }
            written += batch.len() as u64;
            dim.write(batch).with_context(context)?;
        }
        self.records += written;
        self.last_line_loaded = last_line;
        Ok(written)
    }
}
