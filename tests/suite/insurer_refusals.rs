//! The platform's refusals understood, through the daemon's socket with a real simulator:
//! a card the insurer reports lost is judged lost with no card-status feed (the simulator
//! started with `--no-extensions`, as a real platform is) and remembered for the insurer's
//! outages; a refusal of the message (a duplicate msgid, a lapsed sign-in) is sent again; a
//! busy platform is no verdict and no final refusal; a region's wording comes from its
//! refusal rules file. And circuit breaking by cause: one oversized bill (HTTP 413) fails
//! that bill only, with what to do; a burst of HTTP 500 opens the link's circuit, and
//! `system.info` says what callers are told.

use crate::common;

use common::daemon::Daemon;
use common::insurer::{InsurerSim, verdict_config};
use common::rpc::{Client, PATIENCE, Rpc};
use common::settle::{self, CLASS_A, Rig, XIAOWANG, commit_params, one_line, register};
use common::temp::TempDir;
use common::wait_until;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const READER: &str = "medcard virtual reader 0";
/// 小王's card (fixtures/cards/xiaowang.toml).
const XIAOWANG_CARD: &str = "C06123455";

/// A simulator without medcard's extension transactions (X101, X102, X302), as a real
/// platform is, with `extra` flags; and a daemon config for verdicts against it
/// (`insurer_lines`: more `[insurer]` keys).
fn platform(dir: &Path, extra: &[&str], insurer_lines: &str) -> (InsurerSim, PathBuf) {
    let mut args = vec!["--no-extensions"];
    args.extend_from_slice(extra);
    let sim = InsurerSim::start(
        &common::insurer::sim_db(dir),
        common::insurer::ANY_PORT,
        &args,
    );
    let config = verdict_config(dir, &sim.url(), 86_400, "");
    let text = std::fs::read_to_string(&config).expect("the config");
    let text = text.replacen("[cache]", &format!("{insurer_lines}\n[cache]"), 1);
    std::fs::write(&config, text).expect("write the config");
    (sim, config)
}

fn swipe(client: &mut Client) -> Value {
    client.result("card.refresh", json!({"reader": READER}))
}

fn first_read(client: &mut Client) -> Value {
    client.result("card.read", json!({"reader": READER, "wait_ms": 5000}))
}

fn code(card: &Value) -> &str {
    card["verdict"]["code"].as_str().unwrap_or("<none>")
}

#[test]
fn a_lost_card_is_judged_lost_without_a_feed_and_remembered() {
    let dir = TempDir::new("refusals-lost");
    let (mut sim, config) = platform(&dir, &[], "");
    sim.admin(json!({"action": "report_lost", "card_no": XIAOWANG_CARD}));
    let daemon = Daemon::start_virtual(&config, &[XIAOWANG], &[]);
    let mut client = daemon.client();

    let lost = first_read(&mut client);
    assert_eq!(code(&lost), "lost", "{lost}");
    assert_eq!(lost["verdict"]["source"], "insurer");
    assert_eq!(lost["verdict"]["may_settle"], "no");
    let reasons = lost["verdict"]["reasons"].as_array().expect("reasons");
    assert!(
        reasons.iter().all(|r| r["code"] != "unknown_person"),
        "{lost}"
    );
    assert_eq!(
        reasons[0]["err_msg"], "该社会保障卡已挂失，不能使用",
        "{lost}"
    );
    // No feed told it: the platform has none.
    let status = client.result("sync.status", json!({}));
    assert_eq!(status["versions"]["card_events"], 0, "{status}");

    // The insurer down: the cache learned it from the 1101 answer.
    sim.stop();
    let offline = swipe(&mut client);
    assert_eq!(code(&offline), "lost", "{offline}");
    assert_eq!(offline["verdict"]["source"], "cache");
}

