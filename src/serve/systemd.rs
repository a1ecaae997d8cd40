//! The two systemd protocols the daemon speaks, without a crate: `sd_notify` (a datagram to
//! `$NOTIFY_SOCKET`: `READY=1`, `WATCHDOG=1`, `STOPPING=1`, `RELOADING=1`) and socket
//! activation (`$LISTEN_PID` / `$LISTEN_FDS`: the listening socket is fd 3).

use std::io;
use std::os::fd::FromRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener};
use std::time::Duration;

/// The first passed file descriptor (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// Sends `state` to the service manager, when run by systemd; a failure is logged.
pub fn notify(state: &str) {
    if let Err(e) = try_notify(state) {
        tracing::warn!(error = %e, state, "sd_notify failed");
    }
}

/// Sends `state` to the service manager. `Ok(false)` when not run by systemd.
pub fn try_notify(state: &str) -> io::Result<bool> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    notify_to(&target.to_string_lossy(), state).map(|()| true)
}

/// Sends `state` to the notification socket `target` (a path, or `@` and an abstract name).
pub fn notify_to(target: &str, state: &str) -> io::Result<()> {
    let address = match target.strip_prefix('@') {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes())?,
        None => SocketAddr::from_pathname(target)?,
    };
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(state.as_bytes(), &address)?;
    Ok(())
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when it is meant for us.
pub fn watchdog_interval() -> Option<Duration> {
    if !meant_for_us("WATCHDOG_PID") {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// The listening Unix socket systemd passed (fd 3), if `$LISTEN_PID` is ours. The
/// variables are removed so that children do not inherit them.
pub fn inherited_listener() -> io::Result<Option<UnixListener>> {
    let ours = meant_for_us("LISTEN_PID");
    let count: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // SAFETY: single-threaded at this point of start-up (called before the runtime).
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    if !ours || count < 1 {
        return Ok(None);
    }
    if !is_unix_listener(LISTEN_FDS_START) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "systemd passed fd 3, but it is not a listening Unix stream socket",
        ));
    }
    // SAFETY: fd 3 was passed to this process by systemd and nothing else owns it.
    let listener = unsafe { UnixListener::from_raw_fd(LISTEN_FDS_START) };
    listener.set_nonblocking(true)?;
    Ok(Some(listener))
}

fn meant_for_us(variable: &str) -> bool {
    match std::env::var(variable) {
        Ok(pid) => pid.parse::<u32>().ok() == Some(std::process::id()),
        Err(_) => variable == "WATCHDOG_PID",
    }
}

/// Whether `fd` is a listening `AF_UNIX` stream socket.
fn is_unix_listener(fd: i32) -> bool {
    let option = |level, name| {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` and `len` are valid for getsockopt's int-sized output.
        let rc = unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &mut len) };
        (rc == 0).then_some(value)
    };
    option(libc::SOL_SOCKET, libc::SO_DOMAIN) == Some(libc::AF_UNIX)
        && option(libc::SOL_SOCKET, libc::SO_TYPE) == Some(libc::SOCK_STREAM)
        && option(libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == Some(1)
}

#[cfg(test)]
mod tests {
    use std::os::linux::net::SocketAddrExt;

    #[test]
    fn notify_reaches_a_datagram_socket() {
        let dir = std::env::temp_dir().join(format!("medcard-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        super::notify_to(path.to_str().unwrap(), "READY=1").unwrap();
        let mut buffer = [0u8; 64];
        let n = receiver.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"READY=1");
        let name = format!("medcard-notify-test-{}", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = std::os::unix::net::UnixDatagram::bind_addr(&address).unwrap();
        super::notify_to(&format!("@{name}"), "WATCHDOG=1").unwrap();
        let n = receiver.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"WATCHDOG=1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
