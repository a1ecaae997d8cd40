//! The socket side of `medcard serve` over a real Unix socket in a temporary directory,
//! driven by a fake reader monitor (`serve::handle::channel`): every method, framing and
//! robustness (malformed and oversized lines, 100 concurrent clients, the connection limit,
//! a stalled subscriber, a vanishing client), reload, permissions, the CLI clients, the
//! daemon itself with virtual cards, and the systemd units.

use crate::common;

use common::medcard;
use common::rpc::{Connection, PATIENCE, RawClient, Rpc};
use common::temp::TempDir;
use common::wait_until;

use medcard::card::{CardRead, PinState};
use medcard::serve::client::ClientError;
use medcard::serve::config::Config;
use medcard::serve::server::{Listeners, Reloader, Server};
use medcard::serve::{
    CardEvent, CardSession, MonitorSide, ReaderInfo, ReaderState, Request, SessionError, Snapshot,
};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const READER_A: &str = "Reader A";
const READER_B: &str = "Reader B";
const GOOD_PIN: &str = "123456";
const LOCKED_PIN: &str = "000000";

fn card(certno: &str) -> CardRead {
    let mut card = CardRead {
        card_no: Some("C06123455".into()),
        atr: "3B6D000000814A444686605000000001AC".into(),
        profile: "ssse-2.0".into(),
        ..CardRead::default()
    };
    card.holder.certno = Some(certno.into());
    card.holder.psn_name = Some("王小明".into());
    card
}

fn session(reader: &str, id: u64) -> CardSession {
    CardSession {
        session_id: id,
        reader: reader.into(),
        read_at: "2026-11-23T13:00:00Z".into(),
        card: card("440301199001010036"),
        verdict: None,
        insured: None,
    }
}

fn reader(name: &str, state: ReaderState) -> ReaderInfo {
    ReaderInfo {
        name: name.into(),
        state,
        atr: (state != ReaderState::Empty).then(|| "3B6D".into()),
        error: (state == ReaderState::Error).then(|| "card stopped answering".into()),
        reader_code: (state == ReaderState::Error).then_some(medcard::codes::ReaderCode(-4)),
    }
}

/// A snapshot with one ready card in reader A (and an empty reader B).
fn one_card() -> Snapshot {
    let mut snapshot = Snapshot {
        readers: vec![
            reader(READER_A, ReaderState::Ready),
            reader(READER_B, ReaderState::Empty),
        ],
        ..Snapshot::default()
    };
    snapshot
        .sessions
        .insert(READER_A.into(), session(READER_A, 1));
    snapshot
}

/// A server on a temporary socket with a fake monitor.
struct TestServer {
    dir: TempDir,
    socket: PathBuf,
    side: Arc<MonitorSide>,
    reloader: Reloader,
    tcp: Option<std::net::SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    fn start() -> TestServer {
        TestServer::with(|_| {})
    }

