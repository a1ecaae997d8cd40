//! The listener, in the shape of tokio's mini-redis: accept on the Unix socket (and the
//! optional loopback TCP listener), admit at most `max_connections` (the next one gets a
//! clear error line and is closed), run each connection as a task, and on shutdown tell
//! every connection through a broadcast and wait until they have all finished.
//!
//! State shared by the connections is [`Shared`] ([`super::shared`]); [`Reloader::reload`]
//! replaces its settings on SIGHUP.

use super::config::{Config, Findings};
use super::connection;
use super::handle::MonitorHandle;
use super::peer::Peer;
use super::rpc::RpcError;
use super::services::Services;
use super::shared::{Settings, Shared, Shutdown};
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{broadcast, mpsc};

/// The listening sockets.
pub struct Listeners {
    pub unix: UnixListener,
    pub tcp: Option<TcpListener>,
}

impl Listeners {
    /// Binds what `config` names: the Unix socket (see [`bind_unix`]) and the TCP listener
    /// when configured. `inherited` (a socket-activated listener) replaces the Unix bind.
    pub async fn bind(config: &Config, inherited: Option<UnixListener>) -> io::Result<Listeners> {
        let unix = match inherited {
            Some(listener) => listener,
            None => bind_unix(&config.socket.path, config.socket_mode(), group_of(config))?,
        };
        let tcp = match config.tcp_addr() {
            Some(addr) if addr.ip().is_loopback() => Some(TcpListener::bind(addr).await?),
            Some(addr) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("refusing to listen on {addr}: not a loopback address"),
                ));
            }
            None => None,
        };
        Ok(Listeners { unix, tcp })
    }
}

fn group_of(config: &Config) -> Option<u32> {
    let group = config.socket.group.trim();
    (!group.is_empty())
        .then(|| super::peer::group_id(group))
        .flatten()
}

/// Binds the Unix socket at `path`: creates the parent directory, removes a stale socket
/// (only a socket nobody answers on), sets `mode` and the group.
pub fn bind_unix(path: &Path, mode: u32, group: Option<u32>) -> io::Result<UnixListener> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| socket_directory_error(parent, e))?;
    }
    remove_stale_socket(path)?;
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    Ok(listener)
}

/// Why the socket's directory cannot be made, in the operator's terms: a file standing
/// where a directory of the path must be is named (not "File exists").
fn socket_directory_error(directory: &Path, error: io::Error) -> io::Error {
    match directory.ancestors().find(|a| a.is_file()) {
        Some(file) => io::Error::new(
            io::ErrorKind::NotADirectory,
            format!(
                "cannot make the socket's directory {}: {} is a file, not a directory",
                directory.display(),
                file.display()
            ),
        ),
        None => error,
    }
}

fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; not removing it",
                path.display()
            ),
        ));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} is in use: another medcard serves it", path.display()),
        ));
    }
    tracing::info!(path = %path.display(), "removing a stale socket");
    std::fs::remove_file(path)
}

/// Replaces the settings of a running server (SIGHUP).
#[derive(Clone)]
pub struct Reloader {
    shared: Arc<Shared>,
}

impl Reloader {
    /// Applies `config` to new requests and connections; returns what it found. Settings
    /// that need a restart (socket path, mode, group, TCP) are reported as warnings.
    pub fn reload(&self, config: Config) -> Findings {
        let mut findings = config.check();
        if !findings.errors.is_empty() {
            tracing::error!(errors = ?findings.errors, "reload refused; keeping the old settings");
            return findings;
        }
        let old = self.shared.settings();
        if old.config.socket.path != config.socket.path
            || old.config.socket.mode != config.socket.mode
            || old.config.socket.group != config.socket.group
            || old.config.socket.tcp != config.socket.tcp
        {
            findings
                .warnings
                .push("socket.path, mode, group and tcp take effect at the next start".to_owned());
        }
        if old.config.insurer != config.insurer || old.config.cache != config.cache {
            findings
                .warnings
                .push("insurer.* and cache.* take effect at the next start".to_owned());
        }
        self.shared.replace_settings(Settings::new(config));
        tracing::info!(warnings = ?findings.warnings, "configuration reloaded");
        findings
    }
}

