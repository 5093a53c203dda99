//! Sending many messages: batches of at most 10 entries and 256 KiB, transient entry failures
//! retried, permanent ones reported; and delivering a page of referrals for ingest
//! ([`deliver_referrals`]), as fetch-referrals and the webhook route both do.

use serde_json::Value;
use serde_json::value::RawValue;

use hunter_domain::model::Arrival;
use hunter_domain::referral::{MAX_PAYLOAD_BYTES, content_digest};

use crate::adapters::memory_queue::MAX_BATCH_BYTES;
use crate::intake::record_invalid;
use crate::messages::{MAX_MESSAGE_BYTES, PayloadRefMessage, ReferralMessage};
use crate::ports::{OutgoingMessage, Queue, QueueError, SendFailure, Store, StoreError};
use crate::retry::Backoff;

/// SQS's batch size.
pub const BATCH_SIZE: usize = 10;

/// `messages` in SQS batches: at most [`BATCH_SIZE`] entries whose bodies add up to at most
/// [`MAX_BATCH_BYTES`]. A message larger than that on its own comes back apart: no batch holds it.
fn batches(messages: &[OutgoingMessage]) -> (Vec<&[OutgoingMessage]>, Vec<&OutgoingMessage>) {
    let mut batches = Vec::new();
    let mut too_large = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, message) in messages.iter().enumerate() {
        let size = message.body.len();
        let full = i - start == BATCH_SIZE || bytes + size > MAX_BATCH_BYTES;
        if full && i > start {
            batches.push(&messages[start..i]);
            (start, bytes) = (i, 0);
        }
        if size > MAX_BATCH_BYTES {
            too_large.push(message);
            start = i + 1;
            continue;
        }
        bytes += size;
    }
    if start < messages.len() {
        batches.push(&messages[start..]);
    }
    (batches, too_large)
}

/// What [`send_all`] could not deliver (everything else was accepted).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SendReport {
    pub sent: usize,
    /// Entries refused for their content (sender fault) or still failing after every retry.
    pub failed: Vec<SendFailure>,
}

/// A send that stopped on a request failing as a whole, after `sent` messages went out.
#[derive(Debug, thiserror::Error)]
#[error("{error} (after {sent} sent)")]
pub struct SendAllError {
    pub error: QueueError,
    pub sent: usize,
}

impl SendAllError {
    /// Whether sending the rest may succeed later.
    pub fn is_retryable(&self) -> bool {
        self.error.is_retryable()
    }
}

/// Sends `messages` in batches of at most [`BATCH_SIZE`] entries and [`MAX_BATCH_BYTES`].
/// Entries that failed transiently are sent again with backoff; entries the queue refused as
/// malformed, or too large for any batch, are reported, not retried.
/// A whole-request failure that stays after the retries stops the send: the error says how many
/// messages went out before it.
pub async fn send_all(
    queue: &dyn Queue,
    messages: &[OutgoingMessage],
    backoff: &Backoff,
) -> Result<SendReport, SendAllError> {
    let mut report = SendReport::default();
    let (batches, too_large) = batches(messages);
    report
        .failed
        .extend(too_large.into_iter().map(|m| SendFailure {
            id: m.id.clone(),
            code: "MessageTooLong".to_owned(),
            message: format!(
                "the body is {} bytes, more than {MAX_BATCH_BYTES}",
                m.body.len()
            ),
            sender_fault: true,
        }));
    for chunk in batches {
        let mut pending: Vec<OutgoingMessage> = chunk.to_vec();
        let mut retry = 0;
        loop {
            let failures = match queue.send_batch(&pending).await {
                Ok(failures) => failures,
                Err(err) if err.is_retryable() && retry < backoff.max_retries => {
                    tokio::time::sleep(backoff.delay(retry)).await;
                    retry += 1;
                    continue;
                }
                Err(error) => {
                    return Err(SendAllError {
                        error,
                        sent: report.sent,
                    });
                }
            };
            report.sent += pending.len() - failures.len();
            let (permanent, transient): (Vec<_>, Vec<_>) =
                failures.into_iter().partition(|f| f.sender_fault);
            report.failed.extend(permanent);
            if transient.is_empty() {
                break;
            }
            if retry >= backoff.max_retries {
                report.failed.extend(transient);
                break;
            }
            pending.retain(|m| transient.iter().any(|f| f.id == m.id));
            tokio::time::sleep(backoff.delay(retry)).await;
            retry += 1;
        }
    }
    Ok(report)
}

