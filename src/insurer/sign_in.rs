//! The operator's sign-in (9001 签到 / 9002 签退) as one link holds it: every client of the
//! daemon's link (the swipe's, the sync's, settlement's pool, the keeper that signs in at
//! start and daily) shares one [`SharedSignIn`], so the workstation has one `sign_no` at a
//! time, as a HIS does. A sign-in is fresh for the business day it was made on (Beijing
//! time) and at most the link's `sign_ttl`; the platform saying it lapsed ends it at once.
//! Its state is what `system.info` reports ([`SignInReport`]).

use crate::clock::{Date, rfc3339};
use serde::Serialize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// One link's sign-in, shared by its clients.
#[derive(Debug, Clone, Default)]
pub struct SharedSignIn(Arc<Cell>);

#[derive(Debug, Default)]
struct Cell {
    state: Mutex<SignInState>,
    /// Held while a 9001 is on its way, so the clients of the link sign in once.
    turn: Mutex<()>,
}

#[derive(Debug, Default)]
struct SignInState {
    current: Option<SignIn>,
    last_error: Option<(String, SystemTime)>,
    /// The last sign-in ended by 9002 (a clean shutdown), not by a lapse.
    signed_out: bool,
    sign_ins: u64,
}

/// A sign-in the platform gave.
#[derive(Debug, Clone)]
struct SignIn {
    sign_no: String,
    at: Instant,
    signed_at: SystemTime,
    business_date: Date,
}

impl SignIn {
    /// Fresh on the day it was made, for at most `ttl`.
    fn fresh(&self, ttl: Duration, today: Date) -> bool {
        self.business_date == today && self.at.elapsed() < ttl
    }
}

/// The sign-in as `system.info` reports it (`insurer.sign_in`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignInReport {
    /// `signed_in`, `not_signed_in` (never, or it lapsed), `failed` (the last 9001 did not
    /// succeed), `signed_out` (9002 at a clean shutdown).
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_no: Option<String>,
    /// When the current sign-in was made (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_in_at: Option<String>,
    /// The business day it is for (Beijing time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_date: Option<String>,
    /// 9001s made by this link since the daemon started.
    pub sign_ins: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<String>,
}

impl SharedSignIn {
    pub fn new() -> SharedSignIn {
        SharedSignIn::default()
    }

    fn state(&self) -> MutexGuard<'_, SignInState> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current sign_no, fresh or not (what an envelope carries).
    pub fn sign_no(&self) -> Option<String> {
        self.state().current.as_ref().map(|s| s.sign_no.clone())
    }

    /// Whether there is a sign-in fresh today and younger than `ttl`.
    pub fn is_fresh(&self, ttl: Duration) -> bool {
        self.state()
            .current
            .as_ref()
            .is_some_and(|s| s.fresh(ttl, Date::today()))
    }

    /// The turn to sign in: while it is held, the link's other clients wait for its
    /// outcome instead of signing in too.
    pub fn turn(&self) -> MutexGuard<'_, ()> {
        self.0.turn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A 9001 succeeded.
    pub fn signed_in(&self, sign_no: &str) {
        let mut state = self.state();
        let now = SystemTime::now();
        state.current = Some(SignIn {
            sign_no: sign_no.to_owned(),
            at: Instant::now(),
            signed_at: now,
            business_date: Date::at(now),
        });
        state.signed_out = false;
        state.last_error = None;
        state.sign_ins += 1;
    }

    /// A 9001 failed: the current sign-in (if any) stays until it lapses.
    pub fn failed(&self, error: &str) {
        self.state().last_error = Some((error.to_owned(), SystemTime::now()));
    }

    /// The platform said the sign-in `sign_no` lapsed: it ends, unless another client of the
    /// link has already signed in again.
    pub fn lapsed(&self, sign_no: Option<&str>) {
        let mut state = self.state();
        if state.current.as_ref().map(|s| s.sign_no.as_str()) == sign_no {
            state.current = None;
        }
    }

    /// 9002 ended the sign-in `sign_no`.
    pub fn signed_out(&self, sign_no: &str) {
        let mut state = self.state();
        if state.current.as_ref().map(|s| s.sign_no.as_str()) == Some(sign_no) {
            state.current = None;
            state.signed_out = true;
        }
    }

    /// What `system.info` reports.
    pub fn report(&self, ttl: Duration) -> SignInReport {
        let state = self.state();
        let current = state
            .current
            .as_ref()
            .filter(|s| s.fresh(ttl, Date::today()));
        let status = match (current, &state.last_error) {
            (Some(_), _) => "signed_in",
            (None, Some(_)) => "failed",
            (None, None) if state.signed_out => "signed_out",
            (None, None) => "not_signed_in",
        };
        let (error, error_at) = state
            .last_error
            .as_ref()
            .map(|(e, at)| (e.clone(), rfc3339(*at)))
            .unzip();
        SignInReport {
            state: status,
            sign_no: current.map(|s| s.sign_no.clone()),
            signed_in_at: current.map(|s| rfc3339(s.signed_at)),
            business_date: current.map(|s| s.business_date.to_string()),
            sign_ins: state.sign_ins,
            last_error: error,
            last_error_at: error_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn a_sign_in_is_fresh_on_its_day_only() {
        let made = SignIn {
            sign_no: "1".into(),
            at: Instant::now(),
            signed_at: SystemTime::now(),
            business_date: Date::today(),
        };
        assert!(made.fresh(DAY, Date::today()));
        let tomorrow = Date::today().next_day().expect("a next day");
        assert!(!made.fresh(DAY, tomorrow), "a new day needs a new sign-in");
        assert!(!made.fresh(Duration::ZERO, Date::today()), "older than ttl");
    }

    #[test]
    fn the_state_follows_sign_in_lapse_failure_and_sign_out() {
        let shared = SharedSignIn::new();
        assert_eq!(shared.report(DAY).state, "not_signed_in");
        shared.signed_in("S1");
        let report = shared.report(DAY);
        assert_eq!(
            (report.state, report.sign_no.as_deref()),
            ("signed_in", Some("S1"))
        );
        // Another client signed in again before this one heard of the lapse of S0.
        shared.lapsed(Some("S0"));
        assert!(shared.is_fresh(DAY));
        shared.lapsed(Some("S1"));
        assert_eq!(shared.report(DAY).state, "not_signed_in");
        shared.failed("no answer");
        let report = shared.report(DAY);
        assert_eq!(
            (report.state, report.last_error.as_deref()),
            ("failed", Some("no answer"))
        );
        shared.signed_in("S2");
        shared.signed_out("S2");
        let report = shared.report(DAY);
        assert_eq!((report.state, report.sign_ins), ("signed_out", 2));
        assert_eq!(shared.sign_no(), None);
    }
}
