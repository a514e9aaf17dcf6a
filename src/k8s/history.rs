//! The deduplication history of one RR, as `status.deduplication` stores it: the count, the
//! recent arrival times the storm rule reads, and the storm crossing once it happened. It is
//! written with the count, under the same `resourceVersion`, so every replica derives the same
//! storm from the same history. This module owns its reading from, and writing to, the status.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::types::DeduplicationStatus;

/// One RR's deduplication history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// Occurrences so far.
    pub count: i64,
    /// Arrival times in Unix milliseconds, oldest first, at most `storm.history_size`.
    pub recent: Vec<i64>,
    /// `(arrival ms, count)` of the occurrence that crossed the storm threshold.
    pub detected: Option<(i64, i64)>,
}

impl History {
    /// The history a status holds; an absent block means one occurrence, at `created` (the RR
    /// exists, so its first signal happened).
    pub fn from_status(status: Option<&DeduplicationStatus>, created: Timestamp) -> History {
        match status {
            Some(d) => History {
                count: d.occurrence_count,
                recent: d.recent_occurrences.clone(),
                detected: d
                    .storm_detected_at
                    .as_ref()
                    .zip(d.storm_detected_count)
                    .map(|(at, count)| (at.0.as_millisecond(), count)),
            },
            None => History {
                count: 1,
                recent: vec![created.as_millisecond()],
                detected: None,
            },
        }
    }

    /// The `status.deduplication` block of this history.
    pub fn to_status(&self, first_seen: Timestamp, last_seen: Timestamp) -> DeduplicationStatus {
        let (storm_detected_at, storm_detected_count) = match self.detected {
            Some((at, count)) => (Timestamp::from_millisecond(at).ok().map(Time), Some(count)),
            None => (None, None),
        };
        DeduplicationStatus {
            occurrence_count: self.count,
            first_seen_at: Time(first_seen),
            last_seen_at: Time(last_seen),
            recent_occurrences: self.recent.clone(),
            storm_detected_at,
            storm_detected_count,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn status_round_trip() {
        let at = Timestamp::from_millisecond(1_772_366_400_123).unwrap();
        let history = History {
            count: 7,
            recent: vec![1, 2, at.as_millisecond()],
            detected: Some((at.as_millisecond(), 5)),
        };
        let status = history.to_status(at, at);
        assert_eq!(History::from_status(Some(&status), at), history);
    }

    #[test]
    fn absent_status_is_one_occurrence_at_creation() {
        let at = Timestamp::from_millisecond(42_000).unwrap();
        let history = History::from_status(None, at);
        assert_eq!((history.count, history.recent), (1, vec![42_000]));
    }
}
