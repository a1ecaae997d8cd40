//! A serial barcode / QR scanner as a line source: the tty (a USB CDC-ACM port, an RS-232
//! adapter, or the simulators' pty) opened in raw mode at its baud rate, read up to the
//! scanner's line terminator, each line trimmed and handed on. A line longer than
//! [`MAX_LINE_BYTES`] or not UTF-8 is dropped with a warning (its length only: a line is a
//! credential and never logged here). A scanner unplugged (a read error, end of input, a
//! hang-up, the device gone) is opened again every [`RETRY`] until it is back; each change of
//! state is logged once.
//!
//! Blocking, like the readers: the daemon runs [`SerialScanner::run`] on a thread of its own
//! and stops it through [`Halt`].

use serde::Deserialize;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The longest line kept, in bytes; a longer one is dropped whole.
pub const MAX_LINE_BYTES: usize = 4096;

/// How long an absent scanner waits before it is opened again.
pub const RETRY: Duration = Duration::from_secs(1);

/// How long one wait for input lasts before the stop flag is looked at again, ms.
const POLL_MS: libc::c_int = 200;

/// The baud rates a scanner may be set to, with their termios speeds.
pub const BAUD_RATES: [(u32, libc::speed_t); 9] = [
    (1200, libc::B1200),
    (2400, libc::B2400),
    (4800, libc::B4800),
    (9600, libc::B9600),
    (19200, libc::B19200),
    (38400, libc::B38400),
    (57600, libc::B57600),
    (115_200, libc::B115200),
    (230_400, libc::B230400),
];

/// What ends a scanned line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Terminator {
    /// Carriage return, most scanners' default.
    #[default]
    Cr,
    Lf,
    CrLf,
}

impl Terminator {
    /// The bytes a scanner sends after each code.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            Terminator::Cr => b"\r",
            Terminator::Lf => b"\n",
            Terminator::CrLf => b"\r\n",
        }
    }

    /// The byte a line is split at (the rest of the terminator is trimmed off).
    fn last(self) -> u8 {
        match self {
            Terminator::Cr => b'\r',
            Terminator::Lf | Terminator::CrLf => b'\n',
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Terminator::Cr => "cr",
            Terminator::Lf => "lf",
            Terminator::CrLf => "crlf",
        }
    }
}

/// The termios speed of `baud`, when it is one of [`BAUD_RATES`].
pub fn speed_of(baud: u32) -> Option<libc::speed_t> {
    BAUD_RATES
        .iter()
        .find(|(rate, _)| *rate == baud)
        .map(|(_, speed)| *speed)
}

/// Why a scanner could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum ScannerError {
    #[error("cannot open {device}: {source}{hint}", device = device.display(), hint = open_hint(source))]
    Open { device: PathBuf, source: io::Error },
    #[error("{device} is not a serial port that takes raw mode at {baud} baud: {source}", device = device.display())]
    Settings {
        device: PathBuf,
        baud: u32,
        source: io::Error,
    },
    #[error("{baud} is not a standard baud rate")]
    Baud { baud: u32 },
    #[error("reading failed: {0}")]
    Read(#[source] io::Error),
    #[error("the device hung up")]
    HungUp,
}

/// How a scanner's thread is told to stop (the daemon's worker flag).
pub trait Halt {
    fn is_stopped(&self) -> bool;
    /// Pauses for `total`, or less when told to stop meanwhile.
    fn sleep(&self, total: Duration);
}

/// One configured serial scanner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialScanner {
    /// The operator's name for it (logs, events).
    pub name: String,
    pub device: PathBuf,
    pub baud: u32,
    pub terminator: Terminator,
}

/// What to check when a scanner's tty cannot be opened: the usual causes on a workstation.
fn open_hint(source: &io::Error) -> &'static str {
    match source.kind() {
        io::ErrorKind::PermissionDenied => {
            " (the daemon's user needs the tty's group, dialout on Debian; under systemd install \
             the drop-in systemd/scanners.conf)"
        }
        io::ErrorKind::NotFound => {
            " (not plugged in? under systemd the unit hides serial ports until the drop-in \
             systemd/scanners.conf is installed)"
        }
        _ => "",
    }
}

