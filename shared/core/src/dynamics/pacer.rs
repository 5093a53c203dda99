//! Pacing one Dataverse application user below its service-protection limits, from the headers
//! Dataverse sends on every answer, instead of running into them.
//!
//! A [`Pacer`] is a token bucket and a concurrency cap:
//! - the bucket refills at the request limit over its window (less a small headroom) and holds at
//!   most that headroom, so no window of the server's sliding log sees more than the limit;
//! - its level follows `x-ms-ratelimit-burst-remaining-xrm-requests` down (what the server says
//!   is left, less what is in flight), so other processes of the same user slow it too, and an
//!   exhausted `x-ms-ratelimit-time-remaining-xrm-requests` empties it;
//! - a request counts as many tokens as Dataverse counts it (a `$batch` of n: n);
//! - a 429 empties the bucket and holds every request until its `Retry-After` has passed;
//! - at most `x-ms-dop-hint` requests are in flight (never more than 52, the concurrency limit).
//!
//! Requests wait in arrival order (a `$batch` is not starved by single requests).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::http::{PacedRequest, Pacing};
use crate::retry::parse_retry_after;

/// Dataverse's concurrency limit per user.
pub const MAX_CONCURRENCY: u32 = 52;
/// Header: requests left in the window.
pub const BURST_REMAINING: &str = "x-ms-ratelimit-burst-remaining-xrm-requests";
/// Header: execution time (ms) left in the window.
pub const TIME_REMAINING: &str = "x-ms-ratelimit-time-remaining-xrm-requests";
/// Header: the recommended degree of parallelism.
pub const DOP_HINT: &str = "x-ms-dop-hint";
/// The pause after a 429 that names no `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The limits one application user is paced for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacerSettings {
    /// Requests per window (Dataverse's default: 6000 per 300 s).
    pub max_requests: u32,
    /// The server's sliding window.
    pub window: Duration,
    /// The most requests in flight, whatever the dop hint says (≤ [`MAX_CONCURRENCY`]).
    pub max_concurrency: u32,
    /// Requests in flight before the first `x-ms-dop-hint` arrives.
    pub initial_concurrency: u32,
    /// Share of the limit kept free (0..1): the bucket refills at `(1 - headroom)` of the
    /// limit and holds `headroom` of it, so a burst and a window of refills stay within it.
    pub headroom: f64,
}

impl Default for PacerSettings {
    fn default() -> Self {
        Self {
            max_requests: 6000,
            window: Duration::from_secs(300),
            max_concurrency: MAX_CONCURRENCY,
            initial_concurrency: 4,
            headroom: 0.03,
        }
    }
}

impl PacerSettings {
    /// Microsoft's defaults with `max_requests` per `window`.
    pub fn limit(max_requests: u32, window: Duration) -> Self {
        Self {
            max_requests,
            window,
            ..Self::default()
        }
    }

    /// Tokens per second.
    fn rate(&self) -> f64 {
        let headroom = self.headroom.clamp(0.0, 0.5);
        f64::from(self.max_requests.max(1)) * (1.0 - headroom)
            / self.window.as_secs_f64().max(0.001)
    }

    /// The bucket's size.
    fn capacity(&self) -> f64 {
        (f64::from(self.max_requests) * self.headroom.clamp(0.0, 0.5)).max(1.0)
    }
}

/// The bucket, the pause and the requests in flight.
#[derive(Debug)]
struct State {
    /// Tokens; negative after a request heavier than the bucket (the debt is waited off).
    level: f64,
    /// Refilled up to this instant (in the future while paused).
    refilled_at: Instant,
    /// No request starts before this (after a 429).
    paused_until: Option<Instant>,
    in_flight: u32,
    /// Tokens taken by the requests in flight.
    in_flight_weight: u64,
    /// Tokens wanted by the requests waiting for their turn.
    waiting_weight: u64,
    /// The cap on requests in flight (the dop hint).
    concurrency: u32,
    /// 429s seen.
    throttled: u64,
}

impl State {
    fn refill(&mut self, now: Instant, rate: f64, capacity: f64) {
        if now > self.refilled_at {
            let elapsed = now.duration_since(self.refilled_at).as_secs_f64();
            self.level = (self.level + elapsed * rate).min(capacity);
            self.refilled_at = now;
        }
    }
}

