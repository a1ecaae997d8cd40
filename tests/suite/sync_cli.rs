//! `medcard sync` against a real `medcard insurer-sim` child process: the initial load
//! (`--full`) of a generated card-status feed and catalogue, checked with `medcard cache stats
//! --format json`; and a load interrupted by stopping the simulator, resumed by a second run
//! with the same final counts (no gaps, no duplicates).

use crate::common;

use common::insurer::{ANY_PORT, InsurerSim, sim_db};
use common::temp::TempDir;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn sync_command(url: &str, db: &Path, page_size: u32) -> Command {
    let mut command = Command::new(common::medcard_bin());
    command
        .args(["sync", "--full", "--insurer", url, "--db"])
        .arg(db)
        .args(["--page-size", &page_size.to_string(), "--timeout-secs", "5"]);
    command
}

fn stats(db: &Path) -> Value {
    let out = Command::new(common::medcard_bin())
        .args(["cache", "stats", "--format", "json", "--db"])
        .arg(db)
        .output()
        .unwrap();
    assert!(out.status.success(), "cache stats: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn feed<'s>(stats: &'s Value, name: &str) -> &'s Value {
    stats["feeds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feed"] == name)
        .unwrap_or_else(|| panic!("no feed {name} in {stats}"))
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The generated data: (card feed latest version, catalogue latest version).
fn generate(sim: &InsurerSim) -> (u64, u64) {
    let cards = sim.admin(json!({"action": "generate_card_events", "count": 20_000}));
    let items = sim.admin(json!({"action": "generate_catalogue", "count": 3_000}));
    (
        cards["latest_version"].as_u64().unwrap(),
        items["latest_version"].as_u64().unwrap(),
    )
}

/// Every event and item is in the cache once, and both watermarks are at the latest version.
fn assert_complete(db: &Path, card_latest: u64, catalogue_latest: u64) {
    let stats = stats(db);
    // Versions run 1..=latest without gaps: a count equal to the latest means none is
    // missing and none doubled.
    assert_eq!(stats["card_events"], card_latest, "{stats}");
    assert_eq!(stats["catalogue"], catalogue_latest, "{stats}");
    assert!(stats["cards"].as_u64().unwrap() > 10_000, "{stats}");
    for (name, latest) in [
        ("card_events", card_latest),
        ("catalogue", catalogue_latest),
    ] {
        let feed = feed(&stats, name);
        assert_eq!(feed["version"], latest, "{stats}");
        assert_eq!(feed["latest_version"], latest, "{stats}");
    }
}

#[test]
fn full_sync_loads_both_feeds() {
    let dir = TempDir::new("sync-cli-full");
    let sim = InsurerSim::start(&sim_db(&dir), ANY_PORT, &[]);
    let (card_latest, catalogue_latest) = generate(&sim);
    assert!(card_latest >= 20_000 && catalogue_latest >= 3_000);
    let db = dir.join("cache.sqlite");
    let out = sync_command(&sim.url(), &db, 5000).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("card_events:") && stdout.contains("catalogue:"));
    assert_eq!(stdout.matches("caught up").count(), 2, "{}", text(&out));
    // Not a terminal: progress as whole lines on stderr, ending at 100 %.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains('\r'), "{stderr}");
    assert!(stderr.contains("(100 %)"), "{stderr}");
    assert_complete(&db, card_latest, catalogue_latest);

    // Nothing new: a second run applies nothing and changes nothing.
    let again = sync_command(&sim.url(), &db, 5000).output().unwrap();
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("0 applied"),
        "{}",
        text(&again)
    );
    assert_complete(&db, card_latest, catalogue_latest);

    // An incremental pass (no --full) picks up new events.
    let more = sim.admin(json!({"action": "generate_card_events", "count": 500}));
    let out = Command::new(common::medcard_bin())
        .args(["sync", "--insurer", &sim.url(), "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stats = stats(&db);
    assert_eq!(
        feed(&stats, "card_events")["version"],
        more["latest_version"]
    );
}

#[test]
fn interrupted_sync_resumes_without_gaps_or_duplicates() {
    let dir = TempDir::new("sync-cli-resume");
    let sim_db = sim_db(&dir);
    let mut sim = InsurerSim::start(&sim_db, ANY_PORT, &["--latency-ms", "20"]);
    let (card_latest, catalogue_latest) = generate(&sim);
    let db = dir.join("cache.sqlite");

    // Small pages and 20 ms per request: about 200 requests, so stopping the simulator
    // after a second lands in the middle of the card feed.
    let mut sync = sync_command(&sim.url(), &db, 100)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    sim.stop();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sync.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "medcard sync did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = sync.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the insurer at") && stderr.contains("run `medcard sync` again"),
        "{stderr}"
    );
    let partial = stats(&db);
    let applied = feed(&partial, "card_events")["version"].as_u64().unwrap();
    assert!(applied > 0 && applied < card_latest, "{partial}");
    assert_eq!(partial["card_events"], applied, "{partial}");
    assert!(
        feed(&partial, "card_events")["last_error"].is_string(),
        "{partial}"
    );

    // The simulator again, on the same database (a new port): the rerun resumes.
    let sim = InsurerSim::start(&sim_db, ANY_PORT, &[]);
    let out = sync_command(&sim.url(), &db, 1000).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("version {} →", thousands(applied))),
        "{}",
        text(&out)
    );
    assert_complete(&db, card_latest, catalogue_latest);
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
