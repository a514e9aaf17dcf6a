//! A small circuit breaker for Kubernetes calls: after `failures` consecutive calls that found
//! the API unreachable or too slow, calls fail fast (503) for `cooldown`, then one probe is
//! let through. It keeps a dead apiserver from holding every in-flight slot for a deadline.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use metrics::Gauge;

/// Breaker state; a `std::sync::Mutex` because no await happens while it is held.
#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    failures: u32,
    cooldown: Duration,
    gauge: Gauge,
}

#[derive(Debug)]
struct State {
    consecutive_failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(failures: u32, cooldown: Duration, gauge: Gauge) -> Self {
        gauge.set(0.0);
        Breaker {
            state: Mutex::new(State {
                consecutive_failures: 0,
                open_until: None,
            }),
            failures,
            cooldown,
            gauge,
        }
    }

    /// Whether a call may go out now. While open, false until the cooldown ends; then calls
    /// go out again and the first result decides.
    pub fn allow(&self) -> bool {
        let Ok(state) = self.state.lock() else {
            return true;
        };
        state.open_until.is_none_or(|until| Instant::now() >= until)
    }

    /// Records a call's result.
    pub fn record(&self, healthy: bool) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if healthy {
            if state.open_until.take().is_some() {
                self.gauge.set(0.0);
            }
            state.consecutive_failures = 0;
        } else {
            state.consecutive_failures = state.consecutive_failures.saturating_add(1);
            if state.consecutive_failures >= self.failures {
                state.open_until = Some(Instant::now() + self.cooldown);
                self.gauge.set(1.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_closes_on_success() {
        let breaker = Breaker::new(3, Duration::from_secs(3600), metrics::Gauge::noop());
        breaker.record(false);
        breaker.record(false);
        assert!(breaker.allow());
        breaker.record(false);
        assert!(!breaker.allow());
        breaker.record(true);
        assert!(breaker.allow());
    }

    #[test]
    fn a_success_resets_the_streak() {
        let breaker = Breaker::new(2, Duration::from_secs(3600), metrics::Gauge::noop());
        breaker.record(false);
        breaker.record(true);
        breaker.record(false);
        assert!(breaker.allow());
    }

    #[test]
    fn lets_a_probe_through_after_the_cooldown() {
        let breaker = Breaker::new(1, Duration::ZERO, metrics::Gauge::noop());
        breaker.record(false);
        assert!(breaker.allow());
    }
}
