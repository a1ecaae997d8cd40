//! `medcard sim`: serves a card file or a PSAM file (told apart by content) to the real pcscd
//! through vsmartcard's vpcd driver, and takes `insert` / `pull` / `swap PATH` / `quit` lines
//! from stdin and an optional Unix socket. With `--scanner LINK` it is the virtual serial
//! scanner instead ([`super::sim_scanner`]).

use super::load_chip;
use clap::Args;
use medcard::sim::card::vpcd::{Control, VpcdCard, VpcdEvent};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// `medcard sim --help`: what the command does, beyond its one-line summary.
const DETAILS: &str = "\
The card file (TOML, see fixtures/cards/README.md) or PSAM file (fixtures/psam/README.md; a file
with terminal_no or [[keys]] is a PSAM) becomes a card in one of the two readers of vsmartcard's
vpcd driver inside pcscd:
  port 35963  slot 0, reader \"Virtual PCD 00 00\"
  port 35964  slot 1, reader \"Virtual PCD 00 01\"
Connecting is inserting the card, closing the connection is pulling it. The simulator retries
every 100 ms until pcscd listens, and reconnects when pcscd restarts.

Control lines, one command per line, on stdin and on the --control socket:
  insert      put the card back into the reader
  pull        take the card out
  swap PATH   pull, load another card or PSAM file, insert it (the socket's `ok` comes once
              the new one is in the reader, or after 5 s if vpcd is not listening)
  quit        pull the card and exit
End of input on stdin does not quit (CI runs without stdin). SIGTERM and SIGINT pull the card
and exit 0.

A name that is not a file may be a built-in fixture: xiaowang, gen3, … or test-sm4, wrong-key, ….

With --scanner LINK (instead of --vpcd and a card): the virtual serial scanner. A pty pair is
opened and LINK made a symlink to its slave: configure LINK as a [[scanners.serial]] device.
Each line typed on stdin is sent as a scanned code with the terminator (--terminator cr, lf
or crlf); `:unplug` takes the scanner away, `:replug` plugs a new one in behind LINK, `:quit`
(or end of input) exits.

Example: medcard sim --vpcd 35963 fixtures/cards/gen3.toml --control /tmp/sim0.sock
(then type `pull` on stdin, or write `pull` to /tmp/sim0.sock and read the `ok`), and the
PSAM beside it: medcard sim --vpcd 35964 fixtures/psam/test-sm4.toml";

/// How long a `swap` waits for the new chip to be in the reader before replying anyway.
const SWAP_WAIT: Duration = Duration::from_secs(5);

/// Exit status for a card file or control socket that cannot be used.
const EXIT_SETUP: u8 = 2;

/// Serve a virtual card or PSAM from a fixture file to pcscd through vsmartcard's vpcd driver.
#[derive(Args, Debug)]
#[command(after_long_help = DETAILS)]
pub struct SimArgs {
    /// vpcd's port on 127.0.0.1, or HOST:PORT (35963 = slot 0, 35964 = slot 1).
    #[arg(long, value_name = "[HOST:]PORT", required_unless_present = "scanner")]
    pub vpcd: Option<String>,

    /// The card or PSAM file to serve (TOML; fixtures/cards/*.toml, fixtures/psam/*.toml),
    /// or the name of a built-in one.
    #[arg(required_unless_present = "scanner")]
    pub card: Option<PathBuf>,

    /// Be the virtual serial scanner instead: a pty behind this symlink (see below).
    #[arg(long, value_name = "LINK", conflicts_with_all = ["vpcd", "card", "control"])]
    pub scanner: Option<PathBuf>,

    /// The virtual scanner's line terminator: cr, lf or crlf.
    #[arg(long, value_name = "cr|lf|crlf", default_value = "cr", value_parser = super::sim_scanner::terminator)]
    pub terminator: medcard::reader::scanner::Terminator,

    /// Also take control lines on this Unix socket; each command gets one reply line,
    /// `ok` or `error: …`.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
}

