//! Partner Center Referrals API simulator, with the Entra ID token endpoint next to it.
//!
//! Follows `shared/reference/partner-center-referrals.md`: OData `$filter`/`$orderby`/`$top`/
//! `$skip`/`$count`/`$select`, absolute `@odata.nextLink`s on the documented `/v1.0/referrals`
//! path with an opaque `$skiptoken`, the `{"error":{code,message,target,innerError}}` error body,
//! `request-id` on every answer, JSON Patch with `If-Match`, delegated bearer tokens whose refresh
//! token rotates on every use, and fault injection (throttling, server errors, latency, expiring
//! tokens) driven by a seeded RNG so tests are deterministic.
//!
//! Referrals are kept as the raw JSON they were given, malformed ones included.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::server::{self, ServerTask};
use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Path of the first page of the referral list.
pub const REFERRALS_PATH: &str = "/v1.0/engagements/referrals";
/// Path of continuation pages (the documented nextLink has no `/engagements` segment).
pub const CONTINUATION_PATH: &str = "/v1.0/referrals";
/// Tenant segment of the token URL that [`RunningSim::token_url`] names (any tenant is accepted).
pub const SIM_TENANT: &str = "sim-tenant";
/// Refresh token the simulator accepts first unless [`SimConfig`] names another.
pub const DEFAULT_REFRESH_TOKEN: &str = "sim-refresh-token";
/// Resource of the issued tokens.
const RESOURCE: &str = "https://api.partner.microsoft.com";
/// How long a device code can be redeemed.
const DEVICE_CODE_TTL: Duration = Duration::from_secs(900);
/// Oldest recorded requests are dropped beyond this many.
const MAX_RECORDED_REQUESTS: usize = 100_000;

/// Faults injected into the referral API routes (`/v1.0/...`), and optionally the token endpoint.
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
    /// Every time this many list/continuation pages have been served, all issued access tokens
    /// expire (the next API call answers 401). Counted from the last [`PartnerCenterSim::set_faults`].
    pub expire_token_after_pages: Option<u32>,
    /// Statuses answered, in order, to the next list/continuation page requests (after the auth
    /// check) before normal service resumes; a 2xx entry means "serve this one normally".
    pub fail_next: Vec<u16>,
    /// Statuses answered, in order, by the next token-endpoint calls (OAuth error body).
    pub token_fail_next: Vec<u16>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            error_rate: 0.0,
            throttle_rate: 0.0,
            retry_after_secs: 1,
            latency_ms: 0,
            expire_token_after_pages: None,
            fail_next: Vec::new(),
            token_fail_next: Vec::new(),
        }
    }
}

/// How the simulator behaves.
#[derive(Clone)]
pub struct SimConfig {
    /// Largest page the server returns (`$top` can only lower it). Default 100.
    pub page_size: usize,
    /// Lifetime of issued access tokens. Default one hour.
    pub access_token_ttl: Duration,
    /// The refresh token valid at start. Default [`DEFAULT_REFRESH_TOKEN`].
    pub initial_refresh_token: String,
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
            initial_refresh_token: DEFAULT_REFRESH_TOKEN.to_owned(),
            faults: Faults::default(),
            rng_seed: 42,
        }
    }
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("page_size", &self.page_size)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("initial_refresh_token", &"***")
            .field("faults", &self.faults)
            .field("rng_seed", &self.rng_seed)
            .finish()
    }
}

/// One request the simulator answered (control routes `/_sim/...` are not recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Path and query as received, e.g. `/v1.0/referrals?$skiptoken=...`.
    pub path: String,
    /// Status answered.
    pub status: u16,
    /// API routes: the bearer token was valid. Token endpoint: the grant was accepted.
    pub auth_ok: bool,
    /// The `request-id` header answered.
    pub request_id: String,
    /// The `client-request-id` header sent, if any (echoed back).
    pub client_request_id: Option<String>,
}

#[derive(Debug)]
struct DeviceCode {
    issued: Instant,
    polls: u32,
}

#[derive(Debug)]
struct Inner {
    page_size: usize,
    token_ttl: Duration,
    referrals: Vec<Value>,
    /// Referral id -> position in `referrals`.
    index: HashMap<String, usize>,
    faults: Faults,
    pages_since_faults: u32,
    fault_rng: fastrand::Rng,
    id_rng: fastrand::Rng,
    access_tokens: HashMap<String, Instant>,
    refresh_token: String,
    device_codes: HashMap<String, DeviceCode>,
    requests: Vec<RecordedRequest>,
    base_url: Option<String>,
}

impl Inner {
    fn upsert(&mut self, referrals: Vec<Value>) {
        for referral in referrals {
            match referral_id(&referral) {
                Some(id) => match self.index.get(&id) {
                    Some(&position) => self.referrals[position] = referral,
                    None => {
                        self.index.insert(id, self.referrals.len());
                        self.referrals.push(referral);
                    }
                },
                None => self.referrals.push(referral),
            }
        }
    }

    fn random_hex(&mut self, prefix: &str) -> String {
        format!("{prefix}{:032x}", self.id_rng.u128(..))
    }

    fn new_etag(&mut self) -> String {
        format!("\"{}\"", uuid::Uuid::from_u128(self.id_rng.u128(..)))
    }

    fn issue_access_token(&mut self) -> String {
        let token = self.random_hex("sim-at-");
        self.access_tokens
            .insert(token.clone(), Instant::now() + self.token_ttl);
        token
    }

    fn expire_all_tokens(&mut self) {
        let now = Instant::now();
        for expiry in self.access_tokens.values_mut() {
            *expiry = (*expiry).min(now);
        }
    }

    fn record(&mut self, request: RecordedRequest) {
        if self.requests.len() >= MAX_RECORDED_REQUESTS {
            self.requests.drain(..MAX_RECORDED_REQUESTS / 10);
        }
        self.requests.push(request);
    }
}

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
            .field("faults", &inner.faults)
            .field("requests", &inner.requests.len())
            .finish()
    }
}

/// A simulator listening on a socket. Dropping it stops the server (so does [`RunningSim::shutdown`]).
#[derive(Debug)]
#[must_use = "dropping RunningSim stops the simulator"]
pub struct RunningSim {
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub base_url: String,
    /// `{base_url}/sim-tenant/oauth2/v2.0/token`.
    pub token_url: String,
    /// `{base_url}/sim-tenant/oauth2/v2.0/devicecode`.
    pub device_code_url: String,
    /// The bound address.
    pub addr: SocketAddr,
    /// The simulator, to inspect or steer while it serves.
    pub sim: PartnerCenterSim,
    server: ServerTask,
}

impl RunningSim {
    /// Stops accepting requests, lets open ones finish and waits for the server to end.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.server.shutdown().await
    }

    /// Waits until the server ends (by [`RunningSim::shutdown`], a drop or an error).
    pub async fn wait(self) -> std::io::Result<()> {
        self.server.wait().await
    }
}

