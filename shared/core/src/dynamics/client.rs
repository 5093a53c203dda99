//! The Dataverse Web API client: client-credentials tokens, idempotent upserts by alternate key,
//! adoption of hand-made records, `$batch` upserts, and one retry loop that honours `Retry-After`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use super::error::{DataverseError, retryable_answer};
use crate::retry::{Backoff, parse_retry_after};
use crate::secret::Secret;

/// Path of the Web API under the organization URL.
const API_PATH: &str = "/api/data/v9.2/";
/// A cached access token is renewed this long before it expires (at most half its lifetime).
const EXPIRY_MARGIN: Duration = Duration::from_secs(120);
/// Most requests in one `$batch`.
pub const MAX_BATCH_ITEMS: usize = 1000;
/// Records `find_by_domain` looks at.
const FIND_TOP: usize = 5;

/// Client-credentials access tokens for one organization, cached until shortly before expiry.
pub struct DataverseAuth {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: Secret,
    scope: String,
    cached: Mutex<Option<(Secret, Instant)>>,
}

impl std::fmt::Debug for DataverseAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataverseAuth")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl DataverseAuth {
    /// `token_url` is `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`; the scope is
    /// `{org_url}/.default`.
    pub fn new(
        http: reqwest::Client,
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Secret,
        org_url: &str,
    ) -> Self {
        Self {
            http,
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret,
            scope: format!("{}/.default", org_url.trim_end_matches('/')),
            cached: Mutex::new(None),
        }
    }

    /// A valid access token, from the cache when it has time left.
    pub async fn access_token(&self) -> Result<Secret, DataverseError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, renew_at)) = cached.as_ref() {
            if Instant::now() < *renew_at {
                return Ok(token.clone());
            }
        }
        self.fetch(&mut cached).await
    }

    /// A new access token because `rejected` was refused (unless another caller renewed it already).
    pub async fn renew_after_rejection(&self, rejected: &Secret) -> Result<Secret, DataverseError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, _)) = cached.as_ref() {
            if token != rejected {
                return Ok(token.clone());
            }
        }
        self.fetch(&mut cached).await
    }

    async fn fetch(
        &self,
        cached: &mut Option<(Secret, Instant)>,
    ) -> Result<Secret, DataverseError> {
        *cached = None;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("scope", self.scope.as_str()),
        ];
        let response = self
            .http
            .post(&self.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| DataverseError::Transport(format!("token endpoint: {e}")))?;
        let status = response.status();
        let request_id = request_id(response.headers());
        let retry_after = retry_after(response.headers());
        let body = response
            .text()
            .await
            .map_err(|e| DataverseError::Transport(format!("token endpoint: {e}")))?;
        let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            let code = json["error"].as_str().unwrap_or_default().to_owned();
            let message = json["error_description"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            tracing::warn!(event = "dataverse_token_refused", status = status.as_u16(), code = %code, request_id = request_id.as_deref());
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                DataverseError::Http {
                    status: status.as_u16(),
                    code,
                    message,
                    request_id,
                    retryable: true,
                    retry_after,
                }
            } else {
                DataverseError::Auth {
                    status: status.as_u16(),
                    message: format!("{code}: {message}"),
                    request_id,
                }
            });
        }
        let token = json["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(Secret::new)
            .ok_or_else(|| {
                DataverseError::InvalidResponse(
                    "token answer without access_token".to_owned(),
                    request_id.clone(),
                )
            })?;
        let lifetime = match &json["expires_in"] {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .map(Duration::from_secs)
        .ok_or_else(|| {
            DataverseError::InvalidResponse(
                "token answer without expires_in".to_owned(),
                request_id.clone(),
            )
        })?;
        let renew_at = Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN.min(lifetime / 2));
        tracing::info!(
            event = "dataverse_token_issued",
            expires_in = lifetime.as_secs()
        );
        *cached = Some((token.clone(), renew_at));
        Ok(token)
    }
}

