//! Verdicts in the daemon: the [`CacheAssessor`] judges every card the monitor reads (the
//! cache's card status and person, a fresh 1101 by card with a bounded wait when the insurer
//! link is configured, then [`crate::verdict::assess`]).
//!
//! - With the insurer up, 1101 answers (stored in the cache) give `source: "insurer"`; a
//!   refusal about the card or its holder (挂失, 补换, 注销, 未参保, 暂停参保, 查无此人, by
//!   the refusal rules) is that verdict with the platform's text — no card-status feed
//!   needed — and a lost, replaced or cancelled card is remembered in the cache.
//! - With the insurer down (timeout, garbage, circuit open) or refusing to answer (busy, a
//!   refusal no rule knows), the verdict comes from the cache with `source: "cache"`,
//!   `stale_seconds` and the platform's text, if any, in `insurer_err_msg`. The swipe never
//!   waits longer than `insurer.timeout_ms` per attempt (a lapsed sign-in or a duplicate
//!   msgid costs one more attempt).
//!
//! The background sync that keeps the cache fresh is in [`super::background`].
//! Card numbers and ID numbers reach the logs masked only.

use super::monitor::Assessor;
use crate::cache::{Cache, CardRecord, CardStatus};
use crate::card::CardRead;
use crate::clock::Date;
use crate::insurer::{InsurerClient, InsurerLink, LinkError, PersonInfo, Refusal};
use crate::mask;
use crate::verdict::{Assessment, FactSource, InsurerRefusal, VerdictFacts, VerdictPolicy, assess};
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
    Answer(PersonInfo),
    /// The insurer refused: about the card or its holder (a verdict), or not (busy, a text
    /// no rule knows: the insurer could not answer, the cache decides).
    Refused(InsurerRefusal),
}

impl CacheAssessor {
    fn ask_insurer(&self, card_no: &str, card_sn: &str) -> Fresh {
        let Some(link) = &self.link else {
            return Fresh::Unavailable;
        };
        let mut client = link.lock().unwrap_or_else(PoisonError::into_inner);
        match client.person_by_card(card_no, card_sn) {
            Ok(person) => Fresh::Answer(person),
            Err(LinkError::Business { err_msg, .. }) => Fresh::Refused(InsurerRefusal {
                refusal: client.refusal(&err_msg),
                err_msg,
            }),
            Err(LinkError::Busy { err_msg, .. }) => Fresh::Refused(InsurerRefusal {
                refusal: Refusal::Transient,
                err_msg,
            }),
            Err(e) => {
                tracing::warn!(card_no = %mask::certno(card_no), error = %e, "1101 unanswered; the verdict comes from the cache");
                Fresh::Unavailable
            }
        }
    }

    /// The card's row in the cache, if any (an unreadable cache is logged, not fatal).
    fn card_record(&self, card_no: &str) -> Option<CardRecord> {
        match self.cache.as_deref()?.card_status(card_no) {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(error = %e, "cache: card status unreadable");
                None
            }
        }
    }

    /// What the cache learns from a 1101 answer: the person, or the card's state.
    fn learn(&self, card: &CardRead, card_no: &str, card_sn: &str, fresh: &Fresh) {
        let Some(cache) = self.cache.as_deref() else {
            return;
        };
        let card_sn = Some(card_sn).filter(|sn| !sn.is_empty());
        let stored = match fresh {
            Fresh::Answer(person) => {
                cache
                    .writer()
                    .store_person_for_card(card_no, card_sn, person, SystemTime::now())
            }
            Fresh::Refused(refused) => {
                let Some(status) = card_status(refused.refusal) else {
                    return;
                };
                let certno = card.holder.certno.as_deref().unwrap_or_default();
                cache
                    .writer()
                    .learn_card_status(card_no, card_sn, certno, status)
            }
            Fresh::Unavailable => return,
        };
        if let Err(e) = stored {
            tracing::warn!(error = %e, "cache: the 1101 answer was not stored");
        }
    }

    /// The facts from the cache (the insurer down, or refusing to answer).
    fn cached_facts(
        &self,
        card_no: &str,
        record: Option<CardRecord>,
        refusal: Option<InsurerRefusal>,
    ) -> Option<VerdictFacts> {
        let cache = self.cache.as_deref()?;
        let cached = match cache.person_for_card(card_no) {
            Ok(cached) => cached,
            Err(e) => {
                tracing::warn!(error = %e, "cache: person unreadable");
                None
            }
        };
        Some(VerdictFacts {
            card: record,
            fetched_at: cached.as_ref().map(|c| c.fetched_at),
            person: cached.map(|c| c.info),
            source: FactSource::Cache,
            refusal,
        })
    }
}

/// The card state a refusal tells (挂失 / 补换 / 注销), to remember.
fn card_status(refusal: Refusal) -> Option<CardStatus> {
    match refusal {
        Refusal::Lost => Some(CardStatus::Lost),
        Refusal::Replaced => Some(CardStatus::Replaced),
        Refusal::Cancelled => Some(CardStatus::Cancelled),
        _ => None,
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
        let fresh = self.ask_insurer(card_no, card_sn);
        self.learn(card, card_no, card_sn, &fresh);
        let record = self.card_record(card_no);
        let insurer = |person, refusal| VerdictFacts {
            card: record.clone(),
            person,
            fetched_at: None,
            source: FactSource::Insurer,
            refusal,
        };
        let facts = match fresh {
            Fresh::Answer(person) => insurer(Some(person), None),
            Fresh::Refused(refused) if refused.code().is_some() => {
                tracing::info!(card_no = %mask::certno(card_no), err_msg = %refused.err_msg, "1101 refused: about the card or its holder");
                insurer(None, Some(refused))
            }
            Fresh::Refused(refused) => {
                tracing::warn!(card_no = %mask::certno(card_no), err_msg = %refused.err_msg, "1101 refused, not about the card; the verdict comes from the cache");
                self.cached_facts(card_no, record.clone(), Some(refused))?
            }
            Fresh::Unavailable => self.cached_facts(card_no, record.clone(), None)?,
        };
        let now = SystemTime::now();
        let today = Date::at(now);
        Some(assess(card, &facts, &self.policy, today, now))
    }
}
