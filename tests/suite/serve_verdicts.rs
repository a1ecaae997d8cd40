//! Verdicts through the real socket: `medcard serve --virtual …` as a child with a config
//! file pointing at a real `medcard insurer-sim` child on loopback and a temporary cache.
//! Every verdict code the daemon can produce from a card read without a PIN (and
//! `balance_mismatch` once `card.verify_pin` has read the on-card balance), the insurer
//! down (verdicts from the cache), the insurer back (sync catches up), garbage and dropped
//! replies (the cache intact, the error in `sync.status`).

use crate::common;

use common::daemon::Daemon;
use common::insurer::{InsurerSim, sim_db, verdict_config};
use common::rpc::{Client, Events, PATIENCE, Rpc};
use common::temp::TempDir;
use common::{fixture, wait_until};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A config file in `dir`: the insurer at `url`, the cache at `dir/cache.sqlite`, a one-second
/// sync interval.
fn config_file(dir: &Path, url: &str, stale_limit_s: u64) -> PathBuf {
    verdict_config(dir, url, stale_limit_s, "")
}

/// 小王's card in a daemon judged against a simulator of its own, once the fixtures' three
/// card events are in the cache (dropped in reverse: client, daemon, simulator, directory).
fn xiaowang_synced(tag: &str) -> (TempDir, InsurerSim, Daemon, Client) {
    let dir = TempDir::new(tag);
    let sim = InsurerSim::in_dir(&dir);
    let config = config_file(&dir, &sim.url(), 86_400);
    let daemon = start_daemon(&config, &["xiaowang"]);
    let mut client = daemon.client();
    wait_for_feed(&mut client, 3);
    (dir, sim, daemon, client)
}

fn reader(index: usize) -> String {
    format!("medcard virtual reader {index}")
}

/// xiaowang's card with one text changed, written to `dir/NAME.toml` (a card the insurer
/// does not know, or whose holder's name differs from the insurer's record).
fn variant(dir: &Path, name: &str, from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(fixture("xiaowang")).expect("xiaowang.toml");
    assert!(text.contains(from), "xiaowang.toml has no {from:?}");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text.replace(from, to)).expect("write the variant");
    path.display().to_string()
}

fn start_daemon(config: &Path, cards: &[&str]) -> Daemon {
    Daemon::start_virtual(config, cards, &[])
}

/// Waits until the card-status feed's watermark is at least `version`.
fn wait_for_feed(client: &mut Client, version: u64) -> Value {
    let mut status = Value::Null;
    wait_until(
        &format!("card_events version {version}"),
        PATIENCE * 2,
        || {
            status = client.result("sync.status", json!({}));
            status["versions"]["card_events"].as_u64().unwrap_or(0) >= version
        },
    );
    status
}

/// `card.refresh` of reader `index` (the card read again, judged again).
fn swipe(client: &mut Client, index: usize) -> Value {
    client.result("card.refresh", json!({"reader": reader(index)}))
}

/// `card.verify_pin` with the right PIN on reader 0; the card of the `card.ready` it brings.
fn verify_pin(client: &mut Client, events: &mut Events) -> Value {
    let verified = client.result(
        "card.verify_pin",
        json!({"reader": reader(0), "pin": "123456"}),
    );
    assert_eq!(verified, json!({"ok": true}));
    let ready = events.until(&reader(0), "card.ready");
    ready.last().expect("card.ready")["params"]["card"].clone()
}

fn code(card: &Value) -> &str {
    card["verdict"]["code"].as_str().unwrap_or("<none>")
}

fn reason_codes(card: &Value) -> Vec<&str> {
    card["verdict"]["reasons"]
        .as_array()
        .map(|reasons| reasons.iter().filter_map(|r| r["code"].as_str()).collect())
        .unwrap_or_default()
}