/// The outcome of an upsert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpsertResult {
    /// The primary key (GUID) of the row, from `OData-EntityId`.
    pub id: String,
    /// The server answered 201 Created (an update, or a retry of a create whose answer was lost,
    /// reports `false`).
    pub created: bool,
}

/// A record found by [`DataverseClient::find_by_domain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingRecord {
    /// The primary key (GUID).
    pub id: String,
    /// The value of the alternate-key column, if the record has one (hand-made records do not).
    pub key: Option<String>,
}

/// The Dataverse Web API client.
#[derive(Debug)]
pub struct DataverseClient {
    http: reqwest::Client,
    api: Url,
    auth: DataverseAuth,
    backoff: Backoff,
    /// Latest `x-ms-dop-hint` (0 = none seen yet).
    dop_hint: AtomicU32,
    /// After a 429, no request of this client is sent before this instant, so concurrent pushes
    /// wait out `Retry-After` together instead of adding to the storm.
    paused_until: std::sync::Mutex<Option<tokio::time::Instant>>,
}

/// One record of a change set, upserted by its alternate key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedRecord {
    pub entity_set: String,
    pub key_column: String,
    pub key_value: String,
    pub record: Map<String, Value>,
}

/// A request before it is sent (it may be sent several times).
struct Call {
    op: &'static str,
    method: Method,
    url: Url,
    headers: Vec<(&'static str, String)>,
    /// Content type and bytes.
    body: Option<(String, Vec<u8>)>,
}

/// A successful answer.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
    request_id: Option<String>,
}

/// The `request-id` header of an answer (else `x-ms-service-request-id`).
fn request_id(headers: &HeaderMap) -> Option<String> {
    ["request-id", "x-ms-service-request-id"]
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
        .map(str::to_owned)
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
}

/// `error.code` and `error.message` of an error body (empty when absent).
fn error_parts(body: &str) -> (String, String) {
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        text(&json["error"]["code"]),
        text(&json["error"]["message"]),
    )
}

/// Entity-set and column names are identifiers; anything else would change the URL.
fn check_identifier(what: &str, name: &str) -> Result<(), DataverseError> {
    let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(DataverseError::InvalidRequest(format!(
            "{what} '{name}' is not an identifier"
        )))
    }
}

/// An OData string literal for a URL: quotes doubled, then everything but unreserved characters
/// percent-encoded (so the doubled quotes travel as `%27%27`).
pub fn odata_string_literal(value: &str) -> String {
    let doubled = value.replace('\'', "''");
    let mut out = String::with_capacity(doubled.len() + 2);
    out.push('\'');
    for byte in doubled.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out.push('\'');
    out
}

/// The GUID inside the last parentheses of an `OData-EntityId` URL.
fn entity_id(url: &str) -> Option<String> {
    let open = url.rfind('(')?;
    let close = url[open..].find(')')? + open;
    let id = uuid::Uuid::parse_str(&url[open + 1..close]).ok()?;
    Some(id.to_string())
}

/// The primary-key column of an entity set (`leads` → `leadid`, `opportunities` → `opportunityid`).
fn primary_key(entity_set: &str) -> String {
    let singular = if let Some(stem) = entity_set.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = entity_set.strip_suffix("sses") {
        format!("{stem}ss")
    } else {
        entity_set
            .strip_suffix('s')
            .unwrap_or(entity_set)
            .to_owned()
    };
    format!("{singular}id")
}

/// The host of a website URL, lowercased, without `www.`.
fn website_host(url: &str) -> String {
    let url = url.trim().to_lowercase();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let host = rest.split(['/', '?', '#', ':']).next().unwrap_or_default();
    host.strip_prefix("www.")
        .unwrap_or(host)
        .trim_end_matches('.')
        .to_owned()
}