    fn with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = TempDir::new("serve");
        let socket = dir.join("run/medcard.sock");
        let mut config = Config::default();
        config.socket.path = socket.clone();
        config.socket.shutdown_grace_ms = 500;
        adjust(&mut config);
        let (handle, side) = medcard::serve::handle::channel();
        let side = Arc::new(side);
        side.snapshot.send_replace(Arc::new(one_card()));
        answer_requests(side.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async move {
                let listeners = Listeners::bind(&config, None).await.unwrap();
                let tcp = listeners.tcp.as_ref().map(|l| l.local_addr().unwrap());
                let server = Server::new(config, handle);
                ready_tx.send((server.reloader(), tcp)).unwrap();
                server
                    .run(listeners, async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let (reloader, tcp) = ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        TestServer {
            dir,
            socket,
            side,
            reloader,
            tcp,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn client(&self) -> RawClient {
        RawClient::connect(&self.socket)
    }

    /// Whether a new connection gets an answer (rather than a refusal), through medcard's
    /// own client.
    fn answers(&self) -> bool {
        medcard::serve::client::Client::connect(&self.socket)
            .and_then(|mut client| client.call("system.info", json!({})))
            .is_ok()
    }

    fn publish(&self, snapshot: Snapshot) {
        self.side.snapshot.send_replace(Arc::new(snapshot));
    }

    fn event(&self, event: CardEvent) {
        let _ = self.side.events.send(event);
    }

    /// Stops the server and waits until it has finished.
    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The fake monitor's request loop: refresh gives a new session; PINs by value.
fn answer_requests(side: Arc<MonitorSide>) {
    std::thread::spawn(move || {
        let requests = side.requests.lock().unwrap();
        let mut next_session = 100;
        while let Ok(request) = requests.recv() {
            match request {
                Request::Refresh { reader, reply } => {
                    next_session += 1;
                    let answer = match reader.as_str() {
                        READER_A => Ok(session(READER_A, next_session)),
                        _ => Err(SessionError::NoCard(reader)),
                    };
                    let _ = reply.send(answer);
                }
                Request::VerifyPin { reader, pin, reply } => {
                    drop(pin);
                    let state = match reader.as_str() {
                        READER_A => Ok(pin_state()),
                        _ => Err(SessionError::NoCard(reader)),
                    };
                    let _ = reply.send(state);
                }
                Request::Reassess => {}
            }
        }
    });
}

/// The fake card's answer to the PIN the test just sent (a `Pin` keeps its digits to
/// itself, so the test tells the fake monitor through [`LAST_PIN`]).
fn pin_state() -> PinState {
    match LAST_PIN.lock().unwrap().take().as_deref() {
        Some(GOOD_PIN) => PinState::Ok,
        Some(LOCKED_PIN) => PinState::Locked,
        _ => PinState::Required { tries_left: 2 },
    }
}

/// The PIN being verified; [`ONE_VERIFY`] keeps tests running in parallel apart.
static LAST_PIN: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
static ONE_VERIFY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn verify<S: Connection>(client: &mut RawClient<S>, pin: &str) -> Value {
    let _one = ONE_VERIFY.lock().unwrap_or_else(|e| e.into_inner());
    *LAST_PIN.lock().unwrap() = Some(pin.to_owned());
    client.call("card.verify_pin", json!({"reader": READER_A, "pin": pin}))
}

#[test]
fn system_info_and_readers_list() {
    let server = TestServer::start();
    let mut client = server.client();
    let info = client.result("system.info", json!({}));
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["readers"], 2);
    assert_eq!(info["cache"]["status"], "not_configured");
    assert!(info["uptime_s"].is_u64());
    let readers = client.result("readers.list", json!({}));
    assert_eq!(readers[0]["name"], READER_A);
    assert_eq!(readers[0]["state"], "ready");
    assert_eq!(readers[1]["state"], "empty");
    assert_eq!(readers[1]["atr"], Value::Null);
}

#[test]
fn card_read_answers_from_the_session_and_names_its_errors() {
    let server = TestServer::start();
    let mut client = server.client();
    let card = client.result("card.read", json!({}));
    assert_eq!(card["reader"], READER_A);
    assert_eq!(card["session_id"], 1);
    assert_eq!(card["holder"]["certno"], "440301199001010036");
    assert_eq!(card["card_no"], "C06123455");
    assert!(card["read_at"].is_string());
    assert_eq!(
        client.result("card.read", json!({"reader": READER_A}))["session_id"],
        1
    );

    let error = client.error("card.read", json!({"reader": "nope"}));
    assert_eq!(error["code"], 1002);
    assert_eq!(error["data"]["message_zh"], "读卡器不存在");
    let error = client.error("card.read", json!({"reader": READER_B}));
    assert_eq!(error["code"], 1001);
    assert_eq!(error["data"]["reader_code"], -2);
    let error = client.error("card.read", json!({"reader": 5}));
    assert_eq!(error["code"], -32602);
    let error = client.error("card.read", json!({"wait_ms": "soon"}));
    assert_eq!(error["code"], -32602);

    let mut two = one_card();
    two.readers[1] = reader(READER_B, ReaderState::Ready);
    two.sessions.insert(READER_B.into(), session(READER_B, 2));
    server.publish(two);
    let error = client.error("card.read", json!({}));
    assert_eq!(error["code"], 1003);

    server.publish(Snapshot {
        readers: vec![reader(READER_A, ReaderState::Error)],
        ..Snapshot::default()
    });
    let error = client.error("card.read", json!({}));
    assert_eq!(error["code"], 1004);
    assert_eq!(error["data"]["reader_code"], -4);
    assert_eq!(error["data"]["message_zh"], "卡无应答");
}

#[test]
fn card_read_with_wait_ms_waits_for_an_insertion_or_times_out() {
    let server = TestServer::start();
    let empty = Snapshot {
        readers: vec![reader(READER_A, ReaderState::Empty)],
        ..Snapshot::default()
    };
    server.publish(empty.clone());
    let mut client = server.client();
    let started = Instant::now();
    let error = client.error("card.read", json!({"wait_ms": 200}));
    assert_eq!(error["code"], 1005);
    assert!(started.elapsed() >= Duration::from_millis(200));

    let side = server.side.clone();
    let inserter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        side.snapshot.send_replace(Arc::new(one_card()));
    });
    let card = client.result("card.read", json!({"wait_ms": 5000}));
    assert_eq!(card["reader"], READER_A);
    inserter.join().unwrap();
}

#[test]
fn card_refresh_reads_again() {
    let server = TestServer::start();
    let mut client = server.client();
    let card = client.result("card.refresh", json!({}));
    assert_eq!(card["reader"], READER_A);
    assert!(card["session_id"].as_u64().unwrap() > 100);
    let card = client.result("card.refresh", json!({"reader": READER_A}));
    assert!(card["session_id"].as_u64().unwrap() > 101);
    let error = client.error("card.refresh", json!({"reader": READER_B}));
    assert_eq!(error["code"], 1001);
}

#[test]
fn card_verify_pin_reports_ok_tries_left_and_locked() {
    let server = TestServer::start();
    let mut client = server.client();
    assert_eq!(verify(&mut client, GOOD_PIN)["result"], json!({"ok": true}));
    assert_eq!(
        verify(&mut client, "654321")["result"],
        json!({"ok": false, "tries_left": 2})
    );
    let locked = verify(&mut client, LOCKED_PIN);
    assert_eq!(locked["error"]["code"], 1006);
    assert_eq!(locked["error"]["data"]["reader_code"], -52);
    let bad = verify(&mut client, "12");
    assert_eq!(bad["error"]["code"], -32602);
    let error = client.error("card.verify_pin", json!({"pin": 123456}));
    assert_eq!(error["code"], -32602);
    assert!(!error.to_string().contains("123456"), "{error}");
}

#[test]
fn subscribers_get_notifications_in_order_filtered_by_topic() {
    let server = TestServer::start();
    let mut all = server.client();
    let subscribed = all.result("events.subscribe", json!({}));
    assert_eq!(
        subscribed["subscribed"],
        json!(medcard::serve::methods::TOPICS),
        "every topic by default"
    );
    let mut removals = server.client();
    let subscribed = removals.result("events.subscribe", json!({"topics": ["card.removed"]}));
    assert_eq!(subscribed, json!({"subscribed": ["card.removed"]}));
    let error = removals.error("events.subscribe", json!({"topics": ["card.eaten"]}));
    assert_eq!(error["code"], -32602);

    server.event(CardEvent::ReaderAdded {
        reader: READER_A.into(),
    });
    server.event(CardEvent::CardInserted {
        reader: READER_A.into(),
        atr: "3B6D".into(),
    });
    server.event(CardEvent::CardReady {
        reader: READER_A.into(),
        card: Box::new(session(READER_A, 9)),
    });
    server.event(CardEvent::CardError {
        reader: READER_A.into(),
        reader_code: medcard::codes::ReaderCode(-4),
        message: "gone".into(),
    });
    server.event(CardEvent::CardRemoved {
        reader: READER_A.into(),
    });
    server.event(CardEvent::ReaderRemoved {
        reader: READER_A.into(),
    });

    let methods: Vec<Value> = (0..6).map(|_| all.read()).collect();
    let names: Vec<&str> = methods
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "reader.added",
            "card.inserted",
            "card.ready",
            "card.error",
            "card.removed",
            "reader.removed"
        ]
    );
    assert_eq!(methods[2]["jsonrpc"], "2.0");
    assert!(methods[2].get("id").is_none());
    assert_eq!(methods[2]["params"]["reader"], READER_A);
    assert_eq!(methods[2]["params"]["card"]["session_id"], 9);
    assert_eq!(methods[2]["params"]["card"]["holder"]["psn_name"], "王小明");
    assert_eq!(methods[3]["params"]["reader_code"], -4);
    assert!(methods[0]["params"].get("event").is_none());
    let removed = removals.read();
    assert_eq!(removed["method"], "card.removed");
    assert_eq!(removed["params"], json!({"reader": READER_A}));
    // Requests still work on a subscribed connection.
    assert_eq!(all.result("readers.list", json!({}))[0]["name"], READER_A);
    assert_eq!(
        all.result("events.unsubscribe", json!({})),
        json!({"unsubscribed": true})
    );
}

