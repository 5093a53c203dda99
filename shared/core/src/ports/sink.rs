//! Where leads go: the CRM (Dynamics 365), upserted by Hunter's key.

use std::time::Duration;

use async_trait::async_trait;
use hunter_domain::crm::OpportunityRecords;
use serde_json::{Map, Value};

/// What a push did in the CRM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedLead {
    /// The CRM's record id.
    pub id: String,
    pub created: bool,
    /// A record made by hand for the domain was taken over (keyed) instead of creating another.
    pub adopted: bool,
}

/// One lead to upsert: its key, domain, mapped columns, and whether to adopt a hand-made record.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadUpsert {
    pub key: String,
    pub domain: String,
    pub record: Map<String, Value>,
    /// The lead's first push: look for a record people made by hand before creating one.
    pub adopt: bool,
}

/// Where leads go: upsert by Hunter's key, idempotent.
#[async_trait]
pub trait LeadSink: Send + Sync {
    /// Upserts `lead.record` under `lead.key`. On a lead's first push (`adopt`), a record people
    /// made by hand for its domain is keyed and updated instead of creating a duplicate.
    async fn upsert_lead(&self, lead: &LeadUpsert) -> Result<PushedLead, SinkError>;

    /// Upserts many leads; one result per lead, in order. The default pushes them one by one.
    async fn upsert_leads(&self, leads: &[LeadUpsert]) -> Vec<Result<PushedLead, SinkError>> {
        let mut results = Vec::with_capacity(leads.len());
        for lead in leads {
            results.push(self.upsert_lead(lead).await);
        }
        results
    }

    /// Upserts an accepted referral as account (by domain), contact (by e-mail, when known) and
    /// opportunity (by referral id), linked, in one change set; returns the opportunity id.
    async fn upsert_opportunity(
        &self,
        opportunity: &OpportunityRecords,
    ) -> Result<String, SinkError>;

    /// How many pushes may run at once.
    fn concurrency(&self) -> usize {
        1
    }
}

/// A push the CRM did not take, after the client's own retries.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SinkError {
    /// The record breaks a rule of the CRM (a column too long, a duplicate): the data must change.
    #[error("{0}")]
    Rejected(String),
    /// The CRM refused Hunter's credentials or privileges: someone must fix the configuration.
    #[error("{0}")]
    Unauthorized(String),
    /// A request or answer outside the CRM's contract; retrying will not help.
    #[error("{0}")]
    Invalid(String),
    /// Throttling, a server error or the network; try again, after `retry_after` if the CRM named it.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Option<Duration>,
    },
}

impl SinkError {
    /// Whether the same push may succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// How long the CRM asked to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