impl DataverseClient {
    /// `org_url` is `https://ORG.crm.dynamics.com` (or a simulator); the API is under
    /// `{org_url}/api/data/v9.2/`.
    pub fn new(
        http: reqwest::Client,
        org_url: &str,
        auth: DataverseAuth,
        backoff: Backoff,
    ) -> Result<Self, DataverseError> {
        let api = Url::parse(&format!("{}{API_PATH}", org_url.trim_end_matches('/')))
            .map_err(|e| DataverseError::InvalidRequest(format!("org URL {org_url}: {e}")))?;
        Ok(Self {
            http,
            api,
            auth,
            backoff,
            dop_hint: AtomicU32::new(0),
            paused_until: std::sync::Mutex::new(None),
        })
    }

    /// The latest `x-ms-dop-hint` (recommended degree of parallelism) the server sent.
    pub fn dop_hint(&self) -> Option<u32> {
        Some(self.dop_hint.load(Ordering::Relaxed)).filter(|n| *n > 0)
    }

    fn url(&self, path: &str) -> Result<Url, DataverseError> {
        Url::parse(&format!("{}{path}", self.api))
            .map_err(|e| DataverseError::InvalidRequest(format!("{path}: {e}")))
    }

    fn key_path(
        entity_set: &str,
        key_column: &str,
        key_value: &str,
    ) -> Result<String, DataverseError> {
        check_identifier("entity set", entity_set)?;
        check_identifier("key column", key_column)?;
        Ok(format!(
            "{entity_set}({key_column}={})",
            odata_string_literal(key_value)
        ))
    }

    fn json_body(record: &Map<String, Value>) -> Result<(String, Vec<u8>), DataverseError> {
        let bytes = serde_json::to_vec(record)
            .map_err(|e| DataverseError::InvalidRequest(format!("record: {e}")))?;
        Ok(("application/json".to_owned(), bytes))
    }

    /// Creates or updates the row whose alternate key `key_column` is `key_value`
    /// (`PATCH {set}({key_column}='{key_value}')`). Idempotent: a retry updates the same row.
    /// The key column is left out of the body (the URL names it).
    pub async fn upsert_by_key(
        &self,
        entity_set: &str,
        key_column: &str,
        key_value: &str,
        record: &Map<String, Value>,
    ) -> Result<UpsertResult, DataverseError> {
        let path = Self::key_path(entity_set, key_column, key_value)?;
        let mut url = self.url(&path)?;
        url.query_pairs_mut().append_pair("$select", key_column);
        let mut body = record.clone();
        body.remove(key_column);
        let answer = self
            .send(Call {
                op: "upsert",
                method: Method::PATCH,
                url,
                headers: vec![("Prefer", "return=representation".to_owned())],
                body: Some(Self::json_body(&body)?),
            })
            .await?;
        let id = answer
            .headers
            .get("OData-EntityId")
            .and_then(|v| v.to_str().ok())
            .and_then(entity_id)
            .ok_or_else(|| {
                DataverseError::InvalidResponse(
                    "upsert answer without an OData-EntityId".to_owned(),
                    answer.request_id.clone(),
                )
            })?;
        let created = answer.status == StatusCode::CREATED;
        tracing::info!(event = "dataverse_upserted", entity_set, id = %id, created, request_id = answer.request_id.as_deref());
        Ok(UpsertResult { id, created })
    }

