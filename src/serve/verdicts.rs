//! Verdicts in the daemon: the [`CacheAssessor`] judges every card the monitor reads (the
//! cache's card status and person, a fresh 1101 by card with a bounded wait when the insurer
//! link is configured, then [`crate::verdict::assess`]).
//!
//! - With the insurer up, 1101 answers (stored in the cache) give `source: "insurer"`; a
//!   business refusal means the insurer knows no such holder.
//! - With the insurer down (timeout, garbage, circuit open), the verdict comes from the cache
//!   with `source: "cache"` and `stale_seconds`. The swipe never waits longer than
//!   `insurer.timeout_ms` per attempt (a lapsed sign-in costs one more attempt).
//!
//! The background sync that keeps the cache fresh is in [`super::background`].
//! Card numbers and ID numbers reach the logs masked only.

use super::monitor::Assessor;
use crate::cache::Cache;
use crate::card::CardRead;
use crate::clock::Date;
use crate::insurer::{InsurerClient, InsurerLink, LinkError};
use crate::mask;
use crate::verdict::{Assessment, FactSource, VerdictFacts, VerdictPolicy, assess};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

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
