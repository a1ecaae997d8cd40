//! The insurer link against a real `medcard insurer-sim` child process on loopback: the HTTP
//! client's envelope, sign-in, 1101, the extension feeds, refusals, and every injected fault
//! (latency, HTTP 500, infcode −1, garbage, reply dropped after processing), retries and the
//! circuit breaker.

use crate::common;

use common::insurer::InsurerSim;
use medcard::insurer::{
    CardEventKind, ChrgitmLv, InsurerClient, InsurerConfig, InsurerLink, LinkError, MsgIdSource,
    Retry, SequenceMsgIds, Uncertainty, wire,
};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const XIAOWANG_CARD: &str = "C06123455";
const XIAOWANG_SN: &str = "500000D15600000512345678ABCDEF01";

/// A simulator in a directory of its own, and the test's client configuration for it.
struct Sim {
    sim: InsurerSim,
}

impl Sim {
    fn start() -> Sim {
        Sim::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Sim {
        Sim {
            sim: InsurerSim::fresh("insurer-link", extra),
        }
    }

    /// Single attempts, a short backoff.
    fn config(&self) -> InsurerConfig {
        InsurerConfig {
            retries: 0,
            backoff_base: Duration::from_millis(10),
            ..self.sim.config()
        }
    }

    fn client(&self) -> InsurerClient {
        InsurerClient::new(self.config())
    }

    /// A signed-in client that tries a retryable call `retries` times more.
    fn signed_in_retrying(&self, retries: u32) -> InsurerClient {
        let mut client = InsurerClient::new(InsurerConfig {
            retries,
            ..self.config()
        });
        client.sign_in().unwrap();
        client
    }

    fn faults(&self, faults: Value) {
        let mut request = faults;
        request["action"] = json!("faults");
        self.admin(request);
    }
}

impl std::ops::Deref for Sim {
    type Target = InsurerSim;