    /// The first record of `entity_set` whose website host or email domain is exactly `domain`
    /// (records people made by hand, to adopt instead of duplicating). `key_column` is read
    /// back so callers can tell an unkeyed record from one Hunter already owns.
    pub async fn find_by_domain(
        &self,
        entity_set: &str,
        key_column: &str,
        domain: &str,
    ) -> Result<Option<ExistingRecord>, DataverseError> {
        check_identifier("entity set", entity_set)?;
        check_identifier("key column", key_column)?;
        let domain = domain.trim().to_lowercase();
        let domain = domain.strip_prefix("www.").unwrap_or(&domain).to_owned();
        if domain.is_empty() {
            return Ok(None);
        }
        let quoted = domain.replace('\'', "''");
        let pk = primary_key(entity_set);
        let mut url = self.url(entity_set)?;
        url.query_pairs_mut()
            .append_pair(
                "$filter",
                &format!("contains(websiteurl,'{quoted}') or contains(emailaddress1,'@{quoted}')"),
            )
            .append_pair(
                "$select",
                &format!("{pk},websiteurl,emailaddress1,{key_column}"),
            )
            .append_pair("$top", &FIND_TOP.to_string());
        let answer = self
            .send(Call {
                op: "find_by_domain",
                method: Method::GET,
                url,
                headers: Vec::new(),
                body: None,
            })
            .await?;
        let json: Value = serde_json::from_str(&answer.body).map_err(|e| {
            DataverseError::InvalidResponse(e.to_string(), answer.request_id.clone())
        })?;
        let Some(rows) = json["value"].as_array() else {
            return Err(DataverseError::InvalidResponse(
                "query answer without a `value` array".to_owned(),
                answer.request_id,
            ));
        };
        let found = rows.iter().find_map(|row| {
            let site = row["websiteurl"].as_str().map(website_host);
            let mail = row["emailaddress1"]
                .as_str()
                .and_then(|m| m.trim().rsplit_once('@'))
                .map(|(_, d)| d.to_lowercase());
            let matches = site.as_deref() == Some(domain.as_str())
                || mail.as_deref() == Some(domain.as_str());
            let id = row[pk.as_str()].as_str()?;
            matches.then(|| ExistingRecord {
                id: id.to_owned(),
                key: row[key_column]
                    .as_str()
                    .filter(|k| !k.is_empty())
                    .map(str::to_owned),
            })
        });
        tracing::info!(
            event = "dataverse_found_by_domain",
            entity_set,
            candidates = rows.len(),
            found = found.is_some(),
            request_id = answer.request_id.as_deref()
        );
        Ok(found)
    }

    /// Sets the alternate key on an existing (adopted) record: `PATCH {set}({id})` with
    /// `If-Match: *`, so a missing record is a 404 instead of a new row.
    pub async fn link_key(
        &self,
        entity_set: &str,
        id: &str,
        key_column: &str,
        key_value: &str,
    ) -> Result<(), DataverseError> {
        check_identifier("entity set", entity_set)?;
        check_identifier("key column", key_column)?;
        let id = uuid::Uuid::parse_str(id)
            .map_err(|_| DataverseError::InvalidRequest(format!("'{id}' is not a GUID")))?;
        let url = self.url(&format!("{entity_set}({id})"))?;
        let mut body = Map::new();
        body.insert(key_column.to_owned(), Value::String(key_value.to_owned()));
        let answer = self
            .send(Call {
                op: "link_key",
                method: Method::PATCH,
                url,
                headers: vec![("If-Match", "*".to_owned())],
                body: Some(Self::json_body(&body)?),
            })
            .await?;
        tracing::info!(event = "dataverse_key_linked", entity_set, id = %id, request_id = answer.request_id.as_deref());
        Ok(())
    }

