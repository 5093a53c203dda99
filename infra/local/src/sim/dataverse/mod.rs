//! Dataverse (Dynamics 365) Web API simulator, with the Entra ID client-credentials token endpoint.
//!
//! Follows `docs/reference/dataverse-web-api.md`: `/api/data/v9.2/{set}` create, upsert by id or
//! alternate key (`leads(hnt_hunterkey='x')`) with `If-Match`/`If-None-Match`, `$filter`/`$select`/
//! `$orderby`/`$top` queries with `Prefer: odata.maxpagesize` paging, `QualifyLead`, the
//! `{"error":{"code","message"}}` error body, column length limits, duplicate detection on
//! `MSCRM.SuppressDuplicateDetection: false`, service-protection limits (429 with `Retry-After` and
//! the documented codes), `x-ms-dop-hint`, `$batch` with atomic change sets, and fault injection
//! driven by a seeded RNG so tests are deterministic, and change tracking
//! (`Prefer: odata.track-changes`, `@odata.deltaLink`, `$deltatoken`; see `change_tracking.rs`).
//! Records are owned (`_ownerid_value`) by the application user unless a seller reassigns them;
//! owners the simulator knows ([`SIM_USERS`]) come with their name as a FormattedValue
//! annotation (always, not only when asked for). `QualifyLead` sets `_qualifyingopportunityid_value`.
//!
//! Entity sets: `leads`, `accounts`, `contacts`, `opportunities` (see [`ENTITY_SETS`]); records are
//! free-form JSON objects keyed by a GUID primary key. Control routes: `GET|POST /_sim/records/{set}`,
//! `PATCH /_sim/records/{set}/{key}` (a seller's edit, by alternate key),
//! `GET|PUT /_sim/faults`, `GET|PUT /_sim/limits`, `GET|DELETE /_sim/requests`,
//! `GET|DELETE /_sim/usage` (requests, 429s and peak concurrency per application user),
//! `POST /_sim/expire-tokens`.
//!
//! Service-protection limits are kept per application user (the client id the access token was
//! issued to; [`DataverseConfig::extra_clients`] adds users), over a sliding window; every
//! answer to an authenticated call carries `x-ms-ratelimit-burst-remaining-xrm-requests`,
//! `x-ms-ratelimit-time-remaining-xrm-requests` and `x-ms-dop-hint`.

mod address;
mod api;
mod auth;
mod batch;
mod change_tracking;
mod filter;
mod limits;
mod query;
mod routes;
mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hunter_core::secret::Secret;
use serde_json::Value;

use super::http;
use super::server::{Running, Simulator};
pub use limits::{Faults, Limits, Usage, UserUsage};
use state::{Inner, Record};

/// Path prefix of the Web API.
pub const API_PREFIX: &str = "/api/data/v9.2/";
pub use super::server::SIM_TENANT;
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
/// Error code of an unknown, garbled or expired change-tracking `$deltatoken`.
pub const CODE_INVALID_DELTA_TOKEN: &str = "0x80044352";
/// The systemuser that owns the records Hunter's application user creates.
pub const APPLICATION_USER_ID: &str = "00000000-0000-0000-0000-0000000000f0";
/// Users the simulator knows by name (id, full name): the application user and two sellers, so
/// tests can play a seller reassigning a lead (`ownerid@odata.bind: /systemusers(<id>)`).
pub const SIM_USERS: &[(&str, &str)] = &[
    (APPLICATION_USER_ID, "Hunter Sync"),
    ("00000000-0000-0000-0000-00000000a001", "Avery Seller"),
    ("00000000-0000-0000-0000-00000000a002", "Blake Seller"),
];
/// The annotation Dataverse gives a lookup's display name under
/// `Prefer: odata.include-annotations="OData.Community.Display.V1.FormattedValue"`.
pub const FORMATTED_VALUE: &str = "@OData.Community.Display.V1.FormattedValue";
/// Entity sets served: (set name, primary key column, logical name).
pub const ENTITY_SETS: &[(&str, &str, &str)] = &[
    ("leads", "leadid", "lead"),
    ("accounts", "accountid", "account"),
    ("contacts", "contactid", "contact"),
    ("opportunities", "opportunityid", "opportunity"),
];

