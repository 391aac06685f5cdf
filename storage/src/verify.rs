//! `Store::verify`: reads every layer, key index and manifest, checks every checksum and
//! every index entry, and reports what it found. It never changes anything.

use std::path::PathBuf;

use serde::Serialize;

use crate::dimension::DimInner;
use crate::keyindex::KeyIndex;
use crate::manifest::Manifest;
use crate::record::decode_entry;
use crate::segment::scan_frames;

/// One thing `verify` found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// Byte offset in it.
    pub offset: u64,
    /// What is wrong.
    pub what: String,
}

/// What [`Store::verify`](crate::Store::verify) read and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Dimensions checked.
    pub dimensions: usize,
    /// Log files checked (sealed layers and active regions).
    pub layers: usize,
    /// Records (entries) read and checksummed.
    pub records: u64,
    /// Bytes of records read.
    pub bytes: u64,
    /// Keys whose value was resolved through the index and verified.
    pub keys: u64,
    /// Everything that failed a check; empty when the store is sound.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

pub(crate) fn verify_dimension(dim: &DimInner, report: &mut VerifyReport) {
    let _no_compaction = dim.compacting.lock();
    report.dimensions += 1;
    let io = &*dim.shared.io;
    let mut found = Vec::new();
    match Manifest::load(io, &dim.paths.manifest()) {
        Ok(Some(_)) => {}
        Ok(None) => found.push(report_problem(dim.paths.manifest(), 0, "index.json is missing".into())),
        Err(e) => found.push(report_problem(dim.paths.manifest(), 0, e.to_string())),
    }
    let damaged = dim.paths.damaged_manifest();
    if damaged.exists() {
        found.push(report_problem(
            damaged,
            0,
            "index.json was damaged or missing and has been rebuilt from the layer files; check this \
             dimension's name and contents (a layer file lost with it cannot be detected), then delete this file"
                .into(),
        ));
    }
    let cap = match dim.capture() {
        Ok(c) => c,
        Err(e) => {
            found.push(report_problem(dim.paths.dir.clone(), 0, e.to_string()));
            report.problems.extend(found);
            return;
        }
    };
    // The newest layer captured may still be getting its key index (a seal writes it
    // afterwards); a seal after the capture only adds a layer this run does not check.
    dim.finish_key_index();
    let mut logs: Vec<(std::sync::Arc<crate::segment::Segment>, usize, Option<u32>)> =
        cap.sealed.iter().map(|(id, seg)| (seg.clone(), 0, Some(*id))).collect();
    logs.push((cap.region.clone(), cap.region_end, None));
    for (seg, end, sealed) in logs {
        report.layers += 1;
        let map = seg.map();
        let end = match sealed {
            Some(id) => {
                cap.manifest.layers.iter().find(|l| l.layer_id == id).map_or(0, |l| (l.offset + l.size) as usize)
            }
            None => end,
        };
        let scan = scan_frames(&map, end, |_, _, entries| {
            for (_, e) in entries {
                report.records += 1;
                report.bytes += (crate::record::ENTRY_HEADER_LEN + e.key.len() + e.value.len()) as u64;
            }
        });
        if let Some((at, reason)) = scan.stopped {
            found.push(report_problem(seg.path(), at as u64, reason.to_string()));
        } else if scan.end != end {
            found.push(report_problem(
                seg.path(),
                scan.end as u64,
                format!("records end at {}, expected {end}", scan.end),
            ));
        }
        if let Some(id) = sealed {
            check_key_index(dim, id, &map, &mut found);
        }
    }
    // Every index entry must resolve to a verified value of its key.
    let state = dim.state.read();
    let mut ordered = 0;
    state.ordered.for_each(|key, loc| {
        ordered += 1;
        report.keys += 1;
        if state.points.loc(key) != Some(*loc) {
            found.push(report_problem(dim.paths.dir.clone(), 0, format!("index entries for key {key:?} disagree")));
        }
        let Ok(seg) = state.segment(loc.layer) else {
            found.push(report_problem(dim.paths.dir.clone(), 0, format!("key points at missing layer {}", loc.layer)));
            return;
        };
        let map = seg.map();
        match decode_entry(map.get(loc.off as usize..).unwrap_or(&[])) {
            Ok((e, _)) if e.key == &key[..] => {}
            Ok(_) => {
                found.push(report_problem(seg.path(), loc.off as u64, "index points at another key's entry".into()))
            }
            Err(e) => found.push(report_problem(seg.path(), loc.off as u64, e.to_string())),
        }
    });
    if ordered != state.points.len() {
        found.push(report_problem(dim.paths.dir.clone(), 0, "ordered and hashed indexes disagree".into()));
    }
    drop(state);
    report.problems.extend(found);
}

fn check_key_index(dim: &DimInner, layer: u32, log: &[u8], found: &mut Vec<Problem>) {
    let path = dim.paths.keys(layer);
    let index = match KeyIndex::load(&*dim.shared.io, &path) {
        Ok(i) => i,
        Err(e) => {
            found.push(report_problem(path, 0, e.to_string()));
            return;
        }
    };
    for item in index.iter() {
        match decode_entry(log.get(item.offset as usize..).unwrap_or(&[])) {
            Ok((e, _)) if e.key == item.key && e.kind == item.kind => {}
            _ => found.push(report_problem(
                path.clone(),
                item.offset as u64,
                "key index entry does not match the layer".into(),
            )),
        }
    }
}

fn report_problem(file: PathBuf, offset: u64, what: String) -> Problem {
    Problem { file, offset, what }
}
