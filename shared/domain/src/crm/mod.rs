//! Hunter's leads as Dynamics 365 (Dataverse) records: the mapping file and what it makes of a
//! lead and its referrals.

pub mod mapping;
pub mod outcome;
pub mod records;

pub use mapping::{DynamicsMapping, MappingError, MappingInput, TableMapping};
pub use outcome::{CrmChange, CrmState, Outcome, SELLER_OWNED_COLUMNS, is_seller_owned};
pub use records::{OpportunityRecords, SOURCE, Table, lead_input, opportunity_records};
