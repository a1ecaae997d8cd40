//! What `GET /metrics` answers (docs/metrics.md): the daemon's [`crate::metrics::Metrics`] —
//! what happened: card reads, verdicts, insurer calls, settlements, connections — and its
//! state now, read from the services at each scrape, never kept in step by hand: the readers,
//! the insurer's circuit, the journal (calls in doubt, whether it takes writes), the cache's
//! age, the shipping to the hospital database, the process. Blocking (SQLite): the HTTP
//! handlers run it on tokio's blocking pool.
//!
//! A new state gauge is one line in [`state`]: `scrape.gauge(name, help, labels, value)`.

use super::services::{Services, feed_states, synced_at};
use super::shared::Shared;
use super::types::ReaderState;
use crate::clock::unix_seconds;
use crate::hospital::ShipState;
use crate::metrics::{Format, Scrape};
use std::time::SystemTime;

/// The circuit breaker's states, as `medcard_insurer_circuit_state`'s label.
const CIRCUIT_STATES: [&str; 3] = ["closed", "open", "half_open"];
/// The states of the link's sign-in (`insurer::SignInReport::state`).
const SIGN_IN_STATES: [&str; 4] = ["signed_in", "not_signed_in", "failed", "signed_out"];

/// The whole exposition, as `format`.
pub fn render(shared: &Shared, format: Format) -> String {
    let mut scrape = Scrape::default();
    state(shared, &mut scrape);
    scrape.process();
    shared.services.metrics.render(scrape, format)
}

/// The daemon's state now.
fn state(shared: &Shared, scrape: &mut Scrape) {
    let services = &shared.services;
    scrape.gauge(
        "medcard_build_info",
        "The medcard version serving (always 1)",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    let snapshot = shared.handle.snapshot();
    for state in ReaderState::ALL {
        let count = snapshot.readers.iter().filter(|r| r.state == state).count();
        scrape.gauge(
            "medcard_readers",
            "Card readers by state (empty, present, reading, ready, error); the PSAM's reader counts too",
            &[("state", state.as_str())],
            count as f64,
        );
    }
    if let Some(breaker) = &services.breaker {
        scrape.state(
            "medcard_insurer_circuit_state",
            "The insurer link's circuit breaker: 1 for the state it is in",
            &CIRCUIT_STATES,
            breaker.state().as_str(),
        );
    }
    if let Some(sign_in) = &services.sign_in {
        let report = sign_in.report(services.sign_ttl);
        scrape.state(
            "medcard_insurer_sign_in_state",
            "The link's 9001 sign-in: 1 for the state it is in",
            &SIGN_IN_STATES,
            report.state,
        );
        scrape.gauge(
            "medcard_insurer_sign_ins",
            "9001 sign-ins the link made since the daemon started",
            &[],
            report.sign_ins as f64,
        );
    }
    journal(services, scrape);
    cache_age(services, scrape);
    hospital(services, scrape);
}

/// Whether the journal takes writes, and its 2207 / 2208 calls whose outcome is in doubt.
fn journal(services: &Services, scrape: &mut Scrape) {
    let writable = match (&services.cache, &services.cache_error) {
        (Some(cache), _) => cache.writer().health().fault().is_none(),
        (None, Some(_)) => false,
        (None, None) => return,
    };
    scrape.gauge(
        "medcard_journal_writable",
        "Whether the settlement journal (the cache file) takes writes: 0 on a full disk, an I/O error, an unusable file",
        &[],
        f64::from(u8::from(writable)),
    );
    let Some(settler) = &services.settler else {
        return;
    };
    match settler.journal().unresolved_calls() {
        Ok(calls) => {
            scrape.gauge(
                "medcard_journal_unresolved_calls",
                "2207 / 2208 calls whose outcome is in doubt (being reversed with 2601)",
                &[],
                calls.len() as f64,
            );
        }
        Err(e) => tracing::warn!(error = %e, "metrics: the journal's calls cannot be counted"),
    }
}

/// Seconds since the cache last synced, in all and per feed; +Inf until it has.
fn cache_age(services: &Services, scrape: &mut Scrape) {
    let Some(cache) = &services.cache else {
        return;
    };
    let feeds = match feed_states(cache) {
        Ok(feeds) => feeds,
        Err(e) => {
            tracing::warn!(error = %e, "metrics: the feeds' sync state cannot be read");
            return;
        }
    };
    let now = unix_seconds(SystemTime::now());
    let age = |last_ok: Option<i64>| last_ok.map_or(f64::INFINITY, |ok| (now - ok).max(0) as f64);
    scrape.gauge(
        "medcard_cache_age_seconds",
        "Seconds since both feeds of the cache last synced (+Inf: never)",
        &[],
        age(synced_at(&feeds)),
    );
    for feed in &feeds {
        scrape.gauge(
            "medcard_cache_feed_age_seconds",
            "Seconds since the feed last synced (+Inf: never)",
            &[("feed", feed.feed.as_str())],
            age(feed.last_ok),
        );
    }
}

/// The journal's shipping to the hospital database, when configured.
fn hospital(services: &Services, scrape: &mut Scrape) {
    let Some(monitor) = &services.hospital else {
        return;
    };
    let report = monitor.report(SystemTime::now());
    let states = ShipState::ALL.map(ShipState::as_str);
    scrape
        .state(
            "medcard_hospital_ship_state",
            "Shipping of the journal to the hospital database: 1 for the state it is in",
            &states,
            report.state.as_str(),
        )
        .gauge(
            "medcard_hospital_ship_pending_rows",
            "Journal rows waiting to be shipped to the hospital database",
            &[],
            report.pending_rows as f64,
        )
        .gauge(
            "medcard_hospital_ship_lag_seconds",
            "How long the oldest row waiting to be shipped has waited (0: none waits)",
            &[],
            report.lag_ms.unwrap_or(0) as f64 / 1000.0,
        );
}
