//! The two systemd protocols the daemon speaks, through the `sd-notify` crate: `sd_notify`
//! (`READY=1`, `WATCHDOG=1`, `STOPPING=1`, `RELOADING=1` to `$NOTIFY_SOCKET`; an abstract
//! `@name` socket, which the crate does not address, is sent to here) and socket activation
//! (`$LISTEN_PID` / `$LISTEN_FDS`: the listening socket is fd 3).

pub use sd_notify::NotifyState;
use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener};
use std::time::Duration;

/// Sends `states` to the service manager, when run by systemd; a failure is logged.
pub fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = try_notify(states) {
        tracing::warn!(error = %e, ?states, "sd_notify failed");
    }
}

/// Sends `states` to the service manager (nothing when not run by systemd).
pub fn try_notify(states: &[NotifyState<'_>]) -> io::Result<()> {
    match std::env::var("NOTIFY_SOCKET") {
        Ok(target) if target.starts_with('@') => notify_to(&target, &message(states)),
        _ => sd_notify::notify(states),
    }
}

/// The datagram `states` make, one per line (as `sd-notify` writes it).
fn message(states: &[NotifyState<'_>]) -> String {
    states.iter().map(|state| format!("{state}\n")).collect()
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
    sd_notify::watchdog_enabled()
        .filter(|usec| !usec.is_zero())
        .map(|usec| usec / 2)
}

/// The listening Unix socket systemd passed (fd 3), if `$LISTEN_PID` is ours. The
/// variables are removed so that children do not inherit them.
pub fn inherited_listener() -> io::Result<Option<UnixListener>> {
    // SAFETY: single-threaded at this point of start-up (called before the runtime).
    let fds = unsafe {
        std::env::remove_var("LISTEN_FDNAMES");
        sd_notify::listen_fds_and_unset_env()
    };
    // Variables that do not parse are not meant for us (as with another process's pid).
    let Some(fd) = fds.ok().and_then(|mut fds| fds.next()) else {
        return Ok(None);
    };
    if !is_unix_listener(fd) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "systemd passed fd 3, but it is not a listening Unix stream socket",
        ));
    }
    // SAFETY: fd 3 was passed to this process by systemd and nothing else owns it.
    let listener = unsafe { UnixListener::from_raw_fd(fd) };
    listener.set_nonblocking(true)?;
    Ok(Some(listener))
}

/// Whether `fd` is a listening `AF_UNIX` stream socket.
fn is_unix_listener(fd: RawFd) -> bool {
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

    #[test]
    fn states_make_one_line_each() {
        use super::NotifyState;
        let states = [NotifyState::Ready, NotifyState::Status("serving")];
        assert_eq!(super::message(&states), "READY=1\nSTATUS=serving\n");
    }
}