fn lock_inner(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PartnerCenterSim {
    /// A simulator serving `referrals` (kept verbatim; a later one with the same `id` replaces an
    /// earlier one; ones without an id are kept by position).
    pub fn new(referrals: Vec<Value>, config: SimConfig) -> Self {
        let mut inner = Inner {
            page_size: config.page_size.max(1),
            token_ttl: config.access_token_ttl,
            referrals: Vec::with_capacity(referrals.len()),
            index: HashMap::new(),
            faults: config.faults,
            pages_since_faults: 0,
            fault_rng: fastrand::Rng::with_seed(config.rng_seed),
            id_rng: fastrand::Rng::with_seed(config.rng_seed ^ 0x9e37_79b9_7f4a_7c15),
            access_tokens: HashMap::new(),
            refresh_token: config.initial_refresh_token,
            device_codes: HashMap::new(),
            requests: Vec::new(),
            base_url: None,
        };
        inner.upsert(referrals);
        Self {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock_inner(&self.inner)
    }

    /// The axum app. nextLinks use the base URL set by [`PartnerCenterSim::serve`] (or
    /// [`PartnerCenterSim::set_base_url`]), else `http://{Host header}`.
    pub fn router(&self) -> Router {
        Router::new()
            .route(REFERRALS_PATH, get(list_referrals))
            .route(
                "/v1.0/engagements/referrals/{id}",
                get(get_referral).patch(patch_referral).put(put_referral),
            )
            .route(CONTINUATION_PATH, get(continuation_page))
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/{tenant}/oauth2/token", post(token))
            .route("/{tenant}/oauth2/v2.0/devicecode", post(device_code))
            .route(
                "/_sim/requests",
                get(control_requests).delete(control_clear_requests),
            )
            .route(
                "/_sim/faults",
                get(control_get_faults).put(control_put_faults),
            )
            .route(
                "/_sim/referrals",
                get(control_get_referrals).post(control_upsert_referrals),
            )
            .route("/_sim/expire-tokens", post(control_expire_tokens))
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(self.clone(), envelope))
            .with_state(self.clone())
    }

    /// Binds `addr` (port 0 picks a free port), serves in a spawned task and returns at once.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<RunningSim> {
        let bound = server::bind(addr).await?;
        let (base_url, local) = (bound.base_url, bound.addr);
        self.set_base_url(&base_url);
        let server = ServerTask::spawn(bound.listener, self.router());
        tracing::info!(event = "partner_center_sim_started", base_url = %base_url);
        Ok(RunningSim {
            token_url: format!("{base_url}/{SIM_TENANT}/oauth2/v2.0/token"),
            device_code_url: format!("{base_url}/{SIM_TENANT}/oauth2/v2.0/devicecode"),
            base_url,
            addr: local,
            sim: self,
            server,
        })
    }

    /// Sets the base URL used in nextLinks and `@odata.context` (no trailing slash).
    pub fn set_base_url(&self, base_url: &str) {
        self.lock().base_url = Some(base_url.trim_end_matches('/').to_owned());
    }

    /// Replaces the active faults (and restarts the `expire_token_after_pages` count).
    pub fn set_faults(&self, faults: Faults) {
        let mut inner = self.lock();
        tracing::info!(event = "partner_center_sim_faults_set", faults = ?faults);
        inner.faults = faults;
        inner.pages_since_faults = 0;
    }

    /// The active faults (`fail_next` entries already served are gone).
    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// Adds referrals, replacing stored ones with the same `id`.
    pub fn upsert_referrals(&self, referrals: Vec<Value>) {
        self.lock().upsert(referrals);
    }

    /// Every stored referral, in storage order.
    pub fn referrals(&self) -> Vec<Value> {
        self.lock().referrals.clone()
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
        self.lock().expire_all_tokens();
        tracing::info!(event = "partner_center_sim_tokens_expired");
    }

    /// The one refresh token the token endpoint accepts now.
    pub fn current_refresh_token(&self) -> String {
        self.lock().refresh_token.clone()
    }

    /// Issues an access token directly (as if the token endpoint had), for tests and tools.
    pub fn issue_access_token(&self) -> String {
        self.lock().issue_access_token()
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

    /// Latency, auth, then faults, then `handle`. Marks the answer with the auth outcome.
    async fn api(
        &self,
        headers: &HeaderMap,
        list: bool,
        handle: impl FnOnce(&Self) -> Result<Response, ApiError>,
    ) -> Response {
        let latency = self.lock().faults.latency_ms;
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        let auth = self.check_auth(headers);
        let auth_ok = auth.is_ok();
        let result = auth.and_then(|()| match self.injected_fault(list) {
            Some(fault) => Err(fault),
            None => handle(self),
        });
        let mut response = result.unwrap_or_else(IntoResponse::into_response);
        response.extensions_mut().insert(AuthOk(auth_ok));
        response
    }

    fn check_auth(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthenticated(
                "MissingToken",
                "The Authorization header is missing.",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(token) = token else {
            return Err(ApiError::unauthenticated(
                "InvalidAuthorizationHeader",
                "The Authorization header must be 'Bearer <token>'.",
            ));
        };
        match self.lock().access_tokens.get(token) {
            None => Err(ApiError::unauthenticated(
                "InvalidToken",
                "The access token is not valid.",
            )),
            Some(expiry) if *expiry <= Instant::now() => Err(ApiError::unauthenticated(
                "ExpiredToken",
                "The access token has expired.",
            )),
            Some(_) => Ok(()),
        }
    }

    fn injected_fault(&self, list: bool) -> Option<ApiError> {
        let mut inner = self.lock();
        let retry_after = inner.faults.retry_after_secs;
        if list && !inner.faults.fail_next.is_empty() {
            let status = inner.faults.fail_next.remove(0);
            if (200..300).contains(&status) {
                return None;
            }
            tracing::debug!(
                event = "partner_center_sim_fault",
                kind = "fail_next",
                status
            );
            return Some(ApiError::simulated(status, retry_after));
        }
        let throttle = inner.faults.throttle_rate;
        if throttle > 0.0 && inner.fault_rng.f64() < throttle {
            tracing::debug!(
                event = "partner_center_sim_fault",
                kind = "throttle",
                status = 429
            );
            return Some(ApiError::simulated(429, retry_after));
        }
        let error = inner.faults.error_rate;
        if error > 0.0 && inner.fault_rng.f64() < error {
            let status = if inner.fault_rng.bool() { 500 } else { 503 };
            tracing::debug!(event = "partner_center_sim_fault", kind = "error", status);
            return Some(ApiError::simulated(status, retry_after));
        }
        None
    }

    fn first_page(&self, uri: &Uri, headers: &HeaderMap) -> Result<Response, ApiError> {
        let mut options: HashMap<String, String> = HashMap::new();
        for (key, value) in query_pairs(uri)? {
            let name = key.to_ascii_lowercase();
            if !name.starts_with('$') {
                continue;
            }
            if !matches!(
                name.as_str(),
                "$filter" | "$orderby" | "$top" | "$skip" | "$count" | "$select" | "$skiptoken"
            ) {
                return Err(ApiError::bad_request(
                    "UnsupportedQueryOption",
                    format!("The query parameter '{key}' is not supported."),
                ));
            }
            if options.insert(name, value).is_some() {
                return Err(ApiError::bad_request(
                    "DuplicateQueryOption",
                    format!(
                        "Query option '{key}' was specified more than once, but it must be specified at most once."
                    ),
                ));
            }
        }
        if let Some(token) = options.get("$skiptoken") {
            let query = Continuation::decode(token)?;
            return self.serve_page(&query, headers);
        }
        let page_size = self.lock().page_size;
        let top = match options.get("$top") {
            None => page_size,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => n.min(page_size),
                _ => {
                    return Err(ApiError::bad_request(
                        "InvalidTop",
                        format!(
                            "Invalid value '{v}' for $top query option: a positive integer is expected."
                        ),
                    ));
                }
            },
        };
        let offset = match options.get("$skip") {
            None => 0,
            Some(v) => v.trim().parse::<usize>().map_err(|_| {
                ApiError::bad_request(
                    "InvalidSkip",
                    format!("Invalid value '{v}' for $skip query option."),
                )
            })?,
        };
        let count = match options.get("$count").map(|v| v.trim().to_ascii_lowercase()) {
            None => false,
            Some(v) if v == "true" => true,
            Some(v) if v == "false" => false,
            Some(v) => {
                return Err(ApiError::bad_request(
                    "InvalidCount",
                    format!(
                        "Invalid value '{v}' for $count query option: true or false is expected."
                    ),
                ));
            }
        };
        let query = Continuation {
            filter: options
                .get("$filter")
                .cloned()
                .filter(|f| !f.trim().is_empty()),
            orderby: options
                .get("$orderby")
                .cloned()
                .filter(|o| !o.trim().is_empty()),
            select: options
                .get("$select")
                .cloned()
                .filter(|s| !s.trim().is_empty()),
            top,
            offset,
            count,
        };
        self.serve_page(&query, headers)
    }

    fn continuation(&self, uri: &Uri, headers: &HeaderMap) -> Result<Response, ApiError> {
        let token = query_pairs(uri)?
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("$skiptoken"))
            .map(|(_, v)| v)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "MissingSkipToken",
                    "The $skiptoken query option is required.",
                )
            })?;
        let query = Continuation::decode(&token)?;
        self.serve_page(&query, headers)
    }

    fn serve_page(&self, query: &Continuation, headers: &HeaderMap) -> Result<Response, ApiError> {
        let filter = query
            .filter
            .as_deref()
            .map(odata::parse_filter)
            .transpose()
            .map_err(|e| {
                ApiError::bad_request(
                    "InvalidFilter",
                    format!(
                        "Invalid $filter '{}': {e}",
                        query.filter.as_deref().unwrap_or("")
                    ),
                )
            })?;
        let order = odata::parse_orderby(query.orderby.as_deref())
            .map_err(|e| ApiError::bad_request("InvalidOrderBy", e))?;
        let select = odata::parse_select(query.select.as_deref())
            .map_err(|e| ApiError::bad_request("InvalidSelect", e))?;
        let base = self.base_url(headers);
        let mut inner = self.lock();
        let (page, total) = {
            let mut matches: Vec<(usize, &Value)> = inner
                .referrals
                .iter()
                .enumerate()
                .filter(|(_, r)| filter.as_ref().is_none_or(|f| f.matches(r)))
                .collect();
            odata::sort(&mut matches, &order);
            let total = matches.len();
            let page: Vec<Value> = matches
                .iter()
                .skip(query.offset)
                .take(query.top)
                .map(|(_, r)| odata::project(r, select.as_deref()))
                .collect();
            (page, total)
        };
        let returned = page.len();
        let mut body = Map::new();
        body.insert(
            "@odata.context".into(),
            json!(format!("{base}/v1.0/$metadata#Referrals")),
        );
        if query.count {
            body.insert("@odata.count".into(), json!(total));
        }
        body.insert("value".into(), Value::Array(page));
        let next_offset = query.offset.saturating_add(query.top);
        if next_offset < total {
            let next = Continuation {
                offset: next_offset,
                ..query.clone()
            };
            body.insert(
                "@odata.nextLink".into(),
                json!(format!(
                    "{base}{CONTINUATION_PATH}?$skiptoken={}",
                    next.encode()
                )),
            );
        }
        inner.pages_since_faults += 1;
        if let Some(limit) = inner.faults.expire_token_after_pages {
            if inner.pages_since_faults >= limit.max(1) {
                inner.pages_since_faults = 0;
                inner.expire_all_tokens();
                tracing::info!(
                    event = "partner_center_sim_tokens_expired",
                    reason = "expire_token_after_pages"
                );
            }
        }
        drop(inner);
        tracing::debug!(
            event = "partner_center_sim_page",
            offset = query.offset,
            returned,
            total
        );
        Ok(Json(Value::Object(body)).into_response())
    }

    fn get_one(&self, id: &str) -> Result<Response, ApiError> {
        let inner = self.lock();
        let referral = inner
            .index
            .get(id)
            .and_then(|&position| inner.referrals.get(position))
            .ok_or_else(|| ApiError::not_found(id))?;
        Ok(with_etag(Json(referral.clone()).into_response(), referral))
    }

    fn patch(&self, id: &str, headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
        let ops: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(
                "InvalidJson",
                format!("The request body is not valid JSON: {e}"),
            )
        })?;
        let Value::Array(ops) = ops else {
            return Err(ApiError::bad_request(
                "InvalidPatch",
                "A JSON Patch document (an array of operations) is expected.",
            ));
        };
        let mut inner = self.lock();
        let position = *inner.index.get(id).ok_or_else(|| ApiError::not_found(id))?;
        let current = &inner.referrals[position];
        check_if_match(headers, current, false)?;
        let mut updated = current.clone();
        for (n, op) in ops.iter().enumerate() {
            patch::apply(&mut updated, op).map_err(|e| {
                ApiError::bad_request("InvalidPatch", format!("Operation {n}: {e}"))
            })?;
        }
        let etag = inner.new_etag();
        stamp(&mut updated, etag);
        inner.referrals[position] = updated.clone();
        drop(inner);
        tracing::info!(event = "partner_center_sim_referral_patched", referral_id = %id, ops = ops.len());
        let representation = headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("return=representation"))
            });
        let response = if representation {
            Json(updated.clone()).into_response()
        } else {
            StatusCode::NO_CONTENT.into_response()
        };
        Ok(with_etag(response, &updated))
    }

    fn put(&self, id: &str, headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
        let body: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(
                "InvalidJson",
                format!("The request body is not valid JSON: {e}"),
            )
        })?;
        let Value::Object(mut object) = body else {
            return Err(ApiError::bad_request(
                "InvalidReferral",
                "A referral object is expected.",
            ));
        };
        match object.get("id") {
            None => {}
            Some(Value::String(s)) if s == id => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "IdMismatch",
                    "The body id differs from the URL id.",
                ));
            }
        }
        let mut inner = self.lock();
        let position = *inner.index.get(id).ok_or_else(|| ApiError::not_found(id))?;
        let current = &inner.referrals[position];
        check_if_match(headers, current, true)?;
        object.insert("id".into(), json!(id));
        match current.get("links") {
            Some(links) => object.insert("links".into(), links.clone()),
            None => object.remove("links"),
        };
        let mut updated = Value::Object(object);
        if let Some(previous) = current.get("updatedDateTime") {
            // Keeps the "never goes back in time" rule of `stamp` working.
            updated["updatedDateTime"] = previous.clone();
        }
        let etag = inner.new_etag();
        stamp(&mut updated, etag);
        inner.referrals[position] = updated.clone();
        drop(inner);
        tracing::info!(event = "partner_center_sim_referral_replaced", referral_id = %id);
        Ok(with_etag(Json(updated.clone()).into_response(), &updated))
    }

    fn token_grant(&self, form: &HashMap<String, String>) -> Result<Value, OAuthError> {
        let mut inner = self.lock();
        if !inner.faults.token_fail_next.is_empty() {
            let status = inner.faults.token_fail_next.remove(0);
            if !(200..300).contains(&status) {
                tracing::debug!(
                    event = "partner_center_sim_fault",
                    kind = "token_fail_next",
                    status
                );
                return Err(OAuthError::simulated(status, inner.faults.retry_after_secs));
            }
        }
        if form.get("client_id").is_none_or(|c| c.trim().is_empty()) {
            return Err(OAuthError::invalid_request(
                900_144,
                "AADSTS900144: The request body must contain the following parameter: 'client_id'.",
            ));
        }
        let grant_type = form
            .get("grant_type")
            .map(String::as_str)
            .unwrap_or_default();
        match grant_type {
            "refresh_token" => {
                let presented = form
                    .get("refresh_token")
                    .map(String::as_str)
                    .unwrap_or_default();
                if presented.is_empty() {
                    return Err(OAuthError::invalid_request(
                        900_144,
                        "AADSTS900144: The request body must contain the following parameter: 'refresh_token'.",
                    ));
                }
                if presented != inner.refresh_token {
                    return Err(OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        70_000,
                        "AADSTS70000: The provided value for the 'refresh_token' is not valid: it was already used (refresh tokens rotate) or was never issued.",
                    ));
                }
            }
            "urn:ietf:params:oauth:grant-type:device_code" => {
                let code = form
                    .get("device_code")
                    .map(String::as_str)
                    .unwrap_or_default();
                let Some(state) = inner.device_codes.get_mut(code) else {
                    return Err(OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        70_000,
                        "AADSTS70000: The provided device code is not valid or was already redeemed.",
                    ));
                };
                if state.issued.elapsed() > DEVICE_CODE_TTL {
                    inner.device_codes.remove(code);
                    return Err(OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "expired_token",
                        70_020,
                        "AADSTS70020: The provided value for the input parameter 'device_code' is not valid. This device code has expired.",
                    ));
                }
                state.polls += 1;
                if state.polls == 1 {
                    return Err(OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "authorization_pending",
                        70_016,
                        "AADSTS70016: OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                    ));
                }
                inner.device_codes.remove(code);
            }
            other => {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    70_003,
                    format!("AADSTS70003: The app requested an unsupported grant type '{other}'."),
                ));
            }
        }
        let access_token = inner.issue_access_token();
        let refresh_token = inner.random_hex("sim-rt-");
        inner.refresh_token = refresh_token.clone();
        let ttl = inner.token_ttl.as_secs();
        drop(inner);
        let now = Utc::now().timestamp();
        tracing::info!(
            event = "partner_center_sim_token_issued",
            grant_type,
            expires_in = ttl
        );
        Ok(json!({
            "token_type": "Bearer",
            "scope": format!("{RESOURCE}/user_impersonation"),
            "expires_in": ttl.to_string(),
            "ext_expires_in": ttl.to_string(),
            "expires_on": (now + i64::try_from(ttl).unwrap_or(i64::MAX / 2)).to_string(),
            "not_before": now.to_string(),
            "resource": RESOURCE,
            "access_token": access_token,
            "refresh_token": refresh_token,
        }))
    }

    fn start_device_code(&self, form: &HashMap<String, String>) -> Result<Value, OAuthError> {
        if form.get("client_id").is_none_or(|c| c.trim().is_empty()) {
            return Err(OAuthError::invalid_request(
                900_144,
                "AADSTS900144: The request body must contain the following parameter: 'client_id'.",
            ));
        }
        let mut inner = self.lock();
        let device_code = inner.random_hex("sim-dc-");
        let user_code: String = (0..9).map(|_| inner.id_rng.uppercase()).collect();
        inner.device_codes.insert(
            device_code.clone(),
            DeviceCode {
                issued: Instant::now(),
                polls: 0,
            },
        );
        drop(inner);
        let uri = "https://microsoft.com/devicelogin";
        Ok(json!({
            "user_code": user_code,
            "device_code": device_code,
            "verification_uri": uri,
            "expires_in": DEVICE_CODE_TTL.as_secs(),
            "interval": 1,
            "message": format!("To sign in, use a web browser to open the page {uri} and enter the code {user_code} to authenticate."),
        }))
    }
}

