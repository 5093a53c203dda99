//! Change tracking (`Prefer: odata.track-changes`): every create, update and delete of a record is
//! logged with the version it gave; a tracked list answers, on its last page, an
//! `@odata.deltaLink` whose `$deltatoken` is a position in that log (`{version}!{set}`), and a GET
//! of the deltaLink answers each record of the set changed since then once (latest state),
//! deletions as `$deletedEntity` entries, and a new deltaLink. Tokens are positions: following
//! one again answers the same changes (and any later ones).
//!
//! Seller edits for tests: [`DataverseSim::seller_update`], [`DataverseSim::delete_record`],
//! `PATCH /_sim/records/{set}/{key}`; [`DataverseSim::expire_delta_tokens`] makes every issued
//! token answer 400 [`CODE_INVALID_DELTA_TOKEN`].

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::address::query_pairs;
use super::api::{ApiRequest, DvError, SimBody, SimResponse, prefers};
use super::query::{parse_select, project, query};
use super::state::Inner;
use super::{
    API_PREFIX, CODE_BAD_SEGMENT, CODE_INVALID_DELTA_TOKEN, CODE_NOT_FOUND, DataverseSim, entity,
};

/// The `Prefer` preference that asks for a deltaLink.
const TRACK_CHANGES: &str = "odata.track-changes";

/// One change of a record: the version it got, or its deletion.
#[derive(Debug, Clone)]
struct Change {
    set: String,
    id: String,
    version: u64,
    deleted: bool,
}

/// Every change of every record, in version order; tokens before `floor` have expired.
#[derive(Debug, Default)]
pub(super) struct ChangeLog {
    entries: Vec<Change>,
    floor: u64,
}

impl ChangeLog {
    /// Logs that record `id` of `set` got `version` (or was deleted at it).
    pub(super) fn record(&mut self, set: &str, id: &str, version: u64, deleted: bool) {
        self.entries.push(Change {
            set: set.to_owned(),
            id: id.to_owned(),
            version,
            deleted,
        });
    }

    /// How many changes are logged (a rollback point).
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Forgets the changes after the first `len` (a rolled-back change set).
    pub(super) fn truncate(&mut self, len: usize) {
        self.entries.truncate(len);
    }

    /// Makes tokens of versions before `version` expired.
    pub(super) fn expire_before(&mut self, version: u64) {
        self.floor = version;
    }

    /// The latest change of each record of `set` changed after version `after`, oldest first.
    fn since(&self, set: &str, after: u64) -> Vec<&Change> {
        let start = self.entries.partition_point(|c| c.version <= after);
        let mut latest: BTreeMap<&str, &Change> = BTreeMap::new();
        for change in self.entries[start..].iter().filter(|c| c.set == set) {
            latest.insert(&change.id, change);
        }
        let mut changes: Vec<&Change> = latest.into_values().collect();
        changes.sort_by_key(|c| c.version);
        changes
    }
}

/// `GET {set}`: a delta read when `$deltatoken` is given, a tracked list under
/// `Prefer: odata.track-changes`, else a plain query.
pub(super) fn list(
    inner: &Inner,
    set: &str,
    pk: &str,
    request: &ApiRequest,
    base: &str,
) -> Result<SimResponse, DvError> {
    let pairs = query_pairs(request.query.as_deref());
    if let Some((_, token)) = pairs.iter().find(|(k, _)| k == "$deltatoken") {
        check_options(&pairs, &["$select", "$deltatoken"])?;
        let mut response = delta(inner, set, pk, &pairs, token, base)?;
        if prefers(&request.headers, TRACK_CHANGES) {
            apply_track_changes(&mut response.headers);
        }
        return Ok(response);
    }
    if prefers(&request.headers, TRACK_CHANGES) {
        check_options(&pairs, &["$select", "$skiptoken"])?;
        return tracked(inner, set, pk, request, &pairs, base);
    }
    query(inner, set, pk, request, base)
}

/// Query options other than `allowed` are refused with change tracking.
fn check_options(pairs: &[(String, String)], allowed: &[&str]) -> Result<(), DvError> {
    match pairs
        .iter()
        .find(|(k, _)| k.starts_with('$') && !allowed.contains(&k.as_str()))
    {
        Some((key, _)) => Err(DvError::bad_request(
            CODE_BAD_SEGMENT,
            format!("The query option {key} is not supported with change tracking."),
        )),
        None => Ok(()),
    }
}

fn select_of(pairs: &[(String, String)]) -> Result<Option<Vec<String>>, DvError> {
    pairs
        .iter()
        .find(|(k, _)| k == "$select")
        .map(|(_, v)| parse_select(v))
        .transpose()
}