#[test]
fn unknown_methods_bad_requests_and_notifications() {
    let server = TestServer::start();
    let mut client = server.client();
    assert_eq!(client.error("card.eat", json!({}))["code"], -32601);
    // A method without params refuses any, as the others refuse unknown names.
    for method in ["system.info", "readers.list", "sync.status"] {
        assert_eq!(
            client.error(method, json!({"verbose": true}))["code"],
            -32602
        );
        assert!(client.call(method, json!({})).get("result").is_some());
    }
    client.send_raw(b"{\"jsonrpc\":\"1.0\",\"id\":\"x\",\"method\":\"system.info\"}\n");
    let response = client.read();
    assert_eq!(response["error"]["code"], -32600);
    assert_eq!(response["id"], "x");
    client.send_raw(b"[1,2]\n");
    assert_eq!(client.read()["error"]["code"], -32600);
    // A notification (no id) is run but not answered: the next reply is for id 9.
    client.send_raw(b"{\"jsonrpc\":\"2.0\",\"method\":\"system.info\"}\n");
    client.send_raw(b"\n\r\n");
    client.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"system.info\"}\n");
    assert_eq!(client.read()["id"], 9);
}

#[test]
fn a_malformed_line_gets_parse_error_and_the_connection_stays_usable() {
    let server = TestServer::start();
    let mut client = server.client();
    client.send_raw(b"{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\n");
    let response = client.read();
    assert_eq!(response["error"]["code"], -32700);
    assert_eq!(response["id"], Value::Null);
    assert_eq!(
        response["error"]["data"]["message_zh"],
        "请求不是有效的JSON"
    );
    client.send_raw(&[0xff, 0xfe, b'\n']);
    assert_eq!(client.read()["error"]["code"], -32700);
    assert_eq!(client.result("card.read", json!({}))["reader"], READER_A);
}