#[derive(Debug)]
struct Shared {
    settings: PacerSettings,
    rate: f64,
    capacity: f64,
    state: Mutex<State>,
    /// Whose turn it is: requests take tokens in arrival order.
    turn: tokio::sync::Mutex<()>,
    /// A request in flight ended.
    freed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The pacer of one Dataverse application user. Clones share one bucket: one pacer per user is
/// shared by every concurrent task of the process (on Lambda: by every invocation a container
/// serves, since the client is built once per container; other containers of the same user are
/// felt through `burst-remaining` and 429s).
#[derive(Debug, Clone)]
pub struct Pacer {
    shared: Arc<Shared>,
}

/// What a pacer has seen, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacerSnapshot {
    /// Tokens in the bucket now.
    pub level: f64,
    pub in_flight: u32,
    /// The cap on requests in flight now.
    pub concurrency: u32,
    /// How long requests are held after a 429, from now.
    pub paused_for: Duration,
    /// 429s seen so far.
    pub throttled: u64,
}

impl Pacer {
    /// A pacer for `settings`, its bucket full.
    pub fn new(settings: PacerSettings) -> Self {
        let capacity = settings.capacity();
        let concurrency = settings
            .initial_concurrency
            .clamp(1, settings.max_concurrency.clamp(1, MAX_CONCURRENCY));
        Self {
            shared: Arc::new(Shared {
                settings,
                rate: settings.rate(),
                capacity,
                state: Mutex::new(State {
                    level: capacity,
                    refilled_at: Instant::now(),
                    paused_until: None,
                    in_flight: 0,
                    in_flight_weight: 0,
                    waiting_weight: 0,
                    concurrency,
                    throttled: 0,
                }),
                turn: tokio::sync::Mutex::new(()),
                freed: Notify::new(),
            }),
        }
    }

    /// The settings it paces for.
    pub fn settings(&self) -> PacerSettings {
        self.shared.settings
    }

    /// The state now.
    pub fn snapshot(&self) -> PacerSnapshot {
        let shared = &self.shared;
        let now = Instant::now();
        let mut state = shared.lock();
        state.refill(now, shared.rate, shared.capacity);
        PacerSnapshot {
            level: state.level,
            in_flight: state.in_flight,
            concurrency: state.concurrency,
            paused_for: state
                .paused_until
                .map_or(Duration::ZERO, |until| until.saturating_duration_since(now)),
            throttled: state.throttled,
        }
    }

    /// About how long a request counting `weight` would wait now (behind those already waiting):
    /// to pick the least busy of several users.
    pub fn expected_wait(&self, weight: u32) -> Duration {
        let shared = &self.shared;
        let now = Instant::now();
        let mut state = shared.lock();
        state.refill(now, shared.rate, shared.capacity);
        let paused = state
            .paused_until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        let wanted = state.waiting_weight as f64 + f64::from(weight).min(shared.capacity);
        let short = (wanted - state.level).max(0.0);
        paused + Duration::from_secs_f64(short / shared.rate)
    }

