//! The release binary hospitals install (`cargo build --release`, no features) has no crash
//! points: the name `MEDCARD_CRASH_AT` is not in it, and with the variable set at every point
//! of the commit (2207) `medcard demo --once` still plays its whole counter visit — swipe,
//! preview, settlement, receipt, the retried commit — and exits normally, where a binary built
//! with `--features fault-injection` is killed at the first point (the contrast test below).
//!
//! The release build is `make test`'s first step, so the `cargo build --release` here only
//! finds it up to date; run alone, it builds it.

use crate::common;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// Every crash point, each at the settlement's 2207.
const CRASH_POINTS: [&str; 4] = [
    "before_send:2207",
    "after_send:2207",
    "after_reply:2207",
    "after_commit:2207",
];

/// A scratch directory for one test; the demo's own files go under it too (`TMPDIR`).
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("medcard-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// Starts `medcard demo --once` with `MEDCARD_CRASH_AT=crash_at` (`after_send` dies at once).
fn start_demo(binary: &Path, dir: &Path, crash_at: &str) -> Child {
    let own = dir.join(crash_at.replace(':', "-"));
    std::fs::create_dir_all(&own).expect("create the demo's directory");
    Command::new(binary)
        .args(["demo", "--once", "--socket"])
        .arg(own.join("demo.sock"))
        .env("TMPDIR", &own)
        .env("MEDCARD_CRASH_AT", crash_at)
        .env("MEDCARD_CRASH_DELAY_MS", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start medcard demo")
}

fn finish(child: Child) -> Output {
    child.wait_with_output().expect("wait for medcard demo")
}

#[test]
fn the_release_binary_has_no_crash_points() {
    let binary = common::release_binary();
    let bytes = std::fs::read(&binary).expect("read the release binary");
    let name = b"MEDCARD_CRASH_AT";
    assert!(
        !bytes.windows(name.len()).any(|window| window == name),
        "{} contains MEDCARD_CRASH_AT",
        binary.display()
    );

    let dir = scratch("release-binary");
    let demos: Vec<(&str, Child)> = CRASH_POINTS
        .iter()
        .map(|&point| (point, start_demo(&binary, &dir, point)))
        .collect();
    for (point, demo) in demos {
        let output = finish(demo);
        assert_eq!(
            output.status.signal(),
            None,
            "MEDCARD_CRASH_AT={point} killed the release binary: {output:?}"
        );
        assert!(
            output.status.success(),
            "MEDCARD_CRASH_AT={point}: {output:?}"
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        for needle in [
            "the patient pays 17.20 in cash",
            "门诊医保结算凭证",
            "the same setl_id",
        ] {
            assert!(
                stdout.contains(needle),
                "MEDCARD_CRASH_AT={point}: {needle} missing from:\n{stdout}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same run with the test build's binary (`--features fault-injection`) dies at the
/// crash point, so the test above would notice crash points in the release binary.
#[cfg(feature = "fault-injection")]
#[test]
fn a_binary_built_with_fault_injection_dies_at_the_crash_point() {
    let dir = scratch("fault-injection-binary");
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_medcard"));
    let output = finish(start_demo(&binary, &dir, CRASH_POINTS[0]));
    assert_eq!(output.status.signal(), Some(libc::SIGKILL), "{output:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
