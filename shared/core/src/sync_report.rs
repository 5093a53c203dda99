//! The one `partner_center_sync_summary` of a run.

use crate::ports::SyncStore;
use hunter_domain::model::SyncRun;
use hunter_domain::rules::SkipReason;

/// Logs `partner_center_sync_summary` once per run, succeeded or failed, as soon as ingest has
/// stored what the run will deliver ([`hunter_domain::model::SyncRun::is_complete`]). Both functions
/// call it; the store decides who reports. Counts are fields of their own (`skipped_<reason>`),
/// so log queries can sum them.
pub async fn report_if_complete<S: SyncStore + ?Sized>(store: &S, run_id: &str) {
    let run = match store.get_sync_run(run_id).await {
        Ok(Some(run)) if run.is_complete() && run.summarized_at.is_none() => run,
        Ok(_) => return,
        Err(err) => {
            tracing::warn!(event = "sync_run_read_failed", run_id, error = %err);
            return;
        }
    };
    match store.claim_run_summary(run_id).await {
        Ok(true) => tracing::info!(
            event = "partner_center_sync_summary",
            run_id,
            status = run.status.as_str(),
            error = run.error.as_deref(),
            pages = run.pages,
            fetched = run.fetched,
            enqueued = run.enqueued,
            stored = run.stored,
            eligible = run.eligible,
            inserted = outcome(&run, "inserted"),
            updated = outcome(&run, "updated"),
            unchanged = outcome(&run, "unchanged"),
            stale = outcome(&run, "stale"),
            skipped = run.skipped.values().sum::<u32>(),
            skipped_not_incoming = skipped(&run, SkipReason::NotIncoming),
            skipped_status_closed = skipped(&run, SkipReason::StatusClosed),
            skipped_substatus_excluded = skipped(&run, SkipReason::SubstatusExcluded),
            skipped_no_domain = skipped(&run, SkipReason::NoDomain),
            skipped_invalid_payload = skipped(&run, SkipReason::InvalidPayload),
            fetch_ms = run
                .finished_at
                .map(|f| (f - run.started_at).num_milliseconds()),
        ),
        Ok(false) => {}
        Err(err) => tracing::warn!(event = "sync_run_summary_claim_failed", run_id, error = %err),
    }
}

fn outcome(run: &SyncRun, name: &str) -> u32 {
    run.outcomes.get(name).copied().unwrap_or(0)
}

fn skipped(run: &SyncRun, reason: SkipReason) -> u32 {
    run.skipped.get(reason.as_str()).copied().unwrap_or(0)
}
