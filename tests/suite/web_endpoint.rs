//! The loopback web endpoint (issue 14, docs/web.md) against a real daemon, the real
//! insurer simulator and a real cache: a page on an allowed origin does over the WebSocket
//! what a socket client does, through the same request loop (a commit over the WebSocket
//! and its retry over the Unix socket are one settlement); a foreign origin, a rebinding
//! `Host`, a wrong or missing token and an oversized message are refused with 1021 / −32600
//! and change nothing; the kiosk token pays only offered bills, once.

use crate::common::rpc::{Client, Rpc};
use crate::common::settle::{self, Rig, XIAOWANG};
use crate::common::web::{self, HIS_ORIGIN, Web};
use serde_json::{Value, json};

/// A rig whose daemon serves the web endpoint (and `extra` configuration lines).
fn web_rig(tag: &str, extra: &str) -> Rig {
    let rig = Rig::start(tag, "");
    let dir = rig.config.parent().expect("dir").to_owned();
    let mut text = std::fs::read_to_string(&rig.config).expect("config");
    text.push_str(extra);
    text.push_str(&web::config_lines(&dir));
    std::fs::write(&rig.config, text).expect("config");
    rig
}

/// HTTP headers of a hand-made request.
type Headers<'a> = &'a [(&'a str, &'a str)];

fn code(error: &Value) -> i64 {
    error["code"].as_i64().unwrap_or_default()
}

#[test]
fn a_page_on_an_allowed_origin_does_what_a_socket_client_does() {
    let rig = web_rig("web-same", "");
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let web = Web::of(&daemon, &rig.config);
    let mut socket = Client::connect(&daemon.socket);
    settle::wait_catalogue(&mut socket);
    let on_socket = settle::wait_card(&mut socket);
    let mut page = web.his();
    let on_page = page.result("card.read", json!({}));
    assert_eq!(on_page, on_socket, "the same session, the same JSON");
    let error = page.error("card.read", json!({"reader": "no such reader"}));
    assert_eq!(code(&error), 1002, "the socket's errors: {error}");

    let mdtrt_id = settle::register(&mut page);
    let preview = settle::preview(&mut page, &mdtrt_id, settle::one_line("50.00"));
    let params = settle::commit_params(&preview["preview_id"], "web-1");
    let over_web = page.result("settle.commit", params.clone());
    let over_socket = socket.result("settle.commit", params);
    assert_eq!(over_web["setl_id"], over_socket["setl_id"]);
    assert_eq!(over_web["state"], "settled");
    assert_eq!(rig.requests("2207"), 1, "one settlement for one request_id");
}

#[test]
fn notifications_reach_a_websocket_subscriber() {
    let rig = web_rig("web-events", "");
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let web = Web::of(&daemon, &rig.config);
    let mut page = web.his();
    let subscribed = page.result("events.subscribe", json!({"topics": ["card.ready"]}));
    assert_eq!(subscribed["subscribed"], json!(["card.ready"]));
    // From another connection: a call's own reader skips notifications before its answer.
    web.his().result("card.refresh", json!({}));
    let event = loop {
        let message = page.inner().receive().expect("a message").expect("open");
        if message.get("method").is_some() {
            break message;
        }
    };
    assert_eq!(event["method"], "card.ready");
    assert!(event["params"]["card"]["session_id"].is_u64(), "{event}");
}

#[test]
fn other_origins_hosts_and_tokens_are_refused_and_change_nothing() {
    let rig = web_rig("web-refused", "");
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let web = Web::of(&daemon, &rig.config);
    let mut socket = Client::connect(&daemon.socket);
    settle::wait_card(&mut socket);
    let wrong_pin = r#"{"jsonrpc":"2.0","id":1,"method":"card.verify_pin","params":{"reader":"medcard virtual reader 0","pin":"000000"}}"#;

    let foreign = medcard::serve::client::Client::connect_web(
        web.addr,
        Some("http://evil.example"),
        Some(&web.client_token),
    );
    let refusal = foreign.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        refusal.contains("HTTP 403") && refusal.contains("1021"),
        "{refusal}"
    );
    assert!(refusal.contains("web.allowed_origins"), "{refusal}");

    let bearer = format!("Bearer {}", web.client_token);
    let rebinding = format!("evil.example:{}", web.addr.port());
    let cases: [(Headers, u16, &str); 4] = [
        (
            &[("Host", &rebinding), ("Authorization", &bearer)],
            403,
            "DNS rebinding",
        ),
        (
            &[
                ("Origin", "http://evil.example"),
                ("Authorization", &bearer),
            ],
            403,
            "allowed_origins",
        ),
        (
            &[("Origin", HIS_ORIGIN), ("Authorization", "Bearer 00")],
            401,
            "token is wrong",
        ),
        (&[("Origin", HIS_ORIGIN)], 200, "needs the client token"),
    ];
    for (headers, status, why) in cases {
        let (got, answer) = web.post(headers, wrong_pin);
        assert_eq!(got, status, "{headers:?}: {answer}");
        assert_eq!(code(&answer["error"]), 1021, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{message}");
    }
    let mut kiosk = web.kiosk();
    for (method, params) in [
        (
            "settle.refund",
            json!({"setl_id": "S1", "request_id": "r1"}),
        ),
        ("bill.offer", json!({})),
        ("visit.cancel", json!({"mdtrt_id": "M1"})),
    ] {
        let error = kiosk.error(method, params);
        assert_eq!(code(&error), 1021, "{method}: {error}");
    }
    // Nothing reached the card: the first wrong PIN now still leaves 2 of 3 tries.
    let mut his = web.his();
    let answer = his.result(
        "card.verify_pin",
        json!({"reader": "medcard virtual reader 0", "pin": "000000"}),
    );
    assert_eq!(answer, json!({"ok": false, "tries_left": 2}));
    assert_eq!(rig.requests("2208") + rig.requests("2202"), 0);
}

