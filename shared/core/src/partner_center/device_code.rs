//! The OAuth 2.0 device authorization grant (RFC 8628) of Entra ID: how a person signs Hunter in
//! to Partner Center once (`hunter-local sign-in`), which yields the first refresh token.
//!
//! `POST {tenant}/oauth2/v2.0/devicecode` (client_id, scope) answers a user code and a URL to
//! show; then the token endpoint is polled with
//! `grant_type=urn:ietf:params:oauth:grant-type:device_code` every `interval` seconds until the
//! person approved (tokens), declined (`access_denied`) or the code expired (`expired_token`);
//! `authorization_pending` means "ask again", `slow_down` "ask again, 5 s later".

use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::auth::SCOPE;
use crate::secret::Secret;

/// The grant type of the polls.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// A sign-in that did not end with tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    /// The person declined (`access_denied`).
    #[error("the sign-in was declined (access_denied): {0}")]
    Declined(String),
    /// Nobody approved before the code expired (`expired_token`).
    #[error("the device code expired before the sign-in was approved: {0}")]
    Expired(String),
    /// Any other refusal (a wrong client id, a tenant that does not allow the flow, ...).
    #[error("the token endpoint refused the sign-in ({code}): {message}")]
    Refused { code: String, message: String },
    /// No answer.
    #[error("the token endpoint is unreachable: {0}")]
    Transport(String),
    /// An answer outside the protocol.
    #[error("unreadable answer from the token endpoint: {0}")]
    InvalidResponse(String),
    /// The configuration cannot work (no client id, a token URL without `/token`).
    #[error("{0}")]
    Config(String),
}

/// What the person must do: open `verification_uri` and enter `user_code`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceCode {
    pub device_code: Secret,
    pub user_code: String,
    pub verification_uri: String,
    /// Entra's sentence saying both, for the terminal.
    pub message: String,
    pub expires_in: Duration,
    pub interval: Duration,
}

/// The tokens of an approved sign-in.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedIn {
    pub refresh_token: Secret,
    pub access_token: Secret,
}

/// One poll's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Poll {
    /// Not approved yet (`authorization_pending`).
    Pending,
    /// Polled too often (`slow_down`): wait 5 s longer from now on.
    SlowDown,
    Approved(SignedIn),
}

/// The device code flow against one token endpoint with the app's credentials.
#[derive(Clone)]
pub struct DeviceCodeFlow {
    http: reqwest::Client,
    device_code_url: String,
    token_url: String,
    client_id: String,
    client_secret: Secret,
}

impl std::fmt::Debug for DeviceCodeFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCodeFlow")
            .field("device_code_url", &self.device_code_url)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The device authorization URL next to a token URL: `.../oauth2/v2.0/token` →
/// `.../oauth2/v2.0/devicecode`.
pub fn device_code_url(token_url: &str) -> Option<String> {
    let trimmed = token_url.trim_end_matches('/');
    trimmed
        .strip_suffix("/token")
        .map(|base| format!("{base}/devicecode"))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(u64),
    Text(String),
}

impl Seconds {
    fn get(&self) -> Option<u64> {
        match self {
            Self::Number(n) => Some(*n),
            Self::Text(t) => t.trim().parse().ok(),
        }
    }
}

#[derive(Deserialize)]
struct DeviceCodeAnswer {
    device_code: String,
    user_code: String,
    #[serde(alias = "verification_url")]
    verification_uri: String,
    #[serde(default)]
    message: Option<String>,
    expires_in: Seconds,
    #[serde(default)]
    interval: Option<Seconds>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Secret,
    #[serde(default)]
    refresh_token: Option<Secret>,
}

#[derive(Deserialize, Default)]
struct OAuthError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

/// Polls are at least this far apart, whatever the endpoint says.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Added to the interval on `slow_down` (RFC 8628 §3.5).
const SLOW_DOWN: Duration = Duration::from_secs(5);

impl DeviceCodeFlow {
    /// The flow of `token_url` (its device authorization URL derived from it) for `client_id`;
    /// `client_secret` is sent when not empty (a confidential app, as for the refresh grant).
    pub fn new(
        http: reqwest::Client,
        token_url: &str,
        client_id: &str,
        client_secret: Secret,
    ) -> Result<Self, SignInError> {
        if client_id.trim().is_empty() {
            return Err(SignInError::Config(
                "no Partner Center app: set HUNTER_PC_CLIENT_ID".to_owned(),
            ));
        }
        let device_code_url = device_code_url(token_url).ok_or_else(|| {
            SignInError::Config(format!(
                "the token URL {token_url} does not end in /token: no device code endpoint next to it"
            ))
        })?;
        Ok(Self {
            http,
            device_code_url,
            token_url: token_url.to_owned(),
            client_id: client_id.to_owned(),
            client_secret,
        })
    }

