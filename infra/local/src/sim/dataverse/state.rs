//! The records store and what the Web API does with it: create, upsert by id or alternate key,
//! get, query (see [`super::query`]), delete, `QualifyLead`; one request at a time, under the
//! simulator's lock.

use hunter_core::secret::Secret;
use std::collections::{BTreeMap, HashMap};

use axum::http::StatusCode;
use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::address::{Address, describe, parse_resource};
use super::api::{ApiRequest, DvError, SimBody, SimResponse, prefers};
use super::change_tracking::{self, ChangeLog};
use super::limits::{Faults, Protection};
use super::query::{project, select_from};
use super::{
    API_PREFIX, CODE_BAD_SEGMENT, CODE_DUPLICATE, CODE_DUPLICATE_KEY, CODE_VALIDATION,
    CODE_VERSION_MISMATCH, DataverseConfig, ENTITY_SETS, entity,
};
use crate::sim::control::Controls;
use crate::sim::http::if_match_names;
use crate::sim::oauth::AccessTokens;

/// A stored row.
#[derive(Debug, Clone)]
pub(super) struct Record {
    pub id: String,
    version: u64,
    created: String,
    modified: String,
    data: Map<String, Value>,
}

impl Record {
    /// The record's value of `column`, when it is a string.
    pub(super) fn key_value(&self, column: &str) -> Option<&str> {
        self.data.get(column).and_then(Value::as_str)
    }

    /// The record as the Web API answers it.
    pub(super) fn representation(&self, pk: &str) -> Value {
        let mut object = Map::new();
        object.insert(
            "@odata.etag".into(),
            json!(format!("W/\"{}\"", self.version)),
        );
        object.insert(pk.into(), json!(self.id));
        for (k, v) in &self.data {
            object.insert(k.clone(), v.clone());
        }
        if let Some(name) = self
            .data
            .get("_ownerid_value")
            .and_then(Value::as_str)
            .and_then(|id| super::SIM_USERS.iter().find(|(user, _)| *user == id))
            .map(|(_, name)| *name)
        {
            object.insert(
                format!("_ownerid_value{}", super::FORMATTED_VALUE),
                json!(name),
            );
        }
        object.insert("createdon".into(), json!(self.created));
        object.insert("modifiedon".into(), json!(self.modified));
        object.insert("versionnumber".into(), json!(self.version));
        Value::Object(object)
    }
}

/// Entity set → its records, in creation order.
pub(super) type Store = BTreeMap<String, Vec<Record>>;

/// The records at one moment, to roll a failed change set back to.
#[derive(Debug)]
pub(super) struct Snapshot {
    store: Store,
    version: u64,
    changes: usize,
}

/// Everything the simulator holds, behind its lock.
#[derive(Debug)]
pub(super) struct Inner {
    key_column: String,
    key_columns: BTreeMap<String, String>,
    column_limits: BTreeMap<String, usize>,
    default_string_limit: usize,
    pub protection: Protection,
    pub controls: Controls<Faults>,
    pub fault_rng: fastrand::Rng,
    pub dop_hint: u32,
    /// The application users the token endpoint accepts: client id → secret.
    pub clients: BTreeMap<String, Secret>,
    /// The client id of [`DataverseConfig::client_id`].
    pub primary_client: String,
    /// Issued access token → the client id it was issued to.
    pub token_clients: HashMap<String, String>,
    pub store: Store,
    version: u64,
    /// Every change of a record, for change tracking.
    pub changes: ChangeLog,
    pub id_rng: fastrand::Rng,
    pub base_url: Option<String>,
}

impl Inner {
    pub(super) fn new(config: DataverseConfig) -> Self {
        let store = ENTITY_SETS
            .iter()
            .map(|(set, _, _)| ((*set).to_owned(), Vec::new()))
            .collect();
        Self {
            key_column: config.key_column,
            key_columns: config.key_columns,
            column_limits: config.column_limits,
            default_string_limit: config.default_string_limit,
            protection: Protection::new(config.limits),
            controls: Controls::new(
                config.faults,
                AccessTokens::new("sim-dv-", config.token_ttl),
            ),
            fault_rng: fastrand::Rng::with_seed(config.rng_seed),
            dop_hint: config.dop_hint,
            clients: std::iter::once((config.client_id.clone(), config.client_secret))
                .chain(config.extra_clients)
                .collect(),
            primary_client: config.client_id,
            token_clients: HashMap::new(),
            store,
            version: 1000,
            changes: ChangeLog::default(),
            id_rng: fastrand::Rng::with_seed(config.rng_seed ^ 0x9e37_79b9_7f4a_7c15),
            base_url: None,
        }
    }

