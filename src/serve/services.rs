//! What the daemon opens once from its [`Config`] and shares: the cache, the swipe's insurer
//! link, the settlement service ([`Settler`], built from `[settle]`), the journal's shipper
//! to the hospital database (`[hospital]`), the daemon's [`Metrics`] (every link, the
//! settler and the assessor count into it), and the answers of `sync.status` and
//! `system.info` about them. [`super::daemon::Daemon`] opens them; the
//! assessor, the background threads and the socket use them.

use super::config::Config;
use super::monitor::Assessor;
use super::rpc::RequestError;
use super::verdicts::CacheAssessor;
use crate::cache::{Cache, CacheError, Feed, FeedState};
use crate::clock::{from_unix_seconds, rfc3339, unix_seconds};
use crate::hospital::{ShipMonitor, Shipper, Workstation};
use crate::insurer::{
    InsurerClient, MsgIdSource, Partition, RefusalRules, SequenceMsgIds, SharedBreaker,
    SharedSignIn,
};
use crate::metrics::Metrics;
use crate::reader::ReaderBackend;
use crate::settle::outbox::Outbox;
use crate::settle::service::{SettleOptions, Settler, load_policies};
use crate::verdict::VerdictPolicy;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The link's circuit breaker (the swipe's 1101 and settlement share it): transport failures
/// in a row, and how long it then fails fast.
const LINK_BREAKER_THRESHOLD: u32 = 5;
const LINK_BREAKER_COOLDOWN: Duration = Duration::from_secs(10);

/// What the daemon opened once from its configuration: the cache, the swipe's insurer link and
/// the settlement service, shared by the assessor, the background sync and resolver, and the
/// socket methods (`sync.status`, `system.info`, the settlement methods).
#[derive(Default)]
pub struct Services {
    pub cache: Option<Arc<Cache>>,
    /// The swipe's link (1101 with the bounded wait).
    pub link: Option<Arc<Mutex<InsurerClient>>>,
    /// The link's one circuit breaker, shared by the swipe's client and settlement's pool:
    /// what `system.info` reports is what every caller is told.
    pub breaker: Option<SharedBreaker>,
    /// The link's one sign-in (9001 / 9002), shared by the same clients and the keeper
    /// that signs in at start and daily (`super::background`).
    pub sign_in: Option<SharedSignIn>,
    /// How long a sign-in is used at most (8 hours), for reporting it.
    pub sign_ttl: Duration,
    pub insurer_url: String,
    pub sync_interval: Duration,
    /// Settlement (needs the link and the cache); `None` without them.
    pub settler: Option<Arc<Settler>>,
    /// `cache.insutype_preference`, for registrations by ID number.
    pub insutype_preference: Vec<String>,
    /// Why the configured cache could not be opened (or failed its start check): the cache
    /// is left out, verdicts come from the insurer alone and settlement is refused with it.
    pub cache_error: Option<String>,
    /// The journal's shipping to the hospital database (`[hospital] database`), as
    /// `system.info` reports it; `None` for a standalone workstation.
    pub hospital: Option<ShipMonitor>,
    /// A connection to the daemon's readers of its own, for `system.doctor`.
    pub doctor_readers: Option<Mutex<Box<dyn ReaderBackend + Send>>>,
    /// The daemon's own metrics registry (`GET /metrics`); off in bare setups.
    pub metrics: Metrics,
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
    /// Opens what `config` names. A cache that cannot be opened, or fails `PRAGMA
    /// quick_check`, is an error: logged with what to do, reported by `system.info`, and left
    /// out (the daemon still reads cards and asks the insurer; settlement is refused with the
    /// reason). Without an insurer link an absent cache file is not created.
    pub fn open(config: &Config) -> Services {
        let path = &config.cache.path;
        let wanted = !path.as_os_str().is_empty() && (config.insurer.enabled() || path.exists());
        let opened = wanted.then(|| open_checked(path));
        if let Some(Ok(cache)) = &opened {
            record_partition(cache, config);
        }
        let (cache, cache_error) = match opened {
            Some(Ok(cache)) => (Some(Arc::new(cache)), None),
            Some(Err(e)) => {
                tracing::error!(path = %path.display(), error = %e, "the cache cannot be used: verdicts from the insurer alone, settlement refused until it is repaired or restored (docs/operations.md)");
                (None, Some(e.to_string()))
            }
            None => (None, None),
        };
        let metrics = Metrics::new();
        let shared = config.insurer.enabled().then(|| SharedLink {
            breaker: SharedBreaker::new(LINK_BREAKER_THRESHOLD, LINK_BREAKER_COOLDOWN),
            sign_in: SharedSignIn::new(),
            metrics: metrics.clone(),
        });
        let link_config = config
            .insurer
            .link_config(Duration::from_millis(config.insurer.timeout_ms));
        let sign_ttl = link_config.sign_ttl;
        let link = shared.as_ref().map(|shared| {
            let client = link_client(config, link_config, cache.as_deref(), shared);
            Arc::new(Mutex::new(client))
        });
        Services {
            settler: shared
                .as_ref()
                .and_then(|shared| open_settler(config, cache.as_ref(), shared)),
            cache,
            link,
            breaker: shared.as_ref().map(|s| s.breaker.clone()),
            sign_in: shared.map(|s| s.sign_in),
            sign_ttl,
            insurer_url: config.insurer.url.trim().to_owned(),
            sync_interval: Duration::from_secs(config.insurer.sync_interval_s.max(1)),
            insutype_preference: config.cache.insutype_preference.clone(),
            cache_error,
            hospital: None,
            doctor_readers: None,
            metrics,
        }
    }

