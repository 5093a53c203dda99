//! Typed port errors. Each says whether retrying may help.

/// A failure of a store adapter.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost: the stored item changed (or exists) since it was read.
    #[error("conditional write failed: {0}")]
    Conflict(String),
    /// A pagination cursor that this store did not issue.
    #[error("invalid cursor")]
    InvalidCursor,
    /// An item that cannot be (de)serialized; retrying will not help.
    #[error("invalid item: {0}")]
    InvalidItem(String),
    /// Throttling, network or service failure; retrying may help.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Conflict(_))
    }
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
