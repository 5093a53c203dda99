//! Dataverse (Dynamics 365) Web API simulator, with the Entra ID client-credentials token endpoint.
//!
//! Follows `shared/reference/dataverse-web-api.md`: `/api/data/v9.2/{set}` create, upsert by id or
//! alternate key (`leads(hnt_hunterkey='x')`) with `If-Match`/`If-None-Match`, `$filter`/`$select`/
//! `$orderby`/`$top` queries with `Prefer: odata.maxpagesize` paging, `QualifyLead`, the
//! `{"error":{"code","message"}}` error body, column length limits, duplicate detection on
//! `MSCRM.SuppressDuplicateDetection: false`, service-protection limits (429 with `Retry-After` and
//! the documented codes), `x-ms-dop-hint`, `$batch` with atomic change sets, and fault injection
//! driven by a seeded RNG so tests are deterministic.
//!
//! Entity sets: `leads`, `accounts`, `contacts`, `opportunities` (see [`ENTITY_SETS`]); records are
//! free-form JSON objects keyed by a GUID primary key. Control routes: `GET|POST /_sim/records/{set}`,
//! `GET|PUT /_sim/faults`, `GET|PUT /_sim/limits`, `GET|DELETE /_sim/requests`,
//! `POST /_sim/expire-tokens`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::server::{self, ServerTask};
use axum::body::{Body, Bytes};
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use axum::{Json, Router};
use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Path prefix of the Web API.
pub const API_PREFIX: &str = "/api/data/v9.2/";
/// Tenant segment of the token URL that [`RunningDataverse::token_url`] names (any is accepted).
pub const SIM_TENANT: &str = "sim-tenant";
/// Error code (hex) of the "number of requests" service-protection limit.
pub const CODE_REQUESTS_LIMIT: &str = "0x80072322";
/// Error code (hex) of the "combined execution time" service-protection limit.
pub const CODE_EXECUTION_LIMIT: &str = "0x80072321";
/// Error code (hex) of the "concurrent requests" service-protection limit.
pub const CODE_CONCURRENCY_LIMIT: &str = "0x80072326";
/// Decimal form of [`CODE_REQUESTS_LIMIT`].
pub const DECIMAL_REQUESTS_LIMIT: i64 = -2_147_015_902;
/// Decimal form of [`CODE_EXECUTION_LIMIT`].
pub const DECIMAL_EXECUTION_LIMIT: i64 = -2_147_015_903;
/// Decimal form of [`CODE_CONCURRENCY_LIMIT`].
pub const DECIMAL_CONCURRENCY_LIMIT: i64 = -2_147_015_898;
/// Error code of a duplicate-detection hit.
pub const CODE_DUPLICATE: &str = "0x80040333";
/// Error code of an over-long string column.
pub const CODE_VALIDATION: &str = "0x80044331";
/// Error code when a record with the same key (alternate key or id) already exists.
pub const CODE_DUPLICATE_KEY: &str = "0x80040237";
/// Error code of a missing record.
pub const CODE_NOT_FOUND: &str = "0x80040217";
/// Error code of a stale `If-Match` version.
pub const CODE_VERSION_MISMATCH: &str = "0x80060882";
/// Error code of an unknown resource segment or an unsupported query.
pub const CODE_BAD_SEGMENT: &str = "0x80060888";
/// Entity sets served: (set name, primary key column, logical name).
pub const ENTITY_SETS: &[(&str, &str, &str)] = &[
    ("leads", "leadid", "lead"),
    ("accounts", "accountid", "account"),
    ("contacts", "contactid", "contact"),
    ("opportunities", "opportunityid", "opportunity"),
];
/// Largest body read from a request.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Most requests in one `$batch`.
const MAX_BATCH_REQUESTS: usize = 1000;
/// Oldest recorded requests are dropped beyond this many.
const MAX_RECORDED_REQUESTS: usize = 100_000;
/// JSON content type of answers.
const JSON_CONTENT_TYPE: &str = "application/json; odata.metadata=minimal";

/// Faults injected into the Web API routes (`/api/data/v9.2/...`), after auth and limits.
///
/// JSON shape for `PUT /_sim/faults`: the same snake_case field names, every field optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Probability (0..=1) that an API call answers 500 or 503 (even odds; 503 has `Retry-After`).
    pub error_rate: f64,
    /// Delay added before every API answer (counts as execution time).
    pub latency_ms: u64,
    /// Statuses answered, in order, to the next API calls; a 2xx entry means "serve normally".
    pub fail_next: Vec<u16>,
    /// `Retry-After` seconds on injected 429/503 answers.
    pub retry_after_secs: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            error_rate: 0.0,
            latency_ms: 0,
            fail_next: Vec::new(),
            retry_after_secs: 1,
        }
    }
}

/// Service-protection limits (per simulator, sliding window).
///
/// JSON shape for `PUT /_sim/limits`: `max_requests`, `window_secs`, `max_concurrent`,
/// `max_execution_ms`, `retry_after_secs`, every field optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Requests accepted per `window` (requests inside a `$batch` count individually).
    pub max_requests: u32,
    /// The sliding window.
    pub window: Duration,
    /// Requests in flight at once; one more answers 429 at once.
    pub max_concurrent: u32,
    /// Combined execution time of the requests of one `window`.
    pub max_execution: Duration,
    /// `Retry-After` seconds on a 429.
    pub retry_after_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_requests: 6000,
            window: Duration::from_secs(300),
            max_concurrent: 52,
            max_execution: Duration::from_secs(1200),
            retry_after_secs: 5,
        }
    }
}

/// The JSON form of [`Limits`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct LimitsJson {
    max_requests: u32,
    window_secs: u64,
    max_concurrent: u32,
    max_execution_ms: u64,
    retry_after_secs: u64,
}

impl Default for LimitsJson {
    fn default() -> Self {
        Self::from(&Limits::default())
    }
}

impl From<&Limits> for LimitsJson {
    fn from(l: &Limits) -> Self {
        Self {
            max_requests: l.max_requests,
            window_secs: l.window.as_secs(),
            max_concurrent: l.max_concurrent,
            max_execution_ms: u64::try_from(l.max_execution.as_millis()).unwrap_or(u64::MAX),
            retry_after_secs: l.retry_after_secs,
        }
    }
}

impl From<LimitsJson> for Limits {
    fn from(l: LimitsJson) -> Self {
        Self {
            max_requests: l.max_requests,
            window: Duration::from_secs(l.window_secs),
            max_concurrent: l.max_concurrent,
            max_execution: Duration::from_millis(l.max_execution_ms),
            retry_after_secs: l.retry_after_secs,
        }
    }
}

/// The default column length limits (Lead columns of the contract).
pub fn default_column_limits() -> BTreeMap<String, usize> {
    [
        ("subject", 300),
        ("lastname", 50),
        ("firstname", 50),
        ("companyname", 100),
        ("emailaddress1", 100),
        ("websiteurl", 200),
        ("description", 2000),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// How the simulator behaves.
#[derive(Clone)]
pub struct DataverseConfig {
    /// Alternate-key column of every entity set unless [`DataverseConfig::key_columns`] names another.
    pub key_column: String,
    /// Per entity set alternate-key column overrides (set name → column).
    pub key_columns: BTreeMap<String, String>,
    /// Column → max string length; see [`default_column_limits`].
    pub column_limits: BTreeMap<String, usize>,
    /// Max length of string columns not in `column_limits`. Default 4000.
    pub default_string_limit: usize,
    /// Service-protection limits.
    pub limits: Limits,
    /// Faults active at start.
    pub faults: Faults,
    /// `x-ms-dop-hint` on every answer. Default 4.
    pub dop_hint: u32,
    /// The client id the token endpoint accepts.
    pub client_id: String,
    /// The client secret the token endpoint accepts.
    pub client_secret: String,
    /// Lifetime of issued access tokens. Default 3599 s.
    pub token_ttl: Duration,
    /// Seed of the RNG behind faults, ids and tokens.
    pub rng_seed: u64,
}

impl Default for DataverseConfig {
    fn default() -> Self {
        Self {
            key_column: "hnt_hunterkey".to_owned(),
            key_columns: BTreeMap::new(),
            column_limits: default_column_limits(),
            default_string_limit: 4000,
            limits: Limits::default(),
            faults: Faults::default(),
            dop_hint: 4,
            client_id: "sim-client-id".to_owned(),
            client_secret: "sim-client-secret".to_owned(),
            token_ttl: Duration::from_secs(3599),
            rng_seed: 42,
        }
    }
}

impl std::fmt::Debug for DataverseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataverseConfig")
            .field("key_column", &self.key_column)
            .field("key_columns", &self.key_columns)
            .field("column_limits", &self.column_limits)
            .field("default_string_limit", &self.default_string_limit)
            .field("limits", &self.limits)
            .field("faults", &self.faults)
            .field("dop_hint", &self.dop_hint)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("token_ttl", &self.token_ttl)
            .field("rng_seed", &self.rng_seed)
            .finish()
    }
}

/// One request the simulator answered (control routes `/_sim/...` are not recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `PATCH`.
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// Status answered.
    pub status: u16,
    /// API routes: the bearer token was valid. Token endpoint: the grant was accepted.
    pub auth_ok: bool,
    /// The `request-id` header answered.
    pub request_id: String,
    /// Error code of the answer (`error.code`, or the OAuth `error`), if any.
    pub error_code: Option<String>,
}

/// A stored row.
#[derive(Debug, Clone)]
struct Record {
    id: String,
    version: u64,
    created: String,
    modified: String,
    data: Map<String, Value>,
}

impl Record {
    fn representation(&self, pk: &str) -> Value {
        let mut object = Map::new();
        object.insert(
            "@odata.etag".into(),
            json!(format!("W/\"{}\"", self.version)),
        );
        object.insert(pk.into(), json!(self.id));
        for (k, v) in &self.data {
            object.insert(k.clone(), v.clone());
        }
        object.insert("createdon".into(), json!(self.created));
        object.insert("modifiedon".into(), json!(self.modified));
        object.insert("versionnumber".into(), json!(self.version));
        Value::Object(object)
    }
}

type Store = BTreeMap<String, Vec<Record>>;

#[derive(Debug)]
struct Inner {
    key_column: String,
    key_columns: BTreeMap<String, String>,
    column_limits: BTreeMap<String, usize>,
    default_string_limit: usize,
    limits: Limits,
    faults: Faults,
    dop_hint: u32,
    client_id: String,
    client_secret: String,
    token_ttl: Duration,
    store: Store,
    version: u64,
    tokens: HashMap<String, Instant>,
    accepted: VecDeque<Instant>,
    executed: VecDeque<(Instant, Duration)>,
    in_flight: u32,
    fault_rng: fastrand::Rng,
    id_rng: fastrand::Rng,
    requests: Vec<RecordedRequest>,
    base_url: Option<String>,
}