/// The daemon's socket side.
pub struct Server {
    shared: Arc<Shared>,
}

impl Server {
    /// A server with no services (no cache, no insurer): cards only.
    pub fn new(config: Config, handle: MonitorHandle) -> Server {
        Server::with_services(config, handle, Arc::default())
    }

    /// A server whose `sync.status`, `system.info` and settlement methods use `services`.
    pub fn with_services(config: Config, handle: MonitorHandle, services: Arc<Services>) -> Server {
        Server {
            shared: Arc::new(Shared::new(Settings::new(config), handle, services)),
        }
    }

    pub fn reloader(&self) -> Reloader {
        Reloader {
            shared: self.shared.clone(),
        }
    }

    /// Serves `listeners` until `shutdown` resolves, then stops accepting, lets every
    /// connection finish (requests in progress get `shutdown_grace_ms`) and returns.
    pub async fn run(&self, listeners: Listeners, shutdown: impl Future<Output = ()>) {
        let (notify_shutdown, _) = broadcast::channel(1);
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        tokio::select! {
            _ = self.accept_loop(&listeners, &notify_shutdown, &done_tx) => {}
            _ = shutdown => {}
        }
        tracing::info!("shutting down: no new connections; finishing requests in progress");
        drop(listeners);
        let _ = notify_shutdown.send(());
        drop(done_tx);
        let grace = Duration::from_millis(self.shared.settings().config.socket.shutdown_grace_ms);
        let all_done = async { while done_rx.recv().await.is_some() {} };
        if tokio::time::timeout(grace * 2 + Duration::from_secs(1), all_done)
            .await
            .is_err()
        {
            tracing::warn!("some connections did not finish in time");
        }
    }

    async fn accept_loop(
        &self,
        listeners: &Listeners,
        notify: &broadcast::Sender<()>,
        done: &mpsc::Sender<()>,
    ) {
        loop {
            let accepted = tokio::select! {
                accepted = listeners.unix.accept() => accepted.map(|(stream, _)| {
                    let peer = Peer::of_unix(&stream);
                    (Stream::Unix(stream), peer)
                }),
                accepted = accept_tcp(listeners.tcp.as_ref()) => accepted.map(|(stream, addr)| {
                    (Stream::Tcp(stream), Peer::Tcp(addr))
                }),
            };
            match accepted {
                Ok((stream, peer)) => self.start_connection(stream, peer, notify, done),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn start_connection(
        &self,
        stream: Stream,
        peer: Peer,
        notify: &broadcast::Sender<()>,
        done: &mpsc::Sender<()>,
    ) {
        let slot = match self.shared.admit_connection(&peer) {
            Ok(slot) => slot,
            Err(refusal) => {
                tracing::warn!(%peer, "connection refused: {refusal}");
                let refusal = RpcError::from(refusal);
                tokio::spawn(async move {
                    match stream {
                        Stream::Unix(s) => connection::refuse(s, &refusal).await,
                        Stream::Tcp(s) => connection::refuse(s, &refusal).await,
                    }
                });
                return;
            }
        };
        let shared = self.shared.clone();
        let shutdown = Shutdown::new(notify.subscribe());
        let done = done.clone();
        tokio::spawn(async move {
            match stream {
                Stream::Unix(s) => {
                    let hangup = Some(connection::HangupProbe::of(&s));
                    connection::serve(s, peer, shared, shutdown, hangup).await
                }
                Stream::Tcp(s) => connection::serve(s, peer, shared, shutdown, None).await,
            }
            drop(slot);
            drop(done);
        });
    }
}

enum Stream {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

async fn accept_tcp(
    listener: Option<&TcpListener>,
) -> io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_path_under_a_file_names_the_file() {
        let dir = std::env::temp_dir().join(format!("medcard-server-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("not-a-dir");
        std::fs::write(&file, b"x").expect("a file");
        let error = bind_unix(&file.join("run/medcard.sock"), 0o660, None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            error.contains(&format!("{} is a file, not a directory", file.display())),
            "{error}"
        );
    }
}
