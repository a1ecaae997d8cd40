//! Verdicts in the daemon: the [`CacheAssessor`] judges every card the monitor reads (the
//! cache's card status and person, a fresh 1101 by card with a bounded wait when the insurer
//! link is configured, then [`crate::verdict::assess`]), and the [`SyncThread`] pulls the
//! card-status feed and the catalogue into the cache every `insurer.sync_interval_s`.
//!
//! - With the insurer up, 1101 answers (stored in the cache) give `source: "insurer"`; a
//!   business refusal means the insurer knows no such holder.
//! - With the insurer down (timeout, garbage, circuit open), the verdict comes from the cache
//!   with `source: "cache"` and `stale_seconds`. The swipe never waits longer than
//!   `insurer.timeout_ms` per attempt (a lapsed sign-in costs one more attempt).
//! - The sync thread never blocks a swipe: it has its own link, and the cache's writer lock
//!   is held for one page at a time. Its errors are in `sync.status`.
//!
//! Card numbers and ID numbers reach the logs masked only.

use super::config::Config;
use super::monitor::Assessor;
use crate::cache::{Cache, Feed, sync_feed};
use crate::card::CardRead;
use crate::clock::{Date, rfc3339};
use crate::insurer::{InsurerClient, InsurerLink, LinkError};
use crate::mask;
use crate::verdict::{Assessment, FactSource, VerdictFacts, VerdictPolicy, assess};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// Feed pages per sync turn and feed; the rest waits for the next turn.
const MAX_PAGES_PER_TURN: u32 = 100;
/// The swipe link's circuit breaker: failures in a row, and how long it then fails fast.
const SWIPE_BREAKER_THRESHOLD: u32 = 3;
const SWIPE_BREAKER_COOLDOWN: Duration = Duration::from_secs(10);

/// What the daemon has for verdicts: the cache and the insurer link, shared by the assessor,
/// the sync thread and the socket methods (`sync.status`, `system.info`).
#[derive(Default)]
pub struct Services {
    pub cache: Option<Arc<Cache>>,
    /// The swipe's link (1101 with the bounded wait).
    pub link: Option<Arc<Mutex<InsurerClient>>>,
    pub insurer_url: String,
    pub sync_interval: Duration,
    /// Settlement (needs the link and the cache); `None` without them.
    pub settler: Option<Arc<crate::settle::service::Settler>>,
    /// `cache.insutype_preference`, for registrations by ID number.
    pub insutype_preference: Vec<String>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("cache", &self.cache.as_ref().map(|c| c.path().to_owned()))
            .field("insurer_url", &self.insurer_url)
            .finish()
    }
}

impl Services {
    /// Opens what `config` names. A cache that cannot be opened is logged and left out (the
    /// daemon still reads cards); without an insurer link an absent cache file is not created.
    pub fn open(config: &Config) -> Services {
        let path = &config.cache.path;
        let wanted = !path.as_os_str().is_empty() && (config.insurer.enabled() || path.exists());
        let cache = if wanted {
            match Cache::open(path) {
                Ok(cache) => {
                    tracing::info!(path = %path.display(), "cache opened");
                    Some(Arc::new(cache))
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot open the cache; verdicts without it");
                    None
                }
            }
        } else {
            None
        };
        let link = config.insurer.enabled().then(|| {
            let mut link_config = config
                .insurer
                .link_config(Duration::from_millis(config.insurer.timeout_ms));
            link_config.breaker_threshold = SWIPE_BREAKER_THRESHOLD;
            link_config.breaker_cooldown = SWIPE_BREAKER_COOLDOWN;
            Arc::new(Mutex::new(client_with_msgids(
                link_config,
                cache.as_deref(),
            )))
        });
        Services {
            settler: super::settlement::open_settler(config, cache.as_ref()),
            cache,
            link,
            insurer_url: config.insurer.url.trim().to_owned(),
            sync_interval: Duration::from_secs(config.insurer.sync_interval_s.max(1)),
            insutype_preference: config.cache.insutype_preference.clone(),
        }
    }

    /// The assessor for the monitor, when there is anything to judge by.
    pub fn assessor(&self, config: &Config) -> Option<Arc<dyn Assessor>> {
        if self.cache.is_none() && self.link.is_none() {
            return None;
        }
        Some(Arc::new(CacheAssessor {
            cache: self.cache.clone(),
            link: self.link.clone(),
            policy: VerdictPolicy {
                hospital_admdvs: config.insurer.mdtrtarea_admvs.trim().to_owned(),
                stale_limit: Duration::from_secs(config.cache.stale_limit_s),
                insutype_preference: config.cache.insutype_preference.clone(),
            },
        }))
    }