/// Page query, carried opaquely in `$skiptoken` (base64url of this JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Continuation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    filter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    orderby: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    select: Option<String>,
    /// Page size.
    top: usize,
    offset: usize,
    #[serde(default)]
    count: bool,
}

impl Continuation {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(token: &str) -> Result<Self, ApiError> {
        let invalid = || ApiError::bad_request("InvalidSkipToken", "The $skiptoken is not valid.");
        let bytes = URL_SAFE_NO_PAD
            .decode(token.trim().trim_end_matches('='))
            .map_err(|_| invalid())?;
        let query: Self = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if query.top == 0 {
            return Err(invalid());
        }
        Ok(query)
    }
}

fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, ApiError> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| {
            ApiError::bad_request(
                "InvalidQuery",
                format!("The query string cannot be read: {}", e.body_text()),
            )
        })
}

/// The `id` a referral is keyed by: a non-empty string, or a number as text.
fn referral_id(referral: &Value) -> Option<String> {
    match referral.get("id")? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// RFC 3339 with any number of fractional digits; a zone-less time is taken as UTC.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

/// Partner Center style timestamp: seven fractional digits, `Z`.
fn format_time(t: DateTime<Utc>) -> String {
    format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.timestamp_subsec_nanos() / 100
    )
}

/// Sets a new `eTag` and moves `updatedDateTime` to now (never backwards).
fn stamp(referral: &mut Value, etag: String) {
    let previous = referral
        .get("updatedDateTime")
        .and_then(Value::as_str)
        .and_then(parse_time);
    let mut now = Utc::now();
    if let Some(previous) = previous {
        let floor = previous + chrono::Duration::milliseconds(1);
        if now < floor {
            now = floor;
        }
    }
    if let Value::Object(object) = referral {
        object.insert("updatedDateTime".into(), json!(format_time(now)));
        object.insert("eTag".into(), json!(etag));
    }
}

