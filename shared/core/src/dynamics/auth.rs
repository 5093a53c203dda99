//! Client-credentials access tokens for one Dataverse organization.

use async_trait::async_trait;

use super::client::NAMES;
use super::error::DataverseError;
use crate::http::{IssuedToken, TokenEndpoint, TokenSource};
use crate::secret::Secret;

/// Issues Dataverse access tokens with the client-credentials grant (the app is an application
/// user of the organization); the client caches them ([`crate::http::TokenCache`]).
#[derive(Debug)]
pub struct DataverseAuth {
    endpoint: TokenEndpoint,
    scope: String,
}

impl DataverseAuth {
    /// `token_url` is `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`; the scope is
    /// `{org_url}/.default`.
    pub fn new(
        http: reqwest::Client,
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Secret,
        org_url: &str,
    ) -> Self {
        Self {
            endpoint: TokenEndpoint {
                http,
                url: token_url.into(),
                client_id: client_id.into(),
                client_secret,
            },
            scope: format!("{}/.default", org_url.trim_end_matches('/')),
        }
    }
}

#[async_trait]
impl TokenSource for DataverseAuth {
    async fn issue(&self) -> Result<IssuedToken, DataverseError> {
        let grant = [("grant_type", "client_credentials"), ("scope", &self.scope)];
        self.endpoint.request(&NAMES, &grant).await
    }
}
