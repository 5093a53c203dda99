//! The instant an invocation must be done by, carried with its work: a Lambda handler sets it
//! from the invocation's remaining time, and every outgoing request and retry wait under it
//! stops short of it ([`crate::http::ServiceError::Deadline`]) instead of outliving the function.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `work` with `deadline` as the current deadline (none: as it is).
pub async fn within<F: Future>(deadline: Option<Instant>, work: F) -> F::Output {
    match deadline {
        Some(deadline) => DEADLINE.scope(deadline, work).await,
        None => work.await,
    }
}

/// The deadline of the work in progress, if it has one.
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|deadline| *deadline).ok()
}

/// Before this (2001-09-09 in epoch milliseconds) a "deadline" is no point in time: emulators
/// such as `cargo lambda watch` send the timeout itself (e.g. 600000).
const EPOCH_MS_FLOOR: u64 = 1_000_000_000_000;

/// A Lambda invocation's deadline (`context.deadline`, milliseconds since the epoch); `None`
/// when it names no point in time.
pub fn from_epoch_millis(deadline_ms: u64) -> Option<Instant> {
    if deadline_ms < EPOCH_MS_FLOOR {
        return None;
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default();
    Some(Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms)))
}

/// The instant `margin` before `deadline`, so that a handler has `margin` left to record what
/// happened; a short invocation keeps back at most a quarter of the time it has left.
pub fn keeping_back(deadline: Instant, margin: Duration) -> Instant {
    let remaining = deadline.saturating_duration_since(Instant::now());
    deadline - margin.min(remaining / 4)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn when_work_runs_within_a_deadline_should_see_it_and_outside_none() {
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(
            within(Some(deadline), async { current() }).await,
            Some(deadline)
        );
        assert_eq!(within(None, async { current() }).await, None);
        assert_eq!(current(), None);
    }

    #[tokio::test]
    async fn when_a_lambda_has_60_s_left_should_leave_the_margin() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let deadline = from_epoch_millis(now_ms + 60_000).unwrap();
        let left = keeping_back(deadline, Duration::from_secs(10))
            .saturating_duration_since(Instant::now());
        assert!(left <= Duration::from_secs(50), "{left:?}");
        assert!(left > Duration::from_secs(48), "{left:?}");
        let past = from_epoch_millis(now_ms.saturating_sub(1_000)).unwrap();
        assert!(past <= Instant::now());
        let short = keeping_back(
            from_epoch_millis(now_ms + 8_000).unwrap(),
            Duration::from_secs(10),
        );
        let left = short.saturating_duration_since(Instant::now());
        assert!(
            left > Duration::from_secs(5),
            "a quarter kept back at most: {left:?}"
        );
    }

    #[test]
    fn when_the_deadline_is_no_point_in_time_should_be_none() {
        assert_eq!(from_epoch_millis(0), None);
        assert_eq!(
            from_epoch_millis(600_000),
            None,
            "cargo lambda watch sends the timeout"
        );
    }
}
