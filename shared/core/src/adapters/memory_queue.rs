//! The embedded queue: SQS semantics in memory (visibility timeout, receive count,
//! dead-letter queue after maxReceiveCount, batch entry failures).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::ports::QueueError;
use crate::ports::{OutgoingMessage, Queue, QueueDepth, ReceivedMessage, SendFailure};

/// SQS's limits, enforced the same way here.
pub const MAX_BATCH_ENTRIES: usize = 10;
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
pub const MAX_DELAY: Duration = Duration::from_secs(900);
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Checks a batch as SQS does: refused whole (1 to 10 entries, at most [`MAX_BATCH_BYTES`],
/// distinct ids), else the entries to accept and the ones refused on their own (a delay over
/// 15 minutes).
pub fn check_batch(
    messages: &[OutgoingMessage],
) -> Result<(Vec<&OutgoingMessage>, Vec<SendFailure>), QueueError> {
    if messages.is_empty() || messages.len() > MAX_BATCH_ENTRIES {
        return Err(QueueError::Invalid(format!(
            "a batch holds 1 to 10 entries, not {}",
            messages.len()
        )));
    }
    let bytes: usize = messages.iter().map(|m| m.body.len()).sum();
    if bytes > MAX_BATCH_BYTES {
        return Err(QueueError::Invalid(format!(
            "batch of {bytes} bytes exceeds {MAX_BATCH_BYTES}"
        )));
    }
    for (i, m) in messages.iter().enumerate() {
        if messages[..i].iter().any(|other| other.id == m.id) {
            return Err(QueueError::Invalid(format!(
                "batch entry id {} is not distinct",
                m.id
            )));
        }
    }
    let (accepted, refused): (Vec<_>, Vec<_>) = messages
        .iter()
        .partition(|m| m.delay.unwrap_or_default() <= MAX_DELAY);
    let failures = refused
        .into_iter()
        .map(|m| SendFailure {
            id: m.id.clone(),
            code: "InvalidParameterValue".to_owned(),
            message: format!(
                "DelaySeconds {} is over 900",
                m.delay.unwrap_or_default().as_secs()
            ),
            sender_fault: true,
        })
        .collect();
    Ok((accepted, failures))
}

/// An in-memory queue with its dead-letter queue.
#[derive(Debug)]
pub struct EmbeddedQueue {
    name: String,
    default_visibility: Duration,
    max_receive_count: u32,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    messages: Vec<Message>,
    dead: VecDeque<Message>,
    sequence: u64,
}

#[derive(Debug, Clone)]
struct Message {
    id: String,
    body: String,
    visible_at: Instant,
    receive_count: u32,
    receipt: Option<String>,
}

impl EmbeddedQueue {
    /// A queue whose messages move to its dead-letter queue after `max_receive_count` receives.
    pub fn new(
        name: impl Into<String>,
        default_visibility: Duration,
        max_receive_count: u32,
    ) -> Self {
        Self {
            name: name.into(),
            default_visibility,
            max_receive_count,
            state: Mutex::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn try_receive(&self, max: usize, visibility: Duration) -> Vec<ReceivedMessage> {
        let mut state = self.lock();
        let now = Instant::now();
        let mut received = Vec::new();
        let mut index = 0;
        while index < state.messages.len() && received.len() < max {
            if state.messages[index].visible_at > now {
                index += 1;
                continue;
            }
            if state.messages[index].receive_count >= self.max_receive_count {
                let mut dead = state.messages.remove(index);
                dead.receipt = None;
                tracing::warn!(
                    event = "message_dead_lettered",
                    queue = %self.name,
                    message_id = %dead.id,
                    receive_count = dead.receive_count,
                );
                state.dead.push_back(dead);
                continue;
            }
            state.sequence += 1;
            let receipt = format!("{}-{}-{}", self.name, state.sequence, uuid::Uuid::new_v4());
            let message = &mut state.messages[index];
            message.receive_count += 1;
            message.visible_at = now + visibility;
            message.receipt = Some(receipt.clone());
            received.push(ReceivedMessage {
                message_id: message.id.clone(),
                receipt,
                body: message.body.clone(),
                receive_count: message.receive_count,
            });
            index += 1;
        }
        received
    }
}

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn send_batch(
        &self,
        messages: &[OutgoingMessage],
    ) -> Result<Vec<SendFailure>, QueueError> {
        let (accepted, failures) = check_batch(messages)?;
        let mut state = self.lock();
        let now = Instant::now();
        for m in accepted {
            state.messages.push(Message {
                id: uuid::Uuid::new_v4().to_string(),
                body: m.body.clone(),
                visible_at: now + m.delay.unwrap_or_default(),
                receive_count: 0,
                receipt: None,
            });
        }
        Ok(failures)
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let deadline = Instant::now() + wait;
        let visibility = visibility.unwrap_or(self.default_visibility);
        loop {
            let received = self.try_receive(max.clamp(1, MAX_BATCH_ENTRIES), visibility);
            let now = Instant::now();
            if !received.is_empty() || now >= deadline {
                return Ok(received);
            }
            tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
        }
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.lock()
            .messages
            .retain(|m| m.receipt.as_deref() != Some(receipt));
        Ok(())
    }

    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        let mut state = self.lock();
        let message = state
            .messages
            .iter_mut()
            .find(|m| m.receipt.as_deref() == Some(receipt))
            .ok_or_else(|| QueueError::Invalid("receipt handle is not valid".to_owned()))?;
        message.visible_at = Instant::now() + timeout;
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let state = self.lock();
        let now = Instant::now();
        let visible = state
            .messages
            .iter()
            .filter(|m| m.visible_at <= now)
            .count();
        Ok(QueueDepth {
            visible: visible as u64,
            in_flight: (state.messages.len() - visible) as u64,
            dead_letters: state.dead.len() as u64,
        })
    }

    async fn peek_dead_letters(&self, max: usize) -> Result<Vec<ReceivedMessage>, QueueError> {
        Ok(self
            .lock()
            .dead
            .iter()
            .take(max)
            .map(|m| ReceivedMessage {
                message_id: m.id.clone(),
                receipt: String::new(),
                body: m.body.clone(),
                receive_count: m.receive_count,
            })
            .collect())
    }

    async fn take_dead_letters(&self, max: usize) -> Result<Vec<ReceivedMessage>, QueueError> {
        let mut state = self.lock();
        let count = max.min(state.dead.len());
        Ok(state
            .dead
            .drain(..count)
            .map(|m| ReceivedMessage {
                message_id: m.id,
                receipt: String::new(),
                body: m.body,
                receive_count: m.receive_count,
            })
            .collect())
    }

    async fn redrive_dead_letters(&self) -> Result<usize, QueueError> {
        let mut state = self.lock();
        let now = Instant::now();
        let dead: Vec<Message> = state.dead.drain(..).collect();
        let moved = dead.len();
        state.messages.extend(dead.into_iter().map(|m| Message {
            visible_at: now,
            receive_count: 0,
            receipt: None,
            ..m
        }));
        Ok(moved)
    }
}