fn with_etag(mut response: Response, referral: &Value) -> Response {
    if let Some(etag) = referral
        .get("eTag")
        .and_then(Value::as_str)
        .and_then(|e| HeaderValue::from_str(e).ok())
    {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

fn normalize_etag(etag: &str) -> &str {
    let etag = etag.trim();
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    etag.trim_matches('"')
}

/// `If-Match` against the referral's `eTag`: `*` matches anything; absent is fine unless `required`.
fn check_if_match(headers: &HeaderMap, referral: &Value, required: bool) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return if required {
            Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "preconditionFailed",
                "IfMatchRequired",
                "The If-Match header is required to replace a referral.",
            ))
        } else {
            Ok(())
        };
    };
    let sent = value.to_str().unwrap_or_default();
    let current = referral
        .get("eTag")
        .and_then(Value::as_str)
        .map(normalize_etag);
    let matched = sent.split(',').any(|candidate| {
        candidate.trim() == "*" || current.is_some_and(|c| normalize_etag(candidate) == c)
    });
    if matched {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "preconditionFailed",
            "ETagMismatch",
            "The referral was modified: If-Match does not match its current eTag.",
        ))
    }
}

/// Auth outcome of an answer, read by the envelope middleware.
#[derive(Debug, Clone, Copy)]
struct AuthOk(bool);

/// Error code of an answer, for the request log line.
#[derive(Debug, Clone, Copy)]
struct ErrorCode(&'static str);

/// An error in the contract's shape:
/// `{"error":{"code","message","target":"referral","innerError":{"code","message"}}}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    inner_code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        code: &'static str,
        inner_code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            inner_code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn bad_request(inner_code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalidRequest",
            inner_code,
            message,
        )
    }

    fn unauthenticated(inner_code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            inner_code,
            message,
        )
    }

    fn not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "itemNotFound",
            "ReferralNotFound",
            format!("Referral '{id}' was not found."),
        )
    }

    /// An injected failure with the status's usual code; 429/503/509 carry `Retry-After`.
    fn simulated(status: u16, retry_after_secs: u64) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = match status.as_u16() {
            400 => "invalidRequest",
            401 => "unauthenticated",
            403 => "accessDenied",
            404 => "itemNotFound",
            409 => "resourceModified",
            412 => "preconditionFailed",
            429 | 503 | 509 => "serviceNotAvailable",
            _ => "generalException",
        };
        let mut error = Self::new(
            status,
            code,
            "Simulated",
            format!("Simulated failure (HTTP {}).", status.as_u16()),
        );
        if matches!(status.as_u16(), 429 | 503 | 509) {
            error.retry_after = Some(retry_after_secs);
        }
        error
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "code": self.code,
            "message": self.message,
            "target": "referral",
            "innerError": {"code": self.inner_code, "message": self.message},
        }});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        response.extensions_mut().insert(ErrorCode(self.code));
        response
    }
}

/// An OAuth 2.0 error answer of the token endpoint (`{"error","error_description",...}`).
#[derive(Debug)]
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    description: String,
    retry_after: Option<u64>,
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
            retry_after: None,
        }
    }

    fn invalid_request(code: u32, description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            code,
            description,
        )
    }

    fn simulated(status: u16, retry_after_secs: u64) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let error = match status.as_u16() {
            400 => "invalid_request",
            401 => "invalid_client",
            429 | 503 => "temporarily_unavailable",
            _ => "server_error",
        };
        let mut answer = Self::new(
            status,
            error,
            90_000,
            format!("Simulated failure (HTTP {}).", status.as_u16()),
        );
        if matches!(status.as_u16(), 429 | 503) {
            answer.retry_after = Some(retry_after_secs);
        }
        answer
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
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(AuthOk(false));
        response.extensions_mut().insert(ErrorCode(self.error));
        response
    }
}

