//! Delegated tokens: the refresh-token grant (the refresh token rotates on every use), the device
//! code flow, and the bearer check of the API routes.

use hunter_core::secret::Secret;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use serde_json::{Value, json};

use super::PartnerCenterSim;
use super::error::ApiError;
use crate::sim::faults::{self, Scripted};
use crate::sim::oauth::{OAuthError, TokenRefusal};

/// Resource of the issued tokens.
const RESOURCE: &str = "https://api.partner.microsoft.com";
/// How long a device code can be redeemed.
const DEVICE_CODE_TTL: Duration = Duration::from_secs(900);

/// A device code not yet redeemed.
#[derive(Debug)]
pub(super) struct DeviceCode {
    issued: Instant,
    polls: u32,
}

impl PartnerCenterSim {
    /// The request's bearer token is one issued and not expired.
    pub(super) fn check_auth(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let checked = self.lock().controls.access_tokens.check(headers);
        let Err(refusal) = checked else {
            return Ok(());
        };
        let (inner_code, message) = match refusal {
            TokenRefusal::Missing => ("MissingToken", "The Authorization header is missing."),
            TokenRefusal::NotBearer => (
                "InvalidAuthorizationHeader",
                "The Authorization header must be 'Bearer <token>'.",
            ),
            TokenRefusal::Unknown => ("InvalidToken", "The access token is not valid."),
            TokenRefusal::Expired => ("ExpiredToken", "The access token has expired."),
        };
        Err(ApiError::unauthenticated(inner_code, message))
    }

    /// The refresh-token and device-code grants; each issues a new refresh token.
    pub(super) fn token_grant(&self, form: &HashMap<String, String>) -> Result<Value, OAuthError> {
        let mut inner = self.lock();
        if let Scripted::Fail(status) =
            faults::next_scripted(&mut inner.controls.faults.token_fail_next)
        {
            tracing::debug!(
                event = "partner_center_sim_fault",
                kind = "token_fail_next",
                status
            );
            return Err(OAuthError::simulated(
                status,
                inner.controls.faults.retry_after_secs,
            ));
        }
        if form.get("client_id").is_none_or(|c| c.trim().is_empty()) {
            return Err(OAuthError::invalid_request(
                900_144,
                "AADSTS900144: The request body must contain the following parameter: 'client_id'.",
            ));
        }
        let grant_type = form
            .get("grant_type")
            .map(String::as_str)
            .unwrap_or_default();
        match grant_type {
            "refresh_token" => {
                let presented = form
                    .get("refresh_token")
                    .map(String::as_str)
                    .unwrap_or_default();
                if presented.is_empty() {
                    return Err(OAuthError::invalid_request(
                        900_144,
                        "AADSTS900144: The request body must contain the following parameter: 'refresh_token'.",
                    ));
                }
                if presented != inner.refresh_token.expose() {
                    return Err(OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        70_000,
                        "AADSTS70000: The provided value for the 'refresh_token' is not valid: it was already used (refresh tokens rotate) or was never issued.",
                    ));
                }
            }
            "urn:ietf:params:oauth:grant-type:device_code" => {
                let code = form
                    .get("device_code")
                    .map(String::as_str)
                    .unwrap_or_default();
                let Some(state) = inner.device_codes.get_mut(code) else {
                    return Err(OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        70_000,
                        "AADSTS70000: The provided device code is not valid or was already redeemed.",
                    ));
                };
                if state.issued.elapsed() > DEVICE_CODE_TTL {
                    inner.device_codes.remove(code);
                    return Err(OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "expired_token",
                        70_020,
                        "AADSTS70020: The provided value for the input parameter 'device_code' is not valid. This device code has expired.",
                    ));
                }
                state.polls += 1;
                if state.polls == 1 {
                    return Err(OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "authorization_pending",
                        70_016,
                        "AADSTS70016: OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                    ));
                }
                inner.device_codes.remove(code);
            }
            other => {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    70_003,
                    format!("AADSTS70003: The app requested an unsupported grant type '{other}'."),
                ));
            }
        }
        let access_token = inner.issue_access_token();
        let refresh_token = inner.random_hex("sim-rt-");
        inner.refresh_token = Secret::new(refresh_token.clone());
        let ttl = inner.controls.access_tokens.ttl().as_secs();
        drop(inner);
        let now = Utc::now().timestamp();
        tracing::info!(
            event = "partner_center_sim_token_issued",
            grant_type,
            expires_in = ttl
        );
        Ok(json!({
            "token_type": "Bearer",
            "scope": format!("{RESOURCE}/user_impersonation"),
            "expires_in": ttl.to_string(),
            "ext_expires_in": ttl.to_string(),
            "expires_on": (now + i64::try_from(ttl).unwrap_or(i64::MAX / 2)).to_string(),
            "not_before": now.to_string(),
            "resource": RESOURCE,
            "access_token": access_token,
            "refresh_token": refresh_token,
        }))
    }

    /// Starts the device code flow; the first poll with the code is still pending.
    pub(super) fn start_device_code(
        &self,
        form: &HashMap<String, String>,
    ) -> Result<Value, OAuthError> {
        if form.get("client_id").is_none_or(|c| c.trim().is_empty()) {
            return Err(OAuthError::invalid_request(
                900_144,
                "AADSTS900144: The request body must contain the following parameter: 'client_id'.",
            ));
        }
        let mut inner = self.lock();
        let device_code = inner.random_hex("sim-dc-");
        let user_code: String = (0..9).map(|_| inner.id_rng.uppercase()).collect();
        inner.device_codes.insert(
            device_code.clone(),
            DeviceCode {
                issued: Instant::now(),
                polls: 0,
            },
        );
        drop(inner);
        let uri = "https://microsoft.com/devicelogin";
        Ok(json!({
            "user_code": user_code,
            "device_code": device_code,
            "verification_uri": uri,
            "expires_in": DEVICE_CODE_TTL.as_secs(),
            "interval": 1,
            "message": format!("To sign in, use a web browser to open the page {uri} and enter the code {user_code} to authenticate."),
        }))
    }
}
