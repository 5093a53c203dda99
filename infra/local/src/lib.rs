//! hunter-local: the production handlers on one machine, with simulators of the external
//! services, the embedded store and queues (or DynamoDB/SQS), and the API.

pub mod cli;
pub mod data_dir;
pub mod dead_letters;
pub mod dns;
pub mod refresh_token;
pub mod sign_in;
pub mod sim;
pub mod stack;
pub mod stage_timing;
pub mod summary;
pub mod ui;
pub mod webhooks;
pub mod worker;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use axum::response::IntoResponse as _;
use http_api::ApiState;
use hunter_core::ports::SyncTrigger;
use hunter_core::ports::TriggerError;
use hunter_core::secret::Secret;
use hunter_domain::model::SyncStatus;
use tokio::sync::mpsc;

use crate::cli::{Args, Command, QueueName};
use crate::stack::Stack;
use crate::summary::OnceSummary;

/// Runs hunter-local as `args` say: one sync with `--once`, else serve until interrupted.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match &args.command {
        None => {}
        Some(Command::Dlq { queue }) => return dlq(&args, *queue).await,
        Some(Command::Redrive { queue }) => return redrive(&args, *queue).await,
        Some(Command::Backup { file }) => return backup(&args, file),
        Some(Command::Webhooks { api_url, action }) => {
            return webhooks::command(&args, api_url, action).await;
        }
        Some(Command::SignIn) => {
            sign_in::sign_in(&args).await?;
            return Ok(ExitCode::SUCCESS);
        }
    }
    let stack = Arc::new(Stack::build(&args).await?);
    if args.once {
        let summary = run_once(&stack).await?;
        stack.commit().await?;
        println!("{}", serde_json::to_string(&summary)?);
        if matches!(args.backend.backend(), cli::Backend::Memory) {
            // What an in-memory run holds ends with the process: the system takes it back at
            // once, where freeing it record by record took ~3 % of a 20,000-referral run.
            std::mem::forget(stack);
        }
        return Ok(if summary.is_success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    serve(stack.clone(), &args).await?;
    stack.commit().await?;
    Ok(ExitCode::SUCCESS)
}

/// The store and the two queues of the backend the flags name, without simulators.
async fn backend(args: &Args) -> anyhow::Result<stack::Adapters> {
    let config =
        hunter_core::config::Config::from_env().context("reading HUNTER_* configuration")?;
    // Commits not grouped: a hunter-local serving the same directory may be writing too.
    stack::backend_adapters(
        &args.backend.backend(),
        &config,
        &stack::QueueSettings::of(args),
        None,
    )
    .await
}

/// `hunter-local dlq`: prints the dead letters of one queue or both.
async fn dlq(args: &Args, queue: Option<QueueName>) -> anyhow::Result<ExitCode> {
    let stack::Adapters {
        store,
        referrals_queue: referrals,
        push_queue: pushes,
        ..
    } = backend(args).await?;
    let mut lines = Vec::new();
    for name in queue.map_or(QueueName::ALL.to_vec(), |q| vec![q]) {
        let queue = match name {
            QueueName::Referrals => referrals.as_ref(),
            QueueName::DynamicsPush => pushes.as_ref(),
        };
        lines.extend(dead_letters::list(store.as_ref(), queue, name).await?);
    }
    dead_letters::print_table(&mut std::io::stdout().lock(), &lines)?;
    Ok(ExitCode::SUCCESS)
}

/// `hunter-local redrive`: moves a queue's dead letters back onto it.
async fn redrive(args: &Args, queue: QueueName) -> anyhow::Result<ExitCode> {
    let stack::Adapters {
        referrals_queue: referrals,
        push_queue: pushes,
        ..
    } = backend(args).await?;
    let target = match queue {
        QueueName::Referrals => referrals,
        QueueName::DynamicsPush => pushes,
    };
    let moved = target.redrive_dead_letters().await?;
    tracing::info!(
        event = "dead_letters_redriven",
        queue = queue.as_str(),
        moved
    );
    println!("moved {moved} dead letters back to {}", queue.as_str());
    Ok(ExitCode::SUCCESS)
}

/// `hunter-local backup FILE`: an online copy of the embedded database.
fn backup(args: &Args, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let cli::Backend::Sqlite(dir) = args.backend.backend() else {
        anyhow::bail!(
            "backup copies the embedded database: it needs --data-dir, not --in-memory or --aws"
        );
    };
    let path = stack::database_path(&dir);
    anyhow::ensure!(path.exists(), "no database at {}", path.display());
    let db = hunter_sqlite::SqliteDb::open(&path)?;
    db.backup_to(file)
        .with_context(|| format!("backing up to {}", file.display()))?;
    println!("backed up {} to {}", path.display(), file.display());
    Ok(ExitCode::SUCCESS)
}

/// One sync, every queue drained, and its summary.
pub async fn run_once(stack: &Arc<Stack>) -> anyhow::Result<OnceSummary> {
    let started = std::time::Instant::now();
    let fetch = if stack.ingest_beside_fetch {
        worker::run_sync_ingesting(stack).await?
    } else {
        worker::run_sync(stack, None).await?
    };
    let fetched_at = started.elapsed();
    worker::drain_referrals(stack).await?;
    let ingested_at = started.elapsed();
    worker::drain_pushes(stack).await?;
    // A failed pull is reported in the summary: the sync itself did its work.
    let crm = worker::pull_crm(stack).await;
    let stages = summary::StageTimes {
        fetch_ms: fetched_at.as_millis(),
        ingest_ms: (ingested_at - fetched_at).as_millis(),
        push_ms: (started.elapsed() - ingested_at).as_millis(),
        queue_ms: stack.queue_time.total().as_millis(),
        scan_ms: stack.scan_time.total().as_millis(),
    };
    let run = stack
        .store
        .get_sync_run(&fetch.run_id)
        .await?
        .with_context(|| format!("sync run {} is not stored", fetch.run_id))?;
    let mut summary = OnceSummary::new(&fetch, &run);
    let leads = worker::leads_changed_since(stack, run.started_at).await?;
    summary.leads = summary::LeadCounts::of(&leads);
    summary.dynamics_pushed = worker::count_status(&leads, SyncStatus::Synced);
    summary.dynamics_failed = worker::count_status(&leads, SyncStatus::Failed);
    summary.pushes_queued = stack.push_queue.depth().await?.visible;
    summary.dlq = worker::dead_letters(stack).await?;
    match crm {
        Some(Ok(pulled)) => summary.crm_pull = Some(pulled),
        Some(Err(err)) => {
            tracing::warn!(event = "local_crm_pull_failed", retryable = err.is_retryable(), error = %err);
            summary.crm_pull_error = Some(err.to_string());
        }
        None => {}
    }
    summary.duration_ms = started.elapsed().as_millis();
    summary.stages = stages;
    Ok(summary)
}

/// Serves the API on 127.0.0.1, syncs (after pulling CRM changes) every `--sync-interval`
/// seconds and on `POST /sync`.
async fn serve(stack: Arc<Stack>, args: &Args) -> anyhow::Result<()> {
    let (api_token, token_given) = match std::env::var("HUNTER_API_TOKEN") {
        Ok(token) if !token.trim().is_empty() => (Secret::new(token), true),
        _ => (
            Secret::new(uuid::Uuid::new_v4().simple().to_string()),
            false,
        ),
    };
    let (sync_requests, mut requested) = mpsc::channel::<Option<String>>(1);
    let state = api_state(&stack, api_token.clone(), sync_requests);
    let listener = tokio::net::TcpListener::bind((args.bind, args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.bind, args.port))?;
    let url = format!("http://{}/", listener.local_addr()?);
    // For the person at the terminal: the URL to open, signed in with a generated token. A token
    // given in HUNTER_API_TOKEN is theirs already and never printed; nothing here is logged.
    if token_given {
        println!("Hunter is running at {url}  (API token: the one in HUNTER_API_TOKEN)");
    } else {
        println!(
            "Hunter is running at {url}#token={}  (API token: {})",
            api_token.expose(),
            api_token.expose()
        );
    }
    tracing::info!(event = "hunter_local_ready", url = %url, backend = ?args.backend.backend());
    register_with_simulator(&stack, args, listener.local_addr()?).await;

    let syncing = stack.clone();
    // No sweep: the loop only runs the syncs asked for (`POST /sync`).
    let interval = (!args.no_sweep).then(|| Duration::from_secs(args.sync_interval.max(1)));
    tokio::spawn(async move {
        let mut next_run_id = None;
        if interval.is_none() {
            match requested.recv().await {
                Some(run_id) => next_run_id = run_id,
                None => return,
            }
        }
        loop {
            // pull-dynamics on the same schedule, first: what sellers changed in Dynamics is on
            // the leads by the time the sync is seen to finish.
            if let Some(Err(err)) = worker::pull_crm(&syncing).await {
                tracing::warn!(event = "local_crm_pull_failed", retryable = err.is_retryable(), error = %err);
            }
            match worker::run_sync(&syncing, next_run_id.take()).await {
                Ok(summary) => {
                    tracing::info!(event = "local_sync_finished", run_id = %summary.run_id, status = ?summary.status)
                }
                Err(err) => tracing::error!(event = "local_sync_failed", error = %err),
            }
            let request = match interval {
                Some(interval) => tokio::time::timeout(interval, requested.recv()).await,
                None => Ok(requested.recv().await),
            };
            match request {
                Ok(Some(run_id)) => next_run_id = run_id,
                Ok(None) => return,
                Err(_elapsed) => {}
            }
        }
    });
    let draining = stack.clone();
    tokio::spawn(async move { worker::drain_forever(&draining).await });

    let app = http_api::routes(state)
        .merge(ui::router(stack.ui.clone()))
        .layer(axum::middleware::from_fn_with_state(
            stack.clone(),
            commit_before_answering::<Arc<Stack>>,
        ));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

/// Registers hunter-local's webhook route with the built-in Partner Center simulator (unless
/// `--no-webhooks`), so that referral changes in it arrive within seconds. A failure is logged:
/// the sweep still fetches everything.
async fn register_with_simulator(stack: &Stack, args: &Args, listening: std::net::SocketAddr) {
    let Some(api) = stack.sim_webhooks.as_ref().filter(|_| !args.no_webhooks) else {
        return;
    };
    let host = if listening.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], listening.port()))
    } else {
        listening
    };
    let url = format!("http://{host}/{}", webhooks::WEBHOOK_ROUTE);
    if let Err(err) = webhooks::register(api, stack.store.as_ref(), &url).await {
        tracing::error!(event = "webhook_registration_failed", error = %format!("{err:#}"));
    }
}

