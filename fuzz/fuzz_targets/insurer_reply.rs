//! Fuzz target `insurer_reply`: see `medcard::fuzzing::insurer_reply` and docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| medcard::fuzzing::insurer_reply(data));
