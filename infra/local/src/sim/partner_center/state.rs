//! The referrals and what the Referrals API does with them: list pages (first and continuation,
//! the query carried in `$skiptoken`), get one, JSON Patch and replace with `If-Match`.

use hunter_core::secret::Secret;
use std::collections::HashMap;

use axum::Json;
use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::auth::{DeviceCode, DeviceFlow};
use super::error::ApiError;
use super::webhooks::Webhooks;
use super::{CONTINUATION_PATH, Faults, PartnerCenterSim, SimConfig, odata, patch};
use crate::sim::control::Controls;
use crate::sim::http::{self, if_match_names};
use crate::sim::oauth::AccessTokens;
use crate::sim::seed::SeedPoint;

/// Everything the simulator holds, behind its lock.
#[derive(Debug)]
pub(super) struct Inner {
    page_size: usize,
    pub referrals: Vec<StoredReferral>,
    /// Referral id -> position in `referrals`, once something asked by id ([`Inner::index`]).
    index: Option<HashMap<String, usize>>,
    pub controls: Controls<Faults>,
    pub pages_since_faults: u32,
    pub fault_rng: fastrand::Rng,
    pub id_rng: fastrand::Rng,
    pub refresh_token: Secret,
    pub device_codes: HashMap<String, DeviceCode>,
    pub device_flow: DeviceFlow,
    pub base_url: Option<String>,
    pub webhooks: Webhooks,
    /// Bumped by every change to `referrals`: a cached page order is valid for one generation.
    generation: u64,
    /// The matching referrals of the last listing, in order, so paging through N referrals
    /// filters and sorts them once rather than once per page.
    page_order: Option<PageOrder>,
}

/// A referral as the simulator keeps it: for a seeded referral nobody has changed, only where
/// in the seed's sequence it is generated again from (32 bytes: its listing properties are
/// generated again when a listing is ordered, so the simulator's memory hardly grows with N);
/// else its compact JSON text with, apart, the properties a listing filters and orders on
/// ([`odata::filterable`]), so a listing of N referrals neither holds N parsed documents nor
/// parses one.
#[derive(Debug)]
pub(crate) enum StoredReferral {
    /// As it was given (or last changed); boxed, so that a seeded one takes no more room.
    Text(Box<TextReferral>),
    /// Generated again whenever it is read.
    Seeded(SeedPoint),
}

/// A referral's text and its listing properties.
#[derive(Debug)]
pub(crate) struct TextReferral {
    text: Box<RawValue>,
    filterable: Box<RawValue>,
}

impl StoredReferral {
    fn new(referral: &Value) -> Self {
        Self::Text(Box::new(TextReferral {
            text: to_raw(referral),
            filterable: to_raw(&odata::filterable(referral)),
        }))
    }

    /// The properties a listing filters and orders on (a seeded referral's may name some as
    /// `null`, which listings read as absent).
    fn listed(&self) -> Value {
        match self {
            Self::Text(stored) => {
                serde_json::from_str(stored.filterable.get()).unwrap_or(Value::Null)
            }
            Self::Seeded(point) => point.listed(),
        }
    }

    /// The referral as compact JSON text.
    fn text(&self) -> Box<RawValue> {
        match self {
            Self::Text(stored) => stored.text.clone(),
            Self::Seeded(point) => point.raw(),
        }
    }

    /// Its `id`, if it has one.
    fn id(&self) -> Option<String> {
        match self {
            Self::Text(_) => referral_id(&self.listed()),
            Self::Seeded(point) => point.id(),
        }
    }

    /// The referral as a document.
    pub(crate) fn value(&self) -> Value {
        match self {
            Self::Text(stored) => serde_json::from_str(stored.text.get()).unwrap_or(Value::Null),
            Self::Seeded(point) => point.referral(),
        }
    }
}