impl Inner {
    fn new_guid(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.id_rng.u128(..).to_le_bytes())
            .into_uuid()
            .to_string()
    }

    fn next_version(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    fn key_column(&self, set: &str) -> &str {
        self.key_columns
            .get(set)
            .map_or(self.key_column.as_str(), String::as_str)
    }

    fn prune(&mut self, now: Instant) {
        let window = self.limits.window;
        while self
            .accepted
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.accepted.pop_front();
        }
        while self
            .executed
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > window)
        {
            self.executed.pop_front();
        }
    }

    fn executed_total(&self) -> Duration {
        self.executed.iter().map(|(_, d)| *d).sum()
    }

    fn record(&mut self, request: RecordedRequest) {
        if self.requests.len() >= MAX_RECORDED_REQUESTS {
            self.requests.drain(..MAX_RECORDED_REQUESTS / 10);
        }
        self.requests.push(request);
    }
}

/// The simulator: shared state behind an `Arc`, so clones see the same records and tokens.
#[derive(Clone)]
pub struct DataverseSim {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for DataverseSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        let counts: BTreeMap<&str, usize> = inner
            .store
            .iter()
            .map(|(k, v)| (k.as_str(), v.len()))
            .collect();
        f.debug_struct("DataverseSim")
            .field("base_url", &inner.base_url)
            .field("records", &counts)
            .field("limits", &inner.limits)
            .field("faults", &inner.faults)
            .field("requests", &inner.requests.len())
            .finish()
    }
}

/// A simulator listening on a socket. Dropping it stops the server (so does [`RunningDataverse::shutdown`]).
#[derive(Debug)]
#[must_use = "dropping RunningDataverse stops the simulator"]
pub struct RunningDataverse {
    /// The organization URL, `http://127.0.0.1:PORT` (no trailing slash); the API is under
    /// `{base_url}/api/data/v9.2/` and the token scope is `{base_url}/.default`.
    pub base_url: String,
    /// `{base_url}/sim-tenant/oauth2/v2.0/token`.
    pub token_url: String,
    /// The bound address.
    pub addr: SocketAddr,
    /// The simulator, to inspect or steer while it serves.
    pub sim: DataverseSim,
    server: ServerTask,
}

impl RunningDataverse {
    /// `{base_url}/api/data/v9.2` (no trailing slash).
    pub fn api_url(&self) -> String {
        format!("{}{}", self.base_url, API_PREFIX.trim_end_matches('/'))
    }

    /// Stops accepting requests, lets open ones finish and waits for the server to end.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.server.shutdown().await
    }

    /// Waits until the server ends (by [`RunningDataverse::shutdown`], a drop or an error).
    pub async fn wait(self) -> std::io::Result<()> {
        self.server.wait().await
    }
}

fn lock_inner(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}

fn entity(set: &str) -> Option<(&'static str, &'static str)> {
    ENTITY_SETS
        .iter()
        .find(|(name, _, _)| *name == set)
        .map(|(_, pk, logical)| (*pk, *logical))
}

impl DataverseSim {
    /// An empty simulator.
    pub fn new(config: DataverseConfig) -> Self {
        let store = ENTITY_SETS
            .iter()
            .map(|(set, _, _)| ((*set).to_owned(), Vec::new()))
            .collect();
        let inner = Inner {
            key_column: config.key_column,
            key_columns: config.key_columns,
            column_limits: config.column_limits,
            default_string_limit: config.default_string_limit,
            limits: config.limits,
            faults: config.faults,
            dop_hint: config.dop_hint,
            client_id: config.client_id,
            client_secret: config.client_secret,
            token_ttl: config.token_ttl,
            store,
            version: 1000,
            tokens: HashMap::new(),
            accepted: VecDeque::new(),
            executed: VecDeque::new(),
            in_flight: 0,
            fault_rng: fastrand::Rng::with_seed(config.rng_seed),
            id_rng: fastrand::Rng::with_seed(config.rng_seed ^ 0x9e37_79b9_7f4a_7c15),
            requests: Vec::new(),
            base_url: None,
        };
        Self {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock_inner(&self.inner)
    }

    /// The axum app. `OData-EntityId` URLs use the base URL set by [`DataverseSim::serve`]
    /// (or [`DataverseSim::set_base_url`]), else `http://{Host header}`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/data/v9.2/{*rest}", any(api))
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route(
                "/_sim/requests",
                get(control_requests).delete(control_clear_requests),
            )
            .route(
                "/_sim/faults",
                get(control_get_faults).put(control_put_faults),
            )
            .route(
                "/_sim/limits",
                get(control_get_limits).put(control_put_limits),
            )
            .route(
                "/_sim/records/{set}",
                get(control_get_records).post(control_insert_record),
            )
            .route(
                "/_sim/expire-tokens",
                put(control_expire_tokens).post(control_expire_tokens),
            )
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(self.clone(), envelope))
            .with_state(self.clone())
    }

    /// Binds `addr` (port 0 picks a free port), serves in a spawned task and returns at once.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<RunningDataverse> {
        let bound = server::bind(addr).await?;
        let (base_url, local) = (bound.base_url, bound.addr);
        self.set_base_url(&base_url);
        let server = ServerTask::spawn(bound.listener, self.router());
        tracing::info!(event = "dataverse_sim_started", base_url = %base_url);
        Ok(RunningDataverse {
            token_url: format!("{base_url}/{SIM_TENANT}/oauth2/v2.0/token"),
            base_url,
            addr: local,
            sim: self,
            server,
        })
    }

    /// Sets the organization URL used in `OData-EntityId` and `@odata.context` (no trailing slash).
    pub fn set_base_url(&self, base_url: &str) {
        self.lock().base_url = Some(base_url.trim_end_matches('/').to_owned());
    }

    /// Every record of an entity set (with its primary key and `@odata.etag`), in creation order;
    /// empty for an unknown set.
    pub fn records(&self, set: &str) -> Vec<Value> {
        let Some((pk, _)) = entity(set) else {
            return Vec::new();
        };
        self.lock()
            .store
            .get(set)
            .map(|rows| rows.iter().map(|r| r.representation(pk)).collect())
            .unwrap_or_default()
    }

    /// Stores a record as if a person had created it (no checks); returns its id (the primary key
    /// of `record` if it has one, else a new GUID). Unknown sets and non-objects store nothing and
    /// return an empty string.
    pub fn insert_record(&self, set: &str, record: Value) -> String {
        let (Some((pk, _)), Value::Object(mut data)) = (entity(set), record) else {
            return String::new();
        };
        let mut inner = self.lock();
        let id = match data.remove(pk) {
            Some(Value::String(id)) => id.to_lowercase(),
            _ => inner.new_guid(),
        };
        let version = inner.next_version();
        let now = now_text();
        let row = Record {
            id: id.clone(),
            version,
            created: now.clone(),
            modified: now,
            data,
        };
        inner.store.entry(set.to_owned()).or_default().push(row);
        id
    }

    /// Replaces the active faults.
    pub fn set_faults(&self, faults: Faults) {
        tracing::info!(event = "dataverse_sim_faults_set", faults = ?faults);
        self.lock().faults = faults;
    }

    /// The active faults (`fail_next` entries already served are gone).
    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// Replaces the service-protection limits (the windows already counted are kept).
    pub fn set_limits(&self, limits: Limits) {
        tracing::info!(event = "dataverse_sim_limits_set", limits = ?limits);
        self.lock().limits = limits;
    }

    /// The active service-protection limits.
    pub fn limits(&self) -> Limits {
        self.lock().limits.clone()
    }

    /// Requests answered so far (oldest first; control routes excluded).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Makes every issued access token expired (the next API call with one answers 401).
    pub fn expire_all_tokens(&self) {
        let mut inner = self.lock();
        let now = Instant::now();
        for expiry in inner.tokens.values_mut() {
            *expiry = (*expiry).min(now);
        }
        drop(inner);
        tracing::info!(event = "dataverse_sim_tokens_expired");
    }

    /// Issues an access token directly (as if the token endpoint had), for tests and tools.
    pub fn issue_access_token(&self) -> String {
        let mut inner = self.lock();
        let token = format!("sim-dv-{:032x}", inner.id_rng.u128(..));
        let expiry = Instant::now() + inner.token_ttl;
        inner.tokens.insert(token.clone(), expiry);
        token
    }

    fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(base) = &self.lock().base_url {
            return base.clone();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}")
    }

    fn check_auth(&self, headers: &HeaderMap) -> Result<(), DvError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(token) = token else {
            return Err(DvError::new(
                StatusCode::UNAUTHORIZED,
                "",
                "The Authorization header with a Bearer token is required.",
            ));
        };
        match self.lock().tokens.get(token) {
            Some(expiry) if *expiry > Instant::now() => Ok(()),
            Some(_) => Err(DvError::new(
                StatusCode::UNAUTHORIZED,
                "",
                "The access token has expired.",
            )),
            None => Err(DvError::new(
                StatusCode::UNAUTHORIZED,
                "",
                "The access token is not valid.",
            )),
        }
    }

    /// Service-protection admission: concurrency, then request count, then execution time.
    fn admit(&self) -> Result<InFlight, DvError> {
        let mut inner = self.lock();
        let now = Instant::now();
        inner.prune(now);
        let limits = inner.limits.clone();
        let throttled = |code: &'static str, decimal: i64, message: String| {
            tracing::debug!(event = "dataverse_sim_throttled", code, decimal);
            let mut error = DvError::new(StatusCode::TOO_MANY_REQUESTS, code, message);
            error.retry_after = Some(limits.retry_after_secs);
            error
        };
        if inner.in_flight >= limits.max_concurrent {
            return Err(throttled(
                CODE_CONCURRENCY_LIMIT,
                DECIMAL_CONCURRENCY_LIMIT,
                format!(
                    "Number of concurrent requests exceeded the limit of {}.",
                    limits.max_concurrent
                ),
            ));
        }
        if inner.accepted.len() >= limits.max_requests as usize {
            return Err(throttled(
                CODE_REQUESTS_LIMIT,
                DECIMAL_REQUESTS_LIMIT,
                format!(
                    "Number of requests exceeded the limit of {} over time window of {} seconds.",
                    limits.max_requests,
                    limits.window.as_secs()
                ),
            ));
        }
        let executed = inner.executed_total();
        if executed > limits.max_execution {
            return Err(throttled(
                CODE_EXECUTION_LIMIT,
                DECIMAL_EXECUTION_LIMIT,
                format!(
                    "Combined execution time of incoming requests exceeded limit of {} milliseconds over time window of {} seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later.",
                    limits.max_execution.as_millis(),
                    limits.window.as_secs()
                ),
            ));
        }
        inner.accepted.push_back(now);
        inner.in_flight += 1;
        let burst_remaining = (limits.max_requests as usize).saturating_sub(inner.accepted.len());
        let time_remaining = limits.max_execution.saturating_sub(executed);
        Ok(InFlight {
            sim: self.clone(),
            started: now,
            burst_remaining,
            time_remaining_ms: u64::try_from(time_remaining.as_millis()).unwrap_or(u64::MAX),
        })
    }

    fn injected_fault(&self) -> Option<DvError> {
        let mut inner = self.lock();
        let retry_after = inner.faults.retry_after_secs;
        if !inner.faults.fail_next.is_empty() {
            let status = inner.faults.fail_next.remove(0);
            if (200..300).contains(&status) {
                return None;
            }
            tracing::debug!(event = "dataverse_sim_fault", kind = "fail_next", status);
            return Some(DvError::simulated(status, retry_after));
        }
        let rate = inner.faults.error_rate;
        if rate > 0.0 && inner.fault_rng.f64() < rate {
            let status = if inner.fault_rng.bool() { 500 } else { 503 };
            tracing::debug!(event = "dataverse_sim_fault", kind = "error", status);
            return Some(DvError::simulated(status, retry_after));
        }
        None
    }

    fn token_grant(&self, form: &HashMap<String, String>) -> Result<Value, OAuthError> {
        let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
        let grant_type = field("grant_type");
        if grant_type != "client_credentials" {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70_003,
                format!("AADSTS70003: The app requested an unsupported grant type '{grant_type}'."),
            ));
        }
        let mut inner = self.lock();
        let client_id = field("client_id");
        if client_id.is_empty() || client_id != inner.client_id {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                700_016,
                format!(
                    "AADSTS700016: Application with identifier '{client_id}' was not found in the directory."
                ),
            ));
        }
        if field("client_secret") != inner.client_secret {
            return Err(OAuthError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7_000_215,
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
            ));
        }
        let scope = field("scope");
        let resource = scope
            .strip_suffix("/.default")
            .map(|r| r.trim_end_matches('/'));
        let scope_ok = match (resource, &inner.base_url) {
            (Some(resource), Some(base)) => resource.eq_ignore_ascii_case(base),
            (Some(resource), None) => !resource.is_empty(),
            (None, _) => false,
        };
        if !scope_ok {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                70_011,
                format!(
                    "AADSTS70011: The provided value for the input parameter 'scope' is not valid. The scope '{scope}' is not valid (expected '<organization URL>/.default')."
                ),
            ));
        }
        let token = format!("sim-dv-{:032x}", inner.id_rng.u128(..));
        let ttl = inner.token_ttl;
        inner.tokens.insert(token.clone(), Instant::now() + ttl);
        drop(inner);
        tracing::info!(
            event = "dataverse_sim_token_issued",
            expires_in = ttl.as_secs()
        );
        Ok(json!({
            "token_type": "Bearer",
            "expires_in": ttl.as_secs(),
            "ext_expires_in": ttl.as_secs(),
            "access_token": token,
        }))
    }

    /// One `$batch` request: parses the multipart body and runs the parts under one lock.
    fn batch(&self, headers: &Headers, body: &[u8], base: &str) -> Result<SimResponse, DvError> {
        let content_type = headers.get("content-type").unwrap_or_default();
        let boundary = multipart::boundary(content_type).ok_or_else(|| {
            DvError::bad_request(
                "",
                "The $batch request must have Content-Type multipart/mixed with a boundary.",
            )
        })?;
        let text = std::str::from_utf8(body)
            .map_err(|_| DvError::bad_request("", "The $batch body is not UTF-8."))?;
        let items = multipart::parse_batch(text, &boundary).map_err(|e| {
            DvError::bad_request("", format!("The $batch body cannot be read: {e}"))
        })?;
        let total: usize = items.iter().map(multipart::Item::len).sum();
        if total > MAX_BATCH_REQUESTS {
            return Err(DvError::bad_request(
                "0x8005f006",
                format!(
                    "The number of requests in a batch ({total}) exceeds the limit of {MAX_BATCH_REQUESTS}."
                ),
            ));
        }
        let continue_on_error = prefers(headers, "odata.continue-on-error");
        let mut inner = self.lock();
        // Requests inside a batch count individually (the batch itself was counted once).
        let now = Instant::now();
        for _ in 1..total {
            inner.accepted.push_back(now);
        }
        let mut out = multipart::Writer::new(&format!("batchresponse_{}", inner.new_guid()));
        let mut executed = 0usize;
        for item in &items {
            let failed = match item {
                multipart::Item::Single(request) => {
                    let response = execute(&mut inner, request, base, &HashMap::new());
                    executed += 1;
                    let failed = response.status.as_u16() >= 400;
                    out.part(&response, request.content_id.as_deref());
                    failed
                }
                multipart::Item::ChangeSet(requests) => {
                    let snapshot = (inner.store.clone(), inner.version);
                    let mut refs: HashMap<String, String> = HashMap::new();
                    let mut responses = Vec::new();
                    let mut failure = None;
                    for request in requests {
                        let response = execute(&mut inner, request, base, &refs);
                        executed += 1;
                        if response.status.as_u16() >= 400 {
                            failure = Some((response, request.content_id.clone()));
                            break;
                        }
                        if let (Some(id), Some(entity)) =
                            (&request.content_id, response.header("OData-EntityId"))
                        {
                            refs.insert(format!("${id}"), entity.to_owned());
                        }
                        responses.push((response, request.content_id.clone()));
                    }
                    match failure {
                        Some((response, content_id)) => {
                            (inner.store, inner.version) = snapshot;
                            tracing::info!(
                                event = "dataverse_sim_changeset_rolled_back",
                                status = response.status.as_u16()
                            );
                            out.part(&response, content_id.as_deref());
                            true
                        }
                        None => {
                            let boundary = format!("changesetresponse_{}", inner.new_guid());
                            out.changeset(&boundary, &responses);
                            false
                        }
                    }
                }
            };
            if failed && !continue_on_error {
                break;
            }
        }
        drop(inner);
        tracing::info!(
            event = "dataverse_sim_batch",
            parts = items.len(),
            requests = total,
            executed
        );
        let (content_type, body) = out.finish();
        Ok(SimResponse {
            status: StatusCode::OK,
            headers: vec![("Content-Type".into(), content_type)],
            body: SimBody::Text(body),
        })
    }
}