    fn deref(&self) -> &InsurerSim {
        &self.sim
    }
}

#[test]
fn sign_in_then_person_by_card() {
    let sim = Sim::start();
    let mut client = sim.client();
    let person = client.person_by_card(XIAOWANG_CARD, XIAOWANG_SN).unwrap();
    assert!(client.sign_no().is_some(), "signed in lazily");
    assert_eq!(sim.requests("9001"), 1);
    assert_eq!(person.baseinfo.certno, "500103199103080319");
    assert_eq!(person.baseinfo.psn_name, "王小");
    assert_eq!(person.baseinfo.brdy, "1991-03-08");
    assert_eq!(person.insuinfo.len(), 1);
    let insu = &person.insuinfo[0];
    assert_eq!(insu.balc, Decimal::new(10280, 2));
    assert_eq!(insu.balc.to_string(), "102.80");
    assert_eq!(insu.insutype, "310");
    assert_eq!(insu.psn_insu_stas, "1");
    assert_eq!(insu.insuplc_admdvs, "500000");
    // A second call reuses the sign-in.
    client.person_by_card(XIAOWANG_CARD, XIAOWANG_SN).unwrap();
    assert_eq!(sim.requests("9001"), 1);
    assert_eq!(sim.requests("1101"), 2);
}

#[test]
fn person_by_certno_and_the_suspended_person() {
    let sim = Sim::start();
    let mut client = sim.client();
    let liu = client.person_by_certno("510104195802140261").unwrap();
    assert_eq!(liu.baseinfo.psn_name, "刘秀英");
    assert_eq!(liu.insuinfo[0].insutype, "390");
    assert_eq!(liu.insuinfo[0].balc, Decimal::ZERO);
    assert_eq!(liu.insuinfo[0].insuplc_admdvs, "510100");
    let zheng = client.person_by_certno("370102196810091311").unwrap();
    assert_eq!(zheng.insuinfo[0].psn_insu_stas, "2");
    assert!(zheng.insuinfo[0].paus_insu_date.is_some());
    let lou = client.person_by_certno("330782197912050571").unwrap();
    assert_eq!(lou.insuinfo.len(), 2, "one row per insutype");
}

#[test]
fn refusals_are_business_errors() {
    let sim = Sim::start();
    let mut client = sim.client();
    let unknown = client.person_by_card("A5000001X", XIAOWANG_SN);
    assert!(
        matches!(&unknown, Err(LinkError::Business { infcode: -1, err_msg }) if err_msg.contains("未查询到人员信息")),
        "{unknown:?}"
    );
    let wrong_sn = client.person_by_card(XIAOWANG_CARD, "500000D15600000500000000000000FF");
    assert!(matches!(wrong_sn, Err(LinkError::Business { .. })));
    let lost = client.person_by_card("T03288549", "120100D156000005A8FF606EB0ECC1BE");
    assert!(matches!(&lost, Err(LinkError::Business { err_msg, .. }) if err_msg.contains("挂失")));
    let replaced = client.person_by_card("B07412630", "330100D1560000054EBBD0C6D548D393");
    assert!(matches!(replaced, Err(LinkError::Business { .. })));
    let new_card = client.person_by_card("B07412649", "330100D1560000051B2C3D4E5F607182");
    assert_eq!(new_card.unwrap().baseinfo.psn_name, "陈建国");
    let nobody = client.person_by_certno("110101199001010011");
    assert!(matches!(nobody, Err(LinkError::Business { .. })));
    assert!(!client.circuit_open(), "refusals do not trip the breaker");
}

#[test]
fn card_feed_pages_without_gaps_or_duplicates() {
    let sim = Sim::start();
    let generated = sim.admin(json!({"action": "generate_card_events", "count": 6}));
    assert_eq!(generated["latest_version"], 9);
    let mut client = sim.client();
    let (mut since, mut seen, mut pages) = (0, Vec::new(), 0);
    loop {
        let page = client.card_events(since, 3).unwrap();
        assert_eq!(page.latest_version, 9);
        if page.events.is_empty() {
            break;
        }
        pages += 1;
        since = page.events.last().unwrap().version;
        seen.extend(page.events.iter().map(|e| e.version));
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (1..=9).collect::<Vec<u64>>());
    let first = client.card_events(0, 1).unwrap().events.remove(0);
    assert_eq!(first.kind, CardEventKind::Replaced);
    assert_eq!(first.new_card_no.as_deref(), Some("B07412649"));
}

#[test]
fn catalogue_pages_by_version() {
    let sim = Sim::start();
    let mut client = sim.client();
    let (mut since, mut items) = (0, Vec::new());
    let mut sizes = Vec::new();
    loop {
        let page = client.catalogue(since, 4).unwrap();
        if page.items.is_empty() {
            assert_eq!(page.latest_version, since);
            break;
        }
        sizes.push(page.items.len());
        since = page.items.last().unwrap().version;
        items.extend(page.items);
    }
    assert_eq!(sizes, vec![4, 4, 1]);
    let versions: HashSet<u64> = items.iter().map(|i| i.version).collect();
    assert_eq!(versions.len(), items.len());
    for lv in [ChrgitmLv::A, ChrgitmLv::B, ChrgitmLv::C] {
        assert!(items.iter().any(|i| i.chrgitm_lv == lv));
    }
    let nasal = items
        .iter()
        .find(|i| i.hilist_name == "布地奈德鼻喷雾剂")
        .unwrap();
    assert_eq!(nasal.selfpay_prop, Decimal::new(20, 2));
    assert_eq!(nasal.pric_uplmt_amt, Some(Decimal::new(6800, 2)));
    assert!(items.iter().any(|i| !i.vali_flag));
    sim.admin(json!({"action": "generate_catalogue", "count": 5}));
    let more = client.catalogue(since, 100).unwrap();
    assert_eq!(more.items.len(), 5);
    assert_eq!(more.latest_version, since + 5);
}

#[test]
fn live_changes_show_in_the_feed_and_in_1101() {
    let sim = Sim::start();
    let mut client = sim.client();
    let latest = client.card_events(0, 100).unwrap().latest_version;
    sim.admin(json!({"action": "report_lost", "card_no": XIAOWANG_CARD}));
    let page = client.card_events(latest, 100).unwrap();
    assert_eq!(page.events.len(), 1);
    let event = &page.events[0];
    assert_eq!(event.card_no, XIAOWANG_CARD);
    assert_eq!(event.kind, CardEventKind::Lost);
    assert_eq!(event.certno, "500103199103080319");
    assert_eq!(page.latest_version, latest + 1);
    assert!(matches!(
        client.person_by_card(XIAOWANG_CARD, XIAOWANG_SN),
        Err(LinkError::Business { .. })
    ));
    sim.admin(json!({"action": "unlock", "card_no": XIAOWANG_CARD}));
    sim.admin(json!({"action": "suspend_person", "certno": "500103199103080319"}));
    sim.admin(json!({"action": "set_balc", "certno": "500103199103080319", "insutype": "310", "balc": "12.5"}));
    let person = client.person_by_card(XIAOWANG_CARD, XIAOWANG_SN).unwrap();
    assert_eq!(person.insuinfo[0].psn_insu_stas, "2");
    assert_eq!(person.insuinfo[0].balc, Decimal::new(1250, 2));
}

#[test]
fn latency_beyond_the_timeout_is_uncertain_and_retried() {
    let sim = Sim::start();
    let mut client = InsurerClient::new(InsurerConfig {
        timeout: Duration::from_millis(300),
        retries: 2,
        ..sim.config()
    });
    client.sign_in().unwrap();
    // Any attempt that waited for the reply would take the whole 3 s; three 300 ms attempts
    // take about 1 s (up to 1.6 s seen on a loaded 2-core machine).
    sim.faults(json!({"latency_ms": 3000, "for_infno": "1101"}));
    let started = Instant::now();
    let result = client.person_by_card(XIAOWANG_CARD, XIAOWANG_SN);
    assert!(matches!(result, Err(LinkError::Uncertain(_))), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_millis(3000),
        "timeouts bound the wait"
    );
    assert_eq!(sim.requests("1101"), 3, "1101 is retried (1 + 2 retries)");
}

#[test]
fn http_500_is_uncertain_and_a_retry_recovers() {
    let sim = Sim::start();
    let mut client = sim.client();
    client.sign_in().unwrap();
    sim.faults(json!({"http_500": 1}));
    let result = client.person_by_card(XIAOWANG_CARD, XIAOWANG_SN);
    assert!(matches!(
        result,
        Err(LinkError::Uncertain(Uncertainty::Http(500)))
    ));
    let mut retrying = sim.signed_in_retrying(1);
    sim.faults(json!({"http_500": 1}));
    retrying.person_by_card(XIAOWANG_CARD, XIAOWANG_SN).unwrap();
    assert_eq!(sim.requests("1101"), 3);
}

/// "医保中心系统繁忙，请稍后再试" (infcode −1) is transient: a call that changes nothing is
/// retried, and once the retries are used up it is `Busy`, never a business refusal.
#[test]
fn a_busy_platform_is_retried_and_never_a_refusal() {
    let sim = Sim::start();
    let mut client = sim.signed_in_retrying(3);
    sim.faults(json!({"infcode_minus1": 1}));
    client.person_by_card(XIAOWANG_CARD, XIAOWANG_SN).unwrap();
    assert_eq!(sim.requests("1101"), 2);
    sim.faults(json!({"infcode_minus1": 10}));
    let result = client.person_by_card(XIAOWANG_CARD, XIAOWANG_SN);
    assert!(
        matches!(result, Err(LinkError::Busy { infcode: -1, .. })),
        "{result:?}"
    );
    assert_eq!(sim.requests("1101"), 6);
    assert!(!client.circuit_open(), "an answer is no link failure");
}

/// "发送方报文ID[…]重复": the message was not processed; it goes again with a new msgid.
#[test]
fn a_duplicate_msgid_is_sent_again_with_a_new_one() {
    let sim = Sim::start();
    let mut client = sim.signed_in_retrying(0);
    sim.faults(json!({"duplicate_msgid": 1, "for_infno": "1101"}));
    client.person_by_card(XIAOWANG_CARD, XIAOWANG_SN).unwrap();
    assert_eq!(sim.requests("1101"), 2);
}

#[test]
fn garbage_is_uncertain() {
    let sim = Sim::start();
    let mut client = sim.client();
    client.sign_in().unwrap();
    sim.faults(json!({"garbage": 1}));
    let result = client.person_by_certno("500103199103080319");
    assert!(matches!(result, Err(LinkError::Uncertain(_))), "{result:?}");
}

#[test]
fn a_reply_dropped_after_processing_is_uncertain_but_logged() {
    let sim = Sim::start();
    let mut client = sim.client();
    client.sign_in().unwrap();
    sim.faults(json!({"drop_after_processing": 1}));
    let msgid = client.next_msgid();
    let input = wire::person_by_card_input(XIAOWANG_CARD, XIAOWANG_SN);
    let result = client.send(wire::PERSON_INFO, &msgid, None, input);
    assert!(matches!(result, Err(LinkError::Uncertain(_))), "{result:?}");
    let log = sim.admin(json!({"action": "msg_log", "msgid": msgid}));
    let rows = log["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["outcome"], "processed_reply_dropped");
    assert_eq!(rows[0]["infcode"], 0);
    assert_eq!(rows[0]["infno"], "1101");
}

#[test]
fn the_breaker_opens_fails_fast_and_closes_after_the_cooldown() {
    let sim = Sim::start();
    let mut client = InsurerClient::new(InsurerConfig {
        breaker_threshold: 2,
        breaker_cooldown: Duration::from_millis(500),
        ..sim.config()
    });
    client.sign_in().unwrap();
    sim.faults(json!({"http_500": 2}));
    for _ in 0..2 {
        let r = client.person_by_card(XIAOWANG_CARD, XIAOWANG_SN);
        assert!(matches!(r, Err(LinkError::Uncertain(_))));
    }
    let before = sim.requests("1101");
    let open = client.person_by_card(XIAOWANG_CARD, XIAOWANG_SN);
    assert!(matches!(open, Err(LinkError::CircuitOpen { retry_in_ms }) if retry_in_ms <= 500));
    assert_eq!(sim.requests("1101"), before, "nothing reached the insurer");
    std::thread::sleep(Duration::from_millis(600));
    client.person_by_card(XIAOWANG_CARD, XIAOWANG_SN).unwrap();
    assert!(!client.circuit_open());
    assert_eq!(sim.requests("1101"), before + 1);
}

#[test]
fn a_lapsed_sign_in_is_renewed_once() {
    let sim = Sim::start();
    let mut client = sim.client();
    let first = client.sign_in().unwrap();
    sim.admin(json!({"action": "expire_signins"}));
    client.person_by_card(XIAOWANG_CARD, XIAOWANG_SN).unwrap();
    assert_ne!(client.sign_no(), Some(first));
    assert_eq!(sim.requests("9001"), 2);
    assert_eq!(sim.requests("1101"), 2, "refused once, then answered");
}

#[test]
fn msgids_are_unique_and_thirty_characters() {
    let mut ids = SequenceMsgIds::new("H50010302473");
    let mut seen = HashSet::new();
    for _ in 0..10_000 {
        let id = ids.next_msgid();
        assert_eq!(id.len(), 30);
        assert!(seen.insert(id));
    }
}

#[test]
fn state_changing_calls_are_never_retried() {
    let sim = Sim::start();
    let mut client = sim.signed_in_retrying(3);
    sim.faults(json!({"http_500": 1}));
    let input = wire::person_by_card_input(XIAOWANG_CARD, XIAOWANG_SN);
    let result = client.call(wire::PERSON_INFO, input, Retry::Never);
    assert!(matches!(result, Err(LinkError::Uncertain(_))), "{result:?}");
    assert_eq!(sim.requests("1101"), 1);
}

#[test]
fn fixtures_from_a_directory_and_envelope_checks() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/insurer");
    let sim = Sim::start_with(&["--fixtures", dir, "--region", "510100"]);
    let mut client = sim.client();
    client.sign_in().unwrap();
    let input = wire::person_by_card_input(XIAOWANG_CARD, XIAOWANG_SN);
    let reply = client
        .call(wire::PERSON_INFO, input.clone(), Retry::Never)
        .unwrap();
    let refmsgid = reply.inf_refmsgid.unwrap();
    assert_eq!(refmsgid.len(), 30);
    assert!(refmsgid.starts_with("510100"));
    assert_eq!(reply.msgid.len(), 30);
    // The same msgid twice is refused, as the platform does.
    let again = client.send(wire::PERSON_INFO, &reply.msgid, None, input);
    assert!(matches!(again, Err(LinkError::Business { err_msg, .. }) if err_msg.contains("重复")));
    let unknown = client.call("X999", json!({"data": {}}), Retry::Never);
    assert!(matches!(unknown, Err(LinkError::Business { .. })));
}

/// HTTP 413 is about one request's size: `TooLarge`, not retried, and the link stays up
/// (the breaker counts only the link's own failures).
#[test]
fn http_413_is_the_request_s_not_the_link_s() {
    let sim = Sim::start_with(&["--max-body-bytes", "4096"]);
    let mut client = InsurerClient::new(InsurerConfig {
        breaker_threshold: 2,
        retries: 2,
        ..sim.config()
    });
    client.sign_in().unwrap();
    let huge = "5".repeat(8_000);
    for _ in 0..3 {
        let result = client.person_by_certno(&huge);
        assert!(
            matches!(&result, Err(LinkError::TooLarge { infno, bytes }) if infno == "1101" && *bytes > 8_000),
            "{result:?}"
        );
    }
    assert_eq!(
        sim.requests("1101"),
        0,
        "refused before the transaction was read"
    );
    assert!(!client.circuit_open());
    client.person_by_card(XIAOWANG_CARD, XIAOWANG_SN).unwrap();
}
