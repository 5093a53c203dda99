//! A queue with SQS semantics between the functions.

use std::time::Duration;

use async_trait::async_trait;

/// A message to send; `id` is unique within its batch.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMessage {
    pub id: String,
    pub body: String,
    /// Delivery delay, at most 15 minutes.
    pub delay: Option<Duration>,
}

impl OutgoingMessage {
    pub fn new(id: impl Into<String>, body: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            body: body.into(),
            delay: None,
        }
    }
}

/// A batch entry the queue refused.
#[derive(Debug, Clone, PartialEq)]
pub struct SendFailure {
    pub id: String,
    pub code: String,
    pub message: String,
    /// The entry itself is wrong (retrying will not help); otherwise the failure was transient.
    pub sender_fault: bool,
}

/// A received message, invisible to other receivers until its visibility timeout ends.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt: String,
    pub body: String,
    /// How often it has been received, this time included.
    pub receive_count: u32,
}

/// Approximate message counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueDepth {
    pub visible: u64,
    pub in_flight: u64,
    pub dead_letters: u64,
}

/// A queue with SQS semantics and its dead-letter queue.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends at most 10 messages; returns the entries that failed (the others were accepted).
    async fn send_batch(
        &self,
        messages: &[OutgoingMessage],
    ) -> Result<Vec<SendFailure>, QueueError>;
    /// Up to `max` (≤ 10) visible messages, waiting up to `wait` for one; each becomes invisible
    /// for `visibility` (or the queue's default). A message received more than the queue's
    /// maxReceiveCount times moves to the dead-letter queue instead.
    async fn receive(
        &self,
        max: usize,
        visibility: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError>;
    async fn delete(&self, receipt: &str) -> Result<(), QueueError>;
    /// Deletes received messages, as Lambda's SQS event source does after a batch: a stale
    /// receipt deletes nothing. By default one `delete` each; an adapter may do it in one call.
    async fn delete_batch(&self, receipts: &[String]) -> Result<(), QueueError> {
        for receipt in receipts {
            self.delete(receipt).await?;
        }
        Ok(())
    }
    /// Makes a received message visible again after `timeout` (zero: now).
    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError>;
    async fn depth(&self) -> Result<QueueDepth, QueueError>;
    /// Up to `max` dead letters, left where they are (`receipt` is empty).
    async fn peek_dead_letters(&self, max: usize) -> Result<Vec<ReceivedMessage>, QueueError>;
    /// Takes up to `max` messages off the dead-letter queue (they are deleted from it).
    async fn take_dead_letters(&self, max: usize) -> Result<Vec<ReceivedMessage>, QueueError>;
    /// Moves every dead letter back to the queue; returns how many moved.
    async fn redrive_dead_letters(&self) -> Result<usize, QueueError>;
}

/// A failure of a queue adapter.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The request itself is wrong (too many entries, bad receipt); retrying will not help.
    #[error("invalid queue request: {0}")]
    Invalid(String),
    /// Throttling, network or service failure; retrying may help.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
}

impl QueueError {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}
