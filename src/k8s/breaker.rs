//! A small circuit breaker for Kubernetes calls: after `failures` consecutive calls that found
//! the API unreachable or too slow, calls fail fast (503) for `cooldown`; then exactly one
//! probe is let through (half-open) and its result decides: success closes the breaker, failure
//! opens it for another cooldown. It keeps a dead apiserver from holding every in-flight slot
//! for a deadline, and a recovering one from being hit by every waiting call at once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use metrics::Gauge;

/// `gateway_circuit_breaker_state` values.
const CLOSED: f64 = 0.0;
const HALF_OPEN: f64 = 1.0;
const OPEN: f64 = 2.0;

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
    /// While half-open: until when the probe let through owns the breaker. A probe whose
    /// result never comes (its caller went away) frees the slot after one more cooldown.
    probe_until: Option<Instant>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(failures: u32, cooldown: Duration, gauge: Gauge) -> Self {
        gauge.set(CLOSED);
        Breaker {
            state: Mutex::new(State {
                consecutive_failures: 0,
                open_until: None,
                probe_until: None,
            }),
            failures,
            cooldown,
            gauge,
        }
    }

    /// Whether a call may go out now: always while closed; never while open; once the
    /// cooldown ended, to a single probe at a time.
    pub fn allow(&self) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return true;
        };
        let Some(until) = state.open_until else {
            return true;
        };
        let now = Instant::now();
        if now < until || state.probe_until.is_some_and(|probe| now < probe) {
            return false;
        }
        state.probe_until = Some(now + self.cooldown.max(Duration::from_millis(1)));
        self.gauge.set(HALF_OPEN);
        true
    }

    /// Records a call's result; returns until when the breaker is open afterwards (`None`:
    /// closed).
    pub fn record(&self, healthy: bool) -> Option<Instant> {
        let Ok(mut state) = self.state.lock() else {
            return None;
        };
        if healthy {
            if state.open_until.take().is_some() {
                self.gauge.set(CLOSED);
            }
            state.probe_until = None;
            state.consecutive_failures = 0;
            return None;
        }
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        if state.probe_until.take().is_some() || state.consecutive_failures >= self.failures {
            state.open_until = Some(Instant::now() + self.cooldown);
            self.gauge.set(OPEN);
        }
        state.open_until
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

    #[test]
    fn half_open_lets_exactly_one_probe_through() {
        let breaker = Breaker::new(1, Duration::from_millis(50), metrics::Gauge::noop());
        assert!(breaker.record(false).is_some(), "open");
        assert!(!breaker.allow());
        std::thread::sleep(Duration::from_millis(60));
        assert!(breaker.allow(), "the probe");
        assert!(!breaker.allow(), "nobody else while the probe is out");
        assert!(!breaker.allow());
        assert!(
            breaker.record(false).is_some(),
            "a failed probe opens it again"
        );
        assert!(!breaker.allow());
        std::thread::sleep(Duration::from_millis(60));
        assert!(breaker.allow(), "the next probe");
        assert!(breaker.record(true).is_none(), "a good probe closes it");
        assert!(breaker.allow() && breaker.allow(), "closed: everyone goes");
    }

    #[test]
    fn a_lost_probe_frees_its_slot_after_a_cooldown() {
        let breaker = Breaker::new(1, Duration::from_millis(30), metrics::Gauge::noop());
        breaker.record(false);
        std::thread::sleep(Duration::from_millis(40));
        assert!(breaker.allow(), "a probe whose result never comes");
        assert!(!breaker.allow());
        std::thread::sleep(Duration::from_millis(40));
        assert!(breaker.allow(), "another probe after one more cooldown");
    }
}
