//! The adapters hunter-local runs the handlers with: embedded or AWS, simulator or real service.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use fetch_referrals::FetchSettings;
use hunter_core::adapters::{DynamoStore, EmbeddedQueue, EmbeddedStore, SqsQueue};
use hunter_core::config::{Config, RequestLimit};
use hunter_core::ports::AccessTokenVerifier;
use ingest_referral::DomainTurns;

use crate::ui::UiConfig;
use hunter_core::credentials::Credentials;
use hunter_core::dynamics::{DataverseChangeReader, DataverseLeadSink};
use hunter_core::partner_center::webhook::WebhookVerifier;
use hunter_core::partner_center::{PartnerCenterClient, WebhookRegistrations};
use hunter_core::ports::{DomainScanner, Queue, Store};
use hunter_core::secret::Secret;
use hunter_core::wiring;
use hunter_domain::crm::DynamicsMapping;
use hunter_domain::rules::Rules;

use crate::cli::{Args, Backend};
use crate::data_dir::{DataDirLock, end_stale_lease};
use crate::dns::{DnsSim, RunningDns, SeededDomains};
use crate::sim::dataverse::{
    DataverseConfig, DataverseSim, Faults as DataverseFaults, Limits as DataverseLimits,
    RunningDataverse,
};
use crate::sim::partner_center::{Faults, PartnerCenterSim, RunningSim, SimConfig};
use crate::sim::queue_faults::FaultyQueue;
use crate::sim::seed::load_referrals_file;
use crate::stage_timing::{Stopwatch, TimedQueue, TimedScanner};
use hunter_sqlite::{SqliteDb, SqliteQueue, SqliteStore};

/// Receives before a message is dead-lettered (as `maxReceiveCount` in template.yaml).
pub const MAX_RECEIVE_COUNT: u32 = 5;
/// Visibility timeout of the queues (as in template.yaml).
pub const VISIBILITY: Duration = Duration::from_secs(360);
/// The queues' names (embedded, and on SQS unless their URLs say otherwise).
pub const REFERRALS_QUEUE: &str = "hunter-referrals";
pub const PUSH_QUEUE: &str = "hunter-dynamics-push";
/// The database file of the durable backend, in the data directory.
pub const DATABASE_FILE: &str = "hunter.db";
/// Seed of the generated referrals: the same N referrals on every run.
const SEED_RNG: u64 = 42;

/// Everything the handlers need, built once.
#[allow(missing_debug_implementations, reason = "trait objects")]
pub struct Stack {
    /// The data directory's lock (durable backend), held as long as the stack lives.
    _data_lock: Option<DataDirLock>,
    pub store: Arc<dyn Store>,
    pub referrals_queue: Arc<dyn Queue>,
    pub push_queue: Arc<dyn Queue>,
    pub source: Arc<PartnerCenterClient>,
    /// Checks Partner Center webhook events: certificates under the built-in simulator's URL,
    /// else under `HUNTER_PC_WEBHOOK_CERTIFICATE_URLS` (default: Microsoft's).
    pub webhook_verifier: Arc<WebhookVerifier>,
    /// The built-in simulator's webhook registration API (hunter-local registers its own URL).
    pub sim_webhooks: Option<WebhookRegistrations>,
    pub rules: Rules,
    pub fetch_settings: FetchSettings,
    /// The built-in Partner Center simulator, when no external one was named.
    pub partner_center_sim: Option<RunningSim>,
    pub mapping: DynamicsMapping,
    /// Where leads are pushed; `None` with `--no-dynamics`.
    pub dynamics: Option<Arc<DataverseLeadSink>>,
    /// Reads what sellers changed in Dynamics (through the sink's client); `None` with
    /// `--no-dynamics`.
    pub crm_changes: Option<DataverseChangeReader>,
    /// The built-in Dataverse simulator, when pushing and no external org was named.
    pub dataverse_sim: Option<RunningDataverse>,
    /// Write the Dynamics id back onto the referrals in Partner Center.
    pub write_back: bool,
    /// Close referrals in Partner Center when their lead's outcome is known in Dynamics.
    pub mirror_crm_outcomes: bool,
    /// Accepted referrals become opportunities (`HUNTER_D365_OPPORTUNITIES`, default on).
    pub opportunities: bool,
    /// Scans company domains over DNS: the `--dns` nameserver, else the built-in DNS simulator
    /// when serving generated referrals, else the system's resolvers.
    pub scanner: Arc<dyn DomainScanner>,
    /// The built-in DNS simulator, serving the generated referrals' domains.
    pub dns_sim: Option<RunningDns>,
    /// A lead's domain is scanned again once its last scan is this old (`HUNTER_RESCAN_AFTER`).
    pub rescan_after: Duration,
    /// Checks the Entra ID access tokens of people signed in to the UI (`HUNTER_ENTRA_*`).
    pub access_tokens: Option<Arc<dyn AccessTokenVerifier>>,
    /// What the UI starts from (`/config.json`): the API token, or Entra ID sign-in.
    pub ui: UiConfig,
    /// Time spent inside the queues' calls.
    pub queue_time: Arc<Stopwatch>,
    /// Time spent scanning domains.
    pub scan_time: Arc<Stopwatch>,
    /// The durable backend's database, whose commits are grouped ([`GROUP_COMMIT_WINDOW`]).
    pub database: Option<SqliteDb>,
    /// The turns per domain of the referral batches handled at once.
    pub ingest_turns: DomainTurns,
    /// Referral batches handled at once ([`crate::worker::INGEST_BATCHES_AT_ONCE`], one on AWS).
    pub ingest_batches_at_once: usize,
    /// Where they compute: on every core in memory, in one task on SQLite and AWS.
    pub ingest_threads: crate::worker::BatchThreads,
    /// Whether `--once` ingests while the fetch is still enqueueing, as Lambda's event source
    /// does (not with `--aws`: moto would lose the run's counters that both update).
    pub ingest_beside_fetch: bool,
}

