//! Hunter referral sync core: domain model, rules, ports and adapters.

pub mod referral;
pub mod rules;
