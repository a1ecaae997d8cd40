//! Serial scanners (issue 15): `medcard serve` with a `[[scanners.serial]]` whose device is the
//! virtual scanner's symlink to a real pty (`sim::scanner`), read through the same line
//! source as a real port, and `events.subscribe` clients: a QR code and an ID number arrive as
//! `credential.scanned` with their kind and code (masked in the log); an over-long line and
//! one with a control character are dropped and the next one arrives; a scanner unplugged
//! and plugged in again is read again without a restart (its loss logged once); a caller who
//! may not call mutating methods gets the event with `code` null.

use crate::common::daemon::Daemon;
use crate::common::rpc::{Client, Rpc};
use crate::common::settle::XIAOWANG;
use crate::common::temp::TempDir;
use crate::common::web::{self, HIS_ORIGIN, Web};
use medcard::reader::scanner::Terminator;
use medcard::sim::scanner::VirtualScanner;
use serde_json::{Value, json};
use std::path::Path;

/// An 18-character resident ID number with a valid check character.
const CERTNO: &str = "11010519491231002X";
/// A code shaped as a QR code's text.
const QR: &str = "ECQR0f3a9b27c4d1e8aa55";

/// A daemon reading the virtual scanner `counter` (terminator CR), with extra configuration
/// lines made for its directory.
struct ScannerRig {
    dir: TempDir,
    scanner: VirtualScanner,
    daemon: Daemon,
}

impl ScannerRig {
    fn start(tag: &str, extra: impl FnOnce(&Path) -> String) -> ScannerRig {
        let dir = TempDir::new(tag);
        let extra = extra(&dir);
        let scanner = VirtualScanner::plug(&dir.join("scanner"), Terminator::Cr).expect("a pty");
        let text = format!(
            "[cache]\npath = \"\"\n\n[[scanners.serial]]\nname = \"counter\"\ndevice = {:?}\n{extra}",
            scanner.device().display().to_string()
        );
        let config = dir.file("medcard.toml", &text);
        let daemon = Daemon::start_virtual(&config, &[XIAOWANG], &[]);
        ScannerRig {
            dir,
            scanner,
            daemon,
        }
    }

    fn config(&self) -> std::path::PathBuf {
        self.dir.join("medcard.toml")
    }

    fn scan(&self, code: &str) {
        self.scanner.scan(code).expect("the scanner sends");
    }
}

/// `client` subscribed to `credential.scanned` only.
fn subscribed(mut client: Client) -> Client {
    let reply = client.result(
        "events.subscribe",
        json!({"topics": ["credential.scanned"]}),
    );
    assert_eq!(reply["subscribed"], json!(["credential.scanned"]));
    client
}

/// The next `credential.scanned` notification's params.
fn next_scanned(client: &mut Client) -> Value {
    client.next_notification("credential.scanned")
}

