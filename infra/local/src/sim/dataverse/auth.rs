//! Access tokens: the client-credentials grant of the token endpoint and the bearer check of the
//! Web API routes.

use std::collections::HashMap;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::DataverseSim;
use super::api::DvError;
use crate::sim::oauth::{OAuthError, TokenRefusal};

impl DataverseSim {
    /// The request's bearer token is one issued and not expired; the client id it was issued to.
    pub(super) fn check_auth(&self, headers: &HeaderMap) -> Result<String, DvError> {
        let inner = self.lock();
        let checked = inner.controls.access_tokens.check(headers).map(|()| {
            let token = headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().split_once(' '))
                .map(|(_, token)| token.trim())
                .unwrap_or_default();
            inner
                .token_clients
                .get(token)
                .cloned()
                .unwrap_or_else(|| inner.primary_client.clone())
        });
        drop(inner);
        checked.map_err(|refusal| {
            let message = match refusal {
                TokenRefusal::Missing | TokenRefusal::NotBearer => {
                    "The Authorization header with a Bearer token is required."
                }
                TokenRefusal::Expired => "The access token has expired.",
                TokenRefusal::Unknown => "The access token is not valid.",
            };
            DvError::new(StatusCode::UNAUTHORIZED, "", message)
        })
    }

    /// The client-credentials grant: a configured client (application user), its secret, scope
    /// `{org URL}/.default`.
    pub(super) fn token_grant(&self, form: &HashMap<String, String>) -> Result<Value, OAuthError> {
        let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
        let grant_type = field("grant_type");
        if grant_type != "client_credentials" {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70_003,
                format!("AADSTS70003: The app requested an unsupported grant type '{grant_type}'."),
            ));
        }
        let mut inner = self.lock();
        let client_id = field("client_id");
        let Some(secret) = inner
            .clients
            .get(client_id)
            .filter(|_| !client_id.is_empty())
        else {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                700_016,
                format!(
                    "AADSTS700016: Application with identifier '{client_id}' was not found in the directory."
                ),
            ));
        };
        if field("client_secret") != secret.expose() {
            return Err(OAuthError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7_000_215,
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
            ));
        }
        let scope = field("scope");
        let resource = scope
            .strip_suffix("/.default")
            .map(|r| r.trim_end_matches('/'));
        let scope_ok = match (resource, &inner.base_url) {
            (Some(resource), Some(base)) => resource.eq_ignore_ascii_case(base),
            (Some(resource), None) => !resource.is_empty(),
            (None, _) => false,
        };
        if !scope_ok {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                70_011,
                format!(
                    "AADSTS70011: The provided value for the input parameter 'scope' is not valid. The scope '{scope}' is not valid (expected '<organization URL>/.default')."
                ),
            ));
        }
        let token = inner.issue_access_token(client_id);
        let ttl = inner.controls.access_tokens.ttl();
        drop(inner);
        tracing::info!(
            event = "dataverse_sim_token_issued",
            client_id,
            expires_in = ttl.as_secs()
        );
        Ok(json!({
            "token_type": "Bearer",
            "expires_in": ttl.as_secs(),
            "ext_expires_in": ttl.as_secs(),
            "access_token": token,
        }))
    }
}
