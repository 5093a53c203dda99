//! Partner Center's errors: the shared [`ServiceError`], and what they mean to the referral
//! source port.

pub use crate::http::ServiceError as PartnerCenterError;
use crate::ports::SourceError;

impl From<PartnerCenterError> for SourceError {
    fn from(err: PartnerCenterError) -> Self {
        let message = err.to_string();
        match err {
            PartnerCenterError::Deadline { delay, .. } => Self::Deadline(delay),
            PartnerCenterError::Auth { .. } => Self::Unauthorized(message),
            PartnerCenterError::SignInRequired { .. } => Self::SignInRequired(message),
            PartnerCenterError::Http { status: 412, .. } => Self::Conflict(message),
            e if e.is_retryable() => Self::Unavailable(message),
            _ => Self::Invalid(message),
        }
    }
}
