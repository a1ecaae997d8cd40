//! Fuzz target `profile`: see `medcard::fuzzing::profile` and docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| medcard::fuzzing::profile(data));
