//! What fetch-referrals and ingest-referral both do with what arrives: input that cannot be read
//! is stored with its reason (never dropped), and every stored referral is counted once in the
//! sync run that delivered it.

use hunter_domain::clock;
use hunter_domain::model::ReferralRecord;
use hunter_domain::rules::{Domain, SkipReason, UpsertOutcome};

use crate::ports::{RunCount, Store, StoreError};
use crate::sync_report::report_if_complete;

/// Stores unreadable input as an `invalid_payload` referral (its text capped, with `detail`),
/// counts it in run `run_id`, and logs it. Returns the record and what storing it did.
pub async fn record_invalid(
    store: &dyn Store,
    run_id: Option<&str>,
    text: &str,
    detail: &str,
) -> Result<(ReferralRecord, UpsertOutcome), StoreError> {
    let record = ReferralRecord::invalid(text, detail, clock::now());
    let outcome = store.upsert_referral(&record).await?;
    count_in_run(store, run_id, &record, outcome).await?;
    log_stored(run_id, &record, outcome, false);
    Ok((record, outcome))
}

/// Counts `record` once in run `run_id` (a redelivery is not counted again) and, when that
/// completes the run, logs its summary.
pub async fn count_in_run(
    store: &dyn Store,
    run_id: Option<&str>,
    record: &ReferralRecord,
    outcome: UpsertOutcome,
) -> Result<(), StoreError> {
    count_in_runs(store, &[(run_id, record, outcome)]).await
}

/// [`count_in_run`] for the stored referrals of a batch, in one store call
/// ([`crate::ports::SyncStore::count_all_ingested`]); each run a count changed is checked for
/// completion once. Those without a run are left out.
pub async fn count_in_runs(
    store: &dyn Store,
    stored: &[(Option<&str>, &ReferralRecord, UpsertOutcome)],
) -> Result<(), StoreError> {
    let counts: Vec<RunCount<'_>> = stored
        .iter()
        .filter_map(|&(run_id, record, outcome)| {
            Some(RunCount {
                run_id: run_id?,
                referral_id: &record.id,
                outcome,
                skip_reason: record.skip_reason,
            })
        })
        .collect();
    if counts.is_empty() {
        return Ok(());
    }
    let counted = store.count_all_ingested(&counts).await?;
    let mut changed: Vec<&str> = Vec::new();
    for (count, _) in counts.iter().zip(counted).filter(|(_, new)| *new) {
        if !changed.contains(&count.run_id) {
            changed.push(count.run_id);
        }
    }
    for run_id in changed {
        report_if_complete(store, run_id).await;
    }
    Ok(())
}

/// The one log line of a stored referral: `partner_center_referral_ingested`, or
/// `partner_center_referral_skipped` with its reason (a warning for input that could not be
/// read: someone should look at it).
pub fn log_stored(
    run_id: Option<&str>,
    record: &ReferralRecord,
    outcome: UpsertOutcome,
    lead_changed: bool,
) {
    let domain = record.domain.as_ref().map(Domain::as_str);
    match record.skip_reason {
        None => tracing::info!(
            event = "partner_center_referral_ingested",
            run_id,
            referral_id = %record.id,
            outcome = outcome.as_str(),
            domain,
            domain_source = record.domain_source.map(|s| s.as_str()),
            lead_changed,
        ),
        Some(SkipReason::InvalidPayload) => tracing::warn!(
            event = "partner_center_referral_skipped",
            run_id,
            referral_id = %record.id,
            outcome = outcome.as_str(),
            reason = SkipReason::InvalidPayload.as_str(),
            detail = record.skip_detail.as_deref(),
        ),
        Some(reason) => tracing::info!(
            event = "partner_center_referral_skipped",
            run_id,
            referral_id = %record.id,
            outcome = outcome.as_str(),
            reason = reason.as_str(),
            detail = record.skip_detail.as_deref(),
            domain,
        ),
    }
}
