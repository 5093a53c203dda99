//! The command line of `hunter-local` (stable: scripts outside the repo rely on it).

use std::path::PathBuf;

use clap::Parser;

/// Hunter referral sync on one machine: simulators, embedded store and queues, all functions, API.
#[derive(Debug, Clone, Parser)]
#[command(name = "hunter-local", version)]
pub struct Args {
    /// Port of the API and UI.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address the API and UI listen on (`0.0.0.0` to reach them from other machines).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
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
    /// Use this Dataverse (Dynamics 365 org URL) instead of the built-in simulator.
    #[arg(long, value_name = "URL", requires = "dynamics_token_url")]
    pub dynamics_url: Option<String>,
    /// The token endpoint for that org (`https://login.microsoftonline.com/TENANT/oauth2/v2.0/token`).
    #[arg(long, value_name = "URL", requires = "dynamics_url")]
    pub dynamics_token_url: Option<String>,
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
    /// After a push, write the Dynamics id into the referral's `externalReferenceId` in Partner
    /// Center (also `HUNTER_PC_WRITE_BACK=true`).
    #[arg(long)]
    pub write_back: bool,
    /// Seconds between scheduled syncs when serving.
    #[arg(long, default_value_t = 60)]
    pub sync_interval: u64,
    /// Every domain scan asks this nameserver (`HOST:PORT`, UDP and TCP). Default: the built-in
    /// DNS simulator when serving generated referrals, else the system's resolvers.
    #[arg(long, value_name = "HOST:PORT", env = "HUNTER_DNS_SERVER")]
    pub dns: Option<String>,
    #[command(flatten)]
    pub sim: SimFaultArgs,
}

/// Faults the built-in Partner Center simulator injects (also settable at run time with
/// `PUT /_sim/faults` on the simulator, whose URL hunter-local logs).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SimFaultArgs {
    /// Share of list requests answered 500 or 503.
    #[arg(long, env = "HUNTER_SIM_ERROR_RATE", default_value_t = 0.0)]
    pub sim_error_rate: f64,
    /// Share of list requests answered 429 with Retry-After.
    #[arg(long, env = "HUNTER_SIM_THROTTLE_RATE", default_value_t = 0.0)]
    pub sim_throttle_rate: f64,
    /// The Retry-After of those 429s, in seconds.
    #[arg(long, env = "HUNTER_SIM_RETRY_AFTER", default_value_t = 1)]
    pub sim_retry_after: u64,
    /// Added latency of every API request, in milliseconds.
    #[arg(long, env = "HUNTER_SIM_LATENCY_MS", default_value_t = 0)]
    pub sim_latency_ms: u64,
    /// Access tokens expire after this many pages (a token expiring mid-pagination).
    #[arg(long, env = "HUNTER_SIM_EXPIRE_TOKEN_AFTER_PAGES")]
    pub sim_expire_token_after_pages: Option<u32>,
    /// The simulator refuses every refresh token hunter-local has, as after an admin revoked
    /// Hunter's consent (someone must sign in again).
    #[arg(long, env = "HUNTER_SIM_REFRESH_TOKEN_REVOKED")]
    pub sim_refresh_token_revoked: bool,
    /// The simulator's page size.
    #[arg(long, env = "HUNTER_SIM_PAGE_SIZE", default_value_t = 100)]
    pub sim_page_size: usize,
    /// Requests the Dataverse simulator accepts per window before answering 429.
    #[arg(
        long,
        env = "HUNTER_SIM_DATAVERSE_MAX_REQUESTS",
        default_value_t = 6000
    )]
    pub sim_dataverse_max_requests: u32,
    /// The Dataverse simulator's service-protection window, in seconds.
    #[arg(long, env = "HUNTER_SIM_DATAVERSE_WINDOW", default_value_t = 300)]
    pub sim_dataverse_window: u64,
    /// Retry-After of the Dataverse simulator's 429s, in seconds.
    #[arg(long, env = "HUNTER_SIM_DATAVERSE_RETRY_AFTER", default_value_t = 1)]
    pub sim_dataverse_retry_after: u64,
    /// Share of Dataverse requests answered 500 or 503.
    #[arg(long, env = "HUNTER_SIM_DATAVERSE_ERROR_RATE", default_value_t = 0.0)]
    pub sim_dataverse_error_rate: f64,
    /// The built-in DNS simulator answers NXDOMAIN, SERVFAIL or nothing at all for some seeded
    /// domains (those scans end `nxdomain`, `servfail`, `timeout`).
    #[arg(long, env = "HUNTER_SIM_DNS_FAULTS")]
    pub sim_dns_faults: bool,
}