    /// Asks for a device code and the user code to show.
    pub async fn start(&self) -> Result<DeviceCode, SignInError> {
        let form = [("client_id", self.client_id.as_str()), ("scope", SCOPE)];
        let (status, body) = self.post(&self.device_code_url, &form).await?;
        if !status.is_success() {
            let error: OAuthError = serde_json::from_str(&body).unwrap_or_default();
            return Err(SignInError::Refused {
                code: if error.error.is_empty() {
                    format!("HTTP {}", status.as_u16())
                } else {
                    error.error
                },
                message: error.error_description,
            });
        }
        let answer: DeviceCodeAnswer = serde_json::from_str(&body)
            .map_err(|e| SignInError::InvalidResponse(format!("device code answer: {e}")))?;
        let expires_in = answer.expires_in.get().unwrap_or(900);
        let interval = answer.interval.as_ref().and_then(Seconds::get).unwrap_or(5);
        let message = answer.message.unwrap_or_else(|| {
            format!(
                "To sign in, use a web browser to open the page {} and enter the code {} to authenticate.",
                answer.verification_uri, answer.user_code
            )
        });
        Ok(DeviceCode {
            device_code: Secret::new(answer.device_code),
            user_code: answer.user_code,
            verification_uri: answer.verification_uri,
            message,
            expires_in: Duration::from_secs(expires_in),
            interval: Duration::from_secs(interval).max(MIN_INTERVAL),
        })
    }

    /// Asks the token endpoint once whether `code` was approved.
    pub async fn poll(&self, code: &DeviceCode) -> Result<Poll, SignInError> {
        let mut form = vec![
            ("grant_type", DEVICE_CODE_GRANT),
            ("client_id", self.client_id.as_str()),
            ("device_code", code.device_code.expose()),
        ];
        if !self.client_secret.is_empty() {
            form.push(("client_secret", self.client_secret.expose()));
        }
        let (status, body) = self.post(&self.token_url, &form).await?;
        if status.is_success() {
            let answer: TokenAnswer = serde_json::from_str(&body)
                .map_err(|e| SignInError::InvalidResponse(format!("token answer: {e}")))?;
            let refresh_token =
                answer
                    .refresh_token
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        SignInError::InvalidResponse(
                            "the tokens came without a refresh token (is offline_access allowed?)"
                                .to_owned(),
                        )
                    })?;
            return Ok(Poll::Approved(SignedIn {
                refresh_token,
                access_token: answer.access_token,
            }));
        }
        let error: OAuthError = serde_json::from_str(&body).unwrap_or_default();
        match error.error.as_str() {
            "authorization_pending" => Ok(Poll::Pending),
            "slow_down" => Ok(Poll::SlowDown),
            "access_denied" | "authorization_declined" => {
                Err(SignInError::Declined(error.error_description))
            }
            "expired_token" | "code_expired" => Err(SignInError::Expired(error.error_description)),
            "" if status.is_server_error() || status.as_u16() == 429 => {
                // A passing failure: polling again is what the protocol does anyway.
                tracing::warn!(
                    event = "partner_center_sign_in_poll_failed",
                    status = status.as_u16()
                );
                Ok(Poll::Pending)
            }
            _ => Err(SignInError::Refused {
                code: if error.error.is_empty() {
                    format!("HTTP {}", status.as_u16())
                } else {
                    error.error
                },
                message: error.error_description,
            }),
        }
    }

    /// Polls every `interval` (5 s longer after each `slow_down`) until the sign-in ends or the
    /// code expires.
    pub async fn wait(&self, code: &DeviceCode) -> Result<SignedIn, SignInError> {
        let expires = Instant::now() + code.expires_in;
        let mut interval = code.interval;
        loop {
            tokio::time::sleep(interval).await;
            match self.poll(code).await? {
                Poll::Approved(signed_in) => return Ok(signed_in),
                Poll::SlowDown => interval += SLOW_DOWN,
                Poll::Pending => {}
            }
            if Instant::now() + interval > expires {
                return Err(SignInError::Expired(
                    "nobody approved the sign-in in time".to_owned(),
                ));
            }
        }
    }

    async fn post(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<(reqwest::StatusCode, String), SignInError> {
        let transport = |e: reqwest::Error| SignInError::Transport(format!("{url}: {e}"));
        let response = self
            .http
            .post(url)
            .form(form)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let body = response.text().await.map_err(transport)?;
        Ok((status, body))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn when_a_token_url_is_given_should_find_the_device_code_url_next_to_it() {
        assert_eq!(
            device_code_url("https://login.microsoftonline.com/contoso/oauth2/v2.0/token")
                .as_deref(),
            Some("https://login.microsoftonline.com/contoso/oauth2/v2.0/devicecode")
        );
        assert_eq!(
            device_code_url("http://127.0.0.1:9/t/oauth2/v2.0/token/").as_deref(),
            Some("http://127.0.0.1:9/t/oauth2/v2.0/devicecode")
        );
        assert_eq!(device_code_url("http://127.0.0.1:9/t/authorize"), None);
    }

    #[test]
    fn when_no_client_id_is_configured_should_say_which_variable() {
        let err = DeviceCodeFlow::new(
            reqwest::Client::new(),
            "http://127.0.0.1:9/t/oauth2/v2.0/token",
            " ",
            Secret::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("HUNTER_PC_CLIENT_ID"), "{err}");
    }
}
