//! Fuzz target `tlv`: see `medcard::fuzzing::tlv` and docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| medcard::fuzzing::tlv(data));
