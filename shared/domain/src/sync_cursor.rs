//! Where the Partner Center sync stands between invocations: the watermark of the last complete
//! run, while a run is under way the `@odata.nextLink` to continue it at, and the lease of the
//! one invocation that owns the sync right now.
//!
//! Every transition is a pure function of the stored cursor; fetch-referrals claims it, runs
//! pages (renewing its lease on each), and writes back what the transition returns.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Sync-state key of the cursor.
pub const SYNC_STATE_KEY: &str = "partner_center_sync";

/// The stored watermark, continuation and lease.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncCursor {
    /// Newest `updatedDateTime` a completed run saw (never later than that run's start); the
    /// next run asks for updates from a little before it ([`SyncCursor::since`]).
    pub watermark: Option<DateTime<Utc>>,
    /// A run that stopped before its last page (out of time or pages).
    pub continuation: Option<Continuation>,
    /// The invocation working on the sync now; absent between invocations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
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

/// One invocation's hold on the sync: nobody else fetches until it lets go or `expires_at`
/// passes (its invocation was killed before it could let go).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// The run the invocation works on.
    pub run_id: String,
    /// The invocation (a run continues over several invocations; each takes the lease anew).
    pub holder: String,
    pub expires_at: DateTime<Utc>,
}

impl Lease {
    /// Whether it still holds at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }
}

/// What an invocation asks for when it claims the sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    /// The invocation's own id.
    pub holder: String,
    /// The id of the run it starts if there is none to resume.
    pub new_run_id: String,
    pub expires_at: DateTime<Utc>,
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The sync is the claimer's until its lease expires.
    Granted(Grant),
    /// Another invocation holds a live lease (on run `lease.run_id`).
    Held {
        lease: Lease,
        watermark: Option<DateTime<Utc>>,
    },
}

/// A granted claim.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// The stored cursor with the claimer's lease: what to write.
    pub cursor: SyncCursor,
    /// A lease that expired without being let go: its invocation was killed, its run is
    /// abandoned.
    pub expired: Option<Lease>,
}

/// Where an invocation starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SyncStart<'a> {
    /// A new run, asking for referrals updated at or after `since` (everything when `None`).
    New { since: Option<DateTime<Utc>> },
    /// The run an earlier invocation left off.
    Resume(&'a Continuation),
    /// A new run going on where an abandoned run's continuation points.
    TakeOver(&'a Continuation),
}

impl SyncCursor {
    /// Where a new run asks from: `overlap` before the watermark, or before `now` when the
    /// watermark is later than that (a referral dated in the future must not stop the sync).
    /// The overlap catches referrals committed late with an earlier `updatedDateTime`; ingest's
    /// version check makes fetching a few twice free.
    pub fn since(&self, now: DateTime<Utc>, overlap: Duration) -> Option<DateTime<Utc>> {
        self.watermark.map(|w| w.min(now) - overlap)
    }

    /// Continue the stored run if there is one, else start a new one ([`SyncCursor::since`]).
    pub fn start(&self, now: DateTime<Utc>, overlap: Duration) -> SyncStart<'_> {
        match &self.continuation {
            Some(continuation) => SyncStart::Resume(continuation),
            None => SyncStart::New {
                since: self.since(now, overlap),
            },
        }
    }

    /// Claims the sync at `now`: granted unless another invocation holds a live lease. The
    /// lease names the run the claimer will work on: the continuation's (unless that run's
    /// lease expired: it is taken over by a new run), else `request.new_run_id`.
    pub fn claim(&self, request: LeaseRequest, now: DateTime<Utc>) -> Claim {
        if let Some(held) = &self.lease {
            if held.is_live(now) && held.holder != request.holder {
                return Claim::Held {
                    lease: held.clone(),
                    watermark: self.watermark,
                };
            }
        }
        let expired = self
            .lease
            .clone()
            .filter(|l| !l.is_live(now) && l.holder != request.holder);
        let mut grant = Grant {
            cursor: self.clone(),
            expired,
        };
        let run_id = match grant.start(now, Duration::zero()) {
            SyncStart::Resume(continuation) => continuation.run_id.clone(),
            SyncStart::New { .. } | SyncStart::TakeOver(_) => request.new_run_id,
        };
        grant.cursor.lease = Some(Lease {
            run_id,
            holder: request.holder,
            expires_at: request.expires_at,
        });
        Claim::Granted(grant)
    }

    /// This cursor with `holder`'s lease running until `expires_at`; `None` when `holder` no
    /// longer holds it (it expired and another invocation took the sync).
    pub fn renewed(&self, holder: &str, expires_at: DateTime<Utc>) -> Option<Self> {
        let lease = self.lease.as_ref().filter(|l| l.holder == holder)?;
        Some(Self {
            lease: Some(Lease {
                expires_at,
                ..lease.clone()
            }),
            ..self.clone()
        })
    }

    /// This cursor (an invocation's outcome) written over `stored`, letting go of `holder`'s
    /// lease; the later watermark of both wins. `None` when `holder` no longer holds the lease:
    /// another invocation owns the sync, and this outcome must not be written.
    pub fn released_over(self, stored: &Self, holder: &str) -> Option<Self> {
        stored.lease.as_ref().filter(|l| l.holder == holder)?;
        Some(Self {
            watermark: self.watermark.max(stored.watermark),
            continuation: self.continuation,
            lease: None,
        })
    }

    /// The run that started at `run_started` enqueued its last page: the watermark moves up to
    /// the newest update it saw, but not past its start.
    pub fn completed(
        &self,
        max_updated: Option<DateTime<Utc>>,
        run_started: DateTime<Utc>,
    ) -> Self {
        Self {
            watermark: self.watermark.max(max_updated.map(|m| m.min(run_started))),
            continuation: None,
            lease: self.lease.clone(),
        }
    }

    /// The run stops before its last page; the next invocation goes on at `continuation`.
    pub fn continued(&self, continuation: Continuation) -> Self {
        Self {
            watermark: self.watermark,
            continuation: Some(continuation),
            lease: self.lease.clone(),
        }
    }

    /// The run failed: the watermark stays, so the next run repeats the window (ingest is
    /// idempotent); a continuation is dropped, as its link may be stale. `None` when that changes
    /// nothing, so there is nothing to write.
    pub fn failed(&self) -> Option<Self> {
        self.continuation.is_some().then_some(Self {
            watermark: self.watermark,
            continuation: None,
            lease: self.lease.clone(),
        })
    }

    /// This cursor, written over `stored` that another invocation wrote meanwhile: the later
    /// watermark of both wins, so a watermark never moves back; the stored lease stays.
    pub fn merged_over(self, stored: &Self) -> Self {
        Self {
            watermark: self.watermark.max(stored.watermark),
            continuation: self.continuation,
            lease: stored.lease.clone(),
        }
    }
}