impl Stack {
    pub async fn build(args: &Args) -> anyhow::Result<Self> {
        let mut config = Config::from_env().context("reading HUNTER_* configuration")?;
        let mut credentials = Credentials::from_vars(std::env::vars());
        let rules = Rules::load(config.rules_file.as_deref().map(std::path::Path::new))?;

        let mut seeded_dns = None;
        let partner_center_sim = match (&args.partner_center_url, &args.partner_center_token_url) {
            (Some(url), Some(token_url)) => {
                config.partner_center_url.clone_from(url);
                config.partner_center_token_url.clone_from(token_url);
                None
            }
            _ => {
                let mut sim_config = SimConfig {
                    page_size: args.sim.sim_page_size.max(1),
                    faults: Faults {
                        error_rate: args.sim.sim_error_rate,
                        throttle_rate: args.sim.sim_throttle_rate,
                        retry_after_secs: args.sim.sim_retry_after,
                        latency_ms: args.sim.sim_latency_ms,
                        expire_token_after_pages: args.sim.sim_expire_token_after_pages,
                        ..Faults::default()
                    },
                    ..SimConfig::default()
                };
                // The built-in simulator accepts the credentials hunter-local is configured
                // with; without any, hunter-local uses the simulator's.
                if args.sim.sim_refresh_token_revoked {
                    sim_config.initial_refresh_token =
                        Secret::new(uuid::Uuid::new_v4().to_string());
                    if credentials.pc_refresh_token.is_empty() {
                        credentials.pc_refresh_token = Secret::new("revoked-refresh-token");
                    }
                } else if credentials.pc_refresh_token.is_empty() {
                    credentials.pc_refresh_token = sim_config.initial_refresh_token.clone();
                } else {
                    sim_config.initial_refresh_token = credentials.pc_refresh_token.clone();
                }
                if credentials.pc_client_id.is_empty() {
                    credentials.pc_client_id = "hunter-local".to_owned();
                }
                // Generated referrals are never held at once, as documents or as text: the
                // simulator generates each again when it is read; the DNS simulator learns
                // their domains as they are generated.
                let sim = match &args.referrals {
                    Some(path) => PartnerCenterSim::new(load_referrals_file(path)?, sim_config),
                    None => {
                        let (sim, domains) = SeededDomains::gather_beside(|visit| {
                            PartnerCenterSim::seeded(args.seed, SEED_RNG, sim_config, visit)
                        });
                        seeded_dns = Some(DnsSim::with_domains(
                            &domains.into_vec(),
                            args.sim.sim_dns_faults,
                        ));
                        sim
                    }
                };
                let sim = sim
                    .serve(([127, 0, 0, 1], 0).into())
                    .await
                    .context("starting the Partner Center simulator")?;
                tracing::info!(event = "partner_center_simulator_started", url = %sim.base_url, referrals = sim.sim.len());
                config.partner_center_url.clone_from(&sim.base_url);
                config.partner_center_token_url.clone_from(&sim.token_url);
                // Events are signed by the simulator's certificate, trusted instead of Microsoft's.
                let certificate = sim.sim.webhook_certificate_url();
                let directory = certificate.rsplit_once('/').map_or("", |(dir, _)| dir);
                config.pc_webhook_certificate_urls = vec![format!("{directory}/")];
                Some(sim)
            }
        };

        let mapping =
            DynamicsMapping::load(config.mapping_file.as_deref().map(std::path::Path::new))?;
        let dataverse_sim = match (&args.dynamics_url, &args.dynamics_token_url) {
            _ if args.no_dynamics => None,
            (Some(url), Some(token_url)) => {
                config.dynamics_url = Some(url.clone());
                config.dynamics_token_url = Some(token_url.clone());
                None
            }
            _ => {
                let mut sim_config = DataverseConfig {
                    limits: DataverseLimits {
                        max_requests: args.sim.sim_dataverse_max_requests.max(1),
                        window: Duration::from_secs(args.sim.sim_dataverse_window.max(1)),
                        retry_after_secs: args.sim.sim_dataverse_retry_after,
                        ..DataverseLimits::default()
                    },
                    faults: DataverseFaults {
                        error_rate: args.sim.sim_dataverse_error_rate,
                        retry_after_secs: args.sim.sim_dataverse_retry_after,
                        ..DataverseFaults::default()
                    },
                    key_column: mapping.key_column().to_owned(),
                    ..DataverseConfig::default()
                };
                if credentials.d365_client_id.is_empty() {
                    credentials.d365_client_id.clone_from(&sim_config.client_id);
                    credentials.d365_client_secret = sim_config.client_secret.clone();
                } else {
                    sim_config.client_id.clone_from(&credentials.d365_client_id);
                    sim_config.client_secret = credentials.d365_client_secret.clone();
                }
                // Every application user of HUNTER_D365_CLIENTS is one of the simulator's, and
                // pushes are paced for its limits (unless HUNTER_D365_REQUEST_LIMIT says otherwise).
                sim_config.extra_clients = credentials
                    .d365_clients()?
                    .into_iter()
                    .map(|c| (c.client_id, c.client_secret))
                    .collect();
                config.d365_request_limit.get_or_insert(RequestLimit {
                    requests: sim_config.limits.max_requests,
                    window: sim_config.limits.window,
                });
                let sim = DataverseSim::new(sim_config)
                    .serve(([127, 0, 0, 1], 0).into())
                    .await
                    .context("starting the Dataverse simulator")?;
                tracing::info!(event = "dataverse_simulator_started", url = %sim.base_url);
                config.dynamics_url = Some(sim.base_url.clone());
                config.dynamics_token_url = Some(sim.token_url.clone());
                Some(sim)
            }
        };
        let dynamics = if args.no_dynamics {
            None
        } else {
            Some(Arc::new(wiring::dataverse_sink(
                wiring::http_client()?,
                &config,
                &credentials,
                &mapping,
            )?))
        };

        let dns_server = args.dns.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let dns_sim = match (dns_server, seeded_dns) {
            (Some(server), _) => {
                config.dns_server = Some(server.to_owned());
                None
            }
            (None, Some(sim)) => {
                let dns = sim
                    .serve(([127, 0, 0, 1], 0).into())
                    .await
                    .context("starting the DNS simulator")?;
                tracing::info!(event = "dns_simulator_started", addr = %dns.addr, domains = dns.sim.domains().len(), faults = args.sim.sim_dns_faults);
                config.dns_server = Some(dns.addr.to_string());
                Some(dns)
            }
            (None, None) => None,
        };
        let scan_time = Arc::new(Stopwatch::default());
        let scanner = Arc::new(TimedScanner::new(
            Arc::new(wiring::dns_scanner(&config).context("building the DNS scanner")?),
            scan_time.clone(),
        ));

        let backend = args.backend.backend();
        let data_lock = match &backend {
            Backend::Sqlite(dir) => Some(DataDirLock::acquire(dir)?),
            Backend::Memory | Backend::Aws => None,
        };
        let Adapters {
            store,
            referrals_queue,
            push_queue,
            database,
        } = backend_adapters(
            &backend,
            &config,
            &QueueSettings::of(args),
            Some(GROUP_COMMIT_WINDOW),
        )
        .await?;
        let queue_time = Arc::new(Stopwatch::default());
        let referrals_queue = Arc::new(TimedQueue::new(referrals_queue, queue_time.clone()));
        let push_queue = Arc::new(TimedQueue::new(push_queue, queue_time.clone()));
        if data_lock.is_some() {
            end_stale_lease(store.as_ref()).await?;
        }
        // The rotating Partner Center refresh token (see crate::refresh_token).
        let tokens =
            crate::refresh_token::stack_token_store(args, &config, partner_center_sim.is_some())
                .await?;
        let http = wiring::http_client()?;
        let sim_webhooks = match &partner_center_sim {
            Some(_) => Some(crate::webhooks::registrations(
                http.clone(),
                &config,
                &credentials,
                tokens.clone(),
                &config.partner_center_url,
            )?),
            None => None,
        };
        let source = Arc::new(wiring::partner_center(
            http.clone(),
            &config,
            &credentials,
            tokens,
        )?);
        let webhook_verifier = Arc::new(wiring::webhook_verifier(&config)?);
        let crm_changes = dynamics
            .as_ref()
            .map(|sink| DataverseChangeReader::new(sink.client().clone(), &mapping));
        Ok(Self {
            _data_lock: data_lock,
            store,
            referrals_queue,
            push_queue,
            source,
            webhook_verifier,
            sim_webhooks,
            rules,
            fetch_settings: fetch_referrals::settings_from(&config),
            partner_center_sim,
            mapping,
            crm_changes,
            dynamics,
            dataverse_sim,
            write_back: args.write_back || config.pc_write_back,
            mirror_crm_outcomes: args.mirror_crm_outcomes || config.mirror_crm_outcomes,
            opportunities: config.d365_opportunities.unwrap_or(true),
            rescan_after: config.rescan_after,
            scanner,
            dns_sim,
            access_tokens: wiring::entra_token_verifier(&config)?,
            ui: UiConfig::from_config(&config)?,
            queue_time,
            scan_time,
            database,
            ingest_turns: DomainTurns::default(),
            ingest_batches_at_once: match backend {
                Backend::Aws => 1,
                Backend::Memory | Backend::Sqlite(_) => crate::worker::INGEST_BATCHES_AT_ONCE,
            },
            ingest_threads: match backend {
                Backend::Memory => crate::worker::BatchThreads::Every,
                Backend::Sqlite(_) | Backend::Aws => crate::worker::BatchThreads::One,
            },
            ingest_beside_fetch: !matches!(backend, Backend::Aws),
        })
    }

