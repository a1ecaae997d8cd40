//! The daemon demo: `medcard serve` in-process on virtual readers, a script a newcomer can
//! watch (insert → `card.ready` → `card.read` over the socket → remove → `card.removed`; a
//! 3.0 card opened through the PSAM), then serving until Ctrl-C for their own calls.

use medcard::reader::ReaderBackend;
use medcard::reader::virtual_reader::SharedVirtualReaders;
use medcard::serve::config::Config;
use medcard::serve::server::{Listeners, Server};
use medcard::serve::{CardEvent, MonitorConfig, MonitorHandle, spawn_monitor};
use medcard::sim::Chip;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::broadcast;

const COUNTER_READER: &str = "Virtual counter reader";
const PSAM_READER: &str = "Virtual PSAM reader";
const PSAM: &str = "test-sm4";
/// How long the script waits for the monitor to read a card.
const READ_WAIT: Duration = Duration::from_secs(5);

pub fn run(once: bool, socket: Option<PathBuf>) -> Result<(), String> {
    let own_dir = socket.is_none();
    let socket = socket.unwrap_or_else(|| {
        std::env::temp_dir()
            .join(format!("medcard-demo-{}", std::process::id()))
            .join("medcard.sock")
    });
    let readers = SharedVirtualReaders::new();
    readers.add_reader(COUNTER_READER);
    let psam = super::super::load_psam(PSAM).map_err(|e| e.to_string())?;
    readers.insert(PSAM_READER, psam);
    let profiles = super::super::load_profiles(None).map_err(|e| e.to_string())?;
    let for_monitor = readers.clone();
    let (handle, monitor) = spawn_monitor(MonitorConfig::new(profiles), move || {
        Box::new(for_monitor.clone()) as Box<dyn ReaderBackend + Send>
    });
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let outcome = runtime.block_on(serve_and_play(handle, &readers, &socket, once));
    drop(monitor);
    let _ = std::fs::remove_file(&socket);
    if let Some(dir) = socket.parent().filter(|_| own_dir) {
        let _ = std::fs::remove_dir(dir);
    }
    outcome
}

async fn serve_and_play(
    handle: MonitorHandle,
    readers: &SharedVirtualReaders,
    socket: &Path,
    once: bool,
) -> Result<(), String> {
    let mut config = Config::default();
    config.socket.path = socket.to_path_buf();
    let listeners = Listeners::bind(&config, None)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
    let server = Server::new(config, handle.clone());
    let printer = tokio::spawn(print_events(handle.subscribe()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        server
            .run(listeners, async {
                let _ = stopped.await;
            })
            .await
    });
    introduce(socket);
    let played = play(&handle, readers, socket).await;
    if played.is_ok() && !once {
        println!(
            "\nServing until Ctrl-C, with 小王's card in \"{COUNTER_READER}\". Try the calls above."
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = stop.send(());
    let _ = serving.await;
    printer.abort();
    played
}

fn introduce(socket: &Path) {
    let socket = socket.display();
    println!("medcard demo: the daemon serves JSON-RPC 2.0 on {socket}");
    println!(
        "readers: \"{COUNTER_READER}\" (cards come and go) and \"{PSAM_READER}\" (test PSAM {PSAM})\n"
    );
    println!("Try, from another terminal:");
    println!("  medcard call --socket {socket} card.read");
    println!("  medcard call --socket {socket} readers.list");
    println!("  medcard events --socket {socket}");
    println!(
        "  echo '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"card.read\"}}' | socat - UNIX-CONNECT:{socket}"
    );
    println!("\nEvents as they happen:");
}

/// Insert, read over the socket, remove — for a 2.0 card and a 3.0 card; leaves 小王's in.
async fn play(
    handle: &MonitorHandle,
    readers: &SharedVirtualReaders,
    socket: &Path,
) -> Result<(), String> {
    const SCRIPT: [&str; 3] = ["xiaowang", "gen3", "xiaowang"];
    const LAST: usize = SCRIPT.len() - 1;
    for (index, name) in SCRIPT.into_iter().enumerate() {
        let card = super::super::load_card(name).map_err(|e| e.to_string())?;
        println!("\n▶ the patient inserts a card ({name})");
        readers.insert(COUNTER_READER, Chip::from(card));
        handle
            .wait_session(Some(COUNTER_READER), READ_WAIT)
            .await
            .map_err(|e| format!("the demo card was not read: {e}"))?;
        let reply = call(socket, "card.read", json!({"reader": COUNTER_READER})).await?;
        println!(
            "▶ the cashier's program calls card.read: {}",
            summary(&reply)
        );
        if index == LAST {
            break;
        }
        println!("▶ the patient takes the card back");
        readers.remove(COUNTER_READER);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

/// One request over the daemon's socket, as a client program would send it.
async fn call(socket: &Path, method: &str, params: Value) -> Result<Value, String> {
    let socket = socket.to_path_buf();
    let method = method.to_owned();
    tokio::task::spawn_blocking(move || {
        crate::cli::call::call(&socket, &method, params, Duration::from_secs(5))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The few fields a newcomer looks at.
fn summary(reply: &Value) -> String {
    let card = &reply["result"];
    if card.is_null() {
        return reply["error"].to_string();
    }
    format!(
        "{} {} (卡号 {}, {}), session {}",
        card["holder"]["psn_name"].as_str().unwrap_or("—"),
        card["holder"]["certno"]
            .as_str()
            .map(medcard::mask::certno)
            .unwrap_or_default(),
        card["card_no"].as_str().unwrap_or("—"),
        card["profile"].as_str().unwrap_or("—"),
        card["session_id"],
    )
}

async fn print_events(mut events: broadcast::Receiver<CardEvent>) {
    while let Ok(event) = events.recv().await {
        let detail = match &event {
            CardEvent::CardReady { card, .. } => format!(
                " {} {}",
                card.card
                    .holder
                    .psn_name
                    .as_deref()
                    .unwrap_or("(holder file needs a PSAM)"),
                card.card.card_no.as_deref().unwrap_or("")
            ),
            CardEvent::CardError { message, .. } => format!(" {message}"),
            _ => String::new(),
        };
        let reader = event.reader();
        println!("  event {:<15} {reader}{detail}", event.topic());
    }
}
