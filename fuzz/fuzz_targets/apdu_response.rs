//! Fuzz target `apdu_response`: see `medcard::fuzzing::apdu_response` and docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| medcard::fuzzing::apdu_response(data));
