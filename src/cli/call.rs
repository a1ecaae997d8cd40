//! The daemon's command-line clients, on [`medcard::serve::client`]: `medcard call METHOD
//! [PARAMS]` (one request, the response printed) and `medcard events` (tail notifications).
//! Both check who serves the socket before sending anything (`--expect-uid`).

use clap::Args;
use medcard::serve::client::{Client, ClientError, DaemonUid};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
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
    /// The user the daemon runs as (a name or a uid). Nothing is sent to a socket served by
    /// another user. Default: root, yourself, or the owner of the socket's directory.
    #[arg(long, value_name = "USER", env = "MEDCARD_EXPECT_UID")]
    expect_uid: Option<String>,
}

impl Target {
    /// A connection to the daemon, once it is known to be served by the expected user.
    fn connect(&self) -> Result<Client, String> {
        let daemon = match self.expect_uid.as_deref().map(str::trim) {
            None | Some("") => DaemonUid::Usual,
            Some(user) => DaemonUid::Only(
                medcard::serve::peer::user_id(user)
                    .ok_or_else(|| format!("--expect-uid: no user {user:?} on this machine"))?,
            ),
        };
        Client::connect_expecting(&self.socket, daemon).map_err(|e| e.to_string())
    }
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
    match call(&args.target, &args.method, params, timeout) {
        Ok(response) => print_response(&response),
        Err(message) => unreachable_daemon(&message),
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
fn call(target: &Target, method: &str, params: Value, timeout: Duration) -> Result<Value, String> {
    let mut client = target.connect()?;
    let answered = client
        .set_timeout(Some(timeout))
        .and_then(|()| client.call_raw(method, params));
    answered.map_err(|e| e.to_string())
}

pub fn run_events(args: EventsArgs) -> ExitCode {
    let tailed = args
        .target
        .connect()
        .map(|client| tail_events(client, &args.topics));
    match tailed {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e @ ClientError::Rpc { .. })) => unreachable_daemon(&format!(
            "events.subscribe failed: {}",
            e.rpc_error().unwrap_or_default()
        )),
        Ok(Err(e)) => unreachable_daemon(&e.to_string()),
        Err(message) => unreachable_daemon(&message),
    }
}

fn tail_events(client: Client, topics: &[String]) -> Result<(), ClientError> {
    let mut events = client.subscribe(topics)?;
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
