//! The circuit breaker: after `threshold` consecutive failures of the link itself (no
//! connection, no answer in time, a reset, the gateway's HTTP 5xx —
//! [`super::Uncertainty::is_link_failure`]) the link fails fast with
//! [`LinkError::CircuitOpen`] for `cooldown`, then lets one call through (half-open): its
//! success closes the circuit, its failure opens it again. Anything the insurer answered —
//! a refusal, "busy", HTTP 413 for one request's size — counts as success: the link is up.
//!
//! A breaker belongs to a link, not to a client: the clients of one link (the daemon's
//! swipe link and its settlement pool) share one [`SharedBreaker`], so that what one caller
//! is told (1016, circuit open) is what every caller and `system.info` see.

use super::LinkError;
use serde::Serialize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// A breaker shared by the clients of one link.
#[derive(Debug, Clone)]
pub struct SharedBreaker(Arc<Mutex<CircuitBreaker>>);

impl SharedBreaker {
    pub fn new(threshold: u32, cooldown: Duration) -> SharedBreaker {
        SharedBreaker(Arc::new(Mutex::new(CircuitBreaker::new(
            threshold, cooldown,
        ))))
    }

    /// The breaker, for one decision or one record.
    pub fn lock(&self) -> MutexGuard<'_, CircuitBreaker> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state now, as `system.info` reports it.
    pub fn state(&self) -> CircuitState {
        self.lock().state()
    }
}

/// The breaker's state as reported (`system.info`'s `insurer.circuit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls go out.
    Closed,
    /// Calls fail fast (1016) for `retry_in_ms` more.
    Open { retry_in_ms: u64 },
    /// The cooldown is over: the next call is the trial.
    HalfOpen,
}

impl CircuitState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open { .. } => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    failures: u32,
    open_until: Option<Instant>,
    half_open: bool,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cooldown: Duration) -> CircuitBreaker {
        CircuitBreaker {
            threshold: threshold.max(1),
            cooldown,
            failures: 0,
            open_until: None,
            half_open: false,
        }
    }

    /// May a call go out now?
    pub fn check(&mut self) -> Result<(), LinkError> {
        let Some(until) = self.open_until else {
            return Ok(());
        };
        let now = Instant::now();
        if now < until {
            let left = until - now;
            return Err(LinkError::CircuitOpen {
                retry_in_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
            });
        }
        self.open_until = None;
        self.half_open = true;
        Ok(())
    }

    pub fn record_success(&mut self) {
        self.failures = 0;
        self.half_open = false;
        self.open_until = None;
    }

    pub fn record_failure(&mut self) {
        self.failures = self.failures.saturating_add(1);
        if self.half_open || self.failures >= self.threshold {
            self.open_until = Some(Instant::now() + self.cooldown);
            self.half_open = false;
        }
    }

    /// Whether calls are being refused right now.
    pub fn is_open(&self) -> bool {
        self.open_until.is_some_and(|until| Instant::now() < until)
    }

    /// The state now.
    pub fn state(&self) -> CircuitState {
        match self.open_until {
            Some(until) if Instant::now() < until => CircuitState::Open {
                retry_in_ms: u64::try_from((until - Instant::now()).as_millis())
                    .unwrap_or(u64::MAX),
            },
            Some(_) => CircuitState::HalfOpen,
            None if self.half_open => CircuitState::HalfOpen,
            None => CircuitState::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CircuitBreaker;
    use std::time::Duration;

    #[test]
    fn opens_after_threshold_and_half_opens_after_cooldown() {
        let mut b = CircuitBreaker::new(2, Duration::from_millis(30));
        b.record_failure();
        assert!(b.check().is_ok());
        b.record_failure();
        assert!(b.check().is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.check().is_ok());
        b.record_failure();
        assert!(b.check().is_err(), "a failed half-open try opens again");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.check().is_ok());
        b.record_success();
        b.record_failure();
        assert!(b.check().is_ok());
    }
}
