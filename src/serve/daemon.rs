//! The daemon's composition root: [`Daemon::start`] opens the [`Services`] from a
//! [`Config`] (cache, insurer link, settler), starts the reader monitor on the readers the
//! caller chose (PC/SC, or virtual readers in tests and the demo), the background sync and
//! resolver, the journal's shipper to the hospital database (its start check refuses a
//! workstation the hospital refuses), and binds the listeners (or takes systemd's socket); [`Daemon::run`] serves
//! until told to stop, speaking systemd's notify protocol and watchdog when run by it, then
//! takes everything down in order: the listeners (and the socket file, when it is still the
//! one they created), the connections, the background threads, the monitor. `medcard serve`, `medcard demo`, `medcard bench settle`
//! and the tests start the daemon this one way.

use super::background::Background;
use super::config::Config;
use super::handle::MonitorHandle;
use super::monitor::{MonitorConfig, PsamChoice, spawn_monitor};
use super::server::{Listeners, Reloader, Server};
use super::services::Services;
use super::systemd::{self, NotifyState};
use super::web::metrics::MetricsListener;
use super::web::{WebError, WebListener};
use super::worker::{Liveness, Worker};
use crate::hospital::{HospitalError, Shipper};
use crate::profile::{ProfileError, ProfileSet};
use crate::reader::ReaderBackend;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("card profiles: {0}")]
    Profiles(#[from] ProfileError),
    #[error("cannot use systemd's socket: {0}")]
    Inherited(io::Error),
    #[error("cannot listen on {path}: {source}", path = path.display())]
    Listen { path: PathBuf, source: io::Error },
    /// `[hospital]` is wrong, or the hospital database refuses this workstation.
    #[error("{0}")]
    Hospital(#[from] HospitalError),
    /// `[web]` or `[metrics]` is set and its listener cannot start (its address, the web
    /// endpoint's token files).
    #[error("{0}")]
    Web(#[from] WebError),
}

/// A started daemon, not yet serving: [`run`](Self::run) or [`spawn`](Self::spawn) it.
pub struct Daemon {
    server: Server,
    listeners: Listeners,
    handle: MonitorHandle,
    services: Arc<Services>,
    socket: PathBuf,
    socket_activated: bool,
    /// Stopped in this order (field order): the background threads, then the monitor.
    threads: (Background, Worker),
}

impl Daemon {
    /// Opens the services `config` names, starts the monitor on `readers` (called three
    /// times: one connection for the cards, one for the PSAM, one for `system.doctor`) and the background threads, and
    /// binds the listeners; `inherited` (systemd's listening socket) replaces the Unix bind.
    pub async fn start(
        config: Config,
        mut readers: impl FnMut() -> Box<dyn ReaderBackend + Send> + Send + 'static,
        inherited: Option<std::os::unix::net::UnixListener>,
    ) -> Result<Daemon, DaemonError> {
        let socket_activated = inherited.is_some();
        let inherited = inherited
            .map(tokio::net::UnixListener::from_std)
            .transpose()
            .map_err(DaemonError::Inherited)?;
        let mut services = Services::open(&config);
        services.doctor_readers = Some(std::sync::Mutex::new(readers()));
        let shipper = hospital_checked(services.open_shipper(&config)).await?;
        let services = Arc::new(services);
        let monitor_config = MonitorConfig {
            profiles: profiles_of(&config)?,
            psam: PsamChoice::from(config.readers.psam.trim()),
            poll: Duration::from_millis(config.readers.poll_ms),
            assessor: services.assessor(&config),
            metrics: services.metrics.clone(),
        };
        let (handle, monitor) = spawn_monitor(monitor_config, readers);
        let background = Background::start(&services, &config, &handle, shipper);
        let mut listeners = Listeners::bind(&config, inherited)
            .await
            .map_err(|source| DaemonError::Listen {
                path: config.socket.path.clone(),
                source,
            })?;
        listeners.web = WebListener::bind(&config.web).await?;
        listeners.metrics = MetricsListener::bind(&config.metrics).await?;
        let socket = config.socket.path.clone();
        Ok(Daemon {
            server: Server::with_services(config, handle.clone(), services.clone()),
            listeners,
            handle,
            services,
            socket,
            socket_activated,
            threads: (background, monitor),
        })
    }

    /// Where the web endpoint listens (`[web]`; the port chosen when it gave 0).
    pub fn web_addr(&self) -> Option<std::net::SocketAddr> {
        self.listeners
            .web
            .as_ref()
            .and_then(|web| web.local_addr().ok())
    }

    /// Where `metrics.listen`'s listener listens (the port chosen when it gave 0).
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.listeners
            .metrics
            .as_ref()
            .and_then(|metrics| metrics.local_addr().ok())
    }

    /// The monitor's handle: snapshots, events, requests.
    pub fn handle(&self) -> &MonitorHandle {
        &self.handle
    }

    /// The cache, the insurer link and the settler the daemon opened.
    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    /// Replaces the settings of the running daemon (SIGHUP).
    pub fn reloader(&self) -> Reloader {
        self.server.reloader()
    }

    /// Serves until `shutdown` resolves, then stops everything in order (see the module
    /// documentation). Under systemd: `READY=1` once serving, `WATCHDOG=1` while the
    /// monitor runs, `STOPPING=1` when the shutdown begins.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Daemon {
            server,
            listeners,
            socket,
            socket_activated,
            threads,
            ..
        } = self;
        let watchdog = systemd::watchdog_interval()
            .map(|every| tokio::spawn(watchdog(threads.1.liveness(), every)));
        systemd::notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
        tracing::info!(path = %socket.display(), socket_activated, "serving");
        server
            .run(listeners, async {
                shutdown.await;
                systemd::notify(&[NotifyState::Stopping]);
            })
            .await;
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        let _ = tokio::task::spawn_blocking(move || drop(threads)).await;
        tracing::info!("stopped");
    }

    /// Serves on a task of its own until [`RunningDaemon::stop`].
    pub fn spawn(self) -> RunningDaemon {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(self.run(async {
            let _ = stopped.await;
        }));
        RunningDaemon { stop, task }
    }
}

