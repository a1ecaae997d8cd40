//! The circuit breaker: after `threshold` consecutive uncertain outcomes the link fails fast
//! with [`LinkError::CircuitOpen`] for `cooldown`, then lets one call through (half-open):
//! its success closes the circuit, its failure opens it again. Business refusals count as
//! success — the insurer answered.

use super::LinkError;
use std::time::{Duration, Instant};

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