    /// Makes every write so far durable (the durable backend commits in groups; the others
    /// have nothing to do).
    pub async fn commit(&self) -> anyhow::Result<()> {
        let Some(db) = self.database.clone() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || db.commit())
            .await
            .context("committing the database")??;
        Ok(())
    }
}

/// The store, the referrals queue and the dynamics-push queue of a backend.
#[allow(missing_debug_implementations, reason = "trait objects")]
pub struct Adapters {
    pub store: Arc<dyn Store>,
    pub referrals_queue: Arc<dyn Queue>,
    pub push_queue: Arc<dyn Queue>,
    /// The durable backend's database.
    pub database: Option<SqliteDb>,
}

/// How long the durable backend's writes wait to be committed together: a commit per call
/// cost most of a durable run's time; a crash loses at most this much of the latest work,
/// which is then done again (the messages of lost writes were not deleted either).
pub const GROUP_COMMIT_WINDOW: Duration = Duration::from_millis(50);

/// How the embedded queues behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    pub visibility: Duration,
    /// Deliver some messages twice and batches in any order (`--sim-queue-faults`).
    pub faults: bool,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            visibility: VISIBILITY,
            faults: false,
        }
    }
}

impl QueueSettings {
    pub fn of(args: &Args) -> Self {
        Self {
            visibility: Duration::from_secs(args.queue_visibility.max(1)),
            faults: args.sim.sim_queue_faults,
        }
    }

