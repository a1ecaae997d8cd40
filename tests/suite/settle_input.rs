//! Input at the edge, through the real socket (`medcard serve --virtual …` with a real
//! `medcard insurer-sim`): texts by the platform's field rules (lengths, control, bidi and
//! zero-width characters), ID numbers by their document type, each refused with −32602
//! naming the field and nothing sent to the insurer; a foreigner's permit accepted; a
//! visit number registered twice; a refunded visit cancelled; request ids that come back
//! exactly; and a card read traced at `trace` level without the holder's data.

use crate::common;

use common::rpc::{Client, RawClient, Rpc};
use common::settle::{
    Rig, XIAOWANG, commit_params, one_line, preview, refund_params, register, wait_card,
    wait_catalogue,
};
use serde_json::{Value, json};
use std::io::BufRead;

/// A rig whose daemon has 小王's card judged and the catalogue synced.
fn ready(tag: &str) -> (Rig, common::daemon::Daemon, Client) {
    let rig = Rig::start(tag, "");
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let mut client = daemon.client();
    wait_catalogue(&mut client);
    wait_card(&mut client);
    (rig, daemon, client)
}

/// A valid registration at 内科 with `field` set to `value`.
fn registration_with(field: &str, value: Value) -> Value {
    let mut params = json!({"dept_code": "A03", "dept_name": "内科", "dr_name": "张医生"});
    params[field] = value;
    params
}

/// Asserts `error` is −32602 and its message names `field`.
fn assert_refused_naming(error: &Value, field: &str, what: &str) {
    assert_eq!(error["code"], -32602, "{what}: {error}");
    let message = error["message"].as_str().unwrap_or("");
    assert!(message.contains(field), "{what}: names {field}? {error}");
}

/// Texts that no field of the platform takes: ESC sequences, CR/LF, NUL, C1 controls, bidi
/// overrides and isolates, zero-width characters, the BOM.
const HOSTILE: [&str; 9] = [
    "内科\u{1b}[2J\u{1b}@",
    "内科\r\n合计 0.00",
    "内\0科",
    "内科\u{9b}",
    "\u{202E}科内",
    "内科\u{2066}x\u{2069}",
    "内\u{200B}科",
    "内科\u{200F}",
    "\u{FEFF}内科",
];

