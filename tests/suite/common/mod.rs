//! Shared by the integration tests: fixture paths, the `medcard` binary (and the release
//! build, [`release_binary`]), amounts, temporary directories ([`temp`]), the fixture cards'
//! expected contents (written from the fixture descriptions, not from medcard's output;
//! [`expected`]), the JSON-RPC client ([`rpc`]), `medcard serve` ([`daemon`]) and the
//! insurer simulator ([`insurer`]) as child processes, a settlement rig ([`settle`]), a
//! harness for the real PC/SC stack ([`stack`]), a process running as another local user
//! ([`other_user`]), the web endpoint's addresses, tokens and plain HTTP ([`web`]), the kiosk
//! page in Chromium on an in-process daemon ([`kiosk`]) and each test's output directory
//! ([`test_output_dir`], for screenshots).

pub mod daemon;
pub mod expected;
pub mod hospital;
pub mod insurer;
pub mod kiosk;
pub mod other_user;
pub mod rpc;
pub mod settle;
pub mod stack;
pub mod temp;
pub mod web;

use rust_decimal::Decimal;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// A file of the repository, by its path from the top.
pub fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A fixture card: `fixtures/cards/NAME.toml`.
pub fn fixture(name: &str) -> PathBuf {
    repo_file("fixtures/cards").join(format!("{name}.toml"))
}

/// A fixture PSAM: `fixtures/psam/NAME.toml`.
pub fn psam(name: &str) -> PathBuf {
    repo_file("fixtures/psam").join(format!("{name}.toml"))
}

/// The text of a built-in card profile, `apdu-specs/NAME.toml`.
pub fn profile_text(name: &str) -> String {
    std::fs::read_to_string(repo_file("apdu-specs").join(format!("{name}.toml")))
        .expect("a built-in profile")
}

/// `target/test-output/NAME/`, emptied and created: what a test leaves to look at afterwards
/// (the browser tests' screenshots of their last screen).
pub fn test_output_dir(test_name: &str) -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target>/tmp`, so this follows CARGO_TARGET_DIR too.
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .to_path_buf();
    let dir = target.join("test-output").join(test_name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the test's output directory");
    dir
}

/// Builds the release binary the way `make build` does (or finds it up to date) and returns
/// its path, as cargo reports it (so `CARGO_TARGET_DIR` is honoured). The variables cargo
/// set for this test process (`CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME`, …) are left out: build
/// scripts watch them (ring's does), and with them set the release build `make test` made
/// would be rebuilt from ring up.
pub fn release_binary() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let set_by_cargo = std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| set_by_cargo_for_tests(&name.to_string_lossy()));
    let mut build = Command::new(cargo);
    for name in set_by_cargo {
        build.env_remove(name);
    }
    let output = build
        .args(["build", "--release", "--bin", "medcard"])
        .arg("--message-format=json-render-diagnostics")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run cargo build --release");
    assert!(output.status.success(), "cargo build --release failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .expect("cargo names the medcard executable")
}

/// A variable cargo sets for a test process (from the package being tested), not the
/// user's own configuration of cargo (`CARGO_HOME`, `CARGO_TARGET_DIR`, …).
fn set_by_cargo_for_tests(name: &str) -> bool {
    const PREFIXES: [&str; 4] = [
        "CARGO_MANIFEST_",
        "CARGO_PKG_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
    ];
    PREFIXES.iter().any(|prefix| name.starts_with(prefix))
        || name == "CARGO_PRIMARY_PACKAGE"
        || name == "OUT_DIR"
}

pub fn medcard_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_medcard"))
}

/// Runs `medcard ARGS…` to the end.
pub fn medcard(args: &[&str]) -> Output {
    Command::new(medcard_bin())
        .args(args)
        .output()
        .expect("run medcard")
}

/// What medcard printed on stdout, as JSON.
pub fn json_of(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "medcard printed no JSON ({e}): stdout {:?} stderr {:?}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// An amount written as in the documents: `d("102.80")`.
pub fn d(text: &str) -> Decimal {
    Decimal::from_str(text).expect("a decimal amount")
}

/// Polls `check` every 100 ms until it holds; fails the test after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