    /// Waits for a turn, for `weight` tokens and for a place among the requests in flight; the
    /// permit is the request in flight. `Err(wait)` when a wait would pass `deadline`.
    pub async fn acquire(
        &self,
        weight: u32,
        deadline: Option<Instant>,
    ) -> Result<PacerPermit, Duration> {
        let shared = &self.shared;
        let weight = weight.max(1);
        shared.lock().waiting_weight += u64::from(weight);
        let _waiting = Waiting {
            shared,
            weight: u64::from(weight),
        };
        let _turn = shared.turn.lock().await;
        // The bucket: a request heavier than the bucket waits for a full one and leaves a debt.
        let need = f64::from(weight).min(shared.capacity);
        loop {
            let now = Instant::now();
            let wait = {
                let mut state = shared.lock();
                state.refill(now, shared.rate, shared.capacity);
                match state.paused_until.filter(|until| *until > now) {
                    Some(until) => until - now,
                    None if state.level >= need => Duration::ZERO,
                    None => Duration::from_secs_f64((need - state.level) / shared.rate),
                }
            };
            if wait.is_zero() {
                break;
            }
            if deadline.is_some_and(|d| now + wait > d) {
                return Err(wait);
            }
            tokio::time::sleep(wait.max(Duration::from_micros(100))).await;
        }
        // A place in flight; the tokens are taken with it.
        loop {
            let freed = shared.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut state = shared.lock();
                if state.in_flight < state.concurrency {
                    state.refill(Instant::now(), shared.rate, shared.capacity);
                    state.in_flight += 1;
                    state.in_flight_weight += u64::from(weight);
                    state.level -= f64::from(weight);
                    return Ok(PacerPermit {
                        shared: Arc::clone(shared),
                        weight,
                    });
                }
            }
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, freed).await.is_err() {
                        return Err(Duration::ZERO);
                    }
                }
                None => freed.await,
            }
        }
    }

    /// Tells the pacer of an answer to a request counting `weight` that is still in flight.
    fn observe(&self, weight: u32, status: StatusCode, headers: &HeaderMap) {
        let shared = &self.shared;
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        let now = Instant::now();
        let mut state = shared.lock();
        state.refill(now, shared.rate, shared.capacity);
        if let Some(hint) = number(DOP_HINT).filter(|h| *h >= 1.0) {
            let max = shared.settings.max_concurrency.clamp(1, MAX_CONCURRENCY);
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let hint = hint.min(f64::from(max)) as u32;
            state.concurrency = hint.clamp(1, max);
        }
        if let Some(remaining) = number(BURST_REMAINING) {
            // What the server has left, less what this process has in flight besides this one.
            let others = state.in_flight_weight.saturating_sub(u64::from(weight)) as f64;
            state.level = state.level.min(remaining - others);
        }
        if number(TIME_REMAINING).is_some_and(|ms| ms <= 0.0) {
            state.level = state.level.min(0.0);
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            let delay = headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()))
                .unwrap_or(DEFAULT_RETRY_AFTER)
                .min(crate::retry::MAX_SERVER_DELAY);
            let until = now + delay;
            state.paused_until = Some(state.paused_until.map_or(until, |p| p.max(until)));
            state.level = state.level.min(0.0);
            state.refilled_at = state.refilled_at.max(until);
            state.throttled += 1;
            tracing::info!(
                event = "dataverse_pacer_throttled",
                retry_after_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                in_flight = state.in_flight
            );
        }
    }
}

/// Takes a waiting request's tokens off the queue when it leaves it (served or given up).
struct Waiting<'a> {
    shared: &'a Shared,
    weight: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.waiting_weight = state.waiting_weight.saturating_sub(self.weight);
    }
}

/// A request in flight; dropping it frees its place.
#[derive(Debug)]
pub struct PacerPermit {
    shared: Arc<Shared>,
    weight: u32,
}

impl PacerPermit {
    /// Tells the pacer of the request's answer.
    pub fn answered(&self, status: StatusCode, headers: &HeaderMap) {
        Pacer {
            shared: Arc::clone(&self.shared),
        }
        .observe(self.weight, status, headers);
    }
}

impl Drop for PacerPermit {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.in_flight = state.in_flight.saturating_sub(1);
            state.in_flight_weight = state
                .in_flight_weight
                .saturating_sub(u64::from(self.weight));
        }
        self.shared.freed.notify_one();
    }
}

impl PacedRequest for PacerPermit {
    fn answered(&mut self, status: StatusCode, headers: &HeaderMap) {
        PacerPermit::answered(self, status, headers);
    }
}

