//! Dynamics 365 (Dataverse): the Web API client, its `$batch` bodies, the pacer that keeps it
//! below the service-protection limits, the lead sink built on them, and the reader of what
//! sellers changed (change tracking).

pub mod auth;
pub mod batch;
pub mod changes;
pub mod client;
pub mod error;
pub mod odata;
pub mod pacer;
pub mod sink;

pub use auth::DataverseAuth;
pub use changes::DataverseChangeReader;
pub use client::{DataverseClient, ExistingRecord, KeyedRecord, UpsertResult};
pub use error::DataverseError;
pub use pacer::{Pacer, PacerSettings};
pub use sink::DataverseLeadSink;
