//! A full disk under the settlement journal (issue 12, item 3): the daemon's cache file stops
//! taking writes at a named step of a money-moving call (`MEDCARD_DISK_FULL_AT`: every write
//! transaction then fails at its commit with SQLite's own `SQLITE_FULL`, reads go on working)
//! until the test "frees space" (`MEDCARD_DISK_SPACE_BACK` names a file the test creates).
//!
//! What must hold: a call whose journal entry cannot be written is not sent (1019); a call
//! that went out and whose outcome cannot be recorded is answered 1017, never −32603; card
//! reads and verdicts go on; `system.info` reports the journal's state; once space is back
//! the resolver reverses the unrecorded call and the retry settles exactly once (the insurer,
//! the balance and `medcard reconcile` agree); a registration is journalled before its 2201,
//! and a visit the insurer registered that the journal cannot record is cancelled with 2202;
//! a cancellation is journalled before its 2202, and one the journal could not record is
//! recorded by the next `visit.cancel`; a preview the journal cannot record is 1019 (nothing
//! charged), and the next one deletes the batch the insurer was left holding.
//!
//! Real parts: `medcard serve` (a child), `medcard insurer-sim` on loopback, the real socket
//! and SQLite file. Only with `--features fault-injection`.
#![cfg(feature = "fault-injection")]

use crate::common;

use common::daemon::Daemon;
use common::rpc::{Client, Rpc};
use common::settle::{
    Rig, XIAOWANG, commit_params, one_line, preview, register, wait_card, wait_catalogue,
};
use medcard::serve::rpc::code;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const XIAOWANG_CERTNO: &str = "500103199103080319";

/// A daemon whose disk fills at `point` (`before_journal:2207` …) until [`space_back`].
fn full_disk_daemon(rig: &Rig, point: &str) -> (Daemon, PathBuf) {
    let back = rig
        .config
        .parent()
        .expect("the rig's directory")
        .join(format!("space-back-{}", point.replace(':', "-")));
    let back_text = back.display().to_string();
    let daemon = rig.daemon(
        &[XIAOWANG],
        &[
            ("MEDCARD_DISK_FULL_AT", point),
            ("MEDCARD_DISK_SPACE_BACK", back_text.as_str()),
        ],
    );
    (daemon, back)
}

/// A rig, and a daemon on it whose disk fills at `point` (see [`full_disk_daemon`]), with a
/// client that has seen the card judged.
fn full_disk_counter(tag: &str, point: &str) -> (Rig, Daemon, PathBuf, Client) {
    let rig = Rig::start(tag, "");
    let (daemon, back) = full_disk_daemon(&rig, point);
    let mut client = daemon.client();
    wait_card(&mut client);
    (rig, daemon, back, client)
}

/// Space comes back.
fn space_back(flag: &PathBuf) {
    std::fs::write(flag, "").expect("create the space-back flag");
}

fn journal_state(client: &mut Client) -> Value {
    client.result("system.info", json!({}))["journal"].clone()
}