    /// Starts the background sync (a link and a cache are both needed); `on_card_events` is
    /// called after a turn that brought card-status events.
    pub fn start_sync(
        &self,
        config: &Config,
        on_card_events: Box<dyn Fn() + Send>,
    ) -> Option<SyncThread> {
        let cache = self.cache.clone()?;
        if !config.insurer.enabled() {
            return None;
        }
        let mut link_config = config
            .insurer
            .link_config(Duration::from_millis(config.insurer.timeout_ms.max(5_000)));
        // The sync is paced by its interval: it has no use for a breaker.
        link_config.breaker_threshold = u32::MAX;
        let link = client_with_msgids(link_config, Some(&cache));
        Some(SyncThread::spawn(
            cache,
            Box::new(link),
            self.sync_interval,
            config.insurer.page_size.max(1),
            on_card_events,
        ))
    }

    /// `sync.status`: the feeds' watermarks, last success and last error.
    pub fn sync_status(&self) -> Value {
        let Some(cache) = &self.cache else {
            return json!({"configured": false, "insurer": !self.insurer_url.is_empty()});
        };
        let mut feeds = Vec::new();
        for feed in [Feed::CardEvents, Feed::Catalogue] {
            match cache.feed_state(feed.as_str()) {
                Ok(state) => feeds.push(state),
                Err(e) => {
                    return json!({"configured": true, "error": format!("cache: {e}")});
                }
            }
        }
        let now = crate::clock::unix_seconds(SystemTime::now());
        // Both feeds must have succeeded for the cache to be "synced" at a time.
        let last_ok = feeds
            .iter()
            .map(|f| f.last_ok)
            .collect::<Option<Vec<i64>>>()
            .and_then(|oks| oks.into_iter().min());
        let last_error = feeds
            .iter()
            .filter(|f| f.last_error.is_some())
            .max_by_key(|f| f.last_error_at);
        let when =
            |seconds: Option<i64>| seconds.map(|s| rfc3339(crate::clock::from_unix_seconds(s)));
        let versions: serde_json::Map<String, Value> = feeds
            .iter()
            .map(|f| (f.feed.clone(), json!(f.version)))
            .collect();
        let latest: serde_json::Map<String, Value> = feeds
            .iter()
            .map(|f| (f.feed.clone(), json!(f.latest_version)))
            .collect();
        json!({
            "configured": true,
            "insurer": !self.insurer_url.is_empty(),
            "interval_s": self.sync_interval.as_secs(),
            "last_ok": when(last_ok),
            "lag_seconds": last_ok.map(|ok| (now - ok).max(0)),
            "versions": versions,
            "latest_versions": latest,
            "last_error": last_error.and_then(|f| f.last_error.clone()),
            "last_error_at": when(last_error.and_then(|f| f.last_error_at)),
            "feeds": feeds,
        })
    }

    /// `system.info`'s `cache` entry.
    pub fn cache_info(&self) -> Value {
        let Some(cache) = &self.cache else {
            return json!({"status": "not_configured"});
        };
        match cache.stats() {
            Ok(stats) => json!({
                "status": "ok",
                "path": stats.path,
                "file_bytes": stats.file_bytes,
                "persons": stats.persons,
                "cards": stats.cards,
                "card_events": stats.card_events,
                "catalogue": stats.catalogue,
            }),
            Err(e) => json!({"status": "error", "path": cache.path(), "error": e.to_string()}),
        }
    }

    /// `system.info`'s `insurer` entry.
    pub fn insurer_info(&self) -> Value {
        let Some(link) = &self.link else {
            return json!({"status": "not_configured"});
        };
        // A swipe may hold the link right now: say so rather than wait.
        let circuit = match link.try_lock() {
            Ok(client) if client.circuit_open() => "open",
            Ok(_) => "closed",
            Err(_) => "busy",
        };
        json!({"status": "configured", "url": self.insurer_url, "circuit": circuit})
    }
}

/// Judges cards from the cache and, when configured, a fresh 1101.
pub struct CacheAssessor {
    pub cache: Option<Arc<Cache>>,
    pub link: Option<Arc<Mutex<InsurerClient>>>,
    pub policy: VerdictPolicy,
}

impl std::fmt::Debug for CacheAssessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheAssessor")
            .field("cache", &self.cache.as_ref().map(|c| c.path().to_owned()))
            .field("link", &self.link.is_some())
            .field("policy", &self.policy)
            .finish()
    }
}

/// What the insurer said about a card on this swipe.
enum Fresh {
    /// Not asked (no link) or no usable answer: fall back to the cache.
    Unavailable,
    /// The insurer answered.
    Answer(Result<crate::insurer::PersonInfo, LinkError>),
}

