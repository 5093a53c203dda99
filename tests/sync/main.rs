//! Partner Center sync end to end: fetch-referrals against the simulator, ingest-referral over
//! the embedded adapters, and the Lambda entries with AWS's own event shapes.

#![allow(clippy::unwrap_used, missing_debug_implementations)]

mod fetch;
mod ingest;
mod support;
