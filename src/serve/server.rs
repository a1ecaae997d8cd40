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
use super::peer::{Peer, effective_uid};
use super::rpc::RpcError;
use super::services::Services;
use super::shared::{Settings, Shared, Shutdown};
use super::web::metrics::MetricsListener;
use super::web::{self, WebListener};
use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{broadcast, mpsc};

/// The listening sockets.
pub struct Listeners {
    pub unix: UnixListener,
    pub tcp: Option<TcpListener>,
    /// The loopback web endpoint (`[web]`), when configured.
    pub web: Option<WebListener>,
    /// `GET /metrics` on a listener of its own (`[metrics]`), when configured.
    pub metrics: Option<MetricsListener>,
    /// The socket file this daemon created (none for systemd's socket): removed with the
    /// listeners, when it is still the one bound (held for its `Drop`).
    _file: Option<SocketFile>,
}

impl Listeners {
    /// Binds what `config` names: the Unix socket (see [`bind_unix`]) and the TCP listener
    /// when configured. `inherited` (a socket-activated listener) replaces the Unix bind.
    pub async fn bind(config: &Config, inherited: Option<UnixListener>) -> io::Result<Listeners> {
        let (unix, file) = match inherited {
            Some(listener) => (listener, None),
            None => {
                let (listener, file) =
                    bind_unix(&config.socket.path, config.socket_mode(), group_of(config))?;
                (listener, Some(file))
            }
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
        Ok(Listeners {
            unix,
            tcp,
            web: None,
            metrics: None,
            _file: file,
        })
    }
}

fn group_of(config: &Config) -> Option<u32> {
    let group = config.socket.group.trim();
    (!group.is_empty())
        .then(|| super::peer::group_id(group))
        .flatten()
}

/// The socket file a daemon created, known by its device and inode: when dropped, the path
/// is removed only while it is still that file — a socket someone else put there stays.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    /// Where the socket is (its directory's canonical path and its name).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == (self.dev, self.ino) => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the socket");
                }
            }
            Ok(_) => tracing::warn!(
                path = %self.path.display(),
                "not removing the socket path: it is no longer the socket this daemon created"
            ),
            Err(_) => {}
        }
    }
}

/// Binds the Unix socket at `path`, so that it is ours or nothing: the directory is made
/// when missing and must be one only root and this daemon's user can change (see
/// [`check_directory`]); a stale socket is replaced only when it is ours and nobody answers
/// on it, anything else at the path is an error. The socket is bound in a private (0700)
/// directory beside it, given `mode` and the group, and only then moved to `path`: no
/// moment exists where it is reachable with other permissions, or where the path is
/// someone else's.
pub fn bind_unix(
    path: &Path,
    mode: u32,
    group: Option<u32>,
) -> io::Result<(UnixListener, SocketFile)> {
    let socket = checked_socket_path(path)?;
    let stale = check_existing(&socket)?;
    let staging = socket.with_file_name(format!(".medcard-{}", std::process::id()));
    make_private_directory(&staging)?;
    let bound = bind_staged(&staging.join("s"), &socket, mode, group, stale);
    if let Err(e) = std::fs::remove_dir_all(&staging) {
        tracing::warn!(path = %staging.display(), error = %e, "cannot remove the staging directory");
    }
    let (listener, file) = bound?;
    listener.set_nonblocking(true)?;
    Ok((UnixListener::from_std(listener)?, file))
}

/// `path` with its directory made (when missing), checked and resolved (no symbolic link
/// left in it).
fn checked_socket_path(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no socket file", path.display()),
        )
    })?;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(parent)
        .map_err(|e| socket_directory_error(parent, e))?;
    let directory = parent.canonicalize()?;
    check_directory(&directory)?;
    Ok(directory.join(name))
}

/// The socket's directory and every one above it belong to root or this daemon's user,
/// and nobody else may write to them — unless sticky (as /tmp), where others cannot
/// remove or rename what is not theirs. Otherwise another user could replace the socket
/// and receive what clients send, a PIN among it.
fn check_directory(directory: &Path) -> io::Result<()> {
    let me = effective_uid();
    for dir in directory.ancestors() {
        let meta = std::fs::symlink_metadata(dir)?;
        let mode = meta.mode() & 0o7777;
        let problem = if meta.uid() != 0 && meta.uid() != me {
            format!(
                "belongs to uid {}, not to root or this daemon's user",
                meta.uid()
            )
        } else if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            format!("is writable by other users (mode {mode:04o}) and not sticky")
        } else {
            continue;
        };
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing to create the socket in {}: {} {problem}, so another user could \
                 replace the socket and receive what clients send (a PIN among it). Use a \
                 directory only root and medcard's user can write, e.g. /run/medcard (which \
                 medcard.service and systemd-tmpfiles create)",
                directory.display(),
                dir.display()
            ),
        ));
    }
    Ok(())
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

/// What is at the socket's path: nothing (`false`), or a stale socket of this daemon's
/// user that nobody answers on (`true`: it is replaced). Anything else is an error, and
/// nothing is removed.
fn check_existing(path: &Path) -> io::Result<bool> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} {why}; not replacing it", path.display()),
        ))
    };
    if !meta.file_type().is_socket() {
        return refuse("exists and is not a socket".to_owned());
    }
    if meta.uid() != effective_uid() {
        return refuse(format!(
            "is a socket of uid {}, not of this daemon's user (uid {}): find out who put it \
             there",
            meta.uid(),
            effective_uid()
        ));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} is in use: another medcard serves it", path.display()),
        ));
    }
    tracing::info!(path = %path.display(), "replacing a stale socket");
    Ok(true)
}

