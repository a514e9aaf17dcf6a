//! The open-loop clock: when each request is due, and how far behind the sends fell.
//!
//! Request `i` of a stream is due at `start + i / rate`, whatever happened to the requests
//! before it. The driver sleeps until that instant, then hands the tick to the caller, which
//! spawns the request; a slow response never delays the next send (no coordinated omission).
//! Latency is measured by the caller from the *due* time, so time spent waiting on a busy
//! scheduler counts against the system under test, as it would for a real sender. The lag
//! between the due time and the actual hand-off is recorded separately, so a report can tell
//! a slow gateway from a starved load generator.

use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

/// Offset of request `i` from the stream's start at `rate` requests per second.
pub fn due_offset(i: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(i as f64 / rate)
}

/// Number of requests a stream of `rate` per second sends in `span`: those due strictly
/// before its end.
pub fn ticks_in(span: Duration, rate: f64) -> u64 {
    if rate <= 0.0 {
        return 0;
    }
    // The epsilon keeps 10 s × 100/s at 1000, not 999, despite float rounding.
    let exact = span.as_secs_f64() * rate;
    let n = (exact - 1e-9).ceil();
    if n <= 0.0 { 0 } else { n as u64 }
}

/// One stream of the schedule.
#[derive(Clone, Copy, Debug, Default)]
pub struct StreamClock {
    /// Requests per second.
    pub rate: f64,
    /// When the stream starts, as an offset from the run's start.
    pub start: Duration,
    /// Leading span whose requests are sent but not measured.
    pub warmup: Duration,
    /// Measured span, after the warm-up.
    pub measure: Duration,
}

impl StreamClock {
    /// A stream of `rate` from `start`, with `warmup` then `measure`.
    pub fn new(rate: f64, start: Duration, warmup: Duration, measure: Duration) -> Self {
        StreamClock {
            rate,
            start,
            warmup,
            measure,
        }
    }

    /// Requests in the warm-up.
    pub fn warmup_ticks(&self) -> u64 {
        ticks_in(self.warmup, self.rate)
    }

    /// Requests in the whole stream.
    pub fn total_ticks(&self) -> u64 {
        self.warmup_ticks() + ticks_in(self.measure, self.rate)
    }

    /// Offset of tick `i` from the run's start. Measured ticks are laid out from the end of
    /// the warm-up, so the measured span holds exactly `measure × rate` of them.
    pub fn offset(&self, i: u64) -> Duration {
        let w = self.warmup_ticks();
        if i < w {
            self.start + due_offset(i, self.rate)
        } else {
            self.start + self.warmup + due_offset(i - w, self.rate)
        }
    }

    /// When the stream's last request is due, as an offset from the run's start.
    pub fn end(&self) -> Duration {
        self.start + self.warmup + self.measure
    }
}

/// One due request, handed to the caller.
#[derive(Clone, Copy, Debug)]
pub struct Tick {
    /// When it was due. Latency is measured from here.
    pub due: Instant,
    /// False during the warm-up.
    pub measured: bool,
}

/// What the driver saw of its own punctuality.
#[derive(Debug)]
pub struct DriveStats {
    /// Requests due in the measured span.
    pub due: u64,
    /// Of those, handed off and started.
    pub sent: u64,
    /// Of those, not started because the in-flight cap was reached.
    pub dropped: u64,
    /// Lag between due time and hand-off of measured requests, in microseconds.
    pub lag_us: Histogram<u64>,
    /// From the first measured due time to the last measured hand-off.
    pub send_span: Duration,
}

