//! Dynamics 365 (Dataverse): how Hunter's leads map to columns.

pub mod mapping;

pub use mapping::{DynamicsMapping, MappingError, MappingInput};
