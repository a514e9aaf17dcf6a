//! The storm rule (DESIGN.md §6), pure: at least `threshold` occurrences within the trailing
//! `window` (`0` = over the RR's lifetime). Its input is the deduplication history the
//! synchronous patch keeps in `status.deduplication` (recent arrival times, and the crossing
//! once it happened), so every replica computes the same storm for the same history.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::fingerprint::Fingerprint;
use crate::k8s::history::History;
use crate::k8s::types::StormAggregationStatus;

/// The rule's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Occurrences within the window that make a storm (≥ 2).
    pub threshold: u32,
    /// Trailing window; zero means the RR's lifetime.
    pub window: Duration,
    /// Arrival times kept (≥ threshold); `windowOccurrences` saturates at it.
    pub history_size: usize,
}

impl Rule {
    /// Appends occurrences (arrival times in ms, in order of their ordinals).
    ///
    /// Returns true when one of them crossed the threshold.
    pub fn advance(&self, history: &mut History, arrivals: &[i64]) -> bool {
        let threshold = self.threshold as usize;
        let mut crossed = false;
        for &at in arrivals {
            history.count += 1;
            history.recent.push(at);
            if history.recent.len() > self.history_size {
                let excess = history.recent.len() - self.history_size;
                history.recent.drain(..excess);
            }
            if history.detected.is_some() {
                continue;
            }
            let storm = if self.window.is_zero() {
                history.count >= i64::from(self.threshold)
            } else {
                history.recent.len() >= threshold
                    && at - history.recent[history.recent.len() - threshold] <= self.window_ms()
            };
            if storm {
                history.detected = Some((at, history.count));
                crossed = true;
            }
        }
        crossed
    }

    /// The storm block for an RR with this history, or `None` before the threshold.
    pub fn status(
        &self,
        fingerprint: &Fingerprint,
        rr_name: &str,
        history: &History,
    ) -> Option<StormAggregationStatus> {
        let (detected_at, detected_count) = history.detected?;
        let window_occurrences = if self.window.is_zero() {
            history.count
        } else {
            let last = history.recent.last().copied().unwrap_or(detected_at);
            history
                .recent
                .iter()
                .filter(|&&at| last - at <= self.window_ms())
                .count() as i64
        };
        let suffix = rr_name.rsplit('-').next().unwrap_or(rr_name);
        Some(StormAggregationStatus {
            is_part_of_storm: true,
            storm_id: Some(format!("storm-{}-{suffix}", &fingerprint.as_str()[..8])),
            storm_detected_at: Timestamp::from_millisecond(detected_at).ok().map(Time),
            aggregated_count: history.count - detected_count + 1,
            window_occurrences,
        })
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rule(threshold: u32, window_secs: u64) -> Rule {
        Rule {
            threshold,
            window: Duration::from_secs(window_secs),
            history_size: 64,
        }
    }

    fn fp() -> Fingerprint {
        Fingerprint::parse(&"ab".repeat(32)).unwrap()
    }

    #[test]
    fn crosses_at_exactly_the_threshold_within_the_window() {
        let rule = rule(5, 60);
        let mut history = History::default();
        for i in 0..4 {
            assert!(!rule.advance(&mut history, &[i * 1000]));
        }
        assert!(rule.status(&fp(), "rr-x-1234abcd", &history).is_none());
        assert!(
            rule.advance(&mut history, &[60_000]),
            "5th occurrence, 60 s after the 1st"
        );
        let status = rule.status(&fp(), "rr-x-1234abcd", &history).unwrap();
        assert!(status.is_part_of_storm);
        assert_eq!(status.aggregated_count, 1);
        assert_eq!(status.window_occurrences, 5);
        assert_eq!(status.storm_id.as_deref(), Some("storm-abababab-1234abcd"));
        assert!(
            !rule.advance(&mut history, &[61_000]),
            "crossing happens once"
        );
        assert_eq!(
            rule.status(&fp(), "rr-x-1234abcd", &history)
                .unwrap()
                .aggregated_count,
            2
        );
    }

    #[test]
    fn no_storm_when_spread_wider_than_the_window() {
        let rule = rule(5, 60);
        let mut history = History::default();
        for i in 0..20 {
            assert!(!rule.advance(&mut history, &[i * 15_001]));
        }
        assert!(history.detected.is_none());
    }

    #[test]
    fn lifetime_mode_counts_everything() {
        let rule = rule(3, 0);
        let mut history = History::default();
        assert!(!rule.advance(&mut history, &[0, 3_600_000]));
        assert!(rule.advance(&mut history, &[86_400_000]));
        let status = rule.status(&fp(), "rr-a-b", &history).unwrap();
        assert_eq!((status.aggregated_count, status.window_occurrences), (1, 3));
    }

    #[test]
    fn a_batch_crossing_in_its_middle_detects_at_that_occurrence() {
        let rule = rule(3, 10);
        let mut history = History {
            count: 1,
            recent: vec![0],
            detected: None,
        };
        assert!(rule.advance(&mut history, &[100, 200, 300, 400]));
        assert_eq!(history.detected, Some((200, 3)));
        assert_eq!(
            rule.status(&fp(), "rr-a-b", &history)
                .unwrap()
                .aggregated_count,
            3
        );
    }

    #[test]
    fn history_is_bounded() {
        let rule = Rule {
            threshold: 2,
            window: Duration::from_secs(1),
            history_size: 4,
        };
        let mut history = History::default();
        rule.advance(&mut history, &(0..100).collect::<Vec<_>>());
        assert_eq!(history.recent, vec![96, 97, 98, 99]);
        assert_eq!(
            rule.status(&fp(), "rr-a-b", &history)
                .unwrap()
                .window_occurrences,
            4
        );
    }
}
