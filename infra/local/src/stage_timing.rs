//! Where a `--once` run spends its time: the queues and the DNS scanner are wrapped so that the
//! time spent inside their calls is summed (the summary's `stages`, the benchmark's split).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hunter_core::ports::{
    DomainScanner, OutgoingMessage, Queue, QueueDepth, QueueError, ReceivedMessage, SendFailure,
};
use hunter_domain::rules::Domain;
use hunter_domain::scan::DomainScan;

/// Time summed over calls, from any task.
#[derive(Debug, Default)]
pub struct Stopwatch(AtomicU64);

impl Stopwatch {
    /// Runs `work`, adding its duration.
    pub async fn time<T>(&self, work: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = work.await;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::Relaxed);
        out
    }

    /// The time summed so far.
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

/// A queue whose calls are timed.
#[derive(Debug)]
pub struct TimedQueue<Q: ?Sized> {
    inner: Arc<Q>,
    spent: Arc<Stopwatch>,
}

impl<Q: ?Sized> TimedQueue<Q> {
    pub fn new(inner: Arc<Q>, spent: Arc<Stopwatch>) -> Self {
        Self { inner, spent }
    }
}

#[async_trait]
impl<Q: Queue + ?Sized> Queue for TimedQueue<Q> {
    async fn send_batch(
        &self,
        messages: &[OutgoingMessage],
    ) -> Result<Vec<SendFailure>, QueueError> {
        self.spent.time(self.inner.send_batch(messages)).await
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.spent
            .time(self.inner.receive(max, visibility, wait))
            .await
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.spent.time(self.inner.delete(receipt)).await
    }

    async fn delete_batch(&self, receipts: &[String]) -> Result<(), QueueError> {
        self.spent.time(self.inner.delete_batch(receipts)).await
    }

    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        self.spent
            .time(self.inner.change_visibility(receipt, timeout))
            .await
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        self.spent.time(self.inner.depth()).await
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

/// A scanner whose scans are timed.
#[derive(Debug)]
pub struct TimedScanner<S: ?Sized> {
    inner: Arc<S>,
    spent: Arc<Stopwatch>,
}

impl<S: ?Sized> TimedScanner<S> {
    pub fn new(inner: Arc<S>, spent: Arc<Stopwatch>) -> Self {
        Self { inner, spent }
    }
}

#[async_trait]
impl<S: DomainScanner + ?Sized> DomainScanner for TimedScanner<S> {
    async fn scan(&self, domain: &Domain) -> DomainScan {
        self.spent.time(self.inner.scan(domain)).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use hunter_core::adapters::EmbeddedQueue;

    #[tokio::test]
    async fn when_a_queue_is_timed_should_pass_calls_through_and_sum_their_time() {
        let spent = Arc::new(Stopwatch::default());
        let queue = TimedQueue::new(
            Arc::new(EmbeddedQueue::new("q", Duration::from_secs(30), 3)),
            spent.clone(),
        );
        queue
            .send_batch(&[OutgoingMessage::new("1", "body")])
            .await
            .unwrap();
        let got = queue
            .receive(10, None, Duration::from_millis(30))
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, "body");
        queue.delete(&got[0].receipt).await.unwrap();
        assert_eq!(queue.depth().await.unwrap(), QueueDepth::default());
        // An empty receive waits inside the call: that wait is counted.
        let before = spent.total();
        assert!(
            queue
                .receive(10, None, Duration::from_millis(30))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(spent.total() > before);
    }
}
