//! The daemon's command-line clients — `medcard call METHOD [PARAMS]` (one request, the
//! response printed), `medcard events` (tail notifications) — and `medcard config check`.

use clap::{Args, Subcommand};
use medcard::serve::config::{Config, DEFAULT_PATH};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
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

/// Work with the configuration file.
#[derive(Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file and explain every key (exit 1 on errors).
    Check {
        /// The file (default /etc/medcard/medcard.toml).
        #[arg(default_value = DEFAULT_PATH)]
        file: PathBuf,
    },
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

/// Sends one request and returns the response with its id, skipping notifications.
pub fn call(
    socket: &std::path::Path,
    method: &str,
    params: Value,
    timeout: Duration,
) -> Result<Value, String> {
    let stream = connect(socket)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    send(&stream, &request)?;
    let mut lines = BufReader::new(&stream);
    loop {
        let response = read_message(&mut lines)?
            .ok_or_else(|| "the daemon closed the connection without answering".to_owned())?;
        if response.get("id").is_some() {
            return Ok(response);
        }
    }
}

pub fn run_events(args: EventsArgs) -> ExitCode {
    match tail_events(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => unreachable_daemon(&message),
    }
}

fn tail_events(args: &EventsArgs) -> Result<(), String> {
    let stream = connect(&args.target.socket)?;
    let params = match args.topics.is_empty() {
        true => json!({}),
        false => json!({"topics": args.topics}),
    };
    let request =
        json!({"jsonrpc": "2.0", "id": 1, "method": "events.subscribe", "params": params});
    send(&stream, &request)?;
    let mut lines = BufReader::new(&stream);
    let stdout = std::io::stdout();
    while let Some(message) = read_message(&mut lines)? {
        if let Some(error) = message.get("error") {
            return Err(format!("events.subscribe failed: {error}"));
        }
        let Some(method) = message.get("method") else {
            continue;
        };
        if method == "events.dropped" {
            // Too slow (or the monitor restarted): say so and subscribe again.
            eprintln!(
                "medcard events: subscription dropped ({}); resubscribing",
                message["params"]["reason"]
            );
            send(&stream, &request)?;
            continue;
        }
        let mut out = stdout.lock();
        writeln!(out, "{message}")
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn connect(socket: &std::path::Path) -> Result<UnixStream, String> {
    UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot connect to the daemon at {}: {e} (is `medcard serve` running? --socket \
             names another socket)",
            socket.display()
        )
    })
}

fn send(mut stream: &UnixStream, request: &Value) -> Result<(), String> {
    let line = format!("{request}\n");
    stream
        .write_all(line.as_bytes())
        .map_err(|e| format!("cannot send the request: {e}"))
}

/// The next JSON message, or `None` when the daemon closed the connection.
fn read_message(lines: &mut impl BufRead) -> Result<Option<Value>, String> {
    let mut line = String::new();
    let read = lines.read_line(&mut line).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            "no answer from the daemon in time".to_owned()
        }
        _ => format!("cannot read from the daemon: {e}"),
    })?;
    if read == 0 {
        return Ok(None);
    }
    serde_json::from_str(&line)
        .map(Some)
        .map_err(|e| format!("the daemon sent something that is not JSON: {e}"))
}

pub fn run_config(args: ConfigArgs) -> ExitCode {
    match args.command {
        ConfigCommand::Check { file } => check_config(&file),
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "medcard config check: {} does not exist (medcard serve would run with every \
                 default; see systemd/medcard.toml)",
                file.display()
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("medcard config check: cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let config = match Config::parse(&text) {
        Ok(config) => config,
        Err(message) => {
            println!("{}: error: {message}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let findings = config.check();
    println!("{}", config.explain());
    for warning in &findings.warnings {
        println!("{}: warning: {warning}", file.display());
    }
    for error in &findings.errors {
        println!("{}: error: {error}", file.display());
    }
    if findings.errors.is_empty() {
        println!("{}: OK", file.display());
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