/// An accepted request in flight; dropping it ends it and books its execution time.
struct InFlight {
    sim: DataverseSim,
    started: Instant,
    burst_remaining: usize,
    time_remaining_ms: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut inner = self.sim.lock();
        inner.in_flight = inner.in_flight.saturating_sub(1);
        let elapsed = self.started.elapsed();
        inner.executed.push_back((Instant::now(), elapsed));
    }
}

/// Case-insensitive header list (HTTP requests and `$batch` parts alike).
#[derive(Debug, Clone, Default)]
struct Headers(Vec<(String, String)>);

impl Headers {
    fn from_map(map: &HeaderMap) -> Self {
        Self(
            map.iter()
                .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn prefers(headers: &Headers, preference: &str) -> bool {
    headers.get_all("prefer").any(|v| {
        v.split(',')
            .any(|p| p.trim().eq_ignore_ascii_case(preference))
    })
}

/// One Web API request (from HTTP or from a `$batch` part).
#[derive(Debug, Clone)]
struct ApiRequest {
    method: String,
    /// Percent-decoded path after `/api/data/v9.2/`.
    path: String,
    /// Raw query string (without `?`).
    query: Option<String>,
    headers: Headers,
    body: Vec<u8>,
    content_id: Option<String>,
}

/// The body of an answer.
#[derive(Debug, Clone)]
enum SimBody {
    Empty,
    Json(Value),
    Text(String),
}

/// An answer before it becomes HTTP (or a `$batch` part).
#[derive(Debug, Clone)]
struct SimResponse {
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: SimBody,
}

impl SimResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn error_code(&self) -> Option<String> {
        match &self.body {
            SimBody::Json(body) => body
                .pointer("/error/code")
                .and_then(Value::as_str)
                .map(str::to_owned),
            _ => None,
        }
    }
}

impl IntoResponse for SimResponse {
    fn into_response(self) -> Response {
        let error_code = self.error_code();
        let mut response = match self.body {
            SimBody::Empty => self.status.into_response(),
            SimBody::Json(body) => (
                self.status,
                [(header::CONTENT_TYPE, JSON_CONTENT_TYPE)],
                body.to_string(),
            )
                .into_response(),
            SimBody::Text(text) => (self.status, text).into_response(),
        };
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        response
            .headers_mut()
            .insert("odata-version", HeaderValue::from_static("4.0"));
        if let Some(code) = error_code {
            response.extensions_mut().insert(ErrorCode(code));
        }
        response
    }
}

/// An error in the contract's shape: `{"error":{"code":"0x..","message":".."}}`.
#[derive(Debug, Clone)]
struct DvError {
    status: StatusCode,
    code: String,
    message: String,
    retry_after: Option<u64>,
}

impl DvError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
            retry_after: None,
        }
    }

    fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn not_found(logical: &str, what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            CODE_NOT_FOUND,
            format!("{logical} With {what} Does Not Exist"),
        )
    }

    fn simulated(status: u16, retry_after_secs: u64) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = match status.as_u16() {
            429 => CODE_REQUESTS_LIMIT,
            _ => "",
        };
        let mut error = Self::new(
            status,
            code,
            format!("Simulated failure (HTTP {}).", status.as_u16()),
        );
        if matches!(status.as_u16(), 429 | 503) {
            error.retry_after = Some(retry_after_secs);
        }
        error
    }

    fn into_sim(self) -> SimResponse {
        let mut headers = Vec::new();
        if let Some(seconds) = self.retry_after {
            headers.push(("Retry-After".to_owned(), seconds.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.push((
                "WWW-Authenticate".to_owned(),
                "Bearer error=\"invalid_token\"".to_owned(),
            ));
        }
        SimResponse {
            status: self.status,
            headers,
            body: SimBody::Json(json!({"error": {"code": self.code, "message": self.message}})),
        }
    }
}

impl IntoResponse for DvError {
    fn into_response(self) -> Response {
        self.into_sim().into_response()
    }
}

/// An OAuth 2.0 error answer of the token endpoint.
#[derive(Debug)]
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    description: String,
}

impl OAuthError {
    fn new(
        status: StatusCode,
        error: &'static str,
        code: u32,
        description: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error,
            code,
            description: description.into(),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": self.error,
            "error_description": self.description,
            "error_codes": [self.code],
            "timestamp": Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
            "trace_id": uuid::Uuid::new_v4().to_string(),
            "correlation_id": uuid::Uuid::new_v4().to_string(),
        });
        let mut response = (
            self.status,
            [(header::CACHE_CONTROL, "no-store")],
            Json(body),
        )
            .into_response();
        response.extensions_mut().insert(AuthOk(false));
        response
            .extensions_mut()
            .insert(ErrorCode(self.error.to_owned()));
        response
    }
}

