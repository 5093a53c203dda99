//! The one `partner_center_sync_summary` of a run.

use crate::ports::SyncStore;

/// Logs `partner_center_sync_summary` once per run, as soon as fetching succeeded and ingest
/// stored every fetched referral. Both functions call it; the store decides who reports.
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
            pages = run.pages,
            fetched = run.fetched,
            enqueued = run.enqueued,
            stored = run.stored,
            eligible = run.eligible,
            inserted = outcome(&run, "inserted"),
            updated = outcome(&run, "updated"),
            unchanged = outcome(&run, "unchanged"),
            stale = outcome(&run, "stale"),
            skipped = %serde_json::to_string(&run.skipped).unwrap_or_default(),
            fetch_ms = run.finished_at.map(|f| (f - run.started_at).num_milliseconds()),
        ),
        Ok(false) => {}
        Err(err) => tracing::warn!(event = "sync_run_summary_claim_failed", run_id, error = %err),
    }
}

fn outcome(run: &crate::model::SyncRun, name: &str) -> u32 {
    run.outcomes.get(name).copied().unwrap_or(0)
}
