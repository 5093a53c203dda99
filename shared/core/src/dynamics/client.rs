//! The Dataverse Web API client: idempotent upserts by alternate key, adoption of records people
//! made by hand, change sets and `$batch` upserts. Tokens, retries and `Retry-After` are the
//! shared plumbing's (`crate::http`); the `$batch` text is [`super::batch`]'s.

use hunter_domain::rules::{Domain, domain_from_url_or_host, email_domain, normalize_domain};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};
use url::Url;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::auth::DataverseAuth;
use super::batch::{self, Entry, Headers, Message, Writer};
use super::error::DataverseError;
use super::odata::{entity_id, is_identifier, odata_string_literal, primary_key};
use super::pacer::{Pacer, PacerSettings};
use crate::http::{Answer, Call, Service, ServiceNames, TokenCache, error_parts};
use crate::retry::Backoff;

/// Dataverse in messages and log events.
pub(super) const NAMES: ServiceNames = ServiceNames {
    display: "Dataverse",
    request_failed: "dataverse_request_failed",
    request: "dataverse_request",
    token_failed: "dataverse_token_failed",
    token_refused: "dataverse_token_refused",
    token_issued: "dataverse_token_issued",
};

/// Headers of every Web API request.
const ODATA_HEADERS: &[(&str, &str)] = &[
    ("Accept", "application/json"),
    ("OData-MaxVersion", "4.0"),
    ("OData-Version", "4.0"),
];
/// Path of the Web API under the organization URL.
const API_PATH: &str = "/api/data/v9.2/";
/// Most requests in one `$batch`.
pub const MAX_BATCH_ITEMS: usize = 1000;
/// Records `find_by_domain` looks at (generous: other domains that contain this one's name match
/// the `contains` filter too and are dropped after).
const FIND_TOP: usize = 50;

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

/// One record of a change set, upserted by its alternate key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedRecord {
    pub entity_set: String,
    pub key_column: String,
    pub key_value: String,
    pub record: Map<String, Value>,
}

/// One application user: its tokens, its retries and its [`Pacer`].
#[derive(Debug)]
struct User {
    /// The app registration's client id (not a secret), for the logs.
    client_id: String,
    service: Service,
    pacer: Pacer,
}

/// The Dataverse Web API client, as one or several application users of the organization.
///
/// Every request is paced below the service-protection limits of the user it is sent as (see
/// [`super::pacer`]); with several users each request goes to the one that can send it soonest,
/// so N users push at about N times the limit. Build it once per process (on Lambda, once per
/// container) and share it: its pacers are then shared by every concurrent task.
#[derive(Debug)]
pub struct DataverseClient {
    api: Url,
    users: Vec<User>,
    /// Round-robin among users that are equally free.
    next: AtomicUsize,
}

fn invalid_request(message: String) -> DataverseError {
    DataverseError::InvalidRequest {
        service: NAMES.display,
        message,
    }
}

fn invalid_response(message: String, request_id: Option<String>) -> DataverseError {
    DataverseError::InvalidResponse {
        service: NAMES.display,
        message,
        request_id,
    }
}

fn check_identifier(what: &str, name: &str) -> Result<(), DataverseError> {
    match is_identifier(name) {
        true => Ok(()),
        false => Err(invalid_request(format!(
            "{what} '{name}' is not an identifier"
        ))),
    }
}

impl DataverseClient {
    /// `org_url` is `https://ORG.crm.dynamics.com` (or a simulator); the API is under
    /// `{org_url}/api/data/v9.2/`.
    /// One application user, paced for Dataverse's default limits.
    pub fn new(
        http: reqwest::Client,
        org_url: &str,
        auth: DataverseAuth,
        backoff: Backoff,
    ) -> Result<Self, DataverseError> {
        Self::with_users(http, org_url, vec![auth], backoff, PacerSettings::default())
    }

    /// Several application users (each its own app registration and token), each with its own
    /// pacer for `limits`.
    pub fn with_users(
        http: reqwest::Client,
        org_url: &str,
        users: Vec<DataverseAuth>,
        backoff: Backoff,
        limits: PacerSettings,
    ) -> Result<Self, DataverseError> {
        let api = Url::parse(&format!("{}{API_PATH}", org_url.trim_end_matches('/')))
            .map_err(|e| invalid_request(format!("org URL {org_url}: {e}")))?;
        if users.is_empty() {
            return Err(invalid_request("no application user".to_owned()));
        }
        let users = users
            .into_iter()
            .map(|auth| {
                let client_id = auth.client_id().to_owned();
                let pacer = Pacer::new(limits);
                let service = Service::new(
                    NAMES,
                    http.clone(),
                    TokenCache::new(auth),
                    backoff,
                    ODATA_HEADERS,
                )
                .with_pacing(Arc::new(pacer.clone()));
                User {
                    client_id,
                    service,
                    pacer,
                }
            })
            .collect();
        Ok(Self {
            api,
            users,
            next: AtomicUsize::new(0),
        })
    }

