//! The daemon demo: a whole counter in-process ([`super::counter`]: the insurer simulator,
//! the cache and journal, `medcard serve` on virtual readers) and a script a newcomer can
//! watch, every JSON-RPC request printed with a short answer: 小王's card inserted →
//! `card.ready` with its verdict → `visit.register` → `settle.preview` (the split) →
//! `settle.commit` → `settle.receipt` → the same commit retried (the same `setl_id`: once)
//! → the card removed; then a 3.0 card opened through the PSAM. Then, unless `--once`, it
//! serves until Ctrl-C for the newcomer's own calls.

use super::counter::{Counter, CounterSetup, WebEndpoint};
use medcard::mask;
use medcard::reader::scanner::Terminator;
use medcard::serve::CardEvent;
use medcard::serve::client::Client;
use medcard::sim::card::Chip;
use medcard::sim::card::SharedVirtualReaders;
use medcard::sim::scanner::VirtualScanner;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::broadcast;

const COUNTER_READER: &str = "Virtual counter reader";
const PSAM_READER: &str = "Virtual PSAM reader";
const PSAM: &str = "test-sm4";
/// How long the script waits for the monitor to read (and judge) a card.
const READ_WAIT: Duration = Duration::from_secs(5);
/// 阿莫西林胶囊, 甲类 (fully in scope) in the simulator's catalogue.
const CLASS_A_ITEM: &str = "XJ01CAA040A001010100001";
/// The cashier's program's id for the commit (a retry sends the same one).
const REQUEST_ID: &str = "demo-counter1-0001";
/// The bill the HIS offers at the kiosk (its id is the settlement's request_id).
const KIOSK_BILL: &str = "demo-his-bill-0001";
/// 小王's ID number (fixtures/insurer/persons.toml), for registrations without the card.
const XIAOWANG_CERTNO: &str = "500103199103080319";
/// The cashier program's request_id for the visit paid by QR code.
const QR_REQUEST_ID: &str = "demo-counter1-0002";

