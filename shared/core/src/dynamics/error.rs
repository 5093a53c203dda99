//! What can go wrong talking to Dataverse, and whether retrying helps.

use std::time::Duration;

/// Error code of a duplicate-detection hit (HTTP 500 that retrying does not cure).
pub const CODE_DUPLICATE_DETECTED: &str = "0x80040333";
/// Error code of an over-long string column (HTTP 400).
pub const CODE_STRING_TOO_LONG: &str = "0x80044331";

/// A failed Dataverse call. Every variant that came from an answer names its `request-id`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DataverseError {
    /// The token was refused after one renewal, the token endpoint refused the client, or the
    /// application user lacks a privilege (403). Someone must fix the configuration; never retried.
    #[error(
        "Dataverse authentication failed (HTTP {status}): {message} [request-id {request_id:?}]"
    )]
    Auth {
        status: u16,
        message: String,
        request_id: Option<String>,
    },
    /// HTTP 400: the record breaks a rule (e.g. `0x80044331`, a string over the column limit).
    /// The data must change; never retried.
    #[error("Dataverse rejected the record {code}: {message} [request-id {request_id:?}]")]
    Validation {
        code: String,
        message: String,
        request_id: Option<String>,
    },
    /// HTTP 429 (service-protection limit) that outlasted the retries; wait `retry_after`.
    #[error(
        "Dataverse throttled the client {code}: retry after {retry_after:?} [request-id {request_id:?}]"
    )]
    Throttled {
        retry_after: Option<Duration>,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    /// Any other error answer. `retryable` for 5xx that outlasted the retries.
    #[error("Dataverse answered HTTP {status} {code}: {message} [request-id {request_id:?}]")]
    Http {
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
        retryable: bool,
        retry_after: Option<Duration>,
    },
    /// No answer: connection, TLS or timeout, after the retries.
    #[error("Dataverse unreachable: {0}")]
    Transport(String),
    /// An answer that does not follow the contract.
    #[error("Dataverse sent an unreadable answer: {0} [request-id {request_id:?}]", request_id = .1)]
    InvalidResponse(String, Option<String>),
    /// The call could not be built (bad entity set, column name, id or batch size); never sent.
    #[error("invalid Dataverse request: {0}")]
    InvalidRequest(String),
}

impl DataverseError {
    /// An error answer (after the retries), classified by status and Dataverse error code.
    pub fn from_answer(
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
        retry_after: Option<Duration>,
    ) -> Self {
        match status {
            400 => Self::Validation {
                code,
                message,
                request_id,
            },
            401 | 403 => Self::Auth {
                status,
                message: format!("{code}: {message}"),
                request_id,
            },
            429 => Self::Throttled {
                retry_after,
                code,
                message,
                request_id,
            },
            _ => Self::Http {
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
            Self::Throttled { .. } | Self::Transport(_) => true,
            Self::Http { retryable, .. } => *retryable,
            Self::Auth { .. }
            | Self::Validation { .. }
            | Self::InvalidResponse(..)
            | Self::InvalidRequest(_) => false,
        }
    }

    /// How long the server asked to wait (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled { retry_after, .. } | Self::Http { retry_after, .. } => *retry_after,
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

    /// The Dataverse error code (`error.code`, e.g. `0x80044331`), if any.
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
            | Self::Validation { request_id, .. }
            | Self::Throttled { request_id, .. }
            | Self::Http { request_id, .. }
            | Self::InvalidResponse(_, request_id) => request_id.as_deref(),
            _ => None,
        }
    }
}

/// Whether an error answer is worth retrying: 429, 500, 502, 503, 504 — except a
/// duplicate-detection 500, which answers the same until the data changes.
pub(crate) fn retryable_answer(status: u16, code: &str) -> bool {
    match status {
        500 => !code.eq_ignore_ascii_case(CODE_DUPLICATE_DETECTED),
        429 | 502 | 503 | 504 => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_classified_should_separate_permanent_from_retryable() {
        let e = |status: u16, code: &str| {
            DataverseError::from_answer(
                status,
                code.to_owned(),
                "m".to_owned(),
                Some("r".to_owned()),
                Some(Duration::from_secs(2)),
            )
        };
        assert!(matches!(
            e(400, CODE_STRING_TOO_LONG),
            DataverseError::Validation { .. }
        ));
        assert!(!e(400, CODE_STRING_TOO_LONG).is_retryable());
        assert!(!e(403, "").is_retryable());
        assert!(!e(404, "").is_retryable());
        assert!(!e(412, "").is_retryable());
        assert!(!e(500, CODE_DUPLICATE_DETECTED).is_retryable());
        assert!(e(500, "").is_retryable());
        assert!(e(503, "").is_retryable());
        let throttled = e(429, "0x80072322");
        assert!(throttled.is_retryable());
        assert_eq!(throttled.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(throttled.request_id(), Some("r"));
        assert_eq!(throttled.code(), Some("0x80072322"));
        assert_eq!(e(412, "").code(), None);
    }
}
