//! `medcard serve` end to end through the real PC/SC stack: pcscd + vpcd, cards inserted by
//! `medcard sim --vpcd` processes, the daemon as a child process in PC/SC mode, and clients
//! on its Unix socket. Insertions, swaps, pulls, a card pulled mid-read, a pcscd restart
//! under the daemon, a 3.0 card with the PSAM in the other slot, PIN verification and
//! SIGTERM; verdicts with a real `medcard insurer-sim` behind the daemon (a fresh 1101, a
//! card reported lost while in the reader, the insurer gone). Every wait is on an event or
//! a state, with a 10 s limit.

use crate::common;

use common::daemon::Daemon;
use common::insurer::{InsurerSim, verdict_config};
use common::rpc::{Client, Events, PATIENCE, Rpc};
use common::stack::{READER_0, READER_1, Sim, Stack};
use common::temp::TempDir;
use common::{fixture, psam};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The daemon on `e2e.sock`, in PC/SC mode.
fn start_daemon() -> Daemon {
    Daemon::start("e2e.sock", &[])
}

/// The `card` of the last event (a `card.ready`).
fn ready_card(events: &[Value]) -> Value {
    let last = events.last().expect("events");
    assert_eq!(last["method"], "card.ready", "{events:?}");
    last["params"]["card"].clone()
}

/// The last `n` methods of `events`.
fn last_methods(events: &[Value], n: usize) -> Vec<&str> {
    let methods = Events::methods(events);
    methods[methods.len().saturating_sub(n)..].to_vec()
}

/// SIGTERM: the daemon exits 0 and removes its socket.
fn stop(mut daemon: Daemon) {
    let status = daemon.terminate();
    assert!(status.success(), "{status:?}: {}", daemon.log_text());
    assert!(!daemon.socket.exists(), "the socket is removed on exit");
}

/// `card`'s session is the daemon's only one, and `card.read` with `params` gives it.
fn assert_sole_session(client: &mut Client, params: Value, card: &Value) {
    let read = client.result("card.read", params);
    assert_eq!(read["session_id"], card["session_id"]);
    let info = client.result("system.info", json!({}));
    assert_eq!(info["sessions"], 1, "{info}");
}