/// A tracked list: the query's page; the last page carries the deltaLink of the version the
/// first page was read at (kept in the nextLinks' `$skiptoken` after `!`).
fn tracked(
    inner: &Inner,
    set: &str,
    pk: &str,
    request: &ApiRequest,
    pairs: &[(String, String)],
    base: &str,
) -> Result<SimResponse, DvError> {
    let start = match pairs.iter().find(|(k, _)| k == "$skiptoken") {
        Some((_, skiptoken)) => tracked_start(skiptoken)?,
        None => inner.current_version(),
    };
    let select = select_of(pairs)?;
    let mut response = query(inner, set, pk, request, base)?;
    if let SimBody::Json(body) = &mut response.body {
        match body.get("@odata.nextLink").and_then(Value::as_str) {
            Some(next) => body["@odata.nextLink"] = json!(format!("{next}%21{start}")),
            None => {
                body["@odata.deltaLink"] = json!(delta_link(base, set, select.as_deref(), start));
            }
        }
    }
    apply_track_changes(&mut response.headers);
    Ok(response)
}

/// The version a tracked list started at, from a `$skiptoken` of `{skip}!{version}`.
fn tracked_start(skiptoken: &str) -> Result<u64, DvError> {
    skiptoken
        .split_once('!')
        .and_then(|(_, version)| version.parse().ok())
        .ok_or_else(|| DvError::bad_request(CODE_BAD_SEGMENT, "The $skiptoken is not valid."))
}

/// Adds `odata.track-changes` to `Preference-Applied` (next to `odata.maxpagesize=N` if there).
fn apply_track_changes(headers: &mut Vec<(String, String)>) {
    match headers
        .iter_mut()
        .find(|(k, _)| k.eq_ignore_ascii_case("Preference-Applied"))
    {
        Some((_, value)) => *value = format!("{TRACK_CHANGES}, {value}"),
        None => headers.push(("Preference-Applied".to_owned(), TRACK_CHANGES.to_owned())),
    }
}

/// `{base}/api/data/v9.2/{set}?$select=..&$deltatoken={version}%21{set}`.
fn delta_link(base: &str, set: &str, select: Option<&[String]>, version: u64) -> String {
    let token: String =
        url::form_urlencoded::byte_serialize(format!("{version}!{set}").as_bytes()).collect();
    let select = select
        .map(|names| format!("$select={}&", names.join(",")))
        .unwrap_or_default();
    format!("{base}{API_PREFIX}{set}?{select}$deltatoken={token}")
}

/// The version a `$deltatoken` of `set` stands for.
fn parse_token(inner: &Inner, set: &str, token: &str) -> Result<u64, DvError> {
    let version = token
        .split_once('!')
        .filter(|(_, token_set)| *token_set == set)
        .and_then(|(version, _)| version.parse::<u64>().ok())
        .filter(|version| *version <= inner.current_version())
        .ok_or_else(|| {
            invalid_token(format!(
                "The delta token '{token}' is not valid for the entity set '{set}'."
            ))
        })?;
    if version < inner.changes.floor {
        return Err(invalid_token(
            "Version stamp associated with the client has expired. Please perform a full sync.",
        ));
    }
    Ok(version)
}

fn invalid_token(message: impl Into<String>) -> DvError {
    DvError::bad_request(CODE_INVALID_DELTA_TOKEN, message)
}

/// The records of `set` changed since the token, deletions as `$deletedEntity`, a new deltaLink.
fn delta(
    inner: &Inner,
    set: &str,
    pk: &str,
    pairs: &[(String, String)],
    token: &str,
    base: &str,
) -> Result<SimResponse, DvError> {
    let after = parse_token(inner, set, token)?;
    let select = select_of(pairs)?;
    let rows = inner.store.get(set).map(Vec::as_slice).unwrap_or_default();
    let value: Vec<Value> = inner
        .changes
        .since(set, after)
        .into_iter()
        .filter_map(|change| {
            if change.deleted {
                return Some(deleted_entity(base, set, &change.id));
            }
            rows.iter()
                .find(|r| r.id == change.id)
                .map(|r| project(&r.representation(pk), select.as_deref(), pk))
        })
        .collect();
    let context = match &select {
        Some(names) => format!(
            "{base}{API_PREFIX}$metadata#{set}({})/$delta",
            names.join(",")
        ),
        None => format!("{base}{API_PREFIX}$metadata#{set}/$delta"),
    };
    let link = delta_link(base, set, select.as_deref(), inner.current_version());
    Ok(SimResponse {
        status: StatusCode::OK,
        headers: Vec::new(),
        body: SimBody::Json(json!({
            "@odata.context": context,
            "@odata.deltaLink": link,
            "value": value,
        })),
    })
}

fn deleted_entity(base: &str, set: &str, id: &str) -> Value {
    json!({
        "@odata.context": format!("{base}{API_PREFIX}$metadata#{set}/$deletedEntity"),
        "id": id,
        "reason": "deleted",
    })
}

/// A seller's edit as stored: `nav@odata.bind` (`/systemusers(<guid>)`) becomes `_nav_value`,
/// other annotations and the primary key are dropped.
fn seller_fields(set: &str, changes: Map<String, Value>) -> Map<String, Value> {
    let pk = entity(set).map_or("", |(pk, _)| pk);
    changes
        .into_iter()
        .filter_map(|(name, value)| match name.strip_suffix("@odata.bind") {
            Some(nav) => Some((format!("_{nav}_value"), bound_id(value))),
            None if name.contains('@') || name == pk => None,
            None => Some((name, value)),
        })
        .collect()
}

