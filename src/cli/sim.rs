//! `medcard sim`: serves a card file to the real pcscd through vsmartcard's vpcd driver, and
//! takes `insert` / `pull` / `swap PATH` / `quit` lines from stdin and an optional Unix socket.

use clap::Args;
use medcard::sim::CardImage;
use medcard::sim::vpcd::{Control, VpcdCard, VpcdEvent};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError};

/// `medcard sim --help`: what the command does, beyond its one-line summary.
const DETAILS: &str = "\
The card file (TOML, see fixtures/cards/README.md) becomes a card in one of the two readers of
vsmartcard's vpcd driver inside pcscd:
  port 35963  slot 0, reader \"Virtual PCD 00 00\"
  port 35964  slot 1, reader \"Virtual PCD 00 01\"
Connecting is inserting the card, closing the connection is pulling it. The simulator retries
every 100 ms until pcscd listens, and reconnects when pcscd restarts.

Control lines, one command per line, on stdin and on the --control socket:
  insert      put the card back into the reader
  pull        take the card out
  swap PATH   pull, load another card file, insert it
  quit        pull the card and exit
End of input on stdin does not quit (CI runs without stdin). SIGTERM and SIGINT pull the card
and exit 0.

Example: medcard sim --vpcd 35963 fixtures/cards/xiaowang.toml --control /tmp/sim0.sock
(then type `pull` on stdin, or write `pull` to /tmp/sim0.sock and read the `ok`).";

/// Exit status for a card file or control socket that cannot be used.
const EXIT_SETUP: u8 = 2;

/// Serve a virtual card from a fixture file to pcscd through vsmartcard's vpcd driver.
#[derive(Args, Debug)]
#[command(after_long_help = DETAILS)]
pub struct SimArgs {
    /// vpcd's port on 127.0.0.1, or HOST:PORT (35963 = slot 0, 35964 = slot 1).
    #[arg(long, value_name = "[HOST:]PORT")]
    pub vpcd: String,

    /// The card file to serve (TOML; fixtures/cards/*.toml).
    pub card: PathBuf,

    /// Also take control lines on this Unix socket; each command gets one reply line,
    /// `ok` or `error: …`.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
}

/// Runs `medcard sim`.
pub fn run(args: SimArgs) -> ExitCode {
    let image = match CardImage::load(&args.card) {
        Ok(image) => image,
        Err(e) => return setup_failure(&e),
    };
    let card = match VpcdCard::new(&args.vpcd, image) {
        Ok(card) => card,
        Err(e) => return setup_failure(&e),
    };
    let (sender, controls) = mpsc::channel();
    let controller = Controller {
        sender,
        current: Arc::new(Mutex::new(args.card.clone())),
    };
    let listener = match args.control.as_deref().map(bind_control).transpose() {
        Ok(listener) => listener,
        Err(message) => return setup_failure(&message),
    };
    if let Err(e) = watch_signals(controller.sender.clone()) {
        eprintln!("medcard sim: cannot handle SIGTERM/SIGINT: {e}");
        return ExitCode::FAILURE;
    }
    spawn_stdin(controller.clone());
    if let Some(listener) = listener {
        spawn_control_socket(listener, controller.clone());
    }
    let addr = card.addr();
    let current = Arc::clone(&controller.current);
    let card = card.on_event(move |event| {
        if *event == VpcdEvent::Inserted {
            let file = current.lock().unwrap_or_else(PoisonError::into_inner);
            eprintln!("card {} inserted into vpcd at {addr}", file.display());
        }
    });
    let result = card.run(controls);
    if let Some(path) = &args.control {
        let _ = std::fs::remove_file(path);
    }
    drop(controller);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("medcard sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn setup_failure(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("medcard sim: {error}");
    ExitCode::from(EXIT_SETUP)
}

/// Turns control lines into [`Control`]s for the card.
#[derive(Clone)]
struct Controller {
    sender: Sender<Control>,
    /// The card file being served, for the "inserted" line.
    current: Arc<Mutex<PathBuf>>,
}

impl Controller {
    /// Handles one line: `Ok` when the command was passed on (or the line was empty).
    fn handle(&self, line: &str) -> Result<(), String> {
        let Some((control, file)) = parse_line(line)? else {
            return Ok(());
        };
        if let Some(file) = file {
            *self.current.lock().unwrap_or_else(PoisonError::into_inner) = file;
        }
        self.sender
            .send(control)
            .map_err(|_| "the simulator has stopped".to_owned())
    }
}

/// A control line → the control and, for `swap`, the new card file. `None` for a blank line.
fn parse_line(line: &str) -> Result<Option<(Control, Option<PathBuf>)>, String> {
    let line = line.trim();
    let (word, rest) = line
        .split_once(char::is_whitespace)
        .map_or((line, ""), |(word, rest)| (word, rest.trim()));
    let control = match (word, rest) {
        ("", _) => return Ok(None),
        ("insert", "") => Control::Insert,
        ("pull", "") => Control::Pull,
        ("quit", "") => Control::Quit,
        ("swap", "") => return Err("swap needs a card file: swap PATH".into()),
        ("swap", path) => {
            let path = PathBuf::from(path);
            let image = CardImage::load(&path).map_err(|e| e.to_string())?;
            return Ok(Some((Control::Swap(image), Some(path))));
        }
        _ => {
            return Err(format!(
                "unknown command {line:?} (insert, pull, swap PATH, quit)"
            ));
        }
    };
    Ok(Some((control, None)))
}

/// SIGTERM / SIGINT: pull the card and quit.
fn watch_signals(sender: Sender<Control>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::spawn(move || {
        for _ in signals.forever() {
            if sender.send(Control::Quit).is_err() {
                break;
            }
        }
    });
    Ok(())
}

/// Control lines from stdin; errors go to stderr. End of input just ends this thread.
fn spawn_stdin(controller: Controller) {
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if let Err(e) = controller.handle(&line) {
                eprintln!("medcard sim: {e}");
            }
        }
    });
}