/// Adds `request-id` (and echoes `client-request-id`), records and logs every request.
async fn envelope(State(sim): State<PartnerCenterSim>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    let client_request_id = request.headers().get("client-request-id").cloned();
    let request_id = uuid::Uuid::new_v4().to_string();
    let started = Instant::now();
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("request-id", value);
    }
    if let Some(value) = &client_request_id {
        response
            .headers_mut()
            .insert("client-request-id", value.clone());
    }
    let status = response.status().as_u16();
    let auth_ok = response.extensions().get::<AuthOk>().is_some_and(|a| a.0);
    let error_code = response.extensions().get::<ErrorCode>().map(|c| c.0);
    let client_request_id = client_request_id.and_then(|v| v.to_str().ok().map(str::to_owned));
    tracing::info!(
        event = "partner_center_sim_request",
        method = %method,
        path = %path,
        status,
        auth_ok,
        error_code,
        request_id = %request_id,
        client_request_id = client_request_id.as_deref(),
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    );
    if !path.starts_with("/_sim/") {
        sim.lock().record(RecordedRequest {
            method,
            path,
            status,
            auth_ok,
            request_id,
            client_request_id,
        });
    }
    response
}

async fn list_referrals(
    State(sim): State<PartnerCenterSim>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    sim.api(&headers, true, |sim| sim.first_page(&uri, &headers))
        .await
}

async fn continuation_page(
    State(sim): State<PartnerCenterSim>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    sim.api(&headers, true, |sim| sim.continuation(&uri, &headers))
        .await
}

async fn get_referral(
    State(sim): State<PartnerCenterSim>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    sim.api(&headers, false, |sim| sim.get_one(&id)).await
}

async fn patch_referral(
    State(sim): State<PartnerCenterSim>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.api(&headers, false, |sim| sim.patch(&id, &headers, &body))
        .await
}

async fn put_referral(
    State(sim): State<PartnerCenterSim>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.api(&headers, false, |sim| sim.put(&id, &headers, &body))
        .await
}

