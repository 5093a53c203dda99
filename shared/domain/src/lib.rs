//! Hunter referral sync's domain: what a referral says, what Hunter decides about it, and the
//! records it keeps. Pure: no network, no storage, no async runtime; the ports and adapters of
//! `hunter-core` depend on this crate, never the other way round.
//!
//! - [`referral`]: the tolerant reader of Partner Center's referral JSON.
//! - [`rules`]: domain extraction and normalization, eligibility, version ordering, as data
//!   (`rules/hunter-rules.toml`).
//! - [`model`]: the records stored and served (referrals, leads, sync runs, state, audit).
//! - [`leads`]: how a referral joins its domain's lead, and what a push did to it.
//! - [`sync_cursor`]: the watermark and continuation of the Partner Center sync.
//! - [`scoring`]: a lead's provider, score, segment, priority and commercial category from its
//!   DNS scan, as data (the `[scoring]` sections of `rules/hunter-rules.toml`).
//! - [`crm`]: how a lead maps to Dynamics 365 columns (`rules/dynamics-mapping.toml`).
//! - [`stats`]: exact counts of leads by segment, category, sync status and the rest.
//! - [`clock`]: the one source of the current time and its sortable text form.

pub mod clock;
pub mod crm;
pub mod lead_scan;
pub mod leads;
pub mod model;
pub mod referral;
pub mod rules;
pub mod scan;
pub mod scoring;
pub mod stats;
pub mod sync_cursor;
