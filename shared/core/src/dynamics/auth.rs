//! Client-credentials access tokens for one Dataverse organization.

use async_trait::async_trait;

use super::client::NAMES;
use super::error::DataverseError;
use crate::http::{IssuedToken, TokenEndpoint, TokenSource};

/// Issues Dataverse access tokens with the client-credentials grant (the app is an application
/// user of the organization); the client caches them ([`crate::http::TokenCache`]).
#[derive(Debug)]
pub struct DataverseAuth {
    endpoint: TokenEndpoint,
    scope: String,
}

impl DataverseAuth {
    /// Tokens from `endpoint` (`https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`)
    /// for the organization at `org_url` (scope `{org_url}/.default`).
    pub fn new(endpoint: TokenEndpoint, org_url: &str) -> Self {
        Self {
            endpoint,
            scope: format!("{}/.default", org_url.trim_end_matches('/')),
        }
    }

    /// The application user's client id (not a secret).
    pub fn client_id(&self) -> &str {
        &self.endpoint.client_id
    }
}

#[async_trait]
impl TokenSource for DataverseAuth {
    async fn issue(&self) -> Result<IssuedToken, DataverseError> {
        let grant = [("grant_type", "client_credentials"), ("scope", &self.scope)];
        self.endpoint.request(&NAMES, &grant).await
    }
}
