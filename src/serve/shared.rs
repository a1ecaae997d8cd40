//! What every connection of the daemon shares ([`Shared`]): the [`MonitorHandle`] (the one
//! owner of the readers lives behind it), the [`Services`] (cache, insurer link, settler),
//! the settings (replaced as a whole on reload) and the connection count; and the
//! [`Shutdown`] signal each connection listens for. The server, the connections and the
//! method handlers all read it; it points at nothing of theirs.

use super::config::Config;
use super::handle::MonitorHandle;
use super::peer::AllowList;
use super::services::Services;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;
use tokio::sync::broadcast;

/// The settings connections read, replaced as a whole on reload.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    pub allow: AllowList,
}

impl Settings {
    pub fn new(config: Config) -> Settings {
        let allow = AllowList::from_names(&config.access.allowed_groups);
        Settings { config, allow }
    }
}

/// What every connection shares.
pub struct Shared {
    pub handle: MonitorHandle,
    pub started: Instant,
    settings: RwLock<Arc<Settings>>,
    connections: AtomicUsize,
    /// The cache, the insurer link and the settler ([`Services`]); none in bare setups.
    pub services: Arc<Services>,
}

impl Shared {
    pub fn new(settings: Settings, handle: MonitorHandle, services: Arc<Services>) -> Shared {
        Shared {
            handle,
            started: Instant::now(),
            settings: RwLock::new(Arc::new(settings)),
            connections: AtomicUsize::new(0),
            services,
        }
    }

    /// The current settings.
    pub fn settings(&self) -> Arc<Settings> {
        match self.settings.read() {
            Ok(settings) => settings.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `settings` in place for new requests and connections (a reload).
    pub(super) fn replace_settings(&self, settings: Settings) {
        let settings = Arc::new(settings);
        match self.settings.write() {
            Ok(mut slot) => *slot = settings,
            Err(poisoned) => *poisoned.into_inner() = settings,
        }
    }

    /// Connections being served.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// A slot for one more connection, unless `max_connections` are served.
    pub(super) fn admit_connection(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let max = self.settings().config.socket.max_connections;
        let admitted = self
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        admitted.then(|| ConnectionSlot(self.clone()))
    }
}

/// One admitted connection; the count goes down when it drops.
pub(super) struct ConnectionSlot(Arc<Shared>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Listens for the server's shutdown signal (mini-redis's `Shutdown`).
pub struct Shutdown {
    is_shutdown: bool,
    notify: broadcast::Receiver<()>,
}

impl Shutdown {
    pub(super) fn new(notify: broadcast::Receiver<()>) -> Shutdown {
        Shutdown {
            is_shutdown: false,
            notify,
        }
    }

    /// Resolves once shutdown was signalled (at once if it already was).
    pub async fn recv(&mut self) {
        if self.is_shutdown {
            return;
        }
        let _ = self.notify.recv().await;
        self.is_shutdown = true;
    }
}
