//! Dynamics 365 (Dataverse): the Web API client and the lead sink built on it.

pub mod batch;
pub mod client;
pub mod error;
pub mod sink;

pub use client::{DataverseAuth, DataverseClient, ExistingRecord, KeyedRecord, UpsertResult};
pub use error::DataverseError;
pub use sink::DataverseLeadSink;
