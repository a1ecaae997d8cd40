//! The fuzz targets' inputs replayed through the normal test binary (docs/fuzzing.md): every
//! seed of `fuzz/corpus/NAME/` and every input a fuzzer once crashed, hung or exhausted
//! memory with, kept in `fuzz/regressions/NAME/`, goes through the target's entry point in
//! `medcard::fuzzing`. A panic names the target and the file; so a fixed finding stays fixed
//! without cargo-fuzz installed.

use crate::common;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// The files of `dir` (none when it does not exist), sorted for a stable order.
fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|path| path.is_file());
    files.sort();
    files
}

/// Runs every file of `fuzz/KIND/NAME/` through its target; the files that panicked.
fn replay(kind: &str) -> (usize, Vec<String>) {
    let mut count = 0;
    let mut failed = Vec::new();
    for (name, target) in medcard::fuzzing::TARGETS {
        for path in inputs(&common::repo_file("fuzz").join(kind).join(name)) {
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            count += 1;
            if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
                failed.push(format!("{name}: {}", path.display()));
            }
        }
    }
    (count, failed)
}

#[test]
fn every_seed_of_every_target_is_read_without_a_panic() {
    let (count, failed) = replay("corpus");
    assert!(count > 0, "no seeds under fuzz/corpus/");
    assert!(failed.is_empty(), "seeds that panic: {failed:#?}");
}

#[test]
fn every_input_a_fuzzer_crashed_with_is_now_read_without_a_panic() {
    let (_, failed) = replay("regressions");
    assert!(
        failed.is_empty(),
        "fuzzer findings that panic again: {failed:#?}"
    );
}

#[test]
fn every_target_has_seeds_and_a_fuzz_target_file() {
    for (name, _) in medcard::fuzzing::TARGETS {
        let fuzz = common::repo_file("fuzz");
        assert!(
            !inputs(&fuzz.join("corpus").join(name)).is_empty(),
            "{name}: no seeds"
        );
        let target = fuzz.join("fuzz_targets").join(format!("{name}.rs"));
        assert!(target.is_file(), "{name}: no {}", target.display());
    }
}
