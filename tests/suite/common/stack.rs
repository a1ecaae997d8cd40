//! The real stack for end-to-end tests: pcscd (started here if none runs) and
//! `medcard sim --vpcd` processes inserting fixture cards into vpcd's two slots.

use medcard::reader::ReaderBackend;
use medcard::reader::pcsc_reader::PcscReaders;
use medcard::sim::pcscd::{Pcscd, StackLock, VPCD_PORT, terminate};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const READER_0: &str = medcard::sim::pcscd::VPCD_READER_0;
pub const READER_1: &str = medcard::sim::pcscd::VPCD_READER_1;

/// pcscd plus the machine-wide lock; sims are stopped before pcscd (field order).
pub struct Stack {
    pub pcscd: Pcscd,
    _lock: StackLock,
}

impl Stack {
    pub fn start() -> Stack {
        if std::env::var_os("MEDCARD_SKIP_E2E").is_some() {
            panic!(
                "MEDCARD_SKIP_E2E is set: run end-to-end tests with `make test` (root, pcscd, vpcd)"
            );
        }
        let lock = StackLock::acquire().expect("end-to-end lock");
        let pcscd = Pcscd::ensure_running().expect("pcscd (run `make deps`; needs root)");
        let stack = Stack { pcscd, _lock: lock };
        stack.wait_for_reader_state(READER_0, false);
        stack.wait_for_reader_state(READER_1, false);
        stack
    }

    /// Waits until `reader` shows a card (`present`) or none.
    pub fn wait_for_reader_state(&self, reader: &str, present: bool) -> Option<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut readers = PcscReaders::new();
        loop {
            let status = readers
                .readers()
                .ok()
                .and_then(|all| all.into_iter().find(|r| r.name == reader));
            if let Some(status) = status
                && status.atr.is_some() == present
            {
                return status.atr;
            }
            assert!(
                Instant::now() < deadline,
                "reader {reader:?} did not become {} within 10 s",
                if present { "present" } else { "empty" }
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A `medcard sim --vpcd` process holding one card in one vpcd slot.
pub struct Sim {
    child: Child,
    control: PathBuf,
    pub reader: &'static str,
}

impl Sim {
    /// Inserts `card` into slot 0 or 1 and waits until pcscd shows it.
    pub fn insert(stack: &Stack, slot: u16, card: &Path) -> Sim {
        let reader = if slot == 0 { READER_0 } else { READER_1 };
        let control =
            std::env::temp_dir().join(format!("medcard-sim-{}-{slot}.sock", std::process::id()));
        let _ = std::fs::remove_file(&control);
        let child = Command::new(super::medcard_bin())
            .args(["sim", "--vpcd"])
            .arg(format!("127.0.0.1:{}", VPCD_PORT + slot))
            .arg(card)
            .arg("--control")
            .arg(&control)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start medcard sim");
        let sim = Sim {
            child,
            control,
            reader,
        };
        stack.wait_for_reader_state(reader, true);
        sim
    }

    /// Swaps the card for the one in `card` and waits until pcscd has seen it go out and
    /// the new one come in.
    pub fn swap(&self, stack: &Stack, card: &Path) {
        assert_eq!(self.control(&format!("swap {}", card.display())), "ok");
        stack.wait_for_reader_state(self.reader, false);
        stack.wait_for_reader_state(self.reader, true);
    }

    /// Sends a control line (`pull`, `insert`, `swap FILE`) and returns the reply line.
    pub fn control(&self, line: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut stream = loop {
            match UnixStream::connect(&self.control) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("control socket {}: {e}", self.control.display()),
            }
        };
        writeln!(stream, "{line}").expect("control write");
        let mut reply = String::new();
        BufReader::new(stream)
            .read_line(&mut reply)
            .expect("control reply");
        reply.trim().to_owned()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        terminate(&mut self.child);
        let _ = std::fs::remove_file(&self.control);
    }
}

/// Runs `medcard read` with `args` against the real stack.
pub fn medcard_read(args: &[&str]) -> Output {
    let mut read = vec!["read"];
    read.extend(args);
    super::medcard(&read)
}

/// Sends APDUs with pcsc-tools' `scriptor` and returns each reply as hex.
pub fn scriptor(reader: &str, script: &str) -> Vec<String> {
    use std::io::Write;
    let mut child = Command::new("scriptor")
        .args(["-r", reader])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("scriptor (pcsc-tools; `make deps` installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write script");
    let output = child.wait_with_output().expect("scriptor output");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut replies = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("< ") {
            current = Some(String::new());
            push_hex(&mut current, rest, &mut replies);
        } else if current.is_some() {
            push_hex(&mut current, line, &mut replies);
        }
    }
    assert_eq!(
        replies.len(),
        script.lines().count(),
        "scriptor said: {text}"
    );
    replies
}

fn push_hex(current: &mut Option<String>, line: &str, replies: &mut Vec<String>) {
    let (bytes, done) = match line.split_once(" : ") {
        Some((bytes, _)) => (bytes, true),
        None => (line, false),
    };
    if let Some(hex) = current.as_mut() {
        hex.push_str(&bytes.split_whitespace().collect::<String>());
    }
    if done && let Some(hex) = current.take() {
        replies.push(hex);
    }
}
