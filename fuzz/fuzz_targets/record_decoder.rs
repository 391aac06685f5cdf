//! Frames, entries and whole-log scans (`record::decode_frame`, `segment::scan_frames`).
#![no_main]

#[path = "../../storage/tests/common/fuzz_targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::record_decoder(data));