    /// The latest `x-ms-dop-hint` (recommended degree of parallelism) the server sent, added up
    /// over the users (each has its own concurrency limit).
    pub fn dop_hint(&self) -> Option<u32> {
        self.users
            .iter()
            .filter_map(|u| u.service.dop_hint())
            .reduce(u32::saturating_add)
    }

    /// The client ids of the application users requests are spread over.
    pub fn users(&self) -> Vec<&str> {
        self.users.iter().map(|u| u.client_id.as_str()).collect()
    }

    /// Each user's pacer, with its client id.
    pub fn pacers(&self) -> Vec<(&str, &Pacer)> {
        self.users
            .iter()
            .map(|u| (u.client_id.as_str(), &u.pacer))
            .collect()
    }

    /// The user that can send a request counting `weight` soonest (round-robin among equals).
    fn pick(&self, weight: u32) -> &User {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.users.len();
        (0..count)
            .map(|i| &self.users[(start + i) % count])
            .min_by_key(|u| u.pacer.expected_wait(weight))
            .unwrap_or(&self.users[0])
    }

    /// The API's base URL (`{org}/api/data/v9.2/`).
    pub(super) fn api(&self) -> &Url {
        &self.api
    }

    pub(super) fn url(&self, path: &str) -> Result<Url, DataverseError> {
        Url::parse(&format!("{}{path}", self.api))
            .map_err(|e| invalid_request(format!("{path}: {e}")))
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

    /// `record` without `key_column` (the URL names the key), as JSON.
    fn body_without_key(
        record: &Map<String, Value>,
        key_column: &str,
    ) -> Result<String, DataverseError> {
        let mut body = record.clone();
        body.remove(key_column);
        serde_json::to_string(&body).map_err(|e| invalid_request(format!("record: {e}")))
    }

    pub(super) async fn send(&self, call: Call) -> Result<Answer, DataverseError> {
        let user = self.pick(call.weight);
        tracing::debug!(event = "dataverse_call", op = call.op, user = %user.client_id, weight = call.weight);
        user.service.send(&call, None).await
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
        let mut url = self.url(&Self::key_path(entity_set, key_column, key_value)?)?;
        url.query_pairs_mut().append_pair("$select", key_column);
        let body = Self::body_without_key(record, key_column)?;
        let answer = self
            .send(
                Call::new("upsert", Method::PATCH, url)
                    .header("Prefer", "return=representation")
                    .body("application/json", body.into_bytes()),
            )
            .await?;
        let id = answer
            .headers
            .get("OData-EntityId")
            .and_then(|v| v.to_str().ok())
            .and_then(entity_id)
            .ok_or_else(|| {
                invalid_response(
                    "upsert answer without an OData-EntityId".to_owned(),
                    answer.request_id.clone(),
                )
            })?;
        let created = answer.status == StatusCode::CREATED;
        tracing::info!(event = "dataverse_upserted", entity_set, id = %id, created, request_id = answer.request_id.as_deref());
        Ok(UpsertResult { id, created })
    }

    /// The first record of `entity_set` whose website or e-mail address belongs to the
    /// registrable domain of `domain` (`https://shop.contoso.com`, `ada@mail.contoso.com` for
    /// `contoso.com`): records people made by hand, to adopt instead of duplicating.
    /// `key_column` is read back so callers can tell an unkeyed record from one Hunter owns.
    pub async fn find_by_domain(
        &self,
        entity_set: &str,
        key_column: &str,
        domain: &str,
    ) -> Result<Option<ExistingRecord>, DataverseError> {
        check_identifier("entity set", entity_set)?;
        check_identifier("key column", key_column)?;
        let Ok(domain) = normalize_domain(domain) else {
            return Ok(None);
        };
        let quoted = domain.as_str().replace('\'', "''");
        let pk = primary_key(entity_set);
        let mut url = self.url(entity_set)?;
        url.query_pairs_mut()
            .append_pair(
                "$filter",
                &format!(
                    "contains(websiteurl,'{quoted}') or contains(emailaddress1,'@{quoted}') \
                     or contains(emailaddress1,'.{quoted}')"
                ),
            )
            .append_pair(
                "$select",
                &format!("{pk},websiteurl,emailaddress1,{key_column}"),
            )
            .append_pair("$top", &FIND_TOP.to_string());
        let answer = self
            .send(Call::new("find_by_domain", Method::GET, url))
            .await?;
        let json: Value = serde_json::from_str(&answer.body)
            .map_err(|e| invalid_response(e.to_string(), answer.request_id.clone()))?;
        let Some(rows) = json["value"].as_array() else {
            return Err(invalid_response(
                "query answer without a `value` array".to_owned(),
                answer.request_id,
            ));
        };
        let belongs = |row: &Value| {
            let site = row["websiteurl"]
                .as_str()
                .and_then(|s| domain_from_url_or_host(s).ok());
            let mail = row["emailaddress1"]
                .as_str()
                .and_then(|m| email_domain(m).ok());
            [site, mail].contains(&Some(Domain::clone(&domain)))
        };
        let found = rows.iter().filter(|row| belongs(row)).find_map(|row| {
            Some(ExistingRecord {
                id: row[pk.as_str()].as_str()?.to_owned(),
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
            .map_err(|_| invalid_request(format!("'{id}' is not a GUID")))?;
        let url = self.url(&format!("{entity_set}({id})"))?;
        let body = serde_json::json!({ key_column: key_value }).to_string();
        let answer = self
            .send(
                Call::new("link_key", Method::PATCH, url)
                    .header("If-Match", "*")
                    .body("application/json", body.into_bytes()),
            )
            .await?;
        tracing::info!(event = "dataverse_key_linked", entity_set, id = %id, request_id = answer.request_id.as_deref());
        Ok(())
    }

    /// An upsert of `record` by its key, as a `$batch` part.
    fn upsert_part(
        &self,
        content_id: usize,
        entity_set: &str,
        key_column: &str,
        key_value: &str,
        record: &Map<String, Value>,
        representation: bool,
    ) -> Result<Message, DataverseError> {
        let path = Self::key_path(entity_set, key_column, key_value)?;
        let mut headers = Headers::default();
        headers.push("Content-Type", "application/json; type=entry");
        if representation {
            headers.push("Prefer", "return=representation");
        }
        Ok(Message {
            content_id: Some(content_id.to_string()),
            start_line: format!("PATCH {}{path} HTTP/1.1", self.api),
            headers,
            body: Self::body_without_key(record, key_column)?,
        })
    }

    /// Upserts `items` by their alternate keys in ONE change set (all or nothing). A record may
    /// reference an earlier item with `"nav@odata.bind": "$N"` (N = its 1-based position).
    pub async fn upsert_change_set(
        &self,
        items: &[KeyedRecord],
    ) -> Result<Vec<UpsertResult>, DataverseError> {
        if items.is_empty() || items.len() > MAX_BATCH_ITEMS {
            return Err(invalid_request(format!(
                "a change set of {} items",
                items.len()
            )));
        }
        let parts = items
            .iter()
            .enumerate()
            .map(|(n, item)| {
                self.upsert_part(
                    n + 1,
                    &item.entity_set,
                    &item.key_column,
                    &item.key_value,
                    &item.record,
                    false,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut writer = Writer::new(format!("batch_{}", uuid::Uuid::new_v4()));
        writer.change_set(&format!("changeset_{}", uuid::Uuid::new_v4()), &parts);
        let (answers, request_id) = self
            .post_batch("upsert_change_set", writer, items.len(), false)
            .await?;
        // A failed change set answers with the failing request only.
        let results: Vec<Result<UpsertResult, DataverseError>> = answers
            .into_iter()
            .map(|a| upsert_outcome(a, request_id.clone()))
            .collect();
        if let Some(failure) = results.iter().find_map(|r| r.as_ref().err()) {
            return Err(failure.clone());
        }
        if results.len() != items.len() {
            return Err(invalid_response(
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
            return Err(invalid_request(format!(
                "{} items exceed the $batch limit of {MAX_BATCH_ITEMS}",
                items.len()
            )));
        }
        let mut writer = Writer::new(format!("batch_{}", uuid::Uuid::new_v4()));
        for (n, (key_value, record)) in items.iter().enumerate() {
            let part = self.upsert_part(n + 1, entity_set, key_column, key_value, record, true)?;
            writer.change_set(&format!("changeset_{}", uuid::Uuid::new_v4()), &[part]);
        }
        let (answers, request_id) = self
            .post_batch("batch_upsert", writer, items.len(), true)
            .await?;
        let mut results: Vec<Option<Result<UpsertResult, DataverseError>>> =
            (0..items.len()).map(|_| None).collect();
        for (position, answer) in answers.into_iter().enumerate() {
            let index = answer
                .content_id
                .as_deref()
                .and_then(|id| id.trim().parse::<usize>().ok())
                .and_then(|id| id.checked_sub(1))
                .unwrap_or(position);
            if let Some(slot) = results.get_mut(index) {
                *slot = Some(upsert_outcome(answer, request_id.clone()));
            }
        }
        let results: Vec<_> = results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(invalid_response(
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

    /// POSTs a `$batch` of `requests` requests (Dataverse counts each) and reads its answers,
    /// change sets flattened, in order.
    async fn post_batch(
        &self,
        op: &'static str,
        writer: Writer,
        requests: usize,
        continue_on_error: bool,
    ) -> Result<(Vec<Message>, Option<String>), DataverseError> {
        let (content_type, text) = writer.finish();
        let mut call = Call::new(op, Method::POST, self.url("$batch")?)
            .body(content_type, text.into_bytes())
            .weight(u32::try_from(requests).unwrap_or(u32::MAX));
        if continue_on_error {
            call = call.header("Prefer", "odata.continue-on-error");
        }
        let answer = self.send(call).await?;
        let request_id = answer.request_id;
        let content_type = answer
            .headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let boundary = batch::boundary(content_type).ok_or_else(|| {
            invalid_response(
                format!("$batch answer of type '{content_type}'"),
                request_id.clone(),
            )
        })?;
        let entries = batch::read(&answer.body, &boundary)
            .map_err(|e| invalid_response(e, request_id.clone()))?;
        let answers = entries.into_iter().flat_map(Entry::into_messages).collect();
        Ok((answers, request_id))
    }
}

/// The upsert outcome one `$batch` answer describes.
fn upsert_outcome(
    answer: Message,
    batch_request_id: Option<String>,
) -> Result<UpsertResult, DataverseError> {
    let request_id = answer
        .headers
        .get("request-id")
        .map(str::to_owned)
        .or(batch_request_id);
    let Some(status) = answer.status() else {
        let message = format!("status line '{}'", answer.start_line);
        return Err(invalid_response(message, request_id));
    };
    if (200..300).contains(&status) {
        let id = answer
            .headers
            .get("OData-EntityId")
            .and_then(entity_id)
            .ok_or_else(|| {
                invalid_response(
                    "$batch part without an OData-EntityId".to_owned(),
                    request_id,
                )
            })?;
        return Ok(UpsertResult {
            id,
            created: status == 201,
        });
    }
    let retry_after = answer
        .headers
        .get("Retry-After")
        .and_then(|v| crate::retry::parse_retry_after(v, std::time::SystemTime::now()));
    let (code, message) = error_parts(&answer.body);
    Err(DataverseError::from_answer(
        NAMES.display,
        status,
        code,
        message,
        request_id,
        retry_after,
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn when_batch_answers_are_read_should_say_what_each_upsert_did() {
        let body = "--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_a\r\n\r\n--changesetresponse_a\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\nHTTP/1.1 201 Created\r\nOData-EntityId: http://x/api/data/v9.2/leads(00000000-0000-0000-0000-000000000001)\r\nOData-Version: 4.0\r\n\r\n\r\n--changesetresponse_a--\r\n--batchresponse_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 2\r\n\r\nHTTP/1.1 400 Bad Request\r\nOData-Version: 4.0\r\nContent-Type: application/json\r\n\r\n{\"error\":{\"code\":\"0x80044331\",\"message\":\"too long\"}}\r\n--batchresponse_1--\r\n";
        let answers: Vec<Message> = batch::read(body, "batchresponse_1")
            .unwrap()
            .into_iter()
            .flat_map(Entry::into_messages)
            .collect();
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0].content_id.as_deref(), Some("1"));
        let mut answers = answers.into_iter();
        let ok = upsert_outcome(answers.next().unwrap(), None).unwrap();
        assert!(ok.created);
        let err = upsert_outcome(answers.next().unwrap(), Some("b".into())).unwrap_err();
        assert_eq!(err.code(), Some("0x80044331"));
        assert_eq!(err.request_id(), Some("b"));
    }
}
