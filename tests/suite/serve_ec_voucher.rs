//! The 医保电子凭证 QR code at the counter (issue 15), end to end through real parts: the
//! insurer simulator issues a code for 小王 (admin `ec_issue`), the virtual serial scanner
//! (a real pty) sends it, the daemon publishes `credential.scanned`, the cashier's software
//! presents the code (`credential.present {qr_code}`: 1162 once, then 1101 by its token),
//! registers the credential session (2201 with mdtrt_cert_type 01 and the token), previews
//! and commits exactly once; the receipt names the e-voucher and prints no token. The card
//! in the reader is a second session the cashier may choose instead. Expired, used and
//! unknown codes, and a token that lapsed before the registration, are refused with their
//! own operator messages, and nothing is registered or journalled.

use crate::common::rpc::{Client, Rpc};
use crate::common::settle::{self, Rig, XIAOWANG};
use crate::common::web::{self, Web};
use medcard::reader::scanner::Terminator;
use medcard::sim::scanner::VirtualScanner;
use serde_json::{Value, json};

/// 小王's ID number (fixtures/insurer/persons.toml).
const XIAOWANG_CERTNO: &str = "500103199103080319";

/// A code the simulator issues for 小王, valid for `ttl_s` (its default when none).
fn issue(rig: &Rig, ttl_s: Option<u64>) -> String {
    let mut request = json!({"action": "ec_issue", "certno": XIAOWANG_CERTNO});
    if let Some(ttl) = ttl_s {
        request["ttl_s"] = json!(ttl);
    }
    rig.sim.admin(request)["code"]
        .as_str()
        .expect("a code")
        .to_owned()
}

/// A rig whose config has a serial scanner (the virtual one) and `extra` lines.
fn with_scanner(rig: &Rig, extra: &str) -> VirtualScanner {
    let dir = rig.config.parent().expect("dir").to_owned();
    let scanner = VirtualScanner::plug(&dir.join("scanner"), Terminator::Cr).expect("a pty");
    let mut text = std::fs::read_to_string(&rig.config).expect("config");
    text.push_str(&format!(
        "\n[[scanners.serial]]\nname = \"counter\"\ndevice = {:?}\n{extra}",
        scanner.device().display().to_string()
    ));
    std::fs::write(&rig.config, text).expect("config");
    scanner
}

/// The next `credential.scanned` notification's params.
fn next_scanned(client: &mut Client) -> Value {
    client.next_notification("credential.scanned")
}

fn register_params(session: &Value) -> Value {
    json!({"credential_session": session, "dept_code": "A03", "dept_name": "内科",
        "dr_name": "张医生"})
}

#[test]
fn a_scanned_qr_code_is_registered_and_settled_once_beside_the_card_in_the_reader() {
    let rig = Rig::start("ec-counter", "");
    let scanner = with_scanner(&rig, "");
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let mut client = Client::connect(&daemon.socket);
    settle::wait_catalogue(&mut client);
    let card = settle::wait_card(&mut client);
    let mut events = daemon.client();
    events.result(
        "events.subscribe",
        json!({"topics": ["credential.scanned"]}),
    );

    let code = issue(&rig, None);
    scanner.scan(&code).expect("the scanner sends");
    let scanned = next_scanned(&mut events);
    assert_eq!(scanned["kind"], "qr", "{scanned}");
    assert_eq!(scanned["code"], code.as_str());

    let presented = client.result("credential.present", json!({"qr_code": scanned["code"]}));
    assert_eq!(presented["kind"], "qr", "{presented}");
    assert_eq!(presented["mdtrt_cert_type"], "01");
    assert_eq!(presented["holder"]["psn_name"], "王小");
    assert_eq!(presented["holder"]["certno"], XIAOWANG_CERTNO);
    assert_eq!(presented["verdict"]["may_settle"], "yes", "{presented}");
    assert_eq!(rig.requests("1162"), 1);

    // Two sessions: the card's is still there, and the cashier chooses the code's.
    let read = client.result("card.read", json!({}));
    assert_eq!(read["session_id"], card["session_id"], "{read}");
    let visit = client.result(
        "visit.register",
        register_params(&presented["credential_session"]),
    );
    assert_eq!(visit["mdtrt_cert_type"], "01", "{visit}");
    let mdtrt_id = visit["mdtrt_id"].as_str().expect("mdtrt_id");
    let (cert_type, token) = rig.visit_credential(mdtrt_id);
    assert_eq!(cert_type, "01");
    assert_eq!(
        visit["mdtrt_cert_no"],
        token.as_str(),
        "the token is the visit's credential"
    );
    assert_ne!(token, code, "the insurer holds the token, not the code");

    let preview = settle::preview(&mut client, mdtrt_id, settle::one_line("20.00"));
    let commit = settle::commit_params(&preview["preview_id"], "ec-1");
    let done = client.result("settle.commit", commit.clone());
    assert_eq!(done["state"], "settled", "{done}");
    let again = client.result("settle.commit", commit);
    assert_eq!(again["setl_id"], done["setl_id"]);
    assert_eq!(rig.requests("2207"), 1);
    assert_eq!(rig.standing(mdtrt_id).len(), 1);
    let receipt = client.result("settle.receipt", json!({"request_id": "ec-1"}));
    let text = receipt["text"].as_str().unwrap_or_default();
    assert!(text.contains("医保电子凭证 01"), "{text}");
    assert!(!text.contains(&token), "no token on the receipt: {text}");

    // The card's own session registers as before (mdtrt_cert_type 03).
    let by_card = client.result(
        "visit.register",
        json!({"card_session": card["session_id"], "dept_code": "A03", "dept_name": "内科",
            "dr_name": "张医生"}),
    );
    assert_eq!(by_card["mdtrt_cert_type"], "03", "{by_card}");

    let log = daemon.log_text();
    for secret in [code.as_str(), token.as_str(), XIAOWANG_CERTNO] {
        assert!(!log.contains(secret), "{secret} unmasked in the log");
    }
}

