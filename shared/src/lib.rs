//! Hunter referral sync core: domain model, rules, ports and adapters.