#[test]
fn every_verdict_code_from_a_card_read_through_the_socket() {
    let dir = TempDir::new("verdicts");
    let sim = InsurerSim::in_dir(&dir);
    let config = config_file(&dir, &sim.url(), 86_400);
    let unknown_card = variant(&dir, "unknown", "C06123455", "C99999996");
    let renamed = variant(&dir, "renamed", "gbk = \"王小\"", "gbk = \"王大\"");
    let cards = [
        "xiaowang",    // 0: ok, then suspended, then lost
        "expired",     // 1: expired (and other_region)
        "gen1",        // 2: replaced by B07412649 (card_events.toml)
        "quirky",      // 3: cancelled (card_events.toml)
        "pin-locked",  // 4: suspended (persons.toml)
        &unknown_card, // 5: a card number the insurer does not know
        "resident",    // 6: other_region (510100)
        &renamed,      // 7: the card's name differs from the insurer's
    ];
    let daemon = start_daemon(&config, &cards);
    let mut client = daemon.client();
    // The fixtures' three card events reach the cache; each card is then read again.
    wait_for_feed(&mut client, 3);

    let ok = client.result("card.read", json!({"reader": reader(0)}));
    assert_eq!(code(&ok), "ok", "{ok}");
    assert_eq!(ok["verdict"]["may_settle"], "yes");
    assert_eq!(ok["verdict"]["source"], "insurer");
    assert_eq!(ok["verdict"]["stale_seconds"], 0);
    assert!(ok["verdict"]["message_zh"].as_str().is_some());
    assert!(ok["verdict"]["message_en"].as_str().is_some());
    assert_eq!(ok["insured"]["psn_no"], "50000000000000012345");
    assert_eq!(ok["insured"]["insutype"], "310");
    assert_eq!(ok["insured"]["psn_insu_stas"], "1");
    assert_eq!(ok["insured"]["balc"], "102.80");
    assert_eq!(ok["insured"]["insuplc_admdvs"], "500000");
    assert_eq!(ok["card_no"], "C06123455");

    let expired = swipe(&mut client, 1);
    assert_eq!(code(&expired), "expired", "{expired}");
    assert_eq!(expired["verdict"]["may_settle"], "no");
    assert_eq!(reason_codes(&expired), ["expired", "other_region"]);

    let replaced = swipe(&mut client, 2);
    assert_eq!(code(&replaced), "replaced", "{replaced}");
    assert_eq!(
        replaced["verdict"]["reasons"][0]["new_card_no"],
        "B07412649"
    );
    assert!(
        replaced["verdict"]["message_zh"]
            .as_str()
            .is_some_and(|m| m.contains("B07412649"))
    );

    let cancelled = swipe(&mut client, 3);
    assert_eq!(code(&cancelled), "cancelled", "{cancelled}");

    let suspended = swipe(&mut client, 4);
    assert_eq!(code(&suspended), "suspended", "{suspended}");
    assert_eq!(suspended["insured"]["psn_insu_stas"], "2");

    let unknown = swipe(&mut client, 5);
    assert_eq!(code(&unknown), "unknown_person", "{unknown}");
    assert_eq!(unknown["verdict"]["source"], "insurer");
    assert_eq!(unknown["insured"], Value::Null);

    let other = swipe(&mut client, 6);
    assert_eq!(code(&other), "other_region", "{other}");
    assert_eq!(other["verdict"]["may_settle"], "yes");
    assert_eq!(other["insured"]["insuplc_admdvs"], "510100");

    let mismatch = swipe(&mut client, 7);
    assert_eq!(code(&mismatch), "identity_mismatch", "{mismatch}");
    assert_eq!(
        mismatch["verdict"]["reasons"][0]["fields"],
        json!(["psn_name"])
    );

    // A person suspended at the insurer: the next swipe's 1101 says so.
    sim.admin(json!({"action": "suspend_person", "certno": "500103199103080319"}));
    let now_suspended = swipe(&mut client, 0);
    assert_eq!(code(&now_suspended), "suspended", "{now_suspended}");
    sim.admin(json!({"action": "resume_person", "certno": "500103199103080319"}));
    assert_eq!(code(&swipe(&mut client, 0)), "ok");

    // Lost at the insurer while the card is in the reader → the next sync → the session is
    // judged again (card.ready, same session) → and the next swipe is refused.
    let session_id = client.result("card.read", json!({"reader": reader(0)}))["session_id"].clone();
    let mut events = daemon.events();
    let version = sim.admin(json!({"action": "report_lost", "card_no": "C06123455"}))["version"]
        .as_u64()
        .expect("the event's version");
    let ready = events.until(&reader(0), "card.ready");
    let card = &ready.last().expect("card.ready")["params"]["card"];
    assert_eq!(code(card), "lost", "{card}");
    assert_eq!(card["session_id"], session_id);
    wait_for_feed(&mut client, version);
    let lost = swipe(&mut client, 0);
    assert_eq!(code(&lost), "lost", "{lost}");
    assert_eq!(lost["verdict"]["may_settle"], "no");

    let info = client.result("system.info", json!({}));
    assert_eq!(info["cache"]["status"], "ok", "{info}");
    assert_eq!(info["insurer"]["status"], "configured", "{info}");
    let log = daemon.log_text();
    assert!(
        !log.contains("500103199103080319"),
        "an unmasked certno in the log"
    );
}