/// Auth outcome of an answer, read by the envelope middleware.
#[derive(Debug, Clone, Copy)]
struct AuthOk(bool);

/// Error code of an answer, for the request log line.
#[derive(Debug, Clone)]
struct ErrorCode(String);

fn now_text() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Decodes `%XX` escapes (and `+` as space when `plus_as_space`).
fn percent_decode(s: &str, plus_as_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(byte) = hex {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' if plus_as_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How a URL names one record.
#[derive(Debug, Clone, PartialEq)]
enum Address {
    Id(String),
    Key(Vec<(String, String)>),
}

/// Splits `leads(...)` into the set and the record address; `leads` has none.
fn parse_resource(path: &str) -> Result<(String, Option<Address>), DvError> {
    let Some(open) = path.find('(') else {
        return Ok((path.to_owned(), None));
    };
    let set = &path[..open];
    let Some(inside) = path[open + 1..].strip_suffix(')') else {
        return Err(DvError::bad_request(
            CODE_BAD_SEGMENT,
            format!("Resource not found for the segment '{path}'."),
        ));
    };
    if let Ok(id) = uuid::Uuid::parse_str(inside.trim()) {
        return Ok((set.to_owned(), Some(Address::Id(id.to_string()))));
    }
    let pairs = parse_key_pairs(inside).map_err(|e| {
        DvError::bad_request(
            "",
            format!("The key in the request URI is not valid for resource '{set}': {e}"),
        )
    })?;
    Ok((set.to_owned(), Some(Address::Key(pairs))))
}

/// `k1='a',k2='o''b'` (numbers unquoted) → pairs.
fn parse_key_pairs(input: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let name = name.trim().to_owned();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid key name '{name}'"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        value.push('\'');
                    }
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err("unterminated string".into()),
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_owned();
            if value.is_empty() {
                return Err(format!("no value for key '{name}'"));
            }
        }
        pairs.push((name, value));
        match chars.next() {
            None => return Ok(pairs),
            Some(',') => {}
            Some(c) => return Err(format!("unexpected '{c}'")),
        }
    }
}

fn find_index(inner: &Inner, set: &str, address: &Address) -> Result<Option<usize>, DvError> {
    let rows = inner.store.get(set).map(Vec::as_slice).unwrap_or_default();
    match address {
        Address::Id(id) => Ok(rows.iter().position(|r| r.id == *id)),
        Address::Key(pairs) => {
            let key = inner.key_column(set);
            let [(name, value)] = pairs.as_slice() else {
                return Err(invalid_key(set));
            };
            if name != key {
                return Err(invalid_key(set));
            }
            Ok(rows.iter().position(|r| {
                r.data
                    .get(key)
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.eq_ignore_ascii_case(value))
            }))
        }
    }
}

fn invalid_key(set: &str) -> DvError {
    let logical = entity(set).map_or(set, |(_, l)| l);
    DvError::bad_request(
        "0x80060891",
        format!(
            "The key in the request URI is not valid for resource 'Microsoft.Dynamics.CRM.{logical}'. Ensure that the names and number of key properties are correct."
        ),
    )
}

/// The domain of an email address or a website URL, lowercased, without `www.`.
fn domain_of(value: &str) -> Option<String> {
    let value = value.trim().to_lowercase();
    let host = match value.rsplit_once('@') {
        Some((_, domain)) => domain.to_owned(),
        None => {
            let rest = value.split_once("://").map_or(value.as_str(), |(_, r)| r);
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            host.split(':').next().unwrap_or_default().to_owned()
        }
    };
    let host = host.strip_prefix("www.").unwrap_or(&host).trim_matches('.');
    (!host.is_empty()).then(|| host.to_owned())
}

fn lead_domains(data: &Map<String, Value>) -> Vec<String> {
    ["emailaddress1", "websiteurl"]
        .iter()
        .filter_map(|c| data.get(*c).and_then(Value::as_str).and_then(domain_of))
        .collect()
}

/// Checks the body and turns `nav@odata.bind` references into `_nav_value` lookups.
fn prepare_body(
    inner: &Inner,
    set: &str,
    request: &ApiRequest,
    refs: &HashMap<String, String>,
) -> Result<Map<String, Value>, DvError> {
    let content_type = request.headers.get("content-type").unwrap_or_default();
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Err(DvError::bad_request(
            "",
            "The request body must have Content-Type application/json.",
        ));
    }
    let body: Value = serde_json::from_slice(&request.body).map_err(|e| {
        DvError::bad_request("", format!("The request body is not valid JSON: {e}"))
    })?;
    let Value::Object(body) = body else {
        return Err(DvError::bad_request(
            "",
            "The request body must be a JSON object.",
        ));
    };
    let logical = entity(set).map_or(set, |(_, l)| l);
    let mut data = Map::new();
    for (name, value) in body {
        if let Some(nav) = name.strip_suffix("@odata.bind") {
            let Value::String(reference) = &value else {
                return Err(DvError::bad_request(
                    "",
                    format!("The value of '{name}' must be a string."),
                ));
            };
            let id = resolve_reference(inner, reference, refs)?;
            data.insert(format!("_{nav}_value"), json!(id));
            continue;
        }
        if name.contains('@') {
            continue;
        }
        if let Value::String(text) = &value {
            let limit = inner
                .column_limits
                .get(&name)
                .copied()
                .unwrap_or(inner.default_string_limit);
            if text.chars().count() > limit {
                return Err(DvError::bad_request(
                    CODE_VALIDATION,
                    format!(
                        "A validation error occurred. The length of the '{name}' attribute of the '{logical}' entity exceeded the maximum allowed length of '{limit}'."
                    ),
                ));
            }
        }
        data.insert(name, value);
    }
    Ok(data)
}

/// `/accounts(<guid>)`, `accounts(key='x')`, a full URL or `$n` → the id of an existing record.
fn resolve_reference(
    inner: &Inner,
    reference: &str,
    refs: &HashMap<String, String>,
) -> Result<String, DvError> {
    let reference = refs.get(reference).map_or(reference, String::as_str);
    let path = reference
        .split_once(API_PREFIX)
        .map_or(reference, |(_, p)| p)
        .trim_start_matches('/');
    let (set, address) = parse_resource(path)?;
    let (Some((_, logical)), Some(address)) = (entity(&set), address) else {
        return Err(DvError::bad_request(
            "",
            format!("The reference '{reference}' does not name a record."),
        ));
    };
    let index = find_index(inner, &set, &address)?
        .ok_or_else(|| DvError::not_found(logical, &format!("reference {reference}")))?;
    Ok(inner.store[&set][index].id.clone())
}

/// A lead whose email or website domain matches another lead's (duplicate detection).
fn duplicate_lead(
    inner: &Inner,
    set: &str,
    data: &Map<String, Value>,
    except: Option<usize>,
) -> bool {
    if set != "leads" {
        return false;
    }
    let domains = lead_domains(data);
    if domains.is_empty() {
        return false;
    }
    inner.store.get(set).is_some_and(|rows| {
        rows.iter().enumerate().any(|(n, r)| {
            Some(n) != except && lead_domains(&r.data).iter().any(|d| domains.contains(d))
        })
    })
}

fn duplicate_detection_on(request: &ApiRequest) -> bool {
    request
        .headers
        .get("MSCRM.SuppressDuplicateDetection")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
}

fn duplicate_error() -> DvError {
    DvError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        CODE_DUPLICATE,
        "A record was not created or updated because a duplicate of the current record already exists.",
    )
}

fn entity_url(base: &str, set: &str, id: &str) -> String {
    format!("{base}{API_PREFIX}{set}({id})")
}

fn written(
    base: &str,
    set: &str,
    pk: &str,
    record: &Record,
    status_with_body: StatusCode,
    representation: bool,
) -> SimResponse {
    let url = entity_url(base, set, &record.id);
    let headers = vec![
        ("OData-EntityId".to_owned(), url.clone()),
        ("Location".to_owned(), url),
        ("ETag".to_owned(), format!("W/\"{}\"", record.version)),
    ];
    if representation {
        let mut body = record.representation(pk);
        if let Value::Object(object) = &mut body {
            object.insert(
                "@odata.context".into(),
                json!(format!("{base}{API_PREFIX}$metadata#{set}/$entity")),
            );
        }
        SimResponse {
            status: status_with_body,
            headers,
            body: SimBody::Json(body),
        }
    } else {
        SimResponse {
            status: StatusCode::NO_CONTENT,
            headers,
            body: SimBody::Empty,
        }
    }
}

/// Runs one Web API request against the store (the caller holds the lock).
fn execute(
    inner: &mut Inner,
    request: &ApiRequest,
    base: &str,
    refs: &HashMap<String, String>,
) -> SimResponse {
    execute_inner(inner, request, base, refs).unwrap_or_else(DvError::into_sim)
}

