//! What sellers changed in Dataverse, read with change tracking: a tracked list of leads and
//! of opportunities (`Prefer: odata.track-changes`) the first time, then their `@odata.deltaLink`s,
//! which the next pull follows to read only what changed since. The two delta links are the
//! pull's cursor.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hunter_domain::crm::outcome::{lead_status, lead_status_reason, opportunity_status};
use hunter_domain::crm::{CrmChange, DynamicsMapping};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use url::Url;

use super::client::DataverseClient;
use super::error::DataverseError;
use crate::http::Call;
use crate::ports::{CrmChangeSource, CrmChanges, CrmPullError};

/// Dataverse's error code of an expired or unknown `$deltatoken`.
pub const CODE_INVALID_DELTA_TOKEN: &str = "0x80044352";
/// The display names of lookups (the owner's name) come as this annotation.
const FORMATTED_VALUE: &str = "@OData.Community.Display.V1.FormattedValue";
/// Preferences of every tracked read (500 records a page, owners' names).
const PREFER: &str = "odata.track-changes,odata.maxpagesize=500,odata.include-annotations=\"OData.Community.Display.V1.FormattedValue\"";

/// One page of a tracked read: the records changed (latest state), the ids deleted, and the
/// link to the next page or, on the last page, the delta link of the next read.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangePage {
    pub rows: Vec<Map<String, Value>>,
    pub deleted: Vec<String>,
    pub next: ChangeLink,
}

/// Where a tracked read goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeLink {
    /// More pages of this read.
    NextPage(String),
    /// The read is complete; follow this next time for what changes from now on.
    Delta(String),
}

impl DataverseClient {
    /// One page of a tracked read of `entity_set`: the first page of the full list (`link`
    /// `None`), or the page a nextLink or deltaLink names. Links must point into this client's
    /// API (they carry the bearer token). An expired delta link is
    /// [`DataverseError::Validation`] with [`CODE_INVALID_DELTA_TOKEN`].
    pub async fn read_changes(
        &self,
        entity_set: &str,
        select: &[&str],
        link: Option<&str>,
    ) -> Result<ChangePage, DataverseError> {
        let url = match link {
            Some(link) => self.api_link(link)?,
            None => {
                let mut url = self.url(entity_set)?;
                url.query_pairs_mut()
                    .append_pair("$select", &select.join(","));
                url
            }
        };
        let answer = self
            .send(Call::new("read_changes", Method::GET, url).header("Prefer", PREFER))
            .await?;
        let invalid = |message: String| DataverseError::InvalidResponse {
            service: super::client::NAMES.display,
            message,
            request_id: answer.request_id.clone(),
        };
        let body: Value =
            serde_json::from_str(&answer.body).map_err(|e| invalid(format!("changes: {e}")))?;
        let Some(values) = body["value"].as_array() else {
            return Err(invalid("change answer without a `value` array".to_owned()));
        };
        let mut rows = Vec::new();
        let mut deleted = Vec::new();
        for value in values {
            let Value::Object(row) = value else {
                return Err(invalid(format!(
                    "change answer with a non-object row: {value}"
                )));
            };
            let is_deletion = row
                .get("@odata.context")
                .and_then(Value::as_str)
                .is_some_and(|c| c.ends_with("$deletedEntity"));
            match is_deletion {
                true => deleted.extend(row.get("id").and_then(Value::as_str).map(str::to_owned)),
                false => rows.push(row.clone()),
            }
        }
        let link = |name: &str| body[name].as_str().map(str::to_owned);
        let next = match (link("@odata.nextLink"), link("@odata.deltaLink")) {
            (Some(next), _) => ChangeLink::NextPage(next),
            (None, Some(delta)) => ChangeLink::Delta(delta),
            (None, None) => {
                return Err(invalid(
                    "tracked read answered neither a nextLink nor a deltaLink".to_owned(),
                ));
            }
        };
        Ok(ChangePage {
            rows,
            deleted,
            next,
        })
    }