/// The error of `credential.present {qr_code}` for `code`.
fn refused(client: &mut Client, code: &str) -> Value {
    let error = client.error("credential.present", json!({"qr_code": code}));
    assert_eq!(error["code"], 1022, "{error}");
    error
}

fn message_zh(error: &Value) -> &str {
    error["data"]["message_zh"].as_str().unwrap_or_default()
}

#[test]
fn expired_used_and_unknown_codes_and_a_lapsed_token_are_refused_and_nothing_is_journalled() {
    let rig = Rig::start_with("ec-refused", "", &["--ec-token-ttl-s", "2"]);
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let mut client = Client::connect(&daemon.socket);

    let expired = issue(&rig, Some(1));
    let used = issue(&rig, None);
    let first = client.result("credential.present", json!({"qr_code": used}));
    assert_eq!(first["kind"], "qr");
    // Past the short code's second and the first code's token's two (the simulator
    // compares to the second).
    std::thread::sleep(std::time::Duration::from_millis(3100));
    let error = refused(&mut client, &expired);
    assert!(message_zh(&error).contains("已过期"), "{error}");
    let error = refused(&mut client, &used);
    assert!(message_zh(&error).contains("已使用"), "{error}");
    assert!(message_zh(&error).contains("刷新"), "{error}");
    let error = refused(
        &mut client,
        "500000NOSUCHCODE0000000000000000000000000000000000",
    );
    assert!(message_zh(&error).contains("无法识别"), "{error}");
    assert_eq!(
        rig.journal_rows(),
        (0, vec![]),
        "nothing journalled for a refused code"
    );
    let error = client.error("credential.present", json!({"qr_code": "a\u{1}b"}));
    assert_eq!(error["code"], -32602, "{error}");

    // The first code's token lapsed before the cashier registered it.
    let error = client.error(
        "visit.register",
        register_params(&first["credential_session"]),
    );
    assert_eq!(error["code"], 1022, "{error}");
    assert!(message_zh(&error).contains("重新出示"), "{error}");

    assert_eq!(
        rig.requests("2201"),
        1,
        "only the lapsed token's registration went out"
    );
    let (visits, calls) = rig.journal_rows();
    assert_eq!(visits, 0, "nothing registered");
    assert_eq!(
        calls,
        vec![("2201".to_owned(), "FAIL".to_owned())],
        "{calls:?}"
    );
}

#[test]
fn the_kiosk_presents_a_scanned_code_and_registers_only_its_own_sessions() {
    let rig = Rig::start("ec-kiosk", "");
    let dir = rig.config.parent().expect("dir").to_owned();
    let mut text = std::fs::read_to_string(&rig.config).expect("config");
    text.push_str(&web::config_lines(&dir));
    std::fs::write(&rig.config, text).expect("config");
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let web = Web::of(&daemon, &rig.config);
    let mut kiosk = web.kiosk();
    let mut counter = Client::connect(&daemon.socket);

    let at_kiosk = kiosk.result("credential.present", json!({"qr_code": issue(&rig, None)}));
    assert_eq!(at_kiosk["kind"], "qr", "{at_kiosk}");
    let shown = at_kiosk["holder"]["certno"].as_str().unwrap_or_default();
    assert_ne!(
        shown, XIAOWANG_CERTNO,
        "the kiosk sees the ID number masked"
    );
    assert!(shown.contains('*'), "{shown}");
    let at_counter = counter.result("credential.present", json!({"qr_code": issue(&rig, None)}));
    let error = kiosk.error(
        "visit.register",
        register_params(&at_counter["credential_session"]),
    );
    assert_eq!(error["code"], 1021, "{error}");
    let visit = kiosk.result(
        "visit.register",
        register_params(&at_kiosk["credential_session"]),
    );
    assert_eq!(visit["mdtrt_cert_type"], "01");
    assert_eq!(visit["terminal"], "self_service");
    assert_eq!(rig.sim.opter_types("2201"), vec![json!("2")]);
}
