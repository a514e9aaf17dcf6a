//! The replay guard of DESIGN.md §2: how old and how far in the future a signal's timestamp may
//! be, and how the timestamps on the wire are read.
//!
//! Both bounds are inclusive: a timestamp exactly [`MAX_AGE`] old, or exactly [`MAX_FUTURE`]
//! ahead, passes; one nanosecond more fails. `now` is always passed in, never read from the
//! wall clock here, so the edges are testable to the nanosecond.

use jiff::{SignedDuration, Timestamp};

use crate::ingest::Rejection;

/// The oldest a timestamp may be (`X-Timestamp`, Event timestamps).
pub const MAX_AGE: SignedDuration = SignedDuration::from_secs(5 * 60);
/// How far in the future a timestamp may be: tolerated clock skew between sender and gateway.
pub const MAX_FUTURE: SignedDuration = SignedDuration::from_secs(2 * 60);

/// Unix seconds of Go's zero `time.Time` (`0001-01-01T00:00:00Z`), which Go senders write for
/// "not set" (Alertmanager's `endsAt` of a firing alert, for one). It means absent.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// Rejects `ts` when it is more than [`MAX_AGE`] before `now`.
pub fn check_not_stale(ts: Timestamp, now: Timestamp, what: &str) -> Result<(), Rejection> {
    if now.duration_since(ts) > MAX_AGE {
        return Err(Rejection::Freshness(format!(
            "{what} {ts} is more than 5 minutes old: possible replay"
        )));
    }
    Ok(())
}

/// Rejects `ts` when it is more than [`MAX_FUTURE`] after `now`.
pub fn check_not_future(ts: Timestamp, now: Timestamp, what: &str) -> Result<(), Rejection> {
    if ts.duration_since(now) > MAX_FUTURE {
        return Err(Rejection::Freshness(format!(
            "{what} {ts} is more than 2 minutes in the future: check the sender's clock"
        )));
    }
    Ok(())
}

/// Reads the `X-Timestamp` header: an integer count of unix seconds, not negative. Surrounding
/// whitespace is not accepted (hyper already strips the optional whitespace HTTP allows).
pub fn parse_x_timestamp(raw: &[u8]) -> Result<Timestamp, Rejection> {
    let invalid = || {
        Rejection::Freshness(format!(
            "X-Timestamp {:?} is not an integer number of unix seconds",
            String::from_utf8_lossy(raw)
        ))
    };
    let seconds: i64 = std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(invalid)?;
    if seconds < 0 {
        return Err(invalid());
    }
    Timestamp::from_second(seconds).map_err(|_| invalid())
}

/// Reads an RFC 3339 timestamp from a payload. `None` for absent, empty, or Go's zero time;
/// anything else that does not parse is a rejection naming `what`.
pub fn parse_rfc3339(raw: Option<&str>, what: &str) -> Result<Option<Timestamp>, Rejection> {
    let Some(raw) = raw.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let ts: Timestamp = raw.parse().map_err(|_| {
        Rejection::Freshness(format!("{what} {raw:?} is not an RFC 3339 timestamp"))
    })?;
    if ts.as_second() == GO_ZERO_TIME_SECONDS && ts.subsec_nanosecond() == 0 {
        return Ok(None);
    }
    Ok(Some(ts))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-03-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn age_bound_is_inclusive() {
        let edge = now() - MAX_AGE;
        assert!(check_not_stale(edge, now(), "t").is_ok());
        let past_edge = edge - SignedDuration::from_nanos(1);
        assert!(matches!(
            check_not_stale(past_edge, now(), "t"),
            Err(Rejection::Freshness(_))
        ));
    }

    #[test]
    fn future_bound_is_inclusive() {
        let edge = now() + MAX_FUTURE;
        assert!(check_not_future(edge, now(), "t").is_ok());
        let past_edge = edge + SignedDuration::from_nanos(1);
        assert!(matches!(
            check_not_future(past_edge, now(), "t"),
            Err(Rejection::Freshness(_))
        ));
    }

    #[test]
    fn x_timestamp_must_be_a_non_negative_integer() {
        assert_eq!(
            parse_x_timestamp(b"1772366400").unwrap(),
            Timestamp::from_second(1_772_366_400).unwrap()
        );
        for bad in [
            &b""[..],
            b"abc",
            b"1.5",
            b"-1",
            b" 1",
            b"1e9",
            b"\xff",
            b"99999999999999999999",
            b"9223372036854775807",
        ] {
            assert!(
                matches!(parse_x_timestamp(bad), Err(Rejection::Freshness(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rfc3339_absent_empty_and_go_zero_are_none() {
        assert_eq!(parse_rfc3339(None, "t").unwrap(), None);
        assert_eq!(parse_rfc3339(Some(""), "t").unwrap(), None);
        assert_eq!(
            parse_rfc3339(Some("0001-01-01T00:00:00Z"), "t").unwrap(),
            None
        );
        assert_eq!(
            parse_rfc3339(Some("2026-03-01T13:00:00+01:00"), "t").unwrap(),
            Some(now())
        );
        assert!(matches!(
            parse_rfc3339(Some("yesterday"), "t"),
            Err(Rejection::Freshness(_))
        ));
    }
}
