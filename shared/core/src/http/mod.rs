//! The one HTTP plumbing of the Microsoft API clients (Partner Center and Dataverse): bearer
//! tokens cached until shortly before they expire ([`TokenCache`]), every request sent with a
//! `client-request-id` through one retry loop that honours `Retry-After` within a deadline
//! ([`Service::send`]), the service's `request-id` read from every answer, and one error type
//! that says whether retrying may help ([`ServiceError`]).

mod error;
mod service;
mod token;

pub use error::{CODE_DUPLICATE_DETECTED, ServiceError};
pub(crate) use service::error_parts;
pub use service::{Answer, Call, PacedRequest, Pacing, Service, ServiceNames};
pub use token::{IssuedToken, TokenCache, TokenEndpoint, TokenSource, request_token};