/// What the API makes durable before it answers a request that may have written.
pub trait CommitWrites: Clone + Send + Sync + 'static {
    /// Makes every write so far durable.
    fn commit_writes(&self) -> impl Future<Output = anyhow::Result<()>> + Send;
}

impl CommitWrites for Arc<Stack> {
    async fn commit_writes(&self) -> anyhow::Result<()> {
        self.commit().await
    }
}

/// Answers a request that may have written (any method but GET, HEAD, OPTIONS) only once its
/// writes are committed, so that an accepted "Sync now", "Push now" or "Rescan" survives a crash.
/// A failed commit answers 503 `store_unavailable` instead (the writes were rolled back).
async fn commit_before_answering<D: CommitWrites>(
    axum::extract::State(durable): axum::extract::State<D>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let writes = !request.method().is_safe();
    let response = next.run(request).await;
    if writes && let Err(err) = durable.commit_writes().await {
        tracing::error!(event = "local_api_commit_failed", error = %err);
        return http_api::ApiError::unavailable(
            "store_unavailable",
            "the change could not be saved; try again",
        )
        .into_response();
    }
    response
}

/// Ctrl-C, or SIGTERM (a service manager stopping hunter-local).
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!(event = "hunter_local_stopping");
}

/// The API over `stack`; `POST /sync` hands its run id (`None`: the loop picks one) to the sync
/// loop through `sync_requests`.
pub fn api_state(
    stack: &Stack,
    api_token: Secret,
    sync_requests: mpsc::Sender<Option<String>>,
) -> ApiState {
    ApiState {
        store: stack.store.clone(),
        referrals_queue: stack.referrals_queue.clone(),
        push_queue: stack.push_queue.clone(),
        sync: Arc::new(LoopSyncTrigger(sync_requests)),
        scanner: stack.scanner.clone(),
        rules: Arc::new(stack.rules.clone()),
        api_token,
        access_tokens: stack.access_tokens.clone(),
        // The UI is served from the API's own origin.
        ui_origins: Vec::new(),
        webhooks: Some(http_api::WebhookIntake::new(
            stack.webhook_verifier.clone(),
            stack.source.clone(),
        )),
    }
}

