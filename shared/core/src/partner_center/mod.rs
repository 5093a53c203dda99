//! The Partner Center Referrals API client: delegated tokens with a rotating refresh token,
//! OData queries, `@odata.nextLink` paging followed verbatim, retries that honour `Retry-After`.

mod auth;
mod client;
pub mod device_code;
mod error;
mod query;
pub mod webhook;

pub use auth::{
    PartnerCenterAuth, RefreshTokenStore, SCOPE, StoredRefreshToken, TokenVersion, WEBHOOKS_SCOPE,
    replace_refresh_token,
};
pub use client::{PartnerCenterClient, WebhookRegistration, WebhookRegistrations};
pub use error::PartnerCenterError;