    /// The columns `select` of record `id` of `entity_set`; `None` when there is no such record.
    pub async fn get_record(
        &self,
        entity_set: &str,
        id: &str,
        select: &[&str],
    ) -> Result<Option<Map<String, Value>>, DataverseError> {
        let id = uuid::Uuid::parse_str(id).map_err(|_| DataverseError::InvalidRequest {
            service: super::client::NAMES.display,
            message: format!("'{id}' is not a GUID"),
        })?;
        let mut url = self.url(&format!("{entity_set}({id})"))?;
        url.query_pairs_mut()
            .append_pair("$select", &select.join(","));
        match self.send(Call::new("get_record", Method::GET, url)).await {
            Ok(answer) => serde_json::from_str(&answer.body).map(Some).map_err(|e| {
                DataverseError::InvalidResponse {
                    service: super::client::NAMES.display,
                    message: format!("record: {e}"),
                    request_id: answer.request_id,
                }
            }),
            Err(DataverseError::Http { status: 404, .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// `link` if it points into this client's API (same scheme, host, port and path prefix).
    fn api_link(&self, link: &str) -> Result<Url, DataverseError> {
        let url = Url::parse(link).ok().filter(|url| {
            let api = self.api();
            url.scheme() == api.scheme()
                && url.username().is_empty()
                && url.password().is_none()
                && url.host_str() == api.host_str()
                && url.port_or_known_default() == api.port_or_known_default()
                && url.path().starts_with(api.path())
        });
        url.ok_or_else(|| DataverseError::InvalidRequest {
            service: super::client::NAMES.display,
            message: format!("link {link:?} is not under the organization's API"),
        })
    }
}

/// The cursor of a pull: the delta link of each tracked read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cursor {
    leads: Option<String>,
    opportunities: Option<String>,
}

/// [`CrmChangeSource`] in Dataverse: lead changes (status, status reason, owner, the opportunity
/// a lead was qualified into) and opportunity changes (their state), per lead of Hunter's key.
#[derive(Debug)]
pub struct DataverseChangeReader {
    client: Arc<DataverseClient>,
    entity_set: String,
    key_column: String,
}

/// Reads all pages from `link` (`None`: the full list); answers the rows, the deleted ids and
/// the delta link of the next read.
async fn read_all(
    client: &DataverseClient,
    entity_set: &str,
    select: &[&str],
    link: Option<String>,
) -> Result<(Vec<Map<String, Value>>, Vec<String>, String), DataverseError> {
    let mut rows = Vec::new();
    let mut deleted = Vec::new();
    let mut link = link;
    loop {
        let page = client
            .read_changes(entity_set, select, link.as_deref())
            .await?;
        rows.extend(page.rows);
        deleted.extend(page.deleted);
        match page.next {
            ChangeLink::NextPage(next) => link = Some(next),
            ChangeLink::Delta(delta) => return Ok((rows, deleted, delta)),
        }
    }
}

fn text(row: &Map<String, Value>, column: &str) -> Option<String> {
    row.get(column)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn modified_on(row: &Map<String, Value>) -> Option<DateTime<Utc>> {
    row.get("modifiedon")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

impl DataverseChangeReader {
    pub fn new(client: Arc<DataverseClient>, mapping: &DynamicsMapping) -> Self {
        Self {
            client,
            entity_set: mapping.entity_set().to_owned(),
            key_column: mapping.key_column().to_owned(),
        }
    }

    /// A lead row as a change of the lead it is keyed for (`None`: not one of Hunter's).
    fn lead_change(&self, row: &Map<String, Value>) -> Option<CrmChange> {
        let key = text(row, &self.key_column)?;
        let state = row.get("statecode").and_then(Value::as_i64);
        let reason = row.get("statuscode").and_then(Value::as_i64);
        Some(CrmChange {
            key,
            record_id: text(row, &super::odata::primary_key(&self.entity_set)),
            status: state.map(|s| (lead_status(s), reason.map(lead_status_reason))),
            owner: text(row, "_ownerid_value").map(|id| {
                let name = text(row, &format!("_ownerid_value{FORMATTED_VALUE}"));
                (id, name)
            }),
            qualifying_opportunity: text(row, "_qualifyingopportunityid_value"),
            opportunity_statuses: Vec::new(),
            updated_at: modified_on(row),
        })
    }

    /// The lead key of record `lead_id` (`None`: not one of Hunter's, or gone): from this pull's
    /// lead rows or an earlier answer, else read from Dataverse once and remembered.
    async fn key_of_lead(
        &self,
        lead_id: &str,
        known: &mut HashMap<String, Option<String>>,
    ) -> Result<Option<String>, DataverseError> {
        if let Some(key) = known.get(lead_id) {
            return Ok(key.clone());
        }
        if uuid::Uuid::parse_str(lead_id).is_err() {
            // Not a record id (outside the contract): no lead of Hunter's.
            return Ok(None);
        }
        let record = self
            .client
            .get_record(&self.entity_set, lead_id, &[&self.key_column])
            .await?;
        let key = record.and_then(|r| text(&r, &self.key_column));
        known.insert(lead_id.to_owned(), key.clone());
        Ok(key)
    }
}

/// A Dataverse error as the pull port says it.
fn pull_error(err: DataverseError) -> CrmPullError {
    match &err {
        DataverseError::Validation { code, .. } if code == CODE_INVALID_DELTA_TOKEN => {
            CrmPullError::CursorExpired(err.to_string())
        }
        // A stored link outside the organization's API (an org URL changed): start over.
        DataverseError::InvalidRequest { .. } => CrmPullError::CursorExpired(err.to_string()),
        _ if err.is_retryable() => CrmPullError::Unavailable(err.to_string()),
        _ => CrmPullError::Failed(err.to_string()),
    }
}

#[async_trait]
impl CrmChangeSource for DataverseChangeReader {
    async fn changes_since(&self, cursor: Option<&str>) -> Result<CrmChanges, CrmPullError> {
        let cursor: Cursor = match cursor {
            Some(text) => serde_json::from_str(text)
                .map_err(|e| CrmPullError::CursorExpired(format!("unreadable pull cursor: {e}")))?,
            None => Cursor::default(),
        };
        let pk = super::odata::primary_key(&self.entity_set);
        let lead_columns = [
            pk.as_str(),
            self.key_column.as_str(),
            "statecode",
            "statuscode",
            "_ownerid_value",
            "_qualifyingopportunityid_value",
            "modifiedon",
        ];
        let (lead_rows, mut deleted, leads_link) =
            read_all(&self.client, &self.entity_set, &lead_columns, cursor.leads)
                .await
                .map_err(pull_error)?;
        let opportunity_columns = [
            "opportunityid",
            "statecode",
            "_originatingleadid_value",
            "modifiedon",
        ];
        let (opportunity_rows, deleted_opportunities, opportunities_link) = read_all(
            &self.client,
            "opportunities",
            &opportunity_columns,
            cursor.opportunities,
        )
        .await
        .map_err(pull_error)?;
        deleted.extend(deleted_opportunities);

        let mut by_key: BTreeMap<String, CrmChange> = BTreeMap::new();
        let mut known_leads: HashMap<String, Option<String>> = HashMap::new();
        let mut not_hunters = 0;
        for row in &lead_rows {
            let change = self.lead_change(row);
            if let Some(id) = text(row, &pk) {
                known_leads.insert(id.to_lowercase(), change.as_ref().map(|c| c.key.clone()));
            }
            match change {
                Some(change) => {
                    by_key.insert(change.key.clone(), change);
                }
                None => not_hunters += 1,
            }
        }
        for row in &opportunity_rows {
            let (Some(id), Some(lead_id), Some(statecode)) = (
                text(row, "opportunityid"),
                text(row, "_originatingleadid_value"),
                row.get("statecode").and_then(Value::as_i64),
            ) else {
                // Not converted from a lead (e.g. the opportunity of an accepted referral).
                not_hunters += 1;
                continue;
            };
            let Some(key) = self
                .key_of_lead(&lead_id.to_lowercase(), &mut known_leads)
                .await
                .map_err(pull_error)?
            else {
                not_hunters += 1;
                continue;
            };
            let change = by_key.entry(key.clone()).or_insert_with(|| CrmChange {
                key,
                ..CrmChange::default()
            });
            change
                .opportunity_statuses
                .push((id, opportunity_status(statecode)));
            change.updated_at = change.updated_at.max(modified_on(row));
        }
        let cursor = serde_json::to_string(&Cursor {
            leads: Some(leads_link),
            opportunities: Some(opportunities_link),
        })
        .map_err(|e| CrmPullError::Failed(e.to_string()))?;
        Ok(CrmChanges {
            changes: by_key.into_values().collect(),
            not_hunters,
            deleted,
            cursor,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dynamics::DataverseAuth;
    use crate::http::TokenEndpoint;
    use crate::retry::Backoff;
    use crate::secret::Secret;

    fn client() -> DataverseClient {
        let org = "https://org.crm.dynamics.com";
        let endpoint = TokenEndpoint::new(
            reqwest::Client::new(),
            "https://login.example/token",
            "id",
            Secret::new("secret"),
        );
        DataverseClient::new(
            reqwest::Client::new(),
            org,
            DataverseAuth::new(endpoint, org),
            Backoff::default(),
        )
        .unwrap()
    }

    #[test]
    fn when_a_link_leaves_the_organizations_api_it_should_be_refused_before_any_request() {
        let client = client();
        let inside = "https://org.crm.dynamics.com/api/data/v9.2/leads?$deltatoken=1%21leads";
        assert_eq!(client.api_link(inside).unwrap().as_str(), inside);
        for outside in [
            "https://evil.example/api/data/v9.2/leads?$deltatoken=1",
            "http://org.crm.dynamics.com/api/data/v9.2/leads",
            "https://org.crm.dynamics.com:8443/api/data/v9.2/leads",
            "https://org.crm.dynamics.com/other/leads",
            "https://org.crm.dynamics.com/api/data/v9.2/../../steal",
            "https://user:pw@org.crm.dynamics.com/api/data/v9.2/leads",
            "https://org.crm.dynamics.com.evil.example/api/data/v9.2/leads",
            "/api/data/v9.2/leads",
            "not a url",
        ] {
            let refused = client.api_link(outside);
            assert!(
                matches!(refused, Err(DataverseError::InvalidRequest { .. })),
                "{outside}: {refused:?}"
            );
            // The pull starts over instead of failing on a link it will never follow.
            assert!(matches!(
                pull_error(refused.unwrap_err()),
                CrmPullError::CursorExpired(_)
            ));
        }
    }

    #[test]
    fn when_a_delta_token_expired_the_pull_should_start_over() {
        let expired = DataverseError::Validation {
            service: "Dataverse",
            code: CODE_INVALID_DELTA_TOKEN.to_owned(),
            message: "Version stamp associated with the client has expired.".to_owned(),
            request_id: None,
        };
        assert!(matches!(
            pull_error(expired),
            CrmPullError::CursorExpired(_)
        ));
        let other = DataverseError::Validation {
            service: "Dataverse",
            code: "0x80060888".to_owned(),
            message: "bad".to_owned(),
            request_id: None,
        };
        assert!(matches!(pull_error(other), CrmPullError::Failed(_)));
    }
}