/// [`SyncTrigger`] of hunter-local: wakes the sync loop, which holds at most one request.
#[derive(Debug)]
struct LoopSyncTrigger(mpsc::Sender<Option<String>>);

#[async_trait]
impl SyncTrigger for LoopSyncTrigger {
    async fn request_sync(&self, run_id: Option<&str>) -> Result<(), TriggerError> {
        self.0
            .try_send(run_id.map(str::to_owned))
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => TriggerError::Busy,
                mpsc::error::TrySendError::Closed(_) => {
                    TriggerError::Unavailable("the sync loop has stopped".to_owned())
                }
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;

    use super::*;

    /// Counts its commits; fails them when told to.
    #[derive(Clone, Default)]
    struct Commits {
        made: Arc<AtomicUsize>,
        fail: bool,
    }

    impl CommitWrites for Commits {
        async fn commit_writes(&self) -> anyhow::Result<()> {
            self.made.fetch_add(1, Ordering::SeqCst);
            anyhow::ensure!(!self.fail, "disk full");
            Ok(())
        }
    }

    /// An API with one route that "writes" (`POST /x`, 202) and reads (`GET /x`) behind the
    /// middleware; its base URL.
    async fn serve(commits: Commits) -> String {
        let app = Router::new()
            .route(
                "/x",
                get(|| async { "read" }).post(|| async { StatusCode::ACCEPTED }),
            )
            .layer(axum::middleware::from_fn_with_state(
                commits,
                commit_before_answering::<Commits>,
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/x", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test]
    async fn a_write_is_answered_once_committed_and_a_read_commits_nothing() {
        let commits = Commits::default();
        let url = serve(commits.clone()).await;
        let client = reqwest::Client::new();
        assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
        assert_eq!(commits.made.load(Ordering::SeqCst), 0);
        assert_eq!(client.post(&url).send().await.unwrap().status(), 202);
        assert_eq!(commits.made.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_write_whose_commit_fails_is_answered_503_with_the_api_error_shape() {
        let commits = Commits {
            fail: true,
            ..Commits::default()
        };
        let url = serve(commits.clone()).await;
        let client = reqwest::Client::new();
        let answer = client.post(&url).send().await.unwrap();
        assert_eq!(answer.status(), 503);
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "store_unavailable");
        assert_eq!(commits.made.load(Ordering::SeqCst), 1);
        // Reads do not depend on committing.
        assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    }
}