    /// Upserts `items` by their alternate keys in ONE change set (all or nothing). A record may
    /// reference an earlier item with `"nav@odata.bind": "$N"` (N = its 1-based position).
    pub async fn upsert_change_set(
        &self,
        items: &[KeyedRecord],
    ) -> Result<Vec<UpsertResult>, DataverseError> {
        if items.is_empty() || items.len() > MAX_BATCH_ITEMS {
            return Err(DataverseError::InvalidRequest(format!(
                "a change set of {} items",
                items.len()
            )));
        }
        let batch = format!("batch_{}", uuid::Uuid::new_v4());
        let changeset = format!("changeset_{}", uuid::Uuid::new_v4());
        let mut text =
            format!("--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n");
        for (n, item) in items.iter().enumerate() {
            let path = Self::key_path(&item.entity_set, &item.key_column, &item.key_value)?;
            let mut body = item.record.clone();
            body.remove(&item.key_column);
            let json = serde_json::to_string(&body)
                .map_err(|e| DataverseError::InvalidRequest(format!("record: {e}")))?;
            let _ = write!(
                text,
                "--{changeset}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\
                 Content-ID: {id}\r\n\r\n\
                 PATCH {api}{path} HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n{json}\r\n",
                id = n + 1,
                api = self.api,
            );
        }
        let _ = write!(text, "--{changeset}--\r\n--{batch}--\r\n");
        let (responses, request_id) = self
            .post_batch("upsert_change_set", &batch, text, Vec::new())
            .await?;
        // A failed change set answers with the failing request only.
        let results: Vec<Result<UpsertResult, DataverseError>> = responses
            .into_iter()
            .map(|r| r.into_result(request_id.clone()))
            .collect();
        if let Some(failure) = results.iter().find_map(|r| r.as_ref().err()) {
            return Err(failure.clone());
        }
        if results.len() != items.len() {
            return Err(DataverseError::InvalidResponse(
                format!(
                    "{} answers to a change set of {}",
                    results.len(),
                    items.len()
                ),
                request_id,
            ));
        }
        results.into_iter().collect()
    }

