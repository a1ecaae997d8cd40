//! The daemon's sign-in lifecycle against a real `medcard insurer-sim` on loopback: one 9001
//! at start shared by every client of the link (the swipe, the sync, settlement), a new one
//! after the platform says the sign-in lapsed, 9002 when the daemon stops cleanly — each
//! checked in the simulator's own sign-in table, and the state in `system.info`.

use crate::common;

use common::rpc::{Client, Rpc};
use common::settle::{Rig, commit_params, one_line, preview, register, wait_card};
use common::wait_until;
use serde_json::{Value, json};
use std::time::Duration;

/// Whether the simulator still takes `sign_no` (its `sign_ins` table).
fn valid_at_the_insurer(rig: &Rig, sign_no: &str) -> bool {
    let conn = rusqlite::Connection::open_with_flags(
        rig.sim_db(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("the simulator's database");
    let valid: i64 = conn
        .query_row(
            "SELECT valid FROM sign_ins WHERE sign_no = ?1",
            [sign_no],
            |r| r.get(0),
        )
        .expect("the sign-in is the simulator's");
    valid == 1
}

/// `system.info`'s `insurer.sign_in`.
fn sign_in_info(client: &mut Client) -> Value {
    client.result("system.info", json!({}))["insurer"]["sign_in"].clone()
}

#[test]
fn the_daemon_signs_in_once_again_after_a_lapse_and_out_when_stopped() {
    let rig = Rig::start("sign-in-lifecycle", "");
    let mut daemon = rig.daemon(&["xiaowang"], &[]);
    let mut client = daemon.client();

    // The swipe's 1101, the sync's feeds and a settlement: one sign-in for all of them.
    wait_card(&mut client);
    let mdtrt_id = register(&mut client);
    let previewed = preview(&mut client, &mdtrt_id, one_line("50.00"));
    client.result(
        "settle.commit",
        commit_params(&previewed["preview_id"], "sign-in-1"),
    );
    assert_eq!(rig.requests("9001"), 1, "one sign-in for the whole link");
    let info = sign_in_info(&mut client);
    assert_eq!(info["state"], "signed_in", "{info}");
    assert_eq!(info["sign_ins"], 1, "{info}");
    let first = info["sign_no"].as_str().expect("a sign_no").to_owned();
    assert!(valid_at_the_insurer(&rig, &first));

    // The platform ends every sign-in: the next call (the sync's, each second) hears of it
    // and the link signs in again, once.
    rig.sim.admin(json!({"action": "expire_signins"}));
    wait_until("a new sign-in", Duration::from_secs(20), || {
        sign_in_info(&mut client)["sign_no"]
            .as_str()
            .is_some_and(|s| s != first)
    });
    let info = sign_in_info(&mut client);
    assert_eq!(info["sign_ins"], 2, "{info}");
    let second = info["sign_no"].as_str().expect("a sign_no").to_owned();
    assert_eq!(rig.requests("9001"), 2);
    assert!(valid_at_the_insurer(&rig, &second));

    // A clean stop signs out of the current sign-in.
    assert_eq!(rig.requests("9002"), 0);
    drop(client);
    assert!(daemon.terminate().success());
    assert_eq!(rig.requests("9002"), 1);
    assert!(
        !valid_at_the_insurer(&rig, &second),
        "signed out at the insurer"
    );
    assert!(daemon.log_text().contains("signed out of the insurer"));
}

#[test]
fn a_sign_in_that_fails_at_start_is_reported_and_made_when_the_link_is_back() {
    let rig = Rig::start("sign-in-failed", "");
    // The platform's gateway fails every sign-in.
    rig.sim
        .admin(json!({"action": "faults", "http_500": 1000, "for_infno": "9001"}));
    let daemon = rig.daemon(&["xiaowang"], &[]);
    let mut client = daemon.client();
    wait_until("the failure reported", Duration::from_secs(20), || {
        sign_in_info(&mut client)["state"] == "failed"
    });
    let info = sign_in_info(&mut client);
    assert!(
        info["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{info}"
    );
    assert!(info.get("sign_no").is_none(), "{info}");

    rig.sim.admin(json!({"action": "faults"}));
    wait_until("signed in", Duration::from_secs(20), || {
        sign_in_info(&mut client)["state"] == "signed_in"
    });
}
