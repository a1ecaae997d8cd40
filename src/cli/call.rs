//! The daemon's command-line clients, on [`medcard::serve::client`]: `medcard call METHOD
//! [PARAMS]` (one request, the response printed) and `medcard events` (tail notifications).

use clap::Args;
use medcard::serve::client::{Client, ClientError};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Where the clients connect.
#[derive(Args)]
pub struct Target {
    /// The daemon's Unix socket.
    #[arg(
        long,
        value_name = "PATH",
        env = "MEDCARD_SOCKET",
        default_value = "/run/medcard/medcard.sock"
    )]
    socket: PathBuf,
}

/// Call one method of the daemon and print its result as JSON.
///
/// Exit status 0 with the result on standard output; 1 with the JSON-RPC error object on
/// standard output when the daemon answered an error; 2 when the daemon cannot be reached.
/// Example: medcard call card.read '{"wait_ms": 30000}'
#[derive(Args)]
pub struct CallArgs {
    /// The method: system.info, readers.list, sync.status, card.read, card.refresh,
    /// card.verify_pin, visit.register, visit.cancel, settle.preview, settle.commit,
    /// settle.refund, settle.status, settle.list, settle.receipt (docs/protocol.md).
    method: String,
    /// Its params, one JSON object (default {}).
    params: Option<String>,
    #[command(flatten)]
    target: Target,
    /// Give up after this many seconds without an answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    timeout: f64,
}

/// Subscribe to the daemon's notifications and print each as one JSON line.
///
/// Runs until the daemon closes the connection (or is interrupted). When the daemon drops
/// the subscription (the reader of the output was too slow), a note goes to standard error
/// and the subscription is renewed; events in between are lost.
#[derive(Args)]
pub struct EventsArgs {
    /// Only these topics (card.inserted, card.ready, card.removed, card.error,
    /// reader.added, reader.removed); default all.
    #[arg(long, value_delimiter = ',', value_name = "TOPIC,...")]
    topics: Vec<String>,
    #[command(flatten)]
    target: Target,
}

pub fn run_call(args: CallArgs) -> ExitCode {
    let params = match args.params.as_deref().map(serde_json::from_str::<Value>) {
        None => json!({}),
        Some(Ok(params @ Value::Object(_))) => params,
        Some(_) => return unreachable_daemon("PARAMS must be one JSON object"),
    };
    let timeout = Duration::from_secs_f64(args.timeout.max(0.001));
    match call(&args.target.socket, &args.method, params, timeout) {
        Ok(response) => print_response(&response),
        Err(e) => unreachable_daemon(&e.to_string()),
    }
}

fn unreachable_daemon(message: &str) -> ExitCode {
    eprintln!("medcard: {message}");
    ExitCode::from(2)
}

fn print_response(response: &Value) -> ExitCode {
    let (body, status) = match response.get("error") {
        Some(error) => (json!({"error": error}), ExitCode::from(1)),
        None => (
            response.get("result").cloned().unwrap_or(Value::Null),
            ExitCode::SUCCESS,
        ),
    };
    match serde_json::to_string_pretty(&body) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("medcard: cannot format the response: {e}"),
    }
    status
}

/// Sends one request and returns the whole response (`result` or `error`).
fn call(
    socket: &Path,
    method: &str,
    params: Value,
    timeout: Duration,
) -> Result<Value, ClientError> {
    let mut client = Client::connect(socket)?;
    client.set_timeout(Some(timeout))?;
    client.call_raw(method, params)
}

pub fn run_events(args: EventsArgs) -> ExitCode {
    match tail_events(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ ClientError::Rpc { .. }) => unreachable_daemon(&format!(
            "events.subscribe failed: {}",
            e.rpc_error().unwrap_or_default()
        )),
        Err(e) => unreachable_daemon(&e.to_string()),
    }
}

fn tail_events(args: &EventsArgs) -> Result<(), ClientError> {
    let mut events = Client::connect(&args.target.socket)?.subscribe(&args.topics)?;
    let stdout = std::io::stdout();
    while let Some(message) = events.next().transpose()? {
        if message["method"] == "events.dropped" {
            // Too slow (or the monitor restarted): say so and subscribe again.
            eprintln!(
                "medcard events: subscription dropped ({}); resubscribing",
                message["params"]["reason"]
            );
            events.renew()?;
            continue;
        }
        let mut out = stdout.lock();
        writeln!(out, "{message}").and_then(|()| out.flush())?;
    }
    Ok(())
}