    fn wrap(&self, queue: impl Queue + 'static) -> Arc<dyn Queue> {
        match self.faults {
            true => Arc::new(FaultyQueue::new(queue)),
            false => Arc::new(queue),
        }
    }
}

/// The store and queues of `backend`; the durable backend's commits grouped by `group_commit`
/// when given (for the one process that owns the data directory).
pub async fn backend_adapters(
    backend: &Backend,
    config: &Config,
    queues: &QueueSettings,
    group_commit: Option<Duration>,
) -> anyhow::Result<Adapters> {
    match backend {
        Backend::Aws => {
            if queues.faults {
                tracing::warn!(
                    event = "sim_queue_faults_ignored",
                    reason = "--sim-queue-faults applies to the embedded queues, not SQS"
                );
            }
            aws_adapters(config, queues.visibility).await
        }
        Backend::Memory => Ok(memory_adapters(queues)),
        Backend::Sqlite(dir) => sqlite_adapters(dir, queues, group_commit),
    }
}

/// The database file of the durable embedded backend in `dir`.
pub fn database_path(dir: &Path) -> PathBuf {
    dir.join(DATABASE_FILE)
}

/// The durable embedded backend: one SQLite database under `dir` (created when missing).
fn sqlite_adapters(
    dir: &Path,
    queues: &QueueSettings,
    group_commit: Option<Duration>,
) -> anyhow::Result<Adapters> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    let path = database_path(dir);
    let db = match group_commit {
        Some(window) => SqliteDb::open_grouped(&path, window),
        None => SqliteDb::open(&path),
    }
    .with_context(|| format!("opening {}", path.display()))?;
    tracing::info!(event = "local_data_opened", path = %path.display());
    Ok(Adapters {
        store: Arc::new(SqliteStore::new(db.clone())),
        referrals_queue: queues.wrap(SqliteQueue::new(
            db.clone(),
            REFERRALS_QUEUE,
            queues.visibility,
            MAX_RECEIVE_COUNT,
        )),
        push_queue: queues.wrap(SqliteQueue::new(
            db.clone(),
            PUSH_QUEUE,
            queues.visibility,
            MAX_RECEIVE_COUNT,
        )),
        database: Some(db),
    })
}

