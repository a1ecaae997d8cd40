//! `card.statement` over the real daemon socket (`medcard serve --virtual` with a real
//! `medcard insurer-sim` on loopback and its journal in a real SQLite file): the card
//! holder's settlements from the journal, newest first and no one else's, and the card's
//! DF04 transaction records once `card.verify_pin` has read them.

use crate::common;

use common::rpc::{Client, Rpc};
use common::settle::{
    Rig, XIAOWANG, commit_params, one_line, preview, register, wait_card, wait_catalogue,
};
use serde_json::{Value, json};

/// 黄嘉怡 (fixtures/insurer/persons.toml): registered by ID number, no card.
const HUANG_CERTNO: &str = "440106200108170645";

/// Previews `amount` on `mdtrt_id` and commits it as `request_id`; the settlement.
fn settle(client: &mut Client, mdtrt_id: &str, amount: &str, request_id: &str) -> Value {
    let p = preview(client, mdtrt_id, one_line(amount));
    let done = client.result("settle.commit", commit_params(&p["preview_id"], request_id));
    assert_eq!(done["state"], "settled", "{done}");
    done
}

fn request_ids(statement: &Value) -> Vec<&str> {
    statement["settlements"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["request_id"].as_str())
        .collect()
}

#[test]
fn a_statement_lists_the_holders_settlements_newest_first_and_the_cards_records_after_the_pin() {
    let rig = Rig::start("statement", "");
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let mut client = daemon.client();
    wait_catalogue(&mut client);
    let card = wait_card(&mut client);
    let reader = card["reader"].as_str().expect("reader").to_owned();

    let empty = client.result("card.statement", json!({}));
    assert_eq!(empty["session_id"], card["session_id"], "{empty}");
    assert_eq!(empty["card_no"], "C06123455", "{empty}");
    assert_eq!(empty["transactions"], Value::Null, "no PIN yet: {empty}");
    assert_eq!(empty["settlements"], json!([]), "{empty}");

    let mdtrt_id = register(&mut client);
    let first = settle(&mut client, &mdtrt_id, "1.00", "stmt-wang-1");
    settle(&mut client, &mdtrt_id, "2.00", "stmt-wang-2");
    let other = client.result(
        "visit.register",
        json!({"certno": HUANG_CERTNO, "dept_code": "A03", "dept_name": "内科", "dr_name": "张医生"}),
    );
    let other_visit = other["mdtrt_id"].as_str().expect("mdtrt_id");
    settle(&mut client, other_visit, "3.00", "stmt-huang-1");

    let statement = client.result("card.statement", json!({"reader": reader}));
    assert_eq!(
        request_ids(&statement),
        ["stmt-wang-2", "stmt-wang-1"],
        "{statement}"
    );
    let older = &statement["settlements"][1];
    assert_eq!(older["setl_id"], first["setl_id"], "{statement}");
    assert_eq!(older["setl_date"], first["setl_date"], "{statement}");
    assert_eq!(older["state"], "settled", "{statement}");
    for field in [
        "medfee_sumamt",
        "fund_pay_sumamt",
        "acct_pay",
        "psn_cash_pay",
    ] {
        assert_eq!(
            older[field], first["setlinfo"][field],
            "{field}: {statement}"
        );
    }
    assert_eq!(older["medfee_sumamt"], "1.00", "{statement}");
    assert_eq!(statement["transactions"], Value::Null, "{statement}");

    let verified = client.result(
        "card.verify_pin",
        json!({"reader": reader, "pin": "123456"}),
    );
    assert_eq!(verified["ok"], true, "{verified}");
    let after_pin = client.result("card.statement", json!({}));
    assert_eq!(after_pin["session_id"], card["session_id"], "{after_pin}");
    let records = after_pin["transactions"]
        .as_array()
        .unwrap_or_else(|| panic!("records after the PIN: {after_pin}"));
    // xiaowang.toml's EF08: three settlements from the account, record 1 the newest.
    let seqs: Vec<&Value> = records.iter().map(|r| &r["seq"]).collect();
    assert_eq!(seqs, [&json!("3"), &json!("2"), &json!("1")], "{after_pin}");
    assert_eq!(records[0]["acct_pay"], "50.00", "{after_pin}");
    assert_eq!(request_ids(&after_pin).len(), 2, "{after_pin}");

    let unknown = client.error("card.statement", json!({"reader": "no such reader"}));
    assert_eq!(unknown["code"], 1002, "{unknown}");
    let bad = client.error("card.statement", json!({"pin": "123456"}));
    assert_eq!(bad["code"], -32602, "{bad}");
}