#[test]
fn insurer_down_verdicts_from_the_cache_then_sync_catches_up() {
    let (dir, mut sim, daemon, mut client) = xiaowang_synced("verdicts-down");
    let addr = sim.addr.clone();
    let up = swipe(&mut client, 0);
    assert_eq!(up["verdict"]["source"], "insurer", "{up}");
    let synced = client.result("sync.status", json!({}));
    let last_ok = synced["last_ok"].clone();
    assert!(last_ok.is_string(), "{synced}");

    sim.stop();
    let down = swipe(&mut client, 0);
    assert_eq!(code(&down), "ok", "{down}");
    assert_eq!(down["verdict"]["source"], "cache");
    assert!(
        down["verdict"]["stale_seconds"].as_u64().is_some(),
        "{down}"
    );
    assert_eq!(down["insured"]["psn_no"], "50000000000000012345");
    wait_until("the sync error in sync.status", PATIENCE * 2, || {
        client.result("sync.status", json!({}))["last_error"].is_string()
    });

    // Back on the same port with the same database: the sync catches up by itself.
    let sim = InsurerSim::start(&sim_db(&dir), &addr, &[]);
    let version = sim.admin(json!({"action": "report_lost", "card_no": "C06123455"}))["version"]
        .as_u64()
        .expect("version");
    wait_for_feed(&mut client, version);
    // `last_ok` is the older of the two feeds' successes: it moves once the catalogue's turn,
    // after the card feed's, has succeeded too.
    wait_until(
        "sync.status last_ok to move past the outage",
        PATIENCE * 2,
        || client.result("sync.status", json!({}))["last_ok"] != last_ok,
    );
    assert_eq!(code(&swipe(&mut client, 0)), "lost");
    drop(daemon);

    // Facts older than cache.stale_limit_s with the insurer down: stale_cache, self-pay.
    let mut sim = sim;
    sim.stop();
    let stale_config = config_file(&dir, &sim.url(), 1);
    std::thread::sleep(Duration::from_millis(2100));
    let daemon = start_daemon(&stale_config, &["xiaowang"]);
    let mut client = daemon.client();
    let stale = client.result("card.read", json!({"reader": reader(0), "wait_ms": 5000}));
    assert_eq!(stale["verdict"]["source"], "cache", "{stale}");
    assert!(reason_codes(&stale).contains(&"stale_cache"), "{stale}");
    assert!(stale["verdict"]["stale_seconds"].as_u64().unwrap_or(0) >= 2);
}

#[test]
fn garbage_and_dropped_replies_leave_the_cache_intact() {
    let (_dir, sim, _daemon, mut client) = xiaowang_synced("verdicts-faults");
    assert_eq!(swipe(&mut client, 0)["verdict"]["source"], "insurer");
    let before = client.result("system.info", json!({}))["cache"].clone();

    for fault in ["garbage", "drop_after_processing"] {
        sim.admin(json!({"action": "faults", fault: 1000}));
        let card = swipe(&mut client, 0);
        assert_eq!(code(&card), "ok", "{fault}: {card}");
        assert_eq!(card["verdict"]["source"], "cache", "{fault}: {card}");
        wait_until("a sync error", PATIENCE * 2, || {
            client.result("sync.status", json!({}))["last_error"].is_string()
        });
        let after = client.result("system.info", json!({}))["cache"].clone();
        for key in ["persons", "cards", "card_events", "catalogue"] {
            assert_eq!(after[key], before[key], "{fault}: {key}");
        }
        sim.admin(json!({"action": "faults"}));
    }
}

