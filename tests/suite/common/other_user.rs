//! Another local user for the tests of a hostile neighbour: a child process (fork, then
//! setgroups / setgid / setuid to `nobody`) that either listens on a Unix socket and reports
//! every byte a client sends it ([`OtherUser::listen`]), or holds connections to a socket
//! open ([`OtherUser::connect`]). Only root can become another user: [`is_root`] tells the
//! tests, which then say that they skip (CI runs as root).
//!
//! The child runs raw system calls only (the test process has many threads; after fork only
//! async-signal-safe calls are sound) and closes every descriptor it does not use, so it
//! holds no other test's connection open.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// `nobody`'s uid and `nogroup`'s gid on Debian.
pub const NOBODY: u32 = 65534;

/// Whether this test process may run a child as another user.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `true` when the test can run; otherwise says (on stderr) that `test` is skipped.
pub fn can_switch_users(test: &str) -> bool {
    if !is_root() {
        eprintln!("SKIPPED {test}: needs root to run a second uid (CI runs the tests as root)");
    }
    is_root()
}

/// A child process running as [`NOBODY`]; killed when dropped.
pub struct OtherUser {
    pid: libc::pid_t,
    /// What the child reports: one byte when ready (`R`, or `E` on failure), then for a
    /// listener every byte it received on its first connection, until that one ends.
    report: Option<File>,
    /// Closed to let a connecting child go.
    _release: Option<OwnedFd>,
}

impl OtherUser {
    /// A child (as [`NOBODY`]) listening on `path`; returns once it is listening.
    pub fn listen(path: &Path) -> OtherUser {
        let address = address_of(path);
        OtherUser::start(move |report, _| {
            // SAFETY: raw system calls on the child's own descriptors and `address`.
            unsafe {
                let socket = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                let bound = libc::bind(socket, (&raw const address).cast(), address_len());
                if socket < 0 || bound != 0 || libc::listen(socket, 16) != 0 {
                    return false;
                }
                ready(report);
                let client = libc::accept(socket, std::ptr::null_mut(), std::ptr::null_mut());
                let mut buffer = [0u8; 4096];
                loop {
                    let n = libc::read(client, buffer.as_mut_ptr().cast(), buffer.len());
                    if n <= 0 {
                        break;
                    }
                    libc::write(report, buffer.as_ptr().cast(), n as usize);
                }
                true
            }
        })
    }

    /// A child (as [`NOBODY`]) holding `count` connections to `path` open until dropped;
    /// returns once they are all connected.
    pub fn connect(path: &Path, count: usize) -> OtherUser {
        let address = address_of(path);
        OtherUser::start(move |report, release| {
            for _ in 0..count {
                // SAFETY: raw system calls on the child's own descriptors and `address`.
                let connected = unsafe {
                    let socket = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                    libc::connect(socket, (&raw const address).cast(), address_len()) == 0
                };
                if !connected {
                    return false;
                }
            }
            ready(report);
            let mut byte = 0u8;
            // SAFETY: reads one byte into `byte`; returns at end of file (the release).
            unsafe { libc::read(release, (&raw mut byte).cast(), 1) };
            true
        })
    }

    /// Forks a child that becomes [`NOBODY`] and runs `work(report_fd, release_fd)` (raw
    /// system calls only), then exits; waits for its ready byte.
    fn start(work: impl FnOnce(RawFd, RawFd) -> bool) -> OtherUser {
        let (report_read, report_write) = pipe();
        let (release_read, release_write) = pipe();
        let (report, release) = (report_write.as_raw_fd(), release_read.as_raw_fd());
        // SAFETY: the child only makes raw system calls (async-signal-safe) and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: in the child: closing others' descriptors, dropping to nobody.
            unsafe {
                close_all_but(report, release);
                let nobody = NOBODY as libc::c_long;
                let dropped = libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<u32>()) == 0
                    && libc::syscall(libc::SYS_setgid, nobody) == 0
                    && libc::syscall(libc::SYS_setuid, nobody) == 0;
                if !dropped || !work(report, release) {
                    libc::write(report, b"E".as_ptr().cast(), 1);
                    libc::_exit(1);
                }
                libc::_exit(0);
            }
        }
        drop((report_write, release_read));
        let mut report = File::from(report_read);
        let mut first = [0u8; 1];
        let started = report.read_exact(&mut first).is_ok() && first == *b"R";
        let child = OtherUser {
            pid,
            report: Some(report),
            _release: Some(release_write),
        };
        assert!(started, "the child as uid {NOBODY} did not start");
        child
    }

    /// Every byte the listener received on its first connection, once that connection
    /// ended (at most `limit`; the test fails after it).
    pub fn received(&mut self, limit: Duration) -> Vec<u8> {
        let mut report = self.report.take().expect("received is asked once");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = report.read_to_end(&mut bytes);
            let _ = tx.send(bytes);
        });
        rx.recv_timeout(limit)
            .expect("the impostor's connection did not end in time")
    }
}

impl Drop for OtherUser {
    fn drop(&mut self) {
        // SAFETY: signalling and reaping the child this test forked, by its pid.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills `fds` with two new descriptors this function then owns.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// `path` as a `sockaddr_un`, made before the fork.
fn address_of(path: &Path) -> libc::sockaddr_un {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    assert!(bytes.len() < address.sun_path.len(), "socket path too long");
    for (slot, byte) in address.sun_path.iter_mut().zip(bytes) {
        *slot = *byte as libc::c_char;
    }
    address
}

fn address_len() -> libc::socklen_t {
    std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t
}

/// Tells the parent the child is ready.
fn ready(report: RawFd) {
    // SAFETY: writes one byte from a static buffer.
    unsafe { libc::write(report, b"R".as_ptr().cast(), 1) };
}

/// Closes every descriptor from 3 on except `keep_a` and `keep_b`.
///
/// # Safety
/// Only in a forked child, which owns nothing else.
unsafe fn close_all_but(keep_a: RawFd, keep_b: RawFd) {
    let (low, high) = (keep_a.min(keep_b), keep_a.max(keep_b));
    let close_range = |from: RawFd, to: RawFd| {
        if from <= to {
            // SAFETY: closes descriptors of the child only.
            unsafe { libc::syscall(libc::SYS_close_range, from as u32, to as u32, 0) };
        }
    };
    close_range(3, low - 1);
    close_range(low + 1, high - 1);
    close_range(high + 1, RawFd::MAX);
    // The kept descriptors were created close-on-exec; the child never execs.
}