/// A referral that cannot travel through the queue, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsendable {
    /// The text to keep (the referral, or the message the queue refused).
    pub text: String,
    pub detail: String,
}

/// A referral too large for a message: stored under `key` ([`crate::ports::PayloadStore`])
/// before its message ([`PayloadRefMessage`]) is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    pub key: String,
    /// The referral's JSON text.
    pub text: String,
}

/// A page of referrals made into messages.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PageMessages {
    /// One per referral that can travel (inline or by reference).
    pub messages: Vec<OutgoingMessage>,
    /// To store before `messages` are sent.
    pub payloads: Vec<Payload>,
    /// Referrals above the reader's bound ([`MAX_PAYLOAD_BYTES`]): to be stored as
    /// `invalid_payload` instead.
    pub unsendable: Vec<Unsendable>,
}

/// The key a referral's payload is stored under: its id when that is a string, else the digest
/// of its text.
fn payload_key(text: &str) -> String {
    match serde_json::from_str::<Value>(text)
        .ok()
        .as_ref()
        .and_then(|r| r.get("id"))
    {
        Some(Value::String(id)) if !id.trim().is_empty() => id.trim().to_owned(),
        _ => format!("sha256-{}", content_digest(text)),
    }
}

/// What [`enqueue_referrals`] did with a page.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Enqueued {
    pub sent: usize,
    /// Refused by the queue for what they are: to be stored as `invalid_payload` instead.
    pub refused: Vec<Unsendable>,
    /// Entries still failing for a passing reason after the retries.
    pub transient: Vec<SendFailure>,
}

/// The messages of run `run_id` for referrals as Partner Center sent them: a
/// [`ReferralMessage`] each, or for one too large for a message a [`PayloadRefMessage`] and
/// the [`Payload`] to store first; a referral above the reader's bound is unsendable.
pub fn referral_messages(run_id: &str, referrals: &[Box<RawValue>]) -> PageMessages {
    messages_of(Some(run_id), referrals)
}

/// [`referral_messages`] for a referral a webhook event named: in no run, `arrivedBy` webhook.
pub fn webhook_messages(referral: Box<RawValue>) -> PageMessages {
    messages_of(None, &[referral])
}

/// The messages of run `run_id`, or (`None`) of a webhook event.
fn messages_of(run_id: Option<&str>, referrals: &[Box<RawValue>]) -> PageMessages {
    let mut page = PageMessages::default();
    for (i, referral) in referrals.iter().enumerate() {
        let body = match run_id {
            Some(run_id) => ReferralMessage::body_of(run_id, referral),
            None => ReferralMessage::webhook_body(referral),
        };
        if body.len() <= MAX_MESSAGE_BYTES {
            page.messages
                .push(OutgoingMessage::new(i.to_string(), body));
            continue;
        }
        let text = referral.get().to_owned();
        if text.len() > MAX_PAYLOAD_BYTES {
            page.unsendable.push(Unsendable {
                detail: format!(
                    "referral is {} bytes, more than the {MAX_PAYLOAD_BYTES}-byte limit",
                    text.len()
                ),
                text,
            });
            continue;
        }
        let key = payload_key(&text);
        let reference = PayloadRefMessage {
            run_id: run_id.map(str::to_owned),
            arrived_by: if run_id.is_some() {
                Arrival::Sweep
            } else {
                Arrival::Webhook
            },
            payload_ref: key.clone(),
        };
        page.messages
            .push(OutgoingMessage::new(i.to_string(), reference.to_body()));
        page.payloads.push(Payload { key, text });
    }
    page
}

/// Sends referral messages ([`referral_messages`]) to the referrals queue; hands back the
/// entries the queue refused for what they are, with the reason.
pub async fn enqueue_referrals(
    queue: &dyn Queue,
    messages: &[OutgoingMessage],
    backoff: &Backoff,
) -> Result<Enqueued, SendAllError> {
    let report = send_all(queue, messages, backoff).await?;
    let (refused, transient): (Vec<_>, Vec<_>) =
        report.failed.into_iter().partition(|f| f.sender_fault);
    let refused = refused
        .into_iter()
        .map(|failure| Unsendable {
            text: messages
                .iter()
                .find(|m| m.id == failure.id)
                .map(|m| m.body.clone())
                .unwrap_or_default(),
            detail: format!(
                "the referrals queue refused it: {} {}",
                failure.code, failure.message
            ),
        })
        .collect();
    Ok(Enqueued {
        sent: report.sent,
        refused,
        transient,
    })
}

