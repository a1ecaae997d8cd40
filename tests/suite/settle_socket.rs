//! Settlement through the real socket: `medcard serve --virtual …` with a real
//! `medcard insurer-sim` on loopback and its cache/journal in a real SQLite file. The seed's
//! example (小王: 17.20 in cash), exactly-once under retries and a lost reply, refunds,
//! verdicts that forbid settlement, and the insurer down.

use crate::common;

use common::daemon::Daemon;
use common::rpc::{Client, PATIENCE, Rpc};
use common::settle::{
    self, Rig, XIAOWANG, commit_params, one_line, preview, refund_params, register, wait_card,
    wait_catalogue,
};
use serde_json::{Value, json};

/// 小王's ID number (fixtures/insurer/persons.toml).
const XIAOWANG_CERTNO: &str = "500103199103080319";

fn ready(rig: &Rig, cards: &[&str]) -> (Daemon, Client) {
    let daemon = rig.daemon(cards, &[]);
    let mut client = daemon.client();
    wait_catalogue(&mut client);
    wait_card(&mut client);
    (daemon, client)
}

/// A rig (its config with `tag`) whose daemon has 小王's card ready and registered for a
/// visit: the rig, the daemon, a client and the visit's mdtrt_id.
fn xiaowang_registered(tag: &str) -> (Rig, Daemon, Client, String) {
    let rig = Rig::start(tag, "");
    let (daemon, mut client) = ready(&rig, &[XIAOWANG]);
    let mdtrt_id = register(&mut client);
    (rig, daemon, client, mdtrt_id)
}

#[test]
fn the_seed_example_settles_to_the_fen_and_once() {
    let (rig, _daemon, mut client, mdtrt_id) = xiaowang_registered("settle-seed");
    // Seed 000: 332.80 credited this year, 230.00 spent on earlier visits (balc 102.80,
    // cumulative in-scope 230.00); this visit 120.00, all below the 400.00 deductible:
    // the account pays 102.80, cash 17.20, the fund nothing.
    let p = preview(&mut client, &mdtrt_id, one_line("120.00"));
    assert_eq!(p["source"], "insurer", "{p}");
    for side in ["local", "insurer"] {
        assert_eq!(p[side]["medfee_sumamt"], "120.00", "{side}: {p}");
        assert_eq!(p[side]["act_pay_dedc"], "120.00", "{side}: {p}");
        assert_eq!(p[side]["hifp_pay"], "0.00", "{side}: {p}");
        assert_eq!(p[side]["acct_pay"], "102.80", "{side}: {p}");
        assert_eq!(p[side]["psn_cash_pay"], "17.20", "{side}: {p}");
        assert_eq!(p[side]["balc"], "0.00", "{side}: {p}");
    }
    assert_eq!(p["differences"], json!([]), "{p}");
    let preview_id = p["preview_id"].as_str().expect("preview_id");
    let done = client.result("settle.commit", commit_params(preview_id, "cashier-1-0001"));
    assert_eq!(done["state"], "settled", "{done}");
    assert_eq!(done["setlinfo"]["psn_cash_pay"], "17.20", "{done}");
    assert_eq!(done["setlinfo"]["acct_pay"], "102.80", "{done}");
    let setl_id = done["setl_id"].as_str().expect("setl_id").to_owned();
    // The insurer echoes the 2207's msgid as medins_setl_id, and the journal holds it.
    assert_eq!(done["calls"][0]["infno"], "2207");
    assert_eq!(done["calls"][0]["state"], "SUCCESS");
    assert_eq!(
        done["setlinfo"]["medins_setl_id"],
        done["calls"][0]["msgid"]
    );

    // The cashier's program retries after its own timeout: the same settlement, no new 2207.
    let again = client.result("settle.commit", commit_params(preview_id, "cashier-1-0001"));
    assert_eq!(again["setl_id"], setl_id.as_str());
    assert_eq!(rig.requests("2207"), 1);
    // Another request_id for the settled batch is refused, naming the first request.
    let other = client.error("settle.commit", commit_params(preview_id, "cashier-1-0002"));
    assert_eq!(other["code"], 1014, "{other}");
    assert!(
        other["message"]
            .as_str()
            .unwrap_or("")
            .contains("cashier-1-0001"),
        "{other}"
    );

    assert_eq!(rig.standing(&mdtrt_id).len(), 1);
    assert_eq!(rig.balc(XIAOWANG_CERTNO), "0.00");
    let status = client.result("settle.status", json!({"setl_id": setl_id}));
    assert_eq!(status["request_id"], "cashier-1-0001");
    let list = client.result("settle.list", json!({}));
    assert_eq!(
        list["settlements"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );
    // A date that is not one is the caller's mistake, not an empty day.
    let bad_date = client.error("settle.list", json!({"date": "2026-13-45"}));
    assert_eq!(bad_date["code"], -32602, "{bad_date}");
    let receipt = client.result("settle.receipt", json!({"request_id": "cashier-1-0001"}));
    let text = receipt["text"].as_str().expect("receipt text");
    assert!(
        text.contains("17.20") && text.contains("102.80") && text.contains("psn_cash_pay"),
        "{text}"
    );
    assert!(!text.contains("王小"), "the receipt masks the name: {text}");
    let (code, report) = rig.reconcile();
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("no differences"), "{report}");
}

