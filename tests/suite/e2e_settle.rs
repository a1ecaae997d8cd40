//! Settlement end to end through the real PC/SC stack: pcscd + vpcd with 小王's card
//! inserted by a `medcard sim --vpcd` process, `medcard serve` reading PC/SC (no
//! `--virtual`), a real `medcard insurer-sim` on loopback and the journal in a real SQLite
//! file. The seed's example (120.00 of a 甲类 item: 102.80 from the account, 17.20 in cash),
//! the receipt and `medcard reconcile`; then a second visit whose card is pulled between
//! preview and commit (the commit needs no card: the journal and the preview hold
//! everything 2207 sends), and a registration with no card in the reader (1001). Every wait
//! is on an event or a state, with a deadline. Takes the machine-wide end-to-end lock.

use crate::common;

use common::fixture;
use common::rpc::{Client, Events, Rpc};
use common::settle::{CLASS_A, Rig, XIAOWANG, commit_params, one_line, preview, wait_catalogue};
use common::stack::{READER_0, Sim, Stack};
use serde_json::{Value, json};

/// 小王's ID number and card number (fixtures/insurer/persons.toml, fixtures/cards).
const XIAOWANG_CERTNO: &str = "500103199103080319";
const XIAOWANG_CARD_NO: &str = "C06123455";

/// The next `card.ready` for the card in slot 0; it must carry the insurer's judgement.
fn judged_card(events: &mut Events) -> Value {
    let seen = events.until(READER_0, "card.ready");
    let card = seen.last().expect("card.ready")["params"]["card"].clone();
    assert_eq!(card["holder"]["certno"], XIAOWANG_CERTNO, "{card}");
    assert!(
        card["insured"].is_object(),
        "card.ready without insured: {card}"
    );
    assert_eq!(card["verdict"]["may_settle"], "yes", "{card}");
    card
}

/// visit.register at 内科 for `who` (a reader and card session, or a certno).
fn register(client: &mut Client, who: Value) -> Value {
    let mut params = json!({"dept_code": "A03", "dept_name": "内科", "dr_name": "张医生"});
    for (key, value) in who.as_object().expect("an object") {
        params[key] = value.clone();
    }
    let visit = client.result("visit.register", params);
    assert!(visit["mdtrt_id"].is_string(), "{visit}");
    assert_eq!(visit["state"], "registered", "{visit}");
    visit
}

/// Asserts the amounts of a split or setlinfo (`what` names it in failures).
fn assert_amounts(what: &str, split: &Value, expected: &[(&str, &str)]) {
    for (field, amount) in expected {
        assert_eq!(split[*field], *amount, "{what}.{field}: {split}");
    }
}

