//! The Partner Center Referrals API client: delegated tokens with a rotating refresh token,
//! OData queries, `@odata.nextLink` paging followed verbatim, retries that honour `Retry-After`.

mod auth;
mod client;
mod error;
mod query;

pub use auth::{
    PartnerCenterAuth, REFRESH_TOKEN_STATE_KEY, RefreshTokenStore, StateRefreshTokenStore,
};
pub use client::PartnerCenterClient;
pub use error::PartnerCenterError;
