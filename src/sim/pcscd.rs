//! Running pcscd for the simulator's end-to-end use: tests, `medcard bench` and the demo.
//!
//! Only one pcscd runs per machine (fixed socket `/run/pcscd/pcscd.comm`) and vpcd has two
//! slots, so users of the real stack take [`StackLock`] first. [`Pcscd::ensure_running`]
//! reuses a live pcscd, or starts one (`pcscd --foreground`, root) and stops it when dropped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PCSCD_SOCKET: &str = "/run/pcscd/pcscd.comm";
pub const PCSCD_PID_FILE: &str = "/run/pcscd/pcscd.pid";
/// vpcd's first slot: reader "Virtual PCD 00 00" (the second, 35964, is "Virtual PCD 00 01").
pub const VPCD_PORT: u16 = 0x8C7B;
pub const VPCD_READER_0: &str = "Virtual PCD 00 00";
pub const VPCD_READER_1: &str = "Virtual PCD 00 01";

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(
        "cannot start pcscd ({0}); install it with `make deps` (Debian: pcscd vsmartcard-vpcd) and run as root"
    )]
    Spawn(std::io::Error),
    #[error(
        "pcscd did not become ready within {0:?} (socket {PCSCD_SOCKET}, vpcd port {VPCD_PORT}); log: {1}"
    )]
    NotReady(Duration, String),
    #[error("cannot take the end-to-end lock {0}: {1}")]
    Lock(PathBuf, std::io::Error),
}

/// An exclusive hold on the machine's pcscd and vpcd slots, across processes.
pub struct StackLock {
    _file: File,
}

impl StackLock {
    /// Blocks until no other medcard test, bench or demo uses the real stack.
    pub fn acquire() -> Result<StackLock, StackError> {
        let path = std::env::temp_dir().join("medcard-pcscd.lock");
        let file = File::create(&path).map_err(|e| StackError::Lock(path.clone(), e))?;
        file.lock().map_err(|e| StackError::Lock(path, e))?;
        Ok(StackLock { _file: file })
    }
}

/// A pcscd this process uses; stopped on drop if this process started it.
pub struct Pcscd {
    child: Option<Child>,
    log: PathBuf,
}

impl Pcscd {
    /// Uses the running pcscd, or starts one and waits until it listens for vpcd.
    pub fn ensure_running() -> Result<Pcscd, StackError> {
        let log = std::env::temp_dir().join("medcard-pcscd.log");
        if running_pid().is_some() {
            wait_ready(&log, Duration::from_secs(5))?;
            return Ok(Pcscd { child: None, log });
        }
        Pcscd::start(log)
    }

    fn start(log: PathBuf) -> Result<Pcscd, StackError> {
        // Stale files from a killed pcscd make the next one refuse to start.
        let _ = std::fs::remove_file(PCSCD_PID_FILE);
        let _ = std::fs::remove_file(PCSCD_SOCKET);
        let out = File::create(&log).map_err(StackError::Spawn)?;
        let err = out.try_clone().map_err(StackError::Spawn)?;
        let child = Command::new("pcscd")
            .arg("--foreground")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(StackError::Spawn)?;
        let pcscd = Pcscd {
            child: Some(child),
            log,
        };
        wait_ready(&pcscd.log, Duration::from_secs(10))?;
        Ok(pcscd)
    }

    /// Whether this process started (and will stop) pcscd.
    pub fn owned(&self) -> bool {
        self.child.is_some()
    }

    /// Stops pcscd (if this process owns it) and starts a new one: what an operator's
    /// `systemctl restart pcscd` does under a running daemon.
    pub fn restart(&mut self) -> Result<(), StackError> {
        self.stop();
        let fresh = Pcscd::start(self.log.clone())?;
        *self = fresh;
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }
}

impl Drop for Pcscd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SIGTERM, then wait; SIGKILL if it does not exit within two seconds.
pub fn terminate(child: &mut Child) {
    let Ok(pid) = i32::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) with a pid we spawned and have not yet reaped.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The pid of a live (not zombie) pcscd, from its pid file.
fn running_pid() -> Option<u32> {
    let text = std::fs::read_to_string(PCSCD_PID_FILE).ok()?;
    let pid: u32 = text
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit(')').next()?.split_whitespace().next()?;
    (state != "Z" && stat.contains("(pcscd)")).then_some(pid)
}

fn wait_ready(log: &Path, timeout: Duration) -> Result<(), StackError> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if Path::new(PCSCD_SOCKET).exists() && vpcd_listening(VPCD_PORT) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(StackError::NotReady(timeout, log.display().to_string()))
}

/// Whether something listens on TCP `port` (vpcd inside pcscd), from /proc/net/tcp{,6}.
pub fn vpcd_listening(port: u16) -> bool {
    let needle = format!(":{port:04X} ");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table).is_ok_and(|text| {
            text.lines().skip(1).any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields
                    .get(1)
                    .is_some_and(|local| (local.to_string() + " ").ends_with(&needle))
                    && fields.get(3) == Some(&"0A")
            })
        })
    })
}
