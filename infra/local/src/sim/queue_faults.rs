//! A queue that misbehaves the way SQS may: at-least-once delivery (a message delivered again
//! although it was received and is being handled) and no ordering. It wraps the embedded queues
//! under `--sim-queue-faults`, so that tests see the handlers cope.

use std::time::Duration;

use async_trait::async_trait;
use hunter_core::ports::{
    OutgoingMessage, Queue, QueueDepth, QueueError, ReceivedMessage, SendFailure,
};

/// Share of received messages that are also sent again as a duplicate.
const DUPLICATE_RATE: f64 = 0.05;

/// `inner`, delivering some messages twice and every batch shuffled.
#[allow(missing_debug_implementations, reason = "trait object")]
pub struct FaultyQueue<Q> {
    inner: Q,
}

impl<Q: Queue> FaultyQueue<Q> {
    pub fn new(inner: Q) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl<Q: Queue> Queue for FaultyQueue<Q> {
    async fn send_batch(
        &self,
        messages: &[OutgoingMessage],
    ) -> Result<Vec<SendFailure>, QueueError> {
        self.inner.send_batch(messages).await
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let mut received = self.inner.receive(max, visibility, wait).await?;
        fastrand::shuffle(&mut received);
        let duplicates: Vec<OutgoingMessage> = received
            .iter()
            .filter(|_| fastrand::f64() < DUPLICATE_RATE)
            .enumerate()
            .map(|(i, m)| OutgoingMessage::new(i.to_string(), m.body.clone()))
            .collect();
        if !duplicates.is_empty() {
            tracing::debug!(event = "sim_queue_duplicated", messages = duplicates.len());
            self.inner.send_batch(&duplicates).await?;
        }
        Ok(received)
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.inner.delete(receipt).await
    }

    async fn delete_batch(&self, receipts: &[String]) -> Result<(), QueueError> {
        self.inner.delete_batch(receipts).await
    }

    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        self.inner.change_visibility(receipt, timeout).await
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
