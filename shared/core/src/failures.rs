//! What a handler does with a message it could not process: the failure is recorded (so its
//! dead letter can say why), logged, and, on the receive that uses up the queue's
//! maxReceiveCount, logged and counted as dead-lettered, so no message leaves a queue unnoticed.

use std::collections::HashMap;

use crate::ports::{FailureStore, MessageFailure};

/// A message a handler gives back to its queue.
#[derive(Debug, Clone, Copy)]
pub struct FailedMessage<'a> {
    /// The queue's name (`referrals`, `dynamics-push`).
    pub queue: &'a str,
    pub message_id: &'a str,
    /// How often it has been received, this time included.
    pub receive_count: u32,
    pub error: &'a str,
}

/// How often a message has been received, from its SQS system attributes
/// (`ApproximateReceiveCount`; 1 when absent).
pub fn receive_count(attributes: &HashMap<String, String>) -> u32 {
    attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// Records and logs `failed`; returns whether this was its last receive (it goes to the
/// dead-letter queue next). `max_receives`: the queue's maxReceiveCount, if known.
pub async fn note_failure(
    store: &dyn FailureStore,
    failed: FailedMessage<'_>,
    max_receives: Option<u32>,
) -> bool {
    let last = max_receives.is_some_and(|max| failed.receive_count >= max);
    let record = MessageFailure {
        queue: failed.queue.to_owned(),
        message_id: failed.message_id.to_owned(),
        receive_count: failed.receive_count,
        error: failed.error.to_owned(),
        at: hunter_domain::clock::now(),
    };
    if let Err(err) = store.record_failure(&record).await {
        tracing::warn!(event = "message_failure_not_recorded", queue = failed.queue, message_id = failed.message_id, error = %err);
    }
    if last {
        tracing::error!(
            event = "message_dead_lettered",
            queue = failed.queue,
            message_id = failed.message_id,
            receive_count = failed.receive_count,
            error = failed.error,
        );
    } else {
        tracing::warn!(
            event = "message_failed",
            queue = failed.queue,
            message_id = failed.message_id,
            receive_count = failed.receive_count,
            error = failed.error,
        );
    }
    last
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::adapters::EmbeddedStore;

    #[tokio::test]
    async fn when_a_message_fails_should_record_why_and_say_when_it_is_its_last_receive() {
        let store = EmbeddedStore::new();
        let failed = |receive_count, error| FailedMessage {
            queue: "referrals",
            message_id: "m-1",
            receive_count,
            error,
        };
        assert!(!note_failure(&store, failed(1, "store unavailable"), Some(3)).await);
        assert!(!note_failure(&store, failed(2, "store unavailable"), None).await);
        assert!(note_failure(&store, failed(3, "still unavailable"), Some(3)).await);
        let kept = store
            .get_failure("referrals", "m-1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (kept.receive_count, kept.error.as_str()),
            (3, "still unavailable")
        );
    }

    #[test]
    fn when_sqs_counts_receives_should_read_them() {
        let mut attributes = HashMap::new();
        assert_eq!(receive_count(&attributes), 1);
        attributes.insert("ApproximateReceiveCount".to_owned(), "4".to_owned());
        assert_eq!(receive_count(&attributes), 4);
    }
}