fn execute_inner(
    inner: &mut Inner,
    request: &ApiRequest,
    base: &str,
    refs: &HashMap<String, String>,
) -> Result<SimResponse, DvError> {
    let path = match request.path.split_once('/') {
        Some((first, rest)) if refs.contains_key(first) => {
            format!("{}/{rest}", refs[first])
        }
        _ => refs
            .get(&request.path)
            .cloned()
            .unwrap_or_else(|| request.path.clone()),
    };
    let path = path
        .split_once(API_PREFIX)
        .map_or(path.as_str(), |(_, p)| p)
        .trim_start_matches('/')
        .to_owned();
    let (path, action) = match path.rfind(")/") {
        Some(at) => (path[..=at].to_owned(), Some(path[at + 2..].to_owned())),
        None if path.contains('/') && !path.contains('(') => {
            return Err(not_implemented(&path));
        }
        None => (path, None),
    };
    let (set, address) = parse_resource(&path)?;
    let Some((pk, logical)) = entity(&set) else {
        return Err(DvError::new(
            StatusCode::NOT_FOUND,
            CODE_BAD_SEGMENT,
            format!("Resource not found for the segment '{set}'."),
        ));
    };
    if let Some(action) = action {
        return match (
            request.method.as_str(),
            set.as_str(),
            action.as_str(),
            address,
        ) {
            ("POST", "leads", "Microsoft.Dynamics.CRM.QualifyLead", Some(address)) => {
                qualify_lead(inner, &address, request, base)
            }
            _ => Err(not_implemented(&format!("{path}/{action}"))),
        };
    }
    let representation = prefers(&request.headers, "return=representation");
    match (request.method.as_str(), address) {
        ("GET", None) => query(inner, &set, pk, request, base),
        ("GET", Some(address)) => {
            let index = find_index(inner, &set, &address)?
                .ok_or_else(|| DvError::not_found(logical, &describe(&address)))?;
            let select = select_from(request.query.as_deref())?;
            let record = &inner.store[&set][index];
            let mut body = project(&record.representation(pk), select.as_deref(), pk);
            if let Value::Object(object) = &mut body {
                object.insert(
                    "@odata.context".into(),
                    json!(format!("{base}{API_PREFIX}$metadata#{set}/$entity")),
                );
            }
            Ok(SimResponse {
                status: StatusCode::OK,
                headers: vec![("ETag".to_owned(), format!("W/\"{}\"", record.version))],
                body: SimBody::Json(body),
            })
        }
        ("POST", None) => {
            let mut data = prepare_body(inner, &set, request, refs)?;
            let id = match data.remove(pk) {
                Some(Value::String(id)) => {
                    let id = uuid::Uuid::parse_str(&id)
                        .map_err(|_| {
                            DvError::bad_request("", format!("'{pk}' must be a GUID, not '{id}'."))
                        })?
                        .to_string();
                    if find_index(inner, &set, &Address::Id(id.clone()))?.is_some() {
                        return Err(duplicate_key_error());
                    }
                    id
                }
                Some(_) => return Err(DvError::bad_request("", format!("'{pk}' must be a GUID."))),
                None => inner.new_guid(),
            };
            let key = inner.key_column(&set).to_owned();
            if let Some(Value::String(value)) = data.get(&key) {
                let address = Address::Key(vec![(key.clone(), value.clone())]);
                if find_index(inner, &set, &address)?.is_some() {
                    return Err(duplicate_key_error());
                }
            }
            if duplicate_detection_on(request) && duplicate_lead(inner, &set, &data, None) {
                return Err(duplicate_error());
            }
            let record = create(inner, &set, id, data);
            tracing::info!(event = "dataverse_sim_created", set = %set, id = %record.id);
            Ok(written(
                base,
                &set,
                pk,
                &record,
                StatusCode::CREATED,
                representation,
            ))
        }
        ("PATCH", Some(address)) => upsert(inner, &set, pk, logical, address, request, base, refs),
        ("DELETE", Some(address)) => {
            let index = find_index(inner, &set, &address)?
                .ok_or_else(|| DvError::not_found(logical, &describe(&address)))?;
            if let Some(rows) = inner.store.get_mut(&set) {
                rows.remove(index);
            }
            Ok(SimResponse {
                status: StatusCode::NO_CONTENT,
                headers: Vec::new(),
                body: SimBody::Empty,
            })
        }
        (method, _) => Err(DvError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "0x80060888",
            format!("The method '{method}' is not allowed on '{path}'."),
        )),
    }
}

fn not_implemented(path: &str) -> DvError {
    DvError::new(
        StatusCode::NOT_IMPLEMENTED,
        "0x8006088a",
        format!("The simulator does not implement '{path}'."),
    )
}

/// `POST leads(..)/Microsoft.Dynamics.CRM.QualifyLead`: creates the asked-for account, contact and
/// opportunity from the lead, marks it Qualified and answers their references.
fn qualify_lead(
    inner: &mut Inner,
    address: &Address,
    request: &ApiRequest,
    base: &str,
) -> Result<SimResponse, DvError> {
    let body = prepare_body(inner, "leads", request, &HashMap::new())?;
    let flag = |name: &str| body.get(name).and_then(Value::as_bool).unwrap_or(false);
    let status = body.get("Status").and_then(Value::as_i64).unwrap_or(3);
    let index = find_index(inner, "leads", address)?
        .ok_or_else(|| DvError::not_found("lead", &describe(address)))?;
    let lead = inner.store["leads"][index].clone();
    if lead
        .data
        .get("statecode")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        != 0
    {
        return Err(DvError::bad_request(
            "0x80040203",
            "The lead is closed. You cannot convert or qualify a lead that is already closed.",
        ));
    }
    let text = |name: &str| lead.data.get(name).cloned().unwrap_or(Value::Null);
    let mut created = Vec::new();
    let mut account_id = None;
    if flag("CreateAccount") {
        let mut data = Map::new();
        data.insert("name".into(), text("companyname"));
        data.insert("websiteurl".into(), text("websiteurl"));
        data.insert("_originatingleadid_value".into(), json!(lead.id));
        let id = inner.new_guid();
        let record = create(inner, "accounts", id, data);
        created.push(
            json!({"@odata.type": "#Microsoft.Dynamics.CRM.account", "accountid": record.id}),
        );
        account_id = Some(record.id);
    }
    if flag("CreateContact") {
        let mut data = Map::new();
        for column in ["firstname", "lastname", "emailaddress1"] {
            data.insert(column.into(), text(column));
        }
        data.insert("_originatingleadid_value".into(), json!(lead.id));
        if let Some(account) = &account_id {
            data.insert("_parentcustomerid_value".into(), json!(account));
        }
        let id = inner.new_guid();
        let record = create(inner, "contacts", id, data);
        created.push(
            json!({"@odata.type": "#Microsoft.Dynamics.CRM.contact", "contactid": record.id}),
        );
    }
    if flag("CreateOpportunity") {
        let mut data = Map::new();
        data.insert("name".into(), text("subject"));
        data.insert("estimatedvalue".into(), text("estimatedamount"));
        data.insert("_originatingleadid_value".into(), json!(lead.id));
        if let Some(account) = &account_id {
            data.insert("_parentaccountid_value".into(), json!(account));
        }
        let id = inner.new_guid();
        let record = create(inner, "opportunities", id, data);
        created.push(json!({"@odata.type": "#Microsoft.Dynamics.CRM.opportunity", "opportunityid": record.id}));
    }
    let version = inner.next_version();
    if let Some(record) = inner
        .store
        .get_mut("leads")
        .and_then(|rows| rows.get_mut(index))
    {
        record.data.insert("statecode".into(), json!(1));
        record.data.insert("statuscode".into(), json!(status));
        record.version = version;
        record.modified = now_text();
    }
    tracing::info!(event = "dataverse_sim_lead_qualified", id = %lead.id, created = created.len());
    Ok(SimResponse {
        status: StatusCode::OK,
        headers: Vec::new(),
        body: SimBody::Json(json!({
            "@odata.context": format!("{base}{API_PREFIX}$metadata#Collection(Microsoft.Dynamics.CRM.crmbaseentity)"),
            "value": created,
        })),
    })
}

fn duplicate_key_error() -> DvError {
    DvError::new(
        StatusCode::PRECONDITION_FAILED,
        CODE_DUPLICATE_KEY,
        "A record with matching key values already exists.",
    )
}