impl Grant {
    /// Where the granted invocation starts: a continuation of the run whose lease expired is
    /// taken over by a new run, any other continuation resumed, else a new run.
    pub fn start(&self, now: DateTime<Utc>, overlap: Duration) -> SyncStart<'_> {
        match self.cursor.start(now, overlap) {
            SyncStart::Resume(continuation)
                if self
                    .expired
                    .as_ref()
                    .is_some_and(|l| l.run_id == continuation.run_id) =>
            {
                SyncStart::TakeOver(continuation)
            }
            start => start,
        }
    }

    /// The run the lease names.
    pub fn run_id(&self) -> &str {
        self.cursor
            .lease
            .as_ref()
            .map(|l| l.run_id.as_str())
            .unwrap_or_default()
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

    /// A time after every `at(..)`.
    fn later() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
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
            SyncCursor::default().start(later(), Duration::zero()),
            SyncStart::New { since: None }
        );
    }

    #[test]
    fn when_a_watermark_is_stored_should_start_from_it() {
        let cursor = SyncCursor {
            watermark: at(5),
            continuation: None,
            lease: None,
        };
        assert_eq!(
            cursor.start(later(), Duration::zero()),
            SyncStart::New { since: at(5) }
        );
    }

    #[test]
    fn when_a_run_was_left_off_should_resume_it() {
        let cursor = SyncCursor::default().continued(continuation("run-1"));
        match cursor.start(later(), Duration::zero()) {
            SyncStart::Resume(c) => assert_eq!(c.run_id, "run-1"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn when_a_run_completes_should_move_the_watermark_up_and_never_down() {
        let cursor = SyncCursor {
            watermark: at(5),
            continuation: Some(continuation("run-1")),
            lease: None,
        };
        assert_eq!(
            cursor.completed(at(9), later()),
            SyncCursor {
                watermark: at(9),
                continuation: None,
                lease: None,
            }
        );
        assert_eq!(
            cursor.completed(at(3), later()).watermark,
            at(5),
            "older updates"
        );
        assert_eq!(
            cursor.completed(None, later()).watermark,
            at(5),
            "an empty run"
        );
    }

    #[test]
    fn when_a_run_is_continued_should_keep_the_watermark() {
        let cursor = SyncCursor {
            watermark: at(5),
            continuation: None,
            lease: None,
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
            lease: None,
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
            lease: None,
        };
        let theirs = SyncCursor {
            watermark: at(8),
            continuation: None,
            lease: None,
        };
        let merged = mine.clone().merged_over(&theirs);
        assert_eq!(merged.watermark, at(8));
        assert_eq!(merged.continuation, mine.continuation);
        let older = SyncCursor {
            watermark: at(1),
            continuation: None,
            lease: None,
        };
        assert_eq!(mine.merged_over(&older).watermark, at(5));
    }

    fn minutes(n: i64) -> Duration {
        Duration::minutes(n)
    }

    #[test]
    fn when_a_new_run_starts_should_look_back_by_the_overlap_from_the_watermark() {
        let cursor = SyncCursor {
            watermark: at(5),
            ..SyncCursor::default()
        };
        assert_eq!(
            cursor.start(later(), minutes(10)),
            SyncStart::New {
                since: Some(at(5).unwrap() - minutes(10))
            }
        );
        assert_eq!(SyncCursor::default().since(later(), minutes(10)), None);
    }

    #[test]
    fn when_the_watermark_is_in_the_future_should_look_back_from_now() {
        let now = at(5).unwrap();
        let cursor = SyncCursor {
            watermark: Some(now + Duration::days(365)),
            ..SyncCursor::default()
        };
        assert_eq!(cursor.since(now, minutes(10)), Some(now - minutes(10)));
    }

    #[test]
    fn when_a_run_saw_an_update_dated_after_its_start_should_stop_the_watermark_at_the_start() {
        let started = at(8).unwrap();
        let cursor = SyncCursor {
            watermark: at(5),
            ..SyncCursor::default()
        };
        let future = Some(started + Duration::days(365));
        assert_eq!(cursor.completed(future, started).watermark, Some(started));
        assert_eq!(cursor.completed(at(7), started).watermark, at(7));
    }

    fn request(holder: &str, expires_at: DateTime<Utc>) -> LeaseRequest {
        LeaseRequest {
            holder: holder.to_owned(),
            new_run_id: format!("run-of-{holder}"),
            expires_at,
        }
    }

    fn granted(claim: Claim) -> Grant {
        match claim {
            Claim::Granted(grant) => grant,
            held => panic!("{held:?}"),
        }
    }

    #[test]
    fn when_nobody_holds_the_sync_should_grant_it_for_a_new_run() {
        let now = at(5).unwrap();
        let grant = granted(SyncCursor::default().claim(request("a", now + minutes(15)), now));
        assert_eq!(grant.run_id(), "run-of-a");
        assert_eq!(grant.expired, None);
        let lease = grant.cursor.lease.clone().unwrap();
        assert_eq!(
            (lease.holder.as_str(), lease.expires_at),
            ("a", now + minutes(15))
        );
        assert_eq!(
            grant.start(now, minutes(10)),
            SyncStart::New { since: None }
        );
    }

    #[test]
    fn when_another_invocation_holds_a_live_lease_should_refuse_naming_its_run() {
        let now = at(5).unwrap();
        let mine = granted(SyncCursor::default().claim(request("a", now + minutes(15)), now));
        match mine
            .cursor
            .claim(request("b", now + minutes(20)), now + minutes(1))
        {
            Claim::Held { lease, .. } => assert_eq!(lease.run_id, "run-of-a"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn when_a_continued_run_is_claimed_again_should_resume_it_under_its_own_id() {
        let now = at(5).unwrap();
        let cursor = SyncCursor::default().continued(continuation("run-1"));
        let grant = granted(cursor.claim(request("b", now + minutes(15)), now));
        assert_eq!(grant.run_id(), "run-1");
        assert!(
            matches!(grant.start(now, minutes(10)), SyncStart::Resume(c) if c.run_id == "run-1")
        );
    }

    #[test]
    fn when_a_lease_expired_without_being_let_go_should_take_the_run_over() {
        let now = at(5).unwrap();
        let killed = granted(
            SyncCursor::default()
                .continued(continuation("run-1"))
                .claim(request("a", now + minutes(15)), now),
        );
        let after = now + minutes(16);
        let grant = granted(
            killed
                .cursor
                .claim(request("b", after + minutes(15)), after),
        );
        assert_eq!(
            grant.expired.as_ref().map(|l| l.run_id.as_str()),
            Some("run-1"),
            "the killed run is to be ended"
        );
        assert_eq!(grant.run_id(), "run-of-b", "a new run");
        assert!(
            matches!(grant.start(after, minutes(10)), SyncStart::TakeOver(c) if c.run_id == "run-1"),
            "from the stored place on"
        );
    }

    #[test]
    fn when_a_lease_is_renewed_or_let_go_should_check_who_holds_it() {
        let now = at(5).unwrap();
        let grant = granted(SyncCursor::default().claim(request("a", now + minutes(15)), now));
        let renewed = grant.cursor.renewed("a", now + minutes(30)).unwrap();
        assert_eq!(
            renewed.lease.as_ref().unwrap().expires_at,
            now + minutes(30)
        );
        assert_eq!(
            grant.cursor.renewed("b", now + minutes(30)),
            None,
            "not b's"
        );

        let outcome = renewed.completed(at(4), now);
        let stored = SyncCursor {
            watermark: at(3),
            ..renewed.clone()
        };
        let released = outcome.clone().released_over(&stored, "a").unwrap();
        assert_eq!((released.watermark, released.lease), (at(4), None));
        // Taken over by b after a's lease ran out: a's outcome is not written.
        let taken = granted(stored.claim(request("b", now + minutes(60)), now + minutes(31)));
        assert_eq!(outcome.released_over(&taken.cursor, "a"), None);
    }

    #[test]
    fn when_a_cursor_was_stored_before_leases_existed_should_read_it() {
        let old = serde_json::json!({"watermark": "2026-11-01T05:00:00Z", "continuation": null});
        let cursor: SyncCursor = serde_json::from_value(old).unwrap();
        assert_eq!((cursor.watermark, cursor.lease.clone()), (at(5), None));
        assert!(
            serde_json::to_value(&cursor)
                .unwrap()
                .get("lease")
                .is_none()
        );
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