#[test]
fn bad_fields_are_refused_naming_the_field_and_nothing_reaches_the_insurer() {
    let (rig, _daemon, mut client) = ready("input-fields");
    let refused_lookups = refused_1101(&rig);
    for field in [
        "dept_name",
        "dr_name",
        "dept_code",
        "ipt_otp_no",
        "main_cond_dscr",
    ] {
        for text in HOSTILE {
            let error = client.error("visit.register", registration_with(field, json!(text)));
            assert_refused_naming(&error, field, &format!("{field} = {text:?}"));
        }
    }
    // The national lengths, in characters: dept_name C(100), dr_name C(50), ipt_otp_no C(30).
    for (field, max) in [("dept_name", 100), ("dr_name", 50), ("ipt_otp_no", 30)] {
        let error = client.error(
            "visit.register",
            registration_with(field, json!("科".repeat(max + 1))),
        );
        assert_refused_naming(&error, field, &format!("{field} of {} characters", max + 1));
        assert!(
            error["message"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("C({max})")),
            "{error}"
        );
    }
    let huge = "内".repeat(300 * 1024 / 3);
    let error = client.error(
        "visit.register",
        registration_with("dept_name", json!(huge)),
    );
    assert_refused_naming(&error, "dept_name", "300 KB dept_name");
    // ID numbers: empty, 100 KB, NUL, a mistyped digit, a short one, an unknown document type.
    for certno in [
        String::new(),
        "5".repeat(100 * 1024),
        "500103199103080319\0".to_owned(),
        "500103199103080318".to_owned(),
        "50010319910308031".to_owned(),
    ] {
        let error = client.error("visit.register", registration_with("certno", json!(certno)));
        assert_refused_naming(
            &error,
            "certno",
            &format!("certno of {} bytes", certno.len()),
        );
    }
    let mut params = registration_with("certno", json!("500103199103080319"));
    params["psn_cert_type"] = json!("42");
    let error = client.error("visit.register", params);
    assert_refused_naming(&error, "psn_cert_type", "an unknown document type");
    assert_eq!(
        rig.sim.requests("2201"),
        0,
        "a refused registration reached 2201"
    );
    assert_eq!(
        refused_1101(&rig),
        refused_lookups,
        "a refused ID number reached 1101"
    );

    // A bill's lines: the item's name C(200), its codes C(50) / C(150), printing text only.
    let mdtrt_id = register(&mut client);
    let line = |field: &str, value: &str| {
        let mut item =
            json!({"code": settle_code(), "name": "阿莫西林胶囊", "qty": "1", "price": "1.00"});
        item[field] = json!(value);
        json!({"mdtrt_id": mdtrt_id, "items": [one_line("2.00")[0].clone(), item]})
    };
    for text in HOSTILE {
        let error = client.error("settle.preview", line("name", text));
        assert_refused_naming(&error, "items[1].name", &format!("name = {text:?}"));
        let error = client.error("settle.preview", line("medins_code", text));
        assert_refused_naming(&error, "items[1].medins_code", &format!("{text:?}"));
    }
    let error = client.error("settle.preview", line("name", &"药".repeat(201)));
    assert_refused_naming(&error, "items[1].name", "a name of 201 characters");
    let error = client.error("settle.preview", line("code", &"X".repeat(51)));
    assert_refused_naming(&error, "items[1].code", "a code of 51 characters");
    let error = client.error(
        "settle.preview",
        json!({"mdtrt_id": format!("{mdtrt_id}\u{1b}"), "items": one_line("1.00")}),
    );
    assert_refused_naming(&error, "mdtrt_id", "an ESC in mdtrt_id");
    for infno in ["2204", "2205", "2206"] {
        assert_eq!(rig.sim.requests(infno), 0, "a refused bill reached {infno}");
    }
    // The same bill with printing names previews.
    let p = preview(
        &mut client,
        &mdtrt_id,
        line("name", "阿莫西林胶囊 0.25g×24粒")["items"].clone(),
    );
    assert_eq!(p["source"], "insurer", "{p}");
}

/// The 1101 requests the insurer refused (an ID number it does not know, or cannot read).
fn refused_1101(rig: &Rig) -> usize {
    let log = rig.sim.admin(json!({"action": "msg_log"}));
    log["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter(|r| {
                    r["infno"] == "1101" && r["err_msg"].as_str().is_some_and(|m| !m.is_empty())
                })
                .count()
        })
        .unwrap_or(0)
}

/// The 甲类 item's code (as [`one_line`] uses it).
fn settle_code() -> String {
    one_line("1.00")[0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_foreigners_permit_and_a_travel_permit_register_by_their_numbers() {
    let (rig, _daemon, mut client) = ready("input-permits");
    // The new foreigner's permanent residence ID (9…, MOD 11-2), psn_cert_type 07.
    let mut params = registration_with("certno", json!("911840198506120015"));
    params["psn_cert_type"] = json!("07");
    let visit = client.result("visit.register", params.clone());
    assert_eq!(visit["psn_name"], "SMITH JOHN", "{visit}");
    assert_eq!(visit["mdtrt_cert_no"], "911840198506120015", "{visit}");
    // Given as a resident ID, the same number is refused with the document type to use.
    params["psn_cert_type"] = json!("01");
    let error = client.error("visit.register", params);
    assert_refused_naming(&error, "certno", "a permit given as a resident ID");
    assert!(
        error["message"].as_str().unwrap_or("").contains("07"),
        "{error}"
    );
    // A Hong Kong resident by the travel permit (H + 8 digits), psn_cert_type 04.
    let mut params = registration_with("certno", json!("H60318254"));
    params["psn_cert_type"] = json!("04");
    let visit = client.result("visit.register", params);
    assert_eq!(visit["psn_name"], "陈嘉欣", "{visit}");
    assert_eq!(rig.sim.requests("2201"), 2);
}

#[test]
fn a_visit_number_registered_again_is_that_visit_or_refused() {
    let (rig, _daemon, mut client) = ready("input-reregister");
    let params = registration_with("ipt_otp_no", json!("MZ-REPEAT-0001"));
    let first = client.result("visit.register", params.clone());
    // The same registration again (a retry): the visit as journalled, nothing sent.
    let again = client.result("visit.register", params);
    assert_eq!(again, first);
    assert_eq!(rig.sim.requests("2201"), 1);
    // Another department under the same number: refused, naming what differs; the visit
    // stays as it was.
    let mut other = registration_with("ipt_otp_no", json!("MZ-REPEAT-0001"));
    other["dept_name"] = json!("外科");
    let error = client.error("visit.register", other);
    assert_refused_naming(&error, "dept_name", "another department");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or("")
            .contains(first["mdtrt_id"].as_str().unwrap_or("?")),
        "{error}"
    );
    assert_eq!(rig.sim.requests("2201"), 1);
    // Cancelled, the number is not reused.
    client.result("visit.cancel", json!({"mdtrt_id": first["mdtrt_id"]}));
    let error = client.error(
        "visit.register",
        registration_with("ipt_otp_no", json!("MZ-REPEAT-0001")),
    );
    assert_refused_naming(&error, "ipt_otp_no", "a cancelled visit's number");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or("")
            .contains("cancelled"),
        "{error}"
    );
}

