//! The queue contract: every adapter must pass these.

use std::time::Duration;

use hunter_core::ports::QueueError;
use hunter_core::ports::{OutgoingMessage, Queue};

const NO_WAIT: Duration = Duration::ZERO;

fn messages(n: usize) -> Vec<OutgoingMessage> {
    (0..n)
        .map(|i| OutgoingMessage::new(format!("m{i}"), format!(r#"{{"n":{i}}}"#)))
        .collect()
}

/// Receives until `n` messages arrived or `patience` passed.
async fn receive_n(
    queue: &dyn Queue,
    n: usize,
    visibility: Option<Duration>,
) -> Vec<hunter_core::ports::ReceivedMessage> {
    let mut all = Vec::new();
    for _ in 0..20 {
        all.extend(
            queue
                .receive(10, visibility, Duration::from_millis(200))
                .await
                .unwrap(),
        );
        if all.len() >= n {
            break;
        }
    }
    all
}

pub async fn sent_messages_are_received_once_and_deleted(queue: &dyn Queue) {
    let failures = queue.send_batch(&messages(3)).await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    let received = receive_n(queue, 3, Some(Duration::from_secs(30))).await;
    let mut bodies: Vec<_> = received.iter().map(|m| m.body.clone()).collect();
    bodies.sort();
    assert_eq!(bodies, [r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#]);
    assert!(received.iter().all(|m| m.receive_count == 1));
    assert!(
        queue.receive(10, None, NO_WAIT).await.unwrap().is_empty(),
        "in-flight messages must stay hidden"
    );
    for m in &received {
        queue.delete(&m.receipt).await.unwrap();
    }
    let depth = queue.depth().await.unwrap();
    assert_eq!(
        (depth.visible, depth.in_flight, depth.dead_letters),
        (0, 0, 0)
    );
}

pub async fn a_received_batch_is_deleted_at_once_and_only_what_it_names(queue: &dyn Queue) {
    let failures = queue.send_batch(&messages(4)).await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    let received = receive_n(queue, 4, Some(Duration::from_secs(30))).await;
    assert_eq!(received.len(), 4);
    let receipts: Vec<String> = received[..3].iter().map(|m| m.receipt.clone()).collect();
    queue.delete_batch(&receipts).await.unwrap();
    let depth = queue.depth().await.unwrap();
    assert_eq!(
        (depth.visible, depth.in_flight),
        (0, 1),
        "the fourth is still in flight"
    );
    queue
        .change_visibility(&received[3].receipt, Duration::ZERO)
        .await
        .unwrap();
    let again = receive_n(queue, 1, Some(Duration::from_secs(30))).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].body, received[3].body);
    queue
        .delete_batch(&[again[0].receipt.clone()])
        .await
        .unwrap();
    queue.delete_batch(&[]).await.unwrap();
    let depth = queue.depth().await.unwrap();
    assert_eq!((depth.visible, depth.in_flight), (0, 0));
}

pub async fn a_batch_with_a_bad_entry_fails_only_that_entry(queue: &dyn Queue) {
    let mut batch = messages(3);
    batch[1].delay = Some(Duration::from_secs(901));
    let failures = queue.send_batch(&batch).await.unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].id, "m1");
    assert!(failures[0].sender_fault);
    let received = receive_n(queue, 2, None).await;
    let mut bodies: Vec<_> = received.iter().map(|m| m.body.clone()).collect();
    bodies.sort();
    assert_eq!(bodies, [r#"{"n":0}"#, r#"{"n":2}"#]);
}

pub async fn a_malformed_batch_is_refused_whole_and_not_retryable(queue: &dyn Queue) {
    let too_many = queue.send_batch(&messages(11)).await;
    assert!(
        matches!(too_many, Err(QueueError::Invalid(_))),
        "{too_many:?}"
    );
    let mut duplicate_ids = messages(2);
    duplicate_ids[1].id = "m0".to_owned();
    let duplicates = queue.send_batch(&duplicate_ids).await;
    assert!(
        duplicates.as_ref().is_err_and(|e| !e.is_retryable()),
        "{duplicates:?}"
    );
    assert_eq!(queue.depth().await.unwrap().visible, 0);
}

pub async fn a_message_reappears_when_its_visibility_timeout_expires(queue: &dyn Queue) {
    queue.send_batch(&messages(1)).await.unwrap();
    let first = receive_n(queue, 1, Some(Duration::from_secs(1))).await;
    assert_eq!(first.len(), 1);
    assert!(queue.receive(1, None, NO_WAIT).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = receive_n(queue, 1, Some(Duration::from_secs(30))).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message_id, first[0].message_id);
    assert_eq!(again[0].receive_count, 2);
}

pub async fn changing_visibility_to_zero_releases_a_message_now(queue: &dyn Queue) {
    queue.send_batch(&messages(1)).await.unwrap();
    let first = receive_n(queue, 1, Some(Duration::from_secs(300))).await;
    queue
        .change_visibility(&first[0].receipt, Duration::ZERO)
        .await
        .unwrap();
    let again = receive_n(queue, 1, Some(Duration::from_secs(300))).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].body, first[0].body);
}

/// The queue under test has maxReceiveCount 2.
pub async fn a_message_moves_to_the_dead_letter_queue_after_max_receives(queue: &dyn Queue) {
    queue.send_batch(&messages(1)).await.unwrap();
    let mut first_id = String::new();
    for expected_count in 1..=2 {
        let received = receive_n(queue, 1, Some(Duration::from_secs(300))).await;
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].receive_count, expected_count);
        first_id.clone_from(&received[0].message_id);
        queue
            .change_visibility(&received[0].receipt, Duration::ZERO)
            .await
            .unwrap();
    }
    assert!(
        queue
            .receive(10, None, Duration::from_millis(500))
            .await
            .unwrap()
            .is_empty()
    );
    let depth = queue.depth().await.unwrap();
    assert_eq!(
        (depth.visible, depth.in_flight, depth.dead_letters),
        (0, 0, 1)
    );
    let peeked = queue.peek_dead_letters(10).await.unwrap();
    assert_eq!(peeked.len(), 1, "{peeked:?}");
    assert_eq!(peeked[0].body, r#"{"n":0}"#);
    assert_eq!(
        peeked[0].message_id, first_id,
        "a dead letter keeps its message id, so its recorded failure can be found"
    );
    assert!(peeked[0].receive_count >= 2, "{peeked:?}");
    assert_eq!(
        queue.depth().await.unwrap().dead_letters,
        1,
        "peeking leaves the dead letter where it is"
    );

    assert_eq!(queue.redrive_dead_letters().await.unwrap(), 1);
    assert_eq!(queue.depth().await.unwrap().dead_letters, 0);
    let redriven = receive_n(queue, 1, Some(Duration::from_secs(300))).await;
    assert_eq!(redriven[0].body, r#"{"n":0}"#);
    queue
        .change_visibility(&redriven[0].receipt, Duration::ZERO)
        .await
        .unwrap();
    receive_n(queue, 1, Some(Duration::ZERO)).await;
    queue
        .receive(10, None, Duration::from_millis(500))
        .await
        .unwrap();
    let dead = queue.take_dead_letters(10).await.unwrap();
    assert_eq!(
        dead.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        [r#"{"n":0}"#]
    );
    assert_eq!(queue.depth().await.unwrap().dead_letters, 0);
}
