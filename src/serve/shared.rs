//! What every connection of the daemon shares ([`Shared`]): the [`MonitorHandle`] (the one
//! owner of the readers lives behind it), the [`Services`] (cache, insurer link, settler),
//! the settings (replaced as a whole on reload) and the connection counts (in all and per
//! caller's uid); and the
//! [`Shutdown`] signal each connection listens for. The server, the connections and the
//! method handlers all read it; it points at nothing of theirs.

use super::bills::BillBoard;
use super::config::Config;
use super::credentials::CredentialSessions;
use super::handle::MonitorHandle;
use super::heavy::HeavyGate;
use super::peer::{AllowList, Peer};
use super::rpc::RequestError;
use super::services::Services;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
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
    /// Connections per local caller's uid (admission and release under this lock).
    connections_per_uid: Mutex<HashMap<u32, usize>>,
    /// The cache, the insurer link and the settler ([`Services`]); none in bare setups.
    pub services: Arc<Services>,
    /// Turns for heavy requests (`socket.max_heavy_requests` at start).
    pub heavy: HeavyGate,
    /// The bills the HIS offered for paying at a kiosk.
    pub bills: BillBoard,
    /// The credentials other than cards patients presented (`credential.present`).
    pub credentials: CredentialSessions,
    /// Where the web endpoint listens, once it does.
    pub web_addr: std::sync::OnceLock<std::net::SocketAddr>,
    /// Where `metrics.listen`'s listener listens, once it does.
    pub metrics_addr: std::sync::OnceLock<std::net::SocketAddr>,
}

impl Shared {
    pub fn new(settings: Settings, handle: MonitorHandle, services: Arc<Services>) -> Shared {
        // Weak: the gate must not keep the cache open; it is closed (its WAL checkpointed
        // into the file) when the daemon drops its services at shutdown.
        let cache = services.cache.as_ref().map(Arc::downgrade);
        let heavy = HeavyGate::new(
            settings.config.socket.max_heavy_requests,
            Arc::new(move || {
                if let Some(cache) = cache.as_ref().and_then(std::sync::Weak::upgrade)
                    && let Err(e) = cache.writer().release_memory()
                {
                    tracing::debug!(error = %e, "the cache's page cache was not freed");
                }
            }),
        );
        let bills = BillBoard::open(services.cache.as_deref());
        Shared {
            handle,
            started: Instant::now(),
            settings: RwLock::new(Arc::new(settings)),
            connections: AtomicUsize::new(0),
            connections_per_uid: Mutex::new(HashMap::new()),
            services,
            heavy,
            bills,
            credentials: CredentialSessions::default(),
            web_addr: std::sync::OnceLock::new(),
            metrics_addr: std::sync::OnceLock::new(),
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

    /// A slot for one more connection from `peer`, unless `max_connections` are served (or
    /// all but the `reserved_for_allowed_groups` ones, for a caller in no allowed group) or
    /// the same local user already holds all but `reserved_for_other_users` of them.
    pub(super) fn admit_connection(
        self: &Arc<Self>,
        peer: &Peer,
    ) -> Result<ConnectionSlot, RequestError> {
        let settings = self.settings();
        let socket = &settings.config.socket;
        let max = socket.max_connections;
        let per_uid = max.saturating_sub(socket.reserved_for_other_users).max(1);
        let open_to_peer = if settings.allow.lists(peer) {
            max
        } else {
            max.saturating_sub(settings.config.reserved_for_allowed_groups())
        };
        let transport = peer.transport();
        let metrics = &self.services.metrics;
        let mut by_uid = self.lock_per_uid();
        if self.connections.load(Ordering::Acquire) >= open_to_peer {
            metrics.connection_refused(transport);
            return Err(RequestError::TooManyConnections(max));
        }
        let uid = match peer {
            Peer::Local { uid, .. } => Some(*uid),
            Peer::Tcp(_) | Peer::Web { .. } | Peer::Unknown => None,
        };
        if let Some(uid) = uid {
            let held = by_uid.entry(uid).or_default();
            if *held >= per_uid {
                metrics.connection_refused(transport);
                return Err(RequestError::TooManyForUser { uid, max: per_uid });
            }
            *held += 1;
        }
        self.connections.fetch_add(1, Ordering::AcqRel);
        metrics.connection_opened(transport);
        Ok(ConnectionSlot {
            shared: self.clone(),
            uid,
            transport,
        })
    }

    fn lock_per_uid(&self) -> std::sync::MutexGuard<'_, HashMap<u32, usize>> {
        self.connections_per_uid
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// One admitted connection; the counts go down when it drops.
pub(in crate::serve) struct ConnectionSlot {
    shared: Arc<Shared>,
    uid: Option<u32>,
    transport: &'static str,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut by_uid = self.shared.lock_per_uid();
        if let Some(uid) = self.uid
            && let Some(held) = by_uid.get_mut(&uid)
        {
            *held = held.saturating_sub(1);
            if *held == 0 {
                by_uid.remove(&uid);
            }
        }
        self.shared.connections.fetch_sub(1, Ordering::AcqRel);
        self.shared
            .services
            .metrics
            .connection_closed(self.transport);
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
