//! Drives the production handlers locally: fetch-referrals until the run is complete, then
//! ingest-referral over the referrals queue, as Lambda and SQS would.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use std::future::Future;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use fetch_referrals::{FetchDeps, FetchStatus, FetchSummary, fetch_referrals};
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt as _, StreamExt as _};
use hunter_core::crm_pull::{PullDeps, PullError, PullSummary, pull_crm_changes};
use hunter_core::ports::{LeadQuery, Queue, ReceivedMessage, ReferralWriteBack};
use hunter_core::ports::{QueueError, StoreError};
use hunter_core::retry::Backoff;
use hunter_domain::model::{Lead, SyncStatus};
use ingest_referral::{IngestDeps, handle_batch};
use push_dynamics::PushDeps;
use std::panic::AssertUnwindSafe;
use tokio::time::Instant;

use crate::stack::Stack;

/// The Lambda timeout of fetch-referrals (template.yaml): each local invocation gets as long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// A failed message is received again after this times its receive count (at most 5 s).
const REDELIVERY_STEP: Duration = Duration::from_millis(200);

/// One sync: invocations of fetch-referrals until the run is no longer `continued`.
pub async fn run_sync(stack: &Stack, run_id: Option<String>) -> Result<FetchSummary, StoreError> {
    let deps = FetchDeps {
        store: stack.store.as_ref(),
        queue: stack.referrals_queue.as_ref(),
        source: stack.source.as_ref(),
        settings: &stack.fetch_settings,
    };
    let mut summary = fetch_referrals(&deps, run_id, Some(Instant::now() + FETCH_TIMEOUT)).await?;
    while summary.status == FetchStatus::Continued {
        summary = fetch_referrals(&deps, None, Some(Instant::now() + FETCH_TIMEOUT)).await?;
    }
    Ok(summary)
}

/// Batches of one queue handled before the other queue's turn while serving.
const BATCHES_PER_TURN: usize = 5;
/// Referral batches handled at once on the embedded backends, as Lambda runs several ingest
/// invocations side by side: one batch's DNS scans overlap another's work. Their lanes take
/// turns per domain ([`ingest_referral::DomainTurns`]). One at a time with `--aws`: moto, the
/// DynamoDB that `--aws` meets outside AWS, applies concurrent updates of one item (a run's
/// counters) without isolation and loses increments.
pub const INGEST_BATCHES_AT_ONCE: usize = 4;

/// Where the batches handled at once compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchThreads {
    /// Each batch in a task of its own, on every core, as concurrent Lambda invocations run.
    Every,
    /// All in the draining task: they overlap while they wait (DNS, the store), and compute in
    /// turn. For SQLite, whose one connection two threads would only contend for (durable
    /// 30,000 took 8.7 s on every core, 7.9 s in one task).
    One,
}

/// What a drain did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainReport {
    pub handled: usize,
    pub redelivered: usize,
}

/// [`run_sync`] with the referrals queue drained beside it, as Lambda's event source ingests
/// while fetch-referrals is still enqueueing: the queue holds less, and ingest computes on the
/// cores the fetch leaves idle while it waits for pages. What is still queued when the sync
/// ends is left to the caller's [`drain_referrals`].
pub async fn run_sync_ingesting(stack: &Arc<Stack>) -> anyhow::Result<FetchSummary> {
    let syncing = AtomicBool::new(true);
    let (fetch, drained) = tokio::join!(
        async {
            let fetch = run_sync(stack, None).await;
            syncing.store(false, Ordering::Release);
            fetch
        },
        async {
            while syncing.load(Ordering::Acquire) {
                drain_referrals(stack).await?;
                // Nothing visible or in flight: the next page is on its way.
                tokio::time::sleep(INGEST_POLL).await;
            }
            Ok::<_, QueueError>(())
        }
    );
    drained?;
    Ok(fetch?)
}

/// How long ingest beside a sync waits when it has drained what was sent so far.
const INGEST_POLL: Duration = Duration::from_millis(1);

