//! The virtual serial scanner: a pty pair whose slave side stands for the scanner's tty. The
//! device to configure (`[[scanners.serial]] device`) is a symlink in a directory of the
//! caller's to the pty's slave; [`VirtualScanner::scan`] writes a code and the terminator to
//! the master, as a scanner sends what it read. [`unplug`](VirtualScanner::unplug) closes
//! the pair and removes the symlink (the daemon's reads hang up, its reopenings fail);
//! [`replug`](VirtualScanner::replug) opens a new pair and points the symlink at it, as a
//! scanner plugged in again comes back under the same udev name. `medcard sim --scanner`
//! and the tests drive it, so the daemon reads it through the same code path as a real port.

use crate::reader::scanner::{Terminator, raw_mode};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a write waits for the reader to make room before it fails.
const WRITE_PATIENCE: Duration = Duration::from_secs(10);

/// Why the virtual scanner failed.
#[derive(Debug, thiserror::Error)]
pub enum VirtualScannerError {
    #[error("cannot open a pty pair: {0}")]
    Pty(#[source] io::Error),
    #[error("cannot link {link} to the pty: {source}", link = link.display())]
    Link { link: PathBuf, source: io::Error },
    #[error("cannot write to the pty: {0}")]
    Write(#[source] io::Error),
    #[error("the scanner is unplugged")]
    Unplugged,
}

/// An open pty pair: the master (the scanner's side) and the slave, held open as a device
/// that is present is.
struct Pair {
    master: OwnedFd,
    _slave: OwnedFd,
    slave_path: PathBuf,
}

/// A virtual serial scanner behind the symlink [`device`](Self::device).
pub struct VirtualScanner {
    link: PathBuf,
    terminator: Terminator,
    pair: Option<Pair>,
}

impl VirtualScanner {
    /// Opens a pty pair and links `link` to its slave; the scanner ends each code with
    /// `terminator`.
    pub fn plug(
        link: &Path,
        terminator: Terminator,
    ) -> Result<VirtualScanner, VirtualScannerError> {
        let mut scanner = VirtualScanner {
            link: link.to_owned(),
            terminator,
            pair: None,
        };
        scanner.replug()?;
        Ok(scanner)
    }

    /// The path to configure as the scanner's device (the symlink).
    pub fn device(&self) -> &Path {
        &self.link
    }

    /// The pty slave the symlink points to now (none while unplugged).
    pub fn slave(&self) -> Option<&Path> {
        self.pair.as_ref().map(|pair| pair.slave_path.as_path())
    }

    /// Sends `code` and the terminator, as the scanner does after reading a code.
    pub fn scan(&self, code: &str) -> Result<(), VirtualScannerError> {
        let mut bytes = code.as_bytes().to_vec();
        bytes.extend_from_slice(self.terminator.bytes());
        self.send(&bytes)
    }

    /// Sends `bytes` as they are.
    pub fn send(&self, bytes: &[u8]) -> Result<(), VirtualScannerError> {
        let pair = self.pair.as_ref().ok_or(VirtualScannerError::Unplugged)?;
        write_all(&pair.master, bytes).map_err(VirtualScannerError::Write)
    }

    /// The scanner taken away: the symlink removed, the pair closed.
    pub fn unplug(&mut self) {
        let _ = std::fs::remove_file(&self.link);
        self.pair = None;
    }

    /// The scanner plugged in (again): a new pair, the symlink pointed at it.
    pub fn replug(&mut self) -> Result<(), VirtualScannerError> {
        self.unplug();
        let pair = open_pair().map_err(VirtualScannerError::Pty)?;
        let staged = self.link.with_extension("staged");
        let _ = std::fs::remove_file(&staged);
        std::os::unix::fs::symlink(&pair.slave_path, &staged)
            .and_then(|()| std::fs::rename(&staged, &self.link))
            .map_err(|source| VirtualScannerError::Link {
                link: self.link.clone(),
                source,
            })?;
        self.pair = Some(pair);
        Ok(())
    }
}

impl Drop for VirtualScanner {
    fn drop(&mut self) {
        self.unplug();
    }
}

/// A new pty pair, the slave in raw mode (so what is written before the reader opens it is
/// kept as it was sent).
fn open_pair() -> io::Result<Pair> {
    // SAFETY: posix_openpt has no memory preconditions; the result is checked.
    let raw = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` was just opened and is owned by nobody else.
    let master = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: grantpt / unlockpt on a pty master; ptsname_r writes at most `name.len()`
    // bytes, NUL-terminated, into `name`.
    let rc = unsafe {
        if libc::grantpt(master.as_raw_fd()) != 0 || libc::unlockpt(master.as_raw_fd()) != 0 {
            -1
        } else {
            libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len())
        }
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ptsname_r succeeded, so `name` holds a NUL-terminated path.
    let slave_path = PathBuf::from(
        unsafe { CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    );
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&slave_path)?;
    raw_mode(&slave, None)?;
    Ok(Pair {
        master,
        _slave: OwnedFd::from(slave),
        slave_path,
    })
}

/// Writes all of `bytes`, waiting (at most [`WRITE_PATIENCE`] in all) while the pty is full.
fn write_all(fd: &OwnedFd, mut bytes: &[u8]) -> io::Result<()> {
    let deadline = Instant::now() + WRITE_PATIENCE;
    while !bytes.is_empty() {
        let mut poll = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let wait_ms = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd for the call.
        if unsafe { libc::poll(&mut poll, 1, wait_ms) } <= 0 {
            continue;
        }
        // SAFETY: `bytes` is valid for reads of its length.
        let n = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        match usize::try_from(n) {
            Ok(n) => bytes = &bytes[n..],
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::scanner::{Halt, SerialScanner};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, mpsc};

    #[derive(Clone, Default)]
    struct Flag(Arc<AtomicBool>);

    impl Halt for Flag {
        fn is_stopped(&self) -> bool {
            self.0.load(Ordering::Relaxed)
        }
        fn sleep(&self, total: Duration) {
            let until = Instant::now() + total;
            while Instant::now() < until && !self.is_stopped() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    #[test]
    fn the_line_source_reads_a_pty_and_comes_back_after_an_unplug() {
        let dir = std::env::temp_dir().join(format!("medcard-vscan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut scanner = VirtualScanner::plug(&dir.join("scanner"), Terminator::CrLf).unwrap();
        let source = SerialScanner {
            name: "test".into(),
            device: scanner.device().to_owned(),
            baud: 9600,
            terminator: Terminator::CrLf,
        };
        let halt = Flag::default();
        let (lines, received) = mpsc::channel();
        let thread = std::thread::spawn({
            let halt = halt.clone();
            move || source.run(&halt, &mut |line| lines.send(line).unwrap())
        });
        scanner.scan("first").unwrap();
        let patience = Duration::from_secs(10);
        assert_eq!(received.recv_timeout(patience).unwrap(), "first");
        scanner.unplug();
        scanner.replug().unwrap();
        scanner.scan("second").unwrap();
        assert_eq!(received.recv_timeout(patience).unwrap(), "second");
        halt.0.store(true, Ordering::Relaxed);
        thread.join().unwrap();
        drop(scanner);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
