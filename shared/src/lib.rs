//! Hunter referral sync core: domain model, rules, ports and adapters.
//!
//! The rules ([`rules`], [`referral`]) are pure functions; the ports ([`ports`]) are traits that
//! handlers take as parameters; [`adapters`] implements them for AWS (DynamoDB, SQS) and for the
//! embedded local mode, with the same semantics (one contract suite runs against both).

pub mod adapters;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod dynamics;
pub mod error;
pub mod fanout;
pub mod leads;
pub mod messages;
pub mod model;
pub mod partner_center;
pub mod ports;
pub mod referral;
pub mod retry;
pub mod rules;
pub mod secret;
pub mod sync_report;
pub mod telemetry;
pub mod wiring;
