//! Delegated tokens: the refresh-token grant (the refresh token rotates on every use), the device
//! code flow, and the bearer check of the API routes.

use hunter_core::secret::Secret;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use serde::{Deserialize, Serialize};
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
    user_code: String,
    decision: Decision,
}

/// What the person at the verification page did with a device code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Nothing yet: polls answer `authorization_pending` (unless auto-approved).
    Pending,
    Approved,
    /// Declined: the next poll answers `authorization_declined`.
    Denied,
}

/// How the simulated person answers device code sign-ins (`GET|PUT /_sim/device`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceFlow {
    /// A code is approved by itself once polled this many times (pending until then); `null`:
    /// only `POST /_sim/device/approve` approves. Default 1 (the first poll is pending).
    pub auto_approve_after_polls: Option<u32>,
    /// The next this many polls answer `slow_down`.
    pub slow_down_next: u32,
}

impl Default for DeviceFlow {
    fn default() -> Self {
        Self {
            auto_approve_after_polls: Some(1),
            slow_down_next: 0,
        }
    }
}

/// A device code waiting for its sign-in, as `GET /_sim/device` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingSignIn {
    pub user_code: String,
    pub polls: u32,
    pub decision: Decision,
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
                if inner.device_flow.slow_down_next > 0 {
                    inner.device_flow.slow_down_next -= 1;
                    return Err(OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "slow_down",
                        70_016,
                        "AADSTS70016: OAuth 2.0 device flow error. Polling too often: slow down.",
                    ));
                }
                let auto_after = inner.device_flow.auto_approve_after_polls;
                let Some(state) = inner.device_codes.get_mut(code) else {
                    return Err(OAuthError::invalid_request(
                        70_000,
                        "AADSTS70000: The device code is gone.",
                    ));
                };
                state.polls += 1;
                if state.decision == Decision::Pending
                    && auto_after.is_some_and(|after| state.polls > after)
                {
                    state.decision = Decision::Approved;
                }
                match state.decision {
                    Decision::Pending => {
                        return Err(OAuthError::new(
                            StatusCode::BAD_REQUEST,
                            "authorization_pending",
                            70_016,
                            "AADSTS70016: OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                        ));
                    }
                    Decision::Denied => {
                        inner.device_codes.remove(code);
                        return Err(OAuthError::new(
                            StatusCode::BAD_REQUEST,
                            "authorization_declined",
                            70_000,
                            "AADSTS70000: The user declined the sign-in.",
                        ));
                    }
                    Decision::Approved => {
                        inner.device_codes.remove(code);
                    }
                }
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

    /// Starts the device code flow; polls are pending until the code is approved (by itself
    /// after [`DeviceFlow::auto_approve_after_polls`], or with `POST /_sim/device/approve`).
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
                user_code: user_code.clone(),
                decision: Decision::Pending,
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

impl PartnerCenterSim {
    /// How device code sign-ins are answered.
    pub fn device_flow(&self) -> DeviceFlow {
        self.lock().device_flow.clone()
    }

    /// Replaces how device code sign-ins are answered.
    pub fn set_device_flow(&self, flow: DeviceFlow) {
        tracing::info!(event = "partner_center_sim_device_flow_set", flow = ?flow);
        self.lock().device_flow = flow;
    }

    /// The device codes not redeemed yet, oldest first.
    pub fn pending_sign_ins(&self) -> Vec<PendingSignIn> {
        let inner = self.lock();
        let mut codes: Vec<&DeviceCode> = inner.device_codes.values().collect();
        codes.sort_by_key(|c| c.issued);
        codes
            .into_iter()
            .map(|c| PendingSignIn {
                user_code: c.user_code.clone(),
                polls: c.polls,
                decision: c.decision,
            })
            .collect()
    }

    /// The person approves (or declines) the pending sign-in of `user_code`, or every pending
    /// one when `None`; how many were decided.
    pub fn decide_sign_ins(&self, user_code: Option<&str>, decision: Decision) -> usize {
        let mut inner = self.lock();
        let mut decided = 0;
        for code in inner.device_codes.values_mut() {
            let wanted = user_code.is_none_or(|u| u.eq_ignore_ascii_case(&code.user_code));
            if wanted && code.decision == Decision::Pending {
                code.decision = decision;
                decided += 1;
            }
        }
        tracing::info!(event = "partner_center_sim_sign_ins_decided", decision = ?decision, decided);
        decided
    }
}
