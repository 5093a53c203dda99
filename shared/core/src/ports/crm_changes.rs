//! What changed in the CRM for Hunter's leads since the last pull.

use async_trait::async_trait;
use hunter_domain::crm::CrmChange;

/// The changes of one pull and where the next one starts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CrmChanges {
    /// Changes of records Hunter keyed, merged per lead.
    pub changes: Vec<CrmChange>,
    /// Changed records without Hunter's key (made by hand, not Hunter's).
    pub not_hunters: usize,
    /// Records deleted in the CRM, by record id (the CRM names no key for them).
    pub deleted: Vec<String>,
    /// Where the next pull starts (opaque; kept in the store between pulls).
    pub cursor: String,
}

/// Reads what sellers changed in the CRM (status, owner, the opportunity a lead became).
#[async_trait]
pub trait CrmChangeSource: Send + Sync {
    /// The changes since `cursor`, or every record of Hunter's when `cursor` is `None` (the
    /// first pull, or after [`CrmPullError::CursorExpired`]).
    async fn changes_since(&self, cursor: Option<&str>) -> Result<CrmChanges, CrmPullError>;
}

/// A pull the CRM did not answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CrmPullError {
    /// The CRM no longer knows the cursor (change tracking expired it): read everything again.
    #[error("the CRM expired the change-tracking cursor: {0}")]
    CursorExpired(String),
    /// Throttling, a server error or the network; the next pull tries again from the same cursor.
    #[error("{0}")]
    Unavailable(String),
    /// Credentials, privileges or an answer outside the contract: someone must look.
    #[error("{0}")]
    Failed(String),
}

impl CrmPullError {
    /// Whether the same pull may succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::CursorExpired(_))
    }
}
