//! The cache and journal are never silently lost (issue 12, item 8): a cache file that cannot
//! be opened (random bytes, a directory in its place), fails `PRAGMA quick_check` (damaged
//! pages, a truncated file), is empty, missing or replaced by another journal is an error —
//! `system.info` says `error` with the reason, settlement is refused with that reason (1019,
//! not "not configured"), card reads and verdicts go on from the insurer, the log says what
//! to do — and an empty file is never initialised afresh. `medcard journal backup` copies a
//! live journal, and the documented restore brings it back.
//!
//! Real parts: `medcard serve` and `medcard journal` (children), `medcard insurer-sim` on
//! loopback, the real socket and SQLite files.

use crate::common;

use common::daemon::Daemon;
use common::rpc::Rpc;
use common::settle::{Rig, XIAOWANG, commit_params, one_line, preview, register, wait_card};
use medcard::serve::rpc::code;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn cache_path(rig: &Rig) -> PathBuf {
    rig.config
        .parent()
        .expect("the rig's directory")
        .join("cache.sqlite")
}

/// Removes the WAL and shared-memory files beside `cache` (a stopped daemon's).
fn remove_wal(cache: &Path) {
    for suffix in ["-wal", "-shm"] {
        let mut name = cache.as_os_str().to_os_string();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}

/// A rig whose daemon settled one visit on a healthy cache, then stopped (its WAL folded in
/// and removed): the journal holds it. Returns the rig and the cache file.
fn used_cache(tag: &str) -> (Rig, PathBuf) {
    let rig = Rig::start(tag, "");
    let mut daemon = rig.daemon(&[XIAOWANG], &[]);
    let mut client = daemon.client();
    wait_card(&mut client);
    let mdtrt_id = register(&mut client);
    let p = preview(&mut client, &mdtrt_id, one_line("5.00"));
    let done = client.result("settle.commit", commit_params(&p["preview_id"], "kept"));
    assert_eq!(done["state"], "settled", "{done}");
    drop(client);
    daemon.terminate();
    let cache = cache_path(&rig);
    remove_wal(&cache);
    (rig, cache)
}

/// The daemon on a broken cache: the cache and the journal in error (with `reason_part` in
/// the reason), settlement refused with it, reads from the insurer, the log's advice.
fn check_refused(rig: &Rig, reason_part: &str) -> Daemon {
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let mut client = daemon.client();
    let info = client.result("system.info", json!({}));
    assert_eq!(info["cache"]["status"], "error", "{info}");
    let error = info["cache"]["error"].as_str().unwrap_or_default();
    assert!(error.contains(reason_part), "{reason_part:?} in {info}");
    assert_eq!(info["journal"]["state"], "error", "{info}");
    let card = wait_card(&mut client);
    assert!(
        card["verdict"]["code"].is_string(),
        "verdict from the insurer: {card}"
    );
    let refused = client.error(
        "visit.register",
        json!({"dept_code": "A03", "dept_name": "内科", "dr_name": "张医生"}),
    );
    assert_eq!(refused["code"], code::JOURNAL_UNAVAILABLE, "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(reason_part) && !message.contains("needs [insurer] url"),
        "{refused}"
    );
    assert_eq!(
        rig.requests("2201"),
        1,
        "only the healthy run's registration"
    );
    assert!(
        daemon.log_text().contains("cannot be used"),
        "{}",
        daemon.log_text()
    );
    daemon
}

fn refuse_with(rig: &Rig, reason_part: &str) {
    drop(check_refused(rig, reason_part));
}

/// Deterministic noise (xorshift), for a file of random bytes.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[test]
fn a_file_of_random_bytes_is_an_error_not_not_configured() {
    let (rig, cache) = used_cache("guard-noise");
    std::fs::write(&cache, noise(64 * 1024)).expect("write noise");
    refuse_with(&rig, "not a database");
    assert_eq!(
        std::fs::read(&cache).expect("read"),
        noise(64 * 1024),
        "left as it was"
    );
}

#[test]
fn a_directory_in_the_cache_files_place_is_an_error() {
    let (rig, cache) = used_cache("guard-dir");
    std::fs::remove_file(&cache).expect("remove the cache");
    std::fs::create_dir(&cache).expect("a directory in its place");
    refuse_with(&rig, "not a regular file");
}

#[test]
fn a_zero_length_file_is_never_initialised_afresh() {
    let (rig, cache) = used_cache("guard-empty");
    std::fs::write(&cache, b"").expect("truncate to zero");
    refuse_with(&rig, "empty (zero bytes)");
    let len = std::fs::metadata(&cache).expect("the file").len();
    assert_eq!(len, 0, "the empty file was left for the operator");
}

#[test]
fn a_file_cut_short_or_with_damaged_pages_fails_its_check() {
    let (rig, cache) = used_cache("guard-damaged");
    let good = std::fs::read(&cache).expect("read the cache");
    assert!(
        good.len() > 8 * 4096,
        "a cache of several pages: {}",
        good.len()
    );
    // Every page after the first two overwritten with noise.
    let mut damaged = good.clone();
    let tail = damaged.len() - 2 * 4096;
    damaged[2 * 4096..].copy_from_slice(&noise(tail));
    std::fs::write(&cache, &damaged).expect("damage the pages");
    refuse_with(&rig, "cannot be used");

    // Cut to its first two pages.
    std::fs::write(&cache, &good[..2 * 4096]).expect("truncate");
    refuse_with(&rig, "cannot be used");
}

#[test]
fn a_missing_or_replaced_journal_is_an_error() {
    let (rig, cache) = used_cache("guard-replaced");
    let kept = std::fs::read(&cache).expect("read the cache");
    std::fs::remove_file(&cache).expect("remove the cache");
    refuse_with(&rig, "it is missing");
    assert!(!cache.exists(), "no new empty journal was created");

    // Another journal (a new cache opened elsewhere) copied into its place.
    let other = rig.config.parent().expect("dir").join("other");
    std::fs::create_dir(&other).expect("mkdir");
    drop(medcard::cache::Cache::open(other.join("cache.sqlite")).expect("another cache"));
    std::fs::copy(other.join("cache.sqlite"), &cache).expect("copy it in");
    if other.join("cache.sqlite-wal").exists() {
        let wal = cache.with_file_name("cache.sqlite-wal");
        std::fs::copy(other.join("cache.sqlite-wal"), wal).expect("copy its WAL in");
    }
    refuse_with(&rig, "another journal");

    // The right file back: settlement works again, the old settlement is there.
    std::fs::write(&cache, kept).expect("put it back");
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let mut client = daemon.client();
    let info = client.result("system.info", json!({}));
    assert_eq!(info["journal"]["state"], "ok", "{info}");
    let status = client.result("settle.status", json!({"request_id": "kept"}));
    assert_eq!(status["state"], "settled", "{status}");
}

#[test]
fn a_journal_backed_up_live_restores_after_the_file_is_lost() {
    let rig = Rig::start("guard-backup", "");
    let mut daemon = rig.daemon(&[XIAOWANG], &[]);
    let mut client = daemon.client();
    wait_card(&mut client);
    let mdtrt_id = register(&mut client);
    let p = preview(&mut client, &mdtrt_id, one_line("5.00"));
    let done = client.result(
        "settle.commit",
        commit_params(&p["preview_id"], "backed-up"),
    );
    let backup = rig.config.parent().expect("dir").join("backup.sqlite");
    let config = rig.config.display().to_string();
    let backup_text = backup.display().to_string();
    let back_up = || {
        common::medcard(&[
            "journal",
            "backup",
            "--config",
            &config,
            "--to",
            &backup_text,
        ])
    };
    let out = back_up();
    assert!(out.status.success(), "{out:?}");
    // A second backup to the same file is refused (nothing overwritten).
    let again = back_up();
    assert_eq!(again.status.code(), Some(2), "{again:?}");
    drop(client);
    daemon.terminate();

    // Disaster: the file is truncated to nothing.
    let cache = cache_path(&rig);
    remove_wal(&cache);
    std::fs::write(&cache, b"").expect("truncate");
    drop(check_refused(&rig, "empty"));

    // Restore as docs/operations.md says: the backup copied into place, WAL files removed.
    std::fs::copy(&backup, &cache).expect("restore");
    remove_wal(&cache);
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let mut client = daemon.client();
    let status: Value = client.result("settle.status", json!({"request_id": "backed-up"}));
    assert_eq!(status["state"], "settled", "{status}");
    assert_eq!(status["setl_id"], done["setl_id"]);
    assert_eq!(
        client.result("system.info", json!({}))["journal"]["state"],
        "ok"
    );
}