/// A histogram of microseconds from 1 µs to 10 minutes, 3 significant digits.
pub fn micros_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; failure here is a programming error.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Microseconds in `d`, saturating.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Runs one stream to its end: for each tick, sleeps until it is due and calls `fire`, which
/// starts the request and returns false when it had to drop it. Ends by itself after
/// `clock.total_ticks()` ticks.
pub async fn drive(
    clock: StreamClock,
    run_start: Instant,
    mut fire: impl FnMut(Tick) -> bool,
) -> DriveStats {
    let total = clock.total_ticks();
    let warmup = clock.warmup_ticks();
    let mut stats = DriveStats {
        due: total - warmup,
        sent: 0,
        dropped: 0,
        lag_us: micros_histogram(),
        send_span: Duration::ZERO,
    };
    let measured_start = run_start + clock.start + clock.warmup;
    for index in 0..total {
        let due = run_start + clock.offset(index);
        tokio::time::sleep_until(due).await;
        let now = Instant::now();
        let measured = index >= warmup;
        let started = fire(Tick { due, measured });
        if measured {
            let lag = micros(now.saturating_duration_since(due));
            stats.lag_us.saturating_record(lag);
            *(if started {
                &mut stats.sent
            } else {
                &mut stats.dropped
            }) += 1;
            stats.send_span = now.saturating_duration_since(measured_start);
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_offsets_are_evenly_spaced() {
        assert_eq!(due_offset(0, 1000.0), Duration::ZERO);
        assert_eq!(due_offset(1, 1000.0), Duration::from_millis(1));
        assert_eq!(due_offset(1500, 1000.0), Duration::from_millis(1500));
        assert_eq!(due_offset(3, 4.0), Duration::from_millis(750));
    }

    #[test]
    fn tick_counts() {
        assert_eq!(ticks_in(Duration::from_secs(10), 100.0), 1000);
        assert_eq!(ticks_in(Duration::from_secs(10), 2000.0), 20_000);
        assert_eq!(ticks_in(Duration::from_millis(1500), 1.0), 2);
        assert_eq!(ticks_in(Duration::from_secs(1), 0.0), 0);
        assert_eq!(ticks_in(Duration::ZERO, 50.0), 0);
        // Awkward floats still give the exact count.
        assert_eq!(ticks_in(Duration::from_secs(3), 0.1 * 3.0 * 1000.0), 900);
    }

    #[test]
    fn clock_lays_measured_ticks_after_warmup() {
        let (secs, ms) = (Duration::from_secs, Duration::from_millis);
        let c = StreamClock::new(10.0, secs(1), ms(250), secs(1));
        // Warm-up ticks at 1.0, 1.1, 1.2; measured from 1.25.
        assert_eq!(c.warmup_ticks(), 3);
        assert_eq!(c.total_ticks(), 13);
        assert_eq!(c.offset(2), Duration::from_millis(1200));
        assert_eq!(c.offset(3), Duration::from_millis(1250));
        assert_eq!(c.offset(12), Duration::from_millis(2150));
        assert!(c.offset(12) < c.end());
    }

    #[tokio::test(start_paused = true)]
    async fn drive_fires_every_tick_on_time() {
        let c = StreamClock::new(
            100.0,
            Duration::ZERO,
            Duration::from_millis(100),
            Duration::from_secs(1),
        );
        let start = Instant::now();
        let mut seen = Vec::new();
        let stats = drive(c, start, |t| {
            seen.push((t.due, t.measured, Instant::now()));
            seen.len() % 10 != 1
        })
        .await;
        assert_eq!(seen.len(), 110);
        assert_eq!(seen.iter().filter(|s| !s.1).count(), 10);
        for (i, (due, _, at)) in seen.iter().enumerate() {
            assert_eq!(*due, start + c.offset(i as u64));
            // Paused clock: hand-off exactly at the due time.
            assert_eq!(at, due);
        }
        assert_eq!((stats.due, stats.dropped, stats.sent), (100, 10, 90));
        assert_eq!(stats.lag_us.max(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn drive_catches_up_without_skipping() {
        // The stream was due to start 20 ms ago (a stalled scheduler): the overdue ticks all
        // fire at once, none is skipped, and the lag shows the stall.
        let c = StreamClock::new(
            1000.0,
            Duration::ZERO,
            Duration::ZERO,
            Duration::from_millis(100),
        );
        let start = Instant::now() - Duration::from_millis(20);
        let mut n = 0;
        let stats = drive(c, start, |_| {
            n += 1;
            true
        })
        .await;
        assert_eq!((n, stats.sent), (100, 100));
        let max = stats.lag_us.max();
        assert!((19_900..=20_100).contains(&max), "max lag {max}");
        assert_eq!(stats.lag_us.value_at_quantile(0.5), 0);
    }
}
