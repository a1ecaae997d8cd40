//! Paging the insurer's feeds (card status, catalogue) into the cache. Each page is applied
//! in one transaction together with the feed's watermark, and the next page is asked for
//! from the stored watermark: an interrupted sync resumes where the last committed page
//! ended, with no duplicates (events are keyed by version) and no gaps.

use super::{Cache, CacheError};
use crate::insurer::{InsurerLink, LinkError};
use serde::Serialize;

/// A feed the cache follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Feed {
    /// The card-status feed (挂失, 解挂, 补换卡, 注销).
    CardEvents,
    /// The 医保目录 changes.
    Catalogue,
}

impl Feed {
    /// The feed's key in `sync_state`.
    pub fn as_str(self) -> &'static str {
        match self {
            Feed::CardEvents => "card_events",
            Feed::Catalogue => "catalogue",
        }
    }
}

/// What one sync run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub feed: Feed,
    /// Pages fetched and applied.
    pub pages: u32,
    /// Events or items that were new to the cache.
    pub applied: usize,
    /// The watermark before and after.
    pub from_version: u64,
    pub to_version: u64,
    /// The insurer's newest version, as last reported.
    pub latest_version: u64,
    /// False when `max_pages` stopped the run first.
    pub caught_up: bool,
}

/// Why a sync run stopped early. Pages applied before the failure stay applied.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("sync of {feed} stopped after {pages_applied} page(s): {source}")]
    Link {
        feed: &'static str,
        pages_applied: u32,
        source: LinkError,
    },
    #[error("sync: {0}")]
    Cache(#[from] CacheError),
}

/// One fetched page, reduced to what the driver needs.
struct Fetched {
    count: usize,
    last_version: Option<u64>,
    latest_version: u64,
    applied: usize,
}

impl Fetched {
    /// A page of entries with `versions` (of which `applied` were new) when the feed is at
    /// `latest_version`.
    fn of(
        versions: impl ExactSizeIterator<Item = u64>,
        latest_version: u64,
        applied: usize,
    ) -> Fetched {
        Fetched {
            count: versions.len(),
            last_version: versions.max(),
            latest_version,
            applied,
        }
    }
}

/// Pages `feed` from the stored watermark until caught up (or `max_pages` pages).
pub fn sync_feed(
    cache: &Cache,
    link: &mut dyn InsurerLink,
    feed: Feed,
    page_size: u32,
    max_pages: u32,
) -> Result<SyncReport, SyncError> {
    let page_size = page_size.max(1);
    let from_version = cache.feed_state(feed.as_str())?.version;
    let mut report = SyncReport {
        feed,
        pages: 0,
        applied: 0,
        from_version,
        to_version: from_version,
        latest_version: 0,
        caught_up: false,
    };
    while report.pages < max_pages {
        let since = report.to_version;
        let fetched = match fetch_and_apply(cache, link, feed, since, page_size) {
            Ok(fetched) => fetched,
            Err(PageError::Link(source)) => {
                cache.record_sync_error(feed.as_str(), &source.to_string())?;
                return Err(SyncError::Link {
                    feed: feed.as_str(),
                    pages_applied: report.pages,
                    source,
                });
            }
            Err(PageError::Cache(error)) => {
                // Best effort: the cache that just failed may refuse this too.
                let _ = cache.record_sync_error(feed.as_str(), &error.to_string());
                return Err(SyncError::Cache(error));
            }
        };
        report.pages += 1;
        report.applied += fetched.applied;
        report.latest_version = fetched.latest_version;
        report.to_version = since.max(fetched.last_version.unwrap_or(since));
        let no_progress = report.to_version == since;
        if no_progress
            || fetched.count < page_size as usize
            || report.to_version >= fetched.latest_version
        {
            report.caught_up = true;
            break;
        }
    }
    Ok(report)
}

/// Why one page failed: the link (nothing applied) or the cache (the page rolled back).
enum PageError {
    Link(LinkError),
    Cache(CacheError),
}

impl From<CacheError> for PageError {
    fn from(error: CacheError) -> PageError {
        PageError::Cache(error)
    }
}

/// Fetches the page after `since` and applies it in one transaction.
fn fetch_and_apply(
    cache: &Cache,
    link: &mut dyn InsurerLink,
    feed: Feed,
    since: u64,
    page_size: u32,
) -> Result<Fetched, PageError> {
    let link_error = PageError::Link;
    match feed {
        Feed::CardEvents => {
            let page = link.card_events(since, page_size).map_err(link_error)?;
            let applied = cache.apply_card_events(&page)?;
            let versions = page.events.iter().map(|event| event.version);
            Ok(Fetched::of(versions, page.latest_version, applied))
        }
        Feed::Catalogue => {
            let page = link.catalogue(since, page_size).map_err(link_error)?;
            let applied = cache.apply_catalogue(&page)?;
            let versions = page.items.iter().map(|item| item.version);
            Ok(Fetched::of(versions, page.latest_version, applied))
        }
    }
}