/// Polls `readers.list` until `check` holds for it (at most 10 s).
fn wait_for_readers(daemon: &Daemon, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut client = daemon.client();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let readers = client.result("readers.list", json!({}));
        let list = readers.as_array().cloned().unwrap_or_default();
        if check(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "readers.list never showed {what}: {readers}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cards_come_and_go_through_pcscd_and_the_daemon_survives_a_pcscd_restart() {
    let mut stack = Stack::start();
    let mut daemon = start_daemon();
    let pid = daemon.pid();
    // Subscribe once the monitor has listed the empty slot, so that its `reader.added` is not
    // among the card's events below.
    wait_for_readers(&daemon, "the empty slot", |list| {
        list.iter().any(|r| r["name"] == READER_0)
    });
    let mut events = daemon.events();
    let mut client = daemon.client();

    // Inserted: card.inserted, then card.ready with the holder; card.read is that session.
    let sim = Sim::insert(&stack, 0, &fixture("xiaowang"));
    let seen = events.until(READER_0, "card.ready");
    assert_eq!(
        Events::methods(&seen),
        ["card.inserted", "card.ready"],
        "{seen:?}"
    );
    assert_eq!(seen[0]["params"]["atr"], seen[1]["params"]["card"]["atr"]);
    let first = ready_card(&seen);
    assert_eq!(first["holder"]["certno"], "500103199103080319");
    assert_eq!(first["reader"], READER_0);
    let read = client.result("card.read", json!({"reader": READER_0}));
    assert_eq!(read["session_id"], first["session_id"]);
    common::expected::check_card("xiaowang", &read);

    // The PIN: right, then wrong (a result with the tries left, not an error).
    let pin = |client: &mut Client, pin: &str| {
        client.result("card.verify_pin", json!({"reader": READER_0, "pin": pin}))
    };
    assert_eq!(pin(&mut client, "123456"), json!({"ok": true}));
    // The right PIN reads the on-card balance into the session: card.ready again, same
    // session (verifying is no insertion).
    let seen = events.until(READER_0, "card.ready");
    assert_eq!(Events::methods(&seen), ["card.ready"], "{seen:?}");
    let verified = ready_card(&seen);
    assert_eq!(verified["session_id"], first["session_id"]);
    assert_eq!(verified["balance"]["balc"], "102.80", "{verified}");
    assert_eq!(
        pin(&mut client, "000000"),
        json!({"ok": false, "tries_left": 2})
    );
    let read = client.result("card.read", json!({"reader": READER_0}));
    assert_eq!(read["session_id"], first["session_id"]);
    assert_eq!(read["balance_source"], "card", "{read}");

    // Swapped: removed, inserted, ready, with a new session.
    sim.swap(&stack, &fixture("resident"));
    let seen = events.until(READER_0, "card.ready");
    assert_eq!(
        last_methods(&seen, 3),
        ["card.removed", "card.inserted", "card.ready"],
        "{seen:?}"
    );
    let second = ready_card(&seen);
    assert_eq!(second["card_no"], "D11982761");
    assert_ne!(second["session_id"], first["session_id"]);
    let read = client.result("card.read", json!({"reader": READER_0}));
    assert_eq!(read["session_id"], second["session_id"]);

    // Pulled: removed; card.read says no card (1001, reader code −2).
    assert_eq!(sim.control("pull"), "ok");
    let seen = events.until(READER_0, "card.removed");
    assert_eq!(Events::methods(&seen), ["card.removed"], "{seen:?}");
    let error = client.error("card.read", json!({"reader": READER_0}));
    assert_eq!(error["code"], 1001, "{error}");
    assert_eq!(error["data"]["reader_code"], -2, "{error}");

    // A card pulled mid-read: card.error with −4 (card not responding), then removed. The
    // swap does not wait for pcscd: the card may be gone before a poll would see it.
    let vanishing = fixture("vanishing");
    assert_eq!(sim.control(&format!("swap {}", vanishing.display())), "ok");
    let seen = events.until(READER_0, "card.error");
    assert_eq!(
        last_methods(&seen, 2),
        ["card.inserted", "card.error"],
        "{seen:?}"
    );
    let failed = seen.last().expect("card.error");
    assert_eq!(failed["params"]["reader_code"], -4, "{failed}");
    events.until(READER_0, "card.removed");
    let error = client.error("card.read", json!({"reader": READER_0}));
    assert_eq!(error["code"], 1001, "{error}");

    // pcscd restarted under the daemon: the card comes back, card.read works again, and
    // the daemon is the same process.
    sim.swap(&stack, &fixture("xiaowang"));
    let before = ready_card(&events.until(READER_0, "card.ready"));
    if stack.pcscd.owned() {
        stack.pcscd.restart().expect("restart pcscd");
        let seen = events.until(READER_0, "card.ready");
        eprintln!("after the pcscd restart: {:?}", Events::methods(&seen));
        let back = ready_card(&seen);
        assert_eq!(back["holder"]["certno"], "500103199103080319");
        assert_ne!(back["session_id"], before["session_id"]);
        let mut client = daemon.client();
        let read = client.result("card.read", json!({"reader": READER_0}));
        assert_eq!(read["session_id"], back["session_id"]);
        assert!(daemon.is_running(), "{}", daemon.log_text());
        let info = client.result("system.info", json!({}));
        assert_eq!(info["pid"], pid, "the daemon never restarted");
    } else {
        eprintln!(
            "pcscd was already running when the test started (not ours to restart): \
             the pcscd-restart part is skipped"
        );
    }

    drop(events);
    drop(client);
    stop(daemon);
}

#[test]
fn a_3_0_card_reads_completely_with_the_psam_in_the_other_slot() {
    let stack = Stack::start();
    let daemon = start_daemon();
    // Subscribe once the monitor has listed the card's slot, so that its `reader.added` is
    // not among the card's events below.
    wait_for_readers(&daemon, "the card's slot", |list| {
        list.iter().any(|r| r["name"] == READER_0)
    });
    let mut events = daemon.events();
    let mut client = daemon.client();

    // The PSAM first, and seen by the daemon, so that the card's read can use it.
    let _psam = Sim::insert(&stack, 1, &psam("test-sm4"));
    wait_for_readers(&daemon, "the PSAM present", |readers| {
        readers
            .iter()
            .any(|r| r["name"] == READER_1 && r["state"] == "present")
    });
    let _card = Sim::insert(&stack, 0, &fixture("gen3"));
    let seen = events.until(READER_0, "card.ready");
    assert_eq!(
        Events::methods(&seen),
        ["card.inserted", "card.ready"],
        "{seen:?}"
    );
    let card = ready_card(&seen);
    common::expected::check_gen3_opened_by_the_psam(&card);
    // No card events for the PSAM's reader.
    assert!(
        events
            .seen
            .iter()
            .all(|e| e["params"]["reader"] != READER_1 || e["method"] == "reader.added"),
        "{:?}",
        events.seen
    );

    // readers.list: the card's reader ready, the PSAM's present and without a session.
    let readers = client.result("readers.list", json!({}));
    let find = |name: &str| {
        readers
            .as_array()
            .and_then(|all| all.iter().find(|r| r["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} not in {readers}"))
    };
    assert_eq!(find(READER_0)["state"], "ready", "{readers}");
    assert_eq!(find(READER_1)["state"], "present", "{readers}");
    let error = client.error("card.read", json!({"reader": READER_1}));
    assert_eq!(error["code"], 1001, "the PSAM has no session: {error}");
    // Without a reader named, the only session is the card's.
    assert_sole_session(&mut client, json!({}), &card);

    drop(events);
    drop(client);
    stop(daemon);
}

#[test]
fn verdicts_through_pcscd_with_the_insurer_up_then_gone() {
    let stack = Stack::start();
    let dir = TempDir::new("e2e-verdicts");
    let mut insurer = InsurerSim::in_dir(&dir);
    let config = verdict_config(&dir, &insurer.url(), 86_400, "");
    let daemon = Daemon::start_with_config("e2e-verdicts.sock", &config, &[]);
    let mut events = daemon.events();
    let mut client = daemon.client();

    // Inserted: a fresh 1101 from the insurer.
    let sim = Sim::insert(&stack, 0, &fixture("xiaowang"));
    let card = ready_card(&events.until(READER_0, "card.ready"));
    assert_eq!(card["verdict"]["code"], "ok", "{card}");
    assert_eq!(card["verdict"]["source"], "insurer", "{card}");
    assert_eq!(card["insured"]["psn_no"], "50000000000000012345", "{card}");
    let session_id = card["session_id"].clone();

    // Reported lost while in the reader: the sync brings it, card.ready again, same session.
    insurer.admin(json!({"action": "report_lost", "card_no": "C06123455"}));
    let card = ready_card(&events.until(READER_0, "card.ready"));
    assert_eq!(card["verdict"]["code"], "lost", "{card}");
    assert_eq!(card["session_id"], session_id);

    // The insurer gone: another card's verdict comes from the cache (which has no 1101
    // answer for it: unknown), and the daemon keeps answering.
    insurer.stop();
    sim.swap(&stack, &fixture("resident"));
    let card = ready_card(&events.until(READER_0, "card.ready"));
    assert_ne!(card["session_id"], session_id);
    assert_eq!(card["holder"]["certno"].as_str().map(str::len), Some(18));
    assert_eq!(card["verdict"]["source"], "cache", "{card}");
    assert_eq!(card["verdict"]["code"], "unknown_person", "{card}");
    assert_eq!(card["verdict"]["stale_seconds"], Value::Null, "{card}");
    assert_sole_session(&mut client, json!({"reader": READER_0}), &card);

    drop(events);
    drop(client);
    stop(daemon);
}
