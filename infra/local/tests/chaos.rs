//! Chaos end to end: `hunter-local` killed with SIGKILL and restarted mid-run, against
//! simulators that outlive it (they run in this test process), with every fault switched on:
//! Partner Center answering 500/503 and 429 (Retry-After 1 s), slow, with access tokens that
//! expire every few pages; Dataverse throttling at a scaled service-protection limit and failing
//! some requests; the embedded queues delivering some messages twice and batches in any order.
//! While it runs the test changes referrals in Partner Center, some with a new `updatedDateTime`
//! and some committed late (a few minutes older than the newest the sync has seen). A final
//! `hunter-local --once` syncs and drains everything; then the test reads the data directory's
//! database and checks, printing a JSON invariant report first (run with `--nocapture`):
//! 1. every referral Partner Center holds is stored exactly once, as its newest version, with
//!    the eligibility the rules give that version;
//! 2. every lead that should be in Dynamics is there exactly once (by alternate key) with the
//!    lead's newest data, no lead is left pending or failed, and every eligible referral counts
//!    in its lead with its newest version;
//! 3. no message is lost: both queues are empty, nothing is dead-lettered, and every referral a
//!    sync run fetched was ingested in that run (runs while Partner Center did not change);
//! 4. no secret (client secrets, refresh tokens, access tokens, the API token) reaches a log line.
//!
//! The first kill lands inside a message: the test holds its DNS server's answers until a
//! domain scan waits for one. The second lands while leads are being pushed. The report also
//! shows, without asserting, leads whose domain was never scanned (`observations`).
//!
//! `HUNTER_CHAOS_REFERRALS` sets the size (default 2000; `make test-long` runs 20000).
//! `chaos_on_aws` checks the same against DynamoDB and SQS on moto (`scripts/with-moto.sh`), at
//! `HUNTER_CHAOS_AWS_REFERRALS` (default 300), with three `hunter-local --once --aws` runs and
//! changes between them instead of kills (SQS hides a received message for 360 s).
//! `HUNTER_CHAOS_KEEP=1` keeps the data directory and the logs of a passing run (a failing run
//! always keeps them).

#![allow(clippy::unwrap_used, reason = "a test: a failure is a panic")]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use hunter_core::ports::{LeadQuery, MAX_PAGE_SIZE, Queue, ReferralQuery, Store};
use hunter_core::secret::Secret;
use hunter_domain::crm::DynamicsMapping;
use hunter_domain::model::{Lead, ReferralRecord, SyncStatus};
use hunter_domain::referral::parse_referral_value;
use hunter_domain::rules::{Eligibility, Rules, SkipReason, eligibility, extract_domain};
use hunter_domain::sync_cursor::{Lease, SYNC_STATE_KEY, SyncCursor};
use hunter_local::cli::QueueName;
use hunter_local::dns::{DnsSim, RunningDns};
use hunter_local::sim::control::SimControl as _;
use hunter_local::sim::dataverse::{
    DataverseConfig, DataverseSim, Faults as DataverseFaults, Limits, RunningDataverse,
};
use hunter_local::sim::partner_center::{Faults, PartnerCenterSim, RunningSim, SimConfig};
use hunter_local::sim::seed::generate_referrals;
use hunter_local::stack::{DATABASE_FILE, MAX_RECEIVE_COUNT, PUSH_QUEUE, REFERRALS_QUEUE};
use hunter_sqlite::{SqliteDb, SqliteQueue, SqliteStore};
use serde_json::{Value, json};

/// Prefixes of the access and refresh tokens the simulators issue (`{prefix}{32 hex digits}`).
const TOKEN_PREFIXES: [(&str, &str); 3] = [
    ("sim-at-", "Partner Center access token"),
    ("sim-dv-", "Dataverse access token"),
    ("sim-rt-", "Partner Center refresh token"),
];
/// How far before the newest `updatedDateTime` the sync has seen a late commit is dated (well
/// inside hunter's 10-minute look-back).
const LATE_BY: chrono::Duration = chrono::Duration::minutes(3);
/// Status changes the test makes: (status, substatus); most keep the referral eligible.
const TRANSITIONS: [(&str, &str); 6] = [
    ("New", "Received"),
    ("Active", "Accepted"),
    ("Active", "Accepted"),
    ("New", "Pending"),
    ("Closed", "Won"),
    ("Closed", "Lost"),
];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Credentials hunter-local is given; each is unique to the run so a log search means something.
struct Secrets {
    api_token: String,
    pc_client_id: String,
    pc_client_secret: String,
    pc_refresh_token: String,
    d365_client_id: String,
    d365_client_secret: String,
}

impl Secrets {
    fn new() -> Self {
        let unique = |what: &str| format!("chaos-{what}-{}", uuid::Uuid::new_v4().simple());
        Self {
            api_token: unique("api-token"),
            pc_client_id: "chaos-partner-center-app".to_owned(),
            pc_client_secret: unique("pc-secret"),
            pc_refresh_token: unique("pc-refresh"),
            d365_client_id: "chaos-dataverse-app".to_owned(),
            d365_client_secret: unique("d365-secret"),
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HUNTER_API_TOKEN", self.api_token.clone()),
            ("HUNTER_PC_CLIENT_ID", self.pc_client_id.clone()),
            ("HUNTER_PC_CLIENT_SECRET", self.pc_client_secret.clone()),
            ("HUNTER_PC_REFRESH_TOKEN", self.pc_refresh_token.clone()),
            ("HUNTER_D365_CLIENT_ID", self.d365_client_id.clone()),
            ("HUNTER_D365_CLIENT_SECRET", self.d365_client_secret.clone()),
            ("HUNTER_D365_TENANT", "chaos-tenant".to_owned()),
        ]
    }

    /// What must never be logged, by name.
    fn named(&self) -> Vec<(&'static str, String)> {
        vec![
            ("API token", self.api_token.clone()),
            (
                "Partner Center client secret",
                self.pc_client_secret.clone(),
            ),
            (
                "Partner Center refresh token",
                self.pc_refresh_token.clone(),
            ),
            ("Dataverse client secret", self.d365_client_secret.clone()),
        ]
    }
}

/// Where the store and queues live.
#[derive(Clone)]
enum Backend {
    Sqlite,
    /// moto at `moto`; table and queue names end in `suffix`.
    Aws {
        moto: String,
        suffix: String,
    },
}