pub fn run(once: bool, socket: Option<PathBuf>) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("medcard-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let socket = socket.unwrap_or_else(|| dir.join("medcard.sock"));
    let outcome = tokio::runtime::Runtime::new()
        .map_err(|e| e.to_string())
        .and_then(|runtime| runtime.block_on(demo(&dir, &socket, once)));
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

async fn demo(dir: &Path, socket: &Path, once: bool) -> Result<(), String> {
    let readers = SharedVirtualReaders::new();
    readers.add_reader(COUNTER_READER);
    let psam = super::super::load_psam(PSAM).map_err(|e| e.to_string())?;
    readers.insert(PSAM_READER, psam);
    let scanner = VirtualScanner::plug(&dir.join("scanner"), Terminator::Cr)
        .map_err(|e| format!("the virtual scanner: {e}"))?;
    let counter = Counter::start(CounterSetup {
        dir,
        socket,
        readers: readers.clone(),
        links: 4,
        web: true,
        scanner: Some(scanner.device()),
    })
    .await?;
    let printer = tokio::spawn(print_events(counter.handle.subscribe()));
    introduce(&counter, scanner.device());
    let played = play(&counter, &readers, &scanner).await;
    if played.is_ok() && !once {
        serve_until_interrupted(socket).await;
    }
    printer.abort();
    counter.stop().await;
    played
}

fn introduce(counter: &Counter, scanner: &Path) {
    println!(
        "medcard demo: a whole counter in this process, nothing to set up.\n\
         \x20 daemon    JSON-RPC 2.0 on {}\n\
         \x20 insurer   the built-in simulator at {}\n\
         \x20 cache     {} (the settlement journal, synchronous=FULL)\n\
         \x20 readers   \"{COUNTER_READER}\" (cards come and go), \"{PSAM_READER}\" (test PSAM {PSAM})\n\
         \x20 scanner   a virtual serial QR scanner (a pty) at {}",
        counter.socket.display(),
        counter.insurer_url,
        counter.cache_path.display(),
        scanner.display(),
    );
    println!("\nEvents (the cashier's program gets them with events.subscribe) as they happen.");
}

/// The script: the settlement story on 小王's card, at the counter and the kiosk, then his
/// visit with only his phone's QR code, then a 3.0 card through the PSAM.
async fn play(
    counter: &Counter,
    readers: &SharedVirtualReaders,
    scanner: &VirtualScanner,
) -> Result<(), String> {
    println!("\n▶ the daemon syncs the insurer's card-status feed and catalogue into the cache");
    counter.wait_synced().await?;
    let mut client = counter.client()?;
    insert_and_read(counter, readers, &mut client, "xiaowang").await?;
    settle(&mut client)?;
    if let Some(web) = &counter.web {
        kiosk_visit(web)?;
    }
    println!("\n▶ 小王 takes the card back");
    readers.remove(COUNTER_READER);
    tokio::time::sleep(Duration::from_millis(300)).await;
    qr_visit(counter, scanner, &mut client).await?;
    insert_and_read(counter, readers, &mut client, "gen3").await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}

/// Inserts a card, waits for its session (read and judged), shows `card.read`.
async fn insert_and_read(
    counter: &Counter,
    readers: &SharedVirtualReaders,
    client: &mut Client,
    name: &str,
) -> Result<(), String> {
    let card = super::super::load_card(name).map_err(|e| e.to_string())?;
    println!(
        "\n▶ the patient inserts a card ({name}: {})",
        card.description
    );
    readers.insert(COUNTER_READER, Chip::from(card));
    counter
        .handle
        .wait_session(Some(COUNTER_READER), READ_WAIT)
        .await
        .map_err(|e| format!("the demo card was not read: {e}"))?;
    step(
        client,
        "the cashier's program reads the card",
        "card.read",
        json!({"reader": COUNTER_READER}),
        card_summary,
    )
    .map(drop)
}

/// Register, preview, commit, receipt, and the commit retried: the counter's main job.
fn settle(client: &mut Client) -> Result<(), String> {
    let visit = step(
        client,
        "the cashier registers the visit",
        "visit.register",
        json!({"dept_code": "A03", "dept_name": "内科", "dr_name": "张医生"}),
        |v| format!("visit registered, mdtrt_id {}", plain(&v["mdtrt_id"])),
    )?;
    let items =
        json!([{"code": CLASS_A_ITEM, "name": "阿莫西林胶囊", "qty": "1", "price": "120.00"}]);
    let preview = step(
        client,
        "the doctor's prescription is priced: who pays what",
        "settle.preview",
        json!({"mdtrt_id": visit["mdtrt_id"], "items": items}),
        split_summary,
    )?;
    let commit = json!({"preview_id": preview["preview_id"], "request_id": REQUEST_ID});
    let done = step(
        client,
        "the patient agrees; the cashier settles",
        "settle.commit",
        commit.clone(),
        |d| {
            format!(
                "{} — setl_id {}, the patient pays {} in cash",
                plain(&d["state"]),
                plain(&d["setl_id"]),
                plain(&d["setlinfo"]["psn_cash_pay"])
            )
        },
    )?;
    let receipt = step(
        client,
        "the receipt",
        "settle.receipt",
        json!({"request_id": REQUEST_ID}),
        |_| "the text below".to_owned(),
    )?;
    for line in receipt["text"].as_str().unwrap_or_default().lines() {
        println!("    │ {line}");
    }
    retry(client, commit, &done["setl_id"])
}

/// The self-service kiosk (a browser page on the web endpoint, here its calls): 小王
/// registers himself, the HIS puts the doctor's bill up for him, he pays it at the kiosk.
fn kiosk_visit(web: &WebEndpoint) -> Result<(), String> {
    println!(
        "\n▶ 小王 walks to the self-service kiosk: the page at {} (open it in Chromium to \
         watch; docs/kiosk.md), over the WebSocket with the kiosk's token",
        web.kiosk_url()
    );
    let connect =
        |token: &str| Client::connect_web(web.addr, None, Some(token)).map_err(|e| e.to_string());
    let (mut kiosk, mut his) = (connect(&web.kiosk_token)?, connect(&web.client_token)?);
    let card = kiosk
        .call("card.read", json!({}))
        .map_err(|e| e.to_string())?;
    let visit = step(
        &mut kiosk,
        "at the kiosk, 小王 registers himself (a self-service terminal's 2201)",
        "visit.register",
        json!({"card_session": card["session_id"], "dept_code": "A04", "dept_name": "外科", "dr_name": "门诊医生"}),
        |v| format!("visit registered, 门诊号 {}", plain(&v["ipt_otp_no"])),
    )?;
    let items =
        json!([{"code": CLASS_A_ITEM, "name": "阿莫西林胶囊", "qty": "2", "price": "15.00"}]);
    step(
        &mut his,
        "the doctor prescribes; the HIS puts the bill up for the kiosk",
        "bill.offer",
        json!({"bill_id": KIOSK_BILL, "certno": card["holder"]["certno"], "mdtrt_id": visit["mdtrt_id"], "dept_name": "外科", "items": items}),
        |b| {
            format!(
                "bill {} offered, {}",
                plain(&b["bill_id"]),
                plain(&b["total"])
            )
        },
    )?;
    step(
        &mut kiosk,
        "the kiosk lists 小王's bills",
        "bill.list",
        json!({}),
        |b| {
            format!(
                "{} bill(s) to pay",
                b["bills"].as_array().map_or(0, Vec::len)
            )
        },
    )?;
    let preview = step(
        &mut kiosk,
        "he chooses it: who pays what",
        "bill.preview",
        json!({"bill_id": KIOSK_BILL}),
        split_summary,
    )?;
    let commit = json!({"preview_id": preview["preview_id"], "request_id": KIOSK_BILL});
    step(
        &mut kiosk,
        "he presses 确认支付 (the request_id is the bill's: pressing twice pays once)",
        "settle.commit",
        commit,
        |d| format!("{} — setl_id {}", plain(&d["state"]), plain(&d["setl_id"])),
    )?;
    Ok(())
}

/// 小王 without his card: the 医保电子凭证 QR code on his phone, read by the counter's serial
/// scanner (here the virtual one, a pty), presented, registered and settled as a card is.
async fn qr_visit(
    counter: &Counter,
    scanner: &VirtualScanner,
    client: &mut Client,
) -> Result<(), String> {
    println!(
        "\n▶ another day 小王 comes without the card: his phone shows the 医保电子凭证 QR code, \
         and the counter's serial scanner reads it"
    );
    let code = counter.issue_ec_code(XIAOWANG_CERTNO)?;
    let mut events = counter.handle.subscribe();
    scanner
        .scan(&code)
        .map_err(|e| format!("the virtual scanner: {e}"))?;
    let scanned = tokio::time::timeout(READ_WAIT, scanned_code(&mut events))
        .await
        .map_err(|_| "the daemon did not read the scanned code".to_owned())??;
    let presented = step(
        client,
        "the cashier's program presents the scanned code (decoded once, then 1101 by its token)",
        "credential.present",
        json!({"qr_code": scanned}),
        |p| {
            format!(
                "credential session {} — {} {}, verdict {}",
                plain(&p["credential_session"]),
                plain(&p["holder"]["psn_name"]),
                mask::certno(p["holder"]["certno"].as_str().unwrap_or_default()),
                plain(&p["verdict"]["code"])
            )
        },
    )?;
    let visit = step(
        client,
        "the cashier registers the visit by that credential (mdtrt_cert_type 01)",
        "visit.register",
        json!({"credential_session": presented["credential_session"], "dept_code": "A03",
            "dept_name": "内科", "dr_name": "张医生"}),
        |v| format!("visit registered, mdtrt_id {}", plain(&v["mdtrt_id"])),
    )?;
    let items =
        json!([{"code": CLASS_A_ITEM, "name": "阿莫西林胶囊", "qty": "1", "price": "36.00"}]);
    let preview = step(
        client,
        "the prescription is priced",
        "settle.preview",
        json!({"mdtrt_id": visit["mdtrt_id"], "items": items}),
        split_summary,
    )?;
    step(
        client,
        "the cashier settles",
        "settle.commit",
        json!({"preview_id": preview["preview_id"], "request_id": QR_REQUEST_ID}),
        |d| format!("{} — setl_id {}", plain(&d["state"]), plain(&d["setl_id"])),
    )?;
    let receipt = client
        .call("settle.receipt", json!({"request_id": QR_REQUEST_ID}))
        .map_err(|e| e.to_string())?;
    let text = receipt["text"].as_str().unwrap_or_default();
    if let Some(line) = text.lines().find(|line| line.contains("mdtrt_cert_type")) {
        println!("  the receipt names the credential, never its token: {line}");
    }
    Ok(())
}

/// The code of the next `credential.scanned` event.
async fn scanned_code(events: &mut broadcast::Receiver<CardEvent>) -> Result<String, String> {
    loop {
        match events.recv().await {
            Ok(CardEvent::CredentialScanned {
                code: Some(code), ..
            }) => return Ok(code),
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => {
                return Err("the daemon stopped".to_owned());
            }
        }
    }
}

/// The cashier's program times out and sends the same commit again: nothing is charged twice.
fn retry(client: &mut Client, commit: Value, setl_id: &Value) -> Result<(), String> {
    let again = step(
        client,
        "the cashier's program timed out and retries the same request_id",
        "settle.commit",
        commit,
        |d| format!("{} — setl_id {}", plain(&d["state"]), plain(&d["setl_id"])),
    )?;
    if &again["setl_id"] != setl_id {
        return Err(format!(
            "the retry settled again: {} after {}",
            plain(&again["setl_id"]),
            plain(setl_id)
        ));
    }
    println!("  the same setl_id: the insurer settled once (exactly once per request_id)");
    Ok(())
}

/// One request, shown as sent, and a short line of its answer.
fn step(
    client: &mut Client,
    what: &str,
    method: &str,
    params: Value,
    summary: impl FnOnce(&Value) -> String,
) -> Result<Value, String> {
    println!("\n▶ {what}");
    println!("  → {}", client.request(method, &params));
    let result = client.call(method, params).map_err(|e| e.to_string())?;
    println!("  ← {}", summary(&result));
    Ok(result)
}

/// The few fields of a `card.read` a newcomer looks at.
fn card_summary(card: &Value) -> String {
    let verdict = &card["verdict"];
    format!(
        "{} {} (卡号 {}, {}), session {}; verdict {} (may_settle {}, from the {})",
        card["holder"]["psn_name"].as_str().unwrap_or("—"),
        card["holder"]["certno"]
            .as_str()
            .map(medcard::mask::certno)
            .unwrap_or_default(),
        card["card_no"].as_str().unwrap_or("—"),
        card["profile"].as_str().unwrap_or("—"),
        card["session_id"],
        verdict["code"].as_str().unwrap_or("—"),
        verdict["may_settle"].as_str().unwrap_or("—"),
        verdict["source"].as_str().unwrap_or("—"),
    )
}

/// The split of a `settle.preview`: the insurer's 2206 when it answered, else medcard's own.
fn split_summary(preview: &Value) -> String {
    let source = preview["source"].as_str().unwrap_or("local");
    let split = &preview[if source == "insurer" {
        "insurer"
    } else {
        "local"
    }];
    let differences = preview["differences"].as_array().map_or(0, Vec::len);
    format!(
        "total {}: account {}, cash {}, fund {} (from the {source}; {differences} difference(s) from medcard's own split)",
        plain(&split["medfee_sumamt"]),
        plain(&split["acct_pay"]),
        plain(&split["psn_cash_pay"]),
        plain(&split["hifp_pay"]),
    )
}

/// A string as it is, anything else as JSON.
fn plain(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

async fn serve_until_interrupted(socket: &Path) {
    let socket = socket.display();
    println!("\nServing until Ctrl-C (黄嘉怡's 3.0 card stays in \"{COUNTER_READER}\"). Try:");
    println!("  medcard call --socket {socket} settle.list");
    println!(
        "  medcard call --socket {socket} settle.receipt '{{\"request_id\":\"{REQUEST_ID}\"}}'"
    );
    println!("  medcard call --socket {socket} card.read");
    println!(
        "  medcard call --socket {socket} visit.register '{{\"certno\":\"{XIAOWANG_CERTNO}\",\"dept_code\":\"A03\",\"dept_name\":\"内科\",\"dr_name\":\"张医生\"}}'"
    );
    println!("  medcard events --socket {socket}");
    println!(
        "  echo '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"settle.list\"}}' | socat - UNIX-CONNECT:{socket}"
    );
    let _ = tokio::signal::ctrl_c().await;
}

async fn print_events(mut events: broadcast::Receiver<CardEvent>) {
    while let Ok(event) = events.recv().await {
        let detail = match &event {
            CardEvent::CardReady { card, .. } => format!(
                " {} {} verdict {}",
                card.card
                    .holder
                    .psn_name
                    .as_deref()
                    .unwrap_or("(holder file needs a PSAM)"),
                card.card.card_no.as_deref().unwrap_or(""),
                verdict_code(card.verdict.as_ref()),
            ),
            CardEvent::CardError { message, .. } => format!(" {message}"),
            _ => String::new(),
        };
        let reader = event.reader();
        println!("  event {:<15} {reader}{detail}", event.topic());
    }
}

fn verdict_code<T: serde::Serialize>(verdict: Option<&T>) -> String {
    let value = serde_json::to_value(verdict).unwrap_or_default();
    format!(
        "{} (may_settle {})",
        value["code"].as_str().unwrap_or("none"),
        value["may_settle"].as_str().unwrap_or("—")
    )
}