#[async_trait::async_trait]
impl Pacing for Pacer {
    async fn admit(
        &self,
        weight: u32,
        deadline: Option<Instant>,
    ) -> Result<Box<dyn PacedRequest>, Duration> {
        let permit = self.acquire(weight, deadline).await?;
        Ok(Box::new(permit))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// 600 requests per 30 s: 19.4 tokens/s, a bucket of 18.
    fn pacer() -> Pacer {
        Pacer::new(PacerSettings {
            initial_concurrency: 52,
            ..PacerSettings::limit(600, Duration::from_secs(30))
        })
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    /// Sends `n` requests of `weight` one after another; how long it took.
    async fn send(pacer: &Pacer, n: u32, weight: u32) -> Duration {
        let started = Instant::now();
        for _ in 0..n {
            drop(pacer.acquire(weight, None).await.unwrap());
        }
        started.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn when_the_bucket_is_full_should_let_its_burst_through_at_once_then_refill_at_the_rate()
    {
        let pacer = pacer();
        assert_eq!(send(&pacer, 18, 1).await, Duration::ZERO);
        // 194 more at 19.4 per second: 10 s.
        let took = send(&pacer, 194, 1).await;
        assert!(
            (took.as_secs_f64() - 10.0).abs() < 0.01,
            "paced at the limit less the headroom: {took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn when_a_batch_counts_n_should_take_n_tokens() {
        let pacer = pacer();
        drop(pacer.acquire(10, None).await.unwrap());
        assert!((pacer.snapshot().level - 8.0).abs() < 1e-6);
        // A batch heavier than the bucket waits for a full one and leaves a debt.
        let took = send(&pacer, 1, 100).await;
        assert!(took.as_secs_f64() > 0.5, "{took:?}");
        assert!(pacer.snapshot().level < -80.0);
    }

    #[tokio::test(start_paused = true)]
    async fn when_the_server_has_less_left_should_follow_it_down_and_never_up() {
        let pacer = pacer();
        let permit = pacer.acquire(1, None).await.unwrap();
        permit.answered(StatusCode::OK, &headers(&[(BURST_REMAINING, "3")]));
        drop(permit);
        assert!((pacer.snapshot().level - 3.0).abs() < 1e-6);
        let permit = pacer.acquire(1, None).await.unwrap();
        permit.answered(StatusCode::OK, &headers(&[(BURST_REMAINING, "500")]));
        assert!((pacer.snapshot().level - 2.0).abs() < 1e-6, "not raised");
        // Others in flight are deducted from what the server said was left.
        let other = pacer.acquire(1, None).await.unwrap();
        permit.answered(StatusCode::OK, &headers(&[(BURST_REMAINING, "1")]));
        assert!(pacer.snapshot().level.abs() < 1e-6);
        drop((permit, other));
        // Execution time spent: the bucket empties too.
        tokio::time::advance(Duration::from_secs(1)).await;
        let permit = pacer.acquire(1, None).await.unwrap();
        permit.answered(StatusCode::OK, &headers(&[(TIME_REMAINING, "0")]));
        assert!(pacer.snapshot().level <= 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn when_throttled_should_hold_every_request_for_retry_after_and_empty_the_bucket() {
        let pacer = pacer();
        let permit = pacer.acquire(1, None).await.unwrap();
        permit.answered(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "5")]),
        );
        drop(permit);
        let snapshot = pacer.snapshot();
        assert_eq!(snapshot.throttled, 1);
        assert_eq!(snapshot.paused_for, Duration::from_secs(5));
        assert!(snapshot.level <= 0.0);
        assert!(pacer.expected_wait(1) >= Duration::from_secs(5));
        // Nothing before the pause ends, then one token's refill.
        let took = send(&pacer, 1, 1).await;
        assert!(
            took >= Duration::from_secs(5) && took < Duration::from_millis(5100),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn when_a_wait_would_pass_the_deadline_should_refuse_with_the_wait() {
        let pacer = pacer();
        let permit = pacer.acquire(1, None).await.unwrap();
        permit.answered(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "30")]),
        );
        drop(permit);
        let deadline = Instant::now() + Duration::from_secs(10);
        let wait = pacer.acquire(1, Some(deadline)).await.unwrap_err();
        assert_eq!(wait, Duration::from_secs(30));
        assert_eq!(pacer.snapshot().in_flight, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn when_dataverse_hints_its_parallelism_should_keep_to_it_and_never_above_52() {
        let pacer = pacer();
        let permit = pacer.acquire(1, None).await.unwrap();
        permit.answered(StatusCode::OK, &headers(&[(DOP_HINT, "2")]));
        assert_eq!(pacer.snapshot().concurrency, 2);
        let second = pacer.acquire(1, None).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        assert!(
            pacer.acquire(1, Some(deadline)).await.is_err(),
            "a third waits for a place"
        );
        let pacer2 = pacer.clone();
        let third = tokio::spawn(async move { pacer2.acquire(1, None).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!third.is_finished());
        drop(second);
        third.await.unwrap().unwrap();
        permit.answered(StatusCode::OK, &headers(&[(DOP_HINT, "500")]));
        assert_eq!(pacer.snapshot().concurrency, MAX_CONCURRENCY);
    }

    #[tokio::test(start_paused = true)]
    async fn when_many_tasks_share_a_pacer_should_hold_them_all_to_one_rate() {
        let pacer = pacer();
        let started = Instant::now();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let pacer = pacer.clone();
                tokio::spawn(async move {
                    for _ in 0..25 {
                        drop(pacer.acquire(1, None).await.unwrap());
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        // 200 requests: 18 at once, 182 at 19.4 per second.
        let took = started.elapsed().as_secs_f64();
        assert!((took - 182.0 / 19.4).abs() < 0.05, "{took}");
    }
}
