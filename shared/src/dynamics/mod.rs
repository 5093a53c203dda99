//! Dynamics 365 (Dataverse): how Hunter's leads map to columns, and the Web API client.

pub mod client;
pub mod error;
pub mod mapping;

pub use client::{DataverseAuth, DataverseClient, ExistingRecord, UpsertResult};
pub use error::DataverseError;
pub use mapping::{DynamicsMapping, MappingError, MappingInput};
