//! Dynamics 365 (Dataverse): the Web API client, its `$batch` bodies, and the lead sink built on
//! them.

pub mod auth;
pub mod batch;
pub mod client;
pub mod error;
pub mod odata;
pub mod sink;

pub use auth::DataverseAuth;
pub use client::{DataverseClient, ExistingRecord, KeyedRecord, UpsertResult};
pub use error::DataverseError;
pub use sink::DataverseLeadSink;