impl Backend {
    fn args(&self, data_dir: &Path) -> Vec<String> {
        let data_dir = ["--data-dir".to_owned(), data_dir.display().to_string()];
        match self {
            Backend::Sqlite => data_dir.to_vec(),
            // The rotating Partner Center refresh token is kept in the data directory.
            Backend::Aws { .. } => [vec!["--aws".to_owned()], data_dir.to_vec()].concat(),
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Backend::Sqlite => Vec::new(),
            Backend::Aws { moto, suffix } => vec![
                ("AWS_ENDPOINT_URL", moto.clone()),
                ("AWS_REGION", "us-east-1".to_owned()),
                ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
                ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
                ("HUNTER_TABLE", format!("chaos-{suffix}")),
                (
                    "HUNTER_REFERRALS_QUEUE_URL",
                    format!("{moto}/123456789012/chaos-referrals-{suffix}"),
                ),
                (
                    "HUNTER_DYNAMICS_QUEUE_URL",
                    format!("{moto}/123456789012/chaos-push-{suffix}"),
                ),
            ],
        }
    }
}

/// One hunter-local process, its output in files; killed (SIGKILL) when dropped.
struct Proc {
    child: Child,
    label: String,
    stdout: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!("hunter-local {} exited: {status}", self.label);
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix), and the exit reaped.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// The API of the serving process, once it printed its URL.
    async fn api(&mut self, token: &str) -> Api {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.assert_running();
            let printed = std::fs::read_to_string(&self.stdout).unwrap_or_default();
            if let Some(url) = printed
                .split_whitespace()
                .find(|w| w.starts_with("http://"))
            {
                return Api {
                    http: reqwest::Client::new(),
                    base: format!("{}/api/v1", url.trim_end_matches('/')),
                    token: token.to_owned(),
                };
            }
            assert!(
                Instant::now() < deadline,
                "{} printed no URL: {printed}",
                self.label
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The served API with the bearer token.
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn get(&self, path: &str) -> Option<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        response.status().is_success().then_some(())?;
        response.json().await.ok()
    }

    /// Sync runs, newest first.
    async fn runs(&self) -> Vec<Value> {
        self.get("/sync-runs?limit=200")
            .await
            .and_then(|page| page["items"].as_array().cloned())
            .unwrap_or_default()
    }
}