/// What [`deliver_referrals`] did: referrals sent to the queue, and referrals stored as
/// `invalid_payload` instead (too large to travel, or refused by the queue for what they are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delivered {
    pub sent: usize,
    pub recorded_invalid: usize,
}

/// A delivery that stopped partway; `delivered` is what happened before it stopped (what was
/// sent will be ingested: a run must count it).
#[derive(Debug, thiserror::Error)]
#[error("{failure}")]
pub struct DeliveryError {
    pub delivered: Delivered,
    pub failure: DeliveryFailure,
}

/// Why a delivery stopped.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryFailure {
    #[error("storing {what}: {error}")]
    Store { what: String, error: StoreError },
    #[error("referrals queue: {0}")]
    Queue(QueueError),
    /// Entries the queue still did not take after the retries (their error codes).
    #[error("{} referrals could not be enqueued ({})", .0.len(), .0.join(", "))]
    NotTaken(Vec<String>),
}

impl DeliveryError {
    /// Whether delivering the page again may succeed.
    pub fn is_retryable(&self) -> bool {
        match &self.failure {
            DeliveryFailure::Store { error, .. } => error.is_retryable(),
            DeliveryFailure::Queue(error) => error.is_retryable(),
            DeliveryFailure::NotTaken(_) => true,
        }
    }
}

