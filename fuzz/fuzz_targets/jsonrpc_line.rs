//! Fuzz target `jsonrpc_line`: see `medcard::fuzzing::jsonrpc_line` and docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| medcard::fuzzing::jsonrpc_line(data));
