//! ingest-referral: each referral message → parse, domain, eligibility → conditional upsert →
//! the lead of its domain → a push request when the lead changed.
//!
//! Unreadable input is stored as `invalid_payload` with its (capped) text and acknowledged. Every
//! other failure (the store or the queue unavailable, or refusing what it was given) is reported
//! as a batch item failure, so SQS redelivers just those messages and dead-letters them after
//! maxReceiveCount: a readable referral is never turned into `invalid_payload`.
//!
//! A referral too large for a message arrives by reference (`payloadRef`): fetch-referrals
//! stored it whole before sending the message, and it is read back from the store here.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use hunter_core::failures::{FailedMessage, note_failure, receive_count};
use hunter_core::fanout::send_all;
use hunter_core::intake::{count_in_run, count_in_runs, log_stored};
use hunter_core::messages::{PushMessage, QueuedReferral, QueuedReferralText};
use hunter_core::metrics::{Metrics, ingest_referral as metrics};
use hunter_core::optimistic::{Change, update_lead_with_referral};
use hunter_core::ports::{
    DomainScanner, OutgoingMessage, Queue, QueueError, Store, StoreError, UpsertOutcome,
};
use hunter_core::retry::Backoff;
use hunter_core::scanning::scan_lead;
use hunter_domain::clock;
use hunter_domain::lead_scan::{claim_scan, first_scan_claimed_elsewhere, scan_claim_left};
use hunter_domain::leads::{LeadJoin, LeadWithReferral, join_referral};
use hunter_domain::model::{Lead, ReferralRecord};
use hunter_domain::referral::{Referral, parse_referral};
use hunter_domain::rules::{Domain, Rules, SkipReason, eligibility, extract_domain};

/// What the function works with.
#[allow(missing_debug_implementations, reason = "trait objects")]
pub struct IngestDeps<'a> {
    pub store: &'a dyn Store,
    /// The dynamics-push queue.
    pub push_queue: &'a dyn Queue,
    /// Scans the domains of leads (DNS).
    pub scanner: &'a dyn DomainScanner,
    pub rules: &'a Rules,
    /// A lead's domain is scanned again once its last scan is this old (`HUNTER_RESCAN_AFTER`).
    pub rescan_after: std::time::Duration,
    pub send_backoff: Backoff,
    /// The queue's maxReceiveCount, to log the failure that dead-letters a message.
    pub max_receives: Option<u32>,
    /// The referrals queue itself, to put off a referral whose domain's first scan is under way
    /// elsewhere (without it, the message is a batch item failure).
    pub referrals_queue: Option<&'a dyn Queue>,
    /// Shared by the batches this process handles at once (one per process).
    pub turns: &'a DomainTurns,
}

/// Lanes of the batches one process handles at once take turns per domain: a referral whose
/// domain another batch of this process is joining (and scanning for the first time) waits for
/// that lane, then finds the lead scanned, instead of being put off for the scan's claim. Across
/// processes (concurrent Lambda invocations) the claim in the store still decides.
#[derive(Debug, Default)]
pub struct DomainTurns {
    held: std::sync::Mutex<HeldTurns>,
}

/// Each domain with a lane in or waiting for its turn, and the turn.
type HeldTurns = std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>;

/// The stored messages of one domain in a batch (or one message without a domain), with their
/// positions in the batch and what storing them did.
type Lane = (Option<String>, Vec<(usize, Judged, UpsertOutcome)>);

/// A lane's turn on its domain, given back on drop.
struct Turn<'t> {
    turns: &'t DomainTurns,
    domain: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl DomainTurns {
    async fn take(&self, domain: &str) -> Turn<'_> {
        let turn = self.lock().entry(domain.to_owned()).or_default().clone();
        Turn {
            turns: self,
            domain: domain.to_owned(),
            guard: Some(turn.lock_owned().await),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HeldTurns> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Domains with a lane in or waiting for its turn.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// No lane holds or waits for a turn.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut held = self.turns.lock();
        // Nobody else holds or waits for it: forget the domain.
        if held
            .get(&self.domain)
            .is_some_and(|turn| std::sync::Arc::strong_count(turn) == 1)
        {
            held.remove(&self.domain);
        }
    }
}