impl CacheAssessor {
    fn ask_insurer(&self, card_no: &str, card_sn: &str) -> Fresh {
        let Some(link) = &self.link else {
            return Fresh::Unavailable;
        };
        let mut client = link.lock().unwrap_or_else(PoisonError::into_inner);
        match client.person_by_card(card_no, card_sn) {
            Ok(person) => Fresh::Answer(Ok(person)),
            Err(e @ LinkError::Business { .. }) => Fresh::Answer(Err(e)),
            Err(e) => {
                tracing::warn!(card_no = %mask::certno(card_no), error = %e, "1101 unanswered; the verdict comes from the cache");
                Fresh::Unavailable
            }
        }
    }
}

impl Assessor for CacheAssessor {
    fn assess(&self, card: &CardRead) -> Option<Assessment> {
        let card_no = card
            .card_no
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())?;
        let card_sn = card.card_id.as_deref().unwrap_or_default();
        let cache = self.cache.as_deref();
        let record = cache.and_then(|cache| match cache.card_status(card_no) {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(error = %e, "cache: card status unreadable");
                None
            }
        });
        let facts = match self.ask_insurer(card_no, card_sn) {
            Fresh::Answer(Ok(person)) => {
                if let Some(cache) = cache {
                    let stored = cache.writer().store_person_for_card(
                        card_no,
                        Some(card_sn).filter(|sn| !sn.is_empty()),
                        &person,
                        SystemTime::now(),
                    );
                    if let Err(e) = stored {
                        tracing::warn!(error = %e, "cache: the 1101 answer was not stored");
                    }
                }
                VerdictFacts {
                    card: record,
                    person: Some(person),
                    fetched_at: None,
                    source: FactSource::Insurer,
                }
            }
            Fresh::Answer(Err(e)) => {
                tracing::info!(card_no = %mask::certno(card_no), error = %e, "1101 refused");
                VerdictFacts {
                    card: record,
                    person: None,
                    fetched_at: None,
                    source: FactSource::Insurer,
                }
            }
            Fresh::Unavailable => {
                let cache = cache?;
                let cached = match cache.person_for_card(card_no) {
                    Ok(cached) => cached,
                    Err(e) => {
                        tracing::warn!(error = %e, "cache: person unreadable");
                        None
                    }
                };
                VerdictFacts {
                    card: record,
                    fetched_at: cached.as_ref().map(|c| c.fetched_at),
                    person: cached.map(|c| c.info),
                    source: FactSource::Cache,
                }
            }
        };
        let now = SystemTime::now();
        let today = Date::at(now);
        Some(assess(card, &facts, &self.policy, today, now))
    }
}

/// The background sync: both feeds every interval, until stopped or dropped.
pub struct SyncThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SyncThread {
    /// Starts syncing at once, then every `interval`.
    pub fn spawn(
        cache: Arc<Cache>,
        mut link: Box<dyn InsurerLink>,
        interval: Duration,
        page_size: u32,
        on_card_events: Box<dyn Fn() + Send>,
    ) -> SyncThread {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("medcard-sync".into())
            .spawn(move || {
                tracing::info!(interval_s = interval.as_secs(), "background sync started");
                while !flag.load(Ordering::Relaxed) {
                    if sync_once(&cache, link.as_mut(), page_size) {
                        on_card_events();
                    }
                    sleep_unless_stopped(&flag, interval);
                }
                tracing::info!("background sync stopped");
            });
        let thread = match spawned {
            Ok(thread) => Some(thread),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the sync thread");
                None
            }
        };
        SyncThread { stop, thread }
    }
}

impl Drop for SyncThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the sync thread panicked");
        }
    }
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

pub(super) fn sleep_unless_stopped(stop: &AtomicBool, total: Duration) {
    let slice = Duration::from_millis(100);
    let mut left = total;
    while !left.is_zero() && !stop.load(Ordering::Relaxed) {
        let step = left.min(slice);
        std::thread::sleep(step);
        left -= step;
    }
}

/// A client whose msgids come from the cache's persistent sequence when there is a cache, so
/// that the daemon and a `medcard sync` run never send the same msgid.
pub(super) fn client_with_msgids(
    config: crate::insurer::InsurerConfig,
    cache: Option<&Cache>,
) -> InsurerClient {
    let fixmedins_code = config.fixmedins_code.clone();
    let client = InsurerClient::new(config);
    match cache {
        Some(cache) => client.with_msgids(Box::new(crate::cache::CacheMsgIds::new(
            &fixmedins_code,
            cache.writer().clone(),
        ))),
        None => client,
    }
}
