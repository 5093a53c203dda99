//! Client-credentials access tokens for one Dataverse organization.

use async_trait::async_trait;

use super::client::NAMES;
use super::error::DataverseError;
use crate::http::{IssuedToken, TokenSource, request_token};
use crate::secret::Secret;

/// Issues Dataverse access tokens with the client-credentials grant (the app is an application
/// user of the organization); the client caches them ([`crate::http::TokenCache`]).
pub struct DataverseAuth {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: Secret,
    scope: String,
}

impl std::fmt::Debug for DataverseAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataverseAuth")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
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
            http,
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret,
            scope: format!("{}/.default", org_url.trim_end_matches('/')),
        }
    }
}

#[async_trait]
impl TokenSource for DataverseAuth {
    async fn issue(&self) -> Result<IssuedToken, DataverseError> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("scope", self.scope.as_str()),
        ];
        request_token(&self.http, &NAMES, &self.token_url, &form).await
    }
}
