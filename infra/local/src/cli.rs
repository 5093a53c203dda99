//! The command line of `hunter-local` (stable: scripts outside the repo rely on it).

use std::path::PathBuf;

use clap::Parser;

/// Hunter referral sync on one machine: simulators, embedded store and queues, all functions, API.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "hunter-local",
    version,
    args_conflicts_with_subcommands = false
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub backend: BackendArgs,
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
    #[arg(
        long,
        value_name = "URL",
        requires = "partner_center_token_url",
        global = true
    )]
    pub partner_center_url: Option<String>,
    /// The token endpoint of that Partner Center API.
    #[arg(
        long,
        value_name = "URL",
        requires = "partner_center_url",
        global = true
    )]
    pub partner_center_token_url: Option<String>,
    /// Use this Dataverse (Dynamics 365 org URL) instead of the built-in simulator.
    #[arg(long, value_name = "URL", requires = "dynamics_token_url")]
    pub dynamics_url: Option<String>,
    /// The token endpoint for that org (`https://login.microsoftonline.com/TENANT/oauth2/v2.0/token`).
    #[arg(long, value_name = "URL", requires = "dynamics_url")]
    pub dynamics_token_url: Option<String>,
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
    /// When a pull sees a lead's opportunity won or lost (or the lead disqualified) in Dynamics,
    /// close its open referrals in Partner Center as Won / Lost (also
    /// `HUNTER_MIRROR_CRM_OUTCOMES=true`).
    #[arg(long)]
    pub mirror_crm_outcomes: bool,
    /// Seconds a received message stays invisible before it is delivered again (the queues'
    /// visibility timeout, 360 as in template.yaml; on SQS, set when hunter-local creates them).
    #[arg(
        long,
        value_name = "SECONDS",
        env = "HUNTER_QUEUE_VISIBILITY",
        default_value_t = 360
    )]
    pub queue_visibility: u64,
    /// Seconds between scheduled syncs when serving.
    #[arg(long, default_value_t = 60)]
    pub sync_interval: u64,
    /// No scheduled syncs when serving (the sweep): referrals arrive by webhook events and
    /// `POST /api/v1/sync` only.
    #[arg(long)]
    pub no_sweep: bool,
    /// Do not register hunter-local's webhook route with the built-in Partner Center simulator
    /// (it registers itself by default when serving).
    #[arg(long)]
    pub no_webhooks: bool,
    /// Every domain scan asks this nameserver (`HOST:PORT`, UDP and TCP). Default: the built-in
    /// DNS simulator when serving generated referrals, else the system's resolvers.
    #[arg(long, value_name = "HOST:PORT", env = "HUNTER_DNS_SERVER")]
    pub dns: Option<String>,
    #[command(flatten)]
    pub sim: SimFaultArgs,
}

/// Where Hunter keeps its data (every command takes these).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BackendArgs {
    /// Keep the store and queues in SQLite under DIR; a second start resumes where the first
    /// stopped.
    #[arg(
        long,
        value_name = "DIR",
        global = true,
        default_value = "hunter-data",
        env = "HUNTER_DATA_DIR"
    )]
    pub data_dir: PathBuf,
    /// Keep nothing: the store and queues live in memory and end with the process.
    #[arg(long, global = true, conflicts_with = "aws")]
    pub in_memory: bool,
    /// DynamoDB and SQS (standard AWS environment, HUNTER_* names) instead of the embedded adapters.
    #[arg(long, global = true)]
    pub aws: bool,
}

/// Where the store and queues live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Sqlite(PathBuf),
    Memory,
    Aws,
}

impl BackendArgs {
    pub fn backend(&self) -> Backend {
        match (self.aws, self.in_memory) {
            (true, _) => Backend::Aws,
            (false, true) => Backend::Memory,
            (false, false) => Backend::Sqlite(self.data_dir.clone()),
        }
    }
}

/// The commands besides running Hunter.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// List the dead letters of a queue (both queues when none is named): message id, receive
    /// count, last error, what the message was about.
    Dlq {
        #[arg(long, value_enum)]
        queue: Option<QueueName>,
    },
    /// Move a queue's dead letters back onto the queue.
    Redrive {
        #[arg(long, value_enum)]
        queue: QueueName,
    },
    /// Sign in to Partner Center as a user (device code flow) and keep the refresh token.
    SignIn,
    /// Copy the embedded database to FILE while Hunter runs (SQLite online backup).
    Backup { file: PathBuf },
    /// Hunter's Partner Center webhook registration (with the refresh token `sign-in` kept).
    Webhooks {
        /// Partner Center's webhook API (another host than the Referrals API), or a simulator.
        #[arg(long, value_name = "URL", default_value = crate::webhooks::PARTNER_CENTER_WEBHOOKS_URL)]
        api_url: String,
        #[command(subcommand)]
        action: WebhookAction,
    },
}

/// What `hunter-local webhooks` does.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum WebhookAction {
    /// Register URL (Hunter's `/api/v1/webhooks/partner-center`) for referral-created and
    /// referral-updated; replaces the tenant's registration.
    Register {
        #[arg(long)]
        url: String,
    },
    /// Show the tenant's registration.
    List,
    /// Delete the tenant's registration.
    Delete,
}

/// The queues between the functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueName {
    Referrals,
    DynamicsPush,
}

impl QueueName {
    pub const ALL: [QueueName; 2] = [QueueName::Referrals, QueueName::DynamicsPush];

    /// The name the logs and the failure records use.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Referrals => "referrals",
            QueueName::DynamicsPush => "dynamics-push",
        }
    }
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
    /// The queues deliver some messages twice and batches in any order, as SQS may.
    #[arg(long, env = "HUNTER_SIM_QUEUE_FAULTS")]
    pub sim_queue_faults: bool,
    /// The built-in DNS simulator answers NXDOMAIN, SERVFAIL or nothing at all for some seeded
    /// domains (those scans end `nxdomain`, `servfail`, `timeout`).
    #[arg(long, env = "HUNTER_SIM_DNS_FAULTS")]
    pub sim_dns_faults: bool,
}