    /// The shipper of the journal to the hospital database, when `[hospital] database` is set
    /// and there is a journal: shipping is enabled in the cache file (the first time, every
    /// journal row already there goes into the outbox) and `system.info` reports it. Not
    /// connected yet.
    pub fn open_shipper(&mut self, config: &Config) -> Option<Shipper> {
        if !config.hospital.ships() {
            return None;
        }
        let Some(cache) = &self.cache else {
            tracing::error!("hospital.database is set but there is no journal (cache) to ship");
            return None;
        };
        let outbox = Outbox::new(cache.writer().clone());
        match outbox.enable(SystemTime::now()) {
            Ok(Some(backfilled)) => {
                tracing::info!(
                    backfilled,
                    "shipping to the hospital database enabled: the journal so far is in the outbox"
                );
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot enable shipping to the hospital database; the next start tries again");
                return None;
            }
        }
        let hospital = &config.hospital;
        let workstation = Workstation {
            name: hospital.workstation_name(),
            node: hospital.node.map(i32::from),
            node_count: Some(i32::from(hospital.node_count)),
            fixmedins_code: config.insurer.fixmedins_code.clone(),
            journal_id: cache.journal_id(),
        };
        let shipper = Shipper::new(hospital.settings(), workstation, outbox);
        self.hospital = Some(shipper.monitor());
        Some(shipper)
    }