#[test]
fn an_oversized_line_is_refused_without_buffering_and_the_connection_stays_usable() {
    let server = TestServer::start();
    let mut client = server.client();
    let chunk = vec![b'x'; 64 * 1024];
    let started = Instant::now();
    // 3 MiB in 64 KiB chunks: refused once the first MiB is passed, the rest discarded.
    for _ in 0..48 {
        client.send_raw(&chunk);
    }
    client.send_raw(b"\n");
    let response = client.read();
    assert_eq!(response["error"]["code"], -32600);
    assert!(
        response["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too large")
    );
    assert_eq!(client.result("card.read", json!({}))["reader"], READER_A);
    assert!(started.elapsed() < Duration::from_secs(10));
    // A line of exactly the limit is fine (and malformed).
    let mut line = vec![b' '; 1024 * 1024 - 1];
    line[0] = b'{';
    line.push(b'\n');
    client.send_raw(&line);
    assert_eq!(client.read()["error"]["code"], -32700);
}

#[test]
fn a_half_written_line_then_end_of_input_changes_nothing() {
    let server = TestServer::start();
    let mut client = server.client();
    client.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"card.refresh\"");
    client.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = String::new();
    client.lines.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "nothing is answered; the connection closes");
    assert_eq!(
        server.client().result("card.read", json!({}))["session_id"],
        1
    );
}

#[test]
fn a_request_followed_by_end_of_input_is_still_answered() {
    let server = TestServer::start();
    server.publish(Snapshot {
        readers: vec![reader(READER_A, ReaderState::Empty)],
        ..Snapshot::default()
    });
    let mut client = server.client();
    // As `socat` does: send, close the sending side, read the answer.
    client.send_raw(
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"card.read\",\"params\":{\"wait_ms\":600}}\n",
    );
    client.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(client.read()["error"]["code"], 1005);
}

#[test]
fn a_hundred_concurrent_clients_each_read_the_card() {
    let server = TestServer::with(|config| {
        config.socket.max_connections = 128;
    });
    let socket = server.socket.clone();
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut client = RawClient::connect(&socket);
                client.result("card.read", json!({}))["holder"]["certno"].clone()
            })
        })
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), "440301199001010036");
    }
}