fn occurrences(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

#[test]
fn scanned_codes_arrive_with_their_kind_and_are_masked_in_the_log() {
    let rig = ScannerRig::start("scan-kinds", |_| String::new());
    let mut events = subscribed(rig.daemon.client());
    rig.scan(QR);
    let qr = next_scanned(&mut events);
    assert_eq!(qr["scanner"], "counter", "{qr}");
    assert_eq!(qr["kind"], "qr", "{qr}");
    assert_eq!(qr["code"], QR, "{qr}");
    assert!(
        qr["scanned_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{qr}"
    );
    rig.scan(CERTNO);
    let certno = next_scanned(&mut events);
    assert_eq!(certno["kind"], "certno", "{certno}");
    assert_eq!(certno["code"], CERTNO, "{certno}");
    let log = rig.daemon.log_text();
    assert!(log.contains("ECQR…(22)"), "the QR code masked: {log}");
    assert!(!log.contains(QR) && !log.contains(CERTNO), "{log}");
}

#[test]
fn an_over_long_line_and_one_with_a_control_character_are_dropped() {
    let rig = ScannerRig::start("scan-dropped", |_| String::new());
    let mut events = subscribed(rig.daemon.client());
    rig.scan(&"A".repeat(5000));
    rig.scan("ECQR\u{1b}[2J0f3a9b27");
    rig.scan(QR);
    let next = next_scanned(&mut events);
    assert_eq!(next["code"], QR, "the dropped lines sent nothing: {next}");
    let log = rig.daemon.log_text();
    assert!(log.contains("longer than the limit"), "{log}");
    assert!(log.contains("does not print"), "{log}");
}

#[test]
fn a_scanner_unplugged_and_plugged_in_again_is_read_without_a_restart() {
    let mut rig = ScannerRig::start("scan-replug", |_| String::new());
    let mut events = subscribed(rig.daemon.client());
    rig.scan(QR);
    assert_eq!(next_scanned(&mut events)["code"], QR);
    rig.scanner.unplug();
    crate::common::wait_until(
        "the daemon sees the scanner gone",
        crate::common::rpc::PATIENCE,
        || rig.daemon.log_text().contains("scanner disconnected"),
    );
    // Several reopenings fail meanwhile (one a second): none is logged again.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    rig.scanner.replug().expect("a new pty");
    rig.scan(CERTNO);
    let back = next_scanned(&mut events);
    assert_eq!(back["code"], CERTNO, "{back}");
    let log = rig.daemon.log_text();
    assert_eq!(occurrences(&log, "scanner disconnected"), 1, "{log}");
    assert_eq!(occurrences(&log, "scanner not available"), 0, "{log}");
    assert_eq!(occurrences(&log, "scanner connected"), 2, "{log}");
}

#[test]
fn the_code_goes_only_to_callers_who_may_call_mutating_methods() {
    // gid 4242: a group the test's own process is not in.
    let rig = ScannerRig::start("scan-access", |dir| {
        format!(
            "\n[access]\nallowed_groups = [\"4242\"]\n{}",
            web::config_lines(dir)
        )
    });
    let web = Web::of(&rig.daemon, &rig.config());
    let mut on_socket = subscribed(rig.daemon.client());
    let mut no_token = subscribed(Client::connect_web(web.addr, Some(HIS_ORIGIN), None));
    let mut his = subscribed(web.his());
    let mut kiosk = subscribed(web.kiosk());
    rig.scan(QR);
    for (who, client) in [("socket", &mut on_socket), ("no token", &mut no_token)] {
        let event = next_scanned(client);
        assert_eq!(event["kind"], "qr", "{who}: {event}");
        assert_eq!(event["code"], Value::Null, "{who}: {event}");
    }
    for (who, client) in [("client token", &mut his), ("kiosk token", &mut kiosk)] {
        let event = next_scanned(client);
        assert_eq!(event["code"], QR, "{who}: {event}");
    }
}

#[test]
fn medcard_sim_scanner_sends_the_lines_typed_on_its_stdin() {
    use std::io::{BufRead, Write};
    let dir = TempDir::new("scan-cli");
    let mut sim = std::process::Command::new(crate::common::medcard_bin())
        .args(["sim", "--terminator", "crlf", "--scanner"])
        .arg(dir.join("scanner"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("medcard sim --scanner");
    let mut device = String::new();
    let stdout = sim.stdout.take().expect("its stdout");
    std::io::BufReader::new(stdout)
        .read_line(&mut device)
        .expect("the device path");
    let text = format!(
        "[cache]\npath = \"\"\n\n[[scanners.serial]]\ndevice = {:?}\nterminator = \"crlf\"\n",
        device.trim()
    );
    let config = dir.file("medcard.toml", &text);
    let daemon = Daemon::start_virtual(&config, &[XIAOWANG], &[]);
    let mut events = subscribed(daemon.client());
    let mut stdin = sim.stdin.take().expect("its stdin");
    writeln!(stdin, "{QR}").expect("a line to the simulator");
    let event = next_scanned(&mut events);
    assert_eq!(event["code"], QR, "{event}");
    assert_eq!(
        event["scanner"],
        device.trim(),
        "named by its device: {event}"
    );
    writeln!(stdin, ":quit").expect("quit");
    drop(stdin);
    let _ = sim.wait();
}