/// The queue's name in failure records and logs.
pub const QUEUE: &str = "referrals";

/// A failure that leaves the message on the queue.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("the dynamics-push queue refused the push of {domain}: {message}")]
    PushRefused { domain: String, message: String },
    /// The first scan of the domain was claimed by another ingest that has not finished (it may
    /// have died): the referral is stored; delivered again, it scans once the claim has ended.
    #[error("the first scan of {domain} is in progress elsewhere")]
    ScanInProgress {
        domain: String,
        /// When that scan's claim ends.
        after: std::time::Duration,
    },
}

impl IngestError {
    /// Whether redelivering the message may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::Queue(e) => e.is_retryable(),
            Self::PushRefused { .. } => false,
            Self::ScanInProgress { .. } => true,
        }
    }
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Ingested {
    pub referral_id: String,
    pub outcome: UpsertOutcome,
    pub skip_reason: Option<SkipReason>,
    pub domain: Option<Domain>,
    /// The lead was created or changed and a push was requested.
    pub lead_changed: bool,
    pub push_requested: bool,
}

impl Ingested {
    fn of(record: ReferralRecord, outcome: UpsertOutcome, join: &LeadJoin) -> Self {
        Self {
            referral_id: record.id,
            outcome,
            skip_reason: record.skip_reason,
            domain: record.domain,
            lead_changed: join.writes_lead(),
            push_requested: matches!(join, LeadJoin::Changed(..) | LeadJoin::PushAgain(..)),
        }
    }
}

/// The SQS batch handler: every record processed, transient failures reported for redelivery.
///
/// Records are read and judged one after another (pure work) and stored in one store call; then
/// they join their leads in lanes, one per domain, side by side: the referrals of one domain
/// join its lead in turn, so one batch never competes with itself for a lead or a scan, while
/// the scans of different domains overlap. Then they are counted in their runs in one call.
pub async fn handle_batch(deps: &IngestDeps<'_>, mut event: SqsEvent) -> SqsBatchResponse {
    let bodies: Vec<String> = event
        .records
        .iter_mut()
        .map(|r| r.body.take().unwrap_or_default())
        .collect();
    let mut results: Vec<Option<Result<Ingested, IngestError>>> =
        bodies.iter().map(|_| None).collect();
    let mut judged = Vec::with_capacity(bodies.len());
    for (i, body) in bodies.iter().enumerate() {
        match judge(deps, body).await {
            Ok(one) => judged.push((i, one)),
            Err(err) => results[i] = Some(Err(err)),
        }
    }
    let records: Vec<&ReferralRecord> = judged.iter().map(|(_, j)| &*j.record).collect();
    let outcomes = deps.store.upsert_referrals(&records).await;
    let mut lanes: Vec<Lane> = Vec::new();
    let mut lane_of_domain = std::collections::HashMap::new();
    for ((i, judged), outcome) in judged.into_iter().zip(outcomes) {
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(err) => {
                results[i] = Some(Err(err.into()));
                continue;
            }
        };
        let lane = match &judged.record.domain {
            Some(domain) => *lane_of_domain.entry(domain.to_string()).or_insert_with(|| {
                lanes.push((Some(domain.to_string()), Vec::new()));
                lanes.len() - 1
            }),
            None => {
                lanes.push((None, Vec::new()));
                lanes.len() - 1
            }
        };
        lanes[lane].1.push((i, judged, outcome));
    }
    let landed =
        futures_util::future::join_all(lanes.into_iter().map(|(domain, lane)| async move {
            let _turn = match &domain {
                Some(domain) => Some(deps.turns.take(domain).await),
                None => None,
            };
            let mut done = Vec::with_capacity(lane.len());
            for (i, judged, outcome) in lane {
                done.push((i, land(deps, judged, outcome).await));
            }
            done
        }))
        .await;
    let mut landed: Vec<_> = landed.into_iter().flatten().collect();
    landed.sort_by_key(|(i, _)| *i);
    for (i, counted) in count_all(deps, landed).await {
        results[i] = Some(counted);
    }

    let mut response = SqsBatchResponse::default();
    let mut tally = Tally::default();
    for ((record, body), result) in event.records.into_iter().zip(&bodies).zip(results) {
        let message_id = record.message_id.unwrap_or_default();
        // Every record was judged, and every judged one stored; were one not, SQS delivers it
        // again rather than losing it.
        let Some(result) = result else {
            tracing::error!(event = "referral_not_handled", message_id = %message_id);
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message_id;
            response.batch_item_failures.push(failure);
            continue;
        };
        match result {
            Ok(ingested) => tally.count(&ingested),
            Err(IngestError::ScanInProgress { domain, after })
                if put_off(deps, body, after).await =>
            {
                tracing::info!(event = "referral_put_off", message_id = %message_id, domain = %domain, delay_s = after.as_secs());
            }
            Err(err) => {
                let error = err.to_string();
                tally.failed += 1;
                tally.store_failures += u64::from(matches!(err, IngestError::Store(_)));
                let failed = FailedMessage {
                    queue: QUEUE,
                    message_id: &message_id,
                    receive_count: receive_count(&record.attributes),
                    error: &error,
                };
                if note_failure(deps.store, failed, deps.max_receives).await {
                    tally.dead_lettered += 1;
                }
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                response.batch_item_failures.push(failure);
            }
        }
    }
    tally.metrics().emit();
    response
}

