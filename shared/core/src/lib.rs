//! Hunter referral sync's ports and adapters: the traits handlers take as parameters
//! ([`ports`]), their implementations for AWS (DynamoDB, SQS, Lambda) and for the embedded local
//! mode ([`adapters`]), the Partner Center and Dataverse clients, configuration, credentials and
//! wiring. The rules and records live in `hunter-domain`, which this crate depends on.

pub mod adapters;
pub mod bulk_sync;
pub mod config;
pub mod credentials;
pub mod crm_pull;
pub mod cursor;
pub mod deadline;
pub mod dynamics;
pub mod failures;
pub mod fanout;
pub mod http;
pub mod intake;
pub mod messages;
pub mod metrics;
pub mod optimistic;
pub mod partner_center;
pub mod ports;
pub mod retry;
pub mod scanning;
pub mod secret;
pub mod sync_report;
pub mod telemetry;
pub mod webhook_activity;
pub mod wiring;