/// Reads keep working on a full disk: the card's verdict, and system.info saying why the
/// journal is in error.
fn reads_go_on(client: &mut Client) {
    let card = wait_card(client);
    assert!(card["verdict"]["code"].is_string(), "{card}");
    let journal = journal_state(client);
    assert_eq!(journal["state"], "error", "{journal}");
    let reason = journal["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("full"), "{journal}");
}

/// Polls settle.status until the request is no longer in doubt (the resolver's 2601).
fn wait_resolved(client: &mut Client, request_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = client.result("settle.status", json!({"request_id": request_id}));
        let state = status["state"].as_str().unwrap_or_default();
        if !matches!(state, "pending" | "unknown") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "request {request_id} still in doubt: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A visit registered once the catalogue and the card are in.
fn registered_visit(client: &mut Client) -> String {
    wait_catalogue(client);
    wait_card(client);
    register(client)
}

/// A visit and a 5.00 preview on a daemon with a healthy disk.
fn visit_and_preview(client: &mut Client) -> (String, Value) {
    let mdtrt_id = registered_visit(client);
    let p = preview(client, &mdtrt_id, one_line("5.00"));
    (mdtrt_id, p["preview_id"].clone())
}

/// The call was refused with `code`, and its message says `text`.
fn assert_refused(error: &Value, code: i32, text: &str) {
    assert_eq!(error["code"], code, "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains(text), "{error}");
}

/// A visit's first 5.00 preview, on a disk that is full: refused with 1019, nothing charged.
/// Returns the visit and the preview to ask again.
fn preview_on_full_disk(client: &mut Client) -> (String, Value) {
    let mdtrt_id = registered_visit(client);
    let asked = json!({"mdtrt_id": mdtrt_id, "items": one_line("5.00")});
    let error = client.error("settle.preview", asked.clone());
    assert_refused(&error, code::JOURNAL_UNAVAILABLE, "nothing was charged");
    (mdtrt_id, asked)
}

/// Reads went on while the disk was full; space comes back and the preview asked again is
/// the insurer's.
fn preview_once_space_is_back(client: &mut Client, back: &PathBuf, asked: Value) -> Value {
    reads_go_on(client);
    space_back(back);
    let p = client.result("settle.preview", asked);
    assert_eq!(p["source"], "insurer", "{p}");
    p
}

/// The card was charged 5.00 once since `opening`, and `medcard reconcile` agrees.
fn assert_charged_once(rig: &Rig, opening: &str) {
    let charged = opening.parse::<f64>().unwrap_or_default() - 5.0;
    assert_eq!(
        rig.balc(XIAOWANG_CERTNO),
        format!("{charged:.2}"),
        "charged once"
    );
    assert_reconciled(rig);
}

/// `medcard reconcile` finds the journal and the insurer agree.
fn assert_reconciled(rig: &Rig) {
    let (status, report) = rig.reconcile();
    assert_eq!(status, 0, "{report}");
}

#[test]
fn a_disk_full_after_the_2207_went_out_is_outcome_unknown_then_settles_once() {
    let rig = Rig::start("disk-full-2207", "");
    let opening = rig.balc(XIAOWANG_CERTNO);
    let (daemon, back) = full_disk_daemon(&rig, "after_send:2207");
    let mut client = daemon.client();
    let (mdtrt_id, preview_id) = visit_and_preview(&mut client);

    let error = client.error("settle.commit", commit_params(&preview_id, "full-after"));
    assert_refused(&error, code::OUTCOME_UNKNOWN, "journal cannot be written");
    assert_eq!(rig.requests("2207"), 1, "the 2207 went out once");
    reads_go_on(&mut client);
    // A retry while the disk is still full: still unknown, nothing new sent.
    let again = client.error("settle.commit", commit_params(&preview_id, "full-after"));
    assert_eq!(again["code"], code::OUTCOME_UNKNOWN, "{again}");
    assert_eq!(rig.requests("2207"), 1);
    assert_eq!(
        rig.requests("2601"),
        0,
        "a reversal needs its journal entry first"
    );

    space_back(&back);
    let resolved = wait_resolved(&mut client, "full-after");
    assert_eq!(
        resolved["state"], "retry",
        "the resolver reversed it: {resolved}"
    );
    assert!(
        rig.standing(&mdtrt_id).is_empty(),
        "reversed at the insurer"
    );
    let done = client.result("settle.commit", commit_params(&preview_id, "full-after"));
    assert_eq!(done["state"], "settled", "{done}");
    let standing = rig.standing(&mdtrt_id);
    assert_eq!(standing.len(), 1, "{standing:?}");
    assert_eq!(Some(standing[0].setl_id.as_str()), done["setl_id"].as_str());
    assert_eq!(journal_state(&mut client)["state"], "ok");
    assert_charged_once(&rig, &opening);
}

#[test]
fn a_disk_full_after_the_2208_went_out_is_outcome_unknown_then_refunds_once() {
    let rig = Rig::start("disk-full-2208", "");
    let opening = rig.balc(XIAOWANG_CERTNO);
    let (daemon, back) = full_disk_daemon(&rig, "after_send:2208");
    let mut client = daemon.client();
    let (mdtrt_id, preview_id) = visit_and_preview(&mut client);
    let done = client.result("settle.commit", commit_params(&preview_id, "to-refund"));
    let refund = json!({"setl_id": done["setl_id"], "request_id": "refund-full"});

    let error = client.error("settle.refund", refund.clone());
    assert_eq!(error["code"], code::OUTCOME_UNKNOWN, "{error}");
    assert_eq!(rig.requests("2208"), 1);
    reads_go_on(&mut client);

    space_back(&back);
    wait_resolved(&mut client, "refund-full");
    let refunded = client.result("settle.refund", refund);
    assert_eq!(refunded["state"], "settled", "{refunded}");
    assert!(
        rig.standing(&mdtrt_id).is_empty(),
        "refunded at the insurer"
    );
    assert_eq!(
        rig.balc(XIAOWANG_CERTNO),
        opening,
        "charged and refunded once"
    );
    assert_reconciled(&rig);
}

#[test]
fn a_disk_full_before_the_2207_is_journalled_sends_nothing() {
    let rig = Rig::start("disk-full-before-2207", "");
    let (daemon, back) = full_disk_daemon(&rig, "before_journal:2207");
    let mut client = daemon.client();
    let (mdtrt_id, preview_id) = visit_and_preview(&mut client);

    let error = client.error("settle.commit", commit_params(&preview_id, "full-before"));
    assert_refused(&error, code::JOURNAL_UNAVAILABLE, "nothing was sent");
    assert_eq!(rig.requests("2207"), 0, "not sent");
    reads_go_on(&mut client);

    space_back(&back);
    let done = client.result("settle.commit", commit_params(&preview_id, "full-before"));
    assert_eq!(done["state"], "settled", "{done}");
    assert_eq!(rig.requests("2207"), 1);
    assert_eq!(rig.standing(&mdtrt_id).len(), 1);
}

#[test]
fn a_disk_full_before_a_registration_sends_no_2201() {
    let (rig, _daemon, _back, mut client) =
        full_disk_counter("disk-full-before-2201", "before_journal:2201");
    let error = client.error(
        "visit.register",
        json!({"dept_code": "A03", "dept_name": "内科", "dr_name": "张医生", "ipt_otp_no": "MZFULL1"}),
    );
    assert_eq!(error["code"], code::JOURNAL_UNAVAILABLE, "{error}");
    assert_eq!(rig.requests("2201"), 0, "nothing registered at the insurer");
    reads_go_on(&mut client);
}

#[test]
fn a_visit_the_journal_cannot_record_is_cancelled_with_2202() {
    let (rig, daemon, back, mut client) =
        full_disk_counter("disk-full-after-2201", "after_reply:2201");
    let error = client.error(
        "visit.register",
        json!({"dept_code": "A03", "dept_name": "内科", "dr_name": "张医生", "ipt_otp_no": "MZFULL2"}),
    );
    assert_eq!(
        error["code"],
        code::JOURNAL_UNAVAILABLE,
        "{error}\n{}",
        daemon.log_text()
    );
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("was cancelled (2202)"), "{error}");
    assert_eq!(rig.requests("2201"), 1);
    assert_eq!(rig.requests("2202"), 1, "the orphan was cancelled");
    reads_go_on(&mut client);

    // Space back: the same visit number registers again and settles.
    space_back(&back);
    let visit = client.result(
        "visit.register",
        json!({"dept_code": "A03", "dept_name": "内科", "dr_name": "张医生", "ipt_otp_no": "MZFULL3"}),
    );
    assert!(visit["mdtrt_id"].is_string(), "{visit}");
}

#[test]
fn a_disk_full_before_a_cancellation_sends_no_2202() {
    let (rig, _daemon, back, mut client) =
        full_disk_counter("disk-full-before-2202", "before_journal:2202");
    let mdtrt_id = register(&mut client);

    let error = client.error("visit.cancel", json!({"mdtrt_id": mdtrt_id}));
    assert_refused(&error, code::JOURNAL_UNAVAILABLE, "nothing was sent");
    assert_eq!(rig.requests("2202"), 0, "not sent");
    assert_eq!(rig.visit_status(&mdtrt_id), "registered");
    reads_go_on(&mut client);

    space_back(&back);
    let visit = client.result("visit.cancel", json!({"mdtrt_id": mdtrt_id}));
    assert_eq!(visit["state"], "cancelled", "{visit}");
    assert_eq!(rig.requests("2202"), 1);
    assert_eq!(rig.visit_status(&mdtrt_id), "cancelled");
}

#[test]
fn a_cancellation_the_journal_cannot_record_is_recorded_by_the_next_cancel() {
    let (rig, _daemon, back, mut client) =
        full_disk_counter("disk-full-after-2202", "after_reply:2202");
    let mdtrt_id = register(&mut client);

    let error = client.error("visit.cancel", json!({"mdtrt_id": mdtrt_id}));
    assert_refused(&error, code::OUTCOME_UNKNOWN, "call visit.cancel again");
    assert_eq!(rig.requests("2202"), 1);
    assert_eq!(
        rig.visit_status(&mdtrt_id),
        "cancelled",
        "cancelled at the insurer"
    );
    reads_go_on(&mut client);

    // Space back: the journal still has the visit registered; cancelling again records it.
    space_back(&back);
    let visit = client.result("visit.cancel", json!({"mdtrt_id": mdtrt_id}));
    assert_eq!(visit["state"], "cancelled", "{visit}");
    assert_eq!(rig.requests("2202"), 2, "the insurer was asked again");
    let again = client.error("visit.cancel", json!({"mdtrt_id": mdtrt_id}));
    assert_eq!(again["code"], code::UNKNOWN_VISIT, "recorded: {again}");
    assert_eq!(rig.requests("2202"), 2);
    assert_eq!(journal_state(&mut client)["state"], "ok");
}

#[test]
fn a_disk_full_before_a_preview_uploads_nothing() {
    let rig = Rig::start("disk-full-before-2204", "");
    let (daemon, back) = full_disk_daemon(&rig, "before_journal:2204");
    let mut client = daemon.client();
    let (_, asked) = preview_on_full_disk(&mut client);
    assert_eq!(rig.requests("2204"), 0, "nothing uploaded");

    preview_once_space_is_back(&mut client, &back, asked);
}

#[test]
fn a_preview_the_journal_cannot_record_is_deleted_by_the_next_and_settles_once() {
    let rig = Rig::start("disk-full-after-2206", "");
    let opening = rig.balc(XIAOWANG_CERTNO);
    let (daemon, back) = full_disk_daemon(&rig, "after_reply:2206");
    let mut client = daemon.client();
    let (mdtrt_id, asked) = preview_on_full_disk(&mut client);
    assert_eq!(rig.requests("2204"), 1, "the batch was uploaded");
    assert_eq!(rig.fee_lines(&mdtrt_id).len(), 1, "the insurer holds it");

    let p = preview_once_space_is_back(&mut client, &back, asked);
    assert_eq!(rig.requests("2205"), 1, "the held batch was deleted");
    let held = rig.fee_lines(&mdtrt_id);
    assert_eq!(held.len(), 1, "only the new batch: {held:?}");
    assert_eq!(Some(held[0].1.as_str()), p["chrg_bchno"].as_str());
    let done = client.result(
        "settle.commit",
        commit_params(&p["preview_id"], "after-full"),
    );
    assert_eq!(done["state"], "settled", "{done}");
    assert_charged_once(&rig, &opening);
}
