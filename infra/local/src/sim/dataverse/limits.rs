//! Service-protection limits (requests, execution time and concurrency over a sliding window) and
//! the faults injected into the Web API routes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::api::DvError;
use super::{
    CODE_CONCURRENCY_LIMIT, CODE_EXECUTION_LIMIT, CODE_REQUESTS_LIMIT, DECIMAL_CONCURRENCY_LIMIT,
    DECIMAL_EXECUTION_LIMIT, DECIMAL_REQUESTS_LIMIT, DataverseSim,
};
use crate::sim::faults::{self, Scripted};

/// Faults injected into the Web API routes (`/api/data/v9.2/...`), after auth and limits.
///
/// JSON shape for `PUT /_sim/faults`: the same snake_case field names, every field optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Probability (0..=1) that an API call answers 500 or 503 (even odds; 503 has `Retry-After`).
    pub error_rate: f64,
    /// Delay added before every API answer (counts as execution time).
    pub latency_ms: u64,
    /// Statuses answered, in order, to the next API calls; a 2xx entry means "serve normally".
    pub fail_next: Vec<u16>,
    /// `Retry-After` seconds on injected 429/503 answers.
    pub retry_after_secs: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            error_rate: 0.0,
            latency_ms: 0,
            fail_next: Vec::new(),
            retry_after_secs: 1,
        }
    }
}

/// Service-protection limits (per application user, sliding window).
///
/// JSON shape for `PUT /_sim/limits`: `max_requests`, `window_secs`, `max_concurrent`,
/// `max_execution_ms`, `retry_after_secs`, every field optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Requests accepted per `window` (requests inside a `$batch` count individually).
    pub max_requests: u32,
    /// The sliding window.
    pub window: Duration,
    /// Requests in flight at once; one more answers 429 at once.
    pub max_concurrent: u32,
    /// Combined execution time of the requests of one `window`.
    pub max_execution: Duration,
    /// `Retry-After` seconds on a 429.
    pub retry_after_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_requests: 6000,
            window: Duration::from_secs(300),
            max_concurrent: 52,
            max_execution: Duration::from_secs(1200),
            retry_after_secs: 5,
        }
    }
}

/// The JSON form of [`Limits`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct LimitsJson {
    max_requests: u32,
    window_secs: u64,
    max_concurrent: u32,
    max_execution_ms: u64,
    retry_after_secs: u64,
}

impl Default for LimitsJson {
    fn default() -> Self {
        Self::from(&Limits::default())
    }
}

impl From<&Limits> for LimitsJson {
    fn from(l: &Limits) -> Self {
        Self {
            max_requests: l.max_requests,
            window_secs: l.window.as_secs(),
            max_concurrent: l.max_concurrent,
            max_execution_ms: u64::try_from(l.max_execution.as_millis()).unwrap_or(u64::MAX),
            retry_after_secs: l.retry_after_secs,
        }
    }
}

impl From<LimitsJson> for Limits {
    fn from(l: LimitsJson) -> Self {
        Self {
            max_requests: l.max_requests,
            window: Duration::from_secs(l.window_secs),
            max_concurrent: l.max_concurrent,
            max_execution: Duration::from_millis(l.max_execution_ms),
            retry_after_secs: l.retry_after_secs,
        }
    }
}

/// What one application user's requests were counted as, for benches and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserUsage {
    /// API calls that passed auth (a `$batch` is one).
    pub http_requests: u64,
    /// Requests as Dataverse counts them toward the limit: accepted calls, each request inside
    /// a `$batch` one.
    pub requests: u64,
    /// Calls answered 429 (service protection, or an injected 429).
    pub throttled: u64,
    /// The most calls in flight at once.
    pub peak_in_flight: u32,
}

/// Every user's usage, by client id (`GET /_sim/usage`).
pub type Usage = std::collections::BTreeMap<String, UserUsage>;

/// One application user's windows.
#[derive(Debug, Default)]
struct Window {
    /// When each request of the window was accepted.
    accepted: VecDeque<Instant>,
    /// When each request of the window ended, and how long it ran.
    executed: VecDeque<(Instant, Duration)>,
    in_flight: u32,
    usage: UserUsage,
}

impl Window {
    fn prune(&mut self, now: Instant, window: Duration) {
        while self
            .accepted
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.accepted.pop_front();
        }
        while self
            .executed
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > window)
        {
            self.executed.pop_front();
        }
    }

    fn executed_total(&self) -> Duration {
        self.executed.iter().map(|(_, d)| *d).sum()
    }
}

/// The limits and what has been counted against them, per application user (the token's client
/// id), as Dataverse counts them.
#[derive(Debug)]
pub(super) struct Protection {
    pub limits: Limits,
    users: std::collections::HashMap<String, Window>,
    /// The most requests in flight at once over all users.
    pub peak_in_flight: u32,
}

/// The rate-limit headers of one answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Remaining {
    /// `x-ms-ratelimit-burst-remaining-xrm-requests`
    pub burst: usize,
    /// `x-ms-ratelimit-time-remaining-xrm-requests` (ms)
    pub time_ms: u64,
}

impl Protection {
    pub(super) fn new(limits: Limits) -> Self {
        Self {
            limits,
            users: std::collections::HashMap::new(),
            peak_in_flight: 0,
        }
    }

