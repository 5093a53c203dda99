//! Dynamics 365 (Dataverse): how Hunter's leads map to columns, and the Web API client.

pub mod client;
pub mod error;
pub mod input;
pub mod mapping;
pub mod sink;

pub use client::{DataverseAuth, DataverseClient, ExistingRecord, KeyedRecord, UpsertResult};
pub use error::DataverseError;
pub use input::{lead_input, opportunity_records};
pub use mapping::{DynamicsMapping, MappingError, MappingInput, TableMapping};
pub use sink::{DataverseLeadSink, LeadSink, LeadUpsert, OpportunityRecords, PushedLead, Table};