/// Sends `body` again, delivered after `after` (at least a second, at most SQS's 15 minutes);
/// whether the copy was taken (then the message at hand is done).
async fn put_off(deps: &IngestDeps<'_>, body: &str, after: std::time::Duration) -> bool {
    let Some(queue) = deps.referrals_queue else {
        return false;
    };
    let mut copy = OutgoingMessage::new("0", body);
    copy.delay = Some(after.clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(900),
    ));
    match send_all(queue, &[copy], &deps.send_backoff).await {
        Ok(report) => report.failed.is_empty(),
        Err(err) => {
            tracing::warn!(event = "referral_put_off_failed", error = %err);
            false
        }
    }
}

/// What a batch did, for the function's metrics.
#[derive(Debug, Default)]
struct Tally {
    ingested: u64,
    eligible: u64,
    skipped: u64,
    invalid: u64,
    store_failures: u64,
    failed: u64,
    dead_lettered: u64,
}

impl Tally {
    fn count(&mut self, ingested: &Ingested) {
        self.ingested += 1;
        match ingested.skip_reason {
            None => self.eligible += 1,
            Some(SkipReason::InvalidPayload) => {
                self.skipped += 1;
                self.invalid += 1;
            }
            Some(_) => self.skipped += 1,
        }
    }

    fn metrics(&self) -> Metrics {
        Metrics::new(metrics::FUNCTION)
            .count(metrics::INGESTED, self.ingested)
            .count(metrics::ELIGIBLE, self.eligible)
            .count(metrics::SKIPPED, self.skipped)
            .count(metrics::INVALID_PAYLOAD, self.invalid)
            .count(metrics::STORE_FAILURES, self.store_failures)
            .count(metrics::MESSAGES_FAILED, self.failed)
            .count(metrics::DEAD_LETTERED, self.dead_lettered)
    }
}

/// One message. An `Err` means "deliver it again": a failure of the store of any kind (also one
/// refusing the record, e.g. as too large an item) is retried and then dead-lettered, never
/// recorded as `invalid_payload`. Unreadable input is recorded, not returned.
pub async fn ingest_message(deps: &IngestDeps<'_>, body: &str) -> Result<Ingested, IngestError> {
    let judged = judge(deps, body).await?;
    let outcome = deps.store.upsert_referral(&judged.record).await?;
    let landed = land(deps, judged, outcome).await?;
    count_in_run(
        deps.store,
        landed.run_id.as_deref(),
        &landed.record,
        landed.outcome,
    )
    .await?;
    Ok(landed.into_ingested())
}

/// A message read and judged (domain, eligibility), or unreadable input as its
/// `invalid_payload` record; nothing stored yet.
struct Judged {
    run_id: Option<String>,
    record: Box<ReferralRecord>,
}