#[test]
fn refusals_of_the_message_are_sent_again_and_answered() {
    let dir = TempDir::new("refusals-message");
    let (sim, config) = platform(&dir, &[], "");
    let daemon = Daemon::start_virtual(&config, &[XIAOWANG], &[]);
    let mut client = daemon.client();
    assert_eq!(code(&first_read(&mut client)), "ok");

    let before = sim.requests("1101");
    sim.admin(json!({"action": "faults", "duplicate_msgid": 1, "for_infno": "1101"}));
    let card = swipe(&mut client);
    assert_eq!(code(&card), "ok", "{card}");
    assert_eq!(card["verdict"]["source"], "insurer", "{card}");
    assert_eq!(
        sim.requests("1101"),
        before + 2,
        "sent again with a new msgid"
    );

    let sign_ins = sim.requests("9001");
    sim.admin(json!({"action": "expire_signins"}));
    let card = swipe(&mut client);
    assert_eq!(code(&card), "ok", "{card}");
    assert_eq!(card["verdict"]["source"], "insurer", "{card}");
    // At least the swipe's link signed in again (the background sync's link, whose sign-in
    // expired too, may sign in as well meanwhile).
    assert!(sim.requests("9001") > sign_ins, "signed in again");
}

#[test]
fn a_busy_insurer_is_no_verdict() {
    let dir = TempDir::new("refusals-busy");
    let (sim, config) = platform(&dir, &[], "");
    let daemon = Daemon::start_virtual(&config, &[XIAOWANG], &[]);
    let mut client = daemon.client();
    assert_eq!(code(&first_read(&mut client)), "ok");

    sim.admin(json!({"action": "faults", "infcode_minus1": 1000, "for_infno": "1101"}));
    let card = swipe(&mut client);
    assert_eq!(code(&card), "ok", "judged from the cache: {card}");
    assert_eq!(card["verdict"]["source"], "cache", "{card}");
    assert_eq!(
        card["verdict"]["insurer_err_msg"], "医保中心系统繁忙，请稍后再试",
        "{card}"
    );
    assert!(
        card["verdict"]["message_zh"]
            .as_str()
            .is_some_and(|m| m.contains("系统繁忙")),
        "{card}"
    );
}

#[test]
fn a_region_s_wording_is_recognised_from_its_rules_file() {
    let dir = TempDir::new("refusals-region");
    let rules = dir.join("region-refusals.toml");
    std::fs::write(
        &rules,
        "[[refusal]]\nclass = \"lost\"\ntexts = [\"卡已止付\"]\n",
    )
    .expect("write the rules");
    let wording = "lost=该卡已止付，请持身份证到发卡银行办理";
    let (sim, config) = platform(
        &dir,
        &["--card-text", wording],
        &format!("refusals = {:?}\n", rules.display().to_string()),
    );
    sim.admin(json!({"action": "report_lost", "card_no": XIAOWANG_CARD}));
    let daemon = Daemon::start_virtual(&config, &[XIAOWANG], &[]);
    let mut client = daemon.client();
    let lost = first_read(&mut client);
    assert_eq!(code(&lost), "lost", "{lost}");
    assert_eq!(
        lost["verdict"]["reasons"][0]["err_msg"], "该卡已止付，请持身份证到发卡银行办理",
        "{lost}"
    );
}

/// `n` lines of the 甲类 item, each with a long name: a bill of several kilobytes.
fn big_bill(n: usize) -> Value {
    let name = "阿莫西林胶囊（0.25g×24粒，口服，每日三次，每次两粒，饭后服用）";
    Value::Array(
        (0..n)
            .map(|_| json!({"code": CLASS_A, "name": name, "qty": "1", "price": "1.00"}))
            .collect(),
    )
}

fn register_by_certno(client: &mut Client, certno: &str) -> Value {
    client.call(
        "visit.register",
        json!({"certno": certno, "dept_code": "A03", "dept_name": "内科", "dr_name": "张医生"}),
    )
}

fn circuit(client: &mut Client) -> String {
    let info = client.result("system.info", json!({}));
    info["insurer"]["circuit"]
        .as_str()
        .unwrap_or("<none>")
        .to_owned()
}

