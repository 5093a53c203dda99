//! Starting a sync outside the schedule.

use async_trait::async_trait;

/// Starts a Partner Center sync outside the schedule: hunter-local wakes its sync loop, on AWS
/// fetch-referrals is invoked asynchronously.
#[async_trait]
pub trait SyncTrigger: Send + Sync {
    /// Asks for a sync: a new run named `run_id`, or with `None` the run in progress (resumed
    /// from its continuation, else a new run with an id of its own); returns once the request
    /// was accepted.
    async fn request_sync(&self, run_id: Option<&str>) -> Result<(), TriggerError>;
}

/// A sync that could not be requested.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// A requested sync is already waiting to start.
    #[error("a sync is already waiting to start")]
    Busy,
    /// The trigger is misconfigured (no such function, no permission); retrying will not help.
    #[error("sync trigger misconfigured: {0}")]
    Invalid(String),
    /// Throttling, network or service failure; retrying may help.
    #[error("sync trigger unavailable: {0}")]
    Unavailable(String),
}

impl TriggerError {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Busy | Self::Unavailable(_))
    }
}