    fn user(&mut self, client: &str) -> &mut Window {
        self.users.entry(client.to_owned()).or_default()
    }

    /// Counts `count` more accepted requests of `client` (those inside a `$batch` beyond the
    /// batch itself).
    pub(super) fn accept_more(&mut self, client: &str, count: usize) {
        let now = Instant::now();
        let user = self.user(client);
        for _ in 0..count {
            user.accepted.push_back(now);
        }
        user.usage.requests += count as u64;
    }

    /// A 429 answered to `client` (by the limits or injected).
    pub(super) fn count_throttled(&mut self, client: &str) {
        self.user(client).usage.throttled += 1;
    }

    /// What `client` has left in the window now.
    pub(super) fn remaining(&mut self, client: &str) -> Remaining {
        let limits = self.limits.clone();
        let user = self.user(client);
        user.prune(Instant::now(), limits.window);
        Remaining {
            burst: (limits.max_requests as usize).saturating_sub(user.accepted.len()),
            time_ms: u64::try_from(
                limits
                    .max_execution
                    .saturating_sub(user.executed_total())
                    .as_millis(),
            )
            .unwrap_or(u64::MAX),
        }
    }

    /// Requests in flight now, over all users.
    pub(super) fn in_flight(&self) -> u32 {
        self.users.values().map(|u| u.in_flight).sum()
    }

    pub(super) fn usage(&self) -> Usage {
        self.users
            .iter()
            .map(|(client, w)| (client.clone(), w.usage.clone()))
            .collect()
    }

    /// Forgets the usage counts (not the windows).
    pub(super) fn reset_usage(&mut self) {
        for window in self.users.values_mut() {
            window.usage = UserUsage::default();
        }
        self.peak_in_flight = 0;
    }
}

/// An accepted request in flight; dropping it ends it and books its execution time.
pub(super) struct InFlight {
    sim: DataverseSim,
    client: String,
    started: Instant,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut inner = self.sim.lock();
        let user = inner.protection.user(&self.client);
        user.in_flight = user.in_flight.saturating_sub(1);
        let elapsed = self.started.elapsed();
        user.executed.push_back((Instant::now(), elapsed));
    }
}

impl DataverseSim {
    /// Service-protection admission of a call of `client`: concurrency, then request count,
    /// then execution time, each per user over the sliding window.
    pub(super) fn admit(&self, client: &str) -> Result<InFlight, DvError> {
        let mut inner = self.lock();
        let protection = &mut inner.protection;
        let now = Instant::now();
        let limits = protection.limits.clone();
        let user = protection.user(client);
        user.prune(now, limits.window);
        user.usage.http_requests += 1;
        let throttled = |code: &'static str, decimal: i64, message: String| {
            tracing::debug!(event = "dataverse_sim_throttled", code, decimal);
            let mut error = DvError::new(StatusCode::TOO_MANY_REQUESTS, code, message);
            error.retry_after = Some(limits.retry_after_secs);
            error
        };
        if user.in_flight >= limits.max_concurrent {
            return Err(throttled(
                CODE_CONCURRENCY_LIMIT,
                DECIMAL_CONCURRENCY_LIMIT,
                format!(
                    "Number of concurrent requests exceeded the limit of {}.",
                    limits.max_concurrent
                ),
            ));
        }
        if user.accepted.len() >= limits.max_requests as usize {
            return Err(throttled(
                CODE_REQUESTS_LIMIT,
                DECIMAL_REQUESTS_LIMIT,
                format!(
                    "Number of requests exceeded the limit of {} over time window of {} seconds.",
                    limits.max_requests,
                    limits.window.as_secs()
                ),
            ));
        }
        if user.executed_total() > limits.max_execution {
            return Err(throttled(
                CODE_EXECUTION_LIMIT,
                DECIMAL_EXECUTION_LIMIT,
                format!(
                    "Combined execution time of incoming requests exceeded limit of {} milliseconds over time window of {} seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later.",
                    limits.max_execution.as_millis(),
                    limits.window.as_secs()
                ),
            ));
        }
        user.accepted.push_back(now);
        user.usage.requests += 1;
        user.in_flight += 1;
        user.usage.peak_in_flight = user.usage.peak_in_flight.max(user.in_flight);
        let total = protection.in_flight();
        protection.peak_in_flight = protection.peak_in_flight.max(total);
        Ok(InFlight {
            sim: self.clone(),
            client: client.to_owned(),
            started: now,
        })
    }

    /// The fault to answer instead of the request, if one is due.
    pub(super) fn injected_fault(&self) -> Option<DvError> {
        let mut inner = self.lock();
        let retry_after = inner.controls.faults.retry_after_secs;
        match faults::next_scripted(&mut inner.controls.faults.fail_next) {
            Scripted::Serve => return None,
            Scripted::Fail(status) => {
                tracing::debug!(event = "dataverse_sim_fault", kind = "fail_next", status);
                return Some(DvError::simulated(status, retry_after));
            }
            Scripted::Nothing => {}
        }
        let rate = inner.controls.faults.error_rate;
        let status = faults::server_error(&mut inner.fault_rng, rate)?;
        tracing::debug!(event = "dataverse_sim_fault", kind = "error", status);
        Some(DvError::simulated(status, retry_after))
    }
}