#[test]
fn a_refund_restores_the_account_once() {
    let (rig, _daemon, mut client, mdtrt_id) = xiaowang_registered("settle-refund");
    let p = preview(&mut client, &mdtrt_id, one_line("50.00"));
    let done = client.result("settle.commit", commit_params(&p["preview_id"], "r-1"));
    let setl_id = done["setl_id"].as_str().expect("setl_id").to_owned();
    // 50.00 from an account of 102.80: balc 52.80.
    assert_eq!(rig.balc(XIAOWANG_CERTNO), "52.80");
    let refund = client.result("settle.refund", refund_params(&setl_id, "refund-1"));
    assert_eq!(refund["state"], "settled", "{refund}");
    assert_eq!(refund["kind"], "refund");
    let again = client.result("settle.refund", refund_params(&setl_id, "refund-1"));
    assert_eq!(again["setl_id"], refund["setl_id"]);
    assert_eq!(rig.requests("2208"), 1);
    assert_eq!(rig.balc(XIAOWANG_CERTNO), "102.80");
    let original = client.result("settle.status", json!({"request_id": "r-1"}));
    assert_eq!(original["state"], "refunded", "{original}");
    assert!(rig.standing(&mdtrt_id).is_empty());
    // A second refund of a refunded settlement is refused before reaching the insurer.
    let twice = client.error("settle.refund", refund_params(&setl_id, "refund-2"));
    assert_eq!(twice["code"], -32602, "{twice}");
    assert_eq!(rig.requests("2208"), 1);
    let (code, report) = rig.reconcile();
    assert_eq!(code, 0, "{report}");
}