#[test]
fn the_connection_over_the_limit_is_refused_with_a_clear_message() {
    // The total limit alone: this test's connections are all one user's.
    let server = TestServer::with(|config| {
        config.socket.max_connections = 3;
        config.socket.reserved_for_other_users = 0;
    });
    let mut held: Vec<RawClient> = (0..3).map(|_| server.client()).collect();
    for client in &mut held {
        client.result("system.info", json!({}));
    }
    let mut refused = server.client();
    let response = refused.read();
    assert_eq!(response["error"]["code"], 1008);
    assert!(
        response["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too many connections: at most 3")
    );
    assert_eq!(
        response["error"]["data"]["message_zh"],
        "连接数已满，请稍后重试"
    );
    let mut rest = String::new();
    refused.lines.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "");
    // medcard's own client (`medcard call`, the demo) reports the refusal, not a lost answer.
    let refused = medcard::serve::client::Client::connect(&server.socket)
        .and_then(|mut client| client.call("system.info", json!({})));
    assert!(
        matches!(refused, Err(ClientError::Rpc { code: 1008, .. })),
        "{refused:?}"
    );
    drop(held.pop());
    // The slot is free again once the server has seen the close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut client = server.client();
        let request = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"system.info\"}\n";
        let _ = client.stream.write_all(request);
        let response = client.read();
        if response.get("result").is_some() {
            break;
        }
        assert_eq!(response["error"]["code"], 1008);
        assert!(Instant::now() < deadline, "{response}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn one_user_cannot_take_every_connection() {
    let server = TestServer::with(|config| {
        config.socket.max_connections = 4;
        config.socket.reserved_for_other_users = 2;
    });
    let mut held: Vec<RawClient> = (0..2).map(|_| server.client()).collect();
    for client in &mut held {
        client.result("system.info", json!({}));
    }
    // This test's uid holds its two; the server still has room, but not for this user.
    let refused = server.client().read();
    assert_eq!(refused["error"]["code"], 1008, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("at most 2 per user"), "{message}");
    assert_eq!(
        refused["error"]["data"]["message_zh"],
        "该用户连接数已满，请关闭不再使用的连接"
    );
    // A connection given back is this user's to use again.
    drop(held.pop());
    wait_until("the user's slot given back", PATIENCE, || server.answers());
}

#[test]
fn an_idle_connection_is_closed_and_frees_its_slot_but_a_subscriber_stays() {
    let server = TestServer::with(|config| {
        config.socket.max_connections = 2;
        config.socket.reserved_for_other_users = 0;
        config.socket.idle_timeout_s = 1;
    });
    let mut subscriber = server.client();
    subscriber.result("events.subscribe", json!({}));
    let mut leaked = server.client();
    leaked.result("system.info", json!({}));
    let asked = Instant::now();
    // Every slot is taken: a new client is refused while the leaked connection holds one.
    assert_eq!(server.client().read()["error"]["code"], 1008);

    // The leaked connection ends (end of input, nothing more) once idle for 1 s, not before.
    let mut rest = String::new();
    leaked.lines.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "");
    let idle_for = asked.elapsed();
    assert!(
        idle_for >= Duration::from_millis(900) && idle_for < PATIENCE,
        "closed after {idle_for:?}"
    );
    // Its slot is free again.
    wait_until("a slot freed by the idle connection", PATIENCE, || {
        server.answers()
    });
    // The subscriber, idle as long, still gets events and answers.
    server.event(CardEvent::ReaderAdded {
        reader: READER_A.into(),
    });
    assert_eq!(subscriber.read()["method"], "reader.added");
    assert_eq!(
        subscriber.result("readers.list", json!({}))[0]["name"],
        READER_A
    );
}

#[test]
fn a_stalled_subscriber_is_dropped_and_never_delays_other_clients() {
    let server = TestServer::with(|config| config.socket.queue_lines = 8);
    let mut stalled = server.client();
    stalled.result("events.subscribe", json!({}));
    let mut reader = server.client();
    let mut big = session(READER_A, 7);
    big.card.warnings = vec!["x".repeat(4096); 8];
    let mut slowest = Duration::ZERO;
    for round in 0..40 {
        for _ in 0..50 {
            server.event(CardEvent::CardReady {
                reader: READER_A.into(),
                card: Box::new(big.clone()),
            });
        }
        let started = Instant::now();
        assert_eq!(reader.result("card.read", json!({}))["reader"], READER_A);
        slowest = slowest.max(started.elapsed());
        if round % 10 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert!(
        slowest < Duration::from_millis(500),
        "slowest card.read {slowest:?}"
    );
    // The stalled client now reads: what was queued, then the final notice.
    let mut notifications = 0;
    let dropped = loop {
        let message = stalled.read();
        if message["method"] == "events.dropped" {
            break message;
        }
        notifications += 1;
    };
    assert!(
        notifications < 2000,
        "{notifications} notifications delivered"
    );
    assert!(dropped["params"]["reason"].is_string());
    // The connection itself stays usable, without the subscription.
    assert_eq!(stalled.result("card.read", json!({}))["reader"], READER_A);
    server.event(CardEvent::CardRemoved {
        reader: READER_A.into(),
    });
    assert_eq!(stalled.result("system.info", json!({}))["readers"], 2);
}

#[test]
fn a_client_vanishing_mid_request_changes_nothing() {
    let server = TestServer::start();
    server.publish(Snapshot {
        readers: vec![reader(READER_A, ReaderState::Empty)],
        ..Snapshot::default()
    });
    for _ in 0..10 {
        let mut client = server.client();
        client.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"card.read\",\"params\":{\"wait_ms\":60000}}\n");
        drop(client);
    }
    let mut vanishing = server.client();
    vanishing.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"card.refresh\",\"params\":{\"reader\":\"Reader A\"}}\n");
    drop(vanishing);
    // The vanished clients are noticed while their waits still run: their slots come free.
    let mut client = server.client();
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.result("system.info", json!({}))["connections"] != 1 {
        assert!(Instant::now() < deadline, "vanished clients still counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.publish(one_card());
    assert_eq!(client.result("card.read", json!({}))["session_id"], 1);
}

#[test]
fn shutdown_finishes_requests_in_progress_and_closes_connections() {
    let mut server = TestServer::start();
    server.publish(Snapshot {
        readers: vec![reader(READER_A, ReaderState::Empty)],
        ..Snapshot::default()
    });
    let mut waiting = server.client();
    waiting.send_raw(
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"card.read\",\"params\":{\"wait_ms\":200}}\n",
    );
    let mut idle = server.client();
    idle.result("system.info", json!({}));
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    server.shutdown();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(waiting.read()["error"]["code"], 1005);
    let mut rest = String::new();
    idle.lines.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "");
}

