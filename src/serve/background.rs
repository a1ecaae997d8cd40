//! The daemon's background work beside the socket: the sync thread (the card-status feed and
//! the catalogue; card-status news has the cards in the readers judged again) and the
//! resolver that reverses unanswered money-moving calls at start-up and every
//! `settle.resolve_interval_s`. `medcard serve`, `medcard demo` and `medcard bench settle`
//! start them the same way, through [`Background::start`].

use super::config::Config;
use super::handle::MonitorHandle;
use super::settlement::ResolverThread;
use super::verdicts::{Services, SyncThread};
use std::time::Duration;

/// The running background threads; each is stopped and joined when this is dropped.
pub struct Background {
    _sync: Option<SyncThread>,
    _resolver: Option<ResolverThread>,
}

impl Background {
    /// Starts what `services` can run: the sync (a cache and an insurer link) and the
    /// resolver (a settler). Card-status news re-judges the cards `handle` watches.
    pub fn start(services: &Services, config: &Config, handle: &MonitorHandle) -> Background {
        let reassess = handle.clone();
        let sync = services.start_sync(
            config,
            Box::new(move || {
                let _ = reassess.reassess();
            }),
        );
        let resolver = services.settler.clone().map(|settler| {
            let interval = Duration::from_secs(config.settle.resolve_interval_s.max(1));
            ResolverThread::spawn(settler, interval)
        });
        Background {
            _sync: sync,
            _resolver: resolver,
        }
    }
}