    /// Why settlement cannot be offered: the journal's error, or the missing configuration.
    pub fn settlement_refusal(&self) -> RequestError {
        match &self.cache_error {
            Some(reason) if !self.insurer_url.is_empty() => {
                RequestError::JournalUnavailable(reason.clone())
            }
            _ => RequestError::SettlementNotConfigured,
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

    /// The background sync's own link (a cache and an insurer are both needed), with the
    /// cache it syncs into.
    pub fn sync_link(&self, config: &Config) -> Option<(Arc<Cache>, InsurerClient)> {
        let cache = self.cache.clone()?;
        if !config.insurer.enabled() {
            return None;
        }
        let mut link_config = config
            .insurer
            .link_config(Duration::from_millis(config.insurer.timeout_ms.max(5_000)));
        // The sync is paced by its interval: it has no use for a breaker.
        link_config.breaker_threshold = u32::MAX;
        let mut link = client_with_msgids(link_config, Some(&cache), config.partition())
            .with_refusals(refusal_rules(config))
            .with_metrics(self.metrics.clone());
        if let Some(sign_in) = &self.sign_in {
            link = link.with_sign_in(sign_in.clone());
        }
        Some((cache, link))
    }

    /// The sign-in keeper's own client of the link (`super::background`): the link's
    /// breaker and sign-in, a short timeout for the 9002 at shutdown.
    pub fn keeper_link(&self, config: &Config) -> Option<InsurerClient> {
        let shared = SharedLink {
            breaker: self.breaker.clone()?,
            sign_in: self.sign_in.clone()?,
            metrics: self.metrics.clone(),
        };
        let link_config = config
            .insurer
            .link_config(Duration::from_millis(config.insurer.timeout_ms));
        Some(link_client(
            config,
            link_config,
            self.cache.as_deref(),
            &shared,
        ))
    }

    /// `sync.status`: the feeds' watermarks, last success and last error.
    pub fn sync_status(&self) -> Value {
        let Some(cache) = &self.cache else {
            return json!({
                "configured": self.cache_error.is_some(),
                "insurer": !self.insurer_url.is_empty(),
                "error": self.cache_error,
            });
        };
        let feeds = match feed_states(cache) {
            Ok(feeds) => feeds,
            Err(e) => return json!({"configured": true, "error": format!("cache: {e}")}),
        };
        let now = unix_seconds(SystemTime::now());
        let last_ok = synced_at(&feeds);
        let last_error = feeds
            .iter()
            .filter(|f| f.last_error.is_some())
            .max_by_key(|f| f.last_error_at);
        let when = |seconds: Option<i64>| seconds.map(|s| rfc3339(from_unix_seconds(s)));
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
            return match &self.cache_error {
                Some(reason) => json!({"status": "error", "error": reason}),
                None => json!({"status": "not_configured"}),
            };
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

    /// `system.info`'s `journal` entry: whether the settlement journal (the cache file) takes
    /// writes — `ok`, or `error` with the reason and since when (a full disk, an I/O error, a
    /// file that cannot be used).
    pub fn journal_info(&self) -> Value {
        if let Some(reason) = &self.cache_error {
            return json!({"state": "error", "reason": reason});
        }
        let Some(cache) = &self.cache else {
            return json!({"state": "not_configured"});
        };
        match cache.writer().health().fault() {
            None => json!({"state": "ok"}),
            Some(fault) => json!({
                "state": "error",
                "reason": fault.reason,
                "since": rfc3339(from_unix_seconds(fault.since)),
            }),
        }
    }

    /// `system.info`'s `hospital` entry: the journal's shipping to the hospital database.
    pub fn hospital_info(&self) -> Value {
        match &self.hospital {
            Some(monitor) => json!(monitor.report(SystemTime::now())),
            None => json!({"state": "not_configured"}),
        }
    }

    /// `system.info`'s `insurer` entry: the link's one breaker, as callers meet it.
    pub fn insurer_info(&self) -> Value {
        let Some(breaker) = &self.breaker else {
            return json!({"status": "not_configured"});
        };
        let state = breaker.state();
        let mut info = json!({
            "status": "configured", "url": self.insurer_url, "circuit": state.as_str(),
            "sign_in": self.sign_in.as_ref().map(|s| s.report(self.sign_ttl)),
        });
        if let crate::insurer::CircuitState::Open { retry_in_ms } = state {
            info["retry_in_ms"] = json!(retry_in_ms);
        }
        info
    }
}

/// The sync state of each feed the cache keeps (the card events, the catalogue).
pub fn feed_states(cache: &Cache) -> Result<Vec<FeedState>, CacheError> {
    [Feed::CardEvents, Feed::Catalogue]
        .into_iter()
        .map(|feed| cache.feed_state(feed.as_str()))
        .collect()
}

/// When the cache was last synced (Unix seconds): both feeds must have succeeded for it to
/// be synced at a time; `None` while one never has.
pub fn synced_at(feeds: &[FeedState]) -> Option<i64> {
    feeds
        .iter()
        .map(|f| f.last_ok)
        .collect::<Option<Vec<i64>>>()
        .and_then(|oks| oks.into_iter().min())
}

/// Records in the cache the msgid partition the configuration gives, so that `medcard sync`
/// on the same file numbers from it too.
fn record_partition(cache: &Cache, config: &Config) {
    if let Err(e) = cache.writer().record_partition(config.partition()) {
        tracing::warn!(error = %e, "the msgid partition cannot be recorded in the cache; medcard sync must be given --node");
    }
}

/// The cache at `path`, opened and passing `PRAGMA quick_check`.
fn open_checked(path: &std::path::Path) -> Result<Cache, crate::cache::CacheError> {
    let cache = Cache::open(path)?;
    cache.quick_check()?;
    tracing::info!(path = %path.display(), "cache opened");
    Ok(cache)
}

/// The refusal rules: `insurer.refusals` (a region's file) before the built-in ones. A file
/// that cannot be used is a configuration error (`medcard config check`); here it is
/// logged and the built-in rules are used.
pub fn refusal_rules(config: &Config) -> Arc<RefusalRules> {
    let path = &config.insurer.refusals;
    RefusalRules::with_region_file(Some(path)).unwrap_or_else(|e| {
        tracing::error!(error = %e, "insurer.refusals unusable: the built-in refusal rules only");
        RefusalRules::built_in()
    })
}

/// What the clients of the daemon's one link share: its circuit breaker, its sign-in and
/// the daemon's metrics.
struct SharedLink {
    breaker: SharedBreaker,
    sign_in: SharedSignIn,
    metrics: Metrics,
}

/// A client of the daemon's link: the cache's msgids, the refusal rules, the shared breaker,
/// sign-in and metrics.
fn link_client(
    config: &Config,
    link_config: crate::insurer::InsurerConfig,
    cache: Option<&Cache>,
    shared: &SharedLink,
) -> InsurerClient {
    client_with_msgids(link_config, cache, config.partition())
        .with_refusals(refusal_rules(config))
        .with_breaker(shared.breaker.clone())
        .with_sign_in(shared.sign_in.clone())
        .with_metrics(shared.metrics.clone())
}

/// A client whose msgids come from the cache's persistent sequence when there is a cache, so
/// that the daemon and a `medcard sync` run never send the same msgid; always from the
/// workstation's `partition` of each second, so that no other workstation of the hospital
/// sends it either.
pub fn client_with_msgids(
    config: crate::insurer::InsurerConfig,
    cache: Option<&Cache>,
    partition: Partition,
) -> InsurerClient {
    let fixmedins_code = config.fixmedins_code.clone();
    let client = InsurerClient::new(config);
    let msgids: Box<dyn MsgIdSource> = match cache {
        Some(cache) => Box::new(crate::cache::CacheMsgIds::new(
            &fixmedins_code,
            cache.writer().clone(),
            partition,
        )),
        None => Box::new(SequenceMsgIds::in_partition(&fixmedins_code, partition)),
    };
    client.with_msgids(msgids)
}

/// The settlement service for `config`, when both the insurer link and the cache are there;
/// its links share the daemon's breaker and sign-in.
fn open_settler(
    config: &Config,
    cache: Option<&Arc<Cache>>,
    shared: &SharedLink,
) -> Option<Arc<Settler>> {
    let cache = cache?.clone();
    if !config.insurer.enabled() {
        return None;
    }
    let settle = &config.settle;
    let policies = match load_policies(&settle.policy_dir, &settle.default_policy) {
        Ok(policies) => policies,
        Err(e) => {
            tracing::error!(error = %e, "settlement disabled: the policies cannot be loaded");
            return None;
        }
    };
    let links = (0..settle.links.max(1))
        .map(|_| {
            let mut link = config
                .insurer
                .link_config(Duration::from_millis(settle.timeout_ms));
            link.retries = 2;
            link_client(config, link, Some(&cache), shared)
        })
        .collect();
    let options = SettleOptions {
        hosp_lv: settle.hosp_lv.clone(),
        med_type: settle.med_type.clone(),
        default_policy: settle.default_policy.clone(),
        reversal_tries: settle.reversal_tries.max(1),
        max_bill_lines: settle.max_bill_lines.max(1),
        max_upload_lines: settle.max_upload_lines.max(1),
        partition: config.partition(),
        metrics: shared.metrics.clone(),
        ..SettleOptions::default()
    };
    Some(Arc::new(Settler::new(cache, links, policies, options)))
}