/// Hands referral messages to ingest-referral in batches of 10 until none is visible or in
/// flight. Failed ones become visible again after a short backoff; after the queue's
/// maxReceiveCount they move to its dead-letter queue.
pub async fn drain_referrals(stack: &Arc<Stack>) -> Result<DrainReport, QueueError> {
    drain_referrals_up_to(stack, None).await
}

/// [`drain_referrals`], stopping after `batches` batches when given.
async fn drain_referrals_up_to(
    stack: &Arc<Stack>,
    batches: Option<usize>,
) -> Result<DrainReport, QueueError> {
    let handle = |event: SqsEvent| {
        let stack = stack.clone();
        async move {
            let deps = IngestDeps {
                store: stack.store.as_ref(),
                push_queue: stack.push_queue.as_ref(),
                scanner: stack.scanner.as_ref(),
                rules: &stack.rules,
                rescan_after: stack.rescan_after,
                send_backoff: Backoff::default(),
                max_receives: Some(crate::stack::MAX_RECEIVE_COUNT),
                referrals_queue: Some(stack.referrals_queue.as_ref()),
                turns: &stack.ingest_turns,
            };
            handle_batch(&deps, event).await
        }
    };
    drain(
        stack.referrals_queue.as_ref(),
        batches,
        (stack.ingest_batches_at_once, stack.ingest_threads),
        handle,
    )
    .await
}

/// Hands push requests to push-dynamics the same way (nothing with `--no-dynamics`: the queue
/// keeps them and leads stay pending).
pub async fn drain_pushes(stack: &Arc<Stack>) -> Result<DrainReport, QueueError> {
    drain_pushes_up_to(stack, None).await
}

/// [`drain_pushes`], stopping after `batches` batches when given.
async fn drain_pushes_up_to(
    stack: &Arc<Stack>,
    batches: Option<usize>,
) -> Result<DrainReport, QueueError> {
    let Some(sink) = &stack.dynamics else {
        return Ok(DrainReport::default());
    };
    let handle = |event: SqsEvent| {
        let (stack, sink) = (stack.clone(), sink.clone());
        async move {
            let deps = PushDeps {
                store: stack.store.as_ref(),
                sink: sink.as_ref(),
                mapping: &stack.mapping,
                queue: Some(stack.push_queue.as_ref()),
                max_receives: Some(crate::stack::MAX_RECEIVE_COUNT),
                write_back: stack
                    .write_back
                    .then_some(stack.source.as_ref() as &dyn ReferralWriteBack),
                opportunities: stack.opportunities,
            };
            push_dynamics::handle_batch(&deps, event).await
        }
    };
    // One batch at a time: the pushes are paced by Dataverse's limits, not by waiting.
    drain(
        stack.push_queue.as_ref(),
        batches,
        (1, BatchThreads::One),
        handle,
    )
    .await
}