/// Reads a message (following a payload reference) and judges its referral; only reading a
/// stored payload can fail.
async fn judge(deps: &IngestDeps<'_>, body: &str) -> Result<Judged, IngestError> {
    let message = match QueuedReferral::read(body) {
        Ok(message) => message,
        Err(unreadable) => {
            return Ok(Judged {
                run_id: None,
                record: Box::new(ReferralRecord::invalid(
                    body,
                    &unreadable.to_string(),
                    clock::now(),
                )),
            });
        }
    };
    let run_id = message.run_id().map(str::to_owned);
    let read = match &message {
        QueuedReferralText::Inline { referral, .. } => parse_referral(referral)
            .map_err(|unreadable| ((*referral).to_owned(), unreadable.to_string())),
        QueuedReferralText::Stored(stored) => read_stored(deps, &stored.payload_ref, body).await?,
    };
    let record = match read {
        Ok(referral) => {
            let extracted = extract_domain(&referral, deps.rules);
            let decision =
                eligibility(&referral, extracted.as_ref().map(|d| &d.domain), deps.rules);
            let mut record =
                ReferralRecord::from_referral(&referral, extracted, decision, clock::now());
            record.arrived_by = message.arrived_by();
            record
        }
        Err((text, detail)) => ReferralRecord::invalid(&text, &detail, clock::now()),
    };
    Ok(Judged {
        run_id,
        record: Box::new(record),
    })
}

/// A message after its lane: the referral stored (unreadable input as `invalid_payload`),
/// joined to its lead and logged; not yet counted in its run.
struct Landed {
    run_id: Option<String>,
    record: Box<ReferralRecord>,
    outcome: UpsertOutcome,
    join: Box<LeadJoin>,
}

impl Landed {
    fn into_ingested(self) -> Ingested {
        Ingested::of(*self.record, self.outcome, &self.join)
    }
}

/// The lane's part for a stored referral: joins it to its lead (scan and push included).
async fn land(
    deps: &IngestDeps<'_>,
    judged: Judged,
    outcome: UpsertOutcome,
) -> Result<Landed, IngestError> {
    let join = join_lead(deps, &judged.record, outcome).await?;
    log_stored(
        judged.run_id.as_deref(),
        &judged.record,
        outcome,
        join.writes_lead(),
    );
    Ok(Landed {
        run_id: judged.run_id,
        record: judged.record,
        outcome,
        join: Box::new(join),
    })
}

/// Counts the landed messages of a batch in their runs, in one store call. A count that fails
/// fails every message it named that has a run (delivered again, each is found stored and
/// counted once).
async fn count_all(
    deps: &IngestDeps<'_>,
    landed: Vec<(usize, Result<Landed, IngestError>)>,
) -> Vec<(usize, Result<Ingested, IngestError>)> {
    let stored: Vec<_> = landed
        .iter()
        .filter_map(|(_, landed)| landed.as_ref().ok())
        .map(|l| (l.run_id.as_deref(), &*l.record, l.outcome))
        .collect();
    let counted = count_in_runs(deps.store, &stored).await;
    landed
        .into_iter()
        .map(|(i, landed)| {
            let ingested = landed.and_then(|landed| match &counted {
                Err(err) if landed.run_id.is_some() => Err(err.clone().into()),
                _ => Ok(landed.into_ingested()),
            });
            (i, ingested)
        })
        .collect()
}

/// The referral fetch-referrals stored under `key`, or the text to record as `invalid_payload`
/// and why. The payload is written before its message is sent, so one that is missing is gone:
/// the message (`body`) is recorded with that reason.
async fn read_stored(
    deps: &IngestDeps<'_>,
    key: &str,
    body: &str,
) -> Result<Result<Referral, (String, String)>, IngestError> {
    let Some(text) = deps.store.get_payload(key).await? else {
        let detail = format!("the referral payload {key:?} the message refers to is not stored");
        return Ok(Err((body.to_owned(), detail)));
    };
    Ok(parse_referral(&text).map_err(|unreadable| (text, unreadable.to_string())))
}

