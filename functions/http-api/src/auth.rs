//! Who may call the API: the API token (scripts, hunter-local's UI) or, when Entra ID sign-in is
//! on, a valid access token of a signed-in person; both as `Authorization: Bearer`.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hunter_core::ports::AuthError;
use hunter_core::secret::Secret;
use subtle::ConstantTimeEq as _;

use crate::ApiState;
use crate::error::ApiError;

/// The API cannot start without a bearer token: an empty one would let anyone in.
#[derive(Debug, thiserror::Error)]
#[error(
    "HUNTER_API_TOKEN is not set (in the secret or the environment): the API refuses to run open"
)]
pub struct MissingApiToken;

/// `token`, unless it is empty.
pub fn api_token(token: Secret) -> Result<Secret, MissingApiToken> {
    if token.expose().trim().is_empty() {
        Err(MissingApiToken)
    } else {
        Ok(token)
    }
}

/// Whether `headers` carry a bearer token the API accepts.
pub(crate) async fn authorize(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .unwrap_or_default();
    let expected = state.api_token.expose();
    if token_matches(presented.as_bytes(), expected.as_bytes()) {
        return Ok(());
    }
    let Some(verifier) = state
        .access_tokens
        .as_ref()
        .filter(|_| presented.contains('.'))
    else {
        return Err(unauthorized("send Authorization: Bearer <API token>"));
    };
    match verifier.verify(presented).await {
        Ok(caller) => {
            tracing::debug!(event = "api_caller_signed_in", caller = %caller.id);
            Ok(())
        }
        Err(err @ AuthError::Refused(_)) => {
            tracing::info!(event = "api_token_refused", reason = %err);
            Err(unauthorized(
                "the sign-in is not valid (expired?): sign in again",
            ))
        }
        Err(err) => {
            tracing::warn!(event = "api_token_check_failed", retryable = true, error = %err);
            Err(ApiError::unavailable(
                "auth_unavailable",
                "sign-ins cannot be checked right now, try again",
            ))
        }
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// The middleware in front of every route but `/health`.
pub(crate) async fn require_token(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    match authorize(&state, request.headers()).await {
        Ok(()) => next.run(request).await,
        Err(err) => {
            let challenge = err.status == StatusCode::UNAUTHORIZED;
            let mut response = err.into_response();
            if challenge {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
    }
}

/// Whether `presented` is the API token, in time independent of where they differ (`subtle`);
/// an empty expected token matches nothing.
fn token_matches(presented: &[u8], expected: &[u8]) -> bool {
    !expected.is_empty() && bool::from(presented.ct_eq(expected))
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn when_the_token_is_the_same_should_match() {
        assert!(token_matches(b"s3cret", b"s3cret"));
        assert!(token_matches("tökén".as_bytes(), "tökén".as_bytes()));
    }

    #[test]
    fn when_the_token_differs_anywhere_or_in_length_should_not_match() {
        for presented in [
            &b"s3creT"[..],
            b"S3cret",
            b"s3cre",
            b"s3crett",
            b"",
            b"s3cret\0",
        ] {
            assert!(!token_matches(presented, b"s3cret"), "{presented:?}");
        }
    }

    #[test]
    fn when_the_expected_token_is_empty_should_match_nothing() {
        assert!(!token_matches(b"", b""));
        assert!(!token_matches(b"anything", b""));
    }
}