/// A new directory only this user can enter. A leftover of ours (a crashed start with the
/// same pid) is removed first; anything else there is an error.
fn make_private_directory(path: &Path) -> io::Result<()> {
    let create = || std::fs::DirBuilder::new().mode(0o700).create(path);
    match create() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta = std::fs::symlink_metadata(path)?;
            if !meta.is_dir() || meta.uid() != effective_uid() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} (where the socket is made before it is moved into place) exists \
                         and is not this daemon user's directory; not using it",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_dir_all(path)?;
            create()
        }
        created => created,
    }
}

/// Binds at `temporary` (in the private directory), sets `mode` and `group`, then puts it
/// at `socket`: a new name for a path that was free (it fails if another got there first),
/// a rename over our stale socket.
fn bind_staged(
    temporary: &Path,
    socket: &Path,
    mode: u32,
    group: Option<u32>,
    replace_stale: bool,
) -> io::Result<(std::os::unix::net::UnixListener, SocketFile)> {
    let listener = std::os::unix::net::UnixListener::bind(temporary)?;
    std::fs::set_permissions(temporary, std::fs::Permissions::from_mode(mode))?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(temporary, None, Some(gid))?;
    }
    let meta = std::fs::symlink_metadata(temporary)?;
    if replace_stale {
        std::fs::rename(temporary, socket)?;
    } else {
        std::fs::hard_link(temporary, socket)?;
    }
    let file = SocketFile {
        path: socket.to_owned(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    Ok((listener, file))
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
        if old.config.metrics != config.metrics {
            findings
                .warnings
                .push("metrics.* take effect at the next start".to_owned());
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
    pub async fn run(&self, mut listeners: Listeners, shutdown: impl Future<Output = ()>) {
        let (notify_shutdown, _) = broadcast::channel(1);
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        if let Some(endpoint) = listeners.web.take() {
            if let Ok(addr) = endpoint.local_addr() {
                let _ = self.shared.web_addr.set(addr);
            }
            let serving = web::serve(
                endpoint,
                self.shared.clone(),
                notify_shutdown.clone(),
                done_tx.clone(),
            );
            tokio::spawn(serving);
        }
        if let Some(listener) = listeners.metrics.take() {
            if let Ok(addr) = listener.local_addr() {
                let _ = self.shared.metrics_addr.set(addr);
            }
            let serving = web::metrics::serve(
                listener,
                self.shared.clone(),
                notify_shutdown.clone(),
                done_tx.clone(),
            );
            tokio::spawn(serving);
        }
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

    /// A fresh directory of this test (mode 0755), removed by the caller.
    fn test_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("medcard-server-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        dir
    }

    fn bind(path: &Path) -> io::Result<(UnixListener, SocketFile)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async { bind_unix(path, 0o660, None) })
    }

    #[test]
    fn a_socket_path_under_a_file_names_the_file() {
        let dir = test_dir("file");
        let file = dir.join("not-a-dir");
        std::fs::write(&file, b"x").expect("a file");
        let error = bind(&file.join("run/medcard.sock"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            error.contains(&format!("{} is a file, not a directory", file.display())),
            "{error}"
        );
    }

    #[test]
    fn a_directory_others_may_write_is_refused() {
        let dir = test_dir("shared");
        for mode in [0o777, 0o775] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let error = bind(&dir.join("medcard.sock"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains("writable by other users"), "{error}");
            assert!(error.contains(&dir.display().to_string()), "{error}");
            assert!(error.contains("/run/medcard"), "{error}");
            assert_eq!(
                std::fs::read_dir(&dir).expect("dir").count(),
                0,
                "nothing made"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_sticky_directory_of_ours_is_used_and_the_socket_made_whole() {
        let dir = test_dir("sticky");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        let path = dir.join("medcard.sock");
        let bound = bind(&path);
        let meta = std::fs::symlink_metadata(&path);
        let entries: Vec<_> = std::fs::read_dir(&dir)
            .expect("dir")
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        drop(bound);
        let removed = !path.exists();
        let _ = std::fs::remove_dir_all(&dir);
        let meta = meta.expect("the socket is there");
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o7777, 0o660);
        assert_eq!(
            entries,
            vec![std::ffi::OsString::from("medcard.sock")],
            "no staging left"
        );
        assert!(removed, "our own socket is removed when the listeners go");
    }

    #[test]
    fn a_socket_file_that_is_no_longer_ours_stays() {
        let dir = test_dir("replaced");
        let path = dir.join("medcard.sock");
        let (listener, file) = bind(&path).expect("bound");
        // Someone (an administrator, a cleaner) put another socket at the path.
        let other = dir.join("other.sock");
        let _other = std::os::unix::net::UnixListener::bind(&other).expect("other socket");
        std::fs::rename(&other, &path).expect("replace");
        let other_ino = std::fs::symlink_metadata(&path).expect("meta").ino();
        drop((listener, file));
        let kept = std::fs::symlink_metadata(&path).map(|m| m.ino()).ok();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(kept, Some(other_ino));
    }
}