/// The id inside the parentheses of a reference like `/systemusers(<guid>)`.
fn bound_id(reference: Value) -> Value {
    let Value::String(text) = &reference else {
        return reference;
    };
    text.rsplit_once('(')
        .and_then(|(_, inside)| inside.strip_suffix(')'))
        .map_or(reference.clone(), |id| json!(id.to_lowercase()))
}

impl DataverseSim {
    /// Applies a seller's edit (a JSON object of columns, e.g. `statecode`, `statuscode`,
    /// `ownerid@odata.bind`, `description`) to the record of `set` whose `key_column` equals
    /// `key` (case-insensitively), with a new `versionnumber` and `modifiedon`, as change tracking
    /// sees it. Returns the record id; `None` when there is no such record or `changes` is not an
    /// object.
    pub fn seller_update(
        &self,
        set: &str,
        key_column: &str,
        key: &str,
        changes: Value,
    ) -> Option<String> {
        let Value::Object(changes) = changes else {
            return None;
        };
        let mut inner = self.lock();
        let index = inner.store.get(set)?.iter().position(|r| {
            r.key_value(key_column)
                .is_some_and(|v| v.eq_ignore_ascii_case(key))
        })?;
        let record = inner.update(set, index, seller_fields(set, changes))?;
        tracing::info!(event = "dataverse_sim_seller_updated", set = %set, id = %record.id);
        Some(record.id)
    }

    /// Deletes record `id` of `set` as a seller would; `false` when there is no such record.
    pub fn delete_record(&self, set: &str, id: &str) -> bool {
        let id = id.to_lowercase();
        let mut inner = self.lock();
        let Some(index) = inner
            .store
            .get(set)
            .and_then(|rows| rows.iter().position(|r| r.id == id))
        else {
            return false;
        };
        let deleted = inner.remove(set, index).is_some();
        tracing::info!(event = "dataverse_sim_seller_deleted", set = %set, id = %id);
        deleted
    }

    /// Expires every delta token issued so far: following one answers 400
    /// [`CODE_INVALID_DELTA_TOKEN`] (the client must read the full list again).
    pub fn expire_delta_tokens(&self) {
        self.lock().expire_delta_tokens();
    }
}

/// `PATCH /_sim/records/{set}/{key}`: [`DataverseSim::seller_update`] by the set's alternate key
/// column; answers `{"id": "<guid>"}`, 404 when no record has that key.
pub(super) async fn control_seller_update(
    State(sim): State<DataverseSim>,
    Path((set, key)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let changes = match serde_json::from_slice::<Value>(&body) {
        Ok(changes @ Value::Object(_)) if entity(&set).is_some() => changes,
        _ => {
            return DvError::bad_request("", "A JSON object for a known entity set is expected.")
                .into_response();
        }
    };
    let column = sim.lock().key_column_of(&set).to_owned();
    match sim.seller_update(&set, &column, &key, changes) {
        Some(id) => Json(json!({"id": id})).into_response(),
        None => DvError::new(
            StatusCode::NOT_FOUND,
            CODE_NOT_FOUND,
            format!("No record of '{set}' has {column} '{key}'."),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(log: &ChangeLog, set: &str, after: u64) -> Vec<(String, u64, bool)> {
        log.since(set, after)
            .into_iter()
            .map(|c| (c.id.clone(), c.version, c.deleted))
            .collect()
    }

    #[test]
    fn when_changes_are_read_should_answer_latest_per_record_and_forget_rolled_back() {
        let mut log = ChangeLog::default();
        log.record("leads", "a", 1, false);
        log.record("leads", "b", 2, false);
        log.record("accounts", "c", 3, false);
        log.record("leads", "a", 4, false);
        let rollback = log.len();
        log.record("leads", "b", 5, true);
        assert_eq!(
            versions(&log, "leads", 1),
            vec![("a".into(), 4, false), ("b".into(), 5, true)]
        );
        log.truncate(rollback);
        assert_eq!(
            versions(&log, "leads", 1),
            vec![("b".into(), 2, false), ("a".into(), 4, false)]
        );
        assert!(versions(&log, "leads", 4).is_empty());
    }

    #[test]
    fn when_seller_fields_bind_an_owner_should_store_the_lookup() {
        let fields = seller_fields(
            "leads",
            json!({"ownerid@odata.bind": "/systemusers(0000000A-0000-0000-0000-0000000000AA)",
                   "leadid": "x", "x@OData.Community.Display.V1.FormattedValue": "y", "statecode": 1})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        );
        assert_eq!(
            Value::Object(fields),
            json!({"_ownerid_value": "0000000a-0000-0000-0000-0000000000aa", "statecode": 1})
        );
    }
}
