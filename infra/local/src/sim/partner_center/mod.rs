//! Partner Center Referrals API simulator, with the Entra ID token endpoint next to it.
//!
//! Follows `docs/reference/partner-center-referrals.md`: OData `$filter`/`$orderby`/`$top`/
//! `$skip`/`$count`/`$select`, absolute `@odata.nextLink`s on the documented `/v1.0/referrals`
//! path with an opaque `$skiptoken`, the `{"error":{code,message,target,innerError}}` error body,
//! `request-id` on every answer, JSON Patch with `If-Match`, delegated bearer tokens whose refresh
//! token rotates on every use, and fault injection (throttling, server errors, latency, expiring
//! tokens) driven by a seeded RNG so tests are deterministic.
//!
//! Referrals are kept as the raw JSON they were given, malformed ones included; seeded ones
//! ([`PartnerCenterSim::seeded`]) as the point that generates each again, until changed.

mod auth;
mod error;
mod odata;
mod patch;
mod routes;
mod state;
mod webhooks;

use std::net::SocketAddr;

use hunter_core::secret::Secret;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http;
use super::seed::seeded_referrals;
use super::server::{Running, Simulator};
use state::Inner;

pub use auth::{Decision, DeviceFlow, PendingSignIn};
pub use webhooks::{
    SUPPORTED_WEBHOOK_EVENTS, WEBHOOK_CERTIFICATE_PATH, WebhookRegistration, WebhookStats,
    webhook_authorization,
};

/// Path of the first page of the referral list.
pub const REFERRALS_PATH: &str = "/v1.0/engagements/referrals";
/// Path of continuation pages (the documented nextLink has no `/engagements` segment).
pub const CONTINUATION_PATH: &str = "/v1.0/referrals";
pub use super::server::SIM_TENANT;
/// Refresh token the simulator accepts first unless [`SimConfig`] names another.
pub const DEFAULT_REFRESH_TOKEN: &str = "sim-refresh-token";

/// Faults injected into the referral API routes (`/v1.0/...`), and optionally the token endpoint
/// and webhook events.
///
/// JSON shape for `PUT /_sim/faults`: the same snake_case field names, every field optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Probability (0..=1) that an API call answers 500 or 503 (even odds; 503 has `Retry-After`).
    pub error_rate: f64,
    /// Probability (0..=1) that an API call answers 429 with `Retry-After`.
    pub throttle_rate: f64,
    /// `Retry-After` seconds on 429/503/509 answers.
    pub retry_after_secs: u64,
    /// Delay added before every API answer.
    pub latency_ms: u64,
    /// Delays (ms) added, in order, to the next API calls on top of `latency_ms` (a slow answer
    /// that comes once, then normal service).
    pub slow_next_ms: Vec<u64>,
    /// Every time this many list/continuation pages have been served, all issued access tokens
    /// expire (the next API call answers 401). Counted from the last
    /// [`set_faults`](crate::sim::control::SimControl::set_faults).
    pub expire_token_after_pages: Option<u32>,
    /// Statuses answered, in order, to the next list/continuation page requests (after the auth
    /// check) before normal service resumes; a 2xx entry means "serve this one normally".
    pub fail_next: Vec<u16>,
    /// Statuses answered, in order, by the next token-endpoint calls (OAuth error body).
    pub token_fail_next: Vec<u16>,
    /// Probability (0..=1) that a webhook event is silently dropped, never sent.
    pub webhook_loss_rate: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            error_rate: 0.0,
            throttle_rate: 0.0,
            retry_after_secs: 1,
            latency_ms: 0,
            slow_next_ms: Vec::new(),
            expire_token_after_pages: None,
            fail_next: Vec::new(),
            token_fail_next: Vec::new(),
            webhook_loss_rate: 0.0,
        }
    }
}

/// How the simulator behaves.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Largest page the server returns (`$top` can only lower it). Default 100.
    pub page_size: usize,
    /// Lifetime of issued access tokens. Default one hour.
    pub access_token_ttl: Duration,
    /// The refresh token valid at start. Default [`DEFAULT_REFRESH_TOKEN`].
    pub initial_refresh_token: Secret,
    /// Faults active at start.
    pub faults: Faults,
    /// Seed of the RNG behind faults, tokens and eTags.
    pub rng_seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            page_size: 100,
            access_token_ttl: Duration::from_secs(3600),
            initial_refresh_token: Secret::new(DEFAULT_REFRESH_TOKEN),
            faults: Faults::default(),
            rng_seed: 42,
        }
    }
}