/// Delivers a page of referrals ([`referral_messages`], [`webhook_messages`]) for ingest, the
/// one way fetch-referrals and the webhook route do it: stores the referrals too large to travel
/// as `invalid_payload` (counted in run `run_id`), stores the payloads that travel by reference,
/// sends the messages, and stores the ones the queue refuses for what they are as
/// `invalid_payload` too. Fails on a store or queue failure, or when the queue still did not take
/// some entries after the retries.
pub async fn deliver_referrals(
    store: &dyn Store,
    queue: &dyn Queue,
    run_id: Option<&str>,
    page: &PageMessages,
    backoff: &Backoff,
) -> Result<Delivered, DeliveryError> {
    let mut delivered = Delivered::default();
    let stop =
        |delivered: Delivered, failure: DeliveryFailure| DeliveryError { delivered, failure };
    for item in &page.unsendable {
        record_invalid(store, run_id, &item.text, &item.detail)
            .await
            .map_err(|error| {
                let what = "an unsendable referral as invalid_payload".to_owned();
                stop(delivered, DeliveryFailure::Store { what, error })
            })?;
        delivered.recorded_invalid += 1;
    }
    for payload in &page.payloads {
        store
            .put_payload(&payload.key, &payload.text)
            .await
            .map_err(|error| {
                let what = format!("the payload of referral {}", payload.key);
                stop(delivered, DeliveryFailure::Store { what, error })
            })?;
    }
    let enqueued = enqueue_referrals(queue, &page.messages, backoff)
        .await
        .map_err(|err| {
            delivered.sent += err.sent;
            stop(delivered, DeliveryFailure::Queue(err.error))
        })?;
    delivered.sent += enqueued.sent;
    for item in &enqueued.refused {
        record_invalid(store, run_id, &item.text, &item.detail)
            .await
            .map_err(|error| {
                let what = "a referral the queue refused as invalid_payload".to_owned();
                stop(delivered, DeliveryFailure::Store { what, error })
            })?;
        delivered.recorded_invalid += 1;
    }
    if !enqueued.transient.is_empty() {
        let codes = enqueued.transient.into_iter().map(|f| f.code).collect();
        return Err(stop(delivered, DeliveryFailure::NotTaken(codes)));
    }
    Ok(delivered)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;

    use super::*;
    use crate::adapters::EmbeddedQueue;
    use crate::messages::QueuedReferral;
    use crate::ports::{QueueDepth, ReceivedMessage};

    /// Fails the first entry of each of its first `transient_rounds` batches with a service fault;
    /// after `up_for` batches, fails every request as a whole.
    struct Flaky {
        inner: EmbeddedQueue,
        transient_rounds: Mutex<u32>,
        batches: Mutex<Vec<usize>>,
        up_for: usize,
        /// Refuses every entry for what it is.
        refuse: bool,
    }

    #[async_trait]
    impl Queue for Flaky {
        async fn send_batch(
            &self,
            messages: &[OutgoingMessage],
        ) -> Result<Vec<SendFailure>, QueueError> {
            if self.batches.lock().unwrap().len() >= self.up_for {
                return Err(QueueError::Unavailable("the queue is down".into()));
            }
            self.batches.lock().unwrap().push(messages.len());
            if self.refuse {
                return Ok(messages
                    .iter()
                    .map(|m| SendFailure {
                        id: m.id.clone(),
                        code: "InvalidMessageContents".into(),
                        message: "no".into(),
                        sender_fault: true,
                    })
                    .collect());
            }
            let transient = {
                let mut rounds = self.transient_rounds.lock().unwrap();
                let transient = *rounds > 0;
                *rounds = rounds.saturating_sub(1);
                transient
            };
            if transient {
                let (first, rest) = messages.split_first().unwrap();
                let mut failures = self.inner.send_batch(rest).await.unwrap_or_default();
                failures.push(SendFailure {
                    id: first.id.clone(),
                    code: "InternalError".into(),
                    message: "try again".into(),
                    sender_fault: false,
                });
                return Ok(failures);
            }
            self.inner.send_batch(messages).await
        }
        async fn receive(
            &self,
            max: usize,
            v: Option<Duration>,
            w: Duration,
        ) -> Result<Vec<ReceivedMessage>, QueueError> {
            self.inner.receive(max, v, w).await
        }
        async fn delete(&self, r: &str) -> Result<(), QueueError> {
            self.inner.delete(r).await
        }
        async fn change_visibility(&self, r: &str, t: Duration) -> Result<(), QueueError> {
            self.inner.change_visibility(r, t).await
        }
        async fn depth(&self) -> Result<QueueDepth, QueueError> {
            self.inner.depth().await
        }
        async fn peek_dead_letters(&self, max: usize) -> Result<Vec<ReceivedMessage>, QueueError> {
            self.inner.peek_dead_letters(max).await
        }
        async fn take_dead_letters(&self, max: usize) -> Result<Vec<ReceivedMessage>, QueueError> {
            self.inner.take_dead_letters(max).await
        }
        async fn redrive_dead_letters(&self) -> Result<usize, QueueError> {
            self.inner.redrive_dead_letters().await
        }
    }

    fn flaky(transient_rounds: u32) -> Flaky {
        Flaky {
            inner: EmbeddedQueue::new("q", Duration::from_secs(30), 5),
            transient_rounds: Mutex::new(transient_rounds),
            batches: Mutex::new(Vec::new()),
            up_for: usize::MAX,
            refuse: false,
        }
    }

    fn fast(max_retries: u32) -> Backoff {
        Backoff {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
            max_retries,
        }
    }

    fn messages(n: usize) -> Vec<OutgoingMessage> {
        (0..n)
            .map(|i| OutgoingMessage::new(format!("m{i}"), format!("body {i}")))
            .collect()
    }

    #[tokio::test]
    async fn when_25_messages_are_sent_should_use_batches_of_10() {
        let queue = flaky(0);
        let report = send_all(&queue, &messages(25), &fast(3)).await.unwrap();
        assert_eq!(
            report,
            SendReport {
                sent: 25,
                failed: vec![]
            }
        );
        assert_eq!(*queue.batches.lock().unwrap(), vec![10, 10, 5]);
        assert_eq!(queue.depth().await.unwrap().visible, 25);
    }

    #[tokio::test]
    async fn when_ten_large_messages_are_sent_should_split_the_batch_by_size_too() {
        let queue = flaky(0);
        let large: Vec<OutgoingMessage> = (0..10)
            .map(|i| OutgoingMessage::new(format!("m{i}"), "x".repeat(30 * 1024)))
            .collect();
        let report = send_all(&queue, &large, &fast(3)).await.unwrap();
        assert_eq!(
            report,
            SendReport {
                sent: 10,
                failed: vec![]
            }
        );
        assert_eq!(*queue.batches.lock().unwrap(), vec![8, 2]);
        assert_eq!(queue.depth().await.unwrap().visible, 10);
    }

    #[tokio::test]
    async fn when_an_entry_fails_transiently_should_resend_only_that_entry() {
        let queue = flaky(2);
        let report = send_all(&queue, &messages(4), &fast(3)).await.unwrap();
        assert_eq!(report.sent, 4);
        assert!(report.failed.is_empty());
        assert_eq!(*queue.batches.lock().unwrap(), vec![4, 1, 1]);
        assert_eq!(queue.depth().await.unwrap().visible, 4);
    }

    #[tokio::test]
    async fn when_transient_failures_outlast_the_retries_should_report_them() {
        let queue = flaky(10);
        let report = send_all(&queue, &messages(3), &fast(2)).await.unwrap();
        assert_eq!(report.sent, 2);
        assert_eq!(report.failed.len(), 1);
        assert!(!report.failed[0].sender_fault);
    }

    #[tokio::test]
    async fn when_an_entry_is_malformed_should_report_it_without_retrying() {
        let queue = flaky(0);
        let mut batch = messages(3);
        batch[1].delay = Some(Duration::from_secs(901));
        let report = send_all(&queue, &batch, &fast(3)).await.unwrap();
        assert_eq!(report.sent, 2);
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].id, "m1");
        assert!(report.failed[0].sender_fault);
        assert_eq!(*queue.batches.lock().unwrap(), vec![3]);
    }

    #[tokio::test]
    async fn when_the_queue_fails_as_a_whole_midway_should_say_how_many_went_out() {
        let queue = Flaky {
            up_for: 2,
            ..flaky(0)
        };
        let err = send_all(&queue, &messages(25), &fast(1)).await.unwrap_err();
        assert_eq!(err.sent, 20);
        assert!(err.is_retryable());
        assert_eq!(queue.depth().await.unwrap().visible, 20);
    }

    #[tokio::test]
    async fn when_a_page_is_enqueued_should_wrap_each_referral_and_send_large_ones_by_reference() {
        let queue = flaky(0);
        let large = serde_json::json!({"id": "big", "notes": "x".repeat(MAX_MESSAGE_BYTES)});
        let unnamed = serde_json::json!({"id": 7, "notes": "y".repeat(MAX_MESSAGE_BYTES)});
        let huge = serde_json::json!({"id": "huge", "notes": "z".repeat(MAX_PAYLOAD_BYTES)});
        let referrals = [
            serde_json::json!({"id": "a"}),
            large.clone(),
            unnamed.clone(),
            huge,
            serde_json::json!({"id": "b"}),
        ]
        .map(|r| raw(&r));
        let page = referral_messages("run-1", &referrals);
        assert_eq!(page.unsendable.len(), 1);
        assert!(page.unsendable[0].text.contains("\"huge\""));
        assert!(page.unsendable[0].detail.contains("limit"));
        assert_eq!(page.payloads.len(), 2);
        assert_eq!(page.payloads[0].key, "big");
        assert_eq!(page.payloads[0].text, large.to_string());
        assert!(page.payloads[1].key.starts_with("sha256-"), "a number id");
        assert_eq!(page.payloads[1].text, unnamed.to_string());
        let enqueued = enqueue_referrals(&queue, &page.messages, &fast(1))
            .await
            .unwrap();
        assert_eq!(enqueued.sent, 4);
        assert!(enqueued.transient.is_empty() && enqueued.refused.is_empty());
        let received = queue.receive(10, None, Duration::ZERO).await.unwrap();
        let read: Vec<QueuedReferral> = received
            .iter()
            .map(|m| QueuedReferral::from_body(&m.body).unwrap())
            .collect();
        assert!(read.iter().all(|m| m.run_id() == Some("run-1")));
        let refs: Vec<&str> = read
            .iter()
            .filter_map(|m| match m {
                QueuedReferral::Stored(s) => Some(s.payload_ref.as_str()),
                QueuedReferral::Inline(_) => None,
            })
            .collect();
        assert_eq!(refs, vec!["big", page.payloads[1].key.as_str()]);
    }

    fn raw(referral: &Value) -> Box<RawValue> {
        RawValue::from_string(referral.to_string()).unwrap()
    }

    #[test]
    fn when_a_referral_is_wrapped_should_keep_its_text_verbatim() {
        let text = r#"{ "id": "a",  "z": 1, "b": [ 2 ] }"#;
        let page = referral_messages("run-1", &[RawValue::from_string(text.to_owned()).unwrap()]);
        let body = &page.messages[0].body;
        assert!(body.contains(text), "{body}");
        let read = QueuedReferral::read(body).unwrap();
        assert_eq!(read.run_id(), Some("run-1"));
        let QueuedReferral::Inline(message) = QueuedReferral::from_body(body).unwrap() else {
            panic!("inline");
        };
        assert_eq!(
            message.referral,
            serde_json::json!({"id": "a", "z": 1, "b": [2]})
        );
    }

    #[tokio::test]
    async fn when_a_message_is_larger_than_any_batch_should_report_it_and_send_the_rest() {
        let queue = flaky(0);
        let mut batch = messages(3);
        batch[1].body = "x".repeat(MAX_BATCH_BYTES + 1);
        let report = send_all(&queue, &batch, &fast(1)).await.unwrap();
        assert_eq!(report.sent, 2);
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].id, "m1");
        assert!(report.failed[0].sender_fault);
        assert_eq!(queue.depth().await.unwrap().visible, 2);
    }

    #[tokio::test]
    async fn when_the_queue_refuses_an_entry_should_hand_it_back_with_the_reason() {
        let queue = Flaky {
            refuse: true,
            ..flaky(0)
        };
        let page = referral_messages("run-1", &[raw(&serde_json::json!({"id": "a"}))]);
        let enqueued = enqueue_referrals(&queue, &page.messages, &fast(1))
            .await
            .unwrap();
        assert_eq!(enqueued.sent, 0);
        assert_eq!(enqueued.refused.len(), 1);
        assert!(enqueued.refused[0].text.contains("run-1"));
        assert!(
            enqueued.refused[0]
                .detail
                .contains("InvalidMessageContents")
        );
    }

    #[tokio::test]
    async fn when_a_page_is_delivered_should_store_what_cannot_travel_and_count_what_went_out() {
        use crate::adapters::EmbeddedStore;
        use crate::ports::{PayloadStore as _, ReferralStore as _};

        let store = EmbeddedStore::new();
        let large = serde_json::json!({"id": "big", "notes": "x".repeat(MAX_MESSAGE_BYTES)});
        let huge = serde_json::json!({"id": "huge", "notes": "z".repeat(MAX_PAYLOAD_BYTES)});
        let page = webhook_messages(raw(&large));
        let mut page_with_huge =
            referral_messages("run-1", &[raw(&serde_json::json!({"id": "a"})), raw(&huge)]);
        page_with_huge.messages.extend(page.messages);
        page_with_huge.payloads.extend(page.payloads);
        for (i, m) in page_with_huge.messages.iter_mut().enumerate() {
            m.id = i.to_string();
        }
        let queue = flaky(0);
        let delivered = deliver_referrals(&store, &queue, Some("run-1"), &page_with_huge, &fast(1))
            .await
            .unwrap();
        assert_eq!(
            delivered,
            Delivered {
                sent: 2,
                recorded_invalid: 1
            }
        );
        assert!(
            store.get_payload("big").await.unwrap().is_some(),
            "travels by reference"
        );
        let kept = store
            .list_referrals(&Default::default())
            .await
            .unwrap()
            .items;
        assert_eq!(
            kept.len(),
            1,
            "the huge one is kept as invalid_payload: {kept:?}"
        );

        // The queue refuses everything for what it is: each is kept instead, nothing lost.
        let refusing = Flaky {
            refuse: true,
            ..flaky(0)
        };
        let page = referral_messages("run-2", &[raw(&serde_json::json!({"id": "b"}))]);
        let delivered = deliver_referrals(&store, &refusing, Some("run-2"), &page, &fast(1))
            .await
            .unwrap();
        assert_eq!(
            delivered,
            Delivered {
                sent: 0,
                recorded_invalid: 1
            }
        );

        // Down after one batch: the error says what went out before it.
        let down = Flaky {
            up_for: 1,
            ..flaky(0)
        };
        let referrals: Vec<_> = (0..15)
            .map(|i| raw(&serde_json::json!({"id": format!("r{i}")})))
            .collect();
        let page = referral_messages("run-3", &referrals);
        let err = deliver_referrals(&store, &down, Some("run-3"), &page, &fast(1))
            .await
            .unwrap_err();
        assert_eq!(err.delivered.sent, 10);
        assert!(err.is_retryable());
        assert!(matches!(err.failure, DeliveryFailure::Queue(_)), "{err}");

        // Entries still failing after the retries: retryable, named by their codes.
        let flapping = flaky(5);
        let page = referral_messages("run-4", &[raw(&serde_json::json!({"id": "c"}))]);
        let err = deliver_referrals(&store, &flapping, Some("run-4"), &page, &fast(1))
            .await
            .unwrap_err();
        assert!(
            matches!(err.failure, DeliveryFailure::NotTaken(ref codes) if codes.len() == 1),
            "{err}"
        );
        assert!(err.is_retryable());
    }
}