fn memory_adapters(queues: &QueueSettings) -> Adapters {
    Adapters {
        store: Arc::new(EmbeddedStore::new()),
        referrals_queue: queues.wrap(EmbeddedQueue::new(
            REFERRALS_QUEUE,
            queues.visibility,
            MAX_RECEIVE_COUNT,
        )),
        push_queue: queues.wrap(EmbeddedQueue::new(
            PUSH_QUEUE,
            queues.visibility,
            MAX_RECEIVE_COUNT,
        )),
        database: None,
    }
}

/// DynamoDB and SQS, created when missing: the table `HUNTER_TABLE` and each queue under the name
/// that ends its URL (`hunter-referrals`, `hunter-dynamics-push` by default), with its DLQ.
async fn aws_adapters(config: &Config, visibility: Duration) -> anyhow::Result<Adapters> {
    let sdk = wiring::aws_sdk_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), config.table.clone());
    store
        .ensure_table()
        .await
        .with_context(|| format!("creating table {}", config.table))?;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let referrals_name = queue_name(config.referrals_queue_url.as_deref(), REFERRALS_QUEUE);
    let push_name = queue_name(config.dynamics_queue_url.as_deref(), PUSH_QUEUE);
    let referrals = SqsQueue::ensure(sqs.clone(), &referrals_name, visibility, MAX_RECEIVE_COUNT)
        .await
        .with_context(|| format!("creating queue {referrals_name}"))?;
    let pushes = SqsQueue::ensure(sqs, &push_name, visibility, MAX_RECEIVE_COUNT)
        .await
        .with_context(|| format!("creating queue {push_name}"))?;
    Ok(Adapters {
        store: Arc::new(store),
        referrals_queue: Arc::new(referrals),
        push_queue: Arc::new(pushes),
        database: None,
    })
}

/// The queue name that ends `url`, or `default`.
fn queue_name(url: Option<&str>, default: &str) -> String {
    url.and_then(|u| u.trim_end_matches('/').rsplit('/').next())
        .filter(|name| !name.is_empty())
        .unwrap_or(default)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::queue_name;

    #[test]
    fn when_a_queue_url_is_given_should_use_its_last_segment() {
        assert_eq!(
            queue_name(
                Some("http://localhost:4566/000000000000/prod-referrals"),
                "x"
            ),
            "prod-referrals"
        );
        assert_eq!(queue_name(Some("https://sqs/1/q/"), "x"), "q");
        assert_eq!(queue_name(None, "hunter-referrals"), "hunter-referrals");
    }
}
