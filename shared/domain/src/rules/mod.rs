//! Referral-ingestion rules: domain normalization, extraction, eligibility, versioning.

pub mod config;
pub mod domain;
pub mod eligibility;
pub mod extraction;
pub mod versioning;

pub use config::{EMBEDDED_RULES_TOML, Rules, RulesError};
pub use domain::{Domain, DomainError, domain_from_url_or_host, email_domain, normalize_domain};
pub use eligibility::{Eligibility, SkipReason, UnknownSkipReason, eligibility};
pub use extraction::{DomainSource, ExtractedDomain, extract_domain};
pub use versioning::{UpsertOutcome, Version, VersionOrder, compare_versions};