fn form_or_error(
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Result<HashMap<String, String>, OAuthError> {
    form.map(|Form(f)| f).map_err(|e| {
        OAuthError::invalid_request(
            900_144,
            format!(
                "AADSTS900144: The request body must be application/x-www-form-urlencoded: {}",
                e.body_text()
            ),
        )
    })
}

async fn token(
    State(sim): State<PartnerCenterSim>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    match form_or_error(form).and_then(|form| sim.token_grant(&form)) {
        Ok(body) => {
            let mut response = ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response();
            response.extensions_mut().insert(AuthOk(true));
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn device_code(
    State(sim): State<PartnerCenterSim>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    match form_or_error(form).and_then(|form| sim.start_device_code(&form)) {
        Ok(body) => Json(body).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn not_found(uri: Uri) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "itemNotFound",
        "ResourceNotFound",
        format!("No resource at '{}'.", uri.path()),
    )
    .into_response()
}

async fn control_requests(State(sim): State<PartnerCenterSim>) -> Json<Vec<RecordedRequest>> {
    Json(sim.requests())
}

async fn control_clear_requests(State(sim): State<PartnerCenterSim>) -> StatusCode {
    sim.clear_requests();
    StatusCode::NO_CONTENT
}

async fn control_get_faults(State(sim): State<PartnerCenterSim>) -> Json<Faults> {
    Json(sim.faults())
}

async fn control_put_faults(State(sim): State<PartnerCenterSim>, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => {
            sim.set_faults(faults);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => {
            ApiError::bad_request("InvalidFaults", format!("Faults JSON cannot be read: {e}"))
                .into_response()
        }
    }
}

async fn control_get_referrals(State(sim): State<PartnerCenterSim>) -> Json<Vec<Value>> {
    Json(sim.referrals())
}

async fn control_upsert_referrals(State(sim): State<PartnerCenterSim>, body: Bytes) -> Response {
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(referrals)) => {
            let upserted = referrals.len();
            sim.upsert_referrals(referrals);
            let total = sim.lock().referrals.len();
            Json(json!({"upserted": upserted, "total": total})).into_response()
        }
        Ok(_) => {
            ApiError::bad_request("InvalidReferrals", "A JSON array of referrals is expected.")
                .into_response()
        }
        Err(e) => ApiError::bad_request(
            "InvalidJson",
            format!("The request body is not valid JSON: {e}"),
        )
        .into_response(),
    }
}

async fn control_expire_tokens(State(sim): State<PartnerCenterSim>) -> StatusCode {
    sim.expire_all_tokens();
    StatusCode::NO_CONTENT
}

/// A small OData v4 subset: `$filter`, `$orderby`, `$select` over raw referral JSON.
mod odata {
    use std::cmp::Ordering;

    use chrono::{DateTime, Utc};
    use serde_json::{Map, Value};

    use super::parse_time;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Kind {
        /// Case-sensitive string.
        Text,
        /// Enum member as a string; compared case-insensitively.
        Enum,
        DateTime,
        Number,
        Bool,
    }

    impl Kind {
        fn edm(self) -> &'static str {
            match self {
                Kind::Text | Kind::Enum => "Edm.String",
                Kind::DateTime => "Edm.DateTimeOffset",
                Kind::Number => "Edm.Decimal",
                Kind::Bool => "Edm.Boolean",
            }
        }
    }

    #[derive(Debug)]
    pub(super) struct Field {
        name: &'static str,
        path: &'static [&'static str],
        kind: Kind,
    }

    const fn field(name: &'static str, path: &'static [&'static str], kind: Kind) -> Field {
        Field { name, path, kind }
    }

    /// Properties that can be filtered and ordered on.
    static FIELDS: &[Field] = &[
        field("id", &["id"], Kind::Text),
        field("engagementId", &["engagementId"], Kind::Text),
        field("name", &["name"], Kind::Text),
        field("organizationId", &["organizationId"], Kind::Text),
        field("organizationName", &["organizationName"], Kind::Text),
        field("externalReferenceId", &["externalReferenceId"], Kind::Text),
        field("direction", &["direction"], Kind::Enum),
        field("status", &["status"], Kind::Enum),
        field("substatus", &["substatus"], Kind::Enum),
        field("type", &["type"], Kind::Enum),
        field("qualification", &["qualification"], Kind::Enum),
        field("quality", &["quality"], Kind::Enum),
        field("isSpam", &["isSpam"], Kind::Bool),
        field("createdDateTime", &["createdDateTime"], Kind::DateTime),
        field("updatedDateTime", &["updatedDateTime"], Kind::DateTime),
        field(
            "expirationDateTime",
            &["expirationDateTime"],
            Kind::DateTime,
        ),
        field("acceptedDateTime", &["acceptedDateTime"], Kind::DateTime),
        field("closedDateTime", &["closedDateTime"], Kind::DateTime),
        field(
            "customerProfile/name",
            &["customerProfile", "name"],
            Kind::Text,
        ),
        field(
            "customerProfile/size",
            &["customerProfile", "size"],
            Kind::Enum,
        ),
        field(
            "customerProfile/address/country",
            &["customerProfile", "address", "country"],
            Kind::Text,
        ),
        field(
            "customerProfile/address/city",
            &["customerProfile", "address", "city"],
            Kind::Text,
        ),
        field("details/dealValue", &["details", "dealValue"], Kind::Number),
        field("details/currency", &["details", "currency"], Kind::Text),
    ];

    fn lookup_field(name: &str) -> Result<&'static Field, String> {
        FIELDS
            .iter()
            .find(|f| f.name == name)
            .or_else(|| FIELDS.iter().find(|f| f.name.eq_ignore_ascii_case(name)))
            .ok_or_else(|| format!("Could not find a property named '{name}' on type 'Referral'."))
    }

    fn value_at<'a>(referral: &'a Value, path: &[&str]) -> Option<&'a Value> {
        path.iter()
            .try_fold(referral, |v, key| v.get(*key))
            .filter(|v| !v.is_null())
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

    impl Op {
        fn parse(word: &str) -> Option<Self> {
            Some(match word {
                "eq" => Op::Eq,
                "ne" => Op::Ne,
                "gt" => Op::Gt,
                "ge" => Op::Ge,
                "lt" => Op::Lt,
                "le" => Op::Le,
                _ => return None,
            })
        }

        /// OData null semantics: null equals only null; ordering against null is false.
        fn holds<T: ?Sized>(
            self,
            a: Option<&T>,
            b: Option<&T>,
            cmp: impl Fn(&T, &T) -> Ordering,
        ) -> bool {
            match (self, a, b) {
                (Op::Eq, None, None) => true,
                (Op::Ne, None, None) => false,
                (Op::Eq, _, _) if a.is_none() || b.is_none() => false,
                (Op::Ne, _, _) if a.is_none() || b.is_none() => true,
                (_, Some(a), Some(b)) => {
                    let ordering = cmp(a, b);
                    match self {
                        Op::Eq => ordering == Ordering::Equal,
                        Op::Ne => ordering != Ordering::Equal,
                        Op::Gt => ordering == Ordering::Greater,
                        Op::Ge => ordering != Ordering::Less,
                        Op::Lt => ordering == Ordering::Less,
                        Op::Le => ordering != Ordering::Greater,
                    }
                }
                _ => false,
            }
        }
    }

    #[derive(Debug, Clone, PartialEq)]
    pub(super) enum Literal {
        Null,
        Text(String),
        DateTime(DateTime<Utc>),
        Number(f64),
        Bool(bool),
    }

    impl Literal {
        fn edm(&self) -> &'static str {
            match self {
                Literal::Null => "null",
                Literal::Text(_) => "Edm.String",
                Literal::DateTime(_) => "Edm.DateTimeOffset",
                Literal::Number(_) => "Edm.Decimal",
                Literal::Bool(_) => "Edm.Boolean",
            }
        }

        fn fits(&self, kind: Kind) -> bool {
            matches!(
                (kind, self),
                (_, Literal::Null)
                    | (Kind::Text | Kind::Enum, Literal::Text(_))
                    | (Kind::DateTime, Literal::DateTime(_))
                    | (Kind::Number, Literal::Number(_))
                    | (Kind::Bool, Literal::Bool(_))
            )
        }
    }

    /// A parsed `$filter`.
    #[derive(Debug)]
    pub(super) enum Expr {
        And(Box<Expr>, Box<Expr>),
        Or(Box<Expr>, Box<Expr>),
        Not(Box<Expr>),
        Compare {
            field: &'static Field,
            op: Op,
            literal: Literal,
        },
    }

    impl Expr {
        /// Whether `referral` satisfies the filter (missing or mistyped fields count as null).
        pub(super) fn matches(&self, referral: &Value) -> bool {
            match self {
                Expr::And(a, b) => a.matches(referral) && b.matches(referral),
                Expr::Or(a, b) => a.matches(referral) || b.matches(referral),
                Expr::Not(e) => !e.matches(referral),
                Expr::Compare { field, op, literal } => {
                    let value = value_at(referral, field.path);
                    match field.kind {
                        Kind::Text => {
                            let b = match literal {
                                Literal::Text(s) => Some(s.as_str()),
                                _ => None,
                            };
                            op.holds(value.and_then(Value::as_str), b, |a: &str, b: &str| {
                                a.cmp(b)
                            })
                        }
                        Kind::Enum => {
                            let b = match literal {
                                Literal::Text(s) => Some(s.to_lowercase()),
                                _ => None,
                            };
                            let a = value.and_then(Value::as_str).map(str::to_lowercase);
                            op.holds(a.as_deref(), b.as_deref(), |a: &str, b: &str| a.cmp(b))
                        }
                        Kind::DateTime => {
                            let b = match literal {
                                Literal::DateTime(t) => Some(*t),
                                _ => None,
                            };
                            let a = value.and_then(Value::as_str).and_then(parse_time);
                            op.holds(a.as_ref(), b.as_ref(), Ord::cmp)
                        }
                        Kind::Number => {
                            let b = match literal {
                                Literal::Number(n) => Some(*n),
                                _ => None,
                            };
                            op.holds(
                                value.and_then(number).as_ref(),
                                b.as_ref(),
                                |a: &f64, b: &f64| a.total_cmp(b),
                            )
                        }
                        Kind::Bool => {
                            let b = match literal {
                                Literal::Bool(v) => Some(*v),
                                _ => None,
                            };
                            op.holds(
                                value.and_then(Value::as_bool).as_ref(),
                                b.as_ref(),
                                Ord::cmp,
                            )
                        }
                    }
                }
            }
        }
    }

    fn number(value: &Value) -> Option<f64> {
        match value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Token {
        Open,
        Close,
        Text(String),
        Word(String),
    }

    fn lex(input: &str) -> Result<Vec<(usize, Token)>, String> {
        let mut tokens = Vec::new();
        let mut chars = input.char_indices().peekable();
        while let Some(&(at, c)) = chars.peek() {
            match c {
                c if c.is_whitespace() => {
                    chars.next();
                }
                '(' => {
                    chars.next();
                    tokens.push((at, Token::Open));
                }
                ')' => {
                    chars.next();
                    tokens.push((at, Token::Close));
                }
                '\'' => {
                    chars.next();
                    let mut text = String::new();
                    loop {
                        match chars.next() {
                            None => {
                                return Err(format!(
                                    "unterminated string literal at position {at}"
                                ));
                            }
                            Some((_, '\'')) => {
                                if chars.peek().is_some_and(|&(_, c)| c == '\'') {
                                    chars.next();
                                    text.push('\'');
                                } else {
                                    break;
                                }
                            }
                            Some((_, c)) => text.push(c),
                        }
                    }
                    tokens.push((at, Token::Text(text)));
                }
                _ => {
                    let mut word = String::new();
                    while let Some(&(_, c)) = chars.peek() {
                        if c.is_whitespace() || matches!(c, '(' | ')' | '\'') {
                            break;
                        }
                        word.push(c);
                        chars.next();
                    }
                    tokens.push((at, Token::Word(word)));
                }
            }
        }
        Ok(tokens)
    }

    struct Parser {
        tokens: Vec<(usize, Token)>,
        next: usize,
        len: usize,
    }

    impl Parser {
        fn peek(&self) -> Option<&Token> {
            self.tokens.get(self.next).map(|(_, t)| t)
        }

        fn position(&self) -> usize {
            self.tokens.get(self.next).map_or(self.len, |(at, _)| *at)
        }

        fn bump(&mut self) -> Option<Token> {
            let token = self.tokens.get(self.next).map(|(_, t)| t.clone());
            self.next += 1;
            token
        }

        fn at_word(&self, word: &str) -> bool {
            matches!(self.peek(), Some(Token::Word(w)) if w == word)
        }

        fn or(&mut self) -> Result<Expr, String> {
            let mut left = self.and()?;
            while self.at_word("or") {
                self.bump();
                left = Expr::Or(Box::new(left), Box::new(self.and()?));
            }
            Ok(left)
        }

        fn and(&mut self) -> Result<Expr, String> {
            let mut left = self.unary()?;
            while self.at_word("and") {
                self.bump();
                left = Expr::And(Box::new(left), Box::new(self.unary()?));
            }
            Ok(left)
        }

        fn unary(&mut self) -> Result<Expr, String> {
            if self.at_word("not") {
                self.bump();
                return Ok(Expr::Not(Box::new(self.unary()?)));
            }
            self.primary()
        }

        fn primary(&mut self) -> Result<Expr, String> {
            let at = self.position();
            match self.bump() {
                Some(Token::Open) => {
                    let inner = self.or()?;
                    let close = self.position();
                    match self.bump() {
                        Some(Token::Close) => Ok(inner),
                        _ => Err(format!("')' expected at position {close}")),
                    }
                }
                Some(Token::Word(name)) => {
                    let field = lookup_field(&name)?;
                    let op_at = self.position();
                    let op = match self.bump() {
                        Some(Token::Word(w)) => Op::parse(&w),
                        _ => None,
                    }
                    .ok_or_else(|| format!("comparison operator (eq, ne, gt, ge, lt, le) expected at position {op_at}"))?;
                    let literal_at = self.position();
                    let literal = match self.bump() {
                        Some(Token::Text(s)) => Literal::Text(s),
                        Some(Token::Word(w)) => literal(&w).ok_or_else(|| {
                            format!("unrecognized literal '{w}' at position {literal_at}")
                        })?,
                        _ => return Err(format!("literal expected at position {literal_at}")),
                    };
                    if !literal.fits(field.kind) {
                        return Err(format!(
                            "A binary operator with incompatible types was detected. Found operand types '{}' and '{}' for property '{}'.",
                            field.kind.edm(),
                            literal.edm(),
                            field.name
                        ));
                    }
                    Ok(Expr::Compare { field, op, literal })
                }
                Some(Token::Close) => Err(format!("unexpected ')' at position {at}")),
                Some(Token::Text(_)) => Err(format!(
                    "property name expected at position {at}, found a string literal"
                )),
                None => Err(format!("expression expected at position {at}")),
            }
        }
    }

    fn literal(word: &str) -> Option<Literal> {
        match word {
            "null" => return Some(Literal::Null),
            "true" => return Some(Literal::Bool(true)),
            "false" => return Some(Literal::Bool(false)),
            _ => {}
        }
        let first = word.chars().next()?;
        if !(first.is_ascii_digit() || first == '-' || first == '+') {
            return None;
        }
        if word.contains('T') && word.contains(':') {
            return DateTime::parse_from_rfc3339(word)
                .ok()
                .map(|t| Literal::DateTime(t.with_timezone(&Utc)));
        }
        word.parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(Literal::Number)
    }

    /// Parses a `$filter` expression.
    pub(super) fn parse_filter(input: &str) -> Result<Expr, String> {
        let tokens = lex(input)?;
        if tokens.is_empty() {
            return Err("the expression is empty".to_owned());
        }
        let mut parser = Parser {
            tokens,
            next: 0,
            len: input.len(),
        };
        let expr = parser.or()?;
        if parser.peek().is_some() {
            return Err(format!(
                "unexpected token at position {}",
                parser.position()
            ));
        }
        Ok(expr)
    }

    /// One `$orderby` key.
    #[derive(Debug)]
    pub(super) struct OrderKey {
        field: &'static Field,
        descending: bool,
    }

    /// Parses `$orderby` (`field [asc|desc], ...`); none means storage order.
    pub(super) fn parse_orderby(input: Option<&str>) -> Result<Vec<OrderKey>, String> {
        let Some(input) = input else {
            return Ok(Vec::new());
        };
        input
            .split(',')
            .map(|clause| {
                let mut words = clause.split_whitespace();
                let name = words
                    .next()
                    .ok_or_else(|| format!("Invalid $orderby '{input}': empty clause."))?;
                let field = lookup_field(name)?;
                let descending = match words.next().map(str::to_ascii_lowercase).as_deref() {
                    None | Some("asc") => false,
                    Some("desc") => true,
                    Some(other) => {
                        return Err(format!(
                            "Invalid $orderby direction '{other}': asc or desc expected."
                        ));
                    }
                };
                if words.next().is_some() {
                    return Err(format!("Invalid $orderby clause '{}'.", clause.trim()));
                }
                Ok(OrderKey { field, descending })
            })
            .collect()
    }

    #[derive(Debug, PartialEq)]
    enum SortKey {
        Null,
        Text(String),
        Time(DateTime<Utc>),
        Number(f64),
        Bool(bool),
    }

    fn sort_key(referral: &Value, field: &Field) -> SortKey {
        let value = value_at(referral, field.path);
        let key = match field.kind {
            Kind::Text => value
                .and_then(Value::as_str)
                .map(|s| SortKey::Text(s.to_owned())),
            Kind::Enum => value
                .and_then(Value::as_str)
                .map(|s| SortKey::Text(s.to_lowercase())),
            Kind::DateTime => value
                .and_then(Value::as_str)
                .and_then(parse_time)
                .map(SortKey::Time),
            Kind::Number => value.and_then(number).map(SortKey::Number),
            Kind::Bool => value.and_then(Value::as_bool).map(SortKey::Bool),
        };
        key.unwrap_or(SortKey::Null)
    }

    /// Nulls first, then values; values of different kinds never meet (one field, one kind).
    fn compare_keys(a: &SortKey, b: &SortKey) -> Ordering {
        match (a, b) {
            (SortKey::Null, SortKey::Null) => Ordering::Equal,
            (SortKey::Null, _) => Ordering::Less,
            (_, SortKey::Null) => Ordering::Greater,
            (SortKey::Text(a), SortKey::Text(b)) => a.cmp(b),
            (SortKey::Time(a), SortKey::Time(b)) => a.cmp(b),
            (SortKey::Number(a), SortKey::Number(b)) => a.total_cmp(b),
            (SortKey::Bool(a), SortKey::Bool(b)) => a.cmp(b),
            _ => Ordering::Equal,
        }
    }

    /// Sorts `(position, referral)` by `order`, ties broken by `id` then storage position.
    pub(super) fn sort(matches: &mut Vec<(usize, &Value)>, order: &[OrderKey]) {
        if order.is_empty() {
            return;
        }
        let mut keyed: Vec<(Vec<SortKey>, Option<String>, usize, &Value)> = matches
            .iter()
            .map(|&(position, referral)| {
                let keys = order.iter().map(|o| sort_key(referral, o.field)).collect();
                let id = referral
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                (keys, id, position, referral)
            })
            .collect();
        keyed.sort_by(|a, b| {
            for (n, key) in order.iter().enumerate() {
                let ordering = compare_keys(&a.0[n], &b.0[n]);
                let ordering = if key.descending {
                    ordering.reverse()
                } else {
                    ordering
                };
                if ordering != Ordering::Equal {
                    return ordering;
                }
            }
            a.1.cmp(&b.1).then(a.2.cmp(&b.2))
        });
        *matches = keyed
            .into_iter()
            .map(|(_, _, position, referral)| (position, referral))
            .collect();
    }

    /// Parses `$select` into top-level property names (`*` or none = everything).
    pub(super) fn parse_select(input: Option<&str>) -> Result<Option<Vec<String>>, String> {
        let Some(input) = input else {
            return Ok(None);
        };
        let names: Vec<String> = input.split(',').map(|s| s.trim().to_owned()).collect();
        if names.iter().any(|n| n == "*") {
            return Ok(None);
        }
        if let Some(bad) = names
            .iter()
            .find(|n| n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(format!("Invalid $select property '{bad}'."));
        }
        Ok(Some(names))
    }

    /// The referral reduced to the selected top-level properties.
    pub(super) fn project(referral: &Value, select: Option<&[String]>) -> Value {
        match (select, referral) {
            (Some(names), Value::Object(object)) => {
                let kept: Map<String, Value> = object
                    .iter()
                    .filter(|(k, _)| names.iter().any(|n| n == *k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Value::Object(kept)
            }
            _ => referral.clone(),
        }
    }

    #[cfg(test)]
    #[allow(clippy::unwrap_used)]
    mod tests {
        use serde_json::json;

        use super::*;

        fn check(filter: &str, referral: &Value) -> bool {
            parse_filter(filter).unwrap().matches(referral)
        }

        #[test]
        fn when_precedence_mixes_and_or_not_should_bind_and_tighter() {
            let r = json!({"status": "New", "direction": "Outgoing", "type": "Shared"});
            assert!(check(
                "status eq 'Closed' or status eq 'New' and type eq 'Shared'",
                &r
            ));
            assert!(!check(
                "(status eq 'Closed' or status eq 'New') and direction eq 'Incoming'",
                &r
            ));
            assert!(check("not (direction eq 'Incoming')", &r));
            assert!(check(
                "not direction eq 'Incoming' and type ne 'Independent'",
                &r
            ));
        }

        #[test]
        fn when_quotes_are_doubled_should_unescape() {
            let r = json!({"name": "O'Brien - Teams"});
            assert!(check("name eq 'O''Brien - Teams'", &r));
        }

        #[test]
        fn when_datetimes_differ_in_precision_should_compare_instants() {
            let r = json!({"updatedDateTime": "2026-10-29T08:01:12.1234567Z"});
            assert!(check("updatedDateTime ge 2026-10-29T08:01:12.123Z", &r));
            assert!(!check("updatedDateTime gt 2026-10-29T10:01:13+02:00", &r));
            assert!(check("updatedDateTime lt 2026-10-29T08:01:13Z", &r));
        }

        #[test]
        fn when_field_missing_should_act_as_null() {
            let r = json!({"id": "1"});
            assert!(check("status eq null", &r));
            assert!(check("status ne 'New'", &r));
            assert!(!check("updatedDateTime ge 2020-01-01T00:00:00Z", &r));
        }

        #[test]
        fn when_input_is_garbage_should_fail() {
            for bad in [
                "",
                "status",
                "status eq",
                "status eq 'New",
                "(status eq 'New'",
                "status eq 'New')",
                "status equals 'New'",
                "nope eq 'x'",
                "updatedDateTime ge '2026-01-01'",
                "status eq 2026-01-01T00:00:00Z",
                "status eq 'New' and",
                "'New' eq status",
            ] {
                assert!(parse_filter(bad).is_err(), "{bad}");
            }
        }

        #[test]
        fn when_ordering_should_put_nulls_first_and_break_ties_by_id() {
            let a = json!({"id": "b", "createdDateTime": "2026-01-02T00:00:00Z"});
            let b = json!({"id": "a", "createdDateTime": "2026-01-02T00:00:00.0000000Z"});
            let c = json!({"id": "c"});
            let mut rows = vec![(0, &a), (1, &b), (2, &c)];
            sort(
                &mut rows,
                &parse_orderby(Some("createdDateTime asc")).unwrap(),
            );
            assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2, 1, 0]);
            sort(
                &mut rows,
                &parse_orderby(Some("createdDateTime desc")).unwrap(),
            );
            assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 0, 2]);
            assert!(parse_orderby(Some("createdDateTime sideways")).is_err());
            assert!(parse_orderby(Some("bogus asc")).is_err());
        }
    }
}