/// Receives batches of 10 and hands them to `handler` as Lambda's SQS event source would, up to
/// `at_once` batches at a time (on `threads`), until the queue has nothing visible or in flight
/// (or `batches` were handled): handled messages are deleted, failed ones come back after a
/// short backoff (and reach the dead-letter queue after maxReceiveCount). A handler that
/// panics fails its whole batch, as a crashed invocation does.
async fn drain<F, Fut>(
    queue: &dyn Queue,
    batches: Option<usize>,
    (at_once, threads): (usize, BatchThreads),
    handler: F,
) -> Result<DrainReport, QueueError>
where
    F: Fn(SqsEvent) -> Fut,
    Fut: Future<Output = SqsBatchResponse> + Send + 'static,
{
    let mut report = DrainReport::default();
    let budget = batches.unwrap_or(usize::MAX);
    let mut started = 0;
    let mut running = FuturesUnordered::new();
    loop {
        let mut nothing_visible = false;
        while running.len() < at_once.max(1) && started < budget {
            let messages = queue.receive(10, None, Duration::ZERO).await?;
            if messages.is_empty() {
                nothing_visible = true;
                break;
            }
            started += 1;
            let batch = handler(sqs_event(&messages));
            let handled: BoxFuture<'static, Result<SqsBatchResponse, String>> = match threads {
                BatchThreads::Every => {
                    Box::pin(tokio::spawn(batch).map(|done| done.map_err(|e| e.to_string())))
                }
                BatchThreads::One => Box::pin(
                    AssertUnwindSafe(batch)
                        .catch_unwind()
                        .map(|done| done.map_err(|_| "panicked".to_owned())),
                ),
            };
            running.push(async move {
                let response = handled.await.unwrap_or_else(|error| {
                    tracing::error!(event = "local_batch_handler_crashed", error);
                    every_message_failed(messages.iter().map(|m| m.message_id.clone()))
                });
                (messages, response)
            });
        }
        if let Some((messages, response)) = running.next().await {
            settle(queue, &messages, &response, &mut report).await?;
            continue;
        }
        if started >= budget {
            return Ok(report);
        }
        if nothing_visible {
            let depth = queue.depth().await?;
            // With a budget (serving), nothing visible ends the turn; a full drain (`--once`)
            // waits for the messages in flight.
            if batches.is_some() || (depth.visible == 0 && depth.in_flight == 0) {
                return Ok(report);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The answer of an invocation that did not finish: every message (by id) failed.
fn every_message_failed(ids: impl Iterator<Item = String>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = ids
        .map(|id| {
            let mut failure = aws_lambda_events::event::sqs::BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}

/// What Lambda's event source does with a handled batch: deletes the messages that did not
/// fail; a failed one becomes visible again after a backoff growing with its receive count.
async fn settle(
    queue: &dyn Queue,
    messages: &[ReceivedMessage],
    response: &SqsBatchResponse,
    report: &mut DrainReport,
) -> Result<(), QueueError> {
    let mut handled = Vec::with_capacity(messages.len());
    for message in messages {
        let failed = response
            .batch_item_failures
            .iter()
            .any(|f| f.item_identifier == message.message_id);
        if failed {
            report.redelivered += 1;
            let delay = REDELIVERY_STEP
                .saturating_mul(message.receive_count)
                .min(Duration::from_secs(5));
            queue.change_visibility(&message.receipt, delay).await?;
        } else {
            handled.push(message.receipt.clone());
        }
    }
    report.handled += handled.len();
    queue.delete_batch(&handled).await
}

/// The event Lambda's SQS event source would deliver for `messages`.
pub fn sqs_event(messages: &[ReceivedMessage]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| {
            let mut record = SqsMessage::default();
            record.message_id = Some(m.message_id.clone());
            record.receipt_handle = Some(m.receipt.clone());
            record.body = Some(m.body.clone());
            record.attributes.insert(
                "ApproximateReceiveCount".to_owned(),
                m.receive_count.to_string(),
            );
            record.event_source = Some("aws:sqs".to_owned());
            record
        })
        .collect();
    event
}

/// Leads created or changed since `since`.
pub async fn leads_changed_since(
    stack: &Stack,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Lead>, StoreError> {
    let mut changed = Vec::new();
    let mut query = LeadQuery {
        limit: Some(hunter_core::ports::MAX_PAGE_SIZE),
        ..LeadQuery::default()
    };
    loop {
        let page = stack.store.list_leads(&query).await?;
        changed.extend(
            page.items
                .into_iter()
                .filter(|lead| lead.updated_at >= since),
        );
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return Ok(changed),
        }
    }
}

/// How many of `leads` are in `status`.
pub fn count_status(leads: &[Lead], status: SyncStatus) -> usize {
    leads
        .iter()
        .filter(|lead| lead.sync_status == status)
        .count()
}

/// The Lambda timeout of pull-dynamics (template.yaml): a local pull gets as long.
const PULL_TIMEOUT: Duration = Duration::from_secs(120);

/// One pull of what sellers changed in Dynamics (pull-dynamics), given up after
/// `PULL_TIMEOUT` (120 s) (its cursor stays: the next pull reads the same changes); `None` with
/// `--no-dynamics`.
pub async fn pull_crm(stack: &Stack) -> Option<Result<PullSummary, PullError>> {
    let source = stack.crm_changes.as_ref()?;
    let deps = PullDeps {
        store: stack.store.as_ref(),
        source,
        mirror: stack
            .mirror_crm_outcomes
            .then(|| stack.source.as_ref() as &dyn ReferralWriteBack),
    };
    Some(
        tokio::time::timeout(PULL_TIMEOUT, pull_crm_changes(&deps))
            .await
            .unwrap_or(Err(PullError::TimedOut(PULL_TIMEOUT))),
    )
}

/// Dead letters in both queues.
pub async fn dead_letters(stack: &Stack) -> Result<u64, QueueError> {
    let referrals = stack.referrals_queue.depth().await?;
    let pushes = stack.push_queue.depth().await?;
    Ok(referrals.dead_letters + pushes.dead_letters)
}

/// Keeps the queues' work moving while hunter-local serves.
pub async fn drain_forever(stack: &Arc<Stack>) {
    loop {
        // A few batches of each queue in turn, so neither waits for the other to empty.
        let referrals = drain_referrals_up_to(stack, Some(BATCHES_PER_TURN)).await;
        let pushes = drain_pushes_up_to(stack, Some(BATCHES_PER_TURN)).await;
        let mut busy = false;
        for (queue, drained) in [("referrals", referrals), ("dynamics-push", pushes)] {
            match drained {
                Ok(report) => busy |= report.handled + report.redelivered > 0,
                Err(err) => tracing::warn!(event = "local_drain_failed", queue, error = %err),
            }
        }
        if !busy {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use hunter_core::adapters::EmbeddedQueue;
    use hunter_core::ports::OutgoingMessage;

    async fn queue_of(count: usize) -> EmbeddedQueue {
        let queue = EmbeddedQueue::new("referrals", Duration::from_secs(30), 5);
        let messages: Vec<OutgoingMessage> = (0..count)
            .map(|n| OutgoingMessage::new(format!("m{n}"), format!("body {n}")))
            .collect();
        for batch in messages.chunks(10) {
            assert!(queue.send_batch(batch).await.unwrap().is_empty());
        }
        queue
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn when_a_batch_handler_panics_its_messages_should_come_back_not_be_deleted() {
        for threads in [BatchThreads::Every, BatchThreads::One] {
            let queue = queue_of(3).await;

            let report = drain(
                &queue,
                Some(1),
                (1, threads),
                |event: SqsEvent| async move {
                    assert!(event.records.len() > 1, "a batch of several messages");
                    panic!("handler crashed")
                },
            )
            .await
            .unwrap();

            let redelivered = DrainReport {
                handled: 0,
                redelivered: 3,
            };
            assert_eq!(report, redelivered, "{threads:?}");
            let depth = queue.depth().await.unwrap();
            assert_eq!(depth.visible + depth.in_flight, 3, "{threads:?}: {depth:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_handled_at_once_on_every_core_should_run_side_by_side() {
        let queue = queue_of(40).await;
        let at_once = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));

        let report = drain(&queue, None, (4, BatchThreads::Every), |event: SqsEvent| {
            let (at_once, most) = (at_once.clone(), most.clone());
            async move {
                use std::sync::atomic::Ordering::SeqCst;
                let now = at_once.fetch_add(1, SeqCst) + 1;
                most.fetch_max(now, SeqCst);
                // Blocks its thread, as CPU-bound work does: batches overlap only if each
                // runs in a task of its own.
                std::thread::sleep(Duration::from_millis(50));
                at_once.fetch_sub(1, SeqCst);
                drop(event);
                SqsBatchResponse::default()
            }
        })
        .await
        .unwrap();

        assert_eq!(
            report,
            DrainReport {
                handled: 40,
                redelivered: 0
            }
        );
        assert!(
            most.load(std::sync::atomic::Ordering::SeqCst) >= 2,
            "batches ran one after another"
        );
    }
}