#[test]
fn a_refunded_visit_can_be_cancelled() {
    let (rig, _daemon, mut client) = ready("input-cancel-refunded");
    let mdtrt_id = register(&mut client);
    let p = preview(&mut client, &mdtrt_id, one_line("30.00"));
    let done = client.result("settle.commit", commit_params(&p["preview_id"], "c-1"));
    assert_eq!(done["state"], "settled", "{done}");
    // Settled and standing: the cancel names the settlement.
    let error = client.error("visit.cancel", json!({"mdtrt_id": mdtrt_id}));
    assert_eq!(error["code"], -32602, "{error}");
    assert!(
        error["message"].as_str().unwrap_or("").contains("c-1"),
        "{error}"
    );
    client.result(
        "settle.refund",
        refund_params(&done["setl_id"], "c-1-refund"),
    );
    let cancelled = client.result("visit.cancel", json!({"mdtrt_id": mdtrt_id}));
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    assert_eq!(rig.requests("2202"), 1);
    assert!(rig.standing(&mdtrt_id).is_empty());
}

#[test]
fn request_ids_come_back_exactly() {
    let (_rig, daemon, _client) = ready("input-ids");
    let mut raw = RawClient::connect(&daemon.socket);
    for id in [
        "123456789012345678901234567890",
        "-98765432109876543210987654321",
        "1.25e+40",
        "0.30000000000000000000000000001",
    ] {
        for method in ["system.info", "no.such.method"] {
            raw.send_raw(
                format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"{method}\"}}\n").as_bytes(),
            );
            let mut line = String::new();
            raw.lines.read_line(&mut line).expect("a response line");
            assert!(
                line.contains(&format!("\"id\":{id},")),
                "{method} with id {id}: {line}"
            );
        }
    }
}

#[test]
fn a_card_read_traced_at_trace_level_shows_no_holder_data() {
    let output = common::medcard(&[
        "--log",
        "trace",
        "read",
        "--card-file",
        &common::fixture(XIAOWANG).display().to_string(),
    ]);
    assert!(output.status.success(), "{output:?}");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("personal bytes"), "no APDU trace: {log}");
    let card_no = "C06123455";
    let certno = "500103199103080319";
    let card_sn = "500000D15600000512345678ABCDEF01";
    for (what, secret) in [
        ("card number", card_no.to_owned()),
        ("card number in hex", hex_of(card_no)),
        ("ID number", certno.to_owned()),
        ("ID number in hex", hex_of(certno)),
        ("card_sn", card_sn.to_owned()),
        ("name", "王小".to_owned()),
        // 王小 in GBK, as EF06 holds it.
        ("name in hex", "CDF5D0A1".to_owned()),
    ] {
        assert!(
            !log.to_uppercase().contains(&secret.to_uppercase()),
            "the {what} is in the trace: {log}"
        );
    }
}

fn hex_of(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02X}")).collect()
}