fn describe(address: &Address) -> String {
    match address {
        Address::Id(id) => format!("Id = {id}"),
        Address::Key(pairs) => pairs
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn create(inner: &mut Inner, set: &str, id: String, data: Map<String, Value>) -> Record {
    let version = inner.next_version();
    let now = now_text();
    let record = Record {
        id,
        version,
        created: now.clone(),
        modified: now,
        data,
    };
    inner
        .store
        .entry(set.to_owned())
        .or_default()
        .push(record.clone());
    record
}

#[allow(clippy::too_many_arguments)]
fn upsert(
    inner: &mut Inner,
    set: &str,
    pk: &str,
    logical: &str,
    address: Address,
    request: &ApiRequest,
    base: &str,
    refs: &HashMap<String, String>,
) -> Result<SimResponse, DvError> {
    let index = find_index(inner, set, &address)?;
    let representation = prefers(&request.headers, "return=representation");
    if let Some(if_match) = request.headers.get("if-match") {
        let Some(index) = index else {
            return Err(DvError::not_found(logical, &describe(&address)));
        };
        let current = format!("{}", inner.store[set][index].version);
        let matched = if_match.split(',').any(|candidate| {
            let candidate = candidate.trim();
            candidate == "*"
                || candidate
                    .strip_prefix("W/")
                    .unwrap_or(candidate)
                    .trim_matches('"')
                    == current
        });
        if !matched {
            return Err(DvError::new(
                StatusCode::PRECONDITION_FAILED,
                CODE_VERSION_MISMATCH,
                "The version of the existing record doesn't match the RowVersion property provided.",
            ));
        }
    }
    if index.is_some()
        && request
            .headers
            .get("if-none-match")
            .is_some_and(|v| v.trim() == "*")
    {
        return Err(duplicate_key_error());
    }
    let mut data = prepare_body(inner, set, request, refs)?;
    if let Some(body_pk) = data.remove(pk) {
        let same = matches!((&address, &body_pk), (Address::Id(id), Value::String(b)) if b.eq_ignore_ascii_case(id));
        if !same {
            return Err(DvError::bad_request(
                "",
                format!("The body '{pk}' differs from the record addressed by the URL."),
            ));
        }
    }
    if let Address::Key(pairs) = &address {
        for (name, value) in pairs {
            match data.get(name) {
                None => {}
                Some(Value::String(v)) if v.eq_ignore_ascii_case(value) => {}
                Some(_) => {
                    return Err(DvError::bad_request(
                        "",
                        format!("The body '{name}' differs from the alternate key in the URL."),
                    ));
                }
            }
        }
    }
    if duplicate_detection_on(request) && duplicate_lead(inner, set, &data, index) {
        return Err(duplicate_error());
    }
    match index {
        Some(index) => {
            let version = inner.next_version();
            let rows = inner.store.entry(set.to_owned()).or_default();
            let record = &mut rows[index];
            record.data.extend(data);
            record.version = version;
            record.modified = now_text();
            let record = record.clone();
            tracing::info!(event = "dataverse_sim_updated", set = %set, id = %record.id);
            Ok(written(
                base,
                set,
                pk,
                &record,
                StatusCode::OK,
                representation,
            ))
        }
        None => {
            let id = match &address {
                Address::Id(id) => id.clone(),
                Address::Key(pairs) => {
                    for (name, value) in pairs {
                        data.insert(name.clone(), json!(value));
                    }
                    inner.new_guid()
                }
            };
            let record = create(inner, set, id, data);
            tracing::info!(event = "dataverse_sim_created", set = %set, id = %record.id, upsert = true);
            Ok(written(
                base,
                set,
                pk,
                &record,
                StatusCode::CREATED,
                representation,
            ))
        }
    }
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

fn select_from(query: Option<&str>) -> Result<Option<Vec<String>>, DvError> {
    let mut select = None;
    for (key, value) in query_pairs(query) {
        match key.as_str() {
            "$select" => select = Some(value),
            k if k.starts_with('$') => {
                return Err(DvError::bad_request(
                    CODE_BAD_SEGMENT,
                    format!("The query parameter {k} is not supported"),
                ));
            }
            _ => {}
        }
    }
    select.map(|s| parse_select(&s)).transpose()
}

fn parse_select(input: &str) -> Result<Vec<String>, DvError> {
    let names: Vec<String> = input.split(',').map(|s| s.trim().to_owned()).collect();
    if let Some(bad) = names
        .iter()
        .find(|n| n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(DvError::bad_request(
            CODE_BAD_SEGMENT,
            format!("Could not find a property named '{bad}'."),
        ));
    }
    Ok(names)
}

/// The record reduced to the selected columns (the primary key and etag always stay).
fn project(record: &Value, select: Option<&[String]>, pk: &str) -> Value {
    match (select, record) {
        (Some(names), Value::Object(object)) => Value::Object(
            object
                .iter()
                .filter(|(k, _)| *k == "@odata.etag" || *k == pk || names.iter().any(|n| n == *k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        _ => record.clone(),
    }
}

/// `Prefer: odata.maxpagesize=N`, if any.
fn max_page_size(headers: &Headers) -> Option<usize> {
    headers.get_all("prefer").find_map(|v| {
        v.split(',').find_map(|p| {
            let (name, value) = p.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("odata.maxpagesize")
                .then(|| value.trim().trim_matches('"').parse::<usize>().ok())
                .flatten()
                .filter(|n| *n > 0)
        })
    })
}

/// Parses `$orderby` (`col [asc|desc], ...`) into (column, descending) pairs.
fn parse_orderby(input: &str) -> Result<Vec<(String, bool)>, DvError> {
    input
        .split(',')
        .map(|item| {
            let mut words = item.split_whitespace();
            let column = words.next().unwrap_or_default();
            let descending = match words.next().map(str::to_ascii_lowercase).as_deref() {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(other) => {
                    return Err(DvError::bad_request(
                        CODE_BAD_SEGMENT,
                        format!("Invalid $orderby direction '{other}'."),
                    ));
                }
            };
            if column.is_empty()
                || words.next().is_some()
                || !column
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(DvError::bad_request(
                    CODE_BAD_SEGMENT,
                    format!("Invalid $orderby item '{}'.", item.trim()),
                ));
            }
            Ok((column.to_owned(), descending))
        })
        .collect()
}

/// Nulls first; numbers by value; strings case-insensitively; other kinds by their JSON text.
fn compare_values(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let a = a.filter(|v| !v.is_null());
    let b = b.filter(|v| !v.is_null());
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(Value::String(x)), Some(Value::String(y))) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Some(x), Some(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => x.to_string().cmp(&y.to_string()),
        },
    }
}

fn query(
    inner: &Inner,
    set: &str,
    pk: &str,
    request: &ApiRequest,
    base: &str,
) -> Result<SimResponse, DvError> {
    let mut filter = None;
    let mut select = None;
    let mut top = None;
    let mut order = Vec::new();
    let mut skip = 0usize;
    let mut kept_query = Vec::new();
    let raw_query = request.query.as_deref().unwrap_or_default();
    for raw in raw_query.split('&').filter(|p| !p.is_empty()) {
        if !percent_decode(raw, true).starts_with("$skiptoken=") {
            kept_query.push(raw);
        }
    }
    for (key, value) in query_pairs(request.query.as_deref()) {
        match key.as_str() {
            "$filter" => {
                filter = Some(filter::parse(&value).map_err(|e| {
                    DvError::bad_request(
                        CODE_BAD_SEGMENT,
                        format!("Invalid $filter '{value}': {e}"),
                    )
                })?);
            }
            "$select" => select = Some(parse_select(&value)?),
            "$orderby" => order = parse_orderby(&value)?,
            "$top" => {
                top = Some(value.trim().parse::<usize>().map_err(|_| {
                    DvError::bad_request(
                        CODE_BAD_SEGMENT,
                        format!("Invalid value '{value}' for $top query option."),
                    )
                })?);
            }
            "$skiptoken" => {
                skip = value.trim().parse::<usize>().map_err(|_| {
                    DvError::bad_request(CODE_BAD_SEGMENT, "The $skiptoken is not valid.")
                })?;
            }
            k if k.starts_with('$') => {
                return Err(DvError::bad_request(
                    CODE_BAD_SEGMENT,
                    format!("The query parameter {k} is not supported"),
                ));
            }
            _ => {}
        }
    }
    let rows = inner.store.get(set).map(Vec::as_slice).unwrap_or_default();
    let mut matched: Vec<Value> = rows
        .iter()
        .map(|r| r.representation(pk))
        .filter(|r| filter.as_ref().is_none_or(|f| f.matches(r)))
        .collect();
    if !order.is_empty() {
        matched.sort_by(|a, b| {
            order
                .iter()
                .map(|(column, descending)| {
                    let o = compare_values(a.get(column), b.get(column));
                    if *descending { o.reverse() } else { o }
                })
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
    }
    if let Some(top) = top {
        matched.truncate(top);
    }
    let page_size = max_page_size(&request.headers);
    let end = page_size.map_or(matched.len(), |n| skip.saturating_add(n).min(matched.len()));
    let value: Vec<Value> = matched
        .get(skip.min(end)..end)
        .unwrap_or_default()
        .iter()
        .map(|r| project(r, select.as_deref(), pk))
        .collect();
    let context = match &select {
        Some(names) => format!("{base}{API_PREFIX}$metadata#{set}({})", names.join(",")),
        None => format!("{base}{API_PREFIX}$metadata#{set}"),
    };
    let mut body = json!({"@odata.context": context, "value": value});
    let mut headers = Vec::new();
    if let Some(n) = page_size {
        headers.push((
            "Preference-Applied".to_owned(),
            format!("odata.maxpagesize={n}"),
        ));
        if end < matched.len() {
            kept_query.push("");
            let query = kept_query.join("&");
            body["@odata.nextLink"] =
                json!(format!("{base}{API_PREFIX}{set}?{query}$skiptoken={end}"));
        }
    }
    Ok(SimResponse {
        status: StatusCode::OK,
        headers,
        body: SimBody::Json(body),
    })
}

/// `OData-MaxVersion`, `OData-Version` and `Accept` on every API request.
fn check_odata_headers(headers: &Headers) -> Result<(), DvError> {
    for name in ["OData-MaxVersion", "OData-Version"] {
        if headers.get(name).map(str::trim) != Some("4.0") {
            return Err(DvError::bad_request(
                "",
                format!("The request must carry the header '{name}: 4.0'."),
            ));
        }
    }
    let accept_ok = headers
        .get("accept")
        .is_some_and(|a| a.to_ascii_lowercase().contains("application/json"));
    if !accept_ok {
        return Err(DvError::bad_request(
            "",
            "The request must carry the header 'Accept: application/json'.",
        ));
    }
    Ok(())
}

/// Every Web API request: auth, OData headers, service protection, latency, faults, then work.
async fn api(State(sim): State<DataverseSim>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if let Err(error) = sim.check_auth(&parts.headers) {
        let mut response = error.into_response();
        response.extensions_mut().insert(AuthOk(false));
        return response;
    }
    let response = api_authorized(&sim, parts, body).await;
    let mut response = response.into_response();
    response.extensions_mut().insert(AuthOk(true));
    response
}

async fn api_authorized(
    sim: &DataverseSim,
    parts: axum::http::request::Parts,
    body: Body,
) -> Response {
    let headers = Headers::from_map(&parts.headers);
    if let Err(error) = check_odata_headers(&headers) {
        return error.into_response();
    }
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return DvError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "",
                "The request body is too large.",
            )
            .into_response();
        }
    };
    let in_flight = match sim.admit() {
        Ok(in_flight) => in_flight,
        Err(error) => return error.into_response(),
    };
    let latency = sim.lock().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let result = match sim.injected_fault() {
        Some(fault) => fault.into_sim(),
        None => {
            let base = sim.base_url(&parts.headers);
            let raw_path = parts.uri.path();
            let path = percent_decode(raw_path.strip_prefix(API_PREFIX).unwrap_or(raw_path), false);
            if path == "$batch" {
                if parts.method == axum::http::Method::POST {
                    sim.batch(&headers, &body, &base)
                        .unwrap_or_else(DvError::into_sim)
                } else {
                    DvError::new(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "",
                        "$batch accepts only POST.",
                    )
                    .into_sim()
                }
            } else {
                let request = ApiRequest {
                    method: parts.method.as_str().to_owned(),
                    path,
                    query: parts.uri.query().map(str::to_owned),
                    headers,
                    body: body.to_vec(),
                    content_id: None,
                };
                let mut inner = sim.lock();
                execute(&mut inner, &request, &base, &HashMap::new())
            }
        }
    };
    let mut response = result.into_response();
    let headers = response.headers_mut();
    headers.insert(
        "x-ms-ratelimit-burst-remaining-xrm-requests",
        HeaderValue::from(in_flight.burst_remaining),
    );
    headers.insert(
        "x-ms-ratelimit-time-remaining-xrm-requests",
        HeaderValue::from(in_flight.time_remaining_ms),
    );
    drop(in_flight);
    response
}

/// Adds `request-id`, `x-ms-service-request-id`, `x-ms-dop-hint`; records and logs every request.
async fn envelope(State(sim): State<DataverseSim>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    let request_id = uuid::Uuid::new_v4().to_string();
    let started = Instant::now();
    let mut response = next.run(request).await;
    let dop_hint = sim.lock().dop_hint;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("request-id", value.clone());
        response
            .headers_mut()
            .insert("x-ms-service-request-id", value);
    }
    response
        .headers_mut()
        .insert("x-ms-dop-hint", HeaderValue::from(dop_hint));
    let status = response.status().as_u16();
    let auth_ok = response.extensions().get::<AuthOk>().is_some_and(|a| a.0);
    let error_code = response
        .extensions()
        .get::<ErrorCode>()
        .map(|c| c.0.clone());
    tracing::info!(
        event = "dataverse_sim_request",
        method = %method,
        path = %path,
        status,
        auth_ok,
        error_code = error_code.as_deref(),
        request_id = %request_id,
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    );
    if !path.starts_with("/_sim/") {
        sim.lock().record(RecordedRequest {
            method,
            path,
            status,
            auth_ok,
            request_id,
            error_code,
        });
    }
    response
}

async fn token(
    State(sim): State<DataverseSim>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let result = form
        .map_err(|e| {
            OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900_144,
                format!(
                    "AADSTS900144: The request body must be application/x-www-form-urlencoded: {}",
                    e.body_text()
                ),
            )
        })
        .and_then(|Form(form)| sim.token_grant(&form));
    match result {
        Ok(body) => {
            let mut response = ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response();
            response.extensions_mut().insert(AuthOk(true));
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn not_found(uri: axum::http::Uri) -> Response {
    DvError::new(
        StatusCode::NOT_FOUND,
        CODE_BAD_SEGMENT,
        format!("No resource at '{}'.", uri.path()),
    )
    .into_response()
}

async fn control_requests(State(sim): State<DataverseSim>) -> Json<Vec<RecordedRequest>> {
    Json(sim.requests())
}

async fn control_clear_requests(State(sim): State<DataverseSim>) -> StatusCode {
    sim.clear_requests();
    StatusCode::NO_CONTENT
}

async fn control_get_faults(State(sim): State<DataverseSim>) -> Json<Faults> {
    Json(sim.faults())
}

async fn control_put_faults(State(sim): State<DataverseSim>, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => {
            sim.set_faults(faults);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => {
            DvError::bad_request("", format!("Faults JSON cannot be read: {e}")).into_response()
        }
    }
}

async fn control_get_limits(State(sim): State<DataverseSim>) -> Response {
    Json(LimitsJson::from(&sim.limits())).into_response()
}

async fn control_put_limits(State(sim): State<DataverseSim>, body: Bytes) -> Response {
    match serde_json::from_slice::<LimitsJson>(&body) {
        Ok(limits) => {
            sim.set_limits(limits.into());
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => {
            DvError::bad_request("", format!("Limits JSON cannot be read: {e}")).into_response()
        }
    }
}

async fn control_get_records(State(sim): State<DataverseSim>, Path(set): Path<String>) -> Response {
    if entity(&set).is_none() {
        return not_found(format!("/_sim/records/{set}").parse().unwrap_or_default()).await;
    }
    Json(sim.records(&set)).into_response()
}

async fn control_insert_record(
    State(sim): State<DataverseSim>,
    Path(set): Path<String>,
    body: Bytes,
) -> Response {
    match serde_json::from_slice::<Value>(&body) {
        Ok(record @ Value::Object(_)) if entity(&set).is_some() => {
            let id = sim.insert_record(&set, record);
            (StatusCode::CREATED, Json(json!({"id": id}))).into_response()
        }
        _ => DvError::bad_request("", "A JSON object for a known entity set is expected.")
            .into_response(),
    }
}

async fn control_expire_tokens(State(sim): State<DataverseSim>) -> StatusCode {
    sim.expire_all_tokens();
    StatusCode::NO_CONTENT
}

/// `$batch` multipart/mixed: a small, strict parser and the response writer.
mod multipart {
    use std::fmt::Write as _;

    use super::{API_PREFIX, ApiRequest, Headers, SimBody, SimResponse, percent_decode};

    /// One top-level part: a request or a change set.
    #[derive(Debug)]
    pub(super) enum Item {
        Single(ApiRequest),
        ChangeSet(Vec<ApiRequest>),
    }

    impl Item {
        pub(super) fn len(&self) -> usize {
            match self {
                Item::Single(_) => 1,
                Item::ChangeSet(requests) => requests.len(),
            }
        }
    }

    /// The `boundary` parameter of a `multipart/mixed` content type.
    pub(super) fn boundary(content_type: &str) -> Option<String> {
        let mut params = content_type.split(';');
        let media = params.next()?.trim();
        if !media.eq_ignore_ascii_case("multipart/mixed") {
            return None;
        }
        params
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
            .map(|(_, v)| v.trim().trim_matches('"').to_owned())
            .filter(|b| !b.is_empty())
    }

    /// The parts between `--boundary` lines (up to `--boundary--`), CRLF or LF line ends.
    fn split(text: &str, boundary: &str) -> Result<Vec<String>, String> {
        let open = format!("--{boundary}");
        let close = format!("--{boundary}--");
        let mut parts = Vec::new();
        let mut current: Option<Vec<&str>> = None;
        for line in text.lines() {
            let trimmed = line.trim_end();
            if trimmed == close {
                if let Some(lines) = current.take() {
                    parts.push(lines.join("\n"));
                }
                if parts.is_empty() {
                    return Err("no parts".into());
                }
                return Ok(parts);
            }
            if trimmed == open {
                if let Some(lines) = current.take() {
                    parts.push(lines.join("\n"));
                }
                current = Some(Vec::new());
            } else if let Some(lines) = current.as_mut() {
                lines.push(line);
            }
        }
        Err(format!("the closing delimiter '{close}' is missing"))
    }

    /// Splits a header block from the content at the first empty line.
    fn headers_and_content(part: &str) -> Result<(Headers, &str), String> {
        let (head, content) = match part.find("\n\n") {
            Some(at) => (&part[..at], &part[at + 2..]),
            None if part.trim().is_empty() => return Err("empty part".into()),
            None => (part, ""),
        };
        let mut headers = Vec::new();
        for line in head.lines() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("malformed header line '{line}'"))?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        Ok((Headers(headers), content))
    }

    fn request(part: &str) -> Result<ApiRequest, String> {
        let (part_headers, content) = headers_and_content(part)?;
        let kind = part_headers.get("content-type").unwrap_or_default();
        if !kind.to_ascii_lowercase().starts_with("application/http") {
            return Err(format!(
                "a part must have Content-Type application/http, not '{kind}'"
            ));
        }
        let content = content.trim_start_matches('\n');
        let (request_line, rest) = content.split_once('\n').unwrap_or((content, ""));
        let mut words = request_line.split_whitespace();
        let (Some(method), Some(url)) = (words.next(), words.next()) else {
            return Err(format!("malformed request line '{request_line}'"));
        };
        let (headers, body) = if rest.trim().is_empty() {
            (Headers::default(), "")
        } else if let Some(body) = rest.strip_prefix('\n') {
            (Headers::default(), body)
        } else {
            headers_and_content(rest)?
        };
        let url = url
            .split_once(API_PREFIX)
            .map_or(url, |(_, p)| p)
            .trim_start_matches('/');
        let (path, query) = match url.split_once('?') {
            Some((p, q)) => (p, Some(q.to_owned())),
            None => (url, None),
        };
        Ok(ApiRequest {
            method: method.to_ascii_uppercase(),
            path: percent_decode(path, false),
            query,
            headers,
            body: body.trim().as_bytes().to_vec(),
            content_id: part_headers.get("content-id").map(str::to_owned),
        })
    }

    /// Parses a `$batch` body into requests and change sets (no nesting beyond one change set).
    pub(super) fn parse_batch(text: &str, boundary: &str) -> Result<Vec<Item>, String> {
        let text = text.replace("\r\n", "\n");
        let mut items = Vec::new();
        for part in split(&text, boundary)? {
            let (headers, content) = headers_and_content(&part)?;
            let kind = headers.get("content-type").unwrap_or_default();
            if let Some(inner) = boundary_of(kind) {
                let mut requests = Vec::new();
                for inner_part in split(content, &inner)? {
                    let request = request(&inner_part)?;
                    if request.method == "GET" {
                        return Err("a change set cannot hold a GET".into());
                    }
                    requests.push(request);
                }
                items.push(Item::ChangeSet(requests));
            } else {
                items.push(Item::Single(request(&part)?));
            }
        }
        Ok(items)
    }

    fn boundary_of(kind: &str) -> Option<String> {
        boundary(kind)
    }

    /// Writes a `multipart/mixed` batch response.
    #[derive(Debug)]
    pub(super) struct Writer {
        boundary: String,
        text: String,
    }

    fn write_response(text: &mut String, response: &SimResponse, content_id: Option<&str>) {
        text.push_str("Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n");
        if let Some(id) = content_id {
            let _ = write!(text, "Content-ID: {id}\r\n");
        }
        let _ = write!(
            text,
            "\r\nHTTP/1.1 {} {}\r\n",
            response.status.as_u16(),
            response.status.canonical_reason().unwrap_or("")
        );
        for (name, value) in &response.headers {
            let _ = write!(text, "{name}: {value}\r\n");
        }
        text.push_str("OData-Version: 4.0\r\n");
        match &response.body {
            SimBody::Empty => text.push_str("\r\n"),
            SimBody::Json(body) => {
                let _ = write!(
                    text,
                    "Content-Type: {}\r\n\r\n{body}\r\n",
                    super::JSON_CONTENT_TYPE
                );
            }
            SimBody::Text(body) => {
                let _ = write!(text, "\r\n{body}\r\n");
            }
        }
    }

    impl Writer {
        pub(super) fn new(boundary: &str) -> Self {
            Self {
                boundary: boundary.to_owned(),
                text: String::new(),
            }
        }

        pub(super) fn part(&mut self, response: &SimResponse, content_id: Option<&str>) {
            let _ = write!(self.text, "--{}\r\n", self.boundary);
            write_response(&mut self.text, response, content_id);
        }

        pub(super) fn changeset(
            &mut self,
            boundary: &str,
            responses: &[(SimResponse, Option<String>)],
        ) {
            let _ = write!(
                self.text,
                "--{}\r\nContent-Type: multipart/mixed; boundary={boundary}\r\n\r\n",
                self.boundary
            );
            for (response, content_id) in responses {
                let _ = write!(self.text, "--{boundary}\r\n");
                write_response(&mut self.text, response, content_id.as_deref());
            }
            let _ = write!(self.text, "--{boundary}--\r\n");
        }

        /// The content type and the body.
        pub(super) fn finish(mut self) -> (String, String) {
            let _ = write!(self.text, "--{}--\r\n", self.boundary);
            (
                format!("multipart/mixed; boundary={}", self.boundary),
                self.text,
            )
        }
    }
}

/// A small OData `$filter` subset: `eq`/`ne`/`gt`/`ge`/`lt`/`le`, `contains`/`startswith`/
/// `endswith`, `and`/`or`/`not`, parentheses; string comparisons are case-insensitive (as in SQL).
mod filter {
    use std::cmp::Ordering;

    use serde_json::Value;

    #[derive(Debug, Clone, PartialEq)]
    enum Token {
        Open,
        Close,
        Comma,
        Word(String),
        Str(String),
    }

    #[derive(Debug, Clone, PartialEq)]
    pub(super) enum Literal {
        Null,
        Bool(bool),
        Number(f64),
        Text(String),
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Op {
        Eq,
        Ne,
        Gt,
        Ge,
        Lt,
        Le,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Func {
        Contains,
        StartsWith,
        EndsWith,
    }

    /// A parsed `$filter`.
    #[derive(Debug, Clone, PartialEq)]
    pub(super) enum Expr {
        Or(Box<Expr>, Box<Expr>),
        And(Box<Expr>, Box<Expr>),
        Not(Box<Expr>),
        Compare(String, Op, Literal),
        Call(Func, String, String),
    }

    fn lex(input: &str) -> Result<Vec<Token>, String> {
        let mut tokens = Vec::new();
        let mut chars = input.chars().peekable();
        while let Some(&c) = chars.peek() {
            match c {
                c if c.is_whitespace() => {
                    chars.next();
                }
                '(' => {
                    chars.next();
                    tokens.push(Token::Open);
                }
                ')' => {
                    chars.next();
                    tokens.push(Token::Close);
                }
                ',' => {
                    chars.next();
                    tokens.push(Token::Comma);
                }
                '\'' => {
                    chars.next();
                    let mut text = String::new();
                    loop {
                        match chars.next() {
                            Some('\'') if chars.peek() == Some(&'\'') => {
                                chars.next();
                                text.push('\'');
                            }
                            Some('\'') => break,
                            Some(c) => text.push(c),
                            None => return Err("unterminated string literal".into()),
                        }
                    }
                    tokens.push(Token::Str(text));
                }
                _ => {
                    let mut word = String::new();
                    while let Some(&c) = chars.peek() {
                        if c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '+' | ':' | '/') {
                            word.push(c);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    if word.is_empty() {
                        return Err(format!("unexpected character '{c}'"));
                    }
                    tokens.push(Token::Word(word));
                }
            }
        }
        Ok(tokens)
    }

    struct Parser {
        tokens: Vec<Token>,
        at: usize,
    }

    fn is_identifier(word: &str) -> bool {
        word.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    impl Parser {
        fn peek(&self) -> Option<&Token> {
            self.tokens.get(self.at)
        }

        fn next(&mut self) -> Option<Token> {
            let token = self.tokens.get(self.at).cloned();
            self.at += 1;
            token
        }

        fn keyword(&self, keyword: &str) -> bool {
            matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(keyword))
        }

        fn expect(&mut self, token: &Token) -> Result<(), String> {
            match self.next() {
                Some(t) if t == *token => Ok(()),
                other => Err(format!("expected {token:?}, found {other:?}")),
            }
        }

        fn or(&mut self) -> Result<Expr, String> {
            let mut left = self.and()?;
            while self.keyword("or") {
                self.at += 1;
                left = Expr::Or(Box::new(left), Box::new(self.and()?));
            }
            Ok(left)
        }

        fn and(&mut self) -> Result<Expr, String> {
            let mut left = self.unary()?;
            while self.keyword("and") {
                self.at += 1;
                left = Expr::And(Box::new(left), Box::new(self.unary()?));
            }
            Ok(left)
        }

        fn unary(&mut self) -> Result<Expr, String> {
            if self.keyword("not") {
                self.at += 1;
                return Ok(Expr::Not(Box::new(self.unary()?)));
            }
            self.primary()
        }

        fn identifier(&mut self) -> Result<String, String> {
            match self.next() {
                Some(Token::Word(w)) if is_identifier(&w) => Ok(w),
                other => Err(format!("expected a column name, found {other:?}")),
            }
        }

        fn primary(&mut self) -> Result<Expr, String> {
            if self.peek() == Some(&Token::Open) {
                self.at += 1;
                let inner = self.or()?;
                self.expect(&Token::Close)?;
                return Ok(inner);
            }
            let name = self.identifier()?;
            let func = match name.to_ascii_lowercase().as_str() {
                "contains" => Some(Func::Contains),
                "startswith" => Some(Func::StartsWith),
                "endswith" => Some(Func::EndsWith),
                _ => None,
            };
            if let Some(func) = func.filter(|_| self.peek() == Some(&Token::Open)) {
                self.at += 1;
                let column = self.identifier()?;
                self.expect(&Token::Comma)?;
                let Some(Token::Str(text)) = self.next() else {
                    return Err(format!("{name} expects a string literal"));
                };
                self.expect(&Token::Close)?;
                return Ok(Expr::Call(func, column, text));
            }
            let op = match self.next() {
                Some(Token::Word(w)) => match w.to_ascii_lowercase().as_str() {
                    "eq" => Op::Eq,
                    "ne" => Op::Ne,
                    "gt" => Op::Gt,
                    "ge" => Op::Ge,
                    "lt" => Op::Lt,
                    "le" => Op::Le,
                    _ => return Err(format!("unknown operator '{w}'")),
                },
                other => return Err(format!("expected an operator, found {other:?}")),
            };
            let literal = match self.next() {
                Some(Token::Str(text)) => Literal::Text(text),
                Some(Token::Word(w)) => match w.to_ascii_lowercase().as_str() {
                    "null" => Literal::Null,
                    "true" => Literal::Bool(true),
                    "false" => Literal::Bool(false),
                    lower => {
                        if let Ok(n) = lower.parse::<f64>() {
                            Literal::Number(n)
                        } else if let Ok(id) = uuid::Uuid::parse_str(lower) {
                            Literal::Text(id.to_string())
                        } else {
                            return Err(format!("'{w}' is not a literal"));
                        }
                    }
                },
                other => return Err(format!("expected a literal, found {other:?}")),
            };
            Ok(Expr::Compare(name, op, literal))
        }
    }

    /// Parses a `$filter` expression.
    pub(super) fn parse(input: &str) -> Result<Expr, String> {
        let mut parser = Parser {
            tokens: lex(input)?,
            at: 0,
        };
        if parser.tokens.is_empty() {
            return Err("empty expression".into());
        }
        let expr = parser.or()?;
        if let Some(extra) = parser.peek() {
            return Err(format!("unexpected {extra:?}"));
        }
        Ok(expr)
    }

    fn compare(value: Option<&Value>, op: Op, literal: &Literal) -> bool {
        let value = value.filter(|v| !v.is_null());
        let ordering = match (value, literal) {
            (None, Literal::Null) => Some(Ordering::Equal),
            (None, _) | (Some(_), Literal::Null) => None,
            (Some(Value::String(s)), Literal::Text(t)) => {
                Some(s.to_lowercase().cmp(&t.to_lowercase()))
            }
            (Some(v), Literal::Number(n)) => v.as_f64().and_then(|x| x.partial_cmp(n)),
            (Some(Value::Bool(b)), Literal::Bool(l)) => Some(b.cmp(l)),
            _ => None,
        };
        match (op, ordering) {
            (Op::Ne, None) => true,
            (_, None) => false,
            (Op::Eq, Some(o)) => o == Ordering::Equal,
            (Op::Ne, Some(o)) => o != Ordering::Equal,
            (Op::Gt, Some(o)) => o == Ordering::Greater,
            (Op::Ge, Some(o)) => o != Ordering::Less,
            (Op::Lt, Some(o)) => o == Ordering::Less,
            (Op::Le, Some(o)) => o != Ordering::Greater,
        }
    }

    impl Expr {
        /// Whether the record matches (a missing column is null).
        pub(super) fn matches(&self, record: &Value) -> bool {
            match self {
                Expr::Or(a, b) => a.matches(record) || b.matches(record),
                Expr::And(a, b) => a.matches(record) && b.matches(record),
                Expr::Not(a) => !a.matches(record),
                Expr::Compare(column, op, literal) => compare(record.get(column), *op, literal),
                Expr::Call(func, column, text) => {
                    let Some(value) = record.get(column).and_then(Value::as_str) else {
                        return false;
                    };
                    let (value, text) = (value.to_lowercase(), text.to_lowercase());
                    match func {
                        Func::Contains => value.contains(&text),
                        Func::StartsWith => value.starts_with(&text),
                        Func::EndsWith => value.ends_with(&text),
                    }
                }
            }
        }
    }

    #[cfg(test)]
    #[allow(clippy::unwrap_used)]
    mod tests {
        use serde_json::json;

        use super::*;

        fn check(filter: &str, record: &Value) -> bool {
            parse(filter).unwrap().matches(record)
        }

        #[test]
        fn when_filter_mixes_functions_and_logic_should_match() {
            let r = json!({"websiteurl": "https://Contoso.com", "emailaddress1": "a@contoso.com", "n": 3});
            assert!(check(
                "contains(websiteurl,'contoso.com') or contains(emailaddress1,'@x.com')",
                &r
            ));
            assert!(check(
                "(n eq 3 or n eq 4) and not (emailaddress1 eq null)",
                &r
            ));
            assert!(!check("n gt 3 and websiteurl ne null", &r));
            assert!(check("missing eq null and n ge 3", &r));
        }

        #[test]
        fn when_quotes_are_doubled_should_unescape() {
            let r = json!({"companyname": "O'Brien Ltd"});
            assert!(check("companyname eq 'o''brien ltd'", &r));
        }

        #[test]
        fn when_input_is_garbage_should_fail() {
            for bad in [
                "",
                "a",
                "a eq",
                "a eq 'x",
                "(a eq 'x'",
                "a eq 'x')",
                "a equals 'x'",
                "contains(a, 1)",
                "'x' eq a",
                "a eq 'x' and",
            ] {
                assert!(parse(bad).is_err(), "{bad}");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn when_key_has_quotes_should_unescape_and_split_pairs() {
        assert_eq!(
            parse_key_pairs("hnt_hunterkey='o''brien.com'").unwrap(),
            vec![("hnt_hunterkey".to_owned(), "o'brien.com".to_owned())]
        );
        assert_eq!(
            parse_key_pairs("k1='a,b',k2=7").unwrap(),
            vec![
                ("k1".to_owned(), "a,b".to_owned()),
                ("k2".to_owned(), "7".to_owned())
            ]
        );
        assert!(parse_key_pairs("k1='a").is_err());
        assert!(parse_key_pairs("='a'").is_err());
        let (set, address) = parse_resource("leads(0000000A-0000-0000-0000-000000000001)").unwrap();
        assert_eq!(set, "leads");
        assert_eq!(
            address,
            Some(Address::Id("0000000a-0000-0000-0000-000000000001".into()))
        );
    }

    #[test]
    fn when_domains_are_read_should_normalize() {
        assert_eq!(
            domain_of("https://www.Contoso.com/x").as_deref(),
            Some("contoso.com")
        );
        assert_eq!(domain_of("Ann@Contoso.com").as_deref(), Some("contoso.com"));
        assert_eq!(
            domain_of("contoso.com:8080").as_deref(),
            Some("contoso.com")
        );
        assert_eq!(domain_of(" "), None);
    }

    #[test]
    fn when_batch_is_parsed_should_find_changesets_and_requests() {
        let body = "--batch_1\r\nContent-Type: multipart/mixed; boundary=changeset_1\r\n\r\n--changeset_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\nPOST /api/data/v9.2/leads HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n{\"subject\":\"a\"}\r\n--changeset_1--\r\n--batch_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nGET /api/data/v9.2/leads?$top=1 HTTP/1.1\r\n\r\n--batch_1--\r\n";
        let items = multipart::parse_batch(body, "batch_1").unwrap();
        assert_eq!(items.len(), 2);
        let multipart::Item::ChangeSet(requests) = &items[0] else {
            panic!("not a change set");
        };
        assert_eq!(requests[0].method, "POST");
        assert_eq!(requests[0].path, "leads");
        assert_eq!(requests[0].content_id.as_deref(), Some("1"));
        assert_eq!(requests[0].body, b"{\"subject\":\"a\"}");
        let multipart::Item::Single(get) = &items[1] else {
            panic!("not a request");
        };
        assert_eq!(get.query.as_deref(), Some("$top=1"));
        assert!(multipart::parse_batch("--batch_1\r\n", "batch_1").is_err());
        assert_eq!(
            multipart::boundary("multipart/mixed; boundary=\"batch_x\"").as_deref(),
            Some("batch_x")
        );
    }
}