#[test]
fn the_seed_example_settles_through_pcscd_and_a_pulled_card_does_not_stop_the_commit() {
    let stack = Stack::start();
    let rig = Rig::start_pcsc("e2e-settle", "");
    let daemon = rig.pcsc_daemon();
    let mut events = daemon.events();
    let mut client = daemon.client();
    wait_catalogue(&mut client);

    // 小王's card through vpcd: card.ready with the insurer's 1101 answer.
    let sim = Sim::insert(&stack, 0, &fixture(XIAOWANG));
    let card = judged_card(&mut events);
    assert_eq!(card["reader"], READER_0, "{card}");
    assert_eq!(card["insured"]["balc"], "102.80", "{card}");

    // Visit 1, registered by the card in its reader (and the session the program saw).
    let visit = register(
        &mut client,
        json!({"reader": READER_0, "card_session": card["session_id"]}),
    );
    assert_eq!(visit["mdtrt_cert_type"], "03", "{visit}");
    assert_eq!(visit["mdtrt_cert_no"], XIAOWANG_CARD_NO, "{visit}");
    let mdtrt_id = visit["mdtrt_id"].as_str().expect("mdtrt_id").to_owned();

    // Seed 000: 120.00 of 甲类, all below the deductible (230.00 + 120.00 < 400.00): the
    // account pays all of its 102.80, cash 17.20, the fund nothing — medcard and the
    // insurer agree to the fen.
    let p = preview(&mut client, &mdtrt_id, one_line("120.00"));
    assert_eq!(p["source"], "insurer", "{p}");
    assert_eq!(p["differences"], json!([]), "{p}");
    assert_eq!(p["lines"][0]["med_list_codg"], CLASS_A, "{p}");
    let seed = [
        ("medfee_sumamt", "120.00"),
        ("act_pay_dedc", "120.00"),
        ("hifp_pay", "0.00"),
        ("acct_pay", "102.80"),
        ("psn_cash_pay", "17.20"),
        ("balc", "0.00"),
    ];
    assert_amounts("local", &p["local"], &seed);
    assert_amounts("insurer", &p["insurer"], &seed);
    let done = client.result(
        "settle.commit",
        commit_params(&p["preview_id"], "e2e-counter-1"),
    );
    assert_eq!(done["state"], "settled", "{done}");
    assert_eq!(done["kind"], "settle", "{done}");
    assert_amounts("setlinfo", &done["setlinfo"], &seed);
    assert!(done["setl_id"].is_string(), "{done}");
    assert_eq!(rig.requests("2207"), 1);
    assert_eq!(rig.standing(&mdtrt_id).len(), 1);
    assert_eq!(rig.balc(XIAOWANG_CERTNO), "0.00");

    let receipt = client.result("settle.receipt", json!({"request_id": "e2e-counter-1"}));
    let text = receipt["text"].as_str().expect("receipt text");
    assert!(text.starts_with("门诊医保结算凭证"), "{text}");
    for shown in [
        "acct_pay",
        "102.80",
        "psn_cash_pay",
        "17.20",
        mdtrt_id.as_str(),
    ] {
        assert!(text.contains(shown), "the receipt lacks {shown:?}: {text}");
    }
    assert!(!text.contains("王小"), "the receipt masks the name: {text}");
    let (code, report) = rig.reconcile();
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("no differences"), "{report}");

    // Visit 2: previewed with the card in, then the card is pulled before the commit.
    let visit = register(&mut client, json!({}));
    let second = visit["mdtrt_id"].as_str().expect("mdtrt_id").to_owned();
    assert_ne!(second, mdtrt_id);
    // The account is empty now and 350.00 of the 400.00 deductible is used: all cash.
    let p = preview(&mut client, &second, one_line("30.00"));
    assert_eq!(p["source"], "insurer", "{p}");
    assert_eq!(p["differences"], json!([]), "{p}");
    let cash_only = [
        ("medfee_sumamt", "30.00"),
        ("act_pay_dedc", "30.00"),
        ("hifp_pay", "0.00"),
        ("acct_pay", "0.00"),
        ("psn_cash_pay", "30.00"),
        ("balc", "0.00"),
    ];
    assert_amounts("insurer", &p["insurer"], &cash_only);
    assert_eq!(sim.control("pull"), "ok");
    events.until(READER_0, "card.removed");
    stack.wait_for_reader_state(READER_0, false);
    let gone = client.error("card.read", json!({"reader": READER_0}));
    assert_eq!(gone["code"], 1001, "the card is out: {gone}");
    let done = client.result(
        "settle.commit",
        commit_params(&p["preview_id"], "e2e-counter-2"),
    );
    assert_eq!(done["state"], "settled", "{done}");
    assert_eq!(done["mdtrt_id"], second.as_str(), "{done}");
    assert_amounts("setlinfo", &done["setlinfo"], &cash_only);
    assert_eq!(rig.requests("2207"), 2);
    assert_eq!(rig.standing(&second).len(), 1);

    // No card in any reader: registering by card is 1001 (无卡, reader code −2), and
    // nothing reached the insurer; by ID number it still works.
    let registrations = rig.requests("2201");
    let no_card = client.error(
        "visit.register",
        json!({"dept_code": "A03", "dept_name": "内科", "dr_name": "张医生"}),
    );
    assert_eq!(no_card["code"], 1001, "{no_card}");
    assert_eq!(no_card["data"]["reader_code"], -2, "{no_card}");
    assert_eq!(rig.requests("2201"), registrations);
    let by_certno = register(&mut client, json!({"certno": XIAOWANG_CERTNO}));
    assert_eq!(by_certno["mdtrt_cert_type"], "02", "{by_certno}");
    assert_eq!(rig.requests("2201"), registrations + 1);

    let list = client.result("settle.list", json!({}));
    assert_eq!(
        list["settlements"].as_array().map(Vec::len),
        Some(2),
        "{list}"
    );
    let (code, report) = rig.reconcile();
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("no differences"), "{report}");

    drop(events);
    drop(client);
    drop(daemon);
    drop(sim);
}