#[test]
fn a_hundred_concurrent_retries_make_one_2207() {
    let (rig, daemon, mut client, mdtrt_id) = xiaowang_registered("settle-retries");
    let p = preview(&mut client, &mdtrt_id, one_line("120.00"));
    let preview_id = p["preview_id"].as_str().expect("preview_id").to_owned();
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..100)
            .map(|_| {
                let preview_id = preview_id.clone();
                let daemon = &daemon;
                scope.spawn(move || {
                    let mut client = daemon.client();
                    client.call("settle.commit", commit_params(preview_id, "kiosk-7-42"))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let setl_ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|a| {
            a["result"]["setl_id"]
                .as_str()
                .unwrap_or_else(|| panic!("{a}"))
                .to_owned()
        })
        .collect();
    assert_eq!(setl_ids.len(), 1, "{setl_ids:?}");
    assert_eq!(rig.requests("2207"), 1);
    assert_eq!(rig.standing(&mdtrt_id).len(), 1);
}

#[test]
fn a_lost_reply_is_reversed_then_settled_once() {
    let (rig, _daemon, mut client, mdtrt_id) = xiaowang_registered("settle-lost");
    let p = preview(&mut client, &mdtrt_id, one_line("120.00"));
    rig.sim
        .admin(json!({"action": "faults", "drop_after_processing": 1, "for_infno": "2207"}));
    let done = client.result("settle.commit", commit_params(&p["preview_id"], "lost-1"));
    assert_eq!(done["state"], "settled", "{done}");
    let states: Vec<(String, String)> = done["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| {
            (
                c["infno"].as_str().unwrap_or("").into(),
                c["state"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    let expected = [
        ("2207", "REVERSED"),
        ("2601", "SUCCESS"),
        ("2207", "SUCCESS"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| ((*a).into(), (*b).into()))
        .collect();
    assert_eq!(states, expected);
    // The insurer applied the first 2207, the 2601 undid it: one settlement stands, and the
    // patient paid 17.20 once.
    let standing = rig.standing(&mdtrt_id);
    assert_eq!(standing.len(), 1, "{standing:?}");
    assert_eq!(standing[0].psn_cash_pay.to_string(), "17.20");
    assert_eq!(rig.balc(XIAOWANG_CERTNO), "0.00");
    let (code, report) = rig.reconcile();
    assert_eq!(code, 0, "{report}");
}

#[test]
fn with_the_insurer_down_the_preview_is_local_and_nothing_is_charged() {
    let (rig, _daemon, mut client, mdtrt_id) = xiaowang_registered("settle-down");
    rig.sim.admin(json!({"action": "faults", "http_500": 1000}));
    let p = preview(&mut client, &mdtrt_id, one_line("120.00"));
    assert_eq!(p["source"], "local", "{p}");
    assert!(p["insurer"].is_null());
    assert!(p["insurer_error"].is_string(), "{p}");
    assert_eq!(p["local"]["psn_cash_pay"], "17.20", "{p}");
    let err = client.error("settle.commit", commit_params(&p["preview_id"], "down-1"));
    assert_eq!(err["code"], 1016, "{err}");
    rig.sim.admin(json!({"action": "faults"}));
    // Six 500s in a row opened the link's circuit, as system.info says; once it lets calls
    // through again, the insurer back, the same request settles (the lines uploaded first),
    // once.
    let info = client.result("system.info", json!({}));
    assert_eq!(info["insurer"]["circuit"], "open", "{info}");
    common::wait_until("the circuit to let calls through", PATIENCE * 2, || {
        client.result("system.info", json!({}))["insurer"]["circuit"] != "open"
    });
    let done = client.result("settle.commit", commit_params(&p["preview_id"], "down-1"));
    assert_eq!(done["state"], "settled", "{done}");
    assert_eq!(done["setlinfo"]["psn_cash_pay"], "17.20");
    assert_eq!(rig.standing(&mdtrt_id).len(), 1);
}

#[test]
fn bad_requests_get_clear_errors() {
    let rig = Rig::start("settle-bad", "");
    let (_daemon, mut client) = ready(&rig, &[XIAOWANG]);
    let err = client.error(
        "settle.preview",
        json!({"mdtrt_id": "nope", "items": settle::one_line("1.00")}),
    );
    assert_eq!(err["code"], 1010, "{err}");
    let err = client.error("settle.commit", commit_params("nope", "x"));
    assert_eq!(err["code"], 1011, "{err}");
    let mdtrt_id = register(&mut client);
    let err = client.error("settle.preview", json!({"mdtrt_id": mdtrt_id, "items": []}));
    assert_eq!(err["code"], -32602, "{err}");
    let err = client.error(
        "settle.preview",
        json!({"mdtrt_id": mdtrt_id, "items": [{"code": "X", "qty": "abc", "price": "1"}]}),
    );
    assert_eq!(err["code"], -32602, "{err}");
    let err = client.error("visit.register", json!({"dept_code": "A03"}));
    assert_eq!(err["code"], -32602, "{err}");
    let err = client.error("settle.status", json!({"request_id": "never"}));
    assert_eq!(err["code"], 1012, "{err}");
    // The daemon still serves.
    assert!(client.result("system.info", json!({}))["pid"].is_number());
}

#[test]
fn a_card_that_may_not_settle_cannot_register() {
    // gen1's card B07412630 was replaced (fixtures/insurer/card_events.toml): may_settle no.
    let rig = Rig::start("settle-replaced", "");
    let daemon = rig.daemon(&["gen1"], &[]);
    let mut client = daemon.client();
    let card = wait_card(&mut client);
    assert_eq!(card["verdict"]["may_settle"], "no", "{card}");
    let err = client.error(
        "visit.register",
        json!({"dept_code": "A03", "dept_name": "内科", "dr_name": "张医生"}),
    );
    assert_eq!(err["code"], 1013, "{err}");
    assert_eq!(rig.requests("2201"), 0);
}

#[test]
fn a_stale_cache_settles_in_cash_with_a_reimbursement_voucher() {
    let rig = Rig::start("settle-stale", "");
    let text = std::fs::read_to_string(&rig.config).expect("config");
    std::fs::write(
        &rig.config,
        text.replace("[cache]\n", "[cache]\nstale_limit_s = 1\n"),
    )
    .expect("config");
    let (_daemon, mut client) = ready(&rig, &[XIAOWANG]);
    // The insurer goes down; two seconds later the cached facts are stale.
    rig.sim
        .admin(json!({"action": "faults", "http_500": 100000}));
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let card = client.result("card.refresh", json!({}));
    assert_eq!(card["verdict"]["code"], "stale_cache", "{card}");
    assert_eq!(card["verdict"]["may_settle"], "self_pay_only", "{card}");
    let mdtrt_id = register(&mut client);
    assert!(mdtrt_id.starts_with('L'), "a local visit: {mdtrt_id}");
    let p = preview(&mut client, &mdtrt_id, one_line("120.00"));
    assert_eq!(p["source"], "local", "{p}");
    assert_eq!(p["local"]["psn_cash_pay"], "120.00", "{p}");
    assert_eq!(p["local"]["acct_pay"], "0.00", "{p}");
    assert_eq!(p["local"]["hifp_pay"], "0.00", "{p}");
    let done = client.result("settle.commit", commit_params(&p["preview_id"], "stale-1"));
    assert_eq!(done["state"], "self_pay", "{done}");
    assert_eq!(done["setlinfo"]["psn_cash_pay"], "120.00", "{done}");
    let receipt = client.result("settle.receipt", json!({"request_id": "stale-1"}));
    let text = receipt["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("手工报销") && text.contains("发票原件"),
        "{text}"
    );
    rig.sim.admin(json!({"action": "faults"}));
    // Nothing reached the insurer for this visit.
    assert_eq!(
        rig.requests("2201") + rig.requests("2204") + rig.requests("2207"),
        0
    );
}

#[test]
fn the_cards_year_totals_make_the_local_preview_agree_across_the_deductible() {
    // With the PIN, the card's DF04 says 230.00 spent this year. A 300.00 bill then crosses
    // the 400.00 deductible: 170.00 below it (the person's), 130.00 in the 25% band
    // (person 32.50, fund 97.50). Account 102.80 first, then cash: 202.50 − 102.80 = 99.70.
    let rig = Rig::start("settle-ytd", "");
    let (_daemon, mut client) = ready(&rig, &[XIAOWANG]);
    let verified = client.result(
        "card.verify_pin",
        json!({"reader": "medcard virtual reader 0", "pin": "123456"}),
    );
    assert_eq!(verified, json!({"ok": true}));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while client.result("card.read", json!({}))["balance"].is_null() {
        assert!(std::time::Instant::now() < deadline, "no on-card balance");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mdtrt_id = register(&mut client);
    let p = preview(&mut client, &mdtrt_id, one_line("300.00"));
    for side in ["local", "insurer"] {
        assert_eq!(p[side]["act_pay_dedc"], "170.00", "{side}: {p}");
        assert_eq!(p[side]["hifp_pay"], "97.50", "{side}: {p}");
        assert_eq!(p[side]["acct_pay"], "102.80", "{side}: {p}");
        assert_eq!(p[side]["psn_cash_pay"], "99.70", "{side}: {p}");
    }
    assert_eq!(p["local"]["ytd_inscp_after"], "530.00", "{p}");
    assert_eq!(p["differences"], json!([]), "{p}");
}

#[test]
fn a_request_id_belongs_to_one_settlement() {
    let (rig, _daemon, mut client, mdtrt_id) = xiaowang_registered("settle-reuse");
    let first = preview(&mut client, &mdtrt_id, one_line("5.00"));
    let done = client.result("settle.commit", commit_params(&first["preview_id"], "once"));
    assert_eq!(done["state"], "settled");
    let second = preview(&mut client, &mdtrt_id, one_line("6.00"));
    let err = client.error(
        "settle.commit",
        commit_params(&second["preview_id"], "once"),
    );
    assert_eq!(err["code"], -32602, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap_or("")
            .contains("new request_id"),
        "{err}"
    );
    let err = client.error("settle.refund", refund_params(&done["setl_id"], "once"));
    assert_eq!(err["code"], -32602, "{err}");
    assert_eq!(rig.requests("2207"), 1);
    assert_eq!(rig.requests("2208"), 0);
}

#[test]
fn a_residents_bill_is_paid_from_a_bound_relatives_account() {
    // 刘秀英 (resident 390, no account of her own) is bound to 何丽娟 (employee, 1500.00) for
    // family mutual aid (fixtures/insurer/persons.toml). The simulator's resident policy
    // (fixtures/insurer/policies/): no deductible, the person pays 50 %. A 120.00 bill: fund
    // 60.00, her part 60.00, taken from 何丽娟's account: acct_pay 60.00 of which
    // acct_mulaid_pay 60.00, cash 0.00.
    let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/insurer/policies");
    let rig = Rig::start("settle-mulaid", &format!("policy_dir = {policies:?}"));
    let (_daemon, mut client) = ready(&rig, &["resident"]);
    let mdtrt_id = register(&mut client);
    let p = preview(&mut client, &mdtrt_id, one_line("120.00"));
    assert_eq!(p["insurer"]["hifp_pay"], "60.00", "{p}");
    assert_eq!(p["insurer"]["acct_pay"], "60.00", "{p}");
    assert_eq!(p["insurer"]["acct_mulaid_pay"], "60.00", "{p}");
    assert_eq!(p["insurer"]["psn_cash_pay"], "0.00", "{p}");
    // medcard's own split knows the policy but not the relatives' accounts: it expects cash,
    // and says where it differs from the insurer (whose answer stands).
    assert_eq!(p["local"]["hifp_pay"], "60.00", "{p}");
    assert_eq!(p["local"]["psn_cash_pay"], "60.00", "{p}");
    let fields: Vec<&str> = p["differences"]
        .as_array()
        .map(|d| d.iter().filter_map(|x| x["field"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(fields, ["acct_pay", "psn_cash_pay"], "{p}");
    let done = client.result("settle.commit", commit_params(&p["preview_id"], "mulaid-1"));
    assert_eq!(done["state"], "settled", "{done}");
    assert_eq!(done["setlinfo"]["acct_mulaid_pay"], "60.00", "{done}");
    assert_eq!(
        rig.balc("430104197604182283"),
        "1440.00",
        "何丽娟's account paid 60.00"
    );
    let receipt = client.result("settle.receipt", json!({"request_id": "mulaid-1"}));
    let text = receipt["text"].as_str().unwrap_or_default();
    assert!(text.contains("共济") && text.contains("60.00"), "{text}");
    let (code, report) = rig.reconcile();
    assert_eq!(code, 0, "{report}");
}

#[test]
fn a_mixed_bill_splits_by_catalogue_class_the_same_here_and_at_the_insurer() {
    // 小王 again (ytd 230.00, balc 102.80). Lines (fixtures/insurer/catalogue.toml):
    //   普通门诊诊查费 1 × 15.00, 甲类 capped at 10.00: overlmt 5.00, in scope 10.00
    //   头孢克洛缓释片 3 × 33.35 = 100.05, 乙类 10 %: 先行自付 10.005 → 10.01, in scope 90.04
    //   布地奈德鼻喷雾剂 1 × 70.00, 乙类 20 % capped at 68.00: overlmt 2.00, 先行自付 13.60,
    //     in scope 54.40
    //   维生素C咀嚼片 3 × 12.50 = 37.50, 丙类: 全自费
    //   an item not in the catalogue, 9.99: 全自费
    // medfee 232.54 = fulamt 47.49 + overlmt 7.00 + preselfpay 23.61 + inscp 154.44.
    // 230.00 + 154.44 stays under the 400.00 deductible: fund 0; the account 102.80, cash 129.74.
    let (_rig, _daemon, mut client, mdtrt_id) = xiaowang_registered("settle-mixed");
    let items = json!([
        {"code": "001102000010000", "name": "普通门诊诊查费", "qty": "1", "price": "15.00"},
        {"code": "XJ01DCA041A010010100003", "name": "头孢克洛缓释片", "qty": "3", "price": "33.35"},
        {"code": "XR01ADB045B002010100004", "name": "布地奈德鼻喷雾剂", "qty": "1", "price": "70.00"},
        {"code": "XA11GAA001A001010100005", "name": "维生素C咀嚼片", "qty": "3", "price": "12.50"},
        {"code": "X-NOT-IN-CATALOGUE", "name": "自备材料", "qty": "1", "price": "9.99"},
    ]);
    let p = preview(&mut client, &mdtrt_id, items);
    let expected = [
        ("medfee_sumamt", "232.54"),
        ("fulamt_ownpay_amt", "47.49"),
        ("overlmt_selfpay", "7.00"),
        ("preselfpay_amt", "23.61"),
        ("inscp_scp_amt", "154.44"),
        ("act_pay_dedc", "154.44"),
        ("hifp_pay", "0.00"),
        ("acct_pay", "102.80"),
        ("psn_cash_pay", "129.74"),
    ];
    for side in ["local", "insurer"] {
        for (field, value) in expected {
            assert_eq!(p[side][field], value, "{side}.{field}: {p}");
        }
    }
    assert_eq!(p["differences"], json!([]), "{p}");
    let preselfpay: Vec<&str> = p["lines"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|x| x["preselfpay_amt"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        preselfpay,
        ["0.00", "10.01", "13.60", "0.00", "0.00"],
        "{p}"
    );
    let done = client.result("settle.commit", commit_params(&p["preview_id"], "mixed-1"));
    assert_eq!(done["setlinfo"]["psn_cash_pay"], "129.74", "{done}");
}

#[test]
fn a_patient_may_keep_the_account_and_pay_cash() {
    // acct_used false (acct_used_flag 0): 120.00 all cash, 小王's 102.80 untouched.
    let (rig, _daemon, mut client, mdtrt_id) = xiaowang_registered("settle-no-acct");
    let p = client.result(
        "settle.preview",
        json!({"mdtrt_id": mdtrt_id, "items": one_line("120.00"), "acct_used": false}),
    );
    for side in ["local", "insurer"] {
        assert_eq!(p[side]["acct_pay"], "0.00", "{side}: {p}");
        assert_eq!(p[side]["psn_cash_pay"], "120.00", "{side}: {p}");
        assert_eq!(p[side]["balc"], "102.80", "{side}: {p}");
    }
    let done = client.result("settle.commit", commit_params(&p["preview_id"], "cash-1"));
    assert_eq!(done["setlinfo"]["psn_cash_pay"], "120.00", "{done}");
    assert_eq!(rig.balc(XIAOWANG_CERTNO), "102.80");
}

/// Every `settle.list` page of `date` (`after` = the previous page's `next`) with `limit`:
/// the request_ids of each page.
fn pages(client: &mut Client, date: &Value, limit: usize) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = client.result(
            "settle.list",
            json!({"date": date, "limit": limit, "after": after}),
        );
        pages.push(request_ids(&page));
        if page["next"].is_null() || pages.len() > 10 {
            return pages;
        }
        after = page["next"].clone();
    }
}

#[test]
fn a_day_with_more_settlements_than_the_limit_is_paged_without_gap_or_repeat() {
    let (_rig, _daemon, mut client, mdtrt_id) = xiaowang_registered("settle-list-pages");
    let mut settled = Vec::new();
    let mut date = Value::Null;
    for n in 1..=7 {
        let p = preview(&mut client, &mdtrt_id, one_line("1.00"));
        let request_id = format!("page-{n}");
        let done = client.result(
            "settle.commit",
            commit_params(&p["preview_id"], &request_id),
        );
        assert_eq!(done["state"], "settled", "{done}");
        date = done["setl_date"].clone();
        settled.push(request_id);
    }
    let pages = pages(&mut client, &date, 3);
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [3, 3, 1], "{pages:?}");
    assert_eq!(
        pages.concat(),
        settled,
        "every settlement once, in the order settled"
    );
    // Without a limit, the day fits the default page: the first page is the whole day.
    assert_eq!(pages_of_default(&mut client, &date), settled);

    for (params, what) in [
        (json!({"date": date, "limit": 1001}), "above the maximum"),
        (json!({"date": date, "limit": 0}), "zero"),
        (
            json!({"date": date, "after": "no-such-request"}),
            "an unknown after",
        ),
        (
            json!({"date": "2020-01-01", "after": "page-1"}),
            "after of another day",
        ),
    ] {
        let refused = client.error("settle.list", params);
        assert_eq!(refused["code"], -32602, "{what}: {refused}");
    }
}

/// `settle.list` of `date` with no limit nor after: the request_ids of its one page (next null).
fn pages_of_default(client: &mut Client, date: &Value) -> Vec<String> {
    let page = client.result("settle.list", json!({"date": date}));
    assert!(page["next"].is_null(), "{page}");
    request_ids(&page)
}

/// The request_ids of a `settle.list` page, in its order.
fn request_ids(page: &Value) -> Vec<String> {
    page["settlements"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r["request_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