impl SerialScanner {
    /// Reads lines until `halt` says stop, handing each to `on_line`; reopens the device
    /// every [`RETRY`] while it is absent.
    pub fn run(&self, halt: &dyn Halt, on_line: &mut dyn FnMut(String)) {
        // Logged absent already: the failed reopenings that follow are not logged again.
        let mut absent = false;
        while !halt.is_stopped() {
            match Port::open(&self.device, self.baud) {
                Ok(port) => {
                    tracing::info!(scanner = %self.name, device = %self.device.display(), "scanner connected");
                    let mut lines = LineSplitter::new(self.terminator);
                    match port.read_until_gone(halt, &mut |bytes| lines.push(bytes, &mut *on_line))
                    {
                        Ok(()) => return,
                        Err(e) => {
                            tracing::warn!(scanner = %self.name, error = %e, "scanner disconnected; retrying every second");
                            absent = true;
                        }
                    }
                }
                Err(e) if !absent => {
                    tracing::warn!(scanner = %self.name, error = %e, "scanner not available; retrying every second");
                    absent = true;
                }
                Err(_) => {}
            }
            halt.sleep(RETRY);
        }
    }
}

/// An open tty in raw mode, non-blocking.
struct Port {
    fd: OwnedFd,
}

impl Port {
    fn open(device: &Path, baud: u32) -> Result<Port, ScannerError> {
        let speed = speed_of(baud).ok_or(ScannerError::Baud { baud })?;
        let open_error = |source| ScannerError::Open {
            device: device.to_owned(),
            source,
        };
        let path = CString::new(device.as_os_str().as_bytes())
            .map_err(|e| open_error(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC;
        // SAFETY: `path` is a valid NUL-terminated string for the call.
        let raw = unsafe { libc::open(path.as_ptr(), flags) };
        if raw < 0 {
            return Err(open_error(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a descriptor just opened and owned by nobody else.
        let port = Port {
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
        };
        raw_mode(&port.fd, Some(speed)).map_err(|source| ScannerError::Settings {
            device: device.to_owned(),
            baud,
            source,
        })?;
        Ok(port)
    }

    /// Hands what arrives to `on_bytes` until the device goes (`Err`) or `halt` says stop
    /// (`Ok`).
    fn read_until_gone(
        &self,
        halt: &dyn Halt,
        on_bytes: &mut dyn FnMut(&[u8]),
    ) -> Result<(), ScannerError> {
        let mut buffer = [0u8; 512];
        while !halt.is_stopped() {
            let revents = self.wait()?;
            if revents == 0 {
                continue;
            }
            // Read even on a hang-up: what arrived before it is still there.
            match self.read(&mut buffer) {
                Ok(0) => return Err(ScannerError::HungUp),
                Ok(n) => on_bytes(&buffer[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                        return Err(ScannerError::HungUp);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ScannerError::Read(e)),
            }
        }
        Ok(())
    }

    /// Waits up to [`POLL_MS`] for input; the events seen (0: none).
    fn wait(&self) -> Result<libc::c_short, ScannerError> {
        let mut poll = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the call.
        let rc = unsafe { libc::poll(&mut poll, 1, POLL_MS) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::Interrupted => Ok(0),
                _ => Err(ScannerError::Read(e)),
            };
        }
        Ok(poll.revents)
    }

    fn read(&self, buffer: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buffer` is valid for writes of its length.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
            )
        };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }
}

/// Puts the tty `tty` in raw mode (no echo, no line editing, no translation; 8N1, the
/// receiver on, modem lines ignored), at `speed` when given. The virtual scanner sets its pty
/// so too.
pub fn raw_mode(tty: &impl AsRawFd, speed: Option<libc::speed_t>) -> io::Result<()> {
    let fd = tty.as_raw_fd();
    let mut termios = std::mem::MaybeUninit::<libc::termios>::uninit();
    // SAFETY: tcgetattr fills `termios` when it returns 0, which is checked first.
    let mut termios = unsafe {
        if libc::tcgetattr(fd, termios.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        termios.assume_init()
    };
    // SAFETY: `termios` is a valid, initialised termios for these calls.
    let rc = unsafe {
        libc::cfmakeraw(&mut termios);
        termios.c_cflag |= libc::CLOCAL | libc::CREAD;
        termios.c_cc[libc::VMIN] = 1;
        termios.c_cc[libc::VTIME] = 0;
        if let Some(speed) = speed
            && (libc::cfsetispeed(&mut termios, speed) != 0
                || libc::cfsetospeed(&mut termios, speed) != 0)
        {
            return Err(io::Error::last_os_error());
        }
        libc::tcsetattr(fd, libc::TCSANOW, &termios)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Splits the bytes a scanner sends into trimmed lines, never holding more than
/// [`MAX_LINE_BYTES`] of one.
struct LineSplitter {
    terminator: Terminator,
    line: Vec<u8>,
    /// Bytes of an over-long line skipped so far (0: none).
    skipped: usize,
}

impl LineSplitter {
    fn new(terminator: Terminator) -> LineSplitter {
        LineSplitter {
            terminator,
            line: Vec::new(),
            skipped: 0,
        }
    }

    /// Takes `bytes`, handing every line they complete to `on_line`.
    fn push(&mut self, bytes: &[u8], on_line: &mut dyn FnMut(String)) {
        let end = self.terminator.last();
        for part in bytes.split_inclusive(|b| *b == end) {
            let complete = part.last() == Some(&end);
            let part = if complete {
                &part[..part.len() - 1]
            } else {
                part
            };
            self.take(part);
            if complete {
                self.finish(on_line);
            }
        }
    }

    fn take(&mut self, part: &[u8]) {
        if self.skipped > 0 || self.line.len() + part.len() > MAX_LINE_BYTES {
            self.skipped += self.line.len() + part.len();
            self.line.clear();
        } else {
            self.line.extend_from_slice(part);
        }
    }

    fn finish(&mut self, on_line: &mut dyn FnMut(String)) {
        let line = std::mem::take(&mut self.line);
        if std::mem::take(&mut self.skipped) > 0 {
            tracing::warn!(
                limit = MAX_LINE_BYTES,
                "scanned line longer than the limit; dropped"
            );
            return;
        }
        match String::from_utf8(line) {
            Ok(text) => {
                let text = text.trim();
                if !text.is_empty() {
                    on_line(text.to_owned());
                }
            }
            Err(e) => tracing::warn!(
                bytes = e.as_bytes().len(),
                "scanned line is not UTF-8; dropped"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(terminator: Terminator, chunks: &[&[u8]]) -> Vec<String> {
        let mut splitter = LineSplitter::new(terminator);
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, &mut |line| out.push(line));
        }
        out
    }

    #[test]
    fn lines_end_at_the_terminator_in_any_chunking_and_are_trimmed() {
        assert_eq!(
            lines(Terminator::Cr, &[b"ab", b"c\r d \r", b"\r", b"tail"]),
            ["abc", "d"]
        );
        assert_eq!(
            lines(Terminator::CrLf, &[b"one\r", b"\ntwo\r\n"]),
            ["one", "two"]
        );
        assert_eq!(lines(Terminator::Lf, &[b"x\ny\n"]), ["x", "y"]);
    }

    #[test]
    fn an_over_long_or_broken_line_is_dropped_and_the_next_one_kept() {
        let long = vec![b'7'; MAX_LINE_BYTES + 1];
        let at_limit = "8".repeat(MAX_LINE_BYTES);
        assert_eq!(
            lines(
                Terminator::Cr,
                &[&long, b"\r", b"\xff\xfe\r", at_limit.as_bytes(), b"\rok\r"]
            ),
            [at_limit.as_str(), "ok"]
        );
    }

    #[test]
    fn baud_rates_are_the_standard_ones() {
        assert_eq!(speed_of(9600), Some(libc::B9600));
        assert_eq!(speed_of(9601), None);
    }
}
