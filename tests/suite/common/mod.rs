//! Shared by the integration tests: the fixture cards' expected contents (written from the
//! fixture descriptions, not from medcard's output) and a harness for the real PC/SC stack.

#![allow(dead_code)]

pub mod daemon;
pub mod expected;
pub mod insurer;
pub mod settle;
pub mod stack;

use std::path::PathBuf;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/cards")
        .join(format!("{name}.toml"))
}

pub fn medcard_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_medcard"))
}
