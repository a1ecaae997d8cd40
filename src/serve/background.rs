//! The daemon's background work beside the socket, each a [`Worker`]: the sync (the
//! card-status feed and the catalogue every `insurer.sync_interval_s`; card-status news has
//! the cards in the readers judged again) and the resolver that reverses unanswered
//! money-moving calls at start-up and every `settle.resolve_interval_s`, and the shipper of
//! the journal to the hospital database (every `hospital.ship_interval_ms`, `crate::hospital`),
//! and a reader of each serial scanner `[scanners]` lists (`super::scanners`), and the
//! sign-in keeper: 9001 at start, again on a new business day or after a lapse, 9002 when
//! the daemon stops cleanly.
//! [`super::daemon::Daemon`] starts them through [`Background::start`].
//!
//! The sync never blocks a swipe: it has its own link, and the cache's writer lock is held
//! for one page at a time. Its errors are in `sync.status`.

use super::config::Config;
use super::handle::MonitorHandle;
use super::services::Services;
use super::worker::Worker;
use crate::cache::{Cache, Feed, sync_feed};
use crate::hospital::Shipper;
use crate::insurer::{InsurerClient, InsurerLink};
use crate::settle::service::Settler;
use std::sync::Arc;
use std::time::Duration;

/// Feed pages per sync turn and feed; the rest waits for the next turn.
const MAX_PAGES_PER_TURN: u32 = 100;

/// How often the sign-in keeper looks whether the link's sign-in is still fresh (a new
/// business day, a lapse the platform reported, a 9001 that failed).
const SIGN_IN_CHECK: Duration = Duration::from_secs(30);

/// The running background threads; each is stopped and joined when this is dropped.
pub struct Background {
    _sync: Option<Worker>,
    _resolver: Option<Worker>,
    _shipper: Option<Worker>,
    _scanners: Vec<Worker>,
    /// Last: its 9002 goes out after the others have stopped calling.
    _sign_in: Option<Worker>,
}

impl Background {
    /// Starts what `services` can run: the sync (a cache and an insurer link) and the
    /// resolver (a settler), and `shipper` when there is one, and the scanners. Card-status
    /// news re-judges the cards `handle` watches; scanned lines are published on it.
    pub fn start(
        services: &Services,
        config: &Config,
        handle: &MonitorHandle,
        shipper: Option<Shipper>,
    ) -> Background {
        let reassess = handle.clone();
        let sync = services.sync_link(config).map(|(cache, link)| {
            spawn_sync(
                cache,
                Box::new(link),
                services.sync_interval,
                config.insurer.page_size.max(1),
                Box::new(move || {
                    let _ = reassess.reassess();
                }),
            )
        });
        let resolver = services.settler.clone().map(|settler| {
            let interval = Duration::from_secs(config.settle.resolve_interval_s.max(1));
            spawn_resolver(settler, interval)
        });
        Background {
            _sync: sync,
            _resolver: resolver,
            _shipper: shipper.map(spawn_shipper),
            _scanners: config.scanners.start(handle),
            _sign_in: services.keeper_link(config).map(spawn_sign_in_keeper),
        }
    }
}

/// Keeps the link signed in: 9001 at once, then whenever the sign-in is no longer fresh;
/// 9002 when stopped. A link that is down is tried again every [`SIGN_IN_CHECK`] (calls
/// sign in by themselves too); a failure and the recovery are logged once each.
fn spawn_sign_in_keeper(mut link: InsurerClient) -> Worker {
    Worker::spawn("medcard-sign-in", move |stop| {
        let mut failing = false;
        while !stop.is_stopped() {
            if !link.signed_in() && !link.circuit_open() {
                match link.ensure_signed_in() {
                    Ok(()) if failing => {
                        tracing::info!("signed in to the insurer again");
                        failing = false;
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        tracing::warn!(error = %e, "cannot sign in to the insurer (9001); trying again every {}s", SIGN_IN_CHECK.as_secs());
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
            stop.sleep(SIGN_IN_CHECK);
        }
        if let Err(e) = link.sign_out() {
            tracing::warn!(error = %e, "cannot sign out of the insurer (9002); the sign-in lapses there by itself");
        }
    })
}

/// Ships the journal to the hospital database, turn after turn, until stopped.
fn spawn_shipper(mut shipper: Shipper) -> Worker {
    Worker::spawn("medcard-ship", move |stop| {
        while !stop.is_stopped() {
            let pause = shipper.turn();
            stop.sleep(pause);
        }
    })
}

/// The background sync: both feeds at once, then every `interval`, until stopped.
/// `on_card_events` is called after a turn that brought card-status events.
pub fn spawn_sync(
    cache: Arc<Cache>,
    mut link: Box<dyn InsurerLink>,
    interval: Duration,
    page_size: u32,
    on_card_events: Box<dyn Fn() + Send>,
) -> Worker {
    Worker::spawn("medcard-sync", move |stop| {
        tracing::info!(interval_s = interval.as_secs(), "background sync started");
        while !stop.is_stopped() {
            if sync_once(&cache, link.as_mut(), page_size) {
                on_card_events();
            }
            stop.sleep(interval);
        }
        tracing::info!("background sync stopped");
    })
}

/// Reverses unanswered calls at start-up (the journal's recovery) and every `interval`.
pub fn spawn_resolver(settler: Arc<Settler>, interval: Duration) -> Worker {
    Worker::spawn("medcard-resolver", move |stop| {
        let mut first = true;
        while !stop.is_stopped() {
            let pass = if first {
                settler.recover()
            } else {
                settler.resolve_all()
            };
            first = false;
            match pass {
                Ok(0) => {}
                Ok(left) => tracing::warn!(left, "calls still unanswered; retrying later"),
                Err(e) => tracing::error!(error = %e, "resolving the journal failed"),
            }
            stop.sleep(interval);
        }
    })
}

/// One turn: the card-status feed, then the catalogue. Errors are in the cache already.
/// True when card-status events were applied.
fn sync_once(cache: &Cache, link: &mut dyn InsurerLink, page_size: u32) -> bool {
    let mut card_events = false;
    for feed in [Feed::CardEvents, Feed::Catalogue] {
        match sync_feed(cache, link, feed, page_size, MAX_PAGES_PER_TURN) {
            Ok(report) if report.applied > 0 => {
                card_events |= feed == Feed::CardEvents;
                tracing::info!(
                    feed = feed.as_str(),
                    applied = report.applied,
                    version = report.to_version,
                    latest = report.latest_version,
                    "synced"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(feed = feed.as_str(), error = %e, "sync failed; the next turn resumes");
                // A dead insurer answers the second feed no better than the first.
                return card_events;
            }
        }
    }
    card_events
}