/// JSON Patch (RFC 6902) `add` and `replace` on raw JSON.
mod patch {
    use serde_json::Value;

    const READ_ONLY: &[&str] = &["id", "eTag"];

    fn unescape(token: &str) -> String {
        token.replace("~1", "/").replace("~0", "~")
    }

    /// Applies one operation; `replace` of a missing object member adds it (the resource is a typed
    /// model on Microsoft's side, where every known member exists even when the JSON omits it).
    pub(super) fn apply(document: &mut Value, op: &Value) -> Result<(), String> {
        let kind = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or("`op` is missing")?;
        if !matches!(kind, "add" | "replace") {
            return Err(format!(
                "operation '{kind}' is not supported (only add and replace)"
            ));
        }
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or("`path` is missing")?;
        let value = op.get("value").ok_or("`value` is missing")?.clone();
        let Some(rest) = path.strip_prefix('/') else {
            return Err(format!(
                "path '{path}' must start with '/' (the whole referral cannot be replaced)"
            ));
        };
        let tokens: Vec<String> = rest.split('/').map(unescape).collect();
        if READ_ONLY.contains(&tokens[0].as_str()) {
            return Err(format!("'/{}' is read-only", tokens[0]));
        }
        let (last, parents) = tokens.split_last().ok_or("empty path")?;
        let mut target = document;
        for token in parents {
            target = match target {
                Value::Object(object) => object.get_mut(token),
                Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
                _ => None,
            }
            .ok_or_else(|| format!("path '{path}' does not exist"))?;
        }
        match target {
            Value::Object(object) => {
                object.insert(last.clone(), value);
                Ok(())
            }
            Value::Array(items) => {
                if kind == "add" && last == "-" {
                    items.push(value);
                    return Ok(());
                }
                let index = last
                    .parse::<usize>()
                    .map_err(|_| format!("'{last}' is not an array index"))?;
                match kind {
                    "add" if index <= items.len() => items.insert(index, value),
                    "replace" if index < items.len() => items[index] = value,
                    _ => return Err(format!("index {index} is out of bounds")),
                }
                Ok(())
            }
            _ => Err(format!("the parent of '{path}' is not an object or array")),
        }
    }

