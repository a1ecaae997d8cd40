//! Credentials other than the card (issue 15): `credential.present` with an ID number makes a
//! credential session from a fresh 1101 at the real insurer simulator; `visit.register
//! {credential_session}` registers that patient with mdtrt_cert_type 02, the settlement goes
//! on as for a card, exactly once, and the receipt names the credential.

use crate::common::rpc::{Client, PATIENCE, Rpc};
use crate::common::settle::{self, Rig, XIAOWANG};
use crate::common::wait_until;
use crate::common::web::{self, Web};
use serde_json::json;

/// The 1101s of the card in the reader, once its swipe's is logged (it may be logged after
/// the verdict it fed).
fn swipe_asked(rig: &Rig) -> usize {
    wait_until("the swipe's 1101 logged", PATIENCE, || {
        rig.requests("1101") >= 1
    });
    rig.requests("1101")
}

/// 小王's ID number (fixtures/insurer/persons.toml).
const XIAOWANG_CERTNO: &str = "500103199103080319";

#[test]
fn an_id_number_presented_is_registered_and_settled_as_a_card_holder_is() {
    let rig = Rig::start("credential-certno", "");
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let mut client = Client::connect(&daemon.socket);
    settle::wait_catalogue(&mut client);
    settle::wait_card(&mut client);
    let swipes = swipe_asked(&rig);
    let presented = client.result("credential.present", json!({"certno": XIAOWANG_CERTNO}));
    assert_eq!(presented["kind"], "certno");
    assert_eq!(presented["mdtrt_cert_type"], "02");
    assert_eq!(presented["holder"]["psn_name"], "王小");
    assert_eq!(presented["verdict"]["may_settle"], "yes", "{presented}");
    let session = presented["credential_session"].clone();
    assert_eq!(rig.requests("1101"), swipes + 1);

    let visit = client.result(
        "visit.register",
        json!({"credential_session": session, "dept_code": "A03", "dept_name": "内科",
            "dr_name": "张医生"}),
    );
    assert_eq!(visit["mdtrt_cert_type"], "02");
    assert_eq!(visit["psn_no"], presented["insured"]["psn_no"]);
    assert_eq!(
        rig.requests("1101"),
        swipes + 1,
        "the session's 1101 serves the registration"
    );
    let mdtrt_id = visit["mdtrt_id"].as_str().expect("mdtrt_id");
    let preview = settle::preview(&mut client, mdtrt_id, settle::one_line("20.00"));
    let commit = settle::commit_params(&preview["preview_id"], "credential-1");
    let done = client.result("settle.commit", commit.clone());
    assert_eq!(done["state"], "settled");
    assert_eq!(
        client.result("settle.commit", commit)["setl_id"],
        done["setl_id"]
    );
    assert_eq!(rig.requests("2207"), 1);
    let receipt = client.result("settle.receipt", json!({"request_id": "credential-1"}));
    let text = receipt["text"].as_str().unwrap_or_default();
    assert!(text.contains("居民身份证 02"), "{text}");
    assert!(
        !text.contains(XIAOWANG_CERTNO),
        "the ID number is not printed: {text}"
    );
}

#[test]
fn bad_numbers_unknown_sessions_and_the_kiosk_are_refused() {
    let rig = Rig::start("credential-refused", "");
    let dir = rig.config.parent().expect("dir").to_owned();
    let mut text = std::fs::read_to_string(&rig.config).expect("config");
    text.push_str(&web::config_lines(&dir));
    std::fs::write(&rig.config, text).expect("config");
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let mut client = Client::connect(&daemon.socket);
    settle::wait_card(&mut client);
    let swipes = swipe_asked(&rig);
    // The check character is wrong: refused before anything is sent.
    let error = client.error(
        "credential.present",
        json!({"certno": "500103199103080318"}),
    );
    assert_eq!(error["code"], -32602, "{error}");
    assert_eq!(rig.requests("1101"), swipes);
    let error = client.error(
        "visit.register",
        json!({"credential_session": 99, "dept_code": "A03", "dept_name": "内科", "dr_name": "张医生"}),
    );
    assert_eq!(error["code"], -32602, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("present the credential again")
    );
    // A kiosk may not look people up by ID number.
    let mut kiosk = Web::of(&daemon, &rig.config).kiosk();
    let error = kiosk.error("credential.present", json!({"certno": XIAOWANG_CERTNO}));
    assert_eq!(error["code"], 1021, "{error}");
    assert_eq!(rig.requests("1101"), swipes);
}