    /// Upserts up to [`MAX_BATCH_ITEMS`] `(key value, record)` pairs in one `$batch`, one change set
    /// per item with `Prefer: odata.continue-on-error`, so one failing item does not roll back the
    /// others. The outer `Err` is for the batch as a whole; the inner results follow `items`.
    pub async fn batch_upsert(
        &self,
        entity_set: &str,
        key_column: &str,
        items: &[(String, Map<String, Value>)],
    ) -> Result<Vec<Result<UpsertResult, DataverseError>>, DataverseError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        if items.len() > MAX_BATCH_ITEMS {
            return Err(DataverseError::InvalidRequest(format!(
                "{} items exceed the $batch limit of {MAX_BATCH_ITEMS}",
                items.len()
            )));
        }
        let batch = format!("batch_{}", uuid::Uuid::new_v4());
        let mut text = String::new();
        for (n, (key_value, record)) in items.iter().enumerate() {
            let path = Self::key_path(entity_set, key_column, key_value)?;
            let mut body = record.clone();
            body.remove(key_column);
            let json = serde_json::to_string(&body)
                .map_err(|e| DataverseError::InvalidRequest(format!("record: {e}")))?;
            let changeset = format!("changeset_{}", uuid::Uuid::new_v4());
            let _ = write!(
                text,
                "--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n\
                 --{changeset}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\
                 Content-ID: {id}\r\n\r\n\
                 PATCH {api}{path} HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\
                 Prefer: return=representation\r\n\r\n{json}\r\n--{changeset}--\r\n",
                id = n + 1,
                api = self.api,
            );
        }
        let _ = write!(text, "--{batch}--\r\n");
        let prefer = vec![("Prefer", "odata.continue-on-error".to_owned())];
        let (responses, request_id) = self
            .post_batch("batch_upsert", &batch, text, prefer)
            .await?;
        let mut results: Vec<Option<Result<UpsertResult, DataverseError>>> =
            (0..items.len()).map(|_| None).collect();
        for (position, response) in responses.into_iter().enumerate() {
            let index = response
                .content_id
                .as_deref()
                .and_then(|id| id.trim().parse::<usize>().ok())
                .and_then(|id| id.checked_sub(1))
                .unwrap_or(position);
            let Some(slot) = results.get_mut(index) else {
                continue;
            };
            *slot = Some(response.into_result(request_id.clone()));
        }
        let results: Vec<_> = results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(DataverseError::InvalidResponse(
                        "no answer for this item in the $batch".to_owned(),
                        request_id.clone(),
                    ))
                })
            })
            .collect();
        let failed = results.iter().filter(|r| r.is_err()).count();
        tracing::info!(
            event = "dataverse_batch_upserted",
            entity_set,
            items = items.len(),
            failed,
            request_id = request_id.as_deref()
        );
        Ok(results)
    }

    fn note_dop_hint(&self, headers: &HeaderMap) {
        if let Some(hint) = headers
            .get("x-ms-dop-hint")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok())
        {
            self.dop_hint.store(hint, Ordering::Relaxed);
        }
    }

    /// POSTs a multipart `$batch` body (boundary `batch`) and splits the answer into its parts.
    async fn post_batch(
        &self,
        op: &'static str,
        batch: &str,
        text: String,
        headers: Vec<(&'static str, String)>,
    ) -> Result<(Vec<multipart::PartResponse>, Option<String>), DataverseError> {
        let answer = self
            .send(Call {
                op,
                method: Method::POST,
                url: self.url("$batch")?,
                headers,
                body: Some((
                    format!("multipart/mixed; boundary={batch}"),
                    text.into_bytes(),
                )),
            })
            .await?;
        let invalid = |why: String| DataverseError::InvalidResponse(why, answer.request_id.clone());
        let content_type = answer
            .headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let boundary = multipart::boundary(content_type)
            .ok_or_else(|| invalid(format!("$batch answer of type '{content_type}'")))?;
        let responses = multipart::responses(&answer.body, &boundary).map_err(invalid)?;
        Ok((responses, answer.request_id))
    }

    /// Holds every request of this client until `delay` from now (a later pause wins).
    fn pause_all(&self, delay: Duration) {
        let until = tokio::time::Instant::now() + delay;
        let mut paused = self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }

    /// Waits while the client is paused by a 429.
    async fn wait_if_paused(&self) {
        let until = *self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
    }

    /// Sends `call` with the OData headers; the one retry loop: 429/5xx and transport errors retried
    /// up to `backoff.max_retries` (honouring `Retry-After`), 401 renews the token once.
    async fn send(&self, call: Call) -> Result<Answer, DataverseError> {
        let mut renewed = false;
        let mut retry = 0u32;
        let mut token: Option<Secret> = None;
        loop {
            let current = match token.take() {
                Some(token) => token,
                None => match self.auth.access_token().await {
                    Ok(token) => token,
                    Err(err) if err.is_retryable() && retry < self.backoff.max_retries => {
                        tracing::warn!(event = "dataverse_token_failed", error = %err, retry);
                        let delay = self.backoff.delay_with_hint(retry, err.retry_after());
                        tokio::time::sleep(delay).await;
                        retry += 1;
                        continue;
                    }
                    Err(err) => return Err(err),
                },
            };
            self.wait_if_paused().await;
            let client_request_id = uuid::Uuid::new_v4().to_string();
            let mut request = self
                .http
                .request(call.method.clone(), call.url.clone())
                .bearer_auth(current.expose())
                .header("Accept", "application/json")
                .header("OData-MaxVersion", "4.0")
                .header("OData-Version", "4.0")
                .header("client-request-id", &client_request_id);
            for (name, value) in &call.headers {
                request = request.header(*name, value.as_str());
            }
            if let Some((content_type, bytes)) = &call.body {
                request = request
                    .header("Content-Type", content_type.as_str())
                    .body(bytes.clone());
            }
            let sent = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    response.text().await.map(|body| (status, headers, body))
                }
                Err(err) => Err(err),
            };
            let (status, headers, body) = match sent {
                Ok(answer) => answer,
                Err(err) if retry < self.backoff.max_retries => {
                    tracing::warn!(event = "dataverse_request_failed", op = call.op, error = %err, client_request_id, retry);
                    tokio::time::sleep(self.backoff.delay(retry)).await;
                    retry += 1;
                    token = Some(current);
                    continue;
                }
                Err(err) => return Err(DataverseError::Transport(err.to_string())),
            };
            self.note_dop_hint(&headers);
            let request_id = request_id(&headers);
            if status.is_success() {
                tracing::debug!(
                    event = "dataverse_request",
                    op = call.op,
                    status = status.as_u16(),
                    request_id = request_id.as_deref(),
                    retry
                );
                return Ok(Answer {
                    status,
                    headers,
                    body,
                    request_id,
                });
            }
            let retry_after = retry_after(&headers);
            let (code, message) = error_parts(&body);
            tracing::warn!(
                event = "dataverse_request_failed",
                op = call.op,
                status = status.as_u16(),
                code = %code,
                request_id = request_id.as_deref(),
                client_request_id,
                retry_after_ms = retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                retry,
            );
            if status == StatusCode::TOO_MANY_REQUESTS {
                self.pause_all(self.backoff.delay_with_hint(retry, retry_after));
            }
            if status == StatusCode::UNAUTHORIZED && !renewed {
                renewed = true;
                token = Some(self.auth.renew_after_rejection(&current).await?);
                continue;
            }
            if retryable_answer(status.as_u16(), &code) && retry < self.backoff.max_retries {
                tokio::time::sleep(self.backoff.delay_with_hint(retry, retry_after)).await;
                retry += 1;
                token = Some(current);
                continue;
            }
            return Err(DataverseError::from_answer(
                status.as_u16(),
                code,
                message,
                request_id,
                retry_after,
            ));
        }
    }
}