/// A daemon serving on a task ([`Daemon::spawn`]).
pub struct RunningDaemon {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl RunningDaemon {
    /// Shuts the daemon down as [`Daemon::run`] does and waits until it has.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The shipper connected at start: a hospital database that refuses this workstation (its
/// node, its journal) or settings that cannot work stop the start with the reason; one that
/// is unreachable does not (settling goes on, the shipper keeps trying).
async fn hospital_checked(shipper: Option<Shipper>) -> Result<Option<Shipper>, DaemonError> {
    let Some(mut shipper) = shipper else {
        return Ok(None);
    };
    // The blocking client runs a runtime of its own: off this one.
    let checked = tokio::task::spawn_blocking(move || {
        let result = shipper.connect();
        (shipper, result)
    })
    .await;
    match checked {
        Ok((_, Err(e))) if e.is_operator_error() => Err(DaemonError::Hospital(e)),
        Ok((shipper, _)) => Ok(Some(shipper)),
        Err(e) => {
            tracing::error!(error = %e, "the hospital database's start check failed");
            Ok(None)
        }
    }
}

/// The built-in profiles, plus `readers.profiles`' when it names a directory.
fn profiles_of(config: &Config) -> Result<ProfileSet, ProfileError> {
    let dir = config.readers.profiles.trim();
    ProfileSet::load((!dir.is_empty()).then(|| Path::new(dir)))
}

/// `WATCHDOG=1` every `every` while the monitor thread runs.
async fn watchdog(monitor: Liveness, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        if !monitor.is_running() {
            tracing::error!("the reader monitor stopped; no more watchdog pings");
            return;
        }
        systemd::notify(&[NotifyState::Watchdog]);
    }
}
