//! The Partner Center Referrals API client: delegated tokens with a rotating refresh token,
//! OData queries, `@odata.nextLink` paging followed verbatim, retries that honour `Retry-After`.

mod auth;
mod client;
pub mod device_code;
mod error;
mod query;

pub use auth::{
    PartnerCenterAuth, RefreshTokenStore, SCOPE, StoredRefreshToken, TokenVersion,
    replace_refresh_token,
};
pub use client::PartnerCenterClient;
pub use error::PartnerCenterError;
