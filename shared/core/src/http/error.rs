//! What can go wrong calling a Microsoft API, and whether retrying helps.

use std::time::Duration;

/// Error code of a Dataverse duplicate-detection hit (HTTP 500 that retrying does not cure).
pub const CODE_DUPLICATE_DETECTED: &str = "0x80040333";

/// ` [request-id X]` after an error's text, or nothing when the service sent none.
struct RequestIdSuffix<'a>(&'a Option<String>);

impl std::fmt::Display for RequestIdSuffix<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(id) => write!(f, " [request-id {id}]"),
            None => Ok(()),
        }
    }
}

/// A failed call, after the retries. `service` names the API (`Partner Center`, `Dataverse`);
/// every variant that came from an answer carries the service's `request-id`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServiceError {
    /// The token was refused after one renewal, the token endpoint refused the credentials, or
    /// the user lacks a privilege (403). Someone must sign in again or fix the configuration.
    #[error(
        "{service} authentication failed (HTTP {status}): {message}{}", RequestIdSuffix(.request_id)
    )]
    Auth {
        service: &'static str,
        status: u16,
        message: String,
        request_id: Option<String>,
    },
    /// The token endpoint refused the refresh token (`invalid_grant`: revoked, expired, or
    /// already used): only a new interactive sign-in (`hunter-local sign-in`) gets a new one.
    #[error(
        "{service} refused the refresh token (revoked or expired; sign in again with `hunter-local sign-in`): {message}{}", RequestIdSuffix(.request_id)
    )]
    SignInRequired {
        service: &'static str,
        message: String,
        request_id: Option<String>,
    },
    /// HTTP 400: the request breaks a rule of the service (e.g. Dataverse `0x80044331`, a string
    /// over the column limit). The data must change; never retried.
    #[error("{service} rejected the request {code}: {message}{}", RequestIdSuffix(.request_id))]
    Validation {
        service: &'static str,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    /// HTTP 429 that outlasted the retries; wait `retry_after`.
    #[error(
        "{service} throttled the client {code}: retry after {retry_after:?}{}", RequestIdSuffix(.request_id)
    )]
    Throttled {
        service: &'static str,
        retry_after: Option<Duration>,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    /// Any other error answer; `retryable` for server errors that outlasted the retries.
    #[error("{service} answered HTTP {status} {code}: {message}{}", RequestIdSuffix(.request_id))]
    Http {
        service: &'static str,
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
        retryable: bool,
        retry_after: Option<Duration>,
    },
    /// No answer (connection, TLS, timeout), after the retries.
    #[error("{service} unreachable: {message}")]
    Transport {
        service: &'static str,
        message: String,
    },
    /// An answer outside the contract.
    #[error("{service} sent an unreadable answer: {message}{}", RequestIdSuffix(.request_id))]
    InvalidResponse {
        service: &'static str,
        message: String,
        request_id: Option<String>,
    },
    /// The call could not be built (a bad URL, name or size); never sent.
    #[error("invalid {service} request: {message}")]
    InvalidRequest {
        service: &'static str,
        message: String,
    },
    /// Waiting for the next attempt would pass the caller's deadline.
    #[error("deadline reached before {service} answered (next attempt in {delay:?})")]
    Deadline {
        service: &'static str,
        delay: Duration,
    },
}

impl ServiceError {
    /// An error answer, classified by status and the service's error code.
    pub fn from_answer(
        service: &'static str,
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
        retry_after: Option<Duration>,
    ) -> Self {
        match status {
            400 => Self::Validation {
                service,
                code,
                message,
                request_id,
            },
            401 | 403 => Self::Auth {
                service,
                status,
                message: format!("{code}: {message}"),
                request_id,
            },
            429 => Self::Throttled {
                service,
                retry_after,
                code,
                message,
                request_id,
            },
            _ => Self::Http {
                service,
                status,
                retryable: retryable_answer(status, &code),
                code,
                message,
                request_id,
                retry_after,
            },
        }
    }

    /// Whether the same call may succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Throttled { .. } | Self::Transport { .. } | Self::Deadline { .. } => true,
            Self::Http { retryable, .. } => *retryable,
            Self::Auth { .. }
            | Self::SignInRequired { .. }
            | Self::Validation { .. }
            | Self::InvalidResponse { .. }
            | Self::InvalidRequest { .. } => false,
        }
    }

    /// How long the service asked to wait (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled { retry_after, .. } | Self::Http { retry_after, .. } => *retry_after,
            // The wait that would have passed the deadline: the next invocation's turn.
            Self::Deadline { delay, .. } => Some(*delay),
            _ => None,
        }
    }

    /// The HTTP status of the answer, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Auth { status, .. } | Self::Http { status, .. } => Some(*status),
            Self::Validation { .. } => Some(400),
            Self::Throttled { .. } => Some(429),
            _ => None,
        }
    }

    /// The service's error code (`error.code`, e.g. `0x80044331`), if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Validation { code, .. }
            | Self::Throttled { code, .. }
            | Self::Http { code, .. } => Some(code.as_str()).filter(|c| !c.is_empty()),
            _ => None,
        }
    }

    /// The `request-id` of the answer, if there was one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Auth { request_id, .. }
            | Self::SignInRequired { request_id, .. }
            | Self::Validation { request_id, .. }
            | Self::Throttled { request_id, .. }
            | Self::Http { request_id, .. }
            | Self::InvalidResponse { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }
}

/// Whether an error answer is worth retrying: 408, 429, 500, 502, 503, 504, 509 — except a
/// Dataverse duplicate-detection 500, which answers the same until the data changes.
pub(crate) fn retryable_answer(status: u16, code: &str) -> bool {
    match status {
        500 => !code.eq_ignore_ascii_case(CODE_DUPLICATE_DETECTED),
        408 | 429 | 502 | 503 | 504 | 509 => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_displayed_should_name_the_request_id_only_when_there_is_one() {
        let with = |request_id: Option<&str>| ServiceError::InvalidResponse {
            service: "Partner Center",
            message: "not JSON".to_owned(),
            request_id: request_id.map(str::to_owned),
        };
        assert_eq!(
            with(Some("4f1c")).to_string(),
            "Partner Center sent an unreadable answer: not JSON [request-id 4f1c]"
        );
        assert_eq!(
            with(None).to_string(),
            "Partner Center sent an unreadable answer: not JSON"
        );
    }

    #[test]
    fn when_classified_should_separate_permanent_from_retryable() {
        let e = |status: u16, code: &str| {
            ServiceError::from_answer(
                "Dataverse",
                status,
                code.to_owned(),
                "m".to_owned(),
                Some("r".to_owned()),
                Some(Duration::from_secs(2)),
            )
        };
        assert!(matches!(
            e(400, "0x80044331"),
            ServiceError::Validation { .. }
        ));
        assert!(!e(400, "0x80044331").is_retryable());
        assert!(!e(403, "").is_retryable());
        assert!(!e(404, "").is_retryable());
        assert!(!e(412, "").is_retryable());
        assert!(!e(500, CODE_DUPLICATE_DETECTED).is_retryable());
        assert!(e(500, "").is_retryable());
        assert!(e(503, "").is_retryable());
        assert!(e(408, "").is_retryable() && e(509, "").is_retryable());
        let throttled = e(429, "0x80072322");
        assert!(throttled.is_retryable());
        assert_eq!(throttled.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(throttled.request_id(), Some("r"));
        assert_eq!(throttled.code(), Some("0x80072322"));
        assert_eq!(e(412, "").code(), None);
        assert!(
            e(503, "")
                .to_string()
                .starts_with("Dataverse answered HTTP 503")
        );
    }
}