#[test]
fn allowed_groups_guard_mutating_methods_only() {
    // A group id the test process is not in.
    let server =
        TestServer::with(|config| config.access.allowed_groups = vec![outside_gid().to_string()]);
    let mut client = server.client();
    let error = client.error("card.refresh", json!({}));
    assert_eq!(error["code"], 1007);
    assert_eq!(
        error["data"]["message_zh"],
        "无权限：调用者不在允许的用户组中"
    );
    assert_eq!(verify(&mut client, GOOD_PIN)["error"]["code"], 1007);
    assert_eq!(client.result("card.read", json!({}))["reader"], READER_A);
    client.result("readers.list", json!({}));
    client.result("events.subscribe", json!({}));

    let own = TestServer::with(|config| {
        // SAFETY: getgid has no preconditions.
        config.access.allowed_groups = vec![unsafe { libc::getgid() }.to_string()]
    });
    assert!(own.client().result("card.refresh", json!({}))["session_id"].is_u64());
}

fn outside_gid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let groups: Vec<u32> = status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|g| g.parse().ok())
        .collect();
    // SAFETY: getgid has no preconditions.
    let own = unsafe { libc::getgid() };
    (54321..)
        .find(|g| *g != own && !groups.contains(g))
        .unwrap()
}

#[test]
fn the_loopback_tcp_listener_reads_but_cannot_mutate_under_an_allow_list() {
    let server = TestServer::with(|config| {
        config.socket.tcp = "127.0.0.1:0".into();
        config.access.allowed_groups = vec!["0".into()];
    });
    let mut client = RawClient::connect_tcp(server.tcp.unwrap());
    assert_eq!(client.result("card.read", json!({}))["reader"], READER_A);
    assert_eq!(verify(&mut client, GOOD_PIN)["error"]["code"], 1007);
    client.send_raw(b"not json\n");
    assert_eq!(client.read()["error"]["code"], -32700);
}

#[test]
fn reload_applies_new_settings_to_the_next_requests() {
    let server = TestServer::start();
    let mut client = server.client();
    assert_eq!(verify(&mut client, GOOD_PIN)["result"]["ok"], true);
    let path = server.dir.join("medcard.toml");
    std::fs::write(
        &path,
        format!(
            "[socket]\npath = {:?}\n[access]\nallowed_groups = [\"{}\"]\n",
            server.socket,
            outside_gid()
        ),
    )
    .unwrap();
    let config = Config::load(&path).unwrap().config;
    let findings = server.reloader.reload(config);
    assert!(findings.errors.is_empty(), "{findings:?}");
    assert_eq!(verify(&mut client, GOOD_PIN)["error"]["code"], 1007);
    assert_eq!(client.result("card.read", json!({}))["reader"], READER_A);

    // A bad file is refused and the old settings stay.
    let mut bad = Config::default();
    bad.socket.mode = "0666".into();
    assert!(!server.reloader.reload(bad).errors.is_empty());
    assert_eq!(verify(&mut client, GOOD_PIN)["error"]["code"], 1007);

    let mut open = Config::default();
    open.socket.path = server.socket.clone();
    server.reloader.reload(open);
    assert_eq!(verify(&mut client, GOOD_PIN)["result"]["ok"], true);
}

