//! Simulators of the external services, faithful to their public contracts, with fault injection.

pub mod dataverse;
pub mod partner_center;
pub mod seed;
pub mod server;