#[test]
fn an_oversized_message_is_refused_and_the_daemon_keeps_serving() {
    let rig = web_rig("web-large", "\n[socket]\nmax_line_bytes = 4096\n");
    // [socket] appears twice: the rig's first; merge by rewriting the file.
    let text = std::fs::read_to_string(&rig.config).expect("config");
    let text = text
        .replacen(
            "[socket]\nmax_connections = 128\n",
            "[socket]\nmax_connections = 128\nmax_line_bytes = 4096\n",
            1,
        )
        .replacen("\n[socket]\nmax_line_bytes = 4096\n", "\n", 1);
    std::fs::write(&rig.config, text).expect("config");
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let web = Web::of(&daemon, &rig.config);
    let mut page = web.his();
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"bill.offer","params":{{"pad":"{}"}}}}"#,
        "x".repeat(5000)
    );
    page.inner().send_text(&big).expect("sent");
    let answer = page.inner().receive().expect("an answer").expect("open");
    assert_eq!(code(&answer["error"]), -32600, "{answer}");
    assert!(
        page.inner().receive().expect("closed").is_none(),
        "closed after"
    );
    let (status, answer) = web.post(
        &[("Authorization", &format!("Bearer {}", web.client_token))],
        &big,
    );
    assert_eq!((status, code(&answer["error"])), (413, -32600), "{answer}");
    let mut again = web.his();
    assert_eq!(again.result("kiosk.config", json!({}))["idle_seconds"], 30);
}

#[test]
fn the_kiosk_pays_an_offered_bill_once() {
    let rig = web_rig("web-bill", "");
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let web = Web::of(&daemon, &rig.config);
    let mut his = web.his();
    settle::wait_catalogue(&mut his);
    let card = settle::wait_card(&mut his);
    let mut kiosk = web.kiosk();
    let by_certno = json!({"certno": card["holder"]["certno"], "dept_code": "A03",
        "dept_name": "内科", "dr_name": "张医生"});
    assert_eq!(code(&kiosk.error("visit.register", by_certno)), 1021);
    // The patient registers himself: a self-service terminal's 2201.
    let mdtrt_id = settle::register(&mut kiosk);
    assert_eq!(rig.sim.opter_types("2201"), [json!("2")]);
    let certno = card["holder"]["certno"].clone();
    let offer = json!({"bill_id": "HIS-BILL-1", "certno": certno, "mdtrt_id": mdtrt_id,
        "dept_name": "内科", "items": settle::one_line("30.00")});
    let offered = his.result("bill.offer", offer.clone());
    assert_eq!(offered["total"], "30.00");

    let bills = kiosk.result("bill.list", json!({}));
    assert_eq!(bills["bills"][0]["bill_id"], "HIS-BILL-1", "{bills}");
    assert_eq!(bills["bills"][0]["state"], "offered");
    // A preview the kiosk did not get from bill.preview cannot be committed by it.
    let stray = settle::preview(&mut his, &mdtrt_id, settle::one_line("1.00"));
    let error = kiosk.error(
        "settle.commit",
        settle::commit_params(&stray["preview_id"], "HIS-BILL-1"),
    );
    assert_eq!(code(&error), 1021, "{error}");

    let preview = kiosk.result("bill.preview", json!({"bill_id": "HIS-BILL-1"}));
    let commit = settle::commit_params(&preview["preview_id"], "HIS-BILL-1");
    let paid = kiosk.result("settle.commit", commit.clone());
    let again = kiosk.result("settle.commit", commit);
    assert_eq!(paid["state"], "settled");
    assert_eq!(paid["setl_id"], again["setl_id"]);
    assert_eq!(rig.requests("2207"), 1, "the bill is paid once");
    let bills = kiosk.result("bill.list", json!({}));
    assert_eq!(bills["bills"][0]["state"], "settled", "{bills}");
    assert_eq!(bills["bills"][0]["setl_id"], paid["setl_id"]);
    let error = his.error("bill.offer", offer);
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("settled already"),
        "{error}"
    );
}

#[test]
fn an_offered_bill_outlives_a_restart_of_the_daemon() {
    let rig = web_rig("web-bill-restart", "");
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let web = Web::of(&daemon, &rig.config);
    let mut his = web.his();
    let card = settle::wait_card(&mut his);
    let mdtrt_id = settle::register(&mut his);
    let offer = json!({"bill_id": "HIS-KEPT-1", "certno": card["holder"]["certno"],
        "mdtrt_id": mdtrt_id, "items": settle::one_line("12.50")});
    his.result("bill.offer", offer);
    drop((his, daemon));

    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let web = Web::of(&daemon, &rig.config);
    let mut kiosk = web.kiosk();
    settle::wait_card(&mut kiosk);
    let bills = kiosk.result("bill.list", json!({}));
    assert_eq!(bills["bills"][0]["bill_id"], "HIS-KEPT-1", "{bills}");
    assert_eq!(bills["bills"][0]["total"], "12.50");
    let preview = kiosk.result("bill.preview", json!({"bill_id": "HIS-KEPT-1"}));
    let paid = kiosk.result(
        "settle.commit",
        settle::commit_params(&preview["preview_id"], "HIS-KEPT-1"),
    );
    assert_eq!(paid["state"], "settled");
}
