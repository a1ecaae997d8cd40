//! Fuzz target `card_image`: see `medcard::fuzzing::card_image` and docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| medcard::fuzzing::card_image(data));
