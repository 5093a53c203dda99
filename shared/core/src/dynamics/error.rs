//! Dataverse's errors: the shared [`ServiceError`](crate::http::ServiceError), its codes, and
//! what they mean to the lead sink port.

pub use crate::http::ServiceError as DataverseError;
use crate::ports::SinkError;

/// Error code of a duplicate-detection hit (HTTP 500 that retrying does not cure).
pub const CODE_DUPLICATE_DETECTED: &str = crate::http::CODE_DUPLICATE_DETECTED;
/// Error code of an over-long string column (HTTP 400).
pub const CODE_STRING_TOO_LONG: &str = "0x80044331";

impl From<DataverseError> for SinkError {
    fn from(err: DataverseError) -> Self {
        let message = err.to_string();
        if err.is_retryable() {
            return Self::Unavailable {
                message,
                retry_after: err.retry_after(),
            };
        }
        match err {
            DataverseError::Auth { .. } | DataverseError::SignInRequired { .. } => {
                Self::Unauthorized(message)
            }
            DataverseError::Validation { .. } | DataverseError::Http { .. } => {
                Self::Rejected(message)
            }
            _ => Self::Invalid(message),
        }
    }
}