    #[cfg(test)]
    #[allow(clippy::unwrap_used)]
    mod tests {
        use serde_json::json;

        use super::*;

        #[test]
        fn when_paths_are_nested_should_set_them() {
            let mut doc =
                json!({"status": "New", "details": {"dealValue": 1}, "target": [{"id": "a"}]});
            apply(
                &mut doc,
                &json!({"op": "replace", "path": "/details/dealValue", "value": 5}),
            )
            .unwrap();
            apply(
                &mut doc,
                &json!({"op": "add", "path": "/target/-", "value": {"id": "b"}}),
            )
            .unwrap();
            apply(
                &mut doc,
                &json!({"op": "replace", "path": "/target/0/id", "value": "z"}),
            )
            .unwrap();
            apply(
                &mut doc,
                &json!({"op": "add", "path": "/a~1b", "value": true}),
            )
            .unwrap();
            assert_eq!(
                doc,
                json!({"status": "New", "details": {"dealValue": 5}, "target": [{"id": "z"}, {"id": "b"}], "a/b": true})
            );
        }

        #[test]
        fn when_operation_is_invalid_should_refuse() {
            let mut doc = json!({"id": "1", "details": null});
            for op in [
                json!({"op": "remove", "path": "/details"}),
                json!({"op": "replace", "path": "/id", "value": "2"}),
                json!({"op": "replace", "path": "/details/dealValue", "value": 1}),
                json!({"op": "replace", "path": "", "value": {}}),
                json!({"op": "add", "path": "/x"}),
            ] {
                assert!(apply(&mut doc, &op).is_err(), "{op}");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn when_continuation_round_trips_should_be_equal_and_garbage_refused() {
        let query = Continuation {
            filter: Some("status eq 'New'".into()),
            orderby: None,
            select: None,
            top: 5,
            offset: 10,
            count: true,
        };
        assert_eq!(Continuation::decode(&query.encode()).unwrap(), query);
        assert!(Continuation::decode("not-base64!").is_err());
        assert!(
            Continuation::decode(&URL_SAFE_NO_PAD.encode(b"{\"top\":0,\"offset\":0}")).is_err()
        );
    }

    #[test]
    fn when_stamping_should_never_go_back_in_time() {
        let mut referral = json!({"id": "1", "updatedDateTime": "2999-01-01T00:00:00Z"});
        stamp(&mut referral, "\"e\"".into());
        assert_eq!(
            referral["updatedDateTime"],
            json!("2999-01-01T00:00:00.0010000Z")
        );
        assert_eq!(referral["eTag"], json!("\"e\""));
    }

    #[test]
    fn when_upserting_should_replace_by_id_and_keep_id_less_ones() {
        let sim = PartnerCenterSim::new(
            vec![
                json!({"id": "a", "v": 1}),
                json!({"v": "no id"}),
                json!({"id": 7}),
            ],
            SimConfig::default(),
        );
        sim.upsert_referrals(vec![json!({"id": "a", "v": 2}), json!({"v": "no id"})]);
        assert_eq!(
            sim.referrals(),
            vec![
                json!({"id": "a", "v": 2}),
                json!({"v": "no id"}),
                json!({"id": 7}),
                json!({"v": "no id"})
            ]
        );
    }
}