    /// A GUID from the seeded RNG.
    pub(super) fn new_guid(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.id_rng.u128(..).to_le_bytes())
            .into_uuid()
            .to_string()
    }

    /// A new access token of `client` from the seeded RNG.
    pub(super) fn issue_access_token(&mut self, client: &str) -> String {
        let token = self.controls.access_tokens.issue(&mut self.id_rng);
        self.token_clients.insert(token.clone(), client.to_owned());
        token
    }

    fn next_version(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    /// The version of the latest change (the change counter).
    pub(super) fn current_version(&self) -> u64 {
        self.version
    }

    /// Expires every delta token issued so far; tokens issued from now on stay valid.
    pub(super) fn expire_delta_tokens(&mut self) {
        let version = self.next_version();
        self.changes.expire_before(version);
    }

    pub(super) fn key_column_of(&self, set: &str) -> &str {
        self.key_column(set)
    }

    fn key_column(&self, set: &str) -> &str {
        self.key_columns
            .get(set)
            .map_or(self.key_column.as_str(), String::as_str)
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            store: self.store.clone(),
            version: self.version,
            changes: self.changes.len(),
        }
    }

    pub(super) fn restore(&mut self, snapshot: Snapshot) {
        self.store = snapshot.store;
        self.version = snapshot.version;
        self.changes.truncate(snapshot.changes);
    }

    /// Runs one Web API request against the store.
    pub(super) fn execute(
        &mut self,
        request: &ApiRequest,
        base: &str,
        refs: &HashMap<String, String>,
    ) -> SimResponse {
        try_execute(self, request, base, refs).unwrap_or_else(DvError::into_sim)
    }

    /// Stores a new record.
    /// Creates a record owned by the application user; leads and opportunities start Open
    /// (`statecode` 0, `statuscode` 1) unless `data` says otherwise.
    pub(super) fn create(&mut self, set: &str, id: String, mut data: Map<String, Value>) -> Record {
        data.entry("_ownerid_value")
            .or_insert_with(|| json!(super::APPLICATION_USER_ID));
        if matches!(set, "leads" | "opportunities") {
            data.entry("statecode").or_insert_with(|| json!(0));
            data.entry("statuscode").or_insert_with(|| json!(1));
        }
        let version = self.next_version();
        let now = now_text();
        let record = Record {
            id,
            version,
            created: now.clone(),
            modified: now,
            data,
        };
        self.store
            .entry(set.to_owned())
            .or_default()
            .push(record.clone());
        self.changes.record(set, &record.id, version, false);
        record
    }

    /// Merges `data` into the record at `index` of `set`, with a new version and `modifiedon`.
    pub(super) fn update(
        &mut self,
        set: &str,
        index: usize,
        data: Map<String, Value>,
    ) -> Option<Record> {
        let version = self.next_version();
        let record = self.store.get_mut(set)?.get_mut(index)?;
        record.data.extend(data);
        record.version = version;
        record.modified = now_text();
        let record = record.clone();
        self.changes.record(set, &record.id, version, false);
        Some(record)
    }

    /// Deletes the record at `index` of `set`.
    pub(super) fn remove(&mut self, set: &str, index: usize) -> Option<Record> {
        let rows = self.store.get_mut(set)?;
        if index >= rows.len() {
            return None;
        }
        let record = rows.remove(index);
        let version = self.next_version();
        self.changes.record(set, &record.id, version, true);
        Some(record)
    }
}

fn now_text() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
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

/// The answer to a create or an update: the record's URL and eTag, and its representation when
/// `Prefer: return=representation` asked for it.
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

fn try_execute(
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
        ("GET", None) => change_tracking::list(inner, &set, pk, request, base),
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
            let record = inner.create(&set, id, data);
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
            inner.remove(&set, index);
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
    let mut opportunity_id = None;
    if flag("CreateAccount") {
        let mut data = Map::new();
        data.insert("name".into(), text("companyname"));
        data.insert("websiteurl".into(), text("websiteurl"));
        data.insert("_originatingleadid_value".into(), json!(lead.id));
        let id = inner.new_guid();
        let record = inner.create("accounts", id, data);
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
        let record = inner.create("contacts", id, data);
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
        let record = inner.create("opportunities", id, data);
        created.push(json!({"@odata.type": "#Microsoft.Dynamics.CRM.opportunity", "opportunityid": record.id}));
        opportunity_id = Some(record.id);
    }
    let mut closed = Map::new();
    if let Some(opportunity) = opportunity_id {
        closed.insert("_qualifyingopportunityid_value".into(), json!(opportunity));
    }
    closed.insert("statecode".into(), json!(1));
    closed.insert("statuscode".into(), json!(status));
    inner.update("leads", index, closed);
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
        let current = inner.store[set][index].version.to_string();
        if !if_match_names(if_match, Some(&current)) {
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
            let record = inner
                .update(set, index, data)
                .ok_or_else(|| DvError::not_found(logical, &describe(&address)))?;
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
            let record = inner.create(set, id, data);
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
}