/// Joins the stored referral to its domain's lead ([`join_referral`]), scans the domain when a
/// scan is due ([`claim_scan`]: never scanned, or older than `rescan_after`; once per domain),
/// and asks for the push that the join or the scan calls for. The referral is stored before
/// the scan, so a DNS failure never loses it.
async fn join_lead(
    deps: &IngestDeps<'_>,
    record: &ReferralRecord,
    outcome: UpsertOutcome,
) -> Result<LeadJoin, IngestError> {
    let Some(domain) = &record.domain else {
        return Ok(LeadJoin::Unchanged);
    };
    let now = clock::now();
    let (join, scan_claimed, scan_elsewhere) =
        update_lead_with_referral(deps.store, domain, &record.id, |stored| {
            let counted = stored.as_ref().is_some_and(|s| s.contribution.is_some());
            let existing = stored.as_ref().map(|s| s.lead.clone());
            let join = join_referral(stored, record, outcome, now);
            // What to write: the joined lead, or (when a scan is claimed) the lead as it was.
            let mut written = match &join {
                LeadJoin::Changed(lead, contribution) | LeadJoin::Recorded(lead, contribution) => {
                    Some(LeadWithReferral {
                        lead: lead.clone(),
                        contribution: Some(contribution.clone()),
                    })
                }
                _ if counted || record.eligible => existing.map(|lead| LeadWithReferral {
                    lead,
                    contribution: None,
                }),
                _ => None,
            };
            let claimed = written
                .as_mut()
                .is_some_and(|w| claim_scan(&mut w.lead, now, deps.rescan_after));
            let elsewhere = written
                .as_ref()
                .filter(|w| !claimed && first_scan_claimed_elsewhere(&w.lead, now))
                .map(|w| scan_claim_left(&w.lead, now));
            match written {
                Some(w) if claimed || join.writes_lead() => {
                    Change::Write(w, (join, claimed, elsewhere))
                }
                _ => Change::Keep((join, false, elsewhere)),
            }
        })
        .await?;
    let scanned = match scan_claimed {
        true => scan_lead(deps.store, deps.scanner, deps.rules.scoring(), domain).await?,
        false => None,
    };
    let pushed = match (&scanned, &join) {
        (Some(scanned), _) if scanned.changed => Some(&scanned.lead),
        (_, LeadJoin::Changed(lead, _) | LeadJoin::PushAgain(lead)) => Some(lead),
        _ => None,
    };
    if let Some(lead) = pushed {
        request_push(deps, lead).await?;
    }
    if let Some(after) = scan_elsewhere {
        return Err(IngestError::ScanInProgress {
            domain: domain.to_string(),
            after,
        });
    }
    Ok(join)
}

async fn request_push(deps: &IngestDeps<'_>, lead: &Lead) -> Result<(), IngestError> {
    let body = PushMessage {
        domain: lead.domain.to_string(),
        lead_version: lead.content_version,
        force: false,
        deferrals: 0,
    }
    .to_body();
    let report = send_all(
        deps.push_queue,
        &[OutgoingMessage::new("0", body)],
        &deps.send_backoff,
    )
    .await
    .map_err(|e| e.error)?;
    match report.failed.first() {
        None => Ok(()),
        Some(f) if f.sender_fault => Err(IngestError::PushRefused {
            domain: lead.domain.to_string(),
            message: format!("{} {}", f.code, f.message),
        }),
        Some(f) => Err(QueueError::Unavailable(format!("{} {}", f.code, f.message)).into()),
    }
}

/// The Lambda entry: an SQS event from the referrals queue.
pub async fn handle(
    deps: &IngestDeps<'_>,
    event: lambda_runtime::LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    Ok(handle_batch(deps, event.payload).await)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ingested(skip_reason: Option<SkipReason>) -> Ingested {
        Ingested {
            referral_id: "r".into(),
            outcome: UpsertOutcome::Inserted,
            skip_reason,
            domain: None,
            lead_changed: false,
            push_requested: false,
        }
    }

    #[test]
    fn when_a_batch_is_counted_should_report_each_kind_once() {
        let mut tally = Tally::default();
        tally.count(&ingested(None));
        tally.count(&ingested(Some(SkipReason::InvalidPayload)));
        tally.count(&ingested(Some(SkipReason::NoDomain)));
        tally.failed = 1;
        tally.dead_lettered = 1;

        let line = tally.metrics().to_json(0);

        assert_eq!(line["Ingested"], 3);
        assert_eq!(line["Eligible"], 1);
        assert_eq!(line["Skipped"], 2);
        assert_eq!(line["InvalidPayload"], 1);
        assert_eq!(line["MessagesFailed"], 1);
        assert_eq!(line["DeadLettered"], 1);
        assert_eq!(line["Function"], "ingest-referral");
    }
}
