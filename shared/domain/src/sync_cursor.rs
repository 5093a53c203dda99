//! Where the Partner Center sync stands between invocations: the watermark of the last complete
//! run and, while a run is under way, the `@odata.nextLink` to continue it at.
//!
//! Every transition is a pure function of the stored cursor; fetch-referrals reads it, runs
//! pages, and writes back what the transition returns.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Sync-state key of the cursor.
pub const SYNC_STATE_KEY: &str = "partner_center_sync";

/// The stored watermark and continuation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncCursor {
    /// Largest `updatedDateTime` of a completed run; the next run asks for updates at or after it.
    pub watermark: Option<DateTime<Utc>>,
    /// A run that stopped before its last page (out of time or pages).
    pub continuation: Option<Continuation>,
}

/// A run to be continued by the next invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Continuation {
    pub run_id: String,
    /// The `@odata.nextLink` of the next page, verbatim.
    pub next_link: String,
    /// The newest `updatedDateTime` the run has seen so far.
    pub max_updated: Option<DateTime<Utc>>,
    /// Referrals the run stored itself as `invalid_payload` so far.
    pub recorded_invalid: u32,
}

/// Where an invocation starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SyncStart<'a> {
    /// A new run, asking for referrals updated at or after `since` (everything when `None`).
    New { since: Option<DateTime<Utc>> },
    /// The run an earlier invocation left off.
    Resume(&'a Continuation),
}

impl SyncCursor {
    /// Continue the stored run if there is one, else start a new one from the watermark.
    pub fn start(&self) -> SyncStart<'_> {
        match &self.continuation {
            Some(continuation) => SyncStart::Resume(continuation),
            None => SyncStart::New {
                since: self.watermark,
            },
        }
    }

    /// The run enqueued its last page: the watermark moves up to the newest update it saw.
    pub fn completed(&self, max_updated: Option<DateTime<Utc>>) -> Self {
        Self {
            watermark: self.watermark.max(max_updated),
            continuation: None,
        }
    }

    /// The run stops before its last page; the next invocation goes on at `continuation`.
    pub fn continued(&self, continuation: Continuation) -> Self {
        Self {
            watermark: self.watermark,
            continuation: Some(continuation),
        }
    }

    /// The run failed: the watermark stays, so the next run repeats the window (ingest is
    /// idempotent); a continuation is dropped, as its link may be stale. `None` when that changes
    /// nothing, so there is nothing to write.
    pub fn failed(&self) -> Option<Self> {
        self.continuation.is_some().then_some(Self {
            watermark: self.watermark,
            continuation: None,
        })
    }

    /// This cursor, written over `stored` that another invocation wrote meanwhile: the later
    /// watermark of both wins, so a watermark never moves back.
    pub fn merged_over(self, stored: &Self) -> Self {
        Self {
            watermark: self.watermark.max(stored.watermark),
            continuation: self.continuation,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(hour: u32) -> Option<DateTime<Utc>> {
        Some(Utc.with_ymd_and_hms(2026, 11, 1, hour, 0, 0).unwrap())
    }

    fn continuation(run_id: &str) -> Continuation {
        Continuation {
            run_id: run_id.to_owned(),
            next_link: "https://pc/v1.0/referrals?$skiptoken=2".to_owned(),
            max_updated: at(7),
            recorded_invalid: 1,
        }
    }

    #[test]
    fn when_nothing_is_stored_should_start_a_run_of_everything() {
        assert_eq!(
            SyncCursor::default().start(),
            SyncStart::New { since: None }
        );
    }

    #[test]
    fn when_a_watermark_is_stored_should_start_from_it() {
        let cursor = SyncCursor {
            watermark: at(5),
            continuation: None,
        };
        assert_eq!(cursor.start(), SyncStart::New { since: at(5) });
    }

    #[test]
    fn when_a_run_was_left_off_should_resume_it() {
        let cursor = SyncCursor::default().continued(continuation("run-1"));
        match cursor.start() {
            SyncStart::Resume(c) => assert_eq!(c.run_id, "run-1"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn when_a_run_completes_should_move_the_watermark_up_and_never_down() {
        let cursor = SyncCursor {
            watermark: at(5),
            continuation: Some(continuation("run-1")),
        };
        assert_eq!(
            cursor.completed(at(9)),
            SyncCursor {
                watermark: at(9),
                continuation: None
            }
        );
        assert_eq!(cursor.completed(at(3)).watermark, at(5), "older updates");
        assert_eq!(cursor.completed(None).watermark, at(5), "an empty run");
    }

    #[test]
    fn when_a_run_is_continued_should_keep_the_watermark() {
        let cursor = SyncCursor {
            watermark: at(5),
            continuation: None,
        };
        let next = cursor.continued(continuation("run-2"));
        assert_eq!(next.watermark, at(5));
        assert_eq!(next.continuation, Some(continuation("run-2")));
    }

    #[test]
    fn when_a_run_fails_should_drop_a_continuation_and_keep_the_watermark() {
        let plain = SyncCursor {
            watermark: at(5),
            continuation: None,
        };
        assert_eq!(plain.failed(), None, "nothing to write");
        let continued = plain.continued(continuation("run-3"));
        assert_eq!(continued.failed(), Some(plain));
    }

    #[test]
    fn when_another_invocation_wrote_meanwhile_should_keep_the_later_watermark() {
        let mine = SyncCursor {
            watermark: at(5),
            continuation: Some(continuation("mine")),
        };
        let theirs = SyncCursor {
            watermark: at(8),
            continuation: None,
        };
        let merged = mine.clone().merged_over(&theirs);
        assert_eq!(merged.watermark, at(8));
        assert_eq!(merged.continuation, mine.continuation);
        let older = SyncCursor {
            watermark: at(1),
            continuation: None,
        };
        assert_eq!(mine.merged_over(&older).watermark, at(5));
    }

    #[test]
    fn when_stored_should_keep_the_camel_case_shape() {
        let cursor = SyncCursor::default().continued(continuation("run-1"));
        let value = serde_json::to_value(&cursor).unwrap();
        assert_eq!(
            value["continuation"]["nextLink"],
            cursor.continuation.as_ref().unwrap().next_link
        );
        assert_eq!(value["continuation"]["recordedInvalid"], 1);
        assert_eq!(serde_json::from_value::<SyncCursor>(value).unwrap(), cursor);
    }
}
