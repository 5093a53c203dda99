//! hunter-local: the production handlers on one machine, with simulators of the external services.

pub mod sim;