#[test]
fn no_insurance_the_counter_settles_under_is_not_insured() {
    let dir = TempDir::new("verdicts-not-insured");
    let sim = InsurerSim::in_dir(&dir);
    // This counter settles 390 (居民) only; xiaowang has 310 (职工) only.
    let config = verdict_config(
        &dir,
        &sim.url(),
        86_400,
        "insutype_preference = [\"390\"]\n",
    );
    let daemon = start_daemon(&config, &["xiaowang"]);
    let mut client = daemon.client();
    let card = client.result("card.read", json!({"reader": reader(0), "wait_ms": 5000}));
    assert_eq!(code(&card), "not_insured", "{card}");
    assert_eq!(card["verdict"]["source"], "insurer");
    assert_eq!(card["insured"], Value::Null);
}

/// The on-card balance is behind the PIN: `card.verify_pin` reads it into the session
/// (same session, `card.ready` again) and the verdict compares it with the insurer's `balc`.
#[test]
fn verify_pin_reads_the_on_card_balance_and_judges_balance_mismatch() {
    let (_dir, sim, daemon, mut client) = xiaowang_synced("verdicts-balance");

    // Read without the PIN: no on-card balance, no balance_mismatch.
    let first = client.result("card.read", json!({"reader": reader(0), "wait_ms": 10_000}));
    assert_eq!(code(&first), "ok", "{first}");
    assert_eq!(first["balance"], Value::Null);
    let session_id = first["session_id"].clone();

    // Equal balances (102.80 on the card and at the insurer): ok, the balance attached.
    let mut events = daemon.events();
    let card = &verify_pin(&mut client, &mut events);
    assert_eq!(card["session_id"], session_id, "{card}");
    assert_eq!(card["balance"]["balc"], "102.80", "{card}");
    let read = client.result("card.read", json!({"reader": reader(0)}));
    assert_eq!(read["session_id"], session_id);
    assert_eq!(read["balance"]["balc"], "102.80", "{read}");
    assert_eq!(read["balance_source"], "card", "{read}");
    assert_eq!(code(&read), "ok", "{read}");
    assert!(!reason_codes(&read).contains(&"balance_mismatch"), "{read}");

    // The insurer's balc differs: the next verification judges balance_mismatch.
    sim.admin(json!({"action": "set_balc", "certno": "500103199103080319",
                     "insutype": "310", "balc": "300.00"}));
    let card = &verify_pin(&mut client, &mut events);
    assert_eq!(card["session_id"], session_id, "{card}");
    let read = client.result("card.read", json!({"reader": reader(0)}));
    assert_eq!(read["session_id"], session_id);
    assert_eq!(read["balance"]["balc"], "102.80", "{read}");
    assert_eq!(code(&read), "balance_mismatch", "{read}");
    assert_eq!(read["verdict"]["may_settle"], "self_pay_only");
    let reason = &read["verdict"]["reasons"][0];
    assert_eq!(reason["code"], "balance_mismatch");
    assert_eq!(reason["card_balc"], "102.80", "{reason}");
    assert_eq!(reason["insurer_balc"], "300.00", "{reason}");
    assert_eq!(read["insured"]["balc"], "300.00", "{read}");

    // A wrong PIN changes nothing and reads nothing.
    let wrong = client.result(
        "card.verify_pin",
        json!({"reader": reader(0), "pin": "000000"}),
    );
    assert_eq!(wrong, json!({"ok": false, "tries_left": 2}));
    let log = daemon.log_text();
    assert!(
        !log.contains("\"123456\"") && !log.contains("=123456"),
        "the PIN in the log"
    );
}