/// Binds the control socket, replacing a stale socket file (never any other file).
fn bind_control(path: &Path) -> Result<UnixListener, String> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path)
                .map_err(|e| format!("cannot replace control socket {}: {e}", path.display()))?;
        }
        Ok(_) => {
            return Err(format!(
                "control socket {} exists and is not a socket",
                path.display()
            ));
        }
        Err(_) => {}
    }
    UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on control socket {}: {e}", path.display()))
}

fn spawn_control_socket(listener: UnixListener, controller: Controller) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => {
                    let controller = controller.clone();
                    std::thread::spawn(move || serve_control(stream, &controller));
                }
                Err(e) => tracing::warn!(error = %e, "control socket accept failed"),
            }
        }
    });
}

/// One control client: a reply line (`ok` / `error: …`) for every command line.
fn serve_control(stream: UnixStream, controller: &Controller) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let reply = match controller.handle(&line) {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("error: {e}"),
        };
        if writeln!(writer, "{reply}").is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        format!("{}/fixtures/cards/{name}.toml", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn parses_control_lines() {
        assert!(matches!(
            parse_line("insert"),
            Ok(Some((Control::Insert, None)))
        ));
        assert!(matches!(
            parse_line("  pull \n"),
            Ok(Some((Control::Pull, None)))
        ));
        assert!(matches!(
            parse_line("quit"),
            Ok(Some((Control::Quit, None)))
        ));
        assert!(matches!(parse_line(""), Ok(None)));
        let swap = parse_line(&format!("swap {}", fixture("gen1"))).unwrap();
        assert!(
            matches!(swap, Some((Control::Swap(_), Some(path))) if path.ends_with("gen1.toml"))
        );
        assert!(parse_line("swap").unwrap_err().contains("swap PATH"));
        assert!(
            parse_line("swap /nonexistent.toml")
                .unwrap_err()
                .contains("/nonexistent.toml")
        );
        assert!(
            parse_line("pull now")
                .unwrap_err()
                .contains("unknown command")
        );
        assert!(parse_line("eject").unwrap_err().contains("unknown command"));
    }

    #[test]
    fn control_socket_replies_one_line_per_command() {
        let path =
            std::env::temp_dir().join(format!("medcard-sim-test-{}.sock", std::process::id()));
        let listener = bind_control(&path).unwrap();
        let (sender, controls) = mpsc::channel();
        let controller = Controller {
            sender,
            current: Arc::new(Mutex::new(PathBuf::from("a.toml"))),
        };
        spawn_control_socket(listener, controller.clone());
        let mut client = UnixStream::connect(&path).unwrap();
        writeln!(client, "pull\nbogus\nswap {}", fixture("resident")).unwrap();
        let mut lines = BufReader::new(client.try_clone().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ok");
        assert!(
            lines
                .next()
                .unwrap()
                .unwrap()
                .starts_with("error: unknown command")
        );
        assert_eq!(lines.next().unwrap().unwrap(), "ok");
        assert!(matches!(controls.recv().unwrap(), Control::Pull));
        assert!(matches!(controls.recv().unwrap(), Control::Swap(_)));
        assert!(
            controller
                .current
                .lock()
                .unwrap()
                .ends_with("resident.toml")
        );
        // A stale socket file is replaced; a regular file is not.
        drop(client);
        assert!(bind_control(&path).is_ok());
        let _ = std::fs::remove_file(&path);
        let plain =
            std::env::temp_dir().join(format!("medcard-sim-test-{}.txt", std::process::id()));
        std::fs::write(&plain, "x").unwrap();
        assert!(bind_control(&plain).unwrap_err().contains("not a socket"));
        let _ = std::fs::remove_file(&plain);
    }
}