pub use super::http::RecordedRequest;

/// The simulator: shared state behind an `Arc`, so clones see the same referrals and tokens.
#[derive(Clone)]
pub struct PartnerCenterSim {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for PartnerCenterSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("PartnerCenterSim")
            .field("base_url", &inner.base_url)
            .field("referrals", &inner.referrals.len())
            .field("faults", &inner.controls.faults)
            .field("requests", &inner.controls.requests.len())
            .finish()
    }
}

/// The Partner Center simulator listening on a socket; dropping it stops the server.
pub type RunningSim = Running<PartnerCenterSim>;

impl RunningSim {
    /// `{base_url}/sim-tenant/oauth2/v2.0/devicecode`.
    pub fn device_code_url(&self) -> String {
        format!("{}/{SIM_TENANT}/oauth2/v2.0/devicecode", self.base_url)
    }
}

impl Simulator for PartnerCenterSim {
    const STARTED: &'static str = "partner_center_sim_started";

    fn set_base_url(&self, base_url: &str) {
        PartnerCenterSim::set_base_url(self, base_url);
    }

    fn router(&self) -> axum::Router {
        PartnerCenterSim::router(self)
    }
}

impl PartnerCenterSim {
    /// A simulator serving `referrals` (kept verbatim; a later one with the same `id` replaces an
    /// earlier one; ones without an id are kept by position).
    pub fn new(referrals: impl IntoIterator<Item = Value>, config: SimConfig) -> Self {
        let referrals = referrals.into_iter();
        let mut inner = Inner::new(referrals.size_hint().0, config);
        inner.upsert(referrals);
        Self {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    /// A simulator serving the `count` referrals [`seeded_referrals`] generates from `seed`.
    /// Of each it keeps where in the sequence it begins, and generates its text again whenever
    /// it is read or a listing is ordered, until a change stores it as text: N referrals take
    /// 32 bytes each instead of ~3 KB (and their ids once a GET or change asks by id). `visit`
    /// sees each one's id and customer profile as JSON text once, as it is generated
    /// ([`SeededReferral::customer_text`](crate::sim::seed::SeededReferral::customer_text):
    /// what the DNS simulator reads the domains to serve from).
    pub fn seeded(
        count: usize,
        seed: u64,
        config: SimConfig,
        mut visit: impl FnMut(String),
    ) -> Self {
        let mut inner = Inner::new(count, config);
        for seeded in seeded_referrals(count, seed) {
            visit(seeded.customer_text());
            inner.push_seeded(seeded.point);
        }
        Self {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Binds `addr` (port 0 picks a free port), serves in a spawned task and returns at once.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<RunningSim> {
        self.start_webhook_delivery();
        Running::start(self, addr).await
    }

    /// Sets the base URL used in nextLinks and `@odata.context` (no trailing slash).
    pub fn set_base_url(&self, base_url: &str) {
        self.lock().base_url = Some(base_url.trim_end_matches('/').to_owned());
    }

    /// Adds referrals, replacing stored ones with the same `id`.
    pub fn upsert_referrals(&self, referrals: Vec<Value>) {
        self.lock().upsert(referrals);
    }

    /// How many referrals it holds.
    pub fn len(&self) -> usize {
        self.lock().referrals.len()
    }

    /// Whether it holds no referral.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every stored referral, in storage order.
    pub fn referrals(&self) -> Vec<Value> {
        self.lock()
            .referrals
            .iter()
            .map(state::StoredReferral::value)
            .collect()
    }

    /// The one refresh token the token endpoint accepts now.
    pub fn current_refresh_token(&self) -> String {
        self.lock().refresh_token.expose().to_owned()
    }

    /// Issues an access token directly (as if the token endpoint had), for tests and tools.
    pub fn issue_access_token(&self) -> String {
        self.lock().issue_access_token()
    }

    /// The base URL of nextLinks: the one set, else `http://{Host header}`.
    fn base_url(&self, headers: &axum::http::HeaderMap) -> String {
        let configured = self.lock().base_url.clone();
        http::base_url(configured, headers)
    }
}