/// The primary key column and logical name of an entity set.
fn entity(set: &str) -> Option<(&'static str, &'static str)> {
    ENTITY_SETS
        .iter()
        .find(|(name, _, _)| *name == set)
        .map(|(_, pk, logical)| (*pk, *logical))
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
#[derive(Clone, Debug)]
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
    pub client_secret: Secret,
    /// More application users the token endpoint accepts, `(client id, secret)`; each has its
    /// own service-protection limits.
    pub extra_clients: Vec<(String, Secret)>,
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
            client_secret: Secret::new("sim-client-secret"),
            extra_clients: Vec::new(),
            token_ttl: Duration::from_secs(3599),
            rng_seed: 42,
        }
    }
}

pub use super::http::RecordedRequest;

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
            .field("limits", &inner.protection.limits)
            .field("faults", &inner.controls.faults)
            .field("requests", &inner.controls.requests.len())
            .finish()
    }
}

/// The Dataverse simulator listening on a socket; dropping it stops the server. The API is under
/// `{base_url}/api/data/v9.2/` and the token scope is `{base_url}/.default`.
pub type RunningDataverse = Running<DataverseSim>;

impl RunningDataverse {
    /// `{base_url}/api/data/v9.2` (no trailing slash).
    pub fn api_url(&self) -> String {
        format!("{}{}", self.base_url, API_PREFIX.trim_end_matches('/'))
    }
}

impl Simulator for DataverseSim {
    const STARTED: &'static str = "dataverse_sim_started";

    fn set_base_url(&self, base_url: &str) {
        DataverseSim::set_base_url(self, base_url);
    }

    fn router(&self) -> axum::Router {
        DataverseSim::router(self)
    }
}

impl DataverseSim {
    /// An empty simulator.
    pub fn new(config: DataverseConfig) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner::new(config))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Binds `addr` (port 0 picks a free port), serves in a spawned task and returns at once.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<RunningDataverse> {
        Running::start(self, addr).await
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
        let Record { id, .. } = inner.create(set, id, data);
        id
    }

    /// Replaces the service-protection limits (the windows already counted are kept).
    pub fn set_limits(&self, limits: Limits) {
        tracing::info!(event = "dataverse_sim_limits_set", limits = ?limits);
        self.lock().protection.limits = limits;
    }

    /// The active service-protection limits.
    pub fn limits(&self) -> Limits {
        self.lock().protection.limits.clone()
    }

    /// API requests in flight now (all users).
    pub fn in_flight(&self) -> u32 {
        self.lock().protection.in_flight()
    }

    /// The most API requests that were in flight at once so far (all users).
    pub fn peak_in_flight(&self) -> u32 {
        self.lock().protection.peak_in_flight
    }

    /// What each application user's requests were counted as (client id → usage); also
    /// `GET /_sim/usage`.
    pub fn usage(&self) -> Usage {
        self.lock().protection.usage()
    }

    /// Forgets the usage counts (the limits' windows stay); also `DELETE /_sim/usage`.
    pub fn reset_usage(&self) {
        self.lock().protection.reset_usage();
    }

    /// How many values of the set's alternate key name more than one record (0 when upserts by
    /// key did their job).
    pub fn duplicates(&self, set: &str) -> usize {
        let inner = self.lock();
        let column = inner.key_column_of(set).to_owned();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for record in inner.store.get(set).into_iter().flatten() {
            if let Some(key) = record.key_value(&column) {
                *counts.entry(key.to_owned()).or_default() += 1;
            }
        }
        counts.values().filter(|n| **n > 1).count()
    }

    /// Accepts one more application user (client id and secret) at the token endpoint.
    pub fn add_client(&self, client_id: &str, client_secret: Secret) {
        self.lock()
            .clients
            .insert(client_id.to_owned(), client_secret);
    }

    /// Issues an access token directly (as if the token endpoint had issued it to the
    /// configured client), for tests and tools.
    pub fn issue_access_token(&self) -> String {
        let mut inner = self.lock();
        let client = inner.primary_client.clone();
        inner.issue_access_token(&client)
    }

    /// The organization URL of answers: the one set, else `http://{Host header}`.
    fn base_url(&self, headers: &axum::http::HeaderMap) -> String {
        let configured = self.lock().base_url.clone();
        http::base_url(configured, headers)
    }
}