/// Runs `medcard sim`.
pub fn run(args: SimArgs) -> ExitCode {
    if let Some(link) = &args.scanner {
        return super::sim_scanner::run(link, args.terminator);
    }
    let (Some(vpcd), Some(card_file)) = (&args.vpcd, &args.card) else {
        return setup_failure(&"--vpcd and a card file are needed (or --scanner)");
    };
    let chip = match load_chip(card_file) {
        Ok(chip) => chip,
        Err(e) => return setup_failure(&e),
    };
    let kind = chip.kind();
    let card = match VpcdCard::new(vpcd, chip) {
        Ok(card) => card,
        Err(e) => return setup_failure(&e),
    };
    let (sender, controls) = mpsc::channel();
    let controller = Controller {
        sender,
        current: Arc::new(Mutex::new((card_file.clone(), kind))),
        insertions: Arc::default(),
        swap_wait: SWAP_WAIT,
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
    let insertions = Arc::clone(&controller.insertions);
    let card = card.on_event(move |event| {
        if *event == VpcdEvent::Inserted {
            let current = current.lock().unwrap_or_else(PoisonError::into_inner);
            let (file, kind) = &*current;
            eprintln!("{kind} {} inserted into vpcd at {addr}", file.display());
            insertions.record();
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
    /// The file being served and its kind ("card", "PSAM"), for the "inserted" line.
    current: Arc<Mutex<(PathBuf, &'static str)>>,
    /// Insertions into vpcd so far, so that `swap` can wait for the new chip.
    insertions: Arc<Insertions>,
    swap_wait: Duration,
}

impl Controller {
    /// Handles one line: `Ok` when the command was passed on (or the line was empty). A
    /// `swap` returns once the new chip is in the reader (at most `swap_wait`), so a control
    /// client that gets the reply knows pcscd will see the new chip, not the old one.
    fn handle(&self, line: &str) -> Result<(), String> {
        let Some((control, file)) = parse_line(line)? else {
            return Ok(());
        };
        let swapping = matches!(control, Control::Swap(_));
        if let (Some(file), Control::Swap(chip)) = (file, &control) {
            *self.current.lock().unwrap_or_else(PoisonError::into_inner) = (file, chip.kind());
        }
        let before = self.insertions.seen();
        self.sender
            .send(control)
            .map_err(|_| "the simulator has stopped".to_owned())?;
        if swapping {
            self.insertions.wait_past(before, self.swap_wait);
        }
        Ok(())
    }
}

/// A counter of insertions that threads can wait on.
#[derive(Default)]
struct Insertions {
    count: Mutex<u64>,
    changed: Condvar,
}

impl Insertions {
    fn record(&self) {
        *self.count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.changed.notify_all();
    }

    fn seen(&self) -> u64 {
        *self.count.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until more than `before` insertions were counted, or `timeout` passed.
    fn wait_past(&self, before: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut count = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        while *count <= before {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            count = self
                .changed
                .wait_timeout(count, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// A control line → the control and, for `swap`, the new card or PSAM file. `None` for a blank
/// line.
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
        ("swap", "") => return Err("swap needs a card or PSAM file: swap PATH".into()),
        ("swap", path) => {
            let path = PathBuf::from(path);
            let chip = load_chip(&path).map_err(|e| e.to_string())?;
            return Ok(Some((Control::Swap(chip), Some(path))));
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
    use medcard::sim::card::Chip;

    fn fixture(name: &str) -> String {
        format!("{}/fixtures/cards/{name}.toml", env!("CARGO_MANIFEST_DIR"))
    }

    fn psam_fixture(name: &str) -> String {
        format!("{}/fixtures/psam/{name}.toml", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn loads_cards_psams_and_built_in_names() {
        let load = |s: &str| load_chip(Path::new(s));
        assert!(matches!(load(&fixture("gen3")), Ok(Chip::Card(_))));
        assert!(matches!(
            load(&psam_fixture("wrong-key")),
            Ok(Chip::Psam(_))
        ));
        assert!(matches!(load("xiaowang"), Ok(Chip::Card(_))));
        assert!(matches!(load("test-sm4"), Ok(Chip::Psam(_))));
        let e = load("no-such-card").unwrap_err().to_string();
        assert!(e.contains("no-such-card"), "{e}");
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
            current: Arc::new(Mutex::new((PathBuf::from("a.toml"), "card"))),
            insertions: Arc::default(),
            swap_wait: Duration::ZERO,
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
                .0
                .ends_with("resident.toml")
        );
        writeln!(client, "swap {}", psam_fixture("test-sm4")).unwrap();
        assert_eq!(lines.next().unwrap().unwrap(), "ok");
        assert!(matches!(
            controls.recv().unwrap(),
            Control::Swap(Chip::Psam(_))
        ));
        assert_eq!(controller.current.lock().unwrap().1, "PSAM");
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

    #[test]
    fn swap_waits_for_the_new_chip_to_be_inserted() {
        let (sender, controls) = mpsc::channel();
        let controller = Controller {
            sender,
            current: Arc::new(Mutex::new((PathBuf::from("a.toml"), "card"))),
            insertions: Arc::default(),
            swap_wait: Duration::from_secs(5),
        };
        let insertions = Arc::clone(&controller.insertions);
        // The "card thread": takes the swap, inserts the new chip 200 ms later.
        let card = std::thread::spawn(move || {
            let control = controls.recv().unwrap();
            std::thread::sleep(Duration::from_millis(200));
            insertions.record();
            control
        });
        let started = Instant::now();
        controller
            .handle(&format!("swap {}", fixture("gen1")))
            .unwrap();
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        assert!(waited < Duration::from_secs(4), "{waited:?}");
        assert!(matches!(card.join().unwrap(), Control::Swap(_)));
        // Nobody inserts: the reply comes after the wait anyway.
        let (sender, _controls) = mpsc::channel();
        let lonely = Controller {
            swap_wait: Duration::from_millis(50),
            sender,
            ..controller
        };
        let started = Instant::now();
        lonely.handle(&format!("swap {}", fixture("gen1"))).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