fn to_raw(value: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// The positions in `referrals` that match a listing's filter, in its order.
#[derive(Debug)]
struct PageOrder {
    filter: Option<String>,
    orderby: Option<String>,
    generation: u64,
    positions: Vec<usize>,
}

impl Inner {
    /// No referrals yet (room for `capacity`).
    pub(super) fn new(capacity: usize, config: SimConfig) -> Self {
        Self {
            page_size: config.page_size.max(1),
            referrals: Vec::with_capacity(capacity),
            index: None,
            controls: Controls::new(
                config.faults,
                AccessTokens::new("sim-at-", config.access_token_ttl),
            ),
            pages_since_faults: 0,
            fault_rng: fastrand::Rng::with_seed(config.rng_seed),
            id_rng: fastrand::Rng::with_seed(config.rng_seed ^ 0x9e37_79b9_7f4a_7c15),
            refresh_token: config.initial_refresh_token,
            device_codes: HashMap::new(),
            device_flow: DeviceFlow::default(),
            base_url: None,
            webhooks: Webhooks::default(),
            generation: 0,
            page_order: None,
        }
    }

    /// Adds referrals, replacing stored ones with the same `id`.
    pub(super) fn upsert(&mut self, referrals: impl IntoIterator<Item = Value>) {
        for referral in referrals {
            let id = referral_id(&referral);
            let known = id.as_ref().is_some_and(|id| self.index().contains_key(id));
            self.upsert_stored(id.clone(), StoredReferral::new(&referral));
            if let Some(id) = id {
                self.referral_changed(&id, !known);
            }
        }
    }

    /// Adds `stored` under `id`, replacing the one stored under it; one without an id is kept
    /// by position.
    pub(super) fn upsert_stored(&mut self, id: Option<String>, stored: StoredReferral) {
        self.generation += 1;
        let Some(id) = id else {
            self.referrals.push(stored);
            return;
        };
        let next = self.referrals.len();
        match *self.index().entry(id).or_insert(next) {
            position if position == next => self.referrals.push(stored),
            position => self.referrals[position] = stored,
        }
    }

    /// Adds a seeded referral to a simulator being seeded, whose referrals' ids are all
    /// different (random UUIDs), without indexing it: a simulator that is only listed, as a
    /// sync lists it, never holds its N ids.
    pub(super) fn push_seeded(&mut self, point: SeedPoint) {
        self.generation += 1;
        // Built again from all referrals when next asked for.
        self.index = None;
        self.referrals.push(StoredReferral::Seeded(point));
    }

    /// Referral id -> position in `referrals`. Built on first use (after seeding, by generating
    /// each seeded referral's id again, ~10 µs each, once); kept up to date from then on.
    fn index(&mut self) -> &mut HashMap<String, usize> {
        let referrals = &self.referrals;
        self.index.get_or_insert_with(|| {
            let mut index = HashMap::with_capacity(referrals.len());
            for (position, stored) in referrals.iter().enumerate() {
                if let Some(id) = stored.id() {
                    // Seeded ids are random UUIDs; should two ever be equal, the first answers.
                    index.entry(id).or_insert(position);
                }
            }
            index
        })
    }

    /// The position in `referrals` of the referral with `id`.
    fn position(&mut self, id: &str) -> Result<usize, ApiError> {
        self.index()
            .get(id)
            .copied()
            .ok_or_else(|| ApiError::not_found(id))
    }

    /// `prefix` and 32 random hex digits.
    pub(super) fn random_hex(&mut self, prefix: &str) -> String {
        format!("{prefix}{:032x}", self.id_rng.u128(..))
    }

    /// A new access token from the seeded RNG.
    pub(super) fn issue_access_token(&mut self) -> String {
        self.controls.access_tokens.issue(&mut self.id_rng)
    }

    fn new_etag(&mut self) -> String {
        format!("\"{}\"", uuid::Uuid::from_u128(self.id_rng.u128(..)))
    }
}

impl PartnerCenterSim {
    /// The first page of the list, or the page its `$skiptoken` names.
    pub(super) fn first_page(&self, uri: &Uri, headers: &HeaderMap) -> Result<Response, ApiError> {
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

    /// A continuation page (`/v1.0/referrals?$skiptoken=...`).
    pub(super) fn continuation(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<Response, ApiError> {
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
        let cached = inner.page_order.as_ref().filter(|o| {
            o.generation == inner.generation
                && o.filter == query.filter
                && o.orderby == query.orderby
        });
        if cached.is_none() {
            let positions = odata::ordered_positions(
                &inner.referrals,
                StoredReferral::listed,
                filter.as_ref(),
                &order,
            );
            inner.page_order = Some(PageOrder {
                filter: query.filter.clone(),
                orderby: query.orderby.clone(),
                generation: inner.generation,
                positions,
            });
        }
        let positions = inner
            .page_order
            .as_ref()
            .map(|o| o.positions.as_slice())
            .unwrap_or_default();
        let total = positions.len();
        let page: Vec<Box<RawValue>> = positions
            .iter()
            .skip(query.offset)
            .take(query.top)
            .map(|&position| {
                let stored = &inner.referrals[position];
                match select.as_deref() {
                    None => stored.text(),
                    Some(names) => serde_json::value::to_raw_value(&odata::project(
                        &stored.value(),
                        Some(names),
                    ))
                    .unwrap_or_else(|_| RawValue::NULL.to_owned()),
                }
            })
            .collect();
        let returned = page.len();
        let next_offset = query.offset.saturating_add(query.top);
        let next_link = (next_offset < total).then(|| {
            let next = Continuation {
                offset: next_offset,
                ..query.clone()
            };
            format!("{base}{CONTINUATION_PATH}?$skiptoken={}", next.encode())
        });
        let body = PageBody {
            context: format!("{base}/v1.0/$metadata#Referrals"),
            count: query.count.then_some(total),
            value: page,
            next_link,
        };
        inner.pages_since_faults += 1;
        if let Some(limit) = inner.controls.faults.expire_token_after_pages {
            if inner.pages_since_faults >= limit.max(1) {
                inner.pages_since_faults = 0;
                inner.controls.access_tokens.expire_all();
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
        Ok(Json(body).into_response())
    }

    pub(super) fn get_one(&self, id: &str) -> Result<Response, ApiError> {
        let mut inner = self.lock();
        let position = inner.position(id)?;
        let referral = inner.referrals[position].value();
        Ok(with_etag(Json(&referral).into_response(), &referral))
    }

    /// JSON Patch of one referral; `If-Match` is optional.
    pub(super) fn patch(
        &self,
        id: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Response, ApiError> {
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
        let position = inner.position(id)?;
        let current = inner.referrals[position].value();
        check_if_match(headers, &current, false)?;
        let mut updated = current;
        for (n, op) in ops.iter().enumerate() {
            patch::apply(&mut updated, op).map_err(|e| {
                ApiError::bad_request("InvalidPatch", format!("Operation {n}: {e}"))
            })?;
        }
        let etag = inner.new_etag();
        stamp(&mut updated, etag);
        inner.referrals[position] = StoredReferral::new(&updated);
        inner.generation += 1;
        inner.referral_changed(id, false);
        drop(inner);
        tracing::info!(event = "partner_center_sim_referral_patched", referral_id = %id, ops = ops.len());
        let representation = http::prefers(
            headers
                .get_all("prefer")
                .iter()
                .filter_map(|v| v.to_str().ok()),
            "return=representation",
        );
        let response = if representation {
            Json(updated.clone()).into_response()
        } else {
            StatusCode::NO_CONTENT.into_response()
        };
        Ok(with_etag(response, &updated))
    }

    /// Replaces one referral (its `id` and `links` stay); `If-Match` is required.
    pub(super) fn put(
        &self,
        id: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Response, ApiError> {
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
        let position = inner.position(id)?;
        let current = inner.referrals[position].value();
        check_if_match(headers, &current, true)?;
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
        inner.referrals[position] = StoredReferral::new(&updated);
        inner.generation += 1;
        inner.referral_changed(id, false);
        drop(inner);
        tracing::info!(event = "partner_center_sim_referral_replaced", referral_id = %id);
        Ok(with_etag(Json(updated.clone()).into_response(), &updated))
    }
}

/// A page of a listing, as Partner Center answers it.
#[derive(Serialize)]
struct PageBody {
    #[serde(rename = "@odata.context")]
    context: String,
    #[serde(rename = "@odata.count", skip_serializing_if = "Option::is_none")]
    count: Option<usize>,
    value: Vec<Box<RawValue>>,
    #[serde(rename = "@odata.nextLink", skip_serializing_if = "Option::is_none")]
    next_link: Option<String>,
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
pub(super) fn referral_id(referral: &Value) -> Option<String> {
    match referral.get("id")? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// RFC 3339 with any number of fractional digits; a zone-less time is taken as UTC.
pub(super) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    hunter_domain::referral::parse_timestamp(s)
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
    if if_match_names(sent, referral.get("eTag").and_then(Value::as_str)) {
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

    async fn body(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Every page of `uri`'s listing, followed through its nextLinks.
    async fn listing(sim: &PartnerCenterSim, uri: &str) -> Vec<Value> {
        let headers = HeaderMap::new();
        let mut page = body(sim.first_page(&uri.parse().unwrap(), &headers).unwrap()).await;
        let mut pages = vec![page.clone()];
        while let Some(next) = page["@odata.nextLink"].as_str() {
            let uri: Uri = next.trim_start_matches("http://localhost").parse().unwrap();
            page = body(sim.continuation(&uri, &headers).unwrap()).await;
            pages.push(page.clone());
        }
        pages
    }

    /// Generated again on every read, seeded referrals are served exactly as the same referrals
    /// given as documents; one changed is kept as changed.
    #[tokio::test]
    async fn a_seeded_simulator_serves_what_the_same_referrals_given_whole_would() {
        let config = || SimConfig {
            page_size: 40,
            ..SimConfig::default()
        };
        let mut visited = Vec::new();
        let seeded = PartnerCenterSim::seeded(300, 5, config(), |text| {
            visited.push(serde_json::from_str::<Value>(&text).unwrap());
        });
        let given = PartnerCenterSim::new(crate::sim::seed::generate_referrals(300, 5), config());
        let customer_parts: Vec<Value> = given
            .referrals()
            .iter()
            .map(|referral| {
                let keys = ["customerProfile", "id"].into_iter();
                let part =
                    keys.filter_map(|key| Some((key.to_owned(), referral.get(key)?.clone())));
                Value::Object(part.collect())
            })
            .collect();
        assert_eq!(visited, customer_parts, "visited: each one's customer part");
        assert_eq!(seeded.referrals(), given.referrals());
        for sim in [&seeded, &given] {
            sim.set_base_url("http://localhost");
        }
        let uri = "/v1.0/engagements/referrals?$filter=status%20eq%20%27New%27&$orderby=updatedDateTime%20desc&$count=true";
        let pages = listing(&seeded, uri).await;
        assert!(pages.len() > 1, "{} pages", pages.len());
        assert_eq!(pages, listing(&given, uri).await);

        // The first read by id indexes the seeded referrals (seeding did not).
        for referral in given.referrals() {
            let Some(id) = referral["id"].as_str() else {
                continue;
            };
            assert_eq!(body(seeded.get_one(id).unwrap()).await, referral);
        }
        let mut renamed = given.referrals()[7].clone();
        renamed["name"] = json!("Renamed");
        let renamed_id = renamed["id"].as_str().unwrap().to_owned();
        for sim in [&seeded, &given] {
            sim.upsert_referrals(vec![renamed.clone()]);
        }
        assert_eq!(seeded.referrals().len(), 300, "an upsert by id replaces");
        assert_eq!(
            body(seeded.get_one(&renamed_id).unwrap()).await["name"],
            "Renamed"
        );

        let id = given.referrals()[20]["id"].as_str().unwrap().to_owned();
        for sim in [&seeded, &given] {
            let ops = br#"[{"op": "replace", "path": "/status", "value": "Closed"}]"#;
            sim.patch(&id, &HeaderMap::new(), ops).unwrap();
        }
        let changed = body(seeded.get_one(&id).unwrap()).await;
        assert_eq!(changed["status"], "Closed");
        let unchanged = |sim: &PartnerCenterSim| {
            let mut all = sim.referrals();
            all.retain(|r| r["id"] != json!(id));
            all
        };
        assert_eq!(unchanged(&seeded), unchanged(&given));
    }
}
