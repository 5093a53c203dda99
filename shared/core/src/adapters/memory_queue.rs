//! The embedded queue: SQS semantics in memory (visibility timeout, receive count,
//! dead-letter queue after maxReceiveCount, batch entry failures).

use std::collections::{BTreeSet, HashMap, VecDeque};
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

/// An in-memory queue with its dead-letter queue. Every operation costs O(log n) in the number
/// of messages held: messages are kept by sequence number, ordered by when they become visible
/// (then by arrival), and found by receipt through an index.
#[derive(Debug)]
pub struct EmbeddedQueue {
    name: String,
    default_visibility: Duration,
    max_receive_count: u32,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    messages: HashMap<u64, Message>,
    /// (visible at, sequence): the next visible message first, arrival order among equals.
    schedule: BTreeSet<(Instant, u64)>,
    /// Receipt of the latest receive → sequence (an older receipt is no longer valid).
    receipts: HashMap<String, u64>,
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

impl State {
    fn push(&mut self, message: Message) {
        self.sequence += 1;
        self.schedule.insert((message.visible_at, self.sequence));
        self.messages.insert(self.sequence, message);
    }

    fn remove(&mut self, sequence: u64) -> Option<Message> {
        let message = self.messages.remove(&sequence)?;
        self.schedule.remove(&(message.visible_at, sequence));
        if let Some(receipt) = &message.receipt {
            self.receipts.remove(receipt);
        }
        Some(message)
    }

    fn reschedule(&mut self, sequence: u64, visible_at: Instant) {
        if let Some(message) = self.messages.get_mut(&sequence) {
            self.schedule.remove(&(message.visible_at, sequence));
            message.visible_at = visible_at;
            self.schedule.insert((visible_at, sequence));
        }
    }
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
        let state = &mut *state;
        let now = Instant::now();
        let mut received = Vec::new();
        while received.len() < max {
            let Some(&(visible_at, sequence)) = state.schedule.first() else {
                break;
            };
            if visible_at > now {
                break;
            }
            let over = state
                .messages
                .get(&sequence)
                .is_some_and(|m| m.receive_count >= self.max_receive_count);
            if over {
                if let Some(mut dead) = state.remove(sequence) {
                    dead.receipt = None;
                    tracing::warn!(
                        event = "message_dead_lettered",
                        queue = %self.name,
                        message_id = %dead.id,
                        receive_count = dead.receive_count,
                    );
                    state.dead.push_back(dead);
                }
                continue;
            }
            state.reschedule(sequence, now + visibility);
            let receipt = format!("{}-{}-{}", self.name, sequence, uuid::Uuid::new_v4());
            let Some(message) = state.messages.get_mut(&sequence) else {
                continue;
            };
            message.receive_count += 1;
            if let Some(old) = message.receipt.replace(receipt.clone()) {
                state.receipts.remove(&old);
            }
            received.push(ReceivedMessage {
                message_id: message.id.clone(),
                receipt: receipt.clone(),
                body: message.body.clone(),
                receive_count: message.receive_count,
            });
            state.receipts.insert(receipt, sequence);
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
            state.push(Message {
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
        let mut state = self.lock();
        if let Some(sequence) = state.receipts.get(receipt).copied() {
            state.remove(sequence);
        }
        Ok(())
    }

    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        let mut state = self.lock();
        let sequence = state
            .receipts
            .get(receipt)
            .copied()
            .ok_or_else(|| QueueError::Invalid("receipt handle is not valid".to_owned()))?;
        state.reschedule(sequence, Instant::now() + timeout);
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let state = self.lock();
        let now = Instant::now();
        let visible = state.schedule.range(..=(now, u64::MAX)).count();
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
        for m in dead {
            state.push(Message {
                visible_at: now,
                receive_count: 0,
                receipt: None,
                ..m
            });
        }
        Ok(moved)
    }
}
