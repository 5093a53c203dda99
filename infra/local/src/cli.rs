//! The command line of `hunter-local` (stable: scripts outside the repo rely on it).

use std::path::PathBuf;

use clap::Parser;

/// Hunter referral sync on one machine: simulators, embedded store and queues, all functions, API.
#[derive(Debug, Clone, Parser)]
#[command(name = "hunter-local", version)]
pub struct Args {
    /// Port of the API and UI on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The built-in Partner Center simulator serves exactly the referrals of this JSON array.
    #[arg(long, value_name = "FILE.json", conflicts_with = "seed")]
    pub referrals: Option<PathBuf>,
    /// The built-in Partner Center simulator serves N generated realistic referrals.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub seed: usize,
    /// Use this Partner Center API instead of the built-in simulator.
    #[arg(long, value_name = "URL", requires = "partner_center_token_url")]
    pub partner_center_url: Option<String>,
    /// The token endpoint of that Partner Center API.
    #[arg(long, value_name = "URL", requires = "partner_center_url")]
    pub partner_center_token_url: Option<String>,
    /// DynamoDB and SQS (standard AWS environment, HUNTER_* names) instead of the embedded adapters.
    #[arg(long)]
    pub aws: bool,
    /// Run one sync, drain every queue, print one JSON summary, exit (non-zero if anything was
    /// dead-lettered).
    #[arg(long)]
    pub once: bool,
    /// Push nothing to Dynamics 365 (leads stay pending).
    #[arg(long)]
    pub no_dynamics: bool,
    /// Seconds between scheduled syncs when serving.
    #[arg(long, default_value_t = 60, hide = true)]
    pub sync_interval: u64,
}
