//! Fuzz target `config`: see `medcard::fuzzing::config` and docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| medcard::fuzzing::config(data));