fn parse_time(value: &Value) -> Option<DateTime<Utc>> {
    value
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// The succeeded runs that started after `after`.
fn succeeded_since(runs: &[Value], after: DateTime<Utc>) -> usize {
    runs.iter()
        .filter(|r| r["status"] == "succeeded")
        .filter(|r| parse_time(&r["startedAt"]).is_some_and(|t| t > after))
        .count()
}

/// The stored sync cursor (watermark, continuation, lease).
async fn cursor(store: &dyn Store) -> SyncCursor {
    match store.get_state(SYNC_STATE_KEY).await.unwrap() {
        Some(state) => serde_json::from_value(state.value).unwrap(),
        None => SyncCursor::default(),
    }
}

/// A lease on the sync that still holds: a sync is under way (or its process was killed).
async fn live_lease(store: &dyn Store) -> Option<Lease> {
    cursor(store)
        .await
        .lease
        .filter(|lease| lease.is_live(Utc::now()))
}

/// How hard the simulators push back.
#[derive(Clone, Copy)]
struct Tuning {
    /// Partner Center's page size.
    page_size: usize,
    /// Partner Center's share of 500/503 answers, and of 429s.
    pc_error_rate: f64,
    pc_throttle_rate: f64,
    /// Requests Dataverse accepts per second.
    dataverse_per_second: u32,
}

impl Tuning {
    /// The embedded backend at `n` referrals: pushing every lead is throttled all along.
    fn embedded(n: usize) -> Self {
        Self {
            page_size: 100,
            pc_error_rate: 0.05,
            pc_throttle_rate: 0.05,
            dataverse_per_second: u32::try_from(n / 40).unwrap().max(50),
        }
    }

    /// moto is slow and a small run fetches few pages: smaller pages, more faults.
    fn aws() -> Self {
        Self {
            page_size: 20,
            pc_error_rate: 0.1,
            pc_throttle_rate: 0.1,
            dataverse_per_second: 10,
        }
    }
}

/// Everything the test runs besides hunter-local: the simulators and what it noted.
struct Chaos {
    n: usize,
    root: PathBuf,
    data_dir: PathBuf,
    backend: Backend,
    secrets: Secrets,
    pc: RunningSim,
    dv: RunningDataverse,
    dns: RunningDns,
    rules: Rules,
    mapping: DynamicsMapping,
    rng: fastrand::Rng,
    started: Instant,
    logs: Vec<PathBuf>,
    timeline: Vec<Value>,
    /// Referral id → the versions the test wrote (updatedDateTime, status, substatus, deal).
    mutated: BTreeMap<String, Vec<Value>>,
    late: BTreeSet<String>,
    /// When Partner Center changed (a sync run fetching then may see a referral twice).
    changes: Vec<DateTime<Utc>>,
    kills: Vec<Value>,
    processes: u32,
}

impl Chaos {
    async fn new(n: usize, backend: Backend, tuning: Tuning) -> Self {
        let root = std::env::temp_dir().join(format!(
            "hunter-chaos-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(root.join("logs")).unwrap();
        let secrets = Secrets::new();
        let mapping = DynamicsMapping::embedded().clone();
        let mut rng = fastrand::Rng::with_seed(0xC4A05);
        let referrals = generate_referrals(n, 4242);
        let dns = DnsSim::seeded(&referrals, false)
            .serve(([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        let pc_config = SimConfig {
            page_size: tuning.page_size,
            initial_refresh_token: Secret::new(secrets.pc_refresh_token.clone()),
            faults: Faults {
                error_rate: tuning.pc_error_rate,
                throttle_rate: tuning.pc_throttle_rate,
                retry_after_secs: 1,
                latency_ms: 20,
                // 20–50 ms per request: 20 always, up to 30 more on the next requests.
                slow_next_ms: (0..5_000).map(|_| rng.u64(0..=30)).collect(),
                expire_token_after_pages: Some(4),
                ..Faults::default()
            },
            rng_seed: 7,
            ..SimConfig::default()
        };
        let pc = PartnerCenterSim::new(referrals, pc_config)
            .serve(([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        let dv_config = DataverseConfig {
            key_column: mapping.key_column().to_owned(),
            limits: Limits {
                max_requests: tuning.dataverse_per_second,
                window: Duration::from_secs(1),
                retry_after_secs: 1,
                ..Limits::default()
            },
            faults: DataverseFaults {
                error_rate: 0.03,
                retry_after_secs: 1,
                ..DataverseFaults::default()
            },
            client_id: secrets.d365_client_id.clone(),
            client_secret: Secret::new(secrets.d365_client_secret.clone()),
            rng_seed: 11,
            ..DataverseConfig::default()
        };
        let dv = DataverseSim::new(dv_config)
            .serve(([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        Self {
            n,
            data_dir: root.join("data"),
            root,
            backend,
            secrets,
            pc,
            dv,
            dns,
            rules: Rules::load(None).unwrap(),
            mapping,
            rng,
            started: Instant::now(),
            logs: Vec::new(),
            timeline: Vec::new(),
            mutated: BTreeMap::new(),
            late: BTreeSet::new(),
            changes: Vec::new(),
            kills: Vec::new(),
            processes: 0,
        }
    }

    fn elapsed(&self) -> f64 {
        (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0
    }

    /// Notes `event` in the report's timeline (and on stdout, to follow a long run).
    fn note(&mut self, event: &str, details: Value) {
        let mut entry = json!({"t": self.elapsed(), "event": event});
        if let (Value::Object(entry), Value::Object(details)) = (&mut entry, details) {
            entry.extend(details);
        }
        println!("chaos: {entry}");
        self.timeline.push(entry);
    }

    /// Starts hunter-local with the test's services, backend and faults, and `extra` flags.
    fn spawn(&mut self, what: &str, extra: &[&str]) -> Proc {
        self.processes += 1;
        let label = format!("{}-{what}", self.processes);
        let stdout = self.root.join("logs").join(format!("{label}.stdout"));
        let stderr = self.root.join("logs").join(format!("{label}.stderr"));
        self.logs.push(stdout.clone());
        self.logs.push(stderr.clone());
        let mut command = Command::new(env!("CARGO_BIN_EXE_hunter-local"));
        command
            .args(self.backend.args(&self.data_dir))
            .args(["--partner-center-url", &self.pc.base_url])
            .args(["--partner-center-token-url", &self.pc.token_url])
            .args(["--dynamics-url", &self.dv.base_url])
            .args(["--dynamics-token-url", &self.dv.token_url])
            .args(["--dns", &self.dns.addr.to_string()])
            .args([
                "--port",
                "0",
                "--sync-interval",
                "2",
                "--queue-visibility",
                "3",
            ])
            .arg("--sim-queue-faults")
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("HUNTER_SYNC_OVERLAP")
            .env_remove("HUNTER_DATA_DIR")
            .env_remove("HUNTER_QUEUE_VISIBILITY")
            .envs(self.secrets.env())
            .envs(self.backend.env())
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap());
        let child = command.spawn().unwrap();
        self.note("started", json!({"process": label, "args": extra}));
        Proc {
            child,
            label,
            stdout,
        }
    }

    /// Kills `proc` with SIGKILL, noting why and what it was doing.
    fn kill(&mut self, proc: &mut Proc, reason: &str, state: Value) {
        proc.assert_running();
        proc.kill();
        let kill =
            json!({"t": self.elapsed(), "process": proc.label, "reason": reason, "state": state});
        self.note("killed", kill.clone());
        self.kills.push(kill);
    }

    /// The ids of the referrals Partner Center holds (those that have one).
    fn ids(&self) -> Vec<String> {
        self.pc
            .sim
            .referrals()
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect()
    }

    fn pick(&mut self, from: &[String], count: usize) -> Vec<String> {
        let mut from = from.to_vec();
        self.rng.shuffle(&mut from);
        from.truncate(count);
        from
    }

    /// Ids the test never changed whose newest version is older than `before`.
    fn untouched_older_than(&self, before: DateTime<Utc>) -> Vec<String> {
        self.pc
            .sim
            .referrals()
            .iter()
            .filter(|r| parse_time(&r["updatedDateTime"]).is_some_and(|t| t < before))
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .filter(|id| !self.mutated.contains_key(id))
            .collect()
    }

    /// Partner Center gets a new version of each of `ids`, dated `updated` (each a few
    /// milliseconds apart): another status, substatus and deal value, a new eTag.
    fn mutate(&mut self, kind: &str, ids: &[String], updated: DateTime<Utc>) {
        let current: HashMap<String, Value> = self
            .pc
            .sim
            .referrals()
            .into_iter()
            .filter_map(|r| Some((r["id"].as_str()?.to_owned(), r)))
            .collect();
        let mut changed = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let Some(mut referral) = current.get(id).cloned() else {
                continue;
            };
            let (status, substatus) = TRANSITIONS[self.rng.usize(..TRANSITIONS.len())];
            let at = updated + chrono::Duration::milliseconds(i64::try_from(i).unwrap());
            referral["updatedDateTime"] = json!(at.to_rfc3339_opts(SecondsFormat::Micros, true));
            referral["status"] = json!(status);
            referral["substatus"] = json!(substatus);
            referral["eTag"] = json!(format!("\"{}\"", uuid::Uuid::new_v4()));
            if referral["details"].is_object() {
                referral["details"]["dealValue"] = json!(self.rng.u32(1..400) * 250);
            }
            self.mutated.entry(id.clone()).or_default().push(json!([
                referral["updatedDateTime"],
                status,
                substatus,
                referral["details"]["dealValue"]
            ]));
            changed.push(referral);
        }
        let count = changed.len();
        self.changes.push(Utc::now());
        self.pc.sim.upsert_referrals(changed);
        self.changes.push(Utc::now());
        self.note(
            "mutated",
            json!({"kind": kind, "referrals": count, "updatedDateTime": updated.to_rfc3339_opts(SecondsFormat::Millis, true)}),
        );
    }

    /// Late commits: `count` referrals the test never changed get a new version dated
    /// [`LATE_BY`] before `watermark` (the newest `updatedDateTime` the sync has seen).
    fn commit_late(&mut self, watermark: DateTime<Utc>, count: usize) {
        let at = watermark - LATE_BY;
        let candidates = self.untouched_older_than(at - chrono::Duration::seconds(10));
        let ids = self.pick(&candidates, count);
        self.mutate("late", &ids, at - chrono::Duration::seconds(5));
        self.late.extend(ids);
    }

    /// How many leads the rules make of the referrals Partner Center holds now (distinct
    /// domains of the eligible ones).
    fn expected_leads(&self) -> usize {
        let mut domains = BTreeSet::new();
        for raw in self.pc.sim.referrals() {
            let Ok(referral) = parse_referral_value(raw) else {
                continue;
            };
            let domain = extract_domain(&referral, &self.rules).map(|d| d.domain);
            if eligibility(&referral, domain.as_ref(), &self.rules) == Eligibility::Eligible {
                domains.extend(domain);
            }
        }
        domains.len()
    }

    fn dynamics_leads(&self) -> usize {
        self.dv.sim.records(self.mapping.entity_set()).len()
    }

    /// The final `hunter-local --once`: its exit status and summary.
    async fn run_once(&mut self) -> (ExitStatus, Value) {
        let mut once = self.spawn("once", &["--once"]);
        let deadline = Instant::now() + Duration::from_secs(600 + self.n as u64 / 5);
        let status = loop {
            if let Some(status) = once.exited() {
                break status;
            }
            assert!(Instant::now() < deadline, "hunter-local --once did not end");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let printed = std::fs::read_to_string(&once.stdout).unwrap();
        let summary = printed
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str::<Value>(line).ok())
            .unwrap_or_else(|| json!({"unreadable": printed}));
        self.note(
            "once_finished",
            json!({"exit": status.code(), "summary": summary}),
        );
        (status, summary)
    }

    /// Waits until no sync holds the lease (at most until the lease of a killed process runs
    /// out); how long it waited.
    async fn wait_for_lease(&mut self, store: &dyn Store) -> f64 {
        let waited = Instant::now();
        if let Some(lease) = live_lease(store).await {
            self.note(
                "waiting_for_lease",
                json!({"runId": lease.run_id, "expiresAt": lease.expires_at}),
            );
            while live_lease(store).await.is_some() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        waited.elapsed().as_secs_f64()
    }
}

// ---------------------------------------------------------------------------------------------
// The invariants
// ---------------------------------------------------------------------------------------------

/// At most this many examples per list in the report.
const EXAMPLES: usize = 20;

fn examples(items: &[Value]) -> Value {
    json!({"count": items.len(), "examples": items.iter().take(EXAMPLES).collect::<Vec<_>>()})
}

async fn all_referrals(store: &dyn Store) -> Vec<ReferralRecord> {
    let mut all = Vec::new();
    let mut query = ReferralQuery {
        limit: Some(MAX_PAGE_SIZE),
        ..ReferralQuery::default()
    };
    loop {
        let page = store.list_referrals(&query).await.unwrap();
        all.extend(page.items);
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return all,
        }
    }
}

async fn all_leads(store: &dyn Store) -> Vec<Lead> {
    let mut all = Vec::new();
    let mut query = LeadQuery {
        limit: Some(MAX_PAGE_SIZE),
        ..LeadQuery::default()
    };
    loop {
        let page = store.list_leads(&query).await.unwrap();
        all.extend(page.items);
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return all,
        }
    }
}

fn version_of(
    updated: Option<DateTime<Utc>>,
    status: Option<&str>,
    substatus: Option<&str>,
) -> Value {
    json!({
        "updatedDateTime": updated.map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true)),
        "status": status,
        "substatus": substatus,
    })
}

/// Invariant 1: every referral Partner Center holds is stored exactly once under its id, as its newest
/// version, eligible or skipped with the reason the rules give; nothing else is stored.
async fn referrals_invariant(chaos: &Chaos, store: &dyn Store) -> Value {
    let stored = all_referrals(store).await;
    let mut by_id: HashMap<&str, Vec<&ReferralRecord>> = HashMap::new();
    for record in &stored {
        by_id.entry(record.id.as_str()).or_default().push(record);
    }
    let (mut missing, mut duplicated, mut stale, mut wrong_decision, mut undecided) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut sim_ids = BTreeSet::new();
    let mut without_id = 0;
    let sim = chaos.pc.sim.referrals();
    for raw in &sim {
        let Some(id) = raw["id"].as_str() else {
            without_id += 1;
            continue;
        };
        sim_ids.insert(id.to_owned());
        let records = by_id.get(id).map(Vec::as_slice).unwrap_or_default();
        let record = match records {
            [] => {
                missing.push(json!(id));
                continue;
            }
            [record] => *record,
            more => {
                duplicated.push(json!({"id": id, "times": more.len()}));
                continue;
            }
        };
        if record.eligible == record.skip_reason.is_some() {
            undecided.push(
                json!({"id": id, "eligible": record.eligible, "skipReason": record.skip_reason}),
            );
        }
        let Ok(referral) = parse_referral_value(raw.clone()) else {
            if record.skip_reason != Some(SkipReason::InvalidPayload) {
                wrong_decision.push(
                    json!({"id": id, "expected": "invalid_payload", "stored": record.skip_reason}),
                );
            }
            continue;
        };
        let newest = (
            referral.updated,
            &referral.status,
            &referral.substatus,
            referral.deal_value,
            &referral.etag,
        );
        let kept = (
            record.updated_date_time,
            &record.status,
            &record.substatus,
            record.deal_value,
            &record.etag,
        );
        if newest != kept {
            stale.push(json!({
                "id": id,
                "partnerCenter": version_of(referral.updated, referral.status.as_deref(), referral.substatus.as_deref()),
                "stored": version_of(record.updated_date_time, record.status.as_deref(), record.substatus.as_deref()),
                "versionsWrittenByTest": chaos.mutated.get(id),
                "lateCommit": chaos.late.contains(id),
            }));
        }
        let extracted = extract_domain(&referral, &chaos.rules);
        let domain = extracted.as_ref().map(|d| d.domain.clone());
        let (eligible, reason) = match eligibility(&referral, domain.as_ref(), &chaos.rules) {
            Eligibility::Eligible => (true, None),
            Eligibility::Skipped(reason) => (false, Some(reason)),
        };
        if (record.eligible, &record.skip_reason, &record.domain) != (eligible, &reason, &domain) {
            wrong_decision.push(json!({
                "id": id,
                "expected": {"eligible": eligible, "skipReason": reason, "domain": domain},
                "stored": {"eligible": record.eligible, "skipReason": record.skip_reason, "domain": record.domain},
            }));
        }
    }
    let invalid_without_id = stored
        .iter()
        .filter(|r| !sim_ids.contains(&r.id) && r.skip_reason == Some(SkipReason::InvalidPayload))
        .count();
    let extra: Vec<Value> = stored
        .iter()
        .filter(|r| !sim_ids.contains(&r.id) && r.skip_reason != Some(SkipReason::InvalidPayload))
        .map(|r| json!(r.id))
        .collect();
    let eligible = stored.iter().filter(|r| r.eligible).count();
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    for record in stored.iter().filter(|r| !r.eligible) {
        let reason = record.skip_reason.as_ref().map_or("none".to_owned(), |r| {
            serde_json::to_value(r)
                .unwrap()
                .as_str()
                .unwrap_or_default()
                .to_owned()
        });
        *skipped.entry(reason).or_default() += 1;
    }
    let ok = missing.is_empty()
        && duplicated.is_empty()
        && stale.is_empty()
        && wrong_decision.is_empty()
        && undecided.is_empty()
        && extra.is_empty()
        && invalid_without_id == without_id;
    json!({
        "ok": ok,
        "partnerCenter": sim.len(),
        "stored": stored.len(),
        "eligible": eligible,
        "skipped": skipped,
        "changedByTest": chaos.mutated.len(),
        "lateCommits": chaos.late.len(),
        "missing": examples(&missing),
        "duplicated": examples(&duplicated),
        "notNewest": examples(&stale),
        "wrongDecision": examples(&wrong_decision),
        "neitherEligibleNorSkipped": examples(&undecided),
        "notInPartnerCenter": examples(&extra),
        "withoutId": {"partnerCenter": without_id, "storedAsInvalid": invalid_without_id},
    })
}

/// The Dataverse column the mapping fills from Hunter field `source`.
fn column_of(mapping: &DynamicsMapping, source: &str) -> String {
    mapping
        .columns()
        .iter()
        .find(|c| c.source.as_deref() == Some(source))
        .map(|c| c.name.clone())
        .unwrap_or_else(|| panic!("the mapping has no column for {source}"))
}

/// Invariant 2: every lead that should be in Dynamics (synced) is there exactly once by alternate key,
/// with the lead's newest data; none is left pending or failed; every eligible referral counts
/// in its lead with its newest version, and each lead counts exactly its contributions.
async fn leads_invariant(chaos: &Chaos, store: &dyn Store) -> Value {
    let leads = all_leads(store).await;
    let mapping = &chaos.mapping;
    let key_column = mapping.key_column();
    let records = chaos.dv.sim.records(mapping.entity_set());
    let mut by_key: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    let mut keyless = 0;
    for record in &records {
        match record[key_column].as_str() {
            Some(key) => by_key.entry(key.to_owned()).or_default().push(record),
            None => keyless += 1,
        }
    }
    let columns = [
        ("score", column_of(mapping, "score")),
        ("deal_value", column_of(mapping, "deal_value")),
        ("referral_id", column_of(mapping, "referral_id")),
        ("segment", column_of(mapping, "segment")),
    ];
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut not_pushed, mut version_behind, mut differs) = (Vec::new(), Vec::new(), Vec::new());
    let mut expected_keys = BTreeSet::new();
    for lead in &leads {
        *by_status.entry(lead.sync_status.as_str()).or_default() += 1;
        match lead.sync_status {
            SyncStatus::Synced => {
                expected_keys.insert(lead.domain.as_str().to_owned());
            }
            SyncStatus::Skipped => continue,
            SyncStatus::Pending | SyncStatus::Failed => {
                // What it takes to tell why: the lead as listed and as read by key (an index
                // copy may lag), its versions and times, and what happened to it.
                let stored = store.get_lead(&lead.domain).await.unwrap();
                let audit = store.list_audit(&lead.domain, 20).await.unwrap();
                not_pushed.push(json!({"domain": lead.domain, "syncStatus": lead.sync_status, "lastError": lead.last_error, "attempts": lead.sync_attempts,
                    "contentVersion": lead.content_version, "syncedVersion": lead.synced_version,
                    "updatedAt": lead.updated_at, "lastSyncedAt": lead.last_synced_at, "scannedAt": lead.scanned_at,
                    "readByKey": stored.map(|l| json!({"syncStatus": l.sync_status, "attempts": l.sync_attempts,
                        "contentVersion": l.content_version, "syncedVersion": l.synced_version, "updatedAt": l.updated_at})),
                    "audit": audit.iter().map(|e| json!({"at": e.at, "action": e.action, "result": e.result, "detail": e.detail})).collect::<Vec<_>>()}));
                continue;
            }
        }
        if lead.synced_version != Some(lead.content_version) {
            version_behind.push(json!({"domain": lead.domain, "contentVersion": lead.content_version, "syncedVersion": lead.synced_version}));
        }
        let Some([record]) = by_key.get(lead.domain.as_str()).map(Vec::as_slice) else {
            continue;
        };
        let expected = [
            json!(lead.score),
            json!(lead.deal_value()),
            json!(lead.latest.as_ref().map(|l| l.id.clone())),
            json!(lead.segment.map(|s| s.as_str())),
        ];
        for ((field, column), want) in columns.iter().zip(expected) {
            let got = record.get(column.as_str()).cloned().unwrap_or(Value::Null);
            let same = match (want.as_f64(), got.as_f64()) {
                (Some(a), Some(b)) => (a - b).abs() < 1e-6,
                _ => want == got,
            };
            if !same {
                differs.push(json!({"domain": lead.domain, "field": field, "column": column, "lead": want, "dynamics": got}));
            }
        }
    }
    let keys: BTreeSet<String> = by_key.keys().cloned().collect();
    let duplicated: Vec<Value> = by_key
        .iter()
        .filter(|(_, rows)| rows.len() > 1)
        .map(|(key, rows)| json!({"key": key, "records": rows.len()}))
        .collect();
    let missing: Vec<Value> = expected_keys.difference(&keys).map(|k| json!(k)).collect();
    let unexpected: Vec<Value> = keys.difference(&expected_keys).map(|k| json!(k)).collect();

    // The referrals' side: every eligible referral counts in its lead as its newest version.
    let referrals: HashMap<String, ReferralRecord> = all_referrals(store)
        .await
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    let lead_domains: BTreeSet<&str> = leads.iter().map(|l| l.domain.as_str()).collect();
    let (mut uncounted, mut miscounted) = (Vec::new(), Vec::new());
    for record in referrals.values().filter(|r| r.eligible) {
        let Some(domain) = &record.domain else {
            uncounted.push(json!({"id": record.id, "why": "eligible without a domain"}));
            continue;
        };
        if !lead_domains.contains(domain.as_str()) {
            uncounted.push(json!({"id": record.id, "domain": domain, "why": "no lead"}));
            continue;
        }
        match store.get_contribution(domain, &record.id).await.unwrap() {
            None => uncounted
                .push(json!({"id": record.id, "domain": domain, "why": "not counted in its lead"})),
            // What the lead shows of the referral must be its newest version's (a version
            // that changed only what a contribution does not hold keeps the older time).
            Some(c)
                if (
                    &c.status,
                    c.deal_value,
                    &c.currency,
                    &c.referral_type,
                    &c.customer_name,
                ) != (
                    &record.status,
                    record.deal_value.filter(|v| v.is_finite()),
                    &record.currency,
                    &record.referral_type,
                    &record.customer_name,
                ) || c.updated_date_time > record.updated_date_time =>
            {
                uncounted.push(json!({"id": record.id, "domain": domain, "why": "counted as an older version",
                    "counted": c, "stored": version_of(record.updated_date_time, record.status.as_deref(), record.substatus.as_deref()),
                    "versionsWrittenByTest": chaos.mutated.get(&record.id)}));
            }
            Some(_) => {}
        }
    }
    for lead in &leads {
        let mut contributions = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = store
                .list_contributions(&lead.domain, Some(MAX_PAGE_SIZE), cursor.as_deref())
                .await
                .unwrap();
            contributions.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        if contributions.len() != lead.referral_count as usize {
            miscounted.push(json!({"domain": lead.domain, "referralCount": lead.referral_count, "contributions": contributions.len()}));
        }
        let newest = contributions
            .iter()
            .max_by_key(|c| (c.updated_date_time, c.id.clone()))
            .map(|c| c.id.clone());
        if newest != lead.latest.as_ref().map(|l| l.id.clone()) {
            miscounted.push(json!({"domain": lead.domain, "latest": lead.latest.as_ref().map(|l| &l.id), "newestContribution": newest}));
        }
    }
    let ok = not_pushed.is_empty()
        && version_behind.is_empty()
        && differs.is_empty()
        && duplicated.is_empty()
        && missing.is_empty()
        && unexpected.is_empty()
        && keyless == 0
        && uncounted.is_empty()
        && miscounted.is_empty();
    json!({
        "ok": ok,
        "leads": leads.len(),
        "bySyncStatus": by_status,
        "dynamicsRecords": records.len(),
        "keyColumn": key_column,
        "comparedColumns": columns.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>(),
        "pendingOrFailed": examples(&not_pushed),
        "syncedVersionBehind": examples(&version_behind),
        "duplicateKeys": examples(&duplicated),
        "recordsWithoutKey": keyless,
        "missingInDynamics": examples(&missing),
        "notExpectedInDynamics": examples(&unexpected),
        "dynamicsDiffers": examples(&differs),
        "eligibleReferralsNotCounted": examples(&uncounted),
        "leadCountsWrong": examples(&miscounted),
    })
}

/// Invariant 3: no message lost: both queues empty, dead letters (expected none) named with their failure.
async fn queues_invariant(
    chaos: &Chaos,
    store: &dyn Store,
    queues: [(QueueName, &dyn Queue); 2],
) -> Value {
    let mut ok = true;
    let mut report = serde_json::Map::new();
    // Every referral a sync run fetched was ingested in that run (each counted once per run),
    // for the runs during which Partner Center did not change (a change under way while a run
    // pages may show it a referral twice).
    let mut runs = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list_sync_runs(Some(MAX_PAGE_SIZE), cursor.as_deref())
            .await
            .unwrap();
        runs.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let (mut checked, mut short) = (0, Vec::new());
    for run in &runs {
        let Some(finished) = run.finished_at else {
            continue;
        };
        if chaos
            .changes
            .iter()
            .any(|t| (run.started_at..=finished).contains(t))
        {
            continue;
        }
        checked += 1;
        if run.stored != run.fetched {
            short.push(
                json!({"runId": run.id, "status": run.status, "fetched": run.fetched,
                "enqueued": run.enqueued, "stored": run.stored}),
            );
        }
    }
    ok &= short.is_empty();
    report.insert(
        "syncRuns".to_owned(),
        json!({"runs": runs.len(), "checked": checked, "notAllIngested": examples(&short)}),
    );
    for (name, queue) in queues {
        let depth = queue.depth().await.unwrap();
        let mut dead = Vec::new();
        for letter in queue.peek_dead_letters(50).await.unwrap() {
            let failure = store
                .get_failure(name.as_str(), &letter.message_id)
                .await
                .unwrap();
            dead.push(json!({
                "messageId": letter.message_id,
                "receiveCount": letter.receive_count,
                "lastError": failure.map(|f| f.error),
                "body": hunter_domain::referral::cap_text(&letter.body, 300),
            }));
        }
        ok &= depth.visible == 0 && depth.in_flight == 0 && depth.dead_letters == 0;
        report.insert(
            name.as_str().to_owned(),
            json!({"visible": depth.visible, "inFlight": depth.in_flight, "deadLetters": depth.dead_letters, "dead": dead}),
        );
    }
    report.insert("ok".to_owned(), json!(ok));
    Value::Object(report)
}

/// Whether `line` holds `prefix` followed by 32 hex digits (a token the simulators issued).
fn holds_token(line: &str, prefix: &str) -> bool {
    line.match_indices(prefix).any(|(at, _)| {
        let rest = &line[at + prefix.len()..];
        rest.len() >= 32 && rest.as_bytes()[..32].iter().all(u8::is_ascii_hexdigit)
    })
}

/// Invariant 4: no secret in any log line of any run (stdout and stderr).
fn secrets_invariant(chaos: &Chaos) -> Value {
    let mut named = chaos.secrets.named();
    named.push((
        "Partner Center refresh token (current)",
        chaos.pc.sim.current_refresh_token(),
    ));
    let mut leaks = Vec::new();
    let mut lines = 0;
    for file in &chaos.logs {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for (number, line) in text.lines().enumerate() {
            lines += 1;
            let mut found: Vec<&str> = named
                .iter()
                .filter(|(_, secret)| line.contains(secret.as_str()))
                .map(|(what, _)| *what)
                .collect();
            found.extend(
                TOKEN_PREFIXES
                    .iter()
                    .filter(|(prefix, _)| holds_token(line, prefix))
                    .map(|(_, what)| *what),
            );
            if line.contains("Bearer ") {
                found.push("a bearer credential (\"Bearer \")");
            }
            if !found.is_empty() {
                leaks.push(json!({"file": name, "line": number + 1, "what": found}));
            }
        }
    }
    json!({"ok": leaks.is_empty(), "logFiles": chaos.logs.len(), "lines": lines, "leaks": examples(&leaks)})
}

/// How often each simulator answered what (faults included), for the report.
fn fault_counts(chaos: &Chaos) -> Value {
    let count = |requests: Vec<hunter_local::sim::partner_center::RecordedRequest>| {
        let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
        for request in requests {
            *by_status.entry(request.status).or_default() += 1;
        }
        by_status
    };
    json!({
        "partnerCenter": count(chaos.pc.sim.requests()),
        "dataverse": count(chaos.dv.sim.requests()),
    })
}

/// What the report shows without asserting it: leads whose domain was never scanned (a scan
/// interrupted by a kill is claimed for two minutes; a redelivery inside them does not scan).
async fn observations(store: &dyn Store) -> Value {
    let unscanned: Vec<Value> = all_leads(store)
        .await
        .iter()
        .filter(|lead| lead.scanned_at.is_none())
        .map(|lead| {
            json!({"domain": lead.domain, "scanState": lead.scan_state, "scanClaimedAt": lead.scan_claimed_at,
                "score": lead.score, "syncStatus": lead.sync_status})
        })
        .collect();
    json!({"leadsNeverScanned": examples(&unscanned)})
}

/// The report of every invariant, printed, then asserted.
async fn finish(
    chaos: &mut Chaos,
    store: &dyn Store,
    queues: [(QueueName, &dyn Queue); 2],
    once: (ExitStatus, Value),
    extra: Value,
) {
    let referrals = referrals_invariant(chaos, store).await;
    let leads = leads_invariant(chaos, store).await;
    let messages = queues_invariant(chaos, store, queues).await;
    let secrets = secrets_invariant(chaos);
    let faults = fault_counts(chaos);
    let observations = observations(store).await;
    let (status, summary) = once;
    let report = json!({
        "referrals": chaos.n,
        "backend": match chaos.backend { Backend::Sqlite => "sqlite", Backend::Aws { .. } => "aws (moto)" },
        "durationSecs": chaos.elapsed(),
        "kills": chaos.kills,
        "timeline": chaos.timeline,
        "faultsAnswered": faults,
        "once": {"exit": status.code(), "summary": summary},
        "run": extra,
        "observations": observations,
        "invariants": {
            "1_referralsStoredOnceAsNewest": referrals,
            "2_leadsInDynamicsOnceWithNewestData": leads,
            "3_noMessageLost": messages,
            "4_noSecretInLogs": secrets,
        },
    });
    println!(
        "CHAOS INVARIANT REPORT\n{}",
        serde_json::to_string_pretty(&report).unwrap()
    );
    let invariants = &report["invariants"];
    let failed: Vec<&String> = invariants
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v["ok"] != true)
        .map(|(k, _)| k)
        .collect();
    let kept = format!("data and logs kept in {}", chaos.root.display());
    assert!(failed.is_empty(), "invariants failed: {failed:?} ({kept})");
    assert!(
        status.success(),
        "hunter-local --once failed: {summary} ({kept})"
    );
    assert_eq!(summary["status"], "succeeded", "{kept}");
    let pc = &report["faultsAnswered"]["partnerCenter"];
    let answered = |status: &str| pc[status].as_u64().unwrap_or(0);
    assert!(answered("401") > 0, "no access token expired: {pc}");
    assert!(
        answered("429") + answered("500") + answered("503") > 0,
        "Partner Center never failed: {pc}"
    );
    assert!(
        report["faultsAnswered"]["dataverse"]["429"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "Dataverse never throttled: {}",
        report["faultsAnswered"]
    );
    if std::env::var("HUNTER_CHAOS_KEEP").is_ok_and(|v| v == "1") {
        println!("chaos: {kept}");
    } else {
        let _ = std::fs::remove_dir_all(&chaos.root);
    }
}

// ---------------------------------------------------------------------------------------------
// The runs
// ---------------------------------------------------------------------------------------------

/// Polls every 100 ms until `done` says so, failing after `limit` or if `proc` exits.
macro_rules! poll {
    ($proc:expr, $limit:expr, $what:expr, $body:block) => {{
        let deadline = Instant::now() + $limit;
        loop {
            $proc.assert_running();
            if $body {
                break;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {}", $what);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "chaos: make test runs it (cargo test -p hunter-local --test chaos -- --ignored --nocapture chaos_killed_twice)"]
async fn chaos_killed_twice_mid_run_loses_nothing_and_pushes_every_lead_once() {
    let n = env_usize("HUNTER_CHAOS_REFERRALS", 2000);
    let mut chaos = Chaos::new(n, Backend::Sqlite, Tuning::embedded(n)).await;
    let patience = Duration::from_secs(120 + n as u64 / 10);
    let token = chaos.secrets.api_token.clone();

    // Run 1: the first sync fetches everything; once it has, a first round of changes; killed
    // mid-ingest (a quarter or more of the run stored, not all of it), between two syncs.
    let mut first = chaos.spawn("serve", &[]);
    let api = first.api(&token).await;
    // The test's own connection to the data directory's database (WAL: beside hunter-local's).
    let db = SqliteDb::open(&chaos.data_dir.join(DATABASE_FILE)).unwrap();
    let store = SqliteStore::new(db.clone());
    let queue =
        |name: &str| SqliteQueue::new(db.clone(), name, Duration::from_secs(3), MAX_RECEIVE_COUNT);
    let ids = chaos.ids();
    let mut changed_at = None;
    let mut stored;
    poll!(first, patience, "the first run to be a quarter stored", {
        let runs = api.runs().await;
        let run = runs.last().cloned().unwrap_or(Value::Null);
        let fetched = run["status"] != "running" && !run.is_null();
        if fetched && changed_at.is_none() {
            let picked = chaos.pick(&ids, n / 20);
            let at = Utc::now();
            chaos.mutate("new", &picked, at);
            changed_at = Some(at);
        }
        stored = run["stored"].as_u64().unwrap_or(0) as usize;
        // A quarter stored and a sync after the changes enqueued them behind the backlog (or
        // three quarters stored), and no sync holding the lease.
        let synced_changes = changed_at.is_some_and(|at| succeeded_since(&runs, at) > 0);
        (changed_at.is_some()
            && stored * 4 >= n
            && (synced_changes || stored * 4 >= n * 3)
            && live_lease(&store).await.is_none())
            || stored >= n
    });
    // Killed in the middle of a message: DNS answers are held until a domain scan (inside the
    // ingest of a batch of ten) waits for one.
    chaos.dns.sim.hold();
    let mid_scan = tokio::time::timeout(
        Duration::from_secs(15),
        chaos.dns.sim.wait_for_zones_in_flight(1),
    )
    .await
    .is_ok();
    let depth = queue(REFERRALS_QUEUE).depth().await.unwrap();
    chaos.kill(
        &mut first,
        "mid-ingest: the first run fetched, a quarter or more of it stored, a message waiting for its domain scan",
        json!({"firstRunStored": stored, "midScan": mid_scan,
               "referralsQueue": {"visible": depth.visible, "inFlight": depth.in_flight}}),
    );
    chaos.dns.sim.release();

    // Run 2: more changes (some to referrals changed before), then late commits once a sync saw
    // them; when the push has begun, a third round; killed mid-push.
    let mut second = chaos.spawn("serve", &[]);
    let api = second.api(&token).await;
    let changed: Vec<String> = chaos.mutated.keys().cloned().collect();
    let mut again = chaos.pick(&changed, changed.len() / 2);
    again.extend(chaos.pick(&ids, n / 20));
    let changed_at = Utc::now();
    chaos.mutate("new", &again, changed_at);
    poll!(second, patience, "a sync after the second round", {
        succeeded_since(&api.runs().await, changed_at) > 0
    });
    let watermark = cursor(&store).await.watermark.unwrap();
    chaos.commit_late(watermark, (n / 50).max(5));
    poll!(second, patience, "the push to begin", {
        chaos.dynamics_leads() > 0
    });
    let third = chaos.pick(&ids, n / 10);
    let third_at = Utc::now();
    chaos.mutate("new", &third, third_at);
    poll!(second, patience, "two syncs after the third round", {
        succeeded_since(&api.runs().await, third_at) >= 2
    });
    poll!(second, patience, "a third of the leads in Dynamics", {
        let expected = chaos.expected_leads();
        let pushed = chaos.dynamics_leads();
        let ready = pushed * 10 >= expected * 3 && live_lease(&store).await.is_none();
        if ready || pushed * 10 >= expected * 9 {
            let queues = api.get("/health").await.map(|h| h["queues"].clone());
            chaos.kill(
                &mut second,
                "mid-push: a third or more of the leads in Dynamics, not all",
                json!({"dynamicsLeads": pushed, "expectedLeads": expected, "queues": queues}),
            );
            true
        } else {
            false
        }
    });

    // While nothing runs: the referrals of the third round change again (older versions of them
    // wait in the queue), more late commits; then `--once` syncs and drains everything.
    chaos.mutate("new", &third, Utc::now());
    let watermark = cursor(&store).await.watermark.unwrap();
    chaos.commit_late(watermark, (n / 50).max(5));
    let lease_wait = chaos.wait_for_lease(&store).await;
    let once = chaos.run_once().await;

    let (referrals, pushes) = (queue(REFERRALS_QUEUE), queue(PUSH_QUEUE));
    let extra = json!({"leaseWaitSecs": lease_wait, "watermark": cursor(&store).await.watermark});
    finish(
        &mut chaos,
        &store,
        [
            (QueueName::Referrals, &referrals),
            (QueueName::DynamicsPush, &pushes),
        ],
        once,
        extra,
    )
    .await;
}

/// DynamoDB and SQS on moto, configured without the AWS environment of this process.
async fn aws_adapters(
    moto: &str,
    suffix: &str,
) -> (Arc<dyn Store>, Arc<dyn Queue>, Arc<dyn Queue>) {
    let credentials =
        aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "moto");
    let dynamo = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .endpoint_url(moto)
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(credentials.clone())
        .build();
    let sqs = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .endpoint_url(moto)
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .build();
    let store = hunter_core::adapters::DynamoStore::new(
        aws_sdk_dynamodb::Client::from_conf(dynamo),
        format!("chaos-{suffix}"),
    );
    let sqs = aws_sdk_sqs::Client::from_conf(sqs);
    let visibility = hunter_local::stack::VISIBILITY;
    let referrals = hunter_core::adapters::SqsQueue::ensure(
        sqs.clone(),
        &format!("chaos-referrals-{suffix}"),
        visibility,
        MAX_RECEIVE_COUNT,
    )
    .await
    .unwrap();
    let pushes = hunter_core::adapters::SqsQueue::ensure(
        sqs,
        &format!("chaos-push-{suffix}"),
        visibility,
        MAX_RECEIVE_COUNT,
    )
    .await
    .unwrap();
    (Arc::new(store), Arc::new(referrals), Arc::new(pushes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "chaos on moto: scripts/with-moto.sh cargo test -p hunter-local --test chaos -- --ignored --nocapture chaos_on_aws"]
async fn chaos_on_aws() {
    let moto = std::env::var("HUNTER_MOTO_URL")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .expect(
            "no moto: run under scripts/with-moto.sh (HUNTER_MOTO_URL) or set AWS_ENDPOINT_URL",
        );
    let n = env_usize("HUNTER_CHAOS_AWS_REFERRALS", 300);
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let backend = Backend::Aws {
        moto: moto.clone(),
        suffix: suffix.clone(),
    };
    let mut chaos = Chaos::new(n, backend, Tuning::aws()).await;

    // SQS keeps a received message invisible for the queues' 360 s (hunter-local's
    // `--queue-visibility` is for the embedded queues), which no test waits out after a kill, and
    // moto is too slow for a sync every 2 s to let the queues drain: three `--once` runs, with
    // changes and late commits between them, the same faults at Partner Center and Dataverse.
    let ids = chaos.ids();
    let (status, summary) = chaos.run_once().await;
    assert!(status.success(), "the first --once failed: {summary}");
    let (store, referrals, pushes) = aws_adapters(&moto, &suffix).await;
    let picked = chaos.pick(&ids, n / 10);
    chaos.mutate("new", &picked, Utc::now());
    let watermark = cursor(store.as_ref()).await.watermark.unwrap();
    chaos.commit_late(watermark, (n / 20).max(5));
    let (status, summary) = chaos.run_once().await;
    assert!(status.success(), "the second --once failed: {summary}");
    let changed: Vec<String> = chaos.mutated.keys().cloned().collect();
    let mut again = chaos.pick(&changed, changed.len() / 2);
    again.extend(chaos.pick(&ids, n / 10));
    chaos.mutate("new", &again, Utc::now());
    let watermark = cursor(store.as_ref()).await.watermark.unwrap();
    chaos.commit_late(watermark, (n / 20).max(5));
    let lease_wait = chaos.wait_for_lease(store.as_ref()).await;
    let once = chaos.run_once().await;
    let extra = json!({"leaseWaitSecs": lease_wait, "table": format!("chaos-{suffix}")});
    finish(
        &mut chaos,
        store.as_ref(),
        [
            (QueueName::Referrals, referrals.as_ref()),
            (QueueName::DynamicsPush, pushes.as_ref()),
        ],
        once,
        extra,
    )
    .await;
}
