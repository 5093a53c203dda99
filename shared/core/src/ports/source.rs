//! Where referrals come from (Partner Center), and writing Hunter's result back onto them.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use tokio::time::Instant;

/// Which referrals a sync asks for. Empty lists mean "all".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReferralFilter {
    /// e.g. `["Incoming"]`.
    pub directions: Vec<String>,
    /// e.g. `["New", "Active"]`.
    pub statuses: Vec<String>,
    /// Only referrals updated at or after this instant (the sync watermark).
    pub updated_since: Option<DateTime<Utc>>,
    /// The page size asked for (the source's own page size wins).
    pub page_size: usize,
}

/// One page of referrals, each kept as the raw JSON the source sent.
#[derive(Debug, Clone)]
pub struct ReferralPage {
    /// Each referral as the text Partner Center sent it.
    pub referrals: Vec<Box<RawValue>>,
    /// Where the next page is (`@odata.nextLink`, verbatim); `None` on the last page.
    pub next_link: Option<String>,
    /// The source's id of the answer, for its support.
    pub request_id: Option<String>,
}

/// Where referrals come from, page by page (Partner Center).
#[async_trait]
pub trait ReferralSource: Send + Sync {
    /// The first page of what `filter` selects; retries give up before `deadline`.
    async fn first_page(
        &self,
        filter: &ReferralFilter,
        deadline: Option<Instant>,
    ) -> Result<ReferralPage, SourceError>;
    /// The page at a `@odata.nextLink`.
    async fn next_page(
        &self,
        next_link: &str,
        deadline: Option<Instant>,
    ) -> Result<ReferralPage, SourceError>;
}

/// One referral by its id (a webhook event names it).
#[async_trait]
pub trait ReferralLookup: Send + Sync {
    /// The referral as the source sends it; `None` when the source has none with that id.
    async fn referral(&self, id: &str) -> Result<Option<Box<RawValue>>, SourceError>;
}

/// Writes Hunter's result back onto the referral in Partner Center.
#[async_trait]
pub trait ReferralWriteBack: Send + Sync {
    /// Sets the referral's `externalReferenceId` (the CRM record id), as Microsoft's own CRM
    /// connector does; `etag` makes it conditional (`If-Match`, 412 when the referral changed).
    async fn set_external_reference(
        &self,
        referral_id: &str,
        etag: Option<&str>,
        reference: &str,
    ) -> Result<(), SourceError>;

    /// Closes the referral with `substatus` (`Won`, `Lost`): a JSON Patch of `status` and
    /// `substatus`, conditional on `etag` (`If-Match`; a changed referral is
    /// [`SourceError::Conflict`]).
    async fn close_referral(
        &self,
        referral_id: &str,
        etag: Option<&str>,
        substatus: &str,
    ) -> Result<(), SourceError>;
}

/// A failed call to the referral source, after the client's own retries.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// The credentials were refused: someone must sign in again or fix the app registration.
    #[error("{0}")]
    Unauthorized(String),
    /// The refresh token was refused (revoked, expired): someone must sign in again
    /// (`hunter-local sign-in`). The text starts with [`SIGN_IN_REQUIRED`], which is how a
    /// failed sync run's error is recognized later ([`is_sign_in_required`]).
    #[error("sign-in required: {0}")]
    SignInRequired(String),
    /// Throttling, a server error or the network; a later attempt may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// A request or answer outside the contract; retrying will not help.
    #[error("{0}")]
    Invalid(String),
    /// A conditional write found the resource changed since it was read (HTTP 412).
    #[error("{0}")]
    Conflict(String),
    /// Waiting for the next retry would pass the caller's deadline.
    #[error("deadline reached before the referral source answered (next retry in {0:?})")]
    Deadline(Duration),
}

impl SourceError {
    /// Whether the same call may succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Deadline(_))
    }
}

/// How the error of a sync run that failed with [`SourceError::SignInRequired`] begins.
pub const SIGN_IN_REQUIRED: &str = "sign-in required:";

/// Whether a sync run's `error` says that someone must sign in to Partner Center again.
pub fn is_sign_in_required(run_error: &str) -> bool {
    run_error.starts_with(SIGN_IN_REQUIRED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_the_refresh_token_is_refused_should_name_sign_in_and_not_retry() {
        let err = SourceError::SignInRequired("Partner Center refused the refresh token".into());
        assert!(!err.is_retryable());
        assert!(is_sign_in_required(&err.to_string()), "{err}");
        assert!(!is_sign_in_required(
            &SourceError::Unauthorized("HTTP 401".into()).to_string()
        ));
    }
}
