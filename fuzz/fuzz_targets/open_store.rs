//! Open a store from arbitrary bytes: the input edits a small real store's files.
#![no_main]

#[path = "../../storage/tests/common/fuzz_targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::open_store(data));
