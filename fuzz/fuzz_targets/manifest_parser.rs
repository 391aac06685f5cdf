//! `index.json` (`manifest::Manifest::decode`).
#![no_main]

#[path = "../../storage/tests/common/fuzz_targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::manifest_parser(data));