/// Reading `$batch` answers: `multipart/mixed` parts, nested change sets, `application/http` parts.
mod multipart {
    use std::time::SystemTime;

    use super::{DataverseError, UpsertResult, entity_id, error_parts};
    use crate::retry::parse_retry_after;

    /// One inner HTTP answer of a `$batch`.
    #[derive(Debug)]
    pub(super) struct PartResponse {
        pub(super) content_id: Option<String>,
        pub(super) status: u16,
        pub(super) headers: Vec<(String, String)>,
        pub(super) body: String,
    }

    impl PartResponse {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        /// The upsert outcome this answer describes.
        pub(super) fn into_result(
            self,
            batch_request_id: Option<String>,
        ) -> Result<UpsertResult, DataverseError> {
            let request_id = self
                .header("request-id")
                .map(str::to_owned)
                .or(batch_request_id);
            if (200..300).contains(&self.status) {
                let id = self
                    .header("OData-EntityId")
                    .and_then(entity_id)
                    .ok_or_else(|| {
                        DataverseError::InvalidResponse(
                            "$batch part without an OData-EntityId".to_owned(),
                            request_id,
                        )
                    })?;
                return Ok(UpsertResult {
                    id,
                    created: self.status == 201,
                });
            }
            let retry_after = self
                .header("Retry-After")
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let (code, message) = error_parts(&self.body);
            Err(DataverseError::from_answer(
                self.status,
                code,
                message,
                request_id,
                retry_after,
            ))
        }
    }

    /// The boundary of a `multipart/mixed` content type.
    pub(super) fn boundary(content_type: &str) -> Option<String> {
        let mut params = content_type.split(';');
        if !params
            .next()?
            .trim()
            .eq_ignore_ascii_case("multipart/mixed")
        {
            return None;
        }
        params
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
            .map(|(_, v)| v.trim().trim_matches('"').to_owned())
            .filter(|b| !b.is_empty())
    }

    /// The parts between `--boundary` delimiters (text with `\n` line ends).
    fn split(text: &str, boundary: &str) -> Result<Vec<String>, String> {
        let open = format!("--{boundary}");
        let close = format!("--{boundary}--");
        let mut parts = Vec::new();
        let mut current: Option<Vec<&str>> = None;
        for line in text.lines() {
            let trimmed = line.trim_end();
            if trimmed == close || trimmed == open {
                if let Some(lines) = current.take() {
                    parts.push(lines.join("\n"));
                }
                if trimmed == close {
                    return Ok(parts);
                }
                current = Some(Vec::new());
            } else if let Some(lines) = current.as_mut() {
                lines.push(line);
            }
        }
        Err(format!("the closing delimiter '{close}' is missing"))
    }