#[test]
fn one_oversized_bill_fails_alone_and_says_split_it() {
    let rig = Rig::start_with("refusals-413", "", &["--max-body-bytes", "6000"]);
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let mut client = daemon.client();
    settle::wait_catalogue(&mut client);
    settle::wait_card(&mut client);
    let mdtrt_id = register(&mut client);
    for n in 0..3 {
        // The preview shows the local split and what the insurer said; the commit fails.
        let preview = settle::preview(&mut client, &mdtrt_id, big_bill(40));
        let said = preview["insurer_error"].as_str().unwrap_or_default();
        assert!(said.contains("split the bill"), "insurer_error: {said:?}");
        let error = client.error(
            "settle.commit",
            commit_params(&preview["preview_id"], &format!("big-{n}")),
        );
        assert_eq!(error["code"], 1018, "{error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains("split the bill"), "{error}");
        assert!(!message.contains("retry"), "{error}");
        assert!(
            error["data"]["message_zh"]
                .as_str()
                .is_some_and(|m| m.contains("分单结算")),
            "{error}"
        );
    }
    assert_eq!(circuit(&mut client), "closed");
    for certno in ["440106200108170645", "510104195802140261"] {
        let visit = register_by_certno(&mut client, certno);
        assert!(visit["result"]["mdtrt_id"].is_string(), "{visit}");
    }
    // The same visit settles a bill of a size the insurer takes.
    let preview = settle::preview(&mut client, &mdtrt_id, one_line("12.00"));
    assert!(preview["preview_id"].is_string(), "{preview}");
}

#[test]
fn a_busy_insurer_does_not_refuse_a_settlement_for_good() {
    let rig = Rig::start("refusals-busy-2207", "");
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let mut client = daemon.client();
    settle::wait_catalogue(&mut client);
    settle::wait_card(&mut client);
    let mdtrt_id = register(&mut client);
    let preview = settle::preview(&mut client, &mdtrt_id, one_line("30.00"));
    rig.sim
        .admin(json!({"action": "faults", "infcode_minus1": 1, "for_infno": "2207"}));
    let busy = client.error(
        "settle.commit",
        commit_params(&preview["preview_id"], "busy-1"),
    );
    assert_eq!(busy["code"], 1016, "{busy}");
    assert!(
        busy["message"]
            .as_str()
            .is_some_and(|m| m.contains("same request_id")),
        "{busy}"
    );
    let status = client.result("settle.status", json!({"request_id": "busy-1"}));
    assert_eq!(status["state"], "retry", "{status}");
    let settled = client.result(
        "settle.commit",
        commit_params(&preview["preview_id"], "busy-1"),
    );
    assert_eq!(settled["state"], "settled", "{settled}");
    assert_eq!(rig.standing(&mdtrt_id).len(), 1);
}

/// visit.register of the card in the reader, which fails with 1016: whether the caller was
/// told the circuit is open, and what `system.info` says right after.
fn register_refused(client: &mut Client) -> (bool, String) {
    let answer = client.call(
        "visit.register",
        json!({"dept_code": "A03", "dept_name": "内科", "dr_name": "张医生"}),
    );
    let error = &answer["error"];
    assert_eq!(error["code"], 1016, "{answer}");
    let told_open = error["message"]
        .as_str()
        .is_some_and(|m| m.contains("circuit open"));
    let state = circuit(client);
    assert!(
        !told_open || state == "open",
        "system.info {state}: {answer}"
    );
    (told_open, state)
}

#[test]
fn a_500_burst_opens_the_circuit_and_system_info_says_so() {
    let rig = Rig::start("refusals-500", "");
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let mut client = daemon.client();
    settle::wait_card(&mut client);
    assert_eq!(circuit(&mut client), "closed");
    rig.sim
        .admin(json!({"action": "faults", "http_500": 1000, "for_infno": "2201"}));
    // Each link of the pool signs in first (an answer: the link is up); then 2201's 500s in
    // a row open the link's one circuit. Whenever system.info says open, the next caller
    // is told so; whoever is told so finds system.info saying open.
    let mut told_open = 0;
    let mut before = circuit(&mut client);
    for _ in 0..12 {
        let (told, after) = register_refused(&mut client);
        assert!(
            told || before != "open",
            "system.info said open before: not told"
        );
        told_open += usize::from(told);
        before = after;
        if told_open >= 2 {
            break;
        }
    }
    assert!(told_open > 0, "the burst never opened the circuit");
    // The burst over, the circuit closes after its cooldown and registrations go through;
    // meanwhile the swipe's 1101 meets the same circuit (the verdict from the cache).
    let card = client.result("card.refresh", json!({"reader": READER}));
    assert_eq!(card["verdict"]["source"], "cache", "{card}");
    rig.sim.admin(json!({"action": "faults"}));
    wait_until("the circuit to leave open", PATIENCE * 2, || {
        circuit(&mut client) != "open"
    });
    let visit = register_by_certno(&mut client, "440106200108170645");
    assert!(visit["result"]["mdtrt_id"].is_string(), "{visit}");
    assert_eq!(circuit(&mut client), "closed");
}
