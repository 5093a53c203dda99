//! Simulators of the external services, faithful to their public contracts, with fault injection.

mod comparison;
pub mod control;
pub mod dataverse;
mod faults;
mod http;
mod oauth;
pub mod partner_center;
pub mod queue_faults;
pub mod seed;
pub mod server;