    /// Header lines up to the first blank line, and the rest.
    fn head(text: &str) -> (Vec<(String, String)>, &str) {
        let (head, rest) = text.split_once("\n\n").unwrap_or((text, ""));
        let headers = head
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        (headers, rest)
    }

    fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn response(part: &str) -> Result<PartResponse, String> {
        let (part_headers, content) = head(part.trim_start_matches('\n'));
        let content = content.trim_start_matches('\n');
        let (status_line, rest) = content.split_once('\n').unwrap_or((content, ""));
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| format!("malformed status line '{status_line}'"))?;
        let (headers, body) = if rest.starts_with('\n') {
            (Vec::new(), rest)
        } else {
            head(rest)
        };
        Ok(PartResponse {
            content_id: find(&part_headers, "Content-ID")
                .or_else(|| find(&headers, "Content-ID"))
                .map(str::to_owned),
            status,
            headers,
            body: body.trim().to_owned(),
        })
    }

    /// Every inner answer of a `$batch` answer, change sets flattened, in order.
    pub(super) fn responses(text: &str, boundary: &str) -> Result<Vec<PartResponse>, String> {
        let text = text.replace("\r\n", "\n");
        let mut out = Vec::new();
        for part in split(&text, boundary)? {
            let (headers, content) = head(part.trim_start_matches('\n'));
            match find(&headers, "Content-Type").and_then(boundary_of) {
                Some(inner) => {
                    for inner_part in split(content, &inner)? {
                        out.push(response(&inner_part)?);
                    }
                }
                None => out.push(response(&part)?),
            }
        }
        Ok(out)
    }

    fn boundary_of(content_type: &str) -> Option<String> {
        boundary(content_type)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn when_key_has_quotes_and_spaces_should_double_and_encode() {
        assert_eq!(odata_string_literal("contoso.com"), "'contoso.com'");
        assert_eq!(odata_string_literal("o'brien.com"), "'o%27%27brien.com'");
        assert_eq!(odata_string_literal("a b/c"), "'a%20b%2Fc'");
    }

    #[test]
    fn when_names_are_derived_should_follow_dataverse() {
        assert_eq!(primary_key("leads"), "leadid");
        assert_eq!(primary_key("opportunities"), "opportunityid");
        assert_eq!(primary_key("accounts"), "accountid");
        assert_eq!(website_host("HTTPS://www.Contoso.com:443/x"), "contoso.com");
        assert_eq!(
            entity_id("https://o/api/data/v9.2/leads(0000000A-0000-0000-0000-000000000001)")
                .as_deref(),
            Some("0000000a-0000-0000-0000-000000000001")
        );
        assert_eq!(entity_id("https://o/leads(nope)"), None);
        assert!(check_identifier("set", "leads(x)").is_err());
    }

    #[test]
    fn when_batch_answer_is_read_should_flatten_change_sets() {
        let body = "--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_a\r\n\r\n--changesetresponse_a\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\nHTTP/1.1 201 Created\r\nOData-EntityId: http://x/api/data/v9.2/leads(00000000-0000-0000-0000-000000000001)\r\nOData-Version: 4.0\r\n\r\n\r\n--changesetresponse_a--\r\n--batchresponse_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 2\r\n\r\nHTTP/1.1 400 Bad Request\r\nOData-Version: 4.0\r\nContent-Type: application/json\r\n\r\n{\"error\":{\"code\":\"0x80044331\",\"message\":\"too long\"}}\r\n--batchresponse_1--\r\n";
        let parts = multipart::responses(body, "batchresponse_1").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].content_id.as_deref(), Some("1"));
        assert_eq!(parts[1].status, 400);
        let mut parts = parts.into_iter();
        let ok = parts.next().unwrap().into_result(None).unwrap();
        assert!(ok.created);
        let err = parts.next().unwrap().into_result(None).unwrap_err();
        assert_eq!(err.code(), Some("0x80044331"));
        assert!(multipart::responses("--b\r\n", "b").is_err());
    }
}