#[test]
fn the_socket_is_0660_and_a_stale_one_is_replaced() {
    let server = TestServer::start();
    let mode = std::fs::metadata(&server.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660);
    // A live socket is not taken over.
    let config = Config {
        socket: medcard::serve::config::SocketConfig {
            path: server.socket.clone(),
            ..Default::default()
        },
        ..Config::default()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let error = runtime
        .block_on(Listeners::bind(&config, None))
        .err()
        .unwrap();
    assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
    // A stale socket (nobody listening) is removed; a regular file is not.
    let stale = server.dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let listener = runtime
        .block_on(async { medcard::serve::server::bind_unix(&stale, 0o600, None).map(|_| ()) });
    assert!(listener.is_ok(), "{listener:?}");
    let file = server.dir.join("file.sock");
    std::fs::write(&file, "not a socket").unwrap();
    let refused = runtime.block_on(async { medcard::serve::server::bind_unix(&file, 0o600, None) });
    assert!(refused.is_err());
    assert!(file.exists());
}

#[test]
fn medcard_call_prints_results_and_errors() {
    let server = TestServer::start();
    let socket = server.socket.display().to_string();
    let output = medcard(&[
        "call",
        "--socket",
        &socket,
        "card.read",
        "{\"reader\": \"Reader A\"}",
    ]);
    assert!(output.status.success(), "{output:?}");
    let card: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(card["reader"], READER_A);
    let output = medcard(&[
        "call",
        "--socket",
        &socket,
        "card.read",
        "{\"reader\": \"nope\"}",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let error: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(error["error"]["code"], 1002);
    let output = medcard(&["call", "--socket", &socket, "card.read", "[1]"]);
    assert_eq!(output.status.code(), Some(2));
    let missing = server.dir.join("missing.sock").display().to_string();
    let output = medcard(&["call", "--socket", &missing, "system.info"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot connect"));
}

#[test]
fn medcard_events_tails_notifications() {
    let server = TestServer::start();
    let mut child = Command::new(common::medcard_bin())
        .args([
            "events",
            "--topics",
            "card.removed,card.inserted",
            "--socket",
        ])
        .arg(&server.socket)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    // Wait until the subscription is in place (the server counts two connections then).
    let mut probe = server.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    while probe.result("system.info", json!({}))["connections"] != 2 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    server.event(CardEvent::ReaderAdded {
        reader: READER_A.into(),
    });
    server.event(CardEvent::CardRemoved {
        reader: READER_A.into(),
    });
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    let message: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(message["method"], "card.removed");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn medcard_config_check_explains_and_validates() {
    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("systemd/medcard.toml");
    let output = medcard(&["config", "check", sample.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("socket.max_connections"), "{text}");
    assert!(text.contains(": OK"), "{text}");
    assert_eq!(
        Config::parse(&std::fs::read_to_string(&sample).unwrap()).unwrap(),
        Config::default(),
        "the sample shows every default"
    );

    let dir = TempDir::new("serve");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[socket]\nmode = \"0666\"\ntcp = \"0.0.0.0:7788\"\n").unwrap();
    let output = medcard(&["config", "check", bad.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("world-accessible"), "{text}");
    assert!(text.contains("loopback"), "{text}");
    std::fs::write(&bad, "[socket]\nmax_conections = 5\n").unwrap();
    let output = medcard(&["config", "check", bad.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1));
    assert!(text.contains("max_conections"), "{text}");
}

#[test]
fn medcard_serve_with_virtual_cards_answers_and_stops_on_sigterm() {
    let dir = TempDir::new("serve");
    let socket = dir.join("medcard.sock");
    let mut child = Command::new(common::medcard_bin())
        .args(["--log", "debug", "serve", "--config"])
        .arg(dir.join("absent.toml"))
        .arg("--socket")
        .arg(&socket)
        .arg("--virtual")
        .arg(common::fixture("xiaowang"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let card = loop {
        if let Ok(stream) = UnixStream::connect(&socket) {
            drop(stream);
            let mut client = RawClient::connect(&socket);
            let response = client.call("card.read", json!({"wait_ms": 5000}));
            if response.get("result").is_some() {
                break response["result"].clone();
            }
        }
        assert!(Instant::now() < deadline, "medcard serve did not answer");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(card["reader"], "medcard virtual reader 0");
    assert_eq!(card["profile"], "ssse-2.0");
    common::expected::check_card("xiaowang", &card);
    // SAFETY: signalling the child we started, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists(), "the socket is removed on exit");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("no configuration file; using defaults"),
        "{stderr}"
    );
    assert!(stderr.contains("5001**********0319"), "{stderr}");
    assert!(!stderr.contains("500103199103080319"), "{stderr}");
    assert!(
        !stderr.contains(card["holder"]["psn_name"].as_str().unwrap()),
        "{stderr}"
    );
}

/// `systemd-analyze verify` on the units, with ExecStart pointed at the binary just built
/// (verify insists that the command exists). Works without systemd as PID 1.
#[test]
fn systemd_units_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "systemd-analyze is missing: `make deps` must install the Debian package systemd"
        );
        eprintln!("systemd-analyze not installed; skipping the unit check");
        return;
    }
    let units = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let dir = TempDir::new("serve");
    let service = std::fs::read_to_string(units.join("medcard.service")).unwrap();
    let binary = common::medcard_bin().display().to_string();
    assert!(service.contains("ExecStart=/usr/bin/medcard serve"));
    std::fs::write(
        dir.join("medcard.service"),
        service.replace("/usr/bin/medcard", &binary),
    )
    .unwrap();
    std::fs::copy(units.join("medcard.socket"), dir.join("medcard.socket")).unwrap();
    // The scanners' drop-in, as systemd merges it: its [Service] after the unit's.
    let scanners = std::fs::read_to_string(units.join("scanners.conf")).unwrap();
    std::fs::write(
        dir.join("medcard-scanners.service"),
        format!(
            "{}\n{scanners}",
            service.replace("/usr/bin/medcard", &binary)
        ),
    )
    .unwrap();
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.join("medcard.service"))
        .arg(dir.join("medcard-scanners.service"))
        .arg(dir.join("medcard.socket"))
        .current_dir(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && !stderr.contains("medcard"),
        "systemd-analyze verify: {stderr}"
    );
}

/// `medcard serve` as systemd runs it: the listening socket passed as fd 3 (LISTEN_PID /
/// LISTEN_FDS), READY=1 and WATCHDOG=1 on $NOTIFY_SOCKET, SIGHUP reloading the file,
/// SIGTERM stopping with STOPPING=1 and leaving systemd's socket in place.
#[test]
fn medcard_serve_speaks_systemd_socket_activation_notify_and_reload() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let dir = TempDir::new("serve");
    let notify = std::os::unix::net::UnixDatagram::bind(dir.join("notify")).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let socket = dir.join("activated.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let fd = listener.as_raw_fd();
    let config = dir.join("medcard.toml");
    std::fs::write(&config, "# defaults\n").unwrap();
    let mut command = Command::new("sh");
    command
        .args([
            "-c",
            "export LISTEN_PID=$$ LISTEN_FDS=1; exec \"$0\" \"$@\"",
        ])
        .arg(common::medcard_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--socket")
        .arg(dir.join("not-used.sock"))
        .arg("--virtual")
        .arg(common::fixture("xiaowang"))
        .env("NOTIFY_SOCKET", dir.join("notify"))
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID");
    // SAFETY: dup2 and fcntl are async-signal-safe; `fd` is open in the parent.
    unsafe {
        command.pre_exec(move || {
            if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0);
            } else if libc::dup2(fd, 3) != 3 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let next_state = || {
        let mut buffer = [0u8; 256];
        let n = notify.recv(&mut buffer).unwrap();
        String::from_utf8_lossy(&buffer[..n]).trim_end().to_owned()
    };
    assert!(next_state().starts_with("READY=1"));
    assert_eq!(next_state(), "WATCHDOG=1");

    let mut client = RawClient::connect(&socket);
    let card = client.result("card.read", json!({"wait_ms": 5000}));
    assert_eq!(card["reader"], "medcard virtual reader 0");
    assert!(!dir.join("not-used.sock").exists());
    assert!(client.result("card.refresh", json!({}))["session_id"].is_u64());

    std::fs::write(
        &config,
        format!("[access]\nallowed_groups = [\"{}\"]\n", outside_gid()),
    )
    .unwrap();
    let pid = child.id() as i32;
    // SAFETY: signalling the child we started, by its pid.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let mut states = Vec::new();
    while !states.iter().any(|s: &String| s.starts_with("READY=1")) {
        states.push(next_state());
    }
    assert!(states.contains(&"RELOADING=1".to_owned()), "{states:?}");
    assert_eq!(client.error("card.refresh", json!({}))["code"], 1007);
    assert_eq!(client.result("card.read", json!({}))["session_id"], 2);

    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut states = Vec::new();
    while !states.contains(&"STOPPING=1".to_owned()) {
        states.push(next_state());
    }
    assert!(child.wait().unwrap().success());
    assert!(socket.exists(), "systemd's socket is left to systemd");
    drop(listener);
}
